//! The job-queue port: at-least-once delivery with a visibility timeout, a receive count, and a
//! dead-letter queue after too many receives. SQS in AWS; a durable SQLite queue locally.

use aws_sdk_sqs::{Client, error::DisplayErrorContext, types::QueueAttributeName};
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::{
    collections::HashMap,
    future::Future,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {0} is not configured")]
    UnknownQueue(String),
    #[error("queue backend failed: {0}")]
    Backend(String),
}

/// A message handed to a consumer; delete it by its receipt once handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedJob {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// 1 on first delivery.
    pub receive_count: u32,
}

/// The queue the tick sends dial jobs to and the dialer consumes.
pub const DIAL_JOBS: &str = "dial-jobs";
/// The queue finished calls' CRM deliveries go to.
pub const CRM_JOBS: &str = "crm-jobs";

pub trait JobQueue: Clone + Send + Sync + 'static {
    fn send(&self, queue: &str, body: String) -> impl Future<Output = Result<String, QueueError>> + Send;
    /// Up to `max` visible messages, hidden from others for `visibility`.
    fn receive(&self, queue: &str, max: u32, visibility: Duration) -> impl Future<Output = Result<Vec<ReceivedJob>, QueueError>> + Send;
    fn delete(&self, queue: &str, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Makes a received message visible again after `delay` (backoff before a retry).
    fn retry_after(&self, queue: &str, receipt: &str, delay: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Messages that were received too often, now in the queue's dead-letter queue.
    fn dead_letters(&self, queue: &str, max: u32) -> impl Future<Output = Result<Vec<ReceivedJob>, QueueError>> + Send;
}

/// The durable local queue: a table in a SQLite database.
#[derive(Clone)]
pub struct LocalQueue {
    conn: Arc<Mutex<Connection>>,
    max_receives: u32,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue").field("max_receives", &self.max_receives).finish_non_exhaustive()
    }
}

impl LocalQueue {
    pub const DEFAULT_MAX_RECEIVES: u32 = 5;

    pub fn open(path: impl AsRef<Path>, max_receives: u32) -> Result<Self, QueueError> {
        Self::init(Connection::open(path.as_ref()).map_err(backend)?, max_receives)
    }

    pub fn open_in_memory(max_receives: u32) -> Result<Self, QueueError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, max_receives)
    }

    fn init(conn: Connection, max_receives: u32) -> Result<Self, QueueError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS queue_jobs (
                 id TEXT PRIMARY KEY, queue TEXT NOT NULL, body TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0,
                 visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, sent_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS queue_jobs_visible ON queue_jobs(queue, dead, visible_at);",
        )
        .map_err(backend)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), max_receives })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || work(&mut *conn.lock().map_err(|_| QueueError::Backend("queue lock poisoned".into()))?))
            .await
            .map_err(|e| QueueError::Backend(e.to_string()))?
    }
}

fn backend(e: rusqlite::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl JobQueue for LocalQueue {
    async fn send(&self, queue: &str, body: String) -> Result<String, QueueError> {
        let (queue, id) = (queue.to_string(), uuid::Uuid::now_v7().to_string());
        let job_id = id.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO queue_jobs (id, queue, body, visible_at, sent_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![job_id, queue, body, now_ms()],
            )
            .map_err(backend)
        })
        .await?;
        Ok(id)
    }

    async fn receive(&self, queue: &str, max: u32, visibility: Duration) -> Result<Vec<ReceivedJob>, QueueError> {
        let (queue, max_receives) = (queue.to_string(), self.max_receives);
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let now = now_ms();
            let mut jobs = Vec::new();
            loop {
                let next: Option<(String, String, u32)> = tx
                    .query_row(
                        "SELECT id, body, receive_count FROM queue_jobs WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT 1",
                        params![queue, now],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some((id, body, count)) = next else { break };
                if count >= max_receives {
                    // received too often without being deleted: it goes to the dead letters, as with SQS redrive
                    tx.execute("UPDATE queue_jobs SET dead = 1, receipt = NULL WHERE id = ?1", params![id]).map_err(backend)?;
                    continue;
                }
                let receipt = uuid::Uuid::now_v7().to_string();
                let visible_at = now + visibility.as_millis() as i64;
                tx.execute(
                    "UPDATE queue_jobs SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3 WHERE id = ?1",
                    params![id, visible_at, receipt],
                )
                .map_err(backend)?;
                jobs.push(ReceivedJob { id, receipt, body, receive_count: count + 1 });
                if jobs.len() as u32 >= max {
                    break;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(jobs)
        })
        .await
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.run(move |conn| {
            conn.execute("DELETE FROM queue_jobs WHERE queue = ?1 AND receipt = ?2 AND dead = 0", params![queue, receipt])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn retry_after(&self, queue: &str, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let (queue, receipt) = (queue.to_string(), receipt.to_string());
        self.run(move |conn| {
            conn.execute(
                "UPDATE queue_jobs SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2 AND dead = 0",
                params![queue, receipt, now_ms() + delay.as_millis() as i64],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, queue: &str, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        let queue = queue.to_string();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare("SELECT id, body, receive_count FROM queue_jobs WHERE queue = ?1 AND dead = 1 ORDER BY sent_at, id LIMIT ?2")
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![queue, max], |r| {
                    Ok(ReceivedJob { id: r.get(0)?, receipt: String::new(), body: r.get(1)?, receive_count: r.get(2)? })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }
}

/// SQS: each logical queue name maps to a queue URL; its dead-letter queue is found through
/// the queue's redrive policy.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    urls: Arc<HashMap<String, String>>,
}

fn sqs<E: std::error::Error + 'static, R: std::fmt::Debug>(e: aws_sdk_sqs::error::SdkError<E, R>) -> QueueError {
    QueueError::Backend(DisplayErrorContext(e).to_string())
}

impl SqsQueue {
    pub async fn client(endpoint: Option<&str>) -> Client {
        Client::new(&crate::aws::sdk_config(endpoint).await)
    }

    /// Queues already deployed (`sam deploy` creates them): logical name → URL.
    pub fn new(client: Client, urls: HashMap<String, String>) -> Self {
        Self { client, urls: Arc::new(urls) }
    }

    /// Creates each queue with a `-dlq` dead-letter queue after `max_receives` (tests, local use).
    pub async fn create(client: Client, names: &[&str], prefix: &str, max_receives: u32) -> Result<Self, QueueError> {
        let mut urls = HashMap::new();
        for name in names {
            let dlq = client.create_queue().queue_name(format!("{prefix}{name}-dlq")).send().await.map_err(sqs)?;
            let dlq_url = dlq.queue_url.ok_or_else(|| QueueError::Backend("no dead-letter queue URL".into()))?;
            let arn = client
                .get_queue_attributes()
                .queue_url(&dlq_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(sqs)?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .ok_or_else(|| QueueError::Backend("no dead-letter queue ARN".into()))?;
            let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives.to_string() }).to_string();
            let queue = client
                .create_queue()
                .queue_name(format!("{prefix}{name}"))
                .attributes(QueueAttributeName::RedrivePolicy, policy)
                .send()
                .await
                .map_err(sqs)?;
            urls.insert(name.to_string(), queue.queue_url.ok_or_else(|| QueueError::Backend("no queue URL".into()))?);
        }
        Ok(Self::new(client, urls))
    }

    fn url(&self, queue: &str) -> Result<&str, QueueError> {
        self.urls.get(queue).map(String::as_str).ok_or_else(|| QueueError::UnknownQueue(queue.into()))
    }

    async fn dead_letter_url(&self, queue: &str) -> Result<String, QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(self.url(queue)?)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(sqs)?
            .attributes
            .unwrap_or_default();
        let policy: serde_json::Value = attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(|| QueueError::Backend(format!("queue {queue} has no redrive policy")))?;
        let arn = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
        let name = arn.rsplit(':').next().unwrap_or_default();
        let out = self.client.get_queue_url().queue_name(name).send().await.map_err(sqs)?;
        out.queue_url.ok_or_else(|| QueueError::Backend(format!("dead-letter queue {name} not found")))
    }

    async fn receive_from(&self, url: &str, max: u32, visibility: Duration) -> Result<Vec<ReceivedJob>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sqs)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| ReceivedJob {
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }
}

impl JobQueue for SqsQueue {
    async fn send(&self, queue: &str, body: String) -> Result<String, QueueError> {
        let out = self.client.send_message().queue_url(self.url(queue)?).message_body(body).send().await.map_err(sqs)?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(&self, queue: &str, max: u32, visibility: Duration) -> Result<Vec<ReceivedJob>, QueueError> {
        self.receive_from(self.url(queue)?, max, visibility).await
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.client.delete_message().queue_url(self.url(queue)?).receipt_handle(receipt).send().await.map_err(sqs)?;
        Ok(())
    }

    async fn retry_after(&self, queue: &str, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(queue)?)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs() as i32)
            .send()
            .await
            .map_err(sqs)?;
        Ok(())
    }

    async fn dead_letters(&self, queue: &str, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        let url = self.dead_letter_url(queue).await?;
        // peek: received with no visibility timeout, so the messages stay where they are
        self.receive_from(&url, max, Duration::ZERO).await
    }
}

/// Handles every record of an SQS batch at once and answers with the ones to see again (SQS
/// partial batch failures), each made visible again after the delay its handler asked for.
/// `handle(body, receive_count)` is Ok when the message is done with.
#[cfg(feature = "sqs")]
pub async fn answer_sqs_batch<Q, F, Fut>(
    event: aws_lambda_events::sqs::SqsEvent,
    queue: &Q,
    queue_name: &str,
    handle: F,
) -> aws_lambda_events::sqs::SqsBatchResponse
where
    Q: JobQueue,
    F: Fn(String, u32) -> Fut,
    Fut: Future<Output = Result<(), Duration>>,
{
    use tracing::Instrument;
    let handled = event.records.into_iter().map(|record| {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("sqs_record", message_id, call = tracing::field::Empty);
        let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        let outcome = handle(record.body.unwrap_or_default(), receive_count);
        async move {
            let delay = outcome.await.err()?;
            if let Some(receipt) = &record.receipt_handle
                && let Err(e) = queue.retry_after(queue_name, receipt, delay).await
            {
                tracing::warn!(error = %e, "could not delay the retry; the queue's visibility timeout applies");
            }
            Some(message_id)
        }
        .instrument(span)
    });
    let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
    for failed in futures::future::join_all(handled).await.into_iter().flatten() {
        response.add_failure(failed);
    }
    response
}
