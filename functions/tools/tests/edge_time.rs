//! The `edge-time` Spin component, built and served by `scripts/edge-time` (wasm32-wasip2 under
//! jco's WASI HTTP host), answers 1,000 random (zone, instant) pairs exactly as the native
//! `GET /tools/time` does, both over HTTP; and the same problem for a bad zone or instant.

mod support;

use rand::{Rng, SeedableRng};
use std::time::Duration;
use support::edge::{EdgeHost, native_time_url};

async fn answer(client: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = client.get(url).query(query).send().await.unwrap_or_else(|e| panic!("{url} {query:?}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_spin_component_answers_as_the_native_route() {
    let edge = EdgeHost::start();
    // the first run builds the component and installs jco
    edge.listening(Duration::from_secs(900)).await;
    let native = native_time_url().await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for _ in 0..1_000 {
        let zone = chrono_tz::TZ_VARIANTS[rng.random_range(0..chrono_tz::TZ_VARIANTS.len())];
        let at = chrono::DateTime::from_timestamp(rng.random_range(0..4_102_444_800i64), 0).unwrap();
        // instants written with an offset as well as in UTC
        let written = if rng.random_bool(0.5) { at.to_rfc3339() } else { at.with_timezone(&zone).to_rfc3339() };
        let query = [("tz", zone.name()), ("at", written.as_str())];
        let (edge_status, edge_answer) = answer(&client, &edge.url, &query).await;
        let (native_status, native_answer) = answer(&client, &native, &query).await;
        assert_eq!((edge_status, &edge_answer), (native_status, &native_answer), "{query:?}");
        assert_eq!(edge_status, 200);
    }
    for query in [[("tz", "Mars/Olympus"), ("at", "2026-11-24T15:05:00Z")], [("tz", "Europe/Paris"), ("at", "next week")]] {
        let (edge_status, edge_answer) = answer(&client, &edge.url, &query).await;
        let (native_status, native_answer) = answer(&client, &native, &query).await;
        assert_eq!((edge_status, edge_answer), (native_status, native_answer), "{query:?}");
        assert_eq!(edge_status, 422);
    }
}
