//! The `CallProvider` port: placing a phone call with an assistant on it.
//! One attempt per request: the dial-jobs queue owns retries and their backoff.

use crate::{
    ElevenLabs, ProviderAccounts, ProviderError, Retell, RetryPolicy, SimulatedCalls, SimulatorOdds, SimulatorWebhooks, Twilio,
    TwilioEndpoints, Vapi,
};
use chrono::{DateTime, Utc};
use domain::{CallId, CampaignId, ContactId, E164, OrgId, Voicemail, VoicemailAction};
use std::{collections::BTreeMap, future::Future, time::Duration};

/// Everything a provider needs to place one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRequest {
    pub org_id: OrgId,
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub contact_id: ContactId,
    pub to: E164,
    /// The caller ID it goes out from.
    pub from: E164,
    /// The provider's id of that number, for the providers that call from an id (Vapi, ElevenLabs).
    pub from_number_id: Option<String>,
    /// The assistant's id at the provider (agent, assistant); None for Twilio, whose bridge
    /// looks the assistant up itself.
    pub assistant_provider_id: Option<String>,
    /// Contact fields and extra columns, for the assistant's prompt.
    pub variables: BTreeMap<String, String>,
    pub recording: bool,
    /// What an answering machine gets: a hang-up, or the message after the beep.
    pub voicemail: Voicemail,
    pub max_call_seconds: u32,
    /// How long it rings before it counts as unanswered.
    pub ring_seconds: u32,
}

impl CallRequest {
    /// The variables with outdial's own ids added, so the provider's webhooks can be matched to
    /// the call even before its provider id is stored.
    pub fn variables_with_ids(&self) -> BTreeMap<String, String> {
        let mut vars = self.variables.clone();
        vars.extend(domain::id_variables(self.org_id, self.campaign_id, self.call_id, self.contact_id));
        vars
    }

    /// The message to leave on an answering machine; None when the campaign hangs up on them.
    pub fn voicemail_message(&self) -> Option<&str> {
        match self.voicemail.action {
            VoicemailAction::LeaveMessage => self.voicemail.message.as_deref().map(str::trim).filter(|m| !m.is_empty()),
            VoicemailAction::Hangup => None,
        }
    }

    /// outdial's ids as call metadata, which the providers that keep it echo on every webhook.
    pub fn metadata(&self) -> serde_json::Value {
        let ids = domain::id_variables(self.org_id, self.campaign_id, self.call_id, self.contact_id);
        ids.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect::<serde_json::Map<_, _>>().into()
    }
}

/// A provider's calls carrying `call`'s id in their metadata, found in a list answer.
pub(crate) fn ids_with_our_call_id<'a>(
    calls: impl IntoIterator<Item = &'a serde_json::Value>,
    call: &CallRequest,
    id_field: &str,
) -> Vec<String> {
    let ours = call.call_id.to_string();
    calls
        .into_iter()
        .filter(|c| c.pointer(&format!("/metadata/{}", domain::CALL_ID_VARIABLE)).and_then(serde_json::Value::as_str) == Some(&ours))
        .filter_map(|c| c.get(id_field).and_then(serde_json::Value::as_str).map(str::to_string))
        .collect()
}

/// Places calls at one provider.
pub trait CallProvider: Send + Sync {
    /// Asks the provider to place the call; its id for the call on success.
    fn place_call(&self, call: &CallRequest) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// After a create request whose answer was lost: the provider's ids of calls it made for
    /// `call` since `since` (the dial began), oldest first. An error when it cannot be asked, or
    /// has no way to list its calls.
    fn find_placed_call(&self, call: &CallRequest, since: DateTime<Utc>)
    -> impl Future<Output = Result<Vec<String>, ProviderError>> + Send;
}

/// The call providers this deployment has accounts for, chosen per campaign.
#[derive(Clone, Debug, Default)]
pub struct CallProviders {
    pub twilio: Option<Twilio>,
    pub elevenlabs: Option<ElevenLabs>,
    pub vapi: Option<Vapi>,
    pub retell: Option<Retell>,
    pub simulator: Option<SimulatedCalls>,
}

/// What placing calls needs beyond the accounts' keys.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOptions {
    /// Our webhooks' public base URL: Twilio's callbacks, the simulator's reports.
    pub public_url: Option<String>,
    /// The media bridge's `wss://…/media` URL.
    pub bridge_url: Option<String>,
    pub elevenlabs_webhook_secret: Option<crate::Secret>,
    pub simulator_odds: SimulatorOdds,
    pub simulator_seed: u64,
    /// Simulated seconds per real second.
    pub simulator_speed: f64,
    /// How long a provider's answer to a call request is waited for (`OUTDIAL_PROVIDER_TIMEOUT_SECONDS`).
    pub provider_timeout: Duration,
}

impl Default for CallOptions {
    /// No public URL (no Twilio, no simulator), default odds, seed 1, real time.
    fn default() -> Self {
        Self {
            public_url: None,
            bridge_url: None,
            elevenlabs_webhook_secret: None,
            simulator_odds: SimulatorOdds::default(),
            simulator_seed: 1,
            simulator_speed: 1.0,
            provider_timeout: crate::DEFAULT_TIMEOUT,
        }
    }
}

impl CallProviders {
    /// The account SID and token the simulator signs with when the deployment has no Twilio account.
    pub const SIMULATOR_ACCOUNT: (&'static str, &'static str) = ("AC00000000000000000000000000000000", "outdial-simulator");

    /// One client per configured account; each places a single attempt per job.
    pub fn new(accounts: &ProviderAccounts, options: &CallOptions) -> Self {
        let once = RetryPolicy { timeout: options.provider_timeout, ..RetryPolicy::once() };
        let twilio = match (&accounts.twilio, &options.public_url, &options.bridge_url) {
            (Some(account), Some(public_url), Some(bridge_url)) => {
                Some(Twilio::new(account, TwilioEndpoints { public_url: public_url.clone(), bridge_url: bridge_url.clone() }, once))
            }
            _ => None,
        };
        let simulator = options.public_url.as_ref().filter(|_| accounts.simulator).map(|public_url| {
            let (sid, token) =
                accounts.twilio.as_ref().map_or(Self::SIMULATOR_ACCOUNT, |t| (t.account_sid.as_str(), t.auth_token.expose()));
            let webhooks = SimulatorWebhooks {
                public_url: public_url.clone(),
                twilio_account_sid: sid.into(),
                twilio_auth_token: token.into(),
                elevenlabs_webhook_secret: options.elevenlabs_webhook_secret.clone(),
            };
            SimulatedCalls::new(webhooks, options.simulator_odds, options.simulator_seed, options.simulator_speed)
        });
        Self {
            twilio,
            elevenlabs: accounts.elevenlabs.as_ref().map(|a| ElevenLabs::new(&a.base_url, a.api_key.expose(), once)),
            vapi: accounts.vapi.as_ref().map(|a| Vapi::new(&a.base_url, a.api_key.expose(), once)),
            retell: accounts.retell.as_ref().map(|a| Retell::new(&a.base_url, a.api_key.expose(), once)),
            simulator,
        }
    }

    /// Places `call` with `provider`.
    pub async fn place_call(&self, provider: domain::CallProvider, call: &CallRequest) -> Result<String, ProviderError> {
        use domain::CallProvider as P;
        match provider {
            P::Twilio => self.twilio()?.place_call(call).await,
            P::Elevenlabs => Self::configured(&self.elevenlabs, "elevenlabs", "ELEVENLABS_API_KEY")?.place_call(call).await,
            P::Vapi => Self::configured(&self.vapi, "vapi", "VAPI_API_KEY")?.place_call(call).await,
            P::Retell => Self::configured(&self.retell, "retell", "RETELL_API_KEY")?.place_call(call).await,
            P::Simulator => self.simulator()?.place_call(call).await,
        }
    }

    /// The ids `provider` has for calls it made for `call` since `since` (see `CallProvider::find_placed_call`).
    pub async fn find_placed_call(
        &self,
        provider: domain::CallProvider,
        call: &CallRequest,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, ProviderError> {
        use domain::CallProvider as P;
        match provider {
            P::Twilio => self.twilio()?.find_placed_call(call, since).await,
            P::Elevenlabs => Self::configured(&self.elevenlabs, "elevenlabs", "ELEVENLABS_API_KEY")?.find_placed_call(call, since).await,
            P::Vapi => Self::configured(&self.vapi, "vapi", "VAPI_API_KEY")?.find_placed_call(call, since).await,
            P::Retell => Self::configured(&self.retell, "retell", "RETELL_API_KEY")?.find_placed_call(call, since).await,
            P::Simulator => self.simulator()?.find_placed_call(call, since).await,
        }
    }

    /// The call's state as its provider has it (Twilio, Vapi, Retell). ElevenLabs' native calls and
    /// the simulator's (held in this process) are not asked: `Unsupported`.
    pub async fn call_state(
        &self,
        provider: domain::CallProvider,
        provider_call_id: &str,
    ) -> Result<domain::provider_status::ProviderCallState, ProviderError> {
        use domain::CallProvider as P;
        match provider {
            P::Twilio => self.twilio()?.call_state(provider_call_id).await,
            P::Vapi => Self::configured(&self.vapi, "vapi", "VAPI_API_KEY")?.call_state(provider_call_id).await,
            P::Retell => Self::configured(&self.retell, "retell", "RETELL_API_KEY")?.call_state(provider_call_id).await,
            P::Elevenlabs => Err(ProviderError::Unsupported { provider: "elevenlabs", operation: "call state" }),
            P::Simulator => Err(ProviderError::Unsupported { provider: "simulator", operation: "call state" }),
        }
    }

    /// Ends a live call now (answering-machine `hangup`): Twilio's, or a simulated one.
    pub async fn hang_up(&self, provider: domain::CallProvider, provider_call_id: &str) -> Result<(), ProviderError> {
        use domain::CallProvider as P;
        match provider {
            P::Twilio => self.twilio()?.hang_up(provider_call_id).await,
            P::Simulator => {
                self.simulator()?.hang_up(provider_call_id);
                Ok(())
            }
            other => Err(ProviderError::Unsupported { provider: other.as_str(), operation: "hang-up" }),
        }
    }

    /// Speaks the voicemail message after the beep and hangs up (answering-machine `leave_message`).
    pub async fn leave_voicemail(
        &self,
        provider: domain::CallProvider,
        provider_call_id: &str,
        message: &str,
    ) -> Result<(), ProviderError> {
        use domain::CallProvider as P;
        match provider {
            P::Twilio => self.twilio()?.leave_voicemail(provider_call_id, message).await,
            // the simulated machine takes the message as it ends the call
            P::Simulator => {
                self.simulator()?.hang_up(provider_call_id);
                Ok(())
            }
            other => Err(ProviderError::Unsupported { provider: other.as_str(), operation: "voicemail" }),
        }
    }

    fn twilio(&self) -> Result<&Twilio, ProviderError> {
        Self::configured(&self.twilio, "twilio", "TWILIO_ACCOUNT_SID, OUTDIAL_PUBLIC_URL and OUTDIAL_BRIDGE_URL")
    }

    fn simulator(&self) -> Result<&SimulatedCalls, ProviderError> {
        Self::configured(&self.simulator, "simulator", "OUTDIAL_SIMULATOR=on and OUTDIAL_PUBLIC_URL")
    }

    fn configured<'a, T>(p: &'a Option<T>, provider: &'static str, variable: &'static str) -> Result<&'a T, ProviderError> {
        p.as_ref().ok_or(ProviderError::NotConfigured { provider, variable })
    }
}

/// A provider's answer lacked the id it documents.
pub(crate) fn missing_id(provider: &'static str, field: &str) -> ProviderError {
    ProviderError::Protocol { provider, detail: format!("the answer has no {field}") }
}
