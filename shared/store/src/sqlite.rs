//! The embedded store: one SQLite file (or `:memory:`), schema created on open, versioned
//! migrations, every operation one `BEGIN IMMEDIATE` transaction.

use crate::{
    AddedContacts, ApiKey, Applied, AssistantFilter, AssistantStore, CallFilter, CallStore, CampaignStore, Claim, ContactFilter,
    ContactTally, CreatedApiKey, Cursor, DialingStore, DoNotCallAdded, DoNotCallEntry, DoNotCallStore, KeyHash, ORPHAN_MEMORY, OrgStore,
    Page, PageRequest, PlacedCall, Result, StoreError, StoredCallEvent, millis, new_api_key_secret, normalised, now, settle_contact,
    statuses,
};
use chrono::{DateTime, Utc};
use domain::{
    Assistant, AssistantId, AssistantPatch, AssistantVersion, Call, CallDisposition, CallEvent, CallId, CallProvider, CallState,
    CallingArea, Campaign, CampaignCounters, CampaignId, CampaignStatus, Cap, Contact, ContactDisposition, ContactFate, ContactId,
    ContactState, DialCheck, DialSlot, E164, EmergencyStop, EndReason, NewAssistant, NewCampaign, NewContact, OrgId, Organisation, Pace,
    StartRefusal, UsState,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::{path::Path, sync::mpsc};

/// Schema migrations, applied in order; the index + 1 is the version recorded.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    cap INTEGER NOT NULL,
    settings TEXT NOT NULL,
    active_calls INTEGER NOT NULL DEFAULT 0 CHECK (active_calls >= 0 AND active_calls <= cap),
    contacts_total INTEGER NOT NULL DEFAULT 0,
    contacts_done INTEGER NOT NULL DEFAULT 0,
    calls_total INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER
);
CREATE INDEX campaigns_by_org ON campaigns(org_id, id);
CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    phone TEXT NOT NULL,
    name TEXT,
    timezone TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    disposition TEXT,
    last_call_id TEXT,
    variables TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (campaign_id, phone)
);
CREATE INDEX contacts_by_campaign ON contacts(campaign_id, id);
CREATE INDEX contacts_ready ON contacts(campaign_id, due_at, priority DESC, id) WHERE state = 'ready';
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    attempt INTEGER NOT NULL,
    phone TEXT NOT NULL,
    state TEXT NOT NULL,
    end_reason TEXT,
    ended_at INTEGER,
    details TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_status_at INTEGER NOT NULL,
    UNIQUE (contact_id, attempt)
);
CREATE INDEX calls_by_campaign ON calls(campaign_id, id);
CREATE TABLE call_events (
    call_id TEXT NOT NULL REFERENCES calls(id),
    dedupe_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (call_id, dedupe_key)
);
"#,
    r#"
CREATE TABLE assistants (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    provider TEXT NOT NULL,
    provider_assistant_id TEXT,
    source TEXT NOT NULL,
    active INTEGER NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (org_id, provider, provider_assistant_id)
);
CREATE INDEX assistants_by_org ON assistants(org_id, id);
CREATE TABLE assistant_versions (
    assistant_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (assistant_id, version)
);
"#,
    r#"
ALTER TABLE campaigns ADD COLUMN assistant_id TEXT;
CREATE INDEX campaigns_by_assistant ON campaigns(org_id, assistant_id) WHERE assistant_id IS NOT NULL;
"#,
    r#"
CREATE TABLE do_not_call (
    org_id TEXT NOT NULL REFERENCES organisations(id),
    phone TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
CREATE INDEX ready_contacts_by_phone ON contacts(phone) WHERE state = 'ready';
CREATE INDEX campaigns_by_status ON campaigns(org_id, status);
"#,
    r#"
ALTER TABLE contacts ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN caller_id TEXT;
DROP INDEX contacts_ready;
CREATE INDEX contacts_ready ON contacts(campaign_id, batch, timezone, due_at, priority DESC, id) WHERE state = 'ready';
ALTER TABLE campaigns ADD COLUMN current_batch INTEGER NOT NULL DEFAULT 0;
CREATE TABLE campaign_zones (
    campaign_id TEXT NOT NULL,
    timezone TEXT NOT NULL,
    PRIMARY KEY (campaign_id, timezone)
) WITHOUT ROWID;
INSERT OR IGNORE INTO campaign_zones SELECT DISTINCT campaign_id, timezone FROM contacts;
ALTER TABLE calls ADD COLUMN provider_call_id TEXT;
ALTER TABLE calls ADD COLUMN caller_id TEXT;
ALTER TABLE calls ADD COLUMN placed_at INTEGER;
ALTER TABLE calls ADD COLUMN dialing_since INTEGER;
ALTER TABLE calls ADD COLUMN provider TEXT;
CREATE UNIQUE INDEX calls_by_provider_id ON calls(provider, provider_call_id) WHERE provider_call_id IS NOT NULL;
CREATE INDEX calls_active ON calls(campaign_id, last_status_at) WHERE state IN ('queued', 'ringing', 'in_progress');
CREATE TABLE tick_executions (
    campaign_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, execution_id)
) WITHOUT ROWID;
CREATE TABLE dial_pace (
    account TEXT PRIMARY KEY,
    next_free INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE caller_id_usage (
    org_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (org_id, phone)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE calls ADD COLUMN post_call_at INTEGER;
ALTER TABLE calls ADD COLUMN disposition TEXT;
CREATE INDEX calls_awaiting_post_call ON calls(campaign_id) WHERE post_call_at IS NULL AND state IN ('ended', 'failed', 'canceled', 'timeout');
CREATE TABLE orphan_events (
    provider TEXT NOT NULL,
    provider_call_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (provider, provider_call_id, dedupe_key)
) WITHOUT ROWID;
CREATE INDEX orphan_events_by_age ON orphan_events(received_at);
"#,
    // dial-path safety: the emergency stop, legal calling areas (zone + US state), consent, and
    // calls no longer unique per attempt number (a withdrawn call gives its attempt back)
    r#"
ALTER TABLE organisations ADD COLUMN emergency_stop TEXT;
ALTER TABLE campaigns ADD COLUMN start_refused TEXT;
ALTER TABLE contacts ADD COLUMN us_state TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN consent TEXT;
DROP INDEX contacts_ready;
CREATE INDEX contacts_ready ON contacts(campaign_id, batch, timezone, us_state, due_at, priority DESC, id) WHERE state = 'ready';
CREATE TABLE campaign_areas (
    campaign_id TEXT NOT NULL,
    timezone TEXT NOT NULL,
    us_state TEXT NOT NULL,
    PRIMARY KEY (campaign_id, timezone, us_state)
) WITHOUT ROWID;
DROP TABLE campaign_zones;
CREATE TABLE calls_v7 (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    contact_id TEXT NOT NULL REFERENCES contacts(id),
    attempt INTEGER NOT NULL,
    phone TEXT NOT NULL,
    state TEXT NOT NULL,
    end_reason TEXT,
    ended_at INTEGER,
    details TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_status_at INTEGER NOT NULL,
    provider_call_id TEXT,
    caller_id TEXT,
    placed_at INTEGER,
    dialing_since INTEGER,
    provider TEXT,
    post_call_at INTEGER,
    disposition TEXT
);
INSERT INTO calls_v7 (id, org_id, campaign_id, contact_id, attempt, phone, state, end_reason, ended_at, details, created_at,
    last_status_at, provider_call_id, caller_id, placed_at, dialing_since, provider, post_call_at, disposition)
SELECT id, org_id, campaign_id, contact_id, attempt, phone, state, end_reason, ended_at, details, created_at,
    last_status_at, provider_call_id, caller_id, placed_at, dialing_since, provider, post_call_at, disposition FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v7 RENAME TO calls;
CREATE INDEX calls_by_campaign ON calls(campaign_id, id);
CREATE UNIQUE INDEX calls_by_provider_id ON calls(provider, provider_call_id) WHERE provider_call_id IS NOT NULL;
CREATE INDEX calls_active ON calls(campaign_id, last_status_at) WHERE state IN ('queued', 'ringing', 'in_progress');
CREATE INDEX calls_awaiting_post_call ON calls(campaign_id) WHERE post_call_at IS NULL AND state IN ('ended', 'failed', 'canceled', 'timeout');
"#,
];

/// The migration after which contacts existing before US states were kept get theirs.
const STATES_MIGRATION: usize = 7;

/// Gives contacts imported before states were kept the state of their area code, and every
/// campaign the calling areas of its contacts.
fn backfill_states(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let phones: Vec<(String, String)> = tx
        .prepare("SELECT id, phone FROM contacts WHERE us_state = ''")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(backend)?;
    let mut set = tx.prepare("UPDATE contacts SET us_state = ?2 WHERE id = ?1").map_err(backend)?;
    for (id, phone) in phones {
        if let Some(state) = E164::try_from(phone).ok().as_ref().and_then(UsState::of_number) {
            set.execute(params![id, state.as_str()]).map_err(backend)?;
        }
    }
    tx.execute_batch("INSERT OR IGNORE INTO campaign_areas SELECT DISTINCT campaign_id, timezone, us_state FROM contacts;").map_err(backend)
}

/// The SQLite store. Cheap to clone; all clones share one connection, owned by one thread.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    schema_version: u32,
}

/// Work for the connection's thread. Jobs run one at a time, in the order they were sent.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path.as_ref()).map_err(backend)?;
        Self::from_connection(conn)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::from_connection(Connection::open_in_memory().map_err(backend)?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self> {
        // foreign keys are enforced once migrations (which rebuild tables) are done
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; PRAGMA busy_timeout = 5000;",
        )
        .map_err(backend)?;
        migrate(&mut conn)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;").map_err(backend)?;
        let schema_version = schema_version(&conn)?;
        let (jobs, pending) = mpsc::channel::<Job>();
        // one thread owns the connection: no lock to contend for and one wake-up per operation;
        // it ends when the last clone of the store is dropped
        std::thread::Builder::new()
            .name("sqlite-store".into())
            .spawn(move || {
                while let Ok(job) = pending.recv() {
                    // a panicking operation fails alone (its transaction rolls back as it unwinds)
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the store's thread: {e}")))?;
        Ok(Self { jobs, schema_version })
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// Runs `work` on the connection's thread and waits for its result.
    async fn on_connection<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // the caller may have gone away (a dropped request); its result goes with it
            let _ = done.send(work(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::Backend("the store's connection thread has stopped".into()))?;
        result.await.map_err(|_| StoreError::Backend("the store's connection thread stopped during an operation".into()))?
    }

    /// Runs `work` in one immediate (write-locking) transaction.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.on_connection(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let out = work(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    /// Runs a read-only `work`.
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.on_connection(move |conn| work(conn)).await
    }
}

fn schema_version(conn: &Connection) -> Result<u32> {
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(backend)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);")
        .map_err(backend)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
    let current = schema_version(&tx)? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database is at schema version {current}, newer than this build knows ({}); upgrade outdial",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(backend)?;
        if i + 1 == STATES_MIGRATION {
            backfill_states(&tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, Utc::now().timestamp_millis()],
        )
        .map_err(backend)?;
    }
    // rebuilt tables must still satisfy every foreign key
    let broken: Option<String> = tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional().map_err(backend)?;
    if let Some(table) = broken {
        return Err(StoreError::Corrupt(format!("a migration left a broken foreign key in {table}")));
    }
    tx.commit().map_err(backend)
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| conversion(format!("timestamp {v} out of range")))
}

fn count(v: i64) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|_| conversion(format!("negative counter {v}")))
}

fn conversion(msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, msg.into())
}

fn parsed<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> rusqlite::Result<T> {
    r.map_err(|e| conversion(e.to_string()))
}

fn json<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    parsed(serde_json::from_str(&text))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values serialise")
}

/// `rusqlite` row decoding errors are stored-data corruption, not backend failures.
fn decoding(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => corrupt(e),
        other => backend(other),
    }
}

const CAMPAIGN_COLUMNS: &str = "id, org_id, name, status, cap, settings, active_calls, contacts_total, contacts_done, calls_total, created_at, started_at, completed_at, assistant_id, current_batch, start_refused";

fn campaign_row(r: &Row<'_>) -> rusqlite::Result<Campaign> {
    Ok(Campaign {
        id: parsed(CampaignId::parse(&r.get::<_, String>(0)?))?,
        org_id: parsed(OrgId::parse(&r.get::<_, String>(1)?))?,
        name: r.get(2)?,
        status: CampaignStatus::parse(&r.get::<_, String>(3)?).ok_or_else(|| conversion("unknown campaign status".into()))?,
        cap: parsed(Cap::parse(r.get(4)?))?,
        settings: json(r.get(5)?)?,
        counters: CampaignCounters {
            active_calls: r.get(6)?,
            contacts_total: count(r.get(7)?)?,
            contacts_done: count(r.get(8)?)?,
            calls_total: count(r.get(9)?)?,
        },
        created_at: from_ms(r.get(10)?)?,
        started_at: r.get::<_, Option<i64>>(11)?.map(from_ms).transpose()?,
        completed_at: r.get::<_, Option<i64>>(12)?.map(from_ms).transpose()?,
        assistant_id: r.get::<_, Option<String>>(13)?.map(|id| parsed(AssistantId::parse(&id))).transpose()?,
        current_batch: r.get(14)?,
        start_refused: r.get::<_, Option<String>>(15)?.map(json).transpose()?,
    })
}

const CONTACT_COLUMNS: &str = "id, campaign_id, phone, name, timezone, priority, state, attempts, due_at, disposition, last_call_id, variables, created_at, batch, caller_id, us_state, consent";

fn contact_row(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: parsed(ContactId::parse(&r.get::<_, String>(0)?))?,
        campaign_id: parsed(CampaignId::parse(&r.get::<_, String>(1)?))?,
        phone: parsed(E164::try_from(r.get::<_, String>(2)?))?,
        name: r.get(3)?,
        timezone: parsed(r.get::<_, String>(4)?.parse::<chrono_tz::Tz>())?,
        priority: r.get(5)?,
        state: ContactState::parse(&r.get::<_, String>(6)?).ok_or_else(|| conversion("unknown contact state".into()))?,
        attempts: r.get(7)?,
        due_at: from_ms(r.get(8)?)?,
        disposition: r
            .get::<_, Option<String>>(9)?
            .map(|d| ContactDisposition::parse(&d).ok_or_else(|| conversion(format!("unknown disposition {d}"))))
            .transpose()?,
        last_call_id: r.get::<_, Option<String>>(10)?.map(|id| parsed(CallId::parse(&id))).transpose()?,
        variables: json(r.get(11)?)?,
        created_at: from_ms(r.get(12)?)?,
        batch: r.get(13)?,
        caller_id: r.get::<_, Option<String>>(14)?.map(|p| parsed(E164::try_from(p))).transpose()?,
        us_state: Some(r.get::<_, String>(15)?).filter(|s| !s.is_empty()).map(|s| parsed(UsState::parse(&s))).transpose()?,
        consent: r.get::<_, Option<String>>(16)?.map(json).transpose()?,
    })
}

/// A contact's US state as kept in its column: empty when unknown.
fn state_text(state: Option<UsState>) -> String {
    state.map(|s| s.to_string()).unwrap_or_default()
}

const CALL_COLUMNS: &str = "id, org_id, campaign_id, contact_id, attempt, phone, state, end_reason, ended_at, details, created_at, last_status_at, provider_call_id, caller_id, placed_at, dialing_since, post_call_at";

fn call_row(r: &Row<'_>) -> rusqlite::Result<Call> {
    Ok(Call {
        id: parsed(CallId::parse(&r.get::<_, String>(0)?))?,
        org_id: parsed(OrgId::parse(&r.get::<_, String>(1)?))?,
        campaign_id: parsed(CampaignId::parse(&r.get::<_, String>(2)?))?,
        contact_id: parsed(ContactId::parse(&r.get::<_, String>(3)?))?,
        attempt: r.get(4)?,
        phone: parsed(E164::try_from(r.get::<_, String>(5)?))?,
        state: CallState::parse(&r.get::<_, String>(6)?).ok_or_else(|| conversion("unknown call state".into()))?,
        end_reason: r
            .get::<_, Option<String>>(7)?
            .map(|s| EndReason::parse(&s).ok_or_else(|| conversion(format!("unknown end reason {s}"))))
            .transpose()?,
        ended_at: r.get::<_, Option<i64>>(8)?.map(from_ms).transpose()?,
        details: json(r.get(9)?)?,
        created_at: from_ms(r.get(10)?)?,
        last_status_at: from_ms(r.get(11)?)?,
        provider_call_id: r.get(12)?,
        caller_id: r.get::<_, Option<String>>(13)?.map(|p| parsed(E164::try_from(p))).transpose()?,
        placed_at: r.get::<_, Option<i64>>(14)?.map(from_ms).transpose()?,
        dialing_since: r.get::<_, Option<i64>>(15)?.map(from_ms).transpose()?,
        post_call_at: r.get::<_, Option<i64>>(16)?.map(from_ms).transpose()?,
    })
}

fn end_reason_text(call: &Call) -> Option<&'static str> {
    call.end_reason.map(EndReason::as_str)
}

fn insert_call(tx: &rusqlite::Transaction<'_>, call: &Call) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO calls ({CALL_COLUMNS}, disposition) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            call.id.to_string(),
            call.org_id.to_string(),
            call.campaign_id.to_string(),
            call.contact_id.to_string(),
            call.attempt,
            call.phone.as_str(),
            call.state.as_str(),
            end_reason_text(call),
            call.ended_at.map(ms),
            to_json(&call.details),
            ms(call.created_at),
            ms(call.last_status_at),
            call.provider_call_id,
            call.caller_id.as_ref().map(E164::as_str),
            call.placed_at.map(ms),
            call.dialing_since.map(ms),
            call.post_call_at.map(ms),
            call.disposition().map(CallDisposition::as_str),
        ])
    })
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Conflict(format!("attempt {} of contact {} already has a call", call.attempt, call.contact_id))
        }
        other => backend(other),
    })?;
    Ok(())
}

fn update_contact(tx: &rusqlite::Transaction<'_>, c: &Contact) -> Result<()> {
    tx.prepare_cached(
        "UPDATE contacts SET state = ?2, attempts = ?3, due_at = ?4, disposition = ?5, last_call_id = ?6, caller_id = ?7 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.id.to_string(),
            c.state.as_str(),
            c.attempts,
            ms(c.due_at),
            c.disposition.map(ContactDisposition::as_str),
            c.last_call_id.map(|id| id.to_string()),
            c.caller_id.as_ref().map(E164::as_str),
        ])
    })
    .map_err(backend)?;
    Ok(())
}

fn contact_in(conn: &Connection, campaign: CampaignId, id: ContactId) -> Result<Contact> {
    conn.prepare_cached(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?1 AND campaign_id = ?2"))
        .and_then(|mut s| s.query_row(params![id.to_string(), campaign.to_string()], contact_row).optional())
        .map_err(decoding)?
        .ok_or_else(|| StoreError::not_found("contact", id))
}

fn areas_of(conn: &Connection, campaign: CampaignId) -> Result<Vec<CallingArea>> {
    conn.prepare_cached("SELECT timezone, us_state FROM campaign_areas WHERE campaign_id = ?1")
        .and_then(|mut s| {
            s.query_map(params![campaign.to_string()], |r| {
                let (zone, state) = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
                parsed(CallingArea::parse_key(&format!("{zone}|{state}")))
            })?
            .collect()
        })
        .map_err(decoding)
}

fn campaign_in_org(conn: &Connection, org: OrgId, id: CampaignId) -> Result<Campaign> {
    conn.prepare_cached(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1 AND org_id = ?2"))
        .and_then(|mut s| s.query_row(params![id.to_string(), org.to_string()], campaign_row).optional())
        .map_err(decoding)?
        .ok_or_else(|| StoreError::not_found("campaign", id))
}

fn call_in_org(conn: &Connection, org: OrgId, id: CallId) -> Result<Call> {
    conn.prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?1 AND org_id = ?2"))
        .and_then(|mut s| s.query_row(params![id.to_string(), org.to_string()], call_row).optional())
        .map_err(decoding)?
        .ok_or_else(|| StoreError::not_found("call", id))
}

/// Where a list page of rows ordered by id starts.
#[derive(serde::Serialize, serde::Deserialize)]
struct After {
    after: String,
}

/// Reads `limit + 1` rows after the cursor, ordered by id, and turns the extra one into the next cursor.
fn id_page<T>(
    conn: &Connection,
    sql: &str,
    scope: &[&dyn rusqlite::ToSql],
    page: &PageRequest,
    decode: fn(&Row<'_>) -> rusqlite::Result<T>,
    id_of: fn(&T) -> String,
) -> Result<Page<T>> {
    let after = match &page.cursor {
        Some(c) => c.decode::<After>()?.after,
        None => String::new(),
    };
    let limit = i64::from(page.limit) + 1;
    let mut args: Vec<&dyn rusqlite::ToSql> = scope.to_vec();
    args.push(&after);
    args.push(&limit);
    let mut items = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(args.as_slice(), decode)?.collect::<rusqlite::Result<Vec<T>>>())
        .map_err(decoding)?;
    let next_cursor = if items.len() > page.limit as usize {
        items.truncate(page.limit as usize);
        items.last().map(|last| Cursor::encode(&After { after: id_of(last) }))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

impl OrgStore for SqliteStore {
    async fn create_org(&self, name: &str) -> Result<Organisation> {
        let name = Organisation::parse_name(name)?;
        let org = Organisation { id: OrgId::new(), name, created_at: now(), emergency_stop: None };
        let row = org.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO organisations (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![row.id.to_string(), row.name, ms(row.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(org)
    }

    async fn get_org(&self, id: OrgId) -> Result<Organisation> {
        self.read(move |conn| org_in(conn, id)).await
    }

    async fn set_emergency_stop(&self, org: OrgId, stop: Option<EmergencyStop>) -> Result<Organisation> {
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute("UPDATE organisations SET emergency_stop = ?2 WHERE id = ?1", params![org.to_string(), stop.as_ref().map(to_json)])
                .map_err(backend)?;
            org_in(tx, org)
        })
        .await
    }

    async fn create_api_key(&self, org: OrgId) -> Result<CreatedApiKey> {
        let secret = new_api_key_secret();
        let key = ApiKey { hash: KeyHash::of_secret(&secret), org_id: org, created_at: now(), revoked_at: None };
        let row = key.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO api_keys (hash, org_id, created_at) VALUES (?1, ?2, ?3)",
                params![row.hash.as_str(), org.to_string(), ms(row.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(CreatedApiKey { key, secret })
    }

    async fn org_for_api_key(&self, hash: &KeyHash) -> Result<Option<OrgId>> {
        let hash = hash.as_str().to_string();
        self.read(move |conn| {
            let org: Option<String> = conn
                .prepare_cached("SELECT org_id FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")
                .and_then(|mut s| s.query_row(params![hash], |r| r.get(0)).optional())
                .map_err(backend)?;
            org.map(|o| OrgId::parse(&o).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn revoke_api_key(&self, org: OrgId, hash: &KeyHash) -> Result<()> {
        let hash = hash.clone();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE hash = ?1 AND org_id = ?2",
                    params![hash.as_str(), org.to_string(), ms(now())],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::not_found("api key", &hash.as_str()[..12]));
            }
            Ok(())
        })
        .await
    }
}

fn org_in(conn: &Connection, id: OrgId) -> Result<Organisation> {
    conn.prepare_cached("SELECT id, name, created_at, emergency_stop FROM organisations WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row(params![id.to_string()], |r| {
                Ok(Organisation {
                    id,
                    name: r.get(1)?,
                    created_at: from_ms(r.get(2)?)?,
                    emergency_stop: r.get::<_, Option<String>>(3)?.map(json).transpose()?,
                })
            })
            .optional()
        })
        .map_err(decoding)?
        .ok_or_else(|| StoreError::not_found("organisation", id))
}

/// Whether the organisation's emergency stop holds.
fn is_stopped(conn: &Connection, org: OrgId) -> Result<bool> {
    let stop: Option<Option<String>> = conn
        .prepare_cached("SELECT emergency_stop FROM organisations WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![org.to_string()], |r| r.get(0)).optional())
        .map_err(backend)?;
    Ok(stop.flatten().is_some())
}

/// Whether `phone` is on the organisation's do-not-call list.
fn is_listed(conn: &Connection, org: OrgId, phone: &E164) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM do_not_call WHERE org_id = ?1 AND phone = ?2")
        .and_then(|mut s| s.exists(params![org.to_string(), phone.as_str()]))
        .map_err(backend)
}

fn org_exists(conn: &Connection, org: OrgId) -> Result<()> {
    let found: Option<i64> =
        conn.query_row("SELECT 1 FROM organisations WHERE id = ?1", params![org.to_string()], |r| r.get(0)).optional().map_err(backend)?;
    found.map(|_| ()).ok_or_else(|| StoreError::not_found("organisation", org))
}

impl CampaignStore for SqliteStore {
    async fn create_campaign(&self, org: OrgId, new: NewCampaign) -> Result<Campaign> {
        let campaign = Campaign::draft(org, new, now());
        let c = campaign.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO campaigns (id, org_id, name, status, cap, settings, created_at, assistant_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.id.to_string(),
                    org.to_string(),
                    c.name,
                    c.status.as_str(),
                    c.cap.get(),
                    to_json(&c.settings),
                    ms(c.created_at),
                    c.assistant_id.map(|a| a.to_string())
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(campaign)
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        self.read(move |conn| campaign_in_org(conn, org, id)).await
    }

    async fn list_campaigns(&self, org: OrgId, page: PageRequest) -> Result<Page<Campaign>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
            id_page(conn, &sql, &[&org.to_string()], &page, campaign_row, |c| c.id.to_string())
        })
        .await
    }

    async fn campaigns_with_status(&self, org: OrgId, status: CampaignStatus) -> Result<Vec<Campaign>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = ?1 AND status = ?2 ORDER BY id");
            let mut statement = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = statement.query_map(params![org.to_string(), status.as_str()], campaign_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(decoding)
        })
        .await
    }

    async fn cancel_campaign(&self, org: OrgId, id: CampaignId, now: DateTime<Utc>) -> Result<Campaign> {
        let now = millis(now);
        self.write(move |tx| {
            let mut campaign = campaign_in_org(tx, org, id)?;
            let from = [CampaignStatus::Draft, CampaignStatus::Running, CampaignStatus::Paused];
            if !from.contains(&campaign.status) {
                return Err(StoreError::Conflict(format!("campaign {id} is {}, not {}", campaign.status.as_str(), statuses(&from))));
            }
            let finalised = tx
                .execute(
                    "UPDATE contacts SET state = 'done', disposition = 'canceled', due_at = ?2 WHERE campaign_id = ?1 AND state = 'ready'",
                    params![id.to_string(), ms(now)],
                )
                .map_err(backend)? as u64;
            campaign.status = CampaignStatus::Canceled;
            campaign.completed_at = Some(now);
            campaign.counters.contacts_done += finalised;
            tx.execute(
                "UPDATE campaigns SET status = 'canceled', completed_at = ?2, contacts_done = ?3 WHERE id = ?1",
                params![id.to_string(), ms(now), campaign.counters.contacts_done as i64],
            )
            .map_err(backend)?;
            Ok(campaign)
        })
        .await
    }

    async fn campaigns_using_assistant(&self, org: OrgId, assistant: AssistantId) -> Result<Vec<Campaign>> {
        self.read(move |conn| {
            let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = ?1 AND assistant_id = ?2 ORDER BY id");
            let mut statement = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = statement.query_map(params![org.to_string(), assistant.to_string()], campaign_row).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(decoding)
        })
        .await
    }

    async fn set_campaign_status(
        &self,
        org: OrgId,
        id: CampaignId,
        from: &[CampaignStatus],
        to: CampaignStatus,
        now: DateTime<Utc>,
    ) -> Result<Campaign> {
        let now = millis(now);
        let from = from.to_vec();
        self.write(move |tx| {
            let mut campaign = campaign_in_org(tx, org, id)?;
            if !from.contains(&campaign.status) {
                return Err(StoreError::Conflict(format!("campaign {id} is {}, not {}", campaign.status.as_str(), statuses(&from))));
            }
            campaign.status = to;
            if to == CampaignStatus::Running && campaign.started_at.is_none() {
                campaign.started_at = Some(now);
            }
            if matches!(to, CampaignStatus::Completed | CampaignStatus::Canceled) {
                campaign.completed_at = Some(now);
            }
            tx.execute(
                "UPDATE campaigns SET status = ?2, started_at = ?3, completed_at = ?4 WHERE id = ?1",
                params![id.to_string(), to.as_str(), campaign.started_at.map(ms), campaign.completed_at.map(ms)],
            )
            .map_err(backend)?;
            Ok(campaign)
        })
        .await
    }

    async fn add_contacts(&self, org: OrgId, campaign: CampaignId, contacts: Vec<NewContact>, now: DateTime<Utc>) -> Result<AddedContacts> {
        let now = millis(now);
        self.write(move |tx| {
            let target = campaign_in_org(tx, org, campaign)?;
            let mut outcome = AddedContacts::default();
            let mut listed = tx.prepare_cached("SELECT 1 FROM do_not_call WHERE org_id = ?1 AND phone = ?2").map_err(backend)?;
            let mut area = tx
                .prepare_cached("INSERT OR IGNORE INTO campaign_areas (campaign_id, timezone, us_state) VALUES (?1, ?2, ?3)")
                .map_err(backend)?;
            let org = org.to_string();
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO contacts ({CONTACT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                ))
                .map_err(backend)?;
            for new in contacts {
                if listed.exists(params![org, new.phone.as_str()]).map_err(backend)? {
                    outcome.do_not_call += 1;
                    continue;
                }
                let mut c = Contact::ready(campaign, new, now);
                c.batch = target.batch_of(target.counters.contacts_total + outcome.added);
                area.execute(params![campaign.to_string(), c.timezone.name(), state_text(c.us_state)]).map_err(backend)?;
                let added = insert
                    .execute(params![
                        c.id.to_string(),
                        campaign.to_string(),
                        c.phone.as_str(),
                        c.name,
                        c.timezone.name(),
                        c.priority,
                        c.state.as_str(),
                        c.attempts,
                        ms(c.due_at),
                        Option::<String>::None,
                        Option::<String>::None,
                        to_json(&c.variables),
                        ms(c.created_at),
                        c.batch,
                        Option::<String>::None,
                        state_text(c.us_state),
                        c.consent.as_ref().map(to_json),
                    ])
                    .map_err(backend)?;
                if added == 1 {
                    outcome.added += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
            tx.execute(
                "UPDATE campaigns SET contacts_total = contacts_total + ?2 WHERE id = ?1",
                params![campaign.to_string(), outcome.added as i64],
            )
            .map_err(backend)?;
            Ok(outcome)
        })
        .await
    }

    async fn get_contact(&self, org: OrgId, campaign: CampaignId, id: ContactId) -> Result<Contact> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            contact_in(conn, campaign, id)
        })
        .await
    }

    async fn record_start_refusal(&self, org: OrgId, id: CampaignId, refusal: StartRefusal) -> Result<()> {
        self.write(move |tx| {
            campaign_in_org(tx, org, id)?;
            tx.execute("UPDATE campaigns SET start_refused = ?2 WHERE id = ?1", params![id.to_string(), to_json(&refusal)])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn calling_areas(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<CallingArea>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            areas_of(conn, campaign)
        })
        .await
    }

    async fn list_contacts(&self, org: OrgId, campaign: CampaignId, filter: ContactFilter, page: PageRequest) -> Result<Page<Contact>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            let campaign = campaign.to_string();
            let state = filter.state.map(ContactState::as_str);
            let disposition = filter.disposition.map(ContactDisposition::as_str);
            let sql = format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE campaign_id = ?1 AND (?2 IS NULL OR state = ?2) \
                 AND (?3 IS NULL OR disposition = ?3) AND id > ?4 ORDER BY id LIMIT ?5"
            );
            id_page(conn, &sql, &[&campaign, &state, &disposition], &page, contact_row, |c| c.id.to_string())
        })
        .await
    }

    async fn contact_tally(&self, org: OrgId, campaign: CampaignId) -> Result<ContactTally> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            let mut statement = conn
                .prepare_cached("SELECT state, disposition, COUNT(*) FROM contacts WHERE campaign_id = ?1 GROUP BY state, disposition")
                .map_err(backend)?;
            let rows = statement
                .query_map(params![campaign.to_string()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(backend)?;
            let mut tally = ContactTally::default();
            for row in rows {
                let (state, disposition, n) = row.map_err(backend)?;
                let state = ContactState::parse(&state).ok_or_else(|| corrupt(format!("unknown contact state {state}")))?;
                *tally.by_state.entry(state).or_default() += n as u64;
                if let Some(d) = disposition {
                    let d = ContactDisposition::parse(&d).ok_or_else(|| corrupt(format!("unknown disposition {d}")))?;
                    *tally.by_disposition.entry(d).or_default() += n as u64;
                }
            }
            Ok(tally)
        })
        .await
    }
}

impl CallStore for SqliteStore {
    async fn claim_due_contacts(
        &self,
        org: OrgId,
        campaign: CampaignId,
        now: DateTime<Utc>,
        max: u32,
        margin: chrono::TimeDelta,
    ) -> Result<Vec<Claim>> {
        let now = millis(now);
        self.write(move |tx| {
            let mut c = campaign_in_org(tx, org, campaign)?;
            let n = c.free_slots().min(max) as usize;
            if c.status != CampaignStatus::Running || n == 0 || is_stopped(tx, org)? {
                return Ok(Vec::new());
            }
            let id = campaign.to_string();
            let has_ready = |batch: u32| {
                tx.prepare_cached("SELECT 1 FROM contacts WHERE campaign_id = ?1 AND batch = ?2 AND state = 'ready' LIMIT 1")
                    .and_then(|mut s| s.exists(params![id, batch]))
                    .map_err(backend)
            };
            if c.may_advance_batch() && !has_ready(c.current_batch)? {
                let next: Option<u32> = tx
                    .query_row(
                        "SELECT MIN(batch) FROM contacts WHERE campaign_id = ?1 AND state = 'ready' AND batch > ?2",
                        params![id, c.current_batch],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                if let Some(next) = next {
                    tx.execute("UPDATE campaigns SET current_batch = ?2 WHERE id = ?1", params![id, next]).map_err(backend)?;
                    c.current_batch = next;
                }
            }
            let open = c.open_areas(&areas_of(tx, campaign)?, now, margin);
            let batch = c.claimable_batch();
            let mut claims = Vec::with_capacity(n);
            let mut done = 0;
            loop {
                let want = n - claims.len();
                let mut due = Vec::new();
                for area in &open {
                    let mut rows = tx
                        .prepare_cached(&format!(
                            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE campaign_id = ?1 AND batch = ?2 AND timezone = ?3 \
                             AND us_state = ?4 AND state = 'ready' AND due_at <= ?5 ORDER BY due_at, priority DESC, id LIMIT ?6"
                        ))
                        .and_then(|mut s| {
                            s.query_map(params![id, batch, area.zone.name(), state_text(area.state), ms(now), want as i64], contact_row)?
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(decoding)?;
                    due.append(&mut rows);
                }
                if due.is_empty() {
                    break;
                }
                due.sort_by(domain::dialing::claim_order);
                due.truncate(want);
                for mut contact in due {
                    if is_listed(tx, org, &contact.phone)? {
                        contact.settle(ContactFate::Done(ContactDisposition::DoNotCall), now);
                        update_contact(tx, &contact)?;
                        done += 1;
                        continue;
                    }
                    contact.attempts += 1;
                    contact.state = ContactState::Dialing;
                    let call = Call::queued(org, campaign, contact.id, contact.attempts, contact.phone.clone(), now);
                    contact.last_call_id = Some(call.id);
                    insert_call(tx, &call)?;
                    update_contact(tx, &contact)?;
                    claims.push(Claim { contact, call });
                }
                if claims.len() >= n {
                    break;
                }
            }
            tx.execute(
                "UPDATE campaigns SET active_calls = active_calls + ?2, calls_total = calls_total + ?2, contacts_done = contacts_done + ?3 \
                 WHERE id = ?1",
                params![id, claims.len() as i64, done],
            )
            .map_err(backend)?;
            Ok(claims)
        })
        .await
    }

    async fn apply_call_event(&self, org: OrgId, call_id: CallId, event: CallEvent, received_at: DateTime<Utc>) -> Result<Applied> {
        let (event, received_at) = (normalised(event), millis(received_at));
        self.write(move |tx| {
            let mut call = call_in_org(tx, org, call_id)?;
            let appended = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO call_events (call_id, dedupe_key, seq, occurred_at, received_at, kind) \
                     VALUES (?1, ?2, (SELECT COUNT(*) FROM call_events WHERE call_id = ?1), ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![call_id.to_string(), event.dedupe_key, ms(event.occurred_at), ms(received_at), to_json(&event.kind)])
                })
                .map_err(backend)?;
            if appended == 0 {
                return Ok(Applied { duplicate: true, call, transition: None, contact_fate: None });
            }
            let absorbed = call.absorb(&event);
            tx.prepare_cached(
                "UPDATE calls SET state = ?2, end_reason = ?3, ended_at = ?4, details = ?5, last_status_at = ?6, disposition = ?7 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    call_id.to_string(),
                    call.state.as_str(),
                    end_reason_text(&call),
                    call.ended_at.map(ms),
                    to_json(&call.details),
                    ms(call.last_status_at),
                    call.disposition().map(CallDisposition::as_str),
                ])
            })
            .map_err(backend)?;
            let mut contact_fate = None;
            let mut settled = crate::Settled::default();
            if absorbed.decides_contact(&call) {
                let campaign = campaign_in_org(tx, org, call.campaign_id)?;
                let mut contact = contact_in(tx, call.campaign_id, call.contact_id)?;
                if let Some((fate, moved)) = settle_contact(&mut contact, &call, &campaign) {
                    update_contact(tx, &contact)?;
                    contact_fate = Some(fate);
                    settled = moved;
                }
            }
            let released = i64::from(absorbed.transition.releases_capacity);
            if released != 0 || settled != crate::Settled::default() {
                tx.prepare_cached(
                    "UPDATE campaigns SET active_calls = active_calls - ?2, contacts_done = contacts_done + ?3, \
                     calls_total = calls_total + ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![call.campaign_id.to_string(), released, settled.done, settled.calls]))
                .map_err(backend)?;
            }
            Ok(Applied { duplicate: false, call, transition: Some(absorbed.transition), contact_fate })
        })
        .await
    }

    async fn get_call(&self, org: OrgId, id: CallId) -> Result<Call> {
        self.read(move |conn| call_in_org(conn, org, id)).await
    }

    async fn list_calls(&self, org: OrgId, campaign: CampaignId, filter: CallFilter, page: PageRequest) -> Result<Page<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR disposition = ?3) \
                 AND id > ?4 ORDER BY id LIMIT ?5"
            );
            let (state, disposition) = (filter.state.map(CallState::as_str), filter.disposition.map(CallDisposition::as_str));
            id_page(conn, &sql, &[&campaign.to_string(), &state, &disposition], &page, call_row, |c| c.id.to_string())
        })
        .await
    }

    async fn find_call_by_provider_id(&self, provider: CallProvider, provider_call_id: &str) -> Result<Option<(OrgId, CallId)>> {
        let providers: Vec<&str> =
            CallProvider::ALL.into_iter().filter(|p| p.reported_by() == provider).map(CallProvider::as_str).collect();
        let provider_call_id = provider_call_id.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT org_id, id FROM calls WHERE provider IN ({}) AND provider_call_id = ?1",
                providers.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
            );
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row(params![provider_call_id], |r| {
                        Ok((parsed(OrgId::parse(&r.get::<_, String>(0)?))?, parsed(CallId::parse(&r.get::<_, String>(1)?))?))
                    })
                    .optional()
                })
                .map_err(decoding)
        })
        .await
    }

    async fn call_owner(&self, call: CallId) -> Result<Option<OrgId>> {
        self.read(move |conn| {
            let org: Option<String> = conn
                .prepare_cached("SELECT org_id FROM calls WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![call.to_string()], |r| r.get(0)).optional())
                .map_err(backend)?;
            org.map(|o| OrgId::parse(&o).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn record_orphan_event(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        let (event, received_at, provider_call_id) = (normalised(event), millis(received_at), provider_call_id.to_string());
        self.write(move |tx| {
            // forgetting happens here, where orphans are rare, not on every tick's scan
            tx.prepare_cached("DELETE FROM orphan_events WHERE received_at < ?1")
                .and_then(|mut s| s.execute(params![ms(received_at - ORPHAN_MEMORY)]))
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO orphan_events (provider, provider_call_id, dedupe_key, occurred_at, received_at, kind) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    provider.as_str(),
                    provider_call_id,
                    event.dedupe_key,
                    ms(event.occurred_at),
                    ms(received_at),
                    to_json(&event.kind)
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn orphan_events(&self, provider: CallProvider, provider_call_id: &str) -> Result<Vec<StoredCallEvent>> {
        let provider_call_id = provider_call_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT dedupe_key, occurred_at, kind, received_at FROM orphan_events WHERE provider = ?1 AND provider_call_id = ?2 \
                 ORDER BY received_at, dedupe_key",
            )
            .and_then(|mut s| s.query_map(params![provider.as_str(), provider_call_id], stored_event_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn orphaned_calls(&self, limit: u32, received_since: DateTime<Utc>) -> Result<Vec<(CallProvider, String)>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT provider, provider_call_id FROM orphan_events WHERE received_at >= ?1 \
                 GROUP BY provider, provider_call_id ORDER BY MIN(received_at) LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![ms(received_since), limit], |r| {
                    let provider = r.get::<_, String>(0)?;
                    Ok((CallProvider::parse(&provider).ok_or_else(|| conversion(format!("unknown provider {provider}")))?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(decoding)
        })
        .await
    }

    async fn remove_orphan_events(&self, provider: CallProvider, provider_call_id: &str, dedupe_keys: Vec<String>) -> Result<()> {
        let provider_call_id = provider_call_id.to_string();
        self.write(move |tx| {
            for key in dedupe_keys {
                tx.prepare_cached("DELETE FROM orphan_events WHERE provider = ?1 AND provider_call_id = ?2 AND dedupe_key = ?3")
                    .and_then(|mut s| s.execute(params![provider.as_str(), provider_call_id, key]))
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn calls_awaiting_post_call(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND post_call_at IS NULL \
                 AND state IN ('ended', 'failed', 'canceled', 'timeout')"
            ))
            .and_then(|mut s| s.query_map(params![campaign.to_string()], call_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn mark_post_call(&self, org: OrgId, call_id: CallId, at: Option<DateTime<Utc>>) -> Result<bool> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            let changed = match at {
                Some(at) => tx.execute(
                    "UPDATE calls SET post_call_at = ?2 WHERE id = ?1 AND post_call_at IS NULL",
                    params![call_id.to_string(), ms(millis(at))],
                ),
                None => tx.execute(
                    "UPDATE calls SET post_call_at = NULL WHERE id = ?1 AND post_call_at IS NOT NULL",
                    params![call_id.to_string()],
                ),
            }
            .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn list_call_events(&self, org: OrgId, call: CallId) -> Result<Vec<StoredCallEvent>> {
        self.read(move |conn| {
            call_in_org(conn, org, call)?;
            conn.prepare_cached("SELECT dedupe_key, occurred_at, kind, received_at FROM call_events WHERE call_id = ?1 ORDER BY seq")
                .and_then(|mut s| s.query_map(params![call.to_string()], stored_event_row)?.collect())
                .map_err(decoding)
        })
        .await
    }
}

/// Reads (dedupe_key, occurred_at, kind, received_at).
fn stored_event_row(r: &Row<'_>) -> rusqlite::Result<StoredCallEvent> {
    Ok(StoredCallEvent {
        event: CallEvent { dedupe_key: r.get(0)?, occurred_at: from_ms(r.get(1)?)?, kind: json(r.get(2)?)? },
        received_at: from_ms(r.get(3)?)?,
    })
}

/// How long a schedule execution id is remembered: far longer than any retry of it.
const TICK_EXECUTION_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl DialingStore for SqliteStore {
    async fn active_calls(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND state IN ('queued', 'ringing', 'in_progress') \
                 ORDER BY last_status_at"
            ))
            .and_then(|mut s| s.query_map(params![campaign.to_string()], call_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn has_tick_run(&self, org: OrgId, campaign: CampaignId, execution_id: &str) -> Result<bool> {
        let execution_id = execution_id.to_string();
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached("SELECT 1 FROM tick_executions WHERE campaign_id = ?1 AND execution_id = ?2")
                .and_then(|mut s| s.exists(params![campaign.to_string(), execution_id]))
                .map_err(backend)
        })
        .await
    }

    async fn record_tick_execution(&self, org: OrgId, campaign: CampaignId, execution_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let execution_id = execution_id.to_string();
        self.write(move |tx| {
            campaign_in_org(tx, org, campaign)?;
            tx.execute("DELETE FROM tick_executions WHERE at < ?1", params![ms(now - TICK_EXECUTION_MEMORY)]).map_err(backend)?;
            let fresh = tx
                .execute(
                    "INSERT OR IGNORE INTO tick_executions (campaign_id, execution_id, at) VALUES (?1, ?2, ?3)",
                    params![campaign.to_string(), execution_id, ms(now)],
                )
                .map_err(backend)?;
            Ok(fresh == 1)
        })
        .await
    }

    async fn begin_dial(&self, org: OrgId, call_id: CallId, now: DateTime<Utc>) -> Result<bool> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            let taken = tx
                .execute(
                    "UPDATE calls SET dialing_since = ?2 WHERE id = ?1 AND state = 'queued' AND provider_call_id IS NULL \
                     AND dialing_since IS NULL",
                    params![call_id.to_string(), ms(millis(now))],
                )
                .map_err(backend)?;
            Ok(taken == 1)
        })
        .await
    }

    async fn abandon_dial(&self, org: OrgId, call_id: CallId) -> Result<()> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            tx.execute("UPDATE calls SET dialing_since = NULL WHERE id = ?1", params![call_id.to_string()]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn dial_check(&self, org: OrgId, call_id: CallId) -> Result<DialCheck> {
        self.read(move |conn| {
            let call = call_in_org(conn, org, call_id)?;
            let campaign = campaign_in_org(conn, org, call.campaign_id)?;
            let contact = contact_in(conn, call.campaign_id, call.contact_id)?;
            Ok(DialCheck { stopped: is_stopped(conn, org)?, listed: is_listed(conn, org, &call.phone)?, call, campaign, contact })
        })
        .await
    }

    async fn record_placed_call(&self, org: OrgId, call_id: CallId, placed: PlacedCall) -> Result<Call> {
        self.write(move |tx| {
            let mut call = call_in_org(tx, org, call_id)?;
            match call.record_placement(&placed.provider_call_id, placed.caller_id.clone(), millis(placed.placed_at)) {
                Ok(true) => {}
                Ok(false) => return Ok(call),
                Err(id) => return Err(StoreError::Conflict(format!("call {call_id} was already placed as {id}"))),
            }
            tx.execute(
                "UPDATE calls SET provider = ?2, provider_call_id = ?3, caller_id = ?4, placed_at = ?5 WHERE id = ?1",
                params![
                    call_id.to_string(),
                    placed.provider.as_str(),
                    placed.provider_call_id,
                    placed.caller_id.as_ref().map(E164::as_str),
                    call.placed_at.map(ms)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => StoreError::Conflict(
                    format!("{} call {} already belongs to another call", placed.provider.as_str(), placed.provider_call_id),
                ),
                other => backend(other),
            })?;
            if let Some(caller_id) = &placed.caller_id {
                tx.execute("UPDATE contacts SET caller_id = ?2 WHERE id = ?1", params![call.contact_id.to_string(), caller_id.as_str()])
                    .map_err(backend)?;
            }
            Ok(call)
        })
        .await
    }

    async fn reserve_dial_slot(&self, account: &str, now: DateTime<Utc>, pace: Pace, max_wait: std::time::Duration) -> Result<DialSlot> {
        let account = account.to_string();
        self.write(move |tx| {
            let next_free: Option<i64> = tx
                .query_row("SELECT next_free FROM dial_pace WHERE account = ?1", params![account], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let next_free = next_free.map(from_ms).transpose().map_err(decoding)?;
            let (slot, next) = domain::dialing::reserve_slot(next_free, millis(now), pace, max_wait);
            if let Some(next) = next {
                tx.execute(
                    "INSERT INTO dial_pace (account, next_free) VALUES (?1, ?2) ON CONFLICT (account) DO UPDATE SET next_free = ?2",
                    params![account, ms(next)],
                )
                .map_err(backend)?;
            }
            Ok(slot)
        })
        .await
    }

    async fn take_caller_id(&self, org: OrgId, pool: &[E164], preferred: Option<&E164>, now: DateTime<Utc>) -> Result<Option<E164>> {
        let (pool, preferred) = (pool.to_vec(), preferred.cloned());
        self.write(move |tx| {
            let mut last_used = std::collections::BTreeMap::new();
            let mut lookup =
                tx.prepare_cached("SELECT last_used FROM caller_id_usage WHERE org_id = ?1 AND phone = ?2").map_err(backend)?;
            for phone in &pool {
                if let Some(at) =
                    lookup.query_row(params![org.to_string(), phone.as_str()], |r| r.get::<_, i64>(0)).optional().map_err(backend)?
                {
                    last_used.insert(phone.as_str().to_string(), from_ms(at).map_err(decoding)?);
                }
            }
            let Some(chosen) = domain::dialing::choose_caller_id(&pool, &last_used, preferred.as_ref()).cloned() else { return Ok(None) };
            tx.execute(
                "INSERT INTO caller_id_usage (org_id, phone, last_used) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, phone) DO UPDATE SET last_used = MAX(last_used + 1, ?3)",
                params![org.to_string(), chosen.as_str(), ms(now)],
            )
            .map_err(backend)?;
            Ok(Some(chosen))
        })
        .await
    }
}

impl DoNotCallStore for SqliteStore {
    async fn add_do_not_call(&self, org: OrgId, phones: Vec<E164>, now: DateTime<Utc>) -> Result<DoNotCallAdded> {
        let now = millis(now);
        self.write(move |tx| {
            org_exists(tx, org)?;
            let org = org.to_string();
            let mut outcome = DoNotCallAdded::default();
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO do_not_call (org_id, phone, added_at) VALUES (?1, ?2, ?3)").map_err(backend)?;
            let mut finalise = tx
                .prepare_cached(
                    "UPDATE contacts SET state = 'done', disposition = 'do_not_call', due_at = ?3 WHERE phone = ?2 AND state = 'ready' \
                     AND campaign_id IN (SELECT id FROM campaigns WHERE org_id = ?1 AND status IN ('running', 'paused')) RETURNING campaign_id",
                )
                .map_err(backend)?;
            let mut count_done =
                tx.prepare_cached("UPDATE campaigns SET contacts_done = contacts_done + 1 WHERE id = ?1").map_err(backend)?;
            for phone in phones {
                if insert.execute(params![org, phone.as_str(), ms(now)]).map_err(backend)? == 0 {
                    outcome.already_listed += 1;
                } else {
                    outcome.added += 1;
                }
                let campaigns = finalise
                    .query_map(params![org, phone.as_str(), ms(now)], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(backend)?;
                for campaign in campaigns {
                    count_done.execute(params![campaign]).map_err(backend)?;
                    outcome.contacts_finalised += 1;
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn remove_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let phone = phone.clone();
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM do_not_call WHERE org_id = ?1 AND phone = ?2", params![org.to_string(), phone.as_str()])
                .map_err(backend)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn is_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let phone = phone.clone();
        self.read(move |conn| is_listed(conn, org, &phone)).await
    }

    async fn list_do_not_call(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallEntry>> {
        self.read(move |conn| {
            let sql = "SELECT phone, added_at FROM do_not_call WHERE org_id = ?1 AND phone > ?2 ORDER BY phone LIMIT ?3";
            let entry = |r: &Row<'_>| -> rusqlite::Result<DoNotCallEntry> {
                Ok(DoNotCallEntry { phone: parsed(E164::try_from(r.get::<_, String>(0)?))?, added_at: from_ms(r.get(1)?)? })
            };
            id_page(conn, sql, &[&org.to_string()], &page, entry, |e| e.phone.as_str().to_string())
        })
        .await
    }
}

fn assistant_in_org(conn: &Connection, org: OrgId, id: AssistantId) -> Result<Assistant> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM assistants WHERE id = ?1 AND org_id = ?2")
        .and_then(|mut s| s.query_row(params![id.to_string(), org.to_string()], |r| r.get(0)).optional())
        .map_err(backend)?;
    serde_json::from_str(&doc.ok_or_else(|| StoreError::not_found("assistant", id))?).map_err(corrupt)
}

fn assistant_by_provider_id(conn: &Connection, org: OrgId, new: &NewAssistant) -> Result<Option<Assistant>> {
    let Some(pid) = &new.provider_assistant_id else { return Ok(None) };
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM assistants WHERE org_id = ?1 AND provider = ?2 AND provider_assistant_id = ?3")
        .and_then(|mut s| s.query_row(params![org.to_string(), new.provider.as_str(), pid], |r| r.get(0)).optional())
        .map_err(backend)?;
    doc.map(|d| serde_json::from_str(&d).map_err(corrupt)).transpose()
}

/// Writes the assistant's row and its current version.
fn save_assistant(tx: &rusqlite::Transaction<'_>, a: &Assistant) -> Result<()> {
    tx.execute(
        "INSERT INTO assistants (id, org_id, provider, provider_assistant_id, source, active, version, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET active = excluded.active, version = excluded.version, doc = excluded.doc",
        params![
            a.id.to_string(),
            a.org_id.to_string(),
            a.provider.as_str(),
            a.provider_assistant_id,
            a.source.as_str(),
            a.active,
            a.version,
            to_json(a)
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => StoreError::Conflict(format!(
            "{} assistant {} is already in the directory; import it to update it",
            a.provider.as_str(),
            a.provider_assistant_id.as_deref().unwrap_or_default()
        )),
        other => backend(other),
    })?;
    tx.execute(
        "INSERT INTO assistant_versions (assistant_id, version, doc) VALUES (?1, ?2, ?3)",
        params![a.id.to_string(), a.version, to_json(&a.snapshot())],
    )
    .map_err(backend)?;
    Ok(())
}

impl AssistantStore for SqliteStore {
    async fn create_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<Assistant> {
        let assistant = Assistant::new(org, new, millis(now));
        let row = assistant.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            save_assistant(tx, &row)
        })
        .await?;
        Ok(assistant)
    }

    async fn import_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<(Assistant, bool)> {
        let now = millis(now);
        self.write(move |tx| {
            org_exists(tx, org)?;
            match assistant_by_provider_id(tx, org, &new)? {
                Some(mut existing) => {
                    let patch = AssistantPatch { name: Some(new.name), config: Some(new.config), active: None };
                    if existing.apply(&patch, now) {
                        save_assistant(tx, &existing)?;
                    }
                    Ok((existing, false))
                }
                None => {
                    let created = Assistant::new(org, new, now);
                    save_assistant(tx, &created)?;
                    Ok((created, true))
                }
            }
        })
        .await
    }

    async fn get_assistant(&self, org: OrgId, id: AssistantId) -> Result<Assistant> {
        self.read(move |conn| assistant_in_org(conn, org, id)).await
    }

    async fn list_assistants(&self, org: OrgId, filter: AssistantFilter, page: PageRequest) -> Result<Page<Assistant>> {
        self.read(move |conn| {
            let sql = "SELECT doc FROM assistants WHERE org_id = ?1 AND (?2 IS NULL OR active = ?2) AND (?3 IS NULL OR source = ?3) \
                       AND id > ?4 ORDER BY id LIMIT ?5";
            let source = filter.source.map(|s| s.as_str());
            id_page(conn, sql, &[&org.to_string(), &filter.active, &source], &page, |r| json(r.get(0)?), |a: &Assistant| a.id.to_string())
        })
        .await
    }

    async fn update_assistant(
        &self,
        org: OrgId,
        id: AssistantId,
        expected_version: u32,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> Result<Assistant> {
        let now = millis(now);
        self.write(move |tx| {
            let mut assistant = assistant_in_org(tx, org, id)?;
            if assistant.version != expected_version {
                return Err(StoreError::StaleVersion { expected: expected_version, current: assistant.version });
            }
            if assistant.apply(&patch, now) {
                save_assistant(tx, &assistant)?;
            }
            Ok(assistant)
        })
        .await
    }

    async fn delete_assistant(&self, org: OrgId, id: AssistantId) -> Result<()> {
        self.write(move |tx| {
            assistant_in_org(tx, org, id)?;
            tx.execute("DELETE FROM assistant_versions WHERE assistant_id = ?1", params![id.to_string()]).map_err(backend)?;
            tx.execute("DELETE FROM assistants WHERE id = ?1", params![id.to_string()]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_assistant_versions(&self, org: OrgId, id: AssistantId) -> Result<Vec<AssistantVersion>> {
        self.read(move |conn| {
            assistant_in_org(conn, org, id)?;
            conn.prepare_cached("SELECT doc FROM assistant_versions WHERE assistant_id = ?1 ORDER BY version")
                .and_then(|mut s| s.query_map(params![id.to_string()], |r| json(r.get(0)?))?.collect())
                .map_err(decoding)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database from before states were kept: migrated, its contacts get their area code's
    /// state, its campaign its calling areas, and its calls (events included) survive the rebuilt
    /// table, which no longer refuses two calls of one attempt number.
    #[tokio::test]
    async fn the_calling_areas_migration_keeps_every_row_and_backfills_states() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);").unwrap();
        for (i, sql) in MIGRATIONS[..STATES_MIGRATION - 1].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", params![i as i64 + 1]).unwrap();
        }
        let (org, campaign) = (OrgId::new(), CampaignId::new());
        let (miami, london, call) = (ContactId::new(), ContactId::new(), CallId::new());
        conn.execute_batch(&format!(
            "INSERT INTO organisations VALUES ('{org}', 'Acme', 0);
             INSERT INTO campaigns (id, org_id, name, status, cap, settings, created_at) VALUES ('{campaign}', '{org}', 'c', 'running', 5, '{settings}', 0);
             INSERT INTO contacts (id, campaign_id, phone, timezone, priority, state, attempts, due_at, variables, created_at, last_call_id)
                 VALUES ('{miami}', '{campaign}', '+13055550100', 'America/New_York', 0, 'dialing', 1, 0, '{{}}', 0, '{call}'),
                        ('{london}', '{campaign}', '+442079460958', 'Europe/London', 0, 'ready', 0, 0, '{{}}', 0, NULL);
             INSERT INTO calls (id, org_id, campaign_id, contact_id, attempt, phone, state, details, created_at, last_status_at, provider, provider_call_id)
                 VALUES ('{call}', '{org}', '{campaign}', '{miami}', 1, '+13055550100', 'ringing', '{{}}', 0, 0, 'twilio', 'CA1');
             INSERT INTO call_events VALUES ('{call}', 'k', 0, 0, 0, '{{\"type\":\"ringing\"}}');",
            settings = to_json(&domain::CampaignSettings::default())
        ))
        .unwrap();
        let store = SqliteStore::from_connection(conn).unwrap();
        assert_eq!(store.schema_version(), MIGRATIONS.len() as u32);
        let contact = store.get_contact(org, campaign, miami).await.unwrap();
        assert_eq!(contact.us_state.map(|s| s.to_string()).as_deref(), Some("FL"));
        assert_eq!(store.get_contact(org, campaign, london).await.unwrap().us_state, None);
        let mut areas: Vec<String> = store.calling_areas(org, campaign).await.unwrap().iter().map(CallingArea::key).collect();
        areas.sort();
        assert_eq!(areas, ["America/New_York|FL", "Europe/London|"]);
        let kept = store.get_call(org, call).await.unwrap();
        assert_eq!((kept.state, kept.provider_call_id.as_deref(), kept.attempt), (CallState::Ringing, Some("CA1"), 1));
        assert_eq!(store.list_call_events(org, call).await.unwrap().len(), 1);
        assert_eq!(store.find_call_by_provider_id(CallProvider::Twilio, "CA1").await.unwrap(), Some((org, call)));
        let again = Call::queued(org, campaign, miami, 1, E164::parse("+13055550100", None).unwrap(), Utc::now());
        store.write(move |tx| insert_call(tx, &again)).await.expect("a second call of attempt 1: a withdrawn one gave it back");
    }
}
