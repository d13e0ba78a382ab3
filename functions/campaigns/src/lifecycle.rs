//! The lifecycle routes: start, pause, resume, cancel and the emergency stop, run by
//! `app::lifecycle` and answered as campaign views or problems.

use crate::{AppState, CampaignView, campaign_id};
use app::{Lifecycle, LifecycleError};
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{Campaign, EmergencyStop};
use platform::{Authenticated, AuthenticatedKey, CampaignScheduler, JobQueue, Problem};
use serde::Serialize;
use store::Store;
use utoipa::ToSchema;

/// One launch check that failed.
#[derive(Serialize, ToSchema)]
pub struct UnmetCheck {
    /// Stable name: no-contacts, assistant-missing, assistant-inactive, no-caller-id, provider-not-configured, calling-window-empty.
    pub check: &'static str,
    pub detail: String,
}

/// The problem a lifecycle error answers.
pub(crate) fn problem(e: LifecycleError) -> Problem {
    let detail = e.to_string();
    match e {
        LifecycleError::InvalidTransition { .. } => Problem::new(StatusCode::CONFLICT, "invalid-transition", "Invalid transition", detail),
        LifecycleError::Stopped { .. } => Problem::new(StatusCode::CONFLICT, "emergency-stop", "Emergency stop", detail),
        LifecycleError::LaunchChecks(unmet) => {
            let listed: Vec<UnmetCheck> = unmet.iter().map(|u| UnmetCheck { check: u.code(), detail: u.message() }).collect();
            Problem::new(StatusCode::CONFLICT, "launch-checks-failed", "The campaign cannot start", detail).with("unmet", listed)
        }
        LifecycleError::Store(e) => e.into(),
        LifecycleError::Scheduler(e) => e.into(),
    }
}

impl<S: Store, C: CampaignScheduler, Q: JobQueue> AppState<S, C, Q> {
    pub fn lifecycle(&self) -> Lifecycle<'_, S, C> {
        Lifecycle { store: &self.store, scheduler: &self.scheduler, accounts: &self.accounts, tools_url: self.tools_url.as_deref() }
    }
}

async fn view<S: Store, C: CampaignScheduler, Q: JobQueue>(
    state: &AppState<S, C, Q>,
    campaign: Campaign,
) -> Result<axum::Json<CampaignView>, Problem> {
    Ok(axum::Json(CampaignView::single(&state.store, campaign).await?))
}

/// Start a draft campaign: the launch checks run first, and a 409 problem lists every one unmet.
#[utoipa::path(post, path = "/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "not a draft, or launch checks unmet (listed in `unmet`)"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn start_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = state.lifecycle().start(org, campaign_id(&id)?).await.map_err(problem)?;
    view(&state, campaign).await
}

/// Resume a paused campaign (the launch checks run again).
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn resume_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = state.lifecycle().resume(org, campaign_id(&id)?).await.map_err(problem)?;
    view(&state, campaign).await
}

/// Pause a running campaign: no new calls; calls in flight finish.
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn pause_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = state.lifecycle().pause(org, campaign_id(&id)?).await.map_err(problem)?;
    view(&state, campaign).await
}

/// Cancel a campaign: contacts not yet called are finalised as `canceled`; calls in flight finish
/// and are recorded.
#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn cancel_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = state.lifecycle().cancel(org, campaign_id(&id)?).await.map_err(problem)?;
    view(&state, campaign).await
}

/// The organisation's emergency stop.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyStopView {
    /// True while the stop holds: no campaign starts (by hand or at its `startAt`), ticks claim no
    /// contact and the dialer places no call.
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The id of the API key that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The campaigns this request paused (setting the stop only); they stay paused when it is lifted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_campaigns: Option<Vec<CampaignView>>,
}

impl EmergencyStopView {
    fn of(stop: Option<EmergencyStop>) -> Self {
        Self { active: stop.is_some(), since: stop.as_ref().map(|s| s.since), by: stop.and_then(|s| s.by), paused_campaigns: None }
    }
}

/// Set the organisation's emergency stop: every running campaign is paused and its schedule
/// deleted, and until the stop is lifted no campaign starts, ticks claim nothing and the dialer
/// places nothing (queued calls end `canceled`, their contacts keep their attempt).
#[utoipa::path(post, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = EmergencyStopView, description = "the stop, with the campaigns it paused"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn emergency_stop<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    AuthenticatedKey { org, key_id }: AuthenticatedKey,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    let (org_now, paused) = state.lifecycle().set_emergency_stop(org, key_id).await.map_err(problem)?;
    let items = paused.into_iter().map(|c| CampaignView::new(c, None)).collect();
    Ok(axum::Json(EmergencyStopView { paused_campaigns: Some(items), ..EmergencyStopView::of(org_now.emergency_stop) }))
}

/// Whether the organisation's emergency stop holds.
#[utoipa::path(get, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = EmergencyStopView), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn emergency_stop_status<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    Ok(axum::Json(EmergencyStopView::of(state.store.get_org(org).await?.emergency_stop)))
}

/// Lift the emergency stop. Campaigns it paused stay paused until each is resumed.
#[utoipa::path(delete, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = EmergencyStopView), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn lift_emergency_stop<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    let org_now = state.lifecycle().lift_emergency_stop(org).await.map_err(problem)?;
    Ok(axum::Json(EmergencyStopView::of(org_now.emergency_stop)))
}
