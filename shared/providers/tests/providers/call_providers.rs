//! Placing calls: each provider's request checked field by field against a wiremock fake of its
//! API (PROTOCOLS.md), its refusals and outages classified, and the simulator's callbacks signed
//! exactly as Twilio and ElevenLabs sign theirs.

use domain::{CallId, CampaignId, ContactId, E164, OrgId, Voicemail, VoicemailAction};
use providers::{
    CallProvider, CallRequest, ElevenLabs, NumberOwnership, ProviderAccount, ProviderAccounts, ProviderError, Retell, RetryPolicy,
    SimulatedCalls, SimulatorOdds, SimulatorWebhooks, Twilio, TwilioAccount, TwilioEndpoints, Vapi,
};
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_json, header, method, path, query_param},
};

fn request() -> CallRequest {
    CallRequest {
        org_id: OrgId::new(),
        campaign_id: CampaignId::new(),
        call_id: CallId::new(),
        contact_id: ContactId::new(),
        to: E164::parse("+14155550123", None).unwrap(),
        from: E164::parse("+14155550100", None).unwrap(),
        from_number_id: None,
        assistant_provider_id: Some("agent_7".into()),
        variables: BTreeMap::from([("name".into(), "Ada Lovelace".into()), ("plan".into(), "gold".into())]),
        recording: true,
        voicemail: Voicemail { action: VoicemailAction::LeaveMessage, message: Some("Please call us back at 5.".into()) },
        max_call_seconds: 600,
        ring_seconds: 30,
    }
}

fn twilio(server: &MockServer) -> Twilio {
    let account = TwilioAccount { base_url: server.uri(), account_sid: "AC123".into(), auth_token: "secret-token".into() };
    let endpoints = TwilioEndpoints { public_url: "https://hooks.example.com".into(), bridge_url: "wss://bridge.example.com/media".into() };
    Twilio::new(&account, endpoints, RetryPolicy::once())
}

fn form_of(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap()
}

#[tokio::test]
async fn twilio_creates_the_call_with_the_bridge_twiml_callbacks_amd_and_recording() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Calls.json"))
        // Basic base64("AC123:secret-token")
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "CA0123456789abcdef0123456789abcdef", "status": "queued" })))
        .expect(1)
        .mount(&server)
        .await;
    let call = request();
    let sid = twilio(&server).place_call(&call).await.unwrap();
    assert_eq!(sid, "CA0123456789abcdef0123456789abcdef");

    let sent = &server.received_requests().await.unwrap()[0];
    // the stream's token is signed with the account's token for this call, and for no other
    let sent_twiml = form_of(&sent.body).into_iter().find(|(k, _)| k == "Twiml").unwrap().1;
    let token = sent_twiml.split(r#"<Parameter name="token" value=""#).nth(1).and_then(|t| t.split('"').next()).unwrap().to_string();
    let verify =
        |secret: &str, call_id| providers::signatures::verify_stream_token(secret, Some(&token), call_id, call.org_id, chrono::Utc::now());
    assert_eq!(verify("secret-token", call.call_id), Ok(()));
    assert!(verify("secret-token", CallId::new()).is_err() && verify("another-token", call.call_id).is_err());
    let twiml = format!(
        r#"<Response><Connect><Stream url="wss://bridge.example.com/media"><Parameter name="orgId" value="{}"/><Parameter name="campaignId" value="{}"/><Parameter name="callId" value="{}"/><Parameter name="contactId" value="{}"/><Parameter name="token" value="{token}"/></Stream></Connect></Response>"#,
        call.org_id, call.campaign_id, call.call_id, call.contact_id
    );
    let hook = |path: &str| format!("https://hooks.example.com/webhooks/twilio/{path}?callId={}", call.call_id);
    let (status, amd, recording) = (hook("status"), hook("amd"), hook("recording"));
    let expected: Vec<(String, String)> = [
        ("To", "+14155550123"),
        ("From", "+14155550100"),
        ("Twiml", twiml.as_str()),
        ("StatusCallback", status.as_str()),
        ("StatusCallbackMethod", "POST"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "ringing"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
        ("MachineDetection", "DetectMessageEnd"),
        ("AsyncAmd", "true"),
        ("AsyncAmdStatusCallback", amd.as_str()),
        ("AsyncAmdStatusCallbackMethod", "POST"),
        ("Timeout", "30"),
        ("TimeLimit", "600"),
        ("Record", "true"),
        ("RecordingChannels", "dual"),
        ("RecordingStatusCallback", recording.as_str()),
        ("RecordingStatusCallbackEvent", "completed"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form_of(&sent.body), expected);

    // hanging up, leaving a voicemail; machine detection waits for the greeting's end either way
    let hangup = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Calls/CA0123456789abcdef0123456789abcdef.json"))
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "sid": "CA0123456789abcdef0123456789abcdef", "status": "completed" })),
        )
        .expect(1)
        .mount(&hangup)
        .await;
    twilio(&hangup).hang_up("CA0123456789abcdef0123456789abcdef").await.unwrap();
    assert_eq!(form_of(&hangup.received_requests().await.unwrap()[0].body), vec![("Status".to_string(), "completed".to_string())]);
    let voicemail = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Calls/CA0123456789abcdef0123456789abcdef.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "sid": "CA0123456789abcdef0123456789abcdef", "status": "in-progress" })),
        )
        .expect(1)
        .mount(&voicemail)
        .await;
    twilio(&voicemail).leave_voicemail("CA0123456789abcdef0123456789abcdef", "Call us back at 5 & 6 <today>").await.unwrap();
    assert_eq!(
        form_of(&voicemail.received_requests().await.unwrap()[0].body),
        vec![("Twiml".to_string(), "<Response><Say>Call us back at 5 &amp; 6 &lt;today&gt;</Say><Hangup/></Response>".to_string())]
    );
    let plain = CallRequest { voicemail: Voicemail::default(), recording: false, ..request() };
    let fields = twilio(&hangup).call_form(&plain);
    assert!(fields.contains(&("MachineDetection", "DetectMessageEnd".into())));
    assert!(!fields.iter().any(|(k, _)| k.starts_with("Record")));
}

#[tokio::test]
async fn twilio_refusals_keep_its_code_and_outages_are_transient() {
    let server = MockServer::start().await;
    let refusal = json!({ "code": 21211, "message": "The 'To' number +14155550123 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400 });
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(400).set_body_json(refusal)).up_to_n_times(1).mount(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "code": 20429, "message": "Too Many Requests", "status": 429 })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503).set_body_string("upstream down")).mount(&server).await;
    let twilio = twilio(&server);
    let refused = twilio.place_call(&request()).await.unwrap_err();
    assert_eq!(
        refused,
        ProviderError::Refused {
            provider: "twilio",
            status: 400,
            message: "21211: The 'To' number +14155550123 is not a valid phone number.".into()
        }
    );
    assert!(!refused.is_transient());
    let limited = twilio.place_call(&request()).await.unwrap_err();
    assert!(
        matches!(limited, ProviderError::RateLimited { .. }) && limited.is_transient() && !limited.may_have_acted(),
        "a 429 made nothing"
    );
    let down = twilio.place_call(&request()).await.unwrap_err();
    assert!(matches!(down, ProviderError::Unavailable { .. }) && down.is_transient());
    assert!(down.may_have_acted(), "a 5xx came after the request was taken: the call may exist");
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "one attempt each: the queue owns retries");
    // a connection that was never made carried nothing; an answer that never came may hide a call
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let account = TwilioAccount { base_url: format!("http://{closed}"), account_sid: "AC123".into(), auth_token: "t".into() };
    let endpoints = TwilioEndpoints { public_url: "https://hooks.example.com".into(), bridge_url: "wss://bridge.example.com/media".into() };
    let refused_connection = Twilio::new(&account, endpoints.clone(), RetryPolicy::once()).place_call(&request()).await.unwrap_err();
    assert!(refused_connection.is_transient() && !refused_connection.may_have_acted(), "{refused_connection:?}");
    let slow = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(2))).mount(&slow).await;
    let account = TwilioAccount { base_url: slow.uri(), ..account };
    let timeout = RetryPolicy { timeout: Duration::from_millis(300), ..RetryPolicy::once() };
    let unanswered = Twilio::new(&account, endpoints, timeout).place_call(&request()).await.unwrap_err();
    assert!(unanswered.may_have_acted(), "{unanswered:?}");
}

fn metadata(call: &CallRequest) -> Value {
    json!({
        "outdial_org_id": call.org_id.to_string(), "outdial_campaign_id": call.campaign_id.to_string(),
        "outdial_call_id": call.call_id.to_string(), "outdial_contact_id": call.contact_id.to_string(),
    })
}

/// After a lost answer: each provider is asked for the calls it made, in its own format, and only
/// ours are taken.
#[tokio::test]
async fn placed_calls_are_found_again_at_each_provider() {
    let server = MockServer::start().await;
    let call = request();
    let since = chrono::DateTime::parse_from_rfc3339("2026-11-24T15:00:10Z").unwrap().to_utc();
    let created = |secs: i64| (since + chrono::TimeDelta::seconds(secs)).to_rfc2822();
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123/Calls.json"))
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .and(query_param("To", "+14155550123"))
        .and(query_param("StartTime>", "2026-11-24"))
        .and(query_param("PageSize", "20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "calls": [
            { "sid": "CAbefore", "to": "+14155550123", "from": "+14155550100", "status": "busy", "date_created": created(-600) },
            { "sid": "CAfirst", "to": "+14155550123", "from": "+14155550100", "status": "ringing", "date_created": created(0) },
        ], "page": 0, "page_size": 20 })))
        .expect(1)
        .mount(&server)
        .await;
    // queued calls have no start time: only a status filter lists them
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123/Calls.json"))
        .and(query_param("To", "+14155550123"))
        .and(query_param("Status", "queued"))
        .and(query_param("PageSize", "20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "calls": [
            { "sid": "CAsecond", "to": "+14155550123", "from": "+14155550100", "status": "queued", "date_created": created(3) },
            { "sid": "CAotherline", "to": "+14155550123", "from": "+14155550999", "status": "queued", "date_created": created(1) },
        ], "page": 0, "page_size": 20 })))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        twilio(&server).find_placed_call(&call, since).await.unwrap(),
        ["CAfirst", "CAsecond"],
        "since the dial began, from our number"
    );

    Mock::given(method("GET"))
        .and(path("/call"))
        .and(header("authorization", "Bearer vapi-key"))
        .and(query_param("createdAtGt", "2026-11-24T15:00:05.000Z"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": "vapi_newer", "metadata": metadata(&call) },
            { "id": "vapi_other", "metadata": { "outdial_call_id": CallId::new().to_string() } },
            { "id": "vapi_none" },
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let vapi = Vapi::new(&server.uri(), "vapi-key", RetryPolicy::once());
    assert_eq!(vapi.find_placed_call(&call, since).await.unwrap(), ["vapi_newer"]);

    Mock::given(method("POST"))
        .and(path("/v3/list-calls"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_json(json!({
            "filter_criteria": { "metadata": [{ "type": "string", "op": "eq", "key": "outdial_call_id", "value": call.call_id.to_string() }] },
            "sort_order": "ascending",
            "limit": 50,
        })))
        // a filter Retell applied loosely is matched again on our side
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "items": [
            { "call_id": "retell_other", "metadata": {} },
            { "call_id": "retell_ours", "call_status": "registered", "metadata": metadata(&call) },
        ], "has_more": false })))
        .expect(1)
        .mount(&server)
        .await;
    let retell = Retell::new(&server.uri(), "retell-key", RetryPolicy::once());
    assert_eq!(retell.find_placed_call(&call, since).await.unwrap(), ["retell_ours"]);

    let elevenlabs = ElevenLabs::new(&server.uri(), "xi-key", RetryPolicy::once());
    assert!(matches!(elevenlabs.find_placed_call(&call, since).await, Err(ProviderError::Unsupported { .. })), "no list to ask");
}

fn variables_with_ids(call: &CallRequest) -> Value {
    json!({
        "name": "Ada Lovelace", "plan": "gold",
        "outdial_org_id": call.org_id.to_string(), "outdial_campaign_id": call.campaign_id.to_string(),
        "outdial_call_id": call.call_id.to_string(), "outdial_contact_id": call.contact_id.to_string(),
    })
}

#[tokio::test]
async fn elevenlabs_places_a_native_twilio_outbound_call() {
    let server = MockServer::start().await;
    let call = request();
    Mock::given(method("POST"))
        .and(path("/v1/convai/twilio/outbound-call"))
        .and(header("xi-api-key", "xi-key"))
        .and(body_json(json!({
            "agent_id": "agent_7",
            "agent_phone_number_id": "phnum_1",
            "to_number": "+14155550123",
            "conversation_initiation_client_data": { "dynamic_variables": variables_with_ids(&call) },
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "success": true, "message": "Call initiated", "conversation_id": "conv_9", "callSid": "CAabc" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let eleven = ElevenLabs::new(&server.uri(), "xi-key", RetryPolicy::once());
    let from_registered = CallRequest { from_number_id: Some("phnum_1".into()), ..call.clone() };
    assert_eq!(eleven.place_call(&from_registered).await.unwrap(), "conv_9");
    assert!(matches!(eleven.place_call(&call).await.unwrap_err(), ProviderError::NotConfigured { provider: "elevenlabs", .. }));
}

/// Vapi's create-call body for `call`: the variables, and this campaign's time limit and
/// voicemail action as per-call assistant overrides.
fn vapi_body(call: &CallRequest, voicemail_message: Option<&str>) -> Value {
    let mut overrides = json!({
        "variableValues": variables_with_ids(call),
        "maxDurationSeconds": call.max_call_seconds,
        "voicemailDetection": { "provider": "vapi" },
    });
    if let Some(message) = voicemail_message {
        overrides["voicemailMessage"] = json!(message);
    }
    json!({
        "assistantId": "agent_7",
        "phoneNumberId": "pn_1",
        "customer": { "number": "+14155550123", "name": "Ada Lovelace" },
        "assistantOverrides": overrides,
        "metadata": metadata(call),
    })
}

/// Retell's create-phone-call body for `call`, its limits in `agent_override`.
fn retell_body(call: &CallRequest, voicemail_action: Value) -> Value {
    json!({
        "from_number": "+14155550100",
        "to_number": "+14155550123",
        "override_agent_id": "agent_7",
        "agent_override": { "agent": {
            "max_call_duration_ms": u64::from(call.max_call_seconds) * 1000,
            "voicemail_option": { "action": voicemail_action },
        } },
        "retell_llm_dynamic_variables": variables_with_ids(call),
        "metadata": metadata(call),
    })
}

#[tokio::test]
async fn vapi_and_retell_create_calls_with_the_contacts_variables_time_limit_and_voicemail_action() {
    let server = MockServer::start().await;
    let leave = CallRequest { from_number_id: Some("pn_1".into()), ..request() };
    let hang_up = CallRequest { voicemail: Voicemail::default(), max_call_seconds: 90, ..leave.clone() };
    for (call, id) in [(&leave, "vapi_call_1"), (&hang_up, "vapi_call_2")] {
        Mock::given(method("POST"))
            .and(path("/call"))
            .and(header("authorization", "Bearer vapi-key"))
            .and(body_json(vapi_body(call, call.voicemail_message())))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": id, "status": "queued" })))
            .expect(1)
            .mount(&server)
            .await;
    }
    let retell_hang_up = json!({ "type": "hangup" });
    let retell_leave = json!({ "type": "static_text", "text": "Please call us back at 5." });
    for (call, action, id) in [(&leave, retell_leave, "retell_call_1"), (&hang_up, retell_hang_up, "retell_call_2")] {
        Mock::given(method("POST"))
            .and(path("/v2/create-phone-call"))
            .and(header("authorization", "Bearer retell-key"))
            .and(body_json(retell_body(call, action)))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "call_id": id, "call_status": "registered" })))
            .expect(1)
            .mount(&server)
            .await;
    }
    assert_eq!(vapi_body(&leave, Some("Please call us back at 5."))["assistantOverrides"]["voicemailMessage"], "Please call us back at 5.");
    let vapi = Vapi::new(&server.uri(), "vapi-key", RetryPolicy::once());
    assert_eq!(vapi.place_call(&leave).await.unwrap(), "vapi_call_1");
    assert_eq!(vapi.place_call(&hang_up).await.unwrap(), "vapi_call_2");
    let retell = Retell::new(&server.uri(), "retell-key", RetryPolicy::once());
    assert_eq!(retell.place_call(&leave).await.unwrap(), "retell_call_1");
    assert_eq!(retell.place_call(&hang_up).await.unwrap(), "retell_call_2");
}

#[tokio::test]
async fn the_simulator_reports_like_twilio_with_valid_signatures() {
    let hooks = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&hooks).await;
    let webhooks = SimulatorWebhooks {
        public_url: hooks.uri(),
        twilio_account_sid: "ACsim".into(),
        twilio_auth_token: "sim-token".into(),
        elevenlabs_webhook_secret: Some("wsec".into()),
    };
    let human = SimulatorOdds { busy: 0.0, no_answer: 0.0, failed: 0.0, machine: 0.0, opt_out: 1.0, ..Default::default() };
    let simulator = SimulatedCalls::new(webhooks.clone(), human, 7, 1_000.0);
    let call = request();
    let sid = simulator.place_call(&call).await.unwrap();
    assert!(sid.starts_with("CA") && sid.len() == 34);
    // another process with the same seed, calling the same number for another call: another CallSid
    let other_hooks = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&other_hooks).await;
    let elsewhere = SimulatedCalls::new(SimulatorWebhooks { public_url: other_hooks.uri(), ..webhooks.clone() }, human, 7, 1_000.0);
    let other = elsewhere.place_call(&CallRequest { call_id: CallId::new(), ..call.clone() }).await.unwrap();
    assert_ne!(other, sid, "CallSids are unique across processes sharing a seed");
    assert_eq!(
        simulator.find_placed_call(&call, chrono::Utc::now()).await.unwrap(),
        std::slice::from_ref(&sid),
        "its calls can be looked up"
    );

    let mut received = Vec::new();
    for _ in 0..500 {
        received = hooks.received_requests().await.unwrap();
        if received.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(received.len(), 6, "initiated, ringing, in-progress, AMD, completed, transcript");
    let mut statuses = Vec::new();
    for r in &received[..5] {
        // what the simulator was told our public URL is, and our call id: the exact URL Twilio signs
        assert_eq!(r.url.query(), Some(format!("callId={}", call.call_id).as_str()));
        let url = format!("{}{}?{}", hooks.uri(), r.url.path(), r.url.query().unwrap());
        let fields = form_of(&r.body);
        let signed = providers::twilio::signature("sim-token", &url, fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(r.headers["x-twilio-signature"].to_str().unwrap(), signed, "signed over {url}");
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(field("CallSid").as_deref(), Some(sid.as_str()));
        match r.url.path() {
            "/webhooks/twilio/status" => {
                assert_eq!(field("CallbackSource").as_deref(), Some("call-progress-events"));
                statuses.push((field("CallStatus").unwrap(), field("SequenceNumber").unwrap()));
            }
            "/webhooks/twilio/amd" => assert_eq!(field("AnsweredBy").as_deref(), Some("human")),
            other => panic!("unexpected callback {other}"),
        }
    }
    let expected = [("initiated", "0"), ("ringing", "1"), ("in-progress", "2"), ("completed", "3")];
    assert_eq!(statuses, expected.map(|(s, n)| (s.to_string(), n.to_string())));

    let transcript = &received[5];
    assert_eq!(transcript.url.path(), "/webhooks/elevenlabs");
    let header = transcript.headers["elevenlabs-signature"].to_str().unwrap();
    let (t, v0) = header.strip_prefix("t=").unwrap().split_once(",v0=").unwrap();
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"wsec").unwrap();
    mac.update(format!("{t}.{}", String::from_utf8_lossy(&transcript.body)).as_bytes());
    assert_eq!(v0, hex::encode(mac.finalize().into_bytes()));
    let body: Value = serde_json::from_slice(&transcript.body).unwrap();
    assert_eq!(body["type"], "post_call_transcription");
    assert_eq!(body["data"]["conversation_initiation_client_data"]["dynamic_variables"]["outdial_call_id"], call.call_id.to_string());
    assert!(body["data"]["transcript"].as_array().unwrap().iter().any(|l| l["message"] == "Please don't call me again."));
}

#[tokio::test]
async fn a_caller_id_is_registered_only_when_the_provider_accounts_hold_it() {
    let server = MockServer::start().await;
    let ours = "+14155550100";
    Mock::given(method("GET"))
        .and(path("/2010-04-01/Accounts/AC123/IncomingPhoneNumbers.json"))
        .and(query_param("PhoneNumber", ours))
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "incoming_phone_numbers": [{ "sid": "PN1", "phone_number": ours }] })),
        )
        .mount(&server)
        .await;
    for resource in ["IncomingPhoneNumbers", "OutgoingCallerIds"] {
        let list = if resource == "IncomingPhoneNumbers" { "incoming_phone_numbers" } else { "outgoing_caller_ids" };
        Mock::given(method("GET"))
            .and(path(format!("/2010-04-01/Accounts/AC123/{resource}.json")))
            .and(query_param("PhoneNumber", "+14155550199"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ list: [] })))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/phone-number/pn_1"))
        .and(header("authorization", "Bearer vapi-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "pn_1", "provider": "twilio", "number": ours })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/phone-numbers/phnum_9"))
        .and(header("xi-api-key", "xi-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "phone_number_id": "phnum_9", "phone_number": "+14155550177" })))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/phone-number/pn_other")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    let account = |key: &str| Some(ProviderAccount { base_url: server.uri(), api_key: key.into() });
    let accounts = ProviderAccounts {
        twilio: Some(TwilioAccount { base_url: server.uri(), account_sid: "AC123".into(), auth_token: "secret-token".into() }),
        vapi: account("vapi-key"),
        elevenlabs: account("xi-key"),
        retell: None,
        simulator: false,
    };
    let check = NumberOwnership::new(&accounts);
    let phone = |p: &str| E164::parse(p, None).unwrap();
    assert_eq!(check.refusal(&phone(ours), None, None).await.unwrap(), None, "owned by the Twilio account");
    let refused = check.refusal(&phone("+14155550199"), None, None).await.unwrap().unwrap();
    assert!(refused.contains("verified caller IDs"), "{refused}");
    assert_eq!(check.refusal(&phone(ours), Some("pn_1"), None).await.unwrap(), None, "Vapi holds it under pn_1");
    let other = check.refusal(&phone(ours), Some("pn_other"), None).await.unwrap().unwrap();
    assert_eq!(other, "Vapi has no phone number pn_other");
    let elsewhere = check.refusal(&phone(ours), None, Some("phnum_9")).await.unwrap().unwrap();
    assert_eq!(elsewhere, "ElevenLabs's phone number phnum_9 is not +14155550100", "another number's id is refused");
    // no Twilio account: the simulator's deployment takes any number given without provider ids
    let simulator = NumberOwnership::new(&ProviderAccounts::default());
    assert_eq!(simulator.refusal(&phone("+14155550199"), None, None).await.unwrap(), None);
    assert!(simulator.refusal(&phone(ours), Some("pn_1"), None).await.unwrap().unwrap().contains("VAPI_API_KEY"));
}
