//! A world for the webhook tests: the router on a store, the tick run inline (as in Lambda),
//! Twilio as a wiremock server for hang-ups, and requests signed as each provider signs them.

#![allow(dead_code)]

use app::tick::Ticker;
use axum::{Router, body::Body, http::Request};
use chrono::{DateTime, Utc};
use domain::{
    CallId, CallProvider, CallingWindow, CampaignId, CampaignSettings, CampaignStatus, Cap, Day, E164, NewCampaign, NewContact, OrgId,
    RetryPolicy,
};
use http_body_util::BodyExt;
use platform::{CampaignScheduler, LocalQueue, LocalScheduler, Schedule, ScheduledRun, WebhookSecrets};
use serde_json::Value;
use std::time::Duration;
use store::{PlacedCall, Store};
use tower::ServiceExt;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

pub const PUBLIC_URL: &str = "https://hooks.example.com";
pub const TWILIO_TOKEN: &str = "tw-test-token";
pub const ELEVENLABS_SECRET: &str = "wsec_test";
pub const VAPI_SECRET: &str = "vapi-test-secret";
pub const RETELL_KEY: &str = "key_retell_test";

pub type Ticks<S> = Ticker<S, LocalScheduler, LocalQueue>;

pub struct World<S: Store> {
    pub app: Router,
    pub store: S,
    pub ticks: Ticks<S>,
    pub org: OrgId,
    pub twilio: MockServer,
    _fired: tokio::sync::mpsc::UnboundedReceiver<ScheduledRun>,
}

pub fn secrets() -> WebhookSecrets {
    WebhookSecrets {
        twilio_auth_token: Some(TWILIO_TOKEN.into()),
        elevenlabs: Some(ELEVENLABS_SECRET.into()),
        vapi_secret: Some(VAPI_SECRET.into()),
        vapi_hmac_secret: None,
        retell_api_key: Some(RETELL_KEY.into()),
    }
}

pub async fn world<S: Store>(store: S) -> World<S> {
    world_with(store, PUBLIC_URL, secrets()).await
}

/// A world reached at `public_url` (what Twilio signs) and verifying with `secrets`.
pub async fn world_with<S: Store>(store: S, public_url: &str, secrets: WebhookSecrets) -> World<S> {
    world_where(store, public_url, secrets, None).await
}

/// Tick requests noted instead of run: the test ticks when it wants.
#[derive(Clone, Default)]
pub struct NotedTicks(pub std::sync::Arc<std::sync::Mutex<Vec<(OrgId, CampaignId)>>>);

impl app::TickRequests for NotedTicks {
    async fn request_tick(&self, org: OrgId, campaign: CampaignId) {
        self.0.lock().unwrap().push((org, campaign));
    }
}

/// A world whose webhooks note tick requests in `noted` instead of running the tick inline.
pub async fn world_where<S: Store>(store: S, public_url: &str, secrets: WebhookSecrets, noted: Option<NotedTicks>) -> World<S> {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({ "sid": "CA0", "status": "completed" })))
        .mount(&twilio)
        .await;
    let uri = twilio.uri();
    let mut config = platform::testing::config(&[
        ("TWILIO_BASE_URL", &uri),
        ("TWILIO_ACCOUNT_SID", "AC123"),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
        ("OUTDIAL_PUBLIC_URL", public_url),
        ("OUTDIAL_BRIDGE_URL", "wss://bridge.example.com/media"),
    ]);
    config.webhooks = secrets;
    let (scheduler, fired) = LocalScheduler::new(Duration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(LocalQueue::DEFAULT_MAX_RECEIVES).unwrap();
    let ticks = Ticker::from_config(&config, store.clone(), scheduler, queue);
    let org = store.create_org("Acme").await.unwrap().id;
    let app = match noted {
        None => {
            webhooks::router().with_state(webhooks::WebhookState::from_config(&config, store.clone(), ticks.clone())).split_for_parts().0
        }
        Some(noted) => {
            webhooks::router().with_state(webhooks::WebhookState::from_config(&config, store.clone(), noted)).split_for_parts().0
        }
    };
    World { app, store, ticks, org, twilio, _fired: fired }
}

pub fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000), None).unwrap()
}

/// A zone where it is midday now: inside an all-day window and the federal calling hours.
pub fn open_zone() -> chrono_tz::Tz {
    platform::testing::midday_zone(Utc::now())
}

pub fn settings() -> CampaignSettings {
    CampaignSettings {
        provider: CallProvider::Twilio,
        calling_window: CallingWindow::parse(Day::ALL, "00:00", "23:59").unwrap(),
        retry_policy: RetryPolicy::parse(1, 0, []).unwrap(),
        ..Default::default()
    }
}

impl<S: Store> World<S> {
    /// A running campaign (with its tick schedule) over `n` contacts.
    pub async fn running(&self, cap: i64, settings: CampaignSettings, n: u64) -> domain::Campaign {
        let new = NewCampaign::parse("webhooks", Cap::parse(cap).unwrap(), settings).unwrap();
        let c = self.store.create_campaign(self.org, new).await.unwrap();
        let zone = open_zone();
        self.store
            .add_contacts(
                self.org,
                c.id,
                (0..n).map(|i| NewContact::new(phone(i), zone, domain::Consent::on_file(chrono::Utc::now()))).collect(),
                Utc::now(),
            )
            .await
            .unwrap();
        self.ticks.scheduler.create(self.org, c.id, Schedule::Ticks).await.unwrap();
        self.store.set_campaign_status(self.org, c.id, &[CampaignStatus::Draft], CampaignStatus::Running, Utc::now()).await.unwrap()
    }

    /// Runs a tick now; the calls it claimed, queued.
    pub async fn claim(&self, campaign: CampaignId) -> Vec<domain::Call> {
        app::tick::tick(&self.ticks, self.org, campaign, &uuid(), Utc::now()).await.unwrap();
        self.store.active_calls(self.org, campaign).await.unwrap().into_iter().filter(|c| c.provider_call_id.is_none()).collect()
    }

    /// Stores the provider's id as the dialer does, adopting any early events.
    pub async fn placed(&self, call: CallId, provider: CallProvider, provider_call_id: &str) {
        let placed = PlacedCall { provider, provider_call_id: provider_call_id.into(), caller_id: None, placed_at: Utc::now() };
        self.store.record_placed_call(self.org, call, placed).await.unwrap();
        store::adopt_orphan_events(&self.store, provider.reported_by(), provider_call_id, Utc::now()).await.unwrap();
    }

    pub async fn send(&self, request: Request<Body>) -> (u16, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
    }

    pub async fn twilio_requests(&self) -> Vec<Vec<(String, String)>> {
        self.twilio.received_requests().await.unwrap().iter().map(|r| serde_urlencoded::from_bytes(&r.body).unwrap()).collect()
    }
}

pub fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A Twilio form callback to `path`, signed for the public URL with `token`.
pub fn twilio_signed(path: &str, fields: &[(&str, String)], token: &str) -> Request<Body> {
    let signature = providers::twilio::signature(token, &format!("{PUBLIC_URL}{path}"), fields.iter().map(|(k, v)| (*k, v.as_str())));
    twilio_with(path, fields, Some(&signature))
}

pub fn twilio_with(path: &str, fields: &[(&str, String)], signature: Option<&str>) -> Request<Body> {
    let mut request = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    request.body(Body::from(serde_urlencoded::to_string(fields).unwrap())).unwrap()
}

pub fn twilio_status(sid: &str, sequence: u32, status: &str, at: DateTime<Utc>, duration: Option<u32>) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("CallSid", sid.to_string()),
        ("AccountSid", "AC123".to_string()),
        ("From", "+14155550100".to_string()),
        ("To", "+14155550199".to_string()),
        ("CallStatus", status.to_string()),
        ("Direction", "outbound-api".to_string()),
        ("ApiVersion", "2010-04-01".to_string()),
        ("Timestamp", at.to_rfc2822()),
        ("CallbackSource", "call-progress-events".to_string()),
        ("SequenceNumber", sequence.to_string()),
    ];
    if let Some(d) = duration {
        fields.push(("CallDuration", d.to_string()));
    }
    fields
}

pub fn twilio_amd(sid: &str, answered_by: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CallSid", sid.to_string()),
        ("AccountSid", "AC123".to_string()),
        ("AnsweredBy", answered_by.to_string()),
        ("MachineDetectionDuration", "2300".to_string()),
    ]
}

pub fn json_request(path: &str, body: &Value, headers: &[(&str, String)]) -> Request<Body> {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

pub fn elevenlabs_signed(body: &Value, secret: &str, at: DateTime<Utc>) -> Request<Body> {
    let header = providers::elevenlabs::webhook_signature(secret, body.to_string().as_bytes(), at);
    json_request("/webhooks/elevenlabs", body, &[("ElevenLabs-Signature", header)])
}

pub fn retell_signed(body: &Value, key: &str, at: DateTime<Utc>) -> Request<Body> {
    let header = providers::retell::webhook_signature(key, body.to_string().as_bytes(), at);
    json_request("/webhooks/retell", body, &[("X-Retell-Signature", header)])
}

pub fn vapi_with_secret(body: &Value, secret: &str) -> Request<Body> {
    json_request("/webhooks/vapi", body, &[("X-Vapi-Secret", secret.to_string())])
}

/// An ElevenLabs post-call transcription of call `call` (conversation `conversation`).
pub fn post_call(org: OrgId, call: CallId, conversation: &str, at: DateTime<Utc>, talk: u32, lines: &[(&str, &str)]) -> Value {
    let transcript: Vec<Value> =
        lines.iter().map(|(role, message)| serde_json::json!({ "role": role, "message": message, "time_in_call_secs": 1 })).collect();
    serde_json::json!({
        "type": "post_call_transcription",
        "event_timestamp": at.timestamp(),
        "data": {
            "agent_id": "agent_1",
            "conversation_id": conversation,
            "status": "done",
            "transcript": transcript,
            "metadata": { "call_duration_secs": talk, "phone_call": { "call_sid": "CA-unused" } },
            "analysis": { "call_successful": "success", "transcript_summary": "They renewed." },
            "conversation_initiation_client_data": { "dynamic_variables": { "outdial_org_id": org.to_string(), "outdial_call_id": call.to_string(), "name": "Ada" } },
        },
    })
}
