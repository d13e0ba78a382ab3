//! The generic CRM webhook: signed as PROTOCOLS.md says (checked by a receiver written here from
//! the protocol, not with our signing code), sent only to public https addresses, never redirected.

use chrono::Utc;
use hmac::Mac;
use providers::crm::webhook::{OutboundPolicy, WebhookError};
use std::time::Duration;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

const SECRET: &str = "whsec_test";

/// A receiver as the README tells one to write it: split `t` and `v1`, HMAC-SHA256 of "t.body",
/// constant-time compare, and a timestamp no older than 5 minutes.
fn receiver_accepts(header: &str, body: &[u8]) -> bool {
    let mut parts = header.split(',').filter_map(|p| p.split_once('='));
    let (Some(("t", t)), Some(("v1", v1))) = (parts.next(), parts.next()) else { return false };
    let Ok(t) = t.parse::<i64>() else { return false };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let fresh = (Utc::now().timestamp() - t).abs() <= 300;
    fresh && hex::decode(v1).is_ok_and(|given| mac.verify_slice(&given).is_ok())
}

#[tokio::test]
async fn deliveries_are_signed_and_carry_their_idempotency_key() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(202)).mount(&receiver).await;
    let local = OutboundPolicy { allow_private: true };
    let body = br#"{"call":{"id":"c1"}}"#;
    let status = local.deliver(&format!("{}/outdial", receiver.uri()), SECRET, "c1:conn1", body, Utc::now(), Duration::from_secs(5)).await;
    assert_eq!(status, Ok(202));
    let got = &receiver.received_requests().await.unwrap()[0];
    assert_eq!((got.url.path(), got.body.as_slice()), ("/outdial", &body[..]));
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["idempotency-key"], "c1:conn1");
    assert!(receiver_accepts(got.headers["x-outdial-signature"].to_str().unwrap(), &got.body), "an independent receiver verifies it");
    assert!(!receiver_accepts(got.headers["x-outdial-signature"].to_str().unwrap(), b"{}"), "and refuses another body");
}

#[tokio::test]
async fn loopback_private_metadata_and_plain_http_are_refused_before_anything_is_sent() {
    let receiver = MockServer::start().await;
    let port = receiver.address().port();
    let public_only = OutboundPolicy::default();
    for url in [
        format!("https://127.0.0.1:{port}/x"),
        "https://10.0.0.1/x".to_string(),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        format!("https://localhost:{port}/x"),
        "https://[::1]/x".to_string(),
        "http://example.com/x".to_string(),
    ] {
        let refused = public_only.deliver(&url, SECRET, "k", b"{}", Utc::now(), Duration::from_secs(2)).await;
        assert!(matches!(refused, Err(WebhookError::Unsafe(_))), "{url}: {refused:?}");
    }
    assert!(receiver.received_requests().await.unwrap().is_empty(), "nothing reached the loopback receiver");
}

#[tokio::test]
async fn redirects_are_not_followed_and_answers_are_classified() {
    let receiver = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/moved"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{}/x", elsewhere.uri())))
        .mount(&receiver)
        .await;
    Mock::given(wiremock::matchers::path("/busy"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&receiver)
        .await;
    Mock::given(wiremock::matchers::path("/bad"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no such customer"))
        .mount(&receiver)
        .await;
    Mock::given(wiremock::matchers::path("/down")).respond_with(ResponseTemplate::new(503)).mount(&receiver).await;
    let local = OutboundPolicy { allow_private: true };
    let send = |path: &str| {
        let url = format!("{}{path}", receiver.uri());
        async move { local.deliver(&url, SECRET, "k", b"{}", Utc::now(), Duration::from_secs(5)).await }
    };
    assert!(matches!(send("/moved").await, Err(WebhookError::Unavailable(why)) if why.contains("redirect")));
    assert!(elsewhere.received_requests().await.unwrap().is_empty(), "the redirect was not followed");
    assert_eq!(send("/busy").await, Err(WebhookError::RateLimited { retry_after: Some(Duration::from_secs(7)) }));
    assert_eq!(send("/bad").await, Err(WebhookError::Refused { status: 400, body: "no such customer".into() }));
    let down = send("/down").await.unwrap_err();
    assert!(down.is_transient() && !WebhookError::Unsafe("x".into()).is_transient(), "{down:?}");
}
