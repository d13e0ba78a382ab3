//! CRM connections, their secrets sealed: one item each in the organisation's partition.

use super::*;
use crate::CrmStore;
use domain::{
    ConnectionId,
    crm::{CrmConnection, CrmDelivery},
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
        self.call_item(org, delivery.call_id).await?;
        let item = DeliveryItem { pk: call_pk(delivery.call_id), sk: format!("CRM#{}", delivery.connection_id), delivery };
        self.client.put_item().table_name(&self.table).set_item(Some(encode(&item))).send().await.map_err(sdk)?;
        Ok(())
    }

    async fn crm_deliveries(&self, org: OrgId, call: CallId) -> Result<Vec<CrmDelivery>> {
        self.call_item(org, call).await?;
        self.query_all(call_pk(call), "CRM#", None).await?.into_iter().map(|i| Ok(decode::<DeliveryItem>(i)?.delivery)).collect()
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
