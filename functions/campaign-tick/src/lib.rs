//! The `campaign-tick` function: one campaign's tick, run by its EventBridge schedule (the
//! payload is the schedule's input), by the local timer, and on demand after a call ends.
//!
//! A tick is idempotent per execution id, sweeps calls that went silent (TIMEOUT, capacity
//! released once by the store), claims contacts under the cap and calling window into queued
//! calls with a dial job each, and completes the campaign once nothing is left. Its cost follows
//! the number of calls it touches (at most the cap), never the campaign's size.

use chrono::{DateTime, Utc};
use domain::{CallEvent, CallEventKind, CampaignId, CampaignStatus, DialJob, EndReason, OrgId};
use platform::{CampaignScheduler, DIAL_JOBS, JobQueue, QueueError, ScheduledAction, ScheduledRun};
use store::{Store, StoreError};

/// The dedupe key of the sweep's timeout event: one per call, so it applies once.
const SWEEP_EVENT: &str = "sweep:timeout";

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Starting or unscheduling the campaign failed.
    #[error("{0}")]
    Lifecycle(String),
}

impl From<platform::Problem> for TickError {
    fn from(p: platform::Problem) -> Self {
        Self::Lifecycle(p.detail)
    }
}

/// What the tick needs: the campaigns function's state (store, scheduler, accounts) and the queue.
#[derive(Clone)]
pub struct TickState<S, C, Q> {
    pub campaigns: campaigns::AppState<S, C>,
    pub queue: Q,
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    /// The execution id had run before: nothing was done.
    pub repeated: bool,
    pub timed_out: u32,
    pub claimed: u32,
    pub completed: bool,
}

/// Handles one schedule firing: `start` launches the campaign, `tick` ticks it.
pub async fn on_scheduled_run<S: Store, C: CampaignScheduler, Q: JobQueue>(
    state: &TickState<S, C, Q>,
    run: &ScheduledRun,
) -> Result<TickReport, TickError> {
    match run.action {
        ScheduledAction::Start => {
            campaigns::lifecycle::on_scheduled_start(&state.campaigns, run).await?;
            Ok(TickReport::default())
        }
        ScheduledAction::Tick => tick(state, run.org, run.campaign, &run.execution_id, Utc::now()).await,
    }
}

/// One tick of one campaign at `now`.
pub async fn tick<S: Store, C: CampaignScheduler, Q: JobQueue>(
    state: &TickState<S, C, Q>,
    org: OrgId,
    campaign_id: CampaignId,
    execution_id: &str,
    now: DateTime<Utc>,
) -> Result<TickReport, TickError> {
    let store = &state.campaigns.store;
    let mut report = TickReport::default();
    if !store.record_tick_execution(org, campaign_id, execution_id, now).await? {
        report.repeated = true;
        return Ok(report);
    }
    let campaign = store.get_campaign(org, campaign_id).await?;
    // calls of a paused or canceled campaign still finish, and may still go silent
    for call in store.active_calls(org, campaign_id).await? {
        if !call.is_stuck(now, campaign.settings.max_call_seconds) {
            continue;
        }
        let event =
            CallEvent { dedupe_key: SWEEP_EVENT.into(), occurred_at: now, kind: CallEventKind::Ended { reason: EndReason::Timeout } };
        let applied = store.apply_call_event(org, call.id, event, now).await?;
        if applied.transition.is_some_and(|t| t.releases_capacity) {
            report.timed_out += 1;
            tracing::warn!(campaign = %campaign_id, call = %call.id, state = call.state.as_str(), "no news from the provider: call timed out");
        }
    }
    if campaign.status == CampaignStatus::Running {
        let claims = store.claim_due_contacts(org, campaign_id, now, campaign.cap.get()).await?;
        report.claimed = claims.len() as u32;
        let jobs = claims.iter().map(|c| {
            let job = DialJob { org_id: org, campaign_id, call_id: c.call.id };
            state.queue.send(DIAL_JOBS, serde_json::to_string(&job).expect("a dial job serialises"))
        });
        // a job that could not be queued leaves its call queued without a provider id: the sweep times it out
        for (claim, sent) in claims.iter().zip(futures::future::join_all(jobs).await) {
            if let Err(e) = sent {
                tracing::error!(campaign = %campaign_id, call = %claim.call.id, error = %e, "dial job not queued");
            }
        }
    }
    let campaign = store.get_campaign(org, campaign_id).await?;
    if campaign.status == CampaignStatus::Running && campaign.counters.is_finished() {
        match store.set_campaign_status(org, campaign_id, &[CampaignStatus::Running], CampaignStatus::Completed, now).await {
            Ok(_) => {
                report.completed = true;
                tracing::info!(campaign = %campaign_id, "campaign completed");
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if campaign.status != CampaignStatus::Running || report.completed {
        campaigns::lifecycle::sync_schedule(&state.campaigns, org, campaign_id).await?;
    }
    Ok(report)
}
