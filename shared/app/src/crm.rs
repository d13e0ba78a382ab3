//! Delivering a finished call to each CRM connection its campaign names, exactly once per
//! (call, connection): what was delivered is recorded and skipped on a redelivered job; a
//! transient failure sends the job back (after the receiver's `Retry-After` when it gave one),
//! a refusal or the queue's last receive marks the delivery failed, on the call for all to see.

use chrono::{DateTime, Utc};
use domain::{
    CrmJob,
    crm::{ConnectionTarget, CrmConnection, CrmDelivery, DeliveryStatus},
};
use platform::SecretBox;
use providers::crm_webhook::{OutboundPolicy, WebhookError};
use serde_json::json;
use std::time::Duration;
use store::{CallStore, CampaignStore, CrmStore, StoreError};

/// What delivering reads and records: the call, its campaign and contact, the connections and
/// the deliveries.
pub trait CrmSyncStore: CallStore + CampaignStore + CrmStore {}
impl<T: CallStore + CampaignStore + CrmStore> CrmSyncStore for T {}

/// How deliveries are made.
#[derive(Clone, Debug)]
pub struct CrmSync<S> {
    pub store: S,
    /// Opens the connections' sealed secrets.
    pub secrets: Option<SecretBox>,
    pub outbound: OutboundPolicy,
    pub timeout: Duration,
    /// Receives before the queue gives the job to its dead-letter queue.
    pub max_receives: u32,
}

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// Nothing a retry can change: the secret cannot be opened, or the kind is not delivered yet.
    #[error("{0}")]
    Undeliverable(String),
}

impl DeliveryError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Webhook(e) if e.is_transient())
    }
}

/// What became of a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// Every connection is delivered or has failed for good.
    Done,
    /// Some delivery may still succeed: send the job again after `delay`.
    Retry { delay: Duration, reason: String },
}

impl<S> CrmSync<S> {
    /// Backoff before the job's next receive: 30 s, doubling, at most 15 minutes.
    pub fn backoff(receive_count: u32) -> Duration {
        Duration::from_secs(30u64.saturating_mul(1 << receive_count.saturating_sub(1).min(5)).min(900))
    }
}

impl<S: CrmSyncStore> CrmSync<S> {
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        Self {
            store,
            secrets: config.secrets.clone(),
            outbound: OutboundPolicy { allow_private: config.crm_allow_private },
            timeout: Duration::from_secs(10),
            max_receives: config.crm_max_receives,
        }
    }

    /// Delivers `job`'s call to every connection of its campaign not yet delivered.
    #[tracing::instrument(name = "crm_job", skip_all, fields(call = %job.call_id, receive_count))]
    pub async fn sync(&self, job: &CrmJob, receive_count: u32, now: DateTime<Utc>) -> Result<Synced, StoreError> {
        let org = job.org_id;
        let call = self.store.get_call(org, job.call_id).await?;
        let campaign = self.store.get_campaign(org, job.campaign_id).await?;
        let contact = self.store.get_contact(org, campaign.id, call.contact_id).await?;
        let done = self.store.crm_deliveries(org, call.id).await?;
        let last_receive = receive_count >= self.max_receives;
        let mut retry: Option<(Duration, String)> = None;
        for &connection_id in campaign.settings.crm.iter().flat_map(|crm| &crm.connection_ids) {
            let previous = done.iter().find(|d| d.connection_id == connection_id);
            if previous.is_some_and(|d| d.status != DeliveryStatus::Pending) {
                continue;
            }
            let attempts = previous.map_or(0, |d| d.attempts) + 1;
            let (connection, sealed) = match self.store.crm_connection(org, connection_id).await {
                Ok(found) => found,
                Err(StoreError::NotFound { .. }) => {
                    tracing::warn!(connection = %connection_id, "the campaign's CRM connection was deleted: nothing to deliver to");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let body = json!({
                "type": "call.finished",
                "campaign": { "id": campaign.id, "name": campaign.name },
                "call": call,
                "contact": { "id": contact.id, "phone": contact.phone, "name": contact.name, "timezone": contact.timezone,
                    "variables": contact.variables, "disposition": contact.disposition },
            });
            let outcome = self.deliver(&connection, &sealed, call.id, &body, now).await;
            let mut delivery = CrmDelivery {
                call_id: call.id,
                connection_id,
                kind: connection.target.kind(),
                status: DeliveryStatus::Delivered,
                attempts,
                last_error: None,
                delivered_at: Some(now),
            };
            match outcome {
                Ok(()) => tracing::info!(connection = %connection_id, "call delivered to the CRM"),
                Err(e) => {
                    let transient = e.is_transient() && !last_receive;
                    tracing::warn!(connection = %connection_id, error = %e, transient, "CRM delivery failed");
                    delivery.status = if transient { DeliveryStatus::Pending } else { DeliveryStatus::Failed };
                    delivery.delivered_at = None;
                    delivery.last_error = Some(e.to_string());
                    if transient {
                        let delay = match e {
                            DeliveryError::Webhook(WebhookError::RateLimited { retry_after: Some(after) }) => after,
                            _ => Self::backoff(receive_count),
                        };
                        retry = Some((retry.map_or(delay, |(d, _)| d.max(delay)), e.to_string()));
                    }
                }
            }
            self.store.record_crm_delivery(org, delivery).await?;
        }
        Ok(match retry {
            Some((delay, reason)) => Synced::Retry { delay, reason },
            None => Synced::Done,
        })
    }

    async fn deliver(
        &self,
        connection: &CrmConnection,
        sealed: &str,
        call: domain::CallId,
        body: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let key = format!("{call}:{}", connection.id);
        match &connection.target {
            ConnectionTarget::Webhook { url } => {
                let secrets = self.secrets.as_ref().ok_or_else(|| {
                    DeliveryError::Undeliverable("OUTDIAL_SECRET_KEY is not set: the signing secret cannot be opened".into())
                })?;
                let secret = secrets.open(sealed, &connection.id.to_string()).map_err(|e| DeliveryError::Undeliverable(e.to_string()))?;
                let bytes = serde_json::to_vec(body)
                    .map_err(|e| DeliveryError::Undeliverable(format!("the call could not be written as JSON: {e}")))?;
                self.outbound.deliver(url, &secret, &key, &bytes, now, self.timeout).await?;
                Ok(())
            }
            other => Err(DeliveryError::Undeliverable(format!(
                "delivery to {} is not available in this version of outdial yet",
                other.kind().as_str()
            ))),
        }
    }
}
