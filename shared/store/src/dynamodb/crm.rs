//! CRM connections, their secrets sealed: one item each in the organisation's partition.

use super::*;
use crate::CrmStore;
use domain::{
    ConnectionId,
    crm::{CrmConnection, CrmDelivery, CrmKind, DeliveryStatus},
};

#[derive(Serialize, Deserialize)]
struct ConnectionItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    connection: CrmConnection,
    sealed_secret: String,
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    delivery: CrmDelivery,
    /// Failed deliveries only (sparse): `CRMFAILED#<org>#<campaign>` / `<call>#<connection>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    /// Changed by every write: a lease is taken only if nothing was written since it was read.
    #[serde(default)]
    revision: i64,
}

impl DeliveryItem {
    fn of(org: OrgId, campaign: CampaignId, delivery: CrmDelivery) -> Self {
        let failed = delivery.status == DeliveryStatus::Failed;
        Self {
            pk: call_pk(delivery.call_id),
            sk: delivery_sk(delivery.connection_id),
            gsi1pk: failed.then(|| failed_pk(org, campaign)),
            gsi1sk: failed.then(|| format!("{}#{}", delivery.call_id, delivery.connection_id)),
            revision: Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            delivery: CrmDelivery { leased_until: delivery.leased_until.map(millis), ..delivery },
        }
    }
}

fn delivery_sk(connection: ConnectionId) -> String {
    format!("CRM#{connection}")
}

fn failed_pk(org: OrgId, campaign: CampaignId) -> String {
    format!("CRMFAILED#{org}#{campaign}")
}

fn connection_sk(id: ConnectionId) -> String {
    format!("CRMCONN#{id}")
}

impl CrmStore for DynamoStore {
    async fn create_crm_connection(&self, connection: CrmConnection, sealed_secret: String) -> Result<CrmConnection> {
        self.org_exists(connection.org_id).await?;
        let connection = CrmConnection { created_at: millis(connection.created_at), ..connection };
        let item = ConnectionItem {
            pk: org_pk(connection.org_id),
            sk: connection_sk(connection.id),
            connection: connection.clone(),
            sealed_secret,
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&item)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(connection)
    }

    async fn list_crm_connections(&self, org: OrgId, page: PageRequest) -> Result<Page<CrmConnection>> {
        let values = vec![(":pk", s(org_pk(org))), (":prefix", s("CRMCONN#"))];
        let (items, next_cursor) =
            self.page::<ConnectionItem>(None, "pk = :pk AND begins_with(sk, :prefix)", None, values, &page, &["pk", "sk"]).await?;
        Ok(Page { items: items.into_iter().map(|i| i.connection).collect(), next_cursor })
    }

    async fn crm_connection(&self, org: OrgId, id: ConnectionId) -> Result<(CrmConnection, String)> {
        let item = self.get(org_pk(org), &connection_sk(id)).await?.ok_or_else(|| StoreError::not_found("CRM connection", id))?;
        let item: ConnectionItem = decode(item)?;
        Ok((item.connection, item.sealed_secret))
    }

    async fn record_crm_delivery(&self, org: OrgId, delivery: CrmDelivery) -> Result<()> {
        let call = self.call_item(org, delivery.call_id).await?.call;
        let item = DeliveryItem::of(org, call.campaign_id, delivery);
        self.client.put_item().table_name(&self.table).set_item(Some(encode(&item))).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn lease_crm_delivery(
        &self,
        org: OrgId,
        call: CallId,
        connection: ConnectionId,
        kind: CrmKind,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<CrmDelivery>> {
        let campaign = self.call_item(org, call).await?.call.campaign_id;
        let recorded = self.get(call_pk(call), &delivery_sk(connection)).await?.map(decode::<DeliveryItem>).transpose()?;
        let seen = recorded.as_ref().map(|item| item.revision);
        let delivery = recorded.map_or_else(|| CrmDelivery::new(call, connection, kind), |item| item.delivery);
        if delivery.is_leased(now) {
            return Ok(None);
        }
        let item = DeliveryItem::of(org, campaign, CrmDelivery { leased_until: Some(until), ..delivery });
        let leased = item.delivery.clone();
        // another worker that read the same record loses here, whichever of them wrote first
        Ok(self.put_if_unchanged(encode(&item), "revision", seen).await?.then_some(leased))
    }

    async fn crm_deliveries(&self, org: OrgId, call: CallId) -> Result<Vec<CrmDelivery>> {
        self.call_item(org, call).await?;
        self.query_all(call_pk(call), "CRM#", None).await?.into_iter().map(|i| Ok(decode::<DeliveryItem>(i)?.delivery)).collect()
    }

    async fn failed_crm_deliveries(&self, org: OrgId, campaign: CampaignId, page: PageRequest) -> Result<Page<CrmDelivery>> {
        let values = vec![(":pk", s(failed_pk(org, campaign)))];
        let (items, next_cursor) =
            self.page::<DeliveryItem>(Some(READY_INDEX), "gsi1pk = :pk", None, values, &page, &["pk", "sk", "gsi1pk", "gsi1sk"]).await?;
        Ok(Page { items: items.into_iter().map(|i| i.delivery).collect(), next_cursor })
    }

    async fn delete_crm_connection(&self, org: OrgId, id: ConnectionId) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(org_pk(org)))
            .key("sk", s(connection_sk(id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
