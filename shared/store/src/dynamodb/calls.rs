//! Calls: claims under the cap, events applied once, orphans, post-call marks.

use super::*;

impl CallStore for DynamoStore {
    async fn claim_due_contacts(
        &self,
        org: OrgId,
        campaign_id: CampaignId,
        now: DateTime<Utc>,
        max: u32,
        margin: chrono::TimeDelta,
    ) -> Result<Vec<Claim>> {
        let now = millis(now);
        let mut claims = Vec::new();
        let mut attempt = 0;
        // each claim writes its contact and call and checks its number is not listed; plus the campaign and the organisation
        const PER_TRANSACTION: u32 = ((MAX_TRANSACTION_ITEMS - 2) / 3) as u32;
        loop {
            // the transaction's check on the organisation makes the stop exact; reading it here saves the attempt
            let (raw, stopped) = self.campaign_and_stop(org, campaign_id).await?;
            let areas = Self::areas_of(&raw)?;
            let campaign = Campaign::from(decode::<CampaignItem>(raw)?);
            let want = campaign.free_slots().min(max - claims.len() as u32).min(PER_TRANSACTION);
            if campaign.status != CampaignStatus::Running || want == 0 || stopped {
                return Ok(claims);
            }
            if campaign.may_advance_batch() && self.advance_batch(&campaign).await? {
                continue;
            }
            let batch = campaign.claimable_batch();
            let mut candidates = Vec::new();
            for area in campaign.open_areas(&areas, now, margin) {
                for raw in self.ready_contacts(campaign_id, ReadyRange::Due { batch, area, now }, want as i32).await? {
                    candidates.push(decode::<ContactItem>(raw)?);
                }
            }
            candidates.sort_by(|a, b| domain::dialing::claim_order(&a.contact, &b.contact));
            candidates.truncate(want as usize);
            if candidates.is_empty() {
                return Ok(claims);
            }
            let listed = self.listed_among(org, &candidates.iter().map(|c| &c.contact.phone).collect::<Vec<_>>()).await?;
            let (listed, candidates): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| listed.contains(c.contact.phone.as_str()));
            let mut finalised = 0;
            for ContactItem { contact, .. } in listed {
                finalised +=
                    u32::from(self.finalise_ready_contact(org, campaign_id, contact.id, ContactDisposition::DoNotCall, now).await?);
            }
            if candidates.is_empty() {
                // none finalised: the index still lists contacts that changed; the next tick looks again
                if finalised == 0 {
                    return Ok(claims);
                }
                continue;
            }
            let mut items = Vec::with_capacity(candidates.len() * 2 + 1);
            let mut batch = Vec::with_capacity(candidates.len());
            let mut moves = ContactMoves::default();
            for ContactItem { version, mut contact, .. } in candidates {
                let before = contact.standing();
                contact.attempts += 1;
                contact.state = ContactState::Dialing;
                moves.record(Some(before), contact.standing());
                let call = Call::queued(org, campaign_id, contact.id, contact.attempts, contact.phone.clone(), now);
                contact.last_call_id = Some(call.id);
                items.push(self.put(
                    encode(&ContactItem::new(contact.clone(), version + 1)),
                    "version = :v AND #state = :ready",
                    &[(":v", n(version)), (":ready", av(&ContactState::Ready))],
                )?);
                items.push(self.put(encode(&CallItem::new(call.clone(), 1)), "attribute_not_exists(pk)", &[])?);
                // a number listed since it was read fails the claim; the retry finalises it instead
                items.push(self.check(dnc_pk(org), contact.phone.as_str().to_string(), "attribute_not_exists(pk)")?);
                batch.push(Claim { contact, call });
            }
            items.push(self.check(org_pk(org), "ORG".into(), &format!("attribute_exists(pk) AND attribute_not_exists({ORG_STOP})"))?);
            let k = batch.len() as u32;
            items.push(self.campaign_update(
                org,
                campaign_id,
                "SET active_calls = active_calls + :k, calls_total = calls_total + :k",
                Some("#status = :running AND cap = :cap AND active_calls <= :limit"),
                &[
                    (":k", n(k)),
                    (":running", av(&CampaignStatus::Running)),
                    (":cap", n(campaign.cap.get())),
                    (":limit", n(campaign.cap.get() - k)),
                ],
                &moves,
            )?);
            if self.transact(items).await? {
                claims.extend(batch);
                attempt = 0;
                continue;
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Ok(claims);
            }
            backoff(attempt).await;
        }
    }

    async fn apply_call_event(&self, org: OrgId, call_id: CallId, event: CallEvent, received_at: DateTime<Utc>) -> Result<Applied> {
        let (event, received_at) = (normalised(event), millis(received_at));
        let event_sk = format!("EVENT#{}", event.dedupe_key);
        let mut attempt = 0;
        loop {
            let CallItem { version, mut call, .. } = self.call_item(org, call_id).await?;
            let facts_before = CallFacts::of(&call);
            let absorbed = call.absorb(&event);
            let log = EventItem {
                pk: call_pk(call_id),
                sk: event_sk.clone(),
                seq: version,
                dedupe_key: event.dedupe_key.clone(),
                occurred_at: event.occurred_at,
                received_at,
                kind: event.kind.clone(),
            };
            let mut items = vec![
                self.put(encode(&log), "attribute_not_exists(pk)", &[])?,
                self.put(encode(&CallItem::new(call.clone(), version + 1)), "version = :v", &[(":v", n(version))])?,
            ];
            let mut contact_fate = None;
            let mut contact_moves = ContactMoves::default();
            let mut settled = crate::Settled::default();
            // the fate depends on the campaign's status (a canceled one retries nothing): it must not change meanwhile
            let mut status_seen = None;
            if absorbed.decides_contact(&call) {
                let campaign = Campaign::from(self.campaign_item(org, call.campaign_id).await?);
                let raw = self
                    .get(campaign_pk(call.campaign_id), &format!("CONTACT#{}", call.contact_id))
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing contact")))?;
                let ContactItem { version: contact_version, mut contact, .. } = decode(raw)?;
                let before = contact.standing();
                if let Some((fate, moved)) = settle_contact(&mut contact, &call, &campaign) {
                    contact_moves.record(Some(before), contact.standing());
                    items.push(self.put(
                        encode(&ContactItem::new(contact, contact_version + 1)),
                        "version = :v",
                        &[(":v", n(contact_version))],
                    )?);
                    contact_fate = Some(fate);
                    settled = moved;
                    status_seen = Some(campaign.status);
                }
            }
            let released = u32::from(absorbed.transition.releases_capacity);
            if released != 0 || settled != crate::Settled::default() || status_seen.is_some() {
                let mut values = vec![(":released", n(released)), (":done", n(settled.done)), (":calls", n(settled.calls))];
                if let Some(status) = status_seen {
                    values.push((":seen", av(&status)));
                }
                items.push(self.campaign_update(
                    org,
                    call.campaign_id,
                    "SET active_calls = active_calls - :released, contacts_done = contacts_done + :done, calls_total = calls_total + :calls",
                    status_seen.map(|_| "#status = :seen"),
                    &values,
                    &contact_moves,
                )?);
            }
            items.extend(self.report_updates(&call, facts_before.as_ref())?);
            if self.transact(items).await? {
                return Ok(Applied { duplicate: false, call, transition: Some(absorbed.transition), contact_fate });
            }
            if self.get(call_pk(call_id), &event_sk).await?.is_some() {
                let call = self.call_item(org, call_id).await?.call;
                return Ok(Applied { duplicate: true, call, transition: None, contact_fate: None });
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend(format!("call {call_id} kept changing under this event; retry it")));
            }
            backoff(attempt).await;
        }
    }

    async fn get_call(&self, org: OrgId, id: CallId) -> Result<Call> {
        Ok(self.call_item(org, id).await?.call)
    }

    async fn campaign_report_counts(&self, org: OrgId, campaign: CampaignId) -> Result<ReportCounts> {
        self.campaign_item(org, campaign).await?;
        counters_of(&self.get(campaign_pk(campaign), REPORT_SK).await?.unwrap_or_default())
    }

    async fn list_calls(&self, org: OrgId, campaign: CampaignId, filter: CallFilter, page: PageRequest) -> Result<Page<Call>> {
        self.campaign_item(org, campaign).await?;
        let mut values = vec![(":pk", s(format!("CAMPAIGN#{campaign}#CALLS")))];
        let mut conditions = Vec::new();
        if let Some(state) = filter.state {
            conditions.push("#state = :state");
            values.push((":state", s(state.as_str())));
        }
        if let Some(disposition) = filter.disposition {
            conditions.push("disposition = :disposition");
            values.push((":disposition", s(disposition.as_str())));
        }
        let filter = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let (items, next_cursor) = self
            .page::<CallItem>(
                Some(CAMPAIGN_CALLS_INDEX),
                "gsi2pk = :pk",
                filter.as_deref(),
                values,
                &page,
                &["pk", "sk", "gsi2pk", "gsi2sk"],
            )
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.call).collect(), next_cursor })
    }

    async fn append_transcript(&self, org: OrgId, call: CallId, first_line: u32, lines: String) -> Result<()> {
        self.call_item(org, call).await?;
        let chunk = HashMap::from([
            ("pk".to_string(), s(call_pk(call))),
            ("sk".to_string(), s(format!("TRANSCRIPT#{first_line:08}"))),
            ("lines".to_string(), s(lines)),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(chunk)).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn call_transcript(&self, org: OrgId, call: CallId) -> Result<Option<String>> {
        self.call_item(org, call).await?;
        let chunks: Vec<String> = self
            .query_all(call_pk(call), "TRANSCRIPT#", None)
            .await?
            .into_iter()
            .filter_map(|mut item| item.remove("lines").and_then(|v| v.as_s().ok().cloned()))
            .collect();
        Ok((!chunks.is_empty()).then(|| chunks.join("\n")))
    }

    async fn find_call_by_provider_id(&self, provider: CallProvider, provider_call_id: &str) -> Result<Option<(OrgId, CallId)>> {
        let Some(guard) = self.get(provider_call_pk(provider, provider_call_id), "PROVIDER_CALL").await? else { return Ok(None) };
        let field = |name: &str| {
            guard.get(name).and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt(format!("provider call guard without {name}")))
        };
        let org = OrgId::parse(field("org_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let call = CallId::parse(field("call_id")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Some((org, call)))
    }

    async fn call_owner(&self, call: CallId) -> Result<Option<OrgId>> {
        let Some(item) = self.get(call_pk(call), "CALL").await? else { return Ok(None) };
        Ok(Some(decode::<CallItem>(item)?.call.org_id))
    }

    async fn record_orphan_event(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        let (event, received_at) = (normalised(event), millis(received_at));
        let orphan = OrphanItem {
            pk: orphan_pk(provider, provider_call_id),
            sk: format!("EVENT#{}", event.dedupe_key),
            gsi1pk: ORPHANS.into(),
            gsi1sk: format!("{:015}#{}#{}", received_at.timestamp_millis().max(0), orphan_pk(provider, provider_call_id), event.dedupe_key),
            provider,
            provider_call_id: provider_call_id.to_string(),
            dedupe_key: event.dedupe_key,
            occurred_at: event.occurred_at,
            received_at,
            kind: event.kind,
            expires_at: (received_at + ORPHAN_MEMORY).timestamp(),
        };
        self.put_if_unchanged(encode(&orphan), "pk", None).await.map(drop)
    }

    async fn orphan_events(&self, provider: CallProvider, provider_call_id: &str) -> Result<Vec<StoredCallEvent>> {
        let items = self.query_all(orphan_pk(provider, provider_call_id), "EVENT#", None).await?;
        let mut orphans = items.into_iter().map(decode::<OrphanItem>).collect::<Result<Vec<_>>>()?;
        orphans.sort_by(|a, b| (a.received_at, &a.dedupe_key).cmp(&(b.received_at, &b.dedupe_key)));
        Ok(orphans.into_iter().map(|o| stored_event(o.dedupe_key, o.occurred_at, o.kind, o.received_at)).collect())
    }

    async fn orphaned_calls(&self, limit: u32, received_since: DateTime<Utc>) -> Result<Vec<(CallProvider, String)>> {
        let oldest_kept = format!("{:015}", received_since.timestamp_millis().max(0));
        let values = vec![(":pk", s(ORPHANS)), (":lo", s(oldest_kept))];
        let (items, _) = self
            .page::<OrphanItem>(
                Some(READY_INDEX),
                "gsi1pk = :pk AND gsi1sk >= :lo",
                None,
                values,
                &PageRequest::first(PageRequest::MAX_LIMIT),
                &["pk", "sk", "gsi1pk", "gsi1sk"],
            )
            .await?;
        let mut calls: Vec<(CallProvider, String)> = Vec::new();
        for orphan in items {
            let call = (orphan.provider, orphan.provider_call_id);
            if !calls.contains(&call) && calls.len() < limit as usize {
                calls.push(call);
            }
        }
        Ok(calls)
    }

    async fn remove_orphan_events(&self, provider: CallProvider, provider_call_id: &str, dedupe_keys: Vec<String>) -> Result<()> {
        for key in dedupe_keys {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(orphan_pk(provider, provider_call_id)))
                .key("sk", s(format!("EVENT#{key}")))
                .send()
                .await
                .map_err(sdk)?;
        }
        Ok(())
    }

    async fn calls_awaiting_post_call(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.campaign_item(org, campaign).await?;
        self.calls_in_index(format!("POSTCALL#{campaign}")).await
    }

    async fn mark_post_call(&self, org: OrgId, call_id: CallId, at: Option<DateTime<Utc>>) -> Result<bool> {
        self.modify_call(org, call_id, |call| {
            let changes = call.post_call_at.is_some() != at.is_some();
            call.post_call_at = at.map(millis);
            changes
        })
        .await
    }

    async fn list_call_events(&self, org: OrgId, call: CallId) -> Result<Vec<StoredCallEvent>> {
        self.call_item(org, call).await?;
        let mut events: Vec<EventItem> = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let values = vec![(":pk", s(call_pk(call))), (":prefix", s("EVENT#"))];
            let (items, next) =
                self.page::<EventItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"]).await?;
            events.extend(items);
            match next {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        events.sort_by_key(|e| e.seq);
        Ok(events.into_iter().map(|e| stored_event(e.dedupe_key, e.occurred_at, e.kind, e.received_at)).collect())
    }
}
