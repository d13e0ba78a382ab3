//! The read side of call tracking: one call with its event log, and a campaign's calls.

use crate::{AppState, campaign_id};
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use domain::{Call, CallDisposition, CallId, CallState};
use platform::{Authenticated, CampaignScheduler, JobQueue, List, Problem, extract::Query};
use serde::{Deserialize, Serialize};
use store::{CallFilter, Store, StoredCallEvent};
use utoipa::{IntoParams, ToSchema};

/// A call as the API shows it: its record, how it ended and, for one call, its event log.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    #[serde(flatten)]
    pub call: Call,
    /// How it ended; absent while it is not over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<CallDisposition>,
    /// Every event received for it, oldest first (single-call reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<CallEventView>>,
    /// Its delivery to each CRM connection of its campaign (single-call reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm: Option<Vec<CrmDeliveryView>>,
}

impl CallView {
    fn new(call: Call, events: Option<Vec<StoredCallEvent>>) -> Self {
        let events = events.map(|list| list.into_iter().map(CallEventView::from).collect());
        Self { disposition: call.disposition(), call, events, crm: None }
    }
}

/// Where a call's delivery to one CRM connection stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrmDeliveryView {
    pub connection_id: domain::ConnectionId,
    pub kind: domain::crm::CrmKind,
    pub status: domain::crm::DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<domain::crm::CrmDelivery> for CrmDeliveryView {
    fn from(d: domain::crm::CrmDelivery) -> Self {
        Self {
            connection_id: d.connection_id,
            kind: d.kind,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
        }
    }
}

/// One entry of a call's append-only event log.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallEventView {
    /// What the event was, normalised (`ringing`, `answered`, `ended`, `details`, `unrecognised`…) with its data.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// The provider's identity of the event: a repeat of it is recognised and ignored.
    pub dedupe_key: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl From<StoredCallEvent> for CallEventView {
    fn from(e: StoredCallEvent) -> Self {
        Self {
            event: serde_json::to_value(&e.event.kind).unwrap_or_default(),
            dedupe_key: e.event.dedupe_key,
            occurred_at: e.event.occurred_at,
            received_at: e.received_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// Only calls in this state.
    pub state: Option<CallState>,
    /// Only finished calls with this disposition.
    pub disposition: Option<CallDisposition>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One call: status, timings, disposition, answered-by, cost, recording URL, transcript, analysis
/// and its event log.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", params(("id" = String, Path, description = "call id")), security(("apiKey" = [])),
    responses((status = 200, body = CallView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CallView>, Problem> {
    let id = CallId::parse(&id).map_err(|_| Problem::not_found(format!("call {id} was not found")))?;
    let mut call = state.store.get_call(org, id).await?;
    if call.details.transcript.is_none() {
        // a live call (or one whose bridge went away): the lines saved so far
        call.details.transcript = state.store.call_transcript(org, id).await?;
    }
    let events = state.store.list_call_events(org, id).await?;
    let crm = state.store.crm_deliveries(org, id).await?.into_iter().map(CrmDeliveryView::from).collect();
    Ok(axum::Json(CallView { crm: Some(crm), ..CallView::new(call, Some(events)) }))
}

/// The campaign's calls in the order they were made, optionally only those in one state or with
/// one disposition.
#[utoipa::path(get, path = "/campaigns/{id}/calls", tag = "calls", params(("id" = String, Path, description = "campaign id"), CallQuery),
    security(("apiKey" = [])),
    responses((status = 200, body = List<CallView>), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_calls<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<CallQuery>,
) -> Result<axum::Json<List<CallView>>, Problem> {
    let filter = CallFilter { state: q.state, disposition: q.disposition };
    let page = state.store.list_calls(org, campaign_id(&id)?, filter, platform::list::page_request(q.limit, q.cursor)?).await?;
    Ok(axum::Json(List::of(page, |c| CallView::new(c, None))))
}
