//! Contact files through upload URLs, on SQLite and DynamoDB: the local stack's signed URL (the
//! file PUT through the router, then imported in the background), and S3 on moto_server — a
//! real presigned PUT over HTTP, then the bucket's `ObjectCreated` event (`events/uploads/`) run
//! through the `contact-uploads` handler, twice, as S3 may deliver it.

use axum::{Router, body::Body, http::Request};
use campaigns::{
    AppState, router,
    uploads::{LocalUploads, local_upload_router, on_objects_created},
};
use domain::{NewAssistant, OrgId, ProviderKind};
use http_body_util::BodyExt;
use platform::{LocalQueue, LocalScheduler, UploadBucket, testing::load_event};
use serde_json::{Value, json};
use std::time::Duration;
use store::Store;
use tower::ServiceExt;

const ATTESTED: &str = "consent=attested&consentSource=web%20form";
const CSV: &str = "phone,name\n+14155550101,Ada\nnot a number,Bob\n+14155550102,Cy\n+14155550101,Ada again\n";
const UPLOAD_BASE: &str = "http://uploads.outdial.test";

struct Api<S> {
    app: Router,
    store: S,
    org: OrgId,
    key: String,
    campaign: String,
}

/// An organisation with a draft campaign calling from `caller` (each organisation registers its own).
async fn api<S: Store>(store: S, bucket: Option<UploadBucket>, caller: &str) -> Api<S> {
    api_taking(store, bucket, caller, platform::Config::DEFAULT_IMPORT_MAX_BYTES).await
}

/// `api`, on a deployment that takes files of at most `max_bytes` (`OUTDIAL_IMPORT_MAX_BYTES`).
async fn api_taking<S: Store>(store: S, bucket: Option<UploadBucket>, caller: &str, max_bytes: u64) -> Api<S> {
    let org = store.create_org("Acme").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let config = domain::assistant::templates()[0].config.clone();
    let assistant = store.create_assistant(org, NewAssistant::local("Agent", ProviderKind::Simulator, config).unwrap(), chrono::Utc::now());
    let assistant = assistant.await.unwrap().id.to_string();
    let phone = domain::E164::parse(caller, None).unwrap();
    let registration = domain::CallerId {
        phone,
        org_id: org,
        vapi_phone_number_id: None,
        elevenlabs_phone_number_id: None,
        registered_at: chrono::Utc::now(),
    };
    store.register_caller_id(registration).await.unwrap();
    let (scheduler, _fired) = LocalScheduler::new(Duration::from_secs(3600));
    let config = platform::testing::config(&[("OUTDIAL_SIMULATOR", "on"), ("OUTDIAL_IMPORT_MAX_BYTES", &max_bytes.to_string())]);
    let state =
        AppState::from_config(&config, store.clone(), scheduler, LocalQueue::open_in_memory(5).unwrap()).with_uploads(bucket.clone());
    let mut app = router().with_state(state).split_for_parts().0;
    if let Some(bucket) = bucket.filter(|b| matches!(b, UploadBucket::Local { .. })) {
        let uploads = LocalUploads { store: store.clone(), bucket, max_bytes };
        app = app.merge(local_upload_router::<S>().with_state(uploads).split_for_parts().0);
    }
    let mut api = Api { app, store, org, key, campaign: String::new() };
    let (status, created) = api
        .send(
            "POST",
            "/campaigns",
            Some("application/json"),
            json!({"name": "Big list", "assistantId": assistant, "callerIds": [caller]}).to_string(),
            true,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    api.campaign = created["id"].as_str().unwrap().to_string();
    api
}

impl<S: Store> Api<S> {
    async fn send(&self, method: &str, uri: &str, content_type: Option<&str>, body: impl Into<Body>, key: bool) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if key {
            request = request.header("authorization", format!("Bearer {}", self.key));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = self.app.clone().oneshot(request.body(body.into()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
    }

    async fn start_upload(&self, query: &str) -> (u16, Value) {
        self.send("POST", &format!("/campaigns/{}/contacts/uploads?{query}", self.campaign), None, Body::empty(), true).await
    }

    async fn upload_status(&self, upload: &str) -> Value {
        let (status, body) =
            self.send("GET", &format!("/campaigns/{}/contacts/uploads/{upload}", self.campaign), None, Body::empty(), true).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The upload once its import has run (the local PUT imports in the background).
    async fn finished(&self, upload: &str) -> Value {
        for _ in 0..200 {
            let state = self.upload_status(upload).await;
            if state["status"] == "imported" || state["status"] == "failed" {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("upload {upload} never finished: {}", self.upload_status(upload).await);
    }
}

store::on_both_stores!(
    "uploads-";
    a_local_upload_url_takes_the_file_and_imports_it_once,
    an_upload_that_cannot_be_imported_says_why,
    s3_uploads_take_a_presigned_put_and_import_when_the_object_lands,
    a_local_upload_url_takes_one_file_within_the_limit,
    an_s3_upload_over_the_limit_is_refused_whole,
);

async fn a_local_upload_url_takes_the_file_and_imports_it_once<S: Store>(store: S) {
    let dir = tempfile::tempdir().unwrap();
    let bucket =
        UploadBucket::Local { dir: dir.path().to_path_buf(), base_url: UPLOAD_BASE.into(), signer: platform::SecretBox::ephemeral() };
    let api = api(store, Some(bucket.clone()), "+14155550100").await;

    let (status, ticket) = api.start_upload(&format!("format=csv&{ATTESTED}")).await;
    assert_eq!(status, 201, "{ticket}");
    let upload = ticket["uploadId"].as_str().unwrap();
    let url = ticket["uploadUrl"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(ticket["expiresAt"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now() + chrono::TimeDelta::minutes(59), "good for an hour: {ticket}");
    let path = url.strip_prefix(UPLOAD_BASE).unwrap_or_else(|| panic!("{url} is on the local stack's address"));
    assert_eq!(api.upload_status(upload).await["status"], "waiting");

    // the sample events of the two routes, as the HTTP API delivers them
    let samples = [("odk_REPLACE_WITH_AN_API_KEY", api.key.as_str()), ("01970000-0000-7000-8000-0000000ca111", api.campaign.as_str())];
    let (status, sampled) = platform::testing::invoke_event(&api.app, "campaigns/contacts-upload-create.json", &samples).await;
    assert_eq!((status.as_u16(), sampled["uploadUrl"].as_str().is_some()), (201, true), "{sampled}");
    let sampled_id = sampled["uploadId"].as_str().unwrap();
    let with_upload = [samples[0], samples[1], ("01970000-0000-7000-8000-00000000b10d", sampled_id)];
    let (status, waiting) = platform::testing::invoke_event(&api.app, "campaigns/contacts-upload-status.json", &with_upload).await;
    assert_eq!((status.as_u16(), waiting["status"].as_str(), waiting["format"].as_str()), (200, Some("waiting"), Some("csv")), "{waiting}");

    // a URL altered in any way is refused, and nothing is imported
    let forged = path.replace(upload, &domain::UploadId::new().to_string());
    let (status, problem) = api.send("PUT", &forged, None, CSV, false).await;
    assert_eq!((status, problem["type"].as_str()), (403, Some("https://outdial.dev/problems/forbidden")), "{problem}");

    let (status, _) = api.send("PUT", path, Some("text/csv"), CSV, false).await;
    assert_eq!(status, 200);
    let done = api.finished(upload).await;
    assert_eq!(done["status"], "imported", "{done}");
    assert_eq!(
        (&done["report"]["imported"], &done["report"]["duplicate"], &done["report"]["invalid"]),
        (&json!(2), &json!(1), &json!(1)),
        "the same counts as a direct import: {done}"
    );
    assert_eq!(done["report"]["errors"][0]["line"], 3);
    assert_eq!(done["attestation"]["source"], "web form", "consent attested at the start is recorded");
    let (_, contacts) = api.send("GET", &format!("/campaigns/{}/contacts", api.campaign), None, Body::empty(), true).await;
    assert_eq!(contacts["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(contacts["items"][0]["consent"]["detail"], "web form");

    // the file is gone once imported; a repeated arrival imports nothing again
    let key = format!("uploads/{}/{}/{upload}", api.org, api.campaign);
    assert!(matches!(bucket.open(&key).await, Err(platform::UploadError::Missing(_))));
    let again = campaigns::uploads::import_uploaded_file(&api.store, &bucket, &key, u64::MAX).await.unwrap();
    assert!(again.is_none());
    assert_eq!(api.upload_status(upload).await, done);

    // another organisation sees none of it
    let other = api.store.create_org("Other").await.unwrap().id;
    let other_key = api.store.create_api_key(other).await.unwrap().secret;
    let request = Request::get(format!("/campaigns/{}/contacts/uploads/{upload}", api.campaign))
        .header("authorization", format!("Bearer {other_key}"));
    assert_eq!(api.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status(), 404);
}

async fn an_upload_that_cannot_be_imported_says_why<S: Store>(store: S) {
    let dir = tempfile::tempdir().unwrap();
    let bucket =
        UploadBucket::Local { dir: dir.path().to_path_buf(), base_url: UPLOAD_BASE.into(), signer: platform::SecretBox::ephemeral() };
    let api = api(store.clone(), Some(bucket), "+14155550100").await;
    let (_, ticket) = api.start_upload(ATTESTED).await;
    let path = ticket["uploadUrl"].as_str().unwrap().strip_prefix(UPLOAD_BASE).unwrap().to_string();
    assert_eq!(api.send("PUT", &path, None, "name,email\nAda,ada@example.com\n", false).await.0, 200);
    let done = api.finished(ticket["uploadId"].as_str().unwrap()).await;
    assert_eq!((done["status"].as_str(), done["failure"]["type"].as_str()), (Some("failed"), Some("missing-phone-column")), "{done}");
    assert!(done["failure"]["detail"].as_str().unwrap().contains("phone"), "{done}");

    // without consent on record the upload is refused up front, as an import would be
    let (status, problem) = api.start_upload("consent=yes").await;
    assert_eq!((status, problem["type"].as_str()), (422, Some("https://outdial.dev/problems/invalid-consent")), "{problem}");
    let (status, problem) = api.start_upload("format=xlsx").await;
    assert_eq!(status, 400, "{problem}");

    // a running campaign takes no contacts; a deployment without a bucket takes no uploads
    let (status, _) = api
        .send("POST", &format!("/campaigns/{}/contacts?{ATTESTED}", api.campaign), Some("text/csv"), "phone\n+14155550109\n", true)
        .await;
    assert_eq!(status, 200);
    let (status, started) = api.send("POST", &format!("/campaigns/{}/start", api.campaign), None, Body::empty(), true).await;
    assert_eq!(status, 200, "{started}");
    let (status, problem) = api.start_upload(ATTESTED).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/invalid-state")), "{problem}");
    let without = self::api(store, None, "+14155550199").await;
    let (status, problem) = without.start_upload(ATTESTED).await;
    assert_eq!((status, problem["type"].as_str()), (503, Some("https://outdial.dev/problems/uploads-not-configured")), "{problem}");
}

async fn s3_uploads_take_a_presigned_put_and_import_when_the_object_lands<S: Store>(store: S) {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        use std::io::Write;
        let _ =
            writeln!(std::io::stderr(), "skipped the S3 upload test: S3_ENDPOINT is unset (scripts/test starts moto_server and sets it)");
        return;
    };
    let (s3, name, bucket) = moto_bucket(&endpoint).await;
    let api = api(store, Some(bucket.clone()), "+14155550100").await;

    let (status, ticket) = api.start_upload(&format!("format=ndjson&{ATTESTED}")).await;
    assert_eq!(status, 201, "{ticket}");
    let upload = ticket["uploadId"].as_str().unwrap();
    let url = ticket["uploadUrl"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=3"), "a presigned PUT good for about an hour: {url}");
    let lines: String = (0..500).map(|i| format!("{{\"phone\": \"+1415555{:04}\", \"name\": \"Contact {i}\"}}\n", 1000 + i)).collect();
    let put = reqwest::Client::new().put(url).body(lines.clone()).send().await.unwrap();
    assert!(put.status().is_success(), "S3 took the file: {}", put.text().await.unwrap_or_default());
    let stored = s3.get_object().bucket(&name).key(format!("uploads/{}/{}/{upload}", api.org, api.campaign)).send().await.unwrap();
    assert_eq!(stored.content_length(), Some(lines.len() as i64));

    // the bucket's event, as S3 sends it: our upload and a stray object beside it
    let event = load_event(
        "uploads/object-created.json",
        &[
            ("01970000-0000-7000-8000-0000000000a9", &api.org.to_string()),
            ("01970000-0000-7000-8000-0000000ca111", &api.campaign),
            ("01970000-0000-7000-8000-00000000b10d", upload),
            ("outdial-uploads-123456789012", &name),
        ],
    );
    let event: aws_lambda_events::s3::S3Event = serde_json::from_str(&event).unwrap();
    let handled = on_objects_created(&api.store, &bucket, u64::MAX, event.clone()).await.unwrap();
    assert_eq!(handled.imported.len(), 1);
    assert_eq!(handled.ignored, ["uploads/notes.txt"], "a stray object is left alone, not fatal");
    let report = handled.imported[0].report.clone().unwrap();
    assert_eq!((report.imported, report.invalid), (500, 0));
    assert_eq!(api.upload_status(upload).await["status"], "imported");
    assert!(
        s3.head_object().bucket(&name).key(format!("uploads/{}/{}/{upload}", api.org, api.campaign)).send().await.is_err(),
        "removed once imported"
    );

    // S3 delivers at least once: the same event again imports nothing twice
    let repeated = on_objects_created(&api.store, &bucket, u64::MAX, event).await.unwrap();
    assert_eq!((repeated.imported.len(), repeated.repeated), (0, 1));
    let (_, campaign) = api.send("GET", &format!("/campaigns/{}", api.campaign), None, Body::empty(), true).await;
    assert_eq!(campaign["progress"]["contactsTotal"], 500);
}

/// A body that sends its first bytes, then waits for `release` before the rest: a PUT under way.
fn held_body(first: &'static str, release: tokio::sync::oneshot::Receiver<()>) -> Body {
    let rest = futures::stream::once(async move {
        let _ = release.await;
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"+14155550102\n"))
    });
    Body::from_stream(futures::StreamExt::chain(
        futures::stream::once(async move { Ok(axum::body::Bytes::from_static(first.as_bytes())) }),
        rest,
    ))
}

async fn a_local_upload_url_takes_one_file_within_the_limit<S: Store>(store: S) {
    let dir = tempfile::tempdir().unwrap();
    let bucket =
        UploadBucket::Local { dir: dir.path().to_path_buf(), base_url: UPLOAD_BASE.into(), signer: platform::SecretBox::ephemeral() };
    let api = api_taking(store, Some(bucket), "+14155550100", 64).await;
    let files_kept = || walkdir(dir.path());

    // over the limit: 413, and nothing of it is kept (the URL stays good for a file that fits)
    let (_, ticket) = api.start_upload(ATTESTED).await;
    let path = ticket["uploadUrl"].as_str().unwrap().strip_prefix(UPLOAD_BASE).unwrap().to_string();
    let big = format!("phone\n{}", "+14155550101\n".repeat(10));
    let (status, problem) = api.send("PUT", &path, None, big, false).await;
    assert_eq!((status, problem["type"].as_str()), (413, Some("https://outdial.dev/problems/payload-too-large")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("64 bytes"), "{problem}");
    assert_eq!(files_kept(), Vec::<String>::new());
    let (status, problem) = api.start_upload(&format!("{ATTESTED}&size=65")).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (413, Some("https://outdial.dev/problems/payload-too-large")),
        "a size declared up front"
    );

    // two PUTs at once: one takes the file, the other is told the URL is busy
    let (release, held) = tokio::sync::oneshot::channel();
    let first = {
        let (app, path) = (api.app.clone(), path.clone());
        tokio::spawn(async move {
            app.oneshot(Request::put(path).body(held_body("phone\n+14155550101\n", held)).unwrap()).await.unwrap().status()
        })
    };
    let mut waited = 0;
    while files_kept().is_empty() {
        assert!(waited < 200, "the first PUT never began");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let (status, problem) = api.send("PUT", &path, None, "phone\n+14155550109\n", false).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/upload-in-progress")), "{problem}");
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap(), 200);
    let done = api.finished(ticket["uploadId"].as_str().unwrap()).await;
    assert_eq!(done["report"]["imported"], 2, "the first PUT's file: {done}");

    // a used URL takes nothing more, and keeps nothing
    let (status, problem) = api.send("PUT", &path, None, "phone\n+14155550109\n", false).await;
    assert_eq!((status, problem["type"].as_str()), (409, Some("https://outdial.dev/problems/upload-used")), "{problem}");
    assert_eq!(files_kept(), Vec::<String>::new());
    let (_, campaign) = api.send("GET", &format!("/campaigns/{}", api.campaign), None, Body::empty(), true).await;
    assert_eq!(campaign["progress"]["contactsTotal"], 2);
}

/// The files under `dir`, as paths relative to it.
fn walkdir(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, at: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// A fresh bucket on moto_server at `endpoint`: a client of it, its name, and the upload port on it.
async fn moto_bucket(endpoint: &str) -> (aws_sdk_s3::Client, String, UploadBucket) {
    let name = format!("outdial-uploads-{}", uuid::Uuid::now_v7().simple());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    s3.create_bucket().bucket(&name).send().await.unwrap();
    let bucket = UploadBucket::s3(&name, Some(endpoint)).await;
    (s3, name, bucket)
}

async fn an_s3_upload_over_the_limit_is_refused_whole<S: Store>(store: S) {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        eprintln!("skipped the S3 upload limit test: S3_ENDPOINT is unset (scripts/test starts moto_server and sets it)");
        return;
    };
    let (s3, name, bucket) = moto_bucket(&endpoint).await;
    let api = api_taking(store, Some(bucket.clone()), "+14155550100", 64).await;

    let (status, problem) = api.start_upload(&format!("{ATTESTED}&size=65")).await;
    assert_eq!((status, problem["type"].as_str()), (413, Some("https://outdial.dev/problems/payload-too-large")), "{problem}");
    let (status, ticket) = api.start_upload(&format!("{ATTESTED}&size=64")).await;
    assert_eq!(status, 201, "{ticket}");
    let url = ticket["uploadUrl"].as_str().unwrap();
    assert!(url.contains("content-length"), "the size is signed into the URL: {url}");

    // a URL asked for without a size bounds nothing at S3: the import refuses the file whole
    let (_, ticket) = api.start_upload(ATTESTED).await;
    let upload = ticket["uploadId"].as_str().unwrap();
    let big = format!("phone\n{}", "+14155550101\n".repeat(10));
    let put = reqwest::Client::new().put(ticket["uploadUrl"].as_str().unwrap()).body(big).send().await.unwrap();
    assert!(put.status().is_success());
    let key = format!("uploads/{}/{}/{upload}", api.org, api.campaign);
    let done = campaigns::uploads::import_uploaded_file(&api.store, &bucket, &key, 64).await.unwrap().unwrap();
    assert_eq!(done.status, domain::upload::UploadStatus::Failed);
    assert_eq!(done.failure.as_ref().map(|f| f.kind.as_str()), Some("payload-too-large"), "{done:?}");
    assert!(s3.head_object().bucket(&name).key(&key).send().await.is_err(), "nothing kept");
    let (_, campaign) = api.send("GET", &format!("/campaigns/{}", api.campaign), None, Body::empty(), true).await;
    assert_eq!(campaign["progress"]["contactsTotal"], 0, "nothing imported");
}
