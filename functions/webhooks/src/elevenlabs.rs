//! ElevenLabs' post-call webhook: the conversation's transcript, analysis and metadata.

use crate::normalise::{Delivery, Events, Malformed, as_text, flags_opt_out, ids_in, seconds_after, text, transcript_of};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{CallDetails, CallEventKind, CallProvider, EndReason};
use serde_json::Value;

/// `POST /webhooks/elevenlabs`: `post_call_transcription` means the conversation happened (answered
/// and over) and carries its report; `call_initiation_failure` means the call never connected.
/// With `credit_price` (USD per 1,000 credits) the conversation's `metadata.cost`, which
/// ElevenLabs gives in credits, becomes the call's cost.
pub fn post_call(body: &[u8], received_at: DateTime<Utc>, credit_price: Option<domain::Money>) -> Result<Delivery, Malformed> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("the body is not JSON: {e}")))?;
    let kind = payload.get("type").and_then(Value::as_str).ok_or_else(|| Malformed::missing("type"))?;
    let data = payload.get("data").filter(|d| d.is_object()).ok_or_else(|| Malformed::missing("data"))?;
    let conversation_id = text(data.get("conversation_id")).ok_or_else(|| Malformed::missing("data.conversation_id"))?;
    let at = payload.get("event_timestamp").and_then(Value::as_i64).and_then(|t| DateTime::from_timestamp(t, 0)).unwrap_or(received_at);
    let variables = data.pointer("/conversation_initiation_client_data/dynamic_variables").unwrap_or(&Value::Null);
    let metadata = data.get("metadata").unwrap_or(&Value::Null);
    let mut events = Events::new(CallProvider::Elevenlabs, &conversation_id, at);
    match kind {
        "post_call_transcription" => {
            let lines = data.get("transcript").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let (transcript, said_opt_out) = transcript_of(
                lines.iter().filter_map(|l| Some((l.get("role").and_then(Value::as_str)?, l.get("message").and_then(Value::as_str)?))),
            );
            let analysis = data.get("analysis").unwrap_or(&Value::Null);
            let collected = analysis.get("data_collection_results").filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
            let duration = metadata.get("call_duration_secs").and_then(Value::as_u64).map(|d| d as u32);
            let started = metadata
                .get("start_time_unix_secs")
                .and_then(Value::as_i64)
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .unwrap_or_else(|| duration.map_or(at, |d| at - TimeDelta::seconds(i64::from(d))));
            // the agent reached the callee with its first turn (`time_in_call_secs`, whole seconds)
            let first_words = lines
                .iter()
                .find(|l| l.get("role").and_then(Value::as_str) == Some("agent"))
                .and_then(|l| l.get("time_in_call_secs").and_then(Value::as_f64))
                .map(|offset| seconds_after(started, offset));
            let credits = metadata.get("cost").and_then(Value::as_f64).and_then(rust_decimal::Decimal::from_f64_retain);
            let cost = credits.zip(credit_price).and_then(|(credits, price)| {
                domain::Money::from_decimal((credits * price.amount() / rust_decimal::Decimal::from(1_000)).round_dp(6)).ok()
            });
            let details = CallDetails {
                duration_secs: duration,
                cost,
                transcript,
                summary: text(analysis.get("transcript_summary")),
                success_evaluation: as_text(analysis.get("call_successful")),
                structured_data: collected.cloned(),
                opted_out: said_opt_out || collected.is_some_and(flags_opt_out),
                connected_at: first_words,
                ..Default::default()
            };
            events
                .push_at("post_call_transcription:answered", started, CallEventKind::Answered)
                .ended("post_call_transcription:ended", EndReason::Completed)
                .details("post_call_transcription:report", details);
        }
        "call_initiation_failure" => {
            let reason = as_text(data.get("failure_reason")).unwrap_or_else(|| "the call could not be started".into());
            let ended = if reason.contains("busy") {
                EndReason::Busy
            } else if reason.contains("no-answer") || reason.contains("no_answer") {
                EndReason::NoAnswer
            } else {
                EndReason::Failed
            };
            events.ended("call_initiation_failure", ended).details(
                "call_initiation_failure:reason",
                CallDetails { error: Some(format!("ElevenLabs: {reason}")), ..Default::default() },
            );
        }
        other => {
            events.unrecognised(other, format!("ElevenLabs webhook type {other:?}"));
        }
    }
    Ok(Delivery {
        provider: CallProvider::Elevenlabs,
        provider_call_id: conversation_id,
        call: ids_in(variables),
        our_call_id: None,
        events: events.list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_of(body: serde_json::Value, price: Option<&str>) -> Option<domain::Money> {
        let price = price.map(|p| domain::Money::parse(p).unwrap());
        let delivery = post_call(body.to_string().as_bytes(), Utc::now(), price).unwrap();
        delivery.events.iter().find_map(|e| match &e.kind {
            CallEventKind::Details { details } => details.cost,
            _ => None,
        })
    }

    #[test]
    fn credits_become_money_only_at_the_plans_price() {
        let body =
            serde_json::json!({"type": "post_call_transcription", "data": {"conversation_id": "conv_1", "metadata": {"cost": 1500}}});
        assert_eq!(cost_of(body.clone(), Some("0.30")), Some(domain::Money::parse("0.45").unwrap()), "1,500 credits at $0.30 per 1,000");
        assert_eq!(cost_of(body, None), None, "credits without a price are not a cost");
        let unreported = serde_json::json!({"type": "post_call_transcription", "data": {"conversation_id": "conv_2", "metadata": {}}});
        assert_eq!(cost_of(unreported, Some("0.30")), None);
    }
}
