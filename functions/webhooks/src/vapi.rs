//! Vapi's server messages: `status-update` and `end-of-call-report` move and describe the call;
//! other message types (speech and transcript updates, model output, …: many per call when the
//! server is subscribed to them) are counted by type and not stored.

use crate::normalise::{Delivery, Events, Malformed, as_text, flags_opt_out, ids_in, money, seconds_after, text, transcript_of};
use chrono::{DateTime, Utc};
use domain::{CallDetails, CallEventKind, CallProvider, EndReason};
use serde_json::Value;

use domain::provider_status::vapi_ended_reason as ended_reason;

fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        Value::String(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
        _ => None,
    }
}

/// What a server message is to outdial.
#[derive(Debug, PartialEq)]
pub enum ServerMessage {
    /// About the call's life: applied to it.
    Call(Delivery),
    /// A type outdial does not act on: counted, not stored.
    Ignored { kind: String },
}

/// The message types that move or describe a call.
const HANDLED: [&str; 2] = ["status-update", "end-of-call-report"];

/// `POST /webhooks/vapi`.
pub fn server_message(body: &[u8], received_at: DateTime<Utc>) -> Result<ServerMessage, Malformed> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not JSON: {e}")))?;
    let message = payload.get("message").filter(|m| m.is_object()).ok_or_else(|| Malformed::missing("message"))?;
    let kind = message.get("type").and_then(Value::as_str).ok_or_else(|| Malformed::missing("message.type"))?;
    if !HANDLED.contains(&kind) {
        return Ok(ServerMessage::Ignored { kind: kind.chars().take(64).collect() });
    }
    let call = message.get("call").unwrap_or(&Value::Null);
    let call_id = text(call.get("id")).ok_or_else(|| Malformed::missing("message.call.id"))?;
    let at = timestamp(message.get("timestamp")).unwrap_or(received_at);
    let variables = call.pointer("/assistantOverrides/variableValues").unwrap_or(&Value::Null);
    let mut events = Events::new(CallProvider::Vapi, &call_id, at);
    match kind {
        "status-update" => {
            let status = message.get("status").and_then(Value::as_str).ok_or_else(|| Malformed::missing("message.status"))?;
            let what = format!("status-update:{status}");
            match status {
                "queued" => events.push(&what, CallEventKind::Queued),
                "ringing" => events.push(&what, CallEventKind::Ringing),
                "in-progress" => events.push(&what, CallEventKind::Answered),
                "ended" => {
                    let (reason, by) = ended_reason(message.get("endedReason").and_then(Value::as_str).unwrap_or_default());
                    events
                        .ended(&what, reason)
                        .details(&format!("{what}:answered-by"), CallDetails { answered_by: by, ..Default::default() })
                }
                other => events.unrecognised(&what, format!("Vapi status {other:?}")),
            };
        }
        "end-of-call-report" => {
            let reason_text = message.get("endedReason").and_then(Value::as_str).unwrap_or_default();
            let (reason, answered_by) = ended_reason(reason_text);
            let artifact = message.get("artifact").unwrap_or(&Value::Null);
            let analysis = message.get("analysis").unwrap_or(&Value::Null);
            let messages = artifact.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let (from_messages, said_opt_out) = transcript_of(messages.iter().filter_map(|m| {
                let role = m.get("role").and_then(Value::as_str)?;
                (role == "user" || role == "bot" || role == "assistant").then_some((role, m.get("message").and_then(Value::as_str)?))
            }));
            let (started, ended) = (timestamp(message.get("startedAt")), timestamp(message.get("endedAt")));
            // the agent reached the callee when its first message began: `time` (Unix ms), else `secondsFromStart`
            let first_words =
                messages.iter().find(|m| matches!(m.get("role").and_then(Value::as_str), Some("bot" | "assistant"))).and_then(|m| {
                    timestamp(m.get("time")).or_else(|| {
                        let offset = m.get("secondsFromStart").and_then(Value::as_f64)?;
                        Some(seconds_after(started?, offset))
                    })
                });
            let structured = analysis.get("structuredData").filter(|v| !v.is_null());
            let details = CallDetails {
                answered_by,
                duration_secs: started.zip(ended).map(|(s, e)| (e - s).num_seconds().max(0) as u32),
                cost: money(message.get("cost")),
                recording_url: text(artifact.get("recordingUrl")).or_else(|| text(message.get("recordingUrl"))),
                transcript: text(artifact.get("transcript")).or(from_messages),
                summary: text(analysis.get("summary")),
                success_evaluation: as_text(analysis.get("successEvaluation")),
                structured_data: structured.cloned(),
                error: (reason == EndReason::Failed).then(|| format!("Vapi: {reason_text}")),
                opted_out: said_opt_out || structured.is_some_and(flags_opt_out),
                connected_at: first_words.filter(|_| reason == EndReason::Completed),
                ..Default::default()
            };
            if let Some(started) = started.filter(|_| reason == EndReason::Completed) {
                events.push_at("end-of-call-report:answered", started, CallEventKind::Answered);
            }
            events.push_at("end-of-call-report:ended", ended.unwrap_or(at), CallEventKind::Ended { reason });
            events.details("end-of-call-report", details);
        }
        other => unreachable!("{other} is not among HANDLED"),
    }
    // outdial's ids ride in the call's metadata, and in the variables it was given
    let call_ids = ids_in(call.get("metadata").unwrap_or(&Value::Null)).or_else(|| ids_in(variables));
    Ok(ServerMessage::Call(Delivery {
        provider: CallProvider::Vapi,
        provider_call_id: call_id,
        call: call_ids,
        our_call_id: None,
        events: events.list,
    }))
}
