//! Twilio status callbacks through `POST /webhooks/twilio/status` on the local stack (SQLite file,
//! release build): each request's `X-Twilio-Signature` is checked, its form normalised and the
//! event applied through the store (the completed ones also release capacity, settle the contact
//! and queue an on-demand tick). 10,000 placed calls each get initiated, ringing, in-progress and
//! completed, sent by 64 concurrent HTTP clients; throughput and per-request latency per run,
//! then the medians.
//!
//! `cargo bench -p outdial --bench webhooks` (optional: `-- <calls> <runs> <concurrency>`)

use chrono::Utc;
use futures::StreamExt;
use std::time::{Duration, Instant};
use store::{CallStore, CampaignStore, DialingStore, OrgStore, PlacedCall};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let calls: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let path = dir.path().join(format!("bench{run}.db"));
        let store = store::SqliteStore::open(&path).expect("open db");
        let org = store.create_org("bench").await.expect("org").id;
        let settings = domain::CampaignSettings {
            calling_window: domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").expect("window"),
            ..Default::default()
        };
        // 50 calls per campaign (the largest cap): enough campaigns for `calls` live calls
        let mut sids = Vec::new();
        for _ in 0..calls.div_ceil(50) {
            let campaign = store
                .create_campaign(org, domain::NewCampaign::parse("bench", domain::Cap::parse(50).unwrap(), settings.clone()).unwrap())
                .await
                .unwrap();
            // numbers are unique per campaign, so every campaign may use the same fifty
            let contacts = (0..50)
                .map(|i| {
                    domain::NewContact::new(
                        domain::E164::parse(&format!("+1415555{i:04}"), None).unwrap(),
                        chrono_tz::UTC,
                        domain::Consent::on_file(chrono::Utc::now()),
                    )
                })
                .collect();
            store.add_contacts(org, campaign.id, contacts, Utc::now()).await.unwrap();
            store
                .set_campaign_status(org, campaign.id, &[domain::CampaignStatus::Draft], domain::CampaignStatus::Running, Utc::now())
                .await
                .unwrap();
            for claim in store.claim_due_contacts(org, campaign.id, Utc::now(), 50, chrono::TimeDelta::zero()).await.unwrap() {
                let sid = format!("CA{:032x}", sids.len());
                let placed = PlacedCall {
                    provider: domain::CallProvider::Twilio,
                    provider_call_id: sid.clone(),
                    caller_id: None,
                    placed_at: Utc::now(),
                };
                store.record_placed_call(org, claim.call.id, placed).await.unwrap();
                sids.push(sid);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stack = outdial::Stack { dial_workers: 0, ..outdial::Stack::default() }
            .ticking_every(Duration::from_secs(3600))
            .with_queue_at(&path)
            .expect("queue");
        let server = tokio::spawn(outdial::serve(store.clone(), stack, listener));
        // requests prepared (and signed, as Twilio does) before the clock starts
        let url = format!("{base}/webhooks/twilio/status");
        let token = providers::CallProviders::SIMULATOR_ACCOUNT.1;
        let mut requests = Vec::new();
        for (seq, status) in ["initiated", "ringing", "in-progress", "completed"].into_iter().enumerate() {
            for sid in &sids {
                let mut fields = vec![
                    ("CallSid", sid.clone()),
                    ("AccountSid", providers::CallProviders::SIMULATOR_ACCOUNT.0.to_string()),
                    ("From", "+14155550100".to_string()),
                    ("To", "+14155550199".to_string()),
                    ("CallStatus", status.to_string()),
                    ("Direction", "outbound-api".to_string()),
                    ("ApiVersion", "2010-04-01".to_string()),
                    ("CallbackSource", "call-progress-events".to_string()),
                    ("SequenceNumber", seq.to_string()),
                ];
                if status == "completed" {
                    fields.push(("CallDuration", "42".to_string()));
                }
                let signature = providers::twilio::signature(token, &url, fields.iter().map(|(k, v)| (*k, v.as_str())));
                requests.push((signature, serde_urlencoded::to_string(&fields).unwrap()));
            }
        }
        let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
        let started = Instant::now();
        let mut latencies: Vec<Duration> = futures::stream::iter(requests)
            .map(|(signature, body)| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("X-Twilio-Signature", signature)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .expect("sent");
                    assert_eq!(response.status(), 204, "{:?}", response.text().await);
                    sent.elapsed()
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed();
        latencies.sort();
        let rate = latencies.len() as f64 / elapsed.as_secs_f64();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        println!(
            "run {run}: {} callbacks in {:.2} s = {rate:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            latencies.len(),
            elapsed.as_secs_f64()
        );
        // every call ended, once
        let ended =
            store.active_calls(org, store.list_campaigns(org, store::PageRequest::first(1)).await.unwrap().items[0].id).await.unwrap();
        assert!(ended.is_empty(), "calls still live: {}", ended.len());
        let one = store.find_call_by_provider_id(domain::CallProvider::Twilio, &sids[0]).await.unwrap().unwrap();
        assert_eq!(store.list_call_events(one.0, one.1).await.unwrap().len(), 5, "four statuses and the duration");
        server.abort();
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "median of {runs} runs ({} callbacks each, {concurrency} concurrent): {:.0} callbacks/s, p50 {:.2} ms, p99 {:.2} ms",
        calls * 4,
        median(rates),
        median(p50s),
        median(p99s)
    );
}
