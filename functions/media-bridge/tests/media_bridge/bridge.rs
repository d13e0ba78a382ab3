//! The bridge between a fake Twilio (a WebSocket client sending Media Streams frames, and a
//! wiremock REST API for hang-ups) and a fake ElevenLabs (a wiremock signed-URL endpoint and a
//! WebSocket server the test scripts), both speaking PROTOCOLS.md exactly.

use base64::Engine;
use chrono::Utc;
use domain::{
    AssistantConfig, CallEvent, CallEventKind, CallProvider, CallingWindow, CampaignSettings, CampaignStatus, Cap, Day, E164, EndReason,
    NewAssistant, NewCampaign, NewContact, OrgId, ProviderKind,
};
use futures::{SinkExt, StreamExt};
use media_bridge::{Bridge, BridgeSettings};
use providers::{CallOptions, CallProviders, ElevenLabs, ProviderAccounts, RetryPolicy, TwilioAccount};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use store::{AssistantStore, CallStore, CampaignStore, DialingStore, DoNotCallStore, OrgStore, PlacedCall, SqliteStore};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest},
};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path, query_param},
};

const TOKEN: &str = "tw-bridge-token";
/// What Twilio is told (and signs); the test connects to the bridge's loopback port instead.
const STREAM_URL: &str = "wss://bridge.example.com/media";
const CALL_SID: &str = "CA00000000000000000000000000000001";
const STREAM_SID: &str = "MZ00000000000000000000000000000001";

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Agent = WebSocketStream<TcpStream>;

struct World {
    store: SqliteStore,
    org: OrgId,
    call: domain::CallId,
    call_sid: String,
    campaign: domain::CampaignId,
    contact: domain::ContactId,
    phone: E164,
    bridge: Arc<Bridge<SqliteStore>>,
    base: String,
    twilio_api: MockServer,
    conversations: tokio::sync::mpsc::UnboundedReceiver<Agent>,
    _elevenlabs_api: MockServer,
    _refusing: tokio::net::TcpSocket,
}

async fn world() -> World {
    world_with(app::AgentTools::default(), true).await
}

/// `tools` runs the agent's tools; `agent_listens` false points the signed URL at a port that
/// refuses connections.
async fn world_with(tools: app::AgentTools, agent_listens: bool) -> World {
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let config = AssistantConfig {
        system_prompt: "You are Ana, an AI assistant calling for Acme.".into(),
        first_message: "Hi {{first_name}}, this is Ana, an AI assistant from Acme.".into(),
        end_call_message: None,
        voice: None,
        model: None,
        language: Some("en".into()),
        silence_timeout_seconds: None,
        max_duration_seconds: None,
        tools: None,
    };
    let mut assistant = NewAssistant::local("Ana", ProviderKind::Elevenlabs, config).unwrap();
    assistant.provider_assistant_id = Some("agent_test".into());
    let assistant = store.create_assistant(org, assistant, Utc::now()).await.unwrap();
    let settings_ = CampaignSettings {
        provider: CallProvider::Twilio,
        calling_window: CallingWindow::parse(Day::ALL, "00:00", "23:59").unwrap(),
        ..Default::default()
    };
    let mut new = NewCampaign::parse("bridge", Cap::parse(5).unwrap(), settings_).unwrap();
    new.assistant_id = Some(assistant.id);
    let campaign = store.create_campaign(org, new).await.unwrap();
    let phone = E164::parse("+14155550123", None).unwrap();
    let mut contact = NewContact::new(phone.clone(), chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now()));
    contact.name = Some("Maria Lopez".into());
    contact.variables.insert("email".into(), "maria@example.com".into());
    store.add_contacts(org, campaign.id, vec![contact], Utc::now()).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, Utc::now()).await.unwrap();
    // claimed at noon in New York, inside its calling hours whatever the hour of the test
    let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let claim = store.claim_due_contacts(org, campaign.id, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    let placed = PlacedCall { provider: CallProvider::Twilio, provider_call_id: CALL_SID.into(), caller_id: None, placed_at: Utc::now() };
    store.record_placed_call(org, claim.call.id, placed).await.unwrap();

    // ElevenLabs: the signed-URL endpoint and the conversation socket
    let (found, conversations) = tokio::sync::mpsc::unbounded_channel();
    // a port bound but not listening refuses connections, and no other test can take it meanwhile
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let agent_port = if agent_listens {
        let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = agent_listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = agent_listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(socket).await {
                    let _ = found.send(ws);
                }
            }
        });
        port
    } else {
        refusing.local_addr().unwrap().port()
    };
    let elevenlabs_api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/conversation/get-signed-url"))
        .and(query_param("agent_id", "agent_test"))
        .and(wiremock::matchers::header("xi-api-key", "xi-test-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "signed_url": format!("ws://127.0.0.1:{agent_port}/v1/convai/conversation?agent_id=agent_test&conversation_signature=sig") }),
        ))
        .mount(&elevenlabs_api)
        .await;
    // Twilio's REST API: hang-ups
    let twilio_api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(r"^/2010-04-01/Accounts/AC123/Calls/CA[0-9a-f]{32}\.json$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "sid": CALL_SID, "status": "completed" })))
        .mount(&twilio_api)
        .await;
    let accounts = ProviderAccounts {
        twilio: Some(TwilioAccount { base_url: twilio_api.uri(), account_sid: "AC123".into(), auth_token: TOKEN.into() }),
        ..Default::default()
    };
    let options =
        CallOptions { public_url: Some("https://hooks.example.com".into()), bridge_url: Some(STREAM_URL.into()), ..Default::default() };
    let bridge_settings = BridgeSettings {
        twilio_auth_token: Some(TOKEN.into()),
        stream_url: Some(STREAM_URL.into()),
        transcript_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_millis(300),
        metrics_token: Some("metrics-token".into()),
        ..BridgeSettings::default()
    };
    let agents = ElevenLabs::new(&elevenlabs_api.uri(), "xi-test-key", RetryPolicy::once());
    let bridge = Bridge::new(store.clone(), CallProviders::new(&accounts, &options), Some(agents), tools, bridge_settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(media_bridge::serve(bridge.clone(), listener, std::future::pending()));
    World {
        store,
        org,
        call: claim.call.id,
        call_sid: CALL_SID.into(),
        campaign: campaign.id,
        contact: claim.contact.id,
        phone,
        bridge,
        base,
        twilio_api,
        conversations,
        _elevenlabs_api: elevenlabs_api,
        _refusing: refusing,
    }
}

impl World {
    /// Twilio opens the media stream, signed as Twilio signs it (or with `signature`).
    async fn dial_in(&self, signature: Option<&str>) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}/media", self.base).into_client_request().unwrap();
        let signed = providers::twilio::signature(TOKEN, STREAM_URL, []);
        if let Some(s) = signature.or(Some(signed.as_str())).filter(|s| !s.is_empty()) {
            request.headers_mut().insert("X-Twilio-Signature", s.parse().unwrap());
        }
        Ok(tokio_tungstenite::connect_async(request).await?.0)
    }

    /// The `<Parameter>`s our TwiML gives the call's stream: its ids and its signed token.
    fn parameters(&self) -> Value {
        let token = providers::signatures::stream_token(TOKEN, self.call, self.org, Utc::now() + chrono::TimeDelta::minutes(30));
        json!({ "orgId": self.org.to_string(), "campaignId": self.campaign.to_string(),
            "callId": self.call.to_string(), "contactId": self.contact.to_string(), "token": token })
    }

    /// Twilio's `start` for the call with these parameters.
    fn start(&self, parameters: &Value) -> Value {
        json!({ "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID, "start": {
            "streamSid": STREAM_SID, "accountSid": "AC123", "callSid": self.call_sid, "tracks": ["inbound"],
            "customParameters": parameters, "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 } } })
    }

    /// A signed stream that has sent `connected` and `start`, with the ids our TwiML gives it.
    async fn stream_started(&self) -> Client {
        let mut twilio = self.dial_in(None).await.unwrap();
        send(&mut twilio, json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" })).await;
        send(&mut twilio, self.start(&self.parameters())).await;
        twilio
    }

    /// Moves on to a new call of the campaign, placed with its own CallSid: a call has one stream.
    async fn next_call(&mut self) {
        // the previous call's status callback: it ended, and its place under the cap is free
        let ended =
            CallEvent { dedupe_key: "next".into(), occurred_at: Utc::now(), kind: CallEventKind::Ended { reason: EndReason::Completed } };
        self.store.apply_call_event(self.org, self.call, ended, Utc::now()).await.unwrap();
        let n =
            self.store.list_calls(self.org, self.campaign, Default::default(), store::PageRequest::default()).await.unwrap().items.len();
        let phone = E164::parse(&format!("+1415555{:04}", 200 + n), None).unwrap();
        let contact = NewContact::new(phone.clone(), chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now()));
        self.store.add_contacts(self.org, self.campaign, vec![contact], Utc::now()).await.unwrap();
        let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
        let claim = self.store.claim_due_contacts(self.org, self.campaign, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
        let sid = format!("CA{:032x}", 1000 + n);
        let placed = PlacedCall { provider: CallProvider::Twilio, provider_call_id: sid.clone(), caller_id: None, placed_at: Utc::now() };
        self.store.record_placed_call(self.org, claim.call.id, placed).await.unwrap();
        (self.call, self.contact, self.phone, self.call_sid) = (claim.call.id, claim.contact.id, phone, sid);
    }

    /// A started stream and the conversation it opened, past the agent's metadata.
    async fn started_call(&mut self) -> (Client, Agent, Value) {
        let twilio = self.stream_started().await;
        let mut agent = tokio::time::timeout(Duration::from_secs(5), self.conversations.recv())
            .await
            .expect("the bridge opens a conversation")
            .unwrap();
        let initiation = next_json(&mut agent).await;
        send(
            &mut agent,
            json!({ "type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": {
                "conversation_id": "conv_1", "agent_output_audio_format": "ulaw_8000", "user_input_audio_format": "ulaw_8000" } }),
        )
        .await;
        (twilio, agent, initiation)
    }

    async fn log(&self) -> Vec<CallEventKind> {
        self.store.list_call_events(self.org, self.call).await.unwrap().into_iter().map(|e| e.event.kind).collect()
    }

    /// Waits (up to 5 s) for the call's log to hold what `wanted` looks for.
    async fn eventually_logged(&self, wanted: impl Fn(&[CallEventKind]) -> bool) -> Vec<CallEventKind> {
        for _ in 0..100 {
            let log = self.log().await;
            if wanted(&log) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not logged; the log is {:?}", self.log().await)
    }

    /// Waits for an error in the call's log that mentions `words`.
    async fn eventually_logged_error(&self, words: &str) -> Vec<CallEventKind> {
        self.eventually_logged(|log| {
            log.iter()
                .any(|k| matches!(k, CallEventKind::Details { details } if details.error.as_deref().is_some_and(|e| e.contains(words))))
        })
        .await
    }

    /// `GET /metrics` with the metrics token.
    async fn metrics(&self) -> String {
        let response = reqwest::Client::new().get(format!("http://{}/metrics", self.base)).bearer_auth("metrics-token").send().await;
        response.unwrap().text().await.unwrap()
    }

    async fn hang_ups(&self) -> usize {
        let requests = self.twilio_api.received_requests().await.unwrap_or_default();
        requests.iter().filter(|r| String::from_utf8_lossy(&r.body).contains("Status=completed")).count()
    }
}

async fn send<S: SinkExt<Message> + Unpin>(socket: &mut S, value: Value)
where
    S::Error: std::fmt::Debug,
{
    socket.send(Message::Text(value.to_string().into())).await.unwrap();
}

async fn next_json<S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin>(socket: &mut S) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a message within 5 s") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON text frames"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// True when the socket closes within 5 s (text frames before the close are skipped).
async fn closes<S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin>(socket: &mut S) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return false,
            Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn frame(n: u32) -> String {
    // 160 bytes of μ-law, different for every frame
    let bytes: Vec<u8> = (0..160u32).map(|i| ((n * 31 + i * 7) % 256) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn audio_crosses_both_ways_unchanged_pings_are_answered_and_the_transcript_is_saved() {
    let mut w = world().await;
    let (mut twilio, mut agent, initiation) = w.started_call().await;
    assert_eq!(initiation["type"], "conversation_initiation_client_data");
    let variables = &initiation["dynamic_variables"];
    assert_eq!(variables["first_name"], "Maria");
    assert_eq!(variables["outdial_call_id"], w.call.to_string());
    assert_eq!(
        initiation["conversation_config_override"]["agent"]["first_message"],
        "Hi {{first_name}}, this is Ana, an AI assistant from Acme."
    );

    for n in 0..50 {
        send(
            &mut twilio,
            json!({ "event": "media", "sequenceNumber": (n + 2).to_string(), "streamSid": STREAM_SID,
            "media": { "track": "inbound", "chunk": (n + 1).to_string(), "timestamp": (n * 20).to_string(), "payload": frame(n) } }),
        )
        .await;
    }
    for n in 0..50 {
        let chunk = next_json(&mut agent).await;
        assert_eq!(chunk, json!({ "user_audio_chunk": frame(n) }), "caller audio byte-identical, in order, without a type field");
    }
    send(&mut agent, json!({ "type": "ping", "ping_event": { "event_id": 42, "ping_ms": null } })).await;
    assert_eq!(next_json(&mut agent).await, json!({ "type": "pong", "event_id": 42 }));

    for n in 0..20 {
        send(&mut agent, json!({ "type": "audio", "audio_event": { "audio_base_64": frame(1000 + n), "event_id": n + 1 } })).await;
    }
    send(&mut agent, json!({ "type": "agent_response", "agent_response_event": { "agent_response": "Hi Maria, this is Ana, an AI assistant from Acme." } })).await;
    send(&mut agent, json!({ "type": "user_transcript", "user_transcription_event": { "user_transcript": "Hi, sure." } })).await;
    for n in 0..20 {
        let media = next_json(&mut twilio).await;
        assert_eq!(
            media,
            json!({ "event": "media", "streamSid": STREAM_SID, "media": { "payload": frame(1000 + n) } }),
            "agent audio byte-identical"
        );
    }
    assert_eq!(next_json(&mut twilio).await, json!({ "event": "mark", "streamSid": STREAM_SID, "mark": { "name": "response-1" } }));
    // while the call goes on, only new lines are written, in chunks beside the call
    let mut live = None;
    for _ in 0..100 {
        live = w.store.call_transcript(w.org, w.call).await.unwrap();
        if live.as_deref().is_some_and(|t| t.ends_with("Hi, sure.")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live.as_deref(), Some("agent: Hi Maria, this is Ana, an AI assistant from Acme.\nuser: Hi, sure."));
    assert_eq!(w.store.get_call(w.org, w.call).await.unwrap().details.transcript, None, "the call record is not rewritten per save");
    // the agent's first audio on its way to the caller is the call's connect time, recorded once
    let logged = w
        .eventually_logged(|log| log.iter().any(|k| matches!(k, CallEventKind::Details { details } if details.connected_at.is_some())))
        .await;
    assert_eq!(logged.iter().filter(|k| matches!(k, CallEventKind::Details { details } if details.connected_at.is_some())).count(), 1);
    assert!(w.store.get_call(w.org, w.call).await.unwrap().details.connected_at.is_some());

    send(
        &mut twilio,
        json!({ "event": "stop", "sequenceNumber": "60", "streamSid": STREAM_SID, "stop": { "accountSid": "AC123", "callSid": w.call_sid } }),
    )
    .await;
    assert!(closes(&mut agent).await, "the caller's hang-up closes the conversation");
    let log =
        w.eventually_logged(|log| log.iter().any(|k| matches!(k, CallEventKind::Note { text } if text.contains("Twilio stopped")))).await;
    let transcript = log.iter().rev().find_map(|k| match k {
        CallEventKind::Details { details } => details.transcript.clone(),
        _ => None,
    });
    assert_eq!(transcript.as_deref(), Some("agent: Hi Maria, this is Ana, an AI assistant from Acme.\nuser: Hi, sure."));
    let whole_writes = log.iter().filter(|k| matches!(k, CallEventKind::Details { details } if details.transcript.is_some())).count();
    assert_eq!(whole_writes, 1, "the whole transcript is put on the call once, at the end");
    assert_eq!(w.hang_ups().await, 0, "the caller ended it; nothing to hang up");
    let metrics = w.metrics().await;
    assert!(metrics.contains("outdial_bridge_frames_in_total"), "{metrics}");
    assert!(metrics.contains("outdial_bridge_active_calls 0"), "{metrics}");
}

#[tokio::test]
async fn an_interruption_clears_twilio_and_no_stale_audio_follows() {
    let mut w = world().await;
    let (mut twilio, mut agent, _) = w.started_call().await;
    for n in 1..=30u32 {
        send(&mut agent, json!({ "type": "audio", "audio_event": { "audio_base_64": frame(n), "event_id": n } })).await;
    }
    send(&mut agent, json!({ "type": "interruption", "interruption_event": { "event_id": 30 } })).await;
    send(&mut agent, json!({ "type": "audio", "audio_event": { "audio_base_64": frame(31), "event_id": 31 } })).await;
    let mut cleared = false;
    loop {
        let message = next_json(&mut twilio).await;
        match message["event"].as_str() {
            Some("clear") => {
                assert_eq!(message, json!({ "event": "clear", "streamSid": STREAM_SID }));
                cleared = true;
            }
            Some("media") => {
                let payload = message["media"]["payload"].as_str().unwrap().to_string();
                if payload == frame(31) {
                    break;
                }
                assert!(!cleared, "audio from before the interruption arrived after the clear");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(cleared, "Twilio was told to clear");
}

#[tokio::test]
async fn tool_calls_are_answered_and_errors_do_not_hang_the_conversation() {
    let mut w = world().await;
    let (_twilio, mut agent, _) = w.started_call().await;
    send(
        &mut agent,
        json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "current_time", "tool_call_id": "t1", "parameters": {} } }),
    )
    .await;
    let answer = next_json(&mut agent).await;
    assert_eq!(
        (answer["type"].as_str(), answer["tool_call_id"].as_str(), answer["is_error"].as_bool()),
        (Some("client_tool_result"), Some("t1"), Some(false))
    );
    let time: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    assert_eq!(time["timezone"], "America/New_York");
    assert!(time["resolved"].is_null(), "nothing asked, nothing resolved");
    let when = json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "current_time", "tool_call_id": "t1b", "parameters": { "when": "tomorrow 3pm" } } });
    send(&mut agent, when).await;
    let answer = next_json(&mut agent).await;
    let time: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    let at = time["resolved"]["at"]["localTime"].as_str().unwrap();
    assert!(at.ends_with("T15:00:00-05:00") || at.ends_with("T15:00:00-04:00"), "3pm in New York: {at}");
    let unreadable = json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "current_time", "tool_call_id": "t1c", "parameters": { "when": "whenever" } } });
    send(&mut agent, unreadable).await;
    let answer = next_json(&mut agent).await;
    assert_eq!(answer["is_error"], true);
    assert!(answer["result"].as_str().unwrap().contains("tomorrow 3pm"), "it says how to put it: {answer}");

    send(
        &mut agent,
        json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "teleport", "tool_call_id": "t2", "parameters": {} } }),
    )
    .await;
    let answer = next_json(&mut agent).await;
    assert_eq!((answer["tool_call_id"].as_str(), answer["is_error"].as_bool()), (Some("t2"), Some(true)));

    send(&mut agent, json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "add_to_do_not_call", "tool_call_id": "t3", "parameters": {} } })).await;
    assert_eq!(next_json(&mut agent).await["is_error"], false);
    assert!(w.store.is_do_not_call(w.org, &w.phone).await.unwrap());

    send(
        &mut agent,
        json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "end_call", "tool_call_id": "t4", "parameters": {} } }),
    )
    .await;
    assert_eq!(next_json(&mut agent).await["is_error"], false);
    assert_eq!(w.hang_ups().await, 1, "end_call hangs up through Twilio");
}

/// The agent's tool call with `name` and `parameters`, and the bridge's `client_tool_result`.
async fn tool_result(agent: &mut Agent, id: &str, name: &str, parameters: Value) -> (String, bool) {
    send(
        agent,
        json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": name, "tool_call_id": id, "parameters": parameters } }),
    )
    .await;
    let answer = next_json(agent).await;
    assert_eq!((answer["type"].as_str(), answer["tool_call_id"].as_str()), (Some("client_tool_result"), Some(id)));
    (answer["result"].as_str().unwrap_or_default().to_string(), answer["is_error"].as_bool().expect("is_error is a boolean"))
}

#[tokio::test]
async fn the_booking_and_email_tools_book_at_cal_com_and_send_with_the_callers_details() {
    let calcom = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(wiremock::matchers::header("authorization", "Bearer cal_test_key"))
        .and(wiremock::matchers::header("cal-api-version", "2024-08-13"))
        .and(wiremock::matchers::body_json(json!({
            "start": "2030-01-15T15:00:00.000Z", "eventTypeId": 42,
            "attendee": { "name": "Maria Lopez", "email": "maria@example.com", "timeZone": "America/New_York", "phoneNumber": "+14155550123" }
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "status": "success", "data": {
            "id": 7, "uid": "bk_maria", "status": "accepted", "start": "2030-01-15T15:00:00.000Z", "end": "2030-01-15T15:30:00.000Z" } })))
        .expect(1)
        .mount(&calcom)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(wiremock::matchers::body_partial_json(json!({ "start": "2030-01-16T15:00:00.000Z" })))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "status": "error",
            "error": { "code": "BadRequestException", "message": "User either already has booking at this time or is not available" } })))
        .mount(&calcom)
        .await;
    let outbox = platform::LocalOutbox::default();
    let account = providers::CalcomAccount { base_url: calcom.uri(), api_key: "cal_test_key".into(), event_type_id: 42 };
    let tools =
        app::AgentTools::new(Some(providers::CalCom::new(&account, RetryPolicy::once())), platform::AnyMailer::Local(outbox.clone()));
    let mut w = world_with(tools, true).await;
    let (_twilio, mut agent, _) = w.started_call().await;

    // 10:00 in the contact's zone; the attendee's name comes from the contact
    let (said, is_error) =
        tool_result(&mut agent, "b1", "book_appointment", json!({ "start": "2030-01-15T10:00", "email": "maria@example.com" })).await;
    assert!(!is_error, "{said}");
    assert!(said.contains("Tuesday, 15 January 2030, 10:00 AM") && said.contains("maria@example.com"), "{said}");
    let (said, is_error) =
        tool_result(&mut agent, "b2", "book_appointment", json!({ "start": "2030-01-16T10:00", "email": "maria@example.com" })).await;
    assert!(is_error && said.contains("not available"), "Cal.com's refusal reaches the agent: {said}");
    let (said, is_error) =
        tool_result(&mut agent, "b3", "book_appointment", json!({ "start": "2030-01-15T10:00", "email": "mallory@example.org" })).await;
    assert!(is_error && said.contains("on file"), "the attendee is the contact, never an address the agent was given: {said}");

    // the email tool writes only to the contact, once, in the deployment's wording
    let (said, is_error) =
        tool_result(&mut agent, "e0", "send_email", json!({ "to_email": "mallory@example.org", "note": "Click this link." })).await;
    assert_eq!(
        (said.as_str(), is_error),
        ("I can only send email to the address we already have on file for you, not to a new one.", true)
    );
    let (said, is_error) = tool_result(&mut agent, "e1", "send_email", json!({ "subject": "Ignored", "note": "As promised." })).await;
    assert!(!is_error && said.contains("maria@example.com"), "{said}");
    let kept = outbox.kept();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].email.to.as_str(), kept[0].email.subject.as_str()), ("maria@example.com", "Following up on our call"));
    assert!(kept[0].email.body.starts_with("Hello Maria Lopez,") && kept[0].email.body.contains("As promised."), "{}", kept[0].email.body);
    let (said, is_error) = tool_result(&mut agent, "e2", "send_email", json!({ "note": "And another thing." })).await;
    assert!(is_error && said.contains("already sent you an email"), "OUTDIAL_EMAILS_PER_CALL is 1 by default: {said}");
    assert_eq!(outbox.kept().len(), 1, "nothing sent for a refused email");

    // 6 tool calls so far: 14 more are allowed, the 21st is refused
    for i in 0..14 {
        let (said, is_error) = tool_result(&mut agent, &format!("t{i}"), "current_time", json!({})).await;
        assert!(!is_error, "{said}");
    }
    let (said, is_error) = tool_result(&mut agent, "t14", "current_time", json!({})).await;
    assert!(is_error && said.contains("all 20 of its tool calls"), "{said}");

    let notes: Vec<String> = w
        .log()
        .await
        .into_iter()
        .filter_map(|k| match k {
            CallEventKind::Note { text } => Some(text),
            _ => None,
        })
        .collect();
    assert!(notes.iter().any(|n| n.contains("bk_maria")), "the booking is in the call's log: {notes:?}");
    assert!(notes.iter().any(|n| n.contains("follow-up email sent to m***@example.com")), "{notes:?}");
}

#[tokio::test]
async fn a_tool_without_its_service_tells_the_agent_what_to_set() {
    let mut w = world().await;
    let (_twilio, mut agent, _) = w.started_call().await;
    let (said, is_error) =
        tool_result(&mut agent, "b1", "book_appointment", json!({ "start": "2030-01-15T10:00", "email": "maria@example.com" })).await;
    assert!(is_error && said.contains("CALCOM_API_KEY"), "{said}");
}

#[tokio::test]
async fn an_agent_that_closes_mid_call_gets_the_call_hung_up_and_recorded() {
    let mut w = world().await;
    let (mut twilio, mut agent, _) = w.started_call().await;
    agent.close(None).await.unwrap();
    assert!(closes(&mut twilio).await, "Twilio's stream is closed");
    w.eventually_logged_error("closed").await;
    assert_eq!(w.hang_ups().await, 1);
}

#[tokio::test]
async fn an_agent_in_another_audio_format_ends_the_call_instead_of_sending_noise() {
    let mut w = world().await;
    let mut twilio = w.stream_started().await;
    let mut agent = w.conversations.recv().await.unwrap();
    next_json(&mut agent).await;
    send(
        &mut agent,
        json!({ "type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": {
        "conversation_id": "c", "agent_output_audio_format": "pcm_16000", "user_input_audio_format": "pcm_16000" } }),
    )
    .await;
    assert!(closes(&mut agent).await && closes(&mut twilio).await);
    w.eventually_logged_error("pcm_16000").await;
    assert_eq!(w.hang_ups().await, 1);
}

#[tokio::test]
async fn an_agent_that_cannot_be_reached_gets_the_call_hung_up_and_recorded() {
    let w = world_with(app::AgentTools::default(), false).await;
    let mut twilio = w.stream_started().await;
    assert!(closes(&mut twilio).await);
    w.eventually_logged_error("could not be opened").await;
    assert_eq!(w.hang_ups().await, 1);
}

#[tokio::test]
async fn an_unsigned_or_wrongly_signed_upgrade_is_refused_before_anything_happens() {
    let w = world().await;
    let missing = w.dial_in(Some("")).await.unwrap_err();
    assert!(matches!(&missing, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401), "{missing:?}");
    let forged = w.dial_in(Some("bm90IGEgc2lnbmF0dXJl")).await.unwrap_err();
    assert!(matches!(&forged, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403), "{forged:?}");
    assert!(w.log().await.is_empty(), "nothing recorded");
}

#[tokio::test]
async fn the_live_feed_streams_a_calls_transcript_to_its_organisation_only() {
    let mut w = world().await;
    let (_twilio, mut agent, _) = w.started_call().await;
    let key = w.store.create_api_key(w.org).await.unwrap().secret;
    let other_org = w.store.create_org("Other").await.unwrap().id;
    let other_key = w.store.create_api_key(other_org).await.unwrap().secret;
    let url = format!("http://{}/calls/{}/live", w.base, w.call);
    let client = reqwest::Client::new();
    let refused = client.get(&url).bearer_auth(&other_key).send().await.unwrap();
    assert_eq!(refused.status(), 404, "another organisation's call is not found");
    let mut feed = client.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    send(&mut agent, json!({ "type": "agent_response", "agent_response_event": { "agent_response": "Is now a good time?" } })).await;
    let mut seen = String::new();
    while !seen.contains("Is now a good time?") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), feed.chunk()).await.expect("a live event").unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: transcript"), "{seen}");
}

#[tokio::test]
async fn draining_refuses_new_streams_and_closes_calls_still_active_at_the_timeout() {
    let mut w = world().await;
    let (mut twilio, mut agent, _) = w.started_call().await;
    let health = reqwest::get(format!("http://{}/health", w.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let bridge = w.bridge.clone();
    let drained = tokio::spawn(async move { bridge.drain().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(reqwest::get(format!("http://{}/health", w.base)).await.unwrap().status(), 503, "not ready while draining");
    assert!(w.dial_in(None).await.is_err(), "no new calls while draining");
    assert!(closes(&mut agent).await && closes(&mut twilio).await, "closed at the drain timeout");
    tokio::time::timeout(Duration::from_secs(5), drained).await.expect("drained").unwrap();
    w.eventually_logged(|log| log.iter().any(|k| matches!(k, CallEventKind::Note { text } if text.contains("shut down")))).await;
}

/// One call with audio both ways, ended by the caller (`stop`) or by the agent (socket closed).
async fn one_call_ended(w: &mut World, by_caller: bool) {
    w.next_call().await;
    let (mut twilio, mut agent, _) = w.started_call().await;
    send(
        &mut twilio,
        json!({ "event": "media", "sequenceNumber": "2", "streamSid": STREAM_SID,
        "media": { "track": "inbound", "chunk": "1", "timestamp": "0", "payload": frame(1) } }),
    )
    .await;
    assert_eq!(next_json(&mut agent).await, json!({ "user_audio_chunk": frame(1) }));
    send(&mut agent, json!({ "type": "audio", "audio_event": { "audio_base_64": frame(2), "event_id": 1 } })).await;
    assert_eq!(next_json(&mut twilio).await["media"]["payload"], frame(2));
    if by_caller {
        send(&mut twilio, json!({ "event": "stop", "sequenceNumber": "3", "streamSid": STREAM_SID, "stop": { "accountSid": "AC123", "callSid": w.call_sid } })).await;
        assert!(closes(&mut agent).await);
    } else {
        agent.close(None).await.unwrap();
        assert!(closes(&mut twilio).await);
    }
}

/// Waits until the bridge has let go of the last call, and the closed sockets' tasks a moment more.
async fn settled(w: &World) {
    for _ in 0..100 {
        if w.bridge.live.subscribe(w.org, w.call).is_none() && w.bridge.metrics.render().contains("outdial_bridge_active_calls 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ended_either_way_leave_no_task_socket_or_feed_behind() {
    let mut w = world().await;
    // one call each way first: the hang-up client's pooled connection is not a leak
    one_call_ended(&mut w, true).await;
    one_call_ended(&mut w, false).await;
    let runtime = tokio::runtime::Handle::current().metrics();
    settled(&w).await;
    let baseline = runtime.num_alive_tasks();

    for n in 0..10 {
        one_call_ended(&mut w, n % 2 == 0).await;
    }
    settled(&w).await;
    let mut alive = runtime.num_alive_tasks();
    for _ in 0..50 {
        if alive <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive = runtime.num_alive_tasks();
    }
    assert!(alive <= baseline, "{alive} tasks alive after 10 calls ended, {baseline} before them");
    assert!(w.bridge.live.subscribe(w.org, w.call).is_none(), "the call's live feed is gone");
    assert!(w.bridge.metrics.render().contains("outdial_bridge_active_calls 0"));
    assert_eq!(w.hang_ups().await, 6, "every agent-side end hung the call up once");
}

#[tokio::test]
async fn the_service_describes_its_routes_in_openapi() {
    let w = world().await;
    let doc: Value = reqwest::get(format!("http://{}/openapi.json", w.base)).await.unwrap().json().await.unwrap();
    for path in ["/media", "/calls/{id}/live", "/health", "/metrics"] {
        assert!(doc["paths"][path]["get"].is_object(), "GET {path} missing: {:?}", doc["paths"]);
    }
    assert_eq!(doc["paths"]["/calls/{id}/live"]["get"]["security"][0]["apiKey"], json!([]));
    assert_eq!(doc["components"]["securitySchemes"]["apiKey"]["scheme"], "bearer");
    let health: Value = reqwest::get(format!("http://{}/health", w.base)).await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "ok", "activeCalls": 0 }));
}

#[tokio::test]
async fn a_stream_whose_parameters_are_not_its_calls_is_closed_without_a_conversation() {
    let mut w = world().await;
    for (name, value) in [("campaignId", domain::CampaignId::new().to_string()), ("contactId", domain::ContactId::new().to_string())] {
        let mut twilio = w.dial_in(None).await.unwrap();
        let mut parameters = w.parameters();
        parameters[name] = json!(value);
        send(&mut twilio, w.start(&parameters)).await;
        assert!(closes(&mut twilio).await, "a stream claiming another {name} is closed");
    }
    assert!(w.conversations.try_recv().is_err(), "no conversation was opened");
    assert!(w.log().await.is_empty(), "nothing was written to the call");
}

/// Two tools run at a time on a call: a third waits for one of them to finish.
#[tokio::test]
async fn a_call_runs_at_most_two_tools_at_once() {
    let calcom = MockServer::start().await;
    let slow = std::time::Duration::from_millis(400);
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_delay(slow).set_body_json(json!({ "status": "success", "data": {
            "id": 7, "uid": "bk_slow", "status": "accepted", "start": "2030-01-15T15:00:00.000Z", "end": "2030-01-15T15:30:00.000Z" } })))
        .expect(3)
        .mount(&calcom)
        .await;
    let account = providers::CalcomAccount { base_url: calcom.uri(), api_key: "cal_test_key".into(), event_type_id: 42 };
    let tools = app::AgentTools::new(Some(providers::CalCom::new(&account, RetryPolicy::once())), platform::AnyMailer::default());
    let mut w = world_with(tools, true).await;
    let (_twilio, mut agent, _) = w.started_call().await;
    let began = std::time::Instant::now();
    for id in ["c1", "c2", "c3"] {
        let call = json!({ "tool_name": "book_appointment", "tool_call_id": id, "parameters": { "start": "2030-01-15T10:00" } });
        send(&mut agent, json!({ "type": "client_tool_call", "client_tool_call": call })).await;
    }
    for _ in 0..3 {
        let answer = next_json(&mut agent).await;
        assert_eq!((answer["type"].as_str(), answer["is_error"].as_bool()), (Some("client_tool_result"), Some(false)), "{answer}");
    }
    assert!(began.elapsed() >= slow * 2, "the third booking waited for a turn: {:?}", began.elapsed());
}

/// A captured upgrade signature is the same for every call: replayed with a `start` whose token
/// is missing, forged, another call's, or expired, or with a malformed CallSid, the stream is
/// closed before anything is stored or any conversation opened.
#[tokio::test]
async fn a_replayed_upgrade_with_a_forged_start_is_closed_with_nothing_stored() {
    let mut w = world().await;
    let other_call = domain::CallId::new();
    let expired = providers::signatures::stream_token(TOKEN, w.call, w.org, Utc::now() - chrono::TimeDelta::seconds(1));
    let forgeries = [
        ("no token", None, None),
        ("a forged token", Some(json!("4102444800.0123456789abcdef")), None),
        (
            "another call's token",
            Some(json!(providers::signatures::stream_token(TOKEN, other_call, w.org, Utc::now() + chrono::TimeDelta::minutes(5)))),
            None,
        ),
        ("an expired token", Some(json!(expired)), None),
        ("a malformed CallSid", None, Some("CA-not-a-sid")),
    ];
    for (what, token, call_sid) in forgeries {
        let mut twilio = w.dial_in(None).await.unwrap();
        let mut parameters = w.parameters();
        match token {
            Some(t) => parameters["token"] = t,
            None if call_sid.is_none() => drop(parameters.as_object_mut().unwrap().remove("token")),
            None => {}
        }
        let mut start = w.start(&parameters);
        if let Some(sid) = call_sid {
            start["start"]["callSid"] = json!(sid);
        }
        send(&mut twilio, start).await;
        assert!(closes(&mut twilio).await, "{what}: the stream is closed");
    }
    assert!(w.conversations.try_recv().is_err(), "no conversation was opened");
    assert!(w.log().await.is_empty(), "nothing was written to the call");
}

/// One stream per call; none for a call that ended or that Twilio does not carry.
#[tokio::test]
async fn a_second_stream_or_one_for_an_ended_call_is_refused() {
    let mut w = world().await;
    let (_twilio, _agent, _) = w.started_call().await;
    let mut again = w.stream_started().await;
    assert!(closes(&mut again).await, "a call already streaming takes no second stream");
    assert!(w.conversations.try_recv().is_err(), "and opens no second conversation");

    w.next_call().await;
    let ended =
        CallEvent { dedupe_key: "end".into(), occurred_at: Utc::now(), kind: CallEventKind::Ended { reason: EndReason::Completed } };
    w.store.apply_call_event(w.org, w.call, ended, Utc::now()).await.unwrap();
    let mut late = w.stream_started().await;
    assert!(closes(&mut late).await, "an ended call takes no stream");
    assert!(w.conversations.try_recv().is_err());
}

/// Twilio's frames are small (160 bytes of audio); a 1 MiB message closes the stream.
#[tokio::test]
async fn a_one_mebibyte_message_closes_the_stream() {
    let mut w = world().await;
    let (mut twilio, mut agent, _) = w.started_call().await;
    let huge = "A".repeat(1 << 20);
    let _ = twilio
        .send(Message::Text(json!({ "event": "media", "streamSid": STREAM_SID, "media": { "payload": huge } }).to_string().into()))
        .await;
    assert!(closes(&mut twilio).await, "the bridge closes the stream");
    assert!(closes(&mut agent).await, "and the conversation with it");
}
