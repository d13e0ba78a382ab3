//! Hour counters and daily organisation reports.

use super::*;
use crate::ReportStore;
use domain::{
    EmailAddress,
    report::{DailyReport, hour_key},
};

const RECIPIENTS_SK: &str = "RECIPIENTS";

/// Daily reports and their recipients, apart from the organisation's other items so the
/// reports function writes nothing else.
fn daily_pk(org: OrgId) -> String {
    format!("DAILYREPORT#{org}")
}

fn daily_sk(date: chrono::NaiveDate) -> String {
    format!("DAILY#{date}")
}

impl ReportStore for DynamoStore {
    async fn report_counts_between(
        &self,
        org: OrgId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<BTreeMap<CampaignId, ReportCounts>> {
        let mut by_campaign: BTreeMap<CampaignId, ReportCounts> = BTreeMap::new();
        let mut start = None;
        loop {
            // `HOUR#<to>` sorts before every item of the hour `to`, which is left out
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(hours_pk(org)))
                .expression_attribute_values(":from", s(format!("{HOUR_SK_PREFIX}{}", hour_key(from))))
                .expression_attribute_values(":to", s(format!("{HOUR_SK_PREFIX}{}", hour_key(to))))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            for item in out.items.unwrap_or_default() {
                let campaign = item
                    .get("campaign")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|c| CampaignId::parse(c).ok())
                    .ok_or_else(|| StoreError::Corrupt("an hour's report counters name no campaign".into()))?;
                domain::report::add_counts(by_campaign.entry(campaign).or_default(), &counters_of(&item)?);
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        by_campaign.retain(|_, counts| !counts.is_empty());
        Ok(by_campaign)
    }

    async fn daily_report(&self, org: OrgId, date: chrono::NaiveDate) -> Result<Option<DailyReport>> {
        let Some(item) = self.get(daily_pk(org), &daily_sk(date)).await? else { return Ok(None) };
        let body = item
            .get("body")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("the daily report of {date} has no body")))?;
        serde_json::from_str(body).map(Some).map_err(|e| StoreError::Corrupt(format!("the daily report of {date}: {e}")))
    }

    async fn save_daily_report(&self, org: OrgId, report: &DailyReport) -> Result<()> {
        self.org_exists(org).await?;
        let body = serde_json::to_string(report).map_err(|e| StoreError::backend(format!("a daily report does not serialise: {e}")))?;
        let item = HashMap::from([
            ("pk".to_string(), s(daily_pk(org))),
            ("sk".to_string(), s(daily_sk(report.date))),
            ("body".to_string(), s(body)),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn daily_report_recipients(&self, org: OrgId) -> Result<Vec<EmailAddress>> {
        self.org_exists(org).await?;
        let Some(item) = self.get(daily_pk(org), RECIPIENTS_SK).await? else { return Ok(Vec::new()) };
        let listed: Vec<String> = item
            .get("recipients")
            .map(|v| serde_dynamo::from_attribute_value(v.clone()))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .unwrap_or_default();
        listed.iter().map(|a| EmailAddress::parse(a).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn set_daily_report_recipients(&self, org: OrgId, recipients: Vec<EmailAddress>) -> Result<()> {
        self.org_exists(org).await?;
        let listed: Vec<&str> = recipients.iter().map(EmailAddress::as_str).collect();
        let item = HashMap::from([
            ("pk".to_string(), s(daily_pk(org))),
            ("sk".to_string(), s(RECIPIENTS_SK)),
            ("recipients".to_string(), av(&listed)),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
        Ok(())
    }
}
