//! Organisations, their API keys and the emergency stop.

use super::*;

impl OrgStore for DynamoStore {
    async fn create_org(&self, name: &str) -> Result<Organisation> {
        let name = Organisation::parse_name(name)?;
        let org = Organisation { id: OrgId::new(), name, created_at: now(), emergency_stop: None };
        let item = encode(&OrgItem { pk: org_pk(org.id), sk: "ORG".into(), org: org.clone() });
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk)?;
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

    async fn create_api_key(&self, org: OrgId) -> Result<CreatedApiKey> {
        self.org_exists(org).await?;
        let secret = new_api_key_secret();
        let key = ApiKey { hash: KeyHash::of_secret(&secret), org_id: org, created_at: now(), revoked_at: None };
        let item = ApiKeyItem {
            pk: format!("APIKEY#{}", key.hash.as_str()),
            sk: "APIKEY".into(),
            hash: key.hash.as_str().into(),
            org_id: org,
            created_at: key.created_at,
            revoked_at: None,
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&item)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(CreatedApiKey { key, secret })
    }

    async fn org_for_api_key(&self, hash: &KeyHash) -> Result<Option<OrgId>> {
        let Some(item) = self.get(format!("APIKEY#{}", hash.as_str()), "APIKEY").await? else { return Ok(None) };
        let key: ApiKeyItem = decode(item)?;
        Ok(key.revoked_at.is_none().then_some(key.org_id))
    }

    async fn revoke_api_key(&self, org: OrgId, hash: &KeyHash) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("APIKEY#{}", hash.as_str())))
            .key("sk", s("APIKEY"))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :now)")
            .condition_expression("org_id = :org")
            .expression_attribute_values(":now", av(&now()))
            .expression_attribute_values(":org", s(org.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                Err(StoreError::not_found("api key", &hash.as_str()[..12]))
            }
            Err(e) => Err(sdk(e)),
        }
    }
}
