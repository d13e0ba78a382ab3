//! The local stack and the command line's work, generic over the store so the same code runs on
//! SQLite (the default) and DynamoDB.

pub mod client;
pub mod demo;

use app::{AgentTools, TickRequests, Ticker};
use axum::{Json, Router, routing::get};
use domain::{CampaignId, OrgId};
use platform::{BearerKey, Config, IdLinks, LocalQueue, LocalScheduler, StandardProblems};
use providers::{AssistantProviders, CallProviders, RetryPolicy};
use std::{sync::Arc, time::Duration};
use store::Store;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "outdial", description = "AI phone-call campaigns: assistants, campaigns, contacts, calls. Authenticate with `Authorization: Bearer <API key>`."),
    modifiers(&BearerKey)
)]
struct ApiDoc;

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness of the local stack.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Where each created (or listed) record's id is found, and which routes take it.
const ID_LINKS: IdLinks = IdLinks(&[
    ("POST /campaigns", "201", "/id", "/campaigns/{id}"),
    ("POST /assistants", "201", "/id", "/assistants/{id}"),
    ("POST /assistants/import", "201", "/id", "/assistants/{id}"),
    ("GET /campaigns/{id}/calls", "200", "/items/0/id", "/calls/{id}"),
]);

/// What the local stack runs with besides its store: the configuration every function's state
/// is built from (`State::from_config`, as in Lambda), and what only the local stack has.
#[derive(Clone, Debug)]
pub struct Stack {
    /// Provider accounts, dialing (the public URL defaults to the local stack's own address),
    /// webhook secrets (without a Twilio token the simulator's is accepted), upload limit, and the
    /// local timer's period (`scheduler.local_tick`).
    pub config: Config,
    /// The assistant providers of `config`, simulator included: whoever holds the stack reaches
    /// the same simulated provider the stack serves.
    pub providers: AssistantProviders,
    /// The durable local `dial-jobs` queue.
    pub queue: LocalQueue,
    /// Local dial workers, each placing up to 10 calls at once.
    pub dial_workers: usize,
    /// The media bridge on the same port (`/media`); its stream URL defaults to the public URL's.
    pub bridge: media_bridge::BridgeSettings,
    /// The agent's tools, with the booking and email services configured (by default the local outbox).
    pub tools: AgentTools,
    /// Where uploaded contact files are kept until imported (S3 instead when `OUTDIAL_UPLOAD_BUCKET` is set).
    pub uploads_dir: std::path::PathBuf,
}

impl Stack {
    /// From the configuration, with an in-memory queue until `with_queue_at` gives it a file.
    pub fn from_config(config: &Config) -> Self {
        Self {
            config: config.clone(),
            providers: AssistantProviders::new(&config.providers, RetryPolicy::default()),
            queue: memory_queue(config.dialing.max_receives),
            dial_workers: 2,
            bridge: media_bridge::BridgeSettings::from_config(config),
            tools: AgentTools::from_config(&config.tools),
            uploads_dir: std::env::temp_dir().join("outdial-uploads"),
        }
    }

    /// The same stack with the local timer ticking every `period`.
    pub fn ticking_every(mut self, period: Duration) -> Self {
        self.config.scheduler.local_tick = period;
        self
    }

    /// Without `OUTDIAL_SECRET_KEY`, seals stored secrets with the key file beside the database at
    /// `path` (`<db>.key`, made on first use, readable by its owner only).
    pub fn with_secrets_beside(mut self, path: &std::path::Path) -> Result<Self, platform::SealError> {
        if self.config.secrets.is_none() {
            self.config.secrets = Some(platform::SecretBox::from_key_file(&path.with_extension("key"))?);
        }
        Ok(self)
    }

    /// Keeps uploaded contact files beside the database at `path` (`<db>.uploads/`) until imported.
    pub fn with_uploads_beside(mut self, path: &std::path::Path) -> Self {
        self.uploads_dir = path.with_extension("uploads");
        self
    }

    /// Keeps the dial-jobs queue in the SQLite file at `path` (it survives restarts).
    pub fn with_queue_at(mut self, path: &std::path::Path) -> Result<Self, platform::QueueError> {
        self.queue = LocalQueue::open(path, self.config.dialing.max_receives)?;
        Ok(self)
    }
}

fn memory_queue(max_receives: u32) -> LocalQueue {
    LocalQueue::open_in_memory(max_receives).expect("an in-memory SQLite database opens")
}

impl Default for Stack {
    /// The configuration of an empty environment with the simulator on (`OUTDIAL_SIMULATOR=on`:
    /// no provider accounts, the default upload limit), a tick a minute, an in-memory queue, the local outbox.
    fn default() -> Self {
        let mut config = Config::from_lookup(|_| None).expect("an empty environment is a valid configuration");
        config.providers.simulator = true;
        config.secrets = Some(platform::SecretBox::ephemeral());
        Self { tools: AgentTools::default(), bridge: media_bridge::BridgeSettings::default(), ..Self::from_config(&config) }
            .ticking_every(Duration::from_secs(60))
    }
}

/// Every HTTP function's routes and the media bridge's merged on one router, with `/health` and
/// `/openapi.json` (the OpenAPI 3.1 document generated from the same route definitions). In the
/// background the local timer plays EventBridge Scheduler (each firing runs campaign-tick) and
/// dial workers play the dialer Lambda on the local queue.
async fn local_stack<S: Store>(store: S, stack: Stack) -> (Router, Arc<media_bridge::Bridge<S>>) {
    let config = &stack.config;
    let (scheduler, mut fired) = LocalScheduler::new(config.scheduler.local_tick);
    let uploads = match (config.s3_uploads().await, &config.secrets, &config.dialing.calls.public_url) {
        (Some(s3), ..) => Some(s3),
        (None, Some(signer), Some(base_url)) => {
            Some(platform::UploadBucket::Local { dir: stack.uploads_dir.clone(), base_url: base_url.clone(), signer: signer.clone() })
        }
        _ => None,
    };
    let campaigns_state =
        campaigns::AppState::from_config(config, store.clone(), scheduler.clone(), stack.queue.clone()).with_uploads(uploads.clone());
    let tick_state = Ticker::from_config(config, store.clone(), scheduler, stack.queue.clone());
    // the timer keeps no schedule and the simulator no call across a restart: pick them up again
    match app::recovery::recover_local_stack(&tick_state, chrono::Utc::now()).await {
        Ok(recovered) if recovered != app::recovery::Recovered::default() => tracing::info!(?recovered, "picked up after a restart"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "campaigns were not picked up after the restart; start or resume them again"),
    }
    let timer_ticks = tick_state.clone();
    tokio::spawn(async move {
        while let Some(run) = fired.recv().await {
            let tick_state = timer_ticks.clone();
            // each firing on its own task: one slow campaign never delays another's tick
            tokio::spawn(async move {
                if let Err(e) = app::tick::on_scheduled_run(&tick_state, &run).await {
                    tracing::error!(campaign = %run.campaign, error = %e, "scheduled run failed");
                }
            });
        }
    });
    tokio::spawn(daily_reports_each_morning(store.clone(), stack.tools.mailer().clone(), config.report_time_zone));
    // the local crm-sync: drains crm-jobs as the crm-sync function does in AWS
    let crm = crm_sync::CrmSyncState::from_config(config, store.clone(), stack.queue.clone());
    tokio::spawn(crm.run_local_worker(Duration::from_millis(200)));
    let dialer = dialer::DialerState::from_config(config, store.clone(), stack.queue.clone());
    for _ in 0..stack.dial_workers {
        tokio::spawn(dialer.clone().run_local_worker(Duration::from_millis(200)));
    }
    // the simulator signs with the deployment's secrets, or with its own where there are none
    // (accepted only while it runs: `serve` refuses to expose it, see `check_exposure`)
    let mut config = stack.config;
    let simulator = config.providers.simulator;
    let secrets = &mut config.webhooks;
    secrets.twilio_auth_token = secrets.twilio_auth_token.take().or_else(|| simulator.then(|| CallProviders::SIMULATOR_ACCOUNT.1.into()));
    secrets.elevenlabs = secrets.elevenlabs.take().or_else(|| config.dialing.calls.elevenlabs_webhook_secret.clone());
    let webhooks_state = webhooks::WebhookState::from_config(&config, store.clone(), LocalTicks::spawn(tick_state));
    let tools_state = tools::ToolsState {
        store: store.clone(),
        tools: stack.tools.clone(),
        calls: webhooks_state.calls.clone(),
        secrets: Arc::new(config.webhooks.clone()),
        key: config.secrets.clone(),
    };
    let bridge =
        media_bridge::Bridge::with_accounts(store.clone(), webhooks_state.calls.clone(), &config.providers, stack.tools, stack.bridge);
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(assistants::router::<S>().with_state(assistants::AppState {
            store: store.clone(),
            providers: stack.providers,
            tools: app::ToolDeclarations::from_config(&config),
        }))
        .merge(campaigns::router::<S, LocalScheduler, LocalQueue>().with_state(campaigns_state))
        .merge(match uploads {
            Some(bucket) => campaigns::uploads::local_upload_router::<S>().with_state(campaigns::uploads::LocalUploads {
                store: store.clone(),
                bucket,
                max_bytes: config.import_max_bytes,
            }),
            None => OpenApiRouter::new(),
        })
        .merge(reports::router::<S>().with_state(reports::AppState::from_config(&config, store)))
        .merge(webhooks::router::<S, LocalTicks>().with_state(webhooks_state))
        .merge(tools::router::<S>().with_state(tools_state))
        .merge(media_bridge::routes::<S>().with_state(media_bridge::BridgeState(bridge.clone())))
        .split_for_parts();
    // after the merge: the problems every route answers, on every route
    utoipa::Modify::modify(&StandardProblems, &mut openapi);
    utoipa::Modify::modify(&ID_LINKS, &mut openapi);
    let document = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
    let router = router.route("/openapi.json", get(move || async move { Json(document) })).fallback(|uri: axum::http::Uri| async move {
        platform::Problem::not_found(format!("there is no route {uri}; see /openapi.json"))
    });
    (router, bridge)
}

/// The local stand-in for the daily report's schedule: at 08:00 in the report time zone, each
/// organisation's report of yesterday is made, kept and emailed (through the local outbox unless
/// `OUTDIAL_EMAIL=ses`).
async fn daily_reports_each_morning<S: Store>(store: S, mailer: platform::AnyMailer, zone: chrono_tz::Tz) {
    loop {
        let now = chrono::Utc::now();
        let next = domain::report::next_daily_run(now, zone);
        tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
        let now = chrono::Utc::now();
        let date = domain::report::yesterday(now, zone);
        if let Err(e) = reports::daily::send_daily_reports(&store, Some(&mailer), zone, date, now).await {
            tracing::error!(%date, error = %e, "the daily report failed");
        }
    }
}

/// On-demand ticks of the local stack: requests are queued and run in the background, a burst
/// for one campaign coalesced into one tick, so a webhook answers without waiting for the tick.
#[derive(Clone)]
pub struct LocalTicks {
    requests: tokio::sync::mpsc::UnboundedSender<(OrgId, CampaignId)>,
}

impl LocalTicks {
    fn spawn<S: Store>(state: Ticker<S, LocalScheduler, LocalQueue>) -> Self {
        let (requests, mut pending) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut campaigns = std::collections::BTreeSet::from([first]);
                while let Ok(next) = pending.try_recv() {
                    campaigns.insert(next);
                }
                let ticks = campaigns.into_iter().map(|(org, campaign)| {
                    let state = state.clone();
                    async move { TickRequests::request_tick(&state, org, campaign).await }
                });
                futures::future::join_all(ticks).await;
            }
        });
        Self { requests }
    }
}

impl TickRequests for LocalTicks {
    async fn request_tick(&self, org: OrgId, campaign: CampaignId) {
        // the receiver lives as long as the runtime: a send fails only while shutting down
        let _ = self.requests.send((org, campaign));
    }
}

/// Serves the local stack until the process is stopped. Providers reach it at its own address
/// unless `OUTDIAL_PUBLIC_URL` says otherwise (a tunnel).
pub async fn serve<S: Store>(store: S, stack: Stack, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(store, stack, listener, shutdown()).await
}

/// Serves the local stack until `stop` completes.
pub async fn serve_until<S: Store>(
    store: S,
    mut stack: Stack,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let calls = &mut stack.config.dialing.calls;
    let public_url = calls.public_url.get_or_insert(format!("http://{}", listener.local_addr()?)).clone();
    // Twilio streams to the same host the webhooks are on: wss:// behind an https:// tunnel
    let stream_url = calls.bridge_url.get_or_insert_with(|| media_url(&public_url)).clone();
    stack.bridge.stream_url.get_or_insert(stream_url);
    // one server: the tools routes are on it too
    stack.config.tools.public_url.get_or_insert(public_url);
    let (app, bridge) = local_stack(store, stack).await;
    media_bridge::serve_calls(bridge, platform::telemetry::traced_router(app), listener, stop).await
}

/// Refuses a stack reachable from outside (a non-loopback `OUTDIAL_PUBLIC_URL`, e.g. a tunnel)
/// without a real `TWILIO_AUTH_TOKEN`: webhooks would otherwise be checked against the
/// simulator's token, which is public.
pub fn check_exposure(config: &Config) -> Result<(), String> {
    let Some(public_url) = &config.dialing.calls.public_url else { return Ok(()) };
    let url = reqwest::Url::parse(public_url).map_err(|e| format!("OUTDIAL_PUBLIC_URL {public_url:?} is not a URL: {e}"))?;
    if client::is_loopback(&url) || config.webhooks.twilio_auth_token.is_some() {
        return Ok(());
    }
    Err(format!(
        "OUTDIAL_PUBLIC_URL {public_url} makes this stack reachable from outside, and without TWILIO_AUTH_TOKEN its webhooks \
         would be checked against the simulator's public token: set TWILIO_AUTH_TOKEN to your Twilio account's auth token"
    ))
}

/// The media bridge's URL on the host of `public_url`: `https://h` gives `wss://h/media`.
fn media_url(public_url: &str) -> String {
    let base = public_url.trim_end_matches('/');
    let ws = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some((_, rest)) => format!("ws://{rest}"),
        None => format!("ws://{base}"),
    };
    format!("{ws}/media")
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stack_reachable_from_outside_needs_a_real_twilio_token() {
        let config = |vars: &[(&str, &str)]| platform::testing::config(vars);
        assert!(super::check_exposure(&config(&[])).is_ok(), "no public URL: its own loopback address");
        for local in ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"] {
            assert!(super::check_exposure(&config(&[("OUTDIAL_PUBLIC_URL", local)])).is_ok(), "{local}");
        }
        let tunnel = config(&[("OUTDIAL_PUBLIC_URL", "https://abc.ngrok.app")]);
        assert!(super::check_exposure(&tunnel).unwrap_err().contains("TWILIO_AUTH_TOKEN"));
        let real = config(&[("OUTDIAL_PUBLIC_URL", "https://abc.ngrok.app"), ("TWILIO_AUTH_TOKEN", "real"), ("TWILIO_ACCOUNT_SID", "AC1")]);
        assert!(super::check_exposure(&real).is_ok());
    }

    #[test]
    fn the_media_url_is_on_the_public_urls_host() {
        assert_eq!(super::media_url("http://127.0.0.1:8080"), "ws://127.0.0.1:8080/media");
        assert_eq!(super::media_url("https://abc.ngrok.app/"), "wss://abc.ngrok.app/media");
    }
}
