//! The caller-ID registry: the numbers an organisation may call from. Every organisation of a
//! deployment shares its provider accounts, so a number belongs to the one organisation that
//! registered it, and campaigns call only from their organisation's registered numbers.

use crate::{CallProvider, E164, OrgId, ParseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A number registered to call from, with its ids at the providers that place calls from
/// numbers imported into them (Vapi, ElevenLabs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerId {
    pub phone: E164,
    pub org_id: OrgId,
    pub vapi_phone_number_id: Option<String>,
    pub elevenlabs_phone_number_id: Option<String>,
    pub registered_at: DateTime<Utc>,
}

impl CallerId {
    /// The provider's id for this number, for the providers that call from an id.
    pub fn provider_number_id(&self, provider: CallProvider) -> Option<&str> {
        match provider {
            CallProvider::Vapi => self.vapi_phone_number_id.as_deref(),
            CallProvider::Elevenlabs => self.elevenlabs_phone_number_id.as_deref(),
            _ => None,
        }
    }

    /// Whether `provider` can place calls from this number: Vapi and ElevenLabs need its id there.
    pub fn serves(&self, provider: CallProvider) -> bool {
        !matches!(provider, CallProvider::Vapi | CallProvider::Elevenlabs) || self.provider_number_id(provider).is_some()
    }
}

/// A provider's phone-number id: what Vapi and ElevenLabs call a number they hold.
pub fn parse_provider_number_id(field: &'static str, raw: Option<String>) -> Result<Option<String>, ParseError> {
    let Some(raw) = raw.map(|r| r.trim().to_string()) else { return Ok(None) };
    let valid = !raw.is_empty() && raw.len() <= 128 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(Some(raw))
    } else {
        Err(ParseError::new(field, "must be the provider's phone-number id: 1–128 letters, digits, '-' or '_'"))
    }
}

/// The campaign's caller IDs that are not registered to its organisation for `provider`.
pub fn unregistered_caller_ids<'a>(pool: &'a [E164], registered: &[CallerId], provider: CallProvider) -> Vec<&'a E164> {
    pool.iter().filter(|phone| !registered.iter().any(|r| &r.phone == *phone && r.serves(provider))).collect()
}

/// One `callerIds` error per unregistered number of `pool`, saying how to register it.
pub fn registration_errors(pool: &[E164], unregistered: &[&E164], provider: CallProvider) -> Vec<ParseError> {
    let how = registration_hint(provider);
    pool.iter()
        .enumerate()
        .filter(|(_, p)| unregistered.contains(p))
        .map(|(i, p)| {
            ParseError::new(
                "callerIds",
                format!("[{i}] {} is not registered to this organisation; register it with POST /caller-ids{how}", p.as_str()),
            )
        })
        .collect()
}

/// What a registration for `provider` must carry besides the number.
pub(crate) fn registration_hint(provider: CallProvider) -> &'static str {
    match provider {
        CallProvider::Vapi => " with its vapiPhoneNumberId",
        CallProvider::Elevenlabs => " with its elevenlabsPhoneNumberId",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(phone: &str, vapi: Option<&str>) -> CallerId {
        CallerId {
            phone: E164::try_from(phone.to_string()).unwrap(),
            org_id: OrgId::new(),
            vapi_phone_number_id: vapi.map(str::to_string),
            elevenlabs_phone_number_id: None,
            registered_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_number_counts_only_when_registered_for_the_campaigns_provider() {
        let pool: Vec<E164> = ["+14155550100", "+14155550101"].iter().map(|p| E164::try_from(p.to_string()).unwrap()).collect();
        let reg = [registered("+14155550100", None)];
        assert_eq!(unregistered_caller_ids(&pool, &reg, CallProvider::Twilio), vec![&pool[1]]);
        assert_eq!(unregistered_caller_ids(&pool, &reg, CallProvider::Vapi).len(), 2, "Vapi needs the number's id there");
        let reg = [registered("+14155550100", Some("pn_1")), registered("+14155550101", Some("pn_2"))];
        assert!(unregistered_caller_ids(&pool, &reg, CallProvider::Vapi).is_empty());
        assert_eq!(unregistered_caller_ids(&pool, &reg, CallProvider::Elevenlabs).len(), 2);
    }

    #[test]
    fn provider_number_ids_are_plain_tokens() {
        assert_eq!(parse_provider_number_id("x", Some(" pn_1-a ".into())).unwrap(), Some("pn_1-a".into()));
        assert_eq!(parse_provider_number_id("x", None).unwrap(), None);
        assert!(parse_provider_number_id("x", Some("../admin".into())).is_err());
        assert!(parse_provider_number_id("x", Some(String::new())).is_err());
    }
}
