//! Configuration read once from the environment, typed, with errors naming the variable.

use domain::ProviderKind;
use providers::{CalcomAccount, ProviderAccount, ProviderAccounts, Secret, TwilioAccount};
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
#[derive(Clone, Debug, PartialEq)]
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
    /// SQS queue URLs by logical name (`DIAL_JOBS_QUEUE_URL`, `CRM_JOBS_QUEUE_URL`).
    pub queue_urls: std::collections::BTreeMap<String, String>,
    pub dialing: DialingConfig,
    pub webhooks: WebhookSecrets,
    pub bridge: BridgeConfig,
    pub tools: ToolsConfig,
    /// Seals stored secrets (CRM tokens, webhook signing secrets): `OUTDIAL_SECRET_KEY`; the local
    /// stack falls back to a key file beside its database. None: nothing secret can be stored.
    pub secrets: Option<crate::SecretBox>,
    /// `OUTDIAL_SECRET_KEY_ARN`: the Secrets Manager secret the key is read from (in AWS), by
    /// `load_secret_key`; `SECRETSMANAGER_ENDPOINT` moves it elsewhere (moto_server).
    pub secret_key_arn: Option<String>,
    pub secretsmanager_endpoint: Option<String>,
    /// Where deliveries go: `GHL_BASE_URL`, `HUBSPOT_BASE_URL` (tests), and
    /// `OUTDIAL_CRM_ALLOW_PRIVATE=true`, which lets CRM webhooks go to private addresses and plain
    /// http (local testing only: unsafe in production).
    pub crm: providers::crm::CrmSetup,
    /// Receives of a `crm-jobs` message before its dead-letter queue (`CRM_JOBS_MAX_RECEIVES`;
    /// match the queue's redrive policy): the last one marks a failing delivery failed.
    pub crm_max_receives: u32,
    /// The time zone whose days the daily organisation report covers (`OUTDIAL_REPORT_TIME_ZONE`,
    /// an IANA name; UTC when unset). In AWS, the same zone the report's schedule runs in.
    pub report_time_zone: chrono_tz::Tz,
    /// `OUTDIAL_ELEVENLABS_CREDIT_PRICE`: what 1,000 ElevenLabs credits cost the organisation's plan
    /// (USD, e.g. 0.30). ElevenLabs reports a conversation's cost in credits; with this the report
    /// shows it as money, without it ElevenLabs calls count as not costed.
    pub elevenlabs_credit_price: Option<domain::Money>,
    /// `OUTDIAL_UPLOAD_BUCKET`: the S3 bucket large contact files are uploaded to (in AWS).
    pub upload_bucket: Option<String>,
    /// `S3_ENDPOINT`: S3 endpoint override (moto_server); AWS when unset.
    pub s3_endpoint: Option<String>,
}

/// What the agent's booking and email tools need; a tool whose part is missing answers the agent
/// with the variable to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolsConfig {
    /// `CALCOM_API_KEY` + `CALCOM_EVENT_TYPE_ID` (+ `CALCOM_BASE_URL`).
    pub calcom: Option<CalcomAccount>,
    pub email: EmailConfig,
    /// Follow-up emails one call may send (`OUTDIAL_EMAILS_PER_CALL`, default 1; 0 turns the tool off).
    pub emails_per_call: u32,
    /// Their wording (`OUTDIAL_EMAIL_SUBJECT`, `OUTDIAL_EMAIL_TEMPLATE`: `{{variable}}` and `{{note}}`).
    pub email_template: domain::EmailTemplate,
    /// Where providers reach the `/tools/*` routes, declared on the agents outdial creates:
    /// `OUTDIAL_TOOLS_URL` (the tools function's URL in AWS), else `OUTDIAL_PUBLIC_URL` (one
    /// server, `outdial serve`).
    pub public_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailConfig {
    /// The verified sender (`OUTDIAL_EMAIL_FROM`).
    pub from: Option<domain::EmailAddress>,
    pub service: EmailService,
}

/// Where follow-up emails go (`OUTDIAL_EMAIL`): SES by default on DynamoDB (in AWS), else the
/// local outbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EmailService {
    /// `SES_ENDPOINT` moves it elsewhere (moto_server).
    Ses { endpoint: Option<String> },
    #[default]
    Local,
}

/// The media bridge's own settings (its URL and Twilio token live in `dialing` and `providers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `OUTDIAL_BRIDGE_VERIFY_SIGNATURE=false` accepts unsigned media streams (local tunnels only).
    pub verify_signature: bool,
    /// How long active calls may go on after SIGTERM (`OUTDIAL_BRIDGE_DRAIN_SECONDS`).
    pub drain_timeout: std::time::Duration,
    /// The bearer token `GET /metrics` takes (`OUTDIAL_METRICS_TOKEN`); without it metrics are not served.
    pub metrics_token: Option<Secret>,
    /// What one connection may hold, and how many are served at once (`OUTDIAL_MAX_CONNECTIONS`).
    pub connections: crate::server::ConnectionLimits,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            verify_signature: true,
            drain_timeout: std::time::Duration::from_secs(30),
            metrics_token: None,
            connections: crate::server::ConnectionLimits::default(),
        }
    }
}

/// What proves a webhook came from its provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookSecrets {
    /// `TWILIO_AUTH_TOKEN`.
    pub twilio_auth_token: Option<providers::Secret>,
    /// `ELEVENLABS_WEBHOOK_SECRET`.
    pub elevenlabs: Option<providers::Secret>,
    /// `VAPI_WEBHOOK_SECRET`: sent as `X-Vapi-Secret` or `Authorization: Bearer`.
    pub vapi_secret: Option<providers::Secret>,
    /// `VAPI_WEBHOOK_HMAC_SECRET`: when set, Vapi's `x-vapi-signature` HMAC is required.
    pub vapi_hmac_secret: Option<providers::Secret>,
    /// `RETELL_API_KEY`: Retell signs its webhooks with it.
    pub retell_api_key: Option<providers::Secret>,
}

/// How calls are placed.
#[derive(Clone, Debug, PartialEq)]
pub struct DialingConfig {
    /// What the call providers need besides their keys: `OUTDIAL_PUBLIC_URL`, `OUTDIAL_BRIDGE_URL`,
    /// `ELEVENLABS_WEBHOOK_SECRET`, `OUTDIAL_SIMULATOR_SEED`, `OUTDIAL_SIMULATOR_SPEED` (the numbers
    /// Vapi and ElevenLabs call from are the campaign's registered caller IDs).
    pub calls: providers::CallOptions,
    /// Calls per second per provider account (`TWILIO_CALLS_PER_SECOND`, … `SIMULATOR_CALLS_PER_SECOND`; 0 = no limit).
    pub calls_per_second: CallsPerSecond,
    /// Longest a dialer waits for its pacing slot before handing the job back (`OUTDIAL_PACE_MAX_WAIT_SECONDS`).
    pub max_pace_wait: std::time::Duration,
    /// Receives of a dial job before it goes to the dead-letter queue (`DIAL_JOBS_MAX_RECEIVES`, as the queue's redrive policy).
    pub max_receives: u32,
    /// First retry delay of a transient provider failure, doubling per receive (`DIAL_RETRY_BACKOFF_SECONDS`).
    pub retry_backoff: std::time::Duration,
    /// How long a call rings before it counts as unanswered (`OUTDIAL_RING_SECONDS`).
    pub ring_seconds: u32,
    /// How much of a contact's legal window must be left for a call to start: none starts that
    /// would ring into the closing minutes (`OUTDIAL_WINDOW_MARGIN_SECONDS`).
    pub window_margin: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallsPerSecond {
    pub twilio: f64,
    pub elevenlabs: f64,
    pub vapi: f64,
    pub retell: f64,
    pub simulator: f64,
}

impl CallsPerSecond {
    pub fn pace(&self, provider: domain::CallProvider) -> domain::Pace {
        use domain::CallProvider as P;
        domain::Pace::per_second(match provider {
            P::Twilio => self.twilio,
            P::Elevenlabs => self.elevenlabs,
            P::Vapi => self.vapi,
            P::Retell => self.retell,
            P::Simulator => self.simulator,
        })
    }
}

impl Default for DialingConfig {
    fn default() -> Self {
        Self {
            calls: providers::CallOptions::default(),
            // Twilio's default is 1 call per second per account, and ElevenLabs dials through Twilio
            calls_per_second: CallsPerSecond { twilio: 1.0, elevenlabs: 1.0, vapi: 2.0, retell: 2.0, simulator: 0.0 },
            max_pace_wait: std::time::Duration::from_secs(60),
            max_receives: 5,
            retry_backoff: std::time::Duration::from_secs(30),
            ring_seconds: 30,
            window_margin: std::time::Duration::from_secs(120),
        }
    }
}

impl DialingConfig {
    /// The margin as the domain counts time.
    pub fn window_margin(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.window_margin).unwrap_or(chrono::TimeDelta::MAX)
    }
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

    /// Everything a Lambda function or the bridge reads at its cold start: the process
    /// environment, the deployment secret's credentials (`OUTDIAL_SECRETS_ARN`) and the sealing key.
    pub async fn load() -> Result<Self, ConfigError> {
        let mut config = Self::from_lookup_and_secret(|name| std::env::var(name).ok().filter(|v| !v.is_empty())).await?;
        config.load_secret_key().await?;
        Ok(config)
    }

    /// Reads configuration through `var`, the credentials of `SECRET_VARIABLES` from the
    /// deployment secret when `OUTDIAL_SECRETS_ARN` names one (its value wins over the variable).
    pub async fn from_lookup_and_secret(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        use crate::deployment_secret::{DeploymentSecret, SECRET_VARIABLES};
        let secret = match var("OUTDIAL_SECRETS_ARN").filter(|id| !id.trim().is_empty()) {
            Some(id) => DeploymentSecret::fetch(id.trim(), var("SECRETSMANAGER_ENDPOINT").as_deref())
                .await
                .map_err(|e| ConfigError::Invalid { var: "OUTDIAL_SECRETS_ARN", reason: e.to_string() })?,
            None => DeploymentSecret::default(),
        };
        Self::from_lookup(|name| if SECRET_VARIABLES.contains(&name) { secret.get(name).or_else(|| var(name)) } else { var(name) })
    }

    /// Reads configuration through `var`, so tests need not touch the process environment: each
    /// section from its own variables, each secret once.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var: &Lookup<'_> = &var;
        let secrets = Secrets::read(var);
        let store = StoreConfig::read(var)?;
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
        let queue_urls = [(crate::queue::DIAL_JOBS, "DIAL_JOBS_QUEUE_URL"), (crate::queue::CRM_JOBS, "CRM_JOBS_QUEUE_URL")]
            .into_iter()
            .filter_map(|(name, variable)| Some((name.to_string(), var(variable)?)))
            .collect();
        let tools = ToolsConfig::read(var, &store)?;
        Ok(Self {
            log_format,
            sqs_endpoint: var("SQS_ENDPOINT"),
            providers: read_providers(var, &secrets),
            scheduler: SchedulerConfig::read(var)?,
            import_max_bytes: number(var, "OUTDIAL_IMPORT_MAX_BYTES", Self::DEFAULT_IMPORT_MAX_BYTES)?,
            queue_urls,
            dialing: DialingConfig::read(var, &secrets)?,
            webhooks: WebhookSecrets::of(&secrets),
            bridge: BridgeConfig::read(var)?,
            tools,
            store,
            secrets: var("OUTDIAL_SECRET_KEY")
                .map(|key| crate::SecretBox::from_base64(&key))
                .transpose()
                .map_err(|e| ConfigError::Invalid { var: "OUTDIAL_SECRET_KEY", reason: e.to_string() })?,
            secret_key_arn: var("OUTDIAL_SECRET_KEY_ARN").filter(|arn| !arn.trim().is_empty()),
            secretsmanager_endpoint: var("SECRETSMANAGER_ENDPOINT"),
            crm: providers::crm::CrmSetup {
                gohighlevel_base: var("GHL_BASE_URL").unwrap_or_else(|| providers::crm::GoHighLevel::BASE_URL.into()),
                hubspot_base: var("HUBSPOT_BASE_URL").unwrap_or_else(|| providers::crm::HubSpot::BASE_URL.into()),
                outbound: providers::crm::OutboundPolicy {
                    allow_private: var("OUTDIAL_CRM_ALLOW_PRIVATE").is_some_and(|v| matches!(v.trim(), "true" | "1")),
                },
                ..Default::default()
            },
            crm_max_receives: u32::try_from(number(var, "CRM_JOBS_MAX_RECEIVES", 5)?).unwrap_or(u32::MAX),
            upload_bucket: var("OUTDIAL_UPLOAD_BUCKET").map(|b| b.trim().to_string()).filter(|b| !b.is_empty()),
            s3_endpoint: var("S3_ENDPOINT"),
            elevenlabs_credit_price: var("OUTDIAL_ELEVENLABS_CREDIT_PRICE")
                .map(|price| {
                    domain::Money::parse(price.trim()).map_err(|e| ConfigError::Invalid {
                        var: "OUTDIAL_ELEVENLABS_CREDIT_PRICE",
                        reason: format!("{price:?}: {}; give USD per 1,000 credits, e.g. 0.30", e.reason),
                    })
                })
                .transpose()?,
            report_time_zone: match var("OUTDIAL_REPORT_TIME_ZONE").filter(|zone| !zone.trim().is_empty()) {
                None => chrono_tz::UTC,
                Some(zone) => zone.trim().parse().map_err(|_| ConfigError::Invalid {
                    var: "OUTDIAL_REPORT_TIME_ZONE",
                    reason: format!("{zone:?} is not an IANA time zone name, e.g. America/New_York"),
                })?,
            },
        })
    }

    /// Reads the sealing key from Secrets Manager when `OUTDIAL_SECRET_KEY_ARN` names it and
    /// `OUTDIAL_SECRET_KEY` does not give it: once, at a function's cold start.
    pub async fn load_secret_key(&mut self) -> Result<(), ConfigError> {
        if let (None, Some(arn)) = (&self.secrets, &self.secret_key_arn) {
            let key = crate::SecretBox::from_secrets_manager(arn, self.secretsmanager_endpoint.as_deref()).await;
            self.secrets = Some(key.map_err(|e| ConfigError::Invalid { var: "OUTDIAL_SECRET_KEY_ARN", reason: e.to_string() })?);
        }
        Ok(())
    }

    /// The S3 bucket of contact uploads, when `OUTDIAL_UPLOAD_BUCKET` names one.
    pub async fn s3_uploads(&self) -> Option<crate::UploadBucket> {
        match &self.upload_bucket {
            Some(bucket) => Some(crate::UploadBucket::s3(bucket, self.s3_endpoint.as_deref()).await),
            None => None,
        }
    }

    /// The SQS queues whose URLs are configured, by logical name.
    pub async fn sqs_queues(&self) -> crate::SqsQueue {
        let urls = self.queue_urls.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        crate::SqsQueue::new(crate::SqsQueue::client(self.sqs_endpoint.as_deref()).await, urls)
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

/// How configuration is looked up: a variable's value, None when unset or empty.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// A positive whole number, or `default` when unset.
fn number(var: &Lookup<'_>, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    var(name).map_or(Ok(default), |v| {
        v.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::Invalid { var: name, reason: format!("{v:?} is not a positive whole number") })
    })
}

/// A rate of calls per second (0 = no limit), or `default` when unset.
fn rate(var: &Lookup<'_>, name: &'static str, default: f64) -> Result<f64, ConfigError> {
    var(name).map_or(Ok(default), |v| {
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| ConfigError::Invalid { var: name, reason: format!("{v:?} is not a number of calls per second (0 = no limit)") })
    })
}

fn seconds(var: &Lookup<'_>, name: &'static str, default: std::time::Duration) -> Result<std::time::Duration, ConfigError> {
    Ok(std::time::Duration::from_secs(number(var, name, default.as_secs())?))
}

/// Every credential the deployment has, each read once; the sections take theirs from here.
struct Secrets {
    twilio_auth_token: Option<Secret>,
    elevenlabs_webhook: Option<Secret>,
    vapi_webhook: Option<Secret>,
    vapi_webhook_hmac: Option<Secret>,
    provider_keys: std::collections::BTreeMap<&'static str, Secret>,
}

impl Secrets {
    fn read(var: &Lookup<'_>) -> Self {
        let secret = |name: &str| var(name).map(Secret::from);
        let provider_keys = [ProviderKind::Vapi, ProviderKind::Elevenlabs, ProviderKind::Retell]
            .into_iter()
            .filter_map(ProviderAccounts::endpoint)
            .filter_map(|endpoint| Some((endpoint.key_variable, secret(endpoint.key_variable)?)))
            .collect();
        Self {
            twilio_auth_token: secret("TWILIO_AUTH_TOKEN"),
            elevenlabs_webhook: secret("ELEVENLABS_WEBHOOK_SECRET"),
            vapi_webhook: secret("VAPI_WEBHOOK_SECRET"),
            vapi_webhook_hmac: secret("VAPI_WEBHOOK_HMAC_SECRET"),
            provider_keys,
        }
    }
}

impl StoreConfig {
    fn read(var: &Lookup<'_>) -> Result<Self, ConfigError> {
        match var("OUTDIAL_STORE").as_deref() {
            None | Some("sqlite") => Ok(Self::Sqlite { path: var("OUTDIAL_DB").unwrap_or_else(|| Config::DEFAULT_DB.into()).into() }),
            Some("dynamodb") => Ok(Self::DynamoDb {
                table: var("OUTDIAL_TABLE").ok_or(ConfigError::Missing("OUTDIAL_TABLE"))?,
                endpoint: var("DYNAMODB_ENDPOINT"),
            }),
            Some(other) => {
                Err(ConfigError::Invalid { var: "OUTDIAL_STORE", reason: format!("{other:?} is neither \"sqlite\" nor \"dynamodb\"") })
            }
        }
    }
}

/// The provider accounts with credentials (`VAPI_API_KEY`, `ELEVENLABS_API_KEY`, `RETELL_API_KEY`,
/// `TWILIO_ACCOUNT_SID` + `TWILIO_AUTH_TOKEN`; each `*_BASE_URL` moves one elsewhere).
fn read_providers(var: &Lookup<'_>, secrets: &Secrets) -> ProviderAccounts {
    let account = |kind: ProviderKind| {
        let endpoint = ProviderAccounts::endpoint(kind)?;
        let api_key = secrets.provider_keys.get(endpoint.key_variable)?.clone();
        let base_url = var(endpoint.base_url_variable).unwrap_or_else(|| endpoint.default_base_url.into());
        Some(ProviderAccount { base_url, api_key })
    };
    ProviderAccounts {
        vapi: account(ProviderKind::Vapi),
        elevenlabs: account(ProviderKind::Elevenlabs),
        retell: account(ProviderKind::Retell),
        twilio: match (var("TWILIO_ACCOUNT_SID"), &secrets.twilio_auth_token) {
            (Some(account_sid), Some(auth_token)) => Some(TwilioAccount {
                base_url: var("TWILIO_BASE_URL").unwrap_or_else(|| TwilioAccount::BASE_URL.into()),
                account_sid,
                auth_token: auth_token.clone(),
            }),
            _ => None,
        },
        simulator: var("OUTDIAL_SIMULATOR").is_some_and(|v| matches!(v.trim(), "on" | "true" | "1")),
    }
}

impl SchedulerConfig {
    fn read(var: &Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            group: var("SCHEDULE_GROUP").unwrap_or_else(|| "default".into()),
            target_arn: var("CAMPAIGN_TICK_ARN"),
            role_arn: var("SCHEDULER_ROLE_ARN"),
            endpoint: var("SCHEDULER_ENDPOINT"),
            local_tick: seconds(var, "OUTDIAL_TICK_SECONDS", std::time::Duration::from_secs(60))?,
        })
    }
}

impl DialingConfig {
    fn read(var: &Lookup<'_>, secrets: &Secrets) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let cps = defaults.calls_per_second;
        let calls = providers::CallOptions {
            public_url: var("OUTDIAL_PUBLIC_URL"),
            bridge_url: var("OUTDIAL_BRIDGE_URL"),
            elevenlabs_webhook_secret: secrets.elevenlabs_webhook.clone(),
            simulator_odds: defaults.calls.simulator_odds,
            simulator_seed: var("OUTDIAL_SIMULATOR_SEED").map_or(Ok(defaults.calls.simulator_seed), |v| {
                v.parse()
                    .map_err(|_| ConfigError::Invalid { var: "OUTDIAL_SIMULATOR_SEED", reason: format!("{v:?} is not a whole number") })
            })?,
            simulator_speed: rate(var, "OUTDIAL_SIMULATOR_SPEED", defaults.calls.simulator_speed)?.max(f64::MIN_POSITIVE),
            provider_timeout: seconds(var, "OUTDIAL_PROVIDER_TIMEOUT_SECONDS", defaults.calls.provider_timeout)?,
        };
        let whole = |name, default: u32| number(var, name, u64::from(default)).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let dialing = Self {
            calls,
            calls_per_second: CallsPerSecond {
                twilio: rate(var, "TWILIO_CALLS_PER_SECOND", cps.twilio)?,
                elevenlabs: rate(var, "ELEVENLABS_CALLS_PER_SECOND", cps.elevenlabs)?,
                vapi: rate(var, "VAPI_CALLS_PER_SECOND", cps.vapi)?,
                retell: rate(var, "RETELL_CALLS_PER_SECOND", cps.retell)?,
                simulator: rate(var, "SIMULATOR_CALLS_PER_SECOND", cps.simulator)?,
            },
            max_pace_wait: seconds(var, "OUTDIAL_PACE_MAX_WAIT_SECONDS", defaults.max_pace_wait)?,
            max_receives: whole("DIAL_JOBS_MAX_RECEIVES", defaults.max_receives)?,
            retry_backoff: seconds(var, "DIAL_RETRY_BACKOFF_SECONDS", defaults.retry_backoff)?,
            ring_seconds: whole("OUTDIAL_RING_SECONDS", defaults.ring_seconds)?,
            window_margin: seconds(var, "OUTDIAL_WINDOW_MARGIN_SECONDS", defaults.window_margin)?,
        };
        // a dialer holds a call's guard through its pacing wait, the create request and one lookup;
        // the sweep leaves the call alone only that long
        let held = dialing.max_pace_wait + dialing.calls.provider_timeout * 2 + std::time::Duration::from_secs(30);
        if held > domain::dialing::DIAL_GUARD_HOLD.to_std().unwrap_or_default() {
            return Err(ConfigError::Invalid {
                var: "OUTDIAL_PACE_MAX_WAIT_SECONDS",
                reason: format!(
                    "the pacing wait ({} s) plus two provider timeouts (OUTDIAL_PROVIDER_TIMEOUT_SECONDS, {} s each) and 30 s must fit in the {} s a dialer may hold a call",
                    dialing.max_pace_wait.as_secs(),
                    dialing.calls.provider_timeout.as_secs(),
                    domain::dialing::DIAL_GUARD_HOLD.num_seconds()
                ),
            });
        }
        Ok(dialing)
    }
}

impl WebhookSecrets {
    fn of(secrets: &Secrets) -> Self {
        Self {
            twilio_auth_token: secrets.twilio_auth_token.clone(),
            elevenlabs: secrets.elevenlabs_webhook.clone(),
            vapi_secret: secrets.vapi_webhook.clone(),
            vapi_hmac_secret: secrets.vapi_webhook_hmac.clone(),
            retell_api_key: ProviderAccounts::endpoint(ProviderKind::Retell)
                .and_then(|endpoint| secrets.provider_keys.get(endpoint.key_variable).cloned()),
        }
    }
}

impl BridgeConfig {
    fn read(var: &Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            verify_signature: match var("OUTDIAL_BRIDGE_VERIFY_SIGNATURE").as_deref().map(str::trim) {
                None | Some("true" | "1") => true,
                Some("false" | "0") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "OUTDIAL_BRIDGE_VERIFY_SIGNATURE",
                        reason: format!("{other:?} is neither true nor false"),
                    });
                }
            },
            drain_timeout: seconds(var, "OUTDIAL_BRIDGE_DRAIN_SECONDS", Self::default().drain_timeout)?,
            metrics_token: var("OUTDIAL_METRICS_TOKEN").filter(|t| !t.trim().is_empty()).map(Secret::from),
            connections: crate::server::ConnectionLimits {
                max_connections: match number(
                    var,
                    "OUTDIAL_MAX_CONNECTIONS",
                    crate::server::ConnectionLimits::default().max_connections as u64,
                )? {
                    0 => return Err(ConfigError::Invalid { var: "OUTDIAL_MAX_CONNECTIONS", reason: "must be at least 1".into() }),
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                },
                ..crate::server::ConnectionLimits::default()
            },
        })
    }
}

impl Default for ToolsConfig {
    /// No booking, the local outbox, one email per call in the default wording.
    fn default() -> Self {
        Self {
            calcom: None,
            email: EmailConfig::default(),
            emails_per_call: 1,
            email_template: domain::EmailTemplate::default(),
            public_url: None,
        }
    }
}

impl ToolsConfig {
    fn read(var: &Lookup<'_>, store: &StoreConfig) -> Result<Self, ConfigError> {
        let calcom = match (var("CALCOM_API_KEY").map(Secret::from), var("CALCOM_EVENT_TYPE_ID")) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::Missing("CALCOM_EVENT_TYPE_ID")),
            (Some(api_key), Some(id)) => Some(CalcomAccount {
                base_url: var("CALCOM_BASE_URL").unwrap_or_else(|| CalcomAccount::BASE_URL.into()),
                api_key,
                event_type_id: id.trim().parse().map_err(|_| ConfigError::Invalid {
                    var: "CALCOM_EVENT_TYPE_ID",
                    reason: format!("{id:?} is not an event type id (a whole number, in the event type's URL)"),
                })?,
            }),
        };
        let email = EmailConfig {
            // empty is unset: a template passes its empty parameter through
            from: var("OUTDIAL_EMAIL_FROM")
                .filter(|from| !from.trim().is_empty())
                .map(|from| domain::EmailAddress::parse(&from))
                .transpose()
                .map_err(|e| ConfigError::Invalid { var: "OUTDIAL_EMAIL_FROM", reason: e.reason })?,
            service: match (var("OUTDIAL_EMAIL").as_deref(), store) {
                (Some("ses"), _) | (None, StoreConfig::DynamoDb { .. }) => EmailService::Ses { endpoint: var("SES_ENDPOINT") },
                (Some("local"), _) | (None, StoreConfig::Sqlite { .. }) => EmailService::Local,
                (Some(other), _) => {
                    return Err(ConfigError::Invalid {
                        var: "OUTDIAL_EMAIL",
                        reason: format!("{other:?} is neither \"ses\" nor \"local\""),
                    });
                }
            },
        };
        let emails_per_call = match var("OUTDIAL_EMAILS_PER_CALL") {
            None => 1,
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                var: "OUTDIAL_EMAILS_PER_CALL",
                reason: format!("{v:?} is not a whole number of emails"),
            })?,
        };
        let default = domain::EmailTemplate::default();
        let email_template = domain::EmailTemplate {
            subject: var("OUTDIAL_EMAIL_SUBJECT").unwrap_or(default.subject),
            body: var("OUTDIAL_EMAIL_TEMPLATE").map(|t| t.replace("\\n", "\n")).unwrap_or(default.body),
        };
        let public_url = var("OUTDIAL_TOOLS_URL").or_else(|| var("OUTDIAL_PUBLIC_URL")).filter(|u| !u.trim().is_empty());
        Ok(Self { calcom, email, emails_per_call, email_template, public_url })
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

    fn lookup(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        move |k: &str| vars.get(k).map(|v| v.to_string())
    }

    #[test]
    fn crm_jobs_have_their_own_receive_limit() {
        assert_eq!(config(&[]).unwrap().crm_max_receives, 5);
        assert_eq!(config(&[]).unwrap().crm, providers::crm::CrmSetup::default());
        let local = config(&[("GHL_BASE_URL", "http://127.0.0.1:1"), ("OUTDIAL_CRM_ALLOW_PRIVATE", "true")]).unwrap().crm;
        assert_eq!((local.gohighlevel_base.as_str(), local.outbound.allow_private), ("http://127.0.0.1:1", true));
        assert_eq!(config(&[("CRM_JOBS_MAX_RECEIVES", "8"), ("DIAL_JOBS_MAX_RECEIVES", "3")]).unwrap().crm_max_receives, 8);
        assert!(matches!(config(&[("CRM_JOBS_MAX_RECEIVES", "0")]), Err(ConfigError::Invalid { var: "CRM_JOBS_MAX_RECEIVES", .. })));
    }

    /// Its callbacks are signed like Twilio's, so it never runs unless asked for, in Lambda or anywhere.
    #[test]
    fn the_simulator_runs_only_when_outdial_simulator_is_on() {
        let public = ("OUTDIAL_PUBLIC_URL", "https://hooks.example.com");
        let off = config(&[public]).unwrap();
        assert!(!off.providers.simulator);
        assert!(providers::CallProviders::new(&off.providers, &off.dialing.calls).simulator.is_none());
        assert_eq!(off.providers.missing_for_calls(domain::CallProvider::Simulator), ["OUTDIAL_SIMULATOR=on"]);
        let on = config(&[public, ("OUTDIAL_SIMULATOR", "on")]).unwrap();
        assert!(providers::CallProviders::new(&on.providers, &on.dialing.calls).simulator.is_some());
        assert!(on.providers.missing_for_calls(domain::CallProvider::Simulator).is_empty());
    }

    #[test]
    fn each_section_reads_alone_through_a_lookup() {
        let var = lookup(&[("TWILIO_CALLS_PER_SECOND", "2"), ("OUTDIAL_RING_SECONDS", "20"), ("ELEVENLABS_WEBHOOK_SECRET", "wsec")]);
        let secrets = Secrets::read(&var);
        let dialing = DialingConfig::read(&var, &secrets).unwrap();
        assert_eq!((dialing.calls_per_second.twilio, dialing.ring_seconds), (2.0, 20));
        assert_eq!(dialing.calls.elevenlabs_webhook_secret, Some(Secret::from("wsec")));
        let bad = lookup(&[("OUTDIAL_BRIDGE_VERIFY_SIGNATURE", "maybe")]);
        assert!(matches!(BridgeConfig::read(&bad), Err(ConfigError::Invalid { var: "OUTDIAL_BRIDGE_VERIFY_SIGNATURE", .. })));
        let store = StoreConfig::read(&lookup(&[("OUTDIAL_STORE", "dynamodb")]));
        assert_eq!(store, Err(ConfigError::Missing("OUTDIAL_TABLE")));
    }

    #[test]
    fn each_credential_is_read_once_and_shared_by_the_sections_that_use_it() {
        let reads = std::cell::RefCell::new(Vec::new());
        let var = |name: &str| {
            reads.borrow_mut().push(name.to_string());
            ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "RETELL_API_KEY", "ELEVENLABS_WEBHOOK_SECRET"]
                .contains(&name)
                .then(|| "x".to_string())
        };
        let c = Config::from_lookup(var).unwrap();
        for secret in ["TWILIO_AUTH_TOKEN", "RETELL_API_KEY", "ELEVENLABS_WEBHOOK_SECRET", "VAPI_API_KEY", "CALCOM_API_KEY"] {
            assert_eq!(reads.borrow().iter().filter(|r| *r == secret).count(), 1, "{secret} read once");
        }
        assert_eq!(c.webhooks.twilio_auth_token, c.providers.twilio.map(|t| t.auth_token));
        assert_eq!(c.webhooks.retell_api_key, c.providers.retell.map(|r| r.api_key));
        assert_eq!(c.webhooks.elevenlabs, c.dialing.calls.elevenlabs_webhook_secret);
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
    fn dialing_settings_have_defaults_and_named_errors() {
        let d = config(&[]).unwrap().dialing;
        assert_eq!((d.calls_per_second.twilio, d.max_receives, d.calls.public_url), (1.0, 5, None));
        assert_eq!(d.calls_per_second.pace(domain::CallProvider::Twilio), domain::Pace::per_second(1.0));
        assert_eq!(d.calls_per_second.pace(domain::CallProvider::Simulator), domain::Pace::unlimited());
        let c = config(&[("TWILIO_CALLS_PER_SECOND", "5"), ("DIAL_JOBS_QUEUE_URL", "https://sqs/q"), ("OUTDIAL_PUBLIC_URL", "https://x")])
            .unwrap();
        assert_eq!((c.dialing.calls_per_second.twilio, c.dialing.calls.public_url.as_deref()), (5.0, Some("https://x")));
        assert_eq!(c.queue_urls.get("dial-jobs").map(String::as_str), Some("https://sqs/q"));
        let err = config(&[("TWILIO_CALLS_PER_SECOND", "fast")]).unwrap_err();
        assert!(err.to_string().contains("TWILIO_CALLS_PER_SECOND"), "{err}");
        assert!(config(&[("DIAL_JOBS_MAX_RECEIVES", "0")]).unwrap_err().to_string().contains("DIAL_JOBS_MAX_RECEIVES"));
        assert_eq!((d.window_margin.as_secs(), d.calls.provider_timeout.as_secs()), (120, 15));
        let c = config(&[("OUTDIAL_WINDOW_MARGIN_SECONDS", "300"), ("OUTDIAL_PROVIDER_TIMEOUT_SECONDS", "20")]).unwrap();
        assert_eq!((c.dialing.window_margin.as_secs(), c.dialing.calls.provider_timeout.as_secs()), (300, 20));
        let err = config(&[("OUTDIAL_PACE_MAX_WAIT_SECONDS", "250")]).unwrap_err().to_string();
        assert!(err.contains("OUTDIAL_PACE_MAX_WAIT_SECONDS") && err.contains("OUTDIAL_PROVIDER_TIMEOUT_SECONDS"), "{err}");
    }

    #[test]
    fn the_bridge_checks_signatures_unless_told_not_to() {
        assert_eq!(config(&[]).unwrap().bridge, BridgeConfig::default());
        assert!(config(&[]).unwrap().bridge.verify_signature);
        let c = config(&[("OUTDIAL_BRIDGE_VERIFY_SIGNATURE", "false"), ("OUTDIAL_BRIDGE_DRAIN_SECONDS", "5")]).unwrap();
        assert_eq!((c.bridge.verify_signature, c.bridge.drain_timeout.as_secs()), (false, 5));
        assert!(config(&[("OUTDIAL_BRIDGE_VERIFY_SIGNATURE", "no")]).unwrap_err().to_string().contains("OUTDIAL_BRIDGE_VERIFY_SIGNATURE"));
        assert!(config(&[("OUTDIAL_BRIDGE_DRAIN_SECONDS", "soon")]).unwrap_err().to_string().contains("OUTDIAL_BRIDGE_DRAIN_SECONDS"));
    }

    #[test]
    fn the_booking_and_email_tools_read_their_accounts_with_named_errors() {
        let tools = config(&[]).unwrap().tools;
        assert_eq!((tools.calcom, tools.email.service, tools.email.from), (None, EmailService::Local, None));
        let c =
            config(&[("CALCOM_API_KEY", "cal_live_k"), ("CALCOM_EVENT_TYPE_ID", "1837761"), ("OUTDIAL_EMAIL_FROM", "calls@acme.example")])
                .unwrap();
        let calcom = c.tools.calcom.unwrap();
        assert_eq!((calcom.base_url.as_str(), calcom.event_type_id), ("https://api.cal.com", 1837761));
        assert_eq!(c.tools.email.from.unwrap().as_str(), "calls@acme.example");
        assert_eq!(config(&[("OUTDIAL_EMAIL_FROM", "")]).unwrap().tools.email.from, None, "empty is unset");
        assert_eq!(config(&[]).unwrap().report_time_zone, chrono_tz::UTC);
        assert_eq!(config(&[]).unwrap().elevenlabs_credit_price, None);
        let priced = config(&[("OUTDIAL_ELEVENLABS_CREDIT_PRICE", "0.30")]).unwrap().elevenlabs_credit_price;
        assert_eq!(priced, Some(domain::Money::parse("0.30").unwrap()));
        assert!(config(&[("OUTDIAL_ELEVENLABS_CREDIT_PRICE", "cheap")]).is_err());
        assert_eq!(config(&[("OUTDIAL_REPORT_TIME_ZONE", "Europe/Paris")]).unwrap().report_time_zone, chrono_tz::Europe::Paris);
        let refused = config(&[("OUTDIAL_REPORT_TIME_ZONE", "Mars/Olympus")]).unwrap_err().to_string();
        assert!(refused.contains("OUTDIAL_REPORT_TIME_ZONE") && refused.contains("IANA"), "{refused}");
        assert_eq!(config(&[("CALCOM_API_KEY", "k")]).unwrap_err(), ConfigError::Missing("CALCOM_EVENT_TYPE_ID"));
        let err = config(&[("CALCOM_API_KEY", "k"), ("CALCOM_EVENT_TYPE_ID", "consultation")]).unwrap_err();
        assert!(err.to_string().contains("CALCOM_EVENT_TYPE_ID"), "{err}");
        assert!(config(&[("OUTDIAL_EMAIL_FROM", "acme")]).unwrap_err().to_string().contains("OUTDIAL_EMAIL_FROM"));
        assert!(config(&[("OUTDIAL_EMAIL", "smtp")]).unwrap_err().to_string().contains("OUTDIAL_EMAIL"));
        let aws = config(&[("OUTDIAL_STORE", "dynamodb"), ("OUTDIAL_TABLE", "t"), ("SES_ENDPOINT", "http://127.0.0.1:5000")]).unwrap();
        assert_eq!(aws.tools.email.service, EmailService::Ses { endpoint: Some("http://127.0.0.1:5000".into()) }, "SES in AWS by default");
        assert_eq!(config(&[("OUTDIAL_EMAIL", "ses")]).unwrap().tools.email.service, EmailService::Ses { endpoint: None });
        assert!(
            !format!("{:?}", config(&[("CALCOM_API_KEY", "cal_live_k"), ("CALCOM_EVENT_TYPE_ID", "1")]).unwrap()).contains("cal_live_k")
        );
    }

    #[test]
    fn provider_accounts_exist_only_with_a_key() {
        assert_eq!(config(&[]).unwrap().providers, ProviderAccounts::default());
        let c = config(&[("VAPI_API_KEY", "vk"), ("RETELL_API_KEY", "rk"), ("RETELL_BASE_URL", "http://127.0.0.1:9")]).unwrap();
        assert_eq!(c.providers.vapi, Some(ProviderAccount { base_url: "https://api.vapi.ai".into(), api_key: "vk".into() }));
        assert_eq!(c.providers.retell.unwrap().base_url, "http://127.0.0.1:9");
        assert_eq!(c.providers.elevenlabs, None);
    }

    #[test]
    fn webhook_secrets_are_read_and_never_printed() {
        let c = config(&[
            ("TWILIO_AUTH_TOKEN", "tok-123"),
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("VAPI_WEBHOOK_SECRET", "vsec-456"),
            ("ELEVENLABS_WEBHOOK_SECRET", "wsec-789"),
            ("OUTDIAL_PUBLIC_URL", "https://x"),
        ])
        .unwrap();
        assert_eq!(
            (c.webhooks.twilio_auth_token.as_ref().map(Secret::expose), c.webhooks.vapi_secret.as_ref().map(Secret::expose)),
            (Some("tok-123"), Some("vsec-456"))
        );
        assert_eq!(c.tools.public_url.as_deref(), Some("https://x"), "one server: the tools are at the public URL");
        let split = config(&[("OUTDIAL_PUBLIC_URL", "https://x"), ("OUTDIAL_TOOLS_URL", "https://tools.x")]).unwrap();
        assert_eq!(split.tools.public_url.as_deref(), Some("https://tools.x"));
        let printed = format!("{c:?}");
        for secret in ["tok-123", "vsec-456", "wsec-789"] {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
    }
}
