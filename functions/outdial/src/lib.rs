//! The local stack and the command line's work, generic over the store so the same code runs on
//! SQLite (the default) and DynamoDB.

pub mod client;

use axum::{Json, Router, routing::get};
use providers::AssistantProviders;
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

/// Every HTTP function's routes merged on one router, with `/health` and `/openapi.json`
/// (the OpenAPI 3.1 document generated from the same route definitions).
pub fn local_stack<S: Store>(store: S, providers: AssistantProviders) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(assistants::router::<S>().with_state(assistants::AppState { store: store.clone(), providers }))
        .merge(campaigns::router::<S>().with_state(campaigns::AppState { store }))
        .split_for_parts();
    let document = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
    router
        .route("/openapi.json", get(move || async move { Json(document) }))
        .fallback(|uri: axum::http::Uri| async move { platform::Problem::not_found(format!("there is no route {uri}; see /openapi.json")) })
}

/// Serves the local stack until the process is stopped.
pub async fn serve<S: Store>(store: S, providers: AssistantProviders, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = local_stack(store, providers).layer(tower_http::trace::TraceLayer::new_for_http());
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
