//! Vapi assistants: `POST /assistant`, `GET /assistant/{id}`, `PATCH /assistant/{id}`,
//! `Authorization: Bearer <private key>`.

use crate::{
    AssistantProvider, ProviderAssistant, ProviderError, RetryPolicy,
    http::{ApiClient, Credential},
};
use domain::{AssistantConfig, ProviderKind, Voice};
use reqwest::Method;
use serde_json::{Value, json};

const PROVIDER: &str = "vapi";
/// The model a Vapi assistant gets when the config names none.
const DEFAULT_MODEL: &str = "gpt-4o";

#[derive(Clone, Debug)]
pub struct Vapi {
    api: ApiClient,
}

impl Vapi {
    /// The call's state as Vapi has it: `GET /call/{id}` → `status` and `endedReason`.
    pub async fn call_state(&self, id: &str) -> Result<domain::provider_status::ProviderCallState, ProviderError> {
        let call = self.api.call(Method::GET, &format!("/call/{id}"), None, &format!("call {id}")).await?;
        let text = |name: &str| call.get(name).and_then(Value::as_str).unwrap_or_default();
        domain::provider_status::vapi(text("status"), text("endedReason"))
            .ok_or_else(|| crate::calls::missing_id(PROVIDER, "a known status"))
    }

    pub const BASE_URL: &'static str = "https://api.vapi.ai";

    pub fn new(base_url: &str, api_key: &str, retry: RetryPolicy) -> Self {
        Self { api: ApiClient::new(PROVIDER, base_url, Credential::Bearer(api_key.into()), retry) }
    }

    /// `GET /phone-number/{id}`: the number Vapi holds under `id`; None when there is none.
    pub async fn phone_number(&self, id: &str) -> Result<Option<String>, ProviderError> {
        let answer = match self.api.call(Method::GET, &format!("/phone-number/{id}"), None, &format!("phone number {id}")).await {
            Err(ProviderError::NotFound { .. }) => return Ok(None),
            other => other?,
        };
        answer
            .get("number")
            .and_then(Value::as_str)
            .map(|n| Some(n.to_string()))
            .ok_or_else(|| crate::calls::missing_id(PROVIDER, "number"))
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, id: &str) -> Result<Value, ProviderError> {
        self.api.call(method, path, body, &format!("assistant {id}")).await
    }
}

/// The body of a create or update: Vapi's CreateAssistantDTO fields.
pub(crate) fn assistant_body(name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Value {
    let mut body = json!({
        "name": name,
        "firstMessage": config.first_message,
        "model": {
            "provider": "openai",
            "model": config.model.as_deref().unwrap_or(DEFAULT_MODEL),
            "messages": [{ "role": "system", "content": config.system_prompt }],
            "tools": tools.vapi(),
        },
    });
    if let Some(voice) = &config.voice {
        body["voice"] = json!({ "provider": voice.provider, "voiceId": voice.voice_id });
    }
    if let Some(m) = &config.end_call_message {
        body["endCallMessage"] = json!(m);
    }
    if let Some(s) = config.silence_timeout_seconds {
        body["silenceTimeoutSeconds"] = json!(s);
    }
    if let Some(s) = config.max_duration_seconds {
        body["maxDurationSeconds"] = json!(s);
    }
    body
}

fn protocol(detail: &str) -> ProviderError {
    ProviderError::Protocol { provider: PROVIDER, detail: detail.into() }
}

/// Reads a Vapi assistant object back into our config.
pub(crate) fn parse_assistant(v: &Value) -> Result<ProviderAssistant, ProviderError> {
    let id = v["id"].as_str().ok_or_else(|| protocol("assistant without an id"))?;
    let system_prompt = v["model"]["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "system"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let seconds = |k: &str| v[k].as_f64().map(|s| s.round() as u32);
    let voice = match (v["voice"]["provider"].as_str(), v["voice"]["voiceId"].as_str()) {
        (Some(provider), Some(voice_id)) => Some(Voice { provider: provider.into(), voice_id: voice_id.into() }),
        _ => None,
    };
    Ok(ProviderAssistant {
        id: id.to_string(),
        name: v["name"].as_str().unwrap_or(id).to_string(),
        config: AssistantConfig {
            system_prompt: system_prompt.to_string(),
            first_message: v["firstMessage"].as_str().unwrap_or_default().to_string(),
            end_call_message: v["endCallMessage"].as_str().map(str::to_string),
            voice,
            model: v["model"]["model"].as_str().map(str::to_string),
            language: None,
            silence_timeout_seconds: seconds("silenceTimeoutSeconds"),
            max_duration_seconds: seconds("maxDurationSeconds"),
            tools: None,
        },
    })
}

impl AssistantProvider for Vapi {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vapi
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Result<String, ProviderError> {
        let created = self.call(Method::POST, "/assistant", Some(&assistant_body(name, config, tools)), "(new)").await?;
        Ok(parse_assistant(&created)?.id)
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        parse_assistant(&self.call(Method::GET, &format!("/assistant/{id}"), None, id).await?)
    }

    async fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        tools: &crate::AgentToolset,
    ) -> Result<(), ProviderError> {
        self.call(Method::PATCH, &format!("/assistant/{id}"), Some(&assistant_body(name, config, tools)), id).await?;
        Ok(())
    }
}

impl crate::CallProvider for Vapi {
    async fn place_call(&self, call: &crate::CallRequest) -> Result<String, ProviderError> {
        let phone_number_id = call
            .from_number_id
            .as_deref()
            .ok_or(ProviderError::NotConfigured { provider: PROVIDER, variable: "the caller ID's vapiPhoneNumberId (POST /caller-ids)" })?;
        let assistant_id = call.assistant_provider_id.as_deref().ok_or_else(|| crate::calls::missing_id(PROVIDER, "assistant id"))?;
        let mut customer = json!({ "number": call.to.as_str() });
        if let Some(name) = call.variables.get("name") {
            customer["name"] = json!(name);
        }
        // Vapi's own detection: with a message it leaves it after the beep, without one it hangs up
        let mut overrides = json!({
            "variableValues": call.variables_with_ids(),
            "maxDurationSeconds": call.max_call_seconds,
            "voicemailDetection": { "provider": "vapi" },
        });
        if let Some(message) = call.voicemail_message() {
            overrides["voicemailMessage"] = json!(message);
        }
        let body = json!({
            "assistantId": assistant_id,
            "phoneNumberId": phone_number_id,
            "customer": customer,
            "assistantOverrides": overrides,
            "metadata": call.metadata(),
        });
        let answer = self.api.call(Method::POST, "/call", Some(&body), &format!("assistant {assistant_id}")).await?;
        answer.get("id").and_then(Value::as_str).map(str::to_string).ok_or_else(|| crate::calls::missing_id(PROVIDER, "id"))
    }

    /// `GET /call?createdAtGt=…&limit=100`, matched on the call id we put in its `metadata`.
    async fn find_placed_call(
        &self,
        call: &crate::CallRequest,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, ProviderError> {
        let from = (since - chrono::TimeDelta::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let query = [("createdAtGt", from), ("limit", "100".to_string())];
        let answer = self.api.send(Method::GET, "/call", crate::http::Body::Query(&query), "calls").await?;
        let calls = answer.as_array().ok_or_else(|| crate::calls::missing_id(PROVIDER, "list of calls"))?;
        let mut found = crate::calls::ids_with_our_call_id(calls, call, "id");
        // Vapi lists newest first
        found.reverse();
        Ok(found)
    }
}

/// The `x-vapi-signature` of a server message body under an HMAC credential: hex HMAC-SHA256.
pub fn webhook_signature(key: &str, body: &[u8]) -> String {
    crate::hmac_sha256_hex(key, &[body])
}
