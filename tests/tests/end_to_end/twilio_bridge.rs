//! A Twilio campaign end to end on the local stack: the dialer asks a fake Twilio REST API for the
//! call, the fake reads the TwiML it was given and streams the call's audio to the `<Stream>` URL
//! in it (signed as Twilio signs it, with its `<Parameter>`s), and the bridge on the stack's own
//! port carries it to a fake ElevenLabs conversation; a dashboard follows the transcript live.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use store::{AssistantStore, CallStore, OrgStore, SqliteStore};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const ACCOUNT: &str = "AC00000000000000000000000000000e2e";
const TOKEN: &str = "e2e-twilio-token";
const CALL_SID: &str = "CA00000000000000000000000000000e2e";

/// The value of the first `attribute="…"` in `xml`.
fn attribute<'a>(xml: &'a str, attribute: &str) -> &'a str {
    let start = xml.find(&format!(r#"{attribute}=""#)).expect(attribute) + attribute.len() + 2;
    &xml[start..start + xml[start..].find('"').expect("closing quote")]
}

async fn send(socket: &mut (impl SinkExt<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin), value: Value) {
    socket.send(Message::Text(value.to_string().into())).await.expect("sent");
}

async fn next_json(socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin)) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a message within 5 s") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_call_streams_through_the_local_bridge_to_its_agent() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": CALL_SID, "status": "queued" })))
        .mount(&twilio)
        .await;
    let conversations = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elevenlabs = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/conversation/get-signed-url"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "signed_url": format!("ws://{}/v1/convai/conversation?agent_id=agent_e2e", conversations.local_addr().unwrap()) }),
        ))
        .mount(&elevenlabs)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("twilio.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut stack = outdial::Stack::default().ticking_every(Duration::from_millis(100));
    stack.config.providers.twilio =
        Some(providers::TwilioAccount { base_url: twilio.uri(), account_sid: ACCOUNT.into(), auth_token: TOKEN.into() });
    stack.config.providers.elevenlabs = Some(providers::ProviderAccount { base_url: elevenlabs.uri(), api_key: "xi-e2e".into() });
    stack.config.webhooks.twilio_auth_token = Some(TOKEN.into());
    stack.bridge.twilio_auth_token = Some(TOKEN.into());
    let outbox = platform::LocalOutbox::default();
    stack.tools = app::AgentTools::new(None, platform::AnyMailer::Local(outbox.clone()));
    tokio::spawn(outdial::serve(store.clone(), stack, listener));

    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let config =
        serde_json::from_value(json!({ "systemPrompt": "You renew plans.", "firstMessage": "Hi {{name}}, this is an AI assistant." }))
            .unwrap();
    let mut assistant = domain::NewAssistant::local("Renewals", domain::ProviderKind::Elevenlabs, config).unwrap();
    assistant.provider_assistant_id = Some("agent_e2e".into());
    // as if created through the API with this deployment's public URL: its tools are declared there
    assistant.tools_url = Some(base.clone());
    let assistant = store.create_assistant(org, assistant, chrono::Utc::now()).await.unwrap();
    let caller = domain::E164::parse("+14155550100", None).unwrap();
    store::testing::register_caller_ids(&store, org, &[caller], None, None).await;
    let http = reqwest::Client::new();
    let spec = json!({ "name": "Renewals", "assistantId": assistant.id.to_string(), "provider": "twilio", "timezone": "UTC", "cap": 1,
        "callerIds": ["+14155550100"],
        "callingWindow": { "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59" } });
    let created: Value = http.post(format!("{base}/campaigns")).bearer_auth(&key).json(&spec).send().await.unwrap().json().await.unwrap();
    let campaign = created["id"].as_str().expect("a campaign id").to_string();
    let zone = platform::testing::midday_zone(chrono::Utc::now());
    let contacts = http
        .post(format!("{base}/campaigns/{campaign}/contacts?consent=attested&consentSource=signup%20form"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(format!("phone,name,email,timezone\n+14155550123,Maria,maria@example.com,{}\n", zone.name()))
        .send()
        .await
        .unwrap();
    assert_eq!(contacts.status(), 200);
    let started = http.post(format!("{base}/campaigns/{campaign}/start")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(started.status(), 200, "{:?}", started.text().await);

    // Twilio gets the call with TwiML that streams it to the bridge
    let mut form = Vec::new();
    for _ in 0..100 {
        if let Some(request) =
            twilio.received_requests().await.unwrap_or_default().into_iter().find(|r| r.url.path().ends_with("Calls.json"))
        {
            form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&request.body).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let twiml = form.iter().find(|(k, _)| k == "Twiml").map(|(_, v)| v.clone()).expect("the call was placed with TwiML");
    let stream_url = attribute(&twiml, "url").to_string();
    assert!(stream_url.starts_with("ws://127.0.0.1:") && stream_url.ends_with("/media"), "{stream_url}");
    let mut parameters = serde_json::Map::new();
    for tag in twiml.split("<Parameter ").skip(1) {
        parameters.insert(attribute(tag, "name").to_string(), attribute(tag, "value").into());
    }
    let call_id = parameters["callId"].as_str().expect("callId parameter").to_string();

    // Twilio opens the media stream, signed over the URL it was given
    let mut request = stream_url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("X-Twilio-Signature", providers::twilio::signature(TOKEN, &stream_url, []).parse().unwrap());
    let (mut media, _) = tokio_tungstenite::connect_async(request).await.expect("the bridge takes the stream");
    send(&mut media, json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" })).await;
    send(
        &mut media,
        json!({ "event": "start", "sequenceNumber": "1", "streamSid": "MZe2e", "start": { "streamSid": "MZe2e",
        "accountSid": ACCOUNT, "callSid": CALL_SID, "tracks": ["inbound"], "customParameters": parameters,
        "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 } } }),
    )
    .await;

    let (socket, _) = tokio::time::timeout(Duration::from_secs(5), conversations.accept()).await.expect("a conversation").unwrap();
    let mut agent = tokio_tungstenite::accept_async(socket).await.unwrap();
    let initiation = next_json(&mut agent).await;
    assert_eq!(initiation["type"], "conversation_initiation_client_data");
    assert_eq!(initiation["dynamic_variables"]["name"], "Maria", "{initiation}");
    assert_eq!(initiation["dynamic_variables"]["outdial_call_id"], call_id.as_str());
    send(
        &mut agent,
        json!({ "type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": {
        "conversation_id": "conv_e2e", "agent_output_audio_format": "ulaw_8000", "user_input_audio_format": "ulaw_8000" } }),
    )
    .await;

    // a dashboard follows the call
    let mut live = http.get(format!("{base}/calls/{call_id}/live")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(live.status(), 200);

    send(
        &mut media,
        json!({ "event": "media", "sequenceNumber": "2", "streamSid": "MZe2e",
        "media": { "track": "inbound", "chunk": "1", "timestamp": "0", "payload": "f39/fw==" } }),
    )
    .await;
    assert_eq!(next_json(&mut agent).await, json!({ "user_audio_chunk": "f39/fw==" }));
    send(&mut agent, json!({ "type": "audio", "audio_event": { "audio_base_64": "AAEC/w==", "event_id": 1 } })).await;
    assert_eq!(next_json(&mut media).await, json!({ "event": "media", "streamSid": "MZe2e", "media": { "payload": "AAEC/w==" } }));
    send(
        &mut agent,
        json!({ "type": "agent_response", "agent_response_event": { "agent_response": "Hi Maria, this is an AI assistant." } }),
    )
    .await;

    let mut feed = String::new();
    while !feed.contains("Hi Maria") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), live.chunk()).await.expect("live events").unwrap().expect("open feed");
        feed.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(feed.contains("event: transcript"), "{feed}");

    // the agent's email tool writes to the contact's address from the import, in the deployment's wording
    send(
        &mut agent,
        json!({ "type": "client_tool_call", "client_tool_call": { "tool_name": "send_email", "tool_call_id": "tool_1",
            "parameters": { "note": "As discussed, here are the details." } } }),
    )
    .await;
    let result = next_json(&mut agent).await;
    assert_eq!(
        (result["type"].as_str(), result["tool_call_id"].as_str(), result["is_error"].as_bool()),
        (Some("client_tool_result"), Some("tool_1"), Some(false)),
        "{result}"
    );
    let kept = outbox.kept();
    assert_eq!(
        kept.iter().map(|k| (k.email.to.as_str(), k.email.subject.as_str())).collect::<Vec<_>>(),
        [("maria@example.com", "Following up on our call")]
    );
    assert!(kept[0].email.body.contains("As discussed, here are the details."), "{}", kept[0].email.body);
    assert!(twiml.contains(r#"<Parameter name="token" value=""#), "the TwiML carries the call's stream token: {twiml}");

    send(
        &mut media,
        json!({ "event": "stop", "sequenceNumber": "3", "streamSid": "MZe2e", "stop": { "accountSid": ACCOUNT, "callSid": CALL_SID } }),
    )
    .await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = agent.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the caller's hang-up closes the conversation");

    let call = domain::CallId::parse(&call_id).unwrap();
    let mut transcript = None;
    for _ in 0..100 {
        let events = store.list_call_events(org, call).await.unwrap();
        transcript = events.iter().rev().find_map(|e| match &e.event.kind {
            domain::CallEventKind::Details { details } => details.transcript.clone(),
            _ => None,
        });
        if transcript.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(transcript.as_deref(), Some("agent: Hi Maria, this is an AI assistant."));
}
