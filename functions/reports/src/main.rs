//! Lambda entry point: read config and the key links are signed with, build the DynamoDB store,
//! serve the router — buffered behind the HTTP API, or streamed where `OUTDIAL_RESPONSE_STREAMING=true`
//! (a function URL in `RESPONSE_STREAM` mode: a CSV of any size, never buffered whole).

use platform::{Config, telemetry};
use reports::{AppState, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let (app, _) = router().with_state(AppState::from_config(&config, store)).split_for_parts();
    let app = telemetry::traced_lambda_router(app);
    if std::env::var("OUTDIAL_RESPONSE_STREAMING").is_ok_and(|v| v == "true") {
        lambda_http::run_with_streaming_response(app).await
    } else {
        lambda_http::run(app).await
    }
}
