//! Tick latency against campaign size: a campaign of 1,000 / 100,000 / 1,000,000 contacts, cap 50,
//! each tick claiming 50 contacts (calls of the previous tick ended, untimed) and queueing 50 dial
//! jobs; contacts in three zones, their numbers in one US state (3 calling areas) or in four (12).
//! SQLite in a file; with DYNAMODB_ENDPOINT set, also DynamoDB requests per tick (moto).
//!
//!     cargo bench -p campaign-tick --bench tick            # SQLite
//!     ./scripts/test is not needed: set DYNAMODB_ENDPOINT (moto_server) for the request counts
//!     cargo bench -p campaign-tick --bench tick -- --requests-only   # the DynamoDB request counts alone

use app::tick::{Ticker, tick};
use chrono::{DateTime, Utc};
use domain::{CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, E164, EndReason, NewCampaign, NewContact};
use platform::{LocalQueue, LocalScheduler};
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};
use store::{SqliteStore, Store};

const RUNS: usize = 9;

fn at() -> DateTime<Utc> {
    // Friday 15 January 2027, 18:00 UTC: 10:00–13:00 in the three zones
    DateTime::parse_from_rfc3339("2027-01-15T18:00:00Z").unwrap().to_utc()
}

/// Area codes of California, New York, Florida and Texas: all open at the benchmark's hour.
const AREA_CODES: [u32; 4] = [415, 212, 305, 512];

/// Contacts `range` over three zones, their numbers from the first `states` of `AREA_CODES`.
fn contacts(range: std::ops::Range<u64>, states: usize) -> Vec<NewContact> {
    let zones = [chrono_tz::America::New_York, chrono_tz::America::Chicago, chrono_tz::America::Los_Angeles];
    range
        .map(|n| {
            // the state changes every third contact, so each zone gets every state
            let area = AREA_CODES[(n as usize / 3) % states];
            let phone = E164::parse(&format!("+1{area}{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000), None);
            NewContact::new(phone.expect("a valid number"), zones[n as usize % 3], domain::Consent::on_file(chrono::Utc::now()))
        })
        .collect()
}

/// Per tick, after setting up `n` contacts: the latency of each run and the requests `counter` saw during it.
async fn measure<S: Store>(store: S, n: u64, states: usize, counter: &AtomicU64) -> (Vec<Duration>, Vec<u64>) {
    let org = store.create_org("bench").await.unwrap().id;
    let campaign = store
        .create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), CampaignSettings::default()).unwrap())
        .await
        .unwrap();
    let mut start = 0;
    while start < n {
        let end = (start + 20_000).min(n);
        store.add_contacts(org, campaign.id, contacts(start..end, states), at()).await.unwrap();
        start = end;
    }
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, at()).await.unwrap();
    let (scheduler, _fired) = LocalScheduler::new(Duration::from_secs(3600));
    let state = Ticker::from_config(&platform::testing::config(&[]), store.clone(), scheduler, LocalQueue::open_in_memory(5).unwrap());
    let (mut times, mut requests) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        for call in store.active_calls(org, campaign.id).await.unwrap() {
            let end =
                CallEvent { dedupe_key: "end".into(), occurred_at: at(), kind: CallEventKind::Ended { reason: EndReason::Completed } };
            store.apply_call_event(org, call.id, end, at()).await.unwrap();
        }
        let (started, before) = (Instant::now(), counter.load(Ordering::Relaxed));
        let report = tick(&state, org, campaign.id, &format!("run-{run}"), at()).await.unwrap();
        times.push(started.elapsed());
        requests.push(counter.load(Ordering::Relaxed) - before);
        assert_eq!(report.claimed, 50);
    }
    (times, requests)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    println!("| store | contacts | calling areas | tick median | min | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    // request counts do not depend on the build or the machine: they may be taken alone
    let sqlite_runs: &[(u64, usize)] =
        if std::env::args().any(|a| a == "--requests-only") { &[] } else { &[(1_000, 1), (100_000, 1), (1_000_000, 1), (1_000_000, 4)] };
    for &(n, states) in sqlite_runs {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("bench.db")).unwrap();
        let (times, _) = measure(store, n, states, &AtomicU64::new(0)).await;
        let (min, max) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
        println!("| SQLite | {n} | {} | {:.2} ms | {:.2} ms | {:.2} ms |", 3 * states, ms(median(times)), ms(min), ms(max));
    }
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        println!("(DynamoDB request counts skipped: DYNAMODB_ENDPOINT is unset)");
        return;
    };
    println!("\n| store | contacts | calling areas | DynamoDB requests per tick (median, min–max) |");
    println!("|---|---:|---:|---:|");
    for (n, states) in [(1_000, 1), (10_000, 1), (10_000, 4)] {
        let table = format!("bench-tick-{n}-{}", uuid::Uuid::now_v7().simple());
        let (store, counter) = store::testing::request_counting_dynamodb_store(&endpoint, &table).await;
        let (_, mut requests) = measure(store, n, states, &counter).await;
        requests.sort();
        println!("| DynamoDB (moto) | {n} | {} | {} ({}–{}) |", 3 * states, requests[RUNS / 2], requests[0], requests[RUNS - 1]);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
