//! The organisation's do-not-call list: one number at a time, in bulk from CSV, listed by cursor.

use crate::AppState;
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{E164, Region};
use platform::{Authenticated, AuthenticatedKey, CampaignScheduler, JobQueue, List, PageQuery, Problem, extract::Query};
use serde::{Deserialize, Serialize};
use store::{DoNotCallEntry, Store};
use utoipa::{IntoParams, ToSchema};

/// A number on the list.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoNotCall {
    pub phone: E164,
    pub added_at: DateTime<Utc>,
}

impl From<DoNotCallEntry> for DoNotCall {
    fn from(e: DoNotCallEntry) -> Self {
        Self { phone: e.phone, added_at: e.added_at }
    }
}

/// What adding numbers did.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoNotCallReport {
    pub added: u64,
    pub already_listed: u64,
    /// Not-yet-dialed contacts of running or paused campaigns finalised as `do_not_call`.
    pub contacts_finalised: u64,
    pub invalid: u64,
    pub errors: Vec<domain::upload::InvalidRow>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RegionQuery {
    /// Country in which national numbers are read (ISO 3166-1 alpha-2).
    pub region: Option<String>,
}

fn phone(raw: &str, region: Option<Region>) -> Result<E164, Problem> {
    Ok(E164::parse(raw, region)?)
}

fn region(q: &RegionQuery) -> Result<Option<Region>, Problem> {
    Ok(q.region.as_deref().map(Region::parse).transpose()?)
}

/// Add one number; its not-yet-dialed contacts in running or paused campaigns are finalised.
#[utoipa::path(put, path = "/dnc/{phone}", tag = "do-not-call", params(("phone" = String, Path, description = "the number, E.164 (or national with ?region=)"), RegionQuery),
    security(("apiKey" = [])),
    responses((status = 200, body = DoNotCallReport), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn add_do_not_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(raw): Path<String>,
    Query(q): Query<RegionQuery>,
) -> Result<axum::Json<DoNotCallReport>, Problem> {
    let number = phone(&raw, region(&q)?)?;
    let added = state.store.add_do_not_call(org, vec![number], Utc::now()).await?;
    Ok(axum::Json(DoNotCallReport {
        added: added.added,
        already_listed: added.already_listed,
        contacts_finalised: added.contacts_finalised,
        invalid: 0,
        errors: Vec::new(),
    }))
}

/// Take a number off the list; the removal is kept, with the key that made it, in `GET /dnc/audit`.
/// Contacts already finalised stay finalised.
#[utoipa::path(delete, path = "/dnc/{phone}", tag = "do-not-call", params(("phone" = String, Path, description = "the number, E.164"), RegionQuery),
    security(("apiKey" = [])),
    responses((status = 204, description = "removed"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove_do_not_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    AuthenticatedKey { org, key_id }: AuthenticatedKey,
    Path(raw): Path<String>,
    Query(q): Query<RegionQuery>,
) -> Result<StatusCode, Problem> {
    let number = phone(&raw, region(&q)?)?;
    if state.store.remove_do_not_call(org, &number, &key_id, Utc::now()).await? {
        tracing::info!(phone = %number, key = %key_id, "number taken off the do-not-call list");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("{number} is not on the do-not-call list")))
    }
}

/// A number taken off the list: who (the API key) and when.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoNotCallRemovalView {
    pub phone: E164,
    pub removed_at: DateTime<Utc>,
    /// The API key (`key_…`) that removed it, or `operator`.
    pub removed_by: String,
}

/// Every removal from the list, oldest first: the audit trail of who let a number be called again.
#[utoipa::path(get, path = "/dnc/audit", tag = "do-not-call", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<DoNotCallRemovalView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_do_not_call_removals<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<DoNotCallRemovalView>>, Problem> {
    let page = state.store.list_do_not_call_removals(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, |r| DoNotCallRemovalView { phone: r.phone, removed_at: r.removed_at, removed_by: r.removed_by })))
}

/// The list, in number order.
#[utoipa::path(get, path = "/dnc", tag = "do-not-call", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<DoNotCall>), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_do_not_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<DoNotCall>>, Problem> {
    let page = state.store.list_do_not_call(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, DoNotCall::from)))
}

/// Numbers added per store call in a bulk upload.
const BULK_BATCH: usize = 500;

/// Add numbers in bulk from CSV (`text/csv`): a header row with a phone column (also
/// `phone_number`, `number`), or one number per line without a header. Invalid lines are listed.
#[utoipa::path(post, path = "/dnc", tag = "do-not-call", params(RegionQuery),
    request_body(content = String, content_type = "text/csv"), security(("apiKey" = [])),
    responses((status = 200, body = DoNotCallReport), (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn import_do_not_call<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<RegionQuery>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<axum::Json<DoNotCallReport>, Problem> {
    let body = body.map_err(|e| Problem::new(e.status(), "unreadable-body", "Unreadable body", e.body_text()))?;
    let region = region(&q)?;
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body.as_bytes());
    let mut report = DoNotCallReport { added: 0, already_listed: 0, contacts_finalised: 0, invalid: 0, errors: Vec::new() };
    let mut tally = crate::import::Tally::default();
    let mut column = None;
    let mut batch = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut line = 0;
    while csv.read_record(&mut record).map_err(|e| Problem::bad_request(format!("unreadable CSV: {e}")))? {
        line = record.position().map_or(line + 1, csv::Position::line);
        let col = match column {
            Some(c) => c,
            None => {
                // the first row is a header when one of its cells names the phone column
                let header = record.iter().position(|h| domain::import::ColumnRole::of(h) == domain::import::ColumnRole::Phone);
                column = Some(header.unwrap_or(0));
                if header.is_some() {
                    continue;
                }
                0
            }
        };
        let raw = record.get(col).unwrap_or("").trim();
        if raw.is_empty() {
            continue;
        }
        match E164::parse(raw, region) {
            Ok(number) => batch.push(number),
            Err(e) => tally.invalid(line, domain::import::RowError::new(raw, e.reason)),
        }
        if batch.len() >= BULK_BATCH {
            add(&state, org, std::mem::take(&mut batch), &mut report).await?;
        }
    }
    add(&state, org, batch, &mut report).await?;
    (report.invalid, report.errors) = (tally.invalid, tally.errors);
    Ok(axum::Json(report))
}

async fn add<S: Store, C: CampaignScheduler, Q: JobQueue>(
    state: &AppState<S, C, Q>,
    org: domain::OrgId,
    numbers: Vec<E164>,
    report: &mut DoNotCallReport,
) -> Result<(), Problem> {
    if numbers.is_empty() {
        return Ok(());
    }
    let added = state.store.add_do_not_call(org, numbers, Utc::now()).await?;
    report.added += added.added;
    report.already_listed += added.already_listed;
    report.contacts_finalised += added.contacts_finalised;
    Ok(())
}
