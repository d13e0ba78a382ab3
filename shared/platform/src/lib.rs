//! What every function shares: typed configuration, tracing with masked phone numbers,
//! `application/problem+json` errors, API-key authentication, and the job-queue port.

pub mod auth;
pub mod config;
pub mod extract;
pub mod list;
pub mod problem;
pub mod queue;
pub mod schedule;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{AuthState, Authenticated, BearerKey};
pub use config::{BridgeConfig, CallsPerSecond, Config, ConfigError, DialingConfig, SchedulerConfig, StoreConfig, WebhookSecrets};
pub use list::{List, PageQuery};
pub use problem::Problem;
pub use queue::{CRM_JOBS, DIAL_JOBS, JobQueue, LocalQueue, QueueError, ReceivedJob, SqsQueue};
pub use schedule::{CampaignScheduler, EventBridgeScheduler, LocalScheduler, Schedule, ScheduledAction, ScheduledRun, SchedulerError};
