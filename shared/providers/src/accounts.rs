//! The provider accounts a deployment has credentials for, and one value that dispatches the
//! `AssistantProvider` port to whichever provider an assistant lives at.

use crate::{AssistantProvider, ElevenLabs, ProviderAssistant, ProviderError, Retell, RetryPolicy, Secret, SimulatedAssistants, Vapi};
use domain::{AssistantConfig, CallProvider, ProviderKind};

/// Where a provider's API is and the key to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAccount {
    pub base_url: String,
    pub api_key: Secret,
}

/// A Twilio account: calls are placed with its SID and auth token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwilioAccount {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
}

impl TwilioAccount {
    pub const BASE_URL: &'static str = "https://api.twilio.com";
}

/// The accounts configured for this deployment; a provider without one cannot be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderAccounts {
    pub vapi: Option<ProviderAccount>,
    pub elevenlabs: Option<ProviderAccount>,
    pub retell: Option<ProviderAccount>,
    pub twilio: Option<TwilioAccount>,
    /// The in-process simulator places calls (`OUTDIAL_SIMULATOR=on`): never implicitly, since its
    /// callbacks are signed like Twilio's.
    pub simulator: bool,
}

/// How a deployment reaches one provider's API: the variable with its key, the variable that
/// moves it elsewhere (a fake in tests, a proxy), and where it is by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderEndpoint {
    pub key_variable: &'static str,
    pub base_url_variable: &'static str,
    pub default_base_url: &'static str,
}

impl ProviderAccounts {
    /// `None` for the simulator, which runs in-process.
    pub fn endpoint(kind: ProviderKind) -> Option<ProviderEndpoint> {
        let (key_variable, base_url_variable, default_base_url) = match kind {
            ProviderKind::Vapi => ("VAPI_API_KEY", "VAPI_BASE_URL", Vapi::BASE_URL),
            ProviderKind::Elevenlabs => ("ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL", ElevenLabs::BASE_URL),
            ProviderKind::Retell => ("RETELL_API_KEY", "RETELL_BASE_URL", Retell::BASE_URL),
            ProviderKind::Simulator => return None,
        };
        Some(ProviderEndpoint { key_variable, base_url_variable, default_base_url })
    }
}

impl ProviderAccounts {
    /// The variables still to set before `provider` can place calls; empty when it can.
    pub fn missing_for_calls(&self, provider: CallProvider) -> Vec<&'static str> {
        let mut missing = Vec::new();
        let mut need = |present: bool, variable: &'static str| {
            if !present {
                missing.push(variable);
            }
        };
        match provider {
            CallProvider::Twilio => {
                need(self.twilio.is_some(), "TWILIO_ACCOUNT_SID");
                need(self.twilio.is_some(), "TWILIO_AUTH_TOKEN");
                // the media bridge opens an ElevenLabs conversation for every answered call
                need(self.elevenlabs.is_some(), "ELEVENLABS_API_KEY");
            }
            CallProvider::Elevenlabs => need(self.elevenlabs.is_some(), "ELEVENLABS_API_KEY"),
            CallProvider::Vapi => need(self.vapi.is_some(), "VAPI_API_KEY"),
            CallProvider::Retell => need(self.retell.is_some(), "RETELL_API_KEY"),
            CallProvider::Simulator => need(self.simulator, "OUTDIAL_SIMULATOR=on"),
        }
        missing
    }
}

/// One provider, whichever it is.
#[derive(Clone, Debug)]
pub enum AnyAssistantProvider {
    Vapi(Vapi),
    ElevenLabs(ElevenLabs),
    Retell(Retell),
    Simulator(SimulatedAssistants),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            AnyAssistantProvider::Vapi($p) => $call,
            AnyAssistantProvider::ElevenLabs($p) => $call,
            AnyAssistantProvider::Retell($p) => $call,
            AnyAssistantProvider::Simulator($p) => $call,
        }
    };
}

impl AssistantProvider for AnyAssistantProvider {
    fn kind(&self) -> ProviderKind {
        dispatch!(self, p => p.kind())
    }

    async fn create_assistant(&self, name: &str, config: &AssistantConfig, tools: &crate::AgentToolset) -> Result<String, ProviderError> {
        dispatch!(self, p => p.create_assistant(name, config, tools).await)
    }

    async fn get_assistant(&self, id: &str) -> Result<ProviderAssistant, ProviderError> {
        dispatch!(self, p => p.get_assistant(id).await)
    }

    async fn update_assistant(
        &self,
        id: &str,
        name: &str,
        config: &AssistantConfig,
        tools: &crate::AgentToolset,
    ) -> Result<(), ProviderError> {
        dispatch!(self, p => p.update_assistant(id, name, config, tools).await)
    }
}

/// Every provider this deployment can reach; the simulator always.
#[derive(Clone, Debug, Default)]
pub struct AssistantProviders {
    vapi: Option<Vapi>,
    elevenlabs: Option<ElevenLabs>,
    retell: Option<Retell>,
    simulator: SimulatedAssistants,
}

impl AssistantProviders {
    pub fn new(accounts: &ProviderAccounts, retry: RetryPolicy) -> Self {
        Self {
            vapi: accounts.vapi.as_ref().map(|a| Vapi::new(&a.base_url, a.api_key.expose(), retry)),
            elevenlabs: accounts.elevenlabs.as_ref().map(|a| ElevenLabs::new(&a.base_url, a.api_key.expose(), retry)),
            retell: accounts.retell.as_ref().map(|a| Retell::new(&a.base_url, a.api_key.expose(), retry)),
            simulator: SimulatedAssistants::default(),
        }
    }

    /// The provider of `kind`, or why it cannot be used here.
    pub fn get(&self, kind: ProviderKind) -> Result<AnyAssistantProvider, ProviderError> {
        let not_configured = || ProviderError::NotConfigured {
            provider: kind.as_str(),
            variable: ProviderAccounts::endpoint(kind).map_or("", |e| e.key_variable),
        };
        match kind {
            ProviderKind::Vapi => self.vapi.clone().map(AnyAssistantProvider::Vapi).ok_or_else(not_configured),
            ProviderKind::Elevenlabs => self.elevenlabs.clone().map(AnyAssistantProvider::ElevenLabs).ok_or_else(not_configured),
            ProviderKind::Retell => self.retell.clone().map(AnyAssistantProvider::Retell).ok_or_else(not_configured),
            ProviderKind::Simulator => Ok(AnyAssistantProvider::Simulator(self.simulator.clone())),
        }
    }
}
