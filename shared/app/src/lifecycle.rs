//! Starting, pausing, resuming and canceling campaigns, the emergency stop, and what a schedule
//! firing asks for. Status changes are conditional writes in the store; the tick schedule then
//! follows the status the store ends up with, so racing requests leave exactly one schedule on a
//! running campaign and none on any other.

use chrono::Utc;
use domain::{Campaign, CampaignId, CampaignStatus, EmergencyStop, OrgId, Organisation, StartRefusal, UnmetCheck};
use platform::{CampaignScheduler, Schedule, ScheduledAction, ScheduledRun, SchedulerError};
use providers::ProviderAccounts;
use store::{AssistantStore, CallerIdStore, CampaignStore, CrmStore, OrgStore, StoreError};

/// Why a lifecycle change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The campaign is not in the status the change starts from.
    #[error("campaign {id} is {} and cannot be {verb}; only a {} campaign can", .is.as_str(), .from.as_str())]
    InvalidTransition { id: CampaignId, is: CampaignStatus, from: CampaignStatus, verb: &'static str },
    /// The organisation's emergency stop holds.
    #[error(
        "campaign {id} cannot run: the organisation's emergency stop holds since {}; lift it with DELETE /emergency-stop (or `outdial stop --lift`) first",
        .stop.since.to_rfc3339()
    )]
    Stopped { id: CampaignId, stop: EmergencyStop },
    /// Every launch check that failed.
    #[error("{}", .0.iter().map(UnmetCheck::message).collect::<Vec<_>>().join("; "))]
    LaunchChecks(Vec<UnmetCheck>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

impl LifecycleError {
    /// The campaign cannot make this change as it stands (as opposed to a backend failing).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Scheduler(_) | Self::Store(StoreError::Backend { .. } | StoreError::Corrupt(_)))
    }

    /// The stable name a refused start is recorded under (`StartRefusal::reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidTransition { .. } => "invalid-transition",
            Self::Stopped { .. } => "emergency-stop",
            Self::LaunchChecks(_) => "launch-checks-failed",
            Self::Store(StoreError::NotFound { .. }) => "not-found",
            Self::Store(_) => "store-failed",
            Self::Scheduler(_) => "scheduler-unavailable",
        }
    }
}

/// What changing a campaign's status needs: its store, its scheduler, and which providers have
/// credentials (a launch check).
#[derive(Clone, Copy)]
pub struct Lifecycle<'a, S, C> {
    pub store: &'a S,
    pub scheduler: &'a C,
    pub accounts: &'a ProviderAccounts,
    /// Where the assistant's tools must be declared (`ToolsConfig::public_url`).
    pub tools_url: Option<&'a str>,
}

impl<S: OrgStore + CampaignStore + AssistantStore + CallerIdStore + CrmStore, C: CampaignScheduler> Lifecycle<'_, S, C> {
    /// Makes the campaign's tick schedule match its status: present while running, absent otherwise.
    /// Re-reads the status after each change, so a status that moved meanwhile is followed too.
    pub async fn sync_schedule(&self, org: OrgId, id: CampaignId) -> Result<Campaign, LifecycleError> {
        let mut campaign = self.store.get_campaign(org, id).await?;
        for _ in 0..5 {
            let running = campaign.status == CampaignStatus::Running;
            let result = if running {
                self.scheduler.create(org, id, Schedule::Ticks).await
            } else {
                self.scheduler.delete(id, ScheduledAction::Tick).await
            };
            match result {
                Ok(()) | Err(SchedulerError::AlreadyExists(_) | SchedulerError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let now = self.store.get_campaign(org, id).await?;
            if (now.status == CampaignStatus::Running) == running {
                return Ok(now);
            }
            campaign = now;
        }
        Ok(campaign)
    }

    async fn drop_start_schedule(&self, id: CampaignId) -> Result<(), LifecycleError> {
        match self.scheduler.delete(id, ScheduledAction::Start).await {
            Ok(()) | Err(SchedulerError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a draft campaign: the launch checks run first.
    pub async fn start(&self, org: OrgId, id: CampaignId) -> Result<Campaign, LifecycleError> {
        self.launch(org, id, CampaignStatus::Draft).await
    }

    /// Resumes a paused campaign (the launch checks run again).
    pub async fn resume(&self, org: OrgId, id: CampaignId) -> Result<Campaign, LifecycleError> {
        self.launch(org, id, CampaignStatus::Paused).await
    }

    /// Runs the launch checks and moves the campaign from `from` to running, unless the
    /// organisation's emergency stop holds.
    async fn launch(&self, org: OrgId, id: CampaignId, from: CampaignStatus) -> Result<Campaign, LifecycleError> {
        if let Some(stop) = self.store.get_org(org).await?.emergency_stop {
            return Err(LifecycleError::Stopped { id, stop });
        }
        let campaign = self.store.get_campaign(org, id).await?;
        if campaign.status != from {
            let verb = if from == CampaignStatus::Draft { "started" } else { "resumed" };
            return Err(LifecycleError::InvalidTransition { id, is: campaign.status, from, verb });
        }
        let assistant = match campaign.assistant_id {
            Some(a) => match self.store.get_assistant(org, a).await {
                Ok(assistant) => Some(assistant),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let missing = self.accounts.missing_for_calls(campaign.settings.provider);
        let registered = self.store.registered_caller_ids(org, &campaign.settings.caller_ids).await?;
        let mut gone = Vec::new();
        for id in campaign.settings.crm.iter().flat_map(|crm| &crm.connection_ids) {
            match self.store.crm_connection(org, *id).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => gone.push(*id),
                Err(e) => return Err(e.into()),
            }
        }
        let mut unmet = campaign.unmet_launch_checks(assistant.as_ref(), &missing, &registered, &gone);
        unmet.extend(assistant.as_ref().and_then(|a| a.undeclared_tools(self.tools_url)));
        if !unmet.is_empty() {
            return Err(LifecycleError::LaunchChecks(unmet));
        }
        self.store.set_campaign_status(org, id, &[from], CampaignStatus::Running, Utc::now()).await?;
        // a stop set while this start ran may have paused everything but this campaign
        if let Some(stop) = self.store.get_org(org).await?.emergency_stop {
            self.pause_running(org, id).await?;
            return Err(LifecycleError::Stopped { id, stop });
        }
        let campaign = self.sync_schedule(org, id).await?;
        self.drop_start_schedule(id).await?;
        tracing::info!("campaign running");
        Ok(campaign)
    }

    /// Pauses a running campaign: no new calls; calls in flight finish.
    pub async fn pause(&self, org: OrgId, id: CampaignId) -> Result<Campaign, LifecycleError> {
        self.store.set_campaign_status(org, id, &[CampaignStatus::Running], CampaignStatus::Paused, Utc::now()).await?;
        self.sync_schedule(org, id).await
    }

    /// Cancels a campaign: contacts not yet called are finalised as `canceled`; calls in flight
    /// finish and are recorded.
    pub async fn cancel(&self, org: OrgId, id: CampaignId) -> Result<Campaign, LifecycleError> {
        self.store.cancel_campaign(org, id, Utc::now()).await?;
        let campaign = self.sync_schedule(org, id).await?;
        self.drop_start_schedule(id).await?;
        Ok(campaign)
    }

    /// Pauses the campaign if it is running (a conflict means it stopped running meanwhile) and
    /// removes its schedule; the paused campaign, if it was paused.
    async fn pause_running(&self, org: OrgId, id: CampaignId) -> Result<Option<Campaign>, LifecycleError> {
        match self.store.set_campaign_status(org, id, &[CampaignStatus::Running], CampaignStatus::Paused, Utc::now()).await {
            Ok(_) => Ok(Some(self.sync_schedule(org, id).await?)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the organisation's emergency stop (keeping when and by whom it was first set) and
    /// pauses every running campaign; the organisation and the campaigns this paused.
    pub async fn set_emergency_stop(&self, org: OrgId, key_id: String) -> Result<(Organisation, Vec<Campaign>), LifecycleError> {
        let current = self.store.get_org(org).await?.emergency_stop;
        let stop = current.unwrap_or(EmergencyStop { since: Utc::now(), by: Some(key_id) });
        let org_now = self.store.set_emergency_stop(org, Some(stop)).await?;
        let running = self.store.campaigns_with_status(org, CampaignStatus::Running).await?;
        let paused = futures::future::join_all(running.iter().map(|c| self.pause_running(org, c.id))).await;
        let paused = paused.into_iter().filter_map(Result::transpose).collect::<Result<Vec<_>, _>>()?;
        tracing::warn!(paused = paused.len(), "emergency stop set");
        Ok((org_now, paused))
    }

    /// Lifts the emergency stop; campaigns it paused stay paused until each is resumed.
    pub async fn lift_emergency_stop(&self, org: OrgId) -> Result<Organisation, LifecycleError> {
        let org_now = self.store.set_emergency_stop(org, None).await?;
        tracing::warn!("emergency stop lifted");
        Ok(org_now)
    }

    /// Handles the one-shot `start` schedule firing at `startAt`: starts the campaign if it is
    /// still a draft (launch checks and emergency stop included), and drops the schedule either
    /// way; a refusal is recorded on the campaign (`startRefused`).
    pub async fn on_scheduled_start(&self, run: &ScheduledRun) -> Result<(), LifecycleError> {
        match self.start(run.org, run.campaign).await {
            Ok(_) => Ok(()),
            // a failing store or scheduler is retried by the schedule; a refusal is final
            Err(e) if !e.is_refusal() => Err(e),
            Err(refused) => {
                tracing::warn!(detail = %refused, "scheduled start refused");
                let refusal = StartRefusal { at: Utc::now(), reason: refused.reason().into(), detail: refused.to_string() };
                match self.store.record_start_refusal(run.org, run.campaign, refusal).await {
                    Ok(()) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.drop_start_schedule(run.campaign).await
            }
        }
    }
}
