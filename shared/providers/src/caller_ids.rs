//! Whether the deployment's provider accounts hold a number an organisation wants to call from:
//! Twilio's owned and verified numbers, and the numbers behind Vapi's and ElevenLabs' ids.

use crate::{ElevenLabs, ProviderAccounts, ProviderError, RetryPolicy, Vapi, twilio::TwilioNumbers};
use domain::E164;

/// The accounts that vouch for a number. Without a Twilio account (the simulator, Retell's own
/// numbers) a number given without provider ids is accepted as it is.
#[derive(Clone, Debug)]
pub struct NumberOwnership {
    twilio: Option<TwilioNumbers>,
    vapi: Option<Vapi>,
    elevenlabs: Option<ElevenLabs>,
}

impl NumberOwnership {
    pub fn new(accounts: &ProviderAccounts) -> Self {
        let retry = RetryPolicy::default();
        Self {
            twilio: accounts.twilio.as_ref().map(|t| TwilioNumbers::new(t, retry)),
            vapi: accounts.vapi.as_ref().map(|a| Vapi::new(&a.base_url, a.api_key.expose(), retry)),
            elevenlabs: accounts.elevenlabs.as_ref().map(|a| ElevenLabs::new(&a.base_url, a.api_key.expose(), retry)),
        }
    }

    /// Why `phone` may not be registered with these provider ids, in words for the caller; None when it may.
    pub async fn refusal(&self, phone: &E164, vapi_id: Option<&str>, elevenlabs_id: Option<&str>) -> Result<Option<String>, ProviderError> {
        if let Some(id) = vapi_id {
            let Some(vapi) = &self.vapi else { return Ok(Some("vapiPhoneNumberId needs a Vapi account: set VAPI_API_KEY".into())) };
            if let Some(refusal) = mismatch("Vapi", id, phone, vapi.phone_number(id).await?) {
                return Ok(Some(refusal));
            }
        }
        if let Some(id) = elevenlabs_id {
            let Some(eleven) = &self.elevenlabs else {
                return Ok(Some("elevenlabsPhoneNumberId needs an ElevenLabs account: set ELEVENLABS_API_KEY".into()));
            };
            if let Some(refusal) = mismatch("ElevenLabs", id, phone, eleven.phone_number(id).await?) {
                return Ok(Some(refusal));
            }
        }
        if let (None, None, Some(twilio)) = (vapi_id, elevenlabs_id, &self.twilio)
            && !twilio.holds(phone).await?
        {
            return Ok(Some(format!(
                "{} is neither a number of the Twilio account nor one of its verified caller IDs; buy or verify it in Twilio first",
                phone.as_str()
            )));
        }
        Ok(None)
    }
}

fn mismatch(provider: &str, id: &str, phone: &E164, held: Option<String>) -> Option<String> {
    match held {
        None => Some(format!("{provider} has no phone number {id}")),
        Some(number) if number != phone.as_str() => Some(format!("{provider}'s phone number {id} is not {}", phone.as_str())),
        Some(_) => None,
    }
}
