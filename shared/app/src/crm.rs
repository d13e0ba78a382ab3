//! Delivering a finished call to each CRM connection its campaign names, exactly once per
//! (call, connection): each step (contact upserted → note → tags → opportunity; contact → call
//! log; the webhook POST) is recorded as it succeeds, so a redelivered or retried job resumes
//! after the last step done. A transient failure sends the job back (after the target's
//! `Retry-After` when it gave one); a refusal marks the delivery failed at once, and a failure
//! on the queue's last receive marks it failed and sends the job on to the dead-letter queue —
//! on the call for all to see, until someone asks for it to be retried.

use chrono::{DateTime, Utc};
use domain::{
    CallId, CampaignId, ConnectionId, CrmJob, OrgId,
    crm::{CrmConnection, CrmDelivery, DeliveryStatus, FinishedCallRecord},
};
use platform::{CRM_JOBS, JobQueue, QueueError, SecretBox};
use providers::crm::{AnyCrmSink, CrmError, CrmSetup, CrmSink, Delivery};
use std::time::Duration;
use store::{CallStore, CampaignStore, CrmStore, PageRequest, StoreError};

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
    /// Where the CRMs are and where webhooks may go.
    pub setup: CrmSetup,
    /// Receives before the queue gives the job to its dead-letter queue.
    pub max_receives: u32,
}

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Crm(#[from] CrmError),
    /// Nothing a retry can change: the secret cannot be opened.
    #[error("{0}")]
    Undeliverable(String),
    /// Recording a step failed: the job comes back and resumes from the last step recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeliveryError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Crm(c) if c.is_transient())
    }
}

/// What became of a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// Every connection is delivered or has failed for good.
    Done,
    /// Some delivery may still succeed: send the job again after `delay`.
    Retry { delay: Duration, reason: String },
    /// The queue's last receive, and a delivery still failing: it is marked failed on the call,
    /// and the job goes on to the dead-letter queue, where it can be inspected.
    GaveUp { reason: String },
}

/// What a connection's target answered a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionTest {
    pub ok: bool,
    /// The target's answer, or why nothing could be sent.
    pub answer: String,
}

/// Why failed deliveries could not be queued again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Failed deliveries queued again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requeued {
    pub calls: usize,
    pub deliveries: usize,
}

impl<S> CrmSync<S> {
    /// How long one worker holds a delivery: more than its steps can take (4 steps of 3 tries of
    /// at most 10 s, and waits of at most 10 s for a `Retry-After`).
    pub const LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

    /// Backoff before the job's next receive: 30 s, doubling, at most 15 minutes.
    pub fn backoff(receive_count: u32) -> Duration {
        Duration::from_secs(30u64.saturating_mul(1 << receive_count.saturating_sub(1).min(5)).min(900))
    }

    /// The connection's sink, its secret opened.
    fn sink(&self, connection: &CrmConnection, sealed: &str) -> Result<AnyCrmSink, DeliveryError> {
        let secrets = self.secrets.as_ref().ok_or_else(|| {
            DeliveryError::Undeliverable("OUTDIAL_SECRET_KEY is not set: the connection's secret cannot be opened".into())
        })?;
        let secret = secrets.open(sealed, &connection.id.to_string()).map_err(|e| DeliveryError::Undeliverable(e.to_string()))?;
        Ok(AnyCrmSink::for_connection(connection, secret.into(), &self.setup))
    }
}

impl<S: CrmSyncStore> CrmSync<S> {
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        Self { store, secrets: config.secrets.clone(), setup: config.crm.clone(), max_receives: config.crm_max_receives }
    }

    /// Delivers `job`'s call to every connection of its campaign not yet delivered (and, when
    /// the job was asked for by a person, to those that had failed).
    #[tracing::instrument(name = "crm_job", skip_all, fields(call = %job.call_id, receive_count))]
    pub async fn sync(&self, job: &CrmJob, receive_count: u32, now: DateTime<Utc>) -> Result<Synced, StoreError> {
        let org = job.org_id;
        let call = self.store.get_call(org, job.call_id).await?;
        let campaign = self.store.get_campaign(org, job.campaign_id).await?;
        let contact = self.store.get_contact(org, campaign.id, call.contact_id).await?;
        let record = FinishedCallRecord::new(&campaign, &call, &contact);
        let known = self.store.crm_deliveries(org, call.id).await?;
        let last_receive = receive_count >= self.max_receives;
        let mut retry: Option<(Duration, String)> = None;
        let mut gave_up: Option<String> = None;
        for &connection_id in campaign.settings.crm.iter().flat_map(|crm| &crm.connection_ids) {
            let due = |d: &CrmDelivery| match d.status {
                DeliveryStatus::Pending => true,
                DeliveryStatus::Failed => job.retry_failed,
                DeliveryStatus::Delivered => false,
            };
            if known.iter().any(|d| d.connection_id == connection_id && !due(d)) {
                continue;
            }
            let (connection, sealed) = match self.store.crm_connection(org, connection_id).await {
                Ok(found) => found,
                Err(StoreError::NotFound { .. }) => {
                    tracing::warn!(connection = %connection_id, "the campaign's CRM connection was deleted: nothing to deliver to");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let until = now + Self::LEASE;
            let kind = connection.target.kind();
            let Some(leased) = self.store.lease_crm_delivery(org, call.id, connection_id, kind, now, until).await? else {
                // another worker is delivering it: come back when its lease ends, to see it done or take over
                let reason = "another worker is delivering it".to_string();
                let lease = Self::LEASE.to_std().unwrap_or_default();
                retry = Some((retry.map_or(lease, |(d, _)| d.max(lease)), reason));
                continue;
            };
            if !due(&leased) {
                self.store.record_crm_delivery(org, CrmDelivery { leased_until: None, ..leased }).await?;
                continue;
            }
            let mut delivery = CrmDelivery { status: DeliveryStatus::Pending, attempts: leased.attempts + 1, delivered_at: None, ..leased };
            match self.deliver(org, &connection, &sealed, &record, &mut delivery, now).await {
                Ok(()) => {
                    tracing::info!(connection = %connection_id, "call delivered to the CRM");
                    delivery.status = DeliveryStatus::Delivered;
                    delivery.delivered_at = Some(now);
                    delivery.last_error = None;
                }
                Err(DeliveryError::Store(e)) => return Err(e),
                Err(e) => {
                    let transient = e.is_transient() && !last_receive;
                    tracing::warn!(connection = %connection_id, error = %e, transient, "CRM delivery failed");
                    delivery.status = if transient { DeliveryStatus::Pending } else { DeliveryStatus::Failed };
                    delivery.last_error = Some(e.to_string());
                    if e.is_transient() && last_receive {
                        gave_up = Some(e.to_string());
                    }
                    if transient {
                        let asked = match &e {
                            DeliveryError::Crm(c) => c.retry_after(),
                            _ => None,
                        };
                        let delay = asked.unwrap_or_else(|| Self::backoff(receive_count));
                        retry = Some((retry.map_or(delay, |(d, _)| d.max(delay)), e.to_string()));
                    }
                }
            }
            delivery.leased_until = None;
            self.store.record_crm_delivery(org, delivery).await?;
        }
        Ok(match (retry, gave_up) {
            (Some((delay, reason)), _) => Synced::Retry { delay, reason },
            (None, Some(reason)) => Synced::GaveUp { reason },
            (None, None) => Synced::Done,
        })
    }

    /// Runs the delivery's remaining steps, recording each but the last as it succeeds (the
    /// caller records the outcome).
    async fn deliver(
        &self,
        org: OrgId,
        connection: &CrmConnection,
        sealed: &str,
        record: &FinishedCallRecord,
        delivery: &mut CrmDelivery,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let sink = self.sink(connection, sealed)?;
        let key = format!("{}:{}", record.call.id, connection.id);
        while let Some(step) = connection.target.next_step(record, &delivery.steps) {
            let done = sink.perform(step, Delivery { record, done: &delivery.steps, idempotency_key: &key, now }).await?;
            delivery.steps.record(done);
            if connection.target.next_step(record, &delivery.steps).is_some() {
                self.store.record_crm_delivery(org, delivery.clone()).await?;
            }
        }
        Ok(())
    }

    /// Sends the connection's target a request that changes nothing there and reports its answer.
    pub async fn test_connection(&self, org: OrgId, id: ConnectionId, now: DateTime<Utc>) -> Result<ConnectionTest, StoreError> {
        let (connection, sealed) = self.store.crm_connection(org, id).await?;
        let answer = match self.sink(&connection, &sealed) {
            Ok(sink) => sink.test(now).await.map_err(DeliveryError::from),
            Err(e) => Err(e),
        };
        Ok(match answer {
            Ok(answer) => ConnectionTest { ok: true, answer },
            Err(e) => ConnectionTest { ok: false, answer: e.to_string() },
        })
    }

    /// Queues the call's failed deliveries again; which connections they were.
    pub async fn retry_call<Q: JobQueue>(&self, queue: &Q, org: OrgId, call: CallId) -> Result<Vec<ConnectionId>, RetryError> {
        let found = self.store.get_call(org, call).await?;
        let failed: Vec<ConnectionId> = self
            .store
            .crm_deliveries(org, call)
            .await?
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Failed)
            .map(|d| d.connection_id)
            .collect();
        if !failed.is_empty() {
            let job = CrmJob { org_id: org, campaign_id: found.campaign_id, call_id: call, retry_failed: true };
            queue.send(CRM_JOBS, serde_json::to_string(&job).expect("a CRM job serialises")).await?;
        }
        Ok(failed)
    }

    /// Queues every failed delivery of the campaign again: one job per call.
    pub async fn retry_campaign<Q: JobQueue>(&self, queue: &Q, org: OrgId, campaign: CampaignId) -> Result<Requeued, RetryError> {
        self.store.get_campaign(org, campaign).await?;
        let mut failed: Vec<CrmDelivery> = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let listed = self.store.failed_crm_deliveries(org, campaign, page).await?;
            failed.extend(listed.items);
            match listed.next_cursor {
                Some(cursor) => page = PageRequest { limit: PageRequest::MAX_LIMIT, cursor: Some(cursor) },
                None => break,
            }
        }
        let mut calls: Vec<CallId> = failed.iter().map(|d| d.call_id).collect();
        calls.dedup();
        for &call in &calls {
            let job = CrmJob { org_id: org, campaign_id: campaign, call_id: call, retry_failed: true };
            queue.send(CRM_JOBS, serde_json::to_string(&job).expect("a CRM job serialises")).await?;
        }
        Ok(Requeued { calls: calls.len(), deliveries: failed.len() })
    }
}
