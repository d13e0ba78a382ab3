//! The `crm-sync` function: consumes `crm-jobs` and has `app::crm` deliver each finished call to
//! its campaign's CRM connections. A job that is done with is deleted; one to see again goes back
//! with its delay (an SQS partial batch failure in Lambda) until the queue's dead-letter queue
//! takes it. The local stack runs the same handler on its durable queue.

use app::crm::{CrmSync, CrmSyncStore, Synced};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use domain::CrmJob;
use platform::{CRM_JOBS, JobQueue, QueueError};
use std::time::Duration;

/// The deliveries and the queue their jobs come from.
#[derive(Clone)]
pub struct CrmSyncState<S, Q> {
    pub sync: CrmSync<S>,
    pub queue: Q,
}

impl<S: CrmSyncStore, Q> CrmSyncState<S, Q> {
    pub fn from_config(config: &platform::Config, store: S, queue: Q) -> Self {
        Self { sync: CrmSync::from_config(config, store), queue }
    }
}

impl<S: CrmSyncStore + Clone, Q: JobQueue> CrmSyncState<S, Q> {
    /// One received job: Ok when it is done with (delete it), Err(delay) to see it again.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<(), Duration> {
        let job = match serde_json::from_str::<CrmJob>(body) {
            Ok(job) => job,
            Err(e) => {
                // retried, then dead-lettered, where it can be inspected
                tracing::error!(error = %e, "a CRM job that is not a CrmJob");
                return Err(CrmSync::<S>::backoff(receive_count));
            }
        };
        match self.sync.sync(&job, receive_count, Utc::now()).await {
            Ok(Synced::Done) => Ok(()),
            Ok(Synced::Retry { delay, reason }) => {
                tracing::info!(%reason, delay_secs = delay.as_secs(), "CRM delivery to be tried again");
                Err(delay)
            }
            Ok(Synced::GaveUp { reason }) => {
                // handed back once more, the queue moves it to its dead letters
                tracing::error!(%reason, "CRM delivery failed on the last receive: marked failed, job to the dead-letter queue");
                Err(Duration::ZERO)
            }
            Err(e) => {
                tracing::error!(error = %e, "CRM job failed on the store; retrying");
                Err(CrmSync::<S>::backoff(receive_count))
            }
        }
    }

    /// An SQS batch from Lambda: failures are reported per message (and delayed by their backoff).
    pub async fn handle_sqs_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        platform::answer_sqs_batch(
            event,
            &self.queue,
            CRM_JOBS,
            |body, receive_count| async move { self.handle(&body, receive_count).await },
        )
        .await
    }

    /// Receives up to `max` jobs of the local queue and handles them at once, as Lambda does a
    /// batch (each delivery is leased to one worker); how many it received.
    pub async fn run_local_batch(&self, max: u32) -> Result<usize, QueueError> {
        let jobs = self.queue.receive(CRM_JOBS, max, Duration::from_secs(180)).await?;
        let handled = futures::future::join_all(jobs.iter().map(|job| self.handle(&job.body, job.receive_count))).await;
        for (job, outcome) in jobs.iter().zip(handled) {
            match outcome {
                Ok(()) => self.queue.delete(CRM_JOBS, &job.receipt).await?,
                Err(delay) => self.queue.retry_after(CRM_JOBS, &job.receipt, delay).await?,
            }
        }
        Ok(jobs.len())
    }

    /// The local stack's CRM worker: runs until the process stops.
    pub async fn run_local_worker(self, idle: Duration) {
        loop {
            match self.run_local_batch(10).await {
                Ok(0) => tokio::time::sleep(idle).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the local CRM queue failed");
                    tokio::time::sleep(idle).await;
                }
            }
        }
    }
}
