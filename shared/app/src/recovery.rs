//! The local stack starting again, perhaps after its process died: what ran in that process is
//! picked up from the store, so a restart costs seconds, not the sweep's minutes.

use crate::tick::{TickError, TickStore, Ticker};
use chrono::{DateTime, Utc};
use domain::{CallDetails, CallProvider, CampaignStatus, EndReason};
use platform::{CampaignScheduler, JobQueue, Schedule, SchedulerError};
use store::PageRequest;

/// What a restart picked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Running campaigns whose tick schedule was made again (the local timer keeps none across a restart).
    pub ticking: u32,
    /// Drafts whose `startAt` schedule was made again; one that came due while the stack was down fires at once.
    pub starts: u32,
    /// Simulated calls under way when the process died, ended `failed`.
    pub simulated_calls_ended: u32,
}

/// Why a simulated call that was under way at a restart ended.
pub const SIMULATOR_STOPPED: &str = "the local stack stopped during the call: the simulator's calls ended with its process";

/// Picks up every organisation's campaigns after the local stack starts: running ones tick again,
/// scheduled starts are scheduled again, and the simulator's calls that died with the process
/// (it holds them in memory, so nobody will ever report them) are ended, releasing their slots.
pub async fn recover_local_stack<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    ticker: &Ticker<S, C, Q>,
    now: DateTime<Utc>,
) -> Result<Recovered, TickError> {
    let store = &ticker.store;
    let mut recovered = Recovered::default();
    for org in store::every_page(|page: PageRequest| store.list_orgs(page)).await? {
        for status in [CampaignStatus::Running, CampaignStatus::Paused, CampaignStatus::Canceled] {
            for campaign in store.campaigns_with_status(org.id, status).await? {
                if campaign.settings.provider == CallProvider::Simulator {
                    recovered.simulated_calls_ended += end_simulated_calls(store, org.id, campaign.id, now).await?;
                }
                if status == CampaignStatus::Running {
                    ticker.lifecycle().sync_schedule(org.id, campaign.id).await?;
                    recovered.ticking += 1;
                }
            }
        }
        for draft in store.campaigns_with_status(org.id, CampaignStatus::Draft).await? {
            let Some(at) = draft.settings.start_at else { continue };
            match ticker.scheduler.create(org.id, draft.id, Schedule::StartAt(at)).await {
                Ok(()) => recovered.starts += 1,
                Err(SchedulerError::AlreadyExists(_)) => {}
                Err(e) => return Err(crate::lifecycle::LifecycleError::from(e).into()),
            }
        }
    }
    Ok(recovered)
}

/// Ends the campaign's calls the simulator had taken (placed, or being placed); calls still
/// waiting for a dialer are left to their dial jobs.
async fn end_simulated_calls<S: TickStore>(
    store: &S,
    org: domain::OrgId,
    campaign: domain::CampaignId,
    now: DateTime<Utc>,
) -> Result<u32, TickError> {
    let mut ended = 0;
    for call in store.active_calls(org, campaign).await? {
        if call.provider_call_id.is_none() && call.dialing_since.is_none() {
            continue;
        }
        let details = CallDetails { error: Some(SIMULATOR_STOPPED.into()), ..Default::default() };
        if crate::tick::end_call(store, &call, "restart", EndReason::Failed, Some(details), now).await? {
            ended += 1;
        }
    }
    Ok(ended)
}
