//! The time tool at the edge against the native route: the Spin component's size, its first
//! request (the first after its host says it listens) and warm requests under jco's WASI HTTP host
//! (`scripts/edge-time`), beside `GET /tools/time` served by axum in this process. Each run starts
//! the host afresh, then sends 500 sequential requests over one keep-alive connection; 5 runs.
//!
//!     cargo bench -p tools --bench edge_time

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::SqliteStore;
use tools::{ToolsState, router};

const RUNS: usize = 5;
const WARM: usize = 500;

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
        let port = free_port();
        let _served = Served(
            Command::new(format!("{root}/scripts/edge-time"))
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}/time");
        // readiness by connecting only: the first request is what is measured
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (first, warm) = measure(&reqwest::Client::new(), &url).await;
        edge_first.push(first);
        edge_warm.push(warm);

        let state = ToolsState::from_config(&platform::testing::config(&[]), SqliteStore::open_in_memory().unwrap());
        let (app, _) = router().with_state(state).split_for_parts();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (first, warm) = measure(&reqwest::Client::new(), &format!("http://{address}/tools/time")).await;
        native_first.push(first);
        native_warm.push(warm);
        server.abort();
    }
    let wasm = std::fs::metadata(format!("{root}/functions/edge-time/target/wasm32-wasip2/release/edge_time.wasm")).unwrap().len();
    println!("component: {wasm} bytes ({:.2} MiB)", wasm as f64 / 1_048_576.0);
    println!("| route | first request (median of {RUNS}) | warm request (median of {RUNS} medians of {WARM}) |");
    println!("|---|---:|---:|");
    println!("| edge-time under jco serve | {:.2} ms | {:.3} ms |", median(edge_first), median(edge_warm));
    println!("| native GET /tools/time (axum) | {:.2} ms | {:.3} ms |", median(native_first), median(native_warm));
}
