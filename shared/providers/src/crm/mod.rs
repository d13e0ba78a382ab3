//! CRM targets behind the `CrmSink` port: GoHighLevel, HubSpot and the signed webhook. A sink
//! performs one step of a delivery at a time and says what it made, so the caller records each
//! step before the next and a retried delivery resumes where the last one stopped.

pub mod gohighlevel;
pub mod hubspot;
pub mod webhook;

use crate::{ProviderError, RetryPolicy, Secret};
use chrono::{DateTime, Utc};
use domain::crm::{ConnectionTarget, CrmConnection, CrmStep, DeliverySteps, FinishedCallRecord, StepDone};
use std::{future::Future, time::Duration};

pub use gohighlevel::GoHighLevel;
pub use hubspot::HubSpot;
pub use webhook::{OutboundPolicy, SignedWebhook, WebhookError};

/// Where the CRM APIs are (`GHL_BASE_URL`, `HUBSPOT_BASE_URL`), where webhooks may go
/// (`OUTDIAL_CRM_ALLOW_PRIVATE`), and how long one request may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrmSetup {
    pub gohighlevel_base: String,
    pub hubspot_base: String,
    pub outbound: OutboundPolicy,
    pub timeout: Duration,
}

impl Default for CrmSetup {
    fn default() -> Self {
        Self {
            gohighlevel_base: GoHighLevel::BASE_URL.into(),
            hubspot_base: HubSpot::BASE_URL.into(),
            outbound: OutboundPolicy::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl CrmSetup {
    /// A short in-job retry for blips; longer waits (a `Retry-After` over 10 s, a CRM that stays
    /// down) go back to the queue, which backs off between receives.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy { retries: 2, backoff: Duration::from_millis(250), max_wait: Duration::from_secs(10), timeout: self.timeout }
    }
}

/// Why a step did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmError {
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// A CRM's API answered otherwise than with success while doing `step`.
    #[error("{step}: {}", describe(.error))]
    Api { step: &'static str, error: ProviderError },
    /// The CRM answered success without what the step needs from it (the contact's id).
    #[error("{step}: {target} answered without {missing}")]
    Incomplete { step: &'static str, target: &'static str, missing: &'static str },
    /// A step the connection's kind does not take: a fault in outdial, not in the CRM.
    #[error("{target} has no {step:?} step")]
    NoSuchStep { target: &'static str, step: CrmStep },
}

fn describe(error: &ProviderError) -> String {
    match error {
        ProviderError::NotFound { provider, id } => format!("{provider} answered 404 for {id}"),
        other => other.to_string(),
    }
}

impl CrmError {
    /// Worth another receive of the job: rate limits, 5xx, timeouts, connection failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Webhook(e) => e.is_transient(),
            Self::Api { error, .. } => error.is_transient(),
            Self::Incomplete { .. } | Self::NoSuchStep { .. } => false,
        }
    }

    /// How long the target asked to be left alone (`Retry-After` on a 429), when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Webhook(WebhookError::RateLimited { retry_after }) => *retry_after,
            Self::Api { error: ProviderError::RateLimited { retry_after, .. }, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One delivery as a step sees it.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub record: &'a FinishedCallRecord,
    /// The steps already done, with the ids they made (the CRM's contact id above all).
    pub done: &'a DeliverySteps,
    /// `<call id>:<connection id>`: the same on every retry.
    pub idempotency_key: &'a str,
    pub now: DateTime<Utc>,
}

/// A CRM a finished call is delivered to, one step at a time.
pub trait CrmSink: Send + Sync {
    fn perform(&self, step: CrmStep, delivery: Delivery<'_>) -> impl Future<Output = Result<StepDone, CrmError>> + Send;
    /// A request that changes nothing at the target and shows it takes the connection (its
    /// token, its location, its URL and signature): what the target answered.
    fn test(&self, now: DateTime<Utc>) -> impl Future<Output = Result<String, CrmError>> + Send;
}

/// The sink for a connection's kind.
#[derive(Clone, Debug)]
pub enum AnyCrmSink {
    Gohighlevel(GoHighLevel),
    Hubspot(HubSpot),
    Webhook(SignedWebhook),
}

impl AnyCrmSink {
    /// `secret` is the connection's opened secret: the API token, or the webhook's signing secret.
    pub fn for_connection(connection: &CrmConnection, secret: Secret, setup: &CrmSetup) -> Self {
        match &connection.target {
            ConnectionTarget::Gohighlevel { location_id, pipeline_id, stage_id } => {
                let pipeline = pipeline_id.clone().zip(stage_id.clone());
                Self::Gohighlevel(GoHighLevel::new(&setup.gohighlevel_base, secret, location_id, pipeline, setup.retry()))
            }
            ConnectionTarget::Hubspot {} => Self::Hubspot(HubSpot::new(&setup.hubspot_base, secret, setup.retry())),
            ConnectionTarget::Webhook { url } => Self::Webhook(SignedWebhook {
                url: url.clone(),
                secret,
                connection_id: connection.id.to_string(),
                outbound: setup.outbound,
                timeout: setup.timeout,
            }),
        }
    }
}

impl CrmSink for AnyCrmSink {
    async fn perform(&self, step: CrmStep, delivery: Delivery<'_>) -> Result<StepDone, CrmError> {
        match self {
            Self::Gohighlevel(sink) => sink.perform(step, delivery).await,
            Self::Hubspot(sink) => sink.perform(step, delivery).await,
            Self::Webhook(sink) => sink.perform(step, delivery).await,
        }
    }

    async fn test(&self, now: DateTime<Utc>) -> Result<String, CrmError> {
        match self {
            Self::Gohighlevel(sink) => sink.test(now).await,
            Self::Hubspot(sink) => sink.test(now).await,
            Self::Webhook(sink) => sink.test(now).await,
        }
    }
}

/// The id a CRM gave what it made, as text (HubSpot and GoHighLevel ids are strings; a number is taken too).
fn id_in(answer: &serde_json::Value, pointer: &str) -> Option<String> {
    match answer.pointer(pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
