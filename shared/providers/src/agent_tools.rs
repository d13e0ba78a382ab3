//! The agent's tools as each provider declares them on the agents outdial creates and updates:
//! functions served by outdial's `/tools/*` routes (PROTOCOLS.md, "tools"), and the provider's
//! own end-call (and, at ElevenLabs, voicemail detection), which need no URL.

use crate::Secret;
use domain::AgentTool;
use serde_json::{Value, json};

/// The header ElevenLabs webhook tools send the organisation's tool secret in.
pub const TOOL_SECRET_HEADER: &str = "X-Outdial-Tool-Secret";

/// The tools an agent is declared with, and where outdial serves them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentToolset {
    pub tools: Vec<AgentTool>,
    /// outdial's public base URL (`OUTDIAL_PUBLIC_URL`): without it only the provider's own
    /// tools are declared, none that would point nowhere.
    pub public_url: Option<String>,
    /// The `server.secret` of Vapi tools (the deployment's `VAPI_WEBHOOK_SECRET`).
    pub vapi_secret: Option<Secret>,
    /// The organisation's ElevenLabs tool secret; without it no webhook tool is declared.
    pub elevenlabs_secret: Option<String>,
}

impl AgentToolset {
    /// The tools outdial serves, each with the URL it is served at (none without a public URL).
    fn served(&self, route: impl Fn(AgentTool) -> String) -> Vec<(AgentTool, String)> {
        let Some(base) = self.public_url.as_deref().map(|u| u.trim_end_matches('/')) else { return Vec::new() };
        self.tools.iter().filter(|t| **t != AgentTool::EndCall).map(|t| (*t, format!("{base}{}", route(*t)))).collect()
    }

    fn ends_calls(&self) -> bool {
        self.tools.contains(&AgentTool::EndCall)
    }

    /// Vapi `model.tools`: functions whose `server.url` is `/tools/vapi`, and Vapi's own `endCall`.
    pub(crate) fn vapi(&self) -> Vec<Value> {
        let mut tools: Vec<Value> = self
            .served(|_| "/tools/vapi".into())
            .into_iter()
            .map(|(tool, url)| {
                let mut server = json!({ "url": url });
                if let Some(secret) = &self.vapi_secret {
                    server["secret"] = json!(secret.expose());
                }
                json!({
                    "type": "function",
                    "function": { "name": tool.as_str(), "description": tool.description(), "parameters": tool.parameters() },
                    "server": server,
                })
            })
            .collect();
        if self.ends_calls() {
            tools.push(json!({ "type": "endCall" }));
        }
        tools
    }

    /// Retell LLM `general_tools`: custom functions at `/tools/retell/{tool}`, and Retell's own `end_call`.
    pub(crate) fn retell(&self) -> Vec<Value> {
        let mut tools: Vec<Value> = self
            .served(|t| format!("/tools/retell/{}", t.as_str()))
            .into_iter()
            .map(|(tool, url)| {
                json!({
                    "type": "custom",
                    "name": tool.as_str(),
                    "description": tool.description(),
                    "url": url,
                    "parameters": tool.parameters(),
                    "speak_during_execution": false,
                    "speak_after_execution": true,
                })
            })
            .collect();
        if self.ends_calls() {
            tools.push(json!({ "type": "end_call", "name": "end_call", "description": AgentTool::EndCall.description() }));
        }
        tools
    }

    /// ElevenLabs `prompt.tools` (webhook tools at `/tools/elevenlabs/{tool}`, carrying the call's
    /// ids from dynamic variables and the tool secret in a header) and `prompt.built_in_tools`:
    /// `end_call`, and `voicemail_detection`, which ends the call on an answering machine.
    pub(crate) fn elevenlabs(&self) -> (Vec<Value>, Value) {
        let webhooks = match &self.elevenlabs_secret {
            Some(secret) => self
                .served(|t| format!("/tools/elevenlabs/{}", t.as_str()))
                .into_iter()
                .map(|(tool, url)| {
                    let mut schema = tool.parameters();
                    let from_variable = |variable: &str| {
                        json!({ "type": "string", "description": "filled in by ElevenLabs", "dynamic_variable": variable })
                    };
                    schema["description"] = json!(format!("The {} request", tool.as_str()));
                    schema["properties"]["conversation_id"] = from_variable("system__conversation_id");
                    schema["properties"][domain::ORG_ID_VARIABLE] = from_variable(domain::ORG_ID_VARIABLE);
                    schema["properties"][domain::CALL_ID_VARIABLE] = from_variable(domain::CALL_ID_VARIABLE);
                    json!({
                        "type": "webhook",
                        "name": tool.as_str(),
                        "description": tool.description(),
                        "api_schema": {
                            "url": url,
                            "method": "POST",
                            "request_body_schema": schema,
                            "request_headers": { TOOL_SECRET_HEADER: secret },
                        },
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let system = |name: &str, description: &str| json!({ "type": "system", "name": name, "description": description, "params": { "system_tool_type": name } });
        let mut built_in = json!({
            "voicemail_detection": system("voicemail_detection", "Ends the call when an answering machine or voicemail answers."),
        });
        if self.ends_calls() {
            built_in["end_call"] = system("end_call", AgentTool::EndCall.description());
        }
        (webhooks, built_in)
    }
}
