//! The `tools` HTTP function: the agent's tools (time, booking, email, do-not-call, end call) for
//! agents of every provider, each route speaking one provider's format and all of them running the
//! one implementation, `app::AgentTools`:
//! - `POST /tools/vapi`: Vapi `tool-calls` server messages, authenticated as Vapi's webhooks;
//! - `POST /tools/retell/{tool}`: Retell custom functions, signed with `X-Retell-Signature`;
//! - `POST /tools/elevenlabs/{tool}`: ElevenLabs webhook tools, with the organisation's tool secret;
//! - `POST /tools/{tool}`: plain JSON with an API key;
//! - `GET /tools/time`: the time tool alone, for any zone (what the `edge-time` component answers).
//!
//! The call is found from the provider's call id; a call that is not outdial's is a 404. A tool
//! that cannot do what it was asked answers a sentence the agent can say.

use app::{AgentTools, ToolBudget, ToolCall, ToolError, elevenlabs_tool_secret, is_elevenlabs_tool_secret};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use chrono::Utc;
use domain::{Call, CallProvider, Contact, OrgId};
use platform::{AuthState, Authenticated, Problem, SecretBox, WebhookSecrets, extract::Query};
use providers::{CallProviders, Secret, signatures as verify};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use store::Store;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use providers::TOOL_SECRET_HEADER;

/// What the handlers need: the store, the tools, the providers (ending a call hangs up there), the
/// secrets that verify Vapi and Retell, and the key each organisation's ElevenLabs tool secret is
/// made with.
#[derive(Clone)]
pub struct ToolsState<S> {
    pub store: S,
    pub tools: AgentTools,
    pub calls: CallProviders,
    pub secrets: Arc<WebhookSecrets>,
    /// `OUTDIAL_SECRET_KEY`; without it ElevenLabs tool requests are refused.
    pub key: Option<SecretBox>,
}

impl<S> ToolsState<S> {
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        Self {
            store,
            tools: AgentTools::from_config(&config.tools),
            calls: CallProviders::new(&config.providers, &config.dialing.calls),
            secrets: Arc::new(config.webhooks.clone()),
            key: config.secrets.clone(),
        }
    }
}

impl<S: Store> AuthState for ToolsState<S> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.store
    }
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: Store>() -> OpenApiRouter<ToolsState<S>> {
    OpenApiRouter::new()
        .routes(routes!(vapi_tool_calls))
        .routes(routes!(retell_function))
        .routes(routes!(elevenlabs_tool))
        .routes(routes!(elevenlabs_tool_secret_of))
        .routes(routes!(time_now))
        .routes(routes!(plain_tool))
}

/// The call a tool request is for, as outdial knows it.
struct CallContext {
    org: OrgId,
    call: Call,
    contact: Contact,
    provider: CallProvider,
}

/// The outdial call `provider` knows as `provider_call_id`; a 404 when it is not one of ours.
async fn call_of<S: Store>(store: &S, provider: CallProvider, provider_call_id: &str) -> Result<CallContext, Problem> {
    if provider_call_id.is_empty() {
        return Err(not_an_outdial_call(provider, provider_call_id));
    }
    let (org, id) =
        store.find_call_by_provider_id(provider, provider_call_id).await?.ok_or_else(|| not_an_outdial_call(provider, provider_call_id))?;
    context(store, org, store.get_call(org, id).await?, provider).await
}

/// The one answer for a provider call id outdial does not know, or one the caller may not see:
/// the same 404 for both, so no one learns which of another organisation's calls exist.
fn not_an_outdial_call(provider: CallProvider, provider_call_id: &str) -> Problem {
    Problem::not_found(format!("{} call {provider_call_id:?} is not an outdial call", provider.as_str()))
}

/// `org`'s call `call_id` (outdial's id, as text), carried by its campaign's provider; a 404 when
/// the organisation has no such call.
async fn call_in<S: Store>(store: &S, org: OrgId, call_id: &str) -> Result<CallContext, Problem> {
    let id = domain::CallId::parse(call_id).map_err(|_| Problem::not_found(format!("call {call_id} was not found")))?;
    let call = store.get_call(org, id).await?;
    let provider = store.get_campaign(org, call.campaign_id).await?.settings.provider;
    context(store, org, call, provider).await
}

async fn context<S: Store>(store: &S, org: OrgId, call: Call, provider: CallProvider) -> Result<CallContext, Problem> {
    let contact = store.get_contact(org, call.campaign_id, call.contact_id).await?;
    Ok(CallContext { org, call, contact, provider })
}

/// Runs tool `name` for the call; each request has its own budget (a provider sends one tool call
/// per request and waits for it).
async fn run<S: Store>(state: &ToolsState<S>, at: &CallContext, name: &str, parameters: &Value) -> Result<String, ToolError> {
    let call = ToolCall {
        org: at.org,
        call_id: at.call.id,
        contact: &at.contact,
        provider: at.provider,
        provider_call_id: at.call.provider_call_id.as_deref().unwrap_or_default(),
    };
    state.tools.run(&state.store, &state.calls, call, &ToolBudget::default(), name, parameters, Utc::now()).await
}

/// A tool's answer as the agent hears it: what it did, or what went wrong.
fn sayable(answer: Result<String, ToolError>) -> String {
    answer.unwrap_or_else(|e| e.to_string())
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "tool-request-malformed", "Malformed tool request", detail)
}

fn refused(provider: &'static str, refusal: verify::Refusal) -> Problem {
    tracing::warn!(provider, reason = %refusal, "tool request refused before anything ran");
    Problem::from(refusal)
}

/// Vapi's `tool-calls` message.
#[derive(Debug, Deserialize)]
struct VapiEnvelope {
    message: VapiToolCalls,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VapiToolCalls {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    tool_call_list: Vec<VapiToolCall>,
    call: VapiCall,
}

#[derive(Debug, Deserialize)]
struct VapiCall {
    id: String,
}

#[derive(Debug, Deserialize)]
struct VapiToolCall {
    id: String,
    function: VapiFunction,
}

#[derive(Debug, Deserialize)]
struct VapiFunction {
    name: String,
    /// An object, or (as OpenAI writes it) a string holding one.
    #[serde(default)]
    arguments: Value,
}

/// What Vapi expects back: one result per tool call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapiResults {
    pub results: Vec<VapiResult>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapiResult {
    pub tool_call_id: String,
    /// What the agent is told.
    pub result: String,
}

fn arguments(raw: &Value) -> Value {
    match raw {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Vapi `tool-calls` (a tool's `server.url`): each tool call of the message run for the call,
/// answered `{"results":[{"toolCallId","result"}]}`. Authenticated as Vapi's server messages:
/// `X-Vapi-Secret`, `Authorization: Bearer` or, when configured, `x-vapi-signature`.
#[utoipa::path(post, path = "/tools/vapi", tag = "tools", request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = VapiResults), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not an outdial call"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "Vapi's secret is not configured")))]
async fn vapi_tool_calls<S: Store>(
    State(state): State<ToolsState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<VapiResults>, Problem> {
    let secrets = &state.secrets;
    verify::vapi(secrets.vapi_secret.as_ref().map(Secret::expose), secrets.vapi_hmac_secret.as_ref().map(Secret::expose), &headers, &body)
        .map_err(|r| refused("vapi", r))?;
    let VapiEnvelope { message } = serde_json::from_slice(&body).map_err(|e| malformed(format!("not a Vapi tool-calls message: {e}")))?;
    if message.kind != "tool-calls" {
        return Err(malformed(format!("a {:?} message was sent to the tools URL; only tool-calls are answered here", message.kind)));
    }
    let at = call_of(&state.store, CallProvider::Vapi, &message.call.id).await?;
    let mut results = Vec::with_capacity(message.tool_call_list.len());
    for tool_call in message.tool_call_list {
        let answer = run(&state, &at, &tool_call.function.name, &arguments(&tool_call.function.arguments)).await;
        results.push(VapiResult { tool_call_id: tool_call.id, result: sayable(answer) });
    }
    Ok(Json(VapiResults { results }))
}

/// Retell's custom function request.
#[derive(Debug, Deserialize)]
struct RetellFunction {
    #[serde(default)]
    args: Value,
    call: RetellCall,
}

#[derive(Debug, Deserialize)]
struct RetellCall {
    call_id: String,
}

/// A Retell custom function (`general_tools` `url`): `{name, args, call}` signed with
/// `X-Retell-Signature`; the answer is the text the agent is told.
#[utoipa::path(post, path = "/tools/retell/{tool}", tag = "tools", params(("tool" = String, Path, description = "the tool's name, e.g. book_appointment")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, content_type = "text/plain", body = String, description = "what the agent is told"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not an outdial call"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "RETELL_API_KEY is not configured")))]
async fn retell_function<S: Store>(
    State(state): State<ToolsState<S>>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<String, Problem> {
    let key = state.secrets.retell_api_key.as_ref().map(Secret::expose).ok_or(verify::Refusal::NotConfigured("RETELL_API_KEY"));
    let signature = headers.get("x-retell-signature").and_then(|v| v.to_str().ok());
    key.and_then(|key| verify::retell(key, signature, &body, Utc::now())).map_err(|r| refused("retell", r))?;
    let request: RetellFunction =
        serde_json::from_slice(&body).map_err(|e| malformed(format!("not a Retell custom function request: {e}")))?;
    let at = call_of(&state.store, CallProvider::Retell, &request.call.call_id).await?;
    Ok(sayable(run(&state, &at, &tool, &request.args).await))
}

/// What an ElevenLabs webhook tool answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolAnswer {
    /// What the agent is told.
    pub result: String,
}

/// An ElevenLabs webhook tool. The body holds the tool's parameters and either `outdial_org_id`
/// and `outdial_call_id` (from the dynamic variables outdial passes on every call, native or
/// through the bridge) or `conversation_id` (from `system__conversation_id`: native calls);
/// `X-Outdial-Tool-Secret` carries the organisation's tool secret.
#[utoipa::path(post, path = "/tools/elevenlabs/{tool}", tag = "tools", params(("tool" = String, Path, description = "the tool's name, e.g. send_email")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = ToolAnswer), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "not an outdial call"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "OUTDIAL_SECRET_KEY is not configured")))]
async fn elevenlabs_tool<S: Store>(
    State(state): State<ToolsState<S>>,
    Path(tool): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ToolAnswer>, Problem> {
    let key = state.key.as_ref().ok_or_else(|| refused("elevenlabs", verify::Refusal::NotConfigured("OUTDIAL_SECRET_KEY")))?;
    let given = headers
        .get(TOOL_SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("elevenlabs", verify::Refusal::Missing(TOOL_SECRET_HEADER)))?;
    let mut parameters: serde_json::Map<String, Value> =
        serde_json::from_slice(&body).map_err(|e| malformed(format!("the body is not a JSON object: {e}")))?;
    let mut text = |key: &str| match parameters.remove(key) {
        Some(Value::String(v)) if !v.trim().is_empty() => Some(v),
        _ => None,
    };
    let (conversation, org, call) = (text("conversation_id"), text(domain::ORG_ID_VARIABLE), text(domain::CALL_ID_VARIABLE));
    // the secret names the organisation: another one's runs nothing, and learns nothing of its calls
    let ours = |org: OrgId| {
        if is_elevenlabs_tool_secret(key, org, given) {
            Ok(())
        } else {
            Err(refused("elevenlabs", verify::Refusal::Invalid(TOOL_SECRET_HEADER)))
        }
    };
    let at = match (org.and_then(|org| OrgId::parse(&org).ok()), call) {
        // outdial's ids (from dynamic variables) find bridge calls too, whose conversation is not the call's provider id
        (Some(org), Some(call)) => {
            ours(org)?;
            call_in(&state.store, org, &call).await?
        }
        _ => {
            let conversation = conversation
                .ok_or_else(|| malformed("the body has no conversation_id: fill it from the system__conversation_id dynamic variable"))?;
            let at = call_of(&state.store, CallProvider::Elevenlabs, &conversation).await?;
            if ours(at.org).is_err() {
                return Err(not_an_outdial_call(CallProvider::Elevenlabs, &conversation));
            }
            at
        }
    };
    Ok(Json(ToolAnswer { result: sayable(run(&state, &at, &tool, &Value::Object(parameters)).await) }))
}

/// The organisation's ElevenLabs tool secret and the header its webhook tools send it in.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolSecret {
    /// `X-Outdial-Tool-Secret`.
    pub header: String,
    pub secret: String,
}

/// The organisation's ElevenLabs tool secret, for the `request_headers` of its agents' webhook
/// tools (`POST /tools/elevenlabs/{tool}`).
#[utoipa::path(get, path = "/tools/elevenlabs/secret", tag = "tools", security(("apiKey" = [])),
    responses((status = 200, body = ToolSecret), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "OUTDIAL_SECRET_KEY is not configured")))]
async fn elevenlabs_tool_secret_of<S: Store>(
    State(state): State<ToolsState<S>>,
    Authenticated(org): Authenticated,
) -> Result<Json<ToolSecret>, Problem> {
    let key = state.key.as_ref().ok_or_else(|| Problem::from(verify::Refusal::NotConfigured("OUTDIAL_SECRET_KEY")))?;
    Ok(Json(ToolSecret { header: TOOL_SECRET_HEADER.into(), secret: elevenlabs_tool_secret(key, org) }))
}

/// A tool request in outdial's own format.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlainToolRequest {
    /// outdial's id of the call the tool is for.
    pub call_id: String,
    /// The tool's parameters, e.g. `{"when": "tomorrow 3pm"}` for `current_time`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Value,
}

/// A tool's failure as a problem of the plain route; the detail is what the agent would hear.
fn problem(e: ToolError) -> Problem {
    let (status, slug, title) = match &e {
        ToolError::Input(_) => (StatusCode::UNPROCESSABLE_ENTITY, "tool-parameters-invalid", "Tool parameters invalid"),
        ToolError::Refused(_) => (StatusCode::CONFLICT, "tool-refused", "Tool refused"),
        ToolError::NotConfigured { .. } => (StatusCode::SERVICE_UNAVAILABLE, "tool-not-configured", "Tool not configured"),
        ToolError::Failed(_) => (StatusCode::BAD_GATEWAY, "tool-failed", "Tool failed"),
        ToolError::TimedOut { .. } => (StatusCode::GATEWAY_TIMEOUT, "tool-timed-out", "Tool timed out"),
    };
    Problem::new(status, slug, title, e.to_string())
}

/// Any tool for any call of the organisation, in plain JSON with an API key: `{callId, parameters}`
/// → `{result}`; a tool that cannot do it is a problem (422 bad parameters, 409 refused, 502
/// failed, 503 not configured, 504 too slow) whose detail is the sentence the agent would hear.
#[utoipa::path(post, path = "/tools/{tool}", tag = "tools", params(("tool" = String, Path, description = "the tool's name, e.g. current_time")),
    request_body = PlainToolRequest, security(("apiKey" = [])),
    responses((status = 200, body = ToolAnswer), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "no such call in the organisation"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json"),
        (status = 504, body = Problem, content_type = "application/problem+json")))]
async fn plain_tool<S: Store>(
    State(state): State<ToolsState<S>>,
    Authenticated(org): Authenticated,
    Path(tool): Path<String>,
    platform::extract::Json(request): platform::extract::Json<PlainToolRequest>,
) -> Result<Json<ToolAnswer>, Problem> {
    let at = call_in(&state.store, org, &request.call_id).await?;
    Ok(Json(ToolAnswer { result: run(&state, &at, &tool, &request.parameters).await.map_err(problem)? }))
}

/// The time tool's input for any zone: `tz`, an IANA time zone (e.g. `America/New_York`), and
/// `at`, the instant to answer for (RFC 3339; now when left out).
#[derive(Debug, Deserialize)]
pub struct TimeQuery {
    pub tz: String,
    pub at: Option<String>,
}

impl IntoParams for TimeQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let zones = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|z| z.name())));
        let instant = ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
        vec![
            ParameterBuilder::new()
                .name("tz")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("An IANA time zone, e.g. America/New_York."))
                .schema(Some(zones))
                .build(),
            ParameterBuilder::new()
                .name("at")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("The instant to answer for (RFC 3339); now when left out."))
                .schema(Some(instant))
                .build(),
        ]
    }
}

/// The time tool for any zone, no call needed: the local time, weekday, business and calling
/// hours. The `edge-time` Spin component answers the same JSON for the same input.
#[utoipa::path(get, path = "/tools/time", tag = "tools", params(TimeQuery),
    responses((status = 200, body = agent_time::TimeAnswer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn time_now(Query(query): Query<TimeQuery>) -> Result<Json<agent_time::TimeAnswer>, Problem> {
    let invalid = |field: &'static str, reason: String| Problem::from(domain::ParseError::new(field, reason));
    let zone = agent_time::zone(&query.tz).map_err(|e| invalid("tz", e.0))?;
    let at = match &query.at {
        Some(at) => agent_time::instant(at).map_err(|e| invalid("at", e.0))?,
        None => Utc::now(),
    };
    Ok(Json(agent_time::answer(at, zone, None).map_err(|e| invalid("at", e.0))?))
}
