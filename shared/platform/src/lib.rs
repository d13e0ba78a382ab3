//! What every function shares: typed configuration, tracing with masked phone numbers,
//! `application/problem+json` errors, API-key authentication, the job-queue, scheduler and email
//! ports.

pub mod auth;
mod aws;
pub mod config;
pub mod deployment_secret;
pub mod email;
pub mod extract;
pub mod list;
pub mod problem;
pub mod queue;
pub mod schedule;
pub mod sealed;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod uploads;

pub use auth::{AuthState, Authenticated, AuthenticatedKey, BearerKey};
pub use config::{
    BridgeConfig, CallsPerSecond, Config, ConfigError, DialingConfig, EmailConfig, EmailService, SchedulerConfig, StoreConfig, ToolsConfig,
    WebhookSecrets,
};
pub use deployment_secret::{DeploymentSecret, DeploymentSecretError, SECRET_VARIABLES};
pub use email::{AnyMailer, EmailError, KeptEmail, LocalOutbox, Mailer, SesMailer};
pub use list::{List, PageQuery};
pub use problem::{IdLinks, Problem, StandardProblems};
#[cfg(feature = "sqs")]
pub use queue::answer_sqs_batch;
pub use queue::{CRM_JOBS, DIAL_JOBS, JobQueue, LocalQueue, QueueError, ReceivedJob, SqsQueue};
pub use schedule::{CampaignScheduler, EventBridgeScheduler, LocalScheduler, Schedule, ScheduledAction, ScheduledRun, SchedulerError};
pub use sealed::{SealError, SecretBox};
pub use uploads::{LocalPutError, ObjectStream, UploadBucket, UploadError};
