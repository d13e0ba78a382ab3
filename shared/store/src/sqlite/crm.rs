//! CRM connections, their secrets sealed.

use super::*;
use crate::CrmStore;
use domain::{
    ConnectionId,
    crm::{CrmConnection, CrmDelivery, CrmKind},
};

const COLUMNS: &str = "id, org_id, name, target, created_at, sealed_secret";

fn connection_from(r: &Row<'_>) -> rusqlite::Result<(CrmConnection, String)> {
    let connection = CrmConnection {
        id: parsed(ConnectionId::parse(&r.get::<_, String>(0)?))?,
        org_id: parsed(OrgId::parse(&r.get::<_, String>(1)?))?,
        name: r.get(2)?,
        target: parsed(serde_json::from_str(&r.get::<_, String>(3)?))?,
        created_at: from_ms(r.get(4)?)?,
    };
    Ok((connection, r.get(5)?))
}

impl CrmStore for SqliteStore {
    async fn create_crm_connection(&self, connection: CrmConnection, sealed_secret: String) -> Result<CrmConnection> {
        let connection = CrmConnection { created_at: millis(connection.created_at), ..connection };
        let row = connection.clone();
        self.write(move |tx| {
            org_exists(tx, row.org_id)?;
            tx.execute(
                "INSERT INTO crm_connections (id, org_id, name, target, sealed_secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.id.to_string(), row.org_id.to_string(), row.name, to_json(&row.target), sealed_secret, ms(row.created_at)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        Ok(connection)
    }

    async fn list_crm_connections(&self, org: OrgId, page: PageRequest) -> Result<Page<CrmConnection>> {
        self.read(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM crm_connections WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
            let listed = id_page(conn, &sql, &[&org.to_string()], &page, connection_from, |(c, _)| c.id.to_string())?;
            Ok(Page { items: listed.items.into_iter().map(|(c, _)| c).collect(), next_cursor: listed.next_cursor })
        })
        .await
    }

    async fn crm_connection(&self, org: OrgId, id: ConnectionId) -> Result<(CrmConnection, String)> {
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM crm_connections WHERE id = ?1 AND org_id = ?2"))
                .and_then(|mut s| s.query_row(params![id.to_string(), org.to_string()], connection_from).optional())
                .map_err(decoding)?
                .ok_or_else(|| StoreError::not_found("CRM connection", id))
        })
        .await
    }

    async fn record_crm_delivery(&self, org: OrgId, delivery: CrmDelivery) -> Result<()> {
        self.write(move |tx| {
            call_in_org(tx, org, delivery.call_id)?;
            tx.execute(
                "INSERT OR REPLACE INTO crm_deliveries (call_id, connection_id, delivery) VALUES (?1, ?2, ?3)",
                params![delivery.call_id.to_string(), delivery.connection_id.to_string(), to_json(&delivery)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
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
        self.write(move |tx| {
            call_in_org(tx, org, call)?;
            let recorded: Option<CrmDelivery> = tx
                .prepare_cached("SELECT delivery FROM crm_deliveries WHERE call_id = ?1 AND connection_id = ?2")
                .and_then(|mut s| s.query_row(params![call.to_string(), connection.to_string()], |r| json(r.get(0)?)).optional())
                .map_err(decoding)?;
            let delivery = recorded.unwrap_or_else(|| CrmDelivery::new(call, connection, kind));
            if delivery.is_leased(now) {
                return Ok(None);
            }
            let leased = CrmDelivery { leased_until: Some(millis(until)), ..delivery };
            tx.execute(
                "INSERT OR REPLACE INTO crm_deliveries (call_id, connection_id, delivery) VALUES (?1, ?2, ?3)",
                params![call.to_string(), connection.to_string(), to_json(&leased)],
            )
            .map_err(backend)?;
            Ok(Some(leased))
        })
        .await
    }

    async fn crm_deliveries(&self, org: OrgId, call: CallId) -> Result<Vec<CrmDelivery>> {
        self.read(move |conn| {
            call_in_org(conn, org, call)?;
            conn.prepare_cached("SELECT delivery FROM crm_deliveries WHERE call_id = ?1 ORDER BY connection_id")
                .and_then(|mut s| s.query_map(params![call.to_string()], |r| json(r.get(0)?))?.collect())
                .map_err(decoding)
        })
        .await
    }

    async fn failed_crm_deliveries(&self, org: OrgId, campaign: CampaignId, page: PageRequest) -> Result<Page<CrmDelivery>> {
        self.read(move |conn| {
            let sql = "SELECT d.delivery FROM crm_deliveries d JOIN calls c ON c.id = d.call_id \
                WHERE c.org_id = ?1 AND c.campaign_id = ?2 AND json_extract(d.delivery, '$.status') = 'failed' \
                AND d.call_id || ':' || d.connection_id > ?3 ORDER BY d.call_id, d.connection_id LIMIT ?4";
            let scope: [&dyn rusqlite::ToSql; 2] = [&org.to_string(), &campaign.to_string()];
            id_page(conn, sql, &scope, &page, |r| json(r.get(0)?), |d: &CrmDelivery| format!("{}:{}", d.call_id, d.connection_id))
        })
        .await
    }

    async fn delete_crm_connection(&self, org: OrgId, id: ConnectionId) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .execute("DELETE FROM crm_connections WHERE id = ?1 AND org_id = ?2", params![id.to_string(), org.to_string()])
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }
}
