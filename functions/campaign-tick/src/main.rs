//! The `campaign-tick` function: one campaign's tick (`app::tick`), run by its EventBridge
//! schedule (the payload is the schedule's input). Lambda entry point: read config, build
//! DynamoDB, SQS and EventBridge Scheduler, run the tick on each schedule input.

use app::tick::{Ticker, on_scheduled_run};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{Config, EventBridgeScheduler, ScheduledRun, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let scheduler = EventBridgeScheduler::from_config(&config.scheduler).await?;
    let state = Ticker::from_config(&config, store, scheduler, config.sqs_queues().await);
    lambda_runtime::run(service_fn(|event: LambdaEvent<ScheduledRun>| {
        let state = state.clone();
        // boxed: the tick's future is deep enough to overflow the layout query of the runtime's
        Box::pin(async move { on_scheduled_run(&state, &event.payload).await.map_err(Error::from) })
    }))
    .await
}
