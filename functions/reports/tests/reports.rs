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
    campaign: domain::CampaignId,
}

/// Four calls: a person who heard the agent after 0.8 s (60 s, $0.12, a success), a person who
/// waited 3 s (120 s, $0.20), a machine (15 s, $0.03), and no answer.
async fn fixture<S: Store>(store: S) -> Fixture {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let settings = CampaignSettings { provider: domain::CallProvider::Simulator, ..Default::default() };
    let campaign = store.create_campaign(org, NewCampaign::parse("Renewals", Cap::parse(10).unwrap(), settings).unwrap()).await.unwrap();
    let t0 = DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let contacts = (0..4).map(|i| NewContact::new(E164::parse(&format!("+1415555012{i}"), None).unwrap(), chrono_tz::UTC)).collect();
    store.add_contacts(org, campaign.id, contacts, t0).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0).await.unwrap();
    let claims = store.claim_due_contacts(org, campaign.id, t0, 4, TimeDelta::zero()).await.unwrap();
    let human = |connect_ms: i64, secs: u32, cost: &str, evaluation: Option<&str>| CallDetails {
        answered_by: Some(AnsweredBy::Human),
        answered_at: Some(t0),
        connected_at: Some(t0 + TimeDelta::milliseconds(connect_ms)),
        duration_secs: Some(secs),
        cost: Some(Money::parse(cost).unwrap()),
        summary: Some("Renews.".into()),
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
        (Some(human(800, 60, "0.12", Some("true"))), EndReason::Completed),
        (Some(human(3_000, 120, "0.20", Some("false"))), EndReason::Completed),
        (Some(machine), EndReason::Completed),
        (None, EndReason::NoAnswer),
    ];
    for (claim, (details, end)) in claims.iter().zip(outcomes) {
        let placed = store::PlacedCall {
            provider: domain::CallProvider::Simulator,
            provider_call_id: format!("sim-{}", claim.call.id),
            caller_id: None,
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
    let (app, _) = router().with_state(AppState { store }).split_for_parts();
    Fixture { app, key, campaign: campaign.id }
}

async fn get(f: &Fixture, uri: &str) -> (StatusCode, String, String) {
    let request =
        axum::http::Request::get(uri).header("authorization", format!("Bearer {}", f.key)).body(axum::body::Body::empty()).unwrap();
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
    let (_, _, full) = get(&f, &format!("/campaigns/{}/calls.csv?includePhone=true", f.campaign)).await;
    assert!(full.contains("+14155550120"), "{full}");
    let (status, _, _) = get(&f, &format!("/campaigns/{}/report", domain::CampaignId::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(get(&f, &format!("/campaigns/{}/calls.csv", domain::CampaignId::new())).await.0, StatusCode::NOT_FOUND);
}

store::on_both_stores!("reports-"; the_report_and_the_csv_show_the_fixture_as_worked_out_by_hand);

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
}
