//! The agent's tools, run during a call: current time in the contact's zone, end the call, add
//! the caller to the do-not-call list, book an appointment (Cal.com), send a follow-up email.
//! One implementation: the media bridge runs it for ElevenLabs client tools, and the tools' HTTP
//! endpoints are to call the same. A tool answers text for the agent to use, or an error that tells it what went
//! wrong; it never holds the conversation up for longer than `AgentTools::TIMEOUT`.

use chrono::{DateTime, Utc};
use domain::{AgentTool, Booking, CallEvent, CallEventKind, CallId, CallProvider, Contact, FollowUpEmail, OrgId, ParseError, mask_email};
use platform::{AnyMailer, EmailError, Mailer, ToolsConfig};
use providers::{CalCom, CallProviders, ProviderError, RetryPolicy};
use serde_json::Value;
use std::time::Duration;
use store::{CallStore, DoNotCallStore};

/// What the tools write: the do-not-call list, and notes in the call's log.
pub trait ToolStore: CallStore + DoNotCallStore {}
impl<T: CallStore + DoNotCallStore> ToolStore for T {}

/// The call a tool runs for.
#[derive(Clone, Copy, Debug)]
pub struct ToolCall<'a> {
    pub org: OrgId,
    pub call_id: CallId,
    pub contact: &'a Contact,
    /// Who carries the call, and its id there: what ending the call hangs up.
    pub provider: CallProvider,
    pub provider_call_id: &'a str,
}

/// Why a tool did not do what it was asked; the message is written for the agent.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Input(#[from] ParseError),
    #[error("the {tool} tool is not set up on this deployment: set {variable}")]
    NotConfigured { tool: &'static str, variable: &'static str },
    #[error("{0}")]
    Failed(String),
    #[error("the {tool} tool did not answer within {} seconds", AgentTools::TIMEOUT.as_secs())]
    TimedOut { tool: &'static str },
}

/// The booking and email services the tools use, as the deployment configured them; by default
/// no booking service and the local outbox.
#[derive(Clone, Debug, Default)]
pub struct AgentTools {
    calcom: Option<CalCom>,
    mailer: AnyMailer,
}

impl AgentTools {
    /// Longest a tool may take before the agent hears it failed.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    pub fn new(calcom: Option<CalCom>, mailer: AnyMailer) -> Self {
        Self { calcom, mailer }
    }

    pub fn from_config(config: &ToolsConfig) -> Self {
        // one quick retry: the agent is waiting on the line
        let retry = RetryPolicy { retries: 1, timeout: Duration::from_secs(4), ..RetryPolicy::default() };
        Self::new(config.calcom.as_ref().map(|account| CalCom::new(account, retry)), AnyMailer::from_config(&config.email))
    }

    /// Runs the tool `name` for `call` and returns the agent's answer.
    pub async fn run<S: ToolStore>(
        &self,
        store: &S,
        calls: &CallProviders,
        call: ToolCall<'_>,
        name: &str,
        parameters: &Value,
        now: DateTime<Utc>,
    ) -> Result<String, ToolError> {
        let answer = match AgentTool::parse(name) {
            Ok(tool) => tokio::time::timeout(Self::TIMEOUT, self.run_tool(store, calls, call, tool, parameters, now))
                .await
                .unwrap_or(Err(ToolError::TimedOut { tool: tool.as_str() })),
            Err(unknown) => Err(unknown.into()),
        };
        match &answer {
            Ok(_) => tracing::info!(tool = name, "agent tool ran"),
            Err(e) => tracing::warn!(tool = name, error = %e, "agent tool answered an error"),
        }
        answer
    }

    async fn run_tool<S: ToolStore>(
        &self,
        store: &S,
        calls: &CallProviders,
        call: ToolCall<'_>,
        tool: AgentTool,
        parameters: &Value,
        now: DateTime<Utc>,
    ) -> Result<String, ToolError> {
        let contact = call.contact;
        match tool {
            AgentTool::CurrentTime => serde_json::to_string(&domain::tools::local_time(now, contact.timezone))
                .map_err(|e| ToolError::Failed(format!("the time could not be written: {e}"))),
            AgentTool::EndCall => {
                calls
                    .hang_up(call.provider, call.provider_call_id)
                    .await
                    .map_err(|e| ToolError::Failed(format!("the call could not be ended: {e}")))?;
                Ok("The call is ending.".into())
            }
            AgentTool::DoNotCall => {
                store
                    .add_do_not_call(call.org, vec![contact.phone.clone()], now)
                    .await
                    .map_err(|e| ToolError::Failed(format!("the number could not be added to the do-not-call list: {e}")))?;
                note(store, call, "do-not-call", "the agent put the number on the do-not-call list".into(), now).await;
                Ok("The number is on the do-not-call list; it will not be called again.".into())
            }
            AgentTool::Book => {
                let calcom = self.calcom.as_ref().ok_or(ToolError::NotConfigured { tool: "booking", variable: "CALCOM_API_KEY" })?;
                let booking = Booking::from_parameters(parameters, contact, now)?;
                let booked = calcom.book(&booking).await.map_err(|e| match e {
                    ProviderError::Refused { message, .. } => ToolError::Failed(format!("Cal.com did not book it: {message}")),
                    other => ToolError::Failed(format!("the appointment could not be booked: {other}")),
                })?;
                let when = booking.spoken_start();
                let zone = booking.time_zone.name();
                let text = format!("appointment booked for {when} ({zone}), Cal.com booking {} ({})", booked.uid, booked.status);
                note(store, call, &format!("booking:{}", booked.uid), text, now).await;
                let pending = if booked.status == "pending" { " It waits for the host to confirm." } else { "" };
                Ok(format!("Booked for {when} ({zone}).{pending} A confirmation goes to {}.", booking.attendee_email.as_str()))
            }
            AgentTool::Email => {
                let email = FollowUpEmail::from_parameters(parameters, contact)?;
                let id = self.mailer.send(&email).await.map_err(|e| match e {
                    EmailError::NotConfigured(variable) => ToolError::NotConfigured { tool: "email", variable },
                    other => ToolError::Failed(format!("the email was not sent: {other}")),
                })?;
                let masked = mask_email(email.to.as_str());
                note(store, call, &format!("email:{id}"), format!("follow-up email sent to {masked}: {:?}", email.subject), now).await;
                Ok(format!("The email is on its way to {}.", email.to.as_str()))
            }
        }
    }
}

/// What a tool did, in the call's event log; the tool's answer does not wait on it succeeding.
async fn note<S: ToolStore>(store: &S, call: ToolCall<'_>, key: &str, text: String, now: DateTime<Utc>) {
    let event = CallEvent { dedupe_key: format!("tool:{}:{key}", call.call_id), occurred_at: now, kind: CallEventKind::Note { text } };
    if let Err(e) = store.apply_call_event(call.org, call.call_id, event, now).await {
        tracing::error!(error = %e, "what the agent's tool did was not recorded in the call's log");
    }
}
