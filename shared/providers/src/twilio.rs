//! Twilio Programmable Voice: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (form body,
//! Basic auth) with TwiML that connects the answered call to the media bridge, status, AMD and
//! recording callbacks to our webhooks; hang-up by `Status=completed`; `X-Twilio-Signature`.

use crate::{
    CallProvider, CallRequest, ProviderError, RetryPolicy, TwilioAccount,
    http::{ApiClient, Body, Credential},
};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::Value;

const PROVIDER: &str = "twilio";

/// Where Twilio reaches us: the public base URL of the webhooks and the media bridge's `wss://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwilioEndpoints {
    /// e.g. `https://abc.lambda-url.us-east-1.on.aws` (`OUTDIAL_PUBLIC_URL`).
    pub public_url: String,
    /// e.g. `wss://bridge.example.com/media` (`OUTDIAL_BRIDGE_URL`).
    pub bridge_url: String,
}

#[derive(Clone, Debug)]
pub struct Twilio {
    api: ApiClient,
    account_sid: String,
    /// Signs each call's stream token (the bridge checks it with the same token).
    auth_token: crate::Secret,
    endpoints: TwilioEndpoints,
}

impl Twilio {
    pub fn new(account: &TwilioAccount, endpoints: TwilioEndpoints, retry: RetryPolicy) -> Self {
        let credential = Credential::Basic { user: account.account_sid.clone(), password: account.auth_token.clone() };
        Self {
            api: ApiClient::new(PROVIDER, &account.base_url, credential, retry),
            account_sid: account.account_sid.clone(),
            auth_token: account.auth_token.clone(),
            endpoints,
        }
    }

    fn calls_path(&self) -> String {
        format!("/2010-04-01/Accounts/{}/Calls", self.account_sid)
    }

    /// Our callback URL for `path`, carrying our call id so callbacks find the call even before
    /// its CallSid is stored (the signature covers the query).
    fn webhook(&self, path: &str, call: &CallRequest) -> String {
        format!("{}/webhooks/twilio/{path}?callId={}", self.endpoints.public_url.trim_end_matches('/'), call.call_id)
    }

    /// The form fields of a Calls.json create, in the order they are sent.
    pub fn call_form(&self, call: &CallRequest) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("To", call.to.as_str().to_string()),
            ("From", call.from.as_str().to_string()),
            ("Twiml", stream_twiml(&self.endpoints.bridge_url, call, &self.stream_token(call, chrono::Utc::now()))),
            ("StatusCallback", self.webhook("status", call)),
            ("StatusCallbackMethod", "POST".into()),
        ];
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.push(("StatusCallbackEvent", event.into()));
        }
        // the answering-machine action (hang up or leave a message) is taken on machine_end_*
        form.extend([
            ("MachineDetection", "DetectMessageEnd".to_string()),
            ("AsyncAmd", "true".into()),
            ("AsyncAmdStatusCallback", self.webhook("amd", call)),
            ("AsyncAmdStatusCallbackMethod", "POST".into()),
            ("Timeout", call.ring_seconds.to_string()),
            ("TimeLimit", call.max_call_seconds.to_string()),
        ]);
        if call.recording {
            form.extend([
                ("Record", "true".into()),
                ("RecordingChannels", "dual".into()),
                ("RecordingStatusCallback", self.webhook("recording", call)),
                ("RecordingStatusCallbackEvent", "completed".into()),
            ]);
        }
        form
    }

    /// The token the call's stream carries to the bridge, good for `STREAM_TOKEN_LIFETIME` from `now`.
    pub fn stream_token(&self, call: &CallRequest, now: DateTime<Utc>) -> String {
        let expires = now + chrono::TimeDelta::seconds(call.ring_seconds.into()) + crate::signatures::STREAM_TOKEN_LIFETIME;
        crate::signatures::stream_token(self.auth_token.expose(), call.call_id, call.org_id, expires)
    }

    /// Ends a live call (`Status=completed`).
    /// The call's state as Twilio has it: `GET …/Calls/{CallSid}.json` → `status`.
    pub async fn call_state(&self, call_sid: &str) -> Result<domain::provider_status::ProviderCallState, ProviderError> {
        let path = format!("{}/{call_sid}.json", self.calls_path());
        let call = self.api.send(Method::GET, &path, Body::Empty, &format!("call {call_sid}")).await?;
        let status = call.get("status").and_then(Value::as_str).unwrap_or_default();
        domain::provider_status::twilio(status).ok_or_else(|| crate::calls::missing_id(PROVIDER, "a known status"))
    }

    pub async fn hang_up(&self, call_sid: &str) -> Result<(), ProviderError> {
        self.update_call(call_sid, &[("Status", "completed".to_string())]).await
    }

    /// Replaces what a live call is doing (its stream to the assistant) with the voicemail
    /// message spoken after the beep, then hangs up.
    pub async fn leave_voicemail(&self, call_sid: &str, message: &str) -> Result<(), ProviderError> {
        let twiml = format!("<Response><Say>{}</Say><Hangup/></Response>", xml_escape(message));
        self.update_call(call_sid, &[("Twiml", twiml)]).await
    }

    async fn update_call(&self, call_sid: &str, form: &[(&'static str, String)]) -> Result<(), ProviderError> {
        let path = format!("{}/{call_sid}.json", self.calls_path());
        self.api.send(Method::POST, &path, Body::Form(form), &format!("call {call_sid}")).await.map(drop)
    }
}

/// What the Twilio account may call from: its own numbers and its verified caller IDs.
#[derive(Clone, Debug)]
pub struct TwilioNumbers {
    api: ApiClient,
    account_sid: String,
}

impl TwilioNumbers {
    pub fn new(account: &TwilioAccount, retry: RetryPolicy) -> Self {
        let credential = Credential::Basic { user: account.account_sid.clone(), password: account.auth_token.clone() };
        Self { api: ApiClient::new(PROVIDER, &account.base_url, credential, retry), account_sid: account.account_sid.clone() }
    }

    /// Whether the account owns `phone` (`IncomingPhoneNumbers`) or has verified it (`OutgoingCallerIds`).
    pub async fn holds(&self, phone: &domain::E164) -> Result<bool, ProviderError> {
        let query = [("PhoneNumber", phone.as_str().to_string())];
        for (resource, list) in [("IncomingPhoneNumbers", "incoming_phone_numbers"), ("OutgoingCallerIds", "outgoing_caller_ids")] {
            let path = format!("/2010-04-01/Accounts/{}/{resource}.json", self.account_sid);
            let answer = self.api.send(Method::GET, &path, Body::Query(&query), &format!("account {}", self.account_sid)).await?;
            let numbers = answer.get(list).and_then(Value::as_array).ok_or_else(|| crate::calls::missing_id(PROVIDER, list))?;
            if numbers.iter().any(|n| n.get("phone_number").and_then(Value::as_str) == Some(phone.as_str())) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl CallProvider for Twilio {
    async fn place_call(&self, call: &CallRequest) -> Result<String, ProviderError> {
        let form = self.call_form(call);
        let path = format!("{}.json", self.calls_path());
        let answer = self.api.send(Method::POST, &path, Body::Form(&form), &format!("account {}", self.account_sid)).await?;
        answer.get("sid").and_then(Value::as_str).map(str::to_string).ok_or_else(|| crate::calls::missing_id(PROVIDER, "sid"))
    }

    /// `GET …/Calls.json?To=&StartTime>=&PageSize=20`: calls to the number from our caller ID
    /// created since the dial began (a few seconds of clock skew allowed).
    /// Calls Twilio started for the number since the dial began, and those it still holds queued
    /// (a queued call has no start time, so a `StartTime` list leaves it out). Nothing found while
    /// the account has calls queued settles nothing: one of them may be this one, not yet listed.
    async fn find_placed_call(&self, call: &CallRequest, since: DateTime<Utc>) -> Result<Vec<String>, ProviderError> {
        let to = call.to.as_str();
        let (number, page) = (|| ("To", to.to_string()), || ("PageSize", "20".to_string()));
        let started = self.list_calls(&[number(), ("StartTime>", since.format("%Y-%m-%d").to_string()), page()]).await?;
        let queued = self.list_calls(&[number(), ("Status", "queued".into()), page()]).await?;
        let earliest = since - chrono::TimeDelta::seconds(5);
        let mut found: Vec<(DateTime<Utc>, String)> = started
            .iter()
            .chain(&queued)
            .filter(|c| c.get("to").and_then(Value::as_str) == Some(to))
            .filter(|c| c.get("from").and_then(Value::as_str) == Some(call.from.as_str()))
            .filter_map(|c| {
                let created = DateTime::parse_from_rfc2822(c.get("date_created")?.as_str()?).ok()?.with_timezone(&Utc);
                Some((created, c.get("sid")?.as_str()?.to_string())).filter(|(at, _)| *at >= earliest)
            })
            .collect();
        found.sort();
        found.dedup_by(|a, b| a.1 == b.1);
        if found.is_empty() && !self.list_calls(&[("Status", "queued".into()), ("PageSize", "1".into())]).await?.is_empty() {
            return Err(ProviderError::Undecided {
                provider: PROVIDER,
                detail: "no call to the number is listed, but the account has calls queued that may include it".into(),
            });
        }
        Ok(found.into_iter().map(|(_, sid)| sid).collect())
    }
}

impl Twilio {
    /// `GET …/Calls.json` filtered by `query`: the page's calls.
    async fn list_calls(&self, query: &[(&'static str, String)]) -> Result<Vec<Value>, ProviderError> {
        let path = format!("{}.json", self.calls_path());
        let mut answer = self.api.send(Method::GET, &path, Body::Query(query), &format!("account {}", self.account_sid)).await?;
        match answer.get_mut("calls").map(Value::take) {
            Some(Value::Array(calls)) => Ok(calls),
            _ => Err(crate::calls::missing_id(PROVIDER, "calls list")),
        }
    }
}

/// `<Connect><Stream>` to the bridge; ids and the call's stream token travel as `<Parameter>`s
/// (a stream URL takes no query).
pub fn stream_twiml(bridge_url: &str, call: &CallRequest, token: &str) -> String {
    let parameters: String = [
        ("orgId", call.org_id.to_string()),
        ("campaignId", call.campaign_id.to_string()),
        ("callId", call.call_id.to_string()),
        ("contactId", call.contact_id.to_string()),
        ("token", token.to_string()),
    ]
    .iter()
    .map(|(name, value)| format!(r#"<Parameter name="{name}" value="{}"/>"#, xml_escape(value)))
    .collect();
    format!(r#"<Response><Connect><Stream url="{}">{parameters}</Stream></Connect></Response>"#, xml_escape(bridge_url))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + each POST parameter, sorted by name,
/// as name + value)).
pub fn signature<'a>(auth_token: &str, url: &str, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use base64::Engine;
    let mut params: Vec<(&str, &str)> = params.into_iter().collect();
    params.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::signature;

    /// Twilio's published vector (twilio.com/docs/usage/security) signs Caller and From
    /// +12349013030; PROTOCOLS.md prints +14158675310 for them, which signs to GvWf1cFY….
    #[test]
    fn signature_matches_twilios_public_test_vector() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params =
            |caller| [("To", "+18005551212"), ("CallSid", "CA1234567890ABCDE"), ("Caller", caller), ("Digits", "1234"), ("From", caller)];
        assert_eq!(signature("12345", url, params("+12349013030")), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert_eq!(signature("12345", url, params("+14158675310")), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert_ne!(signature("12346", url, params("+12349013030")), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }
}
