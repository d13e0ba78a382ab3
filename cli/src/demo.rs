//! `outdial demo`: one process runs a whole simulated campaign through the real stack — HTTP
//! API, local timer and queue, campaign-tick, dialer, the simulator, and the webhook routes it
//! reports to with real signatures — and reports what the store says happened.

use crate::{Stack, client::ApiClient};
use chrono::Utc;
use domain::{CallDisposition, CampaignId, CampaignStatus, ContactDisposition, OrgId, report::percent};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};
use store::{CallFilter, Store};

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

/// What the demo's stack prices 1,000 ElevenLabs credits at, so the simulator's reported costs
/// (`providers::simulator::SIMULATED_CREDITS_PER_MINUTE` a minute) reach the report as money:
/// $0.09 a minute of conversation, unless `OUTDIAL_ELEVENLABS_CREDIT_PRICE` says otherwise.
pub const DEMO_CREDIT_PRICE: Decimal = Decimal::from_parts(9, 0, 0, false, 2);

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
    /// The campaign's call numbers, as `GET /campaigns/{id}/report` and its page give them.
    pub numbers: domain::report::CallNumbers,
    pub elapsed: Duration,
}

/// Runs the demo on `store` (a fresh database) with the simulator, and reports.
pub async fn run<S: Store>(store: S, mut stack: Stack, options: &DemoOptions) -> Result<DemoReport, Error> {
    let started = std::time::Instant::now();
    stack.config.scheduler.local_tick = Duration::from_millis(250);
    let calls = &mut stack.config.dialing.calls;
    calls.simulator_seed = options.seed;
    calls.simulator_speed = options.speed;
    stack.config.elevenlabs_credit_price =
        stack.config.elevenlabs_credit_price.or_else(|| domain::Money::from_decimal(DEMO_CREDIT_PRICE).ok());
    // the simulated conversations send signed ElevenLabs post-call transcripts
    calls.elevenlabs_webhook_secret = Some(format!("demo-{}", uuid::Uuid::now_v7().simple()).into());
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
    let (window, areas) = callable_areas(Utc::now());
    for phone in CALLER_IDS {
        api.post("/caller-ids", &json!({ "phone": phone })).await?;
    }
    let campaign = api.post("/campaigns", &campaign_spec(&assistant, &window)).await?;
    let id = campaign["id"].as_str().ok_or("the campaign has no id")?.to_string();
    let csv = contacts_csv(options.contacts, options.seed, &areas);
    // generated people: the demo attests for them, as an importer with consent records would
    let attest = [("consent", "attested".to_string()), ("consentSource", "outdial demo: generated contacts".to_string())];
    api.post_stream(&format!("/campaigns/{id}/contacts"), &attest, "text/csv", csv.into()).await?;
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

/// The area codes the demo's numbers come from (NY, CA, CA, TX, MA, NV, FL, WA).
const AREAS: [u32; 8] = [212, 310, 415, 512, 617, 702, 305, 206];

/// For each area code, the zones in which its contacts may be called now and for the next hour
/// under their legal hours (the federal ones and their state's), with the default window when
/// that leaves every area some zone, else with an every-day window (a Sunday, say). Areas with no
/// such zone are left out.
fn callable_areas(now: chrono::DateTime<Utc>) -> (domain::CallingWindow, Vec<(u32, Vec<&'static str>)>) {
    let open = |window: &domain::CallingWindow| -> Vec<(u32, Vec<&'static str>)> {
        AREAS
            .iter()
            .map(|&area| {
                let phone = domain::E164::parse(&format!("+1{area}5550100"), None).expect("a valid demo number");
                let legal = domain::EffectiveWindow::of(window, domain::UsState::of_number(&phone));
                let zones = ZONES
                    .iter()
                    .copied()
                    .filter(|zone| {
                        zone.parse::<chrono_tz::Tz>()
                            .is_ok_and(|tz| legal.is_open_at(now, tz) && legal.is_open_at(now + chrono::Duration::hours(1), tz))
                    })
                    .collect();
                (area, zones)
            })
            .filter(|(_, zones): &(u32, Vec<&str>)| !zones.is_empty())
            .collect()
    };
    let default = domain::CallingWindow::default();
    let areas = open(&default);
    if areas.len() == AREAS.len() {
        return (default, areas);
    }
    let every_day = domain::CallingWindow::parse(domain::Day::ALL, "00:00", "23:59").expect("a valid window");
    let areas = open(&every_day);
    (every_day, areas)
}

/// The numbers the demo calls from, registered to its organisation (the simulator holds any number).
const CALLER_IDS: [&str; 3] = ["+14155550100", "+14155550101", "+14155550102"];

fn campaign_spec(assistant: &Value, window: &domain::CallingWindow) -> Value {
    json!({
        "name": "Demo: plan renewals",
        "assistantId": assistant["id"],
        "provider": "simulator",
        "cap": 50,
        "callerIds": CALLER_IDS,
        "timezone": "America/New_York",
        "callingWindow": window,
        "retryPolicy": { "maxAttempts": 3, "delayMinutes": 0, "retryOn": ["busy", "no_answer", "failed"] },
        "voicemail": { "action": "leave_message", "message": "Hi, this is the renewals assistant. Please call us back." },
        "maxCallSeconds": 600,
    })
}

/// `n` contacts with US numbers from `areas`, each in one of its area's open zones, the same for
/// the same seed.
fn contacts_csv(n: u32, seed: u64, areas: &[(u32, Vec<&str>)]) -> String {
    use rand::{Rng, SeedableRng};
    const NAMES: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut csv = String::from("phone,name,timezone,plan\n");
    for i in 0..n {
        let (area, zones) = &areas[rng.random_range(0..areas.len())];
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
    Ok(store::every_page(|page| store.list_calls(org, campaign, CallFilter::default(), page)).await?)
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
    let numbers = reports::campaign_report(store, org, campaign_id).await?.calls;
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
        numbers,
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
        // the report's names and definitions (README "Reports"), from the report itself
        let n = &self.numbers;
        writeln!(f, "answer rate       {}", percent(n.answer_rate))?;
        writeln!(f, "human rate        {}", percent(n.human_rate))?;
        writeln!(
            f,
            "talk time         {} min (median call {})",
            n.talk_seconds / 60,
            n.duration_seconds.p50.map_or("—".into(), |s| format!("{s} s"))
        )?;
        write!(f, "cost              {}", n.cost.describe(n.finished))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contacts_get_zones_their_legal_hours_are_open_in() {
        // Saturday 22:15 UTC: Sydney is already in Sunday, London at 22:15 is closed; 17:15 in New
        // York is open for every state, 19:15 in São Paulo is past Florida's 20:00 within the hour
        let now = "2026-11-21T22:15:00Z".parse().unwrap();
        let (window, areas) = super::callable_areas(now);
        assert_eq!(window, domain::CallingWindow::default());
        assert_eq!(areas.len(), super::AREAS.len(), "{areas:?}");
        for (area, zones) in &areas {
            assert!(zones.contains(&"America/New_York"), "{area}: {zones:?}");
            assert!(!zones.contains(&"Australia/Sydney") && !zones.contains(&"Europe/London"), "{area}: {zones:?}");
        }
        let florida = &areas.iter().find(|(a, _)| *a == 305).unwrap().1;
        let new_york = &areas.iter().find(|(a, _)| *a == 212).unwrap().1;
        assert!(!florida.contains(&"America/Sao_Paulo") && new_york.contains(&"America/Sao_Paulo"), "{florida:?} / {new_york:?}");
        // a Sunday noon in the Americas: the default window is closed there, an every-day one is used
        let (window, areas) = super::callable_areas("2026-11-22T17:00:00Z".parse().unwrap());
        assert!(window.days().contains(&domain::Day::Sun) && !areas.is_empty());
        let csv = super::contacts_csv(20, 7, &areas);
        assert_eq!(csv.lines().count(), 21);
    }
}
