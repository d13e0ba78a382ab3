//! The agent's tools, run during a call: current time in the contact's zone, end the call, add
//! the caller to the do-not-call list, book an appointment (Cal.com), send a follow-up email.
//! An agent can be talked into anything, so the tools act only for the contact on the line: the
//! booking's attendee and the email's recipient are the contact's own address on file, a call
//! sends at most `OUTDIAL_EMAILS_PER_CALL` emails, and runs at most `ToolBudget::MAX_CALLS` tools,
//! `ToolBudget::MAX_CONCURRENT` at a time.
//! One implementation: the media bridge runs it for ElevenLabs client tools, and the tools' HTTP
//! endpoints are to call the same. A tool answers text for the agent to use, or an error that tells it what went
//! wrong; it never holds the conversation up for longer than `AgentTools::TIMEOUT`.

use chrono::{DateTime, Utc};
use domain::{AgentTool, Booking, CallEvent, CallEventKind, CallId, CallProvider, Contact, FollowUpEmail, OrgId, ParseError, mask_email};
use platform::{AnyMailer, EmailError, Mailer, ToolsConfig};
use providers::{CalCom, CallProviders, ProviderError, RetryPolicy};
use serde_json::Value;
use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};
use store::{CallStore, DoNotCallStore};
use tokio::sync::Semaphore;

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
    /// Not for this caller, or not any more on this call (another address, tool calls or emails
    /// used up): a sentence the agent can say as it is.
    #[error("{0}")]
    Refused(String),
}

/// What one call may still run: a count of tool calls and how many run at once. One per call,
/// held by whoever carries it (the bridge's session).
#[derive(Debug)]
pub struct ToolBudget {
    used: AtomicU32,
    running: Semaphore,
}

impl ToolBudget {
    pub const MAX_CALLS: u32 = 20;
    pub const MAX_CONCURRENT: usize = 2;
}

impl Default for ToolBudget {
    fn default() -> Self {
        Self { used: AtomicU32::new(0), running: Semaphore::new(Self::MAX_CONCURRENT) }
    }
}

/// The booking and email services the tools use, as the deployment configured them; by default
/// no booking service and the local outbox.
#[derive(Clone, Debug)]
pub struct AgentTools {
    calcom: Option<CalCom>,
    mailer: AnyMailer,
    emails_per_call: u32,
    template: domain::EmailTemplate,
}

impl Default for AgentTools {
    fn default() -> Self {
        Self::new(None, AnyMailer::default())
    }
}

impl AgentTools {
    /// Longest a tool may take before the agent hears it failed.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// With the default email limit and wording (`ToolsConfig::default()`).
    /// Where emails go: SES or the local outbox (the daily report sends through it too).
    pub fn mailer(&self) -> &AnyMailer {
        &self.mailer
    }

    pub fn new(calcom: Option<CalCom>, mailer: AnyMailer) -> Self {
        let defaults = ToolsConfig::default();
        Self { calcom, mailer, emails_per_call: defaults.emails_per_call, template: defaults.email_template }
    }

    pub fn from_config(config: &ToolsConfig) -> Self {
        // one quick retry: the agent is waiting on the line
        let retry = RetryPolicy { retries: 1, timeout: Duration::from_secs(4), ..RetryPolicy::default() };
        let calcom = config.calcom.as_ref().map(|account| CalCom::new(account, retry));
        Self {
            emails_per_call: config.emails_per_call,
            template: config.email_template.clone(),
            ..Self::new(calcom, AnyMailer::from_config(&config.email))
        }
    }

    /// Runs the tool `name` for `call`, within the call's `budget`, and returns the agent's answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn run<S: ToolStore>(
        &self,
        store: &S,
        calls: &CallProviders,
        call: ToolCall<'_>,
        budget: &ToolBudget,
        name: &str,
        parameters: &Value,
        now: DateTime<Utc>,
    ) -> Result<String, ToolError> {
        let answer = if budget.used.fetch_add(1, Ordering::SeqCst) >= ToolBudget::MAX_CALLS {
            Err(ToolError::Refused(format!("This call has used all {} of its tool calls; carry on without tools.", ToolBudget::MAX_CALLS)))
        } else {
            match AgentTool::parse(name) {
                Ok(tool) => tokio::time::timeout(Self::TIMEOUT, async {
                    let _turn = budget.running.acquire().await.map_err(|_| ToolError::Failed("the call has ended".into()))?;
                    self.run_tool(store, calls, call, tool, parameters, now).await
                })
                .await
                .unwrap_or(Err(ToolError::TimedOut { tool: tool.as_str() })),
                Err(unknown) => Err(unknown.into()),
            }
        };
        let outcome = match &answer {
            Ok(_) => {
                tracing::info!(tool = name, "agent tool ran");
                "answered".to_string()
            }
            Err(e) => {
                tracing::warn!(tool = name, error = %e, "agent tool answered an error");
                format!("answered an error: {e}")
            }
        };
        // every run is in the call's log, whatever the provider; its own key, so none is folded into another
        note(store, call, &format!("run:{}", uuid::Uuid::now_v7().simple()), format!("tool {name:?} {outcome}"), now).await;
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
            AgentTool::CurrentTime => {
                // what the agent heard ("tomorrow 3pm", "next Tuesday"), resolved in the contact's zone
                let phrase = ["when", "phrase", "time"].iter().find_map(|k| parameters.get(*k).and_then(Value::as_str));
                let answer = agent_time::answer(now, contact.timezone, phrase).map_err(|e| ParseError::new("when", e.0))?;
                serde_json::to_string(&answer).map_err(|e| ToolError::Failed(format!("the time could not be written: {e}")))
            }
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
                let booking = Booking::from_parameters(parameters, contact, now).map_err(sayable)?;
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
                let email = FollowUpEmail::from_parameters(parameters, contact, &self.template).map_err(sayable)?;
                self.take_email_slot(store, call, now).await?;
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

impl AgentTools {
    /// Takes one of the call's `emails_per_call` email slots, or refuses. A slot is a note in the
    /// call's log under its own dedupe key, so two concurrent emails (or two processes) cannot both take the last one.
    async fn take_email_slot<S: ToolStore>(&self, store: &S, call: ToolCall<'_>, now: DateTime<Utc>) -> Result<(), ToolError> {
        for slot in 1..=self.emails_per_call {
            let text = format!("email {slot} of {} this call may send", self.emails_per_call);
            let event = CallEvent {
                dedupe_key: format!("tool:{}:email-slot:{slot}", call.call_id),
                occurred_at: now,
                kind: CallEventKind::Note { text },
            };
            let applied = store
                .apply_call_event(call.org, call.call_id, event, now)
                .await
                .map_err(|e| ToolError::Failed(format!("the email was not sent: {e}")))?;
            if !applied.duplicate {
                return Ok(());
            }
        }
        Err(ToolError::Refused(match self.emails_per_call {
            0 => "I'm not able to send emails on this call.".into(),
            1 => "I've already sent you an email on this call, so I can't send another.".into(),
            n => format!("I've already sent you {n} emails on this call, so I can't send more."),
        }))
    }
}

/// A refusal about the contact's address is said to the caller as it is; other input errors name their field.
fn sayable(e: ParseError) -> ToolError {
    if e.field == "email" { ToolError::Refused(e.reason) } else { e.into() }
}

/// What a tool did, in the call's event log; the tool's answer does not wait on it succeeding.
async fn note<S: ToolStore>(store: &S, call: ToolCall<'_>, key: &str, text: String, now: DateTime<Utc>) {
    let event = CallEvent { dedupe_key: format!("tool:{}:{key}", call.call_id), occurred_at: now, kind: CallEventKind::Note { text } };
    if let Err(e) = store.apply_call_event(call.org, call.call_id, event, now).await {
        tracing::error!(error = %e, "what the agent's tool did was not recorded in the call's log");
    }
}

/// What the agents outdial creates are declared with: each assistant's tools (or the defaults for
/// what this deployment has set up), served at its public URL, with the secrets the providers
/// prove themselves with there.
#[derive(Clone, Debug, Default)]
pub struct ToolDeclarations {
    /// Where providers reach the tools routes (`ToolsConfig::public_url`).
    pub public_url: Option<String>,
    pub vapi_secret: Option<providers::Secret>,
    /// `OUTDIAL_SECRET_KEY`: what each organisation's ElevenLabs tool secret is made with.
    pub key: Option<platform::SecretBox>,
    /// Cal.com is set up (`book_appointment` is a default).
    pub booking: bool,
    /// A sender is set up and calls may send (`send_email` is a default).
    pub email: bool,
}

impl ToolDeclarations {
    pub fn from_config(config: &platform::Config) -> Self {
        Self {
            public_url: config.tools.public_url.clone(),
            vapi_secret: config.webhooks.vapi_secret.clone(),
            key: config.secrets.clone(),
            booking: config.tools.calcom.is_some(),
            email: config.tools.email.from.is_some() && config.tools.emails_per_call > 0,
        }
    }

    /// Where a `provider` agent's tools are served once declared: the public URL, but nowhere for
    /// ElevenLabs without the key its webhook tools authenticate with.
    pub fn declared_at(&self, provider: domain::ProviderKind) -> Option<String> {
        let unauthenticated = provider == domain::ProviderKind::Elevenlabs && self.key.is_none();
        self.public_url.clone().filter(|_| !unauthenticated)
    }

    /// The tools `org`'s agent with `config` is declared with.
    pub fn for_assistant(&self, org: OrgId, config: &domain::AssistantConfig) -> providers::AgentToolset {
        providers::AgentToolset {
            tools: config.declared_tools(self.booking, self.email),
            public_url: self.public_url.clone(),
            vapi_secret: self.vapi_secret.clone(),
            elevenlabs_secret: self.key.as_ref().map(|key| elevenlabs_tool_secret(key, org)),
        }
    }
}

/// The secret an organisation's ElevenLabs webhook tools send in `X-Outdial-Tool-Secret`: made
/// from the deployment's key, so nothing is stored and another organisation's cannot be guessed.
pub fn elevenlabs_tool_secret(key: &platform::SecretBox, org: OrgId) -> String {
    key.sign(&tool_secret_message(org))
}

/// Whether `given` is `org`'s ElevenLabs tool secret.
pub fn is_elevenlabs_tool_secret(key: &platform::SecretBox, org: OrgId, given: &str) -> bool {
    key.verify(&tool_secret_message(org), given)
}

fn tool_secret_message(org: OrgId) -> String {
    format!("elevenlabs-tool|v1|{org}")
}
