//! Dial jobs per second through the local queue with the simulator: 2,000 queued calls (40
//! campaigns at cap 50), drained by 2 local dial workers (10 jobs at a time each), pacing off, the
//! dial-time checks on every job, the simulator reporting its callbacks to a local HTTP sink that
//! answers 204.
//!
//!     cargo bench -p dialer --bench dial

use chrono::Utc;
use dialer::DialerState;
use domain::{CampaignSettings, CampaignStatus, Cap, DialJob, E164, NewCampaign, NewContact};
use platform::{DIAL_JOBS, JobQueue, LocalQueue};
use std::time::{Duration, Instant};
use store::{CallStore, CampaignStore, OrgStore, PageRequest, SqliteStore};

const CAMPAIGNS: u64 = 40;
const RUNS: usize = 5;

async fn callback_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn run_once(sink: &str) -> (usize, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(&path).unwrap();
    let queue = LocalQueue::open(&path, 5).unwrap();
    let org = store.create_org("bench").await.unwrap().id;
    let window = domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap();
    let now = Utc::now();
    // inside the federal calling hours, whatever the hour of the run
    let zone = platform::testing::midday_zone(now);
    let mut jobs = 0;
    for c in 0..CAMPAIGNS {
        let settings = CampaignSettings {
            provider: domain::CallProvider::Simulator,
            caller_ids: vec![E164::parse("+14155550100", None).unwrap(), E164::parse("+14155550101", None).unwrap()],
            calling_window: window.clone(),
            ..Default::default()
        };
        let campaign = store.create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
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
            let job = DialJob { org_id: org, campaign_id: campaign.id, call_id: claim.call.id };
            queue.send(DIAL_JOBS, serde_json::to_string(&job).unwrap()).await.unwrap();
            jobs += 1;
        }
    }
    let config = platform::testing::config(&[("OUTDIAL_PUBLIC_URL", sink), ("SIMULATOR_CALLS_PER_SECOND", "0")]);
    let dialer = DialerState::from_config(&config, store.clone(), queue);
    let started = Instant::now();
    let workers = (0..2).map(|_| {
        let dialer = dialer.clone();
        async move { while dialer.run_local_batch(10, Duration::from_secs(60)).await.unwrap() > 0 {} }
    });
    futures::future::join_all(workers).await;
    let elapsed = started.elapsed();
    let mut placed = 0;
    for campaign in store.list_campaigns(org, PageRequest::first(100)).await.unwrap().items {
        let calls = store.list_calls(org, campaign.id, store::CallFilter::default(), PageRequest::first(100)).await.unwrap().items;
        placed += calls.iter().filter(|c| c.provider_call_id.is_some()).count();
    }
    assert_eq!(placed, jobs, "every queued call was placed");
    (jobs, elapsed)
}

#[tokio::main]
async fn main() {
    let sink = callback_sink().await;
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let (jobs, elapsed) = run_once(&sink).await;
        rates.push(jobs as f64 / elapsed.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("| dial jobs | workers | median jobs/s | min | max |");
    println!("|---:|---:|---:|---:|---:|");
    println!("| {} | 2 × 10 | {:.0} | {:.0} | {:.0} |", CAMPAIGNS * 50, rates[RUNS / 2], rates[0], rates[RUNS - 1]);
}
