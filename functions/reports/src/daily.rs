//! The daily organisation report: each morning, yesterday's calls of every organisation — a row
//! per campaign and the totals, summed from the hour counters the store keeps as calls end — kept
//! in the store and emailed to the organisation's recipients. The schedule runs
//! `send_daily_reports`; `GET /reports/daily/{date}` reads the same report at any time.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use domain::{
    FollowUpEmail, OrgId,
    report::{DailyReport, daily_window},
};
use platform::Mailer;
use store::{PageRequest, Store, StoreError};

/// The organisation's report of `date` in `zone` as the counters stand at `now`.
pub async fn build_daily_report<S: Store>(
    store: &S,
    org: OrgId,
    date: NaiveDate,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<DailyReport, StoreError> {
    let (from, to) = daily_window(date, zone);
    let mut campaigns = Vec::new();
    for (id, counts) in store.report_counts_between(org, from, to).await? {
        let name = store.get_campaign(org, id).await?.name;
        campaigns.push((id, name, counts));
    }
    Ok(DailyReport::new(date, zone, campaigns, now))
}

/// The report of `date` with its numbers as they stand now and what was emailed of it; and
/// whether the kept report already has these numbers.
async fn with_emails_kept<S: Store>(
    store: &S,
    org: OrgId,
    date: NaiveDate,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<(DailyReport, bool), StoreError> {
    let mut report = build_daily_report(store, org, date, zone, now).await?;
    let Some(kept) = store.daily_report(org, date).await? else { return Ok((report, false)) };
    let same_numbers = kept.complete && kept.campaigns == report.campaigns && kept.totals == report.totals;
    (report.emailed_to, report.emailed_at) = (kept.emailed_to, kept.emailed_at);
    Ok((report, same_numbers))
}

/// The report of `date` as it stands now, kept once the day is over (a late detail of that day's
/// calls, such as a cost, is in the next read, and kept then).
pub async fn current_daily_report<S: Store>(
    store: &S,
    org: OrgId,
    date: NaiveDate,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<DailyReport, StoreError> {
    let (report, kept) = with_emails_kept(store, org, date, zone, now).await?;
    // a read writes only what changed
    if report.complete && !kept {
        store.save_daily_report(org, &report).await?;
    }
    Ok(report)
}

/// What one run of the daily report did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRun {
    pub date: Option<NaiveDate>,
    pub organisations: u64,
    /// Organisations with calls that day.
    pub with_calls: u64,
    /// Emails sent, one per recipient.
    pub emails: u64,
    /// Organisations whose report could not be made or sent, each with why; a later run retries them.
    pub failed: Vec<String>,
}

/// The email of an organisation's day: the numbers as text, and the report page as its HTML part.
pub fn daily_email(report: &DailyReport, to: domain::EmailAddress) -> FollowUpEmail {
    FollowUpEmail {
        to,
        subject: format!("outdial daily report — {} ({} calls)", report.date, report.totals.finished),
        body: report.summary_text(),
        html: Some(crate::html::render_daily(report)),
    }
}

/// What the daily schedule delivers: `{}` (yesterday's reports) or `{"date": "YYYY-MM-DD"}`
/// (that day's, to make a missed day again).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyInput {
    pub date: Option<NaiveDate>,
}

/// The `daily-report` function: the day the schedule's input names (yesterday in `zone` when it
/// names none) for every organisation. An organisation that failed fails the invocation, so the
/// schedule's retry policy tries again (and sends nobody an email twice).
pub async fn on_schedule<S: Store, M: Mailer>(
    store: &S,
    mailer: Option<&M>,
    zone: Tz,
    input: Option<DailyInput>,
    now: DateTime<Utc>,
) -> Result<DailyRun, String> {
    let date = input.and_then(|input| input.date).unwrap_or_else(|| domain::report::yesterday(now, zone));
    let run = send_daily_reports(store, mailer, zone, date, now).await.map_err(|e| e.to_string())?;
    if run.failed.is_empty() { Ok(run) } else { Err(format!("the daily report of {date} failed for: {}", run.failed.join("; "))) }
}

/// Makes and keeps every organisation's report of `date`, emailing it to each recipient it has
/// not yet reached (without a mailer — no sender configured — the reports are only kept).
/// Running it again for the same date (a retried schedule) sends nothing twice: who was emailed
/// is kept on the report. One organisation's failure leaves the others alone.
pub async fn send_daily_reports<S: Store, M: Mailer>(
    store: &S,
    mailer: Option<&M>,
    zone: Tz,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<DailyRun, StoreError> {
    let mut run = DailyRun { date: Some(date), ..DailyRun::default() };
    let mut page = PageRequest { limit: 100, cursor: None };
    loop {
        let orgs = store.list_orgs(page.clone()).await?;
        for org in orgs.items {
            run.organisations += 1;
            if let Err(why) = send_one(store, mailer, org.id, zone, date, now, &mut run).await {
                tracing::error!(org = %org.id, %date, error = %why, "the daily report failed for an organisation");
                run.failed.push(format!("{}: {why}", org.id));
            }
        }
        match orgs.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    tracing::info!(%date, organisations = run.organisations, with_calls = run.with_calls, emails = run.emails, failed = run.failed.len(), "daily reports made");
    Ok(run)
}

async fn send_one<S: Store, M: Mailer>(
    store: &S,
    mailer: Option<&M>,
    org: OrgId,
    zone: Tz,
    date: NaiveDate,
    now: DateTime<Utc>,
    run: &mut DailyRun,
) -> Result<(), String> {
    let (mut report, _) = with_emails_kept(store, org, date, zone, now).await.map_err(|e| e.to_string())?;
    if report.totals.finished > 0 {
        run.with_calls += 1;
    }
    let mut refused = None;
    if let Some(mailer) = mailer {
        let recipients = store.daily_report_recipients(org).await.map_err(|e| e.to_string())?;
        let pending: Vec<_> = recipients.into_iter().filter(|r| !report.emailed_to.iter().any(|sent| sent == r.as_str())).collect();
        if !pending.is_empty() {
            report.emailed_at = Some(now);
        }
        for to in pending {
            let address = to.as_str().to_string();
            match mailer.send(&daily_email(&report, to)).await {
                Ok(_) => {
                    report.emailed_to.push(address);
                    run.emails += 1;
                }
                Err(e) => refused = Some(format!("{}: {e}", domain::mask_email(&address))),
            }
        }
    }
    // one write: the day's numbers and who has them
    store.save_daily_report(org, &report).await.map_err(|e| e.to_string())?;
    refused.map_or(Ok(()), Err)
}
