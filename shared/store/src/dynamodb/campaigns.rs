//! Campaigns and their contacts: creation, status, cancel, imports, tallies, lists.

use super::*;

impl CampaignStore for DynamoStore {
    async fn create_campaign(&self, org: OrgId, new: NewCampaign) -> Result<Campaign> {
        self.org_exists(org).await?;
        let campaign = Campaign::draft(org, new, now());
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&CampaignItem::from(&campaign))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(campaign)
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        Ok(self.campaign_item(org, id).await?.into())
    }

    async fn list_campaigns(&self, org: OrgId, page: PageRequest) -> Result<Page<Campaign>> {
        let values = vec![(":pk", s(org_pk(org))), (":prefix", s("CAMPAIGN#"))];
        let (items, next_cursor) =
            self.page::<CampaignItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"]).await?;
        Ok(Page { items: items.into_iter().map(Campaign::from).collect(), next_cursor })
    }

    async fn campaigns_with_status(&self, org: OrgId, status: CampaignStatus) -> Result<Vec<Campaign>> {
        Ok(self.all_campaigns(org).await?.into_iter().filter(|c| c.status == status).collect())
    }

    async fn cancel_campaign(&self, org: OrgId, id: CampaignId, now: DateTime<Utc>) -> Result<Campaign> {
        let now = millis(now);
        let from = [CampaignStatus::Draft, CampaignStatus::Running, CampaignStatus::Paused];
        self.set_campaign_status(org, id, &from, CampaignStatus::Canceled, now).await?;
        // claims need a running campaign, so no contact becomes ready or dialing from here on
        loop {
            let ready = self.ready_contacts(id, ReadyRange::All, ((MAX_TRANSACTION_ITEMS - 1) / 2) as i32).await?;
            if ready.is_empty() {
                return self.get_campaign(org, id).await;
            }
            let mut items = Vec::with_capacity(ready.len() + 1);
            let mut ids = Vec::with_capacity(ready.len());
            let mut moves = ContactMoves::default();
            for raw in ready {
                let ContactItem { version, mut contact, .. } = decode(raw)?;
                ids.push(contact.id);
                let before = contact.standing();
                contact.settle(ContactFate::Done(ContactDisposition::Canceled), now);
                moves.record(Some(before), contact.standing());
                items.push(self.put(encode(&ContactItem::new(contact, version + 1)), "version = :v", &[(":v", n(version))])?);
            }
            let k = ids.len();
            items.push(self.campaign_update(org, id, "SET contacts_done = contacts_done + :k", None, &[(":k", n(k))], &moves)?);
            if self.transact(items).await? {
                continue;
            }
            // one of them changed meanwhile (its call settled it): take them one by one
            let mut finalised = 0;
            for contact in ids {
                finalised += u32::from(self.finalise_ready_contact(org, id, contact, ContactDisposition::Canceled, now).await?);
            }
            if finalised == 0 {
                // the index lags the table: what it still lists is no longer ready
                backoff(3).await;
            }
        }
    }

    async fn campaigns_using_assistant(&self, org: OrgId, assistant: AssistantId) -> Result<Vec<Campaign>> {
        Ok(self.all_campaigns(org).await?.into_iter().filter(|c| c.assistant_id == Some(assistant)).collect())
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
        let allowed: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut set = vec!["#status = :to"];
        // the first start is kept, as `Campaign::move_to` keeps it
        if to.marks_start() {
            set.push("started_at = if_not_exists(started_at, :now)");
        }
        if to.marks_end() {
            set.push("completed_at = :now");
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s(campaign_sk(id)))
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(format!("attribute_exists(pk) AND #status IN ({})", allowed.join(", ")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", av(&to))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        if set.len() > 1 {
            request = request.expression_attribute_values(":now", av(&now));
        }
        for (name, status) in allowed.iter().zip(from) {
            request = request.expression_attribute_values(name, av(status));
        }
        match request.send().await {
            Ok(out) => Ok(decode::<CampaignItem>(out.attributes.unwrap_or_default())?.into()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let current = self.campaign_item(org, id).await?;
                Err(StoreError::Conflict(format!("campaign {id} is {}, not {}", current.status.as_str(), statuses(from))))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn add_contacts(&self, org: OrgId, campaign: CampaignId, contacts: Vec<NewContact>, now: DateTime<Utc>) -> Result<AddedContacts> {
        let now = millis(now);
        let target = Campaign::from(self.campaign_item(org, campaign).await?);
        let mut outcome = AddedContacts::default();
        let listed = self.listed_among(org, &contacts.iter().map(|c| &c.phone).collect::<Vec<_>>()).await?;
        let mut seen = HashSet::new();
        let mut unique = Vec::with_capacity(contacts.len());
        for c in contacts {
            if listed.contains(c.phone.as_str()) {
                outcome.do_not_call += 1;
            } else if seen.insert(c.phone.clone()) {
                let mut contact = Contact::ready(campaign, c, now);
                contact.batch = target.batch_of(target.counters.contacts_total + unique.len() as u64);
                unique.push(contact);
            } else {
                outcome.duplicates += 1;
            }
        }
        let guard = |c: &Contact| -> Result<TransactWriteItem> {
            let item = HashMap::from([
                ("pk".to_string(), s(campaign_pk(campaign))),
                ("sk".to_string(), s(format!("PHONE#{}", c.phone.as_str()))),
                ("contact_id".to_string(), s(c.id.to_string())),
            ]);
            self.put(item, "attribute_not_exists(pk)", &[])
        };
        // the calling areas of a campaign's contacts, kept on it so a tick queries only those open now
        let count = |contacts: &[Contact]| {
            let areas: BTreeSet<String> = contacts.iter().map(|c| c.calling_area().key()).collect();
            let mut moves = ContactMoves::default();
            for c in contacts {
                moves.record(None, c.standing());
            }
            self.campaign_update(
                org,
                campaign,
                &format!("SET contacts_total = contacts_total + :k ADD {CAMPAIGN_AREAS} :areas"),
                None,
                &[(":k", n(contacts.len())), (":areas", AttributeValue::Ss(areas.into_iter().collect()))],
                &moves,
            )
        };
        for chunk in unique.chunks((MAX_TRANSACTION_ITEMS - 1) / 2) {
            let mut items = Vec::with_capacity(chunk.len() * 2 + 1);
            for c in chunk {
                items.push(guard(c)?);
                items.push(self.put(encode(&ContactItem::new(c.clone(), 1)), "attribute_not_exists(pk)", &[])?);
            }
            items.push(count(chunk)?);
            if self.transact(items).await? {
                outcome.added += chunk.len() as u64;
                continue;
            }
            // some number is already there: add one by one to tell which
            for c in chunk {
                let phone_key = format!("PHONE#{}", c.phone.as_str());
                let mut attempt = 0;
                loop {
                    let items = vec![
                        guard(c)?,
                        self.put(encode(&ContactItem::new(c.clone(), 1)), "attribute_not_exists(pk)", &[])?,
                        count(std::slice::from_ref(c))?,
                    ];
                    if self.transact(items).await? {
                        outcome.added += 1;
                        break;
                    }
                    if self.get(campaign_pk(campaign), &phone_key).await?.is_some() {
                        outcome.duplicates += 1;
                        break;
                    }
                    attempt += 1;
                    if attempt > MAX_RETRIES {
                        return Err(StoreError::backend("adding a contact kept colliding with other writes"));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(outcome)
    }

    async fn get_contact(&self, org: OrgId, campaign: CampaignId, id: ContactId) -> Result<Contact> {
        self.campaign_item(org, campaign).await?;
        let item = self.get(campaign_pk(campaign), &format!("CONTACT#{id}")).await?.ok_or_else(|| StoreError::not_found("contact", id))?;
        Ok(decode::<ContactItem>(item)?.contact)
    }

    async fn record_start_refusal(&self, org: OrgId, id: CampaignId, refusal: StartRefusal) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s(campaign_sk(id)))
            .update_expression("SET start_refused = :refusal")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":refusal", av(&refusal))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::not_found("campaign", id)),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn calling_areas(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<CallingArea>> {
        let item = self.get(org_pk(org), &campaign_sk(campaign)).await?.ok_or_else(|| StoreError::not_found("campaign", campaign))?;
        Self::areas_of(&item)
    }

    async fn contact_tally(&self, org: OrgId, campaign: CampaignId) -> Result<ContactTally> {
        let raw = self.get(org_pk(org), &campaign_sk(campaign)).await?.ok_or_else(|| StoreError::not_found("campaign", campaign))?;
        if decode::<CampaignItem>(raw.clone())?.contacts_counted {
            return ContactTally::from_counters(prefixed_numbers(&raw, CONTACT_COUNTER_PREFIX)?);
        }
        // a campaign from before contact counters were kept
        #[derive(Deserialize)]
        struct Standing {
            state: ContactState,
            #[serde(default)]
            disposition: Option<ContactDisposition>,
        }
        let items = self.query_all(campaign_pk(campaign), "CONTACT#", Some("#state, disposition")).await?;
        let mut tally = ContactTally::default();
        for item in items {
            let standing: Standing = decode(item)?;
            *tally.by_state.entry(standing.state).or_default() += 1;
            if let Some(d) = standing.disposition {
                *tally.by_disposition.entry(d).or_default() += 1;
            }
        }
        Ok(tally)
    }

    async fn list_contacts(&self, org: OrgId, campaign: CampaignId, filter: ContactFilter, page: PageRequest) -> Result<Page<Contact>> {
        self.campaign_item(org, campaign).await?;
        let mut values = vec![(":pk", s(campaign_pk(campaign))), (":prefix", s("CONTACT#"))];
        let condition = equalities(
            &mut values,
            [
                ("#state = :state", ":state", filter.state.map(|v| av(&v))),
                ("disposition = :disposition", ":disposition", filter.disposition.map(|v| av(&v))),
            ],
        );
        let (items, next_cursor) = self
            .page::<ContactItem>(None, "pk = :pk AND begins_with(sk, :prefix)", condition.as_deref(), values, &page, &["pk", "sk"])
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.contact).collect(), next_cursor })
    }
}
