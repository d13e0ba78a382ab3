//! Organisations, their API keys and the emergency stop.

use super::*;

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

    async fn create_api_key(&self, org: OrgId) -> Result<CreatedApiKey> {
        let secret = new_api_key_secret();
        let key = ApiKey { hash: KeyHash::of_secret(&secret), org_id: org, created_at: now(), revoked_at: None };
        let row = key.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            tx.execute(
                "INSERT INTO api_keys (hash, org_id, created_at) VALUES (?1, ?2, ?3)",
                params![row.hash.as_str(), org.to_string(), ms(row.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(CreatedApiKey { key, secret })
    }

    async fn org_for_api_key(&self, hash: &KeyHash) -> Result<Option<OrgId>> {
        let hash = hash.as_str().to_string();
        self.read(move |conn| {
            let org: Option<String> = conn
                .prepare_cached("SELECT org_id FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")
                .and_then(|mut s| s.query_row(params![hash], |r| r.get(0)).optional())
                .map_err(backend)?;
            org.map(|o| OrgId::parse(&o).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn revoke_api_key(&self, org: OrgId, hash: &KeyHash) -> Result<()> {
        let hash = hash.clone();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE hash = ?1 AND org_id = ?2",
                    params![hash.as_str(), org.to_string(), ms(now())],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::not_found("api key", &hash.as_str()[..12]));
            }
            Ok(())
        })
        .await
    }
}
