//! The assistant directory through its HTTP routes, on both stores (DynamoDB when
//! `DYNAMODB_ENDPOINT` is set), against wiremock fakes of Vapi, ElevenLabs and Retell.

use assistants::{AppState, install_templates, router};
use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode},
};
use chrono::{Duration, Utc};
use domain::{CampaignStatus, Cap, NewCampaign, OrgId, ProviderKind};
use http_body_util::BodyExt;
use providers::{AssistantProvider, AssistantProviders, ProviderAccount, ProviderAccounts, RetryPolicy};
use serde_json::{Value, json};
use store::{SqliteStore, Store};
use tower::ServiceExt;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

struct App<S> {
    router: Router,
    store: S,
    providers: AssistantProviders,
    org: OrgId,
    key: String,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

fn account(server: &MockServer) -> Option<ProviderAccount> {
    Some(ProviderAccount { base_url: server.uri(), api_key: "test-key".into() })
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        retries: 2,
        backoff: std::time::Duration::from_millis(5),
        max_wait: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(5),
    }
}

impl<S: Store> App<S> {
    async fn new(store: S, accounts: ProviderAccounts) -> Self {
        // the state as from_config builds it, with retries fast enough for tests
        let providers = AssistantProviders::new(&accounts, fast_retries());
        let (router, _) = router()
            .with_state(AppState { store: store.clone(), providers: providers.clone(), tools: Default::default() })
            .split_for_parts();
        let org = store.create_org("Acme Outbound").await.unwrap().id;
        let key = store.create_api_key(org).await.unwrap().secret;
        Self { router, store, providers, org, key }
    }

    /// The same directory served by a deployment whose agents' tools are declared as `tools` says.
    fn declaring(mut self, tools: app::ToolDeclarations) -> Self {
        let state = AppState { store: self.store.clone(), providers: self.providers.clone(), tools };
        self.router = router().with_state(state).split_for_parts().0;
        self
    }

    async fn other_key(&self) -> String {
        let other = self.store.create_org("Someone else").await.unwrap().id;
        self.store.create_api_key(other).await.unwrap().secret
    }

    async fn send(&self, method: &str, uri: &str, key: Option<&str>, if_match: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status: parts.status, headers: parts.headers, body }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri, Some(&self.key), None, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.send("POST", uri, Some(&self.key), None, Some(body)).await
    }

    async fn patch(&self, uri: &str, if_match: Option<&str>, body: Value) -> Reply {
        self.send("PATCH", uri, Some(&self.key), if_match, Some(body)).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.send("DELETE", uri, Some(&self.key), None, None).await
    }

    async fn create(&self, name: &str, provider: &str) -> Value {
        let reply = self.post("/assistants", json!({ "name": name, "provider": provider, "config": config("You book demos.") })).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body
    }
}

fn config(prompt: &str) -> Value {
    json!({
        "systemPrompt": prompt,
        "firstMessage": "Hi, this is an AI assistant calling for Acme.",
        "silenceTimeoutSeconds": 20,
        "maxDurationSeconds": 600
    })
}

fn problem_type(reply: &Reply) -> &str {
    assert_eq!(reply.headers["content-type"], "application/problem+json", "{}", reply.body);
    reply.body["type"].as_str().unwrap().trim_start_matches("https://outdial.dev/problems/")
}

async fn requests_to(server: &MockServer, verb: &str, route: &str) -> Vec<Value> {
    let received = server.received_requests().await.unwrap_or_default();
    received.iter().filter(|r| r.method.as_str() == verb && r.url.path() == route).map(|r| r.body_json().unwrap_or(Value::Null)).collect()
}

/// Tools are declared at the deployment's public URL, which the assistant keeps (`toolsUrl`); one
/// made before the URL was set has them declared there by its next save, even one changing nothing.
pub async fn tools_are_declared_at_the_public_url_and_again_by_a_save<S: Store>(store: S) {
    let vapi = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_t" })))
        .mount(&vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_t"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "asst_t" })))
        .mount(&vapi)
        .await;
    let app = App::new(store, ProviderAccounts { vapi: account(&vapi), ..Default::default() }).await;
    let created = app.create("Before the URL", "vapi").await;
    assert!(created.get("toolsUrl").is_none(), "{created}");
    assert_eq!(requests_to(&vapi, "POST", "/assistant").await[0]["model"]["tools"], json!([{ "type": "endCall" }]), "only Vapi's own");

    let url = "https://outdial.example";
    let app = app.declaring(app::ToolDeclarations { public_url: Some(url.into()), vapi_secret: Some("vs".into()), ..Default::default() });
    let uri = format!("/assistants/{}", created["id"].as_str().unwrap());
    let saved = app.patch(&uri, Some("\"1\""), json!({})).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!((saved.body["toolsUrl"].as_str(), saved.body["version"].as_u64()), (Some(url), Some(2)));
    let patched = requests_to(&vapi, "PATCH", "/assistant/asst_t").await;
    let names: Vec<&str> = patched[0]["model"]["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(names, ["current_time", "add_to_do_not_call"]);
    assert_eq!(patched[0]["model"]["tools"][0]["server"], json!({ "url": "https://outdial.example/tools/vapi", "secret": "vs" }));
    // declared where the URL says: a save changing nothing now tells the provider nothing
    let again = app.patch(&uri, Some("\"2\""), json!({})).await;
    assert_eq!((again.status, again.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(requests_to(&vapi, "PATCH", "/assistant/asst_t").await.len(), 1);
}

pub async fn a_provider_refusal_saves_nothing<S: Store>(store: S) {
    let vapi = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(header("authorization", "Bearer test-key"))
        .and(body_partial_json(json!({ "name": "Refused" })))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({ "message": ["voice.voiceId must be a valid voice"], "statusCode": 400 })),
        )
        .mount(&vapi)
        .await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(body_partial_json(json!({ "name": "Outage" })))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .expect(3)
        .mount(&vapi)
        .await;
    let app = App::new(store, ProviderAccounts { vapi: account(&vapi), ..Default::default() }).await;
    let create = |name: &str, provider: &str, config: Value| json!({ "name": name, "provider": provider, "config": config });

    let refused = app.post("/assistants", create("Refused", "vapi", config("p"))).await;
    assert_eq!((refused.status, problem_type(&refused)), (StatusCode::UNPROCESSABLE_ENTITY, "provider-refused"));
    assert!(refused.body["detail"].as_str().unwrap().contains("voice.voiceId must be a valid voice"), "{}", refused.body);
    let outage = app.post("/assistants", create("Outage", "vapi", config("p"))).await;
    assert_eq!((outage.status, problem_type(&outage)), (StatusCode::BAD_GATEWAY, "provider-unavailable"));
    let unconfigured = app.post("/assistants", create("Retell one", "retell", config("p"))).await;
    assert_eq!((unconfigured.status, problem_type(&unconfigured)), (StatusCode::UNPROCESSABLE_ENTITY, "provider-not-configured"));
    assert!(unconfigured.body["detail"].as_str().unwrap().contains("RETELL_API_KEY"));

    let invalid =
        app.post("/assistants", create(" ", "vapi", json!({ "systemPrompt": "p", "firstMessage": "", "maxDurationSeconds": 1 }))).await;
    assert_eq!((invalid.status, problem_type(&invalid)), (StatusCode::UNPROCESSABLE_ENTITY, "validation"));
    let fields: Vec<&str> = invalid.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "config.firstMessage", "config.maxDurationSeconds"]);
    let unknown = app.post("/assistants", json!({ "name": "x", "provider": "vapi", "config": config("p"), "colour": "red" })).await;
    assert_eq!((unknown.status, problem_type(&unknown)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body"));
    let no_provider = app.post("/assistants", create("x", "bland", config("p"))).await;
    assert_eq!(no_provider.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(requests_to(&vapi, "POST", "/assistant").await.len(), 4, "invalid requests never reach the provider");
    assert_eq!(app.get("/assistants").await.body, json!({ "items": [], "nextCursor": null }), "nothing was saved");
}

pub async fn updates_reach_the_provider_first_and_roll_back<S: Store>(store: S) {
    let vapi = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_1", "name": "Sales" })))
        .mount(&vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_1"))
        .and(body_partial_json(json!({ "firstMessage": "Refuse me" })))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "message": "firstMessage must not ask to be refused" })))
        .with_priority(1)
        .mount(&vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_1"))
        .and(body_partial_json(json!({ "name": "Slow" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "asst_1" })).set_delay(std::time::Duration::from_millis(400)))
        .with_priority(1)
        .mount(&vapi)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/assistant/asst_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "asst_1" })))
        .with_priority(2)
        .mount(&vapi)
        .await;
    let app = App::new(store, ProviderAccounts { vapi: account(&vapi), ..Default::default() }).await;
    let created = app.post("/assistants", json!({ "name": "Sales", "provider": "vapi", "config": config("You book demos.") })).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.headers["etag"], "\"1\"");
    let a = &created.body;
    assert_eq!((a["providerAssistantId"].as_str(), a["source"].as_str(), a["version"].as_u64()), (Some("asst_1"), Some("local"), Some(1)));
    let uri = format!("/assistants/{}", a["id"].as_str().unwrap());

    let unconditional = app.patch(&uri, None, json!({ "name": "Sales v2" })).await;
    assert_eq!((unconditional.status, problem_type(&unconditional)), (StatusCode::PRECONDITION_REQUIRED, "precondition-required"));
    let mut refused_config = config("You book demos.");
    refused_config["firstMessage"] = json!("Refuse me");
    let refused = app.patch(&uri, Some("\"1\""), json!({ "config": refused_config })).await;
    assert_eq!((refused.status, problem_type(&refused)), (StatusCode::UNPROCESSABLE_ENTITY, "provider-refused"));
    assert!(refused.body["detail"].as_str().unwrap().contains("firstMessage must not ask to be refused"));
    let unchanged = app.get(&uri).await;
    assert_eq!(unchanged.body, created.body, "a refused change leaves the record as it was");

    let changed = app.patch(&uri, Some("\"1\""), json!({ "name": "Sales v2", "config": config("You qualify leads.") })).await;
    assert_eq!((changed.status, changed.body["version"].as_u64()), (StatusCode::OK, Some(2)), "{}", changed.body);
    assert_eq!(changed.headers["etag"], "\"2\"");
    assert_eq!(changed.body["config"]["systemPrompt"], "You qualify leads.");
    let pushed = requests_to(&vapi, "PATCH", "/assistant/asst_1").await;
    assert_eq!(pushed.last().unwrap()["model"]["messages"][0]["content"], "You qualify leads.");
    let stale = app.patch(&uri, Some("1"), json!({ "name": "Old view" })).await;
    assert_eq!((stale.status, problem_type(&stale)), (StatusCode::PRECONDITION_FAILED, "stale-version"));
    let deactivated = app.patch(&uri, Some("W/\"2\""), json!({ "active": false })).await;
    assert_eq!((deactivated.status, deactivated.body["active"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(requests_to(&vapi, "PATCH", "/assistant/asst_1").await.len(), 2, "the active flag is ours, not the provider's");

    // a change that loses a race after the provider took it: the provider gets the winner's copy back
    let id = domain::AssistantId::parse(a["id"].as_str().unwrap()).unwrap();
    let slow = {
        let (router, key, uri) = (app.router.clone(), app.key.clone(), uri.clone());
        tokio::spawn(async move {
            let request = Request::patch(uri)
                .header("authorization", format!("Bearer {key}"))
                .header("if-match", "\"3\"")
                .header("content-type", "application/json")
                .body(Body::from(json!({ "name": "Slow" }).to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let racer = domain::AssistantPatch { name: Some("Racer".into()), ..Default::default() };
    store::AssistantStore::update_assistant(&app.store, app.org, id, 3, racer, Utc::now()).await.unwrap();
    assert_eq!(slow.await.unwrap(), StatusCode::PRECONDITION_FAILED);
    let pushed = requests_to(&vapi, "PATCH", "/assistant/asst_1").await;
    assert_eq!(pushed.last().unwrap()["name"], "Racer", "rolled back to the directory's copy");

    let versions = app.get(&format!("{uri}/versions")).await;
    assert_eq!(versions.status, 200);
    let items = versions.body["items"].as_array().unwrap();
    assert_eq!(items.iter().map(|v| v["version"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(items[0]["config"]["systemPrompt"], "You book demos.");
    assert_eq!((items[1]["name"].as_str(), items[3]["name"].as_str()), (Some("Sales v2"), Some("Racer")));
    assert!(items[1]["createdAt"].is_string());
}

pub async fn imports_are_keyed_by_the_provider_id<S: Store>(store: S) {
    let elevenlabs = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/agents/ag_1"))
        .and(header("xi-api-key", "test-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "agent_id": "ag_1", "name": "Support line",
            "conversation_config": {
                "agent": { "first_message": "Hello, I'm an AI assistant for Acme.", "prompt": { "prompt": "You help customers." } },
                "tts": { "voice_id": "EXAVITQu4vr4xnSDxMaL", "agent_output_audio_format": "ulaw_8000" },
                "asr": { "user_input_audio_format": "ulaw_8000" }
            }
        })))
        .mount(&elevenlabs)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/agents/gone"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({ "detail": { "status": "agent_not_found", "message": "Agent not found" } })),
        )
        .mount(&elevenlabs)
        .await;
    let app = App::new(store, ProviderAccounts { elevenlabs: account(&elevenlabs), ..Default::default() }).await;
    let body = json!({ "provider": "elevenlabs", "providerAssistantId": "ag_1" });

    let importers = (0..8).map(|_| app.post("/assistants/import", body.clone()));
    let replies = futures::future::join_all(importers).await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201], "created once, then updated");
    assert!(replies.iter().all(|r| r.body["id"] == replies[0].body["id"]));
    let listed = app.get("/assistants").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let imported = &listed["items"][0];
    assert_eq!((imported["name"].as_str(), imported["source"].as_str()), (Some("Support line"), Some("imported")));
    assert_eq!(imported["config"]["firstMessage"], "Hello, I'm an AI assistant for Acme.");

    let renamed =
        app.post("/assistants/import", json!({ "provider": "elevenlabs", "providerAssistantId": "ag_1", "name": "Support (EU)" })).await;
    assert_eq!((renamed.status.as_u16(), renamed.body["name"].as_str()), (200, Some("Support (EU)")));
    assert_eq!(renamed.body["id"], imported["id"]);
    let missing = app.post("/assistants/import", json!({ "provider": "elevenlabs", "providerAssistantId": "gone" })).await;
    assert_eq!((missing.status, problem_type(&missing)), (StatusCode::NOT_FOUND, "provider-not-found"));
    let template_id = app.post("/assistants/import", json!({ "provider": "simulator", "providerAssistantId": "template:discovery" })).await;
    assert_eq!(template_id.status, StatusCode::UNPROCESSABLE_ENTITY, "templates cannot be imported over");
}

pub async fn deletion_waits_for_the_campaigns_that_use_the_assistant<S: Store>(store: S) {
    let app = App::new(store, ProviderAccounts::default()).await;
    let campaign = |name: &str, assistant: &Value| {
        let id = domain::AssistantId::parse(assistant["id"].as_str().unwrap()).unwrap();
        app.store.create_campaign(app.org, NewCampaign::parse(name, Cap::DEFAULT, Default::default()).unwrap().with_assistant(id))
    };
    let (x, y, z) = (app.create("X", "simulator").await, app.create("Y", "simulator").await, app.create("Z", "simulator").await);

    let draft = campaign("Spring renewals", &x).await.unwrap();
    let refused = app.delete(&format!("/assistants/{}", x["id"].as_str().unwrap())).await;
    assert_eq!((refused.status, problem_type(&refused)), (StatusCode::CONFLICT, "assistant-in-use"));
    assert_eq!(refused.body["campaigns"], json!([{ "id": draft.id, "name": "Spring renewals", "status": "draft" }]));
    assert!(refused.body["detail"].as_str().unwrap().contains("Spring renewals"));
    app.store.set_campaign_status(app.org, draft.id, &[CampaignStatus::Draft], CampaignStatus::Canceled, Utc::now()).await.unwrap();
    assert_eq!(app.delete(&format!("/assistants/{}", x["id"].as_str().unwrap())).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/assistants/{}", x["id"].as_str().unwrap())).await.status, StatusCode::NOT_FOUND);
    let simulator = app.providers.get(ProviderKind::Simulator).unwrap();
    assert!(simulator.get_assistant(x["providerAssistantId"].as_str().unwrap()).await.is_ok(), "never deleted at the provider");

    let recent = campaign("Finished an hour ago", &y).await.unwrap();
    app.store
        .set_campaign_status(app.org, recent.id, &[CampaignStatus::Draft], CampaignStatus::Completed, Utc::now() - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(app.delete(&format!("/assistants/{}", y["id"].as_str().unwrap())).await.status, StatusCode::CONFLICT);
    let old = campaign("Finished two days ago", &z).await.unwrap();
    app.store
        .set_campaign_status(app.org, old.id, &[CampaignStatus::Draft], CampaignStatus::Completed, Utc::now() - Duration::hours(48))
        .await
        .unwrap();
    assert_eq!(app.delete(&format!("/assistants/{}", z["id"].as_str().unwrap())).await.status, StatusCode::NO_CONTENT);
}

pub async fn templates_are_read_only_and_clone_into_editable_assistants<S: Store>(store: S) {
    let vapi = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/assistant"))
        .and(body_partial_json(json!({ "name": "My pitch" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": "asst_clone" })))
        .expect(1)
        .mount(&vapi)
        .await;
    let app = App::new(store, ProviderAccounts { vapi: account(&vapi), ..Default::default() }).await;
    install_templates(&app.store, app.org).await.unwrap();
    install_templates(&app.store, app.org).await.unwrap();
    let templates = app.get("/assistants?source=template").await.body["items"].as_array().unwrap().clone();
    let names: Vec<&str> = templates.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Voicemail-friendly", "Short pitch", "Discovery call"], "installed once, however often it runs");
    assert!(templates.iter().all(|t| t["config"]["firstMessage"].as_str().unwrap().contains("AI assistant")));
    let pitch = &templates[1];
    let uri = format!("/assistants/{}", pitch["id"].as_str().unwrap());

    let edit = app.patch(&uri, Some("\"1\""), json!({ "name": "Mine now" })).await;
    assert_eq!((edit.status, problem_type(&edit)), (StatusCode::FORBIDDEN, "read-only-template"));
    let delete = app.delete(&uri).await;
    assert_eq!((delete.status, problem_type(&delete)), (StatusCode::FORBIDDEN, "read-only-template"));

    let clone = app.post(&format!("{uri}/clone"), json!({ "name": "My pitch", "provider": "vapi" })).await;
    assert_eq!(clone.status, StatusCode::CREATED, "{}", clone.body);
    let c = &clone.body;
    assert_eq!(
        (c["source"].as_str(), c["provider"].as_str(), c["providerAssistantId"].as_str()),
        (Some("local"), Some("vapi"), Some("asst_clone"))
    );
    assert_eq!(c["config"], pitch["config"]);
    let cloned_uri = format!("/assistants/{}", c["id"].as_str().unwrap());
    let edited = app.patch(&cloned_uri, Some("\"1\""), json!({ "active": false })).await;
    assert_eq!((edited.status, edited.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let default_copy = app.post(&format!("{uri}/clone"), json!({})).await;
    assert_eq!(
        (default_copy.body["name"].as_str(), default_copy.body["provider"].as_str()),
        (Some("Short pitch (copy)"), Some("simulator"))
    );
    assert_eq!(app.get("/assistants?source=local").await.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/assistants?active=false").await.body["items"].as_array().unwrap().len(), 1);
}

/// Every organisation shares the deployment's provider accounts: an agent id another organisation
/// holds is not found, and its provider is never asked for it (so its prompt is never read).
pub async fn another_organisations_provider_agent_is_not_found<S: Store>(store: S) {
    let elevenlabs = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/convai/agents/ag_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "agent_id": "ag_1", "name": "A's line",
            "conversation_config": {
                "agent": { "first_message": "Hello, I'm an AI assistant for A.", "prompt": { "prompt": "A's secret prompt." } },
                "tts": { "voice_id": "EXAVITQu4vr4xnSDxMaL", "agent_output_audio_format": "ulaw_8000" },
                "asr": { "user_input_audio_format": "ulaw_8000" }
            }
        })))
        .mount(&elevenlabs)
        .await;
    let app = App::new(store, ProviderAccounts { elevenlabs: account(&elevenlabs), ..Default::default() }).await;
    let body = json!({ "provider": "elevenlabs", "providerAssistantId": "ag_1" });
    assert_eq!(app.post("/assistants/import", body.clone()).await.status, StatusCode::CREATED);
    let theirs = app.other_key().await;
    let stolen = app.send("POST", "/assistants/import", Some(&theirs), None, Some(body)).await;
    assert_eq!((stolen.status, problem_type(&stolen)), (StatusCode::NOT_FOUND, "not-found"), "{:?}", stolen.body);
    assert!(!stolen.body.to_string().contains("secret prompt"));
    let asked = elevenlabs.received_requests().await.unwrap_or_default();
    assert_eq!(asked.len(), 1, "only the owner's import reached the provider");
    assert_eq!(app.send("GET", "/assistants", Some(&theirs), None, None).await.body["items"], json!([]));
}

pub async fn another_organisations_assistants_are_not_found<S: Store>(store: S) {
    let app = App::new(store, ProviderAccounts::default()).await;
    let mine = app.create("Mine", "simulator").await;
    let uri = format!("/assistants/{}", mine["id"].as_str().unwrap());
    let theirs = app.other_key().await;
    let key = Some(theirs.as_str());
    for (verb, route, body) in [
        ("GET", uri.clone(), None),
        ("PATCH", uri.clone(), Some(json!({ "name": "Stolen" }))),
        ("DELETE", uri.clone(), None),
        ("GET", format!("{uri}/versions"), None),
        ("POST", format!("{uri}/clone"), Some(json!({}))),
    ] {
        let reply = app.send(verb, &route, key, Some("\"1\""), body).await;
        assert_eq!((reply.status, problem_type(&reply)), (StatusCode::NOT_FOUND, "not-found"), "{verb} {route}");
    }
    assert_eq!(app.send("GET", "/assistants", key, None, None).await.body["items"], json!([]));
    assert_eq!(app.send("GET", "/assistants/not-an-id", key, None, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.send("GET", &uri, None, None, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get(&uri).await.body["name"], "Mine", "untouched");
}

macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::SqliteStore::open_in_memory().expect("open sqlite")).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(store) = store::testing::dynamodb_test_store(stringify!($test)).await {
                        super::$test(store).await;
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    tools_are_declared_at_the_public_url_and_again_by_a_save,
    a_provider_refusal_saves_nothing,
    updates_reach_the_provider_first_and_roll_back,
    imports_are_keyed_by_the_provider_id,
    deletion_waits_for_the_campaigns_that_use_the_assistant,
    templates_are_read_only_and_clone_into_editable_assistants,
    another_organisations_assistants_are_not_found,
    another_organisations_provider_agent_is_not_found,
);
