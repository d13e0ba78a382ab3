//! The upload port: where large contact files go before they are imported. In AWS an S3 bucket
//! (a presigned PUT; the bucket's `ObjectCreated` event starts the import); on a laptop a folder
//! beside the database, written through a signed URL the local stack serves itself.

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use std::{path::PathBuf, pin::Pin};

/// A file's bytes, as they are read.
pub type ObjectStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("object storage failed: {0}")]
    Storage(String),
    #[error("no uploaded file at {0}")]
    Missing(String),
}

/// Where uploaded contact files are kept.
#[derive(Clone, Debug)]
pub enum UploadBucket {
    /// `OUTDIAL_UPLOAD_BUCKET` (with `S3_ENDPOINT` for moto_server).
    S3 { client: aws_sdk_s3::Client, bucket: String },
    /// The local stack: files in `dir`, put through `<base_url>/uploads/…` URLs signed with `signer`.
    Local { dir: PathBuf, base_url: String, signer: crate::SecretBox },
}

impl UploadBucket {
    /// The bucket in AWS; `endpoint` (moto_server) is addressed path-style.
    pub async fn s3(bucket: &str, endpoint: Option<&str>) -> Self {
        let sdk = crate::aws::sdk_config(endpoint).await;
        let config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(endpoint.is_some()).build();
        Self::S3 { client: aws_sdk_s3::Client::from_conf(config), bucket: bucket.to_string() }
    }

    /// A URL a client PUTs the file for `key` to, good until `expires_at`. With `size`, S3 takes
    /// a body of exactly that many bytes (`Content-Length` is signed into the URL).
    pub async fn upload_url(&self, key: &str, expires_at: DateTime<Utc>, size: Option<u64>) -> Result<String, UploadError> {
        match self {
            Self::S3 { client, bucket } => {
                let lifetime = (expires_at - Utc::now()).to_std().unwrap_or_default();
                let presigning =
                    aws_sdk_s3::presigning::PresigningConfig::expires_in(lifetime).map_err(|e| UploadError::Storage(e.to_string()))?;
                let request = client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .set_content_length(size.and_then(|s| i64::try_from(s).ok()))
                    .presigned(presigning)
                    .await
                    .map_err(|e| UploadError::Storage(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
                Ok(request.uri().to_string())
            }
            Self::Local { base_url, signer, .. } => {
                let expires = expires_at.timestamp();
                let signature = signer.sign(&local_upload_message(key, expires));
                Ok(format!("{}/{key}?expires={expires}&signature={signature}", base_url.trim_end_matches('/')))
            }
        }
    }

    /// The file at `key`, streamed, and its size in bytes.
    pub async fn open(&self, key: &str) -> Result<(ObjectStream, u64), UploadError> {
        match self {
            Self::S3 { client, bucket } => {
                let object = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| match e.as_service_error() {
                    Some(missing) if missing.is_no_such_key() => UploadError::Missing(key.to_string()),
                    _ => UploadError::Storage(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
                })?;
                let size = object.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or_default();
                let reader = object.body.into_async_read();
                Ok((Box::pin(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)), size))
            }
            Self::Local { dir, .. } => {
                let file = tokio::fs::File::open(dir.join(key)).await.map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => UploadError::Missing(key.to_string()),
                    _ => UploadError::Storage(e.to_string()),
                })?;
                let size = file.metadata().await.map_err(|e| UploadError::Storage(e.to_string()))?.len();
                Ok((Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)), size))
            }
        }
    }

    /// Removes the file once it is imported (S3 also expires what is left, by a lifecycle rule).
    pub async fn remove(&self, key: &str) -> Result<(), UploadError> {
        match self {
            Self::S3 { client, bucket } => {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| UploadError::Storage(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
                Ok(())
            }
            Self::Local { dir, .. } => match tokio::fs::remove_file(dir.join(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(UploadError::Storage(e.to_string())),
                _ => Ok(()),
            },
        }
    }

    /// Whether a local upload URL is one this stack handed out for `key`, and still good.
    pub fn verify_local_url(&self, key: &str, expires: i64, signature: &str) -> Result<(), LocalPutError> {
        let Self::Local { signer, .. } = self else { return Err(LocalPutError::NotLocal) };
        if domain::upload::parse_object_key(key).is_err() || !signer.verify(&local_upload_message(key, expires), signature) {
            return Err(LocalPutError::BadSignature);
        }
        if Utc::now().timestamp() > expires {
            return Err(LocalPutError::Expired);
        }
        Ok(())
    }

    /// The local stack's side of a PUT to an upload URL: checks its signature and expiry, then
    /// writes the body to the file for `key` as it arrives, at most `max_bytes` of it. It goes to
    /// a temporary name first, created exclusively: a second PUT while one is under way, or once
    /// the file has landed, is refused; a broken or oversized upload leaves nothing behind.
    pub async fn accept_local_put(
        &self,
        key: &str,
        expires: i64,
        signature: &str,
        max_bytes: u64,
        body: impl Stream<Item = Result<Bytes, axum::Error>> + Send,
    ) -> Result<u64, LocalPutError> {
        self.verify_local_url(key, expires, signature)?;
        let Self::Local { dir, .. } = self else { return Err(LocalPutError::NotLocal) };
        let path = dir.join(key);
        let partial = path.with_extension("partial");
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(LocalPutError::Io)?;
        }
        let mut file = match tokio::fs::OpenOptions::new().write(true).create_new(true).open(&partial).await {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(LocalPutError::InProgress),
            other => other.map_err(LocalPutError::Io)?,
        };
        let written = async {
            if tokio::fs::try_exists(&path).await.map_err(LocalPutError::Io)? {
                return Err(LocalPutError::Used);
            }
            let reader = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other).boxed());
            // one byte past the limit says the body is over it, without reading the rest
            let mut limited = tokio::io::AsyncReadExt::take(reader, max_bytes.saturating_add(1));
            let written = tokio::io::copy(&mut limited, &mut file).await.map_err(LocalPutError::Io)?;
            if written > max_bytes {
                return Err(LocalPutError::TooLarge { max_bytes });
            }
            tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(LocalPutError::Io)?;
            tokio::fs::rename(&partial, &path).await.map_err(LocalPutError::Io)?;
            Ok(written)
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        written
    }
}

/// Why the local stack refused a PUT to an upload URL.
#[derive(Debug, thiserror::Error)]
pub enum LocalPutError {
    #[error("the upload URL's signature does not match: use the uploadUrl exactly as it was handed out")]
    BadSignature,
    #[error("the upload URL has expired: ask for a new one with POST /campaigns/{{id}}/contacts/uploads")]
    Expired,
    #[error("uploads go to object storage here, not to this server")]
    NotLocal,
    #[error("this upload URL has been used: ask for a new one with POST /campaigns/{{id}}/contacts/uploads")]
    Used,
    #[error("a file is being uploaded to this URL right now: wait for the upload to finish")]
    InProgress,
    #[error("the file is larger than {max_bytes} bytes (OUTDIAL_IMPORT_MAX_BYTES): split it")]
    TooLarge { max_bytes: u64 },
    #[error("the file could not be written: {0}")]
    Io(std::io::Error),
}

fn local_upload_message(key: &str, expires: i64) -> String {
    format!("upload|v1|{key}|{expires}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> UploadBucket {
        UploadBucket::Local { dir: dir.to_path_buf(), base_url: "http://127.0.0.1:9/".into(), signer: crate::SecretBox::ephemeral() }
    }

    fn body(text: &'static str) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send {
        futures::stream::iter([Ok(Bytes::from_static(text.as_bytes()))])
    }

    fn query_of(url: &str) -> (i64, String) {
        let query = url.split_once('?').unwrap().1;
        let value = |name: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap().to_string();
        (value("expires").parse().unwrap(), value("signature"))
    }

    #[tokio::test]
    async fn a_local_upload_url_takes_its_file_once_signed_and_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = local(dir.path());
        let key = format!("uploads/{}/{}/{}", domain::OrgId::new(), domain::CampaignId::new(), domain::UploadId::new());
        let url = bucket.upload_url(&key, Utc::now() + chrono::TimeDelta::hours(1), None).await.unwrap();
        assert!(url.starts_with(&format!("http://127.0.0.1:9/{key}?expires=")), "{url}");
        let (expires, signature) = query_of(&url);

        let other_key = key.replace("uploads/", "uploads/x");
        let put = |key: &str, expires: i64, signature: &str, max: u64, text: &'static str| {
            let (bucket, key, signature) = (bucket.clone(), key.to_string(), signature.to_string());
            async move { bucket.accept_local_put(&key, expires, &signature, max, body(text)).await }
        };
        assert!(matches!(put(&other_key, expires, &signature, 100, "a").await, Err(LocalPutError::BadSignature)));
        assert!(matches!(put(&key, expires + 1, &signature, 100, "a").await, Err(LocalPutError::BadSignature)));
        assert!(matches!(
            put(&key, expires, &signature, 18, "phone\n+14155550100\n").await,
            Err(LocalPutError::TooLarge { max_bytes: 18 })
        ));
        assert!(matches!(bucket.open(&key).await, Err(UploadError::Missing(_))), "nothing kept of a file over the limit");
        assert_eq!(std::fs::read_dir(dir.path().join(key.rsplit_once('/').unwrap().0)).unwrap().count(), 0, "nor its partial copy");

        assert_eq!(put(&key, expires, &signature, 19, "phone\n+14155550100\n").await.unwrap(), 19);
        assert!(matches!(put(&key, expires, &signature, 100, "again").await, Err(LocalPutError::Used)), "a URL takes one file");
        let (file, size) = bucket.open(&key).await.unwrap();
        assert_eq!(size, 19);
        let read: Vec<Bytes> = file.try_collect().await.unwrap();
        assert_eq!(read.concat(), b"phone\n+14155550100\n");
        bucket.remove(&key).await.unwrap();
        assert!(matches!(bucket.open(&key).await, Err(UploadError::Missing(_))));

        let stale = bucket.upload_url(&key, Utc::now() - chrono::TimeDelta::seconds(1), None).await.unwrap();
        let (expires, signature) = query_of(&stale);
        assert!(matches!(put(&key, expires, &signature, 100, "a").await, Err(LocalPutError::Expired)));
    }
}
