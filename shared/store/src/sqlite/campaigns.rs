//! Campaigns and their contacts: creation, status, cancel, imports, tallies, lists.

use super::*;

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
            campaign.move_to(CampaignStatus::Canceled, now);
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
            campaign.move_to(to, now);
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
            // new contacts are all ready: counted once per batch here (a trigger per row halves the import rate)
            tx.execute(
                "INSERT INTO contact_counts (campaign_id, name, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (campaign_id, name) DO UPDATE SET value = value + excluded.value",
                params![campaign.to_string(), format!("s:{}", ContactState::Ready.as_str()), outcome.added as i64],
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
            let counters: Vec<(String, i64)> = conn
                .prepare_cached("SELECT name, value FROM contact_counts WHERE campaign_id = ?1")
                .and_then(|mut s| s.query_map(params![campaign.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(backend)?;
            ContactTally::from_counters(counters)
        })
        .await
    }
}
