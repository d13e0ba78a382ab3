//! The caller-ID registry: one deployment-wide owner item per number (`CALLERID#<phone>`) taken
//! conditionally, and the organisation's own list (`CALLERIDS#<org>`, sorted by number).

use super::*;
use aws_sdk_dynamodb::types::Delete;

fn owner_pk(phone: &E164) -> String {
    format!("CALLERID#{}", phone.as_str())
}
fn list_pk(org: OrgId) -> String {
    format!("CALLERIDS#{org}")
}

#[derive(Serialize, Deserialize)]
struct CallerIdItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    caller: CallerId,
}

impl DynamoStore {
    pub(super) fn delete_step(
        &self,
        pk: String,
        sk: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<TransactWriteItem> {
        let mut delete = Delete::builder().table_name(&self.table).key("pk", s(pk)).key("sk", s(sk)).condition_expression(condition);
        for (k, v) in values {
            delete = delete.expression_attribute_values(*k, v.clone());
        }
        Ok(TransactWriteItem::builder().delete(delete.build().map_err(build)?).build())
    }
}

impl CallerIdStore for DynamoStore {
    async fn register_caller_id(&self, caller: CallerId) -> Result<CallerId> {
        let org = caller.org_id;
        self.org_exists(org).await?;
        for _ in 0..MAX_RETRIES {
            let registered_at = match self.get(list_pk(org), caller.phone.as_str()).await? {
                Some(item) => decode::<CallerIdItem>(item)?.caller.registered_at,
                None => millis(caller.registered_at),
            };
            let caller = CallerId { registered_at, ..caller.clone() };
            let owner = HashMap::from([
                ("pk".to_string(), s(owner_pk(&caller.phone))),
                ("sk".to_string(), s(OWNER_SK)),
                ("org_id".to_string(), s(org.to_string())),
            ]);
            let listed = encode(&CallerIdItem { pk: list_pk(org), sk: caller.phone.as_str().to_string(), caller: caller.clone() });
            let writes = vec![
                self.put(owner, "attribute_not_exists(pk) OR org_id = :org", &[(":org", s(org.to_string()))])?,
                self.put(listed, "attribute_not_exists(pk) OR registered_at = :at", &[(":at", av(&registered_at))])?,
            ];
            if self.transact(writes).await? {
                return Ok(caller);
            }
            let holder = self.get(owner_pk(&caller.phone), OWNER_SK).await?;
            if holder.and_then(|h| h.get("org_id").and_then(|v| v.as_s().ok()).cloned()).is_some_and(|o| o != org.to_string()) {
                return Err(StoreError::Conflict(format!("{} is registered to another organisation", caller.phone)));
            }
        }
        Err(StoreError::backend("registering the caller ID kept losing races; retry"))
    }

    async fn remove_caller_id(&self, org: OrgId, phone: &E164) -> Result<bool> {
        let writes = vec![
            self.delete_step(list_pk(org), phone.as_str(), "attribute_exists(pk)", &[])?,
            self.delete_step(owner_pk(phone), OWNER_SK, "org_id = :org", &[(":org", s(org.to_string()))])?,
        ];
        self.transact(writes).await
    }

    async fn list_caller_ids(&self, org: OrgId, page: PageRequest) -> Result<Page<CallerId>> {
        let values = vec![(":pk", s(list_pk(org)))];
        let (items, next_cursor) = self.page::<CallerIdItem>(None, "pk = :pk", None, values, &page, &["pk", "sk"]).await?;
        Ok(Page { items: items.into_iter().map(|i| i.caller).collect(), next_cursor })
    }

    async fn registered_caller_ids(&self, org: OrgId, phones: &[E164]) -> Result<Vec<CallerId>> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(String, String)> = phones.iter().map(|p| (list_pk(org), p.as_str().to_string())).collect();
        let mut found =
            self.get_many(&keys).await?.into_iter().map(|i| Ok(decode::<CallerIdItem>(i)?.caller)).collect::<Result<Vec<_>>>()?;
        found.sort_by(|a, b| a.phone.as_str().cmp(b.phone.as_str()));
        Ok(found)
    }
}
