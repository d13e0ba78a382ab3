//! The local stack on port 0, driven over HTTP like a user.

use domain::{Cap, NewCampaign};
use serde_json::Value;
use store::{CampaignStore, OrgStore, SqliteStore};

struct App {
    base: String,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e2e.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(outdial::serve(store.clone(), outdial::Stack::default(), listener));
    App { base, store, _dir: dir }
}

#[tokio::test]
async fn a_key_of_one_organisation_gets_404_for_another_organisations_campaign() {
    let app = spawn_app().await;
    let (a, b) = (app.store.create_org("A").await.unwrap().id, app.store.create_org("B").await.unwrap().id);
    let (key_a, key_b) = (app.store.create_api_key(a).await.unwrap().secret, app.store.create_api_key(b).await.unwrap().secret);
    let campaign = app.store.create_campaign(a, NewCampaign::parse("A only", Cap::DEFAULT, Default::default()).unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/campaigns/{}", app.base, campaign.id);

    let own = http.get(&url).bearer_auth(&key_a).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await.unwrap();
    assert_eq!(body["id"], campaign.id.to_string());
    assert_eq!(body["progress"]["activeCalls"], 0, "camelCase JSON");

    let other = http.get(&url).bearer_auth(&key_b).send().await.unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(other.headers()["content-type"], "application/problem+json");
    let problem: Value = other.json().await.unwrap();
    assert_eq!(problem["type"], "https://outdial.dev/problems/not-found");

    let list: Value = http.get(format!("{}/campaigns", app.base)).bearer_auth(&key_b).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], serde_json::json!([]));
    assert!(list["nextCursor"].is_null());

    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let problem: Value = anonymous.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("Bearer"));

    app.store.revoke_api_key(a, &store::KeyHash::of_secret(&key_a).id()).await.unwrap();
    assert_eq!(http.get(&url).bearer_auth(&key_a).send().await.unwrap().status(), 401, "a revoked key stops working");
}

#[tokio::test]
async fn lists_page_through_opaque_cursors_over_http() {
    let app = spawn_app().await;
    let org = app.store.create_org("A").await.unwrap().id;
    let key = app.store.create_api_key(org).await.unwrap().secret;
    for i in 0..7 {
        app.store.create_campaign(org, NewCampaign::parse(&format!("c{i}"), Cap::DEFAULT, Default::default()).unwrap()).await.unwrap();
    }
    let http = reqwest::Client::new();
    let mut names = Vec::new();
    let mut url = format!("{}/campaigns?limit=3", app.base);
    loop {
        let page: Value = http.get(&url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        names.extend(page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(cursor) => url = format!("{}/campaigns?limit=3&cursor={cursor}", app.base),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let bad = http.get(format!("{}/campaigns?cursor=garbage", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["type"], "https://outdial.dev/problems/invalid-cursor");
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let health = reqwest::get(format!("{}/health", app.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let doc: Value = reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes = [
        ("get", "/health"),
        ("post", "/webhooks/twilio/status"),
        ("post", "/webhooks/twilio/amd"),
        ("post", "/webhooks/twilio/recording"),
        ("post", "/webhooks/elevenlabs"),
        ("post", "/webhooks/vapi"),
        ("post", "/webhooks/retell"),
        ("get", "/calls/{id}"),
        ("get", "/campaigns/{id}/calls"),
        ("get", "/campaigns"),
        ("get", "/campaigns/{id}"),
        ("get", "/campaigns/{id}/contacts"),
        ("post", "/emergency-stop"),
        ("get", "/emergency-stop"),
        ("delete", "/emergency-stop"),
        ("get", "/assistants"),
        ("post", "/assistants"),
        ("post", "/assistants/import"),
        ("get", "/assistants/{id}"),
        ("patch", "/assistants/{id}"),
        ("delete", "/assistants/{id}"),
        ("get", "/assistants/{id}/versions"),
        ("post", "/assistants/{id}/clone"),
        ("get", "/media"),
        ("get", "/calls/{id}/live"),
        ("get", "/metrics"),
        ("post", "/tools/vapi"),
        ("post", "/tools/retell/{tool}"),
        ("post", "/tools/elevenlabs/{tool}"),
        ("get", "/tools/elevenlabs/secret"),
        ("post", "/tools/{tool}"),
        ("get", "/tools/time"),
    ];
    for (method, path) in routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from {:?}", doc["paths"].as_object().unwrap().keys());
    }
    assert_eq!(doc["components"]["securitySchemes"]["apiKey"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let contact = &doc["components"]["schemas"]["Contact"]["properties"];
    assert!(contact["consent"].is_object() && contact["usState"].is_object(), "the contact's consent and state are described: {contact}");
    let config = &doc["components"]["schemas"]["AssistantConfig"]["properties"];
    assert!(config["tools"].is_object(), "an assistant's tools are described: {config}");
    let unknown = reqwest::get(format!("{}/no/such/route", app.base)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
}

/// Twilio's media stream reaches the bridge on the local stack's own port, at the URL derived from
/// the public URL, and only when signed for that URL with the account's token.
#[tokio::test]
async fn the_media_bridge_is_served_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bridge.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut stack = outdial::Stack::default();
    stack.bridge.twilio_auth_token = Some("local-token".into());
    stack.bridge.metrics_token = Some("metrics-token".into());
    tokio::spawn(outdial::serve(store, stack, listener));
    let upgrade = |signature: Option<String>| {
        let mut request = reqwest::Client::new()
            .get(format!("http://{address}/media"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.send()
    };
    let unsigned = upgrade(None).await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(unsigned.headers()["content-type"], "application/problem+json");
    let elsewhere = providers::twilio::signature("local-token", "wss://elsewhere.example/media", []);
    assert_eq!(upgrade(Some(elsewhere)).await.unwrap().status(), 403);
    let signed = providers::twilio::signature("local-token", &format!("ws://{address}/media"), []);
    assert_eq!(upgrade(Some(signed)).await.unwrap().status(), 101, "switched to the media stream");
    // metrics are on the public listener, so they take their own bearer token
    let http = reqwest::Client::new();
    assert_eq!(reqwest::get(format!("http://{address}/metrics")).await.unwrap().status(), 401);
    let wrong = http.get(format!("http://{address}/metrics")).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let metrics = http.get(format!("http://{address}/metrics")).bearer_auth("metrics-token").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("outdial_bridge_active_calls"), "{metrics}");
}

/// Over HTTP: a simulator campaign open all day with `settings` (cap, caller IDs…) and `contacts`
/// contacts, imported and started; its id.
async fn start_simulated_campaign(
    store: &SqliteStore,
    org: domain::OrgId,
    base: &str,
    key: &str,
    settings: Value,
    contacts: usize,
) -> String {
    use store::AssistantStore;
    let config =
        serde_json::from_value(serde_json::json!({ "systemPrompt": "You renew plans.", "firstMessage": "Hi, this is an AI assistant." }))
            .unwrap();
    let new = domain::NewAssistant::local("Renewals", domain::ProviderKind::Simulator, config).unwrap();
    let assistant = store.create_assistant(org, new, chrono::Utc::now()).await.unwrap();
    let mut spec = serde_json::json!({
        "name": "Renewals", "assistantId": assistant.id.to_string(), "provider": "simulator", "timezone": "UTC",
        "callingWindow": { "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59" },
    });
    for (field, value) in settings.as_object().unwrap() {
        spec[field] = value.clone();
    }
    let http = reqwest::Client::new();
    for phone in spec["callerIds"].as_array().unwrap() {
        let registered = http.post(format!("{base}/caller-ids")).bearer_auth(key).json(&serde_json::json!({ "phone": phone })).send().await;
        assert_eq!(registered.unwrap().status(), 201, "the simulator's deployment registers any number");
    }
    let created: Value = http.post(format!("{base}/campaigns")).bearer_auth(key).json(&spec).send().await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let zone = platform::testing::midday_zone(chrono::Utc::now());
    let csv: String = std::iter::once("phone,name,timezone,consent\n".to_string())
        .chain((0..contacts).map(|i| format!("+1415555{i:04},Contact {i},{},yes\n", zone.name())))
        .collect();
    let imported = http
        .post(format!("{base}/campaigns/{id}/contacts"))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let started = http.post(format!("{base}/campaigns/{id}/start")).bearer_auth(key).send().await.unwrap();
    assert_eq!(started.status(), 200, "{:?}", started.text().await);
    id
}

/// The local runtime end to end: starting a campaign over HTTP schedules its ticks on the local
/// timer, each tick queues dial jobs under the cap, and the local dial workers place the calls
/// with the simulator (whose reports come back to the stack's own address).
#[tokio::test]
async fn a_started_campaign_is_ticked_and_dialed_under_its_cap() {
    use store::{CallStore, PageRequest};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e2e.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut stack = outdial::Stack::default().ticking_every(std::time::Duration::from_millis(200));
    // real time: every simulated call rings for 3 s or more, so none ends during the test
    stack.config.dialing.calls.simulator_speed = 1.0;
    tokio::spawn(outdial::serve(store.clone(), stack, listener));

    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let spec = serde_json::json!({ "cap": 3, "callerIds": ["+14155550100", "+14155550101"] });
    let id = start_simulated_campaign(&store, org, &base, &key, spec, 10).await;

    let campaign = domain::CampaignId::parse(&id).unwrap();
    let mut calls = Vec::new();
    for _ in 0..200 {
        calls = store.list_calls(org, campaign, store::CallFilter::default(), PageRequest::first(50)).await.unwrap().items;
        if calls.len() == 3 && calls.iter().all(|c| c.provider_call_id.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(calls.len(), 3, "the cap: three calls, no more, while none has ended");
    for call in &calls {
        assert!(call.provider_call_id.as_deref().is_some_and(|sid| sid.starts_with("CA")), "placed with the simulator: {call:?}");
        assert!(call.caller_id.is_some());
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        store.list_calls(org, campaign, store::CallFilter::default(), PageRequest::first(50)).await.unwrap().items.len(),
        3,
        "later ticks keep to the cap"
    );
}

/// Call tracking over HTTP: a campaign run by the simulator through the real webhook routes ends
/// completed, its calls are listed with filters and each one reads with its event log; another
/// organisation's key sees none of it.
#[tokio::test]
async fn finished_calls_are_readable_with_their_event_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("calls.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut stack = outdial::Stack::default().ticking_every(std::time::Duration::from_millis(100));
    stack.config.dialing.calls.simulator_speed = 500.0;
    // conversations send their signed post-call report, which the campaign waits for before completing
    stack.config.dialing.calls.elevenlabs_webhook_secret = Some("e2e-secret".into());
    tokio::spawn(outdial::serve(store.clone(), stack, listener));
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let other_key = store.create_api_key(store.create_org("Other").await.unwrap().id).await.unwrap().secret;
    let spec = serde_json::json!({ "cap": 5, "callerIds": ["+14155550100"], "retryPolicy": { "maxAttempts": 1, "delayMinutes": 0, "retryOn": [] } });
    let id = start_simulated_campaign(&store, org, &base, &key, spec, 8).await;
    let http = reqwest::Client::new();
    let mut campaign = Value::Null;
    for _ in 0..300 {
        campaign = http.get(format!("{base}/campaigns/{id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if campaign["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(campaign["status"], "completed", "{campaign}");

    let list: Value =
        http.get(format!("{base}/campaigns/{id}/calls?limit=3")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert!(list["nextCursor"].is_string(), "paged: {list}");
    let ended: Value =
        http.get(format!("{base}/campaigns/{id}/calls?state=ended&limit=50")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let ended = ended["items"].as_array().unwrap().clone();
    assert!(ended.iter().all(|c| c["state"] == "ended" && c["disposition"].is_string()), "{ended:?}");
    let human: Value = http
        .get(format!("{base}/campaigns/{id}/calls?disposition=answered_human"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(human["items"].as_array().unwrap().iter().all(|c| c["disposition"] == "answered_human"));
    let bad = http.get(format!("{base}/campaigns/{id}/calls?state=exploded")).bearer_auth(&key).send().await.unwrap();
    assert_eq!((bad.status().as_u16(), bad.headers()["content-type"].to_str().unwrap()), (400, "application/problem+json"));

    let first = ended.first().expect("at least one call ended");
    let call_id = first["id"].as_str().unwrap();
    let call: Value = http.get(format!("{base}/calls/{call_id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let events = call["events"].as_array().unwrap();
    assert!(events.len() >= 3, "initiated, ringing, the end…: {call}");
    let from = |prefix: &str| events.iter().filter(|e| e["dedupeKey"].as_str().unwrap().starts_with(prefix)).count();
    assert_eq!(from("twilio:CA") + from("elevenlabs:conv_"), events.len(), "Twilio's callbacks and ElevenLabs' report: {call}");
    assert!(call["providerCallId"].as_str().unwrap().starts_with("CA"));
    assert!(call["endedAt"].is_string() && call["lastStatusAt"].is_string());
    let theirs = http.get(format!("{base}/calls/{call_id}")).bearer_auth(&other_key).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
}

/// The local crm-sync: a simulated campaign with a webhook connection delivers every finished call
/// once, signed, also when the receiver turns the first attempts away (429, then it takes them).
#[tokio::test]
async fn every_finished_call_reaches_the_crm_webhook_once() {
    use store::{CallStore, CrmStore};
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("crm.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut stack = outdial::Stack::default().ticking_every(std::time::Duration::from_millis(100));
    stack.config.dialing.calls.simulator_speed = 500.0;
    // the receiver is on loopback, over plain http: allowed for this test only
    stack.config.crm.outbound.allow_private = true;
    // answered calls are handed on once their signed post-call report is in
    stack.config.dialing.calls.elevenlabs_webhook_secret = Some("e2e-secret".into());
    let secrets = stack.config.secrets.clone().unwrap();
    tokio::spawn(outdial::serve(store.clone(), stack, listener));
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let connection = domain::crm::CrmConnection {
        id: domain::ConnectionId::new(),
        org_id: org,
        name: "Ops".into(),
        target: domain::crm::ConnectionTarget::Webhook { url: format!("{}/outdial", receiver.uri()) },
        created_at: chrono::Utc::now(),
    };
    let sealed = secrets.seal("whsec_e2e", &connection.id.to_string());
    store.create_crm_connection(connection.clone(), sealed).await.unwrap();
    let spec = serde_json::json!({ "cap": 4, "callerIds": ["+14155550100"], "crm": { "connectionIds": [connection.id] },
        "retryPolicy": { "maxAttempts": 1, "delayMinutes": 0, "retryOn": [] } });
    let id = start_simulated_campaign(&store, org, &base, &key, spec, 6).await;

    let http = reqwest::Client::new();
    let campaign = domain::CampaignId::parse(&id).unwrap();
    let mut delivered = Vec::new();
    for _ in 0..300 {
        let calls = store.list_calls(org, campaign, store::CallFilter::default(), store::PageRequest::first(50)).await.unwrap().items;
        delivered.clear();
        for call in calls.iter().filter(|c| c.state.is_terminal()) {
            let view: Value = http.get(format!("{base}/calls/{}", call.id)).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            if view["crm"][0]["status"] == "delivered" {
                delivered.push(view);
            }
        }
        if calls.len() == 6 && delivered.len() == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.len(), 6, "every finished call delivered");
    assert!(delivered.iter().any(|v| v["crm"][0]["attempts"].as_u64() > Some(1)), "some after the receiver turned them away");
    let requests = receiver.received_requests().await.unwrap();
    let mut keys: Vec<String> = requests.iter().map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string()).collect();
    assert_eq!(requests.len(), 6 + 3, "one accepted delivery per call, plus the three turned away");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 6, "one idempotency key per (call, connection)");
    let first: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    assert_eq!((first["type"].as_str(), first["campaign"]["id"].as_str()), (Some("call.finished"), Some(id.as_str())), "{first}");
    let signature = requests[0].headers["x-outdial-signature"].to_str().unwrap();
    assert!(signature.starts_with("t=") && signature.contains(",v1="), "{signature}");
}
