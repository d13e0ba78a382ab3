//! Lambda entry point: read config, build DynamoDB, SQS and the call providers, handle SQS batches.

use dialer::DialerState;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let state = DialerState::from_config(&config, config.connect_dynamodb().await?, config.sqs_queues().await);
    lambda_runtime::run(service_fn(|event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
        let state = state.clone();
        Box::pin(async move { Ok::<_, Error>(state.handle_sqs_batch(event.payload).await) })
    }))
    .await
}
