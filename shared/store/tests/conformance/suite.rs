use chrono::{DateTime, Duration, Utc};
use domain::{
    AnsweredBy, Call, CallDetails, CallDisposition, CallEvent, CallEventKind, CallState, Campaign, CampaignSettings, CampaignStatus, Cap,
    Contact, ContactDisposition, ContactState, E164, EndReason, Money, NewCampaign, NewContact, OrgId, RetryOutcome, RetryPolicy,
};
use domain::{Assistant, AssistantConfig, AssistantPatch, AssistantSource, CallerId, NewAssistant, ProviderKind};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
};
use store::{AssistantFilter, CallFilter, ContactFilter, KeyHash, PageRequest, Store, StoreError};

/// A Friday, 10:00 in New York: inside the default calling window.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_025_200, 0).unwrap()
}

/// Distinct valid US numbers: +1 415 XXX YYYY.
fn phone(n: u64) -> E164 {
    E164::parse(&format!("+1415{:03}{:04}", 200 + (n / 10_000) % 800, n % 10_000), None).unwrap()
}

fn contacts(range: std::ops::Range<u64>) -> Vec<NewContact> {
    range.map(|n| NewContact::new(phone(n), chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now()))).collect()
}

fn event(key: impl Into<String>, at: DateTime<Utc>, kind: CallEventKind) -> CallEvent {
    CallEvent { dedupe_key: key.into(), occurred_at: at, kind }
}

fn ended(reason: EndReason) -> CallEventKind {
    CallEventKind::Ended { reason }
}

fn details(d: CallDetails) -> CallEventKind {
    CallEventKind::Details { details: Box::new(d) }
}

async fn org<S: Store>(store: &S) -> OrgId {
    store.create_org("Acme Outbound").await.unwrap().id
}

async fn running_campaign<S: Store>(store: &S, org: OrgId, cap: i64, policy: RetryPolicy, n: u64) -> Campaign {
    let settings = CampaignSettings { retry_policy: policy, ..Default::default() };
    let campaign =
        store.create_campaign(org, NewCampaign::parse("Spring renewals", Cap::parse(cap).unwrap(), settings).unwrap()).await.unwrap();
    if n > 0 {
        store.add_contacts(org, campaign.id, contacts(0..n), t0()).await.unwrap();
    }
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap()
}

async fn all_contacts<S: Store>(store: &S, org: OrgId, campaign: domain::CampaignId) -> Vec<Contact> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let p = store.list_contacts(org, campaign, ContactFilter::default(), page.clone()).await.unwrap();
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return out,
        }
    }
}

async fn all_calls<S: Store>(store: &S, org: OrgId, campaign: domain::CampaignId) -> Vec<Call> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let p = store.list_calls(org, campaign, CallFilter::default(), page.clone()).await.unwrap();
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return out,
        }
    }
}

/// The campaign's tally (read from its counters) is what counting its contacts one by one gives.
async fn assert_tally_is_a_recount<S: Store>(store: &S, org: OrgId, campaign: domain::CampaignId, when: &str) {
    let mut recount = store::ContactTally::default();
    for c in all_contacts(store, org, campaign).await {
        *recount.by_state.entry(c.state).or_default() += 1;
        if let Some(d) = c.disposition {
            *recount.by_disposition.entry(d).or_default() += 1;
        }
    }
    assert_eq!(store.contact_tally(org, campaign).await.unwrap(), recount, "{when}");
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound { .. }))
}

pub async fn organisations_and_api_keys<S: Store>(store: &S) {
    let org = store.create_org("  Acme  ").await.unwrap();
    assert_eq!(org.name, "Acme");
    assert_eq!(store.get_org(org.id).await.unwrap(), org);
    assert!(is_not_found(store.get_org(OrgId::new()).await));
    assert!(matches!(store.create_org("   ").await, Err(StoreError::Invalid(_))), "a blank name is refused");

    let created = store.create_api_key(org.id).await.unwrap();
    assert!(created.secret.starts_with("odk_") && created.secret.len() > 40);
    assert_eq!(created.key.hash, KeyHash::of_secret(&created.secret));
    assert_ne!(created.key.hash.as_str(), created.secret, "only the hash is kept");
    assert_eq!(store.org_for_api_key(&KeyHash::of_secret(&created.secret)).await.unwrap(), Some(org.id));
    assert_eq!(store.org_for_api_key(&KeyHash::of_secret("odk_guess")).await.unwrap(), None);
    assert!(is_not_found(store.create_api_key(OrgId::new()).await), "keys need an existing organisation");

    let id = created.key.hash.id();
    let other = store.create_org("Other").await.unwrap();
    assert!(is_not_found(store.revoke_api_key(other.id, &id).await), "another organisation cannot revoke it");
    assert!(is_not_found(store.revoke_api_key(org.id, "key_not-an-id").await));
    assert_eq!(store.org_for_api_key(&created.key.hash).await.unwrap(), Some(org.id));
    store.revoke_api_key(org.id, &id).await.unwrap();
    assert_eq!(store.org_for_api_key(&created.key.hash).await.unwrap(), None);
    store.revoke_api_key(org.id, &id).await.unwrap();
    assert!(store.api_key(&created.key.hash).await.unwrap().unwrap().revoked_at.is_some(), "a revoked key is kept, marked");
}

pub async fn api_keys_are_named_listed_expire_and_record_their_last_use<S: Store>(store: &S) {
    let org = org(store).await;
    let now = Utc::now();
    let first = store.create_named_api_key(org, store::NewApiKey::parse(Some("ci"), None, now).unwrap()).await.unwrap();
    // a millisecond apart: creation order is what lists follow
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    // seconds ahead, not milliseconds: on a loaded CI machine the moto round trips before the first
    // check below took longer than 300 ms
    let expires_at = now + Duration::seconds(5);
    let soon = store::NewApiKey::parse(Some("contractor"), Some(expires_at), now).unwrap();
    let expiring = store.create_named_api_key(org, soon).await.unwrap();
    let listed = store.list_api_keys(org, PageRequest::first(1)).await.unwrap();
    assert_eq!(listed.items, vec![first.key.clone()], "oldest first");
    let rest = store.list_api_keys(org, PageRequest { limit: 10, cursor: listed.next_cursor }).await.unwrap();
    assert_eq!((rest.items.len(), rest.items[0].name.as_str(), rest.next_cursor), (1, "contractor", None));
    assert!(store.list_api_keys(OrgId::new(), PageRequest::default()).await.unwrap().items.is_empty());
    assert_eq!(store.api_key_by_id(&expiring.key.hash.id()).await.unwrap().map(|k| k.org_id), Some(org));
    assert_eq!(store.api_key_by_id("key_0000000000000000").await.unwrap(), None);

    // the last use is kept to the minute: one write per key per minute at most
    store.record_api_key_use(&first.key.hash, now).await.unwrap();
    store.record_api_key_use(&first.key.hash, now + Duration::seconds(30)).await.unwrap();
    let used = store.api_key(&first.key.hash).await.unwrap().unwrap().last_used_at.unwrap();
    assert_eq!(used.timestamp_millis(), now.timestamp_millis());
    store.record_api_key_use(&first.key.hash, now + Duration::seconds(61)).await.unwrap();
    let used = store.api_key(&first.key.hash).await.unwrap().unwrap().last_used_at.unwrap();
    assert_eq!(used.timestamp_millis(), (now + Duration::seconds(61)).timestamp_millis());

    // an expired key authenticates nothing
    assert_eq!(store.org_for_api_key(&expiring.key.hash).await.unwrap(), Some(org));
    tokio::time::sleep((expires_at - Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(50)).await;
    assert_eq!(store.org_for_api_key(&expiring.key.hash).await.unwrap(), None);
    assert!(store::NewApiKey::parse(Some(""), None, now).is_err() && store::NewApiKey::parse(None, Some(now), now).is_err());
}

pub async fn records_of_another_organisation_are_not_found<S: Store>(store: &S) {
    let (a, b) = (org(store).await, org(store).await);
    let campaign = running_campaign(store, a, 2, RetryPolicy::default(), 3).await;
    let claims = store.claim_due_contacts(a, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap();
    let call = &claims[0].call;
    let contact = &claims[0].contact;

    assert!(is_not_found(store.get_campaign(b, campaign.id).await));
    assert!(store.list_campaigns(b, PageRequest::default()).await.unwrap().items.is_empty());
    assert!(is_not_found(store.set_campaign_status(b, campaign.id, &[CampaignStatus::Running], CampaignStatus::Paused, t0()).await));
    assert!(is_not_found(store.add_contacts(b, campaign.id, contacts(10..11), t0()).await));
    assert!(is_not_found(store.get_contact(b, campaign.id, contact.id).await));
    assert!(is_not_found(store.list_contacts(b, campaign.id, ContactFilter::default(), PageRequest::default()).await));
    assert!(is_not_found(store.claim_due_contacts(b, campaign.id, t0(), 5, chrono::TimeDelta::zero()).await));
    assert!(is_not_found(store.get_call(b, call.id).await));
    assert!(is_not_found(store.list_calls(b, campaign.id, CallFilter::default(), PageRequest::default()).await));
    assert!(is_not_found(store.list_call_events(b, call.id).await));
    assert!(is_not_found(store.apply_call_event(b, call.id, event("x", t0(), ended(EndReason::Completed)), t0()).await));

    let untouched = store.get_call(a, call.id).await.unwrap();
    assert_eq!(untouched.state, CallState::Queued, "a refused event changes nothing");
    assert!(store.list_call_events(a, call.id).await.unwrap().is_empty());
    assert_eq!(store.get_campaign(a, campaign.id).await.unwrap().counters.contacts_total, 3);
}

pub async fn phone_numbers_are_unique_per_campaign<S: Store>(store: &S) {
    let org = org(store).await;
    let campaign = running_campaign(store, org, 1, RetryPolicy::default(), 0).await;
    let mut batch = contacts(0..3);
    batch.push(NewContact::new(phone(1), chrono_tz::Europe::London, domain::Consent::on_file(chrono::Utc::now())));
    let added = store.add_contacts(org, campaign.id, batch, t0()).await.unwrap();
    assert_eq!((added.added, added.duplicates), (3, 1), "a duplicate inside the batch");
    let added = store.add_contacts(org, campaign.id, contacts(2..5), t0()).await.unwrap();
    assert_eq!((added.added, added.duplicates), (2, 1), "a duplicate of an earlier batch");
    let other = running_campaign(store, org, 1, RetryPolicy::default(), 0).await;
    assert_eq!(
        store.add_contacts(org, other.id, contacts(0..2), t0()).await.unwrap().added,
        2,
        "another campaign may have the same numbers"
    );

    let stored = all_contacts(store, org, campaign.id).await;
    assert_eq!(stored.len(), 5);
    assert_eq!(stored.iter().map(|c| c.phone.clone()).collect::<HashSet<_>>().len(), 5);
    assert_eq!(stored[1].timezone, chrono_tz::America::New_York, "the first occurrence wins");
    assert_eq!(store.get_campaign(org, campaign.id).await.unwrap().counters.contacts_total, 5);
    let one = store.get_contact(org, campaign.id, stored[0].id).await.unwrap();
    assert_eq!(one, stored[0]);
    assert_eq!((one.state, one.attempts, one.disposition), (ContactState::Ready, 0, None));
}

pub async fn lists_page_with_opaque_stable_cursors<S: Store>(store: &S) {
    let org = org(store).await;
    let mut created = Vec::new();
    for i in 0..23 {
        let c = store
            .create_campaign(org, NewCampaign::parse(&format!("c{i}"), Cap::DEFAULT, CampaignSettings::default()).unwrap())
            .await
            .unwrap();
        created.push(c.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(5);
    let mut pages = 0;
    loop {
        let p = store.list_campaigns(org, page.clone()).await.unwrap();
        pages += 1;
        assert!(p.items.len() <= 5);
        // a campaign created mid-walk lands after the ones already listed, never inside them
        if pages == 2 {
            created.push(
                store
                    .create_campaign(org, NewCampaign::parse("late", Cap::DEFAULT, CampaignSettings::default()).unwrap())
                    .await
                    .unwrap()
                    .id,
            );
        }
        seen.extend(p.items.iter().map(|c| c.id));
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, created, "every campaign once, in creation order");
    assert_eq!(pages, 5);

    let bad = PageRequest::new(Some(5), Some("not-a-cursor".into()));
    assert!(matches!(store.list_campaigns(org, bad).await, Err(StoreError::InvalidCursor)));

    let campaign = running_campaign(store, org, 3, RetryPolicy::default(), 12).await;
    store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap();
    let filter = |state| ContactFilter { state: Some(state), ..Default::default() };
    let mut ready = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let p = store.list_contacts(org, campaign.id, filter(ContactState::Ready), page.clone()).await.unwrap();
        assert!(p.items.iter().all(|c| c.state == ContactState::Ready));
        ready.extend(p.items);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(ready.len(), 9);
    let dialing = store.list_contacts(org, campaign.id, filter(ContactState::Dialing), PageRequest::first(10)).await.unwrap();
    assert_eq!(dialing.items.len(), 3);
    assert!(dialing.next_cursor.is_none());
}

pub async fn status_changes_are_conditional_and_race_safe<S: Store>(store: &S) {
    let org = org(store).await;
    let draft = store.create_campaign(org, NewCampaign::parse("race", Cap::DEFAULT, CampaignSettings::default()).unwrap()).await.unwrap();
    assert_eq!(draft.status, CampaignStatus::Draft);
    let starts = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.set_campaign_status(org, draft.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await })
    });
    let results = futures::future::join_all(starts).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(won, 1, "exactly one of 8 concurrent starts wins");
    assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)) | Ok(Err(StoreError::Conflict(_))))));
    let running = store.get_campaign(org, draft.id).await.unwrap();
    assert_eq!((running.status, running.started_at), (CampaignStatus::Running, Some(t0())));
    let later = t0() + Duration::hours(1);
    let done = store.set_campaign_status(org, draft.id, &[CampaignStatus::Running], CampaignStatus::Completed, later).await.unwrap();
    assert_eq!((done.status, done.completed_at), (CampaignStatus::Completed, Some(later)));
    let refused =
        store.set_campaign_status(org, draft.id, &[CampaignStatus::Draft, CampaignStatus::Paused], CampaignStatus::Running, later).await;
    assert!(matches!(refused, Err(StoreError::Conflict(ref m)) if m.contains("completed")), "{refused:?}");
}

pub async fn claims_take_due_contacts_in_priority_order_under_the_cap<S: Store>(store: &S) {
    let org = org(store).await;
    let settings = CampaignSettings::default();
    let campaign = store.create_campaign(org, NewCampaign::parse("p", Cap::parse(4).unwrap(), settings).unwrap()).await.unwrap();
    let batch: Vec<NewContact> = (0..10)
        .map(|n| NewContact {
            priority: (n as i32 * 7) % 10,
            ..NewContact::new(phone(n), chrono_tz::America::Chicago, domain::Consent::on_file(chrono::Utc::now()))
        })
        .collect();
    store.add_contacts(org, campaign.id, batch, t0()).await.unwrap();
    assert!(
        store.claim_due_contacts(org, campaign.id, t0(), 10, chrono::TimeDelta::zero()).await.unwrap().is_empty(),
        "a draft campaign is never dialed"
    );
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap();

    let first = store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(first.iter().map(|c| c.contact.priority).collect::<Vec<_>>(), vec![9, 8, 7], "highest priority first");
    let second = store.claim_due_contacts(org, campaign.id, t0(), 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(second.len(), 1, "only cap − active slots are free");
    assert_eq!(second[0].contact.priority, 6);
    assert!(store.claim_due_contacts(org, campaign.id, t0(), 10, chrono::TimeDelta::zero()).await.unwrap().is_empty());

    for claim in first.iter().chain(&second) {
        assert_eq!((claim.contact.state, claim.contact.attempts), (ContactState::Dialing, 1));
        assert_eq!(claim.contact.last_call_id, Some(claim.call.id));
        assert_eq!((claim.call.state, claim.call.attempt, &claim.call.phone), (CallState::Queued, 1, &claim.contact.phone));
        assert_eq!(store.get_call(org, claim.call.id).await.unwrap(), claim.call);
        assert_eq!(store.get_contact(org, campaign.id, claim.contact.id).await.unwrap(), claim.contact);
    }
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.calls_total), (4, 4));

    // one ends busy: its slot frees, and its retry is not due for 30 minutes
    let busy = &first[0];
    store.apply_call_event(org, busy.call.id, event("b", t0() + Duration::seconds(20), ended(EndReason::Busy)), t0()).await.unwrap();
    let next = store.claim_due_contacts(org, campaign.id, t0() + Duration::minutes(1), 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].contact.id, busy.contact.id, "a retry waits until it is due");
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Running], CampaignStatus::Paused, t0()).await.unwrap();
    store.apply_call_event(org, next[0].call.id, event("e", t0() + Duration::seconds(30), ended(EndReason::NoAnswer)), t0()).await.unwrap();
    assert!(
        store.claim_due_contacts(org, campaign.id, t0() + Duration::hours(2), 10, chrono::TimeDelta::zero()).await.unwrap().is_empty(),
        "paused: nothing claimed"
    );
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Paused], CampaignStatus::Running, t0()).await.unwrap();
    // new contacts are due from the start, so they go (by priority) before a retry that fell due later
    let at_due = store
        .claim_due_contacts(org, campaign.id, t0() + Duration::minutes(30) + Duration::seconds(20), 10, chrono::TimeDelta::zero())
        .await
        .unwrap();
    assert_eq!(at_due.len(), 1, "three calls are still active under a cap of 4");
    assert_eq!((at_due[0].contact.priority, at_due[0].call.attempt), (4, 1));
}

pub async fn events_apply_once_and_never_move_a_call_backwards<S: Store>(store: &S) {
    let org = org(store).await;
    let campaign = running_campaign(store, org, 2, RetryPolicy::default(), 1).await;
    let claim = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    let id = claim.call.id;
    let at = |s| t0() + Duration::seconds(s);

    let ringing = store.apply_call_event(org, id, event("CA1:1:status", at(1), CallEventKind::Ringing), at(1)).await.unwrap();
    assert_eq!((ringing.duplicate, ringing.call.state), (false, CallState::Ringing));
    let answered = store.apply_call_event(org, id, event("CA1:2:status", at(5), CallEventKind::Answered), at(5)).await.unwrap();
    assert_eq!(answered.call.state, CallState::InProgress);
    let again = store.apply_call_event(org, id, event("CA1:1:status", at(1), CallEventKind::Ringing), at(6)).await.unwrap();
    assert!(again.duplicate && again.transition.is_none());
    assert_eq!(again.call.state, CallState::InProgress);
    let late_ring = store.apply_call_event(org, id, event("late-ringing", at(2), CallEventKind::Ringing), at(7)).await.unwrap();
    assert_eq!(late_ring.call.state, CallState::InProgress, "never backwards");

    let end = store.apply_call_event(org, id, event("CA1:3:status", at(65), ended(EndReason::Completed)), at(65)).await.unwrap();
    assert!(end.transition.unwrap().releases_capacity);
    assert_eq!(end.contact_fate, Some(domain::ContactFate::Done(ContactDisposition::AnsweredHuman)));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.contacts_done), (0, 1));

    let dup_end = store.apply_call_event(org, id, event("CA1:3:status", at(65), ended(EndReason::Completed)), at(70)).await.unwrap();
    assert!(dup_end.duplicate);
    let other_end = store.apply_call_event(org, id, event("CA1:4:status", at(66), ended(EndReason::Failed)), at(71)).await.unwrap();
    assert!(!other_end.transition.unwrap().releases_capacity);
    assert_eq!(other_end.call.end_reason, Some(EndReason::Completed), "the first end is final");
    let cost = Money::parse("0.0725").unwrap();
    let report =
        details(CallDetails { duration_secs: Some(60), cost: Some(cost), summary: Some("Booked a demo".into()), ..Default::default() });
    let enriched = store.apply_call_event(org, id, event("report", at(80), report), at(80)).await.unwrap();
    assert_eq!(enriched.call.details.cost, Some(cost));
    let unknown = store
        .apply_call_event(org, id, event("weird", at(81), CallEventKind::Unrecognised { description: "forwarding".into() }), at(81))
        .await
        .unwrap();
    assert!(!unknown.duplicate);

    let stored = store.get_call(org, id).await.unwrap();
    assert_eq!(stored, enriched.call);
    assert_eq!((stored.state, stored.ended_at, stored.details.duration_secs), (CallState::Ended, Some(at(65)), Some(60)));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!((c.counters.active_calls, c.counters.contacts_done, c.counters.calls_total), (0, 1, 1), "released exactly once");
    let log = store.list_call_events(org, id).await.unwrap();
    let keys: Vec<_> = log.iter().map(|e| e.event.dedupe_key.as_str()).collect();
    assert_eq!(keys, ["CA1:1:status", "CA1:2:status", "late-ringing", "CA1:3:status", "CA1:4:status", "report", "weird"]);
    assert!(matches!(log[6].event.kind, CallEventKind::Unrecognised { .. }), "unknown events are kept");
    assert!(is_not_found(store.apply_call_event(org, domain::CallId::new(), event("x", at(1), CallEventKind::Ringing), at(1)).await));
}

pub async fn retries_follow_the_policy_until_max_attempts<S: Store>(store: &S) {
    let org = org(store).await;
    let policy = RetryPolicy::parse(2, 10, [RetryOutcome::NoAnswer]).unwrap();
    let campaign = running_campaign(store, org, 1, policy, 1).await;
    let first = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    let applied = store
        .apply_call_event(org, first.call.id, event("na1", t0() + Duration::seconds(30), ended(EndReason::NoAnswer)), t0())
        .await
        .unwrap();
    let due = t0() + Duration::seconds(30) + Duration::minutes(10);
    assert_eq!(applied.contact_fate, Some(domain::ContactFate::Retry { due_at: due }));
    let contact = store.get_contact(org, campaign.id, first.contact.id).await.unwrap();
    assert_eq!((contact.state, contact.due_at, contact.attempts, contact.disposition), (ContactState::Ready, due, 1, None));
    assert!(store.claim_due_contacts(org, campaign.id, due - Duration::seconds(1), 1, chrono::TimeDelta::zero()).await.unwrap().is_empty());

    let second = store.claim_due_contacts(org, campaign.id, due, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    assert_eq!((second.call.attempt, second.contact.attempts), (2, 2));
    store.apply_call_event(org, second.call.id, event("na2", due + Duration::seconds(30), ended(EndReason::NoAnswer)), due).await.unwrap();
    let contact = store.get_contact(org, campaign.id, first.contact.id).await.unwrap();
    assert_eq!((contact.state, contact.disposition), (ContactState::Done, Some(ContactDisposition::MaxAttempts)));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!(c.counters, domain::CampaignCounters { active_calls: 0, contacts_total: 1, contacts_done: 1, calls_total: 2 });
    assert!(c.counters.is_finished());
}

pub async fn late_data_revises_the_contact_until_it_is_dialed_again<S: Store>(store: &S) {
    let org = org(store).await;
    let policy = RetryPolicy::parse(3, 0, [RetryOutcome::Voicemail]).unwrap();
    let campaign = running_campaign(store, org, 1, policy, 1).await;
    let first = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    let end_at = t0() + Duration::seconds(40);
    store.apply_call_event(org, first.call.id, event("end", end_at, ended(EndReason::Completed)), end_at).await.unwrap();
    let contact = store.get_contact(org, campaign.id, first.contact.id).await.unwrap();
    assert_eq!(contact.disposition, Some(ContactDisposition::AnsweredHuman));
    assert_eq!(store.get_campaign(org, campaign.id).await.unwrap().counters.contacts_done, 1);

    // the answering-machine verdict arrives after the end: it was a voicemail, which retries
    let amd = details(CallDetails { answered_by: Some(AnsweredBy::MachineEnd), ..Default::default() });
    let revised = store.apply_call_event(org, first.call.id, event("amd", t0() + Duration::seconds(9), amd), end_at).await.unwrap();
    assert_eq!(revised.contact_fate, Some(domain::ContactFate::Retry { due_at: end_at }));
    let contact = store.get_contact(org, campaign.id, first.contact.id).await.unwrap();
    assert_eq!((contact.state, contact.disposition), (ContactState::Ready, None));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!((c.counters.contacts_done, c.counters.active_calls), (0, 0));

    // once the next attempt has started, news about the old call no longer moves the contact
    let second = store.claim_due_contacts(org, campaign.id, end_at, 1, chrono::TimeDelta::zero()).await.unwrap().remove(0);
    let opt_out = details(CallDetails { opted_out: true, ..Default::default() });
    let late = store.apply_call_event(org, first.call.id, event("opt", end_at, opt_out), end_at).await.unwrap();
    assert_eq!(late.call.disposition(), Some(CallDisposition::DoNotCall));
    assert_eq!(late.contact_fate, None);
    let contact = store.get_contact(org, campaign.id, first.contact.id).await.unwrap();
    assert_eq!((contact.state, contact.attempts, contact.last_call_id), (ContactState::Dialing, 2, Some(second.call.id)));
}

/// How a simulated call of the attacks ends, fixed by its contact and attempt.
fn outcome_of(contact: &Contact, attempt: u32) -> EndReason {
    let h = contact.phone.as_str().bytes().fold(u64::from(attempt), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    match h % 10 {
        0..=6 => EndReason::Completed,
        7 | 8 => EndReason::Busy,
        _ => EndReason::NoAnswer,
    }
}

/// Contacts the concurrency attack runs through: 2,000 on SQLite; 300 on DynamoDB, whose test
/// server (moto, one Python process) serves them at a few hundred requests a second — still 30
/// cap-fulls of 8 claimers and 6 completers racing, with retries.
fn attack_contacts<S: 'static>() -> u64 {
    if std::any::TypeId::of::<S>() == std::any::TypeId::of::<store::DynamoStore>() { 300 } else { 2_000 }
}

pub async fn concurrency_attack_never_exceeds_the_cap_nor_dials_twice<S: Store>(store: &S) {
    const CAP: u32 = 10;
    let contacts_total = attack_contacts::<S>();
    let org = org(store).await;
    let policy = RetryPolicy::parse(3, 0, [RetryOutcome::Busy, RetryOutcome::NoAnswer]).unwrap();
    let campaign = running_campaign(store, org, CAP.into(), policy, contacts_total).await;
    let id = campaign.id;

    let dialed: Arc<Mutex<HashSet<(domain::ContactId, u32)>>> = Arc::default();
    let in_flight = Arc::new(AtomicI64::new(0));
    let max_in_flight = Arc::new(AtomicI64::new(0));
    let max_stored_active = Arc::new(AtomicU32::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<store::Claim>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));

    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let (store, dialed, in_flight, max_in_flight, tx) =
                (store.clone(), dialed.clone(), in_flight.clone(), max_in_flight.clone(), tx.clone());
            tokio::spawn(async move {
                loop {
                    let claims = store.claim_due_contacts(org, id, t0(), CAP, chrono::TimeDelta::zero()).await.unwrap();
                    if claims.is_empty() {
                        if store.get_campaign(org, id).await.unwrap().counters.is_finished() {
                            return;
                        }
                        // idle claimers poll gently, so the completers they wait on get the store
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    let now = in_flight.fetch_add(claims.len() as i64, Ordering::SeqCst) + claims.len() as i64;
                    max_in_flight.fetch_max(now, Ordering::SeqCst);
                    for claim in claims {
                        assert!(dialed.lock().unwrap().insert((claim.contact.id, claim.call.attempt)), "contact attempt dialed twice");
                        tx.send(claim).unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);

    let completers: Vec<_> = (0..6)
        .map(|_| {
            let (store, rx, in_flight) = (store.clone(), rx.clone(), in_flight.clone());
            tokio::spawn(async move {
                loop {
                    let Some(claim) = rx.lock().await.recv().await else { return };
                    let reason = outcome_of(&claim.contact, claim.call.attempt);
                    let key = format!("{}:end", claim.call.id);
                    // counted down before the release, so the count never trails the store's
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    for _ in 0..2 {
                        store.apply_call_event(org, claim.call.id, event(key.clone(), t0(), ended(reason)), t0()).await.unwrap();
                    }
                }
            })
        })
        .collect();

    let monitor = {
        let (store, max_stored_active) = (store.clone(), max_stored_active.clone());
        tokio::spawn(async move {
            loop {
                let c = store.get_campaign(org, id).await.unwrap();
                max_stored_active.fetch_max(c.counters.active_calls, Ordering::SeqCst);
                if c.counters.is_finished() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };

    for task in claimers.into_iter().chain(completers).chain([monitor]) {
        task.await.unwrap();
    }

    assert!(max_in_flight.load(Ordering::SeqCst) <= i64::from(CAP), "in flight peaked at {}", max_in_flight.load(Ordering::SeqCst));
    assert!(max_stored_active.load(Ordering::SeqCst) <= CAP);
    let contacts = all_contacts(store, org, id).await;
    let calls = all_calls(store, org, id).await;
    let campaign = store.get_campaign(org, id).await.unwrap();
    assert_eq!(contacts.len() as u64, contacts_total);
    assert!(contacts.iter().all(|c| c.state == ContactState::Done && c.disposition.is_some()), "every contact finished");
    assert_eq!(calls.len(), dialed.lock().unwrap().len(), "one call per claimed attempt");
    assert!(calls.iter().all(|c| c.state.is_terminal()));
    assert_eq!(campaign.counters.active_calls, 0);
    assert_eq!(campaign.counters.contacts_total, contacts_total);
    assert_eq!(campaign.counters.contacts_done, contacts.iter().filter(|c| c.state == ContactState::Done).count() as u64);
    assert_eq!(campaign.counters.calls_total, calls.len() as u64);
    assert_eq!(contacts.iter().map(|c| u64::from(c.attempts)).sum::<u64>(), calls.len() as u64);
    for c in &contacts {
        let expected = outcome_of(c, c.attempts);
        let disposition = match expected {
            EndReason::Completed => ContactDisposition::AnsweredHuman,
            _ => ContactDisposition::MaxAttempts,
        };
        assert_eq!(c.disposition, Some(disposition), "{c:?}");
    }
    assert_tally_is_a_recount(store, org, id, "after the attack").await;
}

/// A plausible life of one call, with the dedupe keys a provider would give it.
fn life_of(i: usize, rng: &mut rand::rngs::StdRng) -> Vec<CallEvent> {
    let at = |s: i64| t0() + Duration::seconds(s);
    let reason =
        [EndReason::Completed, EndReason::Completed, EndReason::Busy, EndReason::NoAnswer, EndReason::Failed][rng.random_range(0..5)];
    let mut events = vec![event(format!("{i}:1"), at(1), CallEventKind::Queued), event(format!("{i}:2"), at(3), CallEventKind::Ringing)];
    let secs = rng.random_range(5..300);
    if reason == EndReason::Completed {
        events.push(event(format!("{i}:3"), at(9), CallEventKind::Answered));
        let by = if rng.random_bool(0.4) { AnsweredBy::MachineEnd } else { AnsweredBy::Human };
        events.push(event(format!("{i}:amd"), at(11), details(CallDetails { answered_by: Some(by), ..Default::default() })));
    }
    events.push(event(format!("{i}:4"), at(10 + secs), ended(reason)));
    let report = CallDetails {
        duration_secs: Some(secs as u32),
        cost: Some(Money::parse(&format!("0.{:03}", secs)).unwrap()),
        opted_out: rng.random_bool(0.05),
        ..Default::default()
    };
    events.push(event(format!("{i}:report"), at(12 + secs), details(report)));
    events
}

pub async fn reordering_attack_gives_identical_rows<S: Store>(store: &S) {
    const CALLS: usize = 50;
    let policy = RetryPolicy::parse(3, 15, [RetryOutcome::Busy, RetryOutcome::NoAnswer, RetryOutcome::Voicemail]).unwrap();
    let (a, b) = (org(store).await, org(store).await);
    let ordered = running_campaign(store, a, CALLS as i64, policy.clone(), CALLS as u64).await;
    let shuffled = running_campaign(store, b, CALLS as i64, policy, CALLS as u64).await;
    let claims_a = store.claim_due_contacts(a, ordered.id, t0(), CALLS as u32, chrono::TimeDelta::zero()).await.unwrap();
    let claims_b = store.claim_due_contacts(b, shuffled.id, t0(), CALLS as u32, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!((claims_a.len(), claims_b.len()), (CALLS, CALLS));
    let call_b_of: HashMap<E164, domain::CallId> = claims_b.iter().map(|c| (c.contact.phone.clone(), c.call.id)).collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut noisy = Vec::new();
    for (i, claim) in claims_a.iter().enumerate() {
        let life = life_of(i, &mut rng);
        for e in &life {
            store.apply_call_event(a, claim.call.id, e.clone(), t0()).await.unwrap();
        }
        let call_b = call_b_of[&claim.contact.phone];
        for e in life {
            for _ in 0..rng.random_range(1..=3) {
                noisy.push((call_b, e.clone()));
            }
        }
    }
    noisy.shuffle(&mut rng);
    let noisy = Arc::new(Mutex::new(noisy));
    let appliers: Vec<_> = (0..4)
        .map(|_| {
            let (store, noisy) = (store.clone(), noisy.clone());
            tokio::spawn(async move {
                loop {
                    let Some((call, e)) = noisy.lock().unwrap().pop() else { return };
                    store.apply_call_event(b, call, e, t0()).await.unwrap();
                }
            })
        })
        .collect();
    for task in appliers {
        task.await.unwrap();
    }

    let by_phone = |contacts: Vec<Contact>| contacts.into_iter().map(|c| (c.phone.clone(), c)).collect::<BTreeMap<_, _>>();
    let contacts_a = by_phone(all_contacts(store, a, ordered.id).await);
    let contacts_b = by_phone(all_contacts(store, b, shuffled.id).await);
    for (phone, ca) in &contacts_a {
        let cb = &contacts_b[phone];
        assert_eq!(
            (ca.state, ca.attempts, ca.due_at, ca.disposition),
            (cb.state, cb.attempts, cb.due_at, cb.disposition),
            "contact {phone}"
        );
        let (call_a, call_b) =
            (store.get_call(a, ca.last_call_id.unwrap()).await.unwrap(), store.get_call(b, cb.last_call_id.unwrap()).await.unwrap());
        assert_eq!(
            (call_a.state, call_a.end_reason, call_a.ended_at, &call_a.details, call_a.last_status_at, call_a.disposition()),
            (call_b.state, call_b.end_reason, call_b.ended_at, &call_b.details, call_b.last_status_at, call_b.disposition()),
            "call to {phone}"
        );
        let keys = |log: Vec<store::StoredCallEvent>| log.into_iter().map(|e| e.event.dedupe_key).collect::<HashSet<_>>();
        assert_eq!(keys(store.list_call_events(a, call_a.id).await.unwrap()), keys(store.list_call_events(b, call_b.id).await.unwrap()));
    }
    let (ca, cb) = (store.get_campaign(a, ordered.id).await.unwrap(), store.get_campaign(b, shuffled.id).await.unwrap());
    assert_eq!(ca.counters, cb.counters);
    assert_eq!(ca.counters.active_calls, 0);
    assert_eq!(ca.counters.contacts_done, contacts_a.values().filter(|c| c.state == ContactState::Done).count() as u64);
}

fn assistant_config(prompt: &str) -> AssistantConfig {
    AssistantConfig {
        system_prompt: prompt.into(),
        first_message: "Hi, this is an AI assistant calling for Acme.".into(),
        end_call_message: None,
        voice: None,
        model: Some("gpt-4o".into()),
        language: None,
        silence_timeout_seconds: Some(30),
        max_duration_seconds: Some(600),
        tools: None,
    }
}

fn new_assistant(name: &str, provider_id: Option<&str>, source: AssistantSource) -> NewAssistant {
    NewAssistant {
        name: name.into(),
        provider: ProviderKind::Vapi,
        provider_assistant_id: provider_id.map(str::to_string),
        source,
        config: assistant_config("You book demos."),
        tools_url: Some("https://outdial.example".into()),
    }
}

pub async fn assistants_are_listed_filtered_and_scoped<S: Store>(store: &S) {
    let (org, other) = (org(store).await, org(store).await);
    let mut created: Vec<Assistant> = Vec::new();
    for i in 0..5 {
        let source = if i % 2 == 0 { AssistantSource::Local } else { AssistantSource::Imported };
        created.push(store.create_assistant(org, new_assistant(&format!("a{i}"), Some(&format!("pid-{i}")), source), t0()).await.unwrap());
    }
    let off =
        store.update_assistant(org, created[1].id, 1, AssistantPatch { active: Some(false), ..Default::default() }, t0()).await.unwrap();
    assert_eq!((off.active, off.version), (false, 2));
    assert_eq!(store.get_assistant(org, created[0].id).await.unwrap(), created[0]);

    let names = |page: store::Page<Assistant>| page.items.into_iter().map(|a| a.name).collect::<Vec<_>>();
    let all = store.list_assistants(org, AssistantFilter::default(), PageRequest::first(3)).await.unwrap();
    assert_eq!(names(all.clone()), ["a0", "a1", "a2"]);
    let rest = store.list_assistants(org, AssistantFilter::default(), PageRequest { limit: 3, cursor: all.next_cursor }).await.unwrap();
    assert_eq!((names(rest.clone()), rest.next_cursor), (vec!["a3".to_string(), "a4".to_string()], None));
    let active = AssistantFilter { active: Some(true), source: None };
    assert_eq!(names(store.list_assistants(org, active, PageRequest::default()).await.unwrap()), ["a0", "a2", "a3", "a4"]);
    let imported_active = AssistantFilter { active: Some(true), source: Some(AssistantSource::Imported) };
    assert_eq!(names(store.list_assistants(org, imported_active, PageRequest::default()).await.unwrap()), ["a3"]);

    assert!(is_not_found(store.get_assistant(other, created[0].id).await));
    assert!(store.list_assistants(other, AssistantFilter::default(), PageRequest::default()).await.unwrap().items.is_empty());
    assert!(is_not_found(store.update_assistant(other, created[0].id, 1, AssistantPatch::default(), t0()).await));
    assert!(is_not_found(store.delete_assistant(other, created[0].id).await));
    assert!(is_not_found(store.list_assistant_versions(other, created[0].id).await));

    store.delete_assistant(org, created[0].id).await.unwrap();
    assert!(is_not_found(store.get_assistant(org, created[0].id).await));
    let again = store.create_assistant(org, new_assistant("a0 again", Some("pid-0"), AssistantSource::Local), t0()).await.unwrap();
    assert_ne!(again.id, created[0].id, "a deleted assistant frees its provider id");
}

pub async fn assistant_changes_are_versioned_and_optimistic<S: Store>(store: &S) {
    let org = org(store).await;
    let a = store.create_assistant(org, new_assistant("Sales", None, AssistantSource::Local), t0()).await.unwrap();
    assert_eq!(a.version, 1);
    let later = t0() + Duration::minutes(5);
    let patch = AssistantPatch { config: Some(assistant_config("You qualify leads.")), ..Default::default() };
    let v2 = store.update_assistant(org, a.id, 1, patch.clone(), later).await.unwrap();
    assert_eq!((v2.version, v2.updated_at, v2.config.system_prompt.as_str()), (2, later, "You qualify leads."));
    let same = store.update_assistant(org, a.id, 2, patch, later).await.unwrap();
    assert_eq!(same.version, 2, "no change, no version");
    let stale = store.update_assistant(org, a.id, 1, AssistantPatch { name: Some("x".into()), ..Default::default() }, later).await;
    assert!(matches!(stale, Err(StoreError::StaleVersion { expected: 1, current: 2 })), "{stale:?}");

    let racers = (0..8).map(|i| {
        let store = store.clone();
        let patch = AssistantPatch { name: Some(format!("racer {i}")), ..Default::default() };
        tokio::spawn(async move { store.update_assistant(org, a.id, 2, patch, later).await })
    });
    let results = futures::future::join_all(racers).await;
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count(), 1, "one of 8 updates of version 2 wins");
    assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)) | Ok(Err(StoreError::StaleVersion { .. })))));

    let versions = store.list_assistant_versions(org, a.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(versions[0].config.system_prompt, "You book demos.");
    assert_eq!((versions[1].config.system_prompt.as_str(), versions[1].created_at), ("You qualify leads.", later));
    assert!(versions[2].name.starts_with("racer "));
}

pub async fn provider_ids_belong_to_one_organisation<S: Store>(store: &S) {
    let (a, b) = (org(store).await, org(store).await);
    let (mine, _) = store.import_assistant(a, new_assistant("A's agent", Some("agent_a1"), AssistantSource::Imported), t0()).await.unwrap();
    assert_eq!(store.provider_id_owner(mine.provider, "agent_a1").await.unwrap(), Some(a));
    let imported = store.import_assistant(b, new_assistant("Taken", Some("agent_a1"), AssistantSource::Imported), t0()).await;
    assert!(matches!(imported, Err(StoreError::NotFound { .. })), "another organisation's id is not found: {imported:?}");
    let created = store.create_assistant(b, new_assistant("Taken", Some("agent_a1"), AssistantSource::Imported), t0()).await;
    assert!(matches!(created, Err(StoreError::NotFound { .. })), "{created:?}");
    assert!(store.list_assistants(b, AssistantFilter::default(), PageRequest::default()).await.unwrap().items.is_empty());
    let (again, created) =
        store.import_assistant(a, new_assistant("A's agent v2", Some("agent_a1"), AssistantSource::Imported), t0()).await.unwrap();
    assert!(!created && again.id == mine.id && again.name == "A's agent v2", "the owner still imports it");
    // deleting the record keeps the id A's: B cannot take A's agent by waiting
    store.delete_assistant(a, mine.id).await.unwrap();
    let after = store.import_assistant(b, new_assistant("Taken", Some("agent_a1"), AssistantSource::Imported), t0()).await;
    assert!(matches!(after, Err(StoreError::NotFound { .. })), "{after:?}");
    assert_eq!(store.provider_id_owner(mine.provider, "agent_unknown").await.unwrap(), None);
}

/// The built-in templates are each organisation's own copy, not a shared provider resource: a
/// second organisation installs them too, and installing again updates rather than duplicates.
pub async fn every_organisation_installs_its_own_templates<S: Store>(store: &S) {
    let (a, b) = (org(store).await, org(store).await);
    for org in [a, b, a, b] {
        for template in domain::assistant::templates() {
            store.import_assistant(org, template, t0()).await.unwrap_or_else(|e| panic!("{org}: {e}"));
        }
    }
    let filter = AssistantFilter { active: None, source: Some(AssistantSource::Template) };
    let (of_a, of_b) = (
        store.list_assistants(a, filter, PageRequest::default()).await.unwrap().items,
        store.list_assistants(b, filter, PageRequest::default()).await.unwrap().items,
    );
    assert_eq!((of_a.len(), of_b.len()), (3, 3));
    assert!(of_a.iter().all(|t| t.org_id == a && of_b.iter().all(|u| u.id != t.id)));
    let pid = of_a[0].provider_assistant_id.clone().unwrap();
    assert_eq!(store.provider_id_owner(of_a[0].provider, &pid).await.unwrap(), None, "no organisation owns a template's key");
}

pub async fn imports_of_one_provider_id_never_duplicate<S: Store>(store: &S) {
    let (org, other) = (org(store).await, org(store).await);
    let importers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store.import_assistant(org, new_assistant("Imported", Some("asst_123"), AssistantSource::Imported), t0()).await
        })
    });
    let results: Vec<(Assistant, bool)> = futures::future::join_all(importers).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "created exactly once");
    assert!(results.iter().all(|(a, _)| a.id == results[0].0.id));
    let listed = store.list_assistants(org, AssistantFilter::default(), PageRequest::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);

    let mut changed = new_assistant("Imported, renamed", Some("asst_123"), AssistantSource::Imported);
    changed.config = assistant_config("Fetched again from the provider.");
    let (updated, created) = store.import_assistant(org, changed, t0()).await.unwrap();
    assert!(!created);
    assert_eq!((updated.id, updated.version, updated.name.as_str()), (results[0].0.id, 2, "Imported, renamed"));
    let duplicate = store.create_assistant(org, new_assistant("Dup", Some("asst_123"), AssistantSource::Local), t0()).await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");
    // the provider id is this organisation's: to another it is not found (issue 18)
    let elsewhere = store.import_assistant(other, new_assistant("Theirs", Some("asst_123"), AssistantSource::Imported), t0()).await;
    assert!(matches!(elsewhere, Err(StoreError::NotFound { .. })), "{elsewhere:?}");
    let theirs = store.import_assistant(other, new_assistant("Theirs", Some("asst_456"), AssistantSource::Imported), t0()).await.unwrap();
    assert!(theirs.1 && theirs.0.id != updated.id, "another organisation has its own directory");
}

pub async fn campaigns_are_found_by_the_assistant_they_use<S: Store>(store: &S) {
    let (org, other) = (org(store).await, org(store).await);
    let assistant = store.create_assistant(org, new_assistant("Sales", None, AssistantSource::Local), t0()).await.unwrap();
    let new = |name: &str| NewCampaign::parse(name, Cap::DEFAULT, CampaignSettings::default()).unwrap();
    let using = store.create_campaign(org, new("uses it").with_assistant(assistant.id)).await.unwrap();
    assert_eq!(store.get_campaign(org, using.id).await.unwrap().assistant_id, Some(assistant.id));
    store.create_campaign(org, new("no assistant")).await.unwrap();
    store.create_campaign(org, new("another assistant").with_assistant(domain::AssistantId::new())).await.unwrap();
    let done = store.create_campaign(org, new("done with it").with_assistant(assistant.id)).await.unwrap();
    store.set_campaign_status(org, done.id, &[CampaignStatus::Draft], CampaignStatus::Completed, t0()).await.unwrap();

    let found = store.campaigns_using_assistant(org, assistant.id).await.unwrap();
    assert_eq!(found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["uses it", "done with it"]);
    assert_eq!((found[1].status, found[1].completed_at), (CampaignStatus::Completed, Some(t0())));
    assert!(store.campaigns_using_assistant(other, assistant.id).await.unwrap().is_empty(), "scoped to the organisation");
}

pub async fn do_not_call_numbers_are_left_out_of_imports_and_finalise_ready_contacts<S: Store>(store: &S) {
    let (org, other) = (org(store).await, org(store).await);
    let added = store.add_do_not_call(org, vec![phone(1), phone(2), phone(1)], t0()).await.unwrap();
    assert_eq!((added.added, added.already_listed, added.contacts_finalised), (2, 1, 0));
    assert!(store.is_do_not_call(org, &phone(1)).await.unwrap());
    assert!(!store.is_do_not_call(other, &phone(1)).await.unwrap(), "the list is the organisation's own");

    let draft = store.create_campaign(org, NewCampaign::parse("d", Cap::DEFAULT, CampaignSettings::default()).unwrap()).await.unwrap();
    let mut batch = contacts(0..6);
    batch.push(NewContact::new(phone(3), chrono_tz::America::New_York, domain::Consent::on_file(chrono::Utc::now())));
    let outcome = store.add_contacts(org, draft.id, batch, t0()).await.unwrap();
    assert_eq!((outcome.added, outcome.duplicates, outcome.do_not_call), (4, 1, 2));
    let elsewhere =
        store.create_campaign(other, NewCampaign::parse("o", Cap::DEFAULT, CampaignSettings::default()).unwrap()).await.unwrap();
    assert_eq!(store.add_contacts(other, elsewhere.id, contacts(0..3), t0()).await.unwrap().added, 3);

    // a number added later finalises its ready contacts in running and paused campaigns only
    let running = running_campaign(store, org, 1, RetryPolicy::default(), 12).await;
    let paused = running_campaign(store, org, 1, RetryPolicy::default(), 12).await;
    store.set_campaign_status(org, paused.id, &[CampaignStatus::Running], CampaignStatus::Paused, t0()).await.unwrap();
    let dialing = store.claim_due_contacts(org, running.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).contact;
    let added = store.add_do_not_call(org, vec![dialing.phone.clone(), phone(7)], t0()).await.unwrap();
    assert_eq!((added.added, added.contacts_finalised), (2, 3), "phone(7) in both, plus the dialing number's ready twin in the paused one");
    for campaign in [running.id, paused.id] {
        let done = store
            .list_contacts(
                org,
                campaign,
                ContactFilter { disposition: Some(ContactDisposition::DoNotCall), ..Default::default() },
                PageRequest::default(),
            )
            .await
            .unwrap()
            .items;
        assert!(done.iter().all(|c| c.state == ContactState::Done));
        assert_eq!(store.get_campaign(org, campaign).await.unwrap().counters.contacts_done, done.len() as u64);
    }
    assert_eq!(
        store.get_contact(org, running.id, dialing.id).await.unwrap().state,
        ContactState::Dialing,
        "a call in flight is left alone"
    );
    let in_draft = store.contact_tally(org, draft.id).await.unwrap();
    assert_eq!(in_draft.by_state.get(&ContactState::Ready), Some(&4), "drafts are checked when they dial");

    let listed = store.list_do_not_call(org, PageRequest::first(2)).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    let rest = store.list_do_not_call(org, PageRequest { cursor: listed.next_cursor, ..PageRequest::first(2) }).await.unwrap();
    let mut all: Vec<E164> = listed.items.into_iter().chain(rest.items).map(|e| e.phone).collect();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in number order");
    all.sort();
    assert!(store.remove_do_not_call(org, &phone(1), "key_aaaaaaaaaaaaaaaa", t0()).await.unwrap());
    assert!(!store.remove_do_not_call(org, &phone(1), "key_aaaaaaaaaaaaaaaa", t0()).await.unwrap(), "already gone");
    assert!(!store.remove_do_not_call(other, &phone(2), "key_bbbbbbbbbbbbbbbb", t0()).await.unwrap(), "not another organisation's");
    assert!(store.is_do_not_call(org, &phone(2)).await.unwrap());
    // every removal is kept: who, when; nothing for a removal that removed nothing
    store.add_do_not_call(org, vec![phone(1)], t0()).await.unwrap();
    store.remove_do_not_call(org, &phone(1), "operator", t0() + Duration::minutes(5)).await.unwrap();
    let audit = store.list_do_not_call_removals(org, PageRequest::first(1)).await.unwrap();
    assert_eq!(audit.items, vec![store::DoNotCallRemoval { phone: phone(1), removed_at: t0(), removed_by: "key_aaaaaaaaaaaaaaaa".into() }]);
    let rest = store.list_do_not_call_removals(org, PageRequest { cursor: audit.next_cursor, ..PageRequest::first(5) }).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|r| (r.removed_by.as_str(), r.removed_at)).collect::<Vec<_>>(),
        [("operator", t0() + Duration::minutes(5))]
    );
    assert!(store.list_do_not_call_removals(other, PageRequest::default()).await.unwrap().items.is_empty());
}

pub async fn cancel_finalises_ready_contacts_and_calls_in_flight_retry_nothing<S: Store>(store: &S) {
    let org = org(store).await;
    let campaign = running_campaign(store, org, 3, RetryPolicy::default(), 60).await;
    let claims = store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap();
    let canceled = store.cancel_campaign(org, campaign.id, t0()).await.unwrap();
    assert_eq!(canceled.status, CampaignStatus::Canceled);
    assert_eq!(canceled.counters.contacts_done, 57);
    assert!(
        store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap().is_empty(),
        "nothing is claimed any more"
    );
    assert!(matches!(store.cancel_campaign(org, campaign.id, t0()).await, Err(StoreError::Conflict(_))));

    // busy would retry in a running campaign; here every call in flight finishes its contact
    for (i, claim) in claims.iter().enumerate() {
        let at = t0() + Duration::seconds(10);
        store.apply_call_event(org, claim.call.id, event(format!("end{i}"), at, ended(EndReason::Busy)), at).await.unwrap();
    }
    let tally = store.contact_tally(org, campaign.id).await.unwrap();
    assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 60)]));
    assert_eq!(tally.by_disposition, BTreeMap::from([(ContactDisposition::Canceled, 60)]));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert!(c.counters.is_finished(), "{:?}", c.counters);
    assert_eq!(store.campaigns_with_status(org, CampaignStatus::Canceled).await.unwrap().len(), 1);
    assert!(store.campaigns_with_status(org, CampaignStatus::Running).await.unwrap().is_empty());
}

/// Claimers and a cancel at once: every contact still ends with a disposition, and none is claimed
/// after the cancel took effect.
pub async fn cancel_racing_claims_leaves_every_contact_finished<S: Store>(store: &S) {
    let org = org(store).await;
    let campaign = running_campaign(store, org, 8, RetryPolicy::default(), 40).await;
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                for _ in 0..5 {
                    claimed.extend(store.claim_due_contacts(org, campaign.id, t0(), 2, chrono::TimeDelta::zero()).await.unwrap());
                    tokio::task::yield_now().await;
                }
                claimed
            })
        })
        .collect();
    let canceled = store.cancel_campaign(org, campaign.id, t0()).await.unwrap();
    let mut claims = Vec::new();
    for c in claimers {
        claims.extend(c.await.unwrap());
    }
    assert!(claims.len() <= 8, "the cap holds: {}", claims.len());
    assert!(store.claim_due_contacts(org, canceled.id, t0(), 8, chrono::TimeDelta::zero()).await.unwrap().is_empty());
    for (i, claim) in claims.iter().enumerate() {
        let at = t0() + Duration::seconds(5);
        store.apply_call_event(org, claim.call.id, event(format!("n{i}"), at, ended(EndReason::NoAnswer)), at).await.unwrap();
    }
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert!(c.counters.is_finished(), "{:?}", c.counters);
    let tally = store.contact_tally(org, campaign.id).await.unwrap();
    assert_eq!(tally.by_disposition.get(&ContactDisposition::Canceled), Some(&40));
    assert_tally_is_a_recount(store, org, campaign.id, "after the race").await;
}

/// The contact counters a report reads move with every write of a contact — imports with
/// duplicates, claims racing each other, calls ending (retried, finished, twice), numbers put on
/// the do-not-call list while claims run, a cancel racing claimers — and equal a recount after each.
pub async fn contact_counters_equal_a_recount_through_every_change<S: Store>(store: &S) {
    let org = org(store).await;
    let policy = RetryPolicy::parse(3, 0, [RetryOutcome::Busy, RetryOutcome::NoAnswer]).unwrap();
    let campaign = running_campaign(store, org, 10, policy, 40).await;
    let id = campaign.id;
    let added = store.add_contacts(org, id, contacts(35..50), t0()).await.unwrap();
    assert_eq!((added.added, added.duplicates), (10, 5));
    assert_tally_is_a_recount(store, org, id, "after an import with duplicates").await;

    let claim_at_once = move |store: S| async move {
        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.claim_due_contacts(org, id, t0(), 4, chrono::TimeDelta::zero()).await.unwrap() })
            })
            .collect();
        let mut claims = Vec::new();
        for c in claimers {
            claims.extend(c.await.unwrap());
        }
        claims
    };
    let claims = claim_at_once(store.clone()).await;
    assert_eq!(claims.len(), 10, "up to the cap");
    assert_tally_is_a_recount(store, org, id, "after racing claims").await;

    let reasons = [EndReason::Busy, EndReason::NoAnswer, EndReason::Completed, EndReason::Failed];
    let enders: Vec<_> = claims
        .iter()
        .enumerate()
        .map(|(i, claim)| {
            let (store, call) = (store.clone(), claim.call.id);
            tokio::spawn(async move {
                for _ in 0..2 {
                    store.apply_call_event(org, call, event(format!("end{i}"), t0(), ended(reasons[i % 4])), t0()).await.unwrap();
                }
            })
        })
        .collect();
    for e in enders {
        e.await.unwrap();
    }
    assert_tally_is_a_recount(store, org, id, "after calls ended, some to be retried").await;

    let listing = {
        let store = store.clone();
        tokio::spawn(async move { store.add_do_not_call(org, (20..26).map(phone).collect(), t0()).await.unwrap() })
    };
    let claims = claim_at_once(store.clone()).await;
    listing.await.unwrap();
    assert_tally_is_a_recount(store, org, id, "after numbers were listed while claims ran").await;

    let claimers = {
        let store = store.clone();
        tokio::spawn(async move { claim_at_once(store).await })
    };
    store.cancel_campaign(org, id, t0()).await.unwrap();
    let late = claimers.await.unwrap();
    for (i, claim) in claims.iter().chain(&late).enumerate() {
        store.apply_call_event(org, claim.call.id, event(format!("last{i}"), t0(), ended(EndReason::Busy)), t0()).await.unwrap();
    }
    assert_tally_is_a_recount(store, org, id, "after a cancel racing claims").await;
    let tally = store.contact_tally(org, id).await.unwrap();
    assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 50)]));
}

async fn campaign_with<S: Store>(store: &S, org: OrgId, cap: i64, settings: CampaignSettings, batch: Vec<NewContact>) -> Campaign {
    let campaign = store.create_campaign(org, NewCampaign::parse("zones", Cap::parse(cap).unwrap(), settings).unwrap()).await.unwrap();
    store.add_contacts(org, campaign.id, batch, t0()).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap()
}

pub async fn claims_leave_contacts_outside_their_calling_window_untouched<S: Store>(store: &S) {
    use chrono_tz::{America, Asia, Europe, Pacific};
    let org = org(store).await;
    // UTC−10 to UTC+9; at 18:30 UTC on a Friday: Honolulu 08:30, Los Angeles 10:30, New York 13:30,
    // London 18:30 are inside 08:00–21:00; Tokyo is at 03:30 on Saturday
    let zones = [Pacific::Honolulu, America::Los_Angeles, America::New_York, Europe::London, Asia::Tokyo];
    let batch: Vec<NewContact> =
        (0..25).map(|n| NewContact::new(phone(n), zones[n as usize % zones.len()], domain::Consent::on_file(chrono::Utc::now()))).collect();
    let campaign = campaign_with(store, org, 50, CampaignSettings::default(), batch).await;
    let at = DateTime::parse_from_rfc3339("2027-01-15T18:30:00Z").unwrap().to_utc();
    let claimed = store.claim_due_contacts(org, campaign.id, at, 50, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(claimed.len(), 20);
    assert!(claimed.iter().all(|c| c.contact.timezone != Asia::Tokyo));
    let early = DateTime::parse_from_rfc3339("2027-01-15T17:30:00Z").unwrap().to_utc();
    let campaign2 = campaign_with(
        store,
        org,
        50,
        CampaignSettings::default(),
        (100..125)
            .map(|n| NewContact::new(phone(n), zones[n as usize % zones.len()], domain::Consent::on_file(chrono::Utc::now())))
            .collect(),
    )
    .await;
    // an hour earlier Honolulu is at 07:30: only Los Angeles, New York and London
    let claimed = store.claim_due_contacts(org, campaign2.id, early, 50, chrono::TimeDelta::zero()).await.unwrap();
    let got: HashSet<_> = claimed.iter().map(|c| c.contact.timezone).collect();
    assert_eq!(got, HashSet::from([America::Los_Angeles, America::New_York, Europe::London]));
    for c in all_contacts(store, org, campaign2.id).await {
        if !got.contains(&c.timezone) {
            assert_eq!((c.state, c.attempts, c.last_call_id), (ContactState::Ready, 0, None), "outside its window: untouched");
        }
    }
}

pub async fn batch_mode_moves_on_only_when_a_batch_is_finished<S: Store>(store: &S) {
    let org = org(store).await;
    let settings = CampaignSettings { mode: domain::DialMode::Batch, batch_size: Some(3), ..Default::default() };
    let campaign = campaign_with(store, org, 10, settings, contacts(0..7)).await;
    let first = store.claim_due_contacts(org, campaign.id, t0(), 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(first.iter().map(|c| c.contact.batch).collect::<Vec<_>>(), vec![0, 0, 0], "only the first batch");
    assert!(
        store.claim_due_contacts(org, campaign.id, t0(), 10, chrono::TimeDelta::zero()).await.unwrap().is_empty(),
        "its calls are still live"
    );
    for (i, claim) in first.iter().enumerate() {
        let reason = if i == 0 { EndReason::Busy } else { EndReason::Completed };
        store.apply_call_event(org, claim.call.id, event("end", t0() + Duration::seconds(30), ended(reason)), t0()).await.unwrap();
    }
    // the busy contact's retry keeps batch 0 open until it is done
    let later = t0() + Duration::minutes(5);
    assert!(
        store.claim_due_contacts(org, campaign.id, later, 10, chrono::TimeDelta::zero()).await.unwrap().is_empty(),
        "a retry of batch 0 is still waiting"
    );
    let retry_due = t0() + Duration::minutes(31);
    let retry = store.claim_due_contacts(org, campaign.id, retry_due, 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!((retry.len(), retry[0].contact.id, retry[0].call.attempt), (1, first[0].contact.id, 2));
    store.apply_call_event(org, retry[0].call.id, event("end2", retry_due, ended(EndReason::Completed)), retry_due).await.unwrap();
    let second = store.claim_due_contacts(org, campaign.id, retry_due, 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(second.iter().map(|c| c.contact.batch).collect::<Vec<_>>(), vec![1, 1, 1]);
    for claim in &second {
        store.apply_call_event(org, claim.call.id, event("end", retry_due, ended(EndReason::Completed)), retry_due).await.unwrap();
    }
    let third = store.claim_due_contacts(org, campaign.id, retry_due, 10, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(third.iter().map(|c| c.contact.batch).collect::<Vec<_>>(), vec![2]);
}

pub async fn listed_numbers_are_finalised_instead_of_claimed<S: Store>(store: &S) {
    let org = org(store).await;
    let campaign =
        store.create_campaign(org, NewCampaign::parse("dnc", Cap::parse(5).unwrap(), CampaignSettings::default()).unwrap()).await.unwrap();
    store.add_contacts(org, campaign.id, contacts(0..4), t0()).await.unwrap();
    // listed while the campaign is a draft: nothing finalised yet, so the claim must check
    store.add_do_not_call(org, vec![phone(1), phone(2)], t0()).await.unwrap();
    store.set_campaign_status(org, campaign.id, &[CampaignStatus::Draft], CampaignStatus::Running, t0()).await.unwrap();
    let claimed = store.claim_due_contacts(org, campaign.id, t0(), 5, chrono::TimeDelta::zero()).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.contact.phone.clone()).collect::<HashSet<_>>(), HashSet::from([phone(0), phone(3)]));
    let done: Vec<_> = all_contacts(store, org, campaign.id).await.into_iter().filter(|c| c.state == ContactState::Done).collect();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|c| c.disposition == Some(ContactDisposition::DoNotCall) && c.attempts == 0));
    let c = store.get_campaign(org, campaign.id).await.unwrap();
    assert_eq!((c.counters.contacts_done, c.counters.active_calls), (2, 2));
}

pub async fn dialing_records_provider_ids_pace_and_caller_ids<S: Store>(store: &S) {
    use std::time::Duration as StdDuration;
    use store::PlacedCall;
    let org = org(store).await;
    let campaign = running_campaign(store, org, 5, RetryPolicy::default(), 3).await;
    let claims = store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap();
    let active = store.active_calls(org, campaign.id).await.unwrap();
    assert_eq!(active.iter().map(|c| c.id).collect::<HashSet<_>>(), claims.iter().map(|c| c.call.id).collect());

    // eight dialers racing for one call: one may dial it; a failed attempt gives it back
    let racing = futures::future::join_all((0..8).map(|_| store.begin_dial(org, claims[0].call.id, t0()))).await;
    assert_eq!(racing.into_iter().filter(|r| *r.as_ref().unwrap()).count(), 1);
    store.abandon_dial(org, claims[0].call.id).await.unwrap();
    assert!(store.begin_dial(org, claims[0].call.id, t0()).await.unwrap());
    let caller = phone(900);
    let placed = |id: &str| PlacedCall {
        provider: domain::CallProvider::Twilio,
        provider_call_id: id.into(),
        caller_id: Some(caller.clone()),
        placed_at: t0(),
    };
    let call = store.record_placed_call(org, claims[0].call.id, placed("CA1")).await.unwrap();
    assert_eq!((call.provider_call_id.as_deref(), call.caller_id.as_ref()), (Some("CA1"), Some(&caller)));
    assert_eq!(store.get_call(org, call.id).await.unwrap(), call);
    assert_eq!(store.get_contact(org, campaign.id, claims[0].contact.id).await.unwrap().caller_id, Some(caller.clone()));
    assert_eq!(store.record_placed_call(org, claims[0].call.id, placed("CA1")).await.unwrap(), call, "the same id again is a no-op");
    assert!(!store.begin_dial(org, claims[0].call.id, t0()).await.unwrap(), "placed: never dialed again");
    assert!(matches!(store.record_placed_call(org, claims[0].call.id, placed("CA2")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.record_placed_call(org, claims[1].call.id, placed("CA1")).await, Err(StoreError::Conflict(_))));
    assert!(store.get_call(org, claims[1].call.id).await.unwrap().provider_call_id.is_none());

    store.apply_call_event(org, claims[2].call.id, event("x", t0(), ended(EndReason::Failed)), t0()).await.unwrap();
    assert_eq!(store.active_calls(org, campaign.id).await.unwrap().len(), 2);

    assert!(store.record_tick_execution(org, campaign.id, "exec-1", t0()).await.unwrap());
    assert!(!store.record_tick_execution(org, campaign.id, "exec-1", t0()).await.unwrap());
    assert!(store.record_tick_execution(org, campaign.id, "exec-2", t0()).await.unwrap());

    // pacing: 4 concurrent reservations at 2 calls/s get 4 distinct slots 500 ms apart
    let pace = domain::Pace::per_second(2.0);
    let account = format!("twilio#{org}");
    let slots = futures::future::join_all((0..4).map(|_| store.reserve_dial_slot(&account, t0(), pace, StdDuration::from_secs(5)))).await;
    let mut at: Vec<_> = slots
        .into_iter()
        .map(|s| match s.unwrap() {
            domain::DialSlot::At(t) => t,
            busy => panic!("{busy:?}"),
        })
        .collect();
    at.sort();
    assert_eq!(at, (0..4).map(|i| t0() + Duration::milliseconds(500 * i)).collect::<Vec<_>>());
    let far = store.reserve_dial_slot(&account, t0(), pace, StdDuration::from_millis(100)).await.unwrap();
    assert_eq!(far, domain::DialSlot::Busy { until: t0() + Duration::seconds(2) }, "nothing reserved beyond the wait allowed");

    // caller IDs rotate least recently used; the preferred one is kept
    let pool = vec![phone(901), phone(902), phone(903)];
    let mut taken = Vec::new();
    for i in 0..6 {
        taken.push(store.take_caller_id(org, &pool, None, t0() + Duration::seconds(i)).await.unwrap().unwrap());
    }
    assert_eq!(taken, [&pool[..], &pool[..]].concat());
    assert_eq!(store.take_caller_id(org, &pool, Some(&pool[2]), t0()).await.unwrap(), Some(pool[2].clone()));
    assert_eq!(store.take_caller_id(org, &[], None, t0()).await.unwrap(), None);
}

pub async fn orphaned_events_wait_for_their_call_and_post_call_is_marked_once<S: Store>(store: &S) {
    use domain::CallProvider;
    use store::{PlacedCall, adopt_orphan_events};
    let org = org(store).await;
    let campaign = running_campaign(store, org, 5, RetryPolicy::default(), 3).await;
    let claims = store.claim_due_contacts(org, campaign.id, t0(), 3, chrono::TimeDelta::zero()).await.unwrap();
    let call_id = claims[0].call.id;

    // news about CAX comes before the dialer stored it: kept once per dedupe key, not applied
    let ringing = event("CAX:1:status", t0(), CallEventKind::Ringing);
    let completed = event("CAX:2:status", t0() + Duration::seconds(40), ended(EndReason::Completed));
    for e in [&ringing, &completed, &ringing] {
        store.record_orphan_event(CallProvider::Twilio, "CAX", e.clone(), t0()).await.unwrap();
    }
    store.record_orphan_event(CallProvider::Twilio, "CAOLD", ringing.clone(), t0() - Duration::days(8)).await.unwrap();
    assert_eq!(store.find_call_by_provider_id(CallProvider::Twilio, "CAX").await.unwrap(), None);
    assert_eq!(adopt_orphan_events(store, CallProvider::Twilio, "CAX", t0()).await.unwrap(), 0, "no call yet");
    assert_eq!(store.orphan_events(CallProvider::Twilio, "CAX").await.unwrap().len(), 2);
    assert_eq!(
        store.orphaned_calls(10, t0() - store::ORPHAN_MEMORY).await.unwrap(),
        vec![(CallProvider::Twilio, "CAX".to_string())],
        "week-old orphans are forgotten"
    );
    assert!(store.orphaned_calls(10, t0() + Duration::seconds(1)).await.unwrap().is_empty(), "only those received since");

    // a simulated call is reported through Twilio's webhooks, so it is found under Twilio
    let placed = PlacedCall { provider: CallProvider::Simulator, provider_call_id: "CAX".into(), caller_id: None, placed_at: t0() };
    store.record_placed_call(org, call_id, placed).await.unwrap();
    assert_eq!(store.find_call_by_provider_id(CallProvider::Twilio, "CAX").await.unwrap(), Some((org, call_id)));
    assert_eq!(store.find_call_by_provider_id(CallProvider::Vapi, "CAX").await.unwrap(), None);
    assert_eq!(adopt_orphan_events(store, CallProvider::Twilio, "CAX", t0()).await.unwrap(), 2);
    let call = store.get_call(org, call_id).await.unwrap();
    assert_eq!((call.state, call.end_reason), (CallState::Ended, Some(EndReason::Completed)));
    assert_eq!(store.list_call_events(org, call_id).await.unwrap().len(), 2);
    assert!(store.orphan_events(CallProvider::Twilio, "CAX").await.unwrap().is_empty());
    assert!(store.orphaned_calls(10, t0() - store::ORPHAN_MEMORY).await.unwrap().is_empty());
    assert_eq!(store.get_campaign(org, campaign.id).await.unwrap().counters.active_calls, 2, "capacity released");

    // post-call work is handed on once; a failed hand-over takes the mark back
    let awaiting = |store: &S| {
        let store = store.clone();
        async move { store.calls_awaiting_post_call(org, campaign.id).await.unwrap().into_iter().map(|c| c.id).collect::<Vec<_>>() }
    };
    assert_eq!(awaiting(store).await, vec![call_id]);
    let marks = futures::future::join_all((0..4).map(|_| store.mark_post_call(org, call_id, Some(t0())))).await;
    assert_eq!(marks.into_iter().filter(|m| *m.as_ref().unwrap()).count(), 1);
    assert!(awaiting(store).await.is_empty());
    assert!(store.mark_post_call(org, call_id, None).await.unwrap());
    assert_eq!(awaiting(store).await, vec![call_id]);
    assert!(store.mark_post_call(org, call_id, Some(t0())).await.unwrap());
    assert_eq!(store.get_call(org, call_id).await.unwrap().post_call_at, Some(t0()));

    // lists filter by state and disposition
    let page = PageRequest::first(10);
    let ids = |p: store::Page<Call>| p.items.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let ended = CallFilter { state: Some(CallState::Ended), disposition: None };
    assert_eq!(ids(store.list_calls(org, campaign.id, ended, page.clone()).await.unwrap()), vec![call_id]);
    let human = CallFilter { state: None, disposition: Some(CallDisposition::AnsweredHuman) };
    assert_eq!(ids(store.list_calls(org, campaign.id, human, page.clone()).await.unwrap()), vec![call_id]);
    let queued = CallFilter { state: Some(CallState::Queued), disposition: None };
    assert_eq!(store.list_calls(org, campaign.id, queued, page.clone()).await.unwrap().items.len(), 2);
    let busy = CallFilter { state: None, disposition: Some(CallDisposition::Busy) };
    assert!(store.list_calls(org, campaign.id, busy, page).await.unwrap().items.is_empty());
}

fn registration(org: OrgId, phone: &str, vapi: Option<&str>) -> CallerId {
    CallerId {
        phone: E164::parse(phone, None).unwrap(),
        org_id: org,
        vapi_phone_number_id: vapi.map(str::to_string),
        elevenlabs_phone_number_id: None,
        registered_at: t0(),
    }
}

pub async fn caller_ids_belong_to_one_organisation<S: Store>(store: &S) {
    let (a, b) = (org(store).await, org(store).await);
    let phone = E164::parse("+14155550100", None).unwrap();
    // organisations racing for one number: exactly one holds it
    let racers = [a, b, a, b].map(|o| {
        let store = store.clone();
        tokio::spawn(async move { store.register_caller_id(registration(o, "+14155550100", None)).await })
    });
    let results: Vec<_> = futures::future::join_all(racers).await.into_iter().map(|r| r.unwrap()).collect();
    let holder = results.iter().find_map(|r| r.as_ref().ok()).expect("one registration wins").org_id;
    for r in &results {
        match r {
            Ok(c) => assert_eq!(c.org_id, holder),
            Err(e) => assert!(matches!(e, StoreError::Conflict(_)), "{e:?}"),
        }
    }
    let (holder, other) = if holder == a { (a, b) } else { (b, a) };
    assert_eq!(store.registered_caller_ids(holder, std::slice::from_ref(&phone)).await.unwrap().len(), 1);
    assert!(store.registered_caller_ids(other, std::slice::from_ref(&phone)).await.unwrap().is_empty());
    assert!(store.list_caller_ids(other, PageRequest::default()).await.unwrap().items.is_empty());
    assert!(!store.remove_caller_id(other, &phone).await.unwrap(), "another organisation cannot remove it");

    // the holder updates its provider ids, keeping the registration time
    let updated = store
        .register_caller_id(CallerId { registered_at: t0() + Duration::hours(1), ..registration(holder, "+14155550100", Some("pn_1")) })
        .await
        .unwrap();
    assert_eq!((updated.vapi_phone_number_id.as_deref(), updated.registered_at), (Some("pn_1"), t0()));
    store.register_caller_id(registration(holder, "+14155550101", None)).await.unwrap();
    let listed = store.list_caller_ids(holder, PageRequest::first(1)).await.unwrap();
    assert_eq!(listed.items, vec![updated.clone()]);
    let rest = store.list_caller_ids(holder, PageRequest { limit: 1, cursor: listed.next_cursor }).await.unwrap();
    assert_eq!(rest.items[0].phone.as_str(), "+14155550101");

    // once removed, the number is free for another organisation
    assert!(store.remove_caller_id(holder, &phone).await.unwrap());
    assert!(!store.remove_caller_id(holder, &phone).await.unwrap());
    assert_eq!(store.register_caller_id(registration(other, "+14155550100", None)).await.unwrap().org_id, other);
    let taken = store.register_caller_id(registration(holder, "+14155550100", None)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
}

pub async fn transcripts_are_kept_in_chunks_of_new_lines<S: Store>(store: &S) {
    let (org, other) = (org(store).await, org(store).await);
    let campaign = running_campaign(store, org, 1, RetryPolicy::default(), 1).await;
    let call = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    assert_eq!(store.call_transcript(org, call.id).await.unwrap(), None);
    store.append_transcript(org, call.id, 0, "agent: Hi.".into()).await.unwrap();
    // a save whose answer was lost is made again from the same line, with more: it replaces the chunk
    store.append_transcript(org, call.id, 1, "user: Hello.".into()).await.unwrap();
    store.append_transcript(org, call.id, 1, "user: Hello.\nagent: How are you?".into()).await.unwrap();
    store.append_transcript(org, call.id, 3, "user: Fine.".into()).await.unwrap();
    let whole = store.call_transcript(org, call.id).await.unwrap();
    assert_eq!(whole.as_deref(), Some("agent: Hi.\nuser: Hello.\nagent: How are you?\nuser: Fine."));
    let unchanged = store.get_call(org, call.id).await.unwrap();
    assert_eq!(
        (unchanged, store.list_call_events(org, call.id).await.unwrap().len()),
        (call.clone(), 0),
        "neither the call nor its log is rewritten"
    );
    assert!(is_not_found(store.call_transcript(other, call.id).await), "another organisation's call is not found");
    assert!(is_not_found(store.append_transcript(other, call.id, 4, "x".into()).await));
}

/// Events of 24 calls — answers, machines, late details that change a finished call's duration,
/// cost and evaluation, opt-outs, duplicates, placements recorded after the end — applied in a
/// shuffled order, 8 at a time: the report counters equal a recount of the calls themselves.
pub async fn report_counters_equal_a_recount_after_reordered_and_repeated_events<S: Store>(store: &S) {
    use domain::{
        AnsweredBy, Money,
        report::{CallFacts, ReportCounts, add_counts},
    };
    let (org, other) = (org(store).await, org(store).await);
    let campaign = running_campaign(store, org, 24, RetryPolicy::default(), 24).await;
    let claims = store.claim_due_contacts(org, campaign.id, t0(), 24, chrono::TimeDelta::zero()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut events: Vec<(domain::CallId, CallEvent)> = Vec::new();
    let mut late_placements = Vec::new();
    for (i, claim) in claims.iter().enumerate() {
        let id = claim.call.id;
        let at = |s: i64| t0() + Duration::seconds(s);
        let placed = store::PlacedCall {
            provider: domain::CallProvider::Simulator,
            provider_call_id: format!("sim-{i}"),
            caller_id: None,
            placed_at: t0(),
        };
        if i % 4 == 0 {
            late_placements.push((id, placed))
        } else {
            store.record_placed_call(org, id, placed).await.unwrap();
        }
        let reason =
            [EndReason::Completed, EndReason::Completed, EndReason::Busy, EndReason::NoAnswer, EndReason::Failed][rng.random_range(0..5)];
        // the calls end over six hours, so the hour counters have several hours to keep
        let end = at(90 + 900 * i as i64);
        let mut mine = vec![event(format!("{i}-ring"), at(1), CallEventKind::Ringing), event(format!("{i}-end"), end, ended(reason))];
        if reason == EndReason::Completed {
            let answered_by = [AnsweredBy::Human, AnsweredBy::Human, AnsweredBy::MachineStart][rng.random_range(0..3)];
            mine.push(event(format!("{i}-answer"), at(5), CallEventKind::Answered));
            mine.push(event(
                format!("{i}-amd"),
                at(6),
                details(CallDetails {
                    answered_by: Some(answered_by),
                    answered_at: Some(at(5)),
                    connected_at: (i % 5 != 0).then(|| at(5) + Duration::milliseconds(rng.random_range(200..4_000))),
                    ..Default::default()
                }),
            ));
            mine.push(event(
                format!("{i}-report"),
                at(95),
                details(CallDetails {
                    duration_secs: Some(rng.random_range(5..300)),
                    cost: Some(Money::parse(&format!("0.{:04}", rng.random_range(1..9_999))).unwrap()),
                    success_evaluation: Some(["true", "false", "7", "unknown"][rng.random_range(0..4)].to_string()),
                    ..Default::default()
                }),
            ));
            // a corrected report and a machine's greeting ending: both move a finished call's facts
            mine.push(event(
                format!("{i}-report-2"),
                at(96),
                details(CallDetails { duration_secs: Some(rng.random_range(5..300)), ..Default::default() }),
            ));
            if answered_by == AnsweredBy::MachineStart {
                mine.push(event(
                    format!("{i}-amd-end"),
                    at(20),
                    details(CallDetails { answered_by: Some(AnsweredBy::MachineEnd), ..Default::default() }),
                ));
            }
            if i % 7 == 0 {
                mine.push(event(format!("{i}-optout"), at(97), details(CallDetails { opted_out: true, ..Default::default() })));
            }
        }
        let repeated = mine[rng.random_range(0..mine.len())].clone();
        mine.push(repeated);
        events.extend(mine.into_iter().map(|e| (id, e)));
    }
    events.shuffle(&mut rng);
    for chunk in events.chunks(8) {
        let applied = chunk.iter().map(|(id, e)| store.apply_call_event(org, *id, e.clone(), t0() + Duration::minutes(2)));
        for result in futures::future::join_all(applied).await {
            result.unwrap();
        }
    }
    for (id, placed) in late_placements {
        store.record_placed_call(org, id, placed).await.unwrap();
    }
    let mut recount = ReportCounts::new();
    let mut hours: std::collections::BTreeMap<DateTime<Utc>, ReportCounts> = Default::default();
    for claim in &claims {
        let call = store.get_call(org, claim.call.id).await.unwrap();
        let facts = CallFacts::of(&call).unwrap();
        add_counts(&mut recount, &facts.counts());
        add_counts(hours.entry(facts.hour).or_default(), &facts.counts());
    }
    assert_eq!(recount["calls"], 24, "every call finished");
    assert_eq!(store.campaign_report_counts(org, campaign.id).await.unwrap(), recount);
    assert!(is_not_found(store.campaign_report_counts(other, campaign.id).await), "another organisation's campaign is not found");
    // each hour's counters equal a recount of the calls that ended in it, and all of them the campaign's
    assert!(hours.len() >= 6, "{} hours", hours.len());
    let (first, last) = (*hours.keys().next().unwrap(), *hours.keys().last().unwrap());
    let everything = store.report_counts_between(org, first, last + Duration::hours(1)).await.unwrap();
    assert_eq!(everything, std::collections::BTreeMap::from([(campaign.id, recount)]));
    for (hour, counts) in &hours {
        let one = store.report_counts_between(org, *hour, *hour + Duration::hours(1)).await.unwrap();
        assert_eq!(one.get(&campaign.id), Some(counts), "the hour {hour}");
    }
    let before_any = store.report_counts_between(org, first - Duration::hours(3), first).await.unwrap();
    assert!(before_any.is_empty(), "the hours before the first end are empty: {before_any:?}");
    assert!(
        store.report_counts_between(other, first, last + Duration::hours(1)).await.unwrap().is_empty(),
        "another organisation has none"
    );
}

/// Organisations are listed page by page, each once; daily reports and their recipients are kept
/// per organisation.
pub async fn daily_reports_and_recipients_are_kept_per_organisation<S: Store>(store: &S) {
    use domain::{EmailAddress, report::DailyReport};
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(org(store).await);
    }
    let mut listed = Vec::new();
    let mut page = PageRequest { limit: 2, cursor: None };
    loop {
        let got = store.list_orgs(page.clone()).await.unwrap();
        assert!(got.items.len() <= 2);
        listed.extend(got.items.into_iter().map(|o| o.id));
        match got.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    for id in &created {
        assert_eq!(listed.iter().filter(|l| *l == id).count(), 1, "each organisation listed once");
    }
    let (org, other) = (created[0], created[1]);
    assert!(store.daily_report_recipients(org).await.unwrap().is_empty());
    let recipients = vec![EmailAddress::parse("ops@example.com").unwrap(), EmailAddress::parse("boss@example.org").unwrap()];
    store.set_daily_report_recipients(org, recipients.clone()).await.unwrap();
    assert_eq!(store.daily_report_recipients(org).await.unwrap(), recipients);
    assert!(store.daily_report_recipients(other).await.unwrap().is_empty(), "another organisation's are its own");
    let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let mut report = DailyReport::new(date, chrono_tz::Europe::London, Vec::new(), t0());
    assert_eq!(store.daily_report(org, date).await.unwrap(), None);
    store.save_daily_report(org, &report).await.unwrap();
    assert_eq!(store.daily_report(org, date).await.unwrap(), Some(report.clone()));
    report.emailed_to = vec!["ops@example.com".into()];
    report.emailed_at = Some(t0());
    store.save_daily_report(org, &report).await.unwrap();
    assert_eq!(store.daily_report(org, date).await.unwrap(), Some(report), "saving again replaces it");
    assert_eq!(store.daily_report(other, date).await.unwrap(), None, "another organisation's report is not shared");
    assert!(is_not_found(store.set_daily_report_recipients(domain::OrgId::new(), Vec::new()).await));
}

/// Many workers ask for the same delivery at once: one gets it until its lease ends or it records
/// the delivery released; the others get nothing, and what they read is what the holder recorded.
pub async fn one_worker_at_a_time_holds_a_crm_delivery<S: Store>(store: &S) {
    use domain::crm::{CrmDelivery, CrmKind, DeliveryStatus};
    let (org, other) = (org(store).await, org(store).await);
    let campaign = running_campaign(store, org, 1, RetryPolicy::default(), 1).await;
    let call = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    let connection = domain::ConnectionId::new();
    let until = t0() + Duration::minutes(5);
    let attempts = (0..8).map(|_| store.lease_crm_delivery(org, call.id, connection, CrmKind::Hubspot, t0(), until));
    let leased: Vec<CrmDelivery> = futures::future::join_all(attempts).await.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(leased.len(), 1, "one of 8 concurrent workers holds it");
    let held = leased.into_iter().next().unwrap();
    assert_eq!((held.status, held.attempts, held.leased_until), (DeliveryStatus::Pending, 0, Some(until)), "new, and leased");
    assert_eq!(store.crm_deliveries(org, call.id).await.unwrap(), vec![held.clone()], "the lease is on record");
    let later = t0() + Duration::minutes(1);
    assert_eq!(
        store.lease_crm_delivery(org, call.id, connection, CrmKind::Hubspot, later, later + Duration::minutes(5)).await.unwrap(),
        None
    );

    // the holder records a step and lets go: the next worker reads it
    let mut progressed = CrmDelivery { attempts: 1, leased_until: None, ..held };
    progressed.steps.contact_id = Some("101".into());
    store.record_crm_delivery(org, progressed.clone()).await.unwrap();
    let next = store.lease_crm_delivery(org, call.id, connection, CrmKind::Hubspot, later, later + Duration::minutes(5)).await.unwrap();
    assert_eq!(next, Some(CrmDelivery { leased_until: Some(later + Duration::minutes(5)), ..progressed.clone() }));
    // a holder that died: its lease runs out and another takes over
    let after = later + Duration::minutes(6);
    let taken = store.lease_crm_delivery(org, call.id, connection, CrmKind::Hubspot, after, after + Duration::minutes(5)).await.unwrap();
    assert_eq!(taken.map(|d| d.steps), Some(progressed.steps));
    assert!(is_not_found(store.lease_crm_delivery(other, call.id, connection, CrmKind::Hubspot, after, after).await));
}

pub async fn crm_connections_belong_to_their_organisation<S: Store>(store: &S) {
    use domain::crm::{ConnectionTarget, CrmConnection};
    let (org, other) = (org(store).await, org(store).await);
    let connection =
        |name: &str, target| CrmConnection { id: domain::ConnectionId::new(), org_id: org, name: name.into(), target, created_at: t0() };
    let hook = connection("Ops", ConnectionTarget::Webhook { url: "https://hooks.example.com/in".into() });
    let ghl = connection(
        "Sales",
        ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: Some("p1".into()), stage_id: Some("s1".into()) },
    );
    assert_eq!(store.create_crm_connection(hook.clone(), "sealed-1".into()).await.unwrap(), hook);
    store.create_crm_connection(ghl.clone(), "sealed-2".into()).await.unwrap();
    let first = store.list_crm_connections(org, PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items, vec![hook.clone()]);
    let rest = store.list_crm_connections(org, PageRequest { limit: 5, cursor: first.next_cursor }).await.unwrap();
    assert_eq!((rest.items, rest.next_cursor), (vec![ghl.clone()], None));
    assert_eq!(store.crm_connection(org, ghl.id).await.unwrap(), (ghl.clone(), "sealed-2".to_string()));
    assert!(is_not_found(store.crm_connection(other, ghl.id).await), "another organisation's is not found");
    assert!(store.list_crm_connections(other, PageRequest::default()).await.unwrap().items.is_empty());
    assert!(!store.delete_crm_connection(other, ghl.id).await.unwrap());
    assert!(store.delete_crm_connection(org, ghl.id).await.unwrap());
    assert!(is_not_found(store.crm_connection(org, ghl.id).await));
    let orphan = CrmConnection { org_id: OrgId::new(), ..hook };
    assert!(is_not_found(store.create_crm_connection(orphan, "x".into()).await), "connections need an existing organisation");
}

pub async fn crm_deliveries_are_kept_per_call_and_connection<S: Store>(store: &S) {
    use domain::crm::{CrmDelivery, CrmKind, DeliveryStatus};
    let (org, other) = (org(store).await, org(store).await);
    let campaign = running_campaign(store, org, 1, RetryPolicy::default(), 1).await;
    let call = store.claim_due_contacts(org, campaign.id, t0(), 1, chrono::TimeDelta::zero()).await.unwrap().remove(0).call;
    let (a, b) = (domain::ConnectionId::new(), domain::ConnectionId::new());
    let pending = CrmDelivery {
        call_id: call.id,
        connection_id: a,
        kind: CrmKind::Webhook,
        status: DeliveryStatus::Pending,
        attempts: 1,
        last_error: Some("the receiver failed (503)".into()),
        delivered_at: None,
        steps: domain::crm::DeliverySteps { contact_id: Some("ct_1".into()), note_id: Some("n_1".into()), ..Default::default() },
        leased_until: None,
    };
    store.record_crm_delivery(org, pending.clone()).await.unwrap();
    assert_eq!(store.crm_deliveries(org, call.id).await.unwrap(), vec![pending.clone()], "the steps done are kept");
    let delivered = CrmDelivery {
        connection_id: b,
        status: DeliveryStatus::Delivered,
        attempts: 1,
        last_error: None,
        delivered_at: Some(t0()),
        ..pending.clone()
    };
    store.record_crm_delivery(org, delivered.clone()).await.unwrap();
    let again = CrmDelivery { status: DeliveryStatus::Delivered, attempts: 2, delivered_at: Some(t0()), ..pending.clone() };
    store.record_crm_delivery(org, again.clone()).await.unwrap();
    let mut kept = store.crm_deliveries(org, call.id).await.unwrap();
    kept.sort_by_key(|d| d.connection_id);
    assert_eq!(kept, vec![again.clone(), delivered.clone()], "one record per (call, connection), the latest");
    assert!(is_not_found(store.crm_deliveries(other, call.id).await));
    assert!(is_not_found(store.record_crm_delivery(other, pending.clone()).await));

    // failed deliveries are found by campaign, page by page; a retried one leaves the list
    let none = store.failed_crm_deliveries(org, campaign.id, PageRequest::default()).await.unwrap();
    assert!(none.items.is_empty());
    let failed_a = CrmDelivery { status: DeliveryStatus::Failed, delivered_at: None, ..again };
    let failed_b = CrmDelivery { status: DeliveryStatus::Failed, delivered_at: None, ..delivered };
    store.record_crm_delivery(org, failed_a.clone()).await.unwrap();
    store.record_crm_delivery(org, failed_b.clone()).await.unwrap();
    let mut expected = vec![failed_a.clone(), failed_b.clone()];
    expected.sort_by_key(|d| d.connection_id);
    let first = store.failed_crm_deliveries(org, campaign.id, PageRequest::first(1)).await.unwrap();
    let rest = store.failed_crm_deliveries(org, campaign.id, PageRequest { limit: 5, cursor: first.next_cursor.clone() }).await.unwrap();
    assert_eq!([first.items, rest.items].concat(), expected);
    assert_eq!(rest.next_cursor, None);
    assert!(store.failed_crm_deliveries(other, campaign.id, PageRequest::default()).await.unwrap().items.is_empty());
    store.record_crm_delivery(org, CrmDelivery { status: DeliveryStatus::Pending, ..failed_a }).await.unwrap();
    let left = store.failed_crm_deliveries(org, campaign.id, PageRequest::default()).await.unwrap();
    assert_eq!(left.items, vec![failed_b]);
}

/// An upload belongs to its organisation's campaign, and its import begins once however many
/// times (and however concurrently) its file's arrival is reported.
pub async fn a_contact_upload_begins_once_and_keeps_its_outcome<S: Store>(store: &S) {
    use domain::upload::{ContactUpload, ImportFormat, ImportReport, UploadStatus};
    let org = org(store).await;
    let other = self::org(store).await;
    let campaign = running_campaign(store, org, 1, RetryPolicy::default(), 0).await;
    let upload = ContactUpload::new(campaign.id, ImportFormat::Csv, Some("US".into()), None, t0());
    assert!(is_not_found(store.create_contact_upload(other, &upload).await), "another organisation's campaign");
    store.create_contact_upload(org, &upload).await.unwrap();
    assert_eq!(store.contact_upload(org, campaign.id, upload.id).await.unwrap(), upload);
    assert!(is_not_found(store.contact_upload(other, campaign.id, upload.id).await));
    assert!(is_not_found(store.contact_upload(org, campaign.id, domain::UploadId::new()).await));

    let begun = futures::future::join_all((0..8).map(|_| store.begin_contact_upload(org, campaign.id, upload.id))).await;
    let winners: Vec<ContactUpload> = begun.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(winners.len(), 1, "exactly one import runs");
    assert_eq!(winners[0].status, UploadStatus::Importing);
    assert!(is_not_found(store.begin_contact_upload(other, campaign.id, upload.id).await));

    let mut done = winners[0].clone();
    done.status = UploadStatus::Imported;
    done.finished_at = Some(t0());
    done.report = Some(ImportReport { imported: 3, duplicate: 1, ..Default::default() });
    store.finish_contact_upload(org, &done).await.unwrap();
    assert_eq!(store.contact_upload(org, campaign.id, upload.id).await.unwrap(), done);
    assert_eq!(store.begin_contact_upload(org, campaign.id, upload.id).await.unwrap(), None, "a late repeat of the event");
    assert!(is_not_found(store.finish_contact_upload(other, &done).await));
}
