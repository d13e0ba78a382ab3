//! The agent's tools, where they are pure: which tool a call names, what the current-time tool
//! answers, and the booking and follow-up email a tool call asks for, validated before anything
//! is sent anywhere.

use crate::{Contact, E164, ParseError};
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool the agent may call, under its own name or the names other platforms give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AgentTool {
    #[serde(rename = "current_time", alias = "get_current_time")]
    CurrentTime,
    #[serde(rename = "end_call")]
    EndCall,
    #[serde(rename = "add_to_do_not_call", alias = "do_not_call")]
    DoNotCall,
    #[serde(rename = "book_appointment", alias = "schedule_consultation", alias = "book")]
    Book,
    #[serde(rename = "send_email", alias = "send_follow_up_email", alias = "email")]
    Email,
}

impl AgentTool {
    /// Every tool, by its canonical name.
    pub const ALL: [Self; 5] = [Self::CurrentTime, Self::EndCall, Self::DoNotCall, Self::Book, Self::Email];

    pub fn parse(name: &str) -> Result<Self, ParseError> {
        serde_json::from_value(Value::String(name.trim().into())).map_err(|_| {
            let known = Self::ALL.map(Self::as_str).join(", ");
            ParseError::new("tool", format!("there is no tool {:?} (there are {known})", name.trim()))
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CurrentTime => "current_time",
            Self::EndCall => "end_call",
            Self::DoNotCall => "add_to_do_not_call",
            Self::Book => "book_appointment",
            Self::Email => "send_email",
        }
    }

    /// The tools an assistant gets when its config names none: the time, the do-not-call list and
    /// ending the call, with booking and email where the deployment has them set up.
    pub fn defaults(booking: bool, email: bool) -> Vec<Self> {
        let mut tools = vec![Self::CurrentTime, Self::DoNotCall, Self::EndCall];
        tools.extend(booking.then_some(Self::Book));
        tools.extend(email.then_some(Self::Email));
        tools
    }

    /// What the agent is told the tool is for.
    pub fn description(self) -> &'static str {
        match self {
            Self::CurrentTime => {
                "The contact's local date, time and weekday, whether business and calling hours are open, and what a spoken \
                 time such as 'tomorrow at 3pm' or 'next Tuesday' is as a date and time in the contact's zone. Use it before \
                 saying any date or time."
            }
            Self::EndCall => "Ends the call. Use it after saying goodbye, or when the person asks to end the call.",
            Self::DoNotCall => {
                "Adds the person to the do-not-call list so they are never called again. Use it at once when they ask not \
                 to be called, then say goodbye."
            }
            Self::Book => {
                "Books an appointment for the person on the line. Confirm the start time with them first; resolve spoken \
                 times with current_time."
            }
            Self::Email => "Sends the person a follow-up email at their address on file, with a short note.",
        }
    }

    /// Its parameters as a JSON Schema object, as every provider declares them.
    pub fn parameters(self) -> Value {
        let string = |description: &str| serde_json::json!({ "type": "string", "description": description });
        let (properties, required): (Value, &[&str]) = match self {
            Self::CurrentTime => (
                serde_json::json!({ "when": string("Optional: a spoken time to resolve, e.g. 'tomorrow at 3pm', 'next Tuesday', 'in 2 hours'.") }),
                &[],
            ),
            Self::EndCall => (serde_json::json!({ "reason": string("Optional: why the call ends.") }), &[]),
            Self::DoNotCall => (serde_json::json!({}), &[]),
            Self::Book => (
                serde_json::json!({
                    "start": string("The start in ISO 8601, e.g. 2026-11-24T15:00 (the contact's local time without an offset)."),
                    "name": string("Optional: the attendee's name, if it is not the contact's name on file."),
                }),
                &["start"],
            ),
            Self::Email => (serde_json::json!({ "note": string("A short note for the email, at most 1,000 characters.") }), &[]),
        };
        serde_json::json!({ "type": "object", "properties": properties, "required": required })
    }
}

/// An email address as far as a sender can check it: one `@`, a local part, a domain with a dot,
/// no spaces or angle brackets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let address = input.trim();
        let refuse = |why: &str| Err(ParseError::new("email", format!("{} is not an email address: {why}", mask_email(address))));
        if address.is_empty() {
            return Err(ParseError::new("email", "is empty"));
        }
        if address.len() > 254 {
            return refuse("longer than 254 characters");
        }
        if address.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')) {
            return refuse("it holds spaces or one of < > , ; \"");
        }
        let Some((local, domain)) = address.split_once('@') else { return refuse("there is no @") };
        if local.is_empty() || domain.contains('@') {
            return refuse("it needs exactly one @ with a name before it");
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return refuse("the part after @ is not a domain name");
        }
        Ok(Self(address.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The form log lines and answers use: `j***@example.com`.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().map(String::from).unwrap_or_default()),
        None => "***".into(),
    }
}

/// An appointment the booking tool asks for, with the attendee taken from the call's contact
/// where the agent did not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booking {
    pub start: DateTime<Utc>,
    pub attendee_name: String,
    pub attendee_email: EmailAddress,
    /// The contact's zone: what the booking confirmation is written in.
    pub time_zone: Tz,
    pub phone: E164,
}

impl Booking {
    /// From the tool call's parameters: `start` (ISO 8601; without an offset it is the contact's
    /// local time), optional `name` and `email` (else the contact's name and `email` variable).
    pub fn from_parameters(parameters: &Value, contact: &Contact, now: DateTime<Utc>) -> Result<Self, ParseError> {
        let start_text = text(parameters, &["start", "startTime", "start_time", "datetime"])
            .ok_or_else(|| ParseError::new("start", "is missing: give the appointment's start as ISO 8601, e.g. 2026-11-24T15:00"))?;
        let start = parse_instant(start_text, contact.timezone)?;
        if start <= now {
            return Err(ParseError::new("start", format!("{start_text} has already passed: pick a time in the future")));
        }
        let attendee_name = text(parameters, &["name", "attendeeName", "attendee_name"])
            .map(str::to_string)
            .or_else(|| contact.name.clone().filter(|n| !n.trim().is_empty()))
            .ok_or_else(|| ParseError::new("name", "is missing: ask for the attendee's name"))?;
        // the confirmation goes to the contact's own address, never one the agent was told
        let attendee_email = contact_email(contact, text(parameters, &["email", "attendeeEmail", "attendee_email"]))?;
        Ok(Self { start, attendee_name, attendee_email, time_zone: contact.timezone, phone: contact.phone.clone() })
    }

    /// How the agent may confirm it: "Tuesday, 24 November 2026, 3:00 PM".
    pub fn spoken_start(&self) -> String {
        agent_time::moment(self.start.with_timezone(&self.time_zone)).spoken
    }
}

/// The contact's own email address on file; an address the agent gives must be that one.
fn contact_email(contact: &Contact, asked: Option<&str>) -> Result<EmailAddress, ParseError> {
    let on_file = contact
        .variables
        .get("email")
        .map(|e| EmailAddress::parse(e))
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| ParseError::new("email", "There is no email address on file for you, so I can't send anything by email."))?;
    match asked {
        Some(asked) if !asked.eq_ignore_ascii_case(on_file.as_str()) => {
            Err(ParseError::new("email", "I can only send email to the address we already have on file for you, not to a new one."))
        }
        _ => Ok(on_file),
    }
}

/// The follow-up email's wording: a subject and a plain-text body in which `{{variable}}` is the
/// contact's variable (`name`, `first_name`, any import column) and `{{note}}` the agent's note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTemplate {
    pub subject: String,
    pub body: String,
}

impl Default for EmailTemplate {
    fn default() -> Self {
        Self {
            subject: "Following up on our call".into(),
            body: "Hello {{name}},\n\nThank you for taking our call today.\n\n{{note}}\n\n\
                   This follows up on a call from an AI assistant. Reply to this email with any questions.\n"
                .into(),
        }
    }
}

impl EmailTemplate {
    /// `text` with each `{{key}}` replaced by `values[key]` (an unknown key by nothing).
    fn render(text: &str, values: &std::collections::BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find("}}") else {
                out.push_str(&rest[open..]);
                return out;
            };
            let key = rest[open + 2..open + close].trim();
            out.push_str(values.get(key).map(String::as_str).unwrap_or(""));
            rest = &rest[open + close + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// A follow-up email the email tool asks for: always to the contact's own address on file,
/// worded by the deployment's template with the agent's note in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUpEmail {
    pub to: EmailAddress,
    pub subject: String,
    pub body: String,
    /// The same message as HTML, for mail clients that show it (the daily report's); `body` is its text part.
    pub html: Option<String>,
}

impl FollowUpEmail {
    pub const MAX_NOTE: usize = 1_000;

    /// From the tool call's parameters: `note` (or `content`, `body`, `message`), and an optional
    /// `to_email` that must be the contact's address on file.
    pub fn from_parameters(parameters: &Value, contact: &Contact, template: &EmailTemplate) -> Result<Self, ParseError> {
        let to = contact_email(contact, text(parameters, &["to_email", "to", "email"]))?;
        let note = text(parameters, &["note", "content", "body", "message"]).unwrap_or("");
        if note.chars().count() > Self::MAX_NOTE {
            return Err(ParseError::new("note", format!("is longer than {} characters: keep the note short", Self::MAX_NOTE)));
        }
        // plain text: no control characters beyond line breaks and tabs
        let note: String = note.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect();
        let mut values = contact.dynamic_variables();
        values.insert("note".into(), note);
        let subject: String = EmailTemplate::render(&template.subject, &values).chars().filter(|c| !c.is_control()).take(200).collect();
        Ok(Self { to, subject, body: EmailTemplate::render(&template.body, &values), html: None })
    }
}

/// The first of `keys` that holds non-blank text.
fn text<'a>(parameters: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().filter_map(|k| parameters.get(*k)?.as_str()).map(str::trim).find(|v| !v.is_empty())
}

/// An instant from RFC 3339, or from a local date-time read in `zone`.
fn parse_instant(input: &str, zone: Tz) -> Result<DateTime<Utc>, ParseError> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(input) {
        return Ok(instant.with_timezone(&Utc));
    }
    let local = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(input, format).ok())
        .ok_or_else(|| ParseError::new("start", format!("{input:?} is not an ISO 8601 date and time, e.g. 2026-11-24T15:00")))?;
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(..) | LocalResult::None => Err(ParseError::new(
            "start",
            format!("{input} happens twice or not at all in {} (a clock change): give it with its UTC offset", zone.name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ada() -> Contact {
        let mut new = crate::NewContact::new(
            E164::parse("+14155550123", None).unwrap(),
            chrono_tz::America::New_York,
            crate::Consent::on_file(chrono::Utc::now()),
        );
        new.name = Some("Ada Lovelace".into());
        new.variables.insert("email".into(), "ada@example.com".into());
        Contact::ready(crate::CampaignId::new(), new, Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
    }

    #[test]
    fn tools_are_written_by_their_own_names_with_an_object_schema() {
        for tool in AgentTool::ALL {
            assert_eq!(serde_json::to_value(tool).unwrap(), Value::String(tool.as_str().into()));
            assert_eq!(serde_json::from_value::<AgentTool>(Value::String(tool.as_str().into())).unwrap(), tool);
            assert_eq!(tool.parameters()["type"], "object", "{tool:?}");
        }
        assert_eq!(AgentTool::defaults(false, true), [AgentTool::CurrentTime, AgentTool::DoNotCall, AgentTool::EndCall, AgentTool::Email]);
    }

    #[test]
    fn tools_are_found_by_their_names_and_aliases() {
        assert_eq!(AgentTool::parse("get_current_time"), Ok(AgentTool::CurrentTime));
        assert_eq!(AgentTool::parse("schedule_consultation"), Ok(AgentTool::Book));
        assert_eq!(AgentTool::parse("send_email"), Ok(AgentTool::Email));
        for tool in AgentTool::ALL {
            assert_eq!(AgentTool::parse(tool.as_str()), Ok(tool));
        }
        let unknown = AgentTool::parse("transfer").unwrap_err();
        assert!(unknown.reason.contains("\"transfer\"") && unknown.reason.contains("book_appointment"), "{unknown}");
    }

    #[test]
    fn email_addresses_need_one_at_and_a_domain() {
        assert_eq!(EmailAddress::parse(" ada@example.com ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "@example.com", "ada@example", "ada@@example.com", "ada @example.com", "ada@example..com", "a<b>@x.com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
    }

    #[test]
    fn a_booking_reads_local_times_in_the_contacts_zone_and_fills_the_attendee_from_the_contact() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let booking = Booking::from_parameters(&serde_json::json!({"start": "2026-11-24T15:00"}), &ada(), now).unwrap();
        assert_eq!(booking.start, Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).unwrap(), "15:00 in New York is 20:00 UTC");
        assert_eq!(booking.attendee_name, "Ada Lovelace");
        assert_eq!(booking.attendee_email.as_str(), "ada@example.com");
        assert_eq!(booking.phone.as_str(), "+14155550123");
        assert_eq!(booking.spoken_start(), "Tuesday, 24 November 2026, 3:00 PM");

        let given = serde_json::json!({"start": "2026-11-24T15:00:00Z", "name": "Ada L.", "email": "ADA@example.com"});
        let booking = Booking::from_parameters(&given, &ada(), now).unwrap();
        assert_eq!(booking.start, Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap(), "an offset wins over the zone");
        assert_eq!((booking.attendee_name.as_str(), booking.attendee_email.as_str()), ("Ada L.", "ada@example.com"));
        let elsewhere = serde_json::json!({"start": "2026-11-24T15:00:00Z", "email": "grace@example.org"});
        let refused = Booking::from_parameters(&elsewhere, &ada(), now).unwrap_err();
        assert!(refused.reason.contains("address we already have on file"), "the attendee is the contact: {refused:?}");
    }

    #[test]
    fn a_booking_is_refused_with_what_to_ask_for() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let field =
            |parameters: serde_json::Value, contact: &Contact| Booking::from_parameters(&parameters, contact, now).unwrap_err().field;
        assert_eq!(field(serde_json::json!({}), &ada()), "start");
        assert_eq!(field(serde_json::json!({"start": "next tuesday"}), &ada()), "start");
        assert_eq!(field(serde_json::json!({"start": "2026-11-20T10:00:00Z"}), &ada()), "start", "in the past");
        assert_eq!(field(serde_json::json!({"start": "2027-03-14T02:30"}), &ada()), "start", "skipped by the clock change");
        let mut anonymous = ada();
        anonymous.name = None;
        anonymous.variables.clear();
        assert_eq!(field(serde_json::json!({"start": "2026-11-24T15:00"}), &anonymous), "name");
        assert_eq!(field(serde_json::json!({"start": "2026-11-24T15:00", "name": "Ada"}), &anonymous), "email");
        assert_eq!(field(serde_json::json!({"start": "2026-11-24T15:00", "email": "not an address"}), &ada()), "email");
    }

    #[test]
    fn a_follow_up_email_goes_only_to_the_contact_worded_by_the_template() {
        let template = EmailTemplate { subject: "Your {{plan}} quote".into(), body: "Hi {{first_name}},\n{{note}}\n{{missing}}-".into() };
        let mut contact = ada();
        contact.variables.insert("plan".into(), "gold".into());
        let email = FollowUpEmail::from_parameters(&serde_json::json!({"note": "It is 40 dollars.\u{7}"}), &contact, &template).unwrap();
        assert_eq!(
            (email.to.as_str(), email.subject.as_str(), email.body.as_str()),
            ("ada@example.com", "Your gold quote", "Hi Ada,\nIt is 40 dollars.\n-")
        );
        let same = serde_json::json!({"to_email": "Ada@Example.com", "note": "x"});
        assert_eq!(FollowUpEmail::from_parameters(&same, &contact, &template).unwrap().to.as_str(), "ada@example.com");
        let refusal = |parameters: serde_json::Value, contact: &Contact| {
            FollowUpEmail::from_parameters(&parameters, contact, &template).unwrap_err().reason
        };
        let other = refusal(serde_json::json!({"to_email": "attacker@example.org", "note": "x"}), &contact);
        assert_eq!(other, "I can only send email to the address we already have on file for you, not to a new one.");
        assert!(refusal(serde_json::json!({"note": "x".repeat(1_001)}), &contact).contains("1000 characters"));
        let mut no_email = ada();
        no_email.variables.clear();
        assert!(refusal(serde_json::json!({"note": "x"}), &no_email).starts_with("There is no email address on file"));
        let default =
            FollowUpEmail::from_parameters(&serde_json::json!({"note": "See you soon."}), &ada(), &EmailTemplate::default()).unwrap();
        assert!(default.body.starts_with("Hello Ada Lovelace,") && default.body.contains("See you soon."), "{}", default.body);
    }
}
