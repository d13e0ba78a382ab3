//! Calls: claims under the cap, events applied once, orphans, post-call marks.

use super::*;

impl CallStore for SqliteStore {
    async fn claim_due_contacts(
        &self,
        org: OrgId,
        campaign: CampaignId,
        now: DateTime<Utc>,
        max: u32,
        margin: chrono::TimeDelta,
    ) -> Result<Vec<Claim>> {
        let now = millis(now);
        self.write(move |tx| {
            let mut c = campaign_in_org(tx, org, campaign)?;
            let n = c.free_slots().min(max) as usize;
            if c.status != CampaignStatus::Running || n == 0 || is_stopped(tx, org)? {
                return Ok(Vec::new());
            }
            let id = campaign.to_string();
            let has_ready = |batch: u32| {
                tx.prepare_cached("SELECT 1 FROM contacts WHERE campaign_id = ?1 AND batch = ?2 AND state = 'ready' LIMIT 1")
                    .and_then(|mut s| s.exists(params![id, batch]))
                    .map_err(backend)
            };
            if c.may_advance_batch() && !has_ready(c.current_batch)? {
                let next: Option<u32> = tx
                    .query_row(
                        "SELECT MIN(batch) FROM contacts WHERE campaign_id = ?1 AND state = 'ready' AND batch > ?2",
                        params![id, c.current_batch],
                        |r| r.get(0),
                    )
                    .map_err(backend)?;
                if let Some(next) = next {
                    tx.execute("UPDATE campaigns SET current_batch = ?2 WHERE id = ?1", params![id, next]).map_err(backend)?;
                    c.current_batch = next;
                }
            }
            let open = c.open_areas(&areas_of(tx, campaign)?, now, margin);
            let batch = c.claimable_batch();
            let mut claims = Vec::with_capacity(n);
            let mut done = 0;
            loop {
                let want = n - claims.len();
                let mut due = Vec::new();
                for area in &open {
                    let mut rows = tx
                        .prepare_cached(&format!(
                            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE campaign_id = ?1 AND batch = ?2 AND timezone = ?3 \
                             AND us_state = ?4 AND state = 'ready' AND due_at <= ?5 ORDER BY due_at, priority DESC, id LIMIT ?6"
                        ))
                        .and_then(|mut s| {
                            s.query_map(params![id, batch, area.zone.name(), state_text(area.state), ms(now), want as i64], contact_row)?
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(decoding)?;
                    due.append(&mut rows);
                }
                if due.is_empty() {
                    break;
                }
                due.sort_by(domain::dialing::claim_order);
                due.truncate(want);
                for mut contact in due {
                    if is_listed(tx, org, &contact.phone)? {
                        contact.settle(ContactFate::Done(ContactDisposition::DoNotCall), now);
                        update_contact(tx, &contact)?;
                        done += 1;
                        continue;
                    }
                    contact.attempts += 1;
                    contact.state = ContactState::Dialing;
                    let call = Call::queued(org, campaign, contact.id, contact.attempts, contact.phone.clone(), now);
                    contact.last_call_id = Some(call.id);
                    insert_call(tx, &call)?;
                    update_contact(tx, &contact)?;
                    claims.push(Claim { contact, call });
                }
                if claims.len() >= n {
                    break;
                }
            }
            tx.execute(
                "UPDATE campaigns SET active_calls = active_calls + ?2, calls_total = calls_total + ?2, contacts_done = contacts_done + ?3 \
                 WHERE id = ?1",
                params![id, claims.len() as i64, done],
            )
            .map_err(backend)?;
            Ok(claims)
        })
        .await
    }

    async fn apply_call_event(&self, org: OrgId, call_id: CallId, event: CallEvent, received_at: DateTime<Utc>) -> Result<Applied> {
        let (event, received_at) = (normalised(event), millis(received_at));
        self.write(move |tx| {
            let mut call = call_in_org(tx, org, call_id)?;
            let appended = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO call_events (call_id, dedupe_key, seq, occurred_at, received_at, kind) \
                     VALUES (?1, ?2, (SELECT COUNT(*) FROM call_events WHERE call_id = ?1), ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![call_id.to_string(), event.dedupe_key, ms(event.occurred_at), ms(received_at), to_json(&event.kind)])
                })
                .map_err(backend)?;
            if appended == 0 {
                return Ok(Applied { duplicate: true, call, transition: None, contact_fate: None });
            }
            let facts_before = CallFacts::of(&call);
            let absorbed = call.absorb(&event);
            count_call_change(tx, &call, facts_before.as_ref())?;
            tx.prepare_cached(
                "UPDATE calls SET state = ?2, end_reason = ?3, ended_at = ?4, details = ?5, last_status_at = ?6, disposition = ?7 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    call_id.to_string(),
                    call.state.as_str(),
                    end_reason_text(&call),
                    call.ended_at.map(ms),
                    to_json(&call.details),
                    ms(call.last_status_at),
                    call.disposition().map(CallDisposition::as_str),
                ])
            })
            .map_err(backend)?;
            let mut contact_fate = None;
            let mut settled = crate::Settled::default();
            if absorbed.decides_contact(&call) {
                let campaign = campaign_in_org(tx, org, call.campaign_id)?;
                let mut contact = contact_in(tx, call.campaign_id, call.contact_id)?;
                if let Some((fate, moved)) = settle_contact(&mut contact, &call, &campaign) {
                    update_contact(tx, &contact)?;
                    contact_fate = Some(fate);
                    settled = moved;
                }
            }
            let released = i64::from(absorbed.transition.releases_capacity);
            if released != 0 || settled != crate::Settled::default() {
                tx.prepare_cached(
                    "UPDATE campaigns SET active_calls = active_calls - ?2, contacts_done = contacts_done + ?3, \
                     calls_total = calls_total + ?4 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![call.campaign_id.to_string(), released, settled.done, settled.calls]))
                .map_err(backend)?;
            }
            Ok(Applied { duplicate: false, call, transition: Some(absorbed.transition), contact_fate })
        })
        .await
    }

    async fn get_call(&self, org: OrgId, id: CallId) -> Result<Call> {
        self.read(move |conn| call_in_org(conn, org, id)).await
    }

    async fn campaign_report_counts(&self, org: OrgId, campaign: CampaignId) -> Result<ReportCounts> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached("SELECT name, value FROM campaign_report_counts WHERE campaign_id = ?1 AND value != 0")
                .and_then(|mut s| s.query_map(params![campaign.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(decoding)
        })
        .await
    }

    async fn list_calls(&self, org: OrgId, campaign: CampaignId, filter: CallFilter, page: PageRequest) -> Result<Page<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR disposition = ?3) \
                 AND id > ?4 ORDER BY id LIMIT ?5"
            );
            let (state, disposition) = (filter.state.map(CallState::as_str), filter.disposition.map(CallDisposition::as_str));
            id_page(conn, &sql, &[&campaign.to_string(), &state, &disposition], &page, call_row, |c| c.id.to_string())
        })
        .await
    }

    async fn append_transcript(&self, org: OrgId, call: CallId, first_line: u32, lines: String) -> Result<()> {
        self.write(move |tx| {
            call_in_org(tx, org, call)?;
            tx.execute(
                "INSERT OR REPLACE INTO transcript_chunks (call_id, first_line, lines) VALUES (?1, ?2, ?3)",
                params![call.to_string(), first_line, lines],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn call_transcript(&self, org: OrgId, call: CallId) -> Result<Option<String>> {
        self.read(move |conn| {
            call_in_org(conn, org, call)?;
            let chunks: Vec<String> = conn
                .prepare_cached("SELECT lines FROM transcript_chunks WHERE call_id = ?1 ORDER BY first_line")
                .and_then(|mut s| s.query_map(params![call.to_string()], |r| r.get(0))?.collect())
                .map_err(backend)?;
            Ok((!chunks.is_empty()).then(|| chunks.join("\n")))
        })
        .await
    }

    async fn find_call_by_provider_id(&self, provider: CallProvider, provider_call_id: &str) -> Result<Option<(OrgId, CallId)>> {
        let providers: Vec<&str> =
            CallProvider::ALL.into_iter().filter(|p| p.reported_by() == provider).map(CallProvider::as_str).collect();
        let provider_call_id = provider_call_id.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT org_id, id FROM calls WHERE provider IN ({}) AND provider_call_id = ?1",
                providers.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
            );
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_row(params![provider_call_id], |r| {
                        Ok((parsed(OrgId::parse(&r.get::<_, String>(0)?))?, parsed(CallId::parse(&r.get::<_, String>(1)?))?))
                    })
                    .optional()
                })
                .map_err(decoding)
        })
        .await
    }

    async fn call_owner(&self, call: CallId) -> Result<Option<OrgId>> {
        self.read(move |conn| {
            let org: Option<String> = conn
                .prepare_cached("SELECT org_id FROM calls WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![call.to_string()], |r| r.get(0)).optional())
                .map_err(backend)?;
            org.map(|o| OrgId::parse(&o).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn record_orphan_event(
        &self,
        provider: CallProvider,
        provider_call_id: &str,
        event: CallEvent,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        let (event, received_at, provider_call_id) = (normalised(event), millis(received_at), provider_call_id.to_string());
        self.write(move |tx| {
            // forgetting happens here, where orphans are rare, not on every tick's scan
            tx.prepare_cached("DELETE FROM orphan_events WHERE received_at < ?1")
                .and_then(|mut s| s.execute(params![ms(received_at - ORPHAN_MEMORY)]))
                .map_err(backend)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO orphan_events (provider, provider_call_id, dedupe_key, occurred_at, received_at, kind) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    provider.as_str(),
                    provider_call_id,
                    event.dedupe_key,
                    ms(event.occurred_at),
                    ms(received_at),
                    to_json(&event.kind)
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn orphan_events(&self, provider: CallProvider, provider_call_id: &str) -> Result<Vec<StoredCallEvent>> {
        let provider_call_id = provider_call_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT dedupe_key, occurred_at, kind, received_at FROM orphan_events WHERE provider = ?1 AND provider_call_id = ?2 \
                 ORDER BY received_at, dedupe_key",
            )
            .and_then(|mut s| s.query_map(params![provider.as_str(), provider_call_id], stored_event_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn orphaned_calls(&self, limit: u32, received_since: DateTime<Utc>) -> Result<Vec<(CallProvider, String)>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT provider, provider_call_id FROM orphan_events WHERE received_at >= ?1 \
                 GROUP BY provider, provider_call_id ORDER BY MIN(received_at) LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![ms(received_since), limit], |r| {
                    let provider = r.get::<_, String>(0)?;
                    Ok((CallProvider::parse(&provider).ok_or_else(|| conversion(format!("unknown provider {provider}")))?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(decoding)
        })
        .await
    }

    async fn remove_orphan_events(&self, provider: CallProvider, provider_call_id: &str, dedupe_keys: Vec<String>) -> Result<()> {
        let provider_call_id = provider_call_id.to_string();
        self.write(move |tx| {
            for key in dedupe_keys {
                tx.prepare_cached("DELETE FROM orphan_events WHERE provider = ?1 AND provider_call_id = ?2 AND dedupe_key = ?3")
                    .and_then(|mut s| s.execute(params![provider.as_str(), provider_call_id, key]))
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn calls_awaiting_post_call(&self, org: OrgId, campaign: CampaignId) -> Result<Vec<Call>> {
        self.read(move |conn| {
            campaign_in_org(conn, org, campaign)?;
            conn.prepare_cached(&format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ?1 AND post_call_at IS NULL \
                 AND state IN ('ended', 'failed', 'canceled', 'timeout')"
            ))
            .and_then(|mut s| s.query_map(params![campaign.to_string()], call_row)?.collect())
            .map_err(decoding)
        })
        .await
    }

    async fn mark_post_call(&self, org: OrgId, call_id: CallId, at: Option<DateTime<Utc>>) -> Result<bool> {
        self.write(move |tx| {
            call_in_org(tx, org, call_id)?;
            let changed = match at {
                Some(at) => tx.execute(
                    "UPDATE calls SET post_call_at = ?2 WHERE id = ?1 AND post_call_at IS NULL",
                    params![call_id.to_string(), ms(millis(at))],
                ),
                None => tx.execute(
                    "UPDATE calls SET post_call_at = NULL WHERE id = ?1 AND post_call_at IS NOT NULL",
                    params![call_id.to_string()],
                ),
            }
            .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn list_call_events(&self, org: OrgId, call: CallId) -> Result<Vec<StoredCallEvent>> {
        self.read(move |conn| {
            call_in_org(conn, org, call)?;
            conn.prepare_cached("SELECT dedupe_key, occurred_at, kind, received_at FROM call_events WHERE call_id = ?1 ORDER BY seq")
                .and_then(|mut s| s.query_map(params![call.to_string()], stored_event_row)?.collect())
                .map_err(decoding)
        })
        .await
    }
}
