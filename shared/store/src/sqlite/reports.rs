//! Hour counters and daily organisation reports.

use super::*;
use crate::ReportStore;
use domain::{
    EmailAddress,
    report::{DailyReport, ReportCounts, hour_key},
};
use std::collections::BTreeMap;

impl ReportStore for SqliteStore {
    async fn report_counts_between(
        &self,
        org: OrgId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<CampaignId, ReportCounts>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT campaign_id, name, SUM(value) FROM report_hour_counts WHERE org_id = ?1 AND hour >= ?2 AND hour < ?3 \
                     GROUP BY campaign_id, name",
                )
                .and_then(|mut s| {
                    s.query_map(params![org.to_string(), hour_key(from), hour_key(to)], |r| {
                        Ok((parsed(CampaignId::parse(&r.get::<_, String>(0)?))?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(decoding)?;
            let mut by_campaign: BTreeMap<CampaignId, ReportCounts> = BTreeMap::new();
            for (campaign, name, n) in rows.into_iter().filter(|(.., n)| *n != 0) {
                by_campaign.entry(campaign).or_default().insert(name, n);
            }
            Ok(by_campaign)
        })
        .await
    }

    async fn daily_report(&self, org: OrgId, date: chrono::NaiveDate) -> Result<Option<DailyReport>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT report FROM daily_reports WHERE org_id = ?1 AND date = ?2")
                .and_then(|mut s| s.query_row(params![org.to_string(), date.to_string()], |r| json(r.get(0)?)).optional())
                .map_err(decoding)
        })
        .await
    }

    async fn save_daily_report(&self, org: OrgId, report: &DailyReport) -> Result<()> {
        let (date, body) = (report.date.to_string(), to_json(report));
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO daily_reports (org_id, date, report) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, date) DO UPDATE SET report = excluded.report",
                params![org.to_string(), date, body],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn daily_report_recipients(&self, org: OrgId) -> Result<Vec<EmailAddress>> {
        let stored: Option<Vec<String>> = self
            .read(move |conn| {
                org_exists(conn, org)?;
                conn.prepare_cached("SELECT recipients FROM daily_report_recipients WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row(params![org.to_string()], |r| json(r.get(0)?)).optional())
                    .map_err(decoding)
            })
            .await?;
        stored.unwrap_or_default().iter().map(|a| EmailAddress::parse(a).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn set_daily_report_recipients(&self, org: OrgId, recipients: Vec<EmailAddress>) -> Result<()> {
        let body = to_json(&recipients);
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO daily_report_recipients (org_id, recipients) VALUES (?1, ?2) \
                 ON CONFLICT (org_id) DO UPDATE SET recipients = excluded.recipients",
                params![org.to_string(), body],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
