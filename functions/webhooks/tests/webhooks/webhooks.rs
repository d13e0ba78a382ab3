//! The webhook routes end to end on a store: signatures refused before anything is stored, the
//! life of a call from Twilio's callbacks, answering-machine actions, opt-outs, orphans,
//! completion and the CRM hand-over — and each provider's payloads.

use crate::common;

use chrono::{Duration, Utc};
use common::*;
use domain::{
    AnsweredBy, CallDisposition, CallProvider, CallState, CampaignStatus, ContactDisposition, ContactState, CrmJob, CrmTarget, EndReason,
    Voicemail, VoicemailAction,
};
use platform::{CRM_JOBS, CampaignScheduler, JobQueue, ScheduledAction};
use serde_json::json;
use store::{CallStore, CampaignStore, DoNotCallStore, SqliteStore, Store};

fn sqlite() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap()
}

/// The store shows nothing of a refused request: no event on the call, no orphan.
async fn nothing_stored<S: Store>(w: &World<S>, call: domain::CallId, events_before: usize) {
    assert_eq!(w.store.list_call_events(w.org, call).await.unwrap().len(), events_before);
    assert!(w.store.orphaned_calls(10, Utc::now() - store::ORPHAN_MEMORY).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_provider_accepts_its_signature_and_refuses_forgeries_before_storing_anything() {
    let w = world(sqlite()).await;
    let campaign = w.running(4, settings(), 4).await;
    let calls = w.claim(campaign.id).await;
    w.placed(calls[0].id, CallProvider::Twilio, "CA01").await;
    w.placed(calls[1].id, CallProvider::Elevenlabs, "conv_01").await;
    w.placed(calls[2].id, CallProvider::Vapi, "vapi-01").await;
    w.placed(calls[3].id, CallProvider::Retell, "retell-01").await;
    let now = Utc::now();

    // Twilio
    let ringing = twilio_status("CA01", 1, "ringing", now, None);
    let (status, problem) = w.send(twilio_with("/webhooks/twilio/status", &ringing, None)).await;
    assert_eq!((status, problem["type"].as_str().unwrap().ends_with("webhook-signature-missing")), (401, true), "{problem}");
    assert_eq!(w.send(twilio_signed("/webhooks/twilio/status", &ringing, "another-token")).await.0, 403);
    let signature = providers::twilio::signature(
        TWILIO_TOKEN,
        &format!("{PUBLIC_URL}/webhooks/twilio/status"),
        ringing.iter().map(|(k, v)| (*k, v.as_str())),
    );
    let mut tampered = ringing.clone();
    tampered[4].1 = "completed".into();
    let (status, problem) = w.send(twilio_with("/webhooks/twilio/status", &tampered, Some(&signature))).await;
    assert_eq!(status, 403);
    assert_eq!(problem["status"], 403);
    assert!(problem["detail"].as_str().unwrap().contains("X-Twilio-Signature"), "{problem}");
    // signed for another URL (the query string is part of it)
    let elsewhere = twilio_signed("/webhooks/twilio/status?x=1", &ringing, TWILIO_TOKEN);
    let (parts, body) = elsewhere.into_parts();
    let mut moved = axum::http::Request::from_parts(parts, body);
    *moved.uri_mut() = "/webhooks/twilio/status".parse().unwrap();
    assert_eq!(w.send(moved).await.0, 403);
    nothing_stored(&w, calls[0].id, 0).await;
    assert_eq!(w.send(twilio_signed("/webhooks/twilio/status", &ringing, TWILIO_TOKEN)).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[0].id).await.unwrap().state, CallState::Ringing);

    // ElevenLabs: 30-minute tolerance
    let body = post_call(w.org, calls[1].id, "conv_01", now, 30, &[("agent", "Hi"), ("user", "Hello")]);
    assert_eq!(w.send(json_request("/webhooks/elevenlabs", &body, &[])).await.0, 401);
    assert_eq!(w.send(elevenlabs_signed(&body, "wsec_other", now)).await.0, 403);
    let (status, problem) = w.send(elevenlabs_signed(&body, ELEVENLABS_SECRET, now - Duration::minutes(31))).await;
    assert_eq!(status, 403);
    assert!(problem["type"].as_str().unwrap().ends_with("webhook-signature-stale"));
    let header = providers::elevenlabs::webhook_signature(ELEVENLABS_SECRET, body.to_string().as_bytes(), now);
    let mut changed = body.clone();
    changed["data"]["analysis"]["call_successful"] = json!("failure");
    assert_eq!(w.send(json_request("/webhooks/elevenlabs", &changed, &[("ElevenLabs-Signature", header)])).await.0, 403);
    nothing_stored(&w, calls[1].id, 0).await;
    assert_eq!(w.send(elevenlabs_signed(&body, ELEVENLABS_SECRET, now - Duration::minutes(29))).await.0, 204);
    let call = w.store.get_call(w.org, calls[1].id).await.unwrap();
    assert_eq!((call.state, call.details.summary.as_deref()), (CallState::Ended, Some("They renewed.")));
    assert_eq!(call.details.transcript.as_deref(), Some("agent: Hi\nuser: Hello"));

    // Vapi: the shared secret, as X-Vapi-Secret or a bearer token
    let ringing = json!({ "message": { "type": "status-update", "status": "ringing", "call": { "id": "vapi-01" }, "timestamp": now.timestamp_millis() } });
    assert_eq!(w.send(json_request("/webhooks/vapi", &ringing, &[])).await.0, 401);
    assert_eq!(w.send(vapi_with_secret(&ringing, "wrong")).await.0, 403);
    nothing_stored(&w, calls[2].id, 0).await;
    assert_eq!(w.send(json_request("/webhooks/vapi", &ringing, &[("Authorization", format!("Bearer {VAPI_SECRET}"))])).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[2].id).await.unwrap().state, CallState::Ringing);

    // Retell: 5-minute tolerance
    let started = json!({ "event": "call_started", "call": { "call_id": "retell-01", "start_timestamp": now.timestamp_millis() } });
    assert_eq!(w.send(retell_signed(&started, "key_other", now)).await.0, 403);
    assert_eq!(w.send(retell_signed(&started, RETELL_KEY, now - Duration::minutes(6))).await.0, 403);
    let header = providers::retell::webhook_signature(RETELL_KEY, started.to_string().as_bytes(), now);
    let tampered = json!({ "event": "call_ended", "call": { "call_id": "retell-01" } });
    assert_eq!(w.send(json_request("/webhooks/retell", &tampered, &[("X-Retell-Signature", header)])).await.0, 403);
    nothing_stored(&w, calls[3].id, 0).await;
    assert_eq!(w.send(retell_signed(&started, RETELL_KEY, now)).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[3].id).await.unwrap().state, CallState::InProgress);
}

/// The dialer never got the provider's answer (it timed out, or a 5xx came after the call was
/// made): the first callback carrying our call id gives the call its provider id.
async fn callbacks_carrying_our_call_id_adopt_the_providers_id<S: Store>(store: S) {
    let w = world(store).await;
    let twilio = w.running(3, settings(), 2).await;
    let mut calls = w.claim(twilio.id).await;
    for provider in [CallProvider::Vapi, CallProvider::Retell] {
        let campaign = w.running(1, domain::CampaignSettings { provider, ..settings() }, 1).await;
        calls.extend(w.claim(campaign.id).await);
    }
    let t = Utc::now();
    // Twilio: the id rides in the callback URL's query, which the signature covers
    let path = format!("/webhooks/twilio/status?callId={}", calls[0].id);
    assert_eq!(w.send(twilio_signed(&path, &twilio_status("CAadopted", 1, "ringing", t, None), TWILIO_TOKEN)).await.0, 204);
    let call = w.store.get_call(w.org, calls[0].id).await.unwrap();
    assert_eq!((call.provider_call_id.as_deref(), call.state), (Some("CAadopted"), CallState::Ringing));
    // later callbacks find it by its CallSid alone
    let done = twilio_status("CAadopted", 2, "completed", t + Duration::seconds(40), Some(35));
    assert_eq!(w.send(twilio_signed("/webhooks/twilio/status", &done, TWILIO_TOKEN)).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[0].id).await.unwrap().state, CallState::Ended);
    let forged = twilio_signed(
        &format!("/webhooks/twilio/status?callId={}", calls[1].id),
        &twilio_status("CAforged", 1, "ringing", t, None),
        "other",
    );
    assert_eq!(w.send(forged).await.0, 403);
    assert_eq!(w.store.get_call(w.org, calls[1].id).await.unwrap().provider_call_id, None, "nothing adopted from a forgery");
    // Vapi and Retell: the ids ride in the call's metadata
    let ids = |call: domain::CallId| json!({ "outdial_org_id": w.org.to_string(), "outdial_call_id": call.to_string() });
    let ringing = json!({ "message": { "type": "status-update", "status": "ringing", "call": { "id": "vapi-adopted", "metadata": ids(calls[2].id) }, "timestamp": t.timestamp_millis() } });
    assert_eq!(w.send(vapi_with_secret(&ringing, VAPI_SECRET)).await.0, 204);
    let call = w.store.get_call(w.org, calls[2].id).await.unwrap();
    assert_eq!((call.provider_call_id.as_deref(), call.state), (Some("vapi-adopted"), CallState::Ringing));
    let started = json!({ "event": "call_started", "call": { "call_id": "retell-adopted", "metadata": ids(calls[3].id), "start_timestamp": t.timestamp_millis() } });
    assert_eq!(w.send(retell_signed(&started, RETELL_KEY, t)).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[3].id).await.unwrap().provider_call_id.as_deref(), Some("retell-adopted"));
    // a bridged Twilio call hears from ElevenLabs too: its conversation id is not the call's id
    let report = post_call(w.org, calls[1].id, "conv_bridged", t, 20, &[("agent", "Hi")]);
    assert_eq!(w.send(elevenlabs_signed(&report, ELEVENLABS_SECRET, t)).await.0, 204);
    assert_eq!(w.store.get_call(w.org, calls[1].id).await.unwrap().provider_call_id, None);
    // Vapi's chatter (speech and transcript updates, model output) is counted, not stored
    let events_before = w.store.list_call_events(w.org, calls[2].id).await.unwrap().len();
    for kind in ["speech-update", "conversation-update", "model-output", "transcript"] {
        let chatter = json!({ "message": { "type": kind, "call": { "id": "vapi-adopted", "metadata": ids(calls[2].id) }, "timestamp": t.timestamp_millis() } });
        assert_eq!(w.send(vapi_with_secret(&chatter, VAPI_SECRET)).await.0, 204);
    }
    assert_eq!(w.store.list_call_events(w.org, calls[2].id).await.unwrap().len(), events_before, "nothing stored");
    assert!(w.store.orphan_events(CallProvider::Vapi, "vapi-adopted").await.unwrap().is_empty());
    // a provider that does not carry a call's campaign cannot steer it by naming its id: kept as an orphan
    for (foreign, target) in [("vapi-foreign", calls[3].id), ("vapi-foreign-2", calls[1].id)] {
        let before = w.store.get_call(w.org, target).await.unwrap();
        let ended = json!({ "message": { "type": "status-update", "status": "ended", "endedReason": "customer-ended-call",
            "call": { "id": foreign, "metadata": ids(target) }, "timestamp": t.timestamp_millis() } });
        assert_eq!(w.send(vapi_with_secret(&ended, VAPI_SECRET)).await.0, 204);
        assert_eq!(w.store.get_call(w.org, target).await.unwrap(), before, "a Vapi payload naming a {target} steers nothing");
        assert_eq!(w.store.orphan_events(CallProvider::Vapi, foreign).await.unwrap().len(), 1, "it is kept as an orphan");
    }
    // a second Twilio call carrying the same call id (a placement made twice) steers nothing, and is hung up
    let events_before = w.store.list_call_events(w.org, calls[0].id).await.unwrap().len();
    let twice = twilio_status("CAtwice", 1, "ringing", t, None);
    assert_eq!(w.send(twilio_signed(&format!("/webhooks/twilio/status?callId={}", calls[0].id), &twice, TWILIO_TOKEN)).await.0, 204);
    let call = w.store.get_call(w.org, calls[0].id).await.unwrap();
    assert_eq!((call.provider_call_id.as_deref(), call.state), (Some("CAadopted"), CallState::Ended));
    assert_eq!(w.store.list_call_events(w.org, calls[0].id).await.unwrap().len(), events_before, "its events kept aside");
    let hung_up = w.twilio.received_requests().await.unwrap();
    assert!(hung_up.iter().any(|r| r.url.path() == "/2010-04-01/Accounts/AC123/Calls/CAtwice.json"), "the second call is hung up");
}

#[tokio::test]
async fn callbacks_carrying_our_call_id_adopt_the_providers_id_on_sqlite() {
    callbacks_carrying_our_call_id_adopt_the_providers_id(sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_carrying_our_call_id_adopt_the_providers_id_on_dynamodb() {
    if let Some(store) = store::testing::dynamodb_test_store("webhooks-adopt").await {
        callbacks_carrying_our_call_id_adopt_the_providers_id(store).await;
    }
}

#[tokio::test]
async fn twilio_callbacks_drive_a_call_to_its_end_once_whatever_their_order() {
    let w = world(sqlite()).await;
    let campaign = w.running(2, settings(), 2).await;
    let calls = w.claim(campaign.id).await;
    w.placed(calls[0].id, CallProvider::Twilio, "CA10").await;
    let t = Utc::now();
    let send = |fields: Vec<(&'static str, String)>| w.send(twilio_signed("/webhooks/twilio/status", &fields, TWILIO_TOKEN));
    assert_eq!(send(twilio_status("CA10", 3, "completed", t + Duration::seconds(70), Some(58))).await.0, 204);
    assert_eq!(send(twilio_status("CA10", 2, "in-progress", t + Duration::seconds(12), None)).await.0, 204);
    assert_eq!(send(twilio_status("CA10", 3, "completed", t + Duration::seconds(70), Some(58))).await.0, 204, "a repeat is acknowledged");
    assert_eq!(send(twilio_status("CA10", 1, "ringing", t + Duration::seconds(2), None)).await.0, 204);
    // an unknown status value is kept in the log and changes nothing
    assert_eq!(send(twilio_status("CA10", 4, "transferred", t + Duration::seconds(71), None)).await.0, 204);
    let call = w.store.get_call(w.org, calls[0].id).await.unwrap();
    assert_eq!((call.state, call.end_reason, call.details.duration_secs), (CallState::Ended, Some(EndReason::Completed), Some(58)));
    assert_eq!(call.disposition(), Some(CallDisposition::AnsweredHuman));
    let log = w.store.list_call_events(w.org, call.id).await.unwrap();
    let keys: Vec<_> = log.iter().map(|e| e.event.dedupe_key.as_str()).collect();
    assert_eq!(
        keys,
        ["twilio:CA10:3:status", "twilio:CA10:3:details", "twilio:CA10:2:status", "twilio:CA10:1:status", "twilio:CA10:4:status"]
    );
    assert!(matches!(&log[4].event.kind, domain::CallEventKind::Unrecognised { description } if description.contains("transferred")));
    let campaign_now = w.store.get_campaign(w.org, campaign.id).await.unwrap();
    assert_eq!(campaign_now.counters.active_calls, 1, "capacity released once");
    let contact = w.store.get_contact(w.org, campaign.id, call.contact_id).await.unwrap();
    assert_eq!((contact.state, contact.disposition), (ContactState::Done, Some(ContactDisposition::AnsweredHuman)));

    // malformed bodies are refused with a problem and store nothing
    let (status, problem) = w.send(twilio_signed("/webhooks/twilio/status", &[("CallStatus", "ringing".to_string())], TWILIO_TOKEN)).await;
    assert_eq!((status, problem["type"].as_str().unwrap().ends_with("webhook-malformed")), (400, true), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("CallSid"));
    let (status, _) = w
        .send(json_request(
            "/webhooks/retell",
            &json!([1, 2]),
            &[("X-Retell-Signature", providers::retell::webhook_signature(RETELL_KEY, b"[1,2]", Utc::now()))],
        ))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn events_before_the_dialer_stored_the_call_are_kept_and_applied_once_it_did() {
    let w = world(sqlite()).await;
    let campaign = w.running(1, settings(), 1).await;
    let call = w.claim(campaign.id).await.remove(0);
    let t = Utc::now();
    for (seq, status) in [(0, "initiated"), (1, "ringing"), (1, "ringing")] {
        assert_eq!(
            w.send(twilio_signed("/webhooks/twilio/status", &twilio_status("CA20", seq, status, t, None), TWILIO_TOKEN)).await.0,
            204
        );
    }
    assert_eq!(w.store.orphan_events(CallProvider::Twilio, "CA20").await.unwrap().len(), 2, "kept once per dedupe key");
    assert_eq!(w.store.get_call(w.org, call.id).await.unwrap().state, CallState::Queued);
    w.placed(call.id, CallProvider::Twilio, "CA20").await;
    assert_eq!(w.store.get_call(w.org, call.id).await.unwrap().state, CallState::Ringing);
    assert!(w.store.orphan_events(CallProvider::Twilio, "CA20").await.unwrap().is_empty());
    assert_eq!(w.store.list_call_events(w.org, call.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn answering_machines_get_the_campaigns_voicemail_action() {
    let w = world(sqlite()).await;
    let hang_up = domain::CampaignSettings { voicemail: Voicemail { action: VoicemailAction::Hangup, message: None }, ..settings() };
    let leave = domain::CampaignSettings {
        voicemail: Voicemail { action: VoicemailAction::LeaveMessage, message: Some("Please call us back.".into()) },
        ..settings()
    };
    let (a, b) = (w.running(1, hang_up, 1).await, w.running(1, leave, 1).await);
    let (call_a, call_b) = (w.claim(a.id).await.remove(0), w.claim(b.id).await.remove(0));
    w.placed(call_a.id, CallProvider::Twilio, "CA30").await;
    w.placed(call_b.id, CallProvider::Twilio, "CA31").await;
    let t = Utc::now();
    for sid in ["CA30", "CA31"] {
        w.send(twilio_signed("/webhooks/twilio/status", &twilio_status(sid, 2, "in-progress", t, None), TWILIO_TOKEN)).await;
        // the greeting is still playing: wait for its end
        assert_eq!(w.send(twilio_signed("/webhooks/twilio/amd", &twilio_amd(sid, "machine_start"), TWILIO_TOKEN)).await.0, 204);
    }
    assert!(w.twilio_requests().await.is_empty(), "machine_start waits");
    assert_eq!(w.send(twilio_signed("/webhooks/twilio/amd", &twilio_amd("CA30", "machine_end_beep"), TWILIO_TOKEN)).await.0, 204);
    assert_eq!(w.send(twilio_signed("/webhooks/twilio/amd", &twilio_amd("CA31", "machine_end_silence"), TWILIO_TOKEN)).await.0, 204);
    let sent = w.twilio.received_requests().await.unwrap();
    let paths: Vec<_> = sent.iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(paths, ["/2010-04-01/Accounts/AC123/Calls/CA30.json", "/2010-04-01/Accounts/AC123/Calls/CA31.json"]);
    let forms = w.twilio_requests().await;
    assert_eq!(forms[0], [("Status".to_string(), "completed".to_string())], "hang up");
    assert_eq!(
        forms[1],
        [("Twiml".to_string(), "<Response><Say>Please call us back.</Say><Hangup/></Response>".to_string())],
        "leave the message"
    );
    for (sid, call) in [("CA30", &call_a), ("CA31", &call_b)] {
        w.send(twilio_signed(
            "/webhooks/twilio/status",
            &twilio_status(sid, 3, "completed", t + Duration::seconds(20), Some(20)),
            TWILIO_TOKEN,
        ))
        .await;
        let call = w.store.get_call(w.org, call.id).await.unwrap();
        assert_eq!((call.details.answered_by, call.disposition()), (Some(AnsweredBy::MachineEnd), Some(CallDisposition::Voicemail)));
    }
    assert_eq!(w.twilio.received_requests().await.unwrap().len(), 2, "a machine on an ended call is not hung up again");
}

#[tokio::test]
async fn an_opt_out_puts_the_number_on_the_do_not_call_list_whatever_else_the_call_was() {
    let w = world(sqlite()).await;
    let campaign = w.running(2, settings(), 2).await;
    let calls = w.claim(campaign.id).await;
    w.placed(calls[0].id, CallProvider::Twilio, "CA40").await;
    let t = Utc::now();
    w.send(twilio_signed("/webhooks/twilio/status", &twilio_status("CA40", 3, "completed", t, Some(40)), TWILIO_TOKEN)).await;
    let body =
        post_call(w.org, calls[0].id, "conv_40", t, 40, &[("agent", "Hi, I'm an AI assistant."), ("user", "Please don't call me again.")]);
    assert_eq!(w.send(elevenlabs_signed(&body, ELEVENLABS_SECRET, Utc::now())).await.0, 204);
    let call = w.store.get_call(w.org, calls[0].id).await.unwrap();
    assert!(call.details.opted_out);
    assert_eq!(call.disposition(), Some(CallDisposition::DoNotCall));
    assert!(w.store.is_do_not_call(w.org, &call.phone).await.unwrap());
    let contact = w.store.get_contact(w.org, campaign.id, call.contact_id).await.unwrap();
    assert_eq!(contact.disposition, Some(ContactDisposition::DoNotCall));

    // Vapi's structured data flag does the same
    w.placed(calls[1].id, CallProvider::Vapi, "vapi-41").await;
    let report = json!({ "message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call", "call": { "id": "vapi-41" },
        "startedAt": "2027-01-15T15:00:00Z", "endedAt": "2027-01-15T15:01:30Z", "cost": 0.1234,
        "artifact": { "transcript": "AI: Hi\nUser: no thanks", "recordingUrl": "https://recordings.example.com/41.wav" },
        "analysis": { "summary": "Declined.", "successEvaluation": false, "structuredData": { "doNotCall": true } },
    } });
    assert_eq!(w.send(vapi_with_secret(&report, VAPI_SECRET)).await.0, 204);
    let call = w.store.get_call(w.org, calls[1].id).await.unwrap();
    assert_eq!((call.state, call.disposition()), (CallState::Ended, Some(CallDisposition::DoNotCall)));
    assert_eq!((call.details.duration_secs, call.details.cost.map(|c| c.amount().to_string())), (Some(90), Some("0.1234".into())));
    assert_eq!(call.details.recording_url.as_deref(), Some("https://recordings.example.com/41.wav"));
    assert_eq!(call.details.success_evaluation.as_deref(), Some("false"));
    assert!(w.store.is_do_not_call(w.org, &call.phone).await.unwrap());
}

#[tokio::test]
async fn the_last_call_ending_completes_the_campaign_and_hands_each_call_to_the_crm_once() {
    let w = world(sqlite()).await;
    let crm = domain::CampaignSettings { crm: Some(CrmTarget { connection_ids: vec![domain::ConnectionId::new()] }), ..settings() };
    let campaign = w.running(2, crm, 2).await;
    let calls = w.claim(campaign.id).await;
    w.placed(calls[0].id, CallProvider::Twilio, "CA50").await;
    w.placed(calls[1].id, CallProvider::Twilio, "CA51").await;
    let t = Utc::now();
    // a busy call has no report to wait for; delivered four times at once
    let busy = twilio_status("CA50", 2, "busy", t, None);
    let sends = (0..4).map(|_| w.send(twilio_signed("/webhooks/twilio/status", &busy, TWILIO_TOKEN)));
    assert!(futures::future::join_all(sends).await.iter().all(|(s, _)| *s == 204));
    // a conversation waits for its transcript
    w.send(twilio_signed("/webhooks/twilio/status", &twilio_status("CA51", 2, "in-progress", t, None), TWILIO_TOKEN)).await;
    w.send(twilio_signed(
        "/webhooks/twilio/status",
        &twilio_status("CA51", 3, "completed", t + Duration::seconds(30), Some(30)),
        TWILIO_TOKEN,
    ))
    .await;
    assert_eq!(w.store.get_campaign(w.org, campaign.id).await.unwrap().status, CampaignStatus::Running, "the last report is still to come");
    let body = post_call(w.org, calls[1].id, "conv_51", t + Duration::seconds(30), 30, &[("agent", "Hi"), ("user", "Yes please")]);
    for _ in 0..2 {
        assert_eq!(w.send(elevenlabs_signed(&body, ELEVENLABS_SECRET, Utc::now())).await.0, 204);
    }
    let done = w.store.get_campaign(w.org, campaign.id).await.unwrap();
    assert_eq!((done.status, done.counters.active_calls, done.counters.contacts_done), (CampaignStatus::Completed, 0, 2));
    assert!(w.ticks.scheduler.get(campaign.id, ScheduledAction::Tick).await.unwrap().is_none(), "schedule deleted");
    let mut jobs = Vec::new();
    for job in w.ticks.queue.receive(CRM_JOBS, 10, std::time::Duration::from_secs(60)).await.unwrap() {
        jobs.push(serde_json::from_str::<CrmJob>(&job.body).unwrap().call_id);
    }
    jobs.sort();
    let mut expected = vec![calls[0].id, calls[1].id];
    expected.sort();
    assert_eq!(jobs, expected, "one CRM job per call");
    assert!(w.store.calls_awaiting_post_call(w.org, campaign.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_report_is_waited_for_only_the_grace_period() {
    let w = world(sqlite()).await;
    let crm = domain::CampaignSettings { crm: Some(CrmTarget { connection_ids: vec![domain::ConnectionId::new()] }), ..settings() };
    let campaign = w.running(1, crm, 1).await;
    let call = w.claim(campaign.id).await.remove(0);
    w.placed(call.id, CallProvider::Twilio, "CA60").await;
    let t = Utc::now();
    w.send(twilio_signed("/webhooks/twilio/status", &twilio_status("CA60", 2, "in-progress", t, None), TWILIO_TOKEN)).await;
    w.send(twilio_signed("/webhooks/twilio/status", &twilio_status("CA60", 3, "completed", t, Some(9)), TWILIO_TOKEN)).await;
    assert!(w.ticks.queue.receive(CRM_JOBS, 10, std::time::Duration::from_secs(60)).await.unwrap().is_empty());
    let later = t + domain::REPORT_GRACE + Duration::seconds(1);
    let report = app::tick::tick(&w.ticks, w.org, campaign.id, "after-grace", later).await.unwrap();
    assert_eq!((report.post_calls, report.completed), (1, true));
    assert_eq!(w.ticks.queue.receive(CRM_JOBS, 10, std::time::Duration::from_secs(60)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn retell_payloads_are_normalised() {
    let w = world(sqlite()).await;
    let campaign = w.running(1, settings(), 1).await;
    let call = w.claim(campaign.id).await.remove(0);
    w.placed(call.id, CallProvider::Retell, "retell-70").await;
    let ms = |s: i64| 1_800_000_000_000 + s * 1000;
    let ended = json!({ "event_type": "call_ended", "call": {
        "call_id": "retell-70", "call_status": "ended", "start_timestamp": ms(0), "end_timestamp": ms(75),
        "disconnection_reason": "user_hangup", "transcript": "Agent: Hi\nUser: Bye", "recording_url": "https://r.example.com/70.wav",
        "call_cost": { "combined_cost": 21.5 },
    } });
    let analyzed = json!({ "event": "call_analyzed", "call": {
        "call_id": "retell-70", "call_analysis": { "call_summary": "Short call.", "call_successful": true, "in_voicemail": false, "custom_analysis_data": { "interest": "low" } },
    } });
    for body in [&ended, &analyzed, &ended] {
        assert_eq!(w.send(retell_signed(body, RETELL_KEY, Utc::now())).await.0, 204);
    }
    let call = w.store.get_call(w.org, call.id).await.unwrap();
    assert_eq!((call.state, call.end_reason, call.details.duration_secs), (CallState::Ended, Some(EndReason::Completed), Some(75)));
    assert_eq!(call.details.cost.map(|c| c.amount().to_string()), Some("0.215".into()), "cents to dollars");
    assert_eq!(
        (call.details.summary.as_deref(), call.details.structured_data.clone()),
        (Some("Short call."), Some(json!({ "interest": "low" })))
    );
    assert_eq!(w.store.list_call_events(w.org, call.id).await.unwrap().len(), 4, "answered (its start), ended, its details, the analysis");
    assert_eq!(call.details.answered_at.map(|t| t.timestamp_millis()), Some(ms(0)));
    let busy = json!({ "event": "call_ended", "call": { "call_id": "retell-71", "disconnection_reason": "dial_busy" } });
    assert_eq!(w.send(retell_signed(&busy, RETELL_KEY, Utc::now())).await.0, 204, "an unknown call is kept as an orphan");
    assert_eq!(w.store.orphan_events(CallProvider::Retell, "retell-71").await.unwrap().len(), 1);
    let unknown = json!({ "event": "call_transferred", "call": { "call_id": "retell-70" } });
    assert_eq!(w.send(retell_signed(&unknown, RETELL_KEY, Utc::now())).await.0, 204);
    assert!(
        w.store
            .list_call_events(w.org, call.id)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e.event.kind, domain::CallEventKind::Unrecognised { .. }))
    );
}

/// Vapi, Retell and ElevenLabs' own calls carry when the agent first spoke: it becomes the call's
/// connect time, so their live answers count towards abandonment instead of "unknown".
#[tokio::test]
async fn native_providers_reports_give_the_connect_time() {
    let w = world(sqlite()).await;
    let campaign = w.running(3, settings(), 3).await;
    let calls = w.claim(campaign.id).await;
    w.placed(calls[0].id, CallProvider::Vapi, "vapi-connect").await;
    w.placed(calls[1].id, CallProvider::Retell, "retell-connect").await;
    w.placed(calls[2].id, CallProvider::Elevenlabs, "conv_connect").await;
    let t = Utc::now() - Duration::minutes(5);
    let report = json!({ "message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call", "call": { "id": "vapi-connect" },
        "startedAt": t.to_rfc3339(), "endedAt": (t + Duration::seconds(60)).to_rfc3339(),
        "artifact": { "messages": [
            { "role": "system", "message": "You are Ava.", "time": t.timestamp_millis(), "secondsFromStart": 0 },
            { "role": "bot", "message": "Hi, this is Ava.", "time": t.timestamp_millis() + 2_500, "secondsFromStart": 2.5 },
            { "role": "user", "message": "Hello?", "time": t.timestamp_millis() + 4_000, "secondsFromStart": 4.0 },
        ] },
    } });
    assert_eq!(w.send(vapi_with_secret(&report, VAPI_SECRET)).await.0, 204);
    let ended = json!({ "event": "call_ended", "call": {
        "call_id": "retell-connect", "start_timestamp": t.timestamp_millis(), "end_timestamp": (t + Duration::seconds(45)).timestamp_millis(),
        "disconnection_reason": "user_hangup",
        "transcript_object": [
            { "role": "agent", "content": "Hi, this is Ava.", "words": [{ "word": "Hi,", "start": 0.8, "end": 1.0 }] },
            { "role": "user", "content": "Hi.", "words": [{ "word": "Hi.", "start": 2.0, "end": 2.3 }] },
        ],
    } });
    assert_eq!(w.send(retell_signed(&ended, RETELL_KEY, Utc::now())).await.0, 204);
    let mut body = post_call(w.org, calls[2].id, "conv_connect", t + Duration::seconds(30), 30, &[("agent", "Hi"), ("user", "Yes")]);
    body["data"]["metadata"]["start_time_unix_secs"] = json!(t.timestamp());
    assert_eq!(w.send(elevenlabs_signed(&body, ELEVENLABS_SECRET, Utc::now())).await.0, 204);

    let delay = |call: &domain::Call| call.details.connected_at.zip(call.details.answered_at).map(|(c, a)| (c - a).num_milliseconds());
    let vapi = w.store.get_call(w.org, calls[0].id).await.unwrap();
    let retell = w.store.get_call(w.org, calls[1].id).await.unwrap();
    let elevenlabs = w.store.get_call(w.org, calls[2].id).await.unwrap();
    assert_eq!((delay(&vapi), delay(&retell), delay(&elevenlabs)), (Some(2_500), Some(800), Some(1_000)));
    let counts = w.store.campaign_report_counts(w.org, campaign.id).await.unwrap();
    let numbers = domain::report::CallNumbers::from_counts(&counts);
    assert_eq!((numbers.human, numbers.live_human_answers, numbers.abandoned, numbers.abandonment_unknown), (3, 3, 1, 0), "{counts:?}");
}
