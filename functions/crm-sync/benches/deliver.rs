//! CRM deliveries per second through the local crm-sync worker (as `outdial serve` runs it: one
//! worker, 10 jobs a batch) against local receivers on loopback: 1,000 finished calls (20
//! campaigns at cap 50) each delivered to a signed webhook (one POST), then the same to a fake
//! GoHighLevel (contact upsert, note, tags, opportunity: four requests). Every step is recorded
//! in the SQLite store as it succeeds, as in production.
//!
//!     cargo bench -p crm-sync --bench deliver

use chrono::Utc;
use crm_sync::CrmSyncState;
use domain::{
    CallDetails, CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, CrmJob, CrmTarget, E164, EndReason, NewCampaign,
    NewContact,
    crm::{ConnectionTarget, CrmConnection, DeliveryStatus},
};
use platform::{CRM_JOBS, JobQueue, LocalQueue, SecretBox};
use std::time::{Duration, Instant};
use store::{CallStore, CampaignStore, CrmStore, OrgStore, SqliteStore};

const CAMPAIGNS: u64 = 20;
const RUNS: usize = 5;

/// A receiver that answers every request as a CRM would: 200 with the ids a step reads.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = serde_json::json!({"contact": {"id": "c1"}, "note": {"id": "n1"}, "opportunity": {"id": "o1"}});
    let app = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move { axum::Json(answer) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn run_once(target: &ConnectionTarget, setup: &providers::crm::CrmSetup) -> (usize, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(&path).unwrap();
    let queue = LocalQueue::open(&path, 5).unwrap();
    let secrets = SecretBox::ephemeral();
    let org = store.create_org("bench").await.unwrap().id;
    let connection = CrmConnection {
        id: domain::ConnectionId::new(),
        org_id: org,
        name: "bench".into(),
        target: target.clone(),
        created_at: Utc::now(),
    };
    store.create_crm_connection(connection.clone(), secrets.seal("whsec_bench", &connection.id.to_string())).await.unwrap();
    let now = Utc::now();
    let mut calls = Vec::new();
    for c in 0..CAMPAIGNS {
        let settings = CampaignSettings {
            calling_window: domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap(),
            crm: Some(CrmTarget { connection_ids: vec![connection.id] }),
            ..Default::default()
        };
        let campaign = store.create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
        let zone = platform::testing::midday_zone(now);
        let contacts = (0..50)
            .map(|i| {
                NewContact::new(
                    E164::parse(&format!("+1415{:03}{:04}", 300 + c, i), None).unwrap(),
                    zone,
                    domain::Consent::on_file(chrono::Utc::now()),
                )
            })
            .collect();
        store.add_contacts(org, campaign.id, contacts, now).await.unwrap();
        store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, now).await.unwrap();
        for claim in store.claim_due_contacts(org, campaign.id, now, 50, chrono::TimeDelta::zero()).await.unwrap() {
            let details = CallDetails {
                answered_by: Some(domain::AnsweredBy::Human),
                duration_secs: Some(83),
                summary: Some("Renews for a year.".into()),
                transcript: Some("agent: Hello.\nuser: Yes, renew it.".into()),
                success_evaluation: Some("true".into()),
                ..Default::default()
            };
            for (i, kind) in [CallEventKind::Details { details: Box::new(details) }, CallEventKind::Ended { reason: EndReason::Completed }]
                .into_iter()
                .enumerate()
            {
                let event = CallEvent { dedupe_key: format!("e{i}"), occurred_at: now, kind };
                store.apply_call_event(org, claim.call.id, event, now).await.unwrap();
            }
            let job = CrmJob { org_id: org, campaign_id: campaign.id, call_id: claim.call.id, retry_failed: false };
            queue.send(CRM_JOBS, serde_json::to_string(&job).unwrap()).await.unwrap();
            calls.push(claim.call.id);
        }
    }
    let mut config = platform::testing::config(&[]);
    (config.secrets, config.crm) = (Some(secrets), setup.clone());
    let worker = CrmSyncState::from_config(&config, store.clone(), queue);
    let started = Instant::now();
    while worker.run_local_batch(10).await.unwrap() > 0 {}
    let elapsed = started.elapsed();
    for &call in &calls {
        let delivered = store.crm_deliveries(org, call).await.unwrap();
        assert_eq!(delivered[0].status, DeliveryStatus::Delivered, "every call delivered: {delivered:?}");
    }
    (calls.len(), elapsed)
}

#[tokio::main]
async fn main() {
    let url = receiver().await;
    let setup = providers::crm::CrmSetup {
        gohighlevel_base: url.clone(),
        outbound: providers::crm::OutboundPolicy { allow_private: true },
        ..Default::default()
    };
    let targets = [
        ("webhook (1 request)", ConnectionTarget::Webhook { url: format!("{url}/in") }),
        (
            "GoHighLevel (4 requests)",
            ConnectionTarget::Gohighlevel { location_id: "loc".into(), pipeline_id: Some("p".into()), stage_id: Some("s".into()) },
        ),
    ];
    println!("| target | calls | median deliveries/s | min | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, target) in targets {
        let mut rates = Vec::new();
        let mut calls = 0;
        for _ in 0..RUNS {
            let (delivered, elapsed) = run_once(&target, &setup).await;
            calls = delivered;
            rates.push(delivered as f64 / elapsed.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!("| {name} | {calls} | {:.0} | {:.0} | {:.0} |", rates[RUNS / 2], rates[0], rates[RUNS - 1]);
    }
}
