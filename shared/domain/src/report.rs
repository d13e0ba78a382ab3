//! Campaign reports. What a finished call contributes to its campaign's numbers is reduced to
//! named counters, kept up to date by the store as calls end (and as late details — a duration, a
//! cost, an evaluation — reach a finished call), so a report reads one record however many calls
//! there were; the report is computed from those counters here.

use crate::{AnsweredBy, Call, CallDisposition, Campaign, CampaignId, CampaignStatus, ContactDisposition, ContactState, Money};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A live person answered and did not hear the agent within this: the call counts as abandoned.
pub const CONNECT_WITHIN: TimeDelta = TimeDelta::seconds(2);

/// Counters by name, as the store keeps them: `calls`, `dialed`, `answered`, `human`, `machine`,
/// `failed`, `disposition:<d>`, `talk_seconds`, `duration:<seconds>`, `cost_micros`, `costed`,
/// `evaluated`, `successful`, `live_human`, `abandoned`, `connect_unknown`, `hour:<YYYY-MM-DDTHH>:<d>`.
pub type ReportCounts = BTreeMap<String, i64>;

/// Whether a live human heard the agent in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// Not a live human answer.
    NotLive,
    Within,
    Abandoned,
    /// The provider gives no connect time.
    Unknown,
}

/// What one finished call contributes to its campaign's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFacts {
    pub disposition: CallDisposition,
    /// The provider was asked to place it.
    pub dialed: bool,
    pub answered: bool,
    pub human: bool,
    pub machine: bool,
    pub duration_secs: Option<u32>,
    /// Cost in millionths of a dollar.
    pub cost_micros: Option<i64>,
    /// The success evaluation, read as yes or no.
    pub successful: Option<bool>,
    pub connect: Connect,
    /// How close its caller ID was to the number called, when it had one.
    pub presence: Option<crate::caller_id::PresenceMatch>,
    /// The hour it ended in.
    pub hour: DateTime<Utc>,
}

impl CallFacts {
    /// None until the call is finished.
    pub fn of(call: &Call) -> Option<Self> {
        let disposition = call.disposition()?;
        let d = &call.details;
        let machine = d.answered_by.is_some_and(AnsweredBy::is_machine);
        let answered = d.answered_at.is_some() || d.answered_by.is_some();
        // a person: so detected, or an answered call that ended as a conversation with no detection
        // run (Vapi, Retell and ElevenLabs' own calls report only machines)
        let human = d.answered_by == Some(AnsweredBy::Human)
            || (answered && d.answered_by.is_none() && matches!(disposition, CallDisposition::AnsweredHuman | CallDisposition::DoNotCall));
        let connect = match (human, d.answered_at, d.connected_at) {
            (false, ..) => Connect::NotLive,
            (true, Some(answered), Some(connected)) if connected - answered <= CONNECT_WITHIN => Connect::Within,
            (true, Some(_), Some(_)) => Connect::Abandoned,
            (true, ..) => Connect::Unknown,
        };
        let ended = call.ended_at.unwrap_or(call.last_status_at);
        Some(Self {
            disposition,
            dialed: call.placed_at.is_some() || call.provider_call_id.is_some(),
            answered,
            human,
            machine,
            duration_secs: d.duration_secs,
            cost_micros: d.cost.map(|c| (c.amount() * Decimal::from(1_000_000)).trunc().try_into().unwrap_or(i64::MAX)),
            successful: d.success_evaluation.as_deref().and_then(crate::crm::is_positive_evaluation),
            connect,
            presence: call.caller_id.as_ref().map(|from| crate::caller_id::PresenceMatch::of(from, &call.phone)),
            hour: ended.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).unwrap_or(ended),
        })
    }

    /// The counters this call adds.
    pub fn counts(&self) -> ReportCounts {
        let mut c = ReportCounts::new();
        let mut add = |key: String, n: i64| *c.entry(key).or_default() += n;
        add("calls".into(), 1);
        for (key, yes) in [
            ("dialed", self.dialed),
            ("answered", self.answered),
            ("human", self.human),
            ("machine", self.machine),
            ("failed", self.disposition == CallDisposition::Failed),
            ("live_human", self.connect != Connect::NotLive),
            ("abandoned", self.connect == Connect::Abandoned),
            ("connect_unknown", self.connect == Connect::Unknown),
            ("evaluated", self.successful.is_some()),
            ("successful", self.successful == Some(true)),
        ] {
            if yes {
                add(key.into(), 1);
            }
        }
        add(format!("disposition:{}", self.disposition.as_str()), 1);
        add(format!("hour:{}:{}", hour_key(self.hour), self.disposition.as_str()), 1);
        if let Some(presence) = self.presence.filter(|_| self.dialed) {
            add(format!("presence:{}:dialed", presence.as_str()), 1);
            if self.answered {
                add(format!("presence:{}:answered", presence.as_str()), 1);
            }
        }
        if let Some(secs) = self.duration_secs {
            add("talk_seconds".into(), i64::from(secs));
            add(format!("duration:{secs}"), 1);
        }
        if let Some(micros) = self.cost_micros {
            add("cost_micros".into(), micros);
            add("costed".into(), 1);
        }
        c
    }
}

/// The change to the counters when a call's facts go from `before` to `after` (zeroes left out).
pub fn report_delta(before: Option<&CallFacts>, after: Option<&CallFacts>) -> ReportCounts {
    let mut delta = after.map(CallFacts::counts).unwrap_or_default();
    for (key, n) in before.map(CallFacts::counts).unwrap_or_default() {
        *delta.entry(key).or_default() -= n;
    }
    delta.retain(|_, n| *n != 0);
    delta
}

/// The change to the counters of the hours a call ended in when its facts go from `before` to
/// `after`: each hour keeps the counters of the calls that ended in it, so a day's report sums
/// its hours whatever the time zone.
pub fn report_hour_deltas(before: Option<&CallFacts>, after: Option<&CallFacts>) -> Vec<(DateTime<Utc>, ReportCounts)> {
    let mut hours: BTreeMap<DateTime<Utc>, ReportCounts> = BTreeMap::new();
    if let Some(after) = after {
        add_counts(hours.entry(after.hour).or_default(), &after.counts());
    }
    if let Some(before) = before {
        let removed = before.counts().into_iter().map(|(key, n)| (key, -n)).collect();
        add_counts(hours.entry(before.hour).or_default(), &removed);
    }
    hours.into_iter().filter(|(_, counts)| !counts.is_empty()).collect()
}

/// The hour `at` is in, as the store keys an hour's counters: `2026-11-24T15`.
pub fn hour_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H").to_string()
}

/// Adds `delta` into `counts`, dropping counters that reach zero.
pub fn add_counts(counts: &mut ReportCounts, delta: &ReportCounts) {
    for (key, n) in delta {
        *counts.entry(key.clone()).or_default() += n;
    }
    counts.retain(|_, n| *n != 0);
}

/// Call durations at the 50th, 90th and 99th percentile (nearest rank), in seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: Option<u32>,
    pub p90: Option<u32>,
    pub p99: Option<u32>,
}

/// Money a campaign's calls cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSummary {
    /// Over the calls whose provider reported a cost; none (unknown, not zero) when no call's did.
    pub total: Option<Money>,
    /// `total` over connected (answered, by a person or a machine) calls; none before the first,
    /// or while no cost is known.
    pub per_connected_call: Option<Money>,
    pub currency: String,
    /// Calls whose provider reported a cost.
    pub costed_calls: u64,
}

/// Calls whose duration fell in `[fromSeconds, toSeconds)` (no upper end for the last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DurationBucket {
    pub from_seconds: u32,
    pub to_seconds: Option<u32>,
    pub calls: u64,
}

/// Where the duration histogram's buckets start, in seconds.
pub const DURATION_BUCKETS: [u32; 7] = [0, 15, 30, 60, 120, 300, 600];

/// Calls that ended in one hour, by disposition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourlyCalls {
    pub hour: DateTime<Utc>,
    pub calls: u64,
    pub by_disposition: BTreeMap<CallDisposition, u64>,
}

/// A campaign's numbers, from its counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallNumbers {
    /// Finished calls.
    pub finished: u64,
    pub dialed: u64,
    pub answered: u64,
    pub human: u64,
    pub machine: u64,
    pub failed: u64,
    pub by_disposition: BTreeMap<CallDisposition, u64>,
    /// answered / dialed.
    pub answer_rate: Option<f64>,
    /// human / dialed.
    pub human_rate: Option<f64>,
    /// machine / dialed.
    pub machine_rate: Option<f64>,
    /// Live human answers that did not hear the agent within 2 s, over live human answers whose
    /// connect time is known.
    pub abandonment_rate: Option<f64>,
    pub live_human_answers: u64,
    pub abandoned: u64,
    /// Live human answers whose provider gives no connect time.
    pub abandonment_unknown: u64,
    pub talk_seconds: u64,
    pub duration_seconds: Percentiles,
    pub duration_histogram: Vec<DurationBucket>,
    pub cost: CostSummary,
    /// Calls with a positive success evaluation, over calls evaluated.
    pub success_rate: Option<f64>,
    pub evaluated: u64,
    pub calls_per_hour: Vec<HourlyCalls>,
    /// Dialed calls by how close their caller ID was to the number called (`area_code`, `state`,
    /// `other`), each with its answer rate: answered / dialed, as above. Levels no call had are left out.
    pub by_presence: BTreeMap<crate::caller_id::PresenceMatch, PresenceNumbers>,
}

/// Dialed and answered calls of one presence match level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceNumbers {
    pub dialed: u64,
    pub answered: u64,
    /// answered / dialed.
    pub answer_rate: Option<f64>,
}

/// A CSV cell a spreadsheet will not run: text starting with `=`, `+`, `-`, `@`, a tab or a CR
/// (OWASP's CSV injection list) gets a leading `'`. A number, plain or masked (`+14155550100`,
/// `+1415***0100`, `-3.5`), can compute nothing but a number and is left as it is, so phones and
/// amounts stay machine-readable.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_number(cell) { format!("'{cell}").into() } else { cell.into() }
}

fn is_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    [whole, fraction].iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit() || b == b'*'))
        && unsigned.starts_with(|c: char| c.is_ascii_digit())
}

/// A rate as every surface shows it (CLI, HTML): `66.7 %`, or `—` when its denominator is zero.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or("—".into(), |r| format!("{:.1} %", r * 100.0))
}

impl CallNumbers {
    /// The numbers in one line, named as everywhere else (CLI, email, page, README "Reports").
    pub fn summary(&self) -> String {
        format!(
            "{} calls finished, {} dialed; answer rate {}, human rate {}, machine rate {}; abandonment {} ({} unknown); \
             talk time {} min; cost {}; success {}",
            self.finished,
            self.dialed,
            percent(self.answer_rate),
            percent(self.human_rate),
            percent(self.machine_rate),
            percent(self.abandonment_rate),
            self.abandonment_unknown,
            self.talk_seconds / 60,
            self.cost.describe(self.finished),
            percent(self.success_rate),
        )
    }
}

impl CostSummary {
    /// The cost as every surface shows it: `18.00 USD (200 of 600 calls costed)`, or
    /// `not reported (0 of 600 calls costed)` when no provider reported one, never `0`.
    pub fn describe(&self, finished: u64) -> String {
        let costed = format!("{} of {finished} calls costed", self.costed_calls);
        match &self.total {
            Some(total) => format!("{:.2} {} ({costed})", total.amount(), self.currency),
            None => format!("not reported ({costed})"),
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl CallNumbers {
    pub fn from_counts(counts: &ReportCounts) -> Self {
        let get = |key: &str| counts.get(key).copied().unwrap_or(0).max(0) as u64;
        let by_disposition = CallDisposition::ALL
            .into_iter()
            .filter_map(|d| Some((d, get(&format!("disposition:{}", d.as_str())))).filter(|(_, n)| *n > 0))
            .collect();
        let mut durations: Vec<(u32, u64)> =
            counts.iter().filter_map(|(key, n)| Some((key.strip_prefix("duration:")?.parse().ok()?, (*n).max(0) as u64))).collect();
        durations.sort_unstable();
        let observed: u64 = durations.iter().map(|(_, n)| n).sum();
        let rank = |q: f64| {
            let wanted = ((q * observed as f64).ceil() as u64).max(1);
            let mut seen = 0;
            durations.iter().find(|(_, n)| {
                seen += n;
                seen >= wanted
            })
        };
        let percentile = |q: f64| (observed > 0).then(|| rank(q).map(|(secs, _)| *secs)).flatten();
        let duration_histogram = DURATION_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, &from)| {
                let to = DURATION_BUCKETS.get(i + 1).copied();
                let calls = durations.iter().filter(|(secs, _)| *secs >= from && to.is_none_or(|to| *secs < to)).map(|(_, n)| n).sum();
                DurationBucket { from_seconds: from, to_seconds: to, calls }
            })
            .collect();
        let mut hours: BTreeMap<DateTime<Utc>, HourlyCalls> = BTreeMap::new();
        for (key, n) in counts {
            let Some((hour, disposition)) = key.strip_prefix("hour:").and_then(|rest| rest.rsplit_once(':')) else { continue };
            let (Ok(hour), Some(disposition)) =
                (chrono::NaiveDateTime::parse_from_str(&format!("{hour}:00"), "%Y-%m-%dT%H:%M"), CallDisposition::parse(disposition))
            else {
                continue;
            };
            let hour = hour.and_utc();
            let slot = hours.entry(hour).or_insert_with(|| HourlyCalls { hour, calls: 0, by_disposition: BTreeMap::new() });
            slot.calls += (*n).max(0) as u64;
            *slot.by_disposition.entry(disposition).or_default() += (*n).max(0) as u64;
        }
        let costed = get("costed");
        let total = (costed > 0)
            .then(|| Money::from_decimal(Decimal::new(counts.get("cost_micros").copied().unwrap_or(0).max(0), 6)).unwrap_or(Money::ZERO));
        let answered = get("answered");
        let per_connected_call = total
            .filter(|_| answered > 0)
            .map(|t| Money::from_decimal((t.amount() / Decimal::from(answered)).round_dp(6)).unwrap_or(Money::ZERO));
        let (live, unknown, abandoned) = (get("live_human"), get("connect_unknown"), get("abandoned"));
        let dialed = get("dialed");
        Self {
            finished: get("calls"),
            dialed,
            answered,
            human: get("human"),
            machine: get("machine"),
            failed: get("failed"),
            by_disposition,
            answer_rate: ratio(answered, dialed),
            human_rate: ratio(get("human"), dialed),
            machine_rate: ratio(get("machine"), dialed),
            abandonment_rate: ratio(abandoned, live - unknown),
            live_human_answers: live,
            abandoned,
            abandonment_unknown: unknown,
            talk_seconds: get("talk_seconds"),
            duration_seconds: Percentiles { p50: percentile(0.5), p90: percentile(0.9), p99: percentile(0.99) },
            duration_histogram,
            cost: CostSummary { total, per_connected_call, currency: "USD".into(), costed_calls: costed },
            success_rate: ratio(get("successful"), get("evaluated")),
            evaluated: get("evaluated"),
            calls_per_hour: hours.into_values().collect(),
            by_presence: crate::caller_id::PresenceMatch::ALL
                .into_iter()
                .filter_map(|level| {
                    let (dialed, answered) =
                        (get(&format!("presence:{}:dialed", level.as_str())), get(&format!("presence:{}:answered", level.as_str())));
                    (dialed > 0).then(|| (level, PresenceNumbers { dialed, answered, answer_rate: ratio(answered, dialed) }))
                })
                .collect(),
        }
    }
}

/// Where a campaign's contacts stand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactNumbers {
    pub total: u64,
    pub by_state: BTreeMap<ContactState, u64>,
    /// Finished contacts, by how they finished.
    pub by_disposition: BTreeMap<ContactDisposition, u64>,
    /// Calls per finished contact (its attempts, first call and retries).
    pub attempts_per_contact: Option<f64>,
}

/// `GET /campaigns/{id}/report`: a campaign's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignReport {
    pub campaign_id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    pub generated_at: DateTime<Utc>,
    pub contacts: ContactNumbers,
    pub calls: CallNumbers,
}

impl CampaignReport {
    pub fn new(
        campaign: &Campaign,
        by_state: BTreeMap<ContactState, u64>,
        by_disposition: BTreeMap<ContactDisposition, u64>,
        counts: &ReportCounts,
        now: DateTime<Utc>,
    ) -> Self {
        let c = &campaign.counters;
        Self {
            campaign_id: campaign.id,
            name: campaign.name.clone(),
            status: campaign.status,
            generated_at: now,
            contacts: ContactNumbers {
                total: by_state.values().sum(),
                by_state,
                by_disposition,
                attempts_per_contact: ratio(c.calls_total, c.contacts_done),
            },
            calls: CallNumbers::from_counts(counts),
        }
    }
}

/// The hours of `date` in `zone`, as UTC instants `[from, to)`. Counters are kept by the hour, so
/// in a zone whose offset is not whole hours the day starts at the hour its midnight falls in.
pub fn daily_window(date: NaiveDate, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |day: NaiveDate| {
        let midnight = day.and_time(NaiveTime::MIN);
        // a midnight skipped by a clock change starts the day an hour later
        let local = zone
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| zone.from_local_datetime(&(midnight + TimeDelta::hours(1))).earliest());
        let utc = local.map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc));
        utc.with_minute(0).and_then(|t| t.with_second(0)).unwrap_or(utc)
    };
    (start(date), start(date.succ_opt().unwrap_or(date)))
}

/// The local hour the daily report is made at (the SAM schedule's `cron(0 8 * * ? *)`).
pub const DAILY_REPORT_HOUR: u32 = 8;

/// When the daily report is next made after `now`: the next 08:00 in `zone`.
pub fn next_daily_run(now: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&zone).date_naive();
    [today, today + TimeDelta::days(1), today + TimeDelta::days(2)]
        .into_iter()
        .filter_map(|day| zone.from_local_datetime(&day.and_hms_opt(DAILY_REPORT_HOUR, 0, 0)?).earliest())
        .map(|t| t.with_timezone(&Utc))
        .find(|t| *t > now)
        .unwrap_or(now + TimeDelta::days(1))
}

/// The day before the one `now` is in, in `zone`: the day a morning's report is about.
pub fn yesterday(now: DateTime<Utc>, zone: Tz) -> NaiveDate {
    let today = now.with_timezone(&zone).date_naive();
    today.pred_opt().unwrap_or(today)
}

/// One campaign's row in a daily report: its calls that ended that day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyCampaign {
    pub campaign_id: CampaignId,
    pub name: String,
    pub calls: CallNumbers,
}

/// `GET /reports/daily/{date}`: an organisation's day — each campaign whose calls ended that day
/// (in the deployment's report time zone) and the totals over all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyReport {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// The IANA time zone the day is in.
    pub time_zone: String,
    /// The day's first instant (UTC).
    pub from: DateTime<Utc>,
    /// The next day's first instant (UTC).
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// The day was over when the report was made; a report of a day still going is not kept.
    pub complete: bool,
    pub campaigns: Vec<DailyCampaign>,
    pub totals: CallNumbers,
    /// The recipients it was emailed to.
    pub emailed_to: Vec<String>,
    pub emailed_at: Option<DateTime<Utc>>,
}

impl DailyReport {
    /// From each campaign's counters summed over the day's hours (campaigns without calls left out).
    pub fn new(date: NaiveDate, zone: Tz, campaigns: Vec<(CampaignId, String, ReportCounts)>, now: DateTime<Utc>) -> Self {
        let (from, to) = daily_window(date, zone);
        let mut all = ReportCounts::new();
        let mut rows: Vec<DailyCampaign> = campaigns
            .into_iter()
            .filter(|(_, _, counts)| counts.get("calls").is_some_and(|n| *n > 0))
            .map(|(campaign_id, name, counts)| {
                add_counts(&mut all, &counts);
                DailyCampaign { campaign_id, name, calls: CallNumbers::from_counts(&counts) }
            })
            .collect();
        rows.sort_by(|a, b| b.calls.finished.cmp(&a.calls.finished).then_with(|| a.name.cmp(&b.name)));
        Self {
            date,
            time_zone: zone.name().to_string(),
            from,
            to,
            generated_at: now,
            complete: now >= to,
            campaigns: rows,
            totals: CallNumbers::from_counts(&all),
            emailed_to: Vec::new(),
            emailed_at: None,
        }
    }

    /// The email's plain-text body: the totals, then one line per campaign.
    pub fn summary_text(&self) -> String {
        let line = CallNumbers::summary;
        let mut text = format!("outdial — {} ({})\n\nAll campaigns: {}\n", self.date, self.time_zone, line(&self.totals));
        if self.campaigns.is_empty() {
            text.push_str("\nNo calls ended that day.\n");
        }
        for row in &self.campaigns {
            text.push_str(&format!("\n{}: {}", row.name, line(&row.calls)));
        }
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn answer_rates_by_presence_count_dialed_calls_by_their_match_level() {
        use crate::caller_id::PresenceMatch;
        let mut counts = ReportCounts::new();
        let at = DateTime::parse_from_rfc3339("2027-01-13T17:00:00Z").unwrap().to_utc();
        let call = |to: &str, from: &str, answered: bool| {
            let mut call =
                Call::queued(crate::OrgId::new(), CampaignId::new(), crate::ContactId::new(), 1, crate::E164::parse(to, None).unwrap(), at);
            call.caller_id = Some(crate::E164::parse(from, None).unwrap());
            call.provider_call_id = Some("CA1".into());
            call.placed_at = Some(at);
            call.state = crate::CallState::Ended;
            call.end_reason = Some(if answered { crate::EndReason::Completed } else { crate::EndReason::NoAnswer });
            call.details.answered_by = answered.then_some(AnsweredBy::Human);
            call
        };
        for c in [
            call("+14155551234", "+14155550100", true),
            call("+14155551235", "+14155550100", false),
            call("+13105551234", "+12135550100", true),
        ] {
            add_counts(&mut counts, &CallFacts::of(&c).unwrap().counts());
        }
        let numbers = CallNumbers::from_counts(&counts);
        assert_eq!(numbers.by_presence[&PresenceMatch::AreaCode], PresenceNumbers { dialed: 2, answered: 1, answer_rate: Some(0.5) });
        assert_eq!(numbers.by_presence[&PresenceMatch::State], PresenceNumbers { dialed: 1, answered: 1, answer_rate: Some(1.0) });
        assert!(!numbers.by_presence.contains_key(&PresenceMatch::Other), "a level no call had is left out");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        use super::spreadsheet_safe;
        for risky in ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx", "+", "-1.2.3", "+*1"] {
            assert_eq!(spreadsheet_safe(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in ["+14155550100", "+1415***0100", "-3.5", "0.12", "Renews.", "a=b", ""] {
            assert_eq!(spreadsheet_safe(plain), plain, "{plain:?}");
        }
    }

    use super::*;
    use crate::{CallDetails, CallState, E164, EndReason, OrgId};
    use chrono::TimeZone;

    fn call(end: EndReason, details: CallDetails, ended: DateTime<Utc>) -> Call {
        let mut call = Call::queued(
            OrgId::new(),
            crate::CampaignId::new(),
            crate::ContactId::new(),
            1,
            E164::parse("+14155550100", None).unwrap(),
            ended,
        );
        (call.state, call.end_reason, call.ended_at, call.details) = (CallState::Ended, Some(end), Some(ended), details);
        call.placed_at = Some(ended - TimeDelta::minutes(2));
        call
    }

    fn human(answered: DateTime<Utc>, connect_after_ms: Option<i64>, secs: u32, cost: &str, evaluation: Option<&str>) -> CallDetails {
        CallDetails {
            answered_by: Some(AnsweredBy::Human),
            answered_at: Some(answered),
            connected_at: connect_after_ms.map(|ms| answered + TimeDelta::milliseconds(ms)),
            duration_secs: Some(secs),
            cost: Some(Money::parse(cost).unwrap()),
            success_evaluation: evaluation.map(str::to_string),
            ..Default::default()
        }
    }

    /// Ten calls worked out by hand: 6 human (connect 0.5 s, 1.9 s, 2.5 s, 3 s, unknown, 1 s),
    /// 3 machines (one a fax), 1 busy.
    fn fixture() -> Vec<Call> {
        let t = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap();
        let a = t(15, 0);
        vec![
            call(EndReason::Completed, human(a, Some(500), 30, "0.10", Some("true")), t(15, 10)),
            call(EndReason::Completed, human(a, Some(1_900), 60, "0.20", Some("false")), t(15, 20)),
            call(EndReason::Completed, human(a, Some(2_500), 90, "0.30", Some("8")), t(15, 30)),
            call(EndReason::Completed, human(a, Some(3_000), 120, "0.40", None), t(16, 5)),
            call(EndReason::Completed, human(a, None, 150, "0.50", Some("success")), t(16, 10)),
            call(EndReason::Completed, human(a, Some(1_000), 600, "0.60", Some("failure")), t(16, 15)),
            call(
                EndReason::Completed,
                CallDetails {
                    answered_by: Some(AnsweredBy::MachineEnd),
                    answered_at: Some(a),
                    duration_secs: Some(20),
                    ..Default::default()
                },
                t(16, 20),
            ),
            call(
                EndReason::Completed,
                CallDetails {
                    answered_by: Some(AnsweredBy::MachineStart),
                    answered_at: Some(a),
                    duration_secs: Some(10),
                    ..Default::default()
                },
                t(16, 25),
            ),
            call(
                EndReason::Completed,
                CallDetails { answered_by: Some(AnsweredBy::Fax), answered_at: Some(a), ..Default::default() },
                t(17, 0),
            ),
            call(EndReason::Busy, CallDetails::default(), t(17, 1)),
        ]
    }

    #[test]
    fn a_fixture_campaign_has_the_numbers_worked_out_by_hand() {
        let mut counts = ReportCounts::new();
        for c in fixture() {
            add_counts(&mut counts, &report_delta(None, CallFacts::of(&c).as_ref()));
        }
        let n = CallNumbers::from_counts(&counts);
        assert_eq!((n.finished, n.dialed, n.answered, n.human, n.machine, n.failed), (10, 10, 9, 6, 3, 0));
        assert_eq!((n.answer_rate, n.human_rate, n.machine_rate), (Some(0.9), Some(0.6), Some(0.3)));
        // 6 live answers, one without a connect time; of the 5 known, 2.5 s and 3 s are over 2 s
        assert_eq!((n.live_human_answers, n.abandonment_unknown, n.abandoned, n.abandonment_rate), (6, 1, 2, Some(0.4)));
        // durations 10 20 30 60 90 120 150 600: nearest rank 4, 8, 8 of 8
        assert_eq!(n.duration_seconds, Percentiles { p50: Some(60), p90: Some(600), p99: Some(600) });
        assert_eq!(n.talk_seconds, 1_080);
        let histogram: Vec<u64> = n.duration_histogram.iter().map(|b| b.calls).collect();
        assert_eq!(histogram, [1, 1, 1, 2, 2, 0, 1], "10 | 20 | 30 | 60 90 | 120 150 | — | 600");
        assert_eq!(n.cost.total, Some(Money::parse("2.10").unwrap()));
        assert_eq!(n.cost.per_connected_call, Some(Money::parse("0.233333").unwrap()), "2.10 over 9 answered");
        // evaluated: true, false, 8, success, failure (5); positive: true, 8, success
        assert_eq!((n.evaluated, n.success_rate), (5, Some(0.6)));
        assert_eq!(n.by_disposition[&CallDisposition::AnsweredHuman], 6);
        assert_eq!(n.by_disposition[&CallDisposition::Voicemail], 3, "the fax ends as a machine");
        let per_hour: Vec<(u32, u64)> = n.calls_per_hour.iter().map(|h| (h.hour.hour(), h.calls)).collect();
        assert_eq!(per_hour, [(15, 3), (16, 5), (17, 2)]);
    }

    #[test]
    fn late_details_move_the_counters_once() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap();
        let before = call(EndReason::Completed, CallDetails { answered_by: Some(AnsweredBy::Human), ..Default::default() }, t);
        let mut after = before.clone();
        after.details.duration_secs = Some(42);
        after.details.cost = Some(Money::parse("0.05").unwrap());
        let delta = report_delta(CallFacts::of(&before).as_ref(), CallFacts::of(&after).as_ref());
        assert_eq!(
            delta,
            ReportCounts::from([
                ("talk_seconds".into(), 42),
                ("duration:42".into(), 1),
                ("cost_micros".into(), 50_000),
                ("costed".into(), 1)
            ])
        );
        assert!(report_delta(CallFacts::of(&after).as_ref(), CallFacts::of(&after).as_ref()).is_empty());
        let mut live = before.clone();
        live.state = CallState::InProgress;
        live.end_reason = None;
        assert_eq!(CallFacts::of(&live), None, "nothing counts before the end");
        let empty = CallNumbers::from_counts(&ReportCounts::new());
        assert_eq!((empty.answer_rate, empty.duration_seconds.p50, empty.cost.per_connected_call), (None, None, None));
        assert_eq!((empty.cost.total, empty.cost.describe(0).as_str()), (None, "not reported (0 of 0 calls costed)"), "unknown, never 0");
    }

    #[test]
    fn a_day_is_the_hours_between_two_local_midnights() {
        let date = |m: u32, d: u32| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        let utc = |m: u32, d: u32, h: u32, min: u32| Utc.with_ymd_and_hms(2026, m, d, h, min, 0).unwrap();
        assert_eq!(daily_window(date(11, 24), chrono_tz::UTC), (utc(11, 24, 0, 0), utc(11, 25, 0, 0)));
        assert_eq!(daily_window(date(11, 24), chrono_tz::America::New_York), (utc(11, 24, 5, 0), utc(11, 25, 5, 0)));
        // the clocks go forward: a 23-hour day
        assert_eq!(daily_window(date(3, 8), chrono_tz::America::New_York), (utc(3, 8, 5, 0), utc(3, 9, 4, 0)));
        // +05:30 starts at the hour its midnight falls in
        assert_eq!(daily_window(date(11, 24), chrono_tz::Asia::Kolkata), (utc(11, 23, 18, 0), utc(11, 24, 18, 0)));
        assert_eq!(yesterday(utc(11, 25, 4, 0), chrono_tz::America::New_York), date(11, 23), "still the 24th's night in New York");
        assert_eq!(yesterday(utc(11, 25, 13, 0), chrono_tz::America::New_York), date(11, 24));
        assert_eq!(next_daily_run(utc(11, 25, 12, 0), chrono_tz::America::New_York), utc(11, 25, 13, 0), "08:00 in New York");
        assert_eq!(next_daily_run(utc(11, 25, 13, 0), chrono_tz::America::New_York), utc(11, 26, 13, 0), "then the next morning");
    }

    #[test]
    fn hour_counters_add_up_to_the_campaign_counters_and_follow_late_details() {
        let mut campaign = ReportCounts::new();
        let mut hours: BTreeMap<DateTime<Utc>, ReportCounts> = BTreeMap::new();
        let calls = fixture();
        for c in &calls {
            add_counts(&mut campaign, &report_delta(None, CallFacts::of(c).as_ref()));
            for (hour, delta) in report_hour_deltas(None, CallFacts::of(c).as_ref()) {
                add_counts(hours.entry(hour).or_default(), &delta);
            }
        }
        // a late cost reaches the first call: only its own hour moves
        let mut later = calls[0].clone();
        later.details.cost = Some(Money::parse("1.10").unwrap());
        let moved = report_hour_deltas(CallFacts::of(&calls[0]).as_ref(), CallFacts::of(&later).as_ref());
        assert_eq!(
            moved,
            vec![(calls[0].ended_at.unwrap().with_minute(0).unwrap(), ReportCounts::from([("cost_micros".into(), 1_000_000)]))]
        );
        add_counts(&mut campaign, &report_delta(CallFacts::of(&calls[0]).as_ref(), CallFacts::of(&later).as_ref()));
        for (hour, delta) in moved {
            add_counts(hours.entry(hour).or_default(), &delta);
        }
        let mut summed = ReportCounts::new();
        hours.values().for_each(|h| add_counts(&mut summed, h));
        assert_eq!(summed, campaign);
        assert_eq!(hours.len(), 3, "15:00, 16:00 and 17:00");
        let day = DailyReport::new(
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            chrono_tz::UTC,
            vec![(crate::CampaignId::new(), "quiet".into(), ReportCounts::new()), (crate::CampaignId::new(), "busy".into(), summed)],
            Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap(),
        );
        assert_eq!(day.campaigns.len(), 1, "a campaign without calls that day has no row");
        assert_eq!((day.totals.finished, day.totals.cost.total, day.complete), (10, Some(Money::parse("3.10").unwrap()), true));
        let text = day.summary_text();
        assert!(text.contains("busy: 10 calls finished, 10 dialed; answer rate 90.0 %, human rate 60.0 %"), "{text}");
        assert!(text.contains("cost 3.10 USD (6 of 10 calls costed)"), "{text}");
    }
}
