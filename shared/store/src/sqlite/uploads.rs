//! Contact uploads.

use super::*;
use crate::UploadStore;
use domain::{
    UploadId,
    upload::{ContactUpload, UploadStatus},
};

fn status_text(status: UploadStatus) -> String {
    to_json(&status).trim_matches('"').to_string()
}

impl UploadStore for SqliteStore {
    async fn create_contact_upload(&self, org: OrgId, upload: &ContactUpload) -> Result<()> {
        let upload = upload.clone();
        self.write(move |tx| {
            campaign_in_org(tx, org, upload.campaign_id)?;
            tx.execute(
                "INSERT INTO contact_uploads (org_id, campaign_id, id, status, upload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    org.to_string(),
                    upload.campaign_id.to_string(),
                    upload.id.to_string(),
                    status_text(upload.status),
                    to_json(&upload)
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn contact_upload(&self, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<ContactUpload> {
        self.read(move |conn| upload_in_org(conn, org, campaign, id)).await
    }

    async fn begin_contact_upload(&self, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<Option<ContactUpload>> {
        self.write(move |tx| {
            let mut upload = upload_in_org(tx, org, campaign, id)?;
            if upload.status != UploadStatus::Waiting {
                return Ok(None);
            }
            upload.status = UploadStatus::Importing;
            tx.execute(
                "UPDATE contact_uploads SET status = ?3, upload = ?4 WHERE campaign_id = ?1 AND id = ?2",
                params![campaign.to_string(), id.to_string(), status_text(upload.status), to_json(&upload)],
            )
            .map_err(backend)?;
            Ok(Some(upload))
        })
        .await
    }

    async fn finish_contact_upload(&self, org: OrgId, upload: &ContactUpload) -> Result<()> {
        let upload = upload.clone();
        self.write(move |tx| {
            upload_in_org(tx, org, upload.campaign_id, upload.id)?;
            tx.execute(
                "UPDATE contact_uploads SET status = ?3, upload = ?4 WHERE campaign_id = ?1 AND id = ?2",
                params![upload.campaign_id.to_string(), upload.id.to_string(), status_text(upload.status), to_json(&upload)],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

fn upload_in_org(conn: &Connection, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<ContactUpload> {
    conn.prepare_cached("SELECT upload FROM contact_uploads WHERE org_id = ?1 AND campaign_id = ?2 AND id = ?3")
        .and_then(|mut s| s.query_row(params![org.to_string(), campaign.to_string(), id.to_string()], |r| json(r.get(0)?)).optional())
        .map_err(decoding)?
        .ok_or_else(|| StoreError::not_found("upload", id))
}
