//! Twilio's form callbacks: call status, async answering-machine detection, recording status.

use crate::normalise::{Delivery, Events, Malformed};
use chrono::{DateTime, Utc};
use domain::{AnsweredBy, CallDetails, CallProvider, provider_status::ProviderCallState};
use std::collections::HashMap;

/// The form's fields, in the order sent (for the signature) and by name.
pub struct Form {
    pub pairs: Vec<(String, String)>,
    fields: HashMap<String, String>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| Malformed(format!("the body is not a form (application/x-www-form-urlencoded): {e}")))?;
        let fields = pairs.iter().cloned().collect();
        Ok(Self { pairs, fields })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn require(&self, name: &str) -> Result<&str, Malformed> {
        self.get(name).ok_or_else(|| Malformed::missing(name))
    }

    fn events(&self, received_at: DateTime<Utc>) -> Result<(String, Events), Malformed> {
        let sid = self.require("CallSid")?.to_string();
        let at = self.get("Timestamp").and_then(|t| DateTime::parse_from_rfc2822(t).ok()).map_or(received_at, |t| t.with_timezone(&Utc));
        let events = Events::new(CallProvider::Twilio, &sid, at);
        Ok((sid, events))
    }
}

fn delivery(provider_call_id: String, events: Events) -> Delivery {
    Delivery { provider: CallProvider::Twilio, provider_call_id, call: None, our_call_id: None, events: events.list }
}

/// Our call id from a callback URL's query (`?callId=`), which our create request put there.
pub fn call_id_in(path_and_query: &str) -> Option<domain::CallId> {
    let query = path_and_query.split_once('?')?.1;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == "callId").and_then(|(_, v)| domain::CallId::parse(&v).ok())
}

/// `POST /webhooks/twilio/status`: one event per callback, keyed by its SequenceNumber; the
/// duration and any recording come along as details.
pub fn status(form: &Form, received_at: DateTime<Utc>) -> Result<Delivery, Malformed> {
    let (sid, mut events) = form.events(received_at)?;
    let status = form.require("CallStatus")?;
    let position = form.get("SequenceNumber").unwrap_or(status);
    let what = format!("{position}:status");
    let kind = domain::provider_status::twilio(status).map(ProviderCallState::event);
    match kind {
        Some(kind) => events.push(&what, kind),
        None => events.unrecognised(&what, format!("Twilio CallStatus {status:?}")),
    };
    let details = CallDetails {
        duration_secs: form.get("CallDuration").and_then(|d| d.parse().ok()),
        recording_url: form.get("RecordingUrl").map(str::to_string),
        ..Default::default()
    };
    events.details(&format!("{position}:details"), details);
    Ok(delivery(sid, events))
}

/// `POST /webhooks/twilio/amd`: who answered.
pub fn amd(form: &Form, received_at: DateTime<Utc>) -> Result<Delivery, Malformed> {
    let (sid, mut events) = form.events(received_at)?;
    let answered_by = form.require("AnsweredBy")?;
    let what = format!("amd:{answered_by}");
    let by = match answered_by {
        "human" => Some(AnsweredBy::Human),
        "machine_start" => Some(AnsweredBy::MachineStart),
        "machine_end_beep" | "machine_end_silence" | "machine_end_other" => Some(AnsweredBy::MachineEnd),
        "fax" => Some(AnsweredBy::Fax),
        "unknown" => Some(AnsweredBy::Unknown),
        _ => None,
    };
    match by {
        Some(by) => events.details(&what, CallDetails { answered_by: Some(by), ..Default::default() }),
        None => events.unrecognised(&what, format!("Twilio AnsweredBy {answered_by:?}")),
    };
    Ok(delivery(sid, events))
}

/// `POST /webhooks/twilio/recording`: the recording's URL once it is complete.
pub fn recording(form: &Form, received_at: DateTime<Utc>) -> Result<Delivery, Malformed> {
    let (sid, mut events) = form.events(received_at)?;
    let status = form.require("RecordingStatus")?;
    let what = format!("recording:{}:{status}", form.get("RecordingSid").unwrap_or("-"));
    match status {
        "completed" => {
            let url = form.require("RecordingUrl")?;
            events.details(&what, CallDetails { recording_url: Some(url.to_string()), ..Default::default() })
        }
        _ => events.unrecognised(&what, format!("Twilio RecordingStatus {status:?}")),
    };
    Ok(delivery(sid, events))
}
