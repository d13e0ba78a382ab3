//! Streaming contact import: the body is parsed row by row on a blocking thread while batches of
//! contacts are written by the store, so memory stays bounded whatever the file's size. A bad row
//! is counted and listed, never fatal; only an unreadable file (no phone column, too large,
//! broken JSON) stops the import, and then rows already written stay written.

use crate::{AppState, campaign_id};
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
};
use chrono::Utc;
use domain::{
    Campaign, CampaignStatus, OrgId, Region,
    import::{Attestation, ColumnRole, HeaderError, ImportDefaults, RowError, contact_from_row},
    upload::{ImportFormat, ImportReport, InvalidRow},
};
use futures::StreamExt;
use platform::{AuthenticatedKey, CampaignScheduler, JobQueue, Problem, extract::Query};
use serde::Deserialize;
use std::{
    io::{BufRead, BufReader, Read},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use store::Store;
use tokio::sync::mpsc;
use utoipa::IntoParams;

/// Contacts written to the store at a time.
const BATCH_ROWS: usize = 2000;
/// Invalid rows listed in the reply; all are counted.
const MAX_LISTED_ERRORS: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct ImportQuery {
    /// Country in which national numbers are read (ISO 3166-1 alpha-2); by default the campaign's.
    pub region: Option<String>,
    /// `attested`: you attest that every contact in the file agreed to be called (recorded with
    /// your API key's id and the time); needed when the file has no `consent` column.
    pub consent: Option<String>,
    /// With `consent=attested`: how and where the contacts agreed (e.g. "web form, 2026-10").
    pub consent_source: Option<String>,
}

impl ImportQuery {
    /// The attestation the query carries, if any, made by `key_id` at `now`.
    pub(crate) fn attestation(&self, key_id: &str, now: chrono::DateTime<Utc>) -> Result<Option<Attestation>, Problem> {
        match (self.consent.as_deref(), self.consent_source.as_deref()) {
            (None, None) => Ok(None),
            (Some("attested"), source) => Attestation::parse(source.unwrap_or_default(), key_id, now)
                .map(Some)
                .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "consent-missing", "Consent not on record", e.to_string())),
            (Some(other), _) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-consent",
                "Invalid consent attestation",
                format!("consent={other:?}: the only attestation is consent=attested (with consentSource=<how the contacts agreed>)"),
            )),
            (None, Some(_)) => Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-consent",
                "Invalid consent attestation",
                "consentSource is only read with consent=attested",
            )),
        }
    }
}

/// Why an import stopped before the end of the file.
#[derive(Debug)]
enum Stop {
    /// Read from the header (or the first JSON object): nothing was written.
    Header(HeaderError),
    TooLarge,
    Malformed(String),
    /// The store side went away (it failed; its error is the one reported).
    Receiver,
}

/// Invalid rows: all counted, the first 1,000 kept.
#[derive(Default)]
pub(crate) struct Tally {
    pub invalid: u64,
    pub errors: Vec<InvalidRow>,
}

impl Tally {
    pub fn invalid(&mut self, line: u64, error: RowError) {
        self.invalid += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(InvalidRow { line, value: error.value, reason: error.reason });
        }
    }
}

/// Turns rows into batches of contacts for the store.
struct Rows {
    defaults: ImportDefaults,
    batch: Vec<domain::NewContact>,
    out: mpsc::Sender<Vec<domain::NewContact>>,
    tally: Tally,
    /// JSON rows carry their own fields: the first says whether the file records consent.
    first_row_seen: bool,
}

impl Rows {
    fn row<'a>(&mut self, line: u64, fields: impl IntoIterator<Item = (&'a ColumnRole, &'a str)>) -> Result<(), Stop> {
        match contact_from_row(fields, &self.defaults) {
            Ok(contact) => {
                self.batch.push(contact);
                if self.batch.len() >= BATCH_ROWS {
                    self.flush()?;
                }
            }
            Err(e) => self.tally.invalid(line, e),
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ROWS));
        self.out.blocking_send(batch).map_err(|_| Stop::Receiver)
    }

    /// One JSON value of a JSON or NDJSON body.
    fn json_row(&mut self, line: u64, value: serde_json::Value) -> Result<(), Stop> {
        let serde_json::Value::Object(fields) = value else {
            self.tally.invalid(line, RowError::new(truncate(&value.to_string()), "each contact must be a JSON object"));
            return Ok(());
        };
        if fields.len() > domain::import::MAX_COLUMNS {
            let reason = format!("has {} fields; at most {} are read per contact", fields.len(), domain::import::MAX_COLUMNS);
            self.tally.invalid(line, RowError::new("", reason));
            return Ok(());
        }
        let pairs: Vec<(ColumnRole, String)> = fields
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (ColumnRole::of(&k), text)
            })
            .collect();
        if !std::mem::replace(&mut self.first_row_seen, true) {
            ColumnRole::consent_on_record(pairs.iter().map(|(role, _)| role), self.defaults.attestation.is_some()).map_err(Stop::Header)?;
        }
        if !pairs.iter().any(|(role, _)| *role == ColumnRole::Phone) {
            self.tally.invalid(line, RowError::new("", "no phone field: name it phone, phone_number or number"));
            return Ok(());
        }
        self.row(line, pairs.iter().map(|(r, v)| (r, v.as_str())))
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 60 { s.to_string() } else { s.chars().take(60).chain("…".chars()).collect() }
}

fn io_stop(e: std::io::Error, too_large: &AtomicBool) -> Stop {
    if too_large.load(Ordering::SeqCst) { Stop::TooLarge } else { Stop::Malformed(e.to_string()) }
}

fn parse_csv(reader: impl Read, rows: &mut Rows, too_large: &AtomicBool) -> Result<(), Stop> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_stop(e, too_large)),
    };
    let roles = ColumnRole::of_headers(headers.iter(), rows.defaults.attestation.is_some()).map_err(Stop::Header)?;
    let newlines_in = |record: &csv::StringRecord| record.iter().map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64).sum::<u64>();
    // the reader counts record terminators only: add the newlines inside quoted fields so far
    let mut embedded = newlines_in(&headers);
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line) + embedded;
                embedded += newlines_in(&record);
                rows.row(line, roles.iter().zip(record.iter()))?;
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line) + embedded;
                match e.kind() {
                    csv::ErrorKind::Io(_) => return Err(csv_stop(e, too_large)),
                    _ => rows.tally.invalid(line, RowError::new("", format!("unreadable row: {e}"))),
                }
            }
        }
    }
}

fn csv_stop(e: csv::Error, too_large: &AtomicBool) -> Stop {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_stop(io, too_large),
        other => Stop::Malformed(format!("{other:?}")),
    }
}

fn parse_ndjson(reader: impl BufRead, rows: &mut Rows, too_large: &AtomicBool) -> Result<(), Stop> {
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| io_stop(e, too_large))?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => rows.json_row(n, value)?,
            Err(e) => rows.tally.invalid(n, RowError::new(truncate(text), format!("not JSON: {e}"))),
        }
    }
    Ok(())
}

/// Streams the elements of a top-level JSON array one at a time.
struct EachElement<'r> {
    rows: &'r mut Rows,
    stop: Option<Stop>,
}

impl<'de> serde::de::Visitor<'de> for &mut EachElement<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of contact objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        while let Some(value) = seq.next_element::<serde_json::Value>()? {
            n += 1;
            if let Err(stop) = self.rows.json_row(n, value) {
                self.stop = Some(stop);
                return Err(serde::de::Error::custom("import stopped"));
            }
        }
        Ok(())
    }
}

fn parse_json(mut reader: impl BufRead, rows: &mut Rows, too_large: &AtomicBool) -> Result<(), Stop> {
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| io_stop(e, too_large))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break buf[i],
            None if buf.is_empty() => return Ok(()),
            None => {
                let len = buf.len();
                reader.consume(len);
            }
        }
    };
    if first != b'[' {
        return parse_ndjson(reader, rows, too_large);
    }
    let mut each = EachElement { rows, stop: None };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = serde::Deserializer::deserialize_seq(&mut de, &mut each).and_then(|()| de.end());
    match (each.stop, result) {
        (Some(stop), _) => Err(stop),
        (None, Ok(())) => Ok(()),
        (None, Err(e)) if e.is_io() => Err(io_stop(e.into(), too_large)),
        (None, Err(e)) => Err(Stop::Malformed(format!("the JSON body is broken: {e}"))),
    }
}

fn format_of(headers: &HeaderMap) -> Result<ImportFormat, Problem> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ImportFormat::from_content_type(content_type).ok_or_else(|| unsupported_format(content_type))
}

pub(crate) fn unsupported_format(content_type: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        format!(
            "contacts come as text/csv, application/json (an array or one object per line) or application/x-ndjson, not {content_type:?}"
        ),
    )
}

pub(crate) fn too_large(max: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Body too large",
        format!(
            "the upload is larger than {max} bytes; split the file (imports are idempotent: numbers already imported count as duplicates)"
        ),
    )
}

/// Import contacts from CSV (`text/csv`) or JSON (`application/json`: an array, or one object per
/// line). Rows are streamed; the reply counts what became of every row and lists invalid ones.
#[utoipa::path(post, path = "/campaigns/{id}/contacts", tag = "campaigns",
    params(("id" = String, Path, description = "campaign id"), ImportQuery),
    request_body(content(("text/csv"), ("application/json"), ("application/x-ndjson")), description = "a header row with a phone column (also phone_number, number); name, first_name, last_name, business_name, email, timezone, state, priority, consent, consent_source, consent_at; any other column becomes a dynamic variable. Without a consent column, attest with consent=attested&consentSource=…"),
    security(("apiKey" = [])),
    responses((status = 200, body = ImportReport),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "the campaign is neither draft nor paused"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "no phone column, no consent on record (consent-missing), or an unreadable file"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn import_contacts<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    AuthenticatedKey { org, key_id }: AuthenticatedKey,
    Path(id): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<ImportReport>, Problem> {
    let campaign = state.store.get_campaign(org, campaign_id(&id)?).await?;
    importable(&campaign)?;
    let format = format_of(&headers)?;
    let now = Utc::now();
    let attestation = q.attestation(&key_id, now)?;
    let region = match q.region.as_deref() {
        Some(r) => Some(Region::parse(r)?),
        None => campaign.settings.import_region(),
    };
    let max = state.import_max_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let defaults = ImportDefaults { region, timezone: campaign.settings.timezone, attestation, now };
    let chunks = body.into_data_stream().map(|chunk| chunk.map_err(std::io::Error::other));
    let (report, outcome) = import_stream(&state.store, org, &campaign, format, defaults, chunks, Some(max)).await;
    outcome.map(|()| axum::Json(report))
}

/// Refused unless the campaign is draft or paused: contacts never join a campaign mid-run.
pub(crate) fn importable(campaign: &Campaign) -> Result<(), Problem> {
    if matches!(campaign.status, CampaignStatus::Draft | CampaignStatus::Paused) {
        return Ok(());
    }
    let detail = format!("campaign {} is {}; contacts are imported while it is draft or paused", campaign.id, campaign.status.as_str());
    Err(Problem::new(StatusCode::CONFLICT, "invalid-state", "Campaign not importable", detail))
}

/// The one streaming import, for a request's body and for an uploaded file alike: `chunks` are
/// parsed on a blocking thread while batches are written, so memory stays bounded at any size.
/// The counts are returned also when the import stops part way (rows before the stop stay).
pub(crate) async fn import_stream<S: Store>(
    store: &S,
    org: OrgId,
    campaign: &Campaign,
    format: ImportFormat,
    defaults: ImportDefaults,
    chunks: impl futures::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static,
    max: Option<u64>,
) -> (ImportReport, Result<(), Problem>) {
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen = 0u64;
    let chunks = chunks.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if max.is_some_and(|max| seen > max) {
            flag.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other("the body is over the size limit"));
        }
        Ok(chunk)
    });
    let reader =
        BufReader::with_capacity(256 * 1024, tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(chunks))));
    let (out, mut batches) = mpsc::channel(2);
    let now = defaults.now;
    let parser = tokio::task::spawn_blocking(move || {
        let mut rows = Rows { defaults, batch: Vec::with_capacity(BATCH_ROWS), out, tally: Tally::default(), first_row_seen: false };
        let parsed = match format {
            ImportFormat::Csv => parse_csv(reader, &mut rows, &over),
            ImportFormat::Json => parse_json(reader, &mut rows, &over),
            ImportFormat::Ndjson => parse_ndjson(reader, &mut rows, &over),
        };
        let flushed = parsed.and_then(|()| rows.flush());
        (flushed, rows.tally)
    });

    let mut report = ImportReport::default();
    let mut written = Ok(());
    while let Some(batch) = batches.recv().await {
        match store.add_contacts(org, campaign.id, batch, now).await {
            Ok(added) => {
                report.imported += added.added;
                report.duplicate += added.duplicates;
                report.do_not_call += added.do_not_call;
            }
            Err(e) => {
                // dropping the receiver stops the parser; the store's error is the one reported
                written = Err(Problem::from(e));
                break;
            }
        }
    }
    drop(batches);
    let (parsed, tally) = match parser.await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "contact parser panicked");
            return (report, Err(Problem::internal()));
        }
    };
    report.invalid = tally.invalid;
    report.errors = tally.errors;
    tracing::info!(campaign = %campaign.id, imported = report.imported, duplicate = report.duplicate, do_not_call = report.do_not_call, invalid = report.invalid, "contacts imported");
    if let Err(problem) = written {
        return (report, Err(problem));
    }
    let counts = |p: Problem| p.with("imported", report.imported).with("duplicate", report.duplicate).with("invalid", report.invalid);
    let outcome = match parsed {
        Ok(()) => Ok(()),
        Err(Stop::Header(HeaderError::MissingPhoneColumn)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing-phone-column",
            "No phone column",
            "the header row has no phone column: name one of the columns phone, phone_number or number",
        )),
        Err(Stop::Header(e @ HeaderError::ConsentMissing)) => {
            Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "consent-missing", "Consent not on record", e.to_string()))
        }
        Err(Stop::Header(e @ HeaderError::TooManyColumns { .. })) => {
            Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "too-many-columns", "Too many columns", e.to_string())
                .with("maxColumns", domain::import::MAX_COLUMNS))
        }
        Err(Stop::TooLarge) => Err(counts(too_large(max.unwrap_or_default()))),
        Err(Stop::Malformed(reason)) => Err(counts(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed-file",
            "Unreadable file",
            format!("{reason}; rows before it were imported"),
        ))),
        Err(Stop::Receiver) => Err(Problem::internal()),
    };
    (report, outcome)
}
