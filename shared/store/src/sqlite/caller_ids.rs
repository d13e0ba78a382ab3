//! The caller-ID registry.

use super::*;

const COLUMNS: &str = "phone, org_id, vapi_phone_number_id, elevenlabs_phone_number_id, registered_at";

fn caller_id_from(r: &Row<'_>) -> rusqlite::Result<CallerId> {
    Ok(CallerId {
        phone: parsed(E164::try_from(r.get::<_, String>(0)?))?,
        org_id: parsed(OrgId::parse(&r.get::<_, String>(1)?))?,
        vapi_phone_number_id: r.get(2)?,
        elevenlabs_phone_number_id: r.get(3)?,
        registered_at: from_ms(r.get(4)?)?,
    })
}

impl CallerIdStore for SqliteStore {
    async fn register_caller_id(&self, caller: CallerId) -> Result<CallerId> {
        let caller = CallerId { registered_at: millis(caller.registered_at), ..caller };
        self.write(move |tx| {
            org_exists(tx, caller.org_id)?;
            let held: Option<String> = tx
                .query_row("SELECT org_id FROM caller_ids WHERE phone = ?1", params![caller.phone.as_str()], |r| r.get(0))
                .optional()
                .map_err(backend)?;
            if held.is_some_and(|org| org != caller.org_id.to_string()) {
                return Err(StoreError::Conflict(format!("{} is registered to another organisation", caller.phone)));
            }
            tx.execute(
                "INSERT INTO caller_ids (phone, org_id, vapi_phone_number_id, elevenlabs_phone_number_id, registered_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (phone) DO UPDATE SET \
                 vapi_phone_number_id = excluded.vapi_phone_number_id, elevenlabs_phone_number_id = excluded.elevenlabs_phone_number_id",
                params![
                    caller.phone.as_str(),
                    caller.org_id.to_string(),
                    caller.vapi_phone_number_id,
                    caller.elevenlabs_phone_number_id,
                    ms(caller.registered_at)
                ],
            )
            .map_err(backend)?;
            tx.query_row(&format!("SELECT {COLUMNS} FROM caller_ids WHERE phone = ?1"), params![caller.phone.as_str()], caller_id_from)
                .map_err(decoding)
        })
        .await
    }

    async fn remove_caller_id(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let phone = phone.clone();
        self.write(move |tx| {
            let removed = tx
                .execute("DELETE FROM caller_ids WHERE org_id = ?1 AND phone = ?2", params![org.to_string(), phone.as_str()])
                .map_err(backend)?;
            Ok(removed == 1)
        })
        .await
    }

    async fn list_caller_ids(&self, org: OrgId, page: PageRequest) -> Result<Page<CallerId>> {
        self.read(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM caller_ids WHERE org_id = ?1 AND phone > ?2 ORDER BY phone LIMIT ?3");
            id_page(conn, &sql, &[&org.to_string()], &page, caller_id_from, |c| c.phone.as_str().to_string())
        })
        .await
    }

    async fn registered_caller_ids(&self, org: OrgId, phones: &[E164]) -> Result<Vec<CallerId>> {
        let phones = phones.to_vec();
        self.read(move |conn| {
            let mut select =
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM caller_ids WHERE org_id = ?1 AND phone = ?2")).map_err(backend)?;
            let mut found = Vec::new();
            for phone in phones {
                if let Some(c) = select.query_row(params![org.to_string(), phone.as_str()], caller_id_from).optional().map_err(decoding)? {
                    found.push(c);
                }
            }
            Ok(found)
        })
        .await
    }
}
