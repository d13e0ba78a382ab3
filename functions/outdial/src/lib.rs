//! The local stack and the command line's work, generic over the store so the same code runs on
//! SQLite (the default) and DynamoDB.

pub mod client;

use axum::{Json, Router, routing::get};
use platform::{Config, LocalScheduler};
use providers::{AssistantProviders, ProviderAccounts, RetryPolicy};
use std::time::Duration;
use store::Store;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "outdial", description = "AI phone-call campaigns: assistants, campaigns, contacts, calls. Authenticate with `Authorization: Bearer <API key>`."),
    modifiers(&BearerKey)
)]
struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("apiKey", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness of the local stack.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// What the local stack runs with besides its store.
#[derive(Clone, Debug)]
pub struct Stack {
    pub providers: AssistantProviders,
    /// Which providers have credentials (checked before a campaign starts).
    pub accounts: ProviderAccounts,
    pub import_max_bytes: u64,
    /// How often the local timer ticks a running campaign.
    pub tick: Duration,
}

impl Stack {
    pub fn from_config(config: &Config) -> Self {
        Self {
            providers: AssistantProviders::new(&config.providers, RetryPolicy::default()),
            accounts: config.providers.clone(),
            import_max_bytes: config.import_max_bytes,
            tick: config.scheduler.local_tick,
        }
    }
}

impl Default for Stack {
    /// The simulator only, the default upload limit, a tick a minute.
    fn default() -> Self {
        Self {
            providers: AssistantProviders::default(),
            accounts: ProviderAccounts::default(),
            import_max_bytes: Config::DEFAULT_IMPORT_MAX_BYTES,
            tick: Duration::from_secs(60),
        }
    }
}

/// Every HTTP function's routes merged on one router, with `/health` and `/openapi.json`
/// (the OpenAPI 3.1 document generated from the same route definitions). The local timer plays
/// EventBridge Scheduler: its firings are handled here, in the background.
pub fn local_stack<S: Store>(store: S, stack: Stack) -> Router {
    let (scheduler, mut fired) = LocalScheduler::new(stack.tick);
    let campaigns_state =
        campaigns::AppState { store: store.clone(), scheduler, accounts: stack.accounts, import_max_bytes: stack.import_max_bytes };
    let timer_state = campaigns_state.clone();
    tokio::spawn(async move {
        while let Some(run) = fired.recv().await {
            if let Err(problem) = campaigns::lifecycle::on_scheduled_run(&timer_state, &run).await {
                tracing::error!(campaign = %run.campaign, detail = %problem.detail, "scheduled run failed");
            }
        }
    });
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(assistants::router::<S>().with_state(assistants::AppState { store, providers: stack.providers }))
        .merge(campaigns::router::<S, LocalScheduler>().with_state(campaigns_state))
        .split_for_parts();
    let document = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
    router
        .route("/openapi.json", get(move || async move { Json(document) }))
        .fallback(|uri: axum::http::Uri| async move { platform::Problem::not_found(format!("there is no route {uri}; see /openapi.json")) })
}

/// Serves the local stack until the process is stopped.
pub async fn serve<S: Store>(store: S, stack: Stack, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = local_stack(store, stack).layer(tower_http::trace::TraceLayer::new_for_http());
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
