//! The HTML report as people see it: served over HTTP and opened in headless Chromium (Debian's
//! `chromium`, which scripts/test installs when missing), phone-sized. The page must load with no
//! console error, fetch nothing but itself, show the three charts, and render to a PNG (with
//! `UPDATE_SCREENSHOT=1`, kept as `docs/report.png`, the README's picture).

use axum::{Router, extract::State, routing::get};
use chrono::{DurationRound, TimeDelta, Utc};
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
    let contacts = (0..30)
        .map(|i| {
            NewContact::new(E164::parse(&format!("+141555501{i:02}"), None).unwrap(), zone, domain::Consent::on_file(chrono::Utc::now()))
        })
        .collect();
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

/// Serves `page` and opens it in headless Chromium, phone-sized: its screenshot (a PNG, with no
/// console message), its DOM after scripts, and every path the browser asked for.
async fn open_in_chromium(browser: &str, page: String) -> (Vec<u8>, String, Vec<String>) {
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
    let dom = run(vec!["--dump-dom".into()]).await.unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let requests = requests.lock().unwrap().clone();
    (bytes, dom, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_loads_in_chromium_with_its_three_charts_and_fetches_nothing() {
    let Some(browser) = chromium() else {
        let _ = writeln!(std::io::stderr(), "skipped: no chromium (scripts/test installs Debian's chromium)");
        return;
    };
    let page = report_page().await;
    let (bytes, dom, requests) = open_in_chromium(browser, page).await;
    // `UPDATE_SCREENSHOT=1` keeps this PNG as the README's picture of the report
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/report.png"), &bytes).unwrap();
    }
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
    assert!(requests.iter().all(|path| path == "/report.html"), "the page fetched nothing but itself: {requests:?}");
    assert_eq!(requests.len(), 2, "one load per run: {requests:?}");
}

/// A report's numbers for `calls` calls ending evenly over `span` from 14:10 UTC: a third answered
/// by people, a third by machines, a third unanswered (counters as the store keeps them).
fn report_over(span: TimeDelta, calls: i64) -> domain::report::CampaignReport {
    use domain::report::{CallFacts, Connect, ReportCounts, add_counts};
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-24T14:10:00Z").unwrap().to_utc();
    let mut counts = ReportCounts::new();
    for i in 0..calls {
        let ended = t0 + span * i as i32 / calls as i32;
        let (disposition, human, machine) = match i % 3 {
            0 => (domain::CallDisposition::AnsweredHuman, true, false),
            1 => (domain::CallDisposition::Voicemail, false, true),
            _ => (domain::CallDisposition::NoAnswer, false, false),
        };
        let facts = CallFacts {
            disposition,
            dialed: true,
            answered: human || machine,
            human,
            machine,
            duration_secs: (human || machine).then_some(30 + (i % 200) as u32),
            cost_micros: human.then_some(90_000),
            successful: human.then_some(i % 2 == 0),
            connect: if human { Connect::Within } else { Connect::NotLive },
            presence: Some([domain::caller_id::PresenceMatch::AreaCode, domain::caller_id::PresenceMatch::Other][i as usize % 2]),
            hour: ended.duration_trunc(TimeDelta::hours(1)).unwrap(),
        };
        add_counts(&mut counts, &facts.counts());
    }
    domain::report::CampaignReport {
        campaign_id: domain::CampaignId::new(),
        name: format!("A run of {} minutes", span.num_minutes()),
        status: CampaignStatus::Completed,
        generated_at: t0 + span,
        contacts: domain::report::ContactNumbers {
            total: calls as u64,
            by_state: Default::default(),
            by_disposition: Default::default(),
            attempts_per_contact: Some(1.0),
        },
        calls: domain::report::CallNumbers::from_counts(&counts),
    }
}

/// The `(x, y, width, height, fill)` of every bar of one chart in the DOM.
fn bars(dom: &str, chart: &str) -> Vec<(f64, f64, f64, f64, String)> {
    let figure = dom.split(&format!("<figure id=\"{chart}\">")).nth(1).unwrap_or_else(|| panic!("no {chart} chart"));
    let svg = figure.split("</figure>").next().unwrap().to_ascii_lowercase();
    let attr = |rect: &str, name: &str| rect.split(&format!(" {name}=\"")).nth(1).and_then(|v| v.split('"').next()).map(str::to_string);
    svg.split("<rect")
        .skip(1)
        .filter_map(|rect| {
            let n = |name| attr(rect, name).and_then(|v| v.parse::<f64>().ok());
            Some((n("x")?, n("y")?, n("width")?, n("height")?, attr(rect, "fill")?))
        })
        .filter(|(.., fill)| ["#16a34a", "#d97706", "#6b7280", "#dc2626", "#1f2937"].contains(&fill.as_str()))
        .collect()
}

/// The y of the text `label` in one chart.
fn label_y(dom: &str, chart: &str, label: &str) -> f64 {
    let figure = dom.split(&format!("<figure id=\"{chart}\">")).nth(1).unwrap().split("</figure>").next().unwrap();
    let text = figure
        .split("<text")
        .find(|t| t.split('>').nth(1).is_some_and(|s| s.trim_start().starts_with(label)))
        .unwrap_or_else(|| panic!("{label}"));
    text.split(" y=\"").nth(1).and_then(|v| v.split('"').next()).and_then(|v| v.parse().ok()).unwrap()
}

/// Runs of one minute, one hour and three days each draw their hours as bars with width, and the
/// funnel reads from dialed at the top to success at the bottom. With `REPORT_SHOTS=DIR` each
/// screenshot is kept there to be looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_are_drawn_for_a_minute_an_hour_and_three_days() {
    let Some(browser) = chromium() else {
        let _ = writeln!(std::io::stderr(), "skipped: no chromium (scripts/test installs Debian's chromium)");
        return;
    };
    for (name, span, hours) in [("minute", TimeDelta::minutes(1), 1), ("hour", TimeDelta::minutes(50), 1), ("days", TimeDelta::days(3), 73)]
    {
        let report = report_over(span, 600);
        assert_eq!(report.calls.calls_per_hour.len(), hours, "{name}");
        let (png, dom, _) = open_in_chromium(browser, reports::html::render(&report)).await;
        if let Some(dir) = std::env::var_os("REPORT_SHOTS") {
            std::fs::write(std::path::Path::new(&dir).join(format!("report-{name}.png")), &png).unwrap();
        }
        let per_hour = bars(&dom, "per-hour");
        let drawn: std::collections::BTreeSet<i64> =
            per_hour.iter().filter(|(_, _, w, h, _)| *w >= 1.0 && *h >= 1.0).map(|(x, ..)| *x as i64).collect();
        assert!(drawn.len() >= hours.min(60), "{name}: {hours} hours, bars at {drawn:?}");
        assert!(per_hour.iter().all(|(_, _, w, _, _)| *w >= 0.0), "{name}: no bar of negative width: {per_hour:?}");
        let funnel = bars(&dom, "funnel");
        assert_eq!(funnel.len(), 4, "{name}: {funnel:?}");
        assert!(funnel.iter().all(|(_, _, w, h, _)| *w > 0.0 && *h > 0.0), "{name}: {funnel:?}");
        let order: Vec<f64> = ["dialed", "answered", "human", "success"].iter().map(|l| label_y(&dom, "funnel", l)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{name}: the funnel reads top down: {order:?}");
        assert!(bars(&dom, "durations").iter().any(|(_, _, w, h, _)| *w > 0.0 && *h > 0.0), "{name}");
    }
}
