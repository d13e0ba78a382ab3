//! Organisations, their API keys and the emergency stop.

use super::*;
use crate::{KEY_USE_RESOLUTION, NewApiKey, key_id_prefix};

impl OrgStore for SqliteStore {
    async fn create_org(&self, name: &str) -> Result<Organisation> {
        let name = Organisation::parse_name(name)?;
        let org = Organisation { id: OrgId::new(), name, created_at: now(), emergency_stop: None };
        let row = org.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO organisations (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![row.id.to_string(), row.name, ms(row.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(org)
    }

    async fn get_org(&self, id: OrgId) -> Result<Organisation> {
        self.read(move |conn| org_in(conn, id)).await
    }

    async fn set_emergency_stop(&self, org: OrgId, stop: Option<EmergencyStop>) -> Result<Organisation> {
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute("UPDATE organisations SET emergency_stop = ?2 WHERE id = ?1", params![org.to_string(), stop.as_ref().map(to_json)])
                .map_err(backend)?;
            org_in(tx, org)
        })
        .await
    }

    async fn list_orgs(&self, page: PageRequest) -> Result<Page<Organisation>> {
        self.read(move |conn| {
            let sql = format!("SELECT {ORG_COLUMNS} FROM organisations WHERE id > ?1 ORDER BY id LIMIT ?2");
            id_page(conn, &sql, &[], &page, org_from, |o| o.id.to_string())
        })
        .await
    }

    async fn create_named_api_key(&self, org: OrgId, new: NewApiKey) -> Result<CreatedApiKey> {
        let created = new.issue(org);
        let row = created.key.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO api_keys (hash, org_id, name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row.hash.as_str(), org.to_string(), row.name, ms(row.created_at), row.expires_at.map(ms)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(created)
    }

    async fn api_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let hash = hash.as_str().to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"))
                .and_then(|mut s| s.query_row(params![hash], key_from).optional())
                .map_err(decoding)
        })
        .await
    }

    async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKey>> {
        let Some(prefix) = key_id_prefix(id) else { return Ok(None) };
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash >= ?1 AND hash < ?1 || 'g' LIMIT 1"))
                .and_then(|mut s| s.query_row(params![prefix], key_from).optional())
                .map_err(decoding)
        })
        .await
    }

    async fn list_api_keys(&self, org: OrgId, page: PageRequest) -> Result<Page<ApiKey>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ?1 AND printf('%013d#%s', created_at, hash) > ?2 \
                 ORDER BY created_at, hash LIMIT ?3"
            );
            id_page(conn, &sql, &[&org.to_string()], &page, key_from, |k| format!("{:013}#{}", ms(k.created_at), k.hash.as_str()))
        })
        .await
    }

    async fn revoke_api_key(&self, org: OrgId, id: &str) -> Result<()> {
        let id = id.to_string();
        let prefix = key_id_prefix(&id).ok_or_else(|| StoreError::not_found("API key", &id))?;
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE hash >= ?1 AND hash < ?1 || 'g' AND org_id = ?2",
                    params![prefix, org.to_string(), ms(now())],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::not_found("API key", id));
            }
            Ok(())
        })
        .await
    }

    async fn record_api_key_use(&self, hash: &KeyHash, at: DateTime<Utc>) -> Result<()> {
        let hash = hash.as_str().to_string();
        let resolution = KEY_USE_RESOLUTION.num_milliseconds();
        self.write(move |tx| {
            tx.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE hash = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
                params![hash, ms(millis(at)), resolution],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

const KEY_COLUMNS: &str = "hash, org_id, name, created_at, last_used_at, expires_at, revoked_at";

fn key_from(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        hash: KeyHash::from_stored(r.get(0)?),
        org_id: parsed(OrgId::parse(&r.get::<_, String>(1)?))?,
        name: r.get(2)?,
        created_at: from_ms(r.get(3)?)?,
        last_used_at: r.get::<_, Option<i64>>(4)?.map(from_ms).transpose()?,
        expires_at: r.get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
        revoked_at: r.get::<_, Option<i64>>(6)?.map(from_ms).transpose()?,
    })
}
