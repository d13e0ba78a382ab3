//! The `webhooks` HTTP function: the routes Twilio, ElevenLabs, Vapi and Retell call.
//!
//! Each request is verified first (nothing is read or stored before its signature is good),
//! normalised into call events, and handed to `app::delivery`, which applies them.

pub mod elevenlabs;
pub mod normalise;
pub mod retell;
pub mod twilio;
pub mod vapi;

use app::delivery::{Courier, Delivery, DeliveryStore};
use app::tick::TickRequests;
use axum::{
    body::Bytes,
    extract::{OriginalUri, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use normalise::Malformed;
use platform::{Problem, WebhookSecrets};
use providers::signatures::{self as verify, Refusal};
use providers::{CallProviders, Secret};
use store::StoreError;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the handlers need: the store, the public URL providers call and the secrets that verify
/// them, the providers (to hang up on answering machines) and a way to ask for a campaign's tick.
#[derive(Clone)]
pub struct WebhookState<S, T> {
    pub store: S,
    /// `OUTDIAL_PUBLIC_URL`: Twilio signs the URL it requested, and behind a function URL the host seen may differ.
    pub public_url: Option<String>,
    pub secrets: std::sync::Arc<WebhookSecrets>,
    pub calls: CallProviders,
    pub ticks: T,
    /// Provider messages of types outdial does not act on, counted by type (not stored).
    pub ignored: std::sync::Arc<IgnoredMessages>,
    /// USD per 1,000 ElevenLabs credits (`OUTDIAL_ELEVENLABS_CREDIT_PRICE`).
    pub elevenlabs_credit_price: Option<domain::Money>,
}

/// Counts of messages received and not stored, by provider and type; at most `MAX_KINDS` kinds
/// are told apart (the rest count as `other`), so a sender cannot grow it without bound.
#[derive(Debug, Default)]
pub struct IgnoredMessages(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl IgnoredMessages {
    pub const MAX_KINDS: usize = 64;

    /// Counts one message of `kind`; the count so far.
    pub fn count(&self, provider: &str, kind: &str) -> u64 {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = format!("{provider}:{kind}");
        if !counts.contains_key(&key) && counts.len() >= Self::MAX_KINDS {
            key = format!("{provider}:other");
        }
        let n = counts.entry(key).or_insert(0);
        *n += 1;
        *n
    }

    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl<S, T> WebhookState<S, T> {
    pub fn from_config(config: &platform::Config, store: S, ticks: T) -> Self {
        Self {
            store,
            public_url: config.dialing.calls.public_url.clone(),
            secrets: std::sync::Arc::new(config.webhooks.clone()),
            calls: CallProviders::new(&config.providers, &config.dialing.calls),
            ticks,
            ignored: std::sync::Arc::default(),
            elevenlabs_credit_price: config.elevenlabs_credit_price,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::Refused(r) => Problem::from(r),
            Self::Malformed(m) => Problem::new(StatusCode::BAD_REQUEST, "webhook-malformed", "Malformed webhook", m.to_string()),
            Self::Store(e) => Problem::from(e),
        };
        problem.into_response()
    }
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: DeliveryStore, T: TickRequests>() -> OpenApiRouter<WebhookState<S, T>> {
    OpenApiRouter::new()
        .routes(routes!(twilio_status))
        .routes(routes!(twilio_amd))
        .routes(routes!(twilio_recording))
        .routes(routes!(elevenlabs_post_call))
        .routes(routes!(vapi_server_message))
        .routes(routes!(retell_webhook))
}

/// Logs a refusal (no payload, so no phone number, is ever logged) and passes it on.
fn refused(provider: &'static str, path: &str, refusal: Refusal) -> WebhookError {
    tracing::warn!(provider, path, reason = %refusal, "webhook refused before anything was stored");
    WebhookError::Refused(refusal)
}

/// What a signature is checked over: the path and query the provider requested, the headers and
/// the raw body.
pub struct SignedRequest {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl SignedRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for SignedRequest {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // the URI before any nesting: the one the provider signed
        let uri = request.extensions().get::<OriginalUri>().map_or_else(|| request.uri().clone(), |u| u.0.clone());
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str()).to_string();
        Ok(Self { path, headers, body })
    }
}

/// Verifies a Twilio form callback against the exact public URL it was sent to, then delivers
/// what `normalise` makes of it.
async fn twilio_callback<S: DeliveryStore, T: TickRequests>(
    state: &WebhookState<S, T>,
    request: SignedRequest,
    normalise: fn(&twilio::Form, DateTime<Utc>) -> Result<Delivery, Malformed>,
) -> Handled {
    let path = &request.path;
    let (Some(base), Some(token)) = (&state.public_url, &state.secrets.twilio_auth_token) else {
        let missing = if state.public_url.is_none() { "OUTDIAL_PUBLIC_URL" } else { "TWILIO_AUTH_TOKEN" };
        return Err(refused("twilio", path, Refusal::NotConfigured(missing)));
    };
    // a body that is not a form cannot have been signed as one
    let form = twilio::Form::parse(&request.body).map_err(|_| refused("twilio", path, Refusal::Invalid("X-Twilio-Signature")))?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    verify::twilio(token.expose(), &url, &form.pairs, request.header("x-twilio-signature")).map_err(|r| refused("twilio", path, r))?;
    let now = Utc::now();
    let delivery = Delivery { our_call_id: twilio::call_id_in(path), ..normalise(&form, now)? };
    deliver(state, delivery, now).await
}

type Handled = Result<StatusCode, WebhookError>;

/// Applies a verified delivery.
async fn deliver<S: DeliveryStore, T: TickRequests>(state: &WebhookState<S, T>, delivery: Delivery, now: DateTime<Utc>) -> Handled {
    let courier = Courier { store: &state.store, calls: &state.calls, ticks: &state.ticks };
    app::delivery::deliver(&courier, delivery, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Twilio call status callback (form): queued, initiated, ringing, in-progress, completed, busy,
/// no-answer, failed, canceled.
#[utoipa::path(post, path = "/webhooks/twilio/status", tag = "webhooks",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted (also for unknown calls and values, kept in the log)"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "no signature"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "invalid signature"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn twilio_status<S: DeliveryStore, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::status).await
}

/// Twilio asynchronous answering-machine detection callback (form).
#[utoipa::path(post, path = "/webhooks/twilio/amd", tag = "webhooks",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "Twilio's AMD callback form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn twilio_amd<S: DeliveryStore, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::amd).await
}

/// Twilio recording status callback (form).
#[utoipa::path(post, path = "/webhooks/twilio/recording", tag = "webhooks",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "Twilio's recording status form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn twilio_recording<S: DeliveryStore, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::recording).await
}

/// ElevenLabs post-call webhook (`post_call_transcription`, `call_initiation_failure`, …), signed
/// with `ElevenLabs-Signature` (30-minute tolerance).
#[utoipa::path(post, path = "/webhooks/elevenlabs", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn elevenlabs_post_call<S: DeliveryStore, T: TickRequests>(
    State(state): State<WebhookState<S, T>>,
    request: SignedRequest,
) -> Handled {
    let now = Utc::now();
    let secret = state.secrets.elevenlabs.as_ref().map(Secret::expose).ok_or(Refusal::NotConfigured("ELEVENLABS_WEBHOOK_SECRET"));
    secret
        .and_then(|secret| verify::elevenlabs(secret, request.header("elevenlabs-signature"), &request.body, now))
        .map_err(|r| refused("elevenlabs", &request.path, r))?;
    deliver(&state, elevenlabs::post_call(&request.body, now, state.elevenlabs_credit_price)?, now).await
}

/// Vapi server messages (`status-update`, `end-of-call-report`; other types are counted, not stored),
/// authenticated by `X-Vapi-Secret`, `Authorization: Bearer` or, when configured, `x-vapi-signature`.
#[utoipa::path(post, path = "/webhooks/vapi", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn vapi_server_message<S: DeliveryStore, T: TickRequests>(
    State(state): State<WebhookState<S, T>>,
    request: SignedRequest,
) -> Handled {
    let secrets = &state.secrets;
    verify::vapi(
        secrets.vapi_secret.as_ref().map(Secret::expose),
        secrets.vapi_hmac_secret.as_ref().map(Secret::expose),
        &request.headers,
        &request.body,
    )
    .map_err(|r| refused("vapi", &request.path, r))?;
    let now = Utc::now();
    match vapi::server_message(&request.body, now)? {
        vapi::ServerMessage::Call(delivery) => deliver(&state, delivery, now).await,
        vapi::ServerMessage::Ignored { kind } => {
            let count = state.ignored.count("vapi", &kind);
            tracing::debug!(message_type = %kind, count, "Vapi message type not acted on: counted, not stored");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// Retell webhooks (`call_started`, `call_ended`, `call_analyzed`, `transcript_updated`), signed
/// with `X-Retell-Signature` (5-minute tolerance).
#[utoipa::path(post, path = "/webhooks/retell", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "this provider's secret (or OUTDIAL_PUBLIC_URL) is not configured")))]
async fn retell_webhook<S: DeliveryStore, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    let now = Utc::now();
    let key = state.secrets.retell_api_key.as_ref().map(Secret::expose).ok_or(Refusal::NotConfigured("RETELL_API_KEY"));
    key.and_then(|key| verify::retell(key, request.header("x-retell-signature"), &request.body, now))
        .map_err(|r| refused("retell", &request.path, r))?;
    deliver(&state, retell::webhook(&request.body, now)?, now).await
}

#[cfg(test)]
mod tests {
    use super::IgnoredMessages;

    #[test]
    fn ignored_messages_are_counted_by_type_within_a_bound() {
        let ignored = IgnoredMessages::default();
        assert_eq!((ignored.count("vapi", "speech-update"), ignored.count("vapi", "speech-update")), (1, 2));
        for n in 0..IgnoredMessages::MAX_KINDS + 10 {
            ignored.count("vapi", &format!("kind-{n}"));
        }
        let counts = ignored.counts();
        assert_eq!(counts.len(), IgnoredMessages::MAX_KINDS + 1, "the kinds past the bound count as other");
        assert_eq!((counts["vapi:speech-update"], counts["vapi:other"]), (2, 11));
    }
}
