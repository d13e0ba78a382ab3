//! Vapi, Retell and native ElevenLabs campaigns on the local stack, their agents using the booking
//! and email tools through `/tools/*`: the assistant is created through the API (its tools
//! declared at the stack's URL in the provider's format), the dialer places the call at a fake of
//! the provider, and the fake then calls the declared tool URL exactly as the provider would, with
//! the credential it was given; Cal.com (a fake) gets the booking, the outbox the email.

use chrono::{Datelike, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use store::{CallStore, OrgStore, SqliteStore};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

const CALLER: &str = "+14155550100";

/// The local stack as `configure` sets it up (a provider account at its fake), with Cal.com (a fake) and the email tool on.
struct NativeStack {
    base: String,
    store: SqliteStore,
    org: domain::OrgId,
    key: String,
    outbox: platform::LocalOutbox,
    http: reqwest::Client,
    zone: chrono_tz::Tz,
    calcom: MockServer,
}

async fn native_stack(configure: impl FnOnce(&mut platform::Config)) -> NativeStack {
    let calcom = calcom().await;
    let store = SqliteStore::open_in_memory().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = outdial::Stack::default().config;
    configure(&mut config);
    config.secrets = Some(platform::SecretBox::ephemeral());
    config.tools.calcom = Some(providers::CalcomAccount { base_url: calcom.uri(), api_key: "cal-e2e".into(), event_type_id: 42 });
    config.tools.email.from = Some(domain::EmailAddress::parse("calls@acme.example").unwrap());
    let mut stack = outdial::Stack::from_config(&config).ticking_every(Duration::from_millis(100));
    let outbox = platform::LocalOutbox::default();
    let booking = providers::CalCom::new(config.tools.calcom.as_ref().unwrap(), providers::RetryPolicy::once());
    stack.tools = app::AgentTools::new(Some(booking), platform::AnyMailer::Local(outbox.clone()));
    tokio::spawn(outdial::serve(store.clone(), stack, listener));
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let zone = platform::testing::midday_zone(Utc::now());
    NativeStack { base, store, org, key, outbox, http: reqwest::Client::new(), zone, calcom }
}

impl NativeStack {
    /// Creates the assistant through the API: its tools are declared at this stack.
    async fn assistant(&self, provider: &str, config: Value) -> String {
        let body = json!({ "name": "Renewals", "provider": provider, "config": config });
        let created: Value = self
            .http
            .post(format!("{}/assistants", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["toolsUrl"].as_str(), Some(self.base.as_str()), "{created}");
        created["id"].as_str().unwrap().to_string()
    }

    /// A campaign of one contact (Maria, email on file) with `assistant` on `provider`, calling
    /// from `CALLER` (registered with its Vapi and ElevenLabs ids), started.
    async fn started_campaign(&self, provider: &str, assistant: &str, vapi_number: Option<&str>, elevenlabs_number: Option<&str>) {
        let caller = domain::E164::parse(CALLER, None).unwrap();
        store::testing::register_caller_ids(&self.store, self.org, &[caller], vapi_number, elevenlabs_number).await;
        let spec = json!({ "name": "Renewals", "assistantId": assistant, "provider": provider, "cap": 1, "callerIds": [CALLER],
            "callingWindow": { "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59" } });
        let created: Value = self
            .http
            .post(format!("{}/campaigns", self.base))
            .bearer_auth(&self.key)
            .json(&spec)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let campaign = created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_string();
        let imported = self
            .http
            .post(format!("{}/campaigns/{campaign}/contacts?consent=attested&consentSource=signup%20form", self.base))
            .bearer_auth(&self.key)
            .header("content-type", "text/csv")
            .body(format!("phone,name,email,timezone\n+14155550123,Maria,maria@example.com,{}\n", self.zone.name()))
            .send()
            .await
            .unwrap();
        assert_eq!(imported.status(), 200);
        let started = self.http.post(format!("{}/campaigns/{campaign}/start", self.base)).bearer_auth(&self.key).send().await.unwrap();
        assert_eq!(started.status(), 200, "{:?}", started.text().await);
    }

    /// Tomorrow at 10:00 in the contact's zone, as the agent passes a start (no offset).
    fn tomorrow_ten(&self) -> String {
        let tomorrow = Utc::now().with_timezone(&self.zone).date_naive().succ_opt().unwrap();
        format!("{}-{:02}-{:02}T10:00", tomorrow.year(), tomorrow.month(), tomorrow.day())
    }

    /// What the tools did: one booking at Cal.com, one email to Maria, and both runs in the call's log.
    async fn booked_and_emailed(&self, provider: domain::CallProvider, provider_call_id: &str) {
        let bookings: Vec<Value> = self.calcom.received_requests().await.unwrap().iter().map(|r| r.body_json().unwrap()).collect();
        assert_eq!(bookings.len(), 1, "{bookings:?}");
        assert_eq!((bookings[0]["eventTypeId"].as_u64(), bookings[0]["attendee"]["email"].as_str()), (Some(42), Some("maria@example.com")));
        let kept = self.outbox.kept();
        assert_eq!(kept.iter().map(|k| k.email.to.as_str()).collect::<Vec<_>>(), ["maria@example.com"]);
        assert!(kept[0].email.body.contains("See you tomorrow."), "{}", kept[0].email.body);
        let (org, call) = self.store.find_call_by_provider_id(provider, provider_call_id).await.unwrap().expect("the placed call");
        assert_eq!(org, self.org);
        let events = self.store.list_call_events(org, call).await.unwrap();
        let runs =
            events.iter().filter(|e| matches!(&e.event.kind, domain::CallEventKind::Note { text } if text.starts_with("tool "))).count();
        assert_eq!(runs, 2, "both tool runs noted on the call");
    }
}

/// Wiremock's requests to `route` once one has come, waiting up to 5 s (the dialer places calls from a tick).
async fn requests_to(server: &MockServer, route: &str) -> Vec<Value> {
    for _ in 0..100 {
        let found: Vec<Value> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == route)
            .map(|r| r.body_json().unwrap_or(Value::Null))
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing reached {route}");
}

/// `server` answers every POST to `route` with `status` and `body`.
async fn answers(server: &MockServer, route: &str, status: u16, body: Value) {
    Mock::given(method("POST")).and(path(route)).respond_with(ResponseTemplate::new(status).set_body_json(body)).mount(server).await;
}

/// What every agent here is told, with `more` config fields.
fn agent_config(more: Value) -> Value {
    let mut config = json!({ "systemPrompt": "You renew plans.", "firstMessage": "Hi, this is an AI assistant." });
    config.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    config
}

async fn calcom() -> MockServer {
    let calcom = MockServer::start().await;
    let booked = json!({ "status": "success", "data": { "id": 9001, "uid": "bk_e2e", "start": "2026-11-25T15:00:00.000Z" } });
    answers(&calcom, "/v2/bookings", 201, booked).await;
    calcom
}

/// The declared tool named `name` in `tools`, found by `field` (Vapi: `function.name`).
fn tool<'a>(tools: &'a Value, pointer: &str, name: &str) -> &'a Value {
    tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t.pointer(pointer).and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("{name} in {tools}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vapi_agent_books_and_emails_through_its_declared_tools() {
    let vapi = MockServer::start().await;
    answers(&vapi, "/assistant", 201, json!({ "id": "asst_e2e" })).await;
    answers(&vapi, "/call", 201, json!({ "id": "vapi_call_e2e", "status": "queued" })).await;
    let uri = vapi.uri();
    let s = native_stack(|c| {
        c.providers.vapi = Some(providers::ProviderAccount { base_url: uri, api_key: "vapi-e2e".into() });
        c.webhooks.vapi_secret = Some("vapi-tools-e2e".into());
    })
    .await;
    let assistant = s.assistant("vapi", agent_config(json!({}))).await;
    s.started_campaign("vapi", &assistant, Some("pn_e2e"), None).await;
    requests_to(&vapi, "/call").await;

    // Vapi calls the declared server URL with the declared secret
    let declared = &requests_to(&vapi, "/assistant").await[0]["model"]["tools"];
    let server = &tool(declared, "/function/name", "book_appointment")["server"];
    assert_eq!(tool(declared, "/function/name", "send_email")["server"], *server, "one tools URL for every function");
    let message = json!({ "message": { "type": "tool-calls", "call": { "id": "vapi_call_e2e" }, "toolCallList": [
        { "id": "tc_book", "type": "function", "function": { "name": "book_appointment", "arguments": { "start": s.tomorrow_ten() } } },
        { "id": "tc_mail", "type": "function", "function": { "name": "send_email", "arguments": "{\"note\":\"See you tomorrow.\"}" } }
    ] } });
    let answered = s
        .http
        .post(server["url"].as_str().unwrap())
        .header("x-vapi-secret", server["secret"].as_str().unwrap())
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let results: Value = answered.json().await.unwrap();
    assert!(results["results"][0]["result"].as_str().unwrap().starts_with("Booked for "), "{results}");
    assert_eq!(results["results"][1]["result"], "The email is on its way to maria@example.com.");
    s.booked_and_emailed(domain::CallProvider::Vapi, "vapi_call_e2e").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retell_agent_books_and_emails_through_its_declared_functions() {
    let retell = MockServer::start().await;
    answers(&retell, "/create-retell-llm", 201, json!({ "llm_id": "llm_e2e" })).await;
    answers(&retell, "/create-agent", 201, json!({ "agent_id": "agent_e2e" })).await;
    answers(&retell, "/v2/create-phone-call", 201, json!({ "call_id": "retell_call_e2e", "call_status": "registered" })).await;
    let uri = retell.uri();
    let s = native_stack(|c| {
        c.providers.retell = Some(providers::ProviderAccount { base_url: uri, api_key: "retell-e2e".into() });
        c.webhooks.retell_api_key = Some("retell-e2e".into());
    })
    .await;
    let assistant = s.assistant("retell", agent_config(json!({}))).await;
    s.started_campaign("retell", &assistant, None, None).await;
    requests_to(&retell, "/v2/create-phone-call").await;

    // Retell posts {name, args, call} to each custom function's URL, signed with the API key
    let declared = &requests_to(&retell, "/create-retell-llm").await[0]["general_tools"];
    for (name, args) in [("book_appointment", json!({ "start": s.tomorrow_ten() })), ("send_email", json!({ "note": "See you tomorrow." }))]
    {
        let body = json!({ "name": name, "args": args, "call": { "call_id": "retell_call_e2e", "agent_id": "agent_e2e" } }).to_string();
        let signature = providers::retell::webhook_signature("retell-e2e", body.as_bytes(), Utc::now());
        let url = tool(declared, "/name", name)["url"].as_str().unwrap();
        let answered = s
            .http
            .post(url)
            .header("x-retell-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200, "{name}");
        let said = answered.text().await.unwrap();
        assert!(said.starts_with("Booked for ") || said == "The email is on its way to maria@example.com.", "{name}: {said}");
    }
    s.booked_and_emailed(domain::CallProvider::Retell, "retell_call_e2e").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_elevenlabs_agent_books_and_emails_through_its_webhook_tools() {
    let elevenlabs = MockServer::start().await;
    answers(&elevenlabs, "/v1/convai/agents/create", 200, json!({ "agent_id": "agent_e2e" })).await;
    let initiated = json!({ "success": true, "message": "Call initiated", "conversation_id": "conv_e2e", "callSid": "CA0e2e" });
    answers(&elevenlabs, "/v1/convai/twilio/outbound-call", 200, initiated).await;
    let uri = elevenlabs.uri();
    let s = native_stack(|c| c.providers.elevenlabs = Some(providers::ProviderAccount { base_url: uri, api_key: "xi-e2e".into() })).await;
    // ElevenLabs cannot limit one call's length: the agent's limit is the campaign's
    let config = agent_config(json!({ "maxDurationSeconds": domain::CampaignSettings::DEFAULT_MAX_CALL_SECONDS }));
    let assistant = s.assistant("elevenlabs", config).await;
    s.started_campaign("elevenlabs", &assistant, None, Some("phnum_e2e")).await;
    let placed = &requests_to(&elevenlabs, "/v1/convai/twilio/outbound-call").await[0];
    let variables = &placed["conversation_initiation_client_data"]["dynamic_variables"];

    // ElevenLabs fills the body's dynamic-variable properties and sends the declared header
    let declared = &requests_to(&elevenlabs, "/v1/convai/agents/create").await[0]["conversation_config"]["agent"]["prompt"]["tools"];
    for (name, mut body) in
        [("book_appointment", json!({ "start": s.tomorrow_ten() })), ("send_email", json!({ "note": "See you tomorrow." }))]
    {
        let schema = &tool(declared, "/name", name)["api_schema"];
        for (property, filled) in schema["request_body_schema"]["properties"].as_object().unwrap() {
            match filled["dynamic_variable"].as_str() {
                Some("system__conversation_id") => body["conversation_id"] = json!("conv_e2e"),
                Some(variable) => body[property] = variables[variable].clone(),
                None => {}
            }
        }
        let mut request = s.http.post(schema["url"].as_str().unwrap()).json(&body);
        for (header, value) in schema["request_headers"].as_object().unwrap() {
            request = request.header(header, value.as_str().unwrap());
        }
        let answered = request.send().await.unwrap();
        assert_eq!(answered.status(), 200, "{name}");
        let said: Value = answered.json().await.unwrap();
        let said = said["result"].as_str().unwrap();
        assert!(said.starts_with("Booked for ") || said == "The email is on its way to maria@example.com.", "{name}: {said}");
    }
    s.booked_and_emailed(domain::CallProvider::Elevenlabs, "conv_e2e").await;
}
