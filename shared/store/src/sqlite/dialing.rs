//! What the tick and the dialer need beyond claiming: live calls, tick executions, the dial guard, the dial-time read, placements, pacing, caller IDs.

use super::*;

impl DialingStore for SqliteStore {
    async fn active_calls(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND state IN ('queued', 'ringing', 'in_progress') \
                 ORDER BY last_status_at"
            ))
            .and_then(|mut s| s.query_map(params![campaign.to_string()], call_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn has_tick_run(&self, org: OrgId, campaign: CampaignId, execution_id: &str) -> Result<bool> {
        let execution_id = execution_id.to_string();
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached("SELECT 1 FROM tick_executions WHERE campaign_id = ?1 AND execution_id = ?2")
                .and_then(|mut s| s.exists(params![campaign.to_string(), execution_id]))
                .map_err(backend)
        })
        .await
    }

    async fn record_tick_execution(&self, org: OrgId, campaign: CampaignId, execution_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let execution_id = execution_id.to_string();
        self.write(move |tx| {
            campaign_in_org(tx, org, campaign)?;
            tx.execute("DELETE FROM tick_executions WHERE at < ?1", params![ms(now - TICK_EXECUTION_MEMORY)]).map_err(backend)?;
            let fresh = tx
                .execute(
                    "INSERT OR IGNORE INTO tick_executions (campaign_id, execution_id, at) VALUES (?1, ?2, ?3)",
                    params![campaign.to_string(), execution_id, ms(now)],
                )
                .map_err(backend)?;
            Ok(fresh == 1)
        })
        .await
    }

    async fn begin_dial(&self, org: OrgId, call_id: CallId, now: DateTime<Utc>) -> Result<bool> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            let taken = tx
                .execute(
                    "UPDATE calls SET dialing_since = ?2 WHERE id = ?1 AND state = 'queued' AND provider_call_id IS NULL \
                     AND dialing_since IS NULL",
                    params![call_id.to_string(), ms(millis(now))],
                )
                .map_err(backend)?;
            Ok(taken == 1)
        })
        .await
    }

    async fn abandon_dial(&self, org: OrgId, call_id: CallId) -> Result<()> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            tx.execute("UPDATE calls SET dialing_since = NULL WHERE id = ?1", params![call_id.to_string()]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn dial_check(&self, org: OrgId, call_id: CallId) -> Result<DialCheck> {
        self.read(move |conn| {
            let call = call_in_org(conn, org, call_id)?;
            let campaign = campaign_in_org(conn, org, call.campaign_id)?;
            let contact = contact_in(conn, call.campaign_id, call.contact_id)?;
            Ok(DialCheck { stopped: is_stopped(conn, org)?, listed: is_listed(conn, org, &call.phone)?, call, campaign, contact })
        })
        .await
    }

    async fn record_placed_call(&self, org: OrgId, call_id: CallId, placed: PlacedCall) -> Result<Call> {
        self.write(move |tx| {
            let mut call = call_in_org(tx, org, call_id)?;
            let facts_before = domain::report::CallFacts::of(&call);
            match call.record_placement(&placed.provider_call_id, placed.caller_id.clone(), millis(placed.placed_at)) {
                Ok(true) => {}
                Ok(false) => return Ok(call),
                Err(id) => return Err(StoreError::Conflict(format!("call {call_id} was already placed as {id}"))),
            }
            tx.execute(
                "UPDATE calls SET provider = ?2, provider_call_id = ?3, caller_id = ?4, placed_at = ?5 WHERE id = ?1",
                params![
                    call_id.to_string(),
                    placed.provider.as_str(),
                    placed.provider_call_id,
                    placed.caller_id.as_ref().map(E164::as_str),
                    call.placed_at.map(ms)
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => StoreError::Conflict(
                    format!("{} call {} already belongs to another call", placed.provider.as_str(), placed.provider_call_id),
                ),
                other => backend(other),
            })?;
            if let Some(caller_id) = &placed.caller_id {
                tx.execute("UPDATE contacts SET caller_id = ?2 WHERE id = ?1", params![call.contact_id.to_string(), caller_id.as_str()])
                    .map_err(backend)?;
            }
            // a placement recorded after the call's end (its callbacks were quicker) makes it dialed
            count_call_change(tx, &call, facts_before.as_ref())?;
            Ok(call)
        })
        .await
    }

    async fn reserve_dial_slot(&self, account: &str, now: DateTime<Utc>, pace: Pace, max_wait: std::time::Duration) -> Result<DialSlot> {
        let account = account.to_string();
        self.write(move |tx| {
            let next_free: Option<i64> = tx
                .query_row("SELECT next_free FROM dial_pace WHERE account = ?1", params![account], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            let next_free = next_free.map(from_ms).transpose().map_err(decoding)?;
            let (slot, next) = domain::dialing::reserve_slot(next_free, millis(now), pace, max_wait);
            if let Some(next) = next {
                tx.execute(
                    "INSERT INTO dial_pace (account, next_free) VALUES (?1, ?2) ON CONFLICT (account) DO UPDATE SET next_free = ?2",
                    params![account, ms(next)],
                )
                .map_err(backend)?;
            }
            Ok(slot)
        })
        .await
    }

    async fn take_caller_id(&self, org: OrgId, pool: &[E164], preferred: Option<&E164>, now: DateTime<Utc>) -> Result<Option<E164>> {
        let (pool, preferred) = (pool.to_vec(), preferred.cloned());
        self.write(move |tx| {
            let mut last_used = std::collections::BTreeMap::new();
            let mut lookup =
                tx.prepare_cached("SELECT last_used FROM caller_id_usage WHERE org_id = ?1 AND phone = ?2").map_err(backend)?;
            for phone in &pool {
                if let Some(at) =
                    lookup.query_row(params![org.to_string(), phone.as_str()], |r| r.get::<_, i64>(0)).optional().map_err(backend)?
                {
                    last_used.insert(phone.as_str().to_string(), from_ms(at).map_err(decoding)?);
                }
            }
            let Some(chosen) = domain::dialing::choose_caller_id(&pool, &last_used, preferred.as_ref()).cloned() else { return Ok(None) };
            let stamp = domain::dialing::caller_id_use_stamp(&last_used, now);
            tx.execute(
                "INSERT INTO caller_id_usage (org_id, phone, last_used) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, phone) DO UPDATE SET last_used = MAX(last_used + 1, ?3)",
                params![org.to_string(), chosen.as_str(), ms(stamp)],
            )
            .map_err(backend)?;
            Ok(Some(chosen))
        })
        .await
    }
}
