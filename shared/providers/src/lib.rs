//! Providers of AI voice assistants and calls, behind the `AssistantProvider` and `CallProvider`
//! ports: Twilio (with the media bridge), Vapi, ElevenLabs Conversational AI, Retell, and the
//! in-process simulator the demo and tests use; and Cal.com, where the agent's booking tool books.

mod accounts;
mod agent_tools;
pub mod calcom;
mod caller_ids;
pub mod calls;
pub mod crm;
pub mod elevenlabs;
mod http;
pub mod retell;
mod secret;
pub mod signatures;
pub mod simulator;
pub mod twilio;
pub mod vapi;

use domain::{AssistantConfig, ProviderKind};
use std::future::Future;

pub use accounts::{AnyAssistantProvider, AssistantProviders, ProviderAccount, ProviderAccounts, ProviderEndpoint, TwilioAccount};
pub use agent_tools::{AgentToolset, TOOL_SECRET_HEADER};
pub use calcom::{BookedAppointment, CalCom, CalcomAccount};
pub use caller_ids::NumberOwnership;
pub use calls::{CallOptions, CallProvider, CallProviders, CallRequest};
pub use elevenlabs::ElevenLabs;
pub use http::DEFAULT_TIMEOUT;
pub use http::RetryPolicy;
pub use retell::Retell;
pub use secret::Secret;
pub use simulator::{SimulatedAssistants, SimulatedCalls, SimulatedOutcome, SimulatorOdds, SimulatorWebhooks};
pub use twilio::{Twilio, TwilioEndpoints, TwilioNumbers};
pub use vapi::Vapi;

/// Why a provider call failed, in terms a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("{provider} has no assistant {id}")]
    NotFound { provider: &'static str, id: String },
    /// The provider understood the request and said no (4xx): the reason is its own words.
    #[error("{provider} refused the request ({status}): {message}")]
    Refused { provider: &'static str, status: u16, message: String },
    /// `retry_after`: how long the provider asked to be left alone, when it said.
    #[error("{provider} kept rate-limiting the request (429); retry later")]
    RateLimited { provider: &'static str, retry_after: Option<std::time::Duration> },
    /// 5xx, timeouts and connection failures, after the retries. `sent` when the request reached
    /// the provider (a 5xx, or no answer to it): it may have acted on it all the same.
    #[error("{provider} is unavailable: {detail}")]
    Unavailable { provider: &'static str, detail: String, sent: bool },
    /// The provider answered with something that is not its documented format.
    #[error("{provider} answered in an unexpected format: {detail}")]
    Protocol { provider: &'static str, detail: String },
    #[error("{provider} is not configured on this deployment: set {variable}")]
    NotConfigured { provider: &'static str, variable: &'static str },
    /// The provider runs this part of the call itself (voicemail, hang-up of its own calls).
    #[error("{provider} does not take {operation} requests: it handles that itself")]
    Unsupported { provider: &'static str, operation: &'static str },
    /// The provider was asked and its answer settles nothing yet (a look-up while it still holds
    /// calls it has not listed).
    #[error("{provider} cannot tell yet: {detail}")]
    Undecided { provider: &'static str, detail: String },
}

impl ProviderError {
    /// Worth retrying later (as opposed to a refusal that will not change).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }

    /// The request was sent and its outcome is unknown: the provider may have acted on it.
    pub fn may_have_acted(&self) -> bool {
        matches!(self, Self::Unavailable { sent: true, .. })
    }
}

/// An assistant as a provider holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAssistant {
    pub id: String,
    pub name: String,
    pub config: AssistantConfig,
}

/// Where assistants live: created, read back and updated at the provider.
pub trait AssistantProvider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    /// Creates the assistant and returns the provider's id for it.
    /// `tools` are declared on the provider's agent as it understands them.
    fn create_assistant(
        &self,
        name: &str,
        config: &AssistantConfig,
        tools: &AgentToolset,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    fn get_assistant(&self, id: &str) -> impl Future<Output = Result<ProviderAssistant, ProviderError>> + Send;
    fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        tools: &AgentToolset,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}

/// Hex HMAC-SHA256 of the concatenated `parts` under `key`: how ElevenLabs, Retell and Vapi sign webhooks.
pub fn hmac_sha256_hex(key: &str, parts: &[&[u8]]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}
