//! The agent's client tools, run by the one tool implementation (`app::AgentTools`) for the
//! call this stream carries.

use crate::{Bridge, session::CallContext};
use app::ToolCall;
use chrono::Utc;
use serde_json::Value;
use store::Store;

/// The tool's answer for the agent, or what went wrong (sent with `is_error: true`).
pub async fn run<S: Store>(bridge: &Bridge<S>, call: &CallContext, name: &str, parameters: &Value) -> Result<String, String> {
    let on = ToolCall {
        org: call.org,
        call_id: call.call_id,
        contact: &call.contact,
        provider: domain::CallProvider::Twilio,
        provider_call_id: &call.call_sid,
    };
    bridge.tools.run(&bridge.store, &bridge.calls, on, &call.tools, name, parameters, Utc::now()).await.map_err(|e| e.to_string())
}
