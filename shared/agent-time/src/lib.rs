//! The agent's time tool, pure: what time it is in a zone (the weekday, whether business and
//! calling hours are open) and what a spoken time means there — "tomorrow", "next Tuesday",
//! "in 2 hours", "Friday 3pm" — as absolute local dates and times. One crate, built natively for
//! `/tools/time` and for wasm by the `edge-time` Spin component, so both answer the same JSON.

use chrono::{DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

/// Business hours: Monday to Friday, from 09:00 until 17:00 local time.
pub const BUSINESS_HOURS: (u32, u32) = (9, 17);
/// US federal calling hours (TCPA): from 08:00 until 21:00 at the called party's location.
pub const CALLING_HOURS: (u32, u32) = (8, 21);

/// The time tool's answer: now in the zone and, when the agent passed a spoken time, what it means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TimeAnswer {
    /// The IANA time zone.
    pub timezone: String,
    #[serde(flatten)]
    pub now: Moment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
}

/// An instant as the zone's clock shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Moment {
    /// RFC 3339 with the zone's offset.
    pub local_time: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub weekday: String,
    /// How the agent may say it: "Tuesday, 24 November 2026, 3:00 PM".
    pub spoken: String,
    /// Monday to Friday, 09:00–17:00 local.
    pub business_hours: bool,
    /// US federal calling hours, 08:00–21:00 local.
    pub calling_hours: bool,
}

/// What a spoken time means: a day, and an instant when a time of day was said (or implied, as
/// by "in 2 hours").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// What the agent passed.
    pub phrase: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub weekday: String,
    /// The instant, when the phrase gives a time of day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Moment>,
    /// How the agent may say it.
    pub spoken: String,
    /// Set when the clock skips the time asked for (a spring-forward gap) and the answer is the
    /// first time after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a spoken time could not be read; the message is for the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotUnderstood(pub String);

impl std::fmt::Display for NotUnderstood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotUnderstood {}

/// The zone named `name` (IANA, e.g. `America/New_York`).
pub fn zone(name: &str) -> Result<Tz, NotUnderstood> {
    name.trim().parse().map_err(|_| NotUnderstood(format!("{name:?} is not an IANA time zone, such as America/New_York")))
}

/// The instant `raw` names (RFC 3339, e.g. `2026-11-24T15:00:00Z`).
pub fn instant(raw: &str) -> Result<DateTime<Utc>, NotUnderstood> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| NotUnderstood(format!("{raw:?} is not an RFC 3339 instant, e.g. 2026-11-24T15:00:00Z")))
}

/// Now (`now`) in `zone`, and what `phrase` means there when given.
pub fn answer(now: DateTime<Utc>, zone: Tz, phrase: Option<&str>) -> Result<TimeAnswer, NotUnderstood> {
    let resolved = phrase.filter(|p| !p.trim().is_empty()).map(|p| resolve(p, now, zone)).transpose()?;
    Ok(TimeAnswer { timezone: zone.name().to_string(), now: moment(now.with_timezone(&zone)), resolved })
}

/// The instant as `zone`'s clock shows it.
pub fn moment(local: DateTime<Tz>) -> Moment {
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    let hour = local.hour();
    Moment {
        local_time: local.to_rfc3339(),
        date: local.date_naive().to_string(),
        weekday: local.format("%A").to_string(),
        spoken: local.format("%A, %-d %B %Y, %-I:%M %p").to_string(),
        business_hours: weekday && (BUSINESS_HOURS.0..BUSINESS_HOURS.1).contains(&hour),
        calling_hours: (CALLING_HOURS.0..CALLING_HOURS.1).contains(&hour),
    }
}

/// What `phrase` means at `now` in `zone`.
///
/// Days: `today`, `tonight`, `tomorrow`, `day after tomorrow`, a weekday (`friday`, `this friday`,
/// `next friday`: the coming one, never today), `next week` (its Monday), a date (`2026-12-01`,
/// `december 1`, `1 dec`, the next one to come when the year is left out). Times: `3pm`, `3:30 pm`,
/// `15:00`, `noon`, `midnight`, `morning` (09:00), `afternoon` (14:00), `evening` (18:00); a time
/// alone is today's when still to come, else tomorrow's. Spans: `in 20 minutes`, `in 2 hours`,
/// `in 3 days`, `in a week` (minutes and hours are elapsed time, days and weeks calendar days at
/// the same clock time). `now` is now.
pub fn resolve(phrase: &str, now: DateTime<Utc>, zone: Tz) -> Result<Resolved, NotUnderstood> {
    let local_now = now.with_timezone(&zone);
    let today = local_now.date_naive();
    let words = words(phrase);
    let not_understood = || {
        NotUnderstood(format!(
            "{phrase:?} is not a time I can read; say it like \"tomorrow 3pm\", \"next Tuesday\", \"in 2 hours\" or \"2026-12-01 15:00\""
        ))
    };
    if words.is_empty() {
        return Err(not_understood());
    }
    if words == ["now"] {
        return Ok(at_instant(phrase, local_now));
    }
    if words[0] == "in" {
        let (amount, unit) = span(&words[1..]).ok_or_else(not_understood)?;
        let at = match unit {
            Unit::Minutes => now + TimeDelta::minutes(amount),
            Unit::Hours => now + TimeDelta::hours(amount),
            Unit::Days | Unit::Weeks => {
                let days = if unit == Unit::Weeks { amount * 7 } else { amount };
                let date = today.checked_add_days(Days::new(days as u64)).ok_or_else(not_understood)?;
                return Ok(on_day(phrase, date, Some(local_now.time()), zone));
            }
        };
        return Ok(at_instant(phrase, at.with_timezone(&zone)));
    }
    let (mut day, mut time) = (None, None);
    let mut rest = words.as_slice();
    while !rest.is_empty() {
        if let Some((d, used)) = day_of(rest, today) {
            if day.replace(d).is_some() {
                return Err(not_understood());
            }
            rest = &rest[used..];
        } else if let Some((t, used)) = time_of(rest) {
            if time.replace(t).is_some() {
                return Err(not_understood());
            }
            rest = &rest[used..];
        } else {
            return Err(not_understood());
        }
    }
    let (date, time) = match (day, time) {
        (Some(Day::Tonight(date)), None) => (date, Some(NaiveTime::from_hms_opt(19, 0, 0).unwrap_or_default())),
        (Some(Day::Tonight(date) | Day::On(date)), time) => (date, time),
        (None, Some(time)) => {
            let still_today = resolve_local(today.and_time(time), zone).0 > now;
            (if still_today { today } else { today.succ_opt().ok_or_else(not_understood)? }, Some(time))
        }
        (None, None) => return Err(not_understood()),
    };
    Ok(on_day(phrase, date, time, zone))
}

fn at_instant(phrase: &str, local: DateTime<Tz>) -> Resolved {
    let at = moment(local);
    Resolved {
        phrase: phrase.to_string(),
        date: at.date.clone(),
        weekday: at.weekday.clone(),
        spoken: at.spoken.clone(),
        at: Some(at),
        note: None,
    }
}

fn on_day(phrase: &str, date: NaiveDate, time: Option<NaiveTime>, zone: Tz) -> Resolved {
    let Some(time) = time else {
        return Resolved {
            phrase: phrase.to_string(),
            date: date.to_string(),
            weekday: date.format("%A").to_string(),
            spoken: date.format("%A, %-d %B %Y").to_string(),
            at: None,
            note: None,
        };
    };
    let (at, shifted) = resolve_local(date.and_time(time), zone);
    let mut resolved = at_instant(phrase, at.with_timezone(&zone));
    if shifted {
        resolved.note = Some(format!(
            "{} does not happen on {date} in {} (the clocks go forward); this is the first time after it",
            time.format("%H:%M"),
            zone.name()
        ));
    }
    resolved
}

/// The instant a local date and time names in `zone`: the earlier of two when the clocks go back;
/// the first instant after a spring-forward gap (true) when it names none.
fn resolve_local(local: NaiveDateTime, zone: Tz) -> (DateTime<Utc>, bool) {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => (at.with_timezone(&Utc), false),
        LocalResult::Ambiguous(earlier, _) => (earlier.with_timezone(&Utc), false),
        LocalResult::None => {
            // the gap ends at the first whole minute that exists; gaps are at most a few hours
            let mut later = local;
            loop {
                later += TimeDelta::minutes(1);
                if let Some(at) = zone.from_local_datetime(&later).earliest() {
                    return (at.with_timezone(&Utc), true);
                }
            }
        }
    }
}

/// Lower-case words, with punctuation and filler (`at`, `on`, `the`, `of`) left out and `a.m.`
/// read as `am`.
fn words(phrase: &str) -> Vec<String> {
    let lowered = phrase.to_lowercase().replace("a.m.", "am").replace("p.m.", "pm");
    lowered
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_matches(|c: char| matches!(c, '.' | '!' | '?' | '"' | '\'')))
        .filter(|w| !w.is_empty() && !matches!(*w, "at" | "on" | "the" | "of" | "around" | "about"))
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Minutes,
    Hours,
    Days,
    Weeks,
}

/// `2 hours`, `an hour`, `twenty minutes`, `half an hour`, `a week`.
fn span(words: &[String]) -> Option<(i64, Unit)> {
    if words == ["half", "an", "hour"] || words == ["half", "hour"] {
        return Some((30, Unit::Minutes));
    }
    let [amount, unit] = words else { return None };
    let amount = number(amount)?;
    let unit = match unit.as_str() {
        "minute" | "minutes" | "min" | "mins" => Unit::Minutes,
        "hour" | "hours" | "hr" | "hrs" => Unit::Hours,
        "day" | "days" => Unit::Days,
        "week" | "weeks" => Unit::Weeks,
        _ => return None,
    };
    (1..=10_000).contains(&amount).then_some((amount, unit))
}

fn number(word: &str) -> Option<i64> {
    const WORDS: [&str; 13] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    match word {
        "a" | "an" => Some(1),
        "fifteen" => Some(15),
        "twenty" => Some(20),
        "thirty" => Some(30),
        "forty-five" => Some(45),
        _ => WORDS.iter().position(|w| *w == word).map(|n| n as i64).or_else(|| word.parse().ok()),
    }
}

enum Day {
    On(NaiveDate),
    /// The evening of that day, 19:00 unless a time is given.
    Tonight(NaiveDate),
}

/// A day named at the start of `words`, and how many words it took.
fn day_of(words: &[String], today: NaiveDate) -> Option<(Day, usize)> {
    let first = words[0].as_str();
    let second = words.get(1).map(String::as_str);
    match (first, second) {
        ("today", _) => Some((Day::On(today), 1)),
        ("tonight", _) => Some((Day::Tonight(today), 1)),
        ("tomorrow", _) => Some((Day::On(today.succ_opt()?), 1)),
        ("day", Some("after")) if words.get(2).map(String::as_str) == Some("tomorrow") => {
            Some((Day::On(today.checked_add_days(Days::new(2))?), 3))
        }
        ("next", Some("week")) => {
            let to_monday = 7 - u64::from(today.weekday().num_days_from_monday());
            Some((Day::On(today.checked_add_days(Days::new(to_monday))?), 2))
        }
        ("this" | "next" | "coming", Some(day)) => weekday(day).and_then(|d| coming(today, d)).map(|date| (Day::On(date), 2)),
        _ => {
            if let Some(day) = weekday(first) {
                return coming(today, day).map(|date| (Day::On(date), 1));
            }
            if let Ok(date) = NaiveDate::parse_from_str(first, "%Y-%m-%d") {
                return Some((Day::On(date), 1));
            }
            // `december 1`, `dec 1st`, `1 december`, optionally with a year after
            let (month, day) = match (month(first), second.and_then(day_number), day_number(first), second.and_then(month)) {
                (Some(m), Some(d), ..) | (_, _, Some(d), Some(m)) => (m, d),
                _ => return None,
            };
            let year = words.get(2).and_then(|w| w.parse::<i32>().ok()).filter(|y| (1900..=2200).contains(y));
            let date = match year {
                Some(year) => NaiveDate::from_ymd_opt(year, month, day)?,
                None => [today.year(), today.year() + 1, today.year() + 4]
                    .into_iter()
                    .filter_map(|y| NaiveDate::from_ymd_opt(y, month, day))
                    .find(|d| *d >= today)?,
            };
            Some((Day::On(date), 2 + usize::from(year.is_some())))
        }
    }
}

/// The next `day` after `today` (1 to 7 days on).
fn coming(today: NaiveDate, day: Weekday) -> Option<NaiveDate> {
    let ahead = (7 + day.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
    today.checked_add_days(Days::new(u64::from(if ahead == 0 { 7 } else { ahead })))
}

fn weekday(word: &str) -> Option<Weekday> {
    let day = match word.trim_end_matches('s') {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    };
    Some(day)
}

fn month(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] =
        ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];
    MONTHS.iter().position(|m| *m == word || (word.len() >= 3 && m.starts_with(word))).map(|i| i as u32 + 1)
}

/// `1`, `1st`, `22nd`, `3rd`, `4th`.
fn day_number(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    let n: u32 = digits.parse().ok()?;
    (matches!(suffix, "" | "st" | "nd" | "rd" | "th") && (1..=31).contains(&n)).then_some(n)
}

/// A time of day at the start of `words`, and how many words it took.
fn time_of(words: &[String]) -> Option<(NaiveTime, usize)> {
    let first = words[0].as_str();
    let named = match first {
        "noon" | "midday" => Some(12),
        "midnight" => Some(0),
        "morning" => Some(9),
        "afternoon" => Some(14),
        "evening" => Some(18),
        _ => None,
    };
    if let Some(hour) = named {
        return Some((NaiveTime::from_hms_opt(hour, 0, 0)?, 1));
    }
    // `3pm`, `3:30pm`, or `3` / `3:30` followed by `pm`; or `15:00`
    let (clock, meridiem, used) = if let Some(clock) = first.strip_suffix("am") {
        (clock, Some(false), 1)
    } else if let Some(clock) = first.strip_suffix("pm") {
        (clock, Some(true), 1)
    } else {
        match words.get(1).map(String::as_str) {
            Some("am") => (first, Some(false), 2),
            Some("pm") => (first, Some(true), 2),
            Some("o'clock" | "oclock") => (first, None, 2),
            _ => (first, None, 1),
        }
    };
    let (hour, minute) = match clock.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok().filter(|m| *m < 60 && clock.len() - h.len() == 3)?),
        // a bare number is a time only with am/pm: "3" alone could be anything
        None if meridiem.is_some() => (clock.parse::<u32>().ok()?, 0),
        None => return None,
    };
    let hour = match meridiem {
        Some(pm) if (1..=12).contains(&hour) => hour % 12 + if pm { 12 } else { 0 },
        Some(_) => return None,
        None if hour < 24 => hour,
        None => return None,
    };
    Some((NaiveTime::from_hms_opt(hour, minute, 0)?, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Australia, Europe};
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(r: &Resolved) -> &str {
        &r.at.as_ref().expect("a time").local_time
    }

    #[test]
    fn the_answer_says_the_local_time_weekday_and_hours() {
        // Tuesday 24 November 2026, 15:05 UTC: 10:05 in New York
        let answer = answer(utc(2026, 11, 24, 15, 5), America::New_York, None).unwrap();
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "timezone": "America/New_York", "localTime": "2026-11-24T10:05:00-05:00", "date": "2026-11-24",
                "weekday": "Tuesday", "spoken": "Tuesday, 24 November 2026, 10:05 AM", "businessHours": true, "callingHours": true
            })
        );
        let late = moment(utc(2026, 11, 28, 2, 30).with_timezone(&America::New_York));
        assert_eq!((late.weekday.as_str(), late.business_hours, late.calling_hours), ("Friday", false, false));
    }

    #[test]
    fn spoken_times_resolve_in_the_contacts_zone() {
        let now = utc(2026, 11, 24, 15, 5); // Tuesday 10:05 in New York
        let ny = America::New_York;
        let r = |p: &str| resolve(p, now, ny).unwrap();
        assert_eq!(local(&r("tomorrow 3pm")), "2026-11-25T15:00:00-05:00");
        assert_eq!(local(&r("Tomorrow at 3:30 p.m.")), "2026-11-25T15:30:00-05:00");
        assert_eq!(local(&r("Friday 3pm")), "2026-11-27T15:00:00-05:00");
        assert_eq!(local(&r("3pm friday")), "2026-11-27T15:00:00-05:00");
        assert_eq!(r("next Tuesday").date, "2026-12-01", "the coming Tuesday, never today");
        assert_eq!(r("tuesday").date, "2026-12-01");
        assert_eq!(r("this thursday").date, "2026-11-26");
        assert_eq!(r("next week").date, "2026-11-30");
        assert_eq!(local(&r("in 2 hours")), "2026-11-24T12:05:00-05:00");
        assert_eq!(local(&r("in twenty minutes")), "2026-11-24T10:25:00-05:00");
        assert_eq!(local(&r("in half an hour")), "2026-11-24T10:35:00-05:00");
        assert_eq!(local(&r("in 3 days")), "2026-11-27T10:05:00-05:00");
        assert_eq!(local(&r("9am")), "2026-11-25T09:00:00-05:00", "09:00 has passed today");
        assert_eq!(local(&r("11:30")), "2026-11-24T11:30:00-05:00");
        assert_eq!(local(&r("tonight")), "2026-11-24T19:00:00-05:00");
        assert_eq!(local(&r("day after tomorrow noon")), "2026-11-26T12:00:00-05:00");
        assert_eq!(local(&r("December 3rd at 2pm")), "2026-12-03T14:00:00-05:00");
        assert_eq!(r("1 jan").date, "2027-01-01", "the next one to come");
        assert_eq!(r("2026-12-01").spoken, "Tuesday, 1 December 2026");
        assert_eq!(r("now").at, Some(moment(now.with_timezone(&ny))));
        assert_eq!(r("tomorrow").at, None, "a day alone has no time");
        for bad in ["", "soon", "3", "tomorrow tomorrow", "25:00", "13pm", "in 2 fortnights", "friday blue"] {
            let refused = resolve(bad, now, ny).unwrap_err();
            assert!(refused.0.contains("tomorrow 3pm"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn clock_changes_month_and_year_ends() {
        // 2026-03-08, 02:30 does not happen in New York; 2026-11-01 01:30 happens twice
        let before_spring = utc(2026, 3, 7, 17, 0);
        let skipped = resolve("tomorrow 2:30am", before_spring, America::New_York).unwrap();
        assert_eq!(local(&skipped), "2026-03-08T03:00:00-04:00");
        assert!(skipped.note.as_deref().is_some_and(|n| n.contains("clocks go forward")));
        let twice = resolve("tomorrow 1:30am", utc(2026, 10, 31, 17, 0), America::New_York).unwrap();
        assert_eq!(local(&twice), "2026-11-01T01:30:00-04:00", "the first of the two");
        // elapsed hours across the change: 8 hours after 22:00 EST on the 7th is 07:00 EDT
        assert_eq!(local(&resolve("in 8 hours", utc(2026, 3, 8, 3, 0), America::New_York).unwrap()), "2026-03-08T07:00:00-04:00");
        assert_eq!(resolve("tomorrow", utc(2026, 12, 31, 12, 0), Europe::London).unwrap().date, "2027-01-01");
        assert_eq!(resolve("tomorrow", utc(2028, 2, 28, 12, 0), Europe::London).unwrap().date, "2028-02-29");
        // 23:30 UTC on 31 December is already 1 January in Sydney
        assert_eq!(resolve("today", utc(2026, 12, 31, 23, 30), Australia::Sydney).unwrap().date, "2027-01-01");
    }

    fn any_zone() -> impl Strategy<Value = Tz> {
        (0..chrono_tz::TZ_VARIANTS.len()).prop_map(|i| chrono_tz::TZ_VARIANTS[i])
    }

    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 1971 to 2099, minute precision
        (1_000_000i64..68_000_000).prop_map(|minutes| DateTime::from_timestamp(minutes * 60, 0).unwrap())
    }

    fn date(r: &Resolved) -> NaiveDate {
        NaiveDate::parse_from_str(&r.date, "%Y-%m-%d").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn tomorrow_is_the_next_calendar_day_in_the_zone(now in any_instant(), zone in any_zone()) {
            let today = now.with_timezone(&zone).date_naive();
            prop_assert_eq!(date(&resolve("tomorrow", now, zone).unwrap()), today.succ_opt().unwrap());
            prop_assert_eq!(date(&resolve("in 7 days", now, zone).unwrap()), today + Days::new(7));
        }

        #[test]
        fn elapsed_spans_are_exact_whatever_the_clock_does(now in any_instant(), zone in any_zone(), hours in 1i64..100) {
            let r = resolve(&format!("in {hours} hours"), now, zone).unwrap();
            let at = DateTime::parse_from_rfc3339(local(&r)).unwrap();
            prop_assert_eq!(at.with_timezone(&Utc) - now, TimeDelta::hours(hours));
        }

        #[test]
        fn a_weekday_is_the_coming_one_at_the_time_asked(now in any_instant(), zone in any_zone(), day in 0u32..7, hour in 1u32..13) {
            let name = NaiveDate::from_weekday_of_month_opt(2026, 1, Weekday::try_from(day as u8).unwrap(), 1).unwrap().format("%A").to_string();
            let name = name.as_str();
            let r = resolve(&format!("next {name} at {hour}pm"), now, zone).unwrap();
            let ahead = (date(&r) - now.with_timezone(&zone).date_naive()).num_days();
            prop_assert!((1..=7).contains(&ahead), "{} days ahead", ahead);
            prop_assert_eq!(r.weekday.as_str(), name);
            let at = DateTime::parse_from_rfc3339(local(&r)).unwrap().with_timezone(&zone);
            // the hour asked for, unless the clocks skip it that day
            prop_assert!(at.hour() == hour % 12 + 12 || r.note.is_some(), "{} for {}pm", at, hour);
        }

        #[test]
        fn a_time_alone_is_the_next_time_it_comes(now in any_instant(), zone in any_zone(), hour in 0u32..24, minute in 0u32..60) {
            let r = resolve(&format!("{hour:02}:{minute:02}"), now, zone).unwrap();
            let at = DateTime::parse_from_rfc3339(local(&r)).unwrap().with_timezone(&Utc);
            prop_assert!(at > now && at <= now + TimeDelta::hours(27), "{} from {}", at, now);
        }
    }
}
