//! Dialing policy: which contacts a tick may release, when the sweep gives up on a silent call,
//! which caller ID a call goes out from, and when the next call may start under a provider's pace.

use crate::{
    Call, CallId, CallState, CallingArea, Campaign, CampaignId, CampaignStatus, Contact, ContactId, DialMode, E164, EndReason, OrgId,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, time::Duration};

/// A queued call waiting for the dialer: the message on the `dial-jobs` queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DialJob {
    pub org_id: OrgId,
    pub campaign_id: CampaignId,
    pub call_id: CallId,
}

/// A finished call whose outcome goes to the campaign's CRM target: the message on `crm-jobs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmJob {
    pub org_id: OrgId,
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    /// Asked for by a person (`POST /calls/{id}/crm/retry`): deliveries that failed for good are tried again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_failed: bool,
}

/// Silence allowed while the provider has not even accepted (or not yet rung) the call.
pub const QUEUED_TIMEOUT: TimeDelta = TimeDelta::minutes(5);
/// Silence allowed while the phone rings.
pub const RINGING_TIMEOUT: TimeDelta = TimeDelta::minutes(2);
/// Silence allowed past the longest call a campaign permits.
pub const IN_PROGRESS_GRACE: TimeDelta = TimeDelta::minutes(5);

/// Silence after which the sweep asks the provider how a placed call stands, before any timeout:
/// a lost callback then costs a tick, not the minutes above.
pub const SILENT_AFTER: TimeDelta = TimeDelta::seconds(60);

/// How long a dialer may hold a call's dial guard: the sweep leaves a queued call alone this long
/// after a dialer took it, so the pacing wait and the provider's answer (and a lookup after an
/// unclear one) must fit in it; `platform::Config` refuses settings that would not.
pub const DIAL_GUARD_HOLD: TimeDelta = QUEUED_TIMEOUT;

/// Why the sweep ends a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// No news past its state's timeout.
    TimedOut,
    /// A dialer took it and never recorded it placed: the provider may or may not have the call.
    PlacementUnknown,
}

impl Swept {
    pub const PLACEMENT_UNKNOWN: &'static str =
        "placement outcome unknown: the provider's answer to the create request was lost and no callback came";

    pub fn end_reason(self) -> EndReason {
        match self {
            Self::TimedOut => EndReason::Timeout,
            Self::PlacementUnknown => EndReason::Failed,
        }
    }
}

impl Call {
    /// The last sign of life: its last status, when a dialer took it, when it was placed.
    fn last_news(&self) -> DateTime<Utc> {
        [self.dialing_since, self.placed_at].into_iter().flatten().fold(self.last_status_at, DateTime::max)
    }

    /// True when a placed call has had no news for `SILENT_AFTER`: worth asking its provider about.
    pub fn is_silent(&self, now: DateTime<Utc>) -> bool {
        self.provider_call_id.is_some() && !self.state.is_terminal() && now - self.last_news() > SILENT_AFTER
    }

    /// True when the call has had no news for longer than its state allows (a dialer taking it
    /// counts as news): the sweep ends it.
    pub fn is_stuck(&self, now: DateTime<Utc>, max_call_seconds: u32) -> bool {
        let allowed = match self.state {
            CallState::Queued => QUEUED_TIMEOUT,
            CallState::Ringing => RINGING_TIMEOUT,
            CallState::InProgress => TimeDelta::seconds(i64::from(max_call_seconds)) + IN_PROGRESS_GRACE,
            CallState::Ended | CallState::Failed | CallState::Canceled | CallState::Timeout => return false,
        };
        now - self.last_news() > allowed
    }

    /// How the sweep ends the call at `now`, if it is stuck.
    pub fn swept(&self, now: DateTime<Utc>, max_call_seconds: u32) -> Option<Swept> {
        if !self.is_stuck(now, max_call_seconds) {
            return None;
        }
        let unknown = self.state == CallState::Queued && self.dialing_since.is_some() && self.provider_call_id.is_none();
        Some(if unknown { Swept::PlacementUnknown } else { Swept::TimedOut })
    }
}

impl Call {
    /// Records the provider's acceptance of the call. Ok(false) when this id is already recorded
    /// (nothing changes); Err with the other id the call already has.
    pub fn record_placement(&mut self, provider_call_id: &str, caller_id: Option<E164>, placed_at: DateTime<Utc>) -> Result<bool, String> {
        match &self.provider_call_id {
            Some(id) if id == provider_call_id => Ok(false),
            Some(id) => Err(id.clone()),
            None => {
                self.provider_call_id = Some(provider_call_id.to_string());
                self.caller_id = caller_id;
                self.placed_at = Some(placed_at);
                Ok(true)
            }
        }
    }
}

/// The batch a contact belongs to: its position among the campaign's contacts, `size` at a time.
pub fn batch_of(mode: DialMode, batch_size: Option<u32>, position: u64) -> u32 {
    match (mode, batch_size) {
        (DialMode::Batch, Some(size)) if size > 0 => u32::try_from(position / u64::from(size)).unwrap_or(u32::MAX),
        _ => 0,
    }
}

impl Campaign {
    /// The areas among `areas` whose contacts may start a call at `now` that stays inside their
    /// legal window for `margin`.
    pub fn open_areas<'a>(
        &self,
        areas: impl IntoIterator<Item = &'a CallingArea>,
        now: DateTime<Utc>,
        margin: TimeDelta,
    ) -> Vec<CallingArea> {
        areas.into_iter().copied().filter(|a| self.effective_window(a.state).is_open_for(now, a.zone, margin)).collect()
    }

    /// The batch of the contact at `position` (0-based, in import order).
    pub fn batch_of(&self, position: u64) -> u32 {
        batch_of(self.settings.mode, self.settings.batch_size, position)
    }

    /// The batch a tick claims from: the current one in batch mode, the only one otherwise.
    pub fn claimable_batch(&self) -> u32 {
        match self.settings.mode {
            DialMode::Batch => self.current_batch,
            DialMode::Continuous => 0,
        }
    }

    /// Whether the tick may move on from the current batch once nothing of it is ready: batch
    /// mode, and nothing being dialed (live calls all belong to the current batch).
    pub fn may_advance_batch(&self) -> bool {
        self.settings.mode == DialMode::Batch && self.counters.active_calls == 0
    }
}

/// What the dialer reads afresh right before it asks the provider: everything that may have
/// changed since the contact was claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct DialCheck {
    pub call: Call,
    pub campaign: Campaign,
    pub contact: Contact,
    /// The organisation's emergency stop holds.
    pub stopped: bool,
    /// The number is on the organisation's do-not-call list.
    pub listed: bool,
}

/// Whether a call may be placed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clearance {
    Place,
    /// Not now (a paused campaign): the job comes back later.
    Wait(String),
    /// Not at all: the call ends unplaced with this reason.
    Withdraw(EndReason, String),
    /// It ended, or was placed, meanwhile: nothing is left to do.
    Gone(String),
}

impl DialCheck {
    /// The dial-time checks, in order: the call is still ours to place, no emergency stop, the
    /// campaign still running, the number not listed, consent on record, the legal window open for
    /// `margin` more.
    pub fn clearance(&self, now: DateTime<Utc>, margin: TimeDelta) -> Clearance {
        let (call, campaign, contact) = (&self.call, &self.campaign, &self.contact);
        if call.state != CallState::Queued || call.provider_call_id.is_some() {
            return Clearance::Gone(format!("call {} is already {}", call.id, call.state.as_str()));
        }
        if self.stopped {
            return Clearance::Withdraw(EndReason::Canceled, "the organisation's emergency stop holds".into());
        }
        match campaign.status {
            CampaignStatus::Running => {}
            CampaignStatus::Paused | CampaignStatus::Draft => {
                return Clearance::Wait(format!("campaign {} is {}", campaign.id, campaign.status.as_str()));
            }
            CampaignStatus::Canceled | CampaignStatus::Completed => {
                return Clearance::Withdraw(EndReason::Canceled, format!("campaign {} is {}", campaign.id, campaign.status.as_str()));
            }
        }
        if self.listed {
            return Clearance::Withdraw(EndReason::DoNotCall, "the number is on the do-not-call list".into());
        }
        // an artificial voice needs prior express consent (TCPA, FCC 24-17): none on record, no call
        if contact.consent.is_none() {
            return Clearance::Withdraw(
                EndReason::NoConsent,
                "the contact has no consent on record: import it again with a consent column or an attestation".into(),
            );
        }
        let area = contact.calling_area();
        if !campaign.effective_window(area.state).is_open_for(now, area.zone, margin) {
            let state = area.state.map_or(String::new(), |s| format!(" ({s})"));
            return Clearance::Withdraw(
                EndReason::OutsideWindow,
                format!("outside the contact's legal calling window in {}{state}", area.zone.name()),
            );
        }
        Clearance::Place
    }
}

/// The order ready contacts are claimed in: earliest due first, then highest priority, then oldest.
pub fn claim_order(a: &Contact, b: &Contact) -> std::cmp::Ordering {
    a.due_at.cmp(&b.due_at).then(b.priority.cmp(&a.priority)).then(a.id.cmp(&b.id))
}

/// The caller ID for a call: the contact's previous one when it is still in the pool, else the
/// pool's least recently used number (never used first, then in pool order).
pub fn choose_caller_id<'a>(pool: &'a [E164], last_used: &BTreeMap<String, DateTime<Utc>>, preferred: Option<&E164>) -> Option<&'a E164> {
    if let Some(p) = preferred.and_then(|p| pool.iter().find(|n| *n == p)) {
        return Some(p);
    }
    pool.iter().enumerate().min_by_key(|(i, n)| (last_used.get(n.as_str()).copied(), *i)).map(|(_, n)| n)
}

/// When a chosen caller ID counts as used: after every use on record, so it becomes the most
/// recently used however far apart the dialers' clocks (and the `now` each took) are.
pub fn caller_id_use_stamp(last_used: &BTreeMap<String, DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    last_used.values().max().map_or(now, |latest| now.max(*latest + chrono::TimeDelta::milliseconds(1)))
}

/// How fast a provider account accepts new calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Time between two call starts; zero means no limit.
    pub interval: Duration,
}

impl Pace {
    /// `calls_per_second` ≤ 0 means no limit.
    pub fn per_second(calls_per_second: f64) -> Self {
        let interval = if calls_per_second > 0.0 { Duration::from_secs_f64(1.0 / calls_per_second) } else { Duration::ZERO };
        Self { interval }
    }

    pub fn unlimited() -> Self {
        Self { interval: Duration::ZERO }
    }
}

/// When a call may start under a pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialSlot {
    /// Reserved: place the call at this instant.
    At(DateTime<Utc>),
    /// Every slot within the wait allowed is taken; ask again at `until`.
    Busy { until: DateTime<Utc> },
}

/// Reserves the next slot after `next_free` (the first instant not yet reserved): the slot and
/// the new `next_free`, or Busy (reserving nothing) when the slot is more than `max_wait` away.
pub fn reserve_slot(
    next_free: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    pace: Pace,
    max_wait: Duration,
) -> (DialSlot, Option<DateTime<Utc>>) {
    let slot = next_free.map_or(now, |t| t.max(now));
    if slot - now > TimeDelta::from_std(max_wait).unwrap_or(TimeDelta::MAX) {
        return (DialSlot::Busy { until: slot }, None);
    }
    let interval = TimeDelta::from_std(pace.interval).unwrap_or(TimeDelta::MAX);
    (DialSlot::At(slot), Some(slot + interval))
}

/// The dynamic variables that carry a call's own ids along with it; the providers echo them in
/// their webhooks, which find the call by `ORG_ID_VARIABLE` and `CALL_ID_VARIABLE`.
pub const ORG_ID_VARIABLE: &str = "outdial_org_id";
pub const CALL_ID_VARIABLE: &str = "outdial_call_id";

/// A call's ids as dynamic variables (organisation, campaign, call, contact).
pub fn id_variables(org: OrgId, campaign: CampaignId, call: CallId, contact: ContactId) -> [(String, String); 4] {
    [
        (ORG_ID_VARIABLE.into(), org.to_string()),
        ("outdial_campaign_id".into(), campaign.to_string()),
        (CALL_ID_VARIABLE.into(), call.to_string()),
        ("outdial_contact_id".into(), contact.to_string()),
    ]
}

impl Contact {
    /// What the assistant may say about the contact: its imported fields and extra columns, its
    /// name, and the id our webhooks find it by.
    pub fn dynamic_variables(&self) -> BTreeMap<String, String> {
        let mut vars = self.variables.clone();
        if let Some(name) = &self.name {
            vars.entry("name".into()).or_insert_with(|| name.clone());
            let first = name.split_whitespace().next().unwrap_or_default();
            vars.entry("first_name".into()).or_insert_with(|| first.to_string());
        }
        vars.insert("timezone".into(), self.timezone.name().to_string());
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContactId, NewContact};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_sweep_waits_as_long_as_the_state_allows() {
        let phone = E164::parse("+14155552671", None).unwrap();
        let mut call = Call::queued(OrgId::new(), CampaignId::new(), ContactId::new(), 1, phone, t(0));
        assert!(!call.is_stuck(t(300), 600));
        assert!(call.is_stuck(t(301), 600));
        call.state = CallState::Ringing;
        assert!(!call.is_stuck(t(120), 600) && call.is_stuck(t(121), 600));
        call.state = CallState::InProgress;
        assert!(!call.is_stuck(t(900), 600) && call.is_stuck(t(901), 600));
        call.state = CallState::Ended;
        assert!(!call.is_stuck(t(1_000_000), 600));
    }

    #[test]
    fn a_dialer_taking_the_call_counts_as_news_and_its_silence_is_an_unknown_placement() {
        let phone = E164::parse("+14155552671", None).unwrap();
        let mut call = Call::queued(OrgId::new(), CampaignId::new(), ContactId::new(), 1, phone, t(0));
        assert_eq!(call.swept(t(301), 600), Some(Swept::TimedOut), "no dialer ever took it");
        call.dialing_since = Some(t(240));
        assert_eq!(call.swept(t(301), 600), None, "a dialer took it a minute ago: its guard is fresh");
        assert_eq!(call.swept(t(541), 600), Some(Swept::PlacementUnknown));
        call.provider_call_id = Some("CA1".into());
        call.placed_at = Some(t(250));
        assert_eq!(call.swept(t(551), 600), Some(Swept::TimedOut), "placed, then silent");
    }

    #[test]
    fn dial_time_checks_come_in_order() {
        use crate::{CampaignSettings, Cap, NewCampaign};
        let ny = chrono_tz::America::New_York;
        let noon = chrono::TimeZone::with_ymd_and_hms(&ny, 2027, 1, 13, 12, 0, 0).unwrap().with_timezone(&Utc);
        let campaign = Campaign::draft(OrgId::new(), NewCampaign::parse("c", Cap::DEFAULT, CampaignSettings::default()).unwrap(), noon);
        let contact = Contact::ready(
            campaign.id,
            NewContact::new(E164::parse("+13055550100", None).unwrap(), ny, crate::Consent::on_file(chrono::Utc::now())),
            noon,
        );
        let call = Call::queued(campaign.org_id, campaign.id, contact.id, 1, contact.phone.clone(), noon);
        let mut check = DialCheck { call, campaign, contact, stopped: false, listed: false };
        let margin = TimeDelta::seconds(120);
        assert!(matches!(check.clearance(noon, margin), Clearance::Wait(_)), "a draft campaign");
        check.campaign.status = CampaignStatus::Running;
        assert_eq!(check.clearance(noon, margin), Clearance::Place);
        let evening = noon + TimeDelta::hours(8) - TimeDelta::seconds(60);
        assert!(matches!(check.clearance(evening, margin), Clearance::Withdraw(EndReason::OutsideWindow, _)), "19:59 in Florida");
        let consent = check.contact.consent.take();
        assert!(
            matches!(check.clearance(noon, margin), Clearance::Withdraw(EndReason::NoConsent, _)),
            "imported before consent was recorded"
        );
        check.contact.consent = consent;
        check.listed = true;
        assert!(matches!(check.clearance(noon, margin), Clearance::Withdraw(EndReason::DoNotCall, _)));
        check.stopped = true;
        assert!(matches!(check.clearance(noon, margin), Clearance::Withdraw(EndReason::Canceled, _)));
        check.call.provider_call_id = Some("CA1".into());
        assert!(matches!(check.clearance(noon, margin), Clearance::Gone(_)));
    }

    #[test]
    fn batches_follow_the_position() {
        assert_eq!(batch_of(DialMode::Continuous, Some(10), 55), 0);
        assert_eq!([0, 9, 10, 25].map(|p| batch_of(DialMode::Batch, Some(10), p)), [0, 0, 1, 2]);
    }

    #[test]
    fn a_number_just_used_is_the_most_recently_used_whatever_the_dialers_clock() {
        let pool: Vec<E164> = ["+14155550101", "+14155550102"].iter().map(|p| E164::parse(p, None).unwrap()).collect();
        let t = |ms: i64| DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap();
        let mut last_used = BTreeMap::new();
        // four dialers whose `now` was taken out of order: the numbers still alternate
        let mut used = Vec::new();
        for now in [t(100), t(105), t(101), t(90)] {
            let chosen = choose_caller_id(&pool, &last_used, None).unwrap().clone();
            last_used.insert(chosen.as_str().to_string(), caller_id_use_stamp(&last_used, now));
            used.push(chosen);
        }
        assert_eq!(used, [pool[0].clone(), pool[1].clone(), pool[0].clone(), pool[1].clone()]);
    }

    #[test]
    fn caller_ids_rotate_least_recently_used_and_stick_to_a_contact() {
        let pool: Vec<E164> = ["+14155550101", "+14155550102", "+14155550103"].map(|p| E164::parse(p, None).unwrap()).to_vec();
        let mut used = BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..6 {
            let n = choose_caller_id(&pool, &used, None).unwrap().clone();
            used.insert(n.as_str().to_string(), t(i));
            order.push(n);
        }
        assert_eq!(order, [&pool[..], &pool[..]].concat());
        assert_eq!(choose_caller_id(&pool, &used, Some(&pool[1])), Some(&pool[1]));
        let gone = E164::parse("+14155550199", None).unwrap();
        assert_eq!(choose_caller_id(&pool, &used, Some(&gone)), Some(&pool[0]));
        assert_eq!(choose_caller_id(&[], &used, None), None);
    }

    #[test]
    fn slots_are_spaced_by_the_pace_and_never_reserved_too_far_ahead() {
        let pace = Pace::per_second(2.0);
        let wait = Duration::from_secs(1);
        assert_eq!(reserve_slot(None, t(0), pace, wait), (DialSlot::At(t(0)), Some(t(0) + TimeDelta::milliseconds(500))));
        let (slot, next) = reserve_slot(Some(t(0) + TimeDelta::milliseconds(500)), t(0), pace, wait);
        assert_eq!((slot, next), (DialSlot::At(t(0) + TimeDelta::milliseconds(500)), Some(t(1))));
        assert_eq!(reserve_slot(Some(t(5)), t(0), pace, wait), (DialSlot::Busy { until: t(5) }, None));
        assert_eq!(reserve_slot(Some(t(-9)), t(0), Pace::unlimited(), wait), (DialSlot::At(t(0)), Some(t(0))));
    }

    #[test]
    fn contact_fields_become_dynamic_variables() {
        let mut new = NewContact::new(
            E164::parse("+14155552671", None).unwrap(),
            chrono_tz::America::Chicago,
            crate::Consent::on_file(chrono::Utc::now()),
        );
        new.name = Some("Ada Lovelace".into());
        new.variables.insert("plan".into(), "gold".into());
        let c = Contact::ready(CampaignId::new(), new, t(0));
        let vars = c.dynamic_variables();
        assert_eq!((vars["name"].as_str(), vars["first_name"].as_str()), ("Ada Lovelace", "Ada"));
        assert_eq!((vars["plan"].as_str(), vars["timezone"].as_str()), ("gold", "America/Chicago"));
    }
}
