//! The campaigns function through its router, on SQLite and (when `DYNAMODB_ENDPOINT` is set)
//! DynamoDB: creation, imports and their edge cases, launch checks, lifecycle races, schedules,
//! the emergency stop, the do-not-call list and tenancy.

use axum::{Router, body::Body, http::Request};
use campaigns::{AppState, router};
use domain::{CallerId, NewAssistant, OrgId, ProviderKind};
use http_body_util::BodyExt;
use platform::{CampaignScheduler, JobQueue, LocalQueue, LocalScheduler, ScheduledAction};
use providers::ProviderAccounts;
use serde_json::{Value, json};
use std::time::Duration;
use store::{CallerIdStore, CrmStore, OrgStore, SqliteStore, Store};
use tower::ServiceExt;

struct Harness<S> {
    app: Router,
    store: S,
    scheduler: LocalScheduler,
    /// `crm-jobs`, where retried deliveries go.
    queue: LocalQueue,
    org: OrgId,
    key: String,
    assistant: String,
}

const PUBLIC_URL: &str = "https://outdial.example";

async fn harness<S: Store>(store: S, accounts: ProviderAccounts, import_max_bytes: u64) -> Harness<S> {
    harness_with_crm(store, accounts, import_max_bytes, providers::crm::CrmSetup::default()).await
}

async fn harness_with_crm<S: Store>(
    store: S,
    accounts: ProviderAccounts,
    import_max_bytes: u64,
    crm: providers::crm::CrmSetup,
) -> Harness<S> {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let config = domain::assistant::templates()[0].config.clone();
    let assistant = store.create_assistant(org, NewAssistant::local("Agent", ProviderKind::Simulator, config).unwrap(), chrono::Utc::now());
    let assistant = assistant.await.unwrap().id.to_string();
    let (scheduler, _fired) = LocalScheduler::new(Duration::from_secs(3600));
    let mut config = platform::testing::config(&[]);
    // the simulator's campaigns start only where OUTDIAL_SIMULATOR=on
    (config.providers, config.import_max_bytes) = (ProviderAccounts { simulator: true, ..accounts }, import_max_bytes);
    config.secrets = Some(platform::SecretBox::from_base64(SECRET_KEY).unwrap());
    config.crm = crm;
    // where assistants' tools are declared (a launch check)
    config.tools.public_url = Some(PUBLIC_URL.into());
    let queue = LocalQueue::open_in_memory(5).unwrap();
    let state = AppState::from_config(&config, store.clone(), scheduler.clone(), queue.clone());
    let (app, _) = router().with_state(state).split_for_parts();
    store.register_caller_id(registration(org, "+14155550100", None)).await.unwrap();
    Harness { app, store, scheduler, queue, org, key, assistant }
}

fn registration(org: OrgId, phone: &str, vapi: Option<&str>) -> CallerId {
    CallerId {
        phone: domain::E164::parse(phone, None).unwrap(),
        org_id: org,
        vapi_phone_number_id: vapi.map(str::to_string),
        elevenlabs_phone_number_id: None,
        registered_at: chrono::Utc::now(),
    }
}

impl<S: Store> Harness<S> {
    async fn send(&self, method: &str, uri: &str, content_type: &str, body: impl Into<Body>) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", content_type)
            .body(body.into())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
    }

    async fn json(&self, method: &str, uri: &str, body: Value) -> (u16, Value) {
        self.send(method, uri, "application/json", body.to_string()).await
    }

    async fn campaign(&self, extra: Value) -> String {
        let mut body = json!({"name": "Renewals", "assistantId": self.assistant, "callerIds": ["+14155550100"]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, created) = self.json("POST", "/campaigns", body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_string()
    }

    /// Imports with the importer's attestation of consent (the file's own consent column wins).
    async fn import(&self, campaign: &str, content_type: &str, body: impl Into<Body>) -> (u16, Value) {
        self.import_with(campaign, ATTESTED, content_type, body).await
    }

    async fn import_with(&self, campaign: &str, query: &str, content_type: &str, body: impl Into<Body>) -> (u16, Value) {
        self.send("POST", &format!("/campaigns/{campaign}/contacts?{query}"), content_type, body).await
    }
}

/// The key the harness seals CRM tokens with (32 bytes, base64).
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

const ATTESTED: &str = "consent=attested&consentSource=signed%20paper%20forms";

store::on_both_stores!(
    "";
    creation_reports_every_invalid_field_and_applies_defaults,
    csv_imports_survive_bad_rows_and_report_each,
    every_regions_example_numbers_import_as_the_reference_says,
    json_arrays_and_ndjson_import_like_csv,
    launch_checks_list_everything_unmet,
    concurrent_starts_leave_one_running_campaign_with_one_schedule,
    lifecycle_follows_draft_running_paused_canceled,
    do_not_call_routes_manage_the_list_and_spare_listed_contacts,
    another_organisations_campaign_is_not_found,
    consent_is_on_record_for_every_contact_or_nothing_is_imported,
    a_contacts_columns_and_values_are_bounded,
    the_emergency_stop_holds_until_lifted,
    the_legal_hours_a_campaign_is_narrowed_by_are_shown,
    campaigns_call_only_from_their_organisations_registered_numbers,
    api_keys_are_created_listed_and_revoked,
    crafted_cursors_are_refused_as_bad_requests,
    crm_connections_keep_their_tokens_sealed,
    campaigns_deliver_to_their_organisations_crm_connections,
    crm_connections_are_tested_and_failed_deliveries_queued_again,
);

async fn crm_connections_are_tested_and_failed_deliveries_queued_again<S: Store>(store: S) {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
    let (receiver, ghl) = (MockServer::start().await, MockServer::start().await);
    Mock::given(matchers::method("POST")).and(matchers::path("/in")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/contacts/"))
        .and(matchers::query_param("locationId", "loc_1"))
        .and(matchers::query_param("limit", "1"))
        .and(matchers::header("authorization", "Bearer pit-1"))
        .and(matchers::header("version", "2021-07-28"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contacts": [], "meta": {"total": 0}})))
        .mount(&ghl)
        .await;
    Mock::given(matchers::method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"statusCode": 401, "message": "Invalid JWT"})))
        .mount(&ghl)
        .await;
    let crm = providers::crm::CrmSetup {
        gohighlevel_base: ghl.uri(),
        outbound: providers::crm::OutboundPolicy { allow_private: true },
        ..Default::default()
    };
    let h = harness_with_crm(store, ProviderAccounts::default(), 1 << 20, crm).await;

    // a webhook on this machine, made through the API: OUTDIAL_CRM_ALLOW_PRIVATE takes plain http
    let local = json!({"name": "Ops", "kind": "webhook", "url": format!("{}/in", receiver.uri())});
    let (status, created) = h.json("POST", "/crm/connections", local.clone()).await;
    assert_eq!(status, 201, "{created}");
    let hook_id: domain::ConnectionId = created["id"].as_str().unwrap().parse().unwrap();
    let signing_secret = created["signingSecret"].as_str().unwrap().to_string();
    let hook = h.store.crm_connection(h.org, hook_id).await.unwrap().0;
    let strict = platform::testing::config(&[]);
    assert!(!strict.crm.outbound.allow_private);
    let strict_state = campaigns::AppState::from_config(&strict, h.store.clone(), h.scheduler.clone(), h.queue.clone());
    let strict_app = Harness {
        app: router().with_state(strict_state).split_for_parts().0,
        store: h.store.clone(),
        scheduler: h.scheduler.clone(),
        queue: h.queue.clone(),
        org: h.org,
        key: h.key.clone(),
        assistant: h.assistant.clone(),
    };
    let (status, problem) = strict_app.json("POST", "/crm/connections", local).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("url")), "{problem}");
    assert!(problem.to_string().contains("OUTDIAL_CRM_ALLOW_PRIVATE"), "it says what would allow it: {problem}");
    let (status, tested) = h.json("POST", &format!("/crm/connections/{}/test", hook.id), Value::Null).await;
    assert_eq!((status, tested), (200, json!({"ok": true, "answer": "the receiver answered 204"})));
    let sent = &receiver.received_requests().await.unwrap()[0];
    let event: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!((event["type"].as_str(), event["connectionId"].as_str()), (Some("connection.test"), Some(hook.id.to_string().as_str())));
    let signature = sent.headers["x-outdial-signature"].to_str().unwrap();
    let t = signature.split(',').next().unwrap().trim_start_matches("t=");
    let expected = providers::hmac_sha256_hex(&signing_secret, &[t.as_bytes(), b".", &sent.body]);
    assert_eq!(signature, format!("t={t},v1={expected}"), "signed like every delivery");

    let ghl_spec = |location: &str| json!({"name": "Sales", "kind": "gohighlevel", "token": "pit-1", "locationId": location});
    let (_, good) = h.json("POST", "/crm/connections", ghl_spec("loc_1")).await;
    let (status, tested) = h.json("POST", &format!("/crm/connections/{}/test", good["id"].as_str().unwrap()), Value::Null).await;
    assert_eq!((status, tested["ok"].as_bool()), (200, Some(true)), "{tested}");
    let (_, bad) = h.json("POST", "/crm/connections", ghl_spec("loc_elsewhere")).await;
    let (status, tested) = h.json("POST", &format!("/crm/connections/{}/test", bad["id"].as_str().unwrap()), Value::Null).await;
    assert_eq!((status, tested["ok"].as_bool()), (200, Some(false)), "{tested}");
    assert!(tested["answer"].as_str().unwrap().contains("(401): Invalid JWT"), "the CRM's own words: {tested}");
    let unknown = domain::ConnectionId::new();
    assert_eq!(h.json("POST", &format!("/crm/connections/{unknown}/test"), Value::Null).await.0, 404);
    assert_eq!(h.json("POST", "/crm/connections/not-an-id/test", Value::Null).await.0, 404);

    // a call whose delivery failed for good: queued again by call, or by campaign
    let spec = json!({"name": "Renewals", "assistantId": h.assistant, "callerIds": ["+14155550100"], "crm": {"connectionIds": [hook.id]}});
    let (_, created) = h.json("POST", "/campaigns", spec).await;
    let campaign: domain::CampaignId = created["id"].as_str().unwrap().parse().unwrap();
    h.import(&campaign.to_string(), "text/csv", "phone\n+14155550171\n").await;
    h.store
        .set_campaign_status(h.org, campaign, &[domain::CampaignStatus::Draft], domain::CampaignStatus::Running, chrono::Utc::now())
        .await
        .unwrap();
    let noon = chrono::DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
    let call = h.store.claim_due_contacts(h.org, campaign, noon, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    let retry = format!("/calls/{}/crm/retry", call.id);
    let (status, problem) = h.json("POST", &retry, Value::Null).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/no-failed-delivery")), "{problem}");
    let failed = domain::crm::CrmDelivery {
        call_id: call.id,
        connection_id: hook.id,
        kind: domain::crm::CrmKind::Webhook,
        status: domain::crm::DeliveryStatus::Failed,
        attempts: 5,
        last_error: Some("the receiver is unavailable: the receiver failed (503 Service Unavailable): ".into()),
        delivered_at: None,
        steps: Default::default(),
        leased_until: None,
    };
    h.store.record_crm_delivery(h.org, failed).await.unwrap();
    let (status, requeued) = h.json("POST", &retry, Value::Null).await;
    assert_eq!((status, requeued), (202, json!({"connectionIds": [hook.id]})));
    let (status, requeued) = h.json("POST", &format!("/campaigns/{campaign}/crm/retry"), Value::Null).await;
    assert_eq!((status, requeued), (202, json!({"calls": 1, "deliveries": 1})));
    let jobs = h.queue.receive(platform::CRM_JOBS, 10, Duration::from_secs(30)).await.unwrap();
    let jobs: Vec<domain::CrmJob> = jobs.iter().map(|j| serde_json::from_str(&j.body).unwrap()).collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.call_id == call.id && j.retry_failed), "{jobs:?}");
    assert_eq!(h.json("POST", &format!("/calls/{}/crm/retry", domain::CallId::new()), Value::Null).await.0, 404);
    assert_eq!(h.json("POST", &format!("/campaigns/{}/crm/retry", domain::CampaignId::new()), Value::Null).await.0, 404);
    let other = h.store.create_org("Other").await.unwrap().id;
    let intruder = Harness { key: h.store.create_api_key(other).await.unwrap().secret, org: other, ..h };
    assert_eq!(intruder.json("POST", &retry, Value::Null).await.0, 404, "another organisation's call is not found");
    assert_eq!(intruder.json("POST", &format!("/crm/connections/{}/test", hook.id), Value::Null).await.0, 404);
}

async fn campaigns_deliver_to_their_organisations_crm_connections<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let (_, hook) =
        h.json("POST", "/crm/connections", json!({"name": "Ops", "kind": "webhook", "url": "https://hooks.example.com/in"})).await;
    let connection = hook["id"].as_str().unwrap().to_string();
    let unknown = domain::ConnectionId::new().to_string();
    let spec = |ids: Vec<&str>| json!({"name": "Renewals", "assistantId": h.assistant, "callerIds": ["+14155550100"], "crm": {"connectionIds": ids}});
    let (status, problem) = h.json("POST", "/campaigns", spec(vec![&connection, &unknown])).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("crm.connectionIds")), "{problem}");
    assert!(problem["errors"][0]["reason"].as_str().unwrap().starts_with(&format!("[1] {unknown}")), "{problem}");
    assert_eq!(h.json("POST", "/campaigns", spec(vec![])).await.0, 422, "an empty list names nothing");
    let (status, created) = h.json("POST", "/campaigns", spec(vec![&connection])).await;
    assert_eq!((status, created["crm"]["connectionIds"][0].as_str()), (201, Some(connection.as_str())), "{created}");
    let id = created["id"].as_str().unwrap();
    h.import(id, "text/csv", "phone\n+14155550171\n").await;
    // the connection went away before the start: the launch check says so
    assert_eq!(h.json("DELETE", &format!("/crm/connections/{connection}"), Value::Null).await.0, 204);
    let (status, problem) = h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await;
    let checks: Vec<&str> = problem["unmet"].as_array().unwrap().iter().map(|u| u["check"].as_str().unwrap()).collect();
    assert_eq!((status, checks), (409, vec!["crm-connection-missing"]), "{problem}");
}

async fn crm_connections_keep_their_tokens_sealed<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let (status, hook) =
        h.json("POST", "/crm/connections", json!({"name": "Ops", "kind": "webhook", "url": "https://hooks.example.com/in"})).await;
    assert_eq!(status, 201, "{hook}");
    let signing = hook["signingSecret"].as_str().unwrap().to_string();
    assert!(signing.starts_with("whsec_") && hook["url"] == "https://hooks.example.com/in" && hook["kind"] == "webhook", "{hook}");
    let ghl = json!({"name": "Sales", "kind": "gohighlevel", "token": "pit-secret-token", "locationId": "loc_1", "pipelineId": "p1", "stageId": "s1"});
    let (status, created) = h.json("POST", "/crm/connections", ghl).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("token").is_none() && created.get("signingSecret").is_none(), "a token is never read back: {created}");
    let (status, listed) = h.json("GET", "/crm/connections", Value::Null).await;
    let text = listed.to_string();
    assert!(status == 200 && listed["items"].as_array().unwrap().len() == 2, "{listed}");
    assert!(!text.contains("pit-secret-token") && !text.contains(&signing), "no read returns a secret: {listed}");

    // at rest, sealed for its own record
    let secrets = platform::SecretBox::from_base64(SECRET_KEY).unwrap();
    for (id, secret) in [(created["id"].as_str().unwrap(), "pit-secret-token"), (hook["id"].as_str().unwrap(), signing.as_str())] {
        let (_, sealed) = h.store.crm_connection(h.org, id.parse().unwrap()).await.unwrap();
        assert!(!sealed.contains(secret), "not stored in the clear");
        assert_eq!(secrets.open(&sealed, id).unwrap(), secret);
    }

    let (status, problem) =
        h.json("POST", "/crm/connections", json!({"name": "x", "kind": "webhook", "url": "http://hooks.example.com"})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("url")), "{problem}");
    let other = h.store.create_org("Other").await.unwrap().id;
    let intruder = Harness {
        key: h.store.create_api_key(other).await.unwrap().secret,
        org: other,
        app: h.app.clone(),
        store: h.store.clone(),
        scheduler: h.scheduler.clone(),
        queue: h.queue.clone(),
        assistant: h.assistant.clone(),
    };
    let id = created["id"].as_str().unwrap();
    assert_eq!(intruder.json("DELETE", &format!("/crm/connections/{id}"), Value::Null).await.0, 404);
    assert!(intruder.json("GET", "/crm/connections", Value::Null).await.1["items"].as_array().unwrap().is_empty());
    assert_eq!(h.json("DELETE", &format!("/crm/connections/{id}"), Value::Null).await.0, 204);
    assert_eq!(h.json("DELETE", &format!("/crm/connections/{id}"), Value::Null).await.0, 404);
}

/// Without a key to seal them with, no token is stored at all.
#[tokio::test]
async fn crm_connections_need_a_sealing_key() {
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let (scheduler, _fired) = LocalScheduler::new(Duration::from_secs(3600));
    let queue = LocalQueue::open_in_memory(5).unwrap();
    let state = AppState::from_config(&platform::testing::config(&[]), store.clone(), scheduler.clone(), queue.clone());
    let (app, _) = router().with_state(state).split_for_parts();
    let h = Harness { app, store, scheduler, queue, org, key, assistant: String::new() };
    let (status, problem) = h.json("POST", "/crm/connections", json!({"name": "Hub", "kind": "hubspot", "token": "pat-1"})).await;
    assert_eq!((status, problem["type"].as_str()), (503, Some("https://outdial.dev/problems/secrets-not-configured")), "{problem}");
    assert!(h.store.list_crm_connections(org, store::PageRequest::default()).await.unwrap().items.is_empty());
}

async fn crafted_cursors_are_refused_as_bad_requests<S: Store>(store: S) {
    use base64::Engine;
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    let other = h.store.create_org("Other").await.unwrap().id;
    let encode = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let crafted = [
        "!!!not-base64".to_string(),
        encode("not json"),
        encode(&json!({ "pk": format!("ORG#{other}"), "sk": "CAMPAIGN#0" }).to_string()),
        encode(&json!({ "pk": format!("ORG#{}", h.org), "sk": "CAMPAIGN#0", "extra": "x" }).to_string()),
        encode(&json!({ "pk": "DNC#x", "sk": "+1", "gsi2pk": "CAMPAIGN#other", "gsi2sk": "0" }).to_string()),
    ];
    for list in ["/campaigns", &format!("/campaigns/{id}/calls"), &format!("/campaigns/{id}/contacts"), "/dnc", "/caller-ids", "/keys"] {
        for cursor in &crafted {
            let (status, problem) = h.json("GET", &format!("{list}?cursor={cursor}"), Value::Null).await;
            assert_eq!(
                (status, problem["type"].as_str()),
                (400, Some("https://outdial.dev/problems/invalid-cursor")),
                "{list} with {cursor}: {problem}"
            );
        }
    }
}

async fn api_keys_are_created_listed_and_revoked<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, created) = h.json("POST", "/keys", json!({"name": "ci pipeline", "expiresAt": expires})).await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (created["id"].as_str().unwrap().to_string(), created["secret"].as_str().unwrap().to_string());
    assert!(id.starts_with("key_") && secret.starts_with("odk_") && created["name"] == "ci pipeline", "{created}");
    let ci = Harness {
        key: secret,
        app: h.app.clone(),
        store: h.store.clone(),
        scheduler: h.scheduler.clone(),
        queue: h.queue.clone(),
        org: h.org,
        assistant: h.assistant.clone(),
    };
    assert_eq!(ci.json("GET", "/campaigns", Value::Null).await.0, 200, "the new key works");
    let (status, listed) = h.json("GET", "/keys", Value::Null).await;
    assert_eq!(status, 200);
    let keys = listed["items"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(keys.iter().all(|k| k.get("secret").is_none()), "secrets are never listed: {listed}");
    let mine = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert!(mine["lastUsedAt"].is_string() && mine["expiresAt"].is_string(), "{mine}");

    // another organisation cannot see or revoke it
    let other = h.store.create_org("Other").await.unwrap().id;
    let intruder = Harness {
        key: h.store.create_api_key(other).await.unwrap().secret,
        org: other,
        app: h.app.clone(),
        store: h.store.clone(),
        scheduler: h.scheduler.clone(),
        queue: h.queue.clone(),
        assistant: h.assistant.clone(),
    };
    assert_eq!(intruder.json("DELETE", &format!("/keys/{id}"), Value::Null).await.0, 404);
    assert_eq!(intruder.json("GET", "/keys", Value::Null).await.1["items"].as_array().unwrap().len(), 1);

    // revoked: its next request is refused
    assert_eq!(h.json("DELETE", &format!("/keys/{id}"), Value::Null).await.0, 204);
    let (status, problem) = ci.json("GET", "/campaigns", Value::Null).await;
    assert_eq!((status, problem["type"].as_str()), (401, Some("https://outdial.dev/problems/unauthorized")), "{problem}");
    assert_eq!(h.json("DELETE", "/keys/key_0123456789abcdef", Value::Null).await.0, 404);
    let (status, problem) = h.json("POST", "/keys", json!([null, null])).await;
    assert_eq!((status, problem["detail"].as_str()), (422, Some("the body must be a JSON object")), "{problem}");
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let (status, problem) = h.json("POST", "/keys", json!({"name": "x", "expiresAt": past})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("expiresAt")), "{problem}");
}

async fn campaigns_call_only_from_their_organisations_registered_numbers<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let (status, added) = h.json("POST", "/caller-ids", json!({"phone": "(415) 555-0101", "region": "US"})).await;
    assert_eq!((status, added["phone"].as_str()), (201, Some("+14155550101")), "{added}");
    assert_eq!(h.json("POST", "/caller-ids", json!({"phone": "+14155550101"})).await.0, 200, "registering again updates");
    let (status, listed) = h.json("GET", "/caller-ids", Value::Null).await;
    let phones: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|c| c["phone"].as_str().unwrap()).collect();
    assert_eq!((status, phones), (200, vec!["+14155550100", "+14155550101"]));
    let (status, problem) = h.json("POST", "/caller-ids", json!({"phone": "12", "vapiPhoneNumberId": "../x", "extra": 1})).await;
    assert_eq!(status, 422, "{problem}");

    // another organisation can neither register nor call from these numbers
    let other = h.store.create_org("Other").await.unwrap().id;
    let config = domain::assistant::templates()[0].config.clone();
    let theirs = h.store.create_assistant(other, NewAssistant::local("B", ProviderKind::Simulator, config).unwrap(), chrono::Utc::now());
    let intruder = Harness {
        key: h.store.create_api_key(other).await.unwrap().secret,
        org: other,
        assistant: theirs.await.unwrap().id.to_string(),
        app: h.app.clone(),
        store: h.store.clone(),
        scheduler: h.scheduler.clone(),
        queue: h.queue.clone(),
    };
    let (status, problem) = intruder.json("POST", "/caller-ids", json!({"phone": "+14155550101"})).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/conflict")), "{problem}");
    let spec = json!({"name": "Spoof", "assistantId": intruder.assistant, "callerIds": ["+14155550102", "+14155550100"]});
    let (status, problem) = intruder.json("POST", "/campaigns", spec).await;
    assert_eq!(status, 422, "{problem}");
    let reasons: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{problem}");
    assert!(reasons[1].starts_with("[1] +14155550100 is not registered to this organisation"), "{problem}");
    assert_eq!(intruder.json("DELETE", "/caller-ids/%2B14155550100", Value::Null).await.0, 404, "nor remove them");

    // a number taken off the registry fails the launch check of the campaigns that named it
    let id = h.campaign(json!({"callerIds": ["+14155550100", "+14155550101"]})).await;
    h.import(&id, "text/csv", "phone\n+14155550131\n").await;
    assert_eq!(h.json("DELETE", "/caller-ids/%2B14155550101", Value::Null).await.0, 204);
    assert_eq!(h.json("DELETE", "/caller-ids/%2B14155550101", Value::Null).await.0, 404);
    let (status, problem) = h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await;
    let checks: Vec<&str> = problem["unmet"].as_array().unwrap().iter().map(|u| u["check"].as_str().unwrap()).collect();
    assert_eq!((status, checks), (409, vec!["caller-id-not-registered"]), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("+14155550101"), "{problem}");
    h.json("POST", "/caller-ids", json!({"phone": "+14155550101"})).await;
    assert_eq!(h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await.0, 200);
}

/// With a Twilio account, a number is registered only when the account owns or has verified it.
#[tokio::test]
async fn registering_asks_twilio_whether_the_account_holds_the_number() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
    let twilio = MockServer::start().await;
    for (resource, list) in [("IncomingPhoneNumbers", "incoming_phone_numbers"), ("OutgoingCallerIds", "outgoing_caller_ids")] {
        let numbers = if resource == "OutgoingCallerIds" { json!([{"phone_number": "+14155550199"}]) } else { json!([]) };
        Mock::given(matchers::method("GET"))
            .and(matchers::path(format!("/2010-04-01/Accounts/AC1/{resource}.json")))
            .respond_with(move |r: &wiremock::Request| {
                let asked = r.url.query_pairs().find(|(k, _)| k == "PhoneNumber").map(|(_, v)| v.to_string());
                let held = numbers.as_array().unwrap().iter().filter(|n| Some(n["phone_number"].as_str().unwrap().to_string()) == asked);
                ResponseTemplate::new(200).set_body_json(json!({ list: held.cloned().collect::<Vec<_>>() }))
            })
            .mount(&twilio)
            .await;
    }
    let accounts = ProviderAccounts {
        twilio: Some(providers::TwilioAccount { base_url: twilio.uri(), account_sid: "AC1".into(), auth_token: "token".into() }),
        ..Default::default()
    };
    let h = harness(SqliteStore::open_in_memory().unwrap(), accounts, 1 << 20).await;
    assert_eq!(h.json("POST", "/caller-ids", json!({"phone": "+14155550199"})).await.0, 201, "a verified caller ID");
    let (status, problem) = h.json("POST", "/caller-ids", json!({"phone": "+14155550198"})).await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("https://outdial.dev/problems/caller-id-not-held")), "{problem}");
    assert!(h.store.registered_caller_ids(h.org, &[domain::E164::parse("+14155550198", None).unwrap()]).await.unwrap().is_empty());
}

/// Every column becomes a variable on every read of the contact and every call: at most 100 are
/// read (a wider file is refused whole), and no value is longer than 1,000 characters.
async fn a_contacts_columns_and_values_are_bounded<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 22).await;
    let id = h.campaign(json!({})).await;
    let extra: Vec<String> = (1..=3000).map(|i| format!("v{i}")).collect();
    let csv = format!(
        "phone,{}
+14155550161,{}
",
        extra.join(","),
        vec!["x"; extra.len()].join(",")
    );
    let (status, problem) = h.import_with(&id, "consent=attested&consentSource=web", "text/csv", csv).await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("https://outdial.dev/problems/too-many-columns")), "{problem}");
    assert_eq!(problem["maxColumns"], 100);
    assert!(problem["detail"].as_str().unwrap().contains("3001 columns; at most 100"), "{problem}");
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["progress"]["contactsTotal"], 0, "nothing was written");

    let wide: serde_json::Map<String, Value> = extra.iter().map(|k| (k.clone(), json!("x"))).collect();
    let mut wide_contact = wide.clone();
    wide_contact.insert("phone".into(), json!("+14155550162"));
    let long = "y".repeat(1001);
    let contacts = json!([wide_contact, {"phone": "+14155550163", "note": long}, {"phone": "+14155550164", "note": "short"}]);
    let (status, report) = h.import_with(&id, "consent=attested&consentSource=web", "application/json", contacts.to_string()).await;
    assert_eq!((status, report["imported"].as_u64(), report["invalid"].as_u64()), (200, Some(1), Some(2)), "{report}");
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("at most 100"), "{report}");
    assert!(report["errors"][1]["reason"].as_str().unwrap().contains("longer than 1000 characters"), "{report}");
}

async fn consent_is_on_record_for_every_contact_or_nothing_is_imported<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    for (content_type, body) in [
        ("text/csv", "phone,name\n+14155550161,Ada\n"),
        ("application/json", r#"[{"phone": "+14155550161"}, {"phone": "+14155550162", "consent": true}]"#),
    ] {
        let (status, problem) = h.import_with(&id, "", content_type, body).await;
        assert_eq!(
            (status, problem["type"].as_str()),
            (422, Some("https://outdial.dev/problems/consent-missing")),
            "{content_type}: {problem}"
        );
        assert!(problem["detail"].as_str().unwrap().contains("consent=attested"), "{problem}");
    }
    let (status, problem) = h.import_with(&id, "consent=attested", "text/csv", "phone\n+14155550161\n").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("https://outdial.dev/problems/consent-missing")),
        "an attestation says where: {problem}"
    );
    assert_eq!(h.import_with(&id, "consent=yes&consentSource=x", "text/csv", "phone\n+14155550161\n").await.0, 422);
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["progress"]["contactsTotal"], 0, "nothing was written");

    // from the file: consent true with its source and time; false and empty rows are refused
    let csv = "phone,consent,consent_source,consent_at\n+14155550161,yes,web form,2026-10-02\n+14155550162,no,,\n+14155550163,,,\n";
    let (status, report) = h.import_with(&id, "", "text/csv", csv).await;
    assert_eq!((status, report["imported"].as_u64(), report["invalid"].as_u64()), (200, Some(1), Some(2)), "{report}");
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("not agreed"), "{report}");
    assert!(report["errors"][1]["reason"].as_str().unwrap().contains("no consent"), "{report}");
    // from an attestation: every row without its own, recorded with the key's id and the time
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (status, report) = h
        .import_with(
            &id,
            "consent=attested&consentSource=web%20form%2C%202026-10",
            "text/csv",
            "phone,consent\n+14155550164,\n+14155550165,true\n",
        )
        .await;
    assert_eq!((status, report["imported"].as_u64()), (200, Some(2)), "{report}");
    let (_, contacts) = h.json("GET", &format!("/campaigns/{id}/contacts?limit=10"), Value::Null).await;
    let consent = |phone: &str| contacts["items"].as_array().unwrap().iter().find(|c| c["phone"] == phone).unwrap()["consent"].clone();
    assert_eq!(
        consent("+14155550161"),
        json!({"source": "file", "detail": "web form", "givenAt": "2026-10-02T00:00:00Z", "recordedAt": consent("+14155550161")["recordedAt"]})
    );
    let attested = consent("+14155550164");
    let key_id = store::KeyHash::of_secret(&h.key).id();
    assert_eq!((attested["source"].as_str(), attested["detail"].as_str()), (Some("attestation"), Some("web form, 2026-10")));
    assert_eq!(attested["attestedBy"].as_str(), Some(key_id.as_str()));
    let recorded: chrono::DateTime<chrono::Utc> = attested["recordedAt"].as_str().unwrap().parse().unwrap();
    assert!(recorded >= before && recorded <= chrono::Utc::now(), "{recorded}");
    assert_eq!(consent("+14155550165")["source"], "file", "the row's own consent wins over the attestation");
}

async fn the_emergency_stop_holds_until_lifted<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let (running, draft) = (h.campaign(json!({})).await, h.campaign(json!({})).await);
    for c in [&running, &draft] {
        h.import(c, "text/csv", "phone\n+14155550171\n").await;
    }
    assert_eq!(h.json("POST", &format!("/campaigns/{running}/start"), Value::Null).await.0, 200);
    let (status, off) = h.json("GET", "/emergency-stop", Value::Null).await;
    assert_eq!((status, off), (200, json!({"active": false})));

    let (status, stop) = h.json("POST", "/emergency-stop", Value::Null).await;
    assert_eq!((status, stop["active"].as_bool()), (200, Some(true)), "{stop}");
    assert_eq!(stop["by"].as_str(), Some(store::KeyHash::of_secret(&h.key).id().as_str()));
    let paused: Vec<&str> = stop["pausedCampaigns"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(paused, [running.as_str()]);
    let (_, shown) = h.json("GET", "/emergency-stop", Value::Null).await;
    assert_eq!((shown["active"].as_bool(), &shown["since"]), (Some(true), &stop["since"]));
    for (verb, c) in [("start", &draft), ("resume", &running)] {
        let (status, problem) = h.json("POST", &format!("/campaigns/{c}/{verb}"), Value::Null).await;
        assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/emergency-stop")), "{verb}: {problem}");
    }
    let (_, again) = h.json("POST", "/emergency-stop", Value::Null).await;
    assert_eq!(again["since"], stop["since"], "setting it again keeps when it was set");

    let (status, lifted) = h.json("DELETE", "/emergency-stop", Value::Null).await;
    assert_eq!((status, lifted), (200, json!({"active": false})));
    let (_, c) = h.json("GET", &format!("/campaigns/{running}"), Value::Null).await;
    assert_eq!(c["status"], "paused", "lifting the stop resumes nothing");
    assert_eq!(h.json("POST", &format!("/campaigns/{running}/resume"), Value::Null).await.0, 200);
    assert_eq!(h.json("POST", &format!("/campaigns/{draft}/start"), Value::Null).await.0, 200);
}

async fn the_legal_hours_a_campaign_is_narrowed_by_are_shown<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h
        .campaign(json!({"callingWindow": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "07:00", "end": "22:00"}}))
        .await;
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["effectiveWindowNotes"].as_array().unwrap().len(), 1, "the federal hours, before any contact: {c}");
    h.import(&id, "text/csv", "phone,state\n+13055550181,\n+12125550182,\n+14155550183,Texas\n").await;
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    let notes: Vec<&str> = c["effectiveWindowNotes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(notes.len(), 3, "federal, Florida, Texas (New York adds nothing): {notes:?}");
    assert!(notes[0].contains("08:00 and 21:00"), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("contacts in Florida (FL)") && n.contains("20:00")), "{notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("contacts in Texas (TX)") && n.contains("sun 12:00–21:00")), "{notes:?}");
    let (_, contacts) = h.json("GET", &format!("/campaigns/{id}/contacts"), Value::Null).await;
    let states: Vec<&str> = contacts["items"].as_array().unwrap().iter().map(|c| c["usState"].as_str().unwrap()).collect();
    assert_eq!(states, ["FL", "NY", "TX"], "the area code's state, or the row's");
    let (_, listed) = h.json("GET", "/campaigns", Value::Null).await;
    assert!(listed["items"][0].get("effectiveWindowNotes").is_none(), "single reads only");
}

async fn creation_reports_every_invalid_field_and_applies_defaults<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let invalid = json!({"name": "", "callerIds": ["123"], "cap": 0, "mode": "sometimes", "callerIdStrategy": "nearest"});
    let (status, problem) = h.json("POST", "/campaigns", invalid).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "assistantId", "callerIds", "cap", "mode", "callerIdStrategy"], "{problem}");
    let (status, problem) = h
        .json(
            "POST",
            "/campaigns",
            json!({"name": "x", "assistantId": domain::AssistantId::new().to_string(), "callerIds": ["+14155550100"]}),
        )
        .await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("assistantId")), "an unknown assistant");

    let id =
        h.campaign(json!({"startAt": "2099-01-01T09:00:00Z", "voicemail": {"action": "leave_message", "message": "Call us back"}})).await;
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["status"], "draft");
    assert_eq!((c["cap"].as_u64(), c["mode"].as_str(), c["provider"].as_str()), (Some(8), Some("continuous"), Some("simulator")));
    assert_eq!(c["callingWindow"], json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00", "end": "21:00"}));
    assert_eq!(c["retryPolicy"], json!({"maxAttempts": 3, "delayMinutes": 30, "retryOn": ["busy", "no_answer", "failed"]}));
    assert_eq!(c["voicemail"]["action"], "leave_message");
    assert_eq!(c["callerIdStrategy"], "lru", "least recently used unless asked");
    assert_eq!(c["progress"]["completionPercent"], 0.0);
    let local = h.campaign(json!({"callerIdStrategy": "local"})).await;
    assert_eq!(h.json("GET", &format!("/campaigns/{local}"), Value::Null).await.1["callerIdStrategy"], "local");
    let start = h.scheduler.get(id.parse().unwrap(), ScheduledAction::Start).await.unwrap().expect("a start-at schedule");
    assert_eq!(start.expression, "at(2099-01-01T09:00:00)");
}

async fn csv_imports_survive_bad_rows_and_report_each<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    h.send("PUT", "/dnc/+14155550199", "application/json", "").await;
    let id = h.campaign(json!({"timezone": "America/Chicago"})).await;
    let csv = "\u{feff}Phone,first_name,Plan,timezone\r\n\
               (415) 555-0101,Ada,gold,\r\n\
               \"+1 212 555 0102\",\"Lovelace, Ada\",\"multi\nline\",Mars/Olympus\r\n\
               415-555-0101,Dup,silver,\r\n\
               +14155550199,Listed,gold,\r\n\
               not a number,Bad,gold,\r\n\
               +7 495 123 45 67,Ivan,gold,\r\n";
    let (status, report) = h.import(&id, "text/csv", csv).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["imported"].as_u64(), report["duplicate"].as_u64(), report["doNotCall"].as_u64(), report["invalid"].as_u64()),
        (Some(3), Some(1), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(report["errors"][0]["line"], 7, "the quoted newline makes row 3 span two lines");
    assert_eq!(report["errors"][0]["value"], "not a number");

    let (_, contacts) = h.json("GET", &format!("/campaigns/{id}/contacts?limit=10"), Value::Null).await;
    let by_phone = |p: &str| contacts["items"].as_array().unwrap().iter().find(|c| c["phone"] == p).cloned().unwrap();
    let ada = by_phone("+14155550101");
    assert_eq!((ada["variables"]["Plan"].as_str(), ada["timezone"].as_str()), (Some("gold"), Some("America/Los_Angeles")));
    let quoted = by_phone("+12125550102");
    assert_eq!(quoted["variables"]["Plan"], "multi\nline", "variables keep the column name as written");
    assert_eq!(quoted["timezone"], "America/New_York", "an unknown zone falls back to the number's");
    assert_eq!(by_phone("+74951234567")["timezone"], "America/Chicago", "and then to the campaign's");

    let (status, problem) = h.import(&id, "text/csv", "name,email\nAda,a@example.com\n").await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("https://outdial.dev/problems/missing-phone-column")));
    let (status, _) = h.import(&id, "text/plain", "phone\n+14155550103\n").await;
    assert_eq!(status, 415);
    let (status, report) = h.import_with(&id, &format!("region=GB&{ATTESTED}"), "text/csv", "number\n020 7946 0958\n").await;
    assert_eq!((status, report["imported"].as_u64()), (200, Some(1)), "{report}");

    let big = format!("phone\n{}", "+14155550104\n".repeat(100_000));
    let (status, problem) = h.import(&id, "text/csv", big).await;
    assert_eq!((status, problem["type"].as_str()), (413, Some("https://outdial.dev/problems/payload-too-large")));
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["progress"]["contactsTotal"], 4);
    assert_eq!(c["progress"]["byState"], json!({"ready": 4}));
}

/// Google libphonenumber's example numbers written internationally, imported into a US campaign
/// (so national numbers would be read as American): each valid one is imported, each cut one is
/// an invalid row.
async fn every_regions_example_numbers_import_as_the_reference_says<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    let examples = include_str!("../../../../shared/domain/data/phone_examples.tsv");
    let (mut csv, mut valid, mut invalid) = ("phone\n".to_string(), std::collections::BTreeSet::new(), 0);
    for fields in examples.lines().filter(|l| !l.starts_with('#')).map(|l| l.split('\t').collect::<Vec<_>>()) {
        if fields[1] == "US" && fields[0].starts_with('+') {
            csv.push_str(&format!("\"{}\"\n", fields[0]));
            match fields[2] {
                "valid" => drop(valid.insert(fields[3])),
                _ => invalid += 1,
            }
        }
    }
    let (status, report) = h.import(&id, "text/csv", csv).await;
    assert_eq!(status, 200, "{report}");
    let duplicates = report["duplicate"].as_u64().unwrap();
    assert_eq!(report["imported"].as_u64(), Some(valid.len() as u64), "{report}");
    assert_eq!((report["invalid"].as_u64(), report["doNotCall"].as_u64()), (Some(invalid), Some(0)), "{report}");
    assert!(valid.len() > 450 && invalid > 450, "{} valid, {invalid} invalid", valid.len());
    assert!(duplicates < 20, "only regions sharing an example number: {duplicates}");
}

async fn json_arrays_and_ndjson_import_like_csv<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    let array = json!([{"phone": "+14155550111", "priority": 3, "vip": true}, {"number": "(415) 555-0112"}, "not an object", {"name": "no phone"}, {"phone": "+14155550111"}]);
    let (status, report) = h.import(&id, "application/json", array.to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["imported"].as_u64(), report["duplicate"].as_u64(), report["invalid"].as_u64()), (Some(2), Some(1), Some(2)));
    assert_eq!(report["errors"][0]["line"], 3);

    let ndjson = "{\"phone\":\"+14155550113\"}\n\n{broken\n{\"phone\":\"+14155550114\",\"timezone\":\"Europe/London\"}\n";
    let (status, report) = h.import(&id, "application/json", ndjson).await;
    assert_eq!((status, report["imported"].as_u64(), report["invalid"].as_u64()), (200, Some(2), Some(1)), "{report}");
    assert_eq!(report["errors"][0]["line"], 3);
    let (status, problem) = h.import(&id, "application/json", "[{\"phone\":\"+14155550115\"}, {oops").await;
    assert_eq!(
        (status, problem["type"].as_str(), problem["imported"].as_u64()),
        (422, Some("https://outdial.dev/problems/malformed-file"), Some(0)),
        "{problem}"
    );
}

async fn launch_checks_list_everything_unmet<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let config = domain::assistant::templates()[0].config.clone();
    let vapi = h
        .store
        .create_assistant(
            h.org,
            NewAssistant { provider_assistant_id: Some("va_1".into()), ..NewAssistant::local("V", ProviderKind::Vapi, config).unwrap() },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let vapi_campaign = json!({"name": "c", "assistantId": vapi.id.to_string(), "callerIds": ["+14155550100"], "callingWindow": {"days": [], "start": "08:00", "end": "21:00"}});
    let (status, problem) = h.json("POST", "/campaigns", vapi_campaign.clone()).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("callerIds")),
        "Vapi calls from the number's id there: {problem}"
    );
    assert!(problem["errors"][0]["reason"].as_str().unwrap().contains("vapiPhoneNumberId"), "{problem}");
    h.store.register_caller_id(registration(h.org, "+14155550100", Some("pn_1"))).await.unwrap();
    let (status, created) = h.json("POST", "/campaigns", vapi_campaign).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    h.store
        .update_assistant(h.org, vapi.id, 1, domain::AssistantPatch::parse(None, None, Some(false)).unwrap(), chrono::Utc::now())
        .await
        .unwrap();
    let (status, problem) = h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/launch-checks-failed")));
    let checks: Vec<&str> = problem["unmet"].as_array().unwrap().iter().map(|u| u["check"].as_str().unwrap()).collect();
    assert_eq!(
        checks,
        ["no-contacts", "assistant-inactive", "provider-not-configured", "calling-window-empty", "assistant-tools-undeclared"]
    );
    assert!(problem["detail"].as_str().unwrap().contains("set VAPI_API_KEY"), "{problem}");
    let undeclared = &problem["unmet"][4]["detail"];
    assert!(undeclared.as_str().unwrap().contains(&format!("not declared at {PUBLIC_URL}: save the assistant again")), "{undeclared}");
    // its tools declared there, that check is met
    let patch = domain::AssistantPatch { tools_url: Some(Some(PUBLIC_URL.into())), ..Default::default() };
    h.store.update_assistant(h.org, vapi.id, 2, patch, chrono::Utc::now()).await.unwrap();
    let (_, problem) = h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await;
    assert!(!problem["unmet"].as_array().unwrap().iter().any(|u| u["check"] == "assistant-tools-undeclared"), "{problem}");
    assert!(h.scheduler.get(id.parse().unwrap(), ScheduledAction::Tick).await.unwrap().is_none());
}

async fn concurrent_starts_leave_one_running_campaign_with_one_schedule<S: Store>(store: S) {
    let h = std::sync::Arc::new(harness(store, ProviderAccounts::default(), 1 << 20).await);
    let id = h.campaign(json!({})).await;
    h.import(&id, "text/csv", "phone\n+14155550121\n+14155550122\n").await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let (h, id) = (h.clone(), id.clone());
            tokio::spawn(async move { h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for s in starts {
        statuses.push(s.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409]);
    assert!(h.scheduler.get(id.parse().unwrap(), ScheduledAction::Tick).await.unwrap().is_some());

    // pause and resume racing: whatever the order, the schedule follows the final status
    let racers: Vec<_> = ["pause", "resume", "pause", "resume"]
        .into_iter()
        .map(|verb| {
            let (h, id) = (h.clone(), id.clone());
            tokio::spawn(async move { h.json("POST", &format!("/campaigns/{id}/{verb}"), Value::Null).await.0 })
        })
        .collect();
    for r in racers {
        assert!([200, 409].contains(&r.await.unwrap()));
    }
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    let scheduled = h.scheduler.get(id.parse().unwrap(), ScheduledAction::Tick).await.unwrap().is_some();
    assert_eq!(scheduled, c["status"] == "running", "status {} with schedule {scheduled}", c["status"]);
}

async fn lifecycle_follows_draft_running_paused_canceled<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    let other = h.campaign(json!({})).await;
    for c in [&id, &other] {
        h.import(c, "text/csv", "phone\n+14155550131\n+14155550132\n+14155550133\n").await;
        assert_eq!(h.json("POST", &format!("/campaigns/{c}/start"), Value::Null).await.0, 200);
    }
    let (status, problem) = h.json("POST", &format!("/campaigns/{id}/resume"), Value::Null).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/invalid-transition")));
    let (status, problem) = h.import(&id, "text/csv", "phone\n+14155550134\n").await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/invalid-state")), "no imports while running");

    let (status, stopped) = h.json("POST", "/emergency-stop", Value::Null).await;
    assert_eq!((status, stopped["pausedCampaigns"].as_array().unwrap().len()), (200, 2));
    for c in [&id, &other] {
        assert!(h.scheduler.get(c.parse().unwrap(), ScheduledAction::Tick).await.unwrap().is_none(), "schedules deleted");
    }
    assert_eq!(h.import(&id, "text/csv", "phone\n+14155550134\n").await.0, 200, "imports while paused");
    assert_eq!(h.json("DELETE", "/emergency-stop", Value::Null).await.0, 200);
    let (status, c) = h.json("POST", &format!("/campaigns/{id}/resume"), Value::Null).await;
    assert_eq!((status, c["status"].as_str()), (200, Some("running")));
    let (status, c) = h.json("POST", &format!("/campaigns/{id}/cancel"), Value::Null).await;
    assert_eq!((status, c["status"].as_str()), (200, Some("canceled")));
    assert_eq!(c["progress"]["byDisposition"], json!({"canceled": 4}));
    assert_eq!(c["progress"]["completionPercent"], 100.0);
    assert!(h.scheduler.get(id.parse().unwrap(), ScheduledAction::Tick).await.unwrap().is_none());
    let (_, canceled) = h.json("GET", &format!("/campaigns/{id}/contacts?disposition=canceled"), Value::Null).await;
    assert_eq!(canceled["items"].as_array().unwrap().len(), 4);
    assert_eq!(h.json("POST", &format!("/campaigns/{id}/pause"), Value::Null).await.0, 409);
}

async fn do_not_call_routes_manage_the_list_and_spare_listed_contacts<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    h.import(&id, "text/csv", "phone\n+14155550141\n+14155550142\n").await;
    h.json("POST", &format!("/campaigns/{id}/start"), Value::Null).await;
    let (status, added) = h.send("PUT", "/dnc/+14155550141", "application/json", "").await;
    assert_eq!((status, added["added"].as_u64(), added["contactsFinalised"].as_u64()), (200, Some(1), Some(1)));
    let (status, bulk) = h.send("POST", "/dnc?region=US", "text/csv", "phone_number\n(415) 555-0143\nnonsense\n+14155550141\n").await;
    assert_eq!(
        (status, bulk["added"].as_u64(), bulk["alreadyListed"].as_u64(), bulk["invalid"].as_u64()),
        (200, Some(1), Some(1), Some(1)),
        "{bulk}"
    );
    assert_eq!(bulk["errors"][0]["line"], 3);
    let (_, page) = h.json("GET", "/dnc?limit=1", Value::Null).await;
    assert_eq!(page["items"][0]["phone"], "+14155550141");
    let (_, rest) = h.json("GET", &format!("/dnc?limit=1&cursor={}", page["nextCursor"].as_str().unwrap()), Value::Null).await;
    assert_eq!((rest["items"][0]["phone"].as_str(), rest["nextCursor"].as_str()), (Some("+14155550143"), None));
    assert_eq!(h.send("DELETE", "/dnc/+14155550143", "application/json", "").await.0, 204);
    assert_eq!(h.send("DELETE", "/dnc/+14155550143", "application/json", "").await.0, 404);
    // who let the number be called again, and when, is kept
    let (status, audit) = h.json("GET", "/dnc/audit", Value::Null).await;
    assert_eq!(status, 200, "{audit}");
    let removed = &audit["items"].as_array().unwrap()[..];
    assert_eq!(removed.len(), 1, "{audit}");
    assert_eq!(
        (removed[0]["phone"].as_str(), removed[0]["removedBy"].as_str()),
        (Some("+14155550143"), Some(store::KeyHash::of_secret(&h.key).id().as_str()))
    );
    assert!(removed[0]["removedAt"].is_string());
    assert_eq!(h.send("PUT", "/dnc/12", "application/json", "").await.0, 422);
    let (_, c) = h.json("GET", &format!("/campaigns/{id}"), Value::Null).await;
    assert_eq!(c["progress"]["byDisposition"], json!({"do_not_call": 1}));
}

async fn another_organisations_campaign_is_not_found<S: Store>(store: S) {
    let h = harness(store, ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    let other_org = h.store.create_org("Other").await.unwrap().id;
    let intruder = Harness { key: h.store.create_api_key(other_org).await.unwrap().secret, org: other_org, ..h };
    for (method, uri) in [
        ("GET", format!("/campaigns/{id}")),
        ("GET", format!("/campaigns/{id}/contacts")),
        ("POST", format!("/campaigns/{id}/start")),
        ("POST", format!("/campaigns/{id}/cancel")),
    ] {
        let (status, problem) = intruder.json(method, &uri, Value::Null).await;
        assert_eq!((status, problem["type"].as_str()), (404, Some("https://outdial.dev/problems/not-found")), "{method} {uri}");
    }
    assert_eq!(intruder.import(&id, "text/csv", "phone\n+14155550151\n").await.0, 404);
    let (_, stopped) = intruder.json("POST", "/emergency-stop", Value::Null).await;
    assert_eq!(stopped["pausedCampaigns"], json!([]), "another organisation's stop pauses nothing of this one");
    assert!(intruder.store.get_org(h.org).await.unwrap().emergency_stop.is_none(), "the intruder stopped its own organisation only");
    assert!(intruder.store.get_org(intruder.org).await.unwrap().emergency_stop.is_some());
}

/// Lists take what the document says and nothing else: `limit` 1–500, no parameter it does not name.
#[tokio::test]
async fn list_parameters_are_held_to_the_document() {
    let h = harness(SqliteStore::open_in_memory().unwrap(), ProviderAccounts::default(), 1 << 20).await;
    let id = h.campaign(json!({})).await;
    for uri in ["/campaigns?limit=0", "/campaigns?limit=501", "/dnc?limit=501", &format!("/campaigns/{id}/contacts?limit=501")] {
        let (status, problem) = h.json("GET", uri, Value::Null).await;
        assert_eq!((status, problem["type"].as_str()), (400, Some("https://outdial.dev/problems/invalid-limit")), "{uri}: {problem}");
    }
    let (status, problem) = h.json("GET", "/campaigns?limit=10&colour=red", Value::Null).await;
    assert_eq!(status, 400, "an unknown parameter: {problem}");
    assert!(problem["detail"].as_str().unwrap_or_default().contains("colour"), "{problem}");
    assert_eq!(h.json("GET", "/campaigns?limit=500", Value::Null).await.0, 200);
}

#[tokio::test]
async fn a_bad_key_is_refused() {
    let mut h = harness(SqliteStore::open_in_memory().unwrap(), ProviderAccounts::default(), 1 << 20).await;
    h.key = "odk_wrong".into();
    assert_eq!(h.json("GET", "/campaigns", Value::Null).await.0, 401);
}

/// A 50 MB upload streams through: 100,000 rows with a long column each, all imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifty_megabyte_file_imports_whole() {
    let h = harness(SqliteStore::open_in_memory().unwrap(), ProviderAccounts::default(), 64 << 20).await;
    let id = h.campaign(json!({})).await;
    let notes = "n".repeat(500);
    let rows: u64 = 100_000;
    let chunks = (0..rows / 1000).map(move |chunk| {
        let mut text = if chunk == 0 { String::from("phone,notes\n") } else { String::new() };
        for i in chunk * 1000..(chunk + 1) * 1000 {
            text.push_str(&format!("+1415{:03}{:04},{notes}\n", 200 + i / 10_000, i % 10_000));
        }
        Ok::<_, std::io::Error>(text)
    });
    let body = Body::from_stream(futures::stream::iter(chunks));
    let (status, report) = h.import(&id, "text/csv", body).await;
    assert_eq!((status, report["imported"].as_u64(), report["invalid"].as_u64()), (200, Some(rows), Some(0)), "{report}");
}
