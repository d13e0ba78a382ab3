//! `outdial demo --contacts 200 --seed 7`: every contact ends finalised and every number of the
//! report equals a recount from the store; the same seed gives the same outcome; the calls it
//! made are readable over the API with their event logs.

use domain::{CallDisposition, ContactDisposition, ContactState};
use outdial::demo::{DemoOptions, DemoReport};
use std::collections::BTreeMap;
use store::{CampaignStore, ContactFilter, DoNotCallStore, PageRequest, SqliteStore};

async fn demo(dir: &tempfile::TempDir, name: &str) -> (SqliteStore, DemoReport) {
    let path = dir.path().join(name);
    let store = SqliteStore::open(&path).unwrap();
    let stack = outdial::Stack::default().with_queue_at(&path).unwrap();
    let options = DemoOptions { contacts: 200, seed: 7, progress: false, ..DemoOptions::default() };
    let report = outdial::demo::run(store.clone(), stack, &options).await.expect("the demo finishes");
    (store, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_finalises_every_contact_and_reports_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = demo(&dir, "demo.db").await;
    let (org, campaign) = (report.org, report.campaign);

    // recount from the raw records
    let contacts = store.list_contacts(org, campaign, ContactFilter::default(), PageRequest::first(500)).await.unwrap().items;
    assert_eq!(contacts.len(), 200);
    assert!(contacts.iter().all(|c| c.state == ContactState::Done && c.disposition.is_some()), "every contact finalised");
    let mut by_disposition: BTreeMap<ContactDisposition, u64> = BTreeMap::new();
    for c in &contacts {
        *by_disposition.entry(c.disposition.unwrap()).or_default() += 1;
    }
    let calls = outdial::demo::all_calls(&store, org, campaign).await.unwrap();
    let mut calls_by: BTreeMap<CallDisposition, u64> = BTreeMap::new();
    for call in &calls {
        assert!(call.state.is_terminal(), "{call:?}");
        *calls_by.entry(call.disposition().unwrap()).or_default() += 1;
    }
    let attempts: u64 = contacts.iter().map(|c| u64::from(c.attempts)).sum();
    let dialed = calls.iter().filter(|c| c.provider_call_id.is_some()).count() as f64;
    let answered = calls.iter().filter(|c| c.details.answered_at.is_some() || c.details.answered_by.is_some()).count() as f64;
    let costs: Vec<rust_decimal::Decimal> = calls.iter().filter_map(|c| c.details.cost.map(|m| m.amount())).collect();

    assert_eq!(report.status, domain::CampaignStatus::Completed);
    assert_eq!((report.contacts, report.finalised), (200, 200));
    assert_eq!(report.contacts_by_disposition, by_disposition);
    assert_eq!((report.attempts, calls.len() as u64), (attempts, attempts));
    assert_eq!(report.calls_by_disposition, calls_by);
    assert_eq!(report.retries, calls.iter().filter(|c| c.attempt > 1).count() as u64);
    // one definition per number: answer rate is answered (by a person or a machine) over dialed
    let n = &report.numbers;
    assert!((n.answer_rate.unwrap() - answered / dialed).abs() < 1e-9, "{n:?}");
    assert_eq!(n.finished, calls.len() as u64);
    // the simulator reports a cost per conversation, as ElevenLabs does, and it reaches the report
    let human = calls_by.get(&CallDisposition::AnsweredHuman).copied().unwrap_or(0)
        + calls_by.get(&CallDisposition::DoNotCall).copied().unwrap_or(0);
    assert_eq!(n.cost.costed_calls, costs.len() as u64);
    assert!(n.cost.costed_calls >= human && human > 0, "every conversation is costed: {n:?}");
    assert_eq!(n.cost.total.map(|t| t.amount()), Some(costs.iter().sum()), "{n:?}");
    for kind in [CallDisposition::AnsweredHuman, CallDisposition::Voicemail, CallDisposition::NoAnswer, CallDisposition::Busy] {
        assert!(calls_by.get(&kind).is_some_and(|n| *n > 0), "the simulator's odds produce {kind:?}");
    }
    assert!(report.retries > 0);
    // opt-outs heard in the simulated transcripts reached the do-not-call list
    let listed = store.list_do_not_call(org, PageRequest::first(500)).await.unwrap().items.len() as u64;
    assert_eq!(listed, by_disposition.get(&ContactDisposition::DoNotCall).copied().unwrap_or(0));
    assert!(listed > 0);
    let printed = report.to_string();
    assert!(printed.contains("contacts          200 (200 finalised)"), "{printed}");
    assert!(printed.contains(&format!("calls (attempts)  {attempts} ")), "{printed}");
    assert!(printed.contains(&format!("answer rate       {}", domain::report::percent(n.answer_rate))), "{printed}");
    assert!(printed.contains(&format!("cost              {}", n.cost.describe(n.finished))), "{printed}");

    // the same seed, the same outcome
    let (_, again) = demo(&dir, "again.db").await;
    assert_eq!((again.contacts_by_disposition, again.calls_by_disposition), (report.contacts_by_disposition, report.calls_by_disposition));
}
