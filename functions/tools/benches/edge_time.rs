//! The time tool at the edge against the native route: the Spin component's size, its first
//! request (the first after its host says it listens) and warm requests under jco's WASI HTTP host
//! (`scripts/edge-time`), beside `GET /tools/time` served by axum in this process. Each run starts
//! the host afresh, then sends 500 sequential requests over one keep-alive connection; 5 runs.
//!
//!     cargo bench -p tools --bench edge_time

#[path = "../tests/support/edge.rs"]
mod edge;

use edge::{EdgeHost, native_time_url};
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const WARM: usize = 500;

async fn timed(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let response = client.get(url).query(&[("tz", "America/New_York"), ("at", "2026-11-24T15:05:00Z")]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    started.elapsed()
}

/// The first request's time and the warm requests' median, in ms.
async fn measure(client: &reqwest::Client, url: &str) -> (f64, f64) {
    let first = timed(client, url).await;
    let mut warm = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        warm.push(timed(client, url).await);
    }
    warm.sort();
    (first.as_secs_f64() * 1000.0, warm[WARM / 2].as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let (mut edge_first, mut edge_warm, mut native_first, mut native_warm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let edge = EdgeHost::start();
        // readiness by connecting only: the first request is what is measured
        edge.listening(Duration::from_secs(900)).await;
        let (first, warm) = measure(&reqwest::Client::new(), &edge.url).await;
        edge_first.push(first);
        edge_warm.push(warm);
        drop(edge);

        let (first, warm) = measure(&reqwest::Client::new(), &native_time_url().await).await;
        native_first.push(first);
        native_warm.push(warm);
    }
    let wasm = std::fs::metadata(format!("{root}/functions/edge-time/target/wasm32-wasip2/release/edge_time.wasm")).unwrap().len();
    println!("component: {wasm} bytes ({:.2} MiB)", wasm as f64 / 1_048_576.0);
    println!("| route | first request (median of {RUNS}) | warm request (median of {RUNS} medians of {WARM}) |");
    println!("|---|---:|---:|");
    println!("| edge-time under jco serve | {:.2} ms | {:.3} ms |", median(edge_first), median(edge_warm));
    println!("| native GET /tools/time (axum) | {:.2} ms | {:.3} ms |", median(native_first), median(native_warm));
}
