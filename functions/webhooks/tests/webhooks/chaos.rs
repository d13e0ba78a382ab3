//! Chaos: simulated calls whose webhooks arrive shuffled, repeated and partly before the dialer
//! stored the provider's id end exactly as the same calls delivered in order — states,
//! dispositions, contacts, campaign counters and capacity — on SQLite (1,000 calls) and on
//! DynamoDB (250: moto serves a few hundred requests a second), against the in-order run on SQLite.

use crate::common;

use axum::{body::Body, http::Request};
use chrono::{DateTime, Duration, Utc};
use common::*;
use domain::{CallDetails, CallDisposition, CallProvider, CallState, ContactDisposition, ContactState, EndReason, OrgId};
use futures::StreamExt;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use serde_json::Value;
use std::collections::BTreeMap;
use store::{SqliteStore, Store, testing::dynamodb_test_store};

const CAP: i64 = 50;

/// One webhook, rebuilt (and re-signed) each time it is sent.
#[derive(Clone)]
enum Hook {
    Twilio(&'static str, Vec<(&'static str, String)>),
    ElevenLabs(Value),
}

impl Hook {
    fn request(&self) -> Request<Body> {
        match self {
            Self::Twilio(path, fields) => twilio_signed(path, fields, TWILIO_TOKEN),
            Self::ElevenLabs(body) => elevenlabs_signed(body, ELEVENLABS_SECRET, Utc::now()),
        }
    }

    fn is_twilio(&self) -> bool {
        matches!(self, Self::Twilio(..))
    }
}

/// The life of the call to contact `n`, drawn from `n` alone so both worlds see the same one.
fn life(n: u64, org: OrgId, call: domain::CallId, sid: &str) -> Vec<Hook> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let t0 = DateTime::from_timestamp(1_800_000_000 + n as i64 * 7, 0).unwrap();
    let at = |s: i64| t0 + Duration::seconds(s);
    let status = |seq, s: &str, t, d| Hook::Twilio("/webhooks/twilio/status", twilio_status(sid, seq, s, t, d));
    let mut hooks = vec![status(0, "initiated", at(0), None), status(1, "ringing", at(1), None)];
    if rng.random_bool(0.1) {
        hooks.push(status(9, "transferring", at(1), None));
    }
    let roll: f64 = rng.random();
    if roll < 0.15 {
        hooks.push(status(2, "busy", at(8), None));
    } else if roll < 0.3 {
        hooks.push(status(2, "no-answer", at(30), None));
    } else if roll < 0.35 {
        hooks.push(status(2, "failed", at(2), None));
    } else {
        let talk = rng.random_range(5..300);
        let machine = rng.random_bool(0.3);
        hooks.push(status(2, "in-progress", at(10), None));
        hooks.push(Hook::Twilio("/webhooks/twilio/amd", twilio_amd(sid, if machine { "machine_end_beep" } else { "human" })));
        hooks.push(status(3, "completed", at(10 + talk), Some(talk as u32)));
        if !machine {
            let opt_out = rng.random_bool(0.1);
            let mut lines = vec![("agent", "Hi, this is an AI assistant about your plan."), ("user", "Go on.")];
            if opt_out {
                lines.push(("user", "Stop calling this number."));
            }
            hooks.push(Hook::ElevenLabs(post_call(org, call, &format!("conv_{sid}"), at(10 + talk), talk as u32, &lines)));
        }
    }
    hooks
}

/// What must come out the same whichever way the events arrived.
#[derive(Debug, PartialEq)]
struct Outcome {
    state: CallState,
    end_reason: Option<EndReason>,
    ended_at: Option<DateTime<Utc>>,
    disposition: Option<CallDisposition>,
    details: CallDetails,
    contact: (ContactState, Option<ContactDisposition>, u32),
}

/// Dials every contact under the cap and delivers each call's webhooks: in order, or shuffled
/// with duplicates and a fifth of the calls' Twilio callbacks sent before their id is stored.
async fn run<S: Store>(store: S, chaotic: bool, calls: u64) -> (BTreeMap<String, Outcome>, domain::CampaignCounters, usize) {
    // the test ticks between rounds; what the webhooks asked for is checked at the end
    let noted = NotedTicks::default();
    let w = world_where(store, PUBLIC_URL, secrets(), Some(noted.clone())).await;
    let campaign = w.running(CAP, settings(), calls).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    loop {
        let claimed = w.claim(campaign.id).await;
        if claimed.is_empty() {
            break;
        }
        let mut lives = Vec::new();
        for call in &claimed {
            let n = call.phone.as_str()[8..].parse::<u64>().unwrap() % 10_000;
            let sid = format!("CA{:032x}", n);
            let hooks = life(n, w.org, call.id, &sid);
            let early = chaotic && rng.random_bool(0.2);
            if !early {
                w.placed(call.id, CallProvider::Twilio, &sid).await;
            }
            lives.push((call.id, sid, hooks, early));
        }
        if chaotic {
            let mut deliveries: Vec<Request<Body>> = Vec::new();
            for (call, sid, hooks, early) in &lives {
                if *early {
                    // the dialer stores the id after some of the Twilio callbacks arrived
                    for hook in hooks.iter().filter(|h| h.is_twilio()).take(2) {
                        assert_eq!(w.send(hook.request()).await.0, 204);
                    }
                    w.placed(*call, CallProvider::Twilio, sid).await;
                }
                for hook in hooks {
                    deliveries.push(hook.request());
                    if rng.random_bool(0.3) {
                        deliveries.push(hook.request());
                    }
                }
            }
            deliveries.shuffle(&mut rng);
            let statuses: Vec<u16> =
                futures::stream::iter(deliveries.into_iter().map(|r| w.send(r))).buffer_unordered(8).map(|(s, _)| s).collect().await;
            assert!(statuses.iter().all(|s| *s == 204), "every delivery accepted: {statuses:?}");
        } else {
            for (_, _, hooks, _) in &lives {
                for hook in hooks {
                    assert_eq!(w.send(hook.request()).await.0, 204);
                }
            }
        }
    }
    let mut outcomes = BTreeMap::new();
    let calls = common_calls(&w, campaign.id).await;
    // the report's counters, moved as the events landed in whatever order, equal a recount of the calls
    let mut recount = domain::report::ReportCounts::new();
    for call in &calls {
        domain::report::add_counts(&mut recount, &domain::report::CallFacts::of(call).map(|f| f.counts()).unwrap_or_default());
    }
    assert_eq!(w.store.campaign_report_counts(w.org, campaign.id).await.unwrap(), recount, "report counters (shuffled: {chaotic})");
    let every_hour = |year: i32| chrono::NaiveDate::from_ymd_opt(year, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let (from, to) = (every_hour(2000), every_hour(2100));
    let hours = w.store.report_counts_between(w.org, from, to).await.unwrap();
    assert_eq!(hours.get(&campaign.id), Some(&recount), "the hour counters sum to the same (shuffled: {chaotic})");
    for call in calls {
        let contact = w.store.get_contact(w.org, campaign.id, call.contact_id).await.unwrap();
        let outcome = Outcome {
            state: call.state,
            end_reason: call.end_reason,
            ended_at: call.ended_at,
            disposition: call.disposition(),
            details: call.details.clone(),
            contact: (contact.state, contact.disposition, contact.attempts),
        };
        outcomes.insert(call.phone.as_str().to_string(), outcome);
    }
    let asked: std::collections::HashSet<_> = noted.0.lock().unwrap().iter().copied().collect();
    assert_eq!(asked, [(w.org, campaign.id)].into(), "calls that ended asked for their campaign's tick");
    let listed = w.store.list_do_not_call(w.org, store::PageRequest::first(500)).await.unwrap().items.len();
    let counters = w.store.get_campaign(w.org, campaign.id).await.unwrap().counters;
    (outcomes, counters, listed)
}

async fn common_calls<S: Store>(w: &World<S>, campaign: domain::CampaignId) -> Vec<domain::Call> {
    let mut calls = Vec::new();
    let mut page = store::PageRequest::first(store::PageRequest::MAX_LIMIT);
    loop {
        let next = w.store.list_calls(w.org, campaign, store::CallFilter::default(), page.clone()).await.unwrap();
        calls.extend(next.items);
        match next.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return calls,
        }
    }
}

async fn shuffled_delivery_ends_like_in_order_delivery<A: Store, B: Store>(in_order: A, chaotic: B, calls: u64) {
    let (expected, expected_counters, expected_listed) = run(in_order, false, calls).await;
    let (actual, counters, listed) = run(chaotic, true, calls).await;
    assert_eq!(expected.len() as u64, calls, "one call per contact");
    assert!(expected.values().all(|o| o.state.is_terminal() && o.contact.0 == ContactState::Done));
    assert_eq!((expected_counters.active_calls, expected_counters.contacts_done, expected_counters.calls_total), (0, calls, calls));
    for (phone, outcome) in &expected {
        assert_eq!(actual.get(phone), Some(outcome), "call to {phone}");
    }
    assert_eq!((counters, listed), (expected_counters, expected_listed), "campaign counters, capacity and do-not-call list");
    assert!(expected_listed > 0 && expected.values().any(|o| o.disposition == Some(CallDisposition::Voicemail)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_shuffled_duplicated_early_events_end_like_in_order_ones() {
    let (in_order, chaotic) = (SqliteStore::open_in_memory().unwrap(), SqliteStore::open_in_memory().unwrap());
    shuffled_delivery_ends_like_in_order_delivery(in_order, chaotic, 1_000).await;
}

/// The in-order reference is the SQLite run (the adapters must agree, and moto_server is slow).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_shuffled_duplicated_early_events_end_like_in_order_ones() {
    let Some(chaotic) = dynamodb_test_store("chaos_shuffled").await else { return };
    shuffled_delivery_ends_like_in_order_delivery(SqliteStore::open_in_memory().unwrap(), chaotic, 250).await;
}
