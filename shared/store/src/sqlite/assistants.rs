//! The assistant directory and its versions.

use super::*;

impl AssistantStore for SqliteStore {
    async fn create_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<Assistant> {
        let owned = new.clone();
        let assistant = Assistant::new(org, new, millis(now));
        let row = assistant.clone();
        self.write(move |tx| {
            org_exists(tx, org)?;
            claim_provider_id(tx, org, &owned)?;
            save_assistant(tx, &row)
        })
        .await?;
        Ok(assistant)
    }

    async fn import_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<(Assistant, bool)> {
        let now = millis(now);
        self.write(move |tx| {
            org_exists(tx, org)?;
            claim_provider_id(tx, org, &new)?;
            match assistant_by_provider_id(tx, org, &new)? {
                Some(mut existing) => {
                    let patch = AssistantPatch { name: Some(new.name), config: Some(new.config), active: None, tools_url: None };
                    if existing.apply(&patch, now) {
                        save_assistant(tx, &existing)?;
                    }
                    Ok((existing, false))
                }
                None => {
                    let created = Assistant::new(org, new, now);
                    save_assistant(tx, &created)?;
                    Ok((created, true))
                }
            }
        })
        .await
    }

    async fn get_assistant(&self, org: OrgId, id: AssistantId) -> Result<Assistant> {
        self.read(move |conn| assistant_in_org(conn, org, id)).await
    }

    async fn list_assistants(&self, org: OrgId, filter: AssistantFilter, page: PageRequest) -> Result<Page<Assistant>> {
        self.read(move |conn| {
            let sql = "SELECT doc FROM assistants WHERE org_id = ?1 AND (?2 IS NULL OR active = ?2) AND (?3 IS NULL OR source = ?3) \
                       AND id > ?4 ORDER BY id LIMIT ?5";
            let source = filter.source.map(|s| s.as_str());
            id_page(conn, sql, &[&org.to_string(), &filter.active, &source], &page, |r| json(r.get(0)?), |a: &Assistant| a.id.to_string())
        })
        .await
    }

    async fn update_assistant(
        &self,
        org: OrgId,
        id: AssistantId,
        expected_version: u32,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> Result<Assistant> {
        let now = millis(now);
        self.write(move |tx| {
            let mut assistant = assistant_in_org(tx, org, id)?;
            if assistant.version != expected_version {
                return Err(StoreError::StaleVersion { expected: expected_version, current: assistant.version });
            }
            if assistant.apply(&patch, now) {
                save_assistant(tx, &assistant)?;
            }
            Ok(assistant)
        })
        .await
    }

    async fn delete_assistant(&self, org: OrgId, id: AssistantId) -> Result<()> {
        self.write(move |tx| {
            assistant_in_org(tx, org, id)?;
            tx.execute("DELETE FROM assistant_versions WHERE assistant_id = ?1", params![id.to_string()]).map_err(backend)?;
            tx.execute("DELETE FROM assistants WHERE id = ?1", params![id.to_string()]).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn provider_id_owner(&self, provider: ProviderKind, provider_id: &str) -> Result<Option<OrgId>> {
        let pid = provider_id.to_string();
        self.read(move |conn| provider_owner(conn, provider, &pid)).await
    }

    async fn list_assistant_versions(&self, org: OrgId, id: AssistantId) -> Result<Vec<AssistantVersion>> {
        self.read(move |conn| {
            assistant_in_org(conn, org, id)?;
            conn.prepare_cached("SELECT doc FROM assistant_versions WHERE assistant_id = ?1 ORDER BY version")
                .and_then(|mut s| s.query_map(params![id.to_string()], |r| json(r.get(0)?))?.collect())
                .map_err(decoding)
        })
        .await
    }
}
