//! Load harness: N simulated Twilio calls, each sending a 160-byte μ-law frame every 20 ms,
//! through the bridge to a fake ElevenLabs that echoes every chunk back as agent audio. The
//! fakes run in a child process, so the bridge process's CPU and memory are its own.
//!
//! `cargo bench -p media-bridge --bench bridge -- <calls> [<seconds>]` (default 100 calls, 10 s).
//! Prints one table row: frames measured; the round trip per frame (Twilio → bridge → ElevenLabs
//! → bridge → Twilio: the bridge's added latency twice, plus the fake's echo and four loopback
//! hops) at p50/p99/p999; the bridge process's CPU; its RSS growth per call; dropped frames.

use base64::Engine;
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{BufRead, Write},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, protocol::WebSocketConfig};

/// Bytes the process has allocated and not freed: memory per call without the allocator's and
/// the kernel's page-level noise that RSS carries.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: a pointer this allocator gave out, with its layout
        unsafe { System.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for dealloc and alloc
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if args.first().map(String::as_str) == Some("--fakes") {
        runtime.block_on(fakes());
    } else {
        let calls = args.first().and_then(|a| a.parse().ok()).unwrap_or(100usize);
        let seconds = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10u64);
        runtime.block_on(bridge_side(calls, seconds));
    }
}

/// What the bench's Twilio account signs stream tokens with.
const BRIDGE_TOKEN: &str = "bench-token";

/// The bridge process: a store with one placed call per stream (a call takes one stream), the
/// bridge, and the measurements.
async fn bridge_side(calls: usize, seconds: u64) {
    use store::{AssistantStore, CallStore, CampaignStore, DialingStore, OrgStore, PlacedCall};
    // the load generator shares the cores as an equal (niced, it starved: BENCHMARKS.md)
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--fakes")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fakes process");
    let mut from_fakes = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    from_fakes.read_line(&mut line).expect("the fakes' port");
    let fake_api = format!("http://{}", line.trim());

    let store = store::SqliteStore::open_in_memory().expect("store");
    let org = store.create_org("bench").await.unwrap().id;
    let config = domain::AssistantConfig {
        system_prompt: "You are a benchmark.".into(),
        first_message: "Hello, this is an AI assistant.".into(),
        end_call_message: None,
        voice: None,
        model: None,
        language: None,
        silence_timeout_seconds: None,
        max_duration_seconds: None,
        tools: None,
    };
    let mut assistant = domain::NewAssistant::local("bench", domain::ProviderKind::Elevenlabs, config).unwrap();
    assistant.provider_assistant_id = Some("agent_bench".into());
    let assistant = store.create_assistant(org, assistant, Utc::now()).await.unwrap();
    let days = domain::Day::ALL;
    let settings = domain::CampaignSettings {
        provider: domain::CallProvider::Twilio,
        calling_window: domain::CallingWindow::parse(days, "00:00", "23:59").unwrap(),
        ..Default::default()
    };
    // campaigns of 50 (the largest cap), one placed call per stream
    let mut planned = Vec::with_capacity(calls);
    for batch in 0..calls.div_ceil(50) {
        let cap = domain::Cap::parse(50).unwrap();
        let mut new = domain::NewCampaign::parse(&format!("bench {batch}"), cap, settings.clone()).unwrap();
        new.assistant_id = Some(assistant.id);
        let campaign = store.create_campaign(org, new).await.unwrap();
        let contacts = (0..50.min(calls - batch * 50))
            .map(|i| {
                domain::NewContact::new(
                    domain::E164::parse(&format!("+1415555{:04}", batch * 50 + i), None).unwrap(),
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
            let sid = format!("CA{:032x}", planned.len() + 1);
            let placed = PlacedCall {
                provider: domain::CallProvider::Twilio,
                provider_call_id: sid.clone(),
                caller_id: None,
                placed_at: Utc::now(),
            };
            store.record_placed_call(org, claim.call.id, placed).await.unwrap();
            let token = providers::signatures::stream_token(BRIDGE_TOKEN, claim.call.id, org, Utc::now() + chrono::TimeDelta::hours(1));
            planned.push(json!({ "sid": sid, "parameters": { "orgId": org.to_string(), "campaignId": campaign.id.to_string(),
                "callId": claim.call.id.to_string(), "contactId": claim.contact.id.to_string(), "token": token } }));
        }
    }

    let agents = providers::ElevenLabs::new(&fake_api, "xi-bench", providers::RetryPolicy::once());
    // unsigned upgrades (the load generator does not sign), but every stream's token is checked
    let settings =
        media_bridge::BridgeSettings { verify_signature: false, twilio_auth_token: Some(BRIDGE_TOKEN.into()), ..Default::default() };
    let bridge = media_bridge::Bridge::new(store, providers::CallProviders::default(), Some(agents), app::AgentTools::default(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(media_bridge::serve(bridge.clone(), listener, std::future::pending()));

    // the idle baseline is a bridge that has built its router and answered once
    let health = reqwest::get(format!("http://{address}/health")).await.expect("the bridge answers");
    assert_eq!(health.status(), 200);
    let (idle_rss, idle_heap) = (rss_kib(), LIVE_BYTES.load(Ordering::Relaxed));
    let mut to_fakes = child.stdin.take().expect("stdin");
    let plan = json!({ "url": format!("ws://{address}/media"), "calls": calls, "seconds": seconds, "planned": planned });
    writeln!(to_fakes, "{plan}").expect("plan");
    // measure the middle of the run, once every call is up
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    let (cpu_before, at) = (cpu_seconds(), Instant::now());
    let (busy_rss, busy_heap) = (rss_kib(), LIVE_BYTES.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs((seconds / 4).max(1))).await;
    let ((user_after, sys_after), elapsed) = (cpu_seconds(), at.elapsed().as_secs_f64());
    let (user, sys) = ((user_after - cpu_before.0) / elapsed * 100.0, (sys_after - cpu_before.1) / elapsed * 100.0);
    let results = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        from_fakes.read_line(&mut line).expect("the fakes' results");
        let _ = child.wait();
        line
    })
    .await
    .expect("results");
    let results: Value = serde_json::from_str(&results).expect("results JSON");
    let metrics = bridge.metrics.render();
    let dropped =
        metrics.lines().find(|l| l.starts_with("outdial_bridge_dropped_frames_total")).and_then(|l| l.split(' ').nth(1)).unwrap_or("?");
    let (inside_p50, inside_p99) = (histogram_bound(&metrics, 0.5), histogram_bound(&metrics, 0.99));
    println!(
        "| calls | frames back | round trip p50 | p99 | p999 | in the bridge p50 | p99 | bridge CPU (user + kernel) | RSS per call | dropped |"
    );
    println!(
        "| {calls} | {} | {} ms | {} ms | {} ms | ≤ {inside_p50} | ≤ {inside_p99} | {:.0} % ({user:.0} + {sys:.0}) | {:.1} KiB | {:.1} KiB | {dropped} |",
        results["frames"],
        results["p50"].as_str().unwrap_or("?"),
        results["p99"].as_str().unwrap_or("?"),
        results["p999"].as_str().unwrap_or("?"),
        user + sys,
        busy_heap.saturating_sub(idle_heap) as f64 / 1024.0 / calls as f64,
        busy_rss.saturating_sub(idle_rss) as f64 / calls as f64
    );
}

/// The fakes: ElevenLabs (signed URL and an echoing conversation) and N Twilio calls.
async fn fakes() {
    let conversations = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ws_port = conversations.local_addr().expect("addr").port();
    let api = axum::Router::new().route(
        "/v1/convai/conversation/get-signed-url",
        axum::routing::get(move || async move { axum::Json(json!({ "signed_url": format!("ws://127.0.0.1:{ws_port}/conversation") })) }),
    );
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("{}", api_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(api_listener, api).await });
    tokio::spawn(async move {
        while let Ok((socket, _)) = conversations.accept().await {
            tokio::spawn(echo_agent(socket));
        }
    });
    let plan = tokio::task::spawn_blocking(|| {
        let mut plan = String::new();
        std::io::stdin().lock().read_line(&mut plan).expect("plan");
        plan
    })
    .await
    .expect("plan");
    let plan: Value = serde_json::from_str(&plan).expect("plan JSON");
    let calls = plan["calls"].as_u64().unwrap_or(1) as usize;
    let seconds = plan["seconds"].as_u64().unwrap_or(10);
    let mut runs = Vec::new();
    for n in 0..calls {
        let plan = plan.clone();
        runs.push(tokio::spawn(async move { twilio_call(n, &plan, Duration::from_secs(seconds)).await }));
        // streams do not all open in the same millisecond
        if n % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut latencies = Vec::new();
    for run in runs {
        latencies.extend(run.await.unwrap_or_default());
    }
    latencies.sort();
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let results = json!({ "frames": latencies.len(), "p50": format!("{:.2}", at(0.5)), "p99": format!("{:.2}", at(0.99)), "p999": format!("{:.2}", at(0.999)) });
    println!("{results}");
}

/// The fakes' sockets read into small buffers, as the bridge's do: tungstenite's default zeroes
/// 128 KiB per read, which made the fakes, not the bridge, the bottleneck.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

async fn echo_agent(socket: tokio::net::TcpStream) {
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        user_audio_chunk: Option<std::borrow::Cow<'a, str>>,
    }
    let _ = socket.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(socket, Some(small_buffers())).await else { return };
    let mut event_id = 0u64;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(Chunk { user_audio_chunk: Some(chunk) }) = serde_json::from_str(&text) else { continue };
        event_id += 1;
        // base64 needs no JSON escaping
        let audio = format!(r#"{{"type":"audio","audio_event":{{"audio_base_64":"{chunk}","event_id":{event_id}}}}}"#);
        if ws.send(Message::Text(audio.into())).await.is_err() {
            return;
        }
    }
}

/// One call: `start`, then a frame every 20 ms for `length`; the round trip of every frame that came back.
async fn twilio_call(n: usize, plan: &Value, length: Duration) -> Vec<Duration> {
    let request = plan["url"].as_str().unwrap_or_default().into_client_request().expect("request");
    let Ok((ws, _)) = tokio_tungstenite::connect_async_with_config(request, Some(small_buffers()), true).await else { return Vec::new() };
    let (mut out, mut back) = ws.split();
    let stream_sid = format!("MZ{n:032}");
    let start = json!({ "event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "accountSid": "AC1", "callSid": plan["planned"][n]["sid"], "tracks": ["inbound"],
        "customParameters": plan["planned"][n]["parameters"], "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 } } });
    if out.send(Message::Text(start.to_string().into())).await.is_err() {
        return Vec::new();
    }
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u32, Instant>::new()));
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let frames = (length.as_millis() / 20) as u32;
            for seq in 0..frames {
                tick.tick().await;
                let mut bytes = vec![0xffu8; 160];
                bytes[..4].copy_from_slice(&seq.to_be_bytes());
                let payload = base64::engine::general_purpose::STANDARD.encode(&bytes);
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{payload}"}}}}"#,
                    seq + 2,
                    seq + 1,
                    seq * 20
                );
                if let Ok(mut s) = sent.lock() {
                    s.insert(seq, Instant::now());
                }
                if out.send(Message::Text(media.into())).await.is_err() {
                    return;
                }
            }
            let stop = json!({ "event": "stop", "sequenceNumber": (frames + 2).to_string(), "streamSid": stream_sid, "stop": { "accountSid": "AC1", "callSid": "CA1" } });
            let _ = out.send(Message::Text(stop.to_string().into())).await;
        })
    };
    #[derive(serde::Deserialize)]
    struct Played<'a> {
        #[serde(borrow)]
        media: Option<Payload<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        #[serde(borrow)]
        payload: std::borrow::Cow<'a, str>,
    }
    let mut latencies = Vec::new();
    let deadline = tokio::time::Instant::now() + length + Duration::from_secs(2);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, back.next()).await {
        let Message::Text(text) = message else { continue };
        let Ok(Played { media: Some(media) }) = serde_json::from_str(&text) else { continue };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(media.payload.as_bytes()) else { continue };
        let seq = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if let Some(at) = sent.lock().ok().and_then(|mut s| s.remove(&seq)) {
            latencies.push(at.elapsed());
        }
    }
    let _ = sender.await;
    latencies
}

/// The forwarding histogram's upper bound below which a share `q` of frames spent their time in
/// the bridge (queued after being read, until written), as "0.16 ms".
fn histogram_bound(metrics: &str, q: f64) -> String {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let count = metrics.lines().find(|l| l.starts_with("outdial_bridge_forwarding_seconds_count")).map_or(0.0, value);
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("outdial_bridge_forwarding_seconds_bucket{le=\""))
        .find(|l| value(l) >= q * count)
        .and_then(|l| l.split('"').next())
        .map_or("?".into(), |le| match le.parse::<f64>() {
            Ok(s) if s.is_finite() => format!("{:.2} ms", s * 1000.0),
            _ => "beyond the last bucket".into(),
        })
}

/// This process's CPU seconds so far, user and kernel, from /proc.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command name
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (ticks(11), ticks(12))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}
