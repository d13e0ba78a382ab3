//! Contact files too large for one request: uploaded to object storage (S3 in AWS, the local
//! stack's own folder on a laptop) and imported, with the same streaming import, when they land.

use crate::{CampaignId, OrgId, ParseError, UploadId, import::Attestation};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long an upload URL takes a file.
pub const UPLOAD_URL_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// How a contact file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Csv,
    /// An array of objects, or objects one per line.
    Json,
    Ndjson,
}

impl ImportFormat {
    /// The format a `Content-Type` names (its essence, any case); None for anything else.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "text/csv" => Some(Self::Csv),
            "application/json" => Some(Self::Json),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => Some(Self::Ndjson),
            _ => None,
        }
    }
}

/// Where an upload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// The URL is handed out; no file has landed.
    Waiting,
    Importing,
    Imported,
    /// Nothing more will be imported from it: `failure` says why (rows before a broken part stay imported).
    Failed,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub imported: u64,
    /// Numbers already in the campaign, or earlier in the file.
    pub duplicate: u64,
    /// Numbers on the organisation's do-not-call list, left out.
    pub do_not_call: u64,
    pub invalid: u64,
    /// The first 1,000 invalid rows.
    pub errors: Vec<InvalidRow>,
}

/// A row that was not imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvalidRow {
    /// Line of the file (CSV, NDJSON; the header is line 1) or position in a JSON array (from 1).
    pub line: u64,
    pub value: String,
    pub reason: String,
}

/// Why an upload's import stopped: a problem type and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadFailure {
    /// The problem type an import request would have answered (e.g. `missing-phone-column`).
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
}

/// A contact file uploaded for a campaign, and what its import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactUpload {
    #[schema(value_type = String)]
    pub id: UploadId,
    #[schema(value_type = String)]
    pub campaign_id: CampaignId,
    pub format: ImportFormat,
    pub status: UploadStatus,
    /// Country national numbers are read in (ISO 3166-1 alpha-2); the campaign's when absent.
    pub region: Option<String>,
    /// Consent attested for the whole file when it was requested.
    pub attestation: Option<Attestation>,
    pub created_at: DateTime<Utc>,
    /// Until when the upload URL takes the file.
    pub expires_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Counts once the import has run (also when it failed part way).
    pub report: Option<ImportReport>,
    pub failure: Option<UploadFailure>,
}

impl ContactUpload {
    /// A new upload waiting for its file for `UPLOAD_URL_LIFETIME` from `now`.
    pub fn new(
        campaign_id: CampaignId,
        format: ImportFormat,
        region: Option<String>,
        attestation: Option<Attestation>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: UploadId::new(),
            campaign_id,
            format,
            status: UploadStatus::Waiting,
            region,
            attestation,
            created_at: now,
            expires_at: now + UPLOAD_URL_LIFETIME,
            finished_at: None,
            report: None,
            failure: None,
        }
    }

    /// Where its file is kept: the key names the organisation, campaign and upload, so the object's
    /// arrival alone says which import to run.
    pub fn object_key(&self, org: OrgId) -> String {
        format!("uploads/{org}/{}/{}", self.campaign_id, self.id)
    }
}

/// The organisation, campaign and upload an object key names (`uploads/<org>/<campaign>/<upload>`).
pub fn parse_object_key(key: &str) -> Result<(OrgId, CampaignId, UploadId), ParseError> {
    let invalid = || ParseError::new("key", format!("{key:?} is not an upload's key (uploads/<organisation>/<campaign>/<upload>)"));
    match key.split('/').collect::<Vec<_>>().as_slice() {
        ["uploads", org, campaign, upload] => Ok((
            OrgId::parse(org).map_err(|_| invalid())?,
            CampaignId::parse(campaign).map_err(|_| invalid())?,
            UploadId::parse(upload).map_err(|_| invalid())?,
        )),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_key_names_its_upload_and_nothing_else_parses() {
        let org = OrgId::new();
        let upload = ContactUpload::new(CampaignId::new(), ImportFormat::Csv, None, None, Utc::now());
        let key = upload.object_key(org);
        assert_eq!(parse_object_key(&key).unwrap(), (org, upload.campaign_id, upload.id));
        for bad in ["", "uploads", &format!("{key}/x"), &key.replace("uploads/", "other/"), "uploads/a/b/c"] {
            assert!(parse_object_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(upload.expires_at - upload.created_at, UPLOAD_URL_LIFETIME);
    }

    #[test]
    fn formats_come_from_content_types() {
        assert_eq!(ImportFormat::from_content_type("text/CSV; charset=utf-8"), Some(ImportFormat::Csv));
        assert_eq!(ImportFormat::from_content_type("application/jsonl"), Some(ImportFormat::Ndjson));
        assert_eq!(ImportFormat::from_content_type("text/plain"), None);
    }
}
