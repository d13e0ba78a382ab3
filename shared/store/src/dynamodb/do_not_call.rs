//! The organisation's do-not-call list.

use super::*;
use crate::DoNotCallRemoval;

#[derive(Serialize, Deserialize)]
struct DoNotCallRemovalItem {
    pk: String,
    sk: String,
    phone: String,
    removed_at: DateTime<Utc>,
    removed_by: String,
}

impl DoNotCallStore for DynamoStore {
    async fn add_do_not_call(&self, org: OrgId, phones: Vec<E164>, now: DateTime<Utc>) -> Result<DoNotCallAdded> {
        let now = millis(now);
        self.org_exists(org).await?;
        let mut outcome = DoNotCallAdded::default();
        let live: Vec<Campaign> = self
            .all_campaigns(org)
            .await?
            .into_iter()
            .filter(|c| matches!(c.status, CampaignStatus::Running | CampaignStatus::Paused))
            .collect();
        for phone in phones {
            let item = encode(&DoNotCallItem { pk: dnc_pk(org), sk: phone.as_str().to_string(), added_at: now });
            let put = self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression("attribute_not_exists(pk)");
            match put.send().await {
                Ok(_) => outcome.added += 1,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => outcome.already_listed += 1,
                Err(e) => return Err(sdk(e)),
            }
            for campaign in &live {
                let Some(guard) = self.get(campaign_pk(campaign.id), &format!("PHONE#{}", phone.as_str())).await? else { continue };
                let Some(contact) = guard.get("contact_id").and_then(|v| v.as_s().ok()).and_then(|id| ContactId::parse(id).ok()) else {
                    return Err(StoreError::Corrupt(format!("a phone guard of campaign {} names no contact", campaign.id)));
                };
                if self.finalise_ready_contact(org, campaign.id, contact, ContactDisposition::DoNotCall, now).await? {
                    outcome.contacts_finalised += 1;
                }
            }
        }
        Ok(outcome)
    }

    async fn remove_do_not_call(&self, org: OrgId, phone: &E164, by: &str, now: DateTime<Utc>) -> Result<bool> {
        let now = millis(now);
        let audit = DoNotCallRemovalItem {
            pk: format!("DNCAUDIT#{org}"),
            // time first (oldest first), then a unique tail: two removals in one millisecond both stay
            sk: format!("{:013}#{}", now.timestamp_millis(), uuid::Uuid::now_v7().simple()),
            phone: phone.as_str().to_string(),
            removed_at: now,
            removed_by: by.to_string(),
        };
        let writes = vec![
            self.delete_step(dnc_pk(org), phone.as_str(), "attribute_exists(pk)", &[])?,
            self.put(encode(&audit), "attribute_not_exists(pk)", &[])?,
        ];
        self.transact(writes).await
    }

    async fn list_do_not_call_removals(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallRemoval>> {
        let values = vec![(":pk", s(format!("DNCAUDIT#{org}")))];
        let (items, next_cursor) = self.page::<DoNotCallRemovalItem>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        let items = items
            .into_iter()
            .map(|i| Ok(DoNotCallRemoval { phone: E164::try_from(i.phone)?, removed_at: i.removed_at, removed_by: i.removed_by }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn is_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        Ok(self.get(dnc_pk(org), phone.as_str()).await?.is_some())
    }

    async fn list_do_not_call(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallEntry>> {
        let values = vec![(":pk", s(dnc_pk(org)))];
        let (items, next_cursor) = self.page::<DoNotCallItem>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        let items = items
            .into_iter()
            .map(|i| Ok(DoNotCallEntry { phone: E164::try_from(i.sk)?, added_at: i.added_at }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }
}
