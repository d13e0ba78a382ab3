//! The email port: the follow-up emails the agent's email tool sends. Amazon SES (v2 `SendEmail`)
//! in AWS; on a laptop, an outbox that keeps the latest emails and logs each one instead.

use aws_sdk_sesv2::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::send_email::SendEmailError,
    types::{Body, Content, Destination, EmailContent, Message},
};
use domain::{EmailAddress, FollowUpEmail, mask_email};
use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex},
};
use tokio::sync::OnceCell;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email is not configured on this deployment: set {0}")]
    NotConfigured(&'static str),
    /// The email service will not send this one (unverified sender, suppressed recipient, bad content).
    #[error("the email was refused: {0}")]
    Refused(String),
    #[error("the email service is unavailable: {0}")]
    Unavailable(String),
}

pub trait Mailer: Send + Sync {
    /// Sends the email and returns the service's id for it.
    fn send(&self, email: &FollowUpEmail) -> impl Future<Output = Result<String, EmailError>> + Send;
}

/// Amazon SES, sending from one verified address (`OUTDIAL_EMAIL_FROM`). The SDK client is made
/// on the first email, so building a mailer needs no runtime and costs nothing until used.
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: Arc<OnceCell<Client>>,
    /// Moves SES elsewhere (moto_server in tests).
    endpoint: Option<String>,
    from: Option<EmailAddress>,
}

impl SesMailer {
    pub fn new(from: Option<EmailAddress>, endpoint: Option<String>) -> Self {
        Self { client: Arc::default(), endpoint, from }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(|| async { Client::new(&crate::aws::sdk_config(self.endpoint.as_deref()).await) }).await
    }
}

impl Mailer for SesMailer {
    async fn send(&self, email: &FollowUpEmail) -> Result<String, EmailError> {
        let from = self.from.as_ref().ok_or(EmailError::NotConfigured("OUTDIAL_EMAIL_FROM"))?;
        let utf8 = |text: &str| Content::builder().data(text).charset("UTF-8").build().map_err(|e| EmailError::Refused(e.to_string()));
        let body = Body::builder().text(utf8(&email.body)?).set_html(email.html.as_deref().map(utf8).transpose()?).build();
        let message = Message::builder().subject(utf8(&email.subject)?).body(body).build();
        let sent = self
            .client()
            .await
            .send_email()
            .from_email_address(from.as_str())
            .destination(Destination::builder().to_addresses(email.to.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(ses_error)?;
        sent.message_id.ok_or_else(|| EmailError::Unavailable("SES answered without a message id".into()))
    }
}

fn ses_error(e: SdkError<SendEmailError, aws_sdk_sesv2::config::http::HttpResponse>) -> EmailError {
    match &e {
        SdkError::ServiceError(service) => match service.err() {
            SendEmailError::TooManyRequestsException(_) | SendEmailError::LimitExceededException(_) => {
                EmailError::Unavailable(DisplayErrorContext(&e).to_string())
            }
            refusal => EmailError::Refused(refusal.message().unwrap_or(refusal.code().unwrap_or("refused")).to_string()),
        },
        _ => EmailError::Unavailable(DisplayErrorContext(&e).to_string()),
    }
}

/// An email the local outbox kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptEmail {
    pub id: String,
    pub email: FollowUpEmail,
}

/// The local stand-in for SES: nothing leaves the machine; the latest emails are kept for a look
/// (and for tests), each logged with its recipient masked.
#[derive(Clone, Debug, Default)]
pub struct LocalOutbox {
    kept: Arc<Mutex<VecDeque<KeptEmail>>>,
}

impl LocalOutbox {
    /// Emails kept; older ones make way.
    pub const CAPACITY: usize = 100;

    /// The kept emails, oldest first.
    pub fn kept(&self) -> Vec<KeptEmail> {
        self.kept.lock().map(|kept| kept.iter().cloned().collect()).unwrap_or_default()
    }
}

impl Mailer for LocalOutbox {
    async fn send(&self, email: &FollowUpEmail) -> Result<String, EmailError> {
        let id = format!("local-{}", uuid::Uuid::now_v7());
        let mut kept = self.kept.lock().map_err(|_| EmailError::Unavailable("the local outbox was poisoned".into()))?;
        if kept.len() == Self::CAPACITY {
            kept.pop_front();
        }
        kept.push_back(KeptEmail { id: id.clone(), email: email.clone() });
        tracing::info!(id = %id, to = %mask_email(email.to.as_str()), "email kept in the local outbox (set OUTDIAL_EMAIL=ses to send it)");
        Ok(id)
    }
}

/// Whichever mailer the deployment configured; the local outbox by default.
#[derive(Clone, Debug)]
pub enum AnyMailer {
    Ses(SesMailer),
    Local(LocalOutbox),
}

impl Default for AnyMailer {
    fn default() -> Self {
        Self::Local(LocalOutbox::default())
    }
}

impl AnyMailer {
    pub fn from_config(config: &crate::config::EmailConfig) -> Self {
        match &config.service {
            crate::config::EmailService::Ses { endpoint } => Self::Ses(SesMailer::new(config.from.clone(), endpoint.clone())),
            crate::config::EmailService::Local => Self::Local(LocalOutbox::default()),
        }
    }
}

impl Mailer for AnyMailer {
    async fn send(&self, email: &FollowUpEmail) -> Result<String, EmailError> {
        match self {
            Self::Ses(ses) => ses.send(email).await,
            Self::Local(outbox) => outbox.send(email).await,
        }
    }
}
