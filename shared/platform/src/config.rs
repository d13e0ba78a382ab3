//! Configuration read once from the environment, typed, with errors naming the variable.

use domain::ProviderKind;
use providers::{ProviderAccount, ProviderAccounts, TwilioAccount};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Where records are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite { path: PathBuf },
    DynamoDb { table: String, endpoint: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Settings shared by every function and the local stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub store: StoreConfig,
    pub log_format: LogFormat,
    /// SQS endpoint override (moto_server, LocalStack); AWS when unset.
    pub sqs_endpoint: Option<String>,
    /// Provider accounts with credentials (`VAPI_API_KEY`, `ELEVENLABS_API_KEY`, `RETELL_API_KEY`,
    /// `TWILIO_ACCOUNT_SID` + `TWILIO_AUTH_TOKEN`).
    pub providers: ProviderAccounts,
    pub scheduler: SchedulerConfig,
    /// Largest contact upload accepted, in bytes (`OUTDIAL_IMPORT_MAX_BYTES`).
    pub import_max_bytes: u64,
}

/// Where campaign schedules are created (EventBridge Scheduler in AWS, a timer locally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Schedule group (`SCHEDULE_GROUP`).
    pub group: String,
    /// The function schedules invoke (`CAMPAIGN_TICK_ARN`).
    pub target_arn: Option<String>,
    /// The role EventBridge Scheduler assumes to invoke it (`SCHEDULER_ROLE_ARN`).
    pub role_arn: Option<String>,
    /// Endpoint override (`SCHEDULER_ENDPOINT`: moto_server); AWS when unset.
    pub endpoint: Option<String>,
    /// How often the local timer ticks a running campaign (`OUTDIAL_TICK_SECONDS`).
    pub local_tick: std::time::Duration,
}

impl Config {
    pub const DEFAULT_DB: &'static str = "./outdial.db";
    /// 200 MiB: a million contacts with a few columns each.
    pub const DEFAULT_IMPORT_MAX_BYTES: u64 = 200 * 1024 * 1024;

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `var`, so tests need not touch the process environment.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let store = match var("OUTDIAL_STORE").as_deref() {
            None | Some("sqlite") => StoreConfig::Sqlite { path: var("OUTDIAL_DB").unwrap_or_else(|| Self::DEFAULT_DB.into()).into() },
            Some("dynamodb") => StoreConfig::DynamoDb {
                table: var("OUTDIAL_TABLE").ok_or(ConfigError::Missing("OUTDIAL_TABLE"))?,
                endpoint: var("DYNAMODB_ENDPOINT"),
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "OUTDIAL_STORE",
                    reason: format!("{other:?} is neither \"sqlite\" nor \"dynamodb\""),
                });
            }
        };
        let in_lambda = var("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let log_format = match var("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            None if in_lambda => LogFormat::Json,
            None => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError::Invalid { var: "LOG_FORMAT", reason: format!("{other:?} is neither \"json\" nor \"pretty\"") });
            }
        };
        let account = |kind: ProviderKind| {
            let endpoint = ProviderAccounts::endpoint(kind)?;
            let api_key = var(endpoint.key_variable)?;
            let base_url = var(endpoint.base_url_variable).unwrap_or_else(|| endpoint.default_base_url.into());
            Some(ProviderAccount { base_url, api_key })
        };
        let providers = ProviderAccounts {
            vapi: account(ProviderKind::Vapi),
            elevenlabs: account(ProviderKind::Elevenlabs),
            retell: account(ProviderKind::Retell),
            twilio: match (var("TWILIO_ACCOUNT_SID"), var("TWILIO_AUTH_TOKEN")) {
                (Some(account_sid), Some(auth_token)) => Some(TwilioAccount {
                    base_url: var("TWILIO_BASE_URL").unwrap_or_else(|| TwilioAccount::BASE_URL.into()),
                    account_sid,
                    auth_token,
                }),
                _ => None,
            },
        };
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            var(name).map_or(Ok(default), |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::Invalid { var: name, reason: format!("{v:?} is not a positive whole number") })
            })
        };
        let scheduler = SchedulerConfig {
            group: var("SCHEDULE_GROUP").unwrap_or_else(|| "default".into()),
            target_arn: var("CAMPAIGN_TICK_ARN"),
            role_arn: var("SCHEDULER_ROLE_ARN"),
            endpoint: var("SCHEDULER_ENDPOINT"),
            local_tick: std::time::Duration::from_secs(number("OUTDIAL_TICK_SECONDS", 60)?),
        };
        let import_max_bytes = number("OUTDIAL_IMPORT_MAX_BYTES", Self::DEFAULT_IMPORT_MAX_BYTES)?;
        Ok(Self { store, log_format, sqs_endpoint: var("SQS_ENDPOINT"), providers, scheduler, import_max_bytes })
    }

    /// The DynamoDB store a Lambda function runs on; an error naming the variables when the
    /// configuration points elsewhere.
    pub async fn connect_dynamodb(&self) -> Result<store::DynamoStore, ConfigError> {
        match &self.store {
            StoreConfig::DynamoDb { table, endpoint } => Ok(store::DynamoStore::connect(table, endpoint.as_deref()).await),
            StoreConfig::Sqlite { .. } => Err(ConfigError::Invalid {
                var: "OUTDIAL_STORE",
                reason: "functions in Lambda run on DynamoDB: set OUTDIAL_STORE=dynamodb and OUTDIAL_TABLE".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_and_pretty_logs() {
        let c = config(&[]).unwrap();
        assert_eq!(c.store, StoreConfig::Sqlite { path: "./outdial.db".into() });
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(config(&[("AWS_LAMBDA_FUNCTION_NAME", "tick")]).unwrap().log_format, LogFormat::Json);
    }

    #[test]
    fn dynamodb_needs_a_table_and_errors_name_the_variable() {
        let err = config(&[("OUTDIAL_STORE", "dynamodb")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("OUTDIAL_TABLE"));
        assert!(err.to_string().contains("OUTDIAL_TABLE"));
        let c = config(&[("OUTDIAL_STORE", "dynamodb"), ("OUTDIAL_TABLE", "t"), ("DYNAMODB_ENDPOINT", "http://127.0.0.1:5000")]).unwrap();
        assert_eq!(c.store, StoreConfig::DynamoDb { table: "t".into(), endpoint: Some("http://127.0.0.1:5000".into()) });
        assert!(config(&[("OUTDIAL_STORE", "postgres")]).unwrap_err().to_string().contains("OUTDIAL_STORE"));
        assert!(config(&[("LOG_FORMAT", "xml")]).is_err());
    }

    #[test]
    fn provider_accounts_exist_only_with_a_key() {
        assert_eq!(config(&[]).unwrap().providers, ProviderAccounts::default());
        let c = config(&[("VAPI_API_KEY", "vk"), ("RETELL_API_KEY", "rk"), ("RETELL_BASE_URL", "http://127.0.0.1:9")]).unwrap();
        assert_eq!(c.providers.vapi, Some(ProviderAccount { base_url: "https://api.vapi.ai".into(), api_key: "vk".into() }));
        assert_eq!(c.providers.retell.unwrap().base_url, "http://127.0.0.1:9");
        assert_eq!(c.providers.elevenlabs, None);
    }
}
