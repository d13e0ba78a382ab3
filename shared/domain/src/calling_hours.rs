//! Legal calling hours: a contact may be called only inside the campaign's window, the federal
//! 08:00–21:00 of its own zone, and its US state's rule (hours per weekday, legal holidays), all at
//! once. The state rules and the area-code → state table ship as data files in `data/`.

use crate::{CallingWindow, Day, E164, ParseError};
use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, sync::LazyLock};

/// The federal bound for every contact: 08:00–21:00 in the callee's local time (47 CFR 64.1200(c)(1)).
pub const FEDERAL_HOURS: (NaiveTime, NaiveTime) = (hm(8, 0), hm(21, 0));

const fn hm(h: u32, m: u32) -> NaiveTime {
    match NaiveTime::from_hms_opt(h, m, 0) {
        Some(t) => t,
        None => panic!("a valid time of day"),
    }
}

/// A US state, district or territory, by its two-letter postal code (one the rules table knows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsState([u8; 2]);

impl UsState {
    /// A postal code (`FL`) or a name (`Florida`), in any case.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let input = input.trim();
        let code = match input.as_bytes() {
            [a, b] => Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()])),
            _ => None,
        };
        code.filter(|c| RULES.contains_key(c))
            .or_else(|| RULES.values().find(|r| r.name.eq_ignore_ascii_case(input)).map(|r| r.state))
            .ok_or_else(|| ParseError::new("state", format!("{input:?} is not a US state, district or territory (e.g. FL or Florida)")))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("postal codes are ASCII")
    }

    /// The state a NANP number's area code is in, when the table lists it.
    pub fn of_number(phone: &E164) -> Option<Self> {
        let national = phone.as_str().strip_prefix("+1")?;
        AREA_CODES.get(national.get(..3)?).copied()
    }

    /// Its calling rule.
    pub fn rule(self) -> &'static StateRule {
        RULES.get(&self).expect("every UsState has a rule: parse only accepts listed codes")
    }
}

impl std::fmt::Display for UsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for UsState {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<UsState> for String {
    fn from(s: UsState) -> String {
        s.as_str().to_string()
    }
}

crate::schema_as_wire_form!(UsState, String);

/// Local calling hours for each weekday, Monday first; None where the day has none.
type WeekHours = [Option<(NaiveTime, NaiveTime)>; 7];

/// One state's calling rule, as the data file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRule {
    pub state: UsState,
    pub name: &'static str,
    hours: WeekHours,
    /// No calls on legal holidays.
    pub closed_on_holidays: bool,
    /// The law (or summary) the rule comes from.
    pub source: &'static str,
}

/// A line of `data/us_calling_hours.txt` that is not a rule; the message says what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("us_calling_hours.txt line {line}: {reason}")]
pub struct RuleFileError {
    pub line: usize,
    pub reason: String,
}

/// Reads the rules file; every line must parse.
pub fn parse_rules(text: &'static str) -> Result<Vec<StateRule>, RuleFileError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| RuleFileError { line: i + 1, reason };
        let fields: Vec<&'static str> = line.split(" | ").map(str::trim).collect();
        let [code, name, hours, holidays, source] = fields[..] else {
            return Err(fail(format!("{} fields, not 5 (code | name | hours | holidays | source)", fields.len())));
        };
        let state = match code.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => UsState([*a, *b]),
            _ => return Err(fail(format!("{code:?} is not a two-letter postal code"))),
        };
        let hours = parse_week_hours(hours).map_err(fail)?;
        let closed_on_holidays = match holidays {
            "holidays closed" => true,
            "holidays open" => false,
            other => return Err(fail(format!("{other:?} is neither \"holidays closed\" nor \"holidays open\""))),
        };
        if source.is_empty() {
            return Err(fail("the source is empty".into()));
        }
        rules.push(StateRule { state, name, hours, closed_on_holidays, source });
    }
    Ok(rules)
}

fn parse_week_hours(text: &str) -> Result<WeekHours, String> {
    let mut hours: WeekHours = [None; 7];
    for group in text.split(',').map(str::trim) {
        let (days, span) = group.split_once(' ').ok_or_else(|| format!("{group:?} is not \"<days> HH:MM-HH:MM\""))?;
        let (start, end) = span.split_once('-').ok_or_else(|| format!("{span:?} is not HH:MM-HH:MM"))?;
        let time = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| format!("{t:?} is not HH:MM"));
        let (start, end) = (time(start)?, time(end)?);
        if start >= end {
            return Err(format!("{span}: the start is not before the end"));
        }
        let day = |d: &str| Day::ALL.iter().position(|day| day.as_str() == d).ok_or_else(|| format!("{d:?} is not mon … sun"));
        let (first, last) = match days.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(days)?, day(days)?),
        };
        if first > last {
            return Err(format!("{days:?} runs backwards"));
        }
        for slot in &mut hours[first..=last] {
            if slot.replace((start, end)).is_some() {
                return Err(format!("{days} is listed twice"));
            }
        }
    }
    Ok(hours)
}

static RULES: LazyLock<HashMap<UsState, StateRule>> = LazyLock::new(|| {
    let rules = parse_rules(include_str!("../data/us_calling_hours.txt")).expect("the shipped rules file parses (tested)");
    rules.into_iter().map(|r| (r.state, r)).collect()
});

static AREA_CODES: LazyLock<HashMap<&'static str, UsState>> = LazyLock::new(|| {
    let mut codes = HashMap::new();
    for line in include_str!("../data/nanp_states.txt").lines().filter(|l| !l.starts_with('#')) {
        let Some((state, list)) = line.split_once(':') else { continue };
        let state = UsState::parse(state).expect("the area-code table names states of the rules file (tested)");
        for code in list.split_whitespace() {
            codes.insert(code, state);
        }
    }
    codes
});

/// US federal legal holidays of `year`, each on its date and, when that is a weekend, on the
/// weekday it is observed (Saturday → Friday, Sunday → Monday).
fn federal_holidays(year: i32) -> Vec<NaiveDate> {
    let date = |m, d| NaiveDate::from_ymd_opt(year, m, d).expect("a valid date");
    let nth = |m, weekday, n| NaiveDate::from_weekday_of_month_opt(year, m, weekday, n).expect("a valid nth weekday");
    let last_monday_of_may = {
        let mut d = date(5, 31);
        while d.weekday() != Weekday::Mon {
            d = d.pred_opt().expect("a valid date");
        }
        d
    };
    let fixed = [date(1, 1), date(6, 19), date(7, 4), date(11, 11), date(12, 25)];
    let mut days = vec![
        nth(1, Weekday::Mon, 3),
        nth(2, Weekday::Mon, 3),
        last_monday_of_may,
        nth(9, Weekday::Mon, 1),
        nth(10, Weekday::Mon, 2),
        nth(11, Weekday::Thu, 4),
    ];
    for d in fixed {
        days.push(d);
        match d.weekday() {
            Weekday::Sat => days.push(d - TimeDelta::days(1)),
            Weekday::Sun => days.push(d + TimeDelta::days(1)),
            _ => {}
        }
    }
    days
}

/// Is `date` a legal holiday (a federal one, or its observed day)?
pub fn is_legal_holiday(date: NaiveDate) -> bool {
    // New Year's Day on a Saturday is observed on the last day of the year before
    federal_holidays(date.year()).contains(&date) || (date.month() == 12 && federal_holidays(date.year() + 1).contains(&date))
}

/// Where a contact is, for its calling hours: its zone and its US state, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallingArea {
    pub zone: Tz,
    pub state: Option<UsState>,
}

impl CallingArea {
    /// `zone|state` (the state empty when unknown): how stores key it.
    pub fn key(&self) -> String {
        format!("{}|{}", self.zone.name(), self.state.map(|s| s.to_string()).unwrap_or_default())
    }

    pub fn parse_key(key: &str) -> Result<Self, ParseError> {
        let (zone, state) = key.split_once('|').ok_or_else(|| ParseError::new("area", format!("{key:?} is not zone|state")))?;
        let zone = zone.parse::<Tz>().map_err(|_| ParseError::new("area", format!("{zone:?} is not a time zone")))?;
        let state = (!state.is_empty()).then(|| UsState::parse(state)).transpose()?;
        Ok(Self { zone, state })
    }
}

/// When a contact may be called: the campaign's window ∩ the federal hours ∩ its state's rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveWindow {
    hours: WeekHours,
    closed_on_holidays: bool,
}

impl EffectiveWindow {
    /// How far ahead the next opening is looked for (weekends and holidays in a row).
    const LOOKAHEAD_DAYS: i64 = 21;

    pub fn of(window: &CallingWindow, state: Option<UsState>) -> Self {
        let rule = state.map(UsState::rule);
        let mut hours: WeekHours = [None; 7];
        for (i, day) in Day::ALL.iter().enumerate() {
            if !window.days().contains(day) {
                continue;
            }
            let mut start = window.start().max(FEDERAL_HOURS.0);
            let mut end = window.end().min(FEDERAL_HOURS.1);
            if let Some(rule) = rule {
                let Some((s, e)) = rule.hours[i] else { continue };
                start = start.max(s);
                end = end.min(e);
            }
            hours[i] = (start < end).then_some((start, end));
        }
        Self { hours, closed_on_holidays: rule.is_some_and(|r| r.closed_on_holidays) }
    }

    /// True when no instant can ever fall inside it.
    pub fn is_empty(&self) -> bool {
        self.hours.iter().all(Option::is_none)
    }

    /// Its hours on the local date `date`, if calls are allowed that day.
    fn hours_on(&self, date: NaiveDate) -> Option<(NaiveTime, NaiveTime)> {
        if self.closed_on_holidays && is_legal_holiday(date) {
            return None;
        }
        self.hours[date.weekday().num_days_from_monday() as usize]
    }

    /// May a contact in `tz` be called at `at`?
    pub fn is_open_at(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let local = at.with_timezone(&tz);
        self.hours_on(local.date_naive()).is_some_and(|(start, end)| start <= local.time() && local.time() < end)
    }

    /// May a call start at `at` and still be inside the window `margin` later (it does not ring
    /// into the closing minutes)?
    pub fn is_open_for(&self, at: DateTime<Utc>, tz: Tz, margin: TimeDelta) -> bool {
        let later = at + margin;
        self.is_open_at(at, tz) && self.is_open_at(later, tz) && at.with_timezone(&tz).date_naive() == later.with_timezone(&tz).date_naive()
    }

    /// The first instant after `after` at which a day's window opens for a contact in `tz`.
    pub fn next_opening(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let today = after.with_timezone(&tz).date_naive();
        (0..=Self::LOOKAHEAD_DAYS).map(|d| today + TimeDelta::days(d)).find_map(|date| {
            let (start, end) = self.hours_on(date)?;
            let opening = local_instant(tz, date, start, end)?;
            (opening > after).then_some(opening)
        })
    }
}

/// The first real instant at local `start` on `date`, or just after a clock change skips it.
fn local_instant(tz: Tz, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> Option<DateTime<Utc>> {
    let mut time = start;
    while time < end {
        match tz.from_local_datetime(&date.and_time(time)) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return Some(t.with_timezone(&Utc)),
            LocalResult::None => time += TimeDelta::minutes(15),
        }
    }
    None
}

/// What the legal bounds take away from a campaign's window for contacts in `states` (None: no
/// known state), one sentence each; empty when nothing is narrowed.
pub fn narrowing_notes(window: &CallingWindow, states: impl IntoIterator<Item = Option<UsState>>) -> Vec<String> {
    let hm = |t: NaiveTime| t.format("%H:%M").to_string();
    let mut notes = Vec::new();
    if window.start() < FEDERAL_HOURS.0 || window.end() > FEDERAL_HOURS.1 {
        notes.push(format!(
            "the window {}–{} reaches past the federal calling hours: every contact is called only between {} and {} local time (47 CFR 64.1200(c)(1))",
            hm(window.start()),
            hm(window.end()),
            hm(FEDERAL_HOURS.0),
            hm(FEDERAL_HOURS.1)
        ));
    }
    let federal = EffectiveWindow::of(window, None);
    let mut seen = std::collections::BTreeSet::new();
    for state in states.into_iter().flatten() {
        if !seen.insert(state) {
            continue;
        }
        let narrowed = EffectiveWindow::of(window, Some(state));
        if narrowed == federal {
            continue;
        }
        let rule = state.rule();
        let mut parts: Vec<String> = Day::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| federal.hours[*i] != narrowed.hours[*i])
            .map(|(i, day)| match narrowed.hours[i] {
                Some((s, e)) => format!("{} {}–{}", day.as_str(), hm(s), hm(e)),
                None => format!("no calls on {}", day.as_str()),
            })
            .collect();
        if narrowed.closed_on_holidays && !federal.closed_on_holidays {
            parts.push("no calls on legal holidays".into());
        }
        notes.push(format!("contacts in {} ({}): {} ({})", rule.name, state, parts.join(", "), rule.source));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap().with_timezone(&Utc)
    }

    fn all_week() -> CallingWindow {
        CallingWindow::parse(Day::ALL, "00:00", "23:59").unwrap()
    }

    #[test]
    fn the_data_files_parse_whole_and_agree() {
        let rules = parse_rules(include_str!("../data/us_calling_hours.txt")).unwrap();
        assert_eq!(rules.len(), 56, "50 states, DC and 5 territories");
        assert_eq!(RULES.len(), rules.len(), "a state listed twice");
        for rule in &rules {
            assert!(!rule.source.is_empty() && !rule.name.is_empty(), "{:?}", rule.state);
            for (start, end) in rule.hours.iter().flatten() {
                assert!(*start >= FEDERAL_HOURS.0 && *end <= FEDERAL_HOURS.1, "{} is looser than federal", rule.state);
            }
        }
        let listed: Vec<&str> = include_str!("../data/nanp_states.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .flat_map(|(_, codes)| codes.split_whitespace())
            .collect();
        assert_eq!(listed.len(), AREA_CODES.len(), "an area code is listed twice");
        assert!(listed.iter().all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit())));
        let state = |n: &str| UsState::of_number(&E164::parse(n, None).unwrap()).map(|s| s.to_string());
        assert_eq!(state("+13055550100").as_deref(), Some("FL"));
        assert_eq!(state("+12125550100").as_deref(), Some("NY"));
        assert_eq!(state("+15125550100").as_deref(), Some("TX"));
        assert_eq!(state("+14165550100"), None, "Toronto");
        assert_eq!(state("+442079460958"), None);
        assert_eq!(UsState::parse(" florida ").unwrap().as_str(), "FL");
        assert_eq!(UsState::parse("ri").unwrap().rule().name, "Rhode Island");
        assert!(UsState::parse("XX").is_err() && UsState::parse("Ontario").is_err());
        assert!(parse_rules("ZZ | Z | mon-sun 09:00-08:00 | holidays open | x").is_err());
        assert!(parse_rules("ZZ | Z | mon-sun 08:00-20:00 | sometimes | x").is_err());
        assert!(parse_rules("ZZ | Z | fri-mon 08:00-20:00 | holidays open | x").is_err());
    }

    #[test]
    fn a_florida_number_at_20_30_is_not_called_a_new_york_one_is() {
        let ny = Tz::America__New_York;
        let window = CallingWindow::default();
        let evening = at(ny, 2027, 1, 13, 20, 30);
        let florida = EffectiveWindow::of(&window, Some(UsState::parse("FL").unwrap()));
        let new_york = EffectiveWindow::of(&window, Some(UsState::parse("NY").unwrap()));
        assert!(!florida.is_open_at(evening, ny));
        assert!(new_york.is_open_at(evening, ny));
        assert!(!new_york.is_open_at(at(ny, 2027, 1, 13, 21, 0), ny));
        assert!(florida.is_open_at(at(ny, 2027, 1, 13, 19, 57), ny));
        assert!(!florida.is_open_for(at(ny, 2027, 1, 13, 19, 59), ny, TimeDelta::seconds(120)), "it would ring into the close");
        assert_eq!(florida.next_opening(evening, ny), Some(at(ny, 2027, 1, 14, 8, 0)));
    }

    #[test]
    fn sunday_and_holiday_rules() {
        let (chicago, ny) = (Tz::America__Chicago, Tz::America__New_York);
        let everyday = all_week();
        let sunday = |tz| at(tz, 2027, 1, 17, 11, 0);
        let texas = EffectiveWindow::of(&everyday, Some(UsState::parse("TX").unwrap()));
        assert!(!texas.is_open_at(sunday(chicago), chicago), "Texas: Sundays from noon");
        assert!(texas.is_open_at(at(chicago, 2027, 1, 17, 12, 0), chicago));
        assert_eq!(texas.next_opening(sunday(chicago), chicago), Some(at(chicago, 2027, 1, 17, 12, 0)));
        let utah = EffectiveWindow::of(&everyday, Some(UsState::parse("UT").unwrap()));
        assert!(!utah.is_open_at(sunday(Tz::America__Denver), Tz::America__Denver), "Utah: no Sundays");
        // Monday 18 January 2027 is Martin Luther King Jr. Day: Utah and Louisiana are closed, New York is not
        let mlk = |tz| at(tz, 2027, 1, 18, 11, 0);
        assert!(!utah.is_open_at(mlk(Tz::America__Denver), Tz::America__Denver));
        assert_eq!(utah.next_opening(sunday(Tz::America__Denver), Tz::America__Denver), Some(at(Tz::America__Denver, 2027, 1, 19, 8, 0)));
        let new_york = EffectiveWindow::of(&everyday, Some(UsState::parse("NY").unwrap()));
        assert!(new_york.is_open_at(mlk(ny), ny) && new_york.is_open_at(sunday(ny), ny));
        let rhode_island = EffectiveWindow::of(&everyday, Some(UsState::parse("RI").unwrap()));
        assert!(!rhode_island.is_open_at(at(ny, 2027, 1, 16, 17, 30), ny), "Saturdays 10–17");
        assert!(rhode_island.is_open_at(at(ny, 2027, 1, 15, 17, 30), ny), "weekdays 9–18");
    }

    #[test]
    fn legal_holidays_include_their_observed_days() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert!(is_legal_holiday(d(2026, 7, 3)), "4 July 2026 is a Saturday: observed Friday 3 July");
        assert!(is_legal_holiday(d(2026, 7, 4)));
        assert!(is_legal_holiday(d(2027, 12, 31)), "1 January 2028 is a Saturday: observed on 31 December 2027");
        assert!(is_legal_holiday(d(2026, 11, 26)), "Thanksgiving 2026");
        assert!(is_legal_holiday(d(2027, 5, 31)), "Memorial Day 2027");
        assert!(!is_legal_holiday(d(2026, 11, 24)));
    }

    #[test]
    fn notes_say_what_the_law_narrows() {
        let late = CallingWindow::parse(Day::ALL, "07:00", "22:00").unwrap();
        let notes = narrowing_notes(&late, [None, UsState::parse("FL").ok(), UsState::parse("CA").ok(), UsState::parse("FL").ok()]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("08:00 and 21:00"), "{}", notes[0]);
        assert!(notes[1].starts_with("contacts in Florida (FL): mon 08:00–20:00") && notes[1].contains("501.616"), "{}", notes[1]);
        assert!(narrowing_notes(&CallingWindow::default(), [UsState::parse("NY").ok()]).is_empty());
        let utah = narrowing_notes(&CallingWindow::default(), [UsState::parse("UT").ok()]);
        assert!(utah[0].contains("no calls on legal holidays"), "{utah:?}");
        assert_eq!(CallingArea::parse_key(&CallingArea { zone: Tz::Europe__Paris, state: None }.key()).unwrap().zone, Tz::Europe__Paris);
    }

    const ZONES: &[&str] =
        &["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles", "Pacific/Honolulu"];

    fn state() -> impl Strategy<Value = Option<UsState>> {
        let mut states: Vec<UsState> = RULES.keys().copied().collect();
        states.sort();
        proptest::option::of(proptest::sample::select(states))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the instant, zone (DST changes included) and state, an open window is inside
        /// the campaign's window, the federal hours and the state's rule at once.
        #[test]
        fn open_means_inside_every_bound(zone in proptest::sample::select(ZONES), state in state(), secs in 1_767_225_600i64..1_861_920_000) {
            let tz: Tz = zone.parse().unwrap();
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let window = CallingWindow::default();
            let local = now.with_timezone(&tz);
            let open = EffectiveWindow::of(&window, state).is_open_at(now, tz);
            let federal = FEDERAL_HOURS.0 <= local.time() && local.time() < FEDERAL_HOURS.1;
            let by_rule = state.is_none_or(|s| {
                let rule = s.rule();
                let day = Day::from(local.weekday());
                rule.hours[day as usize].is_some_and(|(a, b)| a <= local.time() && local.time() < b)
                    && !(rule.closed_on_holidays && is_legal_holiday(local.date_naive()))
            });
            prop_assert_eq!(open, window.is_open_at(now, tz) && federal && by_rule);
        }

        /// The next opening is open, in the future, and nothing between now and it is open.
        #[test]
        fn the_next_opening_is_the_first_open_minute(zone in proptest::sample::select(ZONES), state in state(), secs in 1_767_225_600i64..1_861_920_000) {
            let tz: Tz = zone.parse().unwrap();
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let window = EffectiveWindow::of(&CallingWindow::default(), state);
            let next = window.next_opening(now, tz).expect("every rule opens within three weeks");
            prop_assert!(next > now && window.is_open_at(next, tz));
            let closed_until = if window.is_open_at(now, tz) {
                // open now: the next opening is a later day's; the rest of today may be open
                return Ok(());
            } else { next };
            let mut t = now + TimeDelta::minutes(15);
            while t < closed_until {
                prop_assert!(!window.is_open_at(t, tz), "open at {} before the next opening {}", t, next);
                t += TimeDelta::minutes(15);
            }
        }
    }
}
