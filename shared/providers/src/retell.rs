//! Retell agents. An agent speaks through a response engine, so an assistant is two Retell
//! objects: a Retell LLM (`POST /create-retell-llm`: prompt, opening line, model) and the agent
//! (`POST /create-agent`: name, voice, limits, `response_engine {type: "retell-llm", llm_id}`).
//! Read with `GET /get-agent/{id}` + `GET /get-retell-llm/{llm_id}`, changed with
//! `PATCH /update-agent/{id}` + `PATCH /update-retell-llm/{llm_id}`. `Authorization: Bearer <key>`.

use crate::{
    AssistantProvider, ProviderAssistant, ProviderError, RetryPolicy,
    http::{ApiClient, Credential},
};
use domain::{AssistantConfig, ProviderKind, Voice};
use reqwest::Method;
use serde_json::{Value, json};

const PROVIDER: &str = "retell";
/// Retell requires a voice on every agent; this one is used when the config names none.
pub const DEFAULT_VOICE: &str = "11labs-Adrian";

#[derive(Clone, Debug)]
pub struct Retell {
    api: ApiClient,
}

impl Retell {
    /// The call's state as Retell has it: `GET /v2/get-call/{call_id}` → `call_status` and
    /// `disconnection_reason`.
    pub async fn call_state(&self, call_id: &str) -> Result<domain::provider_status::ProviderCallState, ProviderError> {
        let call = self.api.call(Method::GET, &format!("/v2/get-call/{call_id}"), None, &format!("call {call_id}")).await?;
        let text = |name: &str| call.get(name).and_then(Value::as_str).unwrap_or_default();
        domain::provider_status::retell(text("call_status"), text("disconnection_reason"))
            .ok_or_else(|| crate::calls::missing_id(PROVIDER, "a known call_status"))
    }

    pub const BASE_URL: &'static str = "https://api.retellai.com";

    pub fn new(base_url: &str, api_key: &str, retry: RetryPolicy) -> Self {
        Self { api: ApiClient::new(PROVIDER, base_url, Credential::Bearer(api_key.into()), retry) }
    }

    async fn llm_id_of(&self, agent_id: &str) -> Result<(Value, String), ProviderError> {
        let agent = self.api.call(Method::GET, &format!("/get-agent/{agent_id}"), None, &format!("agent {agent_id}")).await?;
        let llm_id = agent["response_engine"]["llm_id"]
            .as_str()
            .ok_or_else(|| protocol("the agent's response engine is not a Retell LLM; only retell-llm agents can be managed here"))?
            .to_string();
        Ok((agent, llm_id))
    }
}

/// The Retell LLM half: what the agent says.
pub(crate) fn llm_body(config: &AssistantConfig, tools: &crate::AgentToolset) -> Value {
    let mut body = json!({
        "general_prompt": config.system_prompt,
        "begin_message": config.first_message,
        // outbound calls: the agent opens with the disclosure line
        "start_speaker": "agent",
        "general_tools": tools.retell(),
    });
    if let Some(model) = &config.model {
        body["model"] = json!(model);
    }
    body
}

/// The agent half: how it sounds and how long it stays on the line.
pub(crate) fn agent_body(name: &str, config: &AssistantConfig) -> Value {
    let mut body = json!({
        "agent_name": name,
        "voice_id": config.voice.as_ref().map_or(DEFAULT_VOICE, |v| v.voice_id.as_str()),
    });
    if let Some(language) = &config.language {
        body["language"] = json!(language);
    }
    if let Some(s) = config.silence_timeout_seconds {
        body["end_call_after_silence_ms"] = json!(u64::from(s) * 1000);
    }
    if let Some(s) = config.max_duration_seconds {
        body["max_call_duration_ms"] = json!(u64::from(s) * 1000);
    }
    body
}

fn protocol(detail: &str) -> ProviderError {
    ProviderError::Protocol { provider: PROVIDER, detail: detail.into() }
}

pub(crate) fn parse_agent(agent: &Value, llm: &Value) -> Result<ProviderAssistant, ProviderError> {
    let id = agent["agent_id"].as_str().ok_or_else(|| protocol("agent without an agent_id"))?;
    let seconds = |k: &str| agent[k].as_u64().map(|ms| (ms / 1000) as u32);
    Ok(ProviderAssistant {
        id: id.to_string(),
        name: agent["agent_name"].as_str().unwrap_or(id).to_string(),
        config: AssistantConfig {
            system_prompt: llm["general_prompt"].as_str().unwrap_or_default().to_string(),
            first_message: llm["begin_message"].as_str().unwrap_or_default().to_string(),
            end_call_message: None,
            voice: agent["voice_id"].as_str().map(|v| Voice { provider: PROVIDER.into(), voice_id: v.into() }),
            model: llm["model"].as_str().map(str::to_string),
            language: agent["language"].as_str().map(str::to_string),
            silence_timeout_seconds: seconds("end_call_after_silence_ms"),
            max_duration_seconds: seconds("max_call_duration_ms"),
            tools: None,
        },
    })
}

impl AssistantProvider for Retell {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Retell
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Result<String, ProviderError> {
        let llm = self.api.call(Method::POST, "/create-retell-llm", Some(&llm_body(config, tools)), "retell llm (new)").await?;
        let llm_id = llm["llm_id"].as_str().ok_or_else(|| protocol("create-retell-llm answered without an llm_id"))?;
        let mut body = agent_body(name, config);
        body["response_engine"] = json!({ "type": "retell-llm", "llm_id": llm_id });
        match self.api.call(Method::POST, "/create-agent", Some(&body), "agent (new)").await {
            Ok(agent) => {
                agent["agent_id"].as_str().map(str::to_string).ok_or_else(|| protocol("create-agent answered without an agent_id"))
            }
            Err(refused) => {
                // an LLM without its agent is an orphan nobody would find again
                let cleanup = self.api.call(Method::DELETE, &format!("/delete-retell-llm/{llm_id}"), None, llm_id).await;
                if let Err(e) = cleanup {
                    tracing::warn!(llm_id, error = %e, "could not delete the Retell LLM of an agent that was refused");
                }
                Err(refused)
            }
        }
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        let (agent, llm_id) = self.llm_id_of(id).await?;
        let llm = self.api.call(Method::GET, &format!("/get-retell-llm/{llm_id}"), None, &format!("retell llm {llm_id}")).await?;
        parse_agent(&agent, &llm)
    }

    async fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        tools: &crate::AgentToolset,
    ) -> Result<(), ProviderError> {
        let (_, llm_id) = self.llm_id_of(id).await?;
        self.api
            .call(Method::PATCH, &format!("/update-retell-llm/{llm_id}"), Some(&llm_body(config, tools)), &format!("retell llm {llm_id}"))
            .await?;
        self.api.call(Method::PATCH, &format!("/update-agent/{id}"), Some(&agent_body(name, config)), &format!("agent {id}")).await?;
        Ok(())
    }
}

impl crate::CallProvider for Retell {
    async fn place_call(&self, call: &crate::CallRequest) -> Result<String, ProviderError> {
        let agent_id = call.assistant_provider_id.as_deref().ok_or_else(|| crate::calls::missing_id(PROVIDER, "agent id"))?;
        let voicemail = match call.voicemail_message() {
            Some(text) => json!({ "type": "static_text", "text": text }),
            None => json!({ "type": "hangup" }),
        };
        let body = json!({
            "from_number": call.from.as_str(),
            "to_number": call.to.as_str(),
            "override_agent_id": agent_id,
            // this call's limits, over the agent's own
            "agent_override": { "agent": {
                "max_call_duration_ms": u64::from(call.max_call_seconds) * 1000,
                "voicemail_option": { "action": voicemail },
            } },
            "retell_llm_dynamic_variables": call.variables_with_ids(),
            "metadata": call.metadata(),
        });
        let answer = self.api.call(Method::POST, "/v2/create-phone-call", Some(&body), &format!("agent {agent_id}")).await?;
        answer.get("call_id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| crate::calls::missing_id(PROVIDER, "call_id"))
    }

    /// `POST /v3/list-calls` filtered on the call id we put in its `metadata` (oldest first), and
    /// matched on it again here; a call not yet started has no start time to filter on.
    async fn find_placed_call(
        &self,
        call: &crate::CallRequest,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, ProviderError> {
        let ours = json!({ "type": "string", "op": "eq", "key": domain::CALL_ID_VARIABLE, "value": call.call_id.to_string() });
        let body = json!({ "filter_criteria": { "metadata": [ours] }, "sort_order": "ascending", "limit": 50 });
        let answer = self.api.call(Method::POST, "/v3/list-calls", Some(&body), "calls").await?;
        let calls = answer.get("items").and_then(Value::as_array).ok_or_else(|| crate::calls::missing_id(PROVIDER, "items"))?;
        Ok(crate::calls::ids_with_our_call_id(calls, call, "call_id"))
    }
}

/// The `X-Retell-Signature` header of a webhook body sent at `at`:
/// `v=<unix ms>,d=<hex HMAC-SHA256(api key, body + timestamp)>`.
pub fn webhook_signature(api_key: &str, body: &[u8], at: chrono::DateTime<chrono::Utc>) -> String {
    let v = at.timestamp_millis().to_string();
    format!("v={v},d={}", crate::hmac_sha256_hex(api_key, &[body, v.as_bytes()]))
}
