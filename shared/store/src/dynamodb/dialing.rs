//! What the tick and the dialer need beyond claiming: live calls, tick executions, the dial guard, the dial-time read, placements, pacing, caller IDs.

use super::*;

impl DialingStore for DynamoStore {
    async fn active_calls(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.campaign_item(org, campaign).await?;
        self.calls_in_index(format!("ACTIVE#{campaign}")).await
    }

    async fn has_tick_run(&self, org: OrgId, campaign: CampaignId, execution_id: &str) -> Result<bool> {
        self.campaign_item(org, campaign).await?;
        Ok(self.get(campaign_pk(campaign), &format!("TICK#{execution_id}")).await?.is_some())
    }

    async fn record_tick_execution(&self, org: OrgId, campaign: CampaignId, execution_id: &str, now: DateTime<Utc>) -> Result<bool> {
        self.campaign_item(org, campaign).await?;
        let item = HashMap::from([
            ("pk".to_string(), s(campaign_pk(campaign))),
            ("sk".to_string(), s(format!("TICK#{execution_id}"))),
            ("expires_at".to_string(), n((now + TICK_EXECUTION_MEMORY).timestamp())),
        ]);
        self.put_if_unchanged(item, "pk", None).await
    }

    async fn begin_dial(&self, org: OrgId, call_id: CallId, now: DateTime<Utc>) -> Result<bool> {
        self.set_dialing_since(org, call_id, Some(millis(now))).await
    }

    async fn abandon_dial(&self, org: OrgId, call_id: CallId) -> Result<()> {
        self.set_dialing_since(org, call_id, None).await.map(drop)
    }

    async fn dial_check(&self, org: OrgId, call_id: CallId) -> Result<DialCheck> {
        let call = self.call_item(org, call_id).await?.call;
        let contact_sk = format!("CONTACT#{}", call.contact_id);
        let keys = [
            (org_pk(org), "ORG".to_string()),
            (org_pk(org), campaign_sk(call.campaign_id)),
            (campaign_pk(call.campaign_id), contact_sk.clone()),
            (dnc_pk(org), call.phone.as_str().to_string()),
        ];
        let (mut org_item, mut campaign, mut contact, mut listed) = (None, None, None, false);
        for item in self.get_many(&keys).await? {
            match (item.get("pk").and_then(|v| v.as_s().ok()), item.get("sk").and_then(|v| v.as_s().ok())) {
                (_, Some(sk)) if sk == "ORG" => org_item = Some(decode::<OrgItem>(item)?.org),
                (_, Some(sk)) if sk.starts_with("CAMPAIGN#") => campaign = Some(Campaign::from(decode::<CampaignItem>(item)?)),
                (_, Some(sk)) if *sk == contact_sk => contact = Some(decode::<ContactItem>(item)?.contact),
                (Some(pk), _) if pk.starts_with("DNC#") => listed = true,
                _ => {}
            }
        }
        let org_item = org_item.ok_or_else(|| StoreError::not_found("organisation", org))?;
        let campaign = campaign.ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing campaign")))?;
        let contact = contact.ok_or_else(|| StoreError::Corrupt(format!("call {call_id} names a missing contact")))?;
        Ok(DialCheck { stopped: org_item.emergency_stop.is_some(), listed, call, campaign, contact })
    }

    async fn record_placed_call(&self, org: OrgId, call_id: CallId, placed: PlacedCall) -> Result<Call> {
        let guard_pk = provider_call_pk(placed.provider, &placed.provider_call_id);
        let mut attempt = 0;
        loop {
            let CallItem { version, mut call, .. } = self.call_item(org, call_id).await?;
            let facts_before = domain::report::CallFacts::of(&call);
            match call.record_placement(&placed.provider_call_id, placed.caller_id.clone(), millis(placed.placed_at)) {
                Ok(true) => {}
                Ok(false) => return Ok(call),
                Err(id) => return Err(StoreError::Conflict(format!("call {call_id} was already placed as {id}"))),
            }
            let guard = HashMap::from([
                ("pk".to_string(), s(guard_pk.clone())),
                ("sk".to_string(), s("PROVIDER_CALL")),
                ("call_id".to_string(), s(call_id.to_string())),
                ("org_id".to_string(), s(org.to_string())),
            ]);
            let mut items = vec![
                self.put(guard, "attribute_not_exists(pk)", &[])?,
                self.put(encode(&CallItem::new(call.clone(), version + 1)), "version = :v", &[(":v", n(version))])?,
            ];
            if let Some(caller_id) = &placed.caller_id {
                items.push(self.update(
                    campaign_pk(call.campaign_id),
                    format!("CONTACT#{}", call.contact_id),
                    "SET callerId = :caller, version = version + :one",
                    None,
                    &[(":caller", s(caller_id.as_str())), (":one", n(1))],
                )?);
            }
            // a placement recorded after the call's end (its callbacks were quicker) makes it dialed
            items.extend(self.report_updates(&call, facts_before.as_ref())?);
            if self.transact(items).await? {
                return Ok(call);
            }
            if let Some(owner) = self.get(guard_pk.clone(), "PROVIDER_CALL").await?
                && owner.get("call_id").and_then(|v| v.as_s().ok()) != Some(&call_id.to_string())
            {
                return Err(StoreError::Conflict(format!(
                    "{} call {} already belongs to another call",
                    placed.provider.as_str(),
                    placed.provider_call_id
                )));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend(format!("call {call_id} kept changing while its provider id was stored; retry")));
            }
            backoff(attempt).await;
        }
    }

    async fn reserve_dial_slot(&self, account: &str, now: DateTime<Utc>, pace: Pace, max_wait: std::time::Duration) -> Result<DialSlot> {
        let now = millis(now);
        let mut attempt = 0;
        loop {
            let seen = self.get(format!("PACE#{account}"), "PACE").await?.as_ref().and_then(|i| millis_of(i, "next_free"));
            let next_free = seen.and_then(DateTime::from_timestamp_millis);
            let (slot, next) = domain::dialing::reserve_slot(next_free, now, pace, max_wait);
            let Some(next) = next else { return Ok(slot) };
            let item = HashMap::from([
                ("pk".to_string(), s(format!("PACE#{account}"))),
                ("sk".to_string(), s("PACE")),
                ("next_free".to_string(), n(next.timestamp_millis())),
            ]);
            if self.put_if_unchanged(item, "next_free", seen).await? {
                return Ok(slot);
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend(format!("the pace of {account} is contended; retry")));
            }
            backoff(attempt).await;
        }
    }

    async fn take_caller_id(&self, org: OrgId, pool: &[E164], preferred: Option<&E164>, now: DateTime<Utc>) -> Result<Option<E164>> {
        let pk = format!("CALLERID#{org}");
        let now = millis(now);
        let mut attempt = 0;
        loop {
            let used: BTreeMap<String, i64> = self
                .query_all(pk.clone(), "+", None)
                .await?
                .into_iter()
                .filter_map(|i| Some((i.get("sk")?.as_s().ok()?.clone(), millis_of(&i, "last_used")?)))
                .collect();
            let last_used = used.iter().filter_map(|(p, t)| Some((p.clone(), DateTime::from_timestamp_millis(*t)?))).collect();
            let Some(chosen) = domain::dialing::choose_caller_id(pool, &last_used, preferred).cloned() else { return Ok(None) };
            let seen = used.get(chosen.as_str()).copied();
            let stamp = domain::dialing::caller_id_use_stamp(&last_used, now).timestamp_millis();
            let item = HashMap::from([
                ("pk".to_string(), s(pk.clone())),
                ("sk".to_string(), s(chosen.as_str())),
                ("last_used".to_string(), n(stamp)),
            ]);
            if self.put_if_unchanged(item, "last_used", seen).await? {
                return Ok(Some(chosen));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend("the caller ID pool is contended; retry"));
            }
            backoff(attempt).await;
        }
    }
}
