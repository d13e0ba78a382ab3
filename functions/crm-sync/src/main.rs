//! Lambda entry point: read config and the sealing key, build DynamoDB and SQS, handle SQS batches
//! of `crm-jobs`.

use crm_sync::CrmSyncState;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let state = CrmSyncState::from_config(&config, config.connect_dynamodb().await?, config.sqs_queues().await);
    lambda_runtime::run(service_fn(|event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
        let state = state.clone();
        Box::pin(async move { Ok::<_, Error>(state.handle_sqs_batch(event.payload).await) })
    }))
    .await
}
