//! The Cal.com client against a wiremock fake of `POST /v2/bookings` (PROTOCOLS.md): headers,
//! body, the answer read back, and refusals passed on in Cal.com's words.

use chrono::{TimeZone, Utc};
use domain::{Booking, E164, EmailAddress};
use providers::{CalCom, CalcomAccount, ProviderError, RetryPolicy};
use serde_json::json;
use std::time::Duration;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path},
};

fn booking() -> Booking {
    Booking {
        start: Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).unwrap(),
        attendee_name: "Ada Lovelace".into(),
        attendee_email: EmailAddress::parse("ada@example.com").unwrap(),
        time_zone: chrono_tz::America::New_York,
        phone: E164::parse("+14155550123", None).unwrap(),
    }
}

fn client(server: &MockServer) -> CalCom {
    let account = CalcomAccount { base_url: server.uri(), api_key: "cal_live_key".into(), event_type_id: 1837761 };
    CalCom::new(
        &account,
        RetryPolicy { retries: 1, backoff: Duration::from_millis(5), max_wait: Duration::from_secs(1), timeout: Duration::from_secs(5) },
    )
}

#[tokio::test]
async fn a_booking_is_posted_as_cal_com_defines_it_and_its_answer_read_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("authorization", "Bearer cal_live_key"))
        .and(header("cal-api-version", "2024-08-13"))
        .and(body_json(json!({
            "start": "2026-11-24T20:00:00.000Z",
            "eventTypeId": 1837761,
            "attendee": { "name": "Ada Lovelace", "email": "ada@example.com", "timeZone": "America/New_York", "phoneNumber": "+14155550123" }
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "status": "success",
            "data": {
                "id": 123, "uid": "bk_8cJ2", "title": "Consultation between Acme and Ada Lovelace", "status": "accepted",
                "start": "2026-11-24T20:00:00.000Z", "end": "2026-11-24T20:30:00.000Z", "duration": 30, "eventTypeId": 1837761,
                "attendees": [{ "name": "Ada Lovelace", "email": "ada@example.com", "timeZone": "America/New_York" }]
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let booked = client(&server).book(&booking()).await.unwrap();
    assert_eq!(booked.uid, "bk_8cJ2");
    assert_eq!(booked.start, Utc.with_ymd_and_hms(2026, 11, 24, 20, 0, 0).unwrap());
    assert_eq!(booked.status, "accepted");
}

#[tokio::test]
async fn a_refused_booking_says_why_in_cal_coms_words() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error",
            "timestamp": "2026-11-21T12:00:00.000Z",
            "path": "/v2/bookings",
            "error": { "code": "BadRequestException", "message": "User either already has booking at this time or is not available" }
        })))
        .expect(1)
        .mount(&server)
        .await;
    match client(&server).book(&booking()).await {
        Err(ProviderError::Refused { status: 400, message, .. }) => assert!(message.contains("not available"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_without_a_booking_is_a_protocol_error_and_an_outage_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "status": "success", "data": {} })))
        .expect(1)
        .mount(&server)
        .await;
    assert!(matches!(client(&server).book(&booking()).await, Err(ProviderError::Protocol { .. })));
}

#[test]
fn the_key_stays_out_of_debug_output() {
    let account = CalcomAccount { base_url: CalcomAccount::BASE_URL.into(), api_key: "cal_live_secret".into(), event_type_id: 1 };
    assert!(!format!("{account:?}").contains("cal_live_secret"));
}
