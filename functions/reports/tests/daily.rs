//! The daily organisation report on both stores: yesterday's calls in the report's time zone, a
//! row per campaign and the totals, kept and emailed once to each recipient (the local outbox),
//! read back as JSON and as a page, each organisation seeing only its own.

use axum::{Router, http::StatusCode};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use domain::{
    AnsweredBy, CallDetails, CallEvent, CallEventKind, CampaignSettings, CampaignStatus, Cap, E164, EndReason, Money, NewCampaign,
    NewContact, OrgId,
};
use http_body_util::BodyExt;
use platform::{EmailError, LocalOutbox, Mailer};
use reports::{AppState, daily::send_daily_reports, router};
use serde_json::Value;
use store::{OrgStore, ReportStore, Store};
use tower::ServiceExt;

const ZONE: Tz = chrono_tz::America::New_York;

/// A local time of `date` in New York.
fn at(date: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    ZONE.from_local_datetime(&date.and_hms_opt(hour, minute, 0).unwrap()).single().unwrap().to_utc()
}

/// A running campaign of `org` whose calls end at `ends`, each answered by a person for 60 s at
/// $0.10, except the no-answers.
async fn campaign_with_calls<S: Store>(store: &S, org: OrgId, name: &str, ends: &[(DateTime<Utc>, bool)]) -> domain::CampaignId {
    let settings = CampaignSettings { provider: domain::CallProvider::Simulator, ..Default::default() };
    let campaign = store.create_campaign(org, NewCampaign::parse(name, Cap::parse(50).unwrap(), settings).unwrap()).await.unwrap();
    // claimed inside the default calling window (a weekday's afternoon) before the first end
    let mut claim_day = (ends.iter().map(|(t, _)| *t).min().unwrap() - TimeDelta::days(1)).date_naive();
    while matches!(claim_day.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun) {
        claim_day = claim_day.pred_opt().unwrap();
    }
    let t0 = claim_day.and_hms_opt(13, 0, 0).unwrap().and_utc();
    let contacts = (0..ends.len())
        .map(|i| {
            NewContact::new(
                E164::parse(&format!("+1415555{:04}", 100 + i), None).unwrap(),
                chrono_tz::UTC,
                domain::Consent::on_file(chrono::Utc::now()),
            )
        })
        .collect();
    store.add_contacts(org, campaign.id, contacts, t0).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0).await.unwrap();
    let claims = store.claim_due_contacts(org, campaign.id, t0, ends.len() as u32, TimeDelta::zero()).await.unwrap();
    assert_eq!(claims.len(), ends.len());
    for (claim, (end, answered)) in claims.iter().zip(ends) {
        let placed = store::PlacedCall {
            provider: domain::CallProvider::Simulator,
            provider_call_id: format!("sim-{}", claim.call.id),
            caller_id: None,
            placed_at: t0,
        };
        store.record_placed_call(org, claim.call.id, placed).await.unwrap();
        let mut kinds = vec![CallEventKind::Ended { reason: if *answered { EndReason::Completed } else { EndReason::NoAnswer } }];
        if *answered {
            let details = CallDetails {
                answered_by: Some(AnsweredBy::Human),
                answered_at: Some(*end - TimeDelta::seconds(60)),
                duration_secs: Some(60),
                cost: Some(Money::parse("0.10").unwrap()),
                ..Default::default()
            };
            kinds.insert(0, CallEventKind::Details { details: Box::new(details) });
        }
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = CallEvent { dedupe_key: format!("{}-{i}", claim.call.id), occurred_at: *end, kind };
            store.apply_call_event(org, claim.call.id, event, *end).await.unwrap();
        }
    }
    campaign.id
}

async fn send(app: &Router, method: &str, uri: &str, key: &str, body: Option<Value>) -> (StatusCode, String, String) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
}

/// The local outbox, refusing one address until told otherwise.
#[derive(Clone, Default)]
struct Outbox {
    kept: LocalOutbox,
    refuse: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Mailer for Outbox {
    async fn send(&self, email: &domain::FollowUpEmail) -> Result<String, EmailError> {
        if self.refuse.lock().unwrap().as_deref() == Some(email.to.as_str()) {
            return Err(EmailError::Unavailable("the service is down for this one".into()));
        }
        self.kept.send(email).await
    }
}

async fn yesterdays_report_is_kept_and_emailed_once_to_each_recipient<S: Store>(store: S) {
    let now = Utc::now();
    let day = domain::report::yesterday(now, ZONE);
    let (before, after) = (day.pred_opt().unwrap(), day.succ_opt().unwrap());
    let acme = store.create_org("Acme").await.unwrap().id;
    let other = store.create_org("Other").await.unwrap().id;
    let acme_key = store.create_api_key(acme).await.unwrap().secret;
    let other_key = store.create_api_key(other).await.unwrap().secret;
    // the day's first and last minutes in New York count; the minutes either side do not
    campaign_with_calls(
        &store,
        acme,
        "Renewals",
        &[(at(day, 0, 1), true), (at(day, 12, 0), true), (at(day, 23, 59), false), (at(before, 23, 58), true), (at(after, 0, 2), true)],
    )
    .await;
    campaign_with_calls(&store, acme, "Win-back", &[(at(day, 9, 30), true)]).await;
    campaign_with_calls(&store, acme, "Last month", &[(at(before, 10, 0), true)]).await;
    campaign_with_calls(&store, other, "Theirs", &[(at(day, 10, 0), true), (at(day, 11, 0), true)]).await;

    let (app, _) = router().with_state(AppState { store: store.clone(), secrets: None, report_time_zone: ZONE }).split_for_parts();
    let recipients = serde_json::json!({"recipients": ["ops@acme.example", "Boss@acme.example", "OPS@acme.example"]});
    let (status, _, body) = send(&app, "PUT", "/reports/daily/recipients", &acme_key, Some(recipients)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["recipients"], serde_json::json!(["ops@acme.example", "Boss@acme.example"]));
    let bad = serde_json::json!({"recipients": ["ops@acme.example", "not an address"]});
    let (status, content_type, problem) = send(&app, "PUT", "/reports/daily/recipients", &acme_key, Some(bad)).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json"), "{problem}");
    assert!(problem.contains("item 1"), "says which address: {problem}");
    let (_, _, kept) = send(&app, "GET", "/reports/daily/recipients", &acme_key, None).await;
    assert!(kept.contains("Boss@acme.example"), "a refused list changes nothing: {kept}");

    // the first run: one recipient's email fails; the second sends only that one
    let outbox = Outbox::default();
    *outbox.refuse.lock().unwrap() = Some("Boss@acme.example".into());
    let run = send_daily_reports(&store, Some(&outbox), ZONE, day, now).await.unwrap();
    assert_eq!((run.organisations, run.with_calls, run.emails, run.failed.len()), (2, 2, 1, 1), "{run:?}");
    *outbox.refuse.lock().unwrap() = None;
    let run = send_daily_reports(&store, Some(&outbox), ZONE, day, now).await.unwrap();
    assert_eq!((run.emails, run.failed.len()), (1, 0), "{run:?}");
    assert_eq!(send_daily_reports(&store, Some(&outbox), ZONE, day, now).await.unwrap().emails, 0, "nobody is emailed twice");
    // the schedule's input as EventBridge Scheduler delivers it: {} is yesterday's, a date that day's
    let sample = platform::testing::load_event("schedules/daily-report.json", &[("2026-11-24", &day.to_string())]);
    let input: reports::daily::DailyInput = serde_json::from_str(&sample).unwrap();
    let scheduled = reports::daily::on_schedule(&store, Some(&outbox), ZONE, Some(input), now).await.unwrap();
    assert_eq!((scheduled.date, scheduled.organisations, scheduled.emails), (Some(day), 2, 0), "{scheduled:?}");
    let yesterdays = reports::daily::on_schedule(&store, Some(&outbox), ZONE, serde_json::from_str("{}").unwrap(), now).await.unwrap();
    assert_eq!(yesterdays.date, Some(domain::report::yesterday(now, ZONE)));
    assert!(
        serde_json::from_str::<reports::daily::DailyInput>(r#"{"day": "2026-11-24"}"#).is_err(),
        "a misspelt input is refused, not ignored"
    );
    let emails = outbox.kept.kept();
    let to: Vec<&str> = emails.iter().map(|k| k.email.to.as_str()).collect();
    assert_eq!(to, ["ops@acme.example", "Boss@acme.example"]);
    let email = &emails[0].email;
    assert_eq!(email.subject, format!("outdial daily report — {day} (4 calls)"));
    assert!(email.body.contains("All campaigns: 4 calls finished, 4 dialed; answer rate 75.0 %"), "{}", email.body);
    assert!(email.body.contains("Renewals: 3 calls finished") && email.body.contains("Win-back: 1 calls finished"), "{}", email.body);
    assert!(!email.body.contains("Theirs") && !email.body.contains("Last month"), "only the organisation's day: {}", email.body);
    assert!(email.html.as_deref().is_some_and(|h| h.contains("<table id=\"campaigns\"") && h.contains("Win-back")));

    let (status, _, body) = send(&app, "GET", &format!("/reports/daily/{day}"), &acme_key, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((report["timeZone"].as_str(), report["complete"].as_bool()), (Some("America/New_York"), Some(true)));
    assert_eq!(report["emailedTo"], serde_json::json!(["ops@acme.example", "Boss@acme.example"]));
    let rows: Vec<(&str, u64)> = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["calls"]["finished"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [("Renewals", 3), ("Win-back", 1)]);
    let totals = &report["totals"];
    assert_eq!(
        (totals["finished"].as_u64(), totals["answered"].as_u64(), totals["cost"]["total"].as_str()),
        (Some(4), Some(3), Some("0.3"))
    );
    let (status, content_type, page) = send(&app, "GET", &format!("/reports/daily/{day}.html"), &acme_key, None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert!(page.contains(&format!("Daily report — {day}")) && page.contains("id=\"per-hour\""), "{page}");
    let (_, _, theirs) = send(&app, "GET", &format!("/reports/daily/{day}"), &other_key, None).await;
    let theirs: Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!((theirs["totals"]["finished"].as_u64(), theirs["emailedTo"].as_array().map(Vec::len)), (Some(2), Some(0)));
    let future = now.with_timezone(&ZONE).date_naive() + TimeDelta::days(1);
    assert_eq!(send(&app, "GET", &format!("/reports/daily/{future}"), &acme_key, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&app, "GET", "/reports/daily/last-week", &acme_key, None).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, _, named) = send(&app, "GET", "/reports/daily/yesterday", &acme_key, None).await;
    assert_eq!(serde_json::from_str::<Value>(&named).unwrap()["date"], day.to_string(), "yesterday in the report's zone");
    assert_eq!(store.daily_report(acme, day).await.unwrap().map(|r| r.totals.finished), Some(4), "the day's report is kept");
}

store::on_both_stores!("daily-";
    yesterdays_report_is_kept_and_emailed_once_to_each_recipient
);

#[tokio::test]
async fn recipients_need_an_api_key_and_at_most_twenty_addresses() {
    let store = store::SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let (app, _) =
        router().with_state(AppState { store: store.clone(), secrets: None, report_time_zone: chrono_tz::UTC }).split_for_parts();
    let many: Vec<String> = (0..21).map(|i| format!("r{i}@acme.example")).collect();
    let (status, _, problem) = send(&app, "PUT", "/reports/daily/recipients", &key, Some(serde_json::json!({ "recipients": many }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(send(&app, "GET", "/reports/daily/recipients", "odk_wrong", None).await.0, StatusCode::UNAUTHORIZED);
    assert!(store.daily_report_recipients(org).await.unwrap().is_empty());
    assert_eq!(send(&app, "GET", "/reports/daily/2026-02-30", &key, None).await.0, StatusCode::NOT_FOUND, "not on the calendar");
    let (_, openapi) = router::<store::SqliteStore>().split_for_parts();
    let schema = serde_json::to_value(openapi.components.unwrap().schemas["DailyRecipients"].clone()).unwrap();
    assert_eq!(schema["properties"]["recipients"]["items"]["format"], "email", "clients are told the items are addresses: {schema}");
}
