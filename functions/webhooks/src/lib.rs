//! The `webhooks` HTTP function: the routes Twilio, ElevenLabs, Vapi and Retell call.
//!
//! Each request is verified first (nothing is read or stored before its signature is good),
//! normalised into call events, and applied through the store: once per dedupe key, states only
//! forward, capacity released once, the contact retried or finalised. Events for a provider call
//! id no call has yet are kept as orphans for the dialer or the next tick to apply. Answering-
//! machine results drive the campaign's voicemail action; an opt-out puts the number on the
//! do-not-call list; a call that ended asks for its campaign's tick so its slot is used at once.

pub mod elevenlabs;
pub mod normalise;
pub mod retell;
pub mod twilio;
pub mod vapi;

use axum::{
    body::Bytes,
    extract::{OriginalUri, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use campaign_tick::TickRequests;
use chrono::{DateTime, Utc};
use domain::{AnsweredBy, CallEventKind, CallId, OrgId, VoicemailStep};
use normalise::{Delivery, Malformed};
use platform::{Problem, WebhookSecrets};
use providers::CallProviders;
use providers::signatures::{self as verify, Refusal};
use store::{PlacedCall, Store, StoreError};
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
pub fn router<S: Store, T: TickRequests>() -> OpenApiRouter<WebhookState<S, T>> {
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
async fn twilio_callback<S: Store, T: TickRequests>(
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
    verify::twilio(token, &url, &form.pairs, request.header("x-twilio-signature")).map_err(|r| refused("twilio", path, r))?;
    let now = Utc::now();
    let delivery = Delivery { our_call_id: twilio::call_id_in(path), ..normalise(&form, now)? };
    deliver(state, delivery, now).await
}

type Handled = Result<StatusCode, WebhookError>;

/// Twilio call status callback (form): queued, initiated, ringing, in-progress, completed, busy,
/// no-answer, failed, canceled.
#[utoipa::path(post, path = "/webhooks/twilio/status", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted (also for unknown calls and values, kept in the log)"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "no signature"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "invalid signature")))]
async fn twilio_status<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::status).await
}

/// Twilio asynchronous answering-machine detection callback (form).
#[utoipa::path(post, path = "/webhooks/twilio/amd", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's AMD callback form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn twilio_amd<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::amd).await
}

/// Twilio recording status callback (form).
#[utoipa::path(post, path = "/webhooks/twilio/recording", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's recording status form, signed with X-Twilio-Signature"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn twilio_recording<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    twilio_callback(&state, request, twilio::recording).await
}

/// ElevenLabs post-call webhook (`post_call_transcription`, `call_initiation_failure`, …), signed
/// with `ElevenLabs-Signature` (30-minute tolerance).
#[utoipa::path(post, path = "/webhooks/elevenlabs", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn elevenlabs_post_call<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    let now = Utc::now();
    let secret = state.secrets.elevenlabs.as_deref().ok_or(Refusal::NotConfigured("ELEVENLABS_WEBHOOK_SECRET"));
    secret
        .and_then(|secret| verify::elevenlabs(secret, request.header("elevenlabs-signature"), &request.body, now))
        .map_err(|r| refused("elevenlabs", &request.path, r))?;
    deliver(&state, elevenlabs::post_call(&request.body, now)?, now).await
}

/// Vapi server messages (`status-update`, `end-of-call-report`; others are kept in the log),
/// authenticated by `X-Vapi-Secret`, `Authorization: Bearer` or, when configured, `x-vapi-signature`.
#[utoipa::path(post, path = "/webhooks/vapi", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn vapi_server_message<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    let secrets = &state.secrets;
    verify::vapi(secrets.vapi_secret.as_deref(), secrets.vapi_hmac_secret.as_deref(), &request.headers, &request.body)
        .map_err(|r| refused("vapi", &request.path, r))?;
    let now = Utc::now();
    deliver(&state, vapi::server_message(&request.body, now)?, now).await
}

/// Retell webhooks (`call_started`, `call_ended`, `call_analyzed`, `transcript_updated`), signed
/// with `X-Retell-Signature` (5-minute tolerance).
#[utoipa::path(post, path = "/webhooks/retell", tag = "webhooks", request_body(content = Object, content_type = "application/json"),
    responses((status = 204, description = "accepted"), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn retell_webhook<S: Store, T: TickRequests>(State(state): State<WebhookState<S, T>>, request: SignedRequest) -> Handled {
    let now = Utc::now();
    let key = state.secrets.retell_api_key.as_deref().ok_or(Refusal::NotConfigured("RETELL_API_KEY"));
    key.and_then(|key| verify::retell(key, request.header("x-retell-signature"), &request.body, now))
        .map_err(|r| refused("retell", &request.path, r))?;
    deliver(&state, retell::webhook(&request.body, now)?, now).await
}

/// The call a delivery is about: by the ids it carries, else by the provider's call id, else by
/// our call id from its URL; true when found through our ids, so the call may lack the provider's id.
async fn target_of<S: Store>(store: &S, delivery: &Delivery) -> Result<Option<((OrgId, CallId), bool)>, StoreError> {
    if let Some(ids) = delivery.call {
        return Ok(Some((ids, true)));
    }
    if let Some(ids) = store.find_call_by_provider_id(delivery.provider, &delivery.provider_call_id).await? {
        return Ok(Some((ids, false)));
    }
    let Some(call) = delivery.our_call_id else { return Ok(None) };
    Ok(store.call_owner(call).await?.map(|org| ((org, call), true)))
}

/// Whether a delivery found through our ids is about its call's provider call: a call that has
/// no provider id yet (a placement whose answer the dialer never got) adopts the delivery's, so
/// the rest of its callbacks find it. False for a second provider call carrying the same call
/// id — a placement made twice, which must not steer the call.
async fn is_the_calls_own<S: Store>(store: &S, call: &domain::Call, delivery: &Delivery, now: DateTime<Utc>) -> Result<bool, StoreError> {
    if call.provider_call_id.as_deref() == Some(delivery.provider_call_id.as_str()) {
        return Ok(true);
    }
    let provider = store.get_campaign(call.org_id, call.campaign_id).await?.settings.provider;
    // a bridged Twilio call also hears from ElevenLabs, whose conversation id is not the call's
    if provider.reported_by() != delivery.provider {
        return Ok(true);
    }
    if call.provider_call_id.is_some() {
        return Ok(false);
    }
    let placed = PlacedCall { provider, provider_call_id: delivery.provider_call_id.clone(), caller_id: None, placed_at: now };
    match store.record_placed_call(call.org_id, call.id, placed).await {
        Ok(_) => {
            tracing::warn!(call = %call.id, provider = provider.as_str(), provider_call_id = %delivery.provider_call_id, "the provider's id, unknown until now, adopted from a callback carrying our call id");
            store::adopt_orphan_events(store, delivery.provider, &delivery.provider_call_id, now).await?;
            Ok(true)
        }
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A second provider call made for one of ours: its events are kept aside, and it is hung up
/// while it may still ring.
async fn stray_call<S: Store, T: TickRequests>(
    state: &WebhookState<S, T>,
    call: &domain::Call,
    delivery: Delivery,
    now: DateTime<Utc>,
) -> Handled {
    let ended = delivery.events.iter().any(|e| matches!(e.kind, CallEventKind::Ended { .. }));
    tracing::error!(call = %call.id, provider_call_id = %delivery.provider_call_id, kept = ?call.provider_call_id, "a second provider call carries this call's id: a placement made twice");
    if !ended {
        let provider = state.store.get_campaign(call.org_id, call.campaign_id).await?.settings.provider;
        if let Err(e) = state.calls.hang_up(provider, &delivery.provider_call_id).await {
            tracing::error!(call = %call.id, provider_call_id = %delivery.provider_call_id, error = %e, "could not hang up the second provider call");
        }
    }
    keep_orphans(&state.store, delivery, now).await
}

/// Applies a verified delivery: to its call when known, else kept as orphans.
pub async fn deliver<S: Store, T: TickRequests>(state: &WebhookState<S, T>, delivery: Delivery, now: DateTime<Utc>) -> Handled {
    let store = &state.store;
    let Some(((org, call_id), by_our_ids)) = target_of(store, &delivery).await? else { return keep_orphans(store, delivery, now).await };
    if by_our_ids {
        let call = match store.get_call(org, call_id).await {
            Ok(call) => call,
            // ids in a payload naming a call this deployment does not have
            Err(StoreError::NotFound { .. }) => return keep_orphans(store, delivery, now).await,
            Err(e) => return Err(e.into()),
        };
        if !is_the_calls_own(store, &call, &delivery, now).await? {
            return stray_call(state, &call, delivery, now).await;
        }
    }
    let mut answered_by: Option<AnsweredBy> = None;
    let mut opted_out = false;
    let mut changed = false;
    let mut call = None;
    for event in delivery.events.iter().cloned() {
        let (by, opt_out) = match &event.kind {
            CallEventKind::Details { details } => (details.answered_by, details.opted_out),
            _ => (None, false),
        };
        let applied = match store.apply_call_event(org, call_id, event, now).await {
            Ok(applied) => applied,
            // ids in a payload naming a call this deployment does not have
            Err(StoreError::NotFound { .. }) if call.is_none() => return keep_orphans(store, delivery, now).await,
            Err(e) => return Err(e.into()),
        };
        if !applied.duplicate {
            changed = true;
            answered_by = by.or(answered_by);
            opted_out |= opt_out;
        }
        call = Some(applied.call);
    }
    let Some(call) = call else { return Ok(StatusCode::NO_CONTENT) };
    if opted_out {
        let added = store.add_do_not_call(org, vec![call.phone.clone()], now).await?;
        tracing::info!(call = %call.id, phone = %domain::mask_phone(call.phone.as_str()), newly_listed = added.added, "callee opted out: number on the do-not-call list");
    }
    if let Some(by) = answered_by.filter(|_| !call.state.is_terminal()) {
        take_voicemail_action(state, &call, by).await?;
    }
    if changed && call.state.is_terminal() && call.post_call_at.is_none() {
        state.ticks.request_tick(org, call.campaign_id).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Keeps the events until their call is known; the dialer may have stored it meanwhile.
async fn keep_orphans<S: Store>(store: &S, delivery: Delivery, now: DateTime<Utc>) -> Handled {
    for event in delivery.events {
        store.record_orphan_event(delivery.provider, &delivery.provider_call_id, event, now).await?;
    }
    let adopted = store::adopt_orphan_events(store, delivery.provider, &delivery.provider_call_id, now).await?;
    tracing::info!(provider = delivery.provider.as_str(), provider_call_id = %delivery.provider_call_id, adopted, "event for a call not known (yet): kept as an orphan");
    Ok(StatusCode::NO_CONTENT)
}

/// Hangs up on a machine, or leaves the campaign's message first, as the campaign says.
async fn take_voicemail_action<S: Store, T: TickRequests>(
    state: &WebhookState<S, T>,
    call: &domain::Call,
    by: AnsweredBy,
) -> Result<(), WebhookError> {
    let campaign = state.store.get_campaign(call.org_id, call.campaign_id).await?;
    let voicemail = &campaign.settings.voicemail;
    let (Some(step), Some(provider_call_id)) = (by.voicemail_step(voicemail.action), &call.provider_call_id) else { return Ok(()) };
    let provider = campaign.settings.provider;
    let done = match (step, voicemail.message.as_deref()) {
        (VoicemailStep::LeaveMessage, Some(message)) => state.calls.leave_voicemail(provider, provider_call_id, message).await,
        _ => state.calls.hang_up(provider, provider_call_id).await,
    };
    match done {
        Ok(()) => tracing::info!(call = %call.id, ?step, "answering machine: voicemail action taken"),
        // the call still ends by itself (ring timeout, time limit); its outcome is voicemail either way
        Err(e) => tracing::error!(call = %call.id, ?step, error = %e, "answering machine: voicemail action failed"),
    }
    Ok(())
}
