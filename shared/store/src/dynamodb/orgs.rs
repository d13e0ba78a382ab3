//! Organisations, their API keys and the emergency stop.

use super::*;
use crate::{KEY_USE_RESOLUTION, NewApiKey, key_id_prefix};

impl OrgStore for DynamoStore {
    async fn create_org(&self, name: &str) -> Result<Organisation> {
        let name = Organisation::parse_name(name)?;
        let org = Organisation { id: OrgId::new(), name, created_at: now(), emergency_stop: None };
        let item = encode(&OrgItem { pk: org_pk(org.id), sk: "ORG".into(), org: org.clone() });
        let listed = HashMap::from([
            ("pk".to_string(), s(ORGS_PK)),
            ("sk".to_string(), s(org_pk(org.id))),
            ("id".to_string(), s(org.id.to_string())),
        ]);
        if !self
            .transact(vec![self.put(item, "attribute_not_exists(pk)", &[])?, self.put(listed, "attribute_not_exists(pk)", &[])?])
            .await?
        {
            return Err(StoreError::backend("a new organisation's id collided with an existing one; create it again"));
        }
        Ok(org)
    }

    async fn get_org(&self, id: OrgId) -> Result<Organisation> {
        let item = self.get(org_pk(id), "ORG").await?.ok_or_else(|| StoreError::not_found("organisation", id))?;
        Ok(decode::<OrgItem>(item)?.org)
    }

    async fn set_emergency_stop(&self, org: OrgId, stop: Option<EmergencyStop>) -> Result<Organisation> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s("ORG"))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#stop", ORG_STOP)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let request = match &stop {
            Some(stop) => request.update_expression("SET #stop = :stop").expression_attribute_values(":stop", av(stop)),
            None => request.update_expression("REMOVE #stop"),
        };
        match request.send().await {
            Ok(out) => Ok(decode::<OrgItem>(out.attributes.unwrap_or_default())?.org),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::not_found("organisation", org))
            }
            Err(e) => Err(sdk(e)),
        }
    }

    async fn list_orgs(&self, page: PageRequest) -> Result<Page<Organisation>> {
        #[derive(Deserialize)]
        struct Listed {
            id: OrgId,
        }
        let values = vec![(":pk", s(ORGS_PK))];
        let (listed, next_cursor) = self.page::<Listed>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        let keys: Vec<(String, String)> = listed.iter().map(|l| (org_pk(l.id), "ORG".to_string())).collect();
        let mut found: HashMap<OrgId, Organisation> = HashMap::new();
        for chunk in keys.chunks(100) {
            for item in self.get_many(chunk).await? {
                let org = decode::<OrgItem>(item)?.org;
                found.insert(org.id, org);
            }
        }
        let items = listed.into_iter().filter_map(|l| found.remove(&l.id)).collect();
        Ok(Page { items, next_cursor })
    }

    async fn create_named_api_key(&self, org: OrgId, new: NewApiKey) -> Result<CreatedApiKey> {
        self.org_exists(org).await?;
        let created = new.issue(org);
        let key = &created.key;
        let id = key.hash.id();
        let record = ApiKeyItem { pk: key_pk(&key.hash), sk: "APIKEY".into(), key: StoredKey::from(key) };
        let by_id = HashMap::from([
            ("pk".to_string(), s(key_id_pk(&id))),
            ("sk".to_string(), s("APIKEYID")),
            ("hash".to_string(), s(key.hash.as_str())),
        ]);
        let listed = HashMap::from([
            ("pk".to_string(), s(key_list_pk(org))),
            ("sk".to_string(), s(key_list_sk(key))),
            ("hash".to_string(), s(key.hash.as_str())),
        ]);
        let writes = vec![
            self.put(encode(&record), "attribute_not_exists(pk)", &[])?,
            self.put(by_id, "attribute_not_exists(pk)", &[])?,
            self.put(listed, "attribute_not_exists(pk)", &[])?,
        ];
        if !self.transact(writes).await? {
            return Err(StoreError::backend("a new API key collided with an existing one; create it again"));
        }
        Ok(created)
    }

    async fn api_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let Some(item) = self.get(key_pk(hash), "APIKEY").await? else { return Ok(None) };
        Ok(Some(decode::<ApiKeyItem>(item)?.key.into_key(hash.clone())))
    }

    async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKey>> {
        if key_id_prefix(id).is_none() {
            return Ok(None);
        }
        let Some(item) = self.get(key_id_pk(id), "APIKEYID").await? else { return Ok(None) };
        let hash = item.get("hash").and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt(format!("key id {id} names no key")))?;
        self.api_key(&KeyHash::from_stored(hash.clone())).await
    }

    async fn list_api_keys(&self, org: OrgId, page: PageRequest) -> Result<Page<ApiKey>> {
        #[derive(Deserialize)]
        struct Listed {
            hash: String,
        }
        let values = vec![(":pk", s(key_list_pk(org)))];
        let (listed, next_cursor) = self.page::<Listed>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        let keys: Vec<(String, String)> =
            listed.iter().map(|l| (key_pk(&KeyHash::from_stored(l.hash.clone())), "APIKEY".to_string())).collect();
        let mut found: HashMap<String, ApiKey> = HashMap::new();
        for chunk in keys.chunks(100) {
            for item in self.get_many(chunk).await? {
                let record = decode::<ApiKeyItem>(item)?;
                let hash = record.pk.trim_start_matches("APIKEY#").to_string();
                found.insert(hash.clone(), record.key.into_key(KeyHash::from_stored(hash)));
            }
        }
        let items = listed.into_iter().filter_map(|l| found.remove(&l.hash)).collect();
        Ok(Page { items, next_cursor })
    }

    async fn revoke_api_key(&self, org: OrgId, id: &str) -> Result<()> {
        let key = self.api_key_by_id(id).await?.filter(|k| k.org_id == org).ok_or_else(|| StoreError::not_found("API key", id))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key_pk(&key.hash)))
            .key("sk", s("APIKEY"))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .expression_attribute_values(":now", av(&now()))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn record_api_key_use(&self, hash: &KeyHash, at: DateTime<Utc>) -> Result<()> {
        let at = millis(at);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key_pk(hash)))
            .key("sk", s("APIKEY"))
            .update_expression("SET last_used_ms = :at")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(last_used_ms) OR last_used_ms <= :stale)")
            .expression_attribute_values(":at", n(at.timestamp_millis()))
            .expression_attribute_values(":stale", n(at.timestamp_millis() - KEY_USE_RESOLUTION.num_milliseconds()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(sdk(e)),
        }
    }
}

fn key_pk(hash: &KeyHash) -> String {
    format!("APIKEY#{}", hash.as_str())
}
fn key_id_pk(id: &str) -> String {
    format!("APIKEYID#{id}")
}
fn key_list_pk(org: OrgId) -> String {
    format!("APIKEYS#{org}")
}
/// Oldest first: the creation time, then the id.
fn key_list_sk(key: &ApiKey) -> String {
    format!("{:013}#{}", key.created_at.timestamp_millis(), key.hash.id())
}

/// An API key's record (its hash is in the key); the last use is kept in milliseconds so a
/// condition can compare it.
#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    key: StoredKey,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    org_id: OrgId,
    #[serde(default = "default_key_name")]
    name: String,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
}

fn default_key_name() -> String {
    NewApiKey::default().name
}

impl From<&ApiKey> for StoredKey {
    fn from(k: &ApiKey) -> Self {
        Self {
            org_id: k.org_id,
            name: k.name.clone(),
            created_at: k.created_at,
            last_used_ms: k.last_used_at.map(|at| at.timestamp_millis()),
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

impl StoredKey {
    fn into_key(self, hash: KeyHash) -> ApiKey {
        ApiKey {
            hash,
            org_id: self.org_id,
            name: self.name,
            created_at: self.created_at,
            last_used_at: self.last_used_ms.and_then(DateTime::from_timestamp_millis),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}
