//! The generic CRM webhook: a finished call POSTed as JSON to the organisation's URL, signed
//! `X-Outdial-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` with an
//! `Idempotency-Key` (PROTOCOLS.md). The URL is the organisation's to choose, so it is checked at
//! send time: `https`, and every address its host resolves to public (no loopback, private,
//! link-local, metadata or other special ranges), checked again by the resolver the connection
//! is made from (so DNS rebinding cannot slip past), and redirects are not followed.

use super::{CrmError, CrmSink, Delivery};
use crate::Secret;
use chrono::{DateTime, Utc};
use domain::crm::{CrmStep, StepDone};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// The signature header's value for `body` sent at `at`.
pub fn signature(secret: &str, at: DateTime<Utc>, body: &[u8]) -> String {
    let t = at.timestamp();
    format!("t={t},v1={}", crate::hmac_sha256_hex(secret, &[t.to_string().as_bytes(), b".", body]))
}

/// Why a delivery did not happen, or what the receiver answered instead of 2xx.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// The URL is not one outdial sends to: lasting, not worth a retry.
    #[error("the webhook URL is refused: {0}")]
    Unsafe(String),
    /// 4xx other than 429: the receiver will not take it as it is.
    #[error("the receiver refused the delivery ({status}): {body}")]
    Refused { status: u16, body: String },
    /// 429: send again after `retry_after` (when the receiver said).
    #[error("the receiver is rate-limiting deliveries (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, 3xx (redirects are not followed), timeouts and connection failures.
    #[error("the receiver is unavailable: {0}")]
    Unavailable(String),
}

impl WebhookError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable(_))
    }
}

/// Where deliveries may go: public `https` addresses only, unless `allow_private`
/// (`OUTDIAL_CRM_ALLOW_PRIVATE=true`, for local testing: unsafe in production).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow_private: bool,
}

/// Resolves like the system does, then refuses a host with any address that is not public: the
/// connection goes to the addresses checked here, so a name that answers differently the second
/// time (DNS rebinding) cannot reach inside.
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(format!("{host} resolves to {}, which is not a public address", private.ip()).into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl OutboundPolicy {
    /// One client per policy for the whole process (building one costs milliseconds of TLS set-up):
    /// redirects never followed, and unless private addresses are allowed, only public ones connected to.
    fn client(&self) -> &'static reqwest::Client {
        static PUBLIC: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        static ANY: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        let build = |public_only: bool| {
            let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            let builder = if public_only { builder.dns_resolver(std::sync::Arc::new(PublicAddressesOnly)) } else { builder };
            builder.build().expect("a TLS backend is compiled in")
        };
        if self.allow_private { ANY.get_or_init(|| build(false)) } else { PUBLIC.get_or_init(|| build(true)) }
    }

    /// Whether `url` may be sent to, resolving its host now: a refusal here is lasting
    /// (`Unsafe`), where one by the resolver at connect time would look like a network failure.
    pub async fn check(&self, url: &str) -> Result<(), WebhookError> {
        domain::crm::webhook_url(url, self.allow_private).map_err(WebhookError::Unsafe)?;
        let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::Unsafe(format!("{url:?} is not a URL: {e}")))?;
        let host = parsed.host_str().ok_or_else(|| WebhookError::Unsafe(format!("{url} has no host")))?.to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| WebhookError::Unavailable(format!("{host} does not resolve: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(WebhookError::Unavailable(format!("{host} resolves to no address")));
        }
        if !self.allow_private
            && let Some(private) = addresses.iter().find(|a| !is_public(a.ip()))
        {
            return Err(WebhookError::Unsafe(format!("{host} resolves to {}, which is not a public address", private.ip())));
        }
        Ok(())
    }

    /// POSTs `body` to `url` signed with `secret`, once; the receiver's status on 2xx.
    pub async fn deliver(
        &self,
        url: &str,
        secret: &str,
        idempotency_key: &str,
        body: &[u8],
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<u16, WebhookError> {
        self.check(url).await?;
        let sent = self
            .client()
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("x-outdial-signature", signature(secret, now, body))
            .header("idempotency-key", idempotency_key)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| WebhookError::Unavailable(if e.is_timeout() { "timed out".into() } else { format!("connection failed: {e}") }))?;
        let status = sent.status();
        let retry_after = sent
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text: String = sent.text().await.unwrap_or_default().chars().take(500).collect();
        match status.as_u16() {
            200..=299 => Ok(status.as_u16()),
            429 => Err(WebhookError::RateLimited { retry_after }),
            300..=399 => Err(WebhookError::Unavailable(format!("the receiver redirected ({status}); redirects are not followed"))),
            400..=499 => Err(WebhookError::Refused { status: status.as_u16(), body: text }),
            _ => Err(WebhookError::Unavailable(format!("the receiver failed ({status}): {text}"))),
        }
    }
}

/// A connection's webhook: the finished call as JSON, signed with the connection's secret.
#[derive(Clone, Debug)]
pub struct SignedWebhook {
    pub url: String,
    pub secret: Secret,
    pub connection_id: String,
    pub outbound: OutboundPolicy,
    pub timeout: Duration,
}

impl SignedWebhook {
    async fn post(&self, body: &serde_json::Value, key: &str, now: DateTime<Utc>) -> Result<u16, CrmError> {
        let bytes = serde_json::to_vec(body).expect("JSON values serialise");
        Ok(self.outbound.deliver(&self.url, self.secret.expose(), key, &bytes, now, self.timeout).await?)
    }
}

impl CrmSink for SignedWebhook {
    async fn perform(&self, step: CrmStep, delivery: Delivery<'_>) -> Result<StepDone, CrmError> {
        if step != CrmStep::PostWebhook {
            return Err(CrmError::NoSuchStep { target: "webhook", step });
        }
        let body = serde_json::to_value(delivery.record).expect("a finished call serialises");
        self.post(&body, delivery.idempotency_key, delivery.now).await?;
        Ok(StepDone::Posted)
    }

    /// A signed `connection.test` event, which receivers should answer 2xx and otherwise ignore.
    async fn test(&self, now: DateTime<Utc>) -> Result<String, CrmError> {
        let body = serde_json::json!({"type": "connection.test", "connectionId": self.connection_id, "sentAt": now});
        let status = self.post(&body, &format!("test:{}:{}", self.connection_id, now.timestamp_millis()), now).await?;
        Ok(format!("the receiver answered {status}"))
    }
}

/// Not loopback, private, link-local (cloud metadata), shared, documentation, benchmarking,
/// multicast, reserved or unspecified; IPv4 inside IPv6 is judged as IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0064 && s[1] == 0xff9b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_resolver_connections_are_made_from_refuses_private_answers() {
        use reqwest::dns::Resolve;
        let refused = PublicAddressesOnly.resolve("localhost".parse().unwrap()).await.err().map(|e| e.to_string());
        assert!(refused.as_deref().is_some_and(|e| e.contains("not a public address")), "{refused:?}");
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
