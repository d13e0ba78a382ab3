//! The organisation's do-not-call list.

use super::*;
use crate::DoNotCallRemoval;

impl DoNotCallStore for SqliteStore {
    async fn add_do_not_call(&self, org: OrgId, phones: Vec<E164>, now: DateTime<Utc>) -> Result<DoNotCallAdded> {
        let now = millis(now);
        self.write(move |tx| {
            org_exists(tx, org)?;
            let org = org.to_string();
            let mut outcome = DoNotCallAdded::default();
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO do_not_call (org_id, phone, added_at) VALUES (?1, ?2, ?3)").map_err(backend)?;
            let mut finalise = tx
                .prepare_cached(
                    "UPDATE contacts SET state = 'done', disposition = 'do_not_call', due_at = ?3 WHERE phone = ?2 AND state = 'ready' \
                     AND campaign_id IN (SELECT id FROM campaigns WHERE org_id = ?1 AND status IN ('running', 'paused')) RETURNING campaign_id",
                )
                .map_err(backend)?;
            let mut count_done =
                tx.prepare_cached("UPDATE campaigns SET contacts_done = contacts_done + 1 WHERE id = ?1").map_err(backend)?;
            for phone in phones {
                if insert.execute(params![org, phone.as_str(), ms(now)]).map_err(backend)? == 0 {
                    outcome.already_listed += 1;
                } else {
                    outcome.added += 1;
                }
                let campaigns = finalise
                    .query_map(params![org, phone.as_str(), ms(now)], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(backend)?;
                for campaign in campaigns {
                    count_done.execute(params![campaign]).map_err(backend)?;
                    outcome.contacts_finalised += 1;
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn remove_do_not_call(&self, org: OrgId, phone: &E164, by: &str, now: DateTime<Utc>) -> Result<bool> {
        let (phone, by, now) = (phone.clone(), by.to_string(), millis(now));
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM do_not_call WHERE org_id = ?1 AND phone = ?2", params![org.to_string(), phone.as_str()])
                .map_err(backend)?;
            if removed == 1 {
                tx.execute(
                    "INSERT INTO do_not_call_removals (org_id, phone, removed_at, removed_by) VALUES (?1, ?2, ?3, ?4)",
                    params![org.to_string(), phone.as_str(), ms(now), by],
                )
                .map_err(backend)?;
            }
            Ok(removed == 1)
        })
        .await
    }

    async fn list_do_not_call_removals(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallRemoval>> {
        self.read(move |conn| {
            let sql = "SELECT printf('%020d', seq), phone, removed_at, removed_by FROM do_not_call_removals \
                       WHERE org_id = ?1 AND printf('%020d', seq) > ?2 ORDER BY seq LIMIT ?3";
            let removal = |r: &Row<'_>| -> rusqlite::Result<(String, DoNotCallRemoval)> {
                let removal = DoNotCallRemoval {
                    phone: parsed(E164::try_from(r.get::<_, String>(1)?))?,
                    removed_at: from_ms(r.get(2)?)?,
                    removed_by: r.get(3)?,
                };
                Ok((r.get(0)?, removal))
            };
            let page = id_page(conn, sql, &[&org.to_string()], &page, removal, |(seq, _)| seq.clone())?;
            Ok(Page { items: page.items.into_iter().map(|(_, r)| r).collect(), next_cursor: page.next_cursor })
        })
        .await
    }

    async fn is_do_not_call(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let phone = phone.clone();
        self.read(move |conn| is_listed(conn, org, &phone)).await
    }

    async fn list_do_not_call(&self, org: OrgId, page: PageRequest) -> Result<Page<DoNotCallEntry>> {
        self.read(move |conn| {
            let sql = "SELECT phone, added_at FROM do_not_call WHERE org_id = ?1 AND phone > ?2 ORDER BY phone LIMIT ?3";
            let entry = |r: &Row<'_>| -> rusqlite::Result<DoNotCallEntry> {
                Ok(DoNotCallEntry { phone: parsed(E164::try_from(r.get::<_, String>(0)?))?, added_at: from_ms(r.get(1)?)? })
            };
            id_page(conn, sql, &[&org.to_string()], &page, entry, |e| e.phone.as_str().to_string())
        })
        .await
    }
}
