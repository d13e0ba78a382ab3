//! The HTML report as people see it: served over HTTP and opened in headless Chromium (Debian's
//! `chromium`, which scripts/test installs when missing), phone-sized. The page must load with no
//! console error, fetch nothing but itself, show the three charts, and render to a PNG (with
//! `UPDATE_SCREENSHOT=1`, kept as `docs/report.png`, the README's picture).

use axum::{Router, extract::State, routing::get};
use chrono::{TimeDelta, Utc};
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, E164, EndReason, Money, NewCampaign,
    NewContact,
};
use http_body_util::BodyExt;
use std::{
    io::Write,
    process::Command,
    sync::{Arc, Mutex},
};
use store::{CallStore, CampaignStore, DialingStore, OrgStore, SqliteStore};
use tower::ServiceExt;

/// A report of 30 calls over three hours: answered, machines, no answers, with durations.
async fn report_page() -> String {
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let settings = CampaignSettings { provider: domain::CallProvider::Simulator, ..Default::default() };
    let campaign =
        store.create_campaign(org, NewCampaign::parse("Spring <renewals>", Cap::parse(30).unwrap(), settings).unwrap()).await.unwrap();
    let t0 = Utc::now() - TimeDelta::hours(3);
    // inside the calling hours at t0, whatever the hour of the run
    let zone = platform::testing::midday_zone(t0);
    let contacts = (0..30).map(|i| NewContact::new(E164::parse(&format!("+141555501{i:02}"), None).unwrap(), zone)).collect();
    store.add_contacts(org, campaign.id, contacts, t0).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0).await.unwrap();
    for (i, claim) in store.claim_due_contacts(org, campaign.id, t0, 30, TimeDelta::zero()).await.unwrap().into_iter().enumerate() {
        let ended = t0 + TimeDelta::minutes(6 * i as i64);
        let placed = store::PlacedCall {
            provider: domain::CallProvider::Simulator,
            provider_call_id: format!("sim-{i}"),
            caller_id: None,
            placed_at: ended,
        };
        store.record_placed_call(org, claim.call.id, placed).await.unwrap();
        let (end, details) = match i % 3 {
            0 => (EndReason::NoAnswer, CallDetails::default()),
            1 => (
                EndReason::Completed,
                CallDetails {
                    answered_by: Some(AnsweredBy::Human),
                    answered_at: Some(ended),
                    connected_at: Some(ended + TimeDelta::milliseconds(700 + 200 * i as i64)),
                    duration_secs: Some(20 + 25 * i as u32),
                    cost: Some(Money::parse("0.09").unwrap()),
                    success_evaluation: Some(if i % 2 == 0 { "true" } else { "false" }.into()),
                    ..Default::default()
                },
            ),
            _ => (
                EndReason::Completed,
                CallDetails { answered_by: Some(AnsweredBy::MachineEnd), duration_secs: Some(12), ..Default::default() },
            ),
        };
        for (n, kind) in
            [CallEventKind::Details { details: Box::new(details) }, CallEventKind::Ended { reason: end }].into_iter().enumerate()
        {
            store
                .apply_call_event(org, claim.call.id, CallEvent { dedupe_key: format!("{i}-{n}"), occurred_at: ended, kind }, ended)
                .await
                .unwrap();
        }
    }
    let (app, _) =
        reports::router().with_state(reports::AppState { store, secrets: None, report_time_zone: chrono_tz::UTC }).split_for_parts();
    let request = axum::http::Request::get(format!("/campaigns/{}/report.html", campaign.id))
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_loads_in_chromium_with_its_three_charts_and_fetches_nothing() {
    let Some(browser) = chromium() else {
        let _ = writeln!(std::io::stderr(), "skipped: no chromium (scripts/test installs Debian's chromium)");
        return;
    };
    let page = report_page().await;
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let app =
        Router::new().route("/report.html", get(|State(page): State<Arc<String>>| async move { axum::response::Html(page.to_string()) }));
    let seen = requests.clone();
    let app = app.with_state(Arc::new(page)).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            seen.lock().unwrap().push(request.uri().path().to_string());
            next.run(request)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report.html", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("report.png");
    let run = |extra: Vec<String>| {
        let (browser, url, profile) = (browser.to_string(), url.clone(), dir.path().join("profile"));
        tokio::task::spawn_blocking(move || {
            Command::new(browser)
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--window-size=412,1200"])
                .args(["--enable-logging=stderr", "--v=0", "--disable-background-networking", "--disable-component-update"])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(url)
                .output()
                .unwrap()
        })
    };
    let shot = run(vec![format!("--screenshot={}", png.display())]).await.unwrap();
    let log = String::from_utf8_lossy(&shot.stderr).to_string();
    assert!(shot.status.success(), "{log}");
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "a PNG of the page ({} bytes)", bytes.len());
    assert!(!log.contains(":CONSOLE"), "no console message: {log}");
    // `UPDATE_SCREENSHOT=1` keeps this PNG as the README's picture of the report
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/report.png"), &bytes).unwrap();
    }

    let dom = run(vec!["--dump-dom".into()]).await.unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(dom.contains("<strong>30</strong>"), "30 calls finished: {dom}");
    // each chart has its bars in its colours: people answered (green), machines (amber), the rest (ink, grey)
    for (chart, colours) in
        [("funnel", &["#1f2937", "#16a34a"][..]), ("per-hour", &["#16a34a", "#d97706", "#6b7280"]), ("durations", &["#1f2937"])]
    {
        let figure = dom.split(&format!("<figure id=\"{chart}\">")).nth(1).unwrap_or_else(|| panic!("no {chart} chart in {dom}"));
        let svg = figure.split("</figure>").next().unwrap().to_ascii_lowercase();
        assert!(svg.contains("<svg"), "{chart} is an SVG");
        for colour in colours {
            assert!(svg.matches(&format!("fill=\"{colour}\"")).count() >= 1, "{chart} has {colour} bars: {svg}");
        }
    }
    assert!(dom.contains("Spring &lt;renewals&gt;"), "the name is shown, escaped");
    let requests = requests.lock().unwrap().clone();
    assert!(requests.iter().all(|path| path == "/report.html"), "the page fetched nothing but itself: {requests:?}");
    assert_eq!(requests.len(), 2, "one load per run: {requests:?}");
}
