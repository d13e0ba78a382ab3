//! The tools function on both stores, each provider's format round-tripped field by field
//! (PROTOCOLS.md): Vapi `tool-calls` → `{"results":[{"toolCallId","result"}]}`, a Retell custom
//! function signed with `X-Retell-Signature` → text, an ElevenLabs webhook tool with the
//! organisation's tool secret → `{"result"}`, the plain route with an API key → `{result}` or a
//! problem. Every run is noted on the call; a call that is not outdial's is a 404; a bad signature
//! runs nothing.

use app::elevenlabs_tool_secret;
use axum::{Router, http::StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use domain::{CallEventKind, CallProvider, CampaignSettings, CampaignStatus, Cap, E164, NewCampaign, NewContact};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use store::{DoNotCallStore, PlacedCall, SqliteStore, Store};
use tools::{ToolsState, router};
use tower::ServiceExt;

struct World<S> {
    app: Router,
    store: S,
    key: String,
    org: domain::OrgId,
    call: domain::CallId,
    secrets: platform::SecretBox,
}

/// The secrets the sample events in `events/tools/` are made with.
const SAMPLE_VAPI_SECRET: &str = "outdial-sample-vapi-secret";
const SAMPLE_RETELL_KEY: &str = "outdial-sample-retell-key";

/// A Wednesday noon in New York.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc()
}

/// One call of `provider`, placed there as `provider_call_id`, to Ada (email on file).
async fn world<S: Store>(store: S, provider: CallProvider, provider_call_id: &str) -> World<S> {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let settings = CampaignSettings { provider, ..Default::default() };
    let campaign = store.create_campaign(org, NewCampaign::parse("Renewals", Cap::parse(5).unwrap(), settings).unwrap()).await.unwrap();
    let mut ada = NewContact::new(
        E164::parse("+14155550123", None).unwrap(),
        chrono_tz::America::New_York,
        domain::Consent::on_file(chrono::Utc::now()),
    );
    ada.variables.insert("email".into(), "ada@example.com".into());
    store.add_contacts(org, campaign.id, vec![ada], t0()).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap();
    let claim = store.claim_due_contacts(org, campaign.id, t0(), 1, TimeDelta::zero()).await.unwrap().remove(0);
    let placed = PlacedCall { provider, provider_call_id: provider_call_id.into(), caller_id: None, placed_at: t0() };
    store.record_placed_call(org, claim.call.id, placed).await.unwrap();
    let secrets = platform::SecretBox::ephemeral();
    let config = platform::testing::config(&[("VAPI_WEBHOOK_SECRET", SAMPLE_VAPI_SECRET), ("RETELL_API_KEY", SAMPLE_RETELL_KEY)]);
    let mut state = ToolsState::from_config(&config, store.clone());
    state.key = Some(secrets.clone());
    let (app, _) = router().with_state(state).split_for_parts();
    World { app, store, key, org, call: claim.call.id, secrets }
}

async fn send(app: &Router, request: axum::http::Request<axum::body::Body>) -> (StatusCode, Option<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let body = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, kind, body)
}

fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> axum::http::Request<axum::body::Body> {
    let mut request = axum::http::Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(axum::body::Body::from(body.to_string())).unwrap()
}

/// The notes the tools left in the call's log.
async fn notes<S: Store>(w: &World<S>) -> Vec<String> {
    let events = w.store.list_call_events(w.org, w.call).await.unwrap();
    events
        .into_iter()
        .filter_map(|e| match e.event.kind {
            CallEventKind::Note { text } => Some(text),
            _ => None,
        })
        .collect()
}

async fn vapi_tool_calls_answer_each_call_by_id<S: Store>(store: S) {
    let w = world(store, CallProvider::Vapi, "vapi-call-1").await;
    // PROTOCOLS.md: message.type tool-calls, toolCallList[{id, type, function{name, arguments}}], call{id}
    let message = json!({ "message": {
        "type": "tool-calls",
        "timestamp": 1_768_323_600_000i64,
        "toolCallList": [
            { "id": "call_time", "type": "function", "function": { "name": "current_time", "arguments": { "when": "tomorrow 3pm" } } },
            { "id": "call_mail", "type": "function", "function": { "name": "send_email", "arguments": "{\"note\":\"As promised.\"}" } },
            { "id": "call_odd", "type": "function", "function": { "name": "teleport", "arguments": {} } }
        ],
        "call": { "id": "vapi-call-1", "orgId": "vapi-org" }
    }});
    let (status, kind, body) = send(&w.app, post("/tools/vapi", &[("x-vapi-secret", SAMPLE_VAPI_SECRET)], &message)).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::OK, Some("application/json")), "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results.iter().map(|r| r["toolCallId"].as_str().unwrap()).collect::<Vec<_>>(), ["call_time", "call_mail", "call_odd"]);
    assert!(results.iter().all(|r| r.as_object().unwrap().len() == 2 && r["result"].is_string()), "exactly toolCallId and result");
    let time: Value = serde_json::from_str(results[0]["result"].as_str().unwrap()).unwrap();
    assert_eq!(time, resolved_as_of_its_own_now("tomorrow 3pm", &time), "3pm tomorrow in the contact's zone");
    assert!(time["resolved"]["at"]["localTime"].as_str().unwrap().contains("T15:00:00-0"));
    assert_eq!(results[1]["result"], "The email is on its way to ada@example.com.");
    assert!(results[2]["result"].as_str().unwrap().contains("there is no tool \"teleport\""), "an answer the agent can say");
    let notes = notes(&w).await;
    assert_eq!(notes.iter().filter(|n| n.starts_with("tool ")).count(), 3, "every run noted: {notes:?}");
    assert!(notes.iter().any(|n| n.starts_with("follow-up email sent to a")), "{notes:?}");

    let (status, _, body) = send(&w.app, post("/tools/vapi", &[("x-vapi-secret", "wrong")], &message)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = send(&w.app, post("/tools/vapi", &[], &message)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(notes_count(&w).await, notes.len(), "a refused request ran nothing");
    let mut stranger = message.clone();
    stranger["message"]["call"]["id"] = json!("someone-elses-call");
    let (status, kind, body) = send(&w.app, post("/tools/vapi", &[("x-vapi-secret", SAMPLE_VAPI_SECRET)], &stranger)).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::NOT_FOUND, Some("application/problem+json")), "{body}");
    let mut status_update = message.clone();
    status_update["message"]["type"] = json!("status-update");
    let (status, _, _) = send(&w.app, post("/tools/vapi", &[("x-vapi-secret", SAMPLE_VAPI_SECRET)], &status_update)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// What agent_time answers for `phrase` in New York at the instant the tool's answer says is now.
fn resolved_as_of_its_own_now(phrase: &str, answer: &Value) -> Value {
    let now = DateTime::parse_from_rfc3339(answer["localTime"].as_str().unwrap()).unwrap().to_utc();
    serde_json::to_value(agent_time::answer(now, chrono_tz::America::New_York, Some(phrase)).unwrap()).unwrap()
}

async fn notes_count<S: Store>(w: &World<S>) -> usize {
    notes(w).await.len()
}

async fn retell_functions_are_signed_and_answered_in_text<S: Store>(store: S) {
    let w = world(store, CallProvider::Retell, "retell-call-1").await;
    // PROTOCOLS.md: {name, args, call}; X-Retell-Signature v=<ms>,d=<hmac(api key, body + v)>
    let body = json!({ "name": "current_time", "args": { "when": "next Monday 9am" }, "call": { "call_id": "retell-call-1", "agent_id": "agent_1" } });
    let raw = body.to_string();
    let signature = providers::retell::webhook_signature(SAMPLE_RETELL_KEY, raw.as_bytes(), Utc::now());
    let request = post("/tools/retell/current_time", &[("x-retell-signature", &signature)], &body);
    let (status, kind, text) = send(&w.app, request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(kind.unwrap().starts_with("text/plain"));
    let time: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(time, resolved_as_of_its_own_now("next Monday 9am", &time));
    assert_eq!(time["resolved"]["weekday"], "Monday");

    let forged = providers::retell::webhook_signature("another-key", raw.as_bytes(), Utc::now());
    let (status, _, _) = send(&w.app, post("/tools/retell/current_time", &[("x-retell-signature", &forged)], &body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let stale = providers::retell::webhook_signature(SAMPLE_RETELL_KEY, raw.as_bytes(), Utc::now() - TimeDelta::minutes(6));
    let (status, _, _) = send(&w.app, post("/tools/retell/current_time", &[("x-retell-signature", &stale)], &body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(notes(&w).await.len(), 1, "only the signed request ran");
}

async fn elevenlabs_tools_need_their_organisations_secret<S: Store>(store: S) {
    let w = world(store, CallProvider::Elevenlabs, "conv_1").await;
    let bearer = format!("Bearer {}", w.key);
    let asked =
        axum::http::Request::get("/tools/elevenlabs/secret").header("authorization", &bearer).body(axum::body::Body::empty()).unwrap();
    let (status, _, body) = send(&w.app, asked).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let told: Value = serde_json::from_str(&body).unwrap();
    let secret = elevenlabs_tool_secret(&w.secrets, w.org);
    assert_eq!(told, json!({ "header": "X-Outdial-Tool-Secret", "secret": secret }), "the organisation learns its own secret");
    let body = json!({ "conversation_id": "conv_1", "note": "The brochure." });
    let (status, _, text) = send(&w.app, post("/tools/elevenlabs/send_email", &[("x-outdial-tool-secret", &secret)], &body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({ "result": "The email is on its way to ada@example.com." }));
    let again = send(&w.app, post("/tools/elevenlabs/send_email", &[("x-outdial-tool-secret", &secret)], &body)).await;
    assert!(again.2.contains("already sent you an email"), "one email per call: {}", again.2);

    let other_org = w.store.create_org("Other").await.unwrap().id;
    let theirs = elevenlabs_tool_secret(&w.secrets, other_org);
    let (status, _, foreign) = send(&w.app, post("/tools/elevenlabs/send_email", &[("x-outdial-tool-secret", &theirs)], &body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another organisation's secret runs nothing on this call");
    let unknown = json!({ "conversation_id": "conv_9", "note": "The brochure." });
    let (status, _, missing) = send(&w.app, post("/tools/elevenlabs/send_email", &[("x-outdial-tool-secret", &theirs)], &unknown)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.replace("conv_1", "conv_9"), missing, "another's call and no call answer alike: nothing to learn");
    let (status, _, _) = send(&w.app, post("/tools/elevenlabs/send_email", &[], &body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, text) =
        send(&w.app, post("/tools/elevenlabs/send_email", &[("x-outdial-tool-secret", &secret)], &json!({ "note": "x" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("system__conversation_id"), "{text}");
    assert_eq!(notes(&w).await.iter().filter(|n| n.starts_with("tool ")).count(), 2);
}

/// A bridge call (Twilio carries it, ElevenLabs talks): its conversation is not the call's
/// provider id, so the webhook tool finds it by the ids outdial passed as dynamic variables.
async fn elevenlabs_tools_find_bridge_calls_by_our_ids<S: Store>(store: S) {
    let w = world(store, CallProvider::Twilio, "CA0003").await;
    let secret = elevenlabs_tool_secret(&w.secrets, w.org);
    let ids = |org: String| json!({ "conversation_id": "conv_bridge", "outdial_org_id": org, "outdial_call_id": w.call.to_string() });
    let (status, _, text) =
        send(&w.app, post("/tools/elevenlabs/add_to_do_not_call", &[("x-outdial-tool-secret", &secret)], &ids(w.org.to_string()))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(w.store.is_do_not_call(w.org, &E164::parse("+14155550123", None).unwrap()).await.unwrap());
    // another organisation's secret with this organisation's ids, or its own ids for this call: nothing runs
    let other = w.store.create_org("Other").await.unwrap().id;
    let theirs = elevenlabs_tool_secret(&w.secrets, other);
    let (status, _, _) =
        send(&w.app, post("/tools/elevenlabs/current_time", &[("x-outdial-tool-secret", &theirs)], &ids(w.org.to_string()))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) =
        send(&w.app, post("/tools/elevenlabs/current_time", &[("x-outdial-tool-secret", &theirs)], &ids(other.to_string()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the call is not the other organisation's");
    assert_eq!(notes(&w).await.iter().filter(|n| n.starts_with("tool ")).count(), 1);
}

async fn the_plain_route_answers_or_says_what_is_wrong<S: Store>(store: S) {
    let w = world(store, CallProvider::Twilio, "CA0001").await;
    let bearer = format!("Bearer {}", w.key);
    let auth = [("authorization", bearer.as_str())];
    let ask = |tool: &str, parameters: Value| {
        post(&format!("/tools/{tool}"), &auth, &json!({ "callId": w.call.to_string(), "parameters": parameters }))
    };
    let (status, _, body) = send(&w.app, ask("current_time", json!({ "when": "in 2 hours" }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let time: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    assert_eq!(time["timezone"], "America/New_York");

    let (status, kind, body) = send(&w.app, ask("current_time", json!({ "when": "when pigs fly" }))).await;
    assert_eq!((status, kind.as_deref()), (StatusCode::UNPROCESSABLE_ENTITY, Some("application/problem+json")), "{body}");
    assert!(body.contains("tomorrow 3pm"), "{body}");
    let (status, _, body) = send(&w.app, ask("book_appointment", json!({ "start": "2027-01-15T10:00" }))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no Cal.com here: {body}");
    assert!(body.contains("CALCOM_API_KEY"));
    let (status, _, _) = send(&w.app, post("/tools/current_time", &[], &json!({ "callId": w.call.to_string() }))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = w.store.create_org("Other").await.unwrap().id;
    let their_key = format!("Bearer {}", w.store.create_api_key(other).await.unwrap().secret);
    let theirs = post("/tools/current_time", &[("authorization", &their_key)], &json!({ "callId": w.call.to_string() }));
    assert_eq!(send(&w.app, theirs).await.0, StatusCode::NOT_FOUND, "another organisation's call");
    assert_eq!(send(&w.app, ask("current_time", json!({}))).await.0, StatusCode::OK);
    let unknown = post("/tools/current_time", &auth, &json!({ "callId": "not-a-call" }));
    assert_eq!(send(&w.app, unknown).await.0, StatusCode::NOT_FOUND);
}

async fn the_time_route_answers_any_zone<S: Store>(store: S) {
    let w = world(store, CallProvider::Twilio, "CA0002").await;
    let get = |q: &str| axum::http::Request::get(format!("/tools/time?{q}")).body(axum::body::Body::empty()).unwrap();
    let (status, _, body) = send(&w.app, get("tz=Europe/London&at=2026-11-24T15:05:00Z")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer, serde_json::to_value(agent_time::answer(t_london(), chrono_tz::Europe::London, None).unwrap()).unwrap());
    assert_eq!(answer["localTime"], "2026-11-24T15:05:00+00:00");
    assert_eq!(send(&w.app, get("tz=Mars/Olympus")).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(send(&w.app, get("tz=UTC&at=yesterday")).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

fn t_london() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T15:05:00Z").unwrap().to_utc()
}

/// The function URL event `events/tools/<name>` (its org and call ids replaced by `w`'s, and
/// `more`) through the router, as Lambda delivers it: the status and the body.
async fn invoke_sample<S: Store>(w: &World<S>, name: &str, more: &[(&str, &str)]) -> (StatusCode, String) {
    let (org, call) = (w.org.to_string(), w.call.to_string());
    let mut replacements =
        vec![("01970000-0000-7000-8000-0000000000a9", org.as_str()), ("01970000-0000-7000-8000-0000000ca11a", call.as_str())];
    replacements.extend_from_slice(more);
    let event = platform::testing::load_event(&format!("tools/{name}"), &replacements);
    let request = lambda_http::request::from_str(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (status, _, body) = send(&w.app, request.map(|body| axum::body::Body::from(body.to_vec()))).await;
    (status, body)
}

/// The sample events of `events/tools/`, one per format, each answered for a call of ours.
#[tokio::test]
async fn the_sample_events_are_answered() {
    let sqlite = || SqliteStore::open_in_memory().unwrap();
    let w = world(sqlite(), CallProvider::Vapi, "vapi-call-5f0e7a2b").await;
    let (status, body) = invoke_sample(&w, "vapi-tool-calls.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["results"][0]["toolCallId"], "call_time");
    let time: Value = serde_json::from_str(answer["results"][0]["result"].as_str().unwrap()).unwrap();
    assert_eq!(time, resolved_as_of_its_own_now("tomorrow 3pm", &time));

    // Retell's signature carries its time: the sample is signed now
    let w = world(sqlite(), CallProvider::Retell, "retell-call-7c1d9e3f").await;
    let event: Value = serde_json::from_str(&platform::testing::load_event("tools/retell-function.json", &[])).unwrap();
    let signature = providers::retell::webhook_signature(SAMPLE_RETELL_KEY, event["body"].as_str().unwrap().as_bytes(), Utc::now());
    let (status, body) = invoke_sample(&w, "retell-function.json", &[("v=REPLACE_WITH_MILLIS,d=REPLACE_WITH_HMAC", &signature)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "The number is on the do-not-call list; it will not be called again."));
    assert!(w.store.is_do_not_call(w.org, &E164::parse("+14155550123", None).unwrap()).await.unwrap());

    // ElevenLabs, on a call through the bridge: found by outdial's ids
    let w = world(sqlite(), CallProvider::Twilio, "CA5a3f1c9e2b7d4a6f8e0c1b3d5f7a9c2e").await;
    let secret = elevenlabs_tool_secret(&w.secrets, w.org);
    let (status, body) = invoke_sample(&w, "elevenlabs-tool.json", &[("REPLACE_WITH_THE_ORGANISATIONS_TOOL_SECRET", &secret)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let time: Value = serde_json::from_str(serde_json::from_str::<Value>(&body).unwrap()["result"].as_str().unwrap()).unwrap();
    assert_eq!(time["resolved"]["weekday"], "Tuesday");

    let (status, body) = invoke_sample(&w, "plain.json", &[("odk_REPLACE_WITH_AN_API_KEY", &w.key)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let time: Value = serde_json::from_str(serde_json::from_str::<Value>(&body).unwrap()["result"].as_str().unwrap()).unwrap();
    assert_eq!(time, resolved_as_of_its_own_now("in 2 hours", &time));

    let (status, body) = invoke_sample(&w, "time.json", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = agent_time::answer(t_london(), chrono_tz::Europe::Paris, None).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), serde_json::to_value(expected).unwrap());
    assert_eq!(notes(&w).await.iter().filter(|n| n.starts_with("tool ")).count(), 2, "both tool runs noted on the call");
}

store::on_both_stores!("tools-";
    vapi_tool_calls_answer_each_call_by_id,
    retell_functions_are_signed_and_answered_in_text,
    elevenlabs_tools_need_their_organisations_secret,
    elevenlabs_tools_find_bridge_calls_by_our_ids,
    the_plain_route_answers_or_says_what_is_wrong,
    the_time_route_answers_any_zone,
);
