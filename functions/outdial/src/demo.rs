//! `outdial demo`: one process runs a whole simulated campaign through the real stack — HTTP
//! API, local timer and queue, campaign-tick, dialer, the simulator, and the webhook routes it
//! reports to with real signatures — and reports what the store says happened.

use crate::{Stack, client::ApiClient};
use chrono::Utc;
use domain::{CallDisposition, CallState, CampaignId, CampaignStatus, ContactDisposition, OrgId};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};
use store::{CallFilter, PageRequest, Store};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Zones the demo's contacts live in; those inside the calling window right now are used.
const ZONES: [&str; 12] = [
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
];

/// What one connected minute costs in the simulation (a Twilio minute plus a conversational-AI minute).
pub const PRICE_PER_MINUTE: Decimal = Decimal::from_parts(9, 0, 0, false, 2);

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub contacts: u32,
    pub seed: u64,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Show the live progress bar.
    pub progress: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { contacts: 500, seed: 7, speed: 120.0, progress: true, timeout: Duration::from_secs(300) }
    }
}

/// The final report, every number read back from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    pub org: OrgId,
    pub campaign: CampaignId,
    pub status: CampaignStatus,
    pub contacts: u64,
    /// Contacts with a final disposition.
    pub finalised: u64,
    pub contacts_by_disposition: BTreeMap<ContactDisposition, u64>,
    /// Calls placed, retries included.
    pub attempts: u64,
    /// Calls placed again after an earlier attempt at the same contact.
    pub retries: u64,
    /// Calls not over yet.
    pub active: u64,
    pub calls_by_disposition: BTreeMap<CallDisposition, u64>,
    /// Calls answered by a person, out of all calls, 0–1.
    pub answer_rate: f64,
    pub average_talk_secs: f64,
    pub simulated_cost: Decimal,
    pub elapsed: Duration,
}

/// Runs the demo on `store` (a fresh database) with the simulator, and reports.
pub async fn run<S: Store>(store: S, mut stack: Stack, options: &DemoOptions) -> Result<DemoReport, Error> {
    let started = std::time::Instant::now();
    stack.tick = Duration::from_millis(250);
    let calls = &mut stack.dialing.calls;
    calls.simulator_seed = options.seed;
    calls.simulator_speed = options.speed;
    // the simulated conversations send signed ElevenLabs post-call transcripts
    calls.elevenlabs_webhook_secret = Some(format!("demo-{}", uuid::Uuid::now_v7().simple()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve_until(store.clone(), stack, listener, async move {
        let _ = stopped.await;
    }));

    let org = store.create_org("outdial demo").await?.id;
    assistants::install_templates(&store, org).await?;
    let api = ApiClient::new(&base, &store.create_api_key(org).await?.secret);
    let templates = api.get_all("/assistants", &[("source", "template".to_string())]).await?;
    let template = templates.first().and_then(|t| t["id"].as_str()).ok_or("no assistant template was installed")?;
    let assistant = api.post(&format!("/assistants/{template}/clone"), &json!({ "name": "Demo caller", "provider": "simulator" })).await?;
    let zones = open_zones(Utc::now());
    let campaign = api.post("/campaigns", &campaign_spec(&assistant, zones.is_empty())).await?;
    let id = campaign["id"].as_str().ok_or("the campaign has no id")?.to_string();
    let csv = contacts_csv(options.contacts, options.seed, if zones.is_empty() { &ZONES[..1] } else { &zones });
    api.post_stream(&format!("/campaigns/{id}/contacts"), &[], "text/csv", csv.into()).await?;
    api.post(&format!("/campaigns/{id}/start"), &json!({})).await?;
    let campaign = CampaignId::parse(&id)?;

    let bar = progress_bar(options);
    let outcome = loop {
        let report = report(&store, org, campaign, started.elapsed()).await?;
        bar.set_position(report.finalised);
        bar.set_message(progress_line(&report));
        if report.status != CampaignStatus::Running {
            break Ok(report);
        }
        if started.elapsed() > options.timeout {
            break Err(format!(
                "the demo did not finish within {:?}: {} of {} contacts finalised",
                options.timeout, report.finalised, report.contacts
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish();
    let _ = stop.send(());
    let _ = server.await;
    outcome
}

/// Zones the default calling window is open in now and an hour from now (its days count too:
/// on a Sunday the zones already in Sunday are closed).
fn open_zones(now: chrono::DateTime<Utc>) -> Vec<&'static str> {
    let window = domain::CallingWindow::default();
    ZONES
        .iter()
        .copied()
        .filter(|zone| {
            zone.parse::<chrono_tz::Tz>()
                .is_ok_and(|tz| window.is_open_at(now, tz) && window.is_open_at(now + chrono::Duration::hours(1), tz))
        })
        .collect()
}

fn campaign_spec(assistant: &Value, all_day: bool) -> Value {
    let mut spec = json!({
        "name": "Demo: plan renewals",
        "assistantId": assistant["id"],
        "provider": "simulator",
        "cap": 50,
        "callerIds": ["+14155550100", "+14155550101", "+14155550102"],
        "timezone": "America/New_York",
        "retryPolicy": { "maxAttempts": 3, "delayMinutes": 0, "retryOn": ["busy", "no_answer", "failed"] },
        "voicemail": { "action": "leave_message", "message": "Hi, this is the renewals assistant. Please call us back." },
        "maxCallSeconds": 600,
    });
    if all_day {
        spec["callingWindow"] = json!({ "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59" });
    }
    spec
}

/// `n` contacts with US numbers spread over `zones`, the same for the same seed.
fn contacts_csv(n: u32, seed: u64, zones: &[&str]) -> String {
    use rand::{Rng, SeedableRng};
    const AREAS: [u32; 8] = [212, 310, 415, 512, 617, 702, 305, 206];
    const NAMES: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut csv = String::from("phone,name,timezone,plan\n");
    for i in 0..n {
        let area = AREAS[rng.random_range(0..AREAS.len())];
        let exchange = rng.random_range(201..=989);
        csv.push_str(&format!(
            "+1{area}{exchange}{:04},{} {i},{},{}\n",
            i % 10_000,
            NAMES[i as usize % NAMES.len()],
            zones[i as usize % zones.len()],
            if rng.random_bool(0.5) { "basic" } else { "premium" }
        ));
    }
    csv
}

fn progress_bar(options: &DemoOptions) -> indicatif::ProgressBar {
    let bar = if options.progress { indicatif::ProgressBar::new(u64::from(options.contacts)) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} done  {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar
}

fn progress_line(report: &DemoReport) -> String {
    let calls = |d: CallDisposition| report.calls_by_disposition.get(&d).copied().unwrap_or(0);
    format!(
        "dialed {} · active {} · answered {} · voicemail {} · no-answer {} · retries {}",
        report.attempts,
        report.active,
        calls(CallDisposition::AnsweredHuman),
        calls(CallDisposition::Voicemail),
        calls(CallDisposition::NoAnswer),
        report.retries,
    )
}

/// Every call of the campaign.
pub async fn all_calls<S: Store>(store: &S, org: OrgId, campaign: CampaignId) -> Result<Vec<domain::Call>, Error> {
    let mut calls = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let next = store.list_calls(org, campaign, CallFilter::default(), page.clone()).await?;
        calls.extend(next.items);
        match next.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(calls),
        }
    }
}

/// The campaign as the store has it now.
pub async fn report<S: Store>(store: &S, org: OrgId, campaign_id: CampaignId, elapsed: Duration) -> Result<DemoReport, Error> {
    let campaign = store.get_campaign(org, campaign_id).await?;
    let tally = store.contact_tally(org, campaign_id).await?;
    let calls = all_calls(store, org, campaign_id).await?;
    let mut calls_by_disposition = BTreeMap::new();
    for d in calls.iter().filter_map(domain::Call::disposition) {
        *calls_by_disposition.entry(d).or_insert(0) += 1;
    }
    let talked: Vec<u32> =
        calls.iter().filter(|c| c.disposition() == Some(CallDisposition::AnsweredHuman)).filter_map(|c| c.details.duration_secs).collect();
    let connected_minutes: u64 = calls
        .iter()
        .filter(|c| c.details.answered_at.is_some() && c.state == CallState::Ended)
        .map(|c| u64::from(c.details.duration_secs.unwrap_or(0).div_ceil(60)))
        .sum();
    let answered = calls_by_disposition.get(&CallDisposition::AnsweredHuman).copied().unwrap_or(0);
    Ok(DemoReport {
        org,
        campaign: campaign_id,
        status: campaign.status,
        contacts: campaign.counters.contacts_total,
        finalised: campaign.counters.contacts_done,
        contacts_by_disposition: tally.by_disposition,
        attempts: calls.len() as u64,
        retries: calls.iter().filter(|c| c.attempt > 1).count() as u64,
        active: calls.iter().filter(|c| !c.state.is_terminal()).count() as u64,
        answer_rate: if calls.is_empty() { 0.0 } else { answered as f64 / calls.len() as f64 },
        average_talk_secs: if talked.is_empty() { 0.0 } else { talked.iter().map(|&t| f64::from(t)).sum::<f64>() / talked.len() as f64 },
        simulated_cost: PRICE_PER_MINUTE * Decimal::from(connected_minutes),
        calls_by_disposition,
        elapsed,
    })
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "campaign {} {} in {:.1} s", self.campaign, self.status.as_str(), self.elapsed.as_secs_f64())?;
        writeln!(f, "contacts          {} ({} finalised)", self.contacts, self.finalised)?;
        for (d, n) in &self.contacts_by_disposition {
            writeln!(f, "  {:<16}{n}", d.as_str())?;
        }
        writeln!(f, "calls (attempts)  {} ({:.2} per contact)", self.attempts, self.attempts as f64 / self.contacts.max(1) as f64)?;
        for (d, n) in &self.calls_by_disposition {
            writeln!(f, "  {:<16}{n}", d.as_str())?;
        }
        writeln!(f, "answer rate       {:.1}%", self.answer_rate * 100.0)?;
        writeln!(f, "average talk time {:.0} s", self.average_talk_secs)?;
        write!(f, "simulated cost    ${} (connected minutes at ${PRICE_PER_MINUTE}/min)", self.simulated_cost.round_dp(2))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_zones_follow_the_windows_days_and_hours() {
        // Saturday 22:15 UTC: Sydney is already in Sunday (not a calling day), London at 22:15 is closed
        let now = "2026-11-21T22:15:00Z".parse().unwrap();
        let zones = super::open_zones(now);
        assert!(zones.contains(&"America/New_York") && zones.contains(&"Pacific/Honolulu"), "{zones:?}");
        assert!(!zones.contains(&"Australia/Sydney") && !zones.contains(&"Europe/London"), "{zones:?}");
        // 20:30 in São Paulo: open now, closed within the hour
        let later = super::open_zones("2026-11-21T23:30:00Z".parse().unwrap());
        assert!(zones.contains(&"America/Sao_Paulo") && !later.contains(&"America/Sao_Paulo"), "{later:?}");
    }
}
