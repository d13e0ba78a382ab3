//! Retell's webhooks: `call_started`, `call_ended`, `call_analyzed`, `transcript_updated`.

use crate::normalise::{Delivery, Events, Malformed, as_text, flags_opt_out, ids_in, money, seconds_after, text, transcript_of};
use chrono::{DateTime, Utc};
use domain::{AnsweredBy, CallDetails, CallEventKind, CallProvider, EndReason};
use serde_json::Value;

use domain::provider_status::retell_disconnection as disconnection;

/// `POST /webhooks/retell`: `{event (or event_type), call}`.
pub fn webhook(body: &[u8], received_at: DateTime<Utc>) -> Result<Delivery, Malformed> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not JSON: {e}")))?;
    let event =
        payload.get("event").or_else(|| payload.get("event_type")).and_then(Value::as_str).ok_or_else(|| Malformed::missing("event"))?;
    let call = payload.get("call").filter(|c| c.is_object()).ok_or_else(|| Malformed::missing("call"))?;
    let call_id = text(call.get("call_id")).ok_or_else(|| Malformed::missing("call.call_id"))?;
    let millis = |name: &str| call.get(name).and_then(Value::as_i64).and_then(DateTime::from_timestamp_millis);
    let (started, ended) = (millis("start_timestamp"), millis("end_timestamp"));
    let mut events = Events::new(CallProvider::Retell, &call_id, received_at);
    let transcript = || {
        let lines = call.get("transcript_object").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let (from_lines, opted_out) = transcript_of(
            lines.iter().filter_map(|l| Some((l.get("role").and_then(Value::as_str)?, l.get("content").and_then(Value::as_str)?))),
        );
        (text(call.get("transcript")).or(from_lines), opted_out)
    };
    match event {
        "call_started" => {
            events.push_at("call_started", started.unwrap_or(received_at), CallEventKind::Answered);
        }
        "call_ended" => {
            let reason_text = call.get("disconnection_reason").and_then(Value::as_str).unwrap_or_default();
            let (reason, answered_by) = disconnection(reason_text);
            let (transcript, opted_out) = transcript();
            // combined_cost is in cents
            let cost = money(call.pointer("/call_cost/combined_cost"))
                .and_then(|c| domain::Money::from_decimal(c.amount() / rust_decimal::Decimal::ONE_HUNDRED).ok());
            // the agent reached the callee with its first word (`start`: seconds into the call)
            let first_words = call
                .get("transcript_object")
                .and_then(Value::as_array)
                .and_then(|lines| lines.iter().find(|l| l.get("role").and_then(Value::as_str) == Some("agent")))
                .and_then(|line| line.pointer("/words/0/start").and_then(Value::as_f64))
                .zip(started)
                .map(|(offset, started)| seconds_after(started, offset));
            let details = CallDetails {
                answered_by,
                duration_secs: started.zip(ended).map(|(s, e)| (e - s).num_seconds().max(0) as u32),
                connected_at: first_words.filter(|_| reason == EndReason::Completed && answered_by.is_none()),
                cost,
                recording_url: text(call.get("recording_url")),
                transcript,
                error: (reason == EndReason::Failed).then(|| format!("Retell: {reason_text}")),
                opted_out,
                ..Default::default()
            };
            // a call_started lost or late: the end still says when it was answered
            if let Some(started) = started.filter(|_| reason == EndReason::Completed) {
                events.push_at("call_started", started, CallEventKind::Answered);
            }
            events.push_at("call_ended", ended.unwrap_or(received_at), CallEventKind::Ended { reason });
            events.details("call_ended:details", details);
        }
        "call_analyzed" => {
            let analysis = call.get("call_analysis").unwrap_or(&Value::Null);
            let custom = analysis.get("custom_analysis_data").filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
            let (transcript, said_opt_out) = transcript();
            let details = CallDetails {
                answered_by: (analysis.get("in_voicemail").and_then(Value::as_bool) == Some(true)).then_some(AnsweredBy::MachineEnd),
                transcript,
                summary: text(analysis.get("call_summary")),
                success_evaluation: as_text(analysis.get("call_successful")),
                structured_data: custom.cloned(),
                opted_out: said_opt_out || custom.is_some_and(flags_opt_out),
                ..Default::default()
            };
            events.details("call_analyzed", details);
        }
        "transcript_updated" => {
            let (transcript, _) = transcript();
            let size = transcript.as_ref().map_or(0, String::len);
            events.details(&format!("transcript_updated:{size}"), CallDetails { transcript, ..Default::default() });
        }
        other => {
            events.unrecognised(other, format!("Retell event {other:?}"));
        }
    }
    // outdial's ids ride in the call's metadata, and in the variables it was given
    let variables = call.get("retell_llm_dynamic_variables").unwrap_or(&Value::Null);
    let call_ids = ids_in(call.get("metadata").unwrap_or(&Value::Null)).or_else(|| ids_in(variables));
    Ok(Delivery { provider: CallProvider::Retell, provider_call_id: call_id, call: call_ids, our_call_id: None, events: events.list })
}
