//! One campaign's tick, run by its EventBridge schedule, by the local timer, and on demand after
//! a call ends.
//!
//! A tick is idempotent per execution id (recorded once its work succeeded, so a failed one's
//! retry runs again), sweeps calls that went silent (TIMEOUT, or FAILED when a dialer's request
//! went unanswered; capacity released once by the store), applies webhook events that came before
//! their call was known, hands finished calls on to the CRM queue, claims contacts under the cap
//! and inside their legal calling window into queued calls with a dial job each, and completes
//! the campaign once nothing is left. Its cost follows the number of calls it touches (at most
//! the cap), never the campaign's size.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    CallDetails, CallEvent, CallEventKind, CampaignId, CampaignStatus, CrmJob, DialJob, OrgId, Swept, provider_status::ProviderCallState,
};
use platform::{CRM_JOBS, CampaignScheduler, DIAL_JOBS, JobQueue, QueueError, ScheduledAction, ScheduledRun};
use providers::ProviderAccounts;
use std::future::Future;
use store::{AssistantStore, CallStore, CallerIdStore, CampaignStore, CrmStore, DialingStore, OrgStore, StoreError};
use tracing::Instrument;

use crate::lifecycle::{Lifecycle, LifecycleError};

/// What a tick reads and writes: campaigns, their calls, the dialing records, and (to start or
/// complete a campaign) organisations and assistants.
pub trait TickStore:
    OrgStore + CampaignStore + AssistantStore + CallerIdStore + CrmStore + CallStore + DialingStore + Clone + 'static
{
}
impl<T: OrgStore + CampaignStore + AssistantStore + CallerIdStore + CrmStore + CallStore + DialingStore + Clone + 'static> TickStore for T {}

/// Orphaned provider call ids looked at per tick.
const ORPHANS_PER_TICK: u32 = 50;
/// How far back a tick looks for orphans: the dialer adopts them as it stores a call's id, so the
/// tick only repairs a crash in between; older ones are left to the log instead of re-read forever.
const ORPHAN_RECHECK: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// The dedupe key of the sweep's ending event: one per call, so it applies once.
const SWEEP_EVENT: &str = "sweep:timeout";

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Starting or unscheduling the campaign failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

/// What the tick needs: the store, the scheduler and the provider accounts (to start or
/// unschedule a campaign), the queue, and how much of a contact's legal window must be left to
/// claim it (`OUTDIAL_WINDOW_MARGIN_SECONDS`).
#[derive(Clone)]
pub struct Ticker<S, C, Q> {
    pub store: S,
    pub scheduler: C,
    pub accounts: ProviderAccounts,
    /// Asked how a silent call stands before the sweep times it out.
    pub calls: providers::CallProviders,
    /// Where assistants' tools must be declared (a launch check of scheduled starts).
    pub tools_url: Option<String>,
    pub queue: Q,
    pub window_margin: TimeDelta,
}

impl<S, C, Q> Ticker<S, C, Q> {
    /// The tick's state, built once from the configuration for every place that ticks.
    pub fn from_config(config: &platform::Config, store: S, scheduler: C, queue: Q) -> Self {
        Self {
            store,
            scheduler,
            accounts: config.providers.clone(),
            calls: providers::CallProviders::new(&config.providers, &config.dialing.calls),
            tools_url: config.tools.public_url.clone(),
            queue,
            window_margin: config.dialing.window_margin(),
        }
    }
}

impl<S: TickStore, C: CampaignScheduler, Q: JobQueue> Ticker<S, C, Q> {
    pub(crate) fn lifecycle(&self) -> Lifecycle<'_, S, C> {
        Lifecycle { store: &self.store, scheduler: &self.scheduler, accounts: &self.accounts, tools_url: self.tools_url.as_deref() }
    }
}

/// What one tick did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    /// The execution id had run before: nothing was done.
    pub repeated: bool,
    pub timed_out: u32,
    /// Silent calls whose provider, asked, said they had ended: ended as it said.
    pub ended_by_provider: u32,
    /// Orphaned webhook events applied to their calls.
    pub orphans_adopted: u32,
    /// Finished calls handed on (a CRM job when the campaign has a CRM target).
    pub post_calls: u32,
    pub claimed: u32,
    pub completed: bool,
}

/// Asks for a campaign's tick now (after a call ended, so its slot is used at once).
pub trait TickRequests: Clone + Send + Sync + 'static {
    fn request_tick(&self, org: OrgId, campaign: CampaignId) -> impl Future<Output = ()> + Send;
}

/// Runs the requested tick before answering (Lambda: nothing may run after the response).
impl<S: TickStore, C: CampaignScheduler, Q: JobQueue> TickRequests for Ticker<S, C, Q> {
    async fn request_tick(&self, org: OrgId, campaign: CampaignId) {
        let execution_id = format!("on-demand:{}", uuid::Uuid::now_v7());
        if let Err(e) = tick(self, org, campaign, &execution_id, Utc::now()).await {
            tracing::error!(%campaign, error = %e, "on-demand tick failed; the next scheduled one repeats it");
        }
    }
}

/// Handles one schedule firing: `start` launches the campaign, `tick` ticks it.
pub async fn on_scheduled_run<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    state: &Ticker<S, C, Q>,
    run: &ScheduledRun,
) -> Result<TickReport, TickError> {
    match run.action {
        ScheduledAction::Start => {
            let span = tracing::info_span!("scheduled_start", campaign = %run.campaign, execution = %run.execution_id);
            state.lifecycle().on_scheduled_start(run).instrument(span).await?;
            Ok(TickReport::default())
        }
        ScheduledAction::Tick => tick(state, run.org, run.campaign, &run.execution_id, Utc::now()).await,
    }
}

/// One tick of one campaign at `now`.
#[tracing::instrument(name = "tick", skip_all, fields(campaign = %campaign_id, execution = execution_id))]
pub async fn tick<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    state: &Ticker<S, C, Q>,
    org: OrgId,
    campaign_id: CampaignId,
    execution_id: &str,
    now: DateTime<Utc>,
) -> Result<TickReport, TickError> {
    let store = &state.store;
    if store.has_tick_run(org, campaign_id, execution_id).await? {
        return Ok(TickReport { repeated: true, ..TickReport::default() });
    }
    let report = run_tick(state, org, campaign_id, now).await?;
    // only now: a tick that failed half-way runs again when its execution is retried
    store.record_tick_execution(org, campaign_id, execution_id, now).await?;
    Ok(report)
}

/// What asking a silent call's provider settled.
enum Asked {
    /// It had ended (or it has no such call): ended as it said.
    Ended,
    Live,
    /// It could not be asked, or does not say: the timeouts decide.
    CannotTell,
}

/// Asks the provider how a silent placed call stands; an ending it reports is applied as if its
/// callback had come (the same once-only release as any ending).
async fn ask_provider<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    state: &Ticker<S, C, Q>,
    campaign: &domain::Campaign,
    call: &domain::Call,
    now: DateTime<Utc>,
) -> Result<Asked, TickError> {
    let Some(provider_call_id) = call.provider_call_id.as_deref() else { return Ok(Asked::CannotTell) };
    let (reason, answered_by, why) = match state.calls.call_state(campaign.settings.provider, provider_call_id).await {
        Ok(ProviderCallState::Live(_)) => return Ok(Asked::Live),
        Ok(ProviderCallState::Ended { reason, answered_by }) => (reason, answered_by, None),
        Err(providers::ProviderError::NotFound { .. }) => {
            (domain::EndReason::Failed, None, Some(format!("{} has no call {provider_call_id}", campaign.settings.provider.as_str())))
        }
        Err(e) => {
            if !matches!(e, providers::ProviderError::Unsupported { .. }) {
                tracing::warn!(call = %call.id, error = %e, "a silent call's provider could not be asked; its timeout decides");
            }
            return Ok(Asked::CannotTell);
        }
    };
    let details = (answered_by.is_some() || why.is_some()).then(|| CallDetails { answered_by, error: why, ..Default::default() });
    end_call(&state.store, call, ASKED_EVENT, reason, details, now).await?;
    tracing::warn!(call = %call.id, reason = reason.as_str(), "a silent call had ended at its provider: its callback was lost");
    Ok(Asked::Ended)
}

/// Ends `call` for `reason`, as the source `key` names: its `details` first (under `<key>:error`),
/// then the ending, each applied once however often this runs. True when this ending released
/// the call's slot (the store releases it once, whoever ends the call).
pub(crate) async fn end_call<S: CallStore>(
    store: &S,
    call: &domain::Call,
    key: &str,
    reason: domain::EndReason,
    details: Option<CallDetails>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if let Some(details) = details {
        let kind = CallEventKind::Details { details: Box::new(details) };
        store.apply_call_event(call.org_id, call.id, CallEvent { dedupe_key: format!("{key}:error"), occurred_at: now, kind }, now).await?;
    }
    let ended = CallEvent { dedupe_key: key.into(), occurred_at: now, kind: CallEventKind::Ended { reason } };
    Ok(store.apply_call_event(call.org_id, call.id, ended, now).await?.transition.is_some_and(|t| t.releases_capacity))
}

/// The dedupe key of an ending the sweep learned by asking the provider.
const ASKED_EVENT: &str = "sweep:asked";

/// The tick's work; safe to repeat (claims, sweeps and hand-overs each happen once in the store).
async fn run_tick<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    state: &Ticker<S, C, Q>,
    org: OrgId,
    campaign_id: CampaignId,
    now: DateTime<Utc>,
) -> Result<TickReport, TickError> {
    let store = &state.store;
    let mut report = TickReport::default();
    let campaign = store.get_campaign(org, campaign_id).await?;
    // calls of a paused or canceled campaign still finish, and may still go silent
    for call in store.active_calls(org, campaign_id).await? {
        if call.is_silent(now) {
            match ask_provider(state, &campaign, &call, now).await? {
                Asked::Ended => {
                    report.ended_by_provider += 1;
                    continue;
                }
                // the provider holds it: not stuck, whatever our clock says
                Asked::Live => continue,
                Asked::CannotTell => {}
            }
        }
        let Some(swept) = call.swept(now, campaign.settings.max_call_seconds) else { continue };
        let details =
            (swept == Swept::PlacementUnknown).then(|| CallDetails { error: Some(Swept::PLACEMENT_UNKNOWN.into()), ..Default::default() });
        let released = end_call(store, &call, SWEEP_EVENT, swept.end_reason(), details, now).await?;
        if released {
            report.timed_out += 1;
            tracing::warn!(call = %call.id, state = call.state.as_str(), ?swept, "no news from the provider: call ended by the sweep");
        }
    }
    for (provider, provider_call_id) in store.orphaned_calls(ORPHANS_PER_TICK, now - ORPHAN_RECHECK).await? {
        report.orphans_adopted += store::adopt_orphan_events(store, provider, &provider_call_id, now).await? as u32;
    }
    let mut awaiting_post_call = 0;
    for call in store.calls_awaiting_post_call(org, campaign_id).await? {
        if !call.post_call_due(now) {
            awaiting_post_call += 1;
        } else if hand_on_finished_call(state, &campaign, &call, now).await? {
            report.post_calls += 1;
        }
    }
    if campaign.status == CampaignStatus::Running {
        let claims = store.claim_due_contacts(org, campaign_id, now, campaign.cap.get(), state.window_margin).await?;
        report.claimed = claims.len() as u32;
        let jobs = claims.iter().map(|c| {
            let job = DialJob { org_id: org, campaign_id, call_id: c.call.id };
            state.queue.send(DIAL_JOBS, serde_json::to_string(&job).expect("a dial job serialises"))
        });
        // a job that could not be queued leaves its call queued without a provider id: the sweep times it out
        for (claim, sent) in claims.iter().zip(futures::future::join_all(jobs).await) {
            if let Err(e) = sent {
                tracing::error!(call = %claim.call.id, error = %e, "dial job not queued");
            }
        }
    }
    let campaign = store.get_campaign(org, campaign_id).await?;
    if campaign.status == CampaignStatus::Running && campaign.counters.is_finished() && awaiting_post_call == 0 {
        match store.set_campaign_status(org, campaign_id, &[CampaignStatus::Running], CampaignStatus::Completed, now).await {
            Ok(_) => {
                report.completed = true;
                tracing::info!("campaign completed");
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if campaign.status != CampaignStatus::Running || report.completed {
        state.lifecycle().sync_schedule(org, campaign_id).await?;
    }
    Ok(report)
}

/// Marks the call's post-call work done (once, whoever else tries) and queues its CRM job when
/// the campaign has a CRM target; a job that cannot be queued takes the mark back for the next tick.
async fn hand_on_finished_call<S: TickStore, C: CampaignScheduler, Q: JobQueue>(
    state: &Ticker<S, C, Q>,
    campaign: &domain::Campaign,
    call: &domain::Call,
    now: DateTime<Utc>,
) -> Result<bool, TickError> {
    let store = &state.store;
    if !store.mark_post_call(call.org_id, call.id, Some(now)).await? {
        return Ok(false);
    }
    if campaign.settings.crm.as_ref().is_some_and(|crm| !crm.connection_ids.is_empty()) {
        let job = CrmJob { org_id: call.org_id, campaign_id: call.campaign_id, call_id: call.id, retry_failed: false };
        if let Err(e) = state.queue.send(CRM_JOBS, serde_json::to_string(&job).expect("a CRM job serialises")).await {
            store.mark_post_call(call.org_id, call.id, None).await?;
            return Err(e.into());
        }
    }
    Ok(true)
}
