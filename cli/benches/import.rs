//! Import of a generated 1,000,000-row CSV through `POST /campaigns/{id}/contacts` on the local
//! stack (SQLite file, release build), the file streamed from disk by an HTTP client. Prints
//! rows/s and the process's peak RSS (VmHWM) for each run, then the medians.
//!
//! `cargo bench -p outdial --bench import` (optional: `-- <rows> <runs>`)

use std::{io::Write, time::Instant};
use store::{AssistantStore, OrgStore};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rows: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("contacts.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("create csv"));
        writeln!(out, "phone,first_name,last_name,plan,timezone").unwrap();
        for i in 0..rows {
            // national numbers across ten area codes: every row is parsed, normalised and zoned for real
            const AREAS: [u32; 10] = [212, 213, 312, 415, 617, 713, 206, 305, 404, 702];
            let (q, r) = (i / 10_000, i % 10_000);
            writeln!(out, "({}) {}-{r:04},Ada{i},Lovelace,gold,", AREAS[(q % 10) as usize], 200 + q / 10).unwrap();
        }
    }
    let bytes = std::fs::metadata(&csv).expect("csv size").len();
    println!("file: {rows} rows, {:.1} MiB", bytes as f64 / 1048576.0);
    let (mut rates, mut peaks) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let store = store::SqliteStore::open(dir.path().join(format!("bench{run}.db"))).expect("open db");
        let org = store.create_org("bench").await.expect("org").id;
        let key = store.create_api_key(org).await.expect("key").secret;
        let config = domain::assistant::templates()[0].config.clone();
        let new = domain::NewAssistant::local("bench", domain::ProviderKind::Simulator, config).expect("assistant");
        let assistant = store.create_assistant(org, new, chrono::Utc::now()).await.expect("assistant").id;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(outdial::serve(store, outdial::Stack::default(), listener));
        let http = reqwest::Client::new();
        http.post(format!("{base}/caller-ids"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"phone": "+14155550100"}))
            .send()
            .await
            .expect("caller ID");
        let created: serde_json::Value = http
            .post(format!("{base}/campaigns"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"name": "bench", "assistantId": assistant.to_string(), "callerIds": ["+14155550100"]}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("campaign");
        let id = created["id"].as_str().expect("id");
        let file = tokio::fs::File::open(&csv).await.expect("open csv");
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let started = Instant::now();
        let reply: serde_json::Value = http
            .post(format!("{base}/campaigns/{id}/contacts?consent=attested&consentSource=bench%20fixture"))
            .bearer_auth(&key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .expect("import")
            .json()
            .await
            .expect("report");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(reply["imported"].as_u64(), Some(rows), "{reply}");
        let rate = rows as f64 / secs;
        let peak = peak_rss_mib();
        println!("run {run}: {rows} rows in {secs:.2} s = {rate:.0} rows/s; peak RSS so far {peak:.1} MiB");
        rates.push(rate);
        peaks.push(peak);
        server.abort();
    }
    println!("median: {:.0} rows/s, peak RSS {:.1} MiB", median(rates), median(peaks));
}
