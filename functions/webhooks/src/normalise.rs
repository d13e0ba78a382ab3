//! What every provider's payload becomes: the provider call id it is about, outdial's own ids
//! when the signed payload carries them, and normalised call events with their dedupe keys.

use chrono::{DateTime, Utc};
use domain::{CallDetails, CallEvent, CallEventKind, CallId, CallProvider, EndReason, OrgId};
use serde_json::Value;

pub use app::delivery::Delivery;

/// The body is not the provider's documented format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl Malformed {
    pub fn missing(field: &str) -> Self {
        Self(format!("the body has no {field}"))
    }
}

/// Builds the events of one delivery, each keyed `<provider>:<provider call id>:<what>`.
pub(crate) struct Events {
    prefix: String,
    at: DateTime<Utc>,
    pub list: Vec<CallEvent>,
}

impl Events {
    pub fn new(provider: CallProvider, provider_call_id: &str, at: DateTime<Utc>) -> Self {
        Self { prefix: format!("{}:{provider_call_id}", provider.as_str()), at, list: Vec::new() }
    }

    pub fn push(&mut self, what: &str, kind: CallEventKind) -> &mut Self {
        self.push_at(what, self.at, kind)
    }

    pub fn push_at(&mut self, what: &str, at: DateTime<Utc>, kind: CallEventKind) -> &mut Self {
        self.list.push(CallEvent { dedupe_key: format!("{}:{what}", self.prefix), occurred_at: at, kind });
        self
    }

    pub fn details(&mut self, what: &str, details: CallDetails) -> &mut Self {
        if details != CallDetails::default() {
            self.push(what, CallEventKind::Details { details: Box::new(details) });
        }
        self
    }

    pub fn ended(&mut self, what: &str, reason: EndReason) -> &mut Self {
        self.push(what, CallEventKind::Ended { reason })
    }

    pub fn unrecognised(&mut self, what: &str, description: String) -> &mut Self {
        self.push(what, CallEventKind::Unrecognised { description })
    }
}

/// outdial's ids among a call's dynamic variables (ElevenLabs, Vapi, Retell echo them back).
pub(crate) fn ids_in(variables: &Value) -> Option<(OrgId, CallId)> {
    let org = OrgId::parse(variables.get(domain::ORG_ID_VARIABLE)?.as_str()?).ok()?;
    let call = CallId::parse(variables.get(domain::CALL_ID_VARIABLE)?.as_str()?).ok()?;
    Some((org, call))
}

/// A transcript as `role: line` lines, and whether the callee asked not to be called again.
pub(crate) fn transcript_of<'a>(lines: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Option<String>, bool) {
    let mut transcript = domain::Transcript::default();
    for (role, line) in lines {
        transcript.push(role, line);
    }
    (transcript.text().map(str::to_string), transcript.opted_out())
}

/// True when structured analysis flags an opt-out (`doNotCall`, `do_not_call`, `optOut`, `opted_out`…).
pub(crate) fn flags_opt_out(data: &Value) -> bool {
    const KEYS: [&str; 6] = ["doNotCall", "do_not_call", "optOut", "opt_out", "optedOut", "opted_out"];
    let truthy = |v: &Value| match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes"),
        // ElevenLabs' data collection results: {"value": …, "rationale": …}
        Value::Object(o) => o.get("value").is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")),
        _ => false,
    };
    data.as_object().is_some_and(|o| KEYS.iter().any(|k| o.get(*k).is_some_and(truthy)))
}

/// A JSON number or numeric string as money (USD); None when absent or not a number.
pub(crate) fn money(v: Option<&Value>) -> Option<domain::Money> {
    let text = match v? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    domain::Money::parse(&text).ok()
}

/// The instant `seconds` (fractional, as providers give offsets into a call) after `start`.
pub(crate) fn seconds_after(start: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    start + chrono::TimeDelta::milliseconds((seconds * 1000.0) as i64)
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// A value kept as text: strings as they are, anything else as JSON.
pub(crate) fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
