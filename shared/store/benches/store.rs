//! Store benchmarks (SQLite): claim-due-contacts latency against campaign size, and
//! apply-call-event throughput. Run: `cargo bench -p store --bench store`.
//! Prints medians of several runs as Markdown rows for BENCHMARKS.md.

use chrono::{DateTime, Duration, Utc};
use domain::{CallEvent, CallEventKind, CampaignStatus, Cap, E164, EndReason, NewCampaign, NewContact, OrgId, RetryPolicy};
use std::time::Instant;
use store::{CallStore, CampaignStore, OrgStore, SqliteStore};

const RUNS: usize = 7;

fn t0() -> DateTime<Utc> {
    // Friday 15 January 2027, 10:00 in New York: inside the default calling window
    DateTime::from_timestamp(1_800_025_200, 0).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn campaign_with(store: &SqliteStore, org: OrgId, contacts: u64) -> domain::CampaignId {
    let settings = domain::CampaignSettings { retry_policy: RetryPolicy::parse(1, 0, []).unwrap(), ..Default::default() };
    let campaign = store.create_campaign(org, NewCampaign::parse("bench", Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
    let mut n = 0;
    while n < contacts {
        let batch: Vec<NewContact> = (n..(n + 10_000).min(contacts))
            .map(|i| {
                let phone =
                    E164::parse(&format!("+1{}{:03}{:04}", 201 + (i / 8_000_000) % 700, 200 + (i / 10_000) % 800, i % 10_000), None)
                        .unwrap();
                NewContact::new(phone, chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now()))
            })
            .collect();
        n += batch.len() as u64;
        store.add_contacts(org, campaign.id, batch, t0()).await.unwrap();
    }
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap();
    campaign.id
}

/// Median latency of claiming 50 contacts (a full cap), releasing them between runs.
async fn claim_latency(store: &SqliteStore, org: OrgId, campaign: domain::CampaignId) -> f64 {
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        let claims = store.claim_due_contacts(org, campaign, t0(), 50, chrono::TimeDelta::zero()).await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(claims.len(), 50);
        for c in claims {
            let e = CallEvent {
                dedupe_key: format!("end{run}"),
                occurred_at: t0(),
                kind: CallEventKind::Ended { reason: EndReason::Completed },
            };
            store.apply_call_event(org, c.call.id, e, t0()).await.unwrap();
        }
    }
    median(samples)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!("| benchmark | campaign size | median of {RUNS} runs |");
    println!("|---|---|---|");
    for size in [1_000u64, 1_000_000] {
        let store = SqliteStore::open(dir.path().join(format!("claim-{size}.db"))).unwrap();
        let org = store.create_org("bench").await.unwrap().id;
        let campaign = campaign_with(&store, org, size).await;
        let ms = claim_latency(&store, org, campaign).await;
        println!("| claim_due_contacts, 50 claimed (SQLite file) | {size} contacts | {ms:.2} ms |");
    }

    let store = SqliteStore::open(dir.path().join("apply.db")).unwrap();
    let org = store.create_org("bench").await.unwrap().id;
    let campaign = campaign_with(&store, org, 50 * RUNS as u64 * 2).await;
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let claims = store.claim_due_contacts(org, campaign, t0(), 50, chrono::TimeDelta::zero()).await.unwrap();
        let events: Vec<_> = claims
            .iter()
            .flat_map(|c| {
                let kinds = [CallEventKind::Ringing, CallEventKind::Answered, CallEventKind::Ended { reason: EndReason::Completed }];
                kinds.into_iter().enumerate().map(move |(i, kind)| {
                    (c.call.id, CallEvent { dedupe_key: format!("{i}"), occurred_at: t0() + Duration::seconds(i as i64), kind })
                })
            })
            .collect();
        let started = Instant::now();
        for (call, e) in &events {
            store.apply_call_event(org, *call, e.clone(), t0()).await.unwrap();
        }
        rates.push(events.len() as f64 / started.elapsed().as_secs_f64());
    }
    println!("| apply_call_event, sequential (SQLite file) | 150 events per run | {:.0} events/s |", median(rates));
}
