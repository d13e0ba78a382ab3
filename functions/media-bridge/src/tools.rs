//! The agent's client tools, run while the conversation goes on: current time in the contact's
//! zone, end the call, add the caller to the do-not-call list. A tool that fails or is unknown
//! answers an error to the agent; it never holds the conversation up.

use crate::{Bridge, session::CallContext};
use chrono::Utc;
use serde_json::Value;
use std::time::Duration;
use store::Store;

/// Longest a tool may take before the agent hears it failed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The tool's answer for the agent, or what went wrong (sent with `is_error: true`).
pub async fn run<S: Store>(bridge: &Bridge<S>, call: &CallContext, name: &str, parameters: &Value) -> Result<String, String> {
    match tokio::time::timeout(TOOL_TIMEOUT, run_now(bridge, call, name, parameters)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("the {name} tool did not answer within {} seconds", TOOL_TIMEOUT.as_secs())),
    }
}

async fn run_now<S: Store>(bridge: &Bridge<S>, call: &CallContext, name: &str, _parameters: &Value) -> Result<String, String> {
    match name {
        "current_time" | "get_current_time" => {
            serde_json::to_string(&domain::tools::local_time(Utc::now(), call.contact.timezone)).map_err(|e| e.to_string())
        }
        "end_call" => {
            bridge
                .calls
                .hang_up(domain::CallProvider::Twilio, &call.call_sid)
                .await
                .map_err(|e| format!("the call could not be ended: {e}"))?;
            Ok("The call is ending.".into())
        }
        "add_to_do_not_call" | "do_not_call" => {
            bridge
                .store
                .add_do_not_call(call.org, vec![call.contact.phone.clone()], Utc::now())
                .await
                .map_err(|e| format!("the number could not be added to the do-not-call list: {e}"))?;
            tracing::info!(call = %call.call_id, phone = %domain::mask_phone(call.contact.phone.as_str()), "agent tool: number on the do-not-call list");
            Ok("The number is on the do-not-call list; it will not be called again.".into())
        }
        other => Err(format!("there is no tool {other:?} on this bridge (it offers current_time, end_call, add_to_do_not_call)")),
    }
}
