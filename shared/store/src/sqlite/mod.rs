//! The embedded store: one SQLite file (or `:memory:`), schema created on open, versioned
//! migrations, every operation one `BEGIN IMMEDIATE` transaction.

use crate::{
    AddedContacts, ApiKey, Applied, AssistantFilter, AssistantStore, CallFilter, CallStore, CallerIdStore, CampaignStore, Claim,
    ContactFilter, ContactTally, CreatedApiKey, Cursor, DialingStore, DoNotCallAdded, DoNotCallEntry, DoNotCallStore, KeyHash,
    ORPHAN_MEMORY, OrgStore, Page, PageRequest, PlacedCall, Result, StoreError, StoredCallEvent, millis, normalised, now, settle_contact,
    statuses,
};
use chrono::{DateTime, Utc};
use domain::report::{CallFacts, ReportCounts, report_delta};
use domain::{
    Assistant, AssistantId, AssistantPatch, AssistantVersion, Call, CallDisposition, CallEvent, CallId, CallProvider, CallState, CallerId,
    CallingArea, Campaign, CampaignCounters, CampaignId, CampaignStatus, Cap, Contact, ContactDisposition, ContactFate, ContactId,
    ContactState, DialCheck, DialSlot, E164, EmergencyStop, EndReason, NewAssistant, NewCampaign, NewContact, OrgId, Organisation, Pace,
    ProviderKind, StartRefusal, UsState,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::{path::Path, sync::mpsc};

mod assistants;
mod caller_ids;
mod calls;
mod campaigns;
mod crm;
mod dialing;
mod do_not_call;
mod orgs;
mod reports;
mod uploads;

/// Schema migrations (`migrations/NNNN_*.sql`), applied in order; the number is the version recorded.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_assistants.sql"),
    include_str!("migrations/0003_campaign_assistant.sql"),
    include_str!("migrations/0004_do_not_call.sql"),
    include_str!("migrations/0005_batches_and_caller_ids.sql"),
    include_str!("migrations/0006_post_call.sql"),
    include_str!("migrations/0007_dial_path_safety.sql"),
    include_str!("migrations/0008_provider_owners.sql"),
    include_str!("migrations/0009_caller_ids.sql"),
    include_str!("migrations/0010_api_key_management.sql"),
    include_str!("migrations/0011_do_not_call_removals.sql"),
    include_str!("migrations/0012_transcript_chunks.sql"),
    include_str!("migrations/0013_crm_connections.sql"),
    include_str!("migrations/0014_crm_deliveries.sql"),
    include_str!("migrations/0015_campaign_report_counts.sql"),
    include_str!("migrations/0016_daily_reports.sql"),
    include_str!("migrations/0017_contact_counts.sql"),
    include_str!("migrations/0018_contact_uploads.sql"),
    include_str!("migrations/0019_no_consent.sql"),
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
            .map_err(|e| StoreError::backend(format!("cannot start the store's thread: {e}")))?;
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
        self.jobs.send(job).map_err(|_| StoreError::backend("the store's connection thread has stopped"))?;
        result.await.map_err(|_| StoreError::backend("the store's connection thread stopped during an operation"))?
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
        return Err(StoreError::backend(format!(
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
    StoreError::backend_from(e.to_string(), e)
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

/// Moves the campaign's report counters by `delta` (what a call's change did to its facts).
/// Moves the counters of the call's campaign and of the hours it ended in as its facts change.
fn count_call_change(tx: &Connection, call: &Call, before: Option<&CallFacts>) -> Result<()> {
    let after = CallFacts::of(call);
    add_report_counts(tx, call.campaign_id, &report_delta(before, after.as_ref()))?;
    for (hour, delta) in domain::report::report_hour_deltas(before, after.as_ref()) {
        for (name, n) in &delta {
            tx.prepare_cached(
                "INSERT INTO report_hour_counts (org_id, hour, campaign_id, name, value) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (org_id, hour, campaign_id, name) DO UPDATE SET value = value + excluded.value",
            )
            .and_then(|mut s| {
                s.execute(params![call.org_id.to_string(), domain::report::hour_key(hour), call.campaign_id.to_string(), name, n])
            })
            .map_err(backend)?;
        }
    }
    Ok(())
}

fn add_report_counts(tx: &Connection, campaign: CampaignId, delta: &domain::report::ReportCounts) -> Result<()> {
    for (name, n) in delta {
        tx.prepare_cached(
            "INSERT INTO campaign_report_counts (campaign_id, name, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (campaign_id, name) DO UPDATE SET value = value + excluded.value",
        )
        .and_then(|mut s| s.execute(params![campaign.to_string(), name, n]))
        .map_err(backend)?;
    }
    Ok(())
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

const ORG_COLUMNS: &str = "id, name, created_at, emergency_stop";

fn org_from(r: &Row<'_>) -> rusqlite::Result<Organisation> {
    Ok(Organisation {
        id: parsed(OrgId::parse(&r.get::<_, String>(0)?))?,
        name: r.get(1)?,
        created_at: from_ms(r.get(2)?)?,
        emergency_stop: r.get::<_, Option<String>>(3)?.map(json).transpose()?,
    })
}

fn org_in(conn: &Connection, id: OrgId) -> Result<Organisation> {
    conn.prepare_cached(&format!("SELECT {ORG_COLUMNS} FROM organisations WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id.to_string()], org_from).optional())
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

/// Reads (dedupe_key, occurred_at, kind, received_at).
fn stored_event_row(r: &Row<'_>) -> rusqlite::Result<StoredCallEvent> {
    Ok(StoredCallEvent {
        event: CallEvent { dedupe_key: r.get(0)?, occurred_at: from_ms(r.get(1)?)?, kind: json(r.get(2)?)? },
        received_at: from_ms(r.get(3)?)?,
    })
}

/// How long a schedule execution id is remembered: far longer than any retry of it.
const TICK_EXECUTION_MEMORY: chrono::TimeDelta = chrono::TimeDelta::days(1);

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

/// The organisation owning a provider id, if any.
fn provider_owner(conn: &Connection, provider: ProviderKind, pid: &str) -> Result<Option<OrgId>> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT org_id FROM provider_owners WHERE provider = ?1 AND provider_id = ?2")
        .and_then(|mut s| s.query_row(params![provider.as_str(), pid], |r| r.get(0)).optional())
        .map_err(backend)?;
    owner.map(|o| OrgId::parse(&o).map_err(corrupt)).transpose()
}

/// Takes the new assistant's provider id for `org`, or answers not found when another
/// organisation holds it (indistinguishable from an id that does not exist).
fn claim_provider_id(tx: &rusqlite::Transaction<'_>, org: OrgId, new: &NewAssistant) -> Result<()> {
    let Some(pid) = new.owned_provider_id() else { return Ok(()) };
    match provider_owner(tx, new.provider, pid)? {
        Some(owner) if owner != org => Err(StoreError::not_found("provider assistant", pid)),
        Some(_) => Ok(()),
        None => tx
            .execute(
                "INSERT INTO provider_owners (provider, provider_id, org_id) VALUES (?1, ?2, ?3)",
                params![new.provider.as_str(), pid, org.to_string()],
            )
            .map(drop)
            .map_err(backend),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    /// A consent record as the store keeps it.
    const CONSENTED: &str = r#"{"source":"attestation","recordedAt":"2026-10-01T00:00:00Z"}"#;

    /// A database from before consent was checked at dial time: its ready contacts without consent
    /// are finalised as `no_consent` and counted, those with consent and those already done stay,
    /// and the template ids the first organisation claimed are released.
    #[tokio::test]
    async fn the_no_consent_migration_finalises_unconsented_ready_contacts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);").unwrap();
        const NO_CONSENT_MIGRATION: usize = 19;
        for (i, sql) in MIGRATIONS[..NO_CONSENT_MIGRATION - 1].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", params![i as i64 + 1]).unwrap();
        }
        let (org, campaign) = (OrgId::new(), CampaignId::new());
        conn.execute_batch(&format!(
            "INSERT INTO organisations (id, name, created_at) VALUES ('{org}', 'Acme', 0);
             INSERT INTO campaigns (id, org_id, name, status, cap, settings, created_at) VALUES ('{campaign}', '{org}', 'c', 'running', 5, '{settings}', 0);
             INSERT INTO provider_owners (provider, provider_id, org_id) VALUES ('simulator', 'template:discovery', '{org}'), ('vapi', 'asst_1', '{org}');",
            settings = to_json(&domain::CampaignSettings::default()),
        ))
        .unwrap();
        let rows = [("ready", None, None), ("ready", None, Some(CONSENTED)), ("done", Some("voicemail"), None), ("ready", None, None)];
        for (i, (state, disposition, consent)) in rows.into_iter().enumerate() {
            conn.execute(
                "INSERT INTO contacts (id, campaign_id, phone, timezone, priority, state, attempts, due_at, variables, created_at, disposition, consent)
                 VALUES (?1, ?2, ?3, 'UTC', 0, ?4, 0, 0, '{}', 0, ?5, ?6)",
                params![ContactId::new().to_string(), campaign.to_string(), format!("+1305555010{i}"), state, disposition, consent],
            )
            .unwrap();
        }
        conn.execute_batch(&format!(
            "INSERT INTO contact_counts (campaign_id, name, value) VALUES ('{campaign}', 's:ready', 3), ('{campaign}', 's:done', 1), ('{campaign}', 'd:voicemail', 1);
             UPDATE campaigns SET contacts_total = 4, contacts_done = 1;"
        ))
        .unwrap();
        let store = SqliteStore::from_connection(conn).unwrap();
        assert_eq!(store.schema_version(), 19);
        let tally = store.contact_tally(org, campaign).await.unwrap();
        assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 3), (ContactState::Ready, 1)]));
        assert_eq!(tally.by_disposition, BTreeMap::from([(ContactDisposition::Voicemail, 1), (ContactDisposition::NoConsent, 2)]));
        assert_eq!(store.get_campaign(org, campaign).await.unwrap().counters.contacts_done, 3);
        assert_eq!(store.provider_id_owner(domain::ProviderKind::Simulator, "template:discovery").await.unwrap(), None);
        assert_eq!(store.provider_id_owner(domain::ProviderKind::Vapi, "asst_1").await.unwrap(), Some(org));
    }

    /// A database from before contact counters were kept: migrated, its campaigns' counters hold
    /// what its contacts were, and go on moving with them.
    #[tokio::test]
    async fn the_contact_counts_migration_counts_existing_contacts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);").unwrap();
        // 0017_contact_counts.sql and every migration after it are applied by the store below
        const CONTACT_COUNTS_MIGRATION: usize = 17;
        for (i, sql) in MIGRATIONS[..CONTACT_COUNTS_MIGRATION - 1].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, 0)", params![i as i64 + 1]).unwrap();
            if i + 1 == STATES_MIGRATION {
                let tx = conn.unchecked_transaction().unwrap();
                backfill_states(&tx).unwrap();
                tx.commit().unwrap();
            }
        }
        let (org, campaign) = (OrgId::new(), CampaignId::new());
        conn.execute_batch(&format!(
            "INSERT INTO organisations (id, name, created_at) VALUES ('{org}', 'Acme', 0);
             INSERT INTO campaigns (id, org_id, name, status, cap, settings, created_at) VALUES ('{campaign}', '{org}', 'c', 'running', 5, '{settings}', 0);
             INSERT INTO contacts (id, campaign_id, phone, timezone, priority, state, attempts, due_at, variables, created_at, disposition, consent)
                 VALUES ('{a}', '{campaign}', '+13055550100', 'UTC', 0, 'done', 1, 0, '{{}}', 0, 'voicemail', NULL),
                        ('{b}', '{campaign}', '+13055550101', 'UTC', 0, 'done', 1, 0, '{{}}', 0, 'voicemail', NULL),
                        ('{c}', '{campaign}', '+13055550102', 'UTC', 0, 'ready', 0, 0, '{{}}', 0, NULL, '{consent}');",
            consent = CONSENTED,
            settings = to_json(&domain::CampaignSettings::default()),
            a = ContactId::new(),
            b = ContactId::new(),
            c = ContactId::new(),
        ))
        .unwrap();
        let store = SqliteStore::from_connection(conn).unwrap();
        let tally = store.contact_tally(org, campaign).await.unwrap();
        assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 2), (ContactState::Ready, 1)]));
        assert_eq!(tally.by_disposition, BTreeMap::from([(ContactDisposition::Voicemail, 2)]));
        store.cancel_campaign(org, campaign, Utc::now()).await.unwrap();
        let tally = store.contact_tally(org, campaign).await.unwrap();
        assert_eq!(tally.by_state, BTreeMap::from([(ContactState::Done, 3)]));
        assert_eq!(tally.by_disposition, BTreeMap::from([(ContactDisposition::Voicemail, 2), (ContactDisposition::Canceled, 1)]));
    }
}
