//! The dialer against wiremock fakes of each provider (PROTOCOLS.md): the request each one gets,
//! rate limits and outages retried through the queue to its dead letters, permanent refusals,
//! duplicate deliveries, caller-ID rotation, pacing across concurrent dialers, and Lambda's SQS
//! sample batch.

use chrono::{DateTime, Duration, Utc};
use dialer::{Dialed, DialerSettings, DialerState};
use domain::{
    AssistantConfig, CallEvent, CallEventKind, CallProvider, CallState, CampaignSettings, CampaignStatus, Cap, ContactState, DialJob, E164,
    EndReason, NewAssistant, NewCampaign, NewContact, OrgId, ProviderKind,
};
use platform::{CallsPerSecond, DIAL_JOBS, JobQueue, LocalQueue, testing::load_event};
use providers::{CallOptions, CallProviders, ProviderAccount, ProviderAccounts, TwilioAccount};
use serde_json::json;
use std::time::Duration as StdDuration;
use store::{AssistantStore, CallStore, CampaignStore, Claim, OrgStore, SqliteStore};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415555{n:04}"), None).unwrap()
}

fn caller(n: u64) -> E164 {
    E164::parse(&format!("+1628555{n:04}"), None).unwrap()
}

const TWILIO_CALLS: &str = "/2010-04-01/Accounts/AC123/Calls.json";

struct Rig {
    dialer: DialerState<SqliteStore, LocalQueue>,
    org: OrgId,
    server: MockServer,
}

fn unpaced() -> CallsPerSecond {
    CallsPerSecond { twilio: 0.0, elevenlabs: 0.0, vapi: 0.0, retell: 0.0, simulator: 0.0 }
}

async fn rig(max_receives: u32, calls_per_second: CallsPerSecond) -> Rig {
    let server = MockServer::start().await;
    let key = |k: &str| Some(ProviderAccount { base_url: server.uri(), api_key: k.into() });
    let accounts = ProviderAccounts {
        vapi: key("vapi-key"),
        elevenlabs: key("xi-key"),
        retell: key("retell-key"),
        twilio: Some(TwilioAccount { base_url: server.uri(), account_sid: "AC123".into(), auth_token: "tw-token".into() }),
    };
    let options = CallOptions {
        public_url: Some("https://hooks.example.com".into()),
        bridge_url: Some("wss://bridge.example.com/media".into()),
        elevenlabs_phone_number_id: Some("phnum_1".into()),
        vapi_phone_number_id: Some("pn_1".into()),
        ..Default::default()
    };
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let settings = DialerSettings {
        calls_per_second,
        max_pace_wait: StdDuration::from_secs(30),
        max_receives,
        retry_backoff: StdDuration::ZERO,
        ring_seconds: 25,
        account: "AC123".into(),
    };
    let dialer = DialerState {
        store,
        providers: CallProviders::new(&accounts, &options),
        queue: LocalQueue::open_in_memory(max_receives).unwrap(),
        settings,
    };
    Rig { dialer, org, server }
}

impl Rig {
    fn store(&self) -> &SqliteStore {
        &self.dialer.store
    }

    /// A running campaign of `provider` with `n` contacts, each named and with a `plan` column.
    async fn campaign(&self, provider: CallProvider, callers: Vec<E164>, n: u64) -> domain::Campaign {
        let kind = match provider {
            CallProvider::Vapi => ProviderKind::Vapi,
            CallProvider::Retell => ProviderKind::Retell,
            _ => ProviderKind::Elevenlabs,
        };
        let config = AssistantConfig {
            system_prompt: "You renew subscriptions.".into(),
            first_message: "Hi, this is an AI assistant calling for Acme.".into(),
            ..serde_json::from_value(json!({ "systemPrompt": "x", "firstMessage": "y" })).unwrap()
        };
        let mut assistant = NewAssistant::local("Renewals", kind, config).unwrap();
        assistant.provider_assistant_id = Some("agent_7".into());
        let (assistant, _) = self.store().import_assistant(self.org, assistant, Utc::now()).await.unwrap();
        let settings = CampaignSettings { provider, caller_ids: callers, calling_window: always_open(), ..Default::default() };
        let new = NewCampaign::parse("dial", Cap::parse(50).unwrap(), settings).unwrap().with_assistant(assistant.id);
        let c = self.store().create_campaign(self.org, new).await.unwrap();
        let contacts = (0..n)
            .map(|i| {
                let mut c = NewContact::new(phone(i), chrono_tz::UTC);
                c.name = Some(format!("Contact {i}"));
                c.variables.insert("plan".into(), "gold".into());
                c
            })
            .collect();
        self.store().add_contacts(self.org, c.id, contacts, Utc::now()).await.unwrap();
        self.store().set_campaign_status(self.org, c.id, &[CampaignStatus::Draft], CampaignStatus::Running, Utc::now()).await.unwrap()
    }

    /// Claims what is due and queues a dial job per claim, as the tick does.
    async fn claim_and_queue(&self, campaign: &domain::Campaign, at: DateTime<Utc>) -> Vec<Claim> {
        let claims = self.store().claim_due_contacts(self.org, campaign.id, at, 50).await.unwrap();
        for c in &claims {
            self.queue_job(c).await;
        }
        claims
    }

    async fn queue_job(&self, claim: &Claim) {
        let job = DialJob { org_id: self.org, campaign_id: claim.call.campaign_id, call_id: claim.call.id };
        self.dialer.queue.send(DIAL_JOBS, serde_json::to_string(&job).unwrap()).await.unwrap();
    }

    /// Runs local dial batches until the queue has nothing visible.
    async fn drain(&self) {
        while self.dialer.run_local_batch(10, StdDuration::from_secs(60)).await.unwrap() > 0 {}
    }
}

/// Twilio answering each create with a new sid.
async fn mount_numbered_sids(server: &MockServer) {
    let sid = std::sync::atomic::AtomicU32::new(0);
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(move |_: &wiremock::Request| {
            let n = sid.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(201).set_body_json(json!({ "sid": format!("CA{n:032}") }))
        })
        .mount(server)
        .await;
}

fn always_open() -> domain::CallingWindow {
    use domain::Day::*;
    domain::CallingWindow::parse([Mon, Tue, Wed, Thu, Fri, Sat, Sun], "00:00", "23:59").unwrap()
}

fn form_field(body: &[u8], name: &str) -> Vec<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap().into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect()
}

fn now() -> DateTime<Utc> {
    // inside the always-open window whatever the clock says, except the minute before midnight
    let n = Utc::now();
    if n.format("%H:%M").to_string() == "23:59" { n + Duration::minutes(2) } else { n }
}

#[tokio::test]
async fn each_provider_gets_its_own_request_with_the_contacts_variables() {
    let rig = rig(5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .and(header("authorization", "Basic QUMxMjM6dHctdG9rZW4="))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAtwilio", "status": "queued" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    let vars = json!({ "name": "Contact 0", "first_name": "Contact", "plan": "gold", "timezone": "UTC" });
    Mock::given(method("POST"))
        .and(path("/v1/convai/twilio/outbound-call"))
        .and(header("xi-api-key", "xi-key"))
        .and(body_partial_json(json!({ "agent_id": "agent_7", "agent_phone_number_id": "phnum_1", "to_number": "+14155550000",
            "conversation_initiation_client_data": { "dynamic_variables": vars } })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "success": true, "conversation_id": "conv_1", "callSid": "CAx" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/call"))
        .and(header("authorization", "Bearer vapi-key"))
        .and(body_partial_json(json!({ "assistantId": "agent_7", "phoneNumberId": "pn_1",
            "customer": { "number": "+14155550000", "name": "Contact 0" }, "assistantOverrides": { "variableValues": vars } })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "vapi_1" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/create-phone-call"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_partial_json(json!({ "from_number": "+16285550001", "to_number": "+14155550000", "override_agent_id": "agent_7",
            "retell_llm_dynamic_variables": vars })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "call_id": "retell_1" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    for (provider, expected) in [
        (CallProvider::Twilio, "CAtwilio"),
        (CallProvider::Elevenlabs, "conv_1"),
        (CallProvider::Vapi, "vapi_1"),
        (CallProvider::Retell, "retell_1"),
    ] {
        let campaign = rig.campaign(provider, vec![caller(1)], 1).await;
        let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
        rig.drain().await;
        let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
        assert_eq!((call.provider_call_id.as_deref(), call.caller_id.as_ref()), (Some(expected), Some(&caller(1))), "{provider:?}");
        assert_eq!(call.state, CallState::Queued, "the provider's callbacks move it on");
    }
    let twilio = &rig.server.received_requests().await.unwrap()[0];
    assert_eq!(form_field(&twilio.body, "To"), ["+14155550000"]);
    assert_eq!(form_field(&twilio.body, "From"), ["+16285550001"]);
    assert_eq!(form_field(&twilio.body, "Timeout"), ["25"]);
    assert!(form_field(&twilio.body, "Twiml")[0].contains(r#"<Stream url="wss://bridge.example.com/media">"#));
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rate_limit_is_retried_through_the_queue_then_succeeds() {
    let rig = rig(5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "code": 20429, "message": "Too Many Requests", "status": 429 })))
        .up_to_n_times(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAafter429" })))
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    assert_eq!(rig.dialer.run_local_batch(10, StdDuration::from_secs(60)).await.unwrap(), 1);
    assert!(rig.store().get_call(rig.org, claim.call.id).await.unwrap().provider_call_id.is_none(), "429: not placed yet");
    rig.drain().await;
    assert_eq!(rig.store().get_call(rig.org, claim.call.id).await.unwrap().provider_call_id.as_deref(), Some("CAafter429"));
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_outage_goes_to_the_dead_letters_and_fails_the_call_with_the_reason() {
    let rig = rig(3, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({ "code": 20500, "message": "Service Unavailable", "status": 503 })))
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 3, "one attempt per receive, max 3 receives");
    let dead = rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!(call.state, CallState::Failed);
    assert_eq!(call.details.error.as_deref(), Some("twilio is unavailable: 503 Service Unavailable: 20500: Service Unavailable"));
    let contact = rig.store().get_contact(rig.org, campaign.id, claim.contact.id).await.unwrap();
    assert_eq!(contact.state, ContactState::Ready, "failed calls are retried by the default policy");
    assert!(contact.due_at > claim.call.created_at);
    assert_eq!(rig.store().get_campaign(rig.org, campaign.id).await.unwrap().counters.active_calls, 0);
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_call_at_once_with_the_providers_code() {
    let rig = rig(5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({ "code": 21211, "message": "Invalid 'To' Phone Number", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400 }),
        ))
        .expect(1)
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!((call.state, call.end_reason), (CallState::Failed, Some(EndReason::Failed)));
    assert_eq!(call.details.error.as_deref(), Some("twilio refused the request (400): 21211: Invalid 'To' Phone Number"));
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty(), "acknowledged, not retried");
}

#[tokio::test]
async fn a_duplicate_delivery_dials_once_and_a_canceled_campaign_none() {
    let rig = rig(5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAonce" })).set_delay(StdDuration::from_millis(50)))
        .expect(1)
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 2).await;
    let claims = rig.claim_and_queue(&campaign, now()).await;
    // the first call's job delivered twice more; the second call's campaign canceled before it is dialed
    rig.queue_job(&claims[0]).await;
    rig.queue_job(&claims[0]).await;
    let dialer = &rig.dialer;
    let job = DialJob { org_id: rig.org, campaign_id: campaign.id, call_id: claims[0].call.id };
    let twice = futures::future::join(dialer.dial(&job, 1, now()), dialer.dial(&job, 1, now())).await;
    let placed = [&twice.0, &twice.1].iter().filter(|r| matches!(r, Ok(Dialed::Placed { .. }))).count();
    assert_eq!(placed, 1, "two deliveries at the same moment: {twice:?}");
    rig.store().cancel_campaign(rig.org, campaign.id, now()).await.unwrap();
    rig.drain().await;
    let second = rig.store().get_call(rig.org, claims[1].call.id).await.unwrap();
    assert_eq!(second.state, CallState::Canceled, "never dialed");
    assert_eq!(rig.store().get_campaign(rig.org, campaign.id).await.unwrap().counters.active_calls, 1, "the placed call is still live");
}

#[tokio::test]
async fn caller_ids_rotate_and_a_retry_keeps_its_number() {
    let rig = rig(5, unpaced()).await;
    mount_numbered_sids(&rig.server).await;
    let pool = vec![caller(1), caller(2), caller(3)];
    let campaign = rig.campaign(CallProvider::Twilio, pool.clone(), 3).await;
    let start = now();
    let claims = rig.claim_and_queue(&campaign, start).await;
    rig.drain().await;
    let mut used = Vec::new();
    for c in &claims {
        used.push(rig.store().get_call(rig.org, c.call.id).await.unwrap().caller_id.unwrap());
    }
    used.sort();
    assert_eq!(used, pool, "three calls, three numbers");
    let first = rig.store().get_call(rig.org, claims[0].call.id).await.unwrap();
    let busy = CallEvent { dedupe_key: "busy".into(), occurred_at: start, kind: CallEventKind::Ended { reason: EndReason::Busy } };
    rig.store().apply_call_event(rig.org, first.id, busy, start).await.unwrap();
    let retry = rig.claim_and_queue(&campaign, start + Duration::minutes(31)).await;
    assert_eq!((retry.len(), retry[0].call.attempt), (1, 2));
    rig.drain().await;
    let again = rig.store().get_call(rig.org, retry[0].call.id).await.unwrap();
    assert_eq!(again.caller_id, first.caller_id, "the retry goes out from the number the contact saw");
}

#[tokio::test]
async fn pacing_holds_across_four_concurrent_dialers() {
    let pace = CallsPerSecond { twilio: 5.0, ..unpaced() };
    let rig = rig(5, pace).await;
    mount_numbered_sids(&rig.server).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 8).await;
    let claims = rig.claim_and_queue(&campaign, now()).await;
    let dialers: Vec<_> = (0..4).map(|_| rig.dialer.clone()).collect();
    futures::future::join_all(dialers.iter().map(|d| d.run_local_batch(2, StdDuration::from_secs(60)))).await;
    let mut placed = Vec::new();
    for c in &claims {
        placed.push(rig.store().get_call(rig.org, c.call.id).await.unwrap().placed_at.expect("placed"));
    }
    placed.sort();
    for pair in placed.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::milliseconds(200),
            "two calls {} ms apart under 5 calls/s",
            (pair[1] - pair[0]).num_milliseconds()
        );
    }
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 8);
}

#[tokio::test]
async fn the_sqs_sample_batch_reports_only_the_bad_message_as_failed() {
    let rig = rig(5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAfromsqs" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.store().claim_due_contacts(rig.org, campaign.id, now(), 1).await.unwrap().remove(0);
    let (org, id, call) = (rig.org.to_string(), campaign.id.to_string(), claim.call.id.to_string());
    let event = load_event(
        "dialer/sqs-batch.json",
        &[
            ("01970000-0000-7000-8000-0000000000a9", &org),
            ("01970000-0000-7000-8000-0000000ca111", &id),
            ("01970000-0000-7000-8000-0000000ca11a", &call),
        ],
    );
    let response = rig.dialer.handle_sqs_batch(serde_json::from_str(&event).unwrap()).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["2e1424d4-f796-459a-8184-9c92662be6da"]);
    assert_eq!(rig.store().get_call(rig.org, claim.call.id).await.unwrap().provider_call_id.as_deref(), Some("CAfromsqs"));
}
