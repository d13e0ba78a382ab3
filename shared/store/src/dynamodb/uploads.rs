//! Contact uploads: one item each under the organisation's `UPLOAD#` key, its status beside the
//! JSON body so the move out of `waiting` is one conditional write.

use super::*;
use crate::UploadStore;
use domain::{
    UploadId,
    upload::{ContactUpload, UploadStatus},
};

fn upload_pk(org: OrgId) -> String {
    format!("UPLOAD#{org}")
}

fn upload_sk(campaign: CampaignId, id: UploadId) -> String {
    format!("{campaign}#{id}")
}

fn upload_item(org: OrgId, upload: &ContactUpload) -> Result<HashMap<String, AttributeValue>> {
    let body = serde_json::to_string(upload).map_err(|e| StoreError::backend(format!("an upload does not serialise: {e}")))?;
    Ok(HashMap::from([
        ("pk".to_string(), s(upload_pk(org))),
        ("sk".to_string(), s(upload_sk(upload.campaign_id, upload.id))),
        ("status".to_string(), av(&upload.status)),
        ("body".to_string(), s(body)),
    ]))
}

impl DynamoStore {
    async fn upload_in_org(&self, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<ContactUpload> {
        let item = self.get(upload_pk(org), &upload_sk(campaign, id)).await?.ok_or_else(|| StoreError::not_found("upload", id))?;
        let body = item.get("body").and_then(|v| v.as_s().ok()).ok_or_else(|| StoreError::Corrupt(format!("upload {id} has no body")))?;
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("upload {id}: {e}")))
    }
}

impl UploadStore for DynamoStore {
    async fn create_contact_upload(&self, org: OrgId, upload: &ContactUpload) -> Result<()> {
        self.campaign_item(org, upload.campaign_id).await?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(upload_item(org, upload)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn contact_upload(&self, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<ContactUpload> {
        self.upload_in_org(org, campaign, id).await
    }

    async fn begin_contact_upload(&self, org: OrgId, campaign: CampaignId, id: UploadId) -> Result<Option<ContactUpload>> {
        let mut upload = self.upload_in_org(org, campaign, id).await?;
        if upload.status != UploadStatus::Waiting {
            return Ok(None);
        }
        upload.status = UploadStatus::Importing;
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(upload_item(org, &upload)?))
            .condition_expression("#status = :waiting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":waiting", av(&UploadStatus::Waiting))
            .send()
            .await;
        match written {
            Ok(_) => Ok(Some(upload)),
            Err(e) if is_conditional(&e) => Ok(None),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn finish_contact_upload(&self, org: OrgId, upload: &ContactUpload) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(upload_item(org, upload)?))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(|e| if is_conditional(&e) { StoreError::not_found("upload", upload.id) } else { sdk(e) })?;
        Ok(())
    }
}
