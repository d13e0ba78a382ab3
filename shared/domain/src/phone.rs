//! Phone numbers in E.164, parsed by libphonenumber's rules, and their masked form for logs.

use crate::ParseError;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// A valid phone number in E.164 form (`+14155550100`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "+14155550100")]
pub struct E164(String);

/// A country (ISO 3166-1 alpha-2) used to read national numbers such as `(415) 555-0100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(rlibphonenumber::Region);

impl TryFrom<String> for Region {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.code()
    }
}

impl Region {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        // the crate takes any two letters as a region: only those with a calling code are countries
        input
            .trim()
            .parse::<rlibphonenumber::Region>()
            .ok()
            .filter(|r| PHONE_NUMBER_UTIL.get_country_code_for_region(*r).is_some())
            .map(Region)
            .ok_or_else(|| ParseError::new("region", format!("{input:?} is not an ISO 3166-1 alpha-2 country code such as \"US\"")))
    }

    pub fn code(&self) -> String {
        self.0.to_string()
    }
}

impl E164 {
    /// Parses an international number (`+44 20 7946 0958`), or a national one read in `default_region`.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("phone", "is empty"));
        }
        let number = PHONE_NUMBER_UTIL.parse(trimmed, default_region.map(|r| r.0)).map_err(|e| {
            let hint = if default_region.is_none() && !trimmed.starts_with('+') {
                " (a national number needs a default region, or write it with +country code)"
            } else {
                ""
            };
            ParseError::new("phone", format!("{} is not a phone number: {e}{hint}", mask_phone(trimmed)))
        })?;
        if !number.is_valid() {
            return Err(ParseError::new("phone", format!("{} is not a valid number for its country", mask_phone(trimmed))));
        }
        Ok(Self(number.format_as(PhoneNumberFormat::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form every log line uses: `+1415***5310`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }

    /// The country the number belongs to, when libphonenumber can tell.
    pub fn region(&self) -> Option<Region> {
        PHONE_NUMBER_UTIL.parse(&self.0, None).ok().and_then(|n| n.get_region_code()).map(Region)
    }
}

impl TryFrom<String> for E164 {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        if !s.starts_with('+') {
            return Err(ParseError::new("phone", format!("{} is not in E.164 form (+ and country code)", mask_phone(&s))));
        }
        Self::parse(&s, None)
    }
}

impl From<E164> for String {
    fn from(p: E164) -> String {
        p.0
    }
}

impl FromStr for E164 {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s, None)
    }
}

/// Deliberately not the number: `Display` is what ends up in logs and error messages.
impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Masks a value that holds a phone number, keeping the first and last 4 digits:
/// `+14155555310` becomes `+1415***5310`. Values with fewer than 7 digits identify nobody and
/// are kept as they are, so bad input stays recognisable in error messages.
pub fn mask_phone(value: &str) -> String {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return value.to_string();
    }
    let keep = if digits.len() >= 10 { 4 } else { 2 };
    let plus = if value.trim_start().starts_with('+') { "+" } else { "" };
    format!("{plus}{}***{}", &digits[..keep], &digits[digits.len() - keep..])
}

/// Masks every E.164-looking run (`+`, or `%2B` in a URL, and 7 to 15 digits) inside free text,
/// such as a log line, leaving dates, ids and other numbers alone.
pub fn mask_phones_in(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let number_at = |i: usize| {
        let prefix = match &bytes[i..] {
            [b'+', ..] => 1,
            [b'%', b'2', b'B' | b'b', ..] => 3,
            _ => return None,
        };
        let run = bytes[i + prefix..].iter().take_while(|b| b.is_ascii_digit()).count();
        (7..=15).contains(&run).then_some((prefix, run))
    };
    if !(0..bytes.len()).any(|i| number_at(i).is_some()) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some((prefix, run)) = number_at(i) {
            let masked = mask_phone(&format!("+{}", &text[i + prefix..i + prefix + run]));
            out.push_str(&text[i..i + prefix]);
            out.push_str(&masked[1..]);
            i += prefix + run;
        } else {
            let next = text[i + 1..].find(['+', '%']).map_or(text.len(), |n| i + 1 + n);
            out.push_str(&text[i..next]);
            i = next;
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Option<Region> {
        Some(Region::parse("us").unwrap())
    }

    #[test]
    fn national_numbers_use_the_default_region() {
        assert_eq!(E164::parse("(415) 555-2671", us()).unwrap().as_str(), "+14155552671");
        assert_eq!(E164::parse("020 7946 0958", Some(Region::parse("GB").unwrap())).unwrap().as_str(), "+442079460958");
        assert_eq!(E164::parse("+44 20 7946 0958", us()).unwrap().as_str(), "+442079460958");
    }

    /// Every region's example numbers from Google's libphonenumber metadata, valid as they are and
    /// invalid with two digits cut, written three ways (scripts/phone-examples made the list).
    #[test]
    fn every_region_agrees_with_the_reference_library() {
        let mut disagreements = Vec::new();
        let lines = include_str!("../data/phone_examples.tsv").lines().filter(|l| !l.starts_with('#'));
        let mut checked = 0;
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            let default = (fields[1] != "-").then(|| Region::parse(fields[1]).unwrap_or_else(|e| panic!("{line}: {e}")));
            let parsed = E164::parse(fields[0], default);
            let agrees = match (&fields[2..], &parsed) {
                (["valid", e164, region], Ok(number)) => {
                    number.as_str() == *e164 && number.region().map(|r| r.code()).as_deref() == Some(*region)
                }
                (["invalid" | "unparseable"], Err(_)) => true,
                _ => false,
            };
            if !agrees {
                let region = parsed.as_ref().ok().and_then(E164::region).map(|r| r.code());
                disagreements.push(format!("{line}\t→ {:?} {region:?}", parsed.as_ref().map(E164::as_str)));
            }
            checked += 1;
        }
        assert!(checked > 2_800, "{checked} lines");
        assert!(disagreements.is_empty(), "{} of {checked} disagree:\n{}", disagreements.len(), disagreements.join("\n"));
    }

    #[test]
    fn numbers_written_with_their_country_code_ignore_the_default_region() {
        for (input, e164) in [
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+33 1 40 00 00 02", "+33140000002"),
            ("+44 121 234 5678", "+441212345678"),
            ("+55 11 96123 4567", "+5511961234567"),
            ("011 33 1 23 45 67 89", "+33123456789"),
        ] {
            assert_eq!(E164::parse(input, us()).map(|n| n.as_str().to_string()), Ok(e164.to_string()), "{input}");
        }
        assert_eq!(E164::parse("+39 02 1234 5678", None).unwrap().region().unwrap().code(), "IT");
        assert!(E164::parse("+86 10 123456", None).is_err(), "matches only the start of Beijing's pattern");
    }

    #[test]
    fn invalid_numbers_are_refused_with_a_reason() {
        assert!(E164::parse("", us()).is_err());
        assert!(E164::parse("hello", us()).is_err());
        assert!(E164::parse("+1 000 000 0000", None).is_err());
        let err = E164::parse("415 555 2671", None).unwrap_err();
        assert!(err.reason.contains("default region"), "{err}");
        assert!(!err.reason.contains("5552671"), "the reason must not leak the number: {err}");
        assert!(Region::parse("XX").is_err());
        assert_eq!(Region::parse(" gb ").unwrap().code(), "GB");
    }

    #[test]
    fn serde_accepts_only_e164() {
        let p: E164 = serde_json::from_str("\"+14155552671\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+14155552671\"");
        assert!(serde_json::from_str::<E164>("\"4155552671\"").is_err());
        assert_eq!(p.region().unwrap().code(), "US");
    }

    #[test]
    fn masking_hides_the_middle_of_every_number() {
        assert_eq!(mask_phone("+14158675310"), "+1415***5310");
        assert_eq!(E164::parse("+14158675310", None).unwrap().to_string(), "+1415***5310");
        assert_eq!(mask_phone("(415) 867-5310"), "4158***5310");
        assert_eq!(mask_phone("12345"), "12345");
        assert_eq!(mask_phones_in("to=+442079460958&from=+14158675310"), "to=+4420***0958&from=+1415***5310");
        assert_eq!(mask_phones_in("/calls?To=%2B14155550100&n=%2b442079460958"), "/calls?To=%2B1415***0100&n=%2b4420***0958");
        assert_eq!(mask_phones_in("100%2B3 and 50%"), "100%2B3 and 50%");
        let untouched = "at 2026-11-21T08:00:00+00:00 call 0192f3a4-1234567-abcd attempt +3";
        assert_eq!(mask_phones_in(untouched), untouched);
    }
}
