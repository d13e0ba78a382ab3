//! The dialer against wiremock fakes of each provider (PROTOCOLS.md), on SQLite and (when
//! `DYNAMODB_ENDPOINT` is set) DynamoDB: the request each one gets, rate limits and outages
//! retried through the queue to its dead letters, permanent refusals, duplicate deliveries,
//! caller-ID rotation, pacing across concurrent dialers, Lambda's SQS sample batch; and the
//! dial-time checks (do-not-call, the legal window, the emergency stop) and lost answers looked
//! up at the provider instead of being sent again.

use app::Dialed;
use chrono::{DateTime, Duration, TimeZone, Utc};
use dialer::DialerState;
use domain::{
    AssistantConfig, CallDisposition, CallEvent, CallEventKind, CallProvider, CallState, CampaignSettings, CampaignStatus, Cap,
    ContactDisposition, ContactState, DialJob, E164, EmergencyStop, EndReason, NewAssistant, NewCampaign, NewContact, OrgId, ProviderKind,
};
use platform::{CallsPerSecond, DIAL_JOBS, JobQueue, LocalQueue, testing::load_event, testing::midday_zone};
use serde_json::json;
use std::time::Duration as StdDuration;
use store::{Claim, Store};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path, query_param},
};

fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415555{n:04}"), None).unwrap()
}

fn caller(n: u64) -> E164 {
    E164::parse(&format!("+1628555{n:04}"), None).unwrap()
}

const TWILIO_CALLS: &str = "/2010-04-01/Accounts/AC123/Calls.json";
/// The provider's answer is waited for this long in these tests.
const PROVIDER_TIMEOUT: StdDuration = StdDuration::from_millis(800);

struct Rig<S: Store> {
    dialer: DialerState<S, LocalQueue>,
    org: OrgId,
    server: MockServer,
}

fn unpaced() -> CallsPerSecond {
    CallsPerSecond { twilio: 0.0, elevenlabs: 0.0, vapi: 0.0, retell: 0.0, simulator: 0.0 }
}

async fn rig<S: Store>(store: S, max_receives: u32, calls_per_second: CallsPerSecond) -> Rig<S> {
    let server = MockServer::start().await;
    let uri = server.uri();
    let mut config = platform::testing::config(&[
        ("VAPI_API_KEY", "vapi-key"),
        ("VAPI_BASE_URL", &uri),
        ("ELEVENLABS_API_KEY", "xi-key"),
        ("ELEVENLABS_BASE_URL", &uri),
        ("RETELL_API_KEY", "retell-key"),
        ("RETELL_BASE_URL", &uri),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("TWILIO_AUTH_TOKEN", "tw-token"),
        ("TWILIO_BASE_URL", &uri),
        ("OUTDIAL_PUBLIC_URL", "https://hooks.example.com"),
        ("OUTDIAL_BRIDGE_URL", "wss://bridge.example.com/media"),
        ("OUTDIAL_RING_SECONDS", "25"),
    ]);
    // below a second: not expressible in the environment's whole seconds
    config.dialing.calls.provider_timeout = PROVIDER_TIMEOUT;
    config.dialing.calls_per_second = calls_per_second;
    config.dialing.max_receives = max_receives;
    config.dialing.retry_backoff = StdDuration::ZERO;
    let org = store.create_org("Acme").await.unwrap().id;
    let dialer = DialerState::from_config(&config, store, LocalQueue::open_in_memory(max_receives).unwrap());
    Rig { dialer, org, server }
}

impl<S: Store> Rig<S> {
    fn store(&self) -> &S {
        &self.dialer.dialer.store
    }

    /// A running campaign of `provider` with `n` contacts living where it is midday, each named
    /// and with a `plan` column.
    async fn campaign(&self, provider: CallProvider, callers: Vec<E164>, n: u64) -> domain::Campaign {
        let zone = midday_zone(Utc::now());
        let contacts = (0..n)
            .map(|i| {
                let mut c = NewContact::new(phone(i), zone, domain::Consent::on_file(chrono::Utc::now()));
                c.name = Some(format!("Contact {i}"));
                c.variables.insert("plan".into(), "gold".into());
                c
            })
            .collect();
        let settings = CampaignSettings { provider, caller_ids: callers, calling_window: every_day(), ..Default::default() };
        self.campaign_with(settings, contacts, Utc::now()).await
    }

    async fn campaign_with(&self, settings: CampaignSettings, contacts: Vec<NewContact>, at: DateTime<Utc>) -> domain::Campaign {
        let kind = match settings.provider {
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
        let (assistant, _) = self.store().import_assistant(self.org, assistant, at).await.unwrap();
        // the pool's last number of a pool of three is left unregistered: it must never be called from
        let registered = if settings.caller_ids.len() == 3 { &settings.caller_ids[..2] } else { &settings.caller_ids[..] };
        store::testing::register_caller_ids(self.store(), self.org, registered, Some("pn_1"), Some("phnum_1")).await;
        let new = NewCampaign::parse("dial", Cap::parse(50).unwrap(), settings).unwrap().with_assistant(assistant.id);
        let c = self.store().create_campaign(self.org, new).await.unwrap();
        self.store().add_contacts(self.org, c.id, contacts, at).await.unwrap();
        self.store().set_campaign_status(self.org, c.id, &[CampaignStatus::Draft], CampaignStatus::Running, at).await.unwrap()
    }

    /// Claims what is due and queues a dial job per claim, as the tick does.
    async fn claim_and_queue(&self, campaign: &domain::Campaign, at: DateTime<Utc>) -> Vec<Claim> {
        let claims = self.store().claim_due_contacts(self.org, campaign.id, at, 50, Duration::zero()).await.unwrap();
        for c in &claims {
            self.queue_job(c).await;
        }
        claims
    }

    async fn queue_job(&self, claim: &Claim) {
        let job = DialJob { org_id: self.org, campaign_id: claim.call.campaign_id, call_id: claim.call.id };
        self.dialer.queue.send(DIAL_JOBS, serde_json::to_string(&job).unwrap()).await.unwrap();
    }

    fn job(&self, claim: &Claim) -> DialJob {
        DialJob { org_id: self.org, campaign_id: claim.call.campaign_id, call_id: claim.call.id }
    }

    /// Runs local dial batches until the queue has nothing visible.
    async fn drain(&self) {
        while self.dialer.run_local_batch(10, StdDuration::from_secs(60)).await.unwrap() > 0 {}
    }

    async fn requests_to(&self, method_name: &str, to: &str) -> usize {
        self.server.received_requests().await.unwrap().iter().filter(|r| r.method.as_str() == method_name && r.url.path() == to).count()
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

/// Twilio's lists of calls (`GET …/Calls.json?…`, whatever the filter) answering with `calls`.
async fn mount_call_list(server: &MockServer, calls: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "calls": calls, "page": 0, "page_size": 20 })))
        .mount(server)
        .await;
}

fn every_day() -> domain::CallingWindow {
    domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap()
}

fn form_field(body: &[u8], name: &str) -> Vec<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap().into_iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect()
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

store::on_both_stores!(
    "dialer-";
    each_provider_gets_its_own_request_with_the_contacts_variables,
    a_rate_limit_is_retried_through_the_queue_then_succeeds,
    an_outage_the_provider_did_not_act_on_goes_to_the_dead_letters_with_the_reason,
    a_permanent_refusal_fails_the_call_at_once_with_the_providers_code,
    a_duplicate_delivery_dials_once_and_a_canceled_campaign_none,
    caller_ids_rotate_and_a_retry_keeps_its_number,
    pacing_holds_across_four_concurrent_dialers,
    the_sqs_sample_batch_reports_only_the_bad_message_as_failed,
    a_number_listed_during_a_rate_limit_backoff_is_never_dialed,
    a_window_closing_during_backoff_reschedules_the_contact_without_spending_its_attempt,
    the_emergency_stop_places_nothing_and_gives_every_attempt_back,
    a_paused_campaigns_job_takes_no_start_slot,
    an_answer_after_the_timeout_is_looked_up_and_adopted_not_sent_again,
    a_502_for_a_call_twilio_made_is_looked_up_and_adopted,
    lost_answers_are_found_at_vapi_and_retell_by_our_call_id_in_their_metadata,
    a_lost_answer_nobody_can_look_up_is_never_sent_again,
    a_call_twilio_holds_queued_is_found_by_its_status_and_not_sent_again,
    nothing_listed_while_the_account_has_calls_queued_is_never_sent_again,
    a_call_twilio_did_not_make_is_sent_again,
    local_presence_calls_from_the_contacts_area_code_else_its_state,
);

async fn each_provider_gets_its_own_request_with_the_contacts_variables<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    let zone = midday_zone(Utc::now());
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .and(header("authorization", "Basic QUMxMjM6dHctdG9rZW4="))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAtwilio", "status": "queued" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    let vars = json!({ "name": "Contact 0", "first_name": "Contact", "plan": "gold", "timezone": zone.name() });
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
    let mut calls = Vec::new();
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
        calls.push(call.id);
    }
    let requests = rig.server.received_requests().await.unwrap();
    let twilio = &requests[0];
    assert_eq!(form_field(&twilio.body, "To"), ["+14155550000"]);
    assert_eq!(form_field(&twilio.body, "From"), ["+16285550001"]);
    assert_eq!(form_field(&twilio.body, "Timeout"), ["25"]);
    assert!(form_field(&twilio.body, "Twiml")[0].contains(r#"<Stream url="wss://bridge.example.com/media">"#));
    // our call id rides where each provider echoes it back
    let with_id = format!("?callId={}", calls[0]);
    for field in ["StatusCallback", "AsyncAmdStatusCallback"] {
        assert!(form_field(&twilio.body, field)[0].ends_with(&with_id), "{field}: {:?}", form_field(&twilio.body, field));
    }
    for (request, call) in [(&requests[2], calls[2]), (&requests[3], calls[3])] {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["metadata"][domain::CALL_ID_VARIABLE], call.to_string(), "{}", request.url);
        assert_eq!(body["metadata"][domain::ORG_ID_VARIABLE], rig.org.to_string());
    }
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty());
}

async fn a_rate_limit_is_retried_through_the_queue_then_succeeds<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
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
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 2, "a 429 made nothing: no lookup, one more create");
}

async fn an_outage_the_provider_did_not_act_on_goes_to_the_dead_letters_with_the_reason<S: Store>(store: S) {
    let rig = rig(store, 3, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({ "code": 20500, "message": "Service Unavailable", "status": 503 })))
        .mount(&rig.server)
        .await;
    mount_call_list(&rig.server, json!([])).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    assert_eq!(rig.requests_to("POST", TWILIO_CALLS).await, 3, "one attempt per receive, max 3 receives");
    assert_eq!(
        rig.requests_to("GET", TWILIO_CALLS).await,
        9,
        "each 5xx looked up first (calls started, queued, the account's queue): Twilio had made no call"
    );
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

async fn a_permanent_refusal_fails_the_call_at_once_with_the_providers_code<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
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

async fn a_duplicate_delivery_dials_once_and_a_canceled_campaign_none<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
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
    let job = rig.job(&claims[0]);
    let twice = futures::future::join(dialer.dialer.dial(&job, 1, now()), dialer.dialer.dial(&job, 1, now())).await;
    let placed = [&twice.0, &twice.1].iter().filter(|r| matches!(r, Ok(Dialed::Placed { .. }))).count();
    assert_eq!(placed, 1, "two deliveries at the same moment: {twice:?}");
    rig.store().cancel_campaign(rig.org, campaign.id, now()).await.unwrap();
    rig.drain().await;
    let second = rig.store().get_call(rig.org, claims[1].call.id).await.unwrap();
    assert_eq!(second.state, CallState::Canceled, "never dialed");
    let contact = rig.store().get_contact(rig.org, campaign.id, claims[1].contact.id).await.unwrap();
    assert_eq!(contact.disposition, Some(ContactDisposition::Canceled), "a canceled campaign retries nothing");
    assert_eq!(rig.store().get_campaign(rig.org, campaign.id).await.unwrap().counters.active_calls, 1, "the placed call is still live");
}

async fn caller_ids_rotate_and_a_retry_keeps_its_number<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    mount_numbered_sids(&rig.server).await;
    let pool = vec![caller(1), caller(2), caller(3)];
    let campaign = rig.campaign(CallProvider::Twilio, pool.clone(), 4).await;
    let start = now();
    let claims = rig.claim_and_queue(&campaign, start).await;
    rig.drain().await;
    let mut used = Vec::new();
    for c in &claims {
        used.push(rig.store().get_call(rig.org, c.call.id).await.unwrap().caller_id.unwrap());
    }
    used.sort();
    assert_eq!(used, [caller(1), caller(1), caller(2), caller(2)], "four calls rotate over the two registered numbers, never the third");
    let first = rig.store().get_call(rig.org, claims[0].call.id).await.unwrap();
    let busy = CallEvent { dedupe_key: "busy".into(), occurred_at: start, kind: CallEventKind::Ended { reason: EndReason::Busy } };
    rig.store().apply_call_event(rig.org, first.id, busy, start).await.unwrap();
    let retry = rig.claim_and_queue(&campaign, start + Duration::minutes(31)).await;
    assert_eq!((retry.len(), retry[0].call.attempt), (1, 2));
    rig.drain().await;
    let again = rig.store().get_call(rig.org, retry[0].call.id).await.unwrap();
    assert_eq!(again.caller_id, first.caller_id, "the retry goes out from the number the contact saw");
    // taken off the registry mid-campaign: with no registered number left, no call is placed
    let late = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    rig.store().remove_caller_id(rig.org, &caller(1)).await.unwrap();
    let late_claims = rig.claim_and_queue(&late, start).await;
    rig.drain().await;
    let withdrawn = rig.store().get_call(rig.org, late_claims[0].call.id).await.unwrap();
    assert_eq!((withdrawn.provider_call_id, withdrawn.caller_id), (None, None), "not placed from an unregistered number");
}

async fn pacing_holds_across_four_concurrent_dialers<S: Store>(store: S) {
    let pace = CallsPerSecond { twilio: 5.0, ..unpaced() };
    let rig = rig(store, 5, pace).await;
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

async fn the_sqs_sample_batch_reports_only_the_bad_message_as_failed<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAfromsqs" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.store().claim_due_contacts(rig.org, campaign.id, now(), 1, Duration::zero()).await.unwrap().remove(0);
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

async fn a_number_listed_during_a_rate_limit_backoff_is_never_dialed<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "code": 20429, "message": "Too Many Requests", "status": 429 })))
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    assert_eq!(rig.dialer.run_local_batch(10, StdDuration::from_secs(60)).await.unwrap(), 1, "429: the job backs off");
    // listed while the job waits: the list finalises ready contacts only, this one is being dialed
    let listed = rig.store().add_do_not_call(rig.org, vec![phone(0)], now()).await.unwrap();
    assert_eq!(listed.contacts_finalised, 0);
    rig.drain().await;
    assert_eq!(rig.requests_to("POST", TWILIO_CALLS).await, 1, "no request after the number was listed");
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!(
        (call.state, call.end_reason, call.disposition()),
        (CallState::Canceled, Some(EndReason::DoNotCall), Some(CallDisposition::DoNotCall))
    );
    let contact = rig.store().get_contact(rig.org, campaign.id, claim.contact.id).await.unwrap();
    assert_eq!((contact.state, contact.disposition), (ContactState::Done, Some(ContactDisposition::DoNotCall)));
    let c = rig.store().get_campaign(rig.org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.contacts_done), (0, 1));
}

async fn a_window_closing_during_backoff_reschedules_the_contact_without_spending_its_attempt<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "code": 20429, "message": "Too Many Requests", "status": 429 })))
        .mount(&rig.server)
        .await;
    let ny = chrono_tz::America::New_York;
    // Wednesday 13 January 2027, 19:50 in New York: a Miami number may be called until 20:00
    let at = |h, m, s| ny.with_ymd_and_hms(2027, 1, 13, h, m, s).unwrap().with_timezone(&Utc);
    let settings = CampaignSettings { provider: CallProvider::Twilio, caller_ids: vec![caller(1)], ..Default::default() };
    let miami = NewContact::new(E164::parse("+13055550100", None).unwrap(), ny, domain::Consent::on_file(chrono::Utc::now()));
    let campaign = rig.campaign_with(settings, vec![miami], at(19, 0, 0)).await;
    let claim = rig.store().claim_due_contacts(rig.org, campaign.id, at(19, 50, 0), 50, Duration::seconds(120)).await.unwrap().remove(0);
    assert_eq!(claim.contact.attempts, 1);
    let first = rig.dialer.dialer.dial(&rig.job(&claim), 1, at(19, 50, 0)).await;
    assert!(matches!(first, Err(app::DialError::Retry(_))), "{first:?}");
    // the backoff ends at 19:58:30: two minutes of calling would run past 20:00
    let second = rig.dialer.dialer.dial(&rig.job(&claim), 2, at(19, 58, 30)).await.unwrap();
    assert!(matches!(&second, Dialed::Withdrawn { reason: EndReason::OutsideWindow, .. }), "{second:?}");
    assert_eq!(rig.requests_to("POST", TWILIO_CALLS).await, 1, "no placement once the window closed");
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!((call.state, call.end_reason), (CallState::Canceled, Some(EndReason::OutsideWindow)));
    let contact = rig.store().get_contact(rig.org, campaign.id, claim.contact.id).await.unwrap();
    let next_morning = ny.with_ymd_and_hms(2027, 1, 14, 8, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!((contact.state, contact.attempts, contact.due_at), (ContactState::Ready, 0, next_morning));
    let c = rig.store().get_campaign(rig.org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.calls_total, c.counters.contacts_done), (0, 0, 0));
    let events = rig.store().list_call_events(rig.org, call.id).await.unwrap();
    assert!(
        events.iter().any(
            |e| matches!(&e.event.kind, CallEventKind::Note { text } if text.contains("legal calling window in America/New_York (FL)"))
        ),
        "{events:?}"
    );
    // the next claim waits for the opening, and then dials it again as its first attempt
    assert!(rig.store().claim_due_contacts(rig.org, campaign.id, at(19, 59, 0), 50, Duration::zero()).await.unwrap().is_empty());
    let again = rig.store().claim_due_contacts(rig.org, campaign.id, next_morning, 50, Duration::seconds(120)).await.unwrap();
    assert_eq!((again.len(), again[0].call.attempt), (1, 1));
}

async fn the_emergency_stop_places_nothing_and_gives_every_attempt_back<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    mount_numbered_sids(&rig.server).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 3).await;
    let claims = rig.claim_and_queue(&campaign, now()).await;
    assert_eq!(claims.len(), 3);
    rig.store().set_emergency_stop(rig.org, Some(EmergencyStop { since: now(), by: None })).await.unwrap();
    rig.drain().await;
    assert_eq!(rig.server.received_requests().await.unwrap().len(), 0, "nothing placed");
    for claim in &claims {
        let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
        assert_eq!((call.state, call.end_reason), (CallState::Canceled, Some(EndReason::Canceled)));
        let contact = rig.store().get_contact(rig.org, campaign.id, claim.contact.id).await.unwrap();
        assert_eq!((contact.state, contact.attempts, contact.disposition), (ContactState::Ready, 0, None));
    }
    let c = rig.store().get_campaign(rig.org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.calls_total), (0, 0));
    assert!(rig.store().claim_due_contacts(rig.org, campaign.id, now(), 50, Duration::zero()).await.unwrap().is_empty(), "claims wait too");
    rig.store().set_emergency_stop(rig.org, None).await.unwrap();
    assert_eq!(rig.claim_and_queue(&campaign, now()).await.len(), 3, "lifted: the same contacts are claimed again");
}

async fn a_paused_campaigns_job_takes_no_start_slot<S: Store>(store: S) {
    let rig = rig(store, 5, CallsPerSecond { twilio: 1.0, ..unpaced() }).await;
    mount_numbered_sids(&rig.server).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 2).await;
    let claims = rig.claim_and_queue(&campaign, now()).await;
    let at = DateTime::from_timestamp_millis(now().timestamp_millis()).unwrap();
    rig.store().set_campaign_status(rig.org, campaign.id, &[CampaignStatus::Running], CampaignStatus::Paused, at).await.unwrap();
    let paused = rig.dialer.dialer.dial(&rig.job(&claims[0]), 1, at).await;
    assert!(matches!(paused, Err(app::DialError::Retry(_))), "back to the queue: {paused:?}");
    rig.store().set_campaign_status(rig.org, campaign.id, &[CampaignStatus::Paused], CampaignStatus::Running, at).await.unwrap();
    let placed = rig.dialer.dialer.dial(&rig.job(&claims[1]), 1, at).await.unwrap();
    assert!(matches!(placed, Dialed::Placed { .. }), "{placed:?}");
    let call = rig.store().get_call(rig.org, claims[1].call.id).await.unwrap();
    assert_eq!(call.placed_at, Some(at), "the paused job left the first start slot free");
}

async fn an_answer_after_the_timeout_is_looked_up_and_adopted_not_sent_again<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    // Twilio makes the call but its answer comes after we stopped waiting
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAlate" })).set_delay(PROVIDER_TIMEOUT * 3))
        .expect(1)
        .mount(&rig.server)
        .await;
    let created = now().to_rfc2822();
    let today = now().format("%Y-%m-%d").to_string();
    Mock::given(method("GET"))
        .and(path(TWILIO_CALLS))
        .and(query_param("To", "+14155550000"))
        .and(query_param("StartTime>", today.as_str()))
        .and(query_param("PageSize", "20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "calls": [
            { "sid": "CAearlier", "to": "+14155550000", "from": "+16285550001", "status": "completed", "date_created": (now() - Duration::hours(2)).to_rfc2822() },
            { "sid": "CAelse", "to": "+14155550000", "from": "+16285550009", "status": "queued", "date_created": created },
            { "sid": "CAlate", "to": "+14155550000", "from": "+16285550001", "status": "queued", "date_created": created },
        ] })))
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("GET"))
        .and(path(TWILIO_CALLS))
        .and(query_param("Status", "queued"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "calls": [], "page": 0, "page_size": 20 })))
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!((call.provider_call_id.as_deref(), call.state), (Some("CAlate"), CallState::Queued));
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty());
}

async fn a_502_for_a_call_twilio_made_is_looked_up_and_adopted<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .expect(1)
        .mount(&rig.server)
        .await;
    mount_call_list(
        &rig.server,
        json!([{ "sid": "CAmade", "to": "+14155550000", "from": "+16285550001", "status": "ringing", "date_created": now().to_rfc2822() }]),
    )
    .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    assert_eq!(rig.store().get_call(rig.org, claim.call.id).await.unwrap().provider_call_id.as_deref(), Some("CAmade"));
    assert_eq!(rig.requests_to("GET", TWILIO_CALLS).await, 2, "the calls started since the dial, and those queued");
}

async fn lost_answers_are_found_at_vapi_and_retell_by_our_call_id_in_their_metadata<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    let slow = |id: serde_json::Value| ResponseTemplate::new(201).set_body_json(id).set_delay(PROVIDER_TIMEOUT * 3);
    Mock::given(method("POST")).and(path("/call")).respond_with(slow(json!({ "id": "vapi_late" }))).expect(1).mount(&rig.server).await;
    Mock::given(method("POST"))
        .and(path("/v2/create-phone-call"))
        .respond_with(slow(json!({ "call_id": "retell_late" })))
        .expect(1)
        .mount(&rig.server)
        .await;
    let vapi = rig.campaign(CallProvider::Vapi, vec![caller(1)], 1).await;
    let vapi_call = rig.claim_and_queue(&vapi, now()).await.remove(0).call.id;
    let retell = rig.campaign(CallProvider::Retell, vec![caller(1)], 1).await;
    let retell_call = rig.claim_and_queue(&retell, now()).await.remove(0).call.id;
    let ours = |call: domain::CallId| json!({ domain::CALL_ID_VARIABLE: call.to_string(), domain::ORG_ID_VARIABLE: rig.org.to_string() });
    let someone_else = json!({ domain::CALL_ID_VARIABLE: domain::CallId::new().to_string() });
    Mock::given(method("GET"))
        .and(path("/call"))
        .and(header("authorization", "Bearer vapi-key"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": "vapi_other", "metadata": someone_else },
            { "id": "vapi_late", "metadata": ours(vapi_call) },
        ])))
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_partial_json(
            json!({ "filter_criteria": { "metadata": [{ "key": domain::CALL_ID_VARIABLE, "value": retell_call.to_string() }] } }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": [
            { "call_id": "retell_late", "call_status": "registered", "metadata": ours(retell_call) },
            { "call_id": "retell_other", "call_status": "ended", "metadata": someone_else },
        ], "has_more": false })))
        .expect(1)
        .mount(&rig.server)
        .await;
    rig.drain().await;
    let vapi_lookup = rig.server.received_requests().await.unwrap().into_iter().find(|r| r.method.as_str() == "GET").unwrap();
    let since: DateTime<Utc> = vapi_lookup.url.query_pairs().find(|(k, _)| k == "createdAtGt").unwrap().1.parse().unwrap();
    assert!((now() - since) < Duration::seconds(30), "createdAtGt is when the dial began: {since}");
    assert_eq!(rig.store().get_call(rig.org, vapi_call).await.unwrap().provider_call_id.as_deref(), Some("vapi_late"));
    assert_eq!(rig.store().get_call(rig.org, retell_call).await.unwrap().provider_call_id.as_deref(), Some("retell_late"));
}

async fn a_lost_answer_nobody_can_look_up_is_never_sent_again<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("GET")).and(path(TWILIO_CALLS)).respond_with(ResponseTemplate::new(500)).mount(&rig.server).await;
    // ElevenLabs cannot be asked at all
    Mock::given(method("POST"))
        .and(path("/v1/convai/twilio/outbound-call"))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .expect(1)
        .mount(&rig.server)
        .await;
    let twilio = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let twilio_claim = rig.claim_and_queue(&twilio, now()).await.remove(0);
    let elevenlabs = rig.campaign(CallProvider::Elevenlabs, vec![caller(1)], 1).await;
    let elevenlabs_claim = rig.claim_and_queue(&elevenlabs, now()).await.remove(0);
    rig.drain().await;
    for claim in [&twilio_claim, &elevenlabs_claim] {
        let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
        assert_eq!((call.state, call.provider_call_id.as_deref()), (CallState::Queued, None), "it waits for callbacks");
        assert!(call.dialing_since.is_some(), "and keeps its dial guard, so no dialer sends it again");
        let events = rig.store().list_call_events(rig.org, call.id).await.unwrap();
        assert!(
            events.iter().any(|e| matches!(&e.event.kind, CallEventKind::Note { text } if text.starts_with("placement outcome unknown")))
        );
        // a later delivery of the job, or a duplicate, cannot dial it either
        assert!(matches!(rig.dialer.dialer.dial(&rig.job(claim), 2, now()).await, Ok(Dialed::Skipped { .. })));
    }
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty(), "acknowledged, not retried");
}

/// Twilio with a calls-per-second backlog: it takes the create, answers after we stopped waiting,
/// and holds the call `queued` for 30 s. A queued call has no start time yet, so Twilio's
/// `StartTime>=` list leaves it out until it starts; only `Status=queued` lists it.
struct BackloggedTwilio {
    made: std::sync::Mutex<Option<std::time::Instant>>,
    created: DateTime<Utc>,
}

impl BackloggedTwilio {
    const QUEUED_FOR: StdDuration = StdDuration::from_secs(30);
}

impl wiremock::Respond for BackloggedTwilio {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let mut made = self.made.lock().unwrap();
        if request.method.as_str() == "POST" {
            *made = Some(std::time::Instant::now());
            return ResponseTemplate::new(201)
                .set_body_json(json!({ "sid": "CAqueued", "status": "queued" }))
                .set_delay(PROVIDER_TIMEOUT * 3);
        }
        let queued = made.is_some_and(|at| at.elapsed() < Self::QUEUED_FOR);
        let call = |status: &str, start_time: serde_json::Value| {
            json!({ "sid": "CAqueued", "to": "+14155550000", "from": "+16285550001", "status": status,
                    "date_created": self.created.to_rfc2822(), "start_time": start_time })
        };
        let query: std::collections::HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        let calls = match (query.get("Status").map(String::as_str), query.contains_key("StartTime>")) {
            (Some("queued"), false) if queued => vec![call("queued", serde_json::Value::Null)],
            (None, true) if made.is_some() && !queued => vec![call("in-progress", json!(self.created.to_rfc2822()))],
            _ => vec![],
        };
        ResponseTemplate::new(200).set_body_json(json!({ "calls": calls, "page": 0, "page_size": 20 }))
    }
}

async fn a_call_twilio_holds_queued_is_found_by_its_status_and_not_sent_again<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    let twilio = BackloggedTwilio { made: std::sync::Mutex::new(None), created: now() };
    Mock::given(path(TWILIO_CALLS)).respond_with(twilio).mount(&rig.server).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!(call.provider_call_id.as_deref(), Some("CAqueued"), "adopted while Twilio still holds it queued");
    assert_eq!(rig.requests_to("POST", TWILIO_CALLS).await, 1, "never placed a second time");
    let lists = rig.server.received_requests().await.unwrap();
    assert!(lists.iter().any(|r| r.method.as_str() == "GET" && r.url.query_pairs().any(|(k, v)| k == "Status" && v == "queued")));
    assert!(rig.dialer.queue.dead_letters(DIAL_JOBS, 10).await.unwrap().is_empty());
}

async fn nothing_listed_while_the_account_has_calls_queued_is_never_sent_again<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAunlisted" })).set_delay(PROVIDER_TIMEOUT * 3))
        .expect(1)
        .mount(&rig.server)
        .await;
    let page = |calls: serde_json::Value| ResponseTemplate::new(200).set_body_json(json!({ "calls": calls, "page": 0, "page_size": 20 }));
    // the new call is not in the number's lists yet, but the account's queue holds calls
    Mock::given(method("GET"))
        .and(path(TWILIO_CALLS))
        .and(query_param("To", "+14155550000"))
        .respond_with(page(json!([])))
        .mount(&rig.server)
        .await;
    Mock::given(method("GET"))
        .and(path(TWILIO_CALLS))
        .and(wiremock::matchers::query_param_is_missing("To"))
        .and(query_param("Status", "queued"))
        .respond_with(page(json!([{ "sid": "CAother", "to": "+14155559999", "from": "+16285550001", "status": "queued", "date_created": now().to_rfc2822() }])))
        .expect(1)
        .mount(&rig.server)
        .await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
    assert_eq!((call.state, call.provider_call_id.as_deref()), (CallState::Queued, None), "it waits for Twilio's callbacks");
    let events = rig.store().list_call_events(rig.org, call.id).await.unwrap();
    assert!(events.iter().any(|e| matches!(&e.event.kind, CallEventKind::Note { text } if text.contains("calls queued"))));
    assert!(matches!(rig.dialer.dialer.dial(&rig.job(&claim), 2, now()).await, Ok(Dialed::Skipped { .. })));
}

async fn a_call_twilio_did_not_make_is_sent_again<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .up_to_n_times(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path(TWILIO_CALLS))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CAsecond" })))
        .mount(&rig.server)
        .await;
    mount_call_list(&rig.server, json!([])).await;
    let campaign = rig.campaign(CallProvider::Twilio, vec![caller(1)], 1).await;
    let claim = rig.claim_and_queue(&campaign, now()).await.remove(0);
    rig.drain().await;
    assert_eq!(rig.store().get_call(rig.org, claim.call.id).await.unwrap().provider_call_id.as_deref(), Some("CAsecond"));
    assert_eq!(rig.requests_to("POST", TWILIO_CALLS).await, 2, "not listed, nothing queued: Twilio did not make it");
}

async fn local_presence_calls_from_the_contacts_area_code_else_its_state<S: Store>(store: S) {
    let rig = rig(store, 5, unpaced()).await;
    mount_numbered_sids(&rig.server).await;
    let number = |n: &str| E164::parse(n, None).unwrap();
    // New York twice, then Los Angeles and San Francisco (California): least recently used alone
    // would give the first contacts New York's numbers
    let pool = ["+12125550100", "+16465550100", "+12135550100", "+14155550100"].map(number).to_vec();
    let zone = midday_zone(Utc::now());
    let contacts = ["+13055551234", "+13105551234", "+14155551234"]
        .map(|n| NewContact::new(number(n), zone, domain::Consent::on_file(now())))
        .to_vec();
    let settings = CampaignSettings {
        provider: CallProvider::Twilio,
        caller_ids: pool.clone(),
        caller_id_strategy: domain::caller_id::CallerIdStrategy::Local,
        calling_window: every_day(),
        ..Default::default()
    };
    let campaign = rig.campaign_with(settings, contacts, now()).await;
    let claims = rig.claim_and_queue(&campaign, now()).await;
    rig.drain().await;
    let mut from = std::collections::HashMap::new();
    for claim in &claims {
        let call = rig.store().get_call(rig.org, claim.call.id).await.unwrap();
        from.insert(call.phone.as_str().to_string(), call.caller_id.unwrap());
    }
    assert_eq!(from["+14155551234"], number("+14155550100"), "the contact's own area code");
    assert!(["+14155550100", "+12135550100"].map(number).contains(&from["+13105551234"]), "no 310 number: one of California's");
    assert!(pool.contains(&from["+13055551234"]), "nothing in Florida: the pool's least recently used");
}
