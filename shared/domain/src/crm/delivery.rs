//! What a CRM receives for a finished call, and the steps one delivery takes: each step is
//! recorded as it succeeds, so a redelivered or retried job resumes after the last one done and
//! never makes a second note, call log or opportunity.

use super::ConnectionTarget;
use crate::{
    AnsweredBy, Call, CallDisposition, CallId, CallProvider, CallState, Campaign, CampaignId, Contact, ContactDisposition, ContactId, E164,
    EndReason, Money,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The finished call as every target receives it: the webhook's JSON body, and what CRM notes
/// are written from. The contact's consent record is not part of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishedCallRecord {
    /// Always `call.finished`.
    #[serde(rename = "type")]
    pub event: String,
    pub campaign: CampaignRef,
    pub call: CallRecord,
    pub contact: ContactRecord,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRef {
    pub id: CampaignId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub id: CallId,
    /// 1 for the first attempt at the contact, 2 for the first retry, …
    pub attempt: u32,
    pub provider: CallProvider,
    pub provider_call_id: Option<String>,
    /// The caller ID it went out from.
    pub from: Option<E164>,
    pub to: E164,
    pub state: CallState,
    pub end_reason: Option<EndReason>,
    pub disposition: Option<CallDisposition>,
    pub answered_by: Option<AnsweredBy>,
    pub created_at: DateTime<Utc>,
    pub placed_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<u32>,
    /// What the provider charged, a decimal in US dollars.
    pub cost: Option<Money>,
    pub summary: Option<String>,
    pub analysis: Analysis,
    pub recording_url: Option<String>,
    /// One `agent: …` or `user: …` line per turn.
    pub transcript: Option<String>,
    /// The callee asked not to be called again.
    pub opted_out: bool,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// The provider's success evaluation as it gave it (`true`, `success`, `8`, `Pass`, …).
    pub success_evaluation: Option<String>,
    /// That evaluation read as yes or no, when it can be.
    pub successful: Option<bool>,
    pub structured_data: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactRecord {
    pub id: ContactId,
    pub phone: E164,
    pub name: Option<String>,
    /// The `email` variable, when the contact has one.
    pub email: Option<String>,
    pub timezone: String,
    pub variables: BTreeMap<String, String>,
    /// Where the contact stands after this call (`None` while more attempts may follow).
    pub disposition: Option<ContactDisposition>,
    pub attempts: u32,
}

/// Reads a provider's success evaluation: Vapi's `true`/`false`, numeric 1–10 (7 and up),
/// letter grades (A, B) and Pass/Fail; ElevenLabs' `success`/`failure`; Retell's booleans.
pub fn is_positive_evaluation(evaluation: &str) -> Option<bool> {
    let value = evaluation.trim().to_ascii_lowercase();
    match value.as_str() {
        "true" | "yes" | "pass" | "passed" | "success" | "successful" | "positive" | "a" | "b" | "excellent" | "good" => Some(true),
        "false" | "no" | "fail" | "failed" | "failure" | "unsuccessful" | "negative" | "c" | "d" | "f" | "fair" | "poor" => Some(false),
        number => number.parse::<f64>().ok().filter(|n| (0.0..=10.0).contains(n)).map(|n| n >= 7.0),
    }
}

impl FinishedCallRecord {
    /// How much of the transcript a CRM note carries.
    pub const TRANSCRIPT_EXCERPT: usize = 1_500;

    pub fn new(campaign: &Campaign, call: &Call, contact: &Contact) -> Self {
        let d = &call.details;
        Self {
            event: "call.finished".into(),
            campaign: CampaignRef { id: campaign.id, name: campaign.name.clone() },
            call: CallRecord {
                id: call.id,
                attempt: call.attempt,
                provider: campaign.settings.provider,
                provider_call_id: call.provider_call_id.clone(),
                from: call.caller_id.clone(),
                to: call.phone.clone(),
                state: call.state,
                end_reason: call.end_reason,
                disposition: call.disposition(),
                answered_by: d.answered_by,
                created_at: call.created_at,
                placed_at: call.placed_at,
                answered_at: d.answered_at,
                ended_at: call.ended_at,
                duration_seconds: d.duration_secs,
                cost: d.cost,
                summary: d.summary.clone(),
                analysis: Analysis {
                    success_evaluation: d.success_evaluation.clone(),
                    successful: d.success_evaluation.as_deref().and_then(is_positive_evaluation),
                    structured_data: d.structured_data.clone(),
                },
                recording_url: d.recording_url.clone(),
                transcript: d.transcript.clone(),
                opted_out: d.opted_out,
                error: d.error.clone(),
            },
            contact: ContactRecord {
                id: contact.id,
                phone: contact.phone.clone(),
                name: contact.name.clone(),
                email: contact.variables.get("email").cloned(),
                timezone: contact.timezone.name().to_string(),
                variables: contact.variables.clone(),
                disposition: contact.disposition,
                attempts: contact.attempts,
            },
        }
    }

    /// The contact's name split for CRMs that keep first and last apart.
    pub fn first_and_last_name(&self) -> (Option<String>, Option<String>) {
        let Some(name) = self.contact.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) else { return (None, None) };
        match name.split_once(char::is_whitespace) {
            Some((first, last)) => (Some(first.to_string()), Some(last.trim().to_string())),
            None => (Some(name.to_string()), None),
        }
    }

    /// The callee asked not to be called again: the CRM marks the contact do-not-disturb.
    pub fn do_not_call(&self) -> bool {
        self.call.disposition == Some(CallDisposition::DoNotCall)
    }

    /// Tags from the disposition (`outdial:answered`, `outdial:voicemail`, `outdial:no-answer`,
    /// `outdial:dnc`, …), and `outdial:success` when the call's evaluation is positive.
    pub fn tags(&self) -> Vec<String> {
        let outcome = match self.call.disposition {
            Some(CallDisposition::AnsweredHuman) => "answered",
            Some(CallDisposition::Voicemail) => "voicemail",
            Some(CallDisposition::NoAnswer) => "no-answer",
            Some(CallDisposition::Busy) => "busy",
            Some(CallDisposition::Failed) | None => "failed",
            Some(CallDisposition::Canceled) => "canceled",
            Some(CallDisposition::DoNotCall) => "dnc",
            Some(CallDisposition::OutsideWindow) => "outside-window",
            Some(CallDisposition::NoConsent) => "no-consent",
        };
        let mut tags = vec![format!("outdial:{outcome}")];
        if self.call.analysis.successful == Some(true) {
            tags.push("outdial:success".into());
        }
        tags
    }

    /// A positive success evaluation: the CRM opens an opportunity for it.
    pub fn successful(&self) -> bool {
        self.call.analysis.successful == Some(true)
    }

    /// The disposition as people read it.
    pub fn outcome(&self) -> &'static str {
        match self.call.disposition {
            Some(CallDisposition::AnsweredHuman) => "answered",
            Some(CallDisposition::Voicemail) => "voicemail",
            Some(CallDisposition::NoAnswer) => "no answer",
            Some(CallDisposition::Busy) => "busy",
            Some(CallDisposition::Failed) | None => "failed",
            Some(CallDisposition::Canceled) => "canceled",
            Some(CallDisposition::DoNotCall) => "asked not to be called again",
            Some(CallDisposition::OutsideWindow) => "not placed (outside calling hours)",
            Some(CallDisposition::NoConsent) => "not placed (no consent on record)",
        }
    }

    /// The start of the transcript, cut at a line end where one is near.
    pub fn transcript_excerpt(&self) -> Option<String> {
        let text = self.call.transcript.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
        if text.chars().count() <= Self::TRANSCRIPT_EXCERPT {
            return Some(text.to_string());
        }
        let cut: String = text.chars().take(Self::TRANSCRIPT_EXCERPT).collect();
        let at_line = cut.rfind('\n').filter(|&i| i > cut.len() / 2).unwrap_or(cut.len());
        Some(format!("{}\n…", &cut[..at_line]))
    }

    /// The note a CRM keeps on the contact: outcome, summary, duration, recording, transcript excerpt.
    pub fn note(&self) -> String {
        let mut lines = vec![format!("outdial call ({}): {}", self.campaign.name, self.outcome())];
        if let Some(summary) = self.call.summary.as_deref().filter(|s| !s.trim().is_empty()) {
            lines.push(format!("Summary: {}", summary.trim()));
        }
        if let Some(secs) = self.call.duration_seconds {
            lines.push(format!("Duration: {}m {:02}s", secs / 60, secs % 60));
        }
        if let Some(evaluation) = &self.call.analysis.success_evaluation {
            lines.push(format!("Success evaluation: {evaluation}"));
        }
        if let Some(url) = &self.call.recording_url {
            lines.push(format!("Recording: {url}"));
        }
        if let Some(excerpt) = self.transcript_excerpt() {
            lines.push(format!("Transcript:\n{excerpt}"));
        }
        lines.push(self.note_marker());
        lines.join("\n")
    }

    /// The note's last line, naming this call: how a retried delivery finds the note or call log
    /// an earlier try made before its answer was lost.
    pub fn note_marker(&self) -> String {
        format!("Call {} · attempt {}", self.call.id, self.call.attempt)
    }
}

/// One request a delivery makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrmStep {
    /// The signed webhook POST.
    PostWebhook,
    /// The contact, found by phone and created or updated.
    UpsertContact,
    AddNote,
    AddTags,
    /// In the connection's pipeline and stage, for a successful call.
    OpenOpportunity,
    /// HubSpot's `calls` object on the contact.
    LogCall,
}

/// The steps of one delivery that have succeeded, with the ids the CRM gave what they made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySteps {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub posted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tagged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_log_id: Option<String>,
}

/// What a step made, as the CRM answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepDone {
    Posted,
    Contact(String),
    Note(String),
    Tagged,
    Opportunity(String),
    CallLogged(String),
}

impl DeliverySteps {
    pub fn record(&mut self, done: StepDone) {
        match done {
            StepDone::Posted => self.posted = true,
            StepDone::Contact(id) => self.contact_id = Some(id),
            StepDone::Note(id) => self.note_id = Some(id),
            StepDone::Tagged => self.tagged = true,
            StepDone::Opportunity(id) => self.opportunity_id = Some(id),
            StepDone::CallLogged(id) => self.call_log_id = Some(id),
        }
    }
}

impl ConnectionTarget {
    /// The step `record`'s delivery takes next, after those `done`; None when it is delivered.
    /// GoHighLevel: contact → note → tags → opportunity (pipeline set and call successful);
    /// HubSpot: contact → call log; webhook: one signed POST.
    pub fn next_step(&self, record: &FinishedCallRecord, done: &DeliverySteps) -> Option<CrmStep> {
        match self {
            Self::Webhook { .. } => (!done.posted).then_some(CrmStep::PostWebhook),
            Self::Gohighlevel { pipeline_id, stage_id, .. } => {
                let wants_opportunity = pipeline_id.is_some() && stage_id.is_some() && record.successful();
                if done.contact_id.is_none() {
                    Some(CrmStep::UpsertContact)
                } else if done.note_id.is_none() {
                    Some(CrmStep::AddNote)
                } else if !done.tagged {
                    Some(CrmStep::AddTags)
                } else if wants_opportunity && done.opportunity_id.is_none() {
                    Some(CrmStep::OpenOpportunity)
                } else {
                    None
                }
            }
            Self::Hubspot {} => {
                if done.contact_id.is_none() {
                    Some(CrmStep::UpsertContact)
                } else if done.call_log_id.is_none() {
                    Some(CrmStep::LogCall)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallDetails, OrgId};

    fn record(disposition_details: CallDetails, end: EndReason) -> FinishedCallRecord {
        let now = Utc::now();
        let settings =
            crate::CampaignSettings { calling_window: crate::CallingWindow::parse([], "08:00", "21:00").unwrap(), ..Default::default() };
        let campaign = Campaign::draft(OrgId::new(), crate::NewCampaign::parse("Renewals", crate::Cap::DEFAULT, settings).unwrap(), now);
        let new = crate::NewContact::new(
            E164::parse("+14155550123", None).unwrap(),
            chrono_tz::America::New_York,
            crate::Consent::on_file(chrono::Utc::now()),
        );
        let contact = Contact::ready(campaign.id, new, now);
        let mut call = Call::queued(OrgId::new(), campaign.id, contact.id, 1, contact.phone.clone(), Utc::now());
        call.state = CallState::Ended;
        call.end_reason = Some(end);
        call.details = disposition_details;
        FinishedCallRecord::new(&campaign, &call, &contact)
    }

    #[test]
    fn evaluations_are_read_as_providers_give_them() {
        for yes in ["true", "Success", "8", "10", "Pass", "A", " yes "] {
            assert_eq!(is_positive_evaluation(yes), Some(true), "{yes}");
        }
        for no in ["false", "failure", "3", "Fail", "F", "6.9"] {
            assert_eq!(is_positive_evaluation(no), Some(false), "{no}");
        }
        for unknown in ["unknown", "", "42", "maybe"] {
            assert_eq!(is_positive_evaluation(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn ghl_steps_run_in_order_and_the_opportunity_only_for_success_in_a_pipeline() {
        let human = CallDetails { answered_by: Some(AnsweredBy::Human), success_evaluation: Some("true".into()), ..Default::default() };
        let success = record(human, EndReason::Completed);
        assert_eq!(success.tags(), ["outdial:answered", "outdial:success"]);
        let in_pipeline =
            ConnectionTarget::Gohighlevel { location_id: "l".into(), pipeline_id: Some("p".into()), stage_id: Some("s".into()) };
        let mut done = DeliverySteps::default();
        let mut order = Vec::new();
        while let Some(step) = in_pipeline.next_step(&success, &done) {
            order.push(step);
            done.record(match step {
                CrmStep::UpsertContact => StepDone::Contact("c".into()),
                CrmStep::AddNote => StepDone::Note("n".into()),
                CrmStep::AddTags => StepDone::Tagged,
                CrmStep::OpenOpportunity => StepDone::Opportunity("o".into()),
                other => panic!("{other:?} is not a GoHighLevel step"),
            });
        }
        assert_eq!(order, [CrmStep::UpsertContact, CrmStep::AddNote, CrmStep::AddTags, CrmStep::OpenOpportunity]);
        let no_pipeline = ConnectionTarget::Gohighlevel { location_id: "l".into(), pipeline_id: None, stage_id: None };
        let tagged = DeliverySteps { contact_id: Some("c".into()), note_id: Some("n".into()), tagged: true, ..Default::default() };
        assert_eq!(no_pipeline.next_step(&success, &tagged), None);
        let voicemail = record(CallDetails { answered_by: Some(AnsweredBy::MachineEnd), ..Default::default() }, EndReason::Completed);
        assert_eq!(voicemail.tags(), ["outdial:voicemail"]);
        assert_eq!(in_pipeline.next_step(&voicemail, &tagged), None, "no opportunity without a positive evaluation");
    }

    #[test]
    fn hubspot_and_webhook_steps() {
        let busy = record(CallDetails::default(), EndReason::Busy);
        let mut done = DeliverySteps::default();
        assert_eq!(ConnectionTarget::Hubspot {}.next_step(&busy, &done), Some(CrmStep::UpsertContact));
        done.record(StepDone::Contact("1".into()));
        assert_eq!(ConnectionTarget::Hubspot {}.next_step(&busy, &done), Some(CrmStep::LogCall));
        done.record(StepDone::CallLogged("2".into()));
        assert_eq!(ConnectionTarget::Hubspot {}.next_step(&busy, &done), None);
        let hook = ConnectionTarget::Webhook { url: "https://example.com".into() };
        assert_eq!(hook.next_step(&busy, &DeliverySteps::default()), Some(CrmStep::PostWebhook));
        assert_eq!(hook.next_step(&busy, &DeliverySteps { posted: true, ..Default::default() }), None);
        assert_eq!(busy.tags(), ["outdial:busy"]);
    }

    #[test]
    fn the_note_carries_outcome_summary_duration_recording_and_an_excerpt() {
        let long: String = (0..200).map(|i| format!("user: line {i}\n")).collect();
        let details = CallDetails {
            answered_by: Some(AnsweredBy::Human),
            opted_out: true,
            summary: Some("Asked to be removed.".into()),
            duration_secs: Some(83),
            recording_url: Some("https://rec.example.com/1.mp3".into()),
            transcript: Some(long),
            ..Default::default()
        };
        let dnc = record(details, EndReason::Completed);
        assert!(dnc.do_not_call());
        assert_eq!(dnc.tags(), ["outdial:dnc"]);
        let note = dnc.note();
        for part in ["asked not to be called again", "Summary: Asked to be removed.", "Duration: 1m 23s", "Recording: https://rec"] {
            assert!(note.contains(part), "{part} in {note}");
        }
        let excerpt = dnc.transcript_excerpt().unwrap();
        assert!(excerpt.ends_with("\n…") && excerpt.chars().count() <= FinishedCallRecord::TRANSCRIPT_EXCERPT + 2, "{excerpt}");
        assert!(!excerpt.contains("line 199"));
    }

    #[test]
    fn names_split_for_crms_and_the_record_keeps_no_consent() {
        let r = record(CallDetails::default(), EndReason::NoAnswer);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["contact"].get("consent").is_none());
        assert_eq!(json["type"], "call.finished");
        assert_eq!(json["call"]["disposition"], "no_answer");
        let mut named = r.clone();
        named.contact.name = Some("Ada  King Lovelace".into());
        assert_eq!(named.first_and_last_name(), (Some("Ada".into()), Some("King Lovelace".into())));
        named.contact.name = Some("Cher".into());
        assert_eq!(named.first_and_last_name(), (Some("Cher".into()), None));
    }
}
