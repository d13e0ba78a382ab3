//! The `dialer` function: consumes `dial-jobs` and has `app::dial` place each queued call. A job
//! that is done with is deleted; one to see again goes back with its backoff (an SQS partial
//! batch failure in Lambda), until the queue's dead-letter queue takes it.

use app::dial::{DialError, DialStore, Dialed, Dialer};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use domain::DialJob;
use platform::{DIAL_JOBS, JobQueue, QueueError};
use std::time::Duration;
use tracing::Instrument;

/// The dialer and the queue its jobs come from.
#[derive(Clone)]
pub struct DialerState<S, Q> {
    pub dialer: Dialer<S>,
    pub queue: Q,
}

impl<S, Q> DialerState<S, Q> {
    pub fn from_config(config: &platform::Config, store: S, queue: Q) -> Self {
        Self { dialer: Dialer::from_config(config, store), queue }
    }
}

impl<S: DialStore, Q: JobQueue> DialerState<S, Q> {
    /// One received job: Ok when it is done with (delete it), Err(delay) to see it again.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<Dialed, Duration> {
        let job = match serde_json::from_str::<DialJob>(body) {
            Ok(job) => {
                tracing::Span::current().record("call", tracing::field::display(job.call_id));
                job
            }
            Err(e) => {
                // retried, then dead-lettered, where it can be inspected
                tracing::error!(error = %e, "a dial job that is not a DialJob");
                return Err(self.dialer.backoff(receive_count));
            }
        };
        match self.dialer.dial(&job, receive_count, Utc::now()).await {
            Ok(done) => Ok(done),
            Err(DialError::Retry(retry)) => Err(retry.delay),
            Err(DialError::Store(e)) => {
                tracing::error!(error = %e, "dial job failed on the store; retrying");
                Err(self.dialer.backoff(receive_count))
            }
        }
    }

    /// An SQS batch from Lambda: failures are reported per message (and delayed by their backoff).
    pub async fn handle_sqs_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        platform::answer_sqs_batch(event, &self.queue, DIAL_JOBS, |body, receive_count| async move {
            self.handle(&body, receive_count).await.map(drop)
        })
        .await
    }

    /// Receives and handles up to `max` jobs of the local queue at once; how many it received.
    pub async fn run_local_batch(&self, max: u32, visibility: Duration) -> Result<usize, QueueError> {
        let jobs = self.queue.receive(DIAL_JOBS, max, visibility).await?;
        let handled = jobs.iter().map(|job| {
            let span = tracing::info_span!("local_dial_job", receive_count = job.receive_count, call = tracing::field::Empty);
            async move {
                match self.handle(&job.body, job.receive_count).await {
                    Ok(_) => self.queue.delete(DIAL_JOBS, &job.receipt).await,
                    Err(delay) => self.queue.retry_after(DIAL_JOBS, &job.receipt, delay).await,
                }
            }
            .instrument(span)
        });
        for result in futures::future::join_all(handled).await {
            result?;
        }
        Ok(jobs.len())
    }

    /// The local stack's dial worker: runs until the process stops.
    pub async fn run_local_worker(self, idle: Duration) {
        loop {
            match self.run_local_batch(10, Duration::from_secs(300)).await {
                Ok(0) => tokio::time::sleep(idle).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the local dial queue failed");
                    tokio::time::sleep(idle).await;
                }
            }
        }
    }
}
