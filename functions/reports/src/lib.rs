//! The `reports` HTTP function: a campaign's numbers (`GET /campaigns/{id}/report`, read from the
//! counters the store keeps as calls end, so a report costs the same at any size) and every call
//! as CSV (`GET /campaigns/{id}/calls.csv`, streamed page by page in constant memory), and the
//! same numbers as an HTML page with charts (`GET /campaigns/{id}/report.html`), which a signed,
//! expiring link opens without an API key (`POST /campaigns/{id}/report-links`); and each
//! organisation's daily report (`GET /reports/daily/{date}`, its recipients at
//! `PUT /reports/daily/recipients`), which a schedule makes and emails each morning (`daily`).

pub mod daily;
pub mod html;

use axum::response::IntoResponse;
use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::header,
    response::Response,
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{
    Call, CampaignId, OrgId,
    report::{CampaignReport, DailyReport},
};
use futures::{StreamExt, TryStreamExt, stream};
use platform::{AuthState, Authenticated, Problem, extract::Json, extract::Query};
use serde::Deserialize;
use store::{CallFilter, PageRequest, Store};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Clone)]
pub struct AppState<S> {
    pub store: S,
    /// Signs shared report links; None when the deployment has no key (`OUTDIAL_SECRET_KEY`).
    pub secrets: Option<platform::SecretBox>,
    /// Whose days the daily report covers (`OUTDIAL_REPORT_TIME_ZONE`).
    pub report_time_zone: chrono_tz::Tz,
}

impl<S> AppState<S> {
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        Self { store, secrets: config.secrets.clone(), report_time_zone: config.report_time_zone }
    }
}

impl<S: Store> AuthState for AppState<S> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.store
    }
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: Store>() -> OpenApiRouter<AppState<S>> {
    OpenApiRouter::new()
        .routes(routes!(get_campaign_report))
        .routes(routes!(calls_csv))
        .routes(routes!(report_page))
        .routes(routes!(create_report_link))
        .routes(routes!(get_daily_report))
        .routes(routes!(get_daily_recipients, set_daily_recipients))
}

/// Who receives the organisation's daily report by email.
#[derive(Debug, Default, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct DailyRecipients {
    /// Email addresses, at most 20.
    #[schema(format = Email, max_items = 20)]
    pub recipients: Vec<String>,
}

impl DailyRecipients {
    pub const MAX: usize = 20;

    fn of(recipients: &[domain::EmailAddress]) -> Self {
        Self { recipients: recipients.iter().map(|r| r.as_str().to_string()).collect() }
    }
}

/// Who receives the organisation's daily report (empty: nobody; the report is still kept).
#[utoipa::path(get, path = "/reports/daily/recipients", tag = "reports", security(("apiKey" = [])),
    responses((status = 200, body = DailyRecipients)))]
async fn get_daily_recipients<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
) -> Result<axum::Json<DailyRecipients>, Problem> {
    let recipients = state.store.daily_report_recipients(org).await?;
    Ok(axum::Json(DailyRecipients::of(&recipients)))
}

/// Sets who receives the organisation's daily report by email, replacing the list (at most 20
/// addresses; repeats are kept once; `[]` stops the emails).
#[utoipa::path(put, path = "/reports/daily/recipients", tag = "reports", request_body = DailyRecipients, security(("apiKey" = [])),
    responses((status = 200, body = DailyRecipients), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn set_daily_recipients<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Json(body): Json<DailyRecipients>,
) -> Result<axum::Json<DailyRecipients>, Problem> {
    let mut errors = Vec::new();
    let mut recipients: Vec<domain::EmailAddress> = Vec::new();
    if body.recipients.len() > DailyRecipients::MAX {
        errors.push(domain::ParseError::new(
            "recipients",
            format!("has {} addresses; at most {} are kept", body.recipients.len(), DailyRecipients::MAX),
        ));
    }
    for (i, raw) in body.recipients.iter().enumerate() {
        match domain::EmailAddress::parse(raw) {
            Ok(address) if recipients.iter().any(|r| r.as_str().eq_ignore_ascii_case(address.as_str())) => {}
            Ok(address) => recipients.push(address),
            Err(e) => errors.push(domain::ParseError::new("recipients", format!("item {i}: {}", e.reason))),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    state.store.set_daily_report_recipients(org, recipients.clone()).await?;
    tracing::info!(recipients = recipients.len(), "daily report recipients set");
    Ok(axum::Json(DailyRecipients::of(&recipients)))
}

/// The organisation's report of one day in the deployment's report time zone: a row per campaign
/// whose calls ended that day, and the totals. `2026-11-24` answers JSON; `2026-11-24.html` the
/// page the morning email carries. A day still going answers the numbers so far (`complete: false`).
#[utoipa::path(get, path = "/reports/daily/{date}", tag = "reports",
    params(("date" = String, Path, pattern = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|yesterday|today)(\.html)?$", description = "the day: 2026-11-24, yesterday or today; with .html for the page")),
    security(("apiKey" = [])),
    responses((status = 200, content((DailyReport = "application/json"), (String = "text/html"))),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "a day that has not begun or is not on the calendar"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn get_daily_report<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(date): Path<String>,
) -> Result<Response, Problem> {
    let (day, as_page) = date.strip_suffix(".html").map_or((date.as_str(), false), |day| (day, true));
    let (zone, now) = (state.report_time_zone, Utc::now());
    let day = match day {
        "yesterday" => domain::report::yesterday(now, zone),
        "today" => now.with_timezone(&zone).date_naive(),
        day => match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
            Ok(day) => day,
            // shaped like a day but not on the calendar (2026-02-30): there is no such day to report
            Err(_) if day.len() == 10 && day.as_bytes()[4] == b'-' && day.as_bytes()[7] == b'-' => {
                return Err(Problem::not_found(format!("there is no day {day} on the calendar")));
            }
            Err(_) => {
                return Err(Problem::validation(vec![domain::ParseError::new(
                    "date",
                    format!("{day:?} is not a day like 2026-11-24, yesterday or today"),
                )]));
            }
        },
    };
    if day > now.with_timezone(&zone).date_naive() {
        return Err(Problem::not_found(format!("there is no report of {day} yet: that day has not begun in {}", zone.name())));
    }
    let report = daily::current_daily_report(&state.store, org, day, zone, now).await?;
    Ok(if as_page { axum::response::Html(html::render_daily(&report)).into_response() } else { axum::Json(report).into_response() })
}

fn campaign_id(raw: &str) -> Result<CampaignId, Problem> {
    // an id that cannot exist is simply not found, like another organisation's
    CampaignId::parse(raw).map_err(|_| Problem::not_found(format!("campaign {raw} was not found")))
}

/// A campaign's numbers: contacts by state and disposition; calls dialed, answered, human,
/// machine, failed and their rates; abandonment (live answers that did not hear the agent within
/// 2 s); talk time and duration percentiles; cost; success rate; calls per hour.
#[utoipa::path(get, path = "/campaigns/{id}/report", tag = "reports", params(("id" = String, Path, description = "campaign id")),
    security(("apiKey" = [])),
    responses((status = 200, body = CampaignReport), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_campaign_report<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignReport>, Problem> {
    Ok(axum::Json(campaign_report(&state.store, org, campaign_id(&id)?).await?))
}

/// The campaign's report as of now, from its counters and its contacts' tally.
pub async fn campaign_report<S: Store>(store: &S, org: OrgId, id: CampaignId) -> Result<CampaignReport, store::StoreError> {
    let campaign = store.get_campaign(org, id).await?;
    let counts = store.campaign_report_counts(org, campaign.id).await?;
    let tally = store.contact_tally(org, campaign.id).await?;
    Ok(CampaignReport::new(&campaign, tally.by_state, tally.by_disposition, &counts, Utc::now()))
}

/// What a shared report link carries besides the campaign in its path.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The organisation the link was made for.
    pub org: Option<String>,
    /// When the link stops working, in Unix seconds.
    pub expires: Option<i64>,
    /// outdial's signature of the link.
    pub signature: Option<String>,
}

fn link_message(org: OrgId, campaign: CampaignId, expires: i64) -> String {
    format!("report-link|v1|{org}|{campaign}|{expires}")
}

fn forbidden(slug: &'static str, title: &'static str, detail: &str) -> Problem {
    Problem::new(axum::http::StatusCode::FORBIDDEN, slug, title, detail)
}

/// The campaign's report as one self-contained HTML page with its charts: with an API key, or
/// opened from a shared link (`org`, `expires`, `signature`; see `POST /campaigns/{id}/report-links`).
#[utoipa::path(get, path = "/campaigns/{id}/report.html", tag = "reports", params(("id" = String, Path, description = "campaign id"), LinkQuery),
    security(("apiKey" = []), ()),
    responses((status = 200, content_type = "text/html", body = String),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "an expired or altered link"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn report_page<S: Store>(
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    Query(link): Query<LinkQuery>,
    mut parts: axum::http::request::Parts,
) -> Result<axum::response::Html<String>, Problem> {
    let campaign = campaign_id(&id)?;
    let org = match (&link.org, link.expires, &link.signature) {
        (None, None, None) => {
            let Authenticated(org) = <Authenticated as axum::extract::FromRequestParts<_>>::from_request_parts(&mut parts, &state).await?;
            org
        }
        (Some(org), Some(expires), Some(signature)) => {
            let invalid = || {
                forbidden(
                    "report-link-invalid",
                    "Invalid report link",
                    "this link was not made by outdial or was changed; ask for a new one",
                )
            };
            let org = OrgId::parse(org).map_err(|_| invalid())?;
            let secrets = state.secrets.as_ref().ok_or_else(invalid)?;
            if !secrets.verify(&link_message(org, campaign, expires), signature) {
                return Err(invalid());
            }
            if expires <= Utc::now().timestamp() {
                return Err(forbidden("report-link-expired", "Report link expired", "this link has expired; ask for a new one"));
            }
            org
        }
        _ => {
            return Err(forbidden(
                "report-link-invalid",
                "Invalid report link",
                "a report link carries org, expires and signature together",
            ));
        }
    };
    Ok(axum::response::Html(html::render(&campaign_report(&state.store, org, campaign).await?)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LinkRequest {
    /// How long the link works, in days (1–90; 7 when not given).
    #[param(minimum = 1, maximum = 90)]
    pub expires_in_days: Option<i64>,
}

/// A link that opens the campaign's HTML report without an API key, read-only, until it expires.
#[derive(Debug, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Make a shareable link to the campaign's HTML report: signed, read-only, expiring (7 days
/// unless `expiresInDays` says otherwise, at most 90).
#[utoipa::path(post, path = "/campaigns/{id}/report-links", tag = "reports", params(("id" = String, Path, description = "campaign id"), LinkRequest),
    security(("apiKey" = [])),
    responses((status = 201, body = ReportLink), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "OUTDIAL_SECRET_KEY is not set")))]
async fn create_report_link<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<LinkRequest>,
    headers: axum::http::HeaderMap,
) -> Result<(axum::http::StatusCode, axum::Json<ReportLink>), Problem> {
    let days = q.expires_in_days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(Problem::validation(vec![domain::ParseError::new("expiresInDays", "must be 1–90")]));
    }
    let campaign = state.store.get_campaign(org, campaign_id(&id)?).await?;
    let secrets = state.secrets.as_ref().ok_or_else(|| Problem::secrets_not_configured("sign report links"))?;
    let expires_at = Utc::now() + chrono::TimeDelta::days(days);
    let expires = expires_at.timestamp();
    let signature = secrets.sign(&link_message(org, campaign.id, expires));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    let url = format!("{scheme}://{host}/campaigns/{}/report.html?org={org}&expires={expires}&signature={signature}", campaign.id);
    tracing::info!(campaign = %campaign.id, days, "report link made");
    let expires_at = DateTime::from_timestamp(expires, 0).unwrap_or(expires_at);
    Ok((axum::http::StatusCode::CREATED, axum::Json(ReportLink { url, expires_at })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CsvQuery {
    /// Full phone numbers instead of masked ones (`+1415***0123`).
    #[serde(default)]
    pub include_phone: bool,
}

/// The CSV's columns, in order: a stable contract for spreadsheets and scripts.
pub const CSV_COLUMNS: [&str; 17] = [
    "call_id",
    "contact_id",
    "phone",
    "attempt",
    "provider",
    "status",
    "disposition",
    "answered_by",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "cost",
    "connect_delay_ms",
    "summary",
    "recording_url",
    "consent_source",
];

/// Calls fetched and written per page.
const CSV_PAGE: u32 = 500;

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).unwrap_or_default()
}

fn text<T: serde::Serialize>(value: Option<T>) -> String {
    value.and_then(|v| serde_json::to_value(v).ok()).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn csv_row(call: &Call, provider: &str, consent: Option<domain::ConsentSource>, full_phone: bool) -> [String; 17] {
    let d = &call.details;
    let connect_delay = d.answered_at.zip(d.connected_at).map(|(a, c)| (c - a).num_milliseconds().to_string());
    [
        call.id.to_string(),
        call.contact_id.to_string(),
        if full_phone { call.phone.as_str().to_string() } else { call.phone.masked() },
        call.attempt.to_string(),
        provider.to_string(),
        call.state.as_str().to_string(),
        call.disposition().map(|d| d.as_str().to_string()).unwrap_or_default(),
        text(d.answered_by),
        time(call.placed_at),
        time(d.answered_at),
        time(call.ended_at),
        d.duration_secs.map(|s| s.to_string()).unwrap_or_default(),
        d.cost.map(|c| c.to_string()).unwrap_or_default(),
        connect_delay.unwrap_or_default(),
        d.summary.clone().unwrap_or_default(),
        d.recording_url.clone().unwrap_or_default(),
        text(consent),
    ]
}

/// CSV lines of `rows`, every cell made safe to open in a spreadsheet (a summary is the callee's words).
fn csv_bytes<R: AsRef<str>>(rows: impl IntoIterator<Item = impl IntoIterator<Item = R>>) -> Result<Bytes, std::io::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        let row: Vec<String> = row.into_iter().map(|cell| domain::report::spreadsheet_safe(cell.as_ref()).into_owned()).collect();
        out.write_record(&row).map_err(std::io::Error::other)?;
    }
    out.into_inner().map(Bytes::from).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Every call of the campaign as CSV, in the order they were made, streamed page by page (any
/// size, constant memory). Columns: `call_id, contact_id, phone, attempt, provider, status,
/// disposition, answered_by, started_at, answered_at, ended_at, duration_seconds, cost,
/// connect_delay_ms, summary, recording_url, consent_source`; phones masked unless `includePhone=true`.
#[utoipa::path(get, path = "/campaigns/{id}/calls.csv", tag = "reports", params(("id" = String, Path, description = "campaign id"), CsvQuery),
    security(("apiKey" = [])),
    responses((status = 200, content_type = "text/csv", body = String, description = "a header line, then one line per call"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn calls_csv<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<CsvQuery>,
) -> Result<Response, Problem> {
    let campaign = state.store.get_campaign(org, campaign_id(&id)?).await?;
    let provider = campaign.settings.provider.as_str();
    tracing::info!(campaign = %campaign.id, full_phones = q.include_phone, "calls CSV streamed");
    let header_line = stream::once(async { csv_bytes([CSV_COLUMNS]) });
    let pages = stream::try_unfold(Some(PageRequest::first(CSV_PAGE)), move |page| {
        let store = state.store.clone();
        async move {
            let Some(page) = page else { return Ok(None) };
            let listed = store.list_calls(org, campaign.id, CallFilter::default(), page).await.map_err(std::io::Error::other)?;
            let mut rows = Vec::with_capacity(listed.items.len());
            for call in &listed.items {
                let consent = consent_of(&store, org, call).await.map_err(std::io::Error::other)?;
                rows.push(csv_row(call, provider, consent, q.include_phone));
            }
            let next = listed.next_cursor.map(|cursor| PageRequest { limit: CSV_PAGE, cursor: Some(cursor) });
            Ok(Some((csv_bytes(rows)?, next)))
        }
    });
    let body = Body::from_stream(header_line.chain(pages).inspect_err(|e| tracing::error!(error = %e, "the calls CSV stopped early")));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"calls-{}.csv\"", campaign.id))
        .body(body)
        .map_err(|e| {
            tracing::error!(error = %e, "the CSV response could not be built");
            Problem::internal()
        })
}

async fn consent_of<S: Store>(store: &S, org: OrgId, call: &Call) -> Result<Option<domain::ConsentSource>, store::StoreError> {
    Ok(store.get_contact(org, call.campaign_id, call.contact_id).await?.consent.map(|c| c.source))
}
