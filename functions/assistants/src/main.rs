//! Lambda entry point: read config, build the DynamoDB store and the providers, serve the router.

use assistants::{AppState, router};
use platform::{Config, StoreConfig, telemetry};
use providers::{AssistantProviders, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    let StoreConfig::DynamoDb { table, endpoint } = config.store else {
        return Err("the assistants function runs on DynamoDB: set OUTDIAL_STORE=dynamodb and OUTDIAL_TABLE".into());
    };
    let store = store::DynamoStore::connect(&table, endpoint.as_deref()).await;
    let providers = AssistantProviders::new(&config.providers, RetryPolicy::default());
    let (app, _) = router().with_state(AppState { store, providers }).split_for_parts();
    lambda_http::run(app).await
}
