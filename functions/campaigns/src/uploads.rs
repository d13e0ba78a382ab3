//! Contact files of any size: the API hands out an upload URL (a presigned S3 PUT in AWS, the
//! local stack's own signed URL on a laptop); when the file lands, the same streaming import runs
//! on it and its counts are kept on the upload, where `GET …/uploads/{uploadId}` shows them.

use crate::{
    AppState, campaign_id,
    import::{ImportQuery, import_stream, importable, too_large},
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{
    OrgId, Region, UploadId,
    import::ImportDefaults,
    upload::{ContactUpload, ImportFormat, UploadFailure, UploadStatus, parse_object_key},
};
use platform::{Authenticated, AuthenticatedKey, CampaignScheduler, JobQueue, LocalPutError, Problem, UploadBucket, extract::Query};
use serde::{Deserialize, Serialize};
use store::Store;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// How the file to upload is written, and the import's options.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct UploadQuery {
    /// `csv` (default), `json` (an array, or one object per line) or `ndjson`.
    pub format: Option<ImportFormat>,
    /// Country in which national numbers are read (ISO 3166-1 alpha-2); by default the campaign's.
    pub region: Option<String>,
    /// `attested`: you attest that every contact in the file agreed to be called.
    pub consent: Option<String>,
    /// With `consent=attested`: how and where the contacts agreed.
    pub consent_source: Option<String>,
    /// The file's size in bytes, when known: over `OUTDIAL_IMPORT_MAX_BYTES` is refused (413), and
    /// object storage then takes a body of exactly this size.
    pub size: Option<u64>,
}

/// Where to PUT the file, and until when.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadTicket {
    #[schema(value_type = String)]
    pub upload_id: UploadId,
    /// PUT the file's bytes here as they are (no form encoding, no API key); the import starts when it lands.
    pub upload_url: String,
    pub expires_at: DateTime<Utc>,
}

fn upload_id(raw: &str) -> Result<UploadId, Problem> {
    UploadId::parse(raw).map_err(|_| Problem::not_found(format!("upload {raw} was not found")))
}

fn uploads_not_configured() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "uploads-not-configured",
        "Uploads not configured",
        "this deployment has no upload bucket (OUTDIAL_UPLOAD_BUCKET); import through POST /campaigns/{id}/contacts instead",
    )
}

/// Start an upload of a contact file too large for one request: answers a URL to PUT the file to
/// (good for an hour). When the file lands it is imported with the same streaming import as
/// `POST /campaigns/{id}/contacts`; follow it with `GET /campaigns/{id}/contacts/uploads/{uploadId}`.
#[utoipa::path(post, path = "/campaigns/{id}/contacts/uploads", tag = "campaigns",
    params(("id" = String, Path, description = "campaign id"), UploadQuery),
    security(("apiKey" = [])),
    responses((status = 201, body = UploadTicket),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "the campaign is neither draft nor paused"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "`size` is over OUTDIAL_IMPORT_MAX_BYTES"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "an invalid region or consent attestation"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "no upload bucket is configured")))]
pub(crate) async fn create_upload<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    AuthenticatedKey { org, key_id }: AuthenticatedKey,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
) -> Result<(StatusCode, axum::Json<UploadTicket>), Problem> {
    let campaign = state.store.get_campaign(org, campaign_id(&id)?).await?;
    importable(&campaign)?;
    let bucket = state.uploads.as_ref().ok_or_else(uploads_not_configured)?;
    if q.size.is_some_and(|size| size > state.import_max_bytes) {
        return Err(too_large(state.import_max_bytes));
    }
    let now = Utc::now();
    let options = ImportQuery { region: q.region, consent: q.consent, consent_source: q.consent_source };
    let attestation = options.attestation(&key_id, now)?;
    let region = options.region.as_deref().map(Region::parse).transpose()?.map(|r| r.code().to_string());
    let upload = ContactUpload::new(campaign.id, q.format.unwrap_or(ImportFormat::Csv), region, attestation, now);
    state.store.create_contact_upload(org, &upload).await?;
    let upload_url = bucket.upload_url(&upload.object_key(org), upload.expires_at, q.size).await.map_err(|e| {
        tracing::error!(error = %e, "no upload URL");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "uploads-unavailable",
            "Uploads unavailable",
            "object storage did not answer; try again",
        )
    })?;
    tracing::info!(campaign = %campaign.id, upload = %upload.id, "upload started");
    Ok((StatusCode::CREATED, axum::Json(UploadTicket { upload_id: upload.id, upload_url, expires_at: upload.expires_at })))
}

/// An upload and what its import did: `waiting` for the file, `importing`, `imported` with the
/// counts of `POST /campaigns/{id}/contacts`, or `failed` with the problem that stopped it.
#[utoipa::path(get, path = "/campaigns/{id}/contacts/uploads/{uploadId}", tag = "campaigns",
    params(("id" = String, Path, description = "campaign id"), ("uploadId" = String, Path, description = "upload id")),
    security(("apiKey" = [])),
    responses((status = 200, body = ContactUpload), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_upload<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path((id, upload)): Path<(String, String)>,
) -> Result<axum::Json<ContactUpload>, Problem> {
    Ok(axum::Json(state.store.contact_upload(org, campaign_id(&id)?, upload_id(&upload)?).await?))
}

#[derive(Debug, thiserror::Error)]
pub enum UploadImportError {
    #[error(transparent)]
    Key(#[from] domain::ParseError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Imports the file that landed at `key` (S3's `ObjectCreated`, or the local stack's PUT), once:
/// a repeated report of the same file finds the upload no longer waiting and does nothing (None).
/// A file that cannot be imported fails the upload with the reason; only a store that cannot
/// record the outcome is an error (the event is then retried).
pub async fn import_uploaded_file<S: Store>(
    store: &S,
    bucket: &UploadBucket,
    key: &str,
    max_bytes: u64,
) -> Result<Option<ContactUpload>, UploadImportError> {
    let (org, campaign_id, id) = parse_object_key(key)?;
    let Some(mut upload) = store.begin_contact_upload(org, campaign_id, id).await? else {
        tracing::info!(upload = %id, "upload already imported");
        return Ok(None);
    };
    let (report, outcome) = run_import(store, bucket, org, &upload, key, max_bytes).await;
    upload.finished_at = Some(Utc::now());
    upload.report = report;
    match outcome {
        Ok(()) => upload.status = UploadStatus::Imported,
        Err(problem) => {
            tracing::warn!(upload = %id, problem = %problem.kind, "upload not imported");
            upload.status = UploadStatus::Failed;
            upload.failure =
                Some(UploadFailure { kind: problem.kind.rsplit('/').next().unwrap_or_default().to_string(), detail: problem.detail });
        }
    }
    store.finish_contact_upload(org, &upload).await?;
    if let Err(e) = bucket.remove(key).await {
        tracing::warn!(upload = %id, error = %e, "the imported file was left in storage");
    }
    Ok(Some(upload))
}

async fn run_import<S: Store>(
    store: &S,
    bucket: &UploadBucket,
    org: OrgId,
    upload: &ContactUpload,
    key: &str,
    max_bytes: u64,
) -> (Option<domain::upload::ImportReport>, Result<(), Problem>) {
    let campaign = match store.get_campaign(org, upload.campaign_id).await.map_err(Problem::from).and_then(|c| importable(&c).map(|()| c)) {
        Ok(campaign) => campaign,
        Err(problem) => return (None, Err(problem)),
    };
    let file = match bucket.open(key).await {
        // a file over the limit is refused whole (S3 took it: a presigned PUT without a size bounds nothing)
        Ok((_, size)) if size > max_bytes => return (None, Err(too_large(max_bytes))),
        Ok((file, _)) => file,
        Err(e) => {
            return (None, Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "upload-unreadable", "Upload unreadable", e.to_string())));
        }
    };
    let region = match upload.region.as_deref().map(Region::parse).transpose() {
        Ok(region) => region.or_else(|| campaign.settings.import_region()),
        Err(e) => return (None, Err(Problem::validation(vec![e]))),
    };
    let defaults =
        ImportDefaults { region, timezone: campaign.settings.timezone, attestation: upload.attestation.clone(), now: Utc::now() };
    let (report, outcome) = import_stream(store, org, &campaign, upload.format, defaults, file, None).await;
    (Some(report), outcome)
}

/// The local stack's upload URLs: the file is written beside the database, then imported in the
/// background, as S3's event would have it.
#[derive(Clone)]
pub struct LocalUploads<S> {
    pub store: S,
    pub bucket: UploadBucket,
    /// `OUTDIAL_IMPORT_MAX_BYTES`: a larger file is refused (413) and nothing of it kept.
    pub max_bytes: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedUpload {
    /// Unix seconds the URL is good until, as handed out.
    pub expires: i64,
    pub signature: String,
}

/// The local stack's stand-in for S3: takes the file of an upload URL handed out by
/// `POST /campaigns/{id}/contacts/uploads`, then imports it.
#[utoipa::path(put, path = "/uploads/{org}/{campaign}/{upload}", tag = "campaigns",
    params(("org" = String, Path), ("campaign" = String, Path), ("upload" = String, Path), SignedUpload),
    request_body(content(("application/octet-stream")), description = "the contact file, as it is"),
    responses((status = 200, description = "the file is kept; its import has begun"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "a signature that does not match, or an expired URL"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "the URL has taken its file, or is taking one now"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "the file is over OUTDIAL_IMPORT_MAX_BYTES; nothing of it is kept")))]
pub(crate) async fn put_local_upload<S: Store>(
    State(uploads): State<LocalUploads<S>>,
    Path((org, campaign, upload)): Path<(String, String, String)>,
    Query(signed): Query<SignedUpload>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<StatusCode, Problem> {
    let key = format!("uploads/{org}/{campaign}/{upload}");
    let refused = |e: LocalPutError| match e {
        LocalPutError::BadSignature | LocalPutError::Expired => {
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", e.to_string())
        }
        LocalPutError::Used => Problem::new(StatusCode::CONFLICT, "upload-used", "Upload URL used", e.to_string()),
        LocalPutError::InProgress => Problem::new(StatusCode::CONFLICT, "upload-in-progress", "Upload under way", e.to_string()),
        LocalPutError::TooLarge { max_bytes } => too_large(max_bytes),
        LocalPutError::NotLocal | LocalPutError::Io(_) => {
            tracing::error!(error = %e, "upload not kept");
            Problem::internal()
        }
    };
    uploads.bucket.verify_local_url(&key, signed.expires, &signed.signature).map_err(refused)?;
    let (org_id, campaign_id, upload_id) = parse_object_key(&key).map_err(|_| refused(LocalPutError::BadSignature))?;
    if uploads.store.contact_upload(org_id, campaign_id, upload_id).await?.status != UploadStatus::Waiting {
        return Err(refused(LocalPutError::Used));
    }
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > uploads.max_bytes) {
        return Err(too_large(uploads.max_bytes));
    }
    let bytes = uploads
        .bucket
        .accept_local_put(&key, signed.expires, &signed.signature, uploads.max_bytes, body.into_data_stream())
        .await
        .map_err(refused)?;
    tracing::info!(bytes, "upload received");
    tokio::spawn(async move {
        if let Err(e) = import_uploaded_file(&uploads.store, &uploads.bucket, &key, uploads.max_bytes).await {
            tracing::error!(error = %e, "the uploaded file was not imported");
        }
    });
    Ok(StatusCode::OK)
}

/// The local stack's upload route (never deployed: S3 takes the files in AWS).
pub fn local_upload_router<S: Store>() -> OpenApiRouter<LocalUploads<S>> {
    OpenApiRouter::new().routes(routes!(put_local_upload))
}

/// What one `ObjectCreated` event did: the uploads imported, the keys that were not uploads.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectsHandled {
    pub imported: Vec<ContactUpload>,
    /// Objects already imported by an earlier delivery of the event.
    pub repeated: usize,
    /// Keys that name no upload: logged and left alone.
    pub ignored: Vec<String>,
}

/// The `contact-uploads` function: each created object of the event imported on its own, so a
/// stray or broken one never holds the others back. Only a store failure fails the invocation
/// (Lambda then retries it; the imports already done are not run again).
pub async fn on_objects_created<S: Store>(
    store: &S,
    bucket: &UploadBucket,
    max_bytes: u64,
    event: aws_lambda_events::s3::S3Event,
) -> Result<ObjectsHandled, UploadImportError> {
    let mut handled = ObjectsHandled::default();
    let mut failed = None;
    for record in event.records {
        let Some(key) = record.s3.object.key else { continue };
        match import_uploaded_file(store, bucket, &key, max_bytes).await {
            Ok(Some(upload)) => handled.imported.push(upload),
            Ok(None) => handled.repeated += 1,
            Err(UploadImportError::Key(e)) => {
                tracing::warn!(%key, error = %e, "an object that is no upload");
                handled.ignored.push(key);
            }
            Err(e) => {
                tracing::error!(%key, error = %e, "the upload's import could not be recorded");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(handled),
    }
}
