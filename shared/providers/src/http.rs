//! The one HTTP client every provider uses: timeouts, retries with exponential backoff on 429,
//! 5xx and transport errors, and provider answers mapped to `ProviderError`.

use crate::ProviderError;
use crate::Secret;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// How hard to try before giving up on a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff; doubles on each retry.
    pub backoff: Duration,
    /// Longest wait a `Retry-After` may ask for before we give up instead.
    pub max_wait: Duration,
    pub timeout: Duration,
}

impl RetryPolicy {
    /// One attempt and no retry: for calls, whose retries the dial-jobs queue schedules.
    pub fn once() -> Self {
        Self { retries: 0, ..Self::default() }
    }
}

/// How long a provider request may take before it counts as unanswered (`OUTDIAL_PROVIDER_TIMEOUT_SECONDS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { retries: 3, backoff: Duration::from_millis(200), max_wait: Duration::from_secs(10), timeout: DEFAULT_TIMEOUT }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
    provider: &'static str,
    retry: RetryPolicy,
}

impl Http {
    /// Idle connections kept per provider host.
    pub const IDLE_CONNECTIONS: usize = 16;

    pub fn new(provider: &'static str, base: &str, retry: RetryPolicy) -> Self {
        // a burst of calls opens a connection each; only a few stay idle (each holds ~25 KiB)
        let client = reqwest::Client::builder()
            .timeout(retry.timeout)
            .pool_max_idle_per_host(Self::IDLE_CONNECTIONS)
            .build()
            .expect("a TLS backend is compiled in");
        Self { client, base: base.trim_end_matches('/').to_string(), provider, retry }
    }

    /// On the process's one client for APIs a sink is made for per delivery (the CRMs): building
    /// a client costs milliseconds of TLS set-up, and its connections are worth keeping.
    pub fn shared(provider: &'static str, base: &str, retry: RetryPolicy) -> Self {
        static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        let client = CLIENT.get_or_init(|| {
            reqwest::Client::builder().pool_max_idle_per_host(Self::IDLE_CONNECTIONS).build().expect("a TLS backend is compiled in")
        });
        Self { client: client.clone(), base: base.trim_end_matches('/').to_string(), provider, retry }
    }

    /// Sends the request (again on each retry; with `Resend::Never`, only while the provider
    /// provably did not act on it) and returns the JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        authorise: impl Fn(RequestBuilder) -> RequestBuilder,
        missing: &str,
        resend: Resend,
    ) -> Result<Value, ProviderError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut request = authorise(self.client.request(method.clone(), &url).timeout(self.retry.timeout));
            match body {
                Body::Empty => {}
                Body::Json(json) => request = request.json(json),
                Body::Form(fields) => request = request.form(fields),
                Body::Query(fields) => request = request.query(fields),
            }
            let (error, wait) = match request.send().await {
                // a connection never made carried nothing; any other failure may have come after the provider took it
                Err(e) => (ProviderError::Unavailable { provider: self.provider, detail: transport(&e), sent: !e.is_connect() }, None),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(if text.is_empty() { "null" } else { &text })
                            .map_err(|e| ProviderError::Protocol { provider: self.provider, detail: e.to_string() });
                    }
                    match status {
                        StatusCode::NOT_FOUND => return Err(ProviderError::NotFound { provider: self.provider, id: missing.to_string() }),
                        StatusCode::TOO_MANY_REQUESTS => (ProviderError::RateLimited { provider: self.provider, retry_after }, retry_after),
                        s if s.is_server_error() => {
                            let detail = format!("{s}: {}", reason(&text));
                            (ProviderError::Unavailable { provider: self.provider, detail, sent: true }, None)
                        }
                        s => return Err(ProviderError::Refused { provider: self.provider, status: s.as_u16(), message: reason(&text) }),
                    }
                }
            };
            let wait = wait.unwrap_or(self.retry.backoff * 2u32.saturating_pow(attempt));
            let unsafe_again = resend == Resend::Never && error.may_have_acted();
            if attempt >= self.retry.retries || wait > self.retry.max_wait || unsafe_again {
                return Err(error);
            }
            tracing::warn!(provider = self.provider, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying provider request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Whether a request the provider may have acted on is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Reads, upserts and requests the provider de-duplicates: sending twice does no harm.
    Safe,
    /// A create that could make a second record: a 5xx or a timeout ends the tries, and the caller
    /// looks for the record before creating it again.
    Never,
}

/// What a request carries.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Json(&'a Value),
    /// `application/x-www-form-urlencoded`; a key may repeat.
    Form(&'a [(&'static str, String)]),
    /// No body: the fields go in the URL's query string.
    Query(&'a [(&'static str, String)]),
}

impl<'a> From<Option<&'a Value>> for Body<'a> {
    fn from(json: Option<&'a Value>) -> Self {
        json.map_or(Body::Empty, Body::Json)
    }
}

/// How a provider wants its API key sent.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    Bearer(Secret),
    Header(&'static str, Secret),
    Basic { user: String, password: Secret },
}

/// A provider's HTTP API with its credential, which never appears in `Debug` output or logs.
#[derive(Clone, Debug)]
pub(crate) struct ApiClient {
    http: Http,
    credential: Credential,
    /// Sent with every request, e.g. the API version a provider's answers are read in.
    headers: Vec<(&'static str, &'static str)>,
}

impl ApiClient {
    pub fn new(provider: &'static str, base: &str, credential: Credential, retry: RetryPolicy) -> Self {
        Self { http: Http::new(provider, base, retry), credential, headers: Vec::new() }
    }

    /// Like `new`, on the process's shared client (see `Http::shared`).
    pub fn shared(provider: &'static str, base: &str, credential: Credential, retry: RetryPolicy) -> Self {
        Self { http: Http::shared(provider, base, retry), credential, headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `missing` names what a 404 means, e.g. "assistant asst_1".
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, missing: &str) -> Result<Value, ProviderError> {
        self.send(method, path, body.into(), missing).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Body<'_>, missing: &str) -> Result<Value, ProviderError> {
        self.send_with(method, path, body, missing, Resend::Safe).await
    }

    /// A `POST` creating what a second try could duplicate (see `Resend::Never`).
    pub async fn create(&self, path: &str, body: &Value, missing: &str) -> Result<Value, ProviderError> {
        self.send_with(Method::POST, path, Body::Json(body), missing, Resend::Never).await
    }

    async fn send_with(&self, method: Method, path: &str, body: Body<'_>, missing: &str, resend: Resend) -> Result<Value, ProviderError> {
        let authorise = |r: RequestBuilder| {
            let r = self.headers.iter().fold(r, |r, (name, value)| r.header(*name, *value));
            match &self.credential {
                Credential::Bearer(key) => r.bearer_auth(key.expose()),
                Credential::Header(name, key) => r.header(*name, key.expose()),
                Credential::Basic { user, password } => r.basic_auth(user, Some(password.expose())),
            }
        };
        self.http.json(method, path, body, authorise, missing, resend).await
    }
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() { "timed out".into() } else { format!("connection failed: {e}") }
}

/// The provider's own explanation, from the usual error fields, else the raw body.
fn reason(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<Value>(body) else { return body.chars().take(500).collect() };
    let field = ["message", "detail", "error"].iter().find_map(|k| json.get(*k)).unwrap_or(&json);
    // Twilio (and others) number their errors: keep the number, it is what their docs index
    let code = match json.get("code") {
        Some(Value::Number(n)) => format!("{n}: "),
        Some(Value::String(c)) => format!("{c}: "),
        _ => String::new(),
    };
    let text = match field {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join("; ")
        }
        Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| field.to_string()),
        other => other.to_string(),
    };
    code + &text
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn reasons_come_from_the_usual_fields() {
        assert_eq!(reason(r#"{"message":["name must be shorter"],"error":"Bad Request","statusCode":400}"#), "name must be shorter");
        assert_eq!(reason(r#"{"detail":{"status":"invalid","message":"voice_id not found"}}"#), "voice_id not found");
        assert_eq!(reason("plain text"), "plain text");
        assert_eq!(reason(r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#), "21211: Invalid 'To' Phone Number");
    }
}
