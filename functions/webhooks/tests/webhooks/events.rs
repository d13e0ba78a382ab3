//! The sample events of `events/webhooks/`, as Lambda's function URL delivers them, through the
//! router: Twilio's are signed for the sample URL with the documented test token; ElevenLabs'
//! and Retell's are signed here (their signatures expire); Vapi's carries the sample secret.

use crate::common;

use chrono::Utc;
use common::*;
use domain::{AnsweredBy, CallDisposition, CallProvider, CallState, EndReason, Voicemail, VoicemailAction};
use platform::{WebhookSecrets, testing::load_event};
use serde_json::Value;
use store::{CallStore, CampaignStore, DoNotCallStore, SqliteStore, Store};

const SAMPLE_URL: &str = "https://abcdefghij.lambda-url.us-east-1.on.aws";
const SAMPLE_TWILIO_TOKEN: &str = "outdial-sample-token";
const SAMPLE_SID: &str = "CA5a3f1c9e2b7d4a6f8e0c1b3d5f7a9c2e";
const SAMPLE_ORG: &str = "01970000-0000-7000-8000-0000000000a9";
const SAMPLE_CALL: &str = "01970000-0000-7000-8000-0000000ca11a";

/// The event with `header` set to what `sign` makes of its body.
fn signed(event: &str, header: &str, sign: impl Fn(&[u8]) -> String) -> String {
    let mut event: Value = serde_json::from_str(event).unwrap();
    let signature = sign(event["body"].as_str().unwrap().as_bytes());
    event["headers"][header] = Value::String(signature);
    event.to_string()
}

async fn invoke<S: Store>(w: &World<S>, event: &str) -> u16 {
    let request = lambda_http::request::from_str(event).expect("a function URL event");
    w.send(request.map(|body| axum::body::Body::from(body.to_vec()))).await.0
}

#[tokio::test]
async fn the_webhook_samples_are_accepted_and_applied() {
    let secrets = WebhookSecrets {
        twilio_auth_token: Some(SAMPLE_TWILIO_TOKEN.into()),
        elevenlabs: Some("outdial-sample-elevenlabs-secret".into()),
        vapi_secret: Some("outdial-sample-vapi-secret".into()),
        vapi_hmac_secret: None,
        retell_api_key: Some("outdial-sample-retell-key".into()),
    };
    let w = world_with(SqliteStore::open_in_memory().unwrap(), SAMPLE_URL, secrets).await;
    let hang_up = domain::CampaignSettings { voicemail: Voicemail { action: VoicemailAction::Hangup, message: None }, ..settings() };
    let campaign = w.running(2, hang_up.clone(), 2).await;
    let mut calls = w.claim(campaign.id).await;
    // each provider reports only the calls of its own campaigns
    let mut campaigns = vec![campaign.id];
    for provider in [CallProvider::Vapi, CallProvider::Retell] {
        let other = w.running(1, domain::CampaignSettings { provider, ..hang_up.clone() }, 1).await;
        calls.extend(w.claim(other.id).await);
        campaigns.push(other.id);
    }
    let (org, twilio_call) = (w.org.to_string(), calls[0].id);
    w.placed(twilio_call, CallProvider::Twilio, SAMPLE_SID).await;
    let ids = |call: domain::CallId| [(SAMPLE_ORG, org.clone()), (SAMPLE_CALL, call.to_string())];
    let with_ids = |name: &str, call| {
        let ids = ids(call);
        load_event(name, &[(ids[0].0, ids[0].1.as_str()), (ids[1].0, ids[1].1.as_str())])
    };

    // Twilio: answering machine (hung up), completed, recording
    assert_eq!(invoke(&w, &load_event("webhooks/twilio-status.json", &[])).await, 204);
    let amd = load_event("webhooks/twilio-amd.json", &[]);
    assert_eq!(invoke(&w, &amd).await, 204);
    assert_eq!(invoke(&w, &load_event("webhooks/twilio-recording.json", &[])).await, 204);
    assert_eq!(invoke(&w, &amd.replace("machine_end_beep", "human")).await, 403, "a changed body no longer matches its signature");
    let call = w.store.get_call(w.org, twilio_call).await.unwrap();
    assert_eq!((call.state, call.end_reason, call.details.duration_secs), (CallState::Ended, Some(EndReason::Completed), Some(127)));
    assert_eq!((call.details.answered_by, call.disposition()), (Some(AnsweredBy::MachineEnd), Some(CallDisposition::Voicemail)));
    assert!(call.details.recording_url.as_deref().is_some_and(|u| u.ends_with("/Recordings/RE1f2e3d4c5b6a79880716253443526170")));

    // ElevenLabs: the callee opted out
    let event = signed(&with_ids("webhooks/elevenlabs-post-call.json", calls[1].id), "elevenlabs-signature", |body| {
        providers::elevenlabs::webhook_signature("outdial-sample-elevenlabs-secret", body, Utc::now())
    });
    assert_eq!(invoke(&w, &event).await, 204);
    let call = w.store.get_call(w.org, calls[1].id).await.unwrap();
    assert_eq!((call.state, call.disposition()), (CallState::Ended, Some(CallDisposition::DoNotCall)));
    assert!(w.store.is_do_not_call(w.org, &call.phone).await.unwrap());

    // Vapi: the end-of-call report
    assert_eq!(invoke(&w, &with_ids("webhooks/vapi-end-of-call-report.json", calls[2].id)).await, 204);
    let call = w.store.get_call(w.org, calls[2].id).await.unwrap();
    assert_eq!((call.disposition(), call.details.duration_secs), (Some(CallDisposition::AnsweredHuman), Some(127)));
    assert_eq!(call.details.cost.map(|c| c.amount().to_string()), Some("0.1874".into()));

    // Retell: voicemail reached
    let event = signed(&with_ids("webhooks/retell-call-ended.json", calls[3].id), "x-retell-signature", |body| {
        providers::retell::webhook_signature("outdial-sample-retell-key", body, Utc::now())
    });
    assert_eq!(invoke(&w, &event).await, 204);
    let call = w.store.get_call(w.org, calls[3].id).await.unwrap();
    assert_eq!(call.disposition(), Some(CallDisposition::Voicemail));
    for campaign in campaigns {
        assert_eq!(w.store.get_campaign(w.org, campaign).await.unwrap().counters.active_calls, 0);
    }
}
