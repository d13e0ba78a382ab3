//! Starting, pausing, resuming and canceling campaigns, the emergency stop, and what a schedule
//! firing asks for. Status changes are conditional writes in the store; the tick schedule then
//! follows the status the store ends up with, so racing requests leave exactly one schedule on a
//! running campaign and none on any other.

use crate::{AppState, CampaignView, campaign_id};
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{Campaign, CampaignId, CampaignStatus, EmergencyStop, OrgId, StartRefusal};
use platform::{Authenticated, AuthenticatedKey, CampaignScheduler, Problem, Schedule, ScheduledAction, ScheduledRun, SchedulerError};
use serde::Serialize;
use store::{Store, StoreError};
use utoipa::ToSchema;

/// One launch check that failed.
#[derive(Serialize, ToSchema)]
pub struct UnmetCheck {
    /// Stable name: no-contacts, assistant-missing, assistant-inactive, no-caller-id, provider-not-configured, calling-window-empty.
    pub check: &'static str,
    pub detail: String,
}

/// Makes the campaign's tick schedule match its status: present while running, absent otherwise.
/// Re-reads the status after each change, so a status that moved meanwhile is followed too.
pub async fn sync_schedule<S: Store, C: CampaignScheduler>(
    state: &AppState<S, C>,
    org: OrgId,
    id: CampaignId,
) -> Result<Campaign, Problem> {
    let mut campaign = state.store.get_campaign(org, id).await?;
    for _ in 0..5 {
        let running = campaign.status == CampaignStatus::Running;
        let result = if running {
            state.scheduler.create(org, id, Schedule::Ticks).await
        } else {
            state.scheduler.delete(id, ScheduledAction::Tick).await
        };
        match result {
            Ok(()) | Err(SchedulerError::AlreadyExists(_) | SchedulerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let now = state.store.get_campaign(org, id).await?;
        if (now.status == CampaignStatus::Running) == running {
            return Ok(now);
        }
        campaign = now;
    }
    Ok(campaign)
}

async fn drop_start_schedule<S: Store, C: CampaignScheduler>(state: &AppState<S, C>, id: CampaignId) -> Result<(), Problem> {
    match state.scheduler.delete(id, ScheduledAction::Start).await {
        Ok(()) | Err(SchedulerError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The 409 a start or resume gets while the organisation's emergency stop holds.
fn stopped(id: CampaignId, stop: &EmergencyStop) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "emergency-stop",
        "Emergency stop",
        format!(
            "campaign {id} cannot run: the organisation's emergency stop holds since {}; lift it with DELETE /emergency-stop (or `outdial stop --lift`) first",
            stop.since.to_rfc3339()
        ),
    )
}

/// Runs the launch checks and moves the campaign from `from` to running, unless the
/// organisation's emergency stop holds.
async fn launch<S: Store, C: CampaignScheduler>(
    state: &AppState<S, C>,
    org: OrgId,
    id: CampaignId,
    from: CampaignStatus,
) -> Result<Campaign, Problem> {
    if let Some(stop) = state.store.get_org(org).await?.emergency_stop {
        return Err(stopped(id, &stop));
    }
    let campaign = state.store.get_campaign(org, id).await?;
    if campaign.status != from {
        let verb = if from == CampaignStatus::Draft { "started" } else { "resumed" };
        let detail = format!("campaign {id} is {} and cannot be {verb}; only a {} campaign can", campaign.status.as_str(), from.as_str());
        return Err(Problem::new(StatusCode::CONFLICT, "invalid-transition", "Invalid transition", detail));
    }
    let assistant = match campaign.assistant_id {
        Some(a) => match state.store.get_assistant(org, a).await {
            Ok(assistant) => Some(assistant),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let missing = state.accounts.missing_for_calls(campaign.settings.provider);
    let unmet = campaign.unmet_launch_checks(assistant.as_ref(), &missing);
    if !unmet.is_empty() {
        let detail = unmet.iter().map(|u| u.message()).collect::<Vec<_>>().join("; ");
        let listed: Vec<UnmetCheck> = unmet.iter().map(|u| UnmetCheck { check: u.code(), detail: u.message() }).collect();
        return Err(Problem::new(StatusCode::CONFLICT, "launch-checks-failed", "The campaign cannot start", detail).with("unmet", listed));
    }
    state.store.set_campaign_status(org, id, &[from], CampaignStatus::Running, Utc::now()).await?;
    // a stop set while this start ran may have paused everything but this campaign
    if let Some(stop) = state.store.get_org(org).await?.emergency_stop {
        pause_running(state, org, id).await?;
        return Err(stopped(id, &stop));
    }
    let campaign = sync_schedule(state, org, id).await?;
    drop_start_schedule(state, id).await?;
    tracing::info!(campaign = %id, "campaign running");
    Ok(campaign)
}

/// Pauses the campaign if it is running (a conflict means it stopped running meanwhile) and
/// removes its schedule; the paused campaign, if it was paused.
async fn pause_running<S: Store, C: CampaignScheduler>(
    state: &AppState<S, C>,
    org: OrgId,
    id: CampaignId,
) -> Result<Option<Campaign>, Problem> {
    match state.store.set_campaign_status(org, id, &[CampaignStatus::Running], CampaignStatus::Paused, Utc::now()).await {
        Ok(_) => Ok(Some(sync_schedule(state, org, id).await?)),
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn view<S: Store, C: CampaignScheduler>(state: &AppState<S, C>, campaign: Campaign) -> Result<axum::Json<CampaignView>, Problem> {
    Ok(axum::Json(CampaignView::single(&state.store, campaign).await?))
}

/// Start a draft campaign: the launch checks run first, and a 409 problem lists every one unmet.
#[utoipa::path(post, path = "/campaigns/{id}/start", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "not a draft, or launch checks unmet (listed in `unmet`)"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn start_campaign<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = launch(&state, org, campaign_id(&id)?, CampaignStatus::Draft).await?;
    view(&state, campaign).await
}

/// Resume a paused campaign (the launch checks run again).
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn resume_campaign<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = launch(&state, org, campaign_id(&id)?, CampaignStatus::Paused).await?;
    view(&state, campaign).await
}

/// Pause a running campaign: no new calls; calls in flight finish.
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn pause_campaign<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let id = campaign_id(&id)?;
    state.store.set_campaign_status(org, id, &[CampaignStatus::Running], CampaignStatus::Paused, Utc::now()).await?;
    let campaign = sync_schedule(&state, org, id).await?;
    view(&state, campaign).await
}

/// Cancel a campaign: contacts not yet called are finalised as `canceled`; calls in flight finish
/// and are recorded.
#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn cancel_campaign<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let id = campaign_id(&id)?;
    state.store.cancel_campaign(org, id, Utc::now()).await?;
    let campaign = sync_schedule(&state, org, id).await?;
    drop_start_schedule(&state, id).await?;
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
pub(crate) async fn emergency_stop<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    AuthenticatedKey { org, key_id }: AuthenticatedKey,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    let current = state.store.get_org(org).await?.emergency_stop;
    // setting it again keeps when and by whom it was first set
    let stop = current.unwrap_or(EmergencyStop { since: Utc::now(), by: Some(key_id) });
    let org_now = state.store.set_emergency_stop(org, Some(stop)).await?;
    let running = state.store.campaigns_with_status(org, CampaignStatus::Running).await?;
    let paused = futures::future::join_all(running.iter().map(|c| pause_running(&state, org, c.id))).await;
    let items =
        paused.into_iter().filter_map(Result::transpose).map(|c| c.map(|c| CampaignView::new(c, None))).collect::<Result<Vec<_>, _>>()?;
    tracing::warn!(paused = items.len(), "emergency stop set");
    Ok(axum::Json(EmergencyStopView { paused_campaigns: Some(items), ..EmergencyStopView::of(org_now.emergency_stop) }))
}

/// Whether the organisation's emergency stop holds.
#[utoipa::path(get, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = EmergencyStopView), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn emergency_stop_status<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    Ok(axum::Json(EmergencyStopView::of(state.store.get_org(org).await?.emergency_stop)))
}

/// Lift the emergency stop. Campaigns it paused stay paused until each is resumed.
#[utoipa::path(delete, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = EmergencyStopView), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn lift_emergency_stop<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<EmergencyStopView>, Problem> {
    let org_now = state.store.set_emergency_stop(org, None).await?;
    tracing::warn!("emergency stop lifted");
    Ok(axum::Json(EmergencyStopView::of(org_now.emergency_stop)))
}

/// Handles the one-shot `start` schedule firing at `startAt`: starts the campaign if it is still
/// a draft (launch checks and emergency stop included), and drops the schedule either way; a
/// refusal is recorded on the campaign (`startRefused`). Ticks are campaign-tick's.
pub async fn on_scheduled_start<S: Store, C: CampaignScheduler>(state: &AppState<S, C>, run: &ScheduledRun) -> Result<(), Problem> {
    match launch(state, run.org, run.campaign, CampaignStatus::Draft).await {
        Ok(_) => Ok(()),
        Err(problem) => {
            tracing::warn!(campaign = %run.campaign, detail = %problem.detail, "scheduled start refused");
            let reason = problem.kind.rsplit('/').next().unwrap_or_default().to_string();
            let refusal = StartRefusal { at: Utc::now(), reason, detail: problem.detail };
            match state.store.record_start_refusal(run.org, run.campaign, refusal).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            drop_start_schedule(state, run.campaign).await
        }
    }
}
