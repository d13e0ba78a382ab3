//! ElevenLabs Conversational AI agents: `POST /v1/convai/agents/create`,
//! `GET /v1/convai/agents/{id}`, `PATCH /v1/convai/agents/{id}`, header `xi-api-key`.
//! Agents are set to μ-law 8 kHz both ways, the format Twilio Media Streams carry.

use crate::{
    AssistantProvider, ProviderAssistant, ProviderError, RetryPolicy,
    http::{ApiClient, Credential},
};
use domain::{AssistantConfig, ProviderKind, Voice};
use reqwest::Method;
use serde_json::{Value, json};

const PROVIDER: &str = "elevenlabs";
/// The only audio format the Twilio bridge forwards without transcoding.
pub const TWILIO_AUDIO_FORMAT: &str = "ulaw_8000";

#[derive(Clone, Debug)]
pub struct ElevenLabs {
    api: ApiClient,
}

impl ElevenLabs {
    pub const BASE_URL: &'static str = "https://api.elevenlabs.io";

    pub fn new(base_url: &str, api_key: &str, retry: RetryPolicy) -> Self {
        Self { api: ApiClient::new(PROVIDER, base_url, Credential::Header("xi-api-key", api_key.into()), retry) }
    }

    /// `GET /v1/convai/phone-numbers/{id}`: the number imported under `id`; None when there is none.
    pub async fn phone_number(&self, id: &str) -> Result<Option<String>, ProviderError> {
        let answer = match self.api.call(Method::GET, &format!("/v1/convai/phone-numbers/{id}"), None, &format!("phone number {id}")).await
        {
            Err(ProviderError::NotFound { .. }) => return Ok(None),
            other => other?,
        };
        answer["phone_number"].as_str().map(|n| Some(n.to_string())).ok_or_else(|| protocol("the phone number answer has no phone_number"))
    }

    /// A one-time `wss://` URL that opens a conversation with the agent.
    pub async fn signed_url(&self, agent_id: &str) -> Result<String, ProviderError> {
        let query = serde_urlencoded::to_string([("agent_id", agent_id)]).map_err(|e| protocol(&e.to_string()))?;
        let answer = self.call(Method::GET, &format!("/v1/convai/conversation/get-signed-url?{query}"), None, agent_id).await?;
        answer["signed_url"].as_str().map(str::to_string).ok_or_else(|| protocol("get-signed-url answered without a signed_url"))
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, id: &str) -> Result<Value, ProviderError> {
        self.api.call(method, path, body, &format!("agent {id}")).await
    }
}

pub(crate) fn agent_body(name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Value {
    let (webhooks, built_in) = tools.elevenlabs();
    let mut prompt = json!({ "prompt": config.system_prompt, "tools": webhooks, "built_in_tools": built_in });
    if let Some(model) = &config.model {
        prompt["llm"] = json!(model);
    }
    let mut agent = json!({ "first_message": config.first_message, "prompt": prompt });
    if let Some(language) = &config.language {
        agent["language"] = json!(language);
    }
    let mut tts = json!({ "agent_output_audio_format": TWILIO_AUDIO_FORMAT });
    if let Some(voice) = &config.voice {
        tts["voice_id"] = json!(voice.voice_id);
    }
    let mut conversation_config = json!({
        "agent": agent,
        "tts": tts,
        "asr": { "user_input_audio_format": TWILIO_AUDIO_FORMAT },
    });
    if let Some(s) = config.max_duration_seconds {
        conversation_config["conversation"] = json!({ "max_duration_seconds": s });
    }
    json!({ "name": name, "conversation_config": conversation_config })
}

fn protocol(detail: &str) -> ProviderError {
    ProviderError::Protocol { provider: PROVIDER, detail: detail.into() }
}

pub(crate) fn parse_agent(v: &Value) -> Result<ProviderAssistant, ProviderError> {
    let id = v["agent_id"].as_str().ok_or_else(|| protocol("agent without an agent_id"))?;
    let c = &v["conversation_config"];
    Ok(ProviderAssistant {
        id: id.to_string(),
        name: v["name"].as_str().unwrap_or(id).to_string(),
        config: AssistantConfig {
            system_prompt: c["agent"]["prompt"]["prompt"].as_str().unwrap_or_default().to_string(),
            first_message: c["agent"]["first_message"].as_str().unwrap_or_default().to_string(),
            end_call_message: None,
            voice: c["tts"]["voice_id"].as_str().map(|id| Voice { provider: "elevenlabs".into(), voice_id: id.into() }),
            model: c["agent"]["prompt"]["llm"].as_str().map(str::to_string),
            language: c["agent"]["language"].as_str().map(str::to_string),
            silence_timeout_seconds: None,
            max_duration_seconds: c["conversation"]["max_duration_seconds"].as_u64().map(|s| s as u32),
            tools: None,
        },
    })
}

impl AssistantProvider for ElevenLabs {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Elevenlabs
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Result<String, ProviderError> {
        let mut body = agent_body(name, config, tools);
        // only signed URLs (the bridge's) open conversations: without this anyone holding the agent id could
        body["platform_settings"] = json!({ "auth": { "enable_auth": true } });
        let created = self.call(Method::POST, "/v1/convai/agents/create", Some(&body), "(new)").await?;
        created["agent_id"].as_str().map(str::to_string).ok_or_else(|| protocol("create answered without an agent_id"))
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        parse_agent(&self.call(Method::GET, &format!("/v1/convai/agents/{id}"), None, id).await?)
    }

    async fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        tools: &crate::AgentToolset,
    ) -> Result<(), ProviderError> {
        self.call(Method::PATCH, &format!("/v1/convai/agents/{id}"), Some(&agent_body(name, config, tools)), id).await?;
        Ok(())
    }
}

/// Native Twilio outbound: ElevenLabs dials through the number imported into it.
impl crate::CallProvider for ElevenLabs {
    async fn place_call(&self, call: &crate::CallRequest) -> Result<String, ProviderError> {
        let phone_number_id = call.from_number_id.as_deref().ok_or(ProviderError::NotConfigured {
            provider: PROVIDER,
            variable: "the caller ID's elevenlabsPhoneNumberId (POST /caller-ids)",
        })?;
        let agent_id = call.assistant_provider_id.as_deref().ok_or_else(|| crate::calls::missing_id(PROVIDER, "agent id"))?;
        let body = json!({
            "agent_id": agent_id,
            "agent_phone_number_id": phone_number_id,
            "to_number": call.to.as_str(),
            "conversation_initiation_client_data": { "dynamic_variables": call.variables_with_ids() },
        });
        let answer = self.api.call(Method::POST, "/v1/convai/twilio/outbound-call", Some(&body), &format!("agent {agent_id}")).await?;
        if answer.get("success").and_then(Value::as_bool) == Some(false) {
            let message = answer.get("message").and_then(Value::as_str).unwrap_or("the call was not placed").to_string();
            return Err(ProviderError::Refused { provider: PROVIDER, status: 200, message });
        }
        answer
            .get("conversation_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| crate::calls::missing_id(PROVIDER, "conversation_id"))
    }

    /// ElevenLabs has no way to list outbound calls by our ids: the call waits for its webhook.
    async fn find_placed_call(
        &self,
        _call: &crate::CallRequest,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, ProviderError> {
        Err(ProviderError::Unsupported { provider: PROVIDER, operation: "call lookup" })
    }
}

/// The `ElevenLabs-Signature` header of a post-call webhook body sent at `at`:
/// `t=<unix seconds>,v0=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn webhook_signature(secret: &str, body: &[u8], at: chrono::DateTime<chrono::Utc>) -> String {
    let t = at.timestamp().to_string();
    format!("t={t},v0={}", crate::hmac_sha256_hex(secret, &[t.as_bytes(), b".", body]))
}
