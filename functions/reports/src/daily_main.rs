//! Lambda entry point of the daily organisation report, run by its EventBridge schedule each
//! morning: read config, build the DynamoDB store and SES, make and email yesterday's reports (a
//! schedule input `{"date": "YYYY-MM-DD"}` makes that day's instead).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use platform::{AnyMailer, Config, telemetry};

#[derive(Debug, Default, serde::Deserialize)]
struct DailyInput {
    date: Option<chrono::NaiveDate>,
}

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
        async move {
            let now = chrono::Utc::now();
            let date = event.payload.and_then(|input| input.date).unwrap_or_else(|| domain::report::yesterday(now, zone));
            let run = reports::daily::send_daily_reports(&store, mailer.as_ref(), zone, date, now).await?;
            // a failed organisation fails the invocation, so the schedule's retry policy tries again
            if run.failed.is_empty() {
                Ok(run)
            } else {
                Err(Error::from(format!("the daily report of {date} failed for: {}", run.failed.join("; "))))
            }
        }
    }))
    .await
}
