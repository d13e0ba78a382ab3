//! Lambda entry point of `contact-uploads`, run by the upload bucket's `ObjectCreated` events:
//! read config, build the DynamoDB store and the bucket, import each uploaded contact file.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let bucket = config.s3_uploads().await.ok_or("OUTDIAL_UPLOAD_BUCKET is required: the bucket contact files are uploaded to")?;
    let max_bytes = config.import_max_bytes;
    lambda_runtime::run(service_fn(|event: LambdaEvent<aws_lambda_events::s3::S3Event>| {
        let (store, bucket) = (store.clone(), bucket.clone());
        async move { campaigns::uploads::on_objects_created(&store, &bucket, max_bytes, event.payload).await.map_err(Error::from) }
    }))
    .await
}
