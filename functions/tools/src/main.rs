//! Lambda entry point: read config and the key tool secrets are made with, build DynamoDB, the
//! providers (ending a call hangs up there) and the tools, serve the router.

use platform::{Config, telemetry};
use tools::{ToolsState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let (app, _) = router().with_state(ToolsState::from_config(&config, store)).split_for_parts();
    lambda_http::run(telemetry::traced_lambda_router(app)).await
}
