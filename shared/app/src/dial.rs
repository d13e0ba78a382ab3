//! Placing one queued call with its campaign's provider. Caller IDs rotate least-recently-used (a contact's retries keep theirs); the
//! provider account's pace is held across every concurrent dialer by slots reserved in the
//! store. Right before each request, and on every retry, the dial-time checks read afresh: the
//! emergency stop, the campaign's status, the do-not-call list and the contact's legal calling
//! window; a call that fails them ends unplaced. Transient provider failures go back to the queue
//! with backoff until its dead-letter queue, permanent ones fail the call at once; a request whose
//! answer was lost is looked up at the provider before anything is sent again. A job whose call is
//! no longer queued is acknowledged without dialing.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{CallDetails, CallEvent, CallEventKind, CallState, Campaign, CampaignStatus, Clearance, DialJob, DialSlot, E164, EndReason};
use platform::CallsPerSecond;
use providers::{CallProviders, CallRequest, ProviderError};
use std::time::Duration;
use store::{AssistantStore, CallStore, CallerIdStore, CampaignStore, DialingStore, PlacedCall, StoreError};

/// What placing a call reads and writes: the call, its campaign, contact and assistant, and the
/// dialing records (guard, pacing, caller IDs).
pub trait DialStore: CallStore + CampaignStore + AssistantStore + DialingStore + CallerIdStore {}
impl<T: CallStore + CampaignStore + AssistantStore + DialingStore + CallerIdStore> DialStore for T {}

/// How the dialer behaves, from `platform::DialingConfig`.
#[derive(Clone, Debug)]
pub struct DialerSettings {
    pub calls_per_second: CallsPerSecond,
    pub max_pace_wait: Duration,
    /// The queue's max receives: the last one that fails sends the job to the dead letters.
    pub max_receives: u32,
    pub retry_backoff: Duration,
    pub ring_seconds: u32,
    /// Distinguishes provider accounts in pacing keys (the Twilio account SID).
    pub account: String,
    /// A call starts only if the contact's legal window stays open this much longer.
    pub window_margin: TimeDelta,
}

impl DialerSettings {
    pub fn new(d: &platform::DialingConfig, accounts: &providers::ProviderAccounts) -> Self {
        Self {
            calls_per_second: d.calls_per_second,
            max_pace_wait: d.max_pace_wait,
            max_receives: d.max_receives,
            retry_backoff: d.retry_backoff,
            ring_seconds: d.ring_seconds,
            account: accounts.twilio.as_ref().map_or_else(|| "default".into(), |t| t.account_sid.clone()),
            window_margin: d.window_margin(),
        }
    }
}

/// What placing calls needs: the store, the call providers and the dialer's settings.
#[derive(Clone)]
pub struct Dialer<S> {
    pub store: S,
    pub providers: CallProviders,
    pub settings: DialerSettings,
}

/// What became of a job that needs nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialed {
    Placed {
        provider_call_id: String,
    },
    /// Nothing to dial: the call is no longer queued (or never existed).
    Skipped {
        reason: String,
    },
    /// The provider refused for good, or the call cannot be placed: the call is FAILED.
    Failed {
        error: String,
    },
    /// A dial-time check failed: the call ended unplaced (`reason`), no provider was asked.
    Withdrawn {
        reason: EndReason,
        why: String,
    },
    /// The provider's answer was lost and it could not be asked whether it made the call: it is
    /// never sent again; its callbacks, or the sweep, settle it.
    Unconfirmed {
        error: String,
    },
}

/// A call ready to place, or why it cannot be placed at all.
enum Prepared {
    Ready(Box<CallRequest>, DateTime<Utc>),
    Unplaceable(String),
}

/// The job must come back later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("retry in {delay:?}: {reason}")]
pub struct Retry {
    pub delay: Duration,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Retry(#[from] Retry),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S> Dialer<S> {
    /// The dialer, built once from the configuration for every place that dials.
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        let providers = CallProviders::new(&config.providers, &config.dialing.calls);
        Self { store, providers, settings: DialerSettings::new(&config.dialing, &config.providers) }
    }
}

impl<S: DialStore> Dialer<S> {
    /// Places the call of one job; `receive_count` is 1 on its first delivery.
    #[tracing::instrument(name = "dial", skip_all, fields(call = %job.call_id, campaign = %job.campaign_id, receive_count = receive_count))]
    pub async fn dial(&self, job: &DialJob, receive_count: u32, now: DateTime<Utc>) -> Result<Dialed, DialError> {
        let (org, store) = (job.org_id, &self.store);
        let call = match store.get_call(org, job.call_id).await {
            Ok(call) => call,
            Err(StoreError::NotFound { .. }) => return Ok(Dialed::Skipped { reason: format!("call {} does not exist", job.call_id) }),
            Err(e) => return Err(e.into()),
        };
        if call.state != CallState::Queued || call.provider_call_id.is_some() {
            return Ok(Dialed::Skipped { reason: format!("call {} is already {}", call.id, call.state.as_str()) });
        }
        if !store.begin_dial(org, call.id, now).await? {
            return Ok(Dialed::Skipped { reason: format!("call {} is being placed by another dialer", call.id) });
        }
        // until the provider is asked, any failure gives the call back so the job's retry can dial it
        let campaign = match store.get_campaign(org, call.campaign_id).await {
            Ok(campaign) => campaign,
            Err(e) => return Err(self.give_back_after(&call, e).await),
        };
        // a campaign not running takes no caller ID or start slot: the checks say at once what happens
        if campaign.status != CampaignStatus::Running
            && let Some(outcome) = self.check(&call, now, receive_count).await
        {
            return outcome;
        }
        let (request, placed_at) = match self.prepare(&call, &campaign, now).await {
            Ok(Prepared::Ready(request, placed_at)) => (*request, placed_at),
            Ok(Prepared::Unplaceable(error)) => return self.fail(&call, error, now).await,
            Err(e) => return Err(self.give_back_after(&call, e).await),
        };
        if let Some(outcome) = self.check(&call, placed_at, receive_count).await {
            return outcome;
        }
        let provider = campaign.settings.provider;
        let began = Utc::now();
        match self.providers.place_call(provider, &request).await {
            Ok(provider_call_id) => Ok(self.record_placement(&call, provider, provider_call_id, Some(request.from), placed_at).await),
            Err(e) if e.may_have_acted() => self.unconfirmed(&call, &campaign, &request, e, began, placed_at, receive_count, now).await,
            Err(e) if e.is_transient() => {
                self.give_back(&call).await;
                self.transient(&call, e, receive_count, now).await
            }
            Err(e) => self.fail(&call, e.to_string(), now).await,
        }
    }

    /// The dial-time checks, read afresh, at `at`: None when the call may be placed now, else what
    /// became of the job (the dial guard given back for a later try, or the call withdrawn).
    async fn check(&self, call: &domain::Call, at: DateTime<Utc>, receive_count: u32) -> Option<Result<Dialed, DialError>> {
        let check = match self.store.dial_check(call.org_id, call.id).await {
            Ok(check) => check,
            Err(e) => return Some(Err(self.give_back_after(call, e).await)),
        };
        match check.clearance(at, self.settings.window_margin) {
            Clearance::Place => None,
            // placed once the campaign resumes (or ended by the sweep if it never does)
            Clearance::Wait(reason) => Some(Err(self.give_back_after(call, Retry { delay: self.backoff(receive_count), reason }).await)),
            Clearance::Withdraw(reason, why) => Some(self.withdraw(call, reason, why, at).await),
            Clearance::Gone(reason) => Some(Ok(Dialed::Skipped { reason })),
        }
    }

    /// Stores the provider's id for the call; a call that ended meanwhile (the sweep gave up on
    /// it) is hung up at once, so nobody is on a line outdial no longer counts.
    async fn record_placement(
        &self,
        call: &domain::Call,
        provider: domain::CallProvider,
        provider_call_id: String,
        caller_id: Option<E164>,
        placed_at: DateTime<Utc>,
    ) -> Dialed {
        let store = &self.store;
        let placed = PlacedCall { provider, provider_call_id: provider_call_id.clone(), caller_id, placed_at };
        // the call is placed whatever happens here: the guard stays, so it is never dialed again
        match store.record_placed_call(call.org_id, call.id, placed).await {
            Ok(recorded) if recorded.state.is_terminal() => {
                tracing::error!(provider_call_id, state = recorded.state.as_str(), "placed a call that had already ended: hanging it up");
                if let Err(e) = self.providers.hang_up(provider, &provider_call_id).await {
                    tracing::error!(provider_call_id, error = %e, "could not hang up the call that had already ended");
                }
            }
            // the provider's first callbacks may have come before the id was stored
            Ok(_) => match store::adopt_orphan_events(store, provider.reported_by(), &provider_call_id, Utc::now()).await {
                Ok(0) => {}
                Ok(adopted) => tracing::info!(adopted, "early webhook events applied"),
                Err(e) => tracing::warn!(error = %e, "early webhook events left for the next tick"),
            },
            Err(e) => tracing::error!(provider_call_id, error = %e, "call placed but its provider id was not stored"),
        }
        tracing::info!(provider = provider.as_str(), to = %call.phone, "call placed");
        Dialed::Placed { provider_call_id }
    }

    /// The create request was sent and its answer lost: ask the provider whether it made the
    /// call. Found: adopt it. Not found: it may be sent again. Cannot ask, or the answer settles
    /// nothing: never send it twice.
    #[allow(clippy::too_many_arguments)]
    async fn unconfirmed(
        &self,
        call: &domain::Call,
        campaign: &Campaign,
        request: &CallRequest,
        error: ProviderError,
        began: DateTime<Utc>,
        placed_at: DateTime<Utc>,
        receive_count: u32,
        now: DateTime<Utc>,
    ) -> Result<Dialed, DialError> {
        let provider = campaign.settings.provider;
        match self.providers.find_placed_call(provider, request, began).await {
            Ok(found) => {
                for provider_call_id in found {
                    // a call made for an earlier attempt of the same number is not this one
                    match self.store.find_call_by_provider_id(provider.reported_by(), &provider_call_id).await? {
                        Some((_, owner)) if owner != call.id => continue,
                        _ => {
                            tracing::warn!(provider_call_id, error = %error, "the provider made the call though its answer was lost: adopted");
                            return Ok(self
                                .record_placement(call, provider, provider_call_id, Some(request.from.clone()), placed_at)
                                .await);
                        }
                    }
                }
                tracing::warn!(error = %error, "the provider did not make the call: it may be placed again");
                self.give_back(call).await;
                self.transient(call, error, receive_count, now).await
            }
            Err(lookup) => {
                let text = format!(
                    "placement outcome unknown: {error}; asking the provider settled nothing ({lookup}), so the call is not sent again"
                );
                tracing::error!(error = %error, lookup = %lookup, "placement outcome unknown: waiting for the provider's callbacks");
                let note = CallEvent { dedupe_key: "dialer:unconfirmed".into(), occurred_at: now, kind: CallEventKind::Note { text } };
                self.store.apply_call_event(call.org_id, call.id, note, now).await?;
                Ok(Dialed::Unconfirmed { error: error.to_string() })
            }
        }
    }

    /// Ends the call unplaced after a dial-time check failed (the store gives the contact its
    /// attempt back, or finalises it as `do_not_call`).
    async fn withdraw(&self, call: &domain::Call, reason: EndReason, why: String, now: DateTime<Utc>) -> Result<Dialed, DialError> {
        tracing::warn!(reason = reason.as_str(), why, "not placed");
        let key = format!("dialer:{}", reason.as_str());
        let note = CallEvent { dedupe_key: format!("{key}:why"), occurred_at: now, kind: CallEventKind::Note { text: why.clone() } };
        self.store.apply_call_event(call.org_id, call.id, note, now).await?;
        let ended = CallEvent { dedupe_key: key, occurred_at: now, kind: CallEventKind::Ended { reason } };
        self.store.apply_call_event(call.org_id, call.id, ended, now).await?;
        Ok(Dialed::Withdrawn { reason, why })
    }

    /// Everything a placement needs, read and reserved: the request and its pacing slot.
    async fn prepare(&self, call: &domain::Call, campaign: &Campaign, now: DateTime<Utc>) -> Result<Prepared, DialError> {
        let (org, store) = (call.org_id, &self.store);
        let contact = store.get_contact(org, campaign.id, call.contact_id).await?;
        let assistant_provider_id = match campaign.assistant_id {
            Some(id) => match store.get_assistant(org, id).await {
                Ok(a) => a.provider_assistant_id,
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        // only numbers still registered to the organisation (for this provider) are called from
        let provider = campaign.settings.provider;
        let registered: Vec<_> =
            store.registered_caller_ids(org, &campaign.settings.caller_ids).await?.into_iter().filter(|c| c.serves(provider)).collect();
        let pool: Vec<E164> = registered.iter().map(|c| c.phone.clone()).collect();
        // a retry keeps the number it used before; a first call picks by the campaign's strategy
        let kept = contact.caller_id.as_ref().is_some_and(|c| pool.contains(c));
        let pool = if kept { pool } else { campaign.settings.caller_id_strategy.candidates(&pool, &call.phone) };
        let Some(from) = store.take_caller_id(org, &pool, contact.caller_id.as_ref(), now).await? else {
            return Ok(Prepared::Unplaceable(
                "none of the campaign's caller IDs is registered to the organisation; register them with POST /caller-ids".into(),
            ));
        };
        let from_number_id = registered.iter().find(|c| c.phone == from).and_then(|c| c.provider_number_id(provider)).map(str::to_string);
        let placed_at = self.wait_for_slot(campaign.settings.provider, now).await?;
        let request = CallRequest {
            org_id: org,
            campaign_id: campaign.id,
            call_id: call.id,
            contact_id: contact.id,
            to: call.phone.clone(),
            from,
            from_number_id,
            assistant_provider_id,
            variables: contact.dynamic_variables(),
            recording: campaign.settings.recording,
            voicemail: campaign.settings.voicemail.clone(),
            max_call_seconds: campaign.settings.max_call_seconds,
            ring_seconds: self.settings.ring_seconds,
        };
        Ok(Prepared::Ready(Box::new(request), placed_at))
    }

    /// Gives the dial guard back; if that fails too the sweep ends the call.
    async fn give_back(&self, call: &domain::Call) {
        if let Err(e) = self.store.abandon_dial(call.org_id, call.id).await {
            tracing::warn!(error = %e, "dial guard not given back; the sweep will end the call");
        }
    }

    /// Gives the dial guard back before `error` sends the job back to the queue.
    async fn give_back_after(&self, call: &domain::Call, error: impl Into<DialError>) -> DialError {
        self.give_back(call).await;
        error.into()
    }

    /// Waits for a start slot of the provider account's pace; the job goes back when none is near.
    async fn wait_for_slot(&self, provider: domain::CallProvider, now: DateTime<Utc>) -> Result<DateTime<Utc>, DialError> {
        let pace = self.settings.calls_per_second.pace(provider);
        let account = format!("{}#{}", provider.as_str(), self.settings.account);
        match self.store.reserve_dial_slot(&account, now, pace, self.settings.max_pace_wait).await? {
            DialSlot::At(slot) => {
                if let Ok(wait) = (slot - now).to_std() {
                    tokio::time::sleep(wait).await;
                }
                Ok(slot)
            }
            DialSlot::Busy { until } => {
                let delay = (until - now).to_std().unwrap_or_default();
                Err(Retry { delay, reason: format!("{} is at its pace of {:?} between calls", provider.as_str(), pace.interval) }.into())
            }
        }
    }

    async fn transient(
        &self,
        call: &domain::Call,
        error: ProviderError,
        receive_count: u32,
        now: DateTime<Utc>,
    ) -> Result<Dialed, DialError> {
        let reason = error.to_string();
        if receive_count >= self.settings.max_receives {
            // the queue will dead-letter the job now: the call ends with the provider's last word
            self.end(call, "dialer:failed", EndReason::Failed, Some(reason.clone()), now).await?;
            tracing::error!(error = %reason, "gave up placing the call");
        } else {
            tracing::warn!(receive_count, error = %reason, "provider unavailable; the job will be retried");
        }
        Err(Retry { delay: self.backoff(receive_count), reason }.into())
    }

    async fn fail(&self, call: &domain::Call, error: String, now: DateTime<Utc>) -> Result<Dialed, DialError> {
        tracing::warn!(error = %error, "call refused");
        self.end(call, "dialer:failed", EndReason::Failed, Some(error.clone()), now).await?;
        Ok(Dialed::Failed { error })
    }

    /// Ends the call (the store releases its slot and settles the contact), with the error first.
    async fn end(
        &self,
        call: &domain::Call,
        key: &str,
        reason: EndReason,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(error) = error {
            let details = CallDetails { error: Some(error), ..Default::default() };
            let event = CallEvent {
                dedupe_key: format!("{key}:error"),
                occurred_at: now,
                kind: CallEventKind::Details { details: Box::new(details) },
            };
            self.store.apply_call_event(call.org_id, call.id, event, now).await?;
        }
        let event = CallEvent { dedupe_key: key.into(), occurred_at: now, kind: CallEventKind::Ended { reason } };
        self.store.apply_call_event(call.org_id, call.id, event, now).await.map(drop)
    }

    /// Doubles per receive: 1×, 2×, 4×… the base delay, at most 12 hours (SQS's longest).
    pub fn backoff(&self, receive_count: u32) -> Duration {
        (self.settings.retry_backoff * 2u32.saturating_pow(receive_count.saturating_sub(1).min(16))).min(Duration::from_secs(12 * 3600))
    }
}
