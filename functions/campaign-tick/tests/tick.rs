//! The tick against both stores (SQLite always, DynamoDB on moto_server when DYNAMODB_ENDPOINT is
//! set): the cap under 8 concurrent ticks, calling windows across zones, batch mode, the sweep,
//! idempotent executions, completion, and the scheduler's sample input.

use app::tick::{TickReport, Ticker, on_scheduled_run, tick};
use chrono::{DateTime, Duration, Utc};
use domain::{
    CallEvent, CallEventKind, CallState, CampaignSettings, CampaignStatus, Cap, ContactDisposition, ContactState, CrmTarget, DialJob,
    DialMode, E164, EmergencyStop, EndReason, NewCampaign, NewContact, OrgId,
};
use platform::{
    CRM_JOBS, CampaignScheduler, DIAL_JOBS, JobQueue, LocalQueue, LocalScheduler, QueueError, ReceivedJob, Schedule, ScheduledAction,
    ScheduledRun, testing::load_event,
};
use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};
use std::{collections::HashSet, time::Duration as StdDuration};
use store::{ContactFilter, PageRequest, Store};

/// Friday 15 January 2027, 15:00 UTC: 10:00 in New York.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-15T15:00:00Z").unwrap().to_utc()
}

fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000), None).unwrap()
}

struct World<S: Store> {
    state: Ticker<S, LocalScheduler, LocalQueue>,
    org: OrgId,
    _fired: tokio::sync::mpsc::UnboundedReceiver<ScheduledRun>,
}

async fn world<S: Store>(store: S) -> World<S> {
    let (scheduler, fired) = LocalScheduler::new(StdDuration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(LocalQueue::DEFAULT_MAX_RECEIVES).unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    World {
        state: Ticker::from_config(&platform::testing::config(&[("OUTDIAL_SIMULATOR", "on")]), store, scheduler, queue),
        org,
        _fired: fired,
    }
}

impl<S: Store> World<S> {
    fn store(&self) -> &S {
        &self.state.store
    }

    async fn running(&self, cap: i64, settings: CampaignSettings, contacts: Vec<NewContact>) -> domain::Campaign {
        store::testing::register_caller_ids(self.store(), self.org, &settings.caller_ids, None, None).await;
        let new = NewCampaign::parse("tick", Cap::parse(cap).unwrap(), settings).unwrap();
        let c = self.store().create_campaign(self.org, new).await.unwrap();
        self.store().add_contacts(self.org, c.id, contacts, t0()).await.unwrap();
        self.state.scheduler.create(self.org, c.id, Schedule::Ticks).await.unwrap();
        self.store().set_campaign_status(self.org, c.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap()
    }

    async fn tick(&self, campaign: domain::CampaignId, execution: impl Into<String>, at: DateTime<Utc>) -> TickReport {
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
    range.map(|n| NewContact::new(phone(n), chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now()))).collect()
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
    let contacts =
        (0..60).map(|n| NewContact::new(phone(n), zones[n as usize % zones.len()], domain::Consent::on_file(chrono::Utc::now()))).collect();
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
    assert!(w.state.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_some());
    let next = w.tick(campaign.id, "exec-2", t0()).await;
    assert!(next.completed);
    let c = w.store().get_campaign(w.org, campaign.id).await.unwrap();
    assert_eq!(c.status, CampaignStatus::Completed);
    assert!(w.state.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_none(), "its schedule is deleted");
}

pub async fn the_schedulers_sample_input_runs_a_tick<S: Store>(store: S) {
    let w = world(store).await;
    let campaign = w
        .running(
            5,
            CampaignSettings::default(),
            vec![NewContact::new(phone(1), chrono_tz::UTC, domain::Consent::on_file(chrono::Utc::now()))],
        )
        .await;
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

pub async fn the_legal_hours_of_each_contacts_state_bound_its_claims<S: Store>(store: S) {
    use chrono::TimeZone;
    let w = world(store).await;
    let ny = chrono_tz::America::New_York;
    let number = |n: &str| E164::parse(n, None).unwrap();
    // one zone, three states: Florida ends at 20:00, New York at 21:00, Utah forbids Sundays
    let contacts = ["+13055550101", "+12125550102", "+18015550103"]
        .into_iter()
        .map(|n| NewContact::new(number(n), ny, domain::Consent::on_file(chrono::Utc::now())))
        .collect();
    let every_day = domain::CallingWindow::parse(domain::Day::ALL, "07:00", "23:00").unwrap();
    let campaign = w.running(10, CampaignSettings { calling_window: every_day, ..Default::default() }, contacts).await;
    // the numbers dialed since the last look, each call then answered (its contact is done)
    let dialed = || async {
        let mut phones = Vec::new();
        for job in w.drain_jobs().await {
            phones.push(w.store().get_call(w.org, job.call_id).await.unwrap().phone.as_str().to_string());
            w.end(job.call_id, EndReason::Completed, t0()).await;
        }
        phones.sort();
        phones
    };
    // Sunday 17 January 2027, 20:30 in New York: Florida has closed, Utah never opened, 21:30 is past every state's hours
    let sunday = |h, m| ny.with_ymd_and_hms(2027, 1, 17, h, m, 0).unwrap().with_timezone(&Utc);
    assert_eq!(w.tick(campaign.id, "late", sunday(21, 30)).await.claimed, 0, "the campaign's 23:00 is past the federal 21:00");
    assert_eq!(w.tick(campaign.id, "sunday", sunday(20, 30)).await.claimed, 1);
    assert_eq!(dialed().await, ["+12125550102"]);
    // Monday 18 January 2027 is a legal holiday, which Utah keeps free of calls too; Tuesday morning it is not
    let tuesday = ny.with_ymd_and_hms(2027, 1, 19, 9, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!(w.tick(campaign.id, "holiday", tuesday - Duration::days(1)).await.claimed, 1);
    assert_eq!(dialed().await, ["+13055550101"], "Florida calls on a federal holiday");
    assert_eq!(w.tick(campaign.id, "tuesday", tuesday).await.claimed, 1);
    assert_eq!(dialed().await, ["+18015550103"], "Utah on a working day");
}

pub async fn the_emergency_stop_keeps_a_scheduled_start_from_running<S: Store>(store: S) {
    let w = world(store).await;
    let start_at = t0() + Duration::minutes(1);
    let settings = CampaignSettings { caller_ids: vec![phone(9)], start_at: Some(start_at), ..Default::default() };
    let new = NewCampaign::parse("later", Cap::parse(5).unwrap(), settings).unwrap();
    let config = domain::assistant::templates()[0].config.clone();
    let assistant = w
        .store()
        .create_assistant(w.org, domain::NewAssistant::local("Agent", domain::ProviderKind::Simulator, config).unwrap(), t0())
        .await
        .unwrap();
    store::testing::register_caller_ids(w.store(), w.org, &[phone(9)], None, None).await;
    let c = w.store().create_campaign(w.org, new.with_assistant(assistant.id)).await.unwrap();
    w.store().add_contacts(w.org, c.id, new_york(0..3), t0()).await.unwrap();
    w.state.scheduler.create(w.org, c.id, Schedule::StartAt(start_at)).await.unwrap();
    w.store().set_emergency_stop(w.org, Some(EmergencyStop { since: t0(), by: Some("key_test".into()) })).await.unwrap();
    let start = ScheduledRun {
        org: w.org,
        campaign: c.id,
        action: ScheduledAction::Start,
        execution_id: "start-1".into(),
        scheduled_time: start_at.to_rfc3339(),
    };
    on_scheduled_run(&w.state, &start).await.unwrap();
    let refused = w.store().get_campaign(w.org, c.id).await.unwrap();
    assert_eq!(refused.status, CampaignStatus::Draft, "the stop holds: it never runs");
    let why = refused.start_refused.expect("why it did not start is recorded");
    assert_eq!(why.reason, "emergency-stop");
    assert!(why.detail.contains("emergency stop"), "{}", why.detail);
    assert!(w.state.scheduler.get(c.id, ScheduledAction::Start).await.unwrap().is_none(), "the one-shot schedule is gone");
    assert_eq!(w.tick(c.id, "t1", start_at + Duration::minutes(1)).await.claimed, 0);
    w.store().set_emergency_stop(w.org, None).await.unwrap();
    on_scheduled_run(&w.state, &ScheduledRun { execution_id: "start-2".into(), ..start }).await.unwrap();
    assert_eq!(w.store().get_campaign(w.org, c.id).await.unwrap().status, CampaignStatus::Running, "lifted and started: it runs");
    assert_eq!(w.tick(c.id, "t2", start_at + Duration::minutes(2)).await.claimed, 3);
}

/// The local queue, failing its first `failures` sends of CRM jobs.
#[derive(Clone)]
struct FlakyQueue {
    inner: LocalQueue,
    failures: Arc<AtomicU32>,
}

impl JobQueue for FlakyQueue {
    async fn send(&self, queue: &str, body: String) -> Result<String, QueueError> {
        if queue == CRM_JOBS && self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(QueueError::Backend("crm-jobs is throttled".into()));
        }
        self.inner.send(queue, body).await
    }
    async fn receive(&self, queue: &str, max: u32, visibility: StdDuration) -> Result<Vec<ReceivedJob>, QueueError> {
        self.inner.receive(queue, max, visibility).await
    }
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt).await
    }
    async fn retry_after(&self, queue: &str, receipt: &str, delay: StdDuration) -> Result<(), QueueError> {
        self.inner.retry_after(queue, receipt, delay).await
    }
    async fn dead_letters(&self, queue: &str, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        self.inner.dead_letters(queue, max).await
    }
}

pub async fn a_failed_ticks_retry_runs_again_and_still_claims_each_contact_once<S: Store>(store: S) {
    let w = world(store).await;
    let settings = CampaignSettings { crm: Some(CrmTarget { connection_ids: vec![domain::ConnectionId::new()] }), ..Default::default() };
    let campaign = w.running(3, settings, new_york(0..5)).await;
    assert_eq!(w.tick(campaign.id, "warm-up", t0()).await.claimed, 3);
    let first = w.store().active_calls(w.org, campaign.id).await.unwrap()[0].id;
    w.end(first, EndReason::Busy, t0()).await;
    let flaky = FlakyQueue { inner: w.state.queue.clone(), failures: Arc::new(AtomicU32::new(1)) };
    let state = Ticker {
        store: w.state.store.clone(),
        scheduler: w.state.scheduler.clone(),
        accounts: w.state.accounts.clone(),
        calls: w.state.calls.clone(),
        tools_url: w.state.tools_url.clone(),
        queue: flaky,
        window_margin: w.state.window_margin,
    };
    let at = t0() + Duration::seconds(10);
    let failed = tick(&state, w.org, campaign.id, "exec-7", at).await;
    assert!(failed.is_err(), "the finished call's CRM job could not be queued");
    // EventBridge retries the execution, here twice at once: it runs again, and claims the freed slot once
    let retries = futures::future::join_all((0..2).map(|_| tick(&state, w.org, campaign.id, "exec-7", at))).await;
    let reports: Vec<_> = retries.into_iter().map(Result::unwrap).collect();
    assert!(reports.iter().all(|r| !r.repeated), "a failed execution is not recorded as done: {reports:?}");
    assert_eq!(reports.iter().map(|r| r.claimed).sum::<u32>(), 1, "one slot was free: {reports:?}");
    assert_eq!(reports.iter().map(|r| r.post_calls).sum::<u32>(), 1, "the finished call is handed on once: {reports:?}");
    let jobs = w.drain_jobs().await;
    assert_eq!(jobs.iter().map(|j| j.call_id).collect::<HashSet<_>>().len(), 3 + 1, "four calls queued, each once");
    let c = w.store().get_campaign(w.org, campaign.id).await.unwrap();
    assert_eq!(c.counters.active_calls, 3, "never above the cap");
    let crm = w.state.queue.receive(CRM_JOBS, 10, StdDuration::from_secs(60)).await.unwrap();
    assert_eq!(crm.len(), 1, "one CRM job for the finished call");
    assert!(tick(&state, w.org, campaign.id, "exec-7", at).await.unwrap().repeated, "done now: a third delivery does nothing");
}

pub async fn the_sweep_leaves_a_call_alone_while_a_dialer_holds_it<S: Store>(store: S) {
    let w = world(store).await;
    let campaign = w.running(1, CampaignSettings::default(), new_york(0..2)).await;
    assert_eq!(w.tick(campaign.id, "c1", t0()).await.claimed, 1);
    let call = w.store().active_calls(w.org, campaign.id).await.unwrap().remove(0);
    // its job waited 4 minutes in the queue; a dialer takes it and waits for its pacing slot
    assert!(w.store().begin_dial(w.org, call.id, t0() + Duration::minutes(4)).await.unwrap());
    let report = w.tick(campaign.id, "c2", t0() + Duration::minutes(6)).await;
    assert_eq!((report.timed_out, report.claimed), (0, 0), "six minutes after the claim, two after the dialer took it: left alone");
    // a dialer that never comes back: its request may have reached the provider
    let report = w.tick(campaign.id, "c3", t0() + Duration::minutes(9) + Duration::seconds(1)).await;
    assert_eq!((report.timed_out, report.claimed), (1, 1));
    let swept = w.store().get_call(w.org, call.id).await.unwrap();
    assert_eq!((swept.state, swept.end_reason), (CallState::Failed, Some(EndReason::Failed)));
    assert!(swept.details.error.as_deref().unwrap().starts_with("placement outcome unknown"), "{:?}", swept.details.error);
    let contact = w.store().get_contact(w.org, campaign.id, call.contact_id).await.unwrap();
    assert_eq!((contact.state, contact.attempts), (ContactState::Ready, 1), "retried later by the policy: the attempt may have rung");
}

store::on_both_stores!(
    "tick-";
    eight_concurrent_ticks_never_exceed_the_cap,
    contacts_outside_their_window_are_not_claimed,
    batch_mode_advances_only_when_a_batch_is_finished,
    the_sweep_times_out_silent_calls_and_releases_capacity_once,
    a_repeated_execution_does_nothing_and_a_finished_campaign_completes,
    the_schedulers_sample_input_runs_a_tick,
    the_legal_hours_of_each_contacts_state_bound_its_claims,
    the_emergency_stop_keeps_a_scheduled_start_from_running,
    a_failed_ticks_retry_runs_again_and_still_claims_each_contact_once,
    the_sweep_leaves_a_call_alone_while_a_dialer_holds_it,
    a_restart_ends_the_simulators_dead_calls_and_fires_missed_starts,
    the_sweep_asks_the_provider_how_a_silent_call_stands,
);

/// The local stack killed mid-campaign and started again on the same store: the simulated calls
/// that died with it end at once (their slots released, once), the running campaign ticks again,
/// and a draft whose `startAt` passed while the stack was down starts.
pub async fn a_restart_ends_the_simulators_dead_calls_and_fires_missed_starts<S: Store>(store: S) {
    use app::recovery::{SIMULATOR_STOPPED, recover_local_stack};
    let w = world(store).await;
    let simulated = CampaignSettings { provider: domain::CallProvider::Simulator, ..CampaignSettings::default() };
    let contacts = (0..3).map(|n| NewContact::new(phone(n), chrono_tz::UTC, domain::Consent::on_file(t0()))).collect();
    let campaign = w.running(5, simulated.clone(), contacts).await;
    let claims = w.store().claim_due_contacts(w.org, campaign.id, t0(), 3, Duration::zero()).await.unwrap();
    // one call in progress at the simulator, one being placed, one still waiting for a dialer
    let placed = store::PlacedCall {
        provider: domain::CallProvider::Simulator,
        provider_call_id: "CAsim0".into(),
        caller_id: None,
        placed_at: t0(),
    };
    w.store().record_placed_call(w.org, claims[0].call.id, placed).await.unwrap();
    w.store()
        .apply_call_event(
            w.org,
            claims[0].call.id,
            CallEvent { dedupe_key: "a".into(), occurred_at: t0(), kind: CallEventKind::Answered },
            t0(),
        )
        .await
        .unwrap();
    assert!(w.store().begin_dial(w.org, claims[1].call.id, t0()).await.unwrap());
    // a draft that meets every launch check, due to start while the stack was down
    let config = domain::assistant::templates()[0].config.clone();
    let assistant = domain::NewAssistant::local("Agent", domain::ProviderKind::Simulator, config).unwrap();
    let assistant = w.store().create_assistant(w.org, assistant, t0()).await.unwrap();
    let callers = vec![E164::parse("+14155550199", None).unwrap()];
    store::testing::register_caller_ids(w.store(), w.org, &callers, None, None).await;
    let start_at = Utc::now() - Duration::minutes(10);
    let settings = CampaignSettings { start_at: Some(start_at), caller_ids: callers, ..simulated };
    let draft = NewCampaign::parse("later", Cap::parse(5).unwrap(), settings).unwrap().with_assistant(assistant.id);
    let draft = w.store().create_campaign(w.org, draft).await.unwrap();
    w.store()
        .add_contacts(w.org, draft.id, vec![NewContact::new(phone(9), chrono_tz::UTC, domain::Consent::on_file(t0()))], t0())
        .await
        .unwrap();

    // the restart: a new timer, which holds no schedule
    let (scheduler, mut fired) = LocalScheduler::new(StdDuration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(LocalQueue::DEFAULT_MAX_RECEIVES).unwrap();
    let config = platform::testing::config(&[("OUTDIAL_SIMULATOR", "on")]);
    let restarted = Ticker::from_config(&config, w.store().clone(), scheduler, queue);
    let recovered = recover_local_stack(&restarted, t0() + Duration::seconds(5)).await.unwrap();
    assert!(recovered.simulated_calls_ended >= 2 && recovered.ticking >= 1 && recovered.starts >= 1, "{recovered:?}");
    for claim in &claims[..2] {
        let call = w.store().get_call(w.org, claim.call.id).await.unwrap();
        assert_eq!((call.state, call.end_reason), (CallState::Failed, Some(EndReason::Failed)), "{call:?}");
        assert_eq!(call.details.error.as_deref(), Some(SIMULATOR_STOPPED));
    }
    assert_eq!(w.store().get_call(w.org, claims[2].call.id).await.unwrap().state, CallState::Queued, "left to its dial job");
    assert_eq!(w.store().get_campaign(w.org, campaign.id).await.unwrap().counters.active_calls, 1, "two slots released, once");
    assert!(restarted.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_some(), "the running campaign ticks again");
    let again = recover_local_stack(&restarted, t0() + Duration::seconds(6)).await.unwrap();
    assert_eq!(
        w.store().get_campaign(w.org, campaign.id).await.unwrap().counters.active_calls,
        1,
        "a second restart releases nothing more: {again:?}"
    );

    // the start that came due while the stack was down fires at once
    let run = tokio::time::timeout(StdDuration::from_secs(5), fired.recv()).await.expect("the missed start fires").unwrap();
    assert_eq!((run.action, run.campaign), (ScheduledAction::Start, draft.id));
    on_scheduled_run(&restarted, &run).await.unwrap();
    let started = w.store().get_campaign(w.org, draft.id).await.unwrap();
    assert_eq!(started.status, CampaignStatus::Running, "{:?}", started.start_refused);
}

/// Lost callbacks: a placed call silent for over a minute is asked about at its provider (Twilio
/// `GET …/Calls/{sid}.json`, Vapi `GET /call/{id}`, Retell `GET /v2/get-call/{id}`) before any
/// timeout. Ended there: ended here at once, as the provider says; live there: left alone even
/// past its timeout; unknown there: failed.
pub async fn the_sweep_asks_the_provider_how_a_silent_call_stands<S: Store>(store: S) {
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{header, method, path},
    };
    let server = MockServer::start().await;
    let uri = server.uri();
    let config = platform::testing::config(&[
        ("TWILIO_ACCOUNT_SID", "AC1"),
        ("TWILIO_AUTH_TOKEN", "tw-token"),
        ("TWILIO_BASE_URL", &uri),
        ("VAPI_API_KEY", "vapi-key"),
        ("VAPI_BASE_URL", &uri),
        ("RETELL_API_KEY", "retell-key"),
        ("RETELL_BASE_URL", &uri),
        ("OUTDIAL_PUBLIC_URL", "https://hooks.example.com"),
        ("OUTDIAL_BRIDGE_URL", "wss://bridge.example.com/media"),
    ]);
    let (scheduler, _fired) = LocalScheduler::new(StdDuration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(LocalQueue::DEFAULT_MAX_RECEIVES).unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let w = World { state: Ticker::from_config(&config, store, scheduler, queue), org, _fired };
    let twilio_json = |status: &str| ResponseTemplate::new(200).set_body_json(serde_json::json!({ "sid": "CA1", "status": status }));
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC1/Calls/CA1.json"))
        .and(header("authorization", "Basic QUMxOnR3LXRva2Vu"))
        .respond_with(twilio_json("completed"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/call/vapi_1"))
        .and(header("authorization", "Bearer vapi-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "id": "vapi_1", "status": "in-progress" })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/get-call/retell_1"))
        .and(header("authorization", "Bearer retell-key"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({ "message": "Not Found" })))
        .mount(&server)
        .await;

    let mut calls = Vec::new();
    for (n, (provider, id)) in
        [(domain::CallProvider::Twilio, "CA1"), (domain::CallProvider::Vapi, "vapi_1"), (domain::CallProvider::Retell, "retell_1")]
            .into_iter()
            .enumerate()
    {
        let settings = CampaignSettings { provider, ..CampaignSettings::default() };
        let campaign = w.running(5, settings, new_york(n as u64..n as u64 + 1)).await;
        let claim = w.store().claim_due_contacts(w.org, campaign.id, t0(), 1, Duration::zero()).await.unwrap().remove(0);
        let placed = store::PlacedCall { provider, provider_call_id: id.into(), caller_id: None, placed_at: t0() };
        w.store().record_placed_call(w.org, claim.call.id, placed).await.unwrap();
        let answered = CallEvent { dedupe_key: "a".into(), occurred_at: t0(), kind: CallEventKind::Answered };
        w.store().apply_call_event(w.org, claim.call.id, answered, t0()).await.unwrap();
        calls.push((campaign.id, claim.call.id));
    }
    let store = w.store().clone();
    let state_of = |i: usize| {
        let (store, org, call) = (store.clone(), w.org, calls[i].1);
        async move { store.get_call(org, call).await.unwrap() }
    };

    // 30 s of silence is nothing to ask about
    assert_eq!(w.tick(calls[0].0, "quiet", t0() + Duration::seconds(30)).await.ended_by_provider, 0);
    assert!(server.received_requests().await.unwrap().is_empty(), "no one asked yet");
    // 90 s: asked, and the call Twilio ended is ended now, not in 15 minutes
    let report = w.tick(calls[0].0, "asked", t0() + Duration::seconds(90)).await;
    assert_eq!((report.ended_by_provider, report.timed_out), (1, 0));
    let twilio = state_of(0).await;
    assert_eq!((twilio.state, twilio.end_reason), (CallState::Ended, Some(EndReason::Completed)));
    assert_eq!(w.store().get_campaign(w.org, calls[0].0).await.unwrap().counters.active_calls, 0, "its slot released");
    // Vapi holds its call: left alone even long past the in-progress timeout
    let late = t0() + Duration::minutes(30);
    assert_eq!(w.tick(calls[1].0, "vapi", late).await.timed_out, 0);
    assert_eq!(state_of(1).await.state, CallState::InProgress);
    // Retell has no such call: failed, and says why
    let report = w.tick(calls[2].0, "retell", t0() + Duration::seconds(90)).await;
    assert_eq!(report.ended_by_provider, 1);
    let retell = state_of(2).await;
    assert_eq!((retell.state, retell.details.error.as_deref()), (CallState::Failed, Some("retell has no call retell_1")));
}
