//! Each provider adapter against a wiremock fake of its real API: method, path, auth header and
//! body as the provider defines them; refusals, rate limits and outages.

use domain::ProviderKind;
use domain::{AssistantConfig, Voice};
use providers::{
    AgentToolset, AssistantProvider, AssistantProviders, ElevenLabs, ProviderAccount, ProviderAccounts, ProviderError, Retell, RetryPolicy,
    SimulatedAssistants, Vapi,
};
use serde_json::json;
use std::time::Duration;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy { retries: 2, backoff: Duration::from_millis(5), max_wait: Duration::from_secs(2), timeout: Duration::from_secs(5) }
}

fn config() -> AssistantConfig {
    AssistantConfig {
        system_prompt: "You book demos for Acme.".into(),
        first_message: "Hi, this is an AI assistant calling for Acme.".into(),
        end_call_message: Some("Thanks, goodbye.".into()),
        voice: Some(Voice { provider: "11labs".into(), voice_id: "EXAVITQu4vr4xnSDxMaL".into() }),
        model: Some("gpt-4o-mini".into()),
        language: None,
        silence_timeout_seconds: Some(20),
        max_duration_seconds: Some(600),
        tools: None,
    }
}

#[tokio::test]
async fn vapi_create_get_and_update_speak_its_api() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(header("authorization", "Bearer vapi-key"))
        .and(body_partial_json(json!({
            "name": "Sales",
            "firstMessage": "Hi, this is an AI assistant calling for Acme.",
            "model": { "provider": "openai", "model": "gpt-4o-mini", "messages": [{ "role": "system", "content": "You book demos for Acme." }] },
            "voice": { "provider": "11labs", "voiceId": "EXAVITQu4vr4xnSDxMaL" },
            "endCallMessage": "Thanks, goodbye.",
            "silenceTimeoutSeconds": 20,
            "maxDurationSeconds": 600
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_1", "orgId": "org_9", "name": "Sales" })))
        .expect(1)
        .mount(&server)
        .await;
    let stored = json!({
        "id": "asst_1", "name": "Sales", "firstMessage": "Hi, this is an AI assistant calling for Acme.",
        "model": { "provider": "openai", "model": "gpt-4o-mini", "messages": [{ "role": "system", "content": "You book demos for Acme." }] },
        "voice": { "provider": "11labs", "voiceId": "EXAVITQu4vr4xnSDxMaL" },
        "endCallMessage": "Thanks, goodbye.", "silenceTimeoutSeconds": 20, "maxDurationSeconds": 600,
        "createdAt": "2026-11-21T08:00:00.000Z"
    });
    Mock::given(method("GET"))
        .and(path("/assistant/asst_1"))
        .and(header("authorization", "Bearer vapi-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&stored))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_1"))
        .and(header("authorization", "Bearer vapi-key"))
        .and(body_partial_json(json!({ "name": "Sales v2", "firstMessage": "Hi, this is an AI assistant calling for Acme." })))
        .respond_with(ResponseTemplate::new(200).set_body_json(&stored))
        .expect(1)
        .mount(&server)
        .await;

    let vapi = Vapi::new(&server.uri(), "vapi-key", fast_retries());
    assert_eq!(vapi.create_assistant("Sales", &config(), &AgentToolset::default()).await.unwrap(), "asst_1");
    let fetched = vapi.get_assistant("asst_1").await.unwrap();
    assert_eq!((fetched.id.as_str(), fetched.name.as_str()), ("asst_1", "Sales"));
    assert_eq!(fetched.config, config(), "what we send is what we read back");
    vapi.update_assistant("asst_1", "Sales v2", &config(), &AgentToolset::default()).await.unwrap();
    assert!(!format!("{vapi:?}").contains("vapi-key"), "credentials never reach logs");
}

#[tokio::test]
async fn vapi_refusals_and_missing_assistants_are_typed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({ "message": ["voice.voiceId must be a valid voice"], "error": "Bad Request", "statusCode": 400 })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/assistant/nope"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found", "statusCode": 404 })))
        .mount(&server)
        .await;
    let vapi = Vapi::new(&server.uri(), "k", fast_retries());
    let refused = vapi.create_assistant("Sales", &config(), &AgentToolset::default()).await.unwrap_err();
    assert_eq!(refused, ProviderError::Refused { provider: "vapi", status: 400, message: "voice.voiceId must be a valid voice".into() });
    assert!(!refused.is_transient());
    assert!(matches!(vapi.get_assistant("nope").await, Err(ProviderError::NotFound { .. })));
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/assistant/a1"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/assistant/a1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "a1", "name": "A", "firstMessage": "Hi", "model": { "model": "gpt-4o", "messages": [] } })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/assistant/down"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .expect(3)
        .mount(&server)
        .await;

    let vapi = Vapi::new(&server.uri(), "k", fast_retries());
    assert_eq!(vapi.get_assistant("a1").await.unwrap().name, "A", "a 429 is retried");
    let down = vapi.get_assistant("down").await.unwrap_err();
    assert!(matches!(&down, ProviderError::Unavailable { detail, .. } if detail.contains("upstream unavailable")), "{down:?}");
    assert!(down.is_transient());
}

#[tokio::test]
async fn rate_limits_that_persist_give_up_as_rate_limited() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/v1/convai/agents/ag_1"))
        .respond_with(ResponseTemplate::new(429))
        .expect(3)
        .mount(&server)
        .await;
    let el = ElevenLabs::new(&server.uri(), "k", fast_retries());
    assert_eq!(
        el.update_assistant("ag_1", "A", &config(), &AgentToolset::default()).await,
        Err(ProviderError::RateLimited { provider: "elevenlabs", retry_after: None })
    );
}

#[tokio::test]
async fn elevenlabs_agents_are_set_to_ulaw_8000_both_ways() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/convai/agents/create"))
        .and(header("xi-api-key", "el-key"))
        .and(body_partial_json(json!({
            "name": "Sales",
            "conversation_config": {
                "agent": { "first_message": "Hi, this is an AI assistant calling for Acme.", "prompt": { "prompt": "You book demos for Acme.", "llm": "gpt-4o-mini" } },
                "tts": { "voice_id": "EXAVITQu4vr4xnSDxMaL", "agent_output_audio_format": "ulaw_8000" },
                "asr": { "user_input_audio_format": "ulaw_8000" },
                "conversation": { "max_duration_seconds": 600 }
            },
            // reachable only through signed URLs: strangers cannot start conversations with our variables
            "platform_settings": { "auth": { "enable_auth": true } }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "agent_id": "ag_1" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/v1/convai/agents/ag_1")).and(header("xi-api-key", "el-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "agent_id": "ag_1", "name": "Sales",
            "conversation_config": {
                "agent": { "first_message": "Hi, this is an AI assistant calling for Acme.", "language": "en", "prompt": { "prompt": "You book demos for Acme.", "llm": "gpt-4o-mini" } },
                "tts": { "voice_id": "EXAVITQu4vr4xnSDxMaL", "agent_output_audio_format": "ulaw_8000" },
                "asr": { "user_input_audio_format": "ulaw_8000" },
                "conversation": { "max_duration_seconds": 600 }
            }
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/agents/missing"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({ "detail": { "status": "agent_not_found", "message": "Agent not found" } })),
        )
        .mount(&server)
        .await;

    let el = ElevenLabs::new(&server.uri(), "el-key", fast_retries());
    assert_eq!(el.create_assistant("Sales", &config(), &AgentToolset::default()).await.unwrap(), "ag_1");
    let agent = el.get_assistant("ag_1").await.unwrap();
    assert_eq!(agent.config.first_message, config().first_message);
    assert_eq!(agent.config.voice.unwrap().voice_id, "EXAVITQu4vr4xnSDxMaL");
    assert_eq!((agent.config.language.as_deref(), agent.config.max_duration_seconds), (Some("en"), Some(600)));
    assert!(matches!(el.get_assistant("missing").await, Err(ProviderError::NotFound { .. })));
}

#[tokio::test]
async fn the_simulator_keeps_what_it_is_given() {
    let sim = SimulatedAssistants::default();
    let id = sim.create_assistant("Demo", &config(), &AgentToolset::default()).await.unwrap();
    assert_eq!(sim.get_assistant(&id).await.unwrap().config, config());
    sim.update_assistant(&id, "Demo 2", &config(), &AgentToolset::default()).await.unwrap();
    assert_eq!(sim.get_assistant(&id).await.unwrap().name, "Demo 2");
    assert!(matches!(sim.get_assistant("sim_asst_nope").await, Err(ProviderError::NotFound { .. })));
}

#[tokio::test]
async fn retell_assistants_are_an_llm_and_an_agent() {
    let server = MockServer::start().await;
    let llm = json!({
        "llm_id": "llm_1", "general_prompt": "You book demos for Acme.", "begin_message": "Hi, this is an AI assistant calling for Acme.",
        "model": "gpt-4o-mini", "start_speaker": "agent", "version": 0
    });
    let agent = json!({
        "agent_id": "agent_1", "agent_name": "Sales", "voice_id": "EXAVITQu4vr4xnSDxMaL",
        "response_engine": { "type": "retell-llm", "llm_id": "llm_1", "version": 0 },
        "end_call_after_silence_ms": 20000, "max_call_duration_ms": 600000, "last_modification_timestamp": 1703413636133u64
    });
    Mock::given(method("POST"))
        .and(path("/create-retell-llm"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_partial_json(json!({
            "general_prompt": "You book demos for Acme.", "begin_message": "Hi, this is an AI assistant calling for Acme.",
            "model": "gpt-4o-mini", "start_speaker": "agent"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(&llm))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/create-agent"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_partial_json(json!({
            "agent_name": "Sales", "voice_id": "EXAVITQu4vr4xnSDxMaL",
            "response_engine": { "type": "retell-llm", "llm_id": "llm_1" },
            "end_call_after_silence_ms": 20000, "max_call_duration_ms": 600000
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(&agent))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/get-agent/agent_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&agent))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/get-retell-llm/llm_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&llm))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/update-retell-llm/llm_1"))
        .and(header("authorization", "Bearer retell-key"))
        .and(body_partial_json(json!({ "general_prompt": "You qualify leads." })))
        .respond_with(ResponseTemplate::new(200).set_body_json(&llm))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/update-agent/agent_1"))
        .and(body_partial_json(json!({ "agent_name": "Sales v2" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(&agent))
        .expect(1)
        .mount(&server)
        .await;

    let retell = Retell::new(&server.uri(), "retell-key", fast_retries());
    assert_eq!(retell.create_assistant("Sales", &config(), &AgentToolset::default()).await.unwrap(), "agent_1");
    let fetched = retell.get_assistant("agent_1").await.unwrap();
    assert_eq!(fetched.name, "Sales");
    assert_eq!(
        fetched.config,
        AssistantConfig {
            end_call_message: None,
            voice: Some(Voice { provider: "retell".into(), voice_id: "EXAVITQu4vr4xnSDxMaL".into() }),
            ..config()
        }
    );
    let changed = AssistantConfig { system_prompt: "You qualify leads.".into(), ..config() };
    retell.update_assistant("agent_1", "Sales v2", &changed, &AgentToolset::default()).await.unwrap();
    assert!(!format!("{retell:?}").contains("retell-key"));
}

#[tokio::test]
async fn a_refused_retell_agent_leaves_no_orphan_llm() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/create-retell-llm"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "llm_id": "llm_9" })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/create-agent"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({ "error_message": "voice_id is invalid", "message": "voice_id is invalid" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/delete-retell-llm/llm_9"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let retell = Retell::new(&server.uri(), "k", fast_retries());
    let refused = retell.create_assistant("Sales", &config(), &AgentToolset::default()).await.unwrap_err();
    assert_eq!(refused, ProviderError::Refused { provider: "retell", status: 400, message: "voice_id is invalid".into() });
}

#[tokio::test]
async fn only_configured_providers_can_be_used_and_the_simulator_always() {
    let account = ProviderAccount { base_url: "http://127.0.0.1:9".into(), api_key: "secret-key".into() };
    let accounts = ProviderAccounts { vapi: Some(account), ..Default::default() };
    assert!(!format!("{accounts:?}").contains("secret-key"));
    let providers = AssistantProviders::new(&accounts, fast_retries());
    assert_eq!(providers.get(ProviderKind::Vapi).unwrap().kind(), ProviderKind::Vapi);
    assert_eq!(providers.get(ProviderKind::Simulator).unwrap().kind(), ProviderKind::Simulator);
    let missing = providers.get(ProviderKind::Retell).unwrap_err();
    assert_eq!(missing, ProviderError::NotConfigured { provider: "retell", variable: "RETELL_API_KEY" });
    let sim = providers.get(ProviderKind::Simulator).unwrap();
    let id = sim.create_assistant("Demo", &config(), &AgentToolset::default()).await.unwrap();
    assert_eq!(
        providers.get(ProviderKind::Simulator).unwrap().get_assistant(&id).await.unwrap().name,
        "Demo",
        "one simulator per deployment"
    );
}

fn toolset() -> AgentToolset {
    AgentToolset {
        tools: domain::AgentTool::defaults(true, false),
        public_url: Some("https://outdial.example/".into()),
        vapi_secret: Some("vapi-secret".into()),
        elevenlabs_secret: Some("el-secret".into()),
    }
}

/// The JSON bodies the fake received, in order.
async fn bodies(server: &MockServer) -> Vec<serde_json::Value> {
    server.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

#[tokio::test]
async fn tools_are_declared_in_each_providers_create_and_update_bodies() {
    use domain::AgentTool::{Book, CurrentTime, DoNotCall};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_1" })))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "asst_1" })))
        .mount(&server)
        .await;
    let vapi = Vapi::new(&server.uri(), "vapi-key", fast_retries());
    vapi.create_assistant("Sales", &config(), &toolset()).await.unwrap();
    vapi.update_assistant("asst_1", "Sales", &config(), &toolset()).await.unwrap();
    let function = |tool: domain::AgentTool| {
        json!({
            "type": "function",
            "function": { "name": tool.as_str(), "description": tool.description(), "parameters": tool.parameters() },
            "server": { "url": "https://outdial.example/tools/vapi", "secret": "vapi-secret" },
        })
    };
    let vapi_tools = json!([function(CurrentTime), function(DoNotCall), function(Book), { "type": "endCall" }]);
    for body in bodies(&server).await {
        assert_eq!(body["model"]["tools"], vapi_tools);
    }

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/create-retell-llm"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "llm_id": "llm_1" })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/create-agent"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "agent_id": "agent_1" })))
        .mount(&server)
        .await;
    let agent = json!({ "agent_id": "agent_1", "response_engine": { "type": "retell-llm", "llm_id": "llm_1" } });
    Mock::given(method("GET"))
        .and(path("/get-agent/agent_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(agent))
        .mount(&server)
        .await;
    Mock::given(method("PATCH")).respond_with(ResponseTemplate::new(200).set_body_json(json!({}))).mount(&server).await;
    let retell = Retell::new(&server.uri(), "retell-key", fast_retries());
    retell.create_assistant("Sales", &config(), &toolset()).await.unwrap();
    retell.update_assistant("agent_1", "Sales", &config(), &toolset()).await.unwrap();
    let custom = |tool: domain::AgentTool| {
        json!({
            "type": "custom", "name": tool.as_str(), "description": tool.description(),
            "url": format!("https://outdial.example/tools/retell/{}", tool.as_str()), "parameters": tool.parameters(),
            "speak_during_execution": false, "speak_after_execution": true,
        })
    };
    let end_call = json!({ "type": "end_call", "name": "end_call", "description": domain::AgentTool::EndCall.description() });
    let retell_tools = json!([custom(CurrentTime), custom(DoNotCall), custom(Book), end_call]);
    let requests = server.received_requests().await.unwrap();
    let llm_bodies: Vec<serde_json::Value> =
        requests.iter().filter(|r| r.url.path().contains("retell-llm")).map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(llm_bodies.len(), 2, "the LLM is written on create and on update");
    for body in llm_bodies {
        assert_eq!(body["general_tools"], retell_tools);
    }

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/convai/agents/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "agent_id": "ag_1" })))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/convai/agents/ag_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "agent_id": "ag_1" })))
        .mount(&server)
        .await;
    let el = ElevenLabs::new(&server.uri(), "el-key", fast_retries());
    el.create_assistant("Sales", &config(), &toolset()).await.unwrap();
    el.update_assistant("ag_1", "Sales", &config(), &toolset()).await.unwrap();
    let filled = |variable: &str| json!({ "type": "string", "description": "filled in by ElevenLabs", "dynamic_variable": variable });
    let webhook = |tool: domain::AgentTool| {
        let mut schema = tool.parameters();
        schema["description"] = json!(format!("The {} request", tool.as_str()));
        schema["properties"]["conversation_id"] = filled("system__conversation_id");
        schema["properties"]["outdial_org_id"] = filled("outdial_org_id");
        schema["properties"]["outdial_call_id"] = filled("outdial_call_id");
        json!({
            "type": "webhook", "name": tool.as_str(), "description": tool.description(),
            "api_schema": {
                "url": format!("https://outdial.example/tools/elevenlabs/{}", tool.as_str()), "method": "POST",
                "request_body_schema": schema, "request_headers": { "X-Outdial-Tool-Secret": "el-secret" },
            },
        })
    };
    let system = |name: &str, description: &str| json!({ "type": "system", "name": name, "description": description, "params": { "system_tool_type": name } });
    for body in bodies(&server).await {
        let prompt = &body["conversation_config"]["agent"]["prompt"];
        assert_eq!(prompt["tools"], json!([webhook(CurrentTime), webhook(DoNotCall), webhook(Book)]));
        assert_eq!(
            prompt["built_in_tools"],
            json!({
                "end_call": system("end_call", domain::AgentTool::EndCall.description()),
                "voicemail_detection": system("voicemail_detection", "Ends the call when an answering machine or voicemail answers."),
            })
        );
    }
}

#[tokio::test]
async fn without_a_public_url_only_the_providers_own_tools_are_declared() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_1" })))
        .mount(&server)
        .await;
    let vapi = Vapi::new(&server.uri(), "vapi-key", fast_retries());
    let nowhere = AgentToolset { public_url: None, ..toolset() };
    vapi.create_assistant("Sales", &config(), &nowhere).await.unwrap();
    assert_eq!(bodies(&server).await[0]["model"]["tools"], json!([{ "type": "endCall" }]));
    // and none at all when the assistant names none
    let none = AgentToolset { tools: vec![], ..toolset() };
    vapi.create_assistant("Sales", &config(), &none).await.unwrap();
    assert_eq!(bodies(&server).await[1]["model"]["tools"], json!([]));
}
