//! Lambda entry point: read config, build DynamoDB, the providers (for answering-machine hang-ups)
//! and the campaign tick (run after a call ends), serve the router.

use app::tick::Ticker;
use platform::{Config, EventBridgeScheduler, telemetry};
use webhooks::{WebhookState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let scheduler = EventBridgeScheduler::from_config(&config.scheduler).await?;
    let ticks = Ticker::from_config(&config, store.clone(), scheduler, config.sqs_queues().await);
    let (app, _) = router().with_state(WebhookState::from_config(&config, store, ticks)).split_for_parts();
    lambda_http::run(telemetry::traced_lambda_router(app)).await
}
