//! Lambda entry point: read config, build DynamoDB, the providers (for answering-machine hang-ups)
//! and the campaign tick (run after a call ends), serve the router.

use campaign_tick::TickState;
use platform::{Config, EventBridgeScheduler, telemetry};
use providers::CallProviders;
use webhooks::{WebhookState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let scheduler = EventBridgeScheduler::from_config(&config.scheduler).await?;
    let campaigns = campaigns::AppState {
        store: store.clone(),
        scheduler,
        accounts: config.providers.clone(),
        import_max_bytes: config.import_max_bytes,
    };
    let ticks = TickState { campaigns, queue: config.sqs_queues().await, window_margin: config.dialing.window_margin() };
    let calls = CallProviders::new(&config.providers, &config.dialing.calls);
    let state = WebhookState {
        store,
        public_url: config.dialing.calls.public_url.clone(),
        secrets: std::sync::Arc::new(config.webhooks.clone()),
        calls,
        ticks,
    };
    let (app, _) = router().with_state(state).split_for_parts();
    lambda_http::run(app).await
}
