//! The `edge-time` Spin component, built and served by `scripts/edge-time` (wasm32-wasip2 under
//! jco's WASI HTTP host), answers 1,000 random (zone, instant) pairs exactly as the native
//! `GET /tools/time` does, both over HTTP; and the same problem for a bad zone or instant.

use rand::{Rng, SeedableRng};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::SqliteStore;
use tools::{ToolsState, router};

/// The component's host (its own process group), stopped with the test.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        // the whole group: jco serves from a child process of its own
        let _ = Command::new("kill").args(["-TERM", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

async fn native() -> String {
    let config = platform::testing::config(&[]);
    let state = ToolsState::from_config(&config, SqliteStore::open_in_memory().unwrap());
    let (app, _) = router().with_state(state).split_for_parts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/tools/time")
}

async fn answer(client: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = client.get(url).query(query).send().await.unwrap_or_else(|e| panic!("{url} {query:?}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
#[ignore = "hangs after the host starts when run under cargo test (passed once by hand); issue 21 note"]
async fn the_spin_component_answers_as_the_native_route() {
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/edge-time");
    let _served = Served(
        Command::new(script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("scripts/edge-time starts"),
    );
    let edge = format!("http://127.0.0.1:{port}/time");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // the first run builds the component and installs jco
    let started = Instant::now();
    while client.get(&edge).query(&[("tz", "UTC")]).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(900), "scripts/edge-time did not serve within 15 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let native = native().await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for _ in 0..1_000 {
        let zone = chrono_tz::TZ_VARIANTS[rng.random_range(0..chrono_tz::TZ_VARIANTS.len())];
        let at = chrono::DateTime::from_timestamp(rng.random_range(0..4_102_444_800i64), 0).unwrap();
        // instants written with an offset as well as in UTC
        let written = if rng.random_bool(0.5) { at.to_rfc3339() } else { at.with_timezone(&zone).to_rfc3339() };
        let query = [("tz", zone.name()), ("at", written.as_str())];
        let (edge_status, edge_answer) = answer(&client, &edge, &query).await;
        let (native_status, native_answer) = answer(&client, &native, &query).await;
        assert_eq!((edge_status, &edge_answer), (native_status, &native_answer), "{query:?}");
        assert_eq!(edge_status, 200);
    }
    for query in [[("tz", "Mars/Olympus"), ("at", "2026-11-24T15:05:00Z")], [("tz", "Europe/Paris"), ("at", "next week")]] {
        let (edge_status, edge_answer) = answer(&client, &edge, &query).await;
        let (native_status, native_answer) = answer(&client, &native, &query).await;
        assert_eq!((edge_status, edge_answer), (native_status, native_answer), "{query:?}");
        assert_eq!(edge_status, 422);
    }
}
