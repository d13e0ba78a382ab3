//! The storage port, expressed in domain operations, and its two adapters: SQLite (the embedded
//! default) and DynamoDB (the single-table design). Both pass the same conformance suite.

mod cursor;
pub mod dynamodb;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use cursor::{Cursor, Page, PageRequest, every_page};
pub use dynamodb::DynamoStore;
pub use sqlite::SqliteStore;

use chrono::{DateTime, Utc};
use domain::{
    Assistant, AssistantId, AssistantPatch, AssistantSource, AssistantVersion, Call, CallDisposition, CallEvent, CallId, CallProvider,
    CallState, CallerId, CallingArea, Campaign, CampaignId, CampaignStatus, Contact, ContactDisposition, ContactFate, ContactId,
    ContactState, DialCheck, DialSlot, E164, EmergencyStop, NewAssistant, NewCampaign, NewContact, OrgId, Organisation, Pace, ProviderKind,
    StartRefusal, Transition,
};
use std::{collections::BTreeMap, future::Future};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Absent, or belonging to another organisation: the two are indistinguishable on purpose.
    #[error("{what} {id} was not found")]
    NotFound { what: &'static str, id: String },
    /// The change conflicts with the record's current state.
    #[error("{0}")]
    Conflict(String),
    #[error("the cursor is not one this list handed out; start again without it")]
    InvalidCursor,
    /// An optimistic update named a version that is no longer the current one.
    #[error("version {expected} is stale: the record is at version {current}; read it again and retry")]
    StaleVersion { expected: u32, current: u32 },
    /// A value the caller passed is not acceptable.
    #[error(transparent)]
    Invalid(#[from] domain::ParseError),
    /// A stored record could not be read back: a bug or a manual edit, never user input.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend refused the write as invalid, e.g. an item over DynamoDB's 400 KB: a lasting
    /// error about the data, never a race to retry.
    #[error("the store refused {item}: {reason}")]
    Rejected { item: String, reason: String },
    /// The backend failed, or the change kept losing races past its retries; `source` is the
    /// backend's own error when there is one.
    #[error("storage backend failed: {message}")]
    Backend {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound { what, id: id.to_string() }
    }

    /// A backend failure described in words alone.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend { message: message.into(), source: None }
    }

    /// A backend failure, keeping the backend's error as its source.
    pub fn backend_from(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend { message: message.into(), source: Some(Box::new(source)) }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An API key as stored: only the SHA-256 of its secret is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub hash: KeyHash,
    pub org_id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When a request last used it, to the minute (`KEY_USE_RESOLUTION`).
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether a use at `now` is worth recording: the last one is over `KEY_USE_RESOLUTION` old.
    pub fn use_is_news(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at.is_none_or(|at| now - at >= KEY_USE_RESOLUTION)
    }
}

/// How finely a key's last use is kept: at most one write per key per this much time.
pub const KEY_USE_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// What a new key is called and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiKey {
    pub const MAX_NAME: usize = 100;

    pub fn parse(name: Option<&str>, expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<Self, Vec<domain::ParseError>> {
        let mut errors = Vec::new();
        let name = name.map(str::trim).unwrap_or("default");
        if name.is_empty() || name.chars().count() > Self::MAX_NAME || name.chars().any(char::is_control) {
            errors.push(domain::ParseError::new("name", format!("must be 1–{} characters on one line", Self::MAX_NAME)));
        }
        if expires_at.is_some_and(|at| at <= now) {
            errors.push(domain::ParseError::new("expiresAt", "is not in the future"));
        }
        if errors.is_empty() { Ok(Self { name: name.to_string(), expires_at: expires_at.map(millis) }) } else { Err(errors) }
    }
}

impl NewApiKey {
    /// The key for `org`, with its secret: what both adapters then store (the hash only).
    pub(crate) fn issue(self, org: OrgId) -> CreatedApiKey {
        let secret = new_api_key_secret();
        let key = ApiKey {
            hash: KeyHash::of_secret(&secret),
            org_id: org,
            name: self.name,
            created_at: now(),
            last_used_at: None,
            expires_at: self.expires_at.map(millis),
            revoked_at: None,
        };
        CreatedApiKey { key, secret }
    }
}

impl Default for NewApiKey {
    fn default() -> Self {
        Self { name: "default".into(), expires_at: None }
    }
}

/// SHA-256 of an API key's secret, hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(String);

impl KeyHash {
    pub fn of_secret(secret: &str) -> Self {
        use sha2::{Digest, Sha256};
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's public id: what records name it by (never enough to use it).
    pub fn id(&self) -> String {
        format!("key_{}", &self.0[..16])
    }

    /// A hash as the store kept it.
    pub(crate) fn from_stored(hex: String) -> Self {
        Self(hex)
    }
}

/// The hash prefix a public key id (`key_` + 16 hex digits) stands for; None when it is not one.
pub(crate) fn key_id_prefix(id: &str) -> Option<String> {
    let prefix = id.strip_prefix("key_")?;
    (prefix.len() == 16 && prefix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| prefix.to_string())
}

/// A newly created key: the secret is handed out here, once, and never stored.
#[derive(Clone, Debug)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

pub(crate) fn new_api_key_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("odk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What became of a batch of contacts: added, already in the campaign (or earlier in the batch),
/// or left out because the number is on the organisation's do-not-call list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddedContacts {
    pub added: u64,
    pub duplicates: u64,
    pub do_not_call: u64,
}

/// How a campaign's contacts stand: counts by state and, for finished ones, by disposition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactTally {
    pub by_state: BTreeMap<ContactState, u64>,
    pub by_disposition: BTreeMap<ContactDisposition, u64>,
}

/// Where a contact stands, as its campaign's contact counters see it.
pub(crate) type Standing = (ContactState, Option<ContactDisposition>);

/// The stored names of a campaign's contact counters: `s:<state>` and `d:<disposition>`.
fn standing_counters((state, disposition): Standing) -> impl Iterator<Item = String> {
    std::iter::once(format!("s:{}", state.as_str())).chain(disposition.map(|d| format!("d:{}", d.as_str())))
}

impl ContactTally {
    /// The tally from its stored counters (`s:<state>`, `d:<disposition>`); an unknown name is
    /// corrupt data, a counter at zero is left out.
    pub fn from_counters(counters: impl IntoIterator<Item = (String, i64)>) -> Result<Self> {
        let mut tally = Self::default();
        for (name, value) in counters {
            let n = u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("contact counter {name} is {value}")))?;
            if n == 0 {
                continue;
            }
            let known = match name.split_once(':') {
                Some(("s", state)) => ContactState::parse(state).map(|s| tally.by_state.insert(s, n)),
                Some(("d", disposition)) => ContactDisposition::parse(disposition).map(|d| tally.by_disposition.insert(d, n)),
                _ => None,
            };
            if known.is_none() {
                return Err(StoreError::Corrupt(format!("unknown contact counter {name}")));
            }
        }
        Ok(tally)
    }
}

/// How a write moves a campaign's contact counters, by stored name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ContactMoves(BTreeMap<String, i64>);

impl ContactMoves {
    /// Adds one contact going from `before` (None: new) to `after`.
    pub fn record(&mut self, before: Option<Standing>, after: Standing) {
        if before == Some(after) {
            return;
        }
        for name in before.into_iter().flat_map(standing_counters) {
            *self.0.entry(name).or_default() -= 1;
        }
        for name in standing_counters(after) {
            *self.0.entry(name).or_default() += 1;
        }
        self.0.retain(|_, by| *by != 0);
    }

    /// The counters that move, by how much.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(name, by)| (name.as_str(), *by))
    }
}

/// A number the organisation must never call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoNotCallEntry {
    pub phone: E164,
    pub added_at: DateTime<Utc>,
}

/// A number taken off the do-not-call list: who took it off and when, kept for audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoNotCallRemoval {
    pub phone: E164,
    pub removed_at: DateTime<Utc>,
    /// The API key (`key_…`) or operator that removed it.
    pub removed_by: String,
}

/// What adding numbers to the do-not-call list did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoNotCallAdded {
    pub added: u64,
    pub already_listed: u64,
    /// Ready contacts of running or paused campaigns finalised as `do_not_call`.
    pub contacts_finalised: u64,
}

/// One contact claimed for its next attempt, with the queued call that will carry it.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub contact: Contact,
    pub call: Call,
}

/// What applying one event did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The event had been applied before (same dedupe key): nothing changed.
    pub duplicate: bool,
    pub call: Call,
    /// None for a duplicate.
    pub transition: Option<Transition>,
    /// The contact's fate when this event decided it.
    pub contact_fate: Option<ContactFate>,
}

/// An event as kept in a call's append-only log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCallEvent {
    pub event: CallEvent,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContactFilter {
    pub state: Option<ContactState>,
    pub disposition: Option<ContactDisposition>,
}

/// Organisations and their API keys.
pub trait OrgStore: Send + Sync {
    fn create_org(&self, name: &str) -> impl Future<Output = Result<Organisation>> + Send;
    fn get_org(&self, id: OrgId) -> impl Future<Output = Result<Organisation>> + Send;
    /// Creates a key and returns its secret, the only time it is ever seen.
    fn create_named_api_key(&self, org: OrgId, new: NewApiKey) -> impl Future<Output = Result<CreatedApiKey>> + Send;
    /// A key named "default" that does not expire.
    fn create_api_key(&self, org: OrgId) -> impl Future<Output = Result<CreatedApiKey>> + Send {
        self.create_named_api_key(org, NewApiKey::default())
    }
    /// The key with this hash, in any state.
    fn api_key(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<ApiKey>>> + Send;
    /// The key with this public id (`key_…`), in any state, across organisations (the operator's CLI).
    fn api_key_by_id(&self, id: &str) -> impl Future<Output = Result<Option<ApiKey>>> + Send;
    /// The organisation a key belongs to; None when unknown, revoked or expired.
    fn org_for_api_key(&self, hash: &KeyHash) -> impl Future<Output = Result<Option<OrgId>>> + Send {
        async move { Ok(self.api_key(hash).await?.filter(|k| k.is_active(now())).map(|k| k.org_id)) }
    }
    /// The organisation's keys, revoked and expired ones included, oldest first.
    fn list_api_keys(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<ApiKey>>> + Send;
    /// Revokes the organisation's key `id` (`key_…`); not found when it is another's. Revoking twice is fine.
    fn revoke_api_key(&self, org: OrgId, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Records that the key was used at `at`, unless a use within `KEY_USE_RESOLUTION` before is recorded.
    fn record_api_key_use(&self, hash: &KeyHash, at: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    /// Sets (Some) or lifts (None) the organisation's emergency stop; the organisation as it is now.
    fn set_emergency_stop(&self, org: OrgId, stop: Option<EmergencyStop>) -> impl Future<Output = Result<Organisation>> + Send;
    /// Every organisation of the deployment, oldest first (the daily report visits each).
    fn list_orgs(&self, page: PageRequest) -> impl Future<Output = Result<Page<Organisation>>> + Send;
}

/// What reports keep beyond a campaign's counters: the counters of each hour, and the daily reports.
pub trait ReportStore: Send + Sync {
    /// The counters of the organisation's calls that ended in `[from, to)` (whole hours), by campaign.
    fn report_counts_between(
        &self,
        org: OrgId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<BTreeMap<CampaignId, domain::report::ReportCounts>>> + Send;
    /// The organisation's stored report of `date`.
    fn daily_report(&self, org: OrgId, date: chrono::NaiveDate)
    -> impl Future<Output = Result<Option<domain::report::DailyReport>>> + Send;
    /// Keeps the report, replacing one of the same date.
    fn save_daily_report(&self, org: OrgId, report: &domain::report::DailyReport) -> impl Future<Output = Result<()>> + Send;
    /// Who receives the organisation's daily report by email.
    fn daily_report_recipients(&self, org: OrgId) -> impl Future<Output = Result<Vec<domain::EmailAddress>>> + Send;
    fn set_daily_report_recipients(&self, org: OrgId, recipients: Vec<domain::EmailAddress>) -> impl Future<Output = Result<()>> + Send;
}

/// Contact files uploaded for import, and what each import did.
pub trait UploadStore: Send + Sync {
    /// Keeps a new upload of the organisation's campaign (not found: the campaign is not its).
    fn create_contact_upload(&self, org: OrgId, upload: &domain::upload::ContactUpload) -> impl Future<Output = Result<()>> + Send;
    fn contact_upload(
        &self,
        org: OrgId,
        campaign: CampaignId,
        id: domain::UploadId,
    ) -> impl Future<Output = Result<domain::upload::ContactUpload>> + Send;
    /// Moves a waiting upload to importing, once: None when it is not waiting (its file's arrival
    /// was already reported — object storage events come at least once).
    fn begin_contact_upload(
        &self,
        org: OrgId,
        campaign: CampaignId,
        id: domain::UploadId,
    ) -> impl Future<Output = Result<Option<domain::upload::ContactUpload>>> + Send;
    /// Records how its import ended.
    fn finish_contact_upload(&self, org: OrgId, upload: &domain::upload::ContactUpload) -> impl Future<Output = Result<()>> + Send;
}

/// Campaigns and their contacts.
pub trait CampaignStore: Send + Sync {
    fn create_campaign(&self, org: OrgId, campaign: NewCampaign) -> impl Future<Output = Result<Campaign>> + Send;
    fn get_campaign(&self, org: OrgId, id: CampaignId) -> impl Future<Output = Result<Campaign>> + Send;
    fn list_campaigns(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<Campaign>>> + Send;
    /// Every campaign of the organisation in `status`.
    fn campaigns_with_status(&self, org: OrgId, status: CampaignStatus) -> impl Future<Output = Result<Vec<Campaign>>> + Send;
    /// Every campaign of the organisation whose calls `assistant` makes, in any status.
    fn campaigns_using_assistant(&self, org: OrgId, assistant: AssistantId) -> impl Future<Output = Result<Vec<Campaign>>> + Send;
    /// Moves the campaign to `to` if its status is one of `from`; otherwise a conflict.
    fn set_campaign_status(
        &self,
        org: OrgId,
        id: CampaignId,
        from: &[CampaignStatus],
        to: CampaignStatus,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Campaign>> + Send;
    /// Cancels a draft, running or paused campaign and finalises its ready contacts as `canceled`;
    /// contacts being dialed are left to their calls (which then retry nothing).
    fn cancel_campaign(&self, org: OrgId, id: CampaignId, now: DateTime<Utc>) -> impl Future<Output = Result<Campaign>> + Send;
    /// Adds contacts; a phone number already in the campaign (or earlier in the batch) is a
    /// duplicate, one on the organisation's do-not-call list is left out.
    fn add_contacts(
        &self,
        org: OrgId,
        campaign: CampaignId,
        contacts: Vec<NewContact>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<AddedContacts>> + Send;
    fn get_contact(&self, org: OrgId, campaign: CampaignId, id: ContactId) -> impl Future<Output = Result<Contact>> + Send;
    /// Records why the campaign's scheduled start did not start it.
    fn record_start_refusal(&self, org: OrgId, id: CampaignId, refusal: StartRefusal) -> impl Future<Output = Result<()>> + Send;
    /// The zones and US states the campaign's contacts are in.
    fn calling_areas(&self, org: OrgId, campaign: CampaignId) -> impl Future<Output = Result<Vec<CallingArea>>> + Send;
    /// The campaign's contacts counted by state and disposition.
    fn contact_tally(&self, org: OrgId, campaign: CampaignId) -> impl Future<Output = Result<ContactTally>> + Send;
    fn list_contacts(
        &self,
        org: OrgId,
        campaign: CampaignId,
        filter: ContactFilter,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Contact>>> + Send;
}

/// Calls: claiming contacts under the cap, and applying what providers report.
pub trait CallStore: Send + Sync {
    /// Atomically claims up to `max` contacts that are ready, due at `now` and inside their legal
    /// calling window (the campaign's window ∩ federal ∩ state hours, in their own zone, open for
    /// `margin` more), in claim order, never taking the campaign above its cap; each becomes a
    /// queued call. A contact whose number is on the do-not-call list is finalised as
    /// `do_not_call` instead, and none is claimed if the number is listed in the same instant. In
    /// batch mode only the current batch is claimed from, and the campaign moves to the next batch
    /// once the current one has nothing ready or dialing. Empty unless the campaign is running and
    /// the organisation's emergency stop is off.
    fn claim_due_contacts(
        &self,
        org: OrgId,
        campaign: CampaignId,
        now: DateTime<Utc>,
        max: u32,
        margin: chrono::TimeDelta,
    ) -> impl Future<Output = Result<Vec<Claim>>> + Send;
    /// Appends the event to the call's log once (by dedupe key), advances the state machine,
    /// releases capacity on the terminal transition and settles the contact per the retry policy.
    fn apply_call_event(
        &self,
        org: OrgId,
        call: CallId,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Applied>> + Send;
    fn get_call(&self, org: OrgId, id: CallId) -> impl Future<Output = Result<Call>> + Send;
    /// The campaign's report counters (`domain::report`), kept as its calls end.
    fn campaign_report_counts(&self, org: OrgId, campaign: CampaignId)
    -> impl Future<Output = Result<domain::report::ReportCounts>> + Send;
    /// The campaign's calls in creation order, filtered.
    fn list_calls(
        &self,
        org: OrgId,
        campaign: CampaignId,
        filter: CallFilter,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Call>>> + Send;
    /// Keeps the transcript lines from `first_line` on, as one chunk (a chunk written again from
    /// the same line replaces it), without rewriting the call or anything said before: a long call's
    /// transcript costs what it says, not its square.
    fn append_transcript(&self, org: OrgId, call: CallId, first_line: u32, lines: String) -> impl Future<Output = Result<()>> + Send;
    /// The transcript the chunks hold, in order; None when there are none.
    fn call_transcript(&self, org: OrgId, call: CallId) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The call's event log, oldest first.
    fn list_call_events(&self, org: OrgId, call: CallId) -> impl Future<Output = Result<Vec<StoredCallEvent>>> + Send;
    /// The call (and its organisation) whose calls `provider`'s webhooks report under `provider_call_id`
    /// (see `CallProvider::reported_by`). Not organisation-scoped: webhooks carry no API key, their
    /// signature is checked instead.
    fn find_call_by_provider_id(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
    ) -> impl Future<Output = Result<Option<(OrgId, CallId)>>> + Send;
    /// The organisation of call `call` (not organisation-scoped: for signed webhooks that carry our call id).
    fn call_owner(&self, call: CallId) -> impl Future<Output = Result<Option<OrgId>>> + Send;
    /// Keeps an event for a provider call id no call has (yet): once per dedupe key, for `ORPHAN_MEMORY`.
    fn record_orphan_event(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The orphaned events of one provider call id, oldest first.
    fn orphan_events(&self, provider: CallProvider, provider_call_id: &str) -> impl Future<Output = Result<Vec<StoredCallEvent>>> + Send;
    /// Up to `limit` provider call ids with events kept since `received_since`, oldest first.
    /// Events older than `ORPHAN_MEMORY` are forgotten.
    fn orphaned_calls(&self, limit: u32, received_since: DateTime<Utc>)
    -> impl Future<Output = Result<Vec<(CallProvider, String)>>> + Send;
    fn remove_orphan_events(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        dedupe_keys: Vec<String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The campaign's terminal calls whose post-call work is not done yet.
    fn calls_awaiting_post_call(&self, org: OrgId, campaign: CampaignId) -> impl Future<Output = Result<Vec<Call>>> + Send;
    /// Marks the call's post-call work as handed on at `at` (true unless it already was), or with
    /// None takes the mark back after the hand-over failed.
    fn mark_post_call(&self, org: OrgId, call: CallId, at: Option<DateTime<Utc>>) -> impl Future<Output = Result<bool>> + Send;
}

/// How long an event for an unknown provider call id is kept waiting for its call.
pub const ORPHAN_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(7);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub state: Option<CallState>,
    pub disposition: Option<CallDisposition>,
}

/// Applies the orphaned events of `provider_call_id` to its call once the call is known; how many
/// were applied (duplicates included). Safe to run concurrently: events apply once by dedupe key.
pub async fn adopt_orphan_events<S: CallStore>(
    store: &S,
    provider: CallProvider,
    provider_call_id: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let Some((org, call)) = store.find_call_by_provider_id(provider, provider_call_id).await? else { return Ok(0) };
    let orphans = store.orphan_events(provider, provider_call_id).await?;
    let mut keys = Vec::with_capacity(orphans.len());
    for orphan in orphans {
        keys.push(orphan.event.dedupe_key.clone());
        store.apply_call_event(org, call, orphan.event, orphan.received_at.min(now)).await?;
    }
    let adopted = keys.len();
    if adopted > 0 {
        store.remove_orphan_events(provider, provider_call_id, keys).await?;
    }
    Ok(adopted)
}

/// A call the provider accepted, as the dialer records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedCall {
    pub provider: CallProvider,
    pub provider_call_id: String,
    pub caller_id: Option<E164>,
    pub placed_at: DateTime<Utc>,
}

/// What the tick and the dialer need beyond claiming: the sweep's view of live calls, idempotent
/// schedule executions, the provider call id guard, pacing and caller-ID rotation.
pub trait DialingStore: Send + Sync {
    /// The campaign's calls that are not terminal (at most its cap).
    fn active_calls(&self, org: OrgId, campaign: CampaignId) -> impl Future<Output = Result<Vec<Call>>> + Send;
    /// Whether schedule execution `execution_id` of the campaign ran to completion before.
    fn has_tick_run(&self, org: OrgId, campaign: CampaignId, execution_id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Records that schedule execution `execution_id` ran for the campaign; false when it already had.
    fn record_tick_execution(
        &self,
        org: OrgId,
        campaign: CampaignId,
        execution_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Takes the right to dial a queued call that has no provider id and no other dialer placing
    /// it; false when it cannot be taken. A crash while holding it leaves the call to the sweep.
    fn begin_dial(&self, org: OrgId, call: CallId, now: DateTime<Utc>) -> impl Future<Output = Result<bool>> + Send;
    /// Gives the right back after a failure that will be retried.
    fn abandon_dial(&self, org: OrgId, call: CallId) -> impl Future<Output = Result<()>> + Send;
    /// Everything the dial-time checks need, read afresh and consistently: the call, its campaign
    /// and contact, the emergency stop, and whether the number is on the do-not-call list.
    fn dial_check(&self, org: OrgId, call: CallId) -> impl Future<Output = Result<DialCheck>> + Send;
    /// Stores the provider's call id on the call (one provider id ↔ one call) and the caller ID on
    /// its contact, also when the call already ended (its later callbacks still find it; the
    /// caller sees it terminal and hangs the call up). Recording the same id again is a no-op;
    /// another id is a conflict.
    fn record_placed_call(&self, org: OrgId, call: CallId, placed: PlacedCall) -> impl Future<Output = Result<Call>> + Send;
    /// Reserves the next start slot of provider account `account` under `pace`.
    fn reserve_dial_slot(
        &self,
        account: &str,
        now: DateTime<Utc>,
        pace: Pace,
        max_wait: std::time::Duration,
    ) -> impl Future<Output = Result<DialSlot>> + Send;
    /// Picks the caller ID for a call (see `domain::dialing::choose_caller_id`) and marks it used.
    fn take_caller_id(
        &self,
        org: OrgId,
        pool: &[E164],
        preferred: Option<&E164>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<E164>>> + Send;
}

/// The organisation's do-not-call list.
pub trait DoNotCallStore: Send + Sync {
    /// Lists the numbers and finalises their ready contacts in running or paused campaigns.
    fn add_do_not_call(&self, org: OrgId, phones: Vec<E164>, now: DateTime<Utc>) -> impl Future<Output = Result<DoNotCallAdded>> + Send;
    /// Takes a number off the list and records who did and when (`list_do_not_call_removals`);
    /// false, with nothing recorded, when it was not on it.
    fn remove_do_not_call(&self, org: OrgId, phone: &E164, by: &str, now: DateTime<Utc>) -> impl Future<Output = Result<bool>> + Send;
    /// Every removal from the list, oldest first.
    fn list_do_not_call_removals(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<DoNotCallRemoval>>> + Send;
    fn is_do_not_call(&self, org: OrgId, phone: &E164) -> impl Future<Output = Result<bool>> + Send;
    /// The list, in number order.
    fn list_do_not_call(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<DoNotCallEntry>>> + Send;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssistantFilter {
    pub active: Option<bool>,
    pub source: Option<AssistantSource>,
}

/// The assistant directory: one record per (organisation, provider, provider id), every change
/// kept as a numbered version.
pub trait AssistantStore: Send + Sync {
    /// Adds an assistant at version 1; a conflict when its provider id is already in the directory.
    fn create_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> impl Future<Output = Result<Assistant>> + Send;
    /// Adds the assistant, or updates the one with the same provider id (true when created).
    fn import_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>)
    -> impl Future<Output = Result<(Assistant, bool)>> + Send;
    fn get_assistant(&self, org: OrgId, id: AssistantId) -> impl Future<Output = Result<Assistant>> + Send;
    fn list_assistants(
        &self,
        org: OrgId,
        filter: AssistantFilter,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Assistant>>> + Send;
    /// Applies `patch` if the assistant is still at `expected_version`.
    fn update_assistant(
        &self,
        org: OrgId,
        id: AssistantId,
        expected_version: u32,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Assistant>> + Send;
    /// Removes it from the directory (never at the provider).
    fn delete_assistant(&self, org: OrgId, id: AssistantId) -> impl Future<Output = Result<()>> + Send;
    /// The organisation that owns `provider_id` at `provider` in this deployment (the first to
    /// create or import it), across organisations: every organisation shares the provider accounts.
    fn provider_id_owner(&self, provider: ProviderKind, provider_id: &str) -> impl Future<Output = Result<Option<OrgId>>> + Send;
    /// Every version, oldest first.
    fn list_assistant_versions(&self, org: OrgId, id: AssistantId) -> impl Future<Output = Result<Vec<AssistantVersion>>> + Send;
}

/// The caller-ID registry: each number belongs to at most one organisation of the deployment.
pub trait CallerIdStore: Send + Sync {
    /// Registers the number to `caller.org_id`, or updates the organisation's own registration
    /// (its provider ids); a conflict when another organisation holds it.
    fn register_caller_id(&self, caller: CallerId) -> impl Future<Output = Result<CallerId>> + Send;
    /// Takes the organisation's number off the registry; false when it had not registered it.
    fn remove_caller_id(&self, org: OrgId, phone: &E164) -> impl Future<Output = Result<bool>> + Send;
    /// The organisation's numbers, in number order.
    fn list_caller_ids(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<CallerId>>> + Send;
    /// The organisation's registrations among `phones`.
    fn registered_caller_ids(&self, org: OrgId, phones: &[E164]) -> impl Future<Output = Result<Vec<CallerId>>> + Send;
}

/// The organisation's CRM connections. Their secrets are stored sealed (`platform::SecretBox`):
/// the store never sees them in the clear.
pub trait CrmStore: Send + Sync {
    fn create_crm_connection(
        &self,
        connection: domain::crm::CrmConnection,
        sealed_secret: String,
    ) -> impl Future<Output = Result<domain::crm::CrmConnection>> + Send;
    /// The organisation's connections, oldest first.
    fn list_crm_connections(&self, org: OrgId, page: PageRequest) -> impl Future<Output = Result<Page<domain::crm::CrmConnection>>> + Send;
    /// A connection and its sealed secret (for whoever delivers to it).
    fn crm_connection(
        &self,
        org: OrgId,
        id: domain::ConnectionId,
    ) -> impl Future<Output = Result<(domain::crm::CrmConnection, String)>> + Send;
    /// Removes it; false when the organisation has no such connection.
    fn delete_crm_connection(&self, org: OrgId, id: domain::ConnectionId) -> impl Future<Output = Result<bool>> + Send;
    /// Takes the call's delivery to the connection for one worker until `until` and returns it as
    /// recorded (a new pending one the first time); None while another worker's lease runs. The
    /// holder's `record_crm_delivery` keeps or ends the lease with the `leased_until` it writes.
    fn lease_crm_delivery(
        &self,
        org: OrgId,
        call: CallId,
        connection: domain::ConnectionId,
        kind: domain::crm::CrmKind,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<domain::crm::CrmDelivery>>> + Send;
    /// Records where a call's delivery to a connection stands (replacing what was recorded).
    fn record_crm_delivery(&self, org: OrgId, delivery: domain::crm::CrmDelivery) -> impl Future<Output = Result<()>> + Send;
    /// The call's deliveries, by connection id.
    fn crm_deliveries(&self, org: OrgId, call: CallId) -> impl Future<Output = Result<Vec<domain::crm::CrmDelivery>>> + Send;
    /// The campaign's deliveries that failed for good, by call then connection.
    fn failed_crm_deliveries(
        &self,
        org: OrgId,
        campaign: CampaignId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<domain::crm::CrmDelivery>>> + Send;
}

/// Everything outdial stores; each function asks only for the part it uses.
pub trait Store:
    OrgStore
    + CampaignStore
    + CallStore
    + DialingStore
    + AssistantStore
    + DoNotCallStore
    + CallerIdStore
    + CrmStore
    + ReportStore
    + UploadStore
    + Clone
    + 'static
{
}
impl<
    T: OrgStore
        + CampaignStore
        + CallStore
        + DialingStore
        + AssistantStore
        + DoNotCallStore
        + CallerIdStore
        + CrmStore
        + ReportStore
        + UploadStore
        + Clone
        + 'static,
> Store for T
{
}

/// "running or paused", for conflict messages.
pub(crate) fn statuses(list: &[CampaignStatus]) -> String {
    list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
}

/// Timestamps are kept to the millisecond, so what is returned equals what is read back.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

pub(crate) fn now() -> DateTime<Utc> {
    millis(Utc::now())
}

/// The event with its times kept to the millisecond.
pub(crate) fn normalised(mut event: CallEvent) -> CallEvent {
    event.occurred_at = millis(event.occurred_at);
    event
}

/// What settling a contact did to its campaign's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// How `contacts_done` moves.
    pub done: i64,
    /// How `calls_total` moves: a withdrawn call gives its attempt back.
    pub calls: i64,
}

/// The contact's settled state after an event decided it, and how the campaign's counters move.
pub(crate) fn settle_contact(contact: &mut Contact, call: &Call, campaign: &Campaign) -> Option<(ContactFate, Settled)> {
    if !contact.is_decided_by(call.id, call.attempt) {
        return None;
    }
    let fate = campaign.fate_after_call(call, contact)?;
    let was_done = contact.state == ContactState::Done;
    contact.settle_call(call, fate);
    let done = i64::from(fate.is_done()) - i64::from(was_done);
    Some((fate, Settled { done, calls: -i64::from(call.was_withdrawn()) }))
}
