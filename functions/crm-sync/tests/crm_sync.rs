//! The crm-sync function as Lambda runs it: an SQS batch (events/crm/sqs-batch.json) with a job
//! and a malformed message; only the malformed one is reported as a batch item failure, and the
//! job's call is delivered to its webhook connection, signed.

use chrono::Utc;
use crm_sync::CrmSyncState;
use domain::crm::{ConnectionTarget, CrmConnection, DeliveryStatus};
use platform::{JobQueue, LocalQueue, testing::load_event};
use store::Store;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

/// A running campaign delivering to one webhook connection at `receiver`, and one claimed call.
struct Delivering {
    org: domain::OrgId,
    key: platform::SecretBox,
    connection: CrmConnection,
    campaign: domain::Campaign,
    call: domain::Call,
}

async fn delivering<S: Store>(store: &S, receiver: &MockServer) -> Delivering {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = platform::SecretBox::ephemeral();
    let connection = CrmConnection {
        id: domain::ConnectionId::new(),
        org_id: org,
        name: "Ops".into(),
        target: ConnectionTarget::Webhook { url: format!("{}/in", receiver.uri()) },
        created_at: Utc::now(),
    };
    store.create_crm_connection(connection.clone(), key.seal("whsec_test", &connection.id.to_string())).await.unwrap();
    let settings = domain::CampaignSettings { crm: Some(domain::CrmTarget { connection_ids: vec![connection.id] }), ..Default::default() };
    let campaign = store.create_campaign(org, domain::NewCampaign::parse("crm", domain::Cap::DEFAULT, settings).unwrap()).await.unwrap();
    let contact = domain::NewContact::new(
        domain::E164::parse("+14155550100", None).unwrap(),
        chrono_tz::UTC,
        domain::Consent::on_file(chrono::Utc::now()),
    );
    store.add_contacts(org, campaign.id, vec![contact], Utc::now()).await.unwrap();
    store
        .set_campaign_status(org, campaign.id, &[domain::CampaignStatus::Draft], domain::CampaignStatus::Running, Utc::now())
        .await
        .unwrap();
    let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let call = store.claim_due_contacts(org, campaign.id, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    Delivering { org, key, connection, campaign, call }
}

async fn an_sqs_batch_delivers_its_jobs_and_reports_only_the_malformed_one<S: Store>(store: S) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).expect(1).mount(&receiver).await;
    let Delivering { org, key, connection, campaign, call } = delivering(&store, &receiver).await;

    let mut config = platform::testing::config(&[("OUTDIAL_CRM_ALLOW_PRIVATE", "true")]);
    config.secrets = Some(key);
    let state = CrmSyncState::from_config(&config, store.clone(), LocalQueue::open_in_memory(5).unwrap());
    let (org_s, campaign_s, call_s) = (org.to_string(), campaign.id.to_string(), call.id.to_string());
    let event = load_event(
        "crm/sqs-batch.json",
        &[
            ("01970000-0000-7000-8000-0000000000a9", &org_s),
            ("01970000-0000-7000-8000-0000000ca111", &campaign_s),
            ("01970000-0000-7000-8000-0000000ca11a", &call_s),
        ],
    );
    let response = state.handle_sqs_batch(serde_json::from_str(&event).unwrap()).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["2e1424d4-f796-459a-8184-9c92662be6da"], "only the malformed message goes back");
    let deliveries = store.crm_deliveries(org, call.id).await.unwrap();
    assert_eq!((deliveries.len(), deliveries[0].status), (1, DeliveryStatus::Delivered));
    let sent = &receiver.received_requests().await.unwrap()[0];
    assert_eq!(sent.headers["idempotency-key"].to_str().unwrap(), format!("{}:{}", call.id, connection.id));
    // the same job again (SQS delivers at least once): nothing is sent twice
    let again = state.handle_sqs_batch(serde_json::from_str(&event).unwrap()).await;
    assert_eq!(again.batch_item_failures.len(), 1);
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
}

/// A receiver that keeps rate-limiting: the job comes back each time (after the `Retry-After` it
/// asked for, here none) until the queue's last receive marks the delivery failed, then the job
/// lies in the dead-letter queue and `GET /calls/{id}` shows the error.
async fn a_delivery_that_keeps_failing_ends_in_the_dead_letters_and_on_the_call<S: Store>(store: S) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0")).mount(&receiver).await;
    let Delivering { org, key, campaign, call, .. } = delivering(&store, &receiver).await;

    let mut config = platform::testing::config(&[("OUTDIAL_CRM_ALLOW_PRIVATE", "true"), ("CRM_JOBS_MAX_RECEIVES", "3")]);
    config.secrets = Some(key);
    let queue = LocalQueue::open_in_memory(3).unwrap();
    let state = CrmSyncState::from_config(&config, store.clone(), queue.clone());
    let job = domain::CrmJob { org_id: org, campaign_id: campaign.id, call_id: call.id, retry_failed: false };
    queue.send(platform::CRM_JOBS, serde_json::to_string(&job).unwrap()).await.unwrap();
    let mut received = 0;
    while state.run_local_batch(10).await.unwrap() > 0 {
        received += 1;
        assert!(received <= 3, "received more often than the queue's limit");
    }
    assert_eq!(received, 3);
    let dead = queue.dead_letters(platform::CRM_JOBS, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the job is in the dead letters");
    assert_eq!(serde_json::from_str::<domain::CrmJob>(&dead[0].body).unwrap(), job);
    let delivery = store.crm_deliveries(org, call.id).await.unwrap().remove(0);
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Failed, 3));
    assert!(delivery.last_error.as_deref().is_some_and(|e| e.contains("429")), "{delivery:?}");
    assert_eq!(receiver.received_requests().await.unwrap().len(), 3, "one POST per receive");
}

store::on_both_stores!("crm-sync-fn-";
    an_sqs_batch_delivers_its_jobs_and_reports_only_the_malformed_one,
    a_delivery_that_keeps_failing_ends_in_the_dead_letters_and_on_the_call
);
