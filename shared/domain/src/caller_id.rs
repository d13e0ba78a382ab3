//! The caller-ID registry: the numbers an organisation may call from. Every organisation of a
//! deployment shares its provider accounts, so a number belongs to the one organisation that
//! registered it, and campaigns call only from their organisation's registered numbers.

use crate::{CallProvider, E164, OrgId, ParseError, UsState};
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

/// How a campaign picks the number a call is made from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerIdStrategy {
    /// The pool's least recently used number.
    #[default]
    Lru,
    /// Local presence: a number with the contact's area code, else one in its state, else the
    /// least recently used (a person answers a local number more often).
    Local,
}

impl CallerIdStrategy {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "lru" => Ok(Self::Lru),
            "local" => Ok(Self::Local),
            other => Err(ParseError::new("callerIdStrategy", format!("{other:?} is neither lru nor local"))),
        }
    }

    /// The numbers of `pool` a call to `callee` may be made from: under `local`, those of the
    /// closest match level there is (area code, then state), else the whole pool.
    pub fn candidates(self, pool: &[E164], callee: &E164) -> Vec<E164> {
        if self == Self::Local {
            for level in [PresenceMatch::AreaCode, PresenceMatch::State] {
                let tier: Vec<E164> = pool.iter().filter(|c| PresenceMatch::of(c, callee) == level).cloned().collect();
                if !tier.is_empty() {
                    return tier;
                }
            }
        }
        pool.to_vec()
    }
}

/// How close a call's caller ID is to the number called: one definition for the choice and the
/// report's answer rate by match level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceMatch {
    /// Both North American numbers with the same area code.
    AreaCode,
    /// Numbers of the same US state (by area code), another area code.
    State,
    Other,
}

impl PresenceMatch {
    pub const ALL: [Self; 3] = [Self::AreaCode, Self::State, Self::Other];

    pub fn of(caller: &E164, callee: &E164) -> Self {
        let area = |n: &E164| n.as_str().strip_prefix("+1").and_then(|national| national.get(..3)).map(str::to_string);
        if area(caller).is_some() && area(caller) == area(callee) {
            Self::AreaCode
        } else if UsState::of_number(caller).is_some() && UsState::of_number(caller) == UsState::of_number(callee) {
            Self::State
        } else {
            Self::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AreaCode => "area_code",
            Self::State => "state",
            Self::Other => "other",
        }
    }

    /// Its name on the report page and in the CLI.
    pub fn label(self) -> &'static str {
        match self {
            Self::AreaCode => "caller ID of the same area code",
            Self::State => "caller ID of the same state",
            Self::Other => "caller ID from elsewhere",
        }
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

    fn n(raw: &str) -> E164 {
        E164::parse(raw, None).unwrap()
    }

    #[test]
    fn local_presence_picks_the_area_code_then_the_state_then_any() {
        let pool = [n("+14155550100"), n("+12135550100"), n("+12125550100")];
        let local = CallerIdStrategy::Local;
        assert_eq!(local.candidates(&pool, &n("+14155559999")), [n("+14155550100")], "San Francisco: its own area code");
        // 310 (Los Angeles) has no number of its own: California's two are next
        assert_eq!(local.candidates(&pool, &n("+13105559999")), [n("+14155550100"), n("+12135550100")]);
        assert_eq!(local.candidates(&pool, &n("+13055559999")), pool, "Florida: nothing local, the whole pool");
        assert_eq!(CallerIdStrategy::Lru.candidates(&pool, &n("+14155559999")), pool);
        assert_eq!(PresenceMatch::of(&n("+442079460958"), &n("+442079460000")), PresenceMatch::Other, "area codes are North American");
        assert_eq!(CallerIdStrategy::parse("nearest").unwrap_err().field, "callerIdStrategy");
    }

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
