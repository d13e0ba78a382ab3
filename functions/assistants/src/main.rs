//! Lambda entry point: read config and the key each organisation's ElevenLabs tool secret is made
//! with, build the DynamoDB store and the providers, serve the router.

use assistants::{AppState, router};
use platform::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let (app, _) = router().with_state(AppState::from_config(&config, store)).split_for_parts();
    lambda_http::run(telemetry::traced_lambda_router(app)).await
}
