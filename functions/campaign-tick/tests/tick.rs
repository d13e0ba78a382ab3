//! The tick against both stores (SQLite always, DynamoDB on moto_server when DYNAMODB_ENDPOINT is
//! set): the cap under 8 concurrent ticks, calling windows across zones, batch mode, the sweep,
//! idempotent executions, completion, and the scheduler's sample input.

use campaign_tick::{TickState, on_scheduled_run, tick};
use chrono::{DateTime, Duration, Utc};
use domain::{
    CallEvent, CallEventKind, CallState, CampaignSettings, CampaignStatus, Cap, ContactDisposition, ContactState, DialJob, DialMode, E164,
    EndReason, NewCampaign, NewContact, OrgId,
};
use platform::{
    CampaignScheduler, DIAL_JOBS, JobQueue, LocalQueue, LocalScheduler, Schedule, ScheduledAction, ScheduledRun, testing::load_event,
};
use std::{collections::HashSet, time::Duration as StdDuration};
use store::{ContactFilter, PageRequest, SqliteStore, Store, testing::dynamodb_test_store};

/// Friday 15 January 2027, 15:00 UTC: 10:00 in New York.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-15T15:00:00Z").unwrap().to_utc()
}

fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000), None).unwrap()
}

struct World<S: Store> {
    state: TickState<S, LocalScheduler, LocalQueue>,
    org: OrgId,
    _fired: tokio::sync::mpsc::UnboundedReceiver<ScheduledRun>,
}

async fn world<S: Store>(store: S) -> World<S> {
    let (scheduler, fired) = LocalScheduler::new(StdDuration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(LocalQueue::DEFAULT_MAX_RECEIVES).unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let campaigns = campaigns::AppState { store, scheduler, accounts: Default::default(), import_max_bytes: 1 << 20 };
    World { state: TickState { campaigns, queue }, org, _fired: fired }
}

impl<S: Store> World<S> {
    fn store(&self) -> &S {
        &self.state.campaigns.store
    }

    async fn running(&self, cap: i64, settings: CampaignSettings, contacts: Vec<NewContact>) -> domain::Campaign {
        let new = NewCampaign::parse("tick", Cap::parse(cap).unwrap(), settings).unwrap();
        let c = self.store().create_campaign(self.org, new).await.unwrap();
        self.store().add_contacts(self.org, c.id, contacts, t0()).await.unwrap();
        self.state.campaigns.scheduler.create(self.org, c.id, Schedule::Ticks).await.unwrap();
        self.store().set_campaign_status(self.org, c.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap()
    }

    async fn tick(&self, campaign: domain::CampaignId, execution: impl Into<String>, at: DateTime<Utc>) -> campaign_tick::TickReport {
        tick(&self.state, self.org, campaign, &execution.into(), at).await.unwrap()
    }

    async fn end(&self, call: domain::CallId, reason: EndReason, at: DateTime<Utc>) {
        let event = CallEvent { dedupe_key: format!("end-{call}"), occurred_at: at, kind: CallEventKind::Ended { reason } };
        self.store().apply_call_event(self.org, call, event, at).await.unwrap();
    }

    /// Every dial job waiting on the queue, acknowledged.
    async fn drain_jobs(&self) -> Vec<DialJob> {
        let mut jobs = Vec::new();
        loop {
            let batch = self.state.queue.receive(DIAL_JOBS, 10, StdDuration::from_secs(60)).await.unwrap();
            if batch.is_empty() {
                return jobs;
            }
            for job in batch {
                self.state.queue.delete(DIAL_JOBS, &job.receipt).await.unwrap();
                jobs.push(serde_json::from_str(&job.body).unwrap());
            }
        }
    }
}

fn new_york(range: std::ops::Range<u64>) -> Vec<NewContact> {
    range.map(|n| NewContact::new(phone(n), chrono_tz::America::New_York)).collect()
}

pub async fn eight_concurrent_ticks_never_exceed_the_cap<S: Store>(store: S) {
    let w = world(store).await;
    const CAP: u32 = 5;
    let campaign = w.running(i64::from(CAP), CampaignSettings::default(), new_york(0..60)).await;
    let mut queued = HashSet::new();
    for round in 0..6 {
        let at = t0() + Duration::seconds(round);
        let ticks = (0..8).map(|i| w.tick(campaign.id, format!("r{round}-t{i}"), at));
        let claimed: u32 = futures::future::join_all(ticks).await.iter().map(|r| r.claimed).sum();
        let c = w.store().get_campaign(w.org, campaign.id).await.unwrap();
        assert!(c.counters.active_calls <= CAP, "round {round}: {} active over a cap of {CAP}", c.counters.active_calls);
        let active = w.store().active_calls(w.org, campaign.id).await.unwrap();
        assert_eq!(active.len() as u32, c.counters.active_calls);
        let jobs = w.drain_jobs().await;
        assert_eq!(jobs.len() as u32, claimed, "one dial job per claim");
        for job in &jobs {
            assert!(queued.insert(job.call_id), "a call is queued once");
            assert_eq!((job.org_id, job.campaign_id), (w.org, campaign.id));
        }
        // two calls end each round, freeing two slots for the next
        for call in active.iter().take(2) {
            w.end(call.id, EndReason::Completed, at).await;
        }
    }
    assert_eq!(queued.len(), CAP as usize + 2 * 5, "every freed slot was refilled, never more");
}

pub async fn contacts_outside_their_window_are_not_claimed<S: Store>(store: S) {
    use chrono_tz::{America, Asia, Europe, Pacific};
    let w = world(store).await;
    // from UTC−10 to UTC+9; at 18:30 UTC on Friday 15 January 2027 Tokyo is at 03:30 on Saturday
    let zones = [Pacific::Honolulu, America::Los_Angeles, America::Chicago, America::New_York, Europe::Paris, Asia::Tokyo];
    let contacts = (0..60).map(|n| NewContact::new(phone(n), zones[n as usize % zones.len()])).collect();
    let campaign = w.running(50, CampaignSettings::default(), contacts).await;
    let at = DateTime::parse_from_rfc3339("2027-01-15T18:30:00Z").unwrap().to_utc();
    let report = w.tick(campaign.id, "window", at).await;
    assert_eq!(report.claimed, 50, "50 of the 50 callable (10 per open zone): cap reached");
    let page = w.store().list_contacts(w.org, campaign.id, ContactFilter::default(), PageRequest::first(100)).await.unwrap();
    for c in page.items {
        let open = campaign.settings.calling_window.is_open_at(at, c.timezone);
        assert_eq!(c.state == ContactState::Dialing, open, "{} at {at}", c.timezone);
        if !open {
            assert_eq!((c.attempts, c.last_call_id), (0, None), "outside its window: untouched");
        }
    }
}

pub async fn batch_mode_advances_only_when_a_batch_is_finished<S: Store>(store: S) {
    let w = world(store).await;
    let settings = CampaignSettings { mode: DialMode::Batch, batch_size: Some(4), ..Default::default() };
    let campaign = w.running(10, settings, new_york(0..10)).await;
    assert_eq!(w.tick(campaign.id, "b1", t0()).await.claimed, 4);
    let first: Vec<_> = w.store().active_calls(w.org, campaign.id).await.unwrap();
    for call in &first[..3] {
        w.end(call.id, EndReason::Completed, t0()).await;
    }
    assert_eq!(w.tick(campaign.id, "b2", t0()).await.claimed, 0, "one call of batch 0 is live");
    w.end(first[3].id, EndReason::Completed, t0()).await;
    assert_eq!(w.tick(campaign.id, "b3", t0()).await.claimed, 4, "batch 1");
    for call in w.store().active_calls(w.org, campaign.id).await.unwrap() {
        let contact = w.store().get_contact(w.org, campaign.id, call.contact_id).await.unwrap();
        assert_eq!(contact.batch, 1);
        w.end(call.id, EndReason::Completed, t0()).await;
    }
    assert_eq!(w.tick(campaign.id, "b4", t0()).await.claimed, 2, "the last, short batch");
}

pub async fn the_sweep_times_out_silent_calls_and_releases_capacity_once<S: Store>(store: S) {
    let w = world(store).await;
    let campaign = w.running(2, CampaignSettings::default(), new_york(0..4)).await;
    assert_eq!(w.tick(campaign.id, "s1", t0()).await.claimed, 2);
    let calls = w.store().active_calls(w.org, campaign.id).await.unwrap();
    // one rings (2 minutes allowed), the other stays queued without a provider id (5 minutes)
    let ringing = CallEvent { dedupe_key: "ring".into(), occurred_at: t0(), kind: CallEventKind::Ringing };
    w.store().apply_call_event(w.org, calls[0].id, ringing, t0()).await.unwrap();
    let report = w.tick(campaign.id, "s2", t0() + Duration::minutes(3)).await;
    assert_eq!((report.timed_out, report.claimed), (1, 1), "the ringing call timed out and its slot was reused");
    assert_eq!(w.store().get_call(w.org, calls[0].id).await.unwrap().state, CallState::Timeout);
    // sweeps racing each other release the queued call's slot once
    let later = t0() + Duration::minutes(6);
    let sweeps = futures::future::join_all((0..4).map(|i| w.tick(campaign.id, format!("s3-{i}"), later))).await;
    assert_eq!(sweeps.iter().map(|r| r.timed_out).sum::<u32>(), 1);
    let c = w.store().get_campaign(w.org, campaign.id).await.unwrap();
    assert!(c.counters.active_calls <= 2);
    assert_eq!(c.counters.active_calls as usize, w.store().active_calls(w.org, campaign.id).await.unwrap().len());
    // a timed-out attempt counts as failed: retried after the policy's delay
    let retried = w.store().get_contact(w.org, campaign.id, calls[0].contact_id).await.unwrap();
    assert_eq!((retried.state, retried.due_at), (ContactState::Ready, t0() + Duration::minutes(3) + Duration::minutes(30)));
}

pub async fn a_repeated_execution_does_nothing_and_a_finished_campaign_completes<S: Store>(store: S) {
    let w = world(store).await;
    let campaign = w.running(3, CampaignSettings::default(), new_york(0..2)).await;
    assert_eq!(w.tick(campaign.id, "exec-1", t0()).await.claimed, 2);
    for call in w.store().active_calls(w.org, campaign.id).await.unwrap() {
        w.end(call.id, EndReason::Completed, t0()).await;
    }
    let again = w.tick(campaign.id, "exec-1", t0()).await;
    assert!(again.repeated && !again.completed, "a retried execution does nothing twice");
    assert_eq!(w.store().get_campaign(w.org, campaign.id).await.unwrap().status, CampaignStatus::Running);
    assert!(w.state.campaigns.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_some());
    let next = w.tick(campaign.id, "exec-2", t0()).await;
    assert!(next.completed);
    let c = w.store().get_campaign(w.org, campaign.id).await.unwrap();
    assert_eq!(c.status, CampaignStatus::Completed);
    assert!(w.state.campaigns.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_none(), "its schedule is deleted");
}

pub async fn the_schedulers_sample_input_runs_a_tick<S: Store>(store: S) {
    let w = world(store).await;
    let campaign = w.running(5, CampaignSettings::default(), vec![NewContact::new(phone(1), chrono_tz::UTC)]).await;
    w.store().add_do_not_call(w.org, vec![phone(1)], t0()).await.unwrap();
    let (org, id) = (w.org.to_string(), campaign.id.to_string());
    let input =
        load_event("schedules/tick.json", &[("01970000-0000-7000-8000-0000000000a9", &org), ("01970000-0000-7000-8000-0000000ca111", &id)]);
    let run: ScheduledRun = serde_json::from_str(&input).unwrap();
    let report = on_scheduled_run(&w.state, &run).await.unwrap();
    assert!(report.completed, "its only contact is on the do-not-call list: nothing left");
    let done = w.store().list_contacts(w.org, campaign.id, ContactFilter::default(), PageRequest::first(5)).await.unwrap();
    assert_eq!(done.items[0].disposition, Some(ContactDisposition::DoNotCall));
    assert!(on_scheduled_run(&w.state, &run).await.unwrap().repeated, "EventBridge retrying the same execution");
}

macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::SqliteStore::open_in_memory().unwrap()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(store) = super::dynamodb_test_store(concat!("tick-", stringify!($test))).await {
                        super::$test(store).await;
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    eight_concurrent_ticks_never_exceed_the_cap,
    contacts_outside_their_window_are_not_claimed,
    batch_mode_advances_only_when_a_batch_is_finished,
    the_sweep_times_out_silent_calls_and_releases_capacity_once,
    a_repeated_execution_does_nothing_and_a_finished_campaign_completes,
    the_schedulers_sample_input_runs_a_tick,
);
