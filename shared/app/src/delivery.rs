//! Applying a verified, normalised webhook delivery: once per dedupe key, states only forward,
//! capacity released once, the contact retried or finalised. Events for a provider call id no
//! call has yet are kept as orphans for the dialer or the next tick to apply. Answering-machine
//! results drive the campaign's voicemail action; an opt-out puts the number on the do-not-call
//! list; a call that ended asks for its campaign's tick so its slot is used at once.

use crate::tick::TickRequests;
use chrono::{DateTime, Utc};
use domain::{AnsweredBy, CallEvent, CallEventKind, CallId, CallProvider, OrgId, VoicemailStep};
use providers::CallProviders;
use store::{CallStore, CampaignStore, DialingStore, DoNotCallStore, PlacedCall, StoreError};

/// One webhook, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Whose ids `provider_call_id` is.
    pub provider: CallProvider,
    pub provider_call_id: String,
    /// The call, from the dynamic variables or metadata the dialer sent along (`outdial_org_id`, `outdial_call_id`).
    pub call: Option<(OrgId, CallId)>,
    /// Our call id alone, from the callback URL we gave the provider (Twilio's `?callId=`).
    pub our_call_id: Option<CallId>,
    pub events: Vec<CallEvent>,
}

/// What applying a delivery touches: calls (and their placement record), their campaigns, and
/// the do-not-call list; shared by the webhook routes' state, hence `Clone`.
pub trait DeliveryStore: CallStore + DialingStore + CampaignStore + DoNotCallStore + Clone + 'static {}
impl<T: CallStore + DialingStore + CampaignStore + DoNotCallStore + Clone + 'static> DeliveryStore for T {}

/// Where a delivery's effects go: the store, the providers (to hang up on machines and on
/// second calls) and the ticks an ended call asks for.
#[derive(Clone, Copy)]
pub struct Courier<'a, S, T> {
    pub store: &'a S,
    pub calls: &'a CallProviders,
    pub ticks: &'a T,
}

/// The call a delivery is about: by the ids it carries, else by the provider's call id, else by
/// our call id from its URL; true when found through our ids, so the call may lack the provider's id.
async fn target_of<S: DeliveryStore>(store: &S, delivery: &Delivery) -> Result<Option<((OrgId, CallId), bool)>, StoreError> {
    if let Some(ids) = delivery.call {
        return Ok(Some((ids, true)));
    }
    if let Some(ids) = store.find_call_by_provider_id(delivery.provider, &delivery.provider_call_id).await? {
        return Ok(Some((ids, false)));
    }
    let Some(call) = delivery.our_call_id else { return Ok(None) };
    Ok(store.call_owner(call).await?.map(|org| ((org, call), true)))
}

/// Whose events a delivery found through our ids carries.
enum Owner {
    /// Its call's (a bridged Twilio call also hears from ElevenLabs, under another id).
    TheCall,
    /// A second provider call, of this provider, carrying the same call id: a placement made twice.
    Stray(CallProvider),
    /// A provider that does not carry the call's campaign names it: not this call's to steer.
    Foreign(CallProvider),
}

/// Whether a delivery found through our ids is about its call's provider call: a call that has
/// no provider id yet (a placement whose answer the dialer never got) adopts the delivery's, so
/// the rest of its callbacks find it. A second provider call carrying the same call id must not
/// steer the call.
async fn owner_of<S: DeliveryStore>(store: &S, call: &domain::Call, delivery: &Delivery, now: DateTime<Utc>) -> Result<Owner, StoreError> {
    let provider = store.get_campaign(call.org_id, call.campaign_id).await?.settings.provider;
    if !provider.hears_from(delivery.provider) {
        return Ok(Owner::Foreign(provider));
    }
    if call.provider_call_id.as_deref() == Some(delivery.provider_call_id.as_str()) || provider.reported_by() != delivery.provider {
        return Ok(Owner::TheCall);
    }
    if call.provider_call_id.is_some() {
        return Ok(Owner::Stray(provider));
    }
    let placed = PlacedCall { provider, provider_call_id: delivery.provider_call_id.clone(), caller_id: None, placed_at: now };
    match store.record_placed_call(call.org_id, call.id, placed).await {
        Ok(_) => {
            tracing::warn!("the provider's id, unknown until now, adopted from a callback carrying our call id");
            store::adopt_orphan_events(store, delivery.provider, &delivery.provider_call_id, now).await?;
            Ok(Owner::TheCall)
        }
        Err(StoreError::Conflict(_)) => Ok(Owner::Stray(provider)),
        Err(e) => Err(e),
    }
}

/// A second provider call made for one of ours: its events are kept aside, and it is hung up
/// while it may still ring.
async fn stray_call<S: DeliveryStore, T: TickRequests>(
    courier: &Courier<'_, S, T>,
    call: &domain::Call,
    provider: CallProvider,
    delivery: Delivery,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let ended = delivery.events.iter().any(|e| matches!(e.kind, CallEventKind::Ended { .. }));
    tracing::error!(kept = ?call.provider_call_id, "a second provider call carries this call's id: a placement made twice");
    if !ended && let Err(e) = courier.calls.hang_up(provider, &delivery.provider_call_id).await {
        tracing::error!(error = %e, "could not hang up the second provider call");
    }
    keep_orphans(courier.store, delivery, now).await
}

/// Applies a verified delivery: to its call when known, else kept as orphans.
#[tracing::instrument(name = "webhook_delivery", skip_all, fields(
    provider = delivery.provider.as_str(),
    provider_call_id = %delivery.provider_call_id,
    call = tracing::field::Empty,
))]
pub async fn deliver<S: DeliveryStore, T: TickRequests>(
    courier: &Courier<'_, S, T>,
    delivery: Delivery,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let store = courier.store;
    let Some(((org, call_id), by_our_ids)) = target_of(store, &delivery).await? else { return keep_orphans(store, delivery, now).await };
    tracing::Span::current().record("call", tracing::field::display(call_id));
    if by_our_ids {
        let call = match store.get_call(org, call_id).await {
            Ok(call) => call,
            // ids in a payload naming a call this deployment does not have
            Err(StoreError::NotFound { .. }) => return keep_orphans(store, delivery, now).await,
            Err(e) => return Err(e),
        };
        match owner_of(store, &call, &delivery, now).await? {
            Owner::TheCall => {}
            Owner::Stray(provider) => return stray_call(courier, &call, provider, delivery, now).await,
            Owner::Foreign(carrier) => {
                tracing::warn!(carrier = carrier.as_str(), "a payload names a call its provider does not carry: kept as an orphan");
                return keep_orphans(store, delivery, now).await;
            }
        }
    }
    let mut answered_by: Option<AnsweredBy> = None;
    let mut opted_out = false;
    let mut changed = false;
    let mut call = None;
    for event in delivery.events.iter().cloned() {
        let (by, opt_out) = match &event.kind {
            CallEventKind::Details { details } => (details.answered_by, details.opted_out),
            _ => (None, false),
        };
        let applied = match store.apply_call_event(org, call_id, event, now).await {
            Ok(applied) => applied,
            // ids in a payload naming a call this deployment does not have
            Err(StoreError::NotFound { .. }) if call.is_none() => return keep_orphans(store, delivery, now).await,
            Err(e) => return Err(e),
        };
        if !applied.duplicate {
            changed = true;
            answered_by = by.or(answered_by);
            opted_out |= opt_out;
        }
        call = Some(applied.call);
    }
    let Some(call) = call else { return Ok(()) };
    if opted_out {
        let added = store.add_do_not_call(org, vec![call.phone.clone()], now).await?;
        tracing::info!(phone = %domain::mask_phone(call.phone.as_str()), newly_listed = added.added, "callee opted out: number on the do-not-call list");
    }
    if let Some(by) = answered_by.filter(|_| !call.state.is_terminal()) {
        take_voicemail_action(courier, &call, by).await?;
    }
    if changed && call.state.is_terminal() && call.post_call_at.is_none() {
        courier.ticks.request_tick(org, call.campaign_id).await;
    }
    Ok(())
}

/// Keeps the events until their call is known; the dialer may have stored it meanwhile.
async fn keep_orphans<S: DeliveryStore>(store: &S, delivery: Delivery, now: DateTime<Utc>) -> Result<(), StoreError> {
    for event in delivery.events {
        store.record_orphan_event(delivery.provider, &delivery.provider_call_id, event, now).await?;
    }
    let adopted = store::adopt_orphan_events(store, delivery.provider, &delivery.provider_call_id, now).await?;
    tracing::info!(adopted, "event for a call not known (yet): kept as an orphan");
    Ok(())
}

/// Hangs up on a machine, or leaves the campaign's message first, as the campaign says.
async fn take_voicemail_action<S: DeliveryStore, T: TickRequests>(
    courier: &Courier<'_, S, T>,
    call: &domain::Call,
    by: AnsweredBy,
) -> Result<(), StoreError> {
    let campaign = courier.store.get_campaign(call.org_id, call.campaign_id).await?;
    let voicemail = &campaign.settings.voicemail;
    let (Some(step), Some(provider_call_id)) = (by.voicemail_step(voicemail.action), &call.provider_call_id) else { return Ok(()) };
    let provider = campaign.settings.provider;
    let done = match (step, voicemail.message.as_deref()) {
        (VoicemailStep::LeaveMessage, Some(message)) => courier.calls.leave_voicemail(provider, provider_call_id, message).await,
        _ => courier.calls.hang_up(provider, provider_call_id).await,
    };
    match done {
        Ok(()) => tracing::info!(?step, "answering machine: voicemail action taken"),
        // the call still ends by itself (ring timeout, time limit); its outcome is voicemail either way
        Err(e) => tracing::error!(?step, error = %e, "answering machine: voicemail action failed"),
    }
    Ok(())
}
