//! Report latency against campaign size: campaigns of 1,000, 100,000 and 1,000,000 finished calls
//! (each call one contact, ended between 08:00 and 20:30 of one day: people with talk time and connect delays, machines,
//! no answers, busy lines) in a SQLite file. Each run requests `GET /campaigns/{id}/report` and
//! `GET /reports/daily/{date}` through the reports router, as a client would, and reads the body.
//! With DYNAMODB_ENDPOINT set (moto), it also counts the DynamoDB requests one report makes, at
//! 1,000 and 5,000 calls: moto's latencies say nothing about DynamoDB's.
//!
//! The campaigns are built through the store API (contacts imported, claimed under the cap, each
//! call's events applied); a built SQLite file is kept under the target directory and reused.
//!
//!     cargo bench -p reports --bench report

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, CampaignId, CampaignSettings, CampaignStatus, Cap, E164, EndReason, Money,
    NewCampaign, NewContact, RetryPolicy,
};
use http_body_util::BodyExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use store::{SqliteStore, Store};
use tower::ServiceExt;

/// The day the calls end on (a Monday).
const DAY: &str = "2026-11-02";
const RUNS: usize = 5;
const REQUESTS_PER_RUN: usize = 100;

fn day_start() -> DateTime<Utc> {
    NaiveDate::parse_from_str(DAY, "%Y-%m-%d").unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// How call `n` goes: mostly people (talk time and connect delay varying), some machines, the rest
/// unanswered or busy.
fn events_of(n: u64, ended_at: DateTime<Utc>) -> Vec<CallEventKind> {
    let answered = ended_at - TimeDelta::seconds(30 + (n % 240) as i64);
    let details = |by: AnsweredBy, secs: u32| CallDetails {
        answered_by: Some(by),
        answered_at: Some(answered),
        connected_at: (by == AnsweredBy::Human).then(|| answered + TimeDelta::milliseconds(400 + (n % 23) as i64 * 100)),
        duration_secs: Some(secs),
        cost: Some(Money::parse(if by == AnsweredBy::Human { "0.1200" } else { "0.0300" }).unwrap()),
        summary: Some("Agreed to renew, asked for the paperwork by email.".into()),
        ..Default::default()
    };
    let ended = |reason| CallEventKind::Ended { reason };
    match n % 10 {
        0..=5 => vec![
            CallEventKind::Details { details: Box::new(details(AnsweredBy::Human, 30 + (n % 240) as u32)) },
            ended(EndReason::Completed),
        ],
        6 => vec![CallEventKind::Details { details: Box::new(details(AnsweredBy::MachineEnd, 20)) }, ended(EndReason::Completed)],
        7 | 8 => vec![ended(EndReason::NoAnswer)],
        _ => vec![ended(EndReason::Busy)],
    }
}

/// A campaign of `calls` contacts, each called once, the calls ending evenly over 12.5 hours of `DAY`.
async fn campaign<S: Store>(store: &S, calls: u64) -> (String, CampaignId) {
    let org = store.create_org("bench").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let settings = CampaignSettings {
        calling_window: domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap(),
        retry_policy: RetryPolicy::parse(1, 0, []).unwrap(),
        ..Default::default()
    };
    let campaign = store.create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
    // inside the legal calling hours (08:00–21:00 where the contacts are)
    let start = day_start() + TimeDelta::hours(8);
    for first in (0..calls).step_by(20_000) {
        let contacts = (first..(first + 20_000).min(calls))
            .map(|n| {
                NewContact::new(
                    E164::parse(&format!("+1415{:03}{:04}", 200 + n / 10_000, n % 10_000), None).unwrap(),
                    chrono_tz::UTC,
                    domain::Consent::on_file(chrono::Utc::now()),
                )
            })
            .collect();
        store.add_contacts(org, campaign.id, contacts, start).await.unwrap();
    }
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, start).await.unwrap();
    let mut n = 0u64;
    loop {
        let ended_at = start + TimeDelta::milliseconds((n * 45_000_000 / calls) as i64);
        let claims = store.claim_due_contacts(org, campaign.id, ended_at, 50, TimeDelta::zero()).await.unwrap();
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            let ended_at = start + TimeDelta::milliseconds((n * 45_000_000 / calls) as i64);
            for (i, kind) in events_of(n, ended_at).into_iter().enumerate() {
                let event = CallEvent { dedupe_key: format!("{}-{i}", claim.call.id), occurred_at: ended_at, kind };
                store.apply_call_event(org, claim.call.id, event, ended_at).await.unwrap();
            }
            n += 1;
        }
        if n.is_multiple_of(100_000) {
            eprintln!("  {n} calls built");
        }
    }
    assert_eq!(n, calls);
    (key, campaign.id)
}

/// A SQLite store holding a built campaign of `calls` calls: the kept file when there is one.
async fn sqlite_campaign(calls: u64) -> (SqliteStore, String, CampaignId) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let (path, ids) = (dir.join(format!("{calls}.db")), dir.join(format!("{calls}.ids")));
    if let (true, Ok(kept)) = (path.exists(), std::fs::read_to_string(&ids)) {
        let (key, id) = kept.split_once(' ').unwrap();
        return (SqliteStore::open(&path).unwrap(), key.to_string(), CampaignId::parse(id.trim()).unwrap());
    }
    let _ = std::fs::remove_file(&path);
    let started = Instant::now();
    let store = SqliteStore::open(&path).unwrap();
    let (key, id) = campaign(&store, calls).await;
    std::fs::write(&ids, format!("{key} {id}")).unwrap();
    eprintln!("built {calls} calls in {:.0} s", started.elapsed().as_secs_f64());
    (store, key, id)
}

fn router<S: Store>(store: S) -> axum::Router {
    reports::router().with_state(reports::AppState { store, secrets: None, report_time_zone: chrono_tz::UTC }).split_for_parts().0
}

/// One request's time to the last byte of its body.
async fn request(app: &axum::Router, path: &str, key: &str) -> Duration {
    let started = Instant::now();
    let request = axum::http::Request::get(path).header("authorization", format!("Bearer {key}")).body(axum::body::Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    started.elapsed()
}

/// The median latency of each of `RUNS` runs of `REQUESTS_PER_RUN` requests; their median and range.
async fn latency(app: &axum::Router, path: &str, key: &str) -> (f64, f64, f64) {
    let mut medians = Vec::new();
    for _ in 0..RUNS {
        let mut times = Vec::new();
        for _ in 0..REQUESTS_PER_RUN {
            times.push(request(app, path, key).await);
        }
        times.sort();
        medians.push(times[times.len() / 2].as_secs_f64() * 1000.0);
    }
    medians.sort_by(f64::total_cmp);
    (medians[RUNS / 2], medians[0], medians[RUNS - 1])
}

#[tokio::main]
async fn main() {
    println!("| calls | `GET /campaigns/{{id}}/report` median (range of {RUNS} runs) | `GET /reports/daily/{DAY}` median (range) |");
    println!("|---:|---:|---:|");
    for calls in [1_000u64, 100_000, 1_000_000] {
        let (store, key, id) = sqlite_campaign(calls).await;
        let app = router(store);
        let (campaign, campaign_low, campaign_high) = latency(&app, &format!("/campaigns/{id}/report"), &key).await;
        let (daily, daily_low, daily_high) = latency(&app, &format!("/reports/daily/{DAY}"), &key).await;
        println!("| {calls} | {campaign:.2} ms ({campaign_low:.2}–{campaign_high:.2}) | {daily:.2} ms ({daily_low:.2}–{daily_high:.2}) |");
    }
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        println!("(DynamoDB request counts skipped: DYNAMODB_ENDPOINT is unset)");
        return;
    };
    println!("\n| calls | DynamoDB requests per campaign report | per daily report |");
    println!("|---:|---:|---:|");
    for calls in [1_000u64, 5_000] {
        let table = format!("bench-report-{}", uuid::Uuid::now_v7().simple());
        let (store, counter) = store::testing::request_counting_dynamodb_store(&endpoint, &table).await;
        let (key, id) = campaign(&store, calls).await;
        let app = router(store);
        let mut counted = Vec::new();
        for path in [format!("/campaigns/{id}/report"), format!("/reports/daily/{DAY}")] {
            request(&app, &path, &key).await;
            let before = counter.load(Ordering::Relaxed);
            request(&app, &path, &key).await;
            counted.push(counter.load(Ordering::Relaxed) - before);
        }
        println!("| {calls} | {} | {} |", counted[0], counted[1]);
    }
}
