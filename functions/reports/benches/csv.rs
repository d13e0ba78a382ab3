//! The calls CSV streamed at size: a campaign of 100,000 finished calls in a SQLite file (and one
//! of 10,000 to compare), `GET /campaigns/{id}/calls.csv` through the router, the body read
//! chunk by chunk as a client would. Reports rows/s and how far the process's resident memory
//! (VmRSS, sampled every 16 chunks) rose above where it stood before the request: memory that does
//! not grow with the number of calls is constant.
//!
//!     cargo bench -p reports --bench csv

use chrono::{TimeDelta, Utc};
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, E164, EndReason, NewCampaign, NewContact,
};
use http_body_util::BodyExt;
use std::time::Instant;
use store::{CallStore, CampaignStore, OrgStore, SqliteStore};
use tower::ServiceExt;

/// The process's resident memory now (`VmRSS`), MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

/// A campaign whose `calls` calls have all ended, answered and summarised.
async fn campaign(store: &SqliteStore, calls: u64) -> (String, domain::CampaignId) {
    let org = store.create_org("bench").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let now = Utc::now();
    let zone = platform::testing::midday_zone(now);
    let settings = CampaignSettings {
        calling_window: domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").unwrap(),
        ..Default::default()
    };
    let campaign = store.create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
    for start in (0..calls).step_by(10_000) {
        let contacts = (start..(start + 10_000).min(calls))
            .map(|n| {
                NewContact::new(
                    E164::parse(&format!("+1415{:03}{:04}", 200 + n / 10_000, n % 10_000), None).unwrap(),
                    zone,
                    domain::Consent::on_file(chrono::Utc::now()),
                )
            })
            .collect();
        store.add_contacts(org, campaign.id, contacts, now).await.unwrap();
    }
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, now).await.unwrap();
    loop {
        let claims = store.claim_due_contacts(org, campaign.id, now, 50, TimeDelta::zero()).await.unwrap();
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            let details = CallDetails {
                answered_by: Some(AnsweredBy::Human),
                duration_secs: Some(60),
                summary: Some("Agreed to renew, asked for the paperwork by email.".into()),
                ..Default::default()
            };
            for (i, kind) in [CallEventKind::Details { details: Box::new(details) }, CallEventKind::Ended { reason: EndReason::Completed }]
                .into_iter()
                .enumerate()
            {
                let event = CallEvent { dedupe_key: format!("{}-{i}", claim.call.id), occurred_at: now, kind };
                store.apply_call_event(org, claim.call.id, event, now).await.unwrap();
            }
        }
    }
    (key, campaign.id)
}

#[tokio::main]
async fn main() {
    println!("| calls | CSV size | rows/s, median of 3 | RSS rise while streaming (max of 3) |");
    println!("|---:|---:|---:|---:|");
    for calls in [10_000u64, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("bench.db")).unwrap();
        let (key, id) = campaign(&store, calls).await;
        let (app, _) =
            reports::router().with_state(reports::AppState { store, secrets: None, report_time_zone: chrono_tz::UTC }).split_for_parts();
        let (mut rates, mut growth, mut size) = (Vec::new(), 0f64, 0usize);
        for _ in 0..3 {
            let before = rss_mib();
            let mut highest = before;
            let started = Instant::now();
            let request = axum::http::Request::get(format!("/campaigns/{id}/calls.csv"))
                .header("authorization", format!("Bearer {key}"))
                .body(axum::body::Body::empty())
                .unwrap();
            let mut body = app.clone().oneshot(request).await.unwrap().into_body();
            let (mut bytes, mut lines, mut chunks) = (0usize, 0usize, 0usize);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    bytes += data.len();
                    lines += data.iter().filter(|b| **b == b'\n').count();
                    chunks += 1;
                    if chunks % 16 == 0 {
                        highest = highest.max(rss_mib());
                    }
                }
            }
            assert_eq!(lines as u64, calls + 1, "a header and every call");
            rates.push(calls as f64 / started.elapsed().as_secs_f64());
            growth = growth.max(highest.max(rss_mib()) - before);
            size = bytes;
        }
        rates.sort_by(f64::total_cmp);
        println!("| {calls} | {:.1} MiB | {:.0} | {:.1} MiB |", size as f64 / 1_048_576.0, rates[1], growth);
    }
}
