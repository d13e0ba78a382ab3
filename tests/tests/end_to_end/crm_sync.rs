//! crm-sync's delivery rules, run directly on both stores: a delivered connection is never sent
//! again, a receiver that keeps failing is retried until the queue's last receive and then marked
//! failed with its error on the call, and a refusal fails at once.

use app::{CrmSync, Synced};
use chrono::Utc;
use domain::crm::{ConnectionTarget, CrmConnection, DeliveryStatus};
use providers::crm_webhook::OutboundPolicy;
use std::time::Duration;
use store::Store;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

async fn delivery_resumes_and_gives_up_only_on_the_last_receive<S: Store>(store: S) {
    let receiver = MockServer::start().await;
    Mock::given(matchers::path("/ok")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    Mock::given(matchers::path("/down")).respond_with(ResponseTemplate::new(503)).mount(&receiver).await;
    Mock::given(matchers::path("/gone")).respond_with(ResponseTemplate::new(410)).mount(&receiver).await;
    let org = store.create_org("Acme").await.unwrap().id;
    let secrets = platform::SecretBox::ephemeral();
    let mut ids = Vec::new();
    let targets = ["/ok", "/down", "/gone"].map(|path| ConnectionTarget::Webhook { url: format!("{}{path}", receiver.uri()) });
    for target in targets.into_iter().chain([ConnectionTarget::Hubspot {}]) {
        let connection = CrmConnection { id: domain::ConnectionId::new(), org_id: org, name: "crm".into(), target, created_at: Utc::now() };
        store.create_crm_connection(connection.clone(), secrets.seal("whsec_x", &connection.id.to_string())).await.unwrap();
        ids.push(connection.id);
    }
    let settings = domain::CampaignSettings { crm: Some(domain::CrmTarget { connection_ids: ids.clone() }), ..Default::default() };
    let campaign = store.create_campaign(org, domain::NewCampaign::parse("crm", domain::Cap::DEFAULT, settings).unwrap()).await.unwrap();
    let contact = domain::NewContact::new(domain::E164::parse("+14155550100", None).unwrap(), chrono_tz::UTC);
    store.add_contacts(org, campaign.id, vec![contact], Utc::now()).await.unwrap();
    store
        .set_campaign_status(org, campaign.id, &[domain::CampaignStatus::Draft], domain::CampaignStatus::Running, Utc::now())
        .await
        .unwrap();
    let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let call = store.claim_due_contacts(org, campaign.id, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    let sync = CrmSync {
        store: store.clone(),
        secrets: Some(secrets),
        outbound: OutboundPolicy { allow_private: true },
        timeout: Duration::from_secs(5),
        max_receives: 3,
    };
    let job = domain::CrmJob { org_id: org, campaign_id: campaign.id, call_id: call.id };

    assert!(matches!(sync.sync(&job, 1, Utc::now()).await.unwrap(), Synced::Retry { .. }), "the 503 is worth another try");
    assert!(matches!(sync.sync(&job, 2, Utc::now()).await.unwrap(), Synced::Retry { .. }));
    assert_eq!(sync.sync(&job, 3, Utc::now()).await.unwrap(), Synced::Done, "the last receive gives up");
    let deliveries = store.crm_deliveries(org, call.id).await.unwrap();
    let of = |id| deliveries.iter().find(|d| d.connection_id == id).unwrap();
    assert_eq!((of(ids[0]).status, of(ids[0]).attempts), (DeliveryStatus::Delivered, 1), "delivered once, never sent again");
    assert_eq!((of(ids[1]).status, of(ids[1]).attempts), (DeliveryStatus::Failed, 3));
    assert!(of(ids[1]).last_error.as_deref().is_some_and(|e| e.contains("503")), "{:?}", of(ids[1]));
    assert_eq!((of(ids[2]).status, of(ids[2]).attempts), (DeliveryStatus::Failed, 1), "a refusal fails at once");
    assert_eq!((of(ids[3]).status, of(ids[3]).attempts), (DeliveryStatus::Failed, 1));
    assert_eq!(
        of(ids[3]).last_error.as_deref(),
        Some("delivery to hubspot is not available in this version of outdial yet"),
        "said as it is"
    );
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/ok").count(), 1);
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/down").count(), 3);
    assert_eq!(requests.iter().filter(|r| r.url.path() == "/gone").count(), 1);
}

store::on_both_stores!("crm-sync-"; delivery_resumes_and_gives_up_only_on_the_last_receive);
