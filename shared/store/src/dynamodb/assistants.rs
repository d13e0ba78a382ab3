//! The assistant directory and its versions.

use super::*;

impl AssistantStore for DynamoStore {
    async fn create_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<Assistant> {
        self.org_exists(org).await?;
        self.check_provider_owner(org, &new).await?;
        let assistant = Assistant::new(org, new, millis(now));
        if self.transact(self.assistant_writes(&assistant, None)?).await? {
            return Ok(assistant);
        }
        Err(StoreError::Conflict(format!(
            "{} assistant {} is already in the directory; import it to update it",
            assistant.provider.as_str(),
            assistant.provider_assistant_id.as_deref().unwrap_or_default()
        )))
    }

    async fn import_assistant(&self, org: OrgId, new: NewAssistant, now: DateTime<Utc>) -> Result<(Assistant, bool)> {
        self.org_exists(org).await?;
        let now = millis(now);
        let mut attempt = 0;
        loop {
            // re-read each round: another organisation may have taken the id meanwhile
            self.check_provider_owner(org, &new).await?;
            let (assistant, writes, created) = match self.assistant_by_provider_id(org, &new).await? {
                Some(mut existing) => {
                    let before = existing.version;
                    let patch =
                        AssistantPatch { name: Some(new.name.clone()), config: Some(new.config.clone()), active: None, tools_url: None };
                    if !existing.apply(&patch, now) {
                        return Ok((existing, false));
                    }
                    let writes = self.assistant_writes(&existing, Some(before))?;
                    (existing, writes, false)
                }
                None => {
                    let created = Assistant::new(org, new.clone(), now);
                    let writes = self.assistant_writes(&created, None)?;
                    (created, writes, true)
                }
            };
            // a lost race (a concurrent import of the same id) is re-read and retried
            if self.transact(writes).await? {
                return Ok((assistant, created));
            }
            attempt += 1;
            if attempt > MAX_RETRIES {
                return Err(StoreError::backend("importing the assistant kept colliding with other writes"));
            }
            backoff(attempt).await;
        }
    }

    async fn get_assistant(&self, org: OrgId, id: AssistantId) -> Result<Assistant> {
        self.assistant(org, id).await
    }

    async fn list_assistants(&self, org: OrgId, filter: AssistantFilter, page: PageRequest) -> Result<Page<Assistant>> {
        let mut values = vec![(":pk", s(org_pk(org))), (":prefix", s("ASSISTANT#"))];
        let condition = equalities(
            &mut values,
            [
                ("active = :active", ":active", filter.active.map(AttributeValue::Bool)),
                ("#source = :source", ":source", filter.source.map(|v| av(&v))),
            ],
        );
        let (items, next_cursor) = self
            .page::<AssistantItem>(None, "pk = :pk AND begins_with(sk, :prefix)", condition.as_deref(), values, &page, &["pk", "sk"])
            .await?;
        Ok(Page { items: items.into_iter().map(|i| i.assistant).collect(), next_cursor })
    }

    async fn update_assistant(
        &self,
        org: OrgId,
        id: AssistantId,
        expected_version: u32,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> Result<Assistant> {
        let mut assistant = self.assistant(org, id).await?;
        if assistant.version != expected_version {
            return Err(StoreError::StaleVersion { expected: expected_version, current: assistant.version });
        }
        if !assistant.apply(&patch, millis(now)) {
            return Ok(assistant);
        }
        if self.transact(self.assistant_writes(&assistant, Some(expected_version))?).await? {
            return Ok(assistant);
        }
        let current = self.assistant(org, id).await?;
        Err(StoreError::StaleVersion { expected: expected_version, current: current.version })
    }

    async fn delete_assistant(&self, org: OrgId, id: AssistantId) -> Result<()> {
        let assistant = self.assistant(org, id).await?;
        let mut deletes = vec![(org_pk(org), assistant_sk(id))];
        if let Some(pid) = &assistant.provider_assistant_id {
            deletes.push((org_pk(org), provider_guard_sk(assistant.provider, pid)));
        }
        deletes.extend((1..=assistant.version).map(|v| (format!("ASSISTANT#{id}"), format!("VERSION#{v:06}"))));
        // the record and its guard first, so a half-finished delete leaves only unreachable versions
        for (pk, sk) in deletes {
            self.client.delete_item().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk)).send().await.map_err(sdk)?;
        }
        Ok(())
    }

    async fn provider_id_owner(&self, provider: ProviderKind, provider_id: &str) -> Result<Option<OrgId>> {
        self.provider_owner(provider, provider_id).await
    }

    async fn list_assistant_versions(&self, org: OrgId, id: AssistantId) -> Result<Vec<AssistantVersion>> {
        self.assistant(org, id).await?;
        let mut versions = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let values = vec![(":pk", s(format!("ASSISTANT#{id}"))), (":prefix", s("VERSION#"))];
            let (items, next) = self
                .page::<AssistantVersionItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"])
                .await?;
            versions.extend(items.into_iter().map(|i| i.version));
            match next {
                Some(c) => page.cursor = Some(c),
                None => return Ok(versions),
            }
        }
    }
}
