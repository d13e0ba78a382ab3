//! crm-sync's delivery rules, run directly on both stores against fake CRMs that speak
//! PROTOCOLS.md: a delivered connection is never sent again; a step that fails is resumed after
//! the steps already done (one note, one opportunity, one call log); a 429's `Retry-After` is the
//! job's delay; a receiver that keeps failing is retried until the queue's last receive and then
//! marked failed with its error on the call; a refusal fails at once; failed deliveries can be
//! queued again.

use app::{CrmSync, Synced};
use chrono::Utc;
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, EndReason,
    crm::{ConnectionTarget, CrmConnection, DeliveryStatus},
};
use platform::{CRM_JOBS, JobQueue, LocalQueue, SecretBox};
use providers::crm::{CrmSetup, OutboundPolicy};
use serde_json::{Value, json};
use std::time::Duration;
use store::Store;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

/// A running campaign delivering to `targets` (each sealed with `secret`) and one claimed call of it.
async fn campaign_with_a_call<S: Store>(
    store: &S,
    secrets: &SecretBox,
    secret: &str,
    targets: Vec<ConnectionTarget>,
) -> (domain::CrmJob, domain::Call, Vec<domain::ConnectionId>) {
    let org = store.create_org("Acme").await.unwrap().id;
    let mut ids = Vec::new();
    for target in targets {
        let connection = CrmConnection { id: domain::ConnectionId::new(), org_id: org, name: "crm".into(), target, created_at: Utc::now() };
        store.create_crm_connection(connection.clone(), secrets.seal(secret, &connection.id.to_string())).await.unwrap();
        ids.push(connection.id);
    }
    let settings = domain::CampaignSettings { crm: Some(domain::CrmTarget { connection_ids: ids.clone() }), ..Default::default() };
    let campaign =
        store.create_campaign(org, domain::NewCampaign::parse("Renewals", domain::Cap::DEFAULT, settings).unwrap()).await.unwrap();
    let mut contact = domain::NewContact::new(
        domain::E164::parse("+14155550100", None).unwrap(),
        chrono_tz::America::New_York,
        domain::Consent::on_file(chrono::Utc::now()),
    );
    contact.name = Some("Ada Lovelace".into());
    contact.variables.insert("email".into(), "ada@example.com".into());
    store.add_contacts(org, campaign.id, vec![contact], Utc::now()).await.unwrap();
    store
        .set_campaign_status(org, campaign.id, &[domain::CampaignStatus::Draft], domain::CampaignStatus::Running, Utc::now())
        .await
        .unwrap();
    let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let call = store.claim_due_contacts(org, campaign.id, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    let job = domain::CrmJob { org_id: org, campaign_id: campaign.id, call_id: call.id, retry_failed: false };
    (job, call, ids)
}

/// The call answered by a person, 83 s, recorded, summarised and evaluated a success.
async fn finish_successfully<S: Store>(store: &S, job: &domain::CrmJob) -> domain::Call {
    let details = CallDetails {
        answered_by: Some(AnsweredBy::Human),
        duration_secs: Some(83),
        recording_url: Some("https://recordings.example.com/c1.mp3".into()),
        transcript: Some("agent: Hi Ada.\nuser: Yes, renew it.".into()),
        summary: Some("Ada renews for a year.".into()),
        success_evaluation: Some("true".into()),
        ..Default::default()
    };
    let now = Utc::now();
    let events = [
        CallEventKind::Answered,
        CallEventKind::Details { details: Box::new(details) },
        CallEventKind::Ended { reason: EndReason::Completed },
    ];
    for (i, kind) in events.into_iter().enumerate() {
        let event = CallEvent { dedupe_key: format!("e{i}"), occurred_at: now, kind };
        store.apply_call_event(job.org_id, job.call_id, event, now).await.unwrap();
    }
    store.get_call(job.org_id, job.call_id).await.unwrap()
}

fn sync<S>(store: S, secrets: SecretBox, setup: CrmSetup, max_receives: u32) -> CrmSync<S> {
    CrmSync { store, secrets: Some(secrets), setup, max_receives }
}

fn local_setup() -> CrmSetup {
    CrmSetup { outbound: OutboundPolicy { allow_private: true }, timeout: Duration::from_secs(5), ..CrmSetup::default() }
}

fn body(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

async fn delivery_resumes_and_gives_up_only_on_the_last_receive<S: Store>(store: S) {
    let receiver = MockServer::start().await;
    Mock::given(matchers::path("/ok")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    Mock::given(matchers::path("/down")).respond_with(ResponseTemplate::new(503)).mount(&receiver).await;
    Mock::given(matchers::path("/gone")).respond_with(ResponseTemplate::new(410)).mount(&receiver).await;
    let secrets = SecretBox::ephemeral();
    let targets = ["/ok", "/down", "/gone"].map(|path| ConnectionTarget::Webhook { url: format!("{}{path}", receiver.uri()) });
    let (job, call, ids) = campaign_with_a_call(&store, &secrets, "whsec_x", targets.to_vec()).await;
    let org = job.org_id;
    let sync = sync(store.clone(), secrets, local_setup(), 3);

    assert!(matches!(sync.sync(&job, 1, Utc::now()).await.unwrap(), Synced::Retry { .. }), "the 503 is worth another try");
    assert!(matches!(sync.sync(&job, 2, Utc::now()).await.unwrap(), Synced::Retry { .. }));
    let last = sync.sync(&job, 3, Utc::now()).await.unwrap();
    assert!(matches!(&last, Synced::GaveUp { reason } if reason.contains("503")), "the last receive gives up: {last:?}");
    let deliveries = store.crm_deliveries(org, call.id).await.unwrap();
    let of = |id| deliveries.iter().find(|d| d.connection_id == id).unwrap().clone();
    assert_eq!((of(ids[0]).status, of(ids[0]).attempts), (DeliveryStatus::Delivered, 1), "delivered once, never sent again");
    assert_eq!((of(ids[1]).status, of(ids[1]).attempts), (DeliveryStatus::Failed, 3));
    assert!(of(ids[1]).last_error.as_deref().is_some_and(|e| e.contains("503")), "{:?}", of(ids[1]));
    assert_eq!((of(ids[2]).status, of(ids[2]).attempts), (DeliveryStatus::Failed, 1), "a refusal fails at once");
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/ok").count(), 1);
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/down").count(), 3);
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/gone").count(), 1);

    // the receivers are fixed: the failed deliveries are queued again, and only they are sent
    receiver.reset().await;
    Mock::given(matchers::method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let queue = LocalQueue::open_in_memory(3).unwrap();
    let requeued = sync.retry_campaign(&queue, org, job.campaign_id).await.unwrap();
    assert_eq!((requeued.calls, requeued.deliveries), (1, 2));
    let jobs = queue.receive(CRM_JOBS, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(jobs.len(), 1, "one job per call");
    let retried: domain::CrmJob = serde_json::from_str(&jobs[0].body).unwrap();
    assert!(retried.retry_failed);
    assert_eq!(sync.sync(&job, 1, Utc::now()).await.unwrap(), Synced::Done);
    assert_eq!(receiver.received_requests().await.unwrap().len(), 0, "a job nobody asked to retry leaves failed deliveries alone");
    assert_eq!(sync.sync(&retried, 1, Utc::now()).await.unwrap(), Synced::Done);
    let deliveries = store.crm_deliveries(org, call.id).await.unwrap();
    assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Delivered), "{deliveries:?}");
    let paths: Vec<String> = receiver.received_requests().await.unwrap().iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(!paths.contains(&"/ok".to_string()), "what was delivered is not sent again");
    assert_eq!(sync.retry_call(&queue, org, call.id).await.unwrap(), vec![], "nothing failed any more");
}

async fn gohighlevel_resumes_after_the_step_that_failed<S: Store>(store: S) {
    let ghl = MockServer::start().await;
    let api = || {
        Mock::given(matchers::method("POST"))
            .and(matchers::header("authorization", "Bearer pit-secret"))
            .and(matchers::header("version", "2021-07-28"))
    };
    api()
        .and(matchers::path("/contacts/upsert"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"new": true, "contact": {"id": "ghl_c1"}, "traceId": "t"})))
        .mount(&ghl)
        .await;
    api()
        .and(matchers::path("/contacts/ghl_c1/notes"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"note": {"id": "note_1", "body": "…"}})))
        .mount(&ghl)
        .await;
    no_notes_yet(&ghl).await;
    // the tags fail for the whole first receive (its first try and both quick retries)
    api()
        .and(matchers::path("/contacts/ghl_c1/tags"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Internal server error"})))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&ghl)
        .await;
    api()
        .and(matchers::path("/contacts/ghl_c1/tags"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"tags": ["outdial:answered", "outdial:success"]})))
        .with_priority(2)
        .mount(&ghl)
        .await;
    api()
        .and(matchers::path("/opportunities/upsert"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"new": true, "opportunity": {"id": "opp_1"}})))
        .mount(&ghl)
        .await;
    let secrets = SecretBox::ephemeral();
    let target =
        ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: Some("pipe_1".into()), stage_id: Some("stage_1".into()) };
    let (job, call, ids) = campaign_with_a_call(&store, &secrets, "pit-secret", vec![target]).await;
    finish_successfully(&store, &job).await;
    let sync = sync(store.clone(), secrets, CrmSetup { gohighlevel_base: ghl.uri(), ..local_setup() }, 5);

    let first = sync.sync(&job, 1, Utc::now()).await.unwrap();
    assert!(matches!(&first, Synced::Retry { reason, .. } if reason.contains("adding tags") && reason.contains("500")), "{first:?}");
    let pending = store.crm_deliveries(job.org_id, call.id).await.unwrap().remove(0);
    assert_eq!(pending.status, DeliveryStatus::Pending);
    assert_eq!((pending.steps.contact_id.as_deref(), pending.steps.note_id.as_deref()), (Some("ghl_c1"), Some("note_1")));
    assert_eq!(sync.sync(&job, 2, Utc::now()).await.unwrap(), Synced::Done);
    // SQS delivers at least once: the same job again sends nothing
    assert_eq!(sync.sync(&job, 1, Utc::now()).await.unwrap(), Synced::Done);

    let delivered = store.crm_deliveries(job.org_id, call.id).await.unwrap().remove(0);
    assert_eq!((delivered.connection_id, delivered.status, delivered.attempts), (ids[0], DeliveryStatus::Delivered, 2));
    assert_eq!(delivered.steps.opportunity_id.as_deref(), Some("opp_1"));
    let requests = ghl.received_requests().await.unwrap();
    let to = |path: &str| requests.iter().filter(|r| r.method.as_str() == "POST" && r.url.path() == path).collect::<Vec<_>>();
    assert_eq!(to("/contacts/upsert").len(), 1, "the contact is upserted once");
    assert_eq!(to("/contacts/ghl_c1/notes").len(), 1, "one note, however often the job ran");
    assert_eq!(to("/contacts/ghl_c1/tags").len(), 4, "three failures, then the tags");
    assert_eq!(to("/opportunities/upsert").len(), 1, "one opportunity");

    let upsert = body(to("/contacts/upsert")[0]);
    assert_eq!(
        upsert,
        json!({"locationId": "loc_1", "phone": "+14155550100", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com",
            "timezone": "America/New_York", "source": "outdial"}),
        "no dnd for a callee who did not opt out"
    );
    let note = body(to("/contacts/ghl_c1/notes")[0])["body"].as_str().unwrap().to_string();
    for part in
        ["answered", "Summary: Ada renews for a year.", "Duration: 1m 23s", "Recording: https://recordings.example.com", "user: Yes"]
    {
        assert!(note.contains(part), "{part:?} in {note}");
    }
    assert_eq!(body(to("/contacts/ghl_c1/tags")[3]), json!({"tags": ["outdial:answered", "outdial:success"]}));
    let opportunity = body(to("/opportunities/upsert")[0]);
    assert_eq!(
        opportunity,
        json!({"pipelineId": "pipe_1", "locationId": "loc_1", "name": "Ada Lovelace (Renewals)", "pipelineStageId": "stage_1",
            "status": "open", "contactId": "ghl_c1"})
    );
}

async fn hubspot_logs_the_call_once_and_waits_as_long_as_a_429_asks<S: Store>(store: S) {
    let hubspot = MockServer::start().await;
    let api = || Mock::given(matchers::method("POST")).and(matchers::header("authorization", "Bearer pat-na1-secret"));
    api()
        .and(matchers::path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .mount(&hubspot)
        .await;
    api()
        .and(matchers::path("/crm/v3/objects/contacts"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "101", "properties": {}})))
        .mount(&hubspot)
        .await;
    api()
        .and(matchers::path("/crm/v3/objects/calls/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .mount(&hubspot)
        .await;
    api()
        .and(matchers::path("/crm/v3/objects/calls"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "120").set_body_json(json!({"status": "error"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hubspot)
        .await;
    api()
        .and(matchers::path("/crm/v3/objects/calls"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "9001"})))
        .with_priority(2)
        .mount(&hubspot)
        .await;
    let secrets = SecretBox::ephemeral();
    let (job, call, _) = campaign_with_a_call(&store, &secrets, "pat-na1-secret", vec![ConnectionTarget::Hubspot {}]).await;
    let finished = finish_successfully(&store, &job).await;
    let sync = sync(store.clone(), secrets, CrmSetup { hubspot_base: hubspot.uri(), ..local_setup() }, 5);

    let first = sync.sync(&job, 1, Utc::now()).await.unwrap();
    assert!(
        matches!(first, Synced::Retry { delay, .. } if delay == Duration::from_secs(120)),
        "the job waits what HubSpot asked: {first:?}"
    );
    assert_eq!(sync.sync(&job, 2, Utc::now()).await.unwrap(), Synced::Done);
    assert_eq!(sync.sync(&job, 3, Utc::now()).await.unwrap(), Synced::Done);
    let delivered = store.crm_deliveries(job.org_id, call.id).await.unwrap().remove(0);
    assert_eq!((delivered.status, delivered.steps.call_log_id.as_deref()), (DeliveryStatus::Delivered, Some("9001")));

    let requests = hubspot.received_requests().await.unwrap();
    let to = |path: &str| requests.iter().filter(|r| r.url.path() == path).collect::<Vec<_>>();
    assert_eq!((to("/crm/v3/objects/contacts/search").len(), to("/crm/v3/objects/contacts").len()), (1, 1), "found or made once");
    assert_eq!(to("/crm/v3/objects/calls").len(), 2, "the 429, then the one call log");
    assert_eq!(
        body(to("/crm/v3/objects/contacts/search")[0])["filterGroups"],
        json!([{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+14155550100"}]}])
    );
    assert_eq!(
        body(to("/crm/v3/objects/contacts")[0]),
        json!({"properties": {"phone": "+14155550100", "firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com"}})
    );
    let logged = body(to("/crm/v3/objects/calls")[1]);
    let p = &logged["properties"];
    assert_eq!((p["hs_call_direction"].as_str(), p["hs_call_status"].as_str()), (Some("OUTBOUND"), Some("COMPLETED")));
    assert_eq!((p["hs_call_duration"].as_u64(), p["hs_call_to_number"].as_str()), (Some(83_000), Some("+14155550100")));
    assert_eq!(p["hs_call_recording_url"], "https://recordings.example.com/c1.mp3");
    assert_eq!(p["hs_call_from_number"].as_str(), finished.caller_id.as_ref().map(|c| c.as_str()));
    assert!(p["hs_call_body"].as_str().is_some_and(|b| b.contains("Ada renews for a year.") && b.contains("agent: Hi Ada.")), "{p}");
    assert!(chrono::DateTime::parse_from_rfc3339(p["hs_timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        logged["associations"],
        json!([{"to": {"id": "101"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}])
    );
}

/// A worker that dies mid-delivery (Lambda timeout, a killed process) leaves the steps it finished
/// recorded: once its lease has run out, the next receive starts after them.
async fn a_delivery_cut_short_resumes_after_its_last_recorded_step<S: Store>(store: S) {
    let ghl = MockServer::start().await;
    Mock::given(matchers::path("/contacts/upsert"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contact": {"id": "ghl_c1"}})))
        .mount(&ghl)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/contacts/ghl_c1/notes"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"note": {"id": "note_1"}})))
        .mount(&ghl)
        .await;
    no_notes_yet(&ghl).await;
    Mock::given(matchers::path("/contacts/ghl_c1/tags"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"tags": []})).set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&ghl)
        .await;
    Mock::given(matchers::path("/contacts/ghl_c1/tags")).respond_with(ResponseTemplate::new(201)).with_priority(2).mount(&ghl).await;
    let secrets = SecretBox::ephemeral();
    let target = ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: None, stage_id: None };
    let (job, call, _) = campaign_with_a_call(&store, &secrets, "pit-secret", vec![target]).await;
    finish_successfully(&store, &job).await;
    let sync = sync(store.clone(), secrets, CrmSetup { gohighlevel_base: ghl.uri(), timeout: Duration::from_secs(60), ..local_setup() }, 5);

    let worker = tokio::spawn({
        let (sync, job) = (sync.clone(), job);
        async move { sync.sync(&job, 1, Utc::now()).await }
    });
    let mut waited = 0;
    while !ghl.received_requests().await.unwrap().iter().any(|r| r.url.path().ends_with("/tags")) {
        assert!(waited < 200, "the worker never reached the tags");
        tokio::time::sleep(Duration::from_millis(25)).await;
        waited += 1;
    }
    worker.abort();
    let cut = store.crm_deliveries(job.org_id, call.id).await.unwrap().remove(0);
    assert_eq!((cut.status, cut.steps.note_id.as_deref()), (DeliveryStatus::Pending, Some("note_1")), "the note is on record");
    let soon = sync.sync(&job, 2, Utc::now()).await.unwrap();
    assert!(matches!(soon, Synced::Retry { .. }), "the dead worker's lease still runs: {soon:?}");
    let after = Utc::now() + CrmSync::<S>::LEASE + chrono::TimeDelta::seconds(1);
    assert_eq!(sync.sync(&job, 3, after).await.unwrap(), Synced::Done, "then another worker takes over");
    let requests = ghl.received_requests().await.unwrap();
    let count = |suffix: &str| requests.iter().filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(suffix)).count();
    assert_eq!((count("/contacts/upsert"), count("/notes"), count("/tags")), (1, 1, 2), "one contact, one note; the tags again");
}

/// The same job handled by six workers at once (SQS delivering it twice, a retry racing the
/// first try): one contact, one note, one set of tags, one opportunity; the others come back later.
async fn concurrent_workers_deliver_a_call_once<S: Store>(store: S) {
    let ghl = MockServer::start().await;
    let answer = |body: Value| ResponseTemplate::new(201).set_body_json(body).set_delay(Duration::from_millis(100));
    Mock::given(matchers::path("/contacts/upsert")).respond_with(answer(json!({"contact": {"id": "ghl_c1"}}))).mount(&ghl).await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/contacts/ghl_c1/notes"))
        .respond_with(answer(json!({"note": {"id": "n1"}})))
        .mount(&ghl)
        .await;
    no_notes_yet(&ghl).await;
    Mock::given(matchers::path("/contacts/ghl_c1/tags")).respond_with(answer(json!({"tags": []}))).mount(&ghl).await;
    Mock::given(matchers::path("/opportunities/upsert")).respond_with(answer(json!({"opportunity": {"id": "o1"}}))).mount(&ghl).await;
    let secrets = SecretBox::ephemeral();
    let target = ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: Some("p".into()), stage_id: Some("s".into()) };
    let (job, call, _) = campaign_with_a_call(&store, &secrets, "pit-secret", vec![target]).await;
    finish_successfully(&store, &job).await;
    let sync = sync(store.clone(), secrets, CrmSetup { gohighlevel_base: ghl.uri(), ..local_setup() }, 5);

    let now = Utc::now();
    let outcomes = futures::future::join_all((0..6).map(|_| sync.sync(&job, 1, now))).await;
    let done = outcomes.iter().filter(|o| matches!(o, Ok(Synced::Done))).count();
    let waiting = outcomes.iter().filter(|o| matches!(o, Ok(Synced::Retry { reason, .. }) if reason.contains("another worker"))).count();
    assert_eq!((done, waiting), (1, 5), "{outcomes:?}");
    let requests = ghl.received_requests().await.unwrap();
    let count = |suffix: &str| requests.iter().filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(suffix)).count();
    assert_eq!((count("/contacts/upsert"), count("/notes"), count("/tags"), count("/opportunities/upsert")), (1, 1, 1, 1));
    // the ones sent back return after the lease: delivered, nothing to send
    let after = now + CrmSync::<S>::LEASE + chrono::TimeDelta::seconds(1);
    assert_eq!(sync.sync(&job, 2, after).await.unwrap(), Synced::Done);
    assert_eq!(ghl.received_requests().await.unwrap().len(), 5, "the four steps and the look for an earlier note");
    let delivered = store.crm_deliveries(job.org_id, call.id).await.unwrap().remove(0);
    assert_eq!((delivered.status, delivered.attempts, delivered.leased_until), (DeliveryStatus::Delivered, 1, None));
}

/// GoHighLevel's notes of the contact, before any was added.
async fn no_notes_yet(ghl: &MockServer) {
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/contacts/ghl_c1/notes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"notes": []})))
        .mount(ghl)
        .await;
}

/// A CRM's store of created records (GoHighLevel's notes of a contact, HubSpot's call logs) that
/// applies each create and, for the first, answers only after the client stopped waiting.
#[derive(Clone, Default)]
struct SlowCreates {
    made: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl SlowCreates {
    /// Longer than the sync's request timeout in `a_write_applied_before_its_answer_was_lost_is_made_once`.
    const LATE: Duration = Duration::from_millis(900);

    fn create(&self, record: Value, answer: impl Fn(&Value) -> Value) -> ResponseTemplate {
        let mut made = self.made.lock().unwrap();
        let mut record = record;
        record["id"] = json!((made.len() + 1).to_string());
        let reply = ResponseTemplate::new(201).set_body_json(answer(&record));
        made.push(record);
        if made.len() == 1 { reply.set_delay(Self::LATE) } else { reply }
    }

    fn count(&self) -> usize {
        self.made.lock().unwrap().len()
    }
}

/// `GET|POST /contacts/{id}/notes` as GoHighLevel answers them.
struct GhlNotes(SlowCreates);

impl wiremock::Respond for GhlNotes {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        if request.method.as_str() == "GET" {
            return ResponseTemplate::new(200).set_body_json(json!({"notes": *self.0.made.lock().unwrap()}));
        }
        self.0.create(json!({"body": body(request)["body"]}), |note| json!({"note": note}))
    }
}

/// `POST /crm/v3/objects/calls` and `…/calls/search` (by `associations.contact` and
/// `hs_timestamp` in ms, `EQ`) as HubSpot answers them.
struct HubSpotCalls(SlowCreates);

impl wiremock::Respond for HubSpotCalls {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let request = body(request);
        if !request["filterGroups"].is_array() {
            let contact = request["associations"][0]["to"]["id"].clone();
            return self.0.create(
                json!({"properties": request["properties"], "contact": contact}),
                |call| json!({"id": call["id"], "properties": call["properties"]}),
            );
        }
        let wanted = |name: &str| {
            request["filterGroups"][0]["filters"].as_array().unwrap().iter().find(|f| f["propertyName"] == name).unwrap()["value"].clone()
        };
        let made = self.0.made.lock().unwrap();
        let results: Vec<Value> = made
            .iter()
            .filter(|c| c["contact"] == wanted("associations.contact"))
            .filter(|c| {
                let at = chrono::DateTime::parse_from_rfc3339(c["properties"]["hs_timestamp"].as_str().unwrap()).unwrap();
                json!(at.timestamp_millis().to_string()) == wanted("hs_timestamp")
            })
            .map(|c| json!({"id": c["id"], "properties": {"hs_call_body": c["properties"]["hs_call_body"]}}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"total": results.len(), "results": results}))
    }
}

/// The CRM applies the note and the call log but its answer comes after the timeout: neither is
/// sent again by a quick retry, and the job's next receive finds and adopts each.
async fn a_write_applied_before_its_answer_was_lost_is_made_once<S: Store>(store: S) {
    let crm = MockServer::start().await;
    Mock::given(matchers::path("/contacts/upsert"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contact": {"id": "ghl_c1"}})))
        .mount(&crm)
        .await;
    let (notes, calls) = (SlowCreates::default(), SlowCreates::default());
    Mock::given(matchers::path("/contacts/ghl_c1/notes")).respond_with(GhlNotes(notes.clone())).mount(&crm).await;
    Mock::given(matchers::path("/contacts/ghl_c1/tags")).respond_with(ResponseTemplate::new(201)).mount(&crm).await;
    Mock::given(matchers::path("/crm/v3/objects/contacts/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 1, "results": [{"id": "101"}]})))
        .mount(&crm)
        .await;
    Mock::given(matchers::path_regex("^/crm/v3/objects/calls(/search)?$")).respond_with(HubSpotCalls(calls.clone())).mount(&crm).await;
    let secrets = SecretBox::ephemeral();
    let ghl = ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: None, stage_id: None };
    let (job, call, ids) = campaign_with_a_call(&store, &secrets, "token", vec![ghl, ConnectionTarget::Hubspot {}]).await;
    finish_successfully(&store, &job).await;
    let setup = CrmSetup { gohighlevel_base: crm.uri(), hubspot_base: crm.uri(), timeout: Duration::from_millis(300), ..local_setup() };
    let sync = sync(store.clone(), secrets, setup, 5);

    let first = sync.sync(&job, 1, Utc::now()).await.unwrap();
    assert!(matches!(&first, Synced::Retry { reason, .. } if reason.contains("timed out")), "{first:?}");
    assert_eq!((notes.count(), calls.count()), (1, 1), "both were made, though neither answer came back in time");
    assert_eq!(sync.sync(&job, 2, Utc::now()).await.unwrap(), Synced::Done);
    assert_eq!((notes.count(), calls.count()), (1, 1), "one note and one call log");
    let deliveries = store.crm_deliveries(job.org_id, call.id).await.unwrap();
    let of = |id| deliveries.iter().find(|d| d.connection_id == id).unwrap().clone();
    assert_eq!((of(ids[0]).status, of(ids[0]).steps.note_id.as_deref()), (DeliveryStatus::Delivered, Some("1")));
    assert_eq!((of(ids[1]).status, of(ids[1]).steps.call_log_id.as_deref()), (DeliveryStatus::Delivered, Some("1")));
    let requests = crm.received_requests().await.unwrap();
    let creates = |path: &str| requests.iter().filter(|r| r.method.as_str() == "POST" && r.url.path() == path).count();
    assert_eq!((creates("/contacts/ghl_c1/notes"), creates("/crm/v3/objects/calls")), (1, 1), "no create was sent twice");
}

store::on_both_stores!("crm-sync-";
    a_write_applied_before_its_answer_was_lost_is_made_once,
    concurrent_workers_deliver_a_call_once,
    a_delivery_cut_short_resumes_after_its_last_recorded_step,
    delivery_resumes_and_gives_up_only_on_the_last_receive,
    gohighlevel_resumes_after_the_step_that_failed,
    hubspot_logs_the_call_once_and_waits_as_long_as_a_429_asks
);

/// Every field of a real webhook delivery, at every depth, as the README documents it (and no
/// field the README shows that a delivery lacks); free-form maps are compared by their place only.
#[tokio::test]
async fn the_readme_documents_the_webhook_body_as_delivered() {
    fn paths(value: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
        if let Value::Object(fields) = value {
            for (key, inner) in fields {
                let path = format!("{at}.{key}");
                out.insert(path.clone());
                if !matches!(key.as_str(), "variables" | "structuredData") {
                    paths(inner, &path, out);
                }
            }
        }
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let block = readme.split("<!-- webhook-body").nth(1).and_then(|rest| rest.split("```json").nth(1)).unwrap();
    let documented: Value = serde_json::from_str(block.split("```").next().unwrap()).expect("the README's example is JSON");

    let receiver = MockServer::start().await;
    Mock::given(matchers::method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let store = store::SqliteStore::open_in_memory().unwrap();
    let secrets = SecretBox::ephemeral();
    let target = ConnectionTarget::Webhook { url: format!("{}/in", receiver.uri()) };
    let (job, _, _) = campaign_with_a_call(&store, &secrets, "whsec_x", vec![target]).await;
    finish_successfully(&store, &job).await;
    sync(store, secrets, local_setup(), 5).sync(&job, 1, Utc::now()).await.unwrap();
    let delivered = body(&receiver.received_requests().await.unwrap()[0]);

    let (mut want, mut got) = (Default::default(), Default::default());
    paths(&documented, "", &mut want);
    paths(&delivered, "", &mut got);
    assert_eq!(want, got, "README fields vs a delivery's: {delivered:#}");
}
