//! Starting, pausing, resuming and canceling campaigns, the emergency stop, and what a schedule
//! firing asks for. Status changes are conditional writes in the store; the tick schedule then
//! follows the status the store ends up with, so racing requests leave exactly one schedule on a
//! running campaign and none on any other.

use crate::{AppState, CampaignView, campaign_id};
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;
use domain::{Campaign, CampaignId, CampaignStatus, OrgId};
use platform::{Authenticated, CampaignScheduler, List, Problem, Schedule, ScheduledAction, ScheduledRun, SchedulerError};
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

/// Runs the launch checks and moves the campaign from `from` to running.
async fn launch<S: Store, C: CampaignScheduler>(
    state: &AppState<S, C>,
    org: OrgId,
    id: CampaignId,
    from: CampaignStatus,
) -> Result<Campaign, Problem> {
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
    let campaign = sync_schedule(state, org, id).await?;
    drop_start_schedule(state, id).await?;
    tracing::info!(campaign = %id, "campaign running");
    Ok(campaign)
}

async fn view<S: Store, C: CampaignScheduler>(
    state: &AppState<S, C>,
    org: OrgId,
    campaign: Campaign,
) -> Result<axum::Json<CampaignView>, Problem> {
    let tally = state.store.contact_tally(org, campaign.id).await?;
    Ok(axum::Json(CampaignView::new(campaign, Some(tally))))
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
    view(&state, org, campaign).await
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
    view(&state, org, campaign).await
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
    view(&state, org, campaign).await
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
    view(&state, org, campaign).await
}

/// Pause every running campaign of the organisation at once and delete their schedules.
#[utoipa::path(post, path = "/emergency-stop", tag = "campaigns", security(("apiKey" = [])),
    responses((status = 200, body = List<CampaignView>, description = "the campaigns paused"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn emergency_stop<S: Store, C: CampaignScheduler>(
    State(state): State<AppState<S, C>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<List<CampaignView>>, Problem> {
    let running = state.store.campaigns_with_status(org, CampaignStatus::Running).await?;
    let now = Utc::now();
    let pauses =
        running.iter().map(|c| state.store.set_campaign_status(org, c.id, &[CampaignStatus::Running], CampaignStatus::Paused, now));
    let mut paused = Vec::new();
    for result in futures::future::join_all(pauses).await {
        match result {
            Ok(c) => paused.push(c),
            // it stopped running meanwhile (paused, canceled, completed): nothing to stop
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let synced = futures::future::join_all(paused.iter().map(|c| sync_schedule(&state, org, c.id))).await;
    let items = synced.into_iter().map(|c| c.map(|c| CampaignView::new(c, None))).collect::<Result<Vec<_>, _>>()?;
    tracing::warn!(paused = items.len(), "emergency stop");
    Ok(axum::Json(List::whole(items)))
}

/// Handles the one-shot `start` schedule firing at `startAt`: starts the campaign if it is still
/// a draft (launch checks included), and drops the schedule either way. Ticks are campaign-tick's.
pub async fn on_scheduled_start<S: Store, C: CampaignScheduler>(state: &AppState<S, C>, run: &ScheduledRun) -> Result<(), Problem> {
    match launch(state, run.org, run.campaign, CampaignStatus::Draft).await {
        Ok(_) => Ok(()),
        Err(problem) => {
            tracing::warn!(campaign = %run.campaign, detail = %problem.detail, "scheduled start refused");
            drop_start_schedule(state, run.campaign).await
        }
    }
}
