//! The dial path across its functions, on SQLite and (when `DYNAMODB_ENDPOINT` is set) DynamoDB:
//! the dialer placing calls at a wiremock Twilio while the campaign's tick sweeps and claims at
//! the same time. A call a dialer holds is left alone by the sweep; a call the sweep ended before
//! its placement was recorded is hung up at once; a request whose answer was lost and cannot be
//! looked up is sent once, and the sweep settles it.

use app::{
    Dialed,
    tick::{TickReport, Ticker, tick},
};
use chrono::{DateTime, Duration, Utc};
use dialer::DialerState;
use domain::{CallState, CampaignSettings, CampaignStatus, Cap, DialJob, E164, EndReason, NewAssistant, NewCampaign, NewContact, OrgId};
use platform::{DIAL_JOBS, JobQueue, LocalQueue, LocalScheduler, testing::midday_zone};
use serde_json::json;
use std::time::Duration as StdDuration;
use store::Store;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};

const CALLS: &str = "/2010-04-01/Accounts/AC123/Calls.json";

struct Rig<S: Store> {
    dialer: DialerState<S, LocalQueue>,
    ticks: Ticker<S, LocalScheduler, LocalQueue>,
    org: OrgId,
    campaign: domain::Campaign,
    twilio: MockServer,
}

/// A running Twilio campaign with a cap of one and two contacts, its dialer (Twilio paced at one
/// call every `pace`) and its tick sharing one queue.
async fn rig<S: Store>(store: S, pace: StdDuration) -> Rig<S> {
    let twilio = MockServer::start().await;
    let calls_per_second = (1.0 / pace.as_secs_f64()).to_string();
    let mut config = platform::testing::config(&[
        ("TWILIO_BASE_URL", &twilio.uri()),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("TWILIO_AUTH_TOKEN", "tw-token"),
        ("OUTDIAL_PUBLIC_URL", "https://hooks.example.com"),
        ("OUTDIAL_BRIDGE_URL", "wss://bridge.example.com/media"),
        ("OUTDIAL_PROVIDER_TIMEOUT_SECONDS", "5"),
        ("TWILIO_CALLS_PER_SECOND", &calls_per_second),
    ]);
    // no backoff: the tests redeliver at once
    config.dialing.retry_backoff = StdDuration::ZERO;
    let queue = LocalQueue::open_in_memory(5).unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let template = domain::assistant::templates()[0].config.clone();
    let mut assistant = NewAssistant::local("Agent", domain::ProviderKind::Elevenlabs, template).unwrap();
    assistant.provider_assistant_id = Some("agent_1".into());
    let (assistant, _) = store.import_assistant(org, assistant, Utc::now()).await.unwrap();
    let every_day = domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap();
    let settings = CampaignSettings {
        provider: domain::CallProvider::Twilio,
        caller_ids: vec![E164::parse("+16285550001", None).unwrap()],
        calling_window: every_day,
        ..Default::default()
    };
    store::testing::register_caller_ids(&store, org, &settings.caller_ids, None, None).await;
    let new = NewCampaign::parse("race", Cap::parse(1).unwrap(), settings).unwrap().with_assistant(assistant.id);
    let campaign = store.create_campaign(org, new).await.unwrap();
    let zone = midday_zone(Utc::now());
    let contacts = ["+14155550101", "+14155550102"]
        .map(|n| NewContact::new(E164::parse(n, None).unwrap(), zone, domain::Consent::on_file(chrono::Utc::now())))
        .to_vec();
    store.add_contacts(org, campaign.id, contacts, Utc::now()).await.unwrap();
    let campaign =
        store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, Utc::now()).await.unwrap();
    let dialer = DialerState::from_config(&config, store.clone(), queue.clone());
    let (scheduler, _fired) = LocalScheduler::new(StdDuration::from_secs(3600));
    let ticks = Ticker::from_config(&config, store, scheduler, queue);
    Rig { dialer, ticks, org, campaign, twilio }
}

impl<S: Store> Rig<S> {
    fn store(&self) -> &S {
        &self.ticks.store
    }

    async fn tick(&self, execution: &str, at: DateTime<Utc>) -> TickReport {
        tick(&self.ticks, self.org, self.campaign.id, execution, at).await.unwrap()
    }

    /// Every dial job on the queue, acknowledged.
    async fn jobs(&self) -> Vec<DialJob> {
        let received = self.dialer.queue.receive(DIAL_JOBS, 10, StdDuration::from_secs(60)).await.unwrap();
        for job in &received {
            self.dialer.queue.delete(DIAL_JOBS, &job.receipt).await.unwrap();
        }
        received.iter().map(|j| serde_json::from_str(&j.body).unwrap()).collect()
    }

    async fn creates(&self) -> usize {
        let requests = self.twilio.received_requests().await.unwrap();
        requests.iter().filter(|r| r.method.as_str() == "POST" && r.url.path() == CALLS).count()
    }

    /// The campaign's counter of live calls agrees with its live calls, and stays under the cap.
    async fn assert_capacity(&self) {
        let c = self.store().get_campaign(self.org, self.campaign.id).await.unwrap();
        let live = self.store().active_calls(self.org, self.campaign.id).await.unwrap();
        assert_eq!(c.counters.active_calls as usize, live.len(), "capacity released exactly once");
        assert!(c.counters.active_calls <= c.cap.get(), "{} live over a cap of {}", c.counters.active_calls, c.cap.get());
    }
}

store::on_both_stores!(
    "dialpath-";
    the_sweep_leaves_a_slowly_paced_dial_alone_and_the_contact_is_dialed_once,
    a_call_placed_after_the_sweep_ended_it_is_hung_up_at_once,
    a_lost_answer_that_cannot_be_looked_up_is_sent_once_and_the_sweep_ends_it,
);

async fn the_sweep_leaves_a_slowly_paced_dial_alone_and_the_contact_is_dialed_once<S: Store>(store: S) {
    let rig = rig(store, StdDuration::from_secs(3)).await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAslow" })))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    let now = Utc::now();
    // claimed four minutes ago; its job reaches a dialer only now
    assert_eq!(rig.tick("claim", now - Duration::minutes(4)).await.claimed, 1);
    let job = rig.jobs().await.remove(0);
    // another call took the account's slot: this one waits three seconds for the next
    rig.store().reserve_dial_slot("twilio#AC123", now, domain::Pace::per_second(1.0 / 3.0), StdDuration::from_secs(60)).await.unwrap();
    let dialing = {
        let dialer = rig.dialer.clone();
        tokio::spawn(async move { dialer.dialer.dial(&job, 1, now).await })
    };
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    // five and a half minutes after the claim, past the sweep's timeout for a queued call
    let swept = rig.tick("sweep", now + Duration::seconds(90)).await;
    assert_eq!((swept.timed_out, swept.claimed), (0, 0), "the dialer holds it: left alone, and no slot is free");
    rig.assert_capacity().await;
    let dialed = dialing.await.unwrap().unwrap();
    assert_eq!(dialed, Dialed::Placed { provider_call_id: "CAslow".into() });
    assert_eq!(rig.creates().await, 1, "dialed once");
    rig.assert_capacity().await;
    assert!(rig.jobs().await.is_empty(), "the other contact was never claimed over the cap");
}

async fn a_call_placed_after_the_sweep_ended_it_is_hung_up_at_once<S: Store>(store: S) {
    let rig = rig(store, StdDuration::from_millis(1)).await;
    Mock::given(method("POST"))
        .and(path(CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAtoolate" })).set_delay(StdDuration::from_millis(1500)))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Calls/CAtoolate.json"))
        .and(body_string_contains("Status=completed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "sid": "CAtoolate", "status": "completed" })))
        .expect(1)
        .mount(&rig.twilio)
        .await;
    let now = Utc::now();
    assert_eq!(rig.tick("claim", now).await.claimed, 1);
    let job = rig.jobs().await.remove(0);
    let dialing = {
        let dialer = rig.dialer.clone();
        tokio::spawn(async move { dialer.dialer.dial(&job, 1, now).await })
    };
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    // the sweep's clock says the dialer took the call six minutes ago: it gives up on it
    let swept = rig.tick("sweep", now + Duration::minutes(6)).await;
    assert_eq!((swept.timed_out, swept.claimed), (1, 1), "the slot went to the next contact");
    dialing.await.unwrap().unwrap();
    let call = rig.store().get_call(rig.org, job.call_id).await.unwrap();
    assert_eq!((call.state, call.end_reason), (CallState::Failed, Some(EndReason::Failed)));
    assert_eq!(call.provider_call_id.as_deref(), Some("CAtoolate"), "its callbacks still find it");
    rig.assert_capacity().await;
    // the hang-up mock's expect(1) is checked when the server drops
}

async fn a_lost_answer_that_cannot_be_looked_up_is_sent_once_and_the_sweep_ends_it<S: Store>(store: S) {
    let rig = rig(store, StdDuration::from_millis(1)).await;
    Mock::given(method("POST")).and(path(CALLS)).respond_with(ResponseTemplate::new(502)).expect(1).mount(&rig.twilio).await;
    Mock::given(method("GET")).and(path(CALLS)).respond_with(ResponseTemplate::new(503)).mount(&rig.twilio).await;
    let now = Utc::now();
    assert_eq!(rig.tick("claim", now).await.claimed, 1);
    let job = rig.jobs().await.remove(0);
    assert!(matches!(rig.dialer.dialer.dial(&job, 1, now).await.unwrap(), Dialed::Unconfirmed { .. }));
    for receive in 2..=5 {
        assert!(
            matches!(rig.dialer.dialer.dial(&job, receive, now).await.unwrap(), Dialed::Skipped { .. }),
            "redelivered: never sent again"
        );
    }
    assert_eq!(rig.tick("waiting", now + Duration::minutes(4)).await.timed_out, 0, "callbacks may still come");
    let swept = rig.tick("sweep", now + Duration::minutes(6)).await;
    assert_eq!(swept.timed_out, 1);
    let call = rig.store().get_call(rig.org, job.call_id).await.unwrap();
    assert_eq!((call.state, call.end_reason), (CallState::Failed, Some(EndReason::Failed)));
    assert!(call.details.error.as_deref().unwrap().starts_with("placement outcome unknown"), "{:?}", call.details.error);
    let contact = rig.store().get_contact(rig.org, rig.campaign.id, call.contact_id).await.unwrap();
    assert_eq!((contact.state, contact.attempts), (domain::ContactState::Ready, 1), "retried by the policy later");
    assert!(contact.due_at > now + Duration::minutes(6), "{}", contact.due_at);
    assert_eq!(rig.creates().await, 1);
    rig.assert_capacity().await;
}
