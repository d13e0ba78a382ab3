//! Contact rows as users upload them (CSV columns or JSON fields) turned into contacts: header
//! roles, E.164 normalisation, the time zone rule (own column, else the number's, else the
//! campaign's), the US state (own column, else the area code), the consent on record (the row's,
//! else the importer's attestation) and the reasons a row is refused.

use crate::{Consent, ConsentSource, E164, NewContact, ParseError, Region, UsState, campaign::parse_timezone};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::{collections::HashMap, sync::LazyLock};

/// What a column (or JSON field) of an uploaded row means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnRole {
    Phone,
    Name,
    FirstName,
    LastName,
    BusinessName,
    Email,
    Timezone,
    Priority,
    Consent,
    /// How and where consent was given.
    ConsentSource,
    /// When consent was given.
    ConsentAt,
    /// The US state whose calling hours apply (a postal code or name).
    State,
    /// Any other column: handed to the assistant as a dynamic variable of this name.
    Variable(String),
}

impl ColumnRole {
    /// The role of a header, matched without regard to case, surrounding spaces or a byte-order mark.
    pub fn of(header: &str) -> Self {
        let key = header.trim_start_matches('\u{feff}').trim();
        match key.to_ascii_lowercase().as_str() {
            "phone" | "phone_number" | "number" => Self::Phone,
            "name" => Self::Name,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "business_name" => Self::BusinessName,
            "email" => Self::Email,
            "timezone" => Self::Timezone,
            "priority" => Self::Priority,
            "consent" => Self::Consent,
            "consent_source" => Self::ConsentSource,
            "consent_at" => Self::ConsentAt,
            "state" => Self::State,
            _ => Self::Variable(key.to_string()),
        }
    }

    /// The roles of a header row; refused when no column holds the phone number, or when no
    /// column holds consent and the importer did not attest to it.
    pub fn of_headers<'a>(headers: impl IntoIterator<Item = &'a str>, attested: bool) -> Result<Vec<Self>, HeaderError> {
        let roles: Vec<Self> = headers.into_iter().map(Self::of).collect();
        if roles.len() > MAX_COLUMNS {
            return Err(HeaderError::TooManyColumns { columns: roles.len() });
        }
        if !roles.contains(&Self::Phone) {
            return Err(HeaderError::MissingPhoneColumn);
        }
        Self::consent_on_record(&roles, attested)?;
        Ok(roles)
    }

    /// Refused when none of `roles` holds consent and the importer did not attest to it.
    pub fn consent_on_record<'a>(roles: impl IntoIterator<Item = &'a Self>, attested: bool) -> Result<(), HeaderError> {
        if attested || roles.into_iter().any(|r| *r == Self::Consent) { Ok(()) } else { Err(HeaderError::ConsentMissing) }
    }
}

/// Why a file cannot be imported at all, from its header row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no phone column: name one of the columns phone, phone_number or number")]
    MissingPhoneColumn,
    #[error(
        "no consent on record: add a consent column (true/false, with optional consent_source and consent_at), or attest for the whole file with consent=attested&consentSource=<how and where the contacts agreed>"
    )]
    ConsentMissing,
    #[error("the file has {columns} columns; at most {MAX_COLUMNS} are read per contact: leave out the ones the assistant does not need")]
    TooManyColumns { columns: usize },
}

/// An importer's statement that every contact of a file agreed to be called, kept with each
/// contact it covers: how they agreed, the API key that said so, and when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    pub source: String,
    pub key_id: String,
    pub at: DateTime<Utc>,
}

impl Attestation {
    pub const MAX_SOURCE_CHARS: usize = 500;

    pub fn parse(source: &str, key_id: &str, at: DateTime<Utc>) -> Result<Self, ParseError> {
        let source = source.trim();
        if source.is_empty() || source.chars().count() > Self::MAX_SOURCE_CHARS {
            return Err(ParseError::new(
                "consentSource",
                format!("must say in 1–{} characters how and where the contacts agreed to be called", Self::MAX_SOURCE_CHARS),
            ));
        }
        Ok(Self { source: source.to_string(), key_id: key_id.to_string(), at })
    }

    fn consent(&self, given_at: Option<DateTime<Utc>>) -> Consent {
        Consent {
            source: ConsentSource::Attestation,
            detail: Some(self.source.clone()),
            given_at,
            attested_by: Some(self.key_id.clone()),
            recorded_at: self.at,
        }
    }
}

/// What a row falls back on.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportDefaults {
    /// Country in which national numbers are read.
    pub region: Option<Region>,
    /// Zone of contacts whose own zone is neither given nor known from their number.
    pub timezone: Tz,
    /// Consent for rows that carry none of their own.
    pub attestation: Option<Attestation>,
    /// When the import happens: the time consent from the file is recorded.
    pub now: DateTime<Utc>,
}

/// Why a row was not imported: the offending value and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub value: String,
    pub reason: String,
}

impl RowError {
    pub fn new(value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { value: value.into(), reason: reason.into() }
    }
}

/// Longest accepted value of any field, in characters: longer is almost surely a broken file.
pub const MAX_FIELD_CHARS: usize = 1000;

/// Most columns (or JSON fields) a contact is read from: each becomes a dynamic variable, carried
/// on every read of the contact and sent with every call.
pub const MAX_COLUMNS: usize = 100;

/// The contact a row describes. `fields` pairs each value with its column's role; empty values
/// count as absent.
pub fn contact_from_row<'a>(
    fields: impl IntoIterator<Item = (&'a ColumnRole, &'a str)>,
    defaults: &ImportDefaults,
) -> Result<NewContact, RowError> {
    let mut phone = None;
    let (mut name, mut first, mut last, mut timezone, mut priority) = (None, None, None, None, None);
    let mut consented = false;
    let (mut consent_source, mut consent_at, mut state) = (None, None, None);
    let mut variables = std::collections::BTreeMap::new();
    for (role, raw) in fields {
        let value = raw.trim();
        if value.is_empty() {
            continue;
        }
        if value.chars().count() > MAX_FIELD_CHARS {
            return Err(RowError::new(truncated(value), format!("is longer than {MAX_FIELD_CHARS} characters")));
        }
        match role {
            ColumnRole::Phone => phone = phone.or(Some(value)),
            ColumnRole::Name => name = Some(value),
            ColumnRole::FirstName => first = Some(value),
            ColumnRole::LastName => last = Some(value),
            ColumnRole::Timezone => timezone = Some(value),
            ColumnRole::Priority => priority = Some(value),
            ColumnRole::Consent => {
                if !parse_consent(value)? {
                    return Err(RowError::new(value, "consent is false: this contact has not agreed to be called"));
                }
                consented = true;
            }
            ColumnRole::ConsentSource => consent_source = Some(value),
            ColumnRole::ConsentAt => consent_at = Some(parse_consent_at(value)?),
            ColumnRole::State => {
                state = Some(UsState::parse(value).map_err(|e| RowError::new(value, e.reason))?);
                variables.insert("state".to_string(), value.to_string());
            }
            ColumnRole::BusinessName => {
                variables.insert("business_name".to_string(), value.to_string());
            }
            ColumnRole::Email => {
                variables.insert("email".to_string(), value.to_string());
            }
            ColumnRole::Variable(key) => {
                variables.insert(key.clone(), value.to_string());
            }
        }
    }
    let raw_phone = phone.ok_or_else(|| RowError::new("", "the phone number is empty"))?;
    let phone = E164::parse(raw_phone, defaults.region).map_err(|e| RowError::new(raw_phone, e.reason))?;
    let priority = match priority {
        None => 0,
        Some(p) => p.parse::<i32>().map_err(|_| RowError::new(p, "priority must be a whole number"))?,
    };
    for (key, value) in [("first_name", first), ("last_name", last)] {
        if let Some(v) = value {
            variables.insert(key.to_string(), v.to_string());
        }
    }
    let name = name.map(str::to_string).or_else(|| match (first, last) {
        (None, None) => None,
        (f, l) => Some([f, l].into_iter().flatten().collect::<Vec<_>>().join(" ")),
    });
    // an unknown zone in the column is not fatal: the number or the campaign still tells
    let timezone =
        timezone.and_then(|tz| parse_timezone("timezone", tz).ok()).or_else(|| timezone_of_number(&phone)).unwrap_or(defaults.timezone);
    let consent = match (consented, &defaults.attestation) {
        (true, _) => Consent { detail: consent_source.map(str::to_string), given_at: consent_at, ..Consent::on_file(defaults.now) },
        (false, Some(attestation)) => attestation.consent(consent_at),
        (false, None) => {
            return Err(RowError::new(
                "",
                "no consent for this row: fill its consent column, or attest for the file with consent=attested&consentSource=…",
            ));
        }
    };
    let us_state = state.or_else(|| UsState::of_number(&phone));
    Ok(NewContact { phone, name, timezone, us_state, priority, variables, consent })
}

/// `consent_at`: an RFC 3339 time, or a date (`2026-10-01`, read as its start in UTC).
fn parse_consent_at(value: &str) -> Result<DateTime<Utc>, RowError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDate::parse_from_str(value, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| RowError::new(value, "consent_at must be a date (2026-10-01) or an RFC 3339 time"))
}

fn parse_consent(value: &str) -> Result<bool, RowError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Ok(true),
        "false" | "no" | "n" | "0" => Ok(false),
        _ => Err(RowError::new(value, "consent must be true/false, yes/no or 1/0")),
    }
}

fn truncated(value: &str) -> String {
    value.chars().take(40).chain("…".chars()).collect()
}

/// NANP area code → zone, from the table shipped in `data/`.
static NANP_ZONES: LazyLock<HashMap<u16, Tz>> = LazyLock::new(|| {
    let mut zones = HashMap::new();
    for line in include_str!("../data/nanp_time_zones.txt").lines() {
        let Some((zone, codes)) = line.split_once(':').filter(|_| !line.starts_with('#')) else { continue };
        let zone: Tz = zone.trim().parse().expect("the NANP table names IANA zones");
        for code in codes.split_whitespace() {
            zones.insert(code.parse().expect("the NANP table lists 3-digit area codes"), zone);
        }
    }
    zones
});

/// Countries (by calling code) whose numbers all share one zone.
const SINGLE_ZONE_COUNTRIES: &[(&str, Tz)] = {
    use chrono_tz::{Africa, America, Asia, Atlantic, Europe, Pacific};
    &[
        ("20", Africa::Cairo),
        ("27", Africa::Johannesburg),
        ("30", Europe::Athens),
        ("31", Europe::Amsterdam),
        ("32", Europe::Brussels),
        ("33", Europe::Paris),
        ("36", Europe::Budapest),
        ("39", Europe::Rome),
        ("40", Europe::Bucharest),
        ("41", Europe::Zurich),
        ("43", Europe::Vienna),
        ("44", Europe::London),
        ("45", Europe::Copenhagen),
        ("46", Europe::Stockholm),
        ("47", Europe::Oslo),
        ("48", Europe::Warsaw),
        ("49", Europe::Berlin),
        ("51", America::Lima),
        ("54", America::Argentina::Buenos_Aires),
        ("57", America::Bogota),
        ("58", America::Caracas),
        ("60", Asia::Kuala_Lumpur),
        ("63", Asia::Manila),
        ("64", Pacific::Auckland),
        ("65", Asia::Singapore),
        ("66", Asia::Bangkok),
        ("81", Asia::Tokyo),
        ("82", Asia::Seoul),
        ("84", Asia::Ho_Chi_Minh),
        ("86", Asia::Shanghai),
        ("90", Europe::Istanbul),
        ("91", Asia::Kolkata),
        ("92", Asia::Karachi),
        ("94", Asia::Colombo),
        ("212", Africa::Casablanca),
        ("233", Africa::Accra),
        ("234", Africa::Lagos),
        ("254", Africa::Nairobi),
        ("353", Europe::Dublin),
        ("354", Atlantic::Reykjavik),
        ("358", Europe::Helsinki),
        ("380", Europe::Kyiv),
        ("420", Europe::Prague),
        ("421", Europe::Bratislava),
        ("502", America::Guatemala),
        ("503", America::El_Salvador),
        ("506", America::Costa_Rica),
        ("507", America::Panama),
        ("591", America::La_Paz),
        ("595", America::Asuncion),
        ("598", America::Montevideo),
        ("852", Asia::Hong_Kong),
        ("880", Asia::Dhaka),
        ("886", Asia::Taipei),
        ("971", Asia::Dubai),
        ("966", Asia::Riyadh),
        ("972", Asia::Jerusalem),
    ]
};

/// The zone a number is in, when its country has one zone or (NANP) its area code is in the table.
pub fn timezone_of_number(phone: &E164) -> Option<Tz> {
    let digits = &phone.as_str()[1..];
    if let Some(national) = digits.strip_prefix('1') {
        return national.get(..3).and_then(|code| code.parse().ok()).and_then(|code: u16| NANP_ZONES.get(&code).copied());
    }
    // calling codes are prefix-free: at most one of the 1-, 2- and 3-digit prefixes is one
    (1..=3).find_map(|len| digits.get(..len).and_then(|p| SINGLE_ZONE_COUNTRIES.iter().find(|(code, _)| *code == p)).map(|(_, tz)| *tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn defaults() -> ImportDefaults {
        let attestation = Attestation::parse("web form", "key_1", now()).ok();
        ImportDefaults { region: Some(Region::parse("US").unwrap()), timezone: chrono_tz::America::Chicago, attestation, now: now() }
    }

    fn row(pairs: &[(&str, &str)]) -> Result<NewContact, RowError> {
        row_with(pairs, &defaults())
    }

    fn row_with(pairs: &[(&str, &str)], defaults: &ImportDefaults) -> Result<NewContact, RowError> {
        let roles: Vec<ColumnRole> = pairs.iter().map(|(h, _)| ColumnRole::of(h)).collect();
        contact_from_row(roles.iter().zip(pairs.iter().map(|(_, v)| *v)), defaults)
    }

    #[test]
    fn headers_map_to_roles_whatever_their_case_and_bom() {
        assert_eq!(ColumnRole::of("\u{feff}Phone_Number "), ColumnRole::Phone);
        assert_eq!(ColumnRole::of("NUMBER"), ColumnRole::Phone);
        assert_eq!(ColumnRole::of("First_Name"), ColumnRole::FirstName);
        assert_eq!(ColumnRole::of(" plan "), ColumnRole::Variable("plan".into()));
        assert_eq!(ColumnRole::of_headers(["name", "email"], true), Err(HeaderError::MissingPhoneColumn));
        assert_eq!(ColumnRole::of_headers(["phone", "name"], false), Err(HeaderError::ConsentMissing));
        let wide: Vec<String> = std::iter::once("phone".to_string()).chain((1..=MAX_COLUMNS).map(|i| format!("v{i}"))).collect();
        assert_eq!(ColumnRole::of_headers(wide.iter().map(String::as_str), true), Err(HeaderError::TooManyColumns { columns: 101 }));
        assert!(ColumnRole::of_headers(wide[..MAX_COLUMNS].iter().map(String::as_str), true).is_ok(), "100 columns are read");
        assert!(ColumnRole::of_headers(["phone", "Consent"], false).is_ok());
        assert!(ColumnRole::of_headers(["phone", "name"], true).is_ok());
    }

    #[test]
    fn consent_comes_from_the_row_else_the_attestation() {
        let from_file =
            row(&[("phone", "+14155550100"), ("consent", "yes"), ("consent_source", "signup form"), ("consent_at", "2026-10-01")]).unwrap();
        let consent = from_file.consent;
        assert_eq!((consent.source, consent.detail.as_deref(), consent.attested_by), (ConsentSource::File, Some("signup form"), None));
        assert_eq!(consent.given_at, Some("2026-10-01T00:00:00Z".parse().unwrap()));
        let attested = row(&[("phone", "+14155550100")]).unwrap().consent;
        assert_eq!(attested.source, ConsentSource::Attestation);
        assert_eq!(
            (attested.detail.as_deref(), attested.attested_by.as_deref(), attested.recorded_at),
            (Some("web form"), Some("key_1"), now())
        );
        let unattested = ImportDefaults { attestation: None, ..defaults() };
        assert!(row_with(&[("phone", "+14155550100"), ("consent", "")], &unattested).unwrap_err().reason.contains("no consent"));
        assert!(
            row(&[("phone", "+14155550100"), ("consent", "yes"), ("consent_at", "last week")]).unwrap_err().reason.contains("consent_at")
        );
        assert!(Attestation::parse("  ", "key_1", now()).is_err());
    }

    #[test]
    fn the_state_is_the_column_else_the_area_code() {
        assert_eq!(row(&[("phone", "+13055550100")]).unwrap().us_state.map(|s| s.to_string()).as_deref(), Some("FL"));
        let moved = row(&[("phone", "+13055550100"), ("state", "Texas")]).unwrap();
        assert_eq!((moved.us_state.map(|s| s.to_string()).as_deref(), moved.variables["state"].as_str()), (Some("TX"), "Texas"));
        assert!(row(&[("phone", "+13055550100"), ("state", "Atlantis")]).unwrap_err().reason.contains("not a US state"));
        assert_eq!(row(&[("phone", "+442079460958")]).unwrap().us_state, None);
    }

    #[test]
    fn a_row_becomes_a_contact_with_its_variables() {
        let c = row(&[("phone", "(415) 555-0100"), ("first_name", "Ada"), ("last_name", "Lovelace"), ("plan", "gold"), ("priority", "5")])
            .unwrap();
        assert_eq!(c.phone.as_str(), "+14155550100");
        assert_eq!(c.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(c.priority, 5);
        assert_eq!(c.variables["plan"], "gold");
        assert_eq!(c.variables["first_name"], "Ada");
        assert_eq!(c.timezone, chrono_tz::America::Los_Angeles, "415 is San Francisco");
    }

    #[test]
    fn the_zone_is_the_column_else_the_number_else_the_campaign() {
        let own = row(&[("phone", "+14155550100"), ("timezone", "America/Denver")]).unwrap();
        assert_eq!(own.timezone, chrono_tz::America::Denver);
        let bad_column = row(&[("phone", "+12125550100"), ("timezone", "Mars/Olympus")]).unwrap();
        assert_eq!(bad_column.timezone, chrono_tz::America::New_York);
        let london = row(&[("phone", "+44 20 7946 0958")]).unwrap();
        assert_eq!(london.timezone, chrono_tz::Europe::London);
        let russia = row(&[("phone", "+7 495 123-45-67")]).unwrap();
        assert_eq!(russia.timezone, chrono_tz::America::Chicago, "Russia spans eleven zones: the campaign's");
    }

    #[test]
    fn bad_rows_say_which_value_and_why() {
        let e = row(&[("phone", "12345")]).unwrap_err();
        assert_eq!(e.value, "12345");
        assert!(row(&[("phone", "")]).unwrap_err().reason.contains("empty"));
        assert!(row(&[("phone", "+14155550100"), ("priority", "high")]).unwrap_err().reason.contains("whole number"));
        assert!(row(&[("phone", "+14155550100"), ("consent", "no")]).unwrap_err().reason.contains("not agreed"));
        assert!(row(&[("phone", "+14155550100"), ("consent", "yes")]).is_ok());
        let national = ImportDefaults { region: None, timezone: chrono_tz::UTC, ..defaults() };
        let roles = [ColumnRole::Phone];
        assert!(contact_from_row(roles.iter().zip(["415 555 0100"]), &national).unwrap_err().reason.contains("default region"));
    }

    #[test]
    fn the_nanp_table_is_well_formed() {
        assert!(NANP_ZONES.len() > 400, "{}", NANP_ZONES.len());
        let zone = |n: &str| timezone_of_number(&E164::parse(n, None).unwrap());
        assert_eq!(zone("+12125550100"), Some(chrono_tz::America::New_York));
        assert_eq!(zone("+13125550100"), Some(chrono_tz::America::Chicago));
        assert_eq!(zone("+16025550100"), Some(chrono_tz::America::Phoenix));
        assert_eq!(zone("+14165550100"), Some(chrono_tz::America::Toronto));
        assert_eq!(zone("+18085550100"), Some(chrono_tz::Pacific::Honolulu));
        assert_eq!(zone("+33142685300"), Some(chrono_tz::Europe::Paris));
        let listed: Vec<&str> = include_str!("../data/nanp_time_zones.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .flat_map(|(_, codes)| codes.split_whitespace())
            .collect();
        assert_eq!(listed.len(), NANP_ZONES.len(), "an area code is listed twice");
    }
}
