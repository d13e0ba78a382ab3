//! The organisation's CRM connections: created with their token (sealed at rest, never read back),
//! or for a webhook with a signing secret outdial makes and shows once; listed; deleted.

use crate::AppState;
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{
    ConnectionId,
    crm::{ConnectionTarget, CrmConnection, CrmConnectionSpec, CrmKind, NewCrmConnection},
};
use platform::{Authenticated, CampaignScheduler, List, PageQuery, Problem, extract::Json, extract::Query};
use serde::{Deserialize, Serialize};
use store::Store;
use utoipa::ToSchema;

/// A connection as listed: never its token or signing secret.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    pub id: ConnectionId,
    pub name: String,
    pub kind: CrmKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<CrmConnection> for ConnectionView {
    fn from(c: CrmConnection) -> Self {
        let kind = c.target.kind();
        let (mut location_id, mut pipeline_id, mut stage_id, mut url) = (None, None, None, None);
        match c.target {
            ConnectionTarget::Gohighlevel { location_id: l, pipeline_id: p, stage_id: s } => {
                (location_id, pipeline_id, stage_id) = (Some(l), p, s)
            }
            ConnectionTarget::Hubspot {} => {}
            ConnectionTarget::Webhook { url: u } => url = Some(u),
        }
        Self { id: c.id, name: c.name, kind, location_id, pipeline_id, stage_id, url, created_at: c.created_at }
    }
}

/// A new connection; a webhook's comes with the secret its deliveries are signed with, this once.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedConnection {
    #[serde(flatten)]
    pub connection: ConnectionView,
    /// Webhooks only: verify `X-Outdial-Signature` with it. Not stored in the clear, not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// Connect a CRM: GoHighLevel `{name, kind: "gohighlevel", token, locationId, pipelineId?, stageId?}`,
/// HubSpot `{name, kind: "hubspot", token}`, or a webhook `{name, kind: "webhook", url}` (https).
/// Tokens are sealed at rest and no read returns them.
#[utoipa::path(post, path = "/crm/connections", tag = "crm", request_body = CrmConnectionSpec, security(("apiKey" = [])),
    responses((status = 201, body = CreatedConnection), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "OUTDIAL_SECRET_KEY is not set")))]
pub(crate) async fn create_connection<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Json(spec): Json<CrmConnectionSpec>,
) -> Result<(StatusCode, axum::Json<CreatedConnection>), Problem> {
    let new = NewCrmConnection::parse(spec).map_err(Problem::validation)?;
    let secrets = state.secrets.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets-not-configured",
            "Secrets cannot be stored",
            "this deployment has no key to seal CRM tokens with: set OUTDIAL_SECRET_KEY (32 bytes, base64)",
        )
    })?;
    let id = ConnectionId::new();
    let signing_secret = matches!(new.target, ConnectionTarget::Webhook { .. }).then(platform::sealed::new_signing_secret);
    let secret = new.token.as_deref().or(signing_secret.as_deref()).unwrap_or_default();
    let sealed = secrets.seal(secret, &id.to_string());
    let connection = CrmConnection { id, org_id: org, name: new.name, target: new.target, created_at: Utc::now() };
    let created = state.store.create_crm_connection(connection, sealed).await?;
    tracing::info!(connection = %created.id, kind = created.target.kind().as_str(), "CRM connection created");
    Ok((StatusCode::CREATED, axum::Json(CreatedConnection { connection: created.into(), signing_secret })))
}

/// The organisation's CRM connections, oldest first.
#[utoipa::path(get, path = "/crm/connections", tag = "crm", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<ConnectionView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_connections<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<ConnectionView>>, Problem> {
    let page = state.store.list_crm_connections(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, ConnectionView::from)))
}

/// Remove a connection; its sealed token goes with it.
#[utoipa::path(delete, path = "/crm/connections/{id}", tag = "crm", params(("id" = String, Path, description = "connection id")),
    security(("apiKey" = [])),
    responses((status = 204, description = "removed"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_connection<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let not_found = || Problem::not_found(format!("CRM connection {id} was not found"));
    let parsed = ConnectionId::parse(&id).map_err(|_| not_found())?;
    if state.store.delete_crm_connection(org, parsed).await? { Ok(StatusCode::NO_CONTENT) } else { Err(not_found()) }
}
