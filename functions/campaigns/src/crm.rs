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
use platform::{Authenticated, CampaignScheduler, JobQueue, List, PageQuery, Problem, extract::Json, extract::Query};
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
/// HubSpot `{name, kind: "hubspot", token}`, or a webhook `{name, kind: "webhook", url}` (https; plain http too with `OUTDIAL_CRM_ALLOW_PRIVATE=true`).
/// Tokens are sealed at rest and no read returns them.
#[utoipa::path(post, path = "/crm/connections", tag = "crm", request_body = CrmConnectionSpec, security(("apiKey" = [])),
    responses((status = 201, body = CreatedConnection), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "OUTDIAL_SECRET_KEY is not set")))]
pub(crate) async fn create_connection<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Json(spec): Json<CrmConnectionSpec>,
) -> Result<(StatusCode, axum::Json<CreatedConnection>), Problem> {
    let new = NewCrmConnection::parse(spec, state.crm.outbound.allow_private).map_err(Problem::validation)?;
    let secrets = state.secrets.as_ref().ok_or_else(|| Problem::secrets_not_configured("seal CRM tokens"))?;
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
pub(crate) async fn list_connections<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
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
pub(crate) async fn delete_connection<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let parsed = connection_id(&id)?;
    if state.store.delete_crm_connection(org, parsed).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("CRM connection {id} was not found")))
    }
}

impl<S: Store, C, Q> AppState<S, C, Q> {
    fn crm_sync(&self) -> app::CrmSync<S> {
        app::CrmSync {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            setup: self.crm.clone(),
            max_receives: self.crm_max_receives,
        }
    }
}

fn connection_id(id: &str) -> Result<ConnectionId, Problem> {
    ConnectionId::parse(id).map_err(|_| Problem::not_found(format!("CRM connection {id} was not found")))
}

fn retry_problem(e: app::RetryError) -> Problem {
    match e {
        app::RetryError::Store(e) => e.into(),
        app::RetryError::Queue(e) => e.into(),
    }
}

/// What the connection's target answered a test.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTestView {
    /// The target took the request (2xx).
    pub ok: bool,
    /// Its answer, or why nothing could be sent.
    pub answer: String,
}

/// Test a connection: GoHighLevel lists one contact of the location, HubSpot reads one contact,
/// a webhook receives a signed `{"type": "connection.test"}` event. Nothing is created at the
/// target; the answer says whether the token, location or URL and signature were taken.
#[utoipa::path(post, path = "/crm/connections/{id}/test", tag = "crm", params(("id" = String, Path, description = "connection id")),
    security(("apiKey" = [])),
    responses((status = 200, body = ConnectionTestView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn test_connection<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<ConnectionTestView>, Problem> {
    let tested = state.crm_sync().test_connection(org, connection_id(&id)?, Utc::now()).await?;
    tracing::info!(connection = %id, ok = tested.ok, "CRM connection tested");
    Ok(axum::Json(ConnectionTestView { ok: tested.ok, answer: tested.answer }))
}

/// The connections whose failed deliveries were queued again.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequeuedCall {
    pub connection_ids: Vec<ConnectionId>,
}

/// Queue the call's failed CRM deliveries again; they resume after the last step that reached
/// the CRM. `GET /calls/{id}` shows how they went.
#[utoipa::path(post, path = "/calls/{id}/crm/retry", tag = "crm", params(("id" = String, Path, description = "call id")),
    security(("apiKey" = [])),
    responses((status = 202, body = RequeuedCall), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "no delivery of the call has failed")))]
pub(crate) async fn retry_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<RequeuedCall>), Problem> {
    let call = domain::CallId::parse(&id).map_err(|_| Problem::not_found(format!("call {id} was not found")))?;
    let connection_ids = state.crm_sync().retry_call(&state.queue, org, call).await.map_err(retry_problem)?;
    if connection_ids.is_empty() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-failed-delivery",
            "Nothing to retry",
            format!("no CRM delivery of call {id} has failed: GET /calls/{id} shows where they stand"),
        ));
    }
    tracing::info!(call = %call, deliveries = connection_ids.len(), "failed CRM deliveries queued again");
    Ok((StatusCode::ACCEPTED, axum::Json(RequeuedCall { connection_ids })))
}

/// Failed deliveries queued again.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequeuedCampaign {
    pub calls: usize,
    pub deliveries: usize,
}

/// Queue every failed CRM delivery of the campaign again (one job per call).
#[utoipa::path(post, path = "/campaigns/{id}/crm/retry", tag = "crm", params(("id" = String, Path, description = "campaign id")),
    security(("apiKey" = [])),
    responses((status = 202, body = RequeuedCampaign), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn retry_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<RequeuedCampaign>), Problem> {
    let campaign = crate::campaign_id(&id)?;
    let requeued = state.crm_sync().retry_campaign(&state.queue, org, campaign).await.map_err(retry_problem)?;
    tracing::info!(campaign = %campaign, calls = requeued.calls, deliveries = requeued.deliveries, "failed CRM deliveries queued again");
    Ok((StatusCode::ACCEPTED, axum::Json(RequeuedCampaign { calls: requeued.calls, deliveries: requeued.deliveries })))
}
