//! Webhook signatures, checked before anything else is read: Twilio's `X-Twilio-Signature`,
//! ElevenLabs' `ElevenLabs-Signature`, Vapi's secret / bearer / HMAC, Retell's
//! `X-Retell-Signature`. Every comparison is constant-time.

use chrono::{DateTime, TimeDelta, Utc};
use subtle::ConstantTimeEq;

/// How old (or how far ahead) an ElevenLabs signature's timestamp may be.
pub const ELEVENLABS_TOLERANCE: TimeDelta = TimeDelta::minutes(30);
/// How old (or how far ahead) a Retell signature's timestamp may be.
pub const RETELL_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// Why a webhook was refused before anything was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request has no {0} header; only the provider's signed webhooks are accepted")]
    Missing(&'static str),
    #[error("the {0} header does not match the body: the request was not signed with this deployment's secret or was changed on the way")]
    Invalid(&'static str),
    #[error("the {0} header is too old (or ahead of our clock): replays are refused")]
    Stale(&'static str),
    #[error("webhooks of this provider cannot be verified: set {0}")]
    NotConfigured(&'static str),
}

/// How long after the dial a stream's token is good: the ring, Twilio's queue, and a margin.
pub const STREAM_TOKEN_LIFETIME: TimeDelta = TimeDelta::minutes(30);

/// The per-call token a Twilio call's TwiML carries to the media bridge (`<Parameter name="token">`):
/// `<expiry unix seconds>.<hex HMAC-SHA256(secret, "outdial-stream|v1|<call id>|<org id>|<expiry>")>`.
/// The upgrade's signature is the same for every call; this binds the stream to one call.
pub fn stream_token(secret: &str, call: domain::CallId, org: domain::OrgId, expires: DateTime<Utc>) -> String {
    let expiry = expires.timestamp();
    format!("{expiry}.{}", stream_mac(secret, call, org, expiry))
}

/// Checks a stream's token against the ids its `start` names.
pub fn verify_stream_token(
    secret: &str,
    token: Option<&str>,
    call: domain::CallId,
    org: domain::OrgId,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    const PARAMETER: &str = "stream token";
    let (expiry, mac) = token.ok_or(Refusal::Missing(PARAMETER))?.split_once('.').ok_or(Refusal::Invalid(PARAMETER))?;
    let expiry: i64 = expiry.parse().map_err(|_| Refusal::Invalid(PARAMETER))?;
    let expected = stream_mac(secret, call, org, expiry);
    if !bool::from(mac.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(Refusal::Invalid(PARAMETER));
    }
    if now.timestamp() > expiry { Err(Refusal::Stale(PARAMETER)) } else { Ok(()) }
}

fn stream_mac(secret: &str, call: domain::CallId, org: domain::OrgId, expiry: i64) -> String {
    crate::hmac_sha256_hex(secret, &[format!("outdial-stream|v1|{call}|{org}|{expiry}").as_bytes()])
}

/// `X-Twilio-Signature`: base64 HMAC-SHA1 of the full URL Twilio requested and the sorted form
/// parameters (see `providers::twilio::signature`).
pub fn twilio(auth_token: &str, url: &str, params: &[(String, String)], header: Option<&str>) -> Result<(), Refusal> {
    use base64::Engine;
    const HEADER: &str = "X-Twilio-Signature";
    let header = header.ok_or(Refusal::Missing(HEADER))?;
    let expected = crate::twilio::signature(auth_token, url, params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (Ok(given), Ok(expected)) =
        (base64::engine::general_purpose::STANDARD.decode(header.trim()), base64::engine::general_purpose::STANDARD.decode(expected))
    else {
        return Err(Refusal::Invalid(HEADER));
    };
    if bool::from(given.ct_eq(&expected)) { Ok(()) } else { Err(Refusal::Invalid(HEADER)) }
}

/// `ElevenLabs-Signature: t=<unix seconds>,v0=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn elevenlabs(secret: &str, header: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<(), Refusal> {
    const HEADER: &str = "ElevenLabs-Signature";
    let header = header.ok_or(Refusal::Missing(HEADER))?;
    let (Some(t), Some(v0)) = (field(header, "t"), field(header, "v0")) else { return Err(Refusal::Invalid(HEADER)) };
    let at = t.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)).ok_or(Refusal::Invalid(HEADER))?;
    let expected = crate::elevenlabs::webhook_signature(secret, body, at);
    same_hex(field(&expected, "v0"), v0, HEADER)?;
    fresh(at, now, ELEVENLABS_TOLERANCE, HEADER)
}

/// `X-Retell-Signature: v=<unix ms>,d=<hex HMAC-SHA256(api key, body + timestamp)>`.
pub fn retell(api_key: &str, header: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<(), Refusal> {
    const HEADER: &str = "X-Retell-Signature";
    let header = header.ok_or(Refusal::Missing(HEADER))?;
    let (Some(v), Some(d)) = (field(header, "v"), field(header, "d")) else { return Err(Refusal::Invalid(HEADER)) };
    let at = v.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis).ok_or(Refusal::Invalid(HEADER))?;
    let expected = crate::retell::webhook_signature(api_key, body, at);
    same_hex(field(&expected, "d"), d, HEADER)?;
    fresh(at, now, RETELL_TOLERANCE, HEADER)
}

/// Vapi: the configured HMAC when there is one, else the shared secret in either header.
/// `secret` is `VAPI_WEBHOOK_SECRET`, `hmac_secret` is `VAPI_WEBHOOK_HMAC_SECRET`.
pub fn vapi(secret: Option<&str>, hmac_secret: Option<&str>, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = hmac_secret {
        const HEADER: &str = "x-vapi-signature";
        let given = header(HEADER).ok_or(Refusal::Missing(HEADER))?;
        let expected = crate::vapi::webhook_signature(key, body);
        return same_hex(Some(&expected), given.trim_start_matches("sha256="), HEADER);
    }
    let secret = secret.ok_or(Refusal::NotConfigured("VAPI_WEBHOOK_SECRET (or VAPI_WEBHOOK_HMAC_SECRET)"))?;
    let given = header("x-vapi-secret")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .ok_or(Refusal::Missing("X-Vapi-Secret (or Authorization: Bearer)"))?;
    if bool::from(given.as_bytes().ct_eq(secret.as_bytes())) { Ok(()) } else { Err(Refusal::Invalid("X-Vapi-Secret")) }
}

/// `name=value` out of a comma-separated header.
fn field<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(',').filter_map(|part| part.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Compares two hex digests in constant time.
fn same_hex(expected: Option<&str>, given: &str, header: &'static str) -> Result<(), Refusal> {
    let (Some(Ok(expected)), Ok(given)) = (expected.map(hex::decode), hex::decode(given.trim())) else {
        return Err(Refusal::Invalid(header));
    };
    if bool::from(expected.ct_eq(&given)) { Ok(()) } else { Err(Refusal::Invalid(header)) }
}

fn fresh(at: DateTime<Utc>, now: DateTime<Utc>, tolerance: TimeDelta, header: &'static str) -> Result<(), Refusal> {
    if (now - at).abs() > tolerance { Err(Refusal::Stale(header)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The public test vector of PROTOCOLS.md (and Twilio's own, which signs +12349013030).
    #[test]
    fn twilio_public_test_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let vector = |caller| {
            params(&[("CallSid", "CA1234567890ABCDE"), ("Caller", caller), ("Digits", "1234"), ("From", caller), ("To", "+18005551212")])
        };
        assert_eq!(twilio("12345", url, &vector("+12349013030"), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), Ok(()));
        assert_eq!(twilio("12345", url, &vector("+14158675310"), Some("GvWf1cFY/Q7PnoempGyD5oXAezc=")), Ok(()));
        let refused = Err(Refusal::Invalid("X-Twilio-Signature"));
        assert_eq!(twilio("12345", url, &vector("+14158675310"), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), refused, "a changed param");
        assert_eq!(twilio("54321", url, &vector("+12349013030"), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), refused, "another token");
        assert_eq!(
            twilio("12345", "https://mycompany.com/myapp.php", &vector("+12349013030"), Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            refused
        );
        assert_eq!(twilio("12345", url, &vector("+12349013030"), Some("not base64!")), refused);
        assert_eq!(twilio("12345", url, &vector("+12349013030"), None), Err(Refusal::Missing("X-Twilio-Signature")));
    }

    #[test]
    fn elevenlabs_signatures_expire_after_30_minutes() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let body = br#"{"type":"post_call_transcription"}"#;
        let header = crate::elevenlabs::webhook_signature("wsec_1", body, at);
        assert_eq!(elevenlabs("wsec_1", Some(&header), body, at + TimeDelta::minutes(29)), Ok(()));
        let stale = Err(Refusal::Stale("ElevenLabs-Signature"));
        assert_eq!(elevenlabs("wsec_1", Some(&header), body, at + TimeDelta::minutes(31)), stale);
        assert_eq!(elevenlabs("wsec_1", Some(&header), body, at - TimeDelta::minutes(31)), stale);
        let invalid = Err(Refusal::Invalid("ElevenLabs-Signature"));
        assert_eq!(elevenlabs("wsec_2", Some(&header), body, at), invalid);
        assert_eq!(elevenlabs("wsec_1", Some(&header), br#"{"type":"post_call_audio"}"#, at), invalid);
        assert_eq!(elevenlabs("wsec_1", Some("v0=00"), body, at), invalid);
        assert_eq!(elevenlabs("wsec_1", None, body, at), Err(Refusal::Missing("ElevenLabs-Signature")));
    }

    #[test]
    fn retell_signatures_expire_after_5_minutes() {
        let at = DateTime::from_timestamp_millis(1_800_000_000_123).unwrap();
        let body = br#"{"event":"call_ended"}"#;
        let header = crate::retell::webhook_signature("key_1", body, at);
        assert_eq!(retell("key_1", Some(&header), body, at + TimeDelta::minutes(4)), Ok(()));
        assert_eq!(retell("key_1", Some(&header), body, at + TimeDelta::minutes(6)), Err(Refusal::Stale("X-Retell-Signature")));
        assert_eq!(retell("key_2", Some(&header), body, at), Err(Refusal::Invalid("X-Retell-Signature")));
        assert_eq!(retell("key_1", Some(&header), br#"{"event":"call_started"}"#, at), Err(Refusal::Invalid("X-Retell-Signature")));
    }

    #[test]
    fn vapi_takes_its_secret_in_either_header_or_an_hmac() {
        use reqwest::header::HeaderMap;
        let with = |name: &'static str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            h
        };
        let secret = |h: &HeaderMap| vapi(Some("vsec"), None, h, b"{}");
        assert_eq!(secret(&with("x-vapi-secret", "vsec")), Ok(()));
        assert_eq!(secret(&with("authorization", "Bearer vsec")), Ok(()));
        assert_eq!(secret(&with("x-vapi-secret", "vsex")), Err(Refusal::Invalid("X-Vapi-Secret")));
        assert!(matches!(secret(&HeaderMap::new()), Err(Refusal::Missing(_))));
        assert!(matches!(vapi(None, None, &with("x-vapi-secret", "vsec"), b"{}"), Err(Refusal::NotConfigured(_))));
        let signature = crate::vapi::webhook_signature("hkey", b"{\"a\":1}");
        let hmac = |h: &HeaderMap, body: &[u8]| vapi(Some("vsec"), Some("hkey"), h, body);
        assert_eq!(hmac(&with("x-vapi-signature", &signature), b"{\"a\":1}"), Ok(()));
        assert_eq!(hmac(&with("x-vapi-signature", &signature), b"{\"a\":2}"), Err(Refusal::Invalid("x-vapi-signature")));
        assert!(
            matches!(hmac(&with("x-vapi-secret", "vsec"), b"{}"), Err(Refusal::Missing(_))),
            "with HMAC configured the secret alone is not enough"
        );
    }
}
