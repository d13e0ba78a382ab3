//! Dialing policy values: the concurrency cap, the calling window and the retry policy.

use crate::ParseError;
use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How many calls of a campaign may be active at once: 1 to 50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "i64", into = "u32")]
#[schema(value_type = u32, minimum = 1, maximum = 50, example = 8)]
pub struct Cap(u32);

impl Cap {
    pub const MAX: u32 = 50;
    pub const DEFAULT: Cap = Cap(8);

    pub fn parse(value: i64) -> Result<Self, ParseError> {
        match u32::try_from(value) {
            Ok(v @ 1..=Self::MAX) => Ok(Self(v)),
            _ => Err(ParseError::new("cap", format!("{value} is outside 1–{}", Self::MAX))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Cap {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for Cap {
    type Error = ParseError;
    fn try_from(v: i64) -> Result<Self, ParseError> {
        Self::parse(v)
    }
}

impl From<Cap> for u32 {
    fn from(c: Cap) -> u32 {
        c.0
    }
}

/// A day of the week, written `mon` … `sun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// Every day, Monday first: `day as usize` is its place here.
    pub const ALL: [Day; 7] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat, Day::Sun];

    /// Its wire name, `mon` … `sun`.
    pub fn as_str(self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }
}

impl From<Weekday> for Day {
    fn from(w: Weekday) -> Self {
        match w {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        }
    }
}

/// The days and local hours in which a contact may be called, read in the contact's own time
/// zone. `start` is inclusive, `end` exclusive; windows do not cross midnight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CallingWindowSpec", into = "CallingWindowSpec")]
pub struct CallingWindow {
    days: BTreeSet<Day>,
    start: NaiveTime,
    end: NaiveTime,
}

/// The wire form of a calling window: `{"days":["mon",…],"start":"08:00","end":"21:00"}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallingWindowSpec {
    pub days: Vec<Day>,
    #[schema(example = "08:00")]
    pub start: String,
    #[schema(example = "21:00")]
    pub end: String,
}

impl CallingWindow {
    pub fn parse(days: impl IntoIterator<Item = Day>, start: &str, end: &str) -> Result<Self, ParseError> {
        let time = |field: &'static str, s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| ParseError::new(field, format!("{s:?} is not a local time written HH:MM")))
        };
        let (start, end) = (time("callingWindow.start", start)?, time("callingWindow.end", end)?);
        if start >= end {
            return Err(ParseError::new(
                "callingWindow",
                format!("start {} must be before end {} (windows do not cross midnight)", start.format("%H:%M"), end.format("%H:%M")),
            ));
        }
        Ok(Self { days: days.into_iter().collect(), start, end })
    }

    pub fn days(&self) -> &BTreeSet<Day> {
        &self.days
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// True when no instant can ever fall inside the window.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Is a contact living in `tz` callable at instant `at`?
    pub fn is_open_at(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let local = at.with_timezone(&tz);
        let time = local.time();
        self.days.contains(&Day::from(local.weekday())) && self.start <= time && time < self.end
    }
}

/// Monday to Saturday, 08:00–21:00 local: the TCPA hours, without Sundays.
impl Default for CallingWindow {
    fn default() -> Self {
        Self::parse([Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat], "08:00", "21:00").expect("the default window is valid")
    }
}

impl TryFrom<CallingWindowSpec> for CallingWindow {
    type Error = ParseError;
    fn try_from(spec: CallingWindowSpec) -> Result<Self, ParseError> {
        Self::parse(spec.days, &spec.start, &spec.end)
    }
}

impl From<CallingWindow> for CallingWindowSpec {
    fn from(w: CallingWindow) -> Self {
        Self { days: w.days.into_iter().collect(), start: w.start.format("%H:%M").to_string(), end: w.end.format("%H:%M").to_string() }
    }
}

crate::schema_as_wire_form!(CallingWindow, CallingWindowSpec);
crate::schema_as_wire_form!(RetryPolicy, RetryPolicySpec);

/// Outcomes of an attempt that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOutcome {
    Busy,
    NoAnswer,
    Voicemail,
    Failed,
}

/// How many times a contact is tried, how far apart, and after which outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RetryPolicySpec", into = "RetryPolicySpec")]
pub struct RetryPolicy {
    max_attempts: u32,
    delay: chrono::Duration,
    retry_on: BTreeSet<RetryOutcome>,
}

/// The wire form of a retry policy.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicySpec {
    #[schema(minimum = 1, maximum = 10, example = 3)]
    pub max_attempts: i64,
    #[schema(minimum = 0, maximum = 10080, example = 30)]
    pub delay_minutes: i64,
    pub retry_on: Vec<RetryOutcome>,
}

impl RetryPolicy {
    pub const MAX_ATTEMPTS: u32 = 10;
    /// One week: longer delays are almost always a unit mistake.
    pub const MAX_DELAY_MINUTES: i64 = 7 * 24 * 60;

    pub fn parse(max_attempts: i64, delay_minutes: i64, retry_on: impl IntoIterator<Item = RetryOutcome>) -> Result<Self, ParseError> {
        let max_attempts = match u32::try_from(max_attempts) {
            Ok(v @ 1..=Self::MAX_ATTEMPTS) => v,
            _ => return Err(ParseError::new("retryPolicy.maxAttempts", format!("{max_attempts} is outside 1–{}", Self::MAX_ATTEMPTS))),
        };
        if !(0..=Self::MAX_DELAY_MINUTES).contains(&delay_minutes) {
            return Err(ParseError::new(
                "retryPolicy.delayMinutes",
                format!("{delay_minutes} is outside 0–{} minutes", Self::MAX_DELAY_MINUTES),
            ));
        }
        Ok(Self { max_attempts, delay: chrono::Duration::minutes(delay_minutes), retry_on: retry_on.into_iter().collect() })
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub fn delay(&self) -> chrono::Duration {
        self.delay
    }

    pub fn retries(&self, outcome: RetryOutcome) -> bool {
        self.retry_on.contains(&outcome)
    }
}

/// Three attempts, 30 minutes apart, retrying busy, no-answer and failed calls.
impl Default for RetryPolicy {
    fn default() -> Self {
        Self::parse(3, 30, [RetryOutcome::Busy, RetryOutcome::NoAnswer, RetryOutcome::Failed]).expect("the default policy is valid")
    }
}

impl TryFrom<RetryPolicySpec> for RetryPolicy {
    type Error = ParseError;
    fn try_from(s: RetryPolicySpec) -> Result<Self, ParseError> {
        Self::parse(s.max_attempts, s.delay_minutes, s.retry_on)
    }
}

impl From<RetryPolicy> for RetryPolicySpec {
    fn from(p: RetryPolicy) -> Self {
        Self { max_attempts: p.max_attempts.into(), delay_minutes: p.delay.num_minutes(), retry_on: p.retry_on.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, LocalResult, NaiveDate, Offset, TimeZone};
    use proptest::prelude::*;

    #[test]
    fn cap_is_one_to_fifty() {
        assert!(Cap::parse(0).is_err());
        assert!(Cap::parse(51).is_err());
        assert!(Cap::parse(-3).is_err());
        assert_eq!(Cap::parse(50).unwrap().get(), 50);
        assert!(serde_json::from_str::<Cap>("0").is_err());
        assert_eq!(serde_json::from_str::<Cap>("12").unwrap().get(), 12);
    }

    #[test]
    fn window_parses_and_refuses_bad_hours() {
        let w: CallingWindow = serde_json::from_str(r#"{"days":["mon","fri"],"start":"09:30","end":"17:00"}"#).unwrap();
        assert_eq!(w.days().len(), 2);
        assert_eq!(serde_json::to_value(&w).unwrap()["start"], "09:30");
        let err = CallingWindow::parse([Day::Mon], "21:00", "08:00").unwrap_err();
        assert!(err.reason.contains("before end"), "{err}");
        assert!(CallingWindow::parse([Day::Mon], "8am", "21:00").is_err());
        assert!(CallingWindow::parse([], "08:00", "21:00").unwrap().is_empty());
        for (i, day) in Day::ALL.into_iter().enumerate() {
            assert_eq!(serde_json::to_value(day).unwrap(), day.as_str());
            assert_eq!(day as usize, i);
        }
    }

    #[test]
    fn default_window_is_8_to_21_without_sunday() {
        let w = CallingWindow::default();
        let ny: Tz = "America/New_York".parse().unwrap();
        let at = |y, m, d, h, min| ny.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc);
        assert!(!w.is_open_at(at(2026, 11, 20, 7, 59), ny));
        assert!(w.is_open_at(at(2026, 11, 20, 8, 0), ny));
        assert!(w.is_open_at(at(2026, 11, 20, 20, 59), ny));
        assert!(!w.is_open_at(at(2026, 11, 20, 21, 0), ny));
        assert!(!w.is_open_at(at(2026, 11, 22, 12, 0), ny), "Sunday");
    }

    #[test]
    fn retry_policy_defaults_and_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.delay(), Duration::minutes(30));
        assert!(p.retries(RetryOutcome::Busy) && !p.retries(RetryOutcome::Voicemail));
        assert!(RetryPolicy::parse(0, 30, []).is_err());
        assert!(RetryPolicy::parse(11, 30, []).is_err());
        assert!(RetryPolicy::parse(3, -1, []).is_err());
        let json = r#"{"maxAttempts":2,"delayMinutes":5,"retryOn":["voicemail"]}"#;
        let p: RetryPolicy = serde_json::from_str(json).unwrap();
        assert!(p.retries(RetryOutcome::Voicemail));
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
    }

    const ZONES: &[&str] = &[
        "America/New_York",
        "America/Los_Angeles",
        "America/Phoenix",
        "America/Sao_Paulo",
        "America/Santiago",
        "Europe/London",
        "Europe/Berlin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Pacific/Honolulu",
        "Asia/Kolkata",
        "Asia/Tokyo",
        "Pacific/Auckland",
    ];

    fn zone() -> impl Strategy<Value = Tz> {
        proptest::sample::select(ZONES).prop_map(|z| z.parse::<Tz>().unwrap())
    }

    fn window() -> impl Strategy<Value = CallingWindow> {
        (proptest::sample::subsequence(Day::ALL.to_vec(), 0..=7), 0u32..23 * 60)
            .prop_flat_map(|(days, start)| (Just(days), Just(start), (start + 1)..=(23 * 60 + 59)))
            .prop_map(|(days, s, e)| {
                let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
                CallingWindow::parse(days, &hm(s), &hm(e)).unwrap()
            })
    }

    /// Local wall-clock time computed from the zone's UTC offset alone: an oracle independent of
    /// `with_timezone`.
    fn oracle_open(w: &CallingWindow, at: DateTime<Utc>, tz: Tz) -> bool {
        let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
        let local = at.naive_utc() + Duration::seconds(offset.into());
        w.days().contains(&Day::from(local.weekday())) && w.start() <= local.time() && local.time() < w.end()
    }

    /// Days on which `tz` changes its UTC offset, between 2000 and 2040.
    fn transition_days(tz: Tz) -> Vec<NaiveDate> {
        let mut days = Vec::new();
        let mut d = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        let offset = |date: NaiveDate| tz.offset_from_utc_datetime(&date.and_hms_opt(12, 0, 0).unwrap()).fix();
        while d.year() < 2040 {
            if offset(d) != offset(d + Duration::days(1)) {
                days.push(d + Duration::days(1));
            }
            d += Duration::days(1);
        }
        days
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn window_matches_the_offset_oracle_at_any_instant(w in window(), tz in zone(), secs in 946_684_800i64..2_208_988_800) {
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            prop_assert_eq!(w.is_open_at(at, tz), oracle_open(&w, at, tz));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// On the day clocks change, a 08:00–21:00 window is still exactly 13 real hours long
        /// (US and EU change at night), and it opens at local 08:00 sharp.
        #[test]
        fn window_keeps_its_length_across_dst_changes(zone in proptest::sample::select(&["America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin", "Australia/Sydney", "Pacific/Auckland"][..]), pick in any::<proptest::sample::Index>()) {
            let tz: Tz = zone.parse().unwrap();
            let days = transition_days(tz);
            prop_assume!(!days.is_empty());
            let day = days[pick.index(days.len())];
            let w = CallingWindow::parse(Day::ALL, "08:00", "21:00").unwrap();
            let midnight = match tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap()) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                LocalResult::None => unreachable!("these zones change clocks away from midnight"),
            };
            let open_minutes = (0..27 * 60).filter(|m| w.is_open_at(midnight + Duration::minutes(*m), tz)).count();
            prop_assert_eq!(open_minutes, 13 * 60);
            let eight = tz.from_local_datetime(&day.and_hms_opt(8, 0, 0).unwrap()).single().unwrap().with_timezone(&Utc);
            prop_assert!(w.is_open_at(eight, tz));
            prop_assert!(!w.is_open_at(eight - Duration::minutes(1), tz));
        }
    }
}
