//! Lambda entry point of the daily organisation report, run by its EventBridge schedule each
//! morning: read config, build the DynamoDB store and SES, make and email yesterday's reports (a
//! schedule input `{"date": "YYYY-MM-DD"}` makes that day's instead).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{AnyMailer, Config, telemetry};
use reports::daily::{DailyInput, on_schedule};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let store = config.connect_dynamodb().await?;
    let email = &config.tools.email;
    // without a sender the reports are kept and nobody is emailed
    let mailer = email.from.is_some().then(|| AnyMailer::from_config(email));
    if mailer.is_none() {
        tracing::warn!("OUTDIAL_EMAIL_FROM is not set: daily reports are kept but not emailed");
    }
    let zone = config.report_time_zone;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Option<DailyInput>>| {
        let (store, mailer) = (store.clone(), mailer.clone());
        async move { on_schedule(&store, mailer.as_ref(), zone, event.payload, chrono::Utc::now()).await.map_err(Error::from) }
    }))
    .await
}
