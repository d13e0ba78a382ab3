//! The media bridge: an always-on service (not a Lambda) that carries a call's audio between
//! Twilio Media Streams and an ElevenLabs conversation, answers the agent's pings, turns its
//! interruptions into Twilio `clear`, runs its tools, saves the transcript in batches, and serves
//! a live feed per call, a health check and Prometheus metrics. SIGTERM drains it.

pub mod live;
pub mod metrics;
pub mod outbox;
pub mod protection;
mod session;
pub mod tools;
pub mod wire;

use app::AgentTools;
use axum::{
    Json, Router,
    extract::{Path, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response, Sse, sse::Event},
    routing::get,
};
use domain::CallId;
use platform::{Authenticated, BearerKey, Problem, auth::AuthState};
use providers::{CallProviders, ElevenLabs, ProviderAccounts, RetryPolicy, signatures};
use std::{sync::Arc, time::Duration};
use store::Store;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// How the bridge behaves; read once from the environment.
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    /// Twilio's auth token, which signs the stream's upgrade request (`TWILIO_AUTH_TOKEN`).
    pub twilio_auth_token: Option<providers::Secret>,
    /// The `wss://…/media` URL Twilio is given (`OUTDIAL_BRIDGE_URL`): what its signature covers.
    pub stream_url: Option<String>,
    /// `OUTDIAL_BRIDGE_VERIFY_SIGNATURE=false` accepts unsigned upgrades (local tunnels only).
    pub verify_signature: bool,
    /// How long active calls may go on after SIGTERM before they are closed (`OUTDIAL_BRIDGE_DRAIN_SECONDS`).
    pub drain_timeout: Duration,
    /// Audio frames queued per peer before the oldest are dropped (50 = one second).
    pub audio_queue_frames: usize,
    /// Most transcript writes per call: one per this interval, and one at the end.
    pub transcript_interval: Duration,
    /// How long Twilio has to send `start` after the socket opens.
    pub start_timeout: Duration,
    /// The bearer token `GET /metrics` takes (`OUTDIAL_METRICS_TOKEN`); None serves no metrics.
    pub metrics_token: Option<providers::Secret>,
    /// What one connection may hold, and how many are served at once (`OUTDIAL_MAX_CONNECTIONS`).
    pub connections: platform::server::ConnectionLimits,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            twilio_auth_token: None,
            stream_url: None,
            verify_signature: true,
            drain_timeout: Duration::from_secs(30),
            audio_queue_frames: 50,
            transcript_interval: Duration::from_secs(2),
            start_timeout: Duration::from_secs(10),
            metrics_token: None,
            connections: platform::server::ConnectionLimits::default(),
        }
    }
}

impl BridgeSettings {
    /// From the deployment's configuration, read once at start.
    pub fn from_config(config: &platform::Config) -> Self {
        Self {
            twilio_auth_token: config.providers.twilio.as_ref().map(|t| t.auth_token.clone()),
            stream_url: config.dialing.calls.bridge_url.clone(),
            verify_signature: config.bridge.verify_signature,
            drain_timeout: config.bridge.drain_timeout,
            metrics_token: config.bridge.metrics_token.clone(),
            connections: config.bridge.connections,
            ..Self::default()
        }
    }
}

/// The largest WebSocket message (and frame) a media stream may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Where shutdown is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    /// SIGTERM came: no new calls, active ones go on.
    Draining,
    /// The drain timed out: active calls close now.
    Closing,
}

/// Everything a call's bridge needs, shared by all calls.
pub struct Bridge<S> {
    pub store: S,
    /// Hangs up a call when the agent's side fails, or when the agent's end-call tool asks.
    pub calls: CallProviders,
    /// Opens conversations (signed URLs); None when `ELEVENLABS_API_KEY` is not set.
    pub agents: Option<ElevenLabs>,
    /// Runs the agent's tools, with the booking and email services the deployment configured.
    pub tools: AgentTools,
    pub settings: BridgeSettings,
    pub metrics: metrics::Metrics,
    pub live: live::LiveFeeds,
    phase: watch::Sender<Phase>,
    calls_in_flight: TaskTracker,
    /// Woken as each call starts (the task's scale-in protection looks then).
    call_started: tokio::sync::Notify,
}

impl<S: Store> Bridge<S> {
    pub fn new(store: S, calls: CallProviders, agents: Option<ElevenLabs>, tools: AgentTools, settings: BridgeSettings) -> Arc<Self> {
        if !settings.verify_signature {
            tracing::warn!(
                "the media stream's X-Twilio-Signature is NOT checked (OUTDIAL_BRIDGE_VERIFY_SIGNATURE=false): use this only behind a local tunnel"
            );
        }
        Arc::new(Self {
            store,
            calls,
            agents,
            tools,
            settings,
            metrics: metrics::Metrics::default(),
            live: live::LiveFeeds::default(),
            phase: watch::channel(Phase::Serving).0,
            calls_in_flight: TaskTracker::new(),
            call_started: tokio::sync::Notify::new(),
        })
    }

    /// From the deployment's configuration.
    pub fn from_config(store: S, config: &platform::Config, settings: BridgeSettings) -> Arc<Self> {
        let calls = CallProviders::new(&config.providers, &config.dialing.calls);
        Self::with_accounts(store, calls, &config.providers, AgentTools::from_config(&config.tools), settings)
    }

    /// With the ElevenLabs account among `accounts`, when there is one.
    pub fn with_accounts(
        store: S,
        calls: CallProviders,
        accounts: &ProviderAccounts,
        tools: AgentTools,
        settings: BridgeSettings,
    ) -> Arc<Self> {
        let agents = accounts
            .elevenlabs
            .as_ref()
            .map(|account| ElevenLabs::new(&account.base_url, account.api_key.expose(), RetryPolicy::default()));
        Self::new(store, calls, agents, tools, settings)
    }

    /// Stops taking calls, lets active ones finish for the drain timeout, then closes the rest.
    pub async fn drain(&self) {
        self.phase.send_replace(Phase::Draining);
        self.calls_in_flight.close();
        let active = self.calls_in_flight.len();
        tracing::info!(active, timeout_secs = self.settings.drain_timeout.as_secs(), "draining: no new calls");
        if tokio::time::timeout(self.settings.drain_timeout, self.calls_in_flight.wait()).await.is_err() {
            tracing::warn!(active = self.calls_in_flight.len(), "drain timeout: closing the calls still active");
            self.phase.send_replace(Phase::Closing);
            self.calls_in_flight.wait().await;
        }
        tracing::info!("drained");
    }

    /// Keeps the ECS task protected from scale-in and deploys while it carries calls.
    pub async fn protect_while_busy(&self, protection: protection::ScaleInProtection) {
        protection.guard(|| self.calls_in_flight.len(), &self.call_started).await;
    }

    pub(crate) fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }
}

impl<S: Store> AuthState for BridgeState<S> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.0.store
    }
}

/// The router's state: the shared bridge.
pub struct BridgeState<S>(pub Arc<Bridge<S>>);

impl<S> Clone for BridgeState<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// The routes a call needs, described for the OpenAPI document: `GET /media` (Twilio's stream),
/// `GET /calls/{id}/live` and `GET /metrics`. The local stack serves them beside its own.
pub fn routes<S: Store>() -> OpenApiRouter<BridgeState<S>> {
    OpenApiRouter::new().routes(routes!(media)).routes(routes!(live_feed)).routes(routes!(metrics_text))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "outdial media bridge",
        description = "Carries call audio between Twilio Media Streams and ElevenLabs. Live feeds take `Authorization: Bearer <API key>`."
    ),
    modifiers(&BearerKey)
)]
struct ApiDoc;

/// The service on its own (Fargate): the call routes, `GET /health` and `GET /openapi.json`.
pub fn router<S: Store>(bridge: Arc<Bridge<S>>) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::<S>()).routes(routes!(health)).split_for_parts();
    let document = Json(openapi);
    router.route("/openapi.json", get(move || async move { document })).with_state(BridgeState(bridge))
}

/// Serves until `stop` completes, then drains.
pub async fn serve<S: Store>(
    bridge: Arc<Bridge<S>>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_calls(bridge.clone(), router(bridge), listener, stop).await
}

/// Serves `app` (whose routes include the bridge's) until `stop` completes, then drains the
/// bridge's calls: the server's own shutdown does not wait for upgraded sockets.
pub async fn serve_calls<S: Store>(
    bridge: Arc<Bridge<S>>,
    app: Router,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopped, on_stop) = tokio::sync::oneshot::channel::<()>();
    // audio frames are small and must not wait for Nagle's algorithm to fill a segment
    let server = platform::server::serve(listener, app, bridge.settings.connections, true, async move {
        stop.await;
        let _ = stopped.send(());
    });
    let drained = async {
        if on_stop.await.is_ok() {
            bridge.drain().await;
        }
    };
    let (served, ()) = tokio::join!(server, drained);
    served
}

/// Twilio opens the call's media stream: a WebSocket upgrade, signed with `X-Twilio-Signature`
/// over the bridge's URL. The messages are Twilio Media Streams' (`connected`, `start` with the
/// call's `customParameters`, `media`, `dtmf`, `mark`, `stop`).
#[utoipa::path(get, path = "/media", tag = "media bridge",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the stream URL")),
    responses((status = 101, description = "switched to the media stream's WebSocket"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "not a WebSocket upgrade"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "no signature"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "invalid signature"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "draining, or signatures not configured")))]
async fn media<S: Store>(
    State(state): State<BridgeState<S>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return Problem::new(StatusCode::BAD_REQUEST, "not-a-websocket", "Not a WebSocket upgrade", e.body_text()).into_response();
        }
    };
    let bridge = state.0;
    if *bridge.phase.borrow() != Phase::Serving {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bridge-draining",
            "Draining",
            "this bridge is shutting down; Twilio should connect to another",
        )
        .into_response();
    }
    if let Err(problem) = check_signature(&bridge.settings, &headers) {
        tracing::warn!(detail = %problem.detail, "media stream refused before the upgrade");
        return problem.into_response();
    }
    // small socket buffers: thousands of calls share the machine's memory; Twilio's frames are
    // under 1 KiB, so anything past MAX_MESSAGE_BYTES is not Twilio and closes the stream
    let token = bridge.calls_in_flight.token();
    bridge.call_started.notify_one();
    let upgrade = upgrade.max_message_size(MAX_MESSAGE_BYTES).max_frame_size(MAX_MESSAGE_BYTES);
    upgrade.read_buffer_size(4 * 1024).write_buffer_size(0).max_write_buffer_size(256 * 1024).on_upgrade(move |socket| async move {
        session::bridge_call(bridge, socket).await;
        drop(token);
    })
}

fn check_signature(settings: &BridgeSettings, headers: &HeaderMap) -> Result<(), Problem> {
    if !settings.verify_signature {
        return Ok(());
    }
    let (Some(token), Some(url)) = (&settings.twilio_auth_token, &settings.stream_url) else {
        let missing = if settings.twilio_auth_token.is_none() { "TWILIO_AUTH_TOKEN" } else { "OUTDIAL_BRIDGE_URL" };
        return Err(signatures::Refusal::NotConfigured(missing).into());
    };
    let header = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    Ok(signatures::twilio(token.expose(), url, &[], header)?)
}

/// Server-Sent Events of a live call: `status`, then `transcript` lines as they are heard, then
/// `ended`. A call not live on this bridge gives its stored state and `ended`.
#[utoipa::path(get, path = "/calls/{id}/live", tag = "calls", params(("id" = String, Path, description = "call id")), security(("apiKey" = [])),
    responses((status = 200, body = live::LiveEvent, content_type = "text/event-stream", description = "one event per status change and transcript line"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "no such call in the organisation")))]
async fn live_feed<S: Store>(
    State(state): State<BridgeState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id: CallId = id.parse().map_err(|_| Problem::not_found(format!("call {id} was not found")))?;
    // another organisation's call is "not found", like one that does not exist
    let call = state.0.store.get_call(org, id).await?;
    let events = match state.0.live.subscribe(org, id) {
        Some(events) => events,
        None => live::ended_feed(&call),
    };
    let stream = futures::StreamExt::map(events, |e| Event::default().event(e.name()).json_data(&e));
    Ok(Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default()).into_response())
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    active_calls: usize,
}

/// Ready when the store answers and the bridge is not draining (the load balancer's check).
#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json", description = "draining, or the store does not answer")))]
async fn health<S: Store>(State(state): State<BridgeState<S>>) -> Response {
    let bridge = &state.0;
    if *bridge.phase.borrow() != Phase::Serving {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "bridge-draining", "Draining", "the bridge is shutting down").into_response();
    }
    match bridge.store.org_for_api_key(&store::KeyHash::of_secret("outdial-health-probe")).await {
        Ok(_) => Json(Health { status: "ok", active_calls: bridge.calls_in_flight.len() }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health: the store cannot be reached");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unreachable", "Store unreachable", "the bridge cannot reach its store")
                .into_response()
        }
    }
}

/// Prometheus text: active calls, frames in and out, dropped frames, ElevenLabs connect latency,
/// forwarding latency. Takes `Authorization: Bearer <OUTDIAL_METRICS_TOKEN>`; without that
/// variable no token is right, so there are no metrics to read (the listener is public).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    params(("Authorization" = String, Header, description = "Bearer OUTDIAL_METRICS_TOKEN")),
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "no token, not the metrics token, or OUTDIAL_METRICS_TOKEN unset")))]
async fn metrics_text<S: Store>(State(state): State<BridgeState<S>>, headers: HeaderMap) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(expected) = &state.0.settings.metrics_token else {
        return Problem::unauthorized("metrics are off on this bridge: set OUTDIAL_METRICS_TOKEN, then send it as Authorization: Bearer")
            .into_response();
    };
    if given.is_none_or(|token| *expected != providers::Secret::from(token.trim())) {
        return Problem::unauthorized("GET /metrics takes Authorization: Bearer <OUTDIAL_METRICS_TOKEN>").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.0.metrics.render()).into_response()
}
