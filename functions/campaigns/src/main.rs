//! Lambda entry point: read config, build the DynamoDB store, the EventBridge scheduler and the
//! `crm-jobs` queue and the upload bucket, serve the router.

use campaigns::{AppState, router};
use platform::{Config, EventBridgeScheduler, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let scheduler = EventBridgeScheduler::from_config(&config.scheduler).await?;
    let state = AppState::from_config(&config, store, scheduler, config.sqs_queues().await).with_uploads(config.s3_uploads().await);
    let (app, _) = router().with_state(state).split_for_parts();
    lambda_http::run(telemetry::traced_lambda_router(app)).await
}
