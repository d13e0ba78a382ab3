//! The `campaign` and `dnc` commands: requests to the API, imports streamed from the file with a
//! progress bar, status shown as a table.

use clap::Subcommand;
use futures::StreamExt;
use outdial::client::ApiClient;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Create a draft campaign; prints it as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// The assistant that makes the calls.
        #[arg(long)]
        assistant: String,
        /// A number to call from, E.164 (repeat for a pool).
        #[arg(long = "caller-id", required = true)]
        caller_ids: Vec<String>,
        /// A JSON file with any other settings (camelCase, as in the API); the flags override it.
        #[arg(long)]
        spec: Option<PathBuf>,
        #[arg(long)]
        cap: Option<u32>,
        /// continuous or batch.
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        batch_size: Option<u32>,
        /// Default time zone of contacts, IANA (e.g. America/Chicago).
        #[arg(long)]
        timezone: Option<String>,
        /// Country in which national numbers are read (e.g. US).
        #[arg(long)]
        region: Option<String>,
        /// twilio, elevenlabs, vapi, retell or simulator (default: the assistant's provider).
        #[arg(long)]
        provider: Option<String>,
        /// Start by itself at this time (RFC 3339).
        #[arg(long)]
        start_at: Option<String>,
        /// lru (default) or local: call from a number of the contact's area code, else its state.
        #[arg(long)]
        caller_id_strategy: Option<String>,
    },
    /// Import contacts from a CSV, JSON or NDJSON file (by extension), streamed with a progress bar.
    /// Each contact needs consent on record: a consent column in the file, or --consent-source.
    Import {
        id: String,
        file: PathBuf,
        /// Country in which national numbers are read (default: the campaign's).
        #[arg(long)]
        region: Option<String>,
        /// Attest that every contact in the file agreed to be called, saying how and where
        /// (e.g. "web form, 2026-10"); recorded with your API key's id and the time.
        #[arg(long)]
        consent_source: Option<String>,
    },
    /// Start a draft campaign (the launch checks run first).
    Start {
        id: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Cancel: contacts not yet called are finalised as canceled.
    Cancel {
        id: String,
    },
    /// A campaign's status and progress as a table.
    Status {
        id: String,
    },
    /// Every campaign as a table.
    List,
}

#[derive(Subcommand)]
pub enum DncCommand {
    /// Put a number on the organisation's do-not-call list.
    Add { phone: String },
    /// Take a number off the list.
    Remove { phone: String },
    /// Add every number of a CSV file (a phone column, or one number per line).
    Import {
        file: PathBuf,
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CallerIdCommand {
    /// Register a number the organisation's campaigns may call from (the provider accounts must hold it).
    Add {
        phone: String,
        /// Vapi's id of the number, for Vapi campaigns.
        #[arg(long)]
        vapi_phone_number_id: Option<String>,
        /// ElevenLabs' id of the number, for ElevenLabs campaigns.
        #[arg(long)]
        elevenlabs_phone_number_id: Option<String>,
    },
    /// The organisation's caller IDs as a JSON array.
    List,
    /// Take a number off the registry.
    Remove { phone: String },
}

#[derive(Subcommand)]
pub enum CrmCommand {
    /// The organisation's CRM connections as a JSON array.
    List,
    /// Send a connection's target a test request and show its answer.
    Test { id: String },
    /// Queue every failed delivery of a campaign's calls again.
    RetryFailed {
        #[arg(long)]
        campaign: String,
    },
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => "application/json",
        Some("ndjson" | "jsonl") => "application/x-ndjson",
        _ => "text/csv",
    }
}

/// Files larger than this go through an upload URL (object storage) instead of one request:
/// function URLs and API Gateway take at most 6 MB.
const DIRECT_IMPORT_MAX_BYTES: u64 = 5 * 1024 * 1024;

/// Imports through `POST /campaigns/{id}/contacts/uploads`: the file PUT to the upload URL, then
/// the upload followed until its import has run; its counts, or its failure as an error.
async fn upload_and_import(
    client: &ApiClient,
    campaign: &str,
    file: &Path,
    mut query: Vec<(&str, String)>,
    (body, size): (reqwest::Body, u64),
    bar: &indicatif::ProgressBar,
) -> Result<Value, Error> {
    let format = match content_type(file) {
        "application/json" => "json",
        "application/x-ndjson" => "ndjson",
        _ => "csv",
    };
    query.push(("format", format.to_string()));
    // the size is signed into the URL: storage takes this file's bytes and no more
    query.push(("size", size.to_string()));
    let ticket = client.post_query(&format!("/campaigns/{campaign}/contacts/uploads"), &query).await?;
    let (Some(upload), Some(url)) = (ticket["uploadId"].as_str(), ticket["uploadUrl"].as_str()) else {
        return Err(format!("the API answered no upload URL: {ticket}").into());
    };
    client.put_upload(url, body, size).await?;
    bar.set_message("importing");
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let state = client.get(&format!("/campaigns/{campaign}/contacts/uploads/{upload}"), &[]).await?;
        match state["status"].as_str() {
            Some("imported") => return Ok(state["report"].clone()),
            Some("failed") => {
                let failure = &state["failure"];
                return Err(format!(
                    "upload {upload} was not imported ({}): {} (imported before it stopped: {})",
                    failure["type"].as_str().unwrap_or("?"),
                    failure["detail"].as_str().unwrap_or("?"),
                    count(&state["report"]["imported"]),
                )
                .into());
            }
            _ => bar.tick(),
        }
    }
}

/// The file as a request body, advancing a progress bar as it is read; and its size.
async fn streamed(file: &Path) -> Result<(reqwest::Body, indicatif::ProgressBar, u64), Error> {
    let opened = tokio::fs::File::open(file).await.map_err(|e| format!("{}: {e}", file.display()))?;
    let size = opened.metadata().await?.len();
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")?.progress_chars("=> "),
    );
    bar.set_message("uploading");
    let progress = bar.clone();
    let chunks = tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            progress.inc(bytes.len() as u64);
        }
    });
    Ok((reqwest::Body::wrap_stream(chunks), bar, size))
}

fn show(value: &Value) -> Result<(), Error> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn count(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

/// A campaign's status and progress, one line per fact.
fn status_table(c: &Value) -> String {
    let p = &c["progress"];
    let mut rows = vec![
        ("campaign", format!("{} ({})", c["name"].as_str().unwrap_or("?"), c["id"].as_str().unwrap_or("?"))),
        ("status", c["status"].as_str().unwrap_or("?").to_string()),
        ("provider", c["provider"].as_str().unwrap_or("?").to_string()),
        ("cap", count(&c["cap"])),
        ("contacts", format!("{} done of {} ({}%)", count(&p["contactsDone"]), count(&p["contactsTotal"]), p["completionPercent"])),
        ("active calls", count(&p["activeCalls"])),
        ("attempts", count(&p["attempts"])),
    ];
    for (group, label) in [("byState", "state"), ("byDisposition", "disposition")] {
        if let Some(map) = p[group].as_object() {
            for (name, n) in map {
                rows.push((label, format!("{name}: {}", count(n))));
            }
        }
    }
    rows.into_iter().map(|(k, v)| format!("{k:<14} {v}\n")).collect()
}

pub async fn campaign(client: &ApiClient, command: CampaignCommand) -> Result<(), Error> {
    match command {
        CampaignCommand::Create {
            name,
            assistant,
            caller_ids,
            spec,
            cap,
            mode,
            batch_size,
            timezone,
            region,
            provider,
            start_at,
            caller_id_strategy,
        } => {
            let mut body: Value = match spec {
                Some(path) => serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| format!("{}: not JSON: {e}", path.display()))?,
                None => json!({}),
            };
            let fields = [
                ("name", Some(Value::from(name))),
                ("assistantId", Some(Value::from(assistant))),
                ("callerIds", Some(Value::from(caller_ids))),
                ("cap", cap.map(Value::from)),
                ("mode", mode.map(Value::from)),
                ("batchSize", batch_size.map(Value::from)),
                ("timezone", timezone.map(Value::from)),
                ("region", region.map(Value::from)),
                ("provider", provider.map(Value::from)),
                ("startAt", start_at.map(Value::from)),
                ("callerIdStrategy", caller_id_strategy.map(Value::from)),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            show(&client.post("/campaigns", &body).await?)?
        }
        CampaignCommand::Import { id, file, region, consent_source } => {
            let (body, bar, size) = streamed(&file).await?;
            let mut query: Vec<(&str, String)> = region.map(|r| ("region", r)).into_iter().collect();
            if let Some(source) = consent_source {
                query.extend([("consent", "attested".to_string()), ("consentSource", source)]);
            }
            let report = if size > DIRECT_IMPORT_MAX_BYTES || !client.is_local() {
                upload_and_import(client, &id, &file, query, (body, size), &bar).await
            } else {
                bar.set_message("importing");
                client.post_stream(&format!("/campaigns/{id}/contacts"), &query, content_type(&file), body).await.map_err(Error::from)
            };
            bar.finish_and_clear();
            let report = report?;
            eprintln!(
                "imported {}, duplicate {}, do-not-call {}, invalid {}",
                count(&report["imported"]),
                count(&report["duplicate"]),
                count(&report["doNotCall"]),
                count(&report["invalid"])
            );
            for e in report["errors"].as_array().into_iter().flatten() {
                eprintln!("  line {}: {:?} {}", e["line"], e["value"].as_str().unwrap_or(""), e["reason"].as_str().unwrap_or(""));
            }
            show(&report)?
        }
        CampaignCommand::Start { id } => print!("{}", status_table(&client.post(&format!("/campaigns/{id}/start"), &Value::Null).await?)),
        CampaignCommand::Pause { id } => print!("{}", status_table(&client.post(&format!("/campaigns/{id}/pause"), &Value::Null).await?)),
        CampaignCommand::Resume { id } => print!("{}", status_table(&client.post(&format!("/campaigns/{id}/resume"), &Value::Null).await?)),
        CampaignCommand::Cancel { id } => print!("{}", status_table(&client.post(&format!("/campaigns/{id}/cancel"), &Value::Null).await?)),
        CampaignCommand::Status { id } => print!("{}", status_table(&client.get(&format!("/campaigns/{id}"), &[]).await?)),
        CampaignCommand::List => {
            println!("{:<38} {:<10} {:>8} {:>8} {:>6}  name", "id", "status", "contacts", "done", "active");
            for c in client.get_all("/campaigns", &[]).await? {
                let p = &c["progress"];
                println!(
                    "{:<38} {:<10} {:>8} {:>8} {:>6}  {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["status"].as_str().unwrap_or("?"),
                    count(&p["contactsTotal"]),
                    count(&p["contactsDone"]),
                    count(&p["activeCalls"]),
                    c["name"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}

pub async fn dnc(client: &ApiClient, command: DncCommand) -> Result<(), Error> {
    let reply = match command {
        DncCommand::Add { phone } => client.put(&format!("/dnc/{}", encode_phone(&phone))).await?,
        DncCommand::Remove { phone } => {
            client.delete(&format!("/dnc/{}", encode_phone(&phone))).await?;
            json!({ "removed": phone })
        }
        DncCommand::Import { file, region } => {
            let (body, bar, _) = streamed(&file).await?;
            let query: Vec<(&str, String)> = region.map(|r| ("region", r)).into_iter().collect();
            let report = client.post_stream("/dnc", &query, "text/csv", body).await;
            bar.finish_and_clear();
            report?
        }
    };
    show(&reply)
}

pub async fn caller_id(client: &ApiClient, command: CallerIdCommand) -> Result<(), Error> {
    let reply = match command {
        CallerIdCommand::Add { phone, vapi_phone_number_id, elevenlabs_phone_number_id } => {
            let body =
                json!({ "phone": phone, "vapiPhoneNumberId": vapi_phone_number_id, "elevenlabsPhoneNumberId": elevenlabs_phone_number_id });
            client.post("/caller-ids", &body).await?
        }
        CallerIdCommand::List => Value::Array(client.get_all("/caller-ids", &[]).await?),
        CallerIdCommand::Remove { phone } => {
            client.delete(&format!("/caller-ids/{}", encode_phone(&phone))).await?;
            json!({ "removed": phone })
        }
    };
    show(&reply)
}

/// `outdial crm`: connections listed and tested, failed deliveries queued again.
pub async fn crm(client: &ApiClient, command: CrmCommand) -> Result<(), Error> {
    let reply = match command {
        CrmCommand::List => Value::Array(client.get_all("/crm/connections", &[]).await?),
        CrmCommand::Test { id } => {
            let tested = client.post(&format!("/crm/connections/{id}/test"), &Value::Null).await?;
            let verdict = if tested["ok"].as_bool() == Some(true) { "ok" } else { "FAILED" };
            eprintln!("{verdict}: {}", tested["answer"].as_str().unwrap_or_default());
            tested
        }
        CrmCommand::RetryFailed { campaign } => {
            let requeued = client.post(&format!("/campaigns/{campaign}/crm/retry"), &Value::Null).await?;
            eprintln!("re-queued {} failed deliveries of {} calls", requeued["deliveries"], requeued["calls"]);
            requeued
        }
    };
    show(&reply)
}

/// Where `outdial report` writes besides stdout.
pub struct ReportFiles<'a> {
    pub csv: Option<&'a Path>,
    pub html: Option<&'a Path>,
    pub include_phone: bool,
}

/// `outdial report`: the campaign's numbers (a summary on stderr, the JSON on stdout); with
/// `--html FILE` the page with its charts, with `--csv FILE` every call streamed with progress.
pub async fn report(client: &ApiClient, campaign: &str, files: ReportFiles<'_>) -> Result<(), Error> {
    let ReportFiles { csv, html, include_phone } = files;
    let report = client.get(&format!("/campaigns/{campaign}/report"), &[]).await?;
    let calls: domain::report::CallNumbers = serde_json::from_value(report["calls"].clone())?;
    eprintln!("{}: {}", report["name"].as_str().unwrap_or(campaign), calls.summary());
    if let Some(file) = html {
        let mut out = tokio::fs::File::create(file).await?;
        client.download(&format!("/campaigns/{campaign}/report.html"), &[], &mut out, |_| {}).await?;
        eprintln!("html: {}", file.display());
    }
    if let Some(file) = csv {
        let mut out = tokio::fs::File::create(file).await?;
        let bar = indicatif::ProgressBar::new_spinner()
            .with_style(indicatif::ProgressStyle::with_template("{spinner} calls.csv {bytes} {bytes_per_sec}")?);
        let query = [("includePhone", include_phone.to_string())];
        let written = client.download(&format!("/campaigns/{campaign}/calls.csv"), &query, &mut out, |n| bar.set_position(n)).await?;
        bar.finish_and_clear();
        eprintln!("csv: {} ({written} bytes)", file.display());
    }
    show(&report)
}

/// `outdial report daily`: the organisation's report of one day — a line for all campaigns and
/// one per campaign, then the JSON; with `--html FILE` its page.
pub async fn daily_report(client: &ApiClient, date: &str, html: Option<&std::path::Path>) -> Result<(), Error> {
    let report = client.get(&format!("/reports/daily/{date}"), &[]).await?;
    let line = |name: &str, calls: &Value| -> Result<(), Error> {
        let calls: domain::report::CallNumbers = serde_json::from_value(calls.clone())?;
        eprintln!("{name}: {}", calls.summary());
        Ok(())
    };
    eprintln!("daily report {} ({})", report["date"].as_str().unwrap_or(date), report["timeZone"].as_str().unwrap_or("UTC"));
    line("all campaigns", &report["totals"])?;
    for row in report["campaigns"].as_array().into_iter().flatten() {
        line(row["name"].as_str().unwrap_or("?"), &row["calls"])?;
    }
    if let Some(file) = html {
        let mut out = tokio::fs::File::create(file).await?;
        client.download(&format!("/reports/daily/{date}.html"), &[], &mut out, |_| {}).await?;
        eprintln!("html: {}", file.display());
    }
    show(&report)
}

/// `outdial stop`: sets the emergency stop (`--lift` lifts it, `--status` only shows it).
pub async fn stop(client: &ApiClient, lift: bool, status: bool) -> Result<(), Error> {
    let reply = if status {
        client.get("/emergency-stop", &[]).await?
    } else if lift {
        client.delete("/emergency-stop").await?
    } else {
        client.post("/emergency-stop", &Value::Null).await?
    };
    match (reply["active"].as_bool(), reply["since"].as_str()) {
        (Some(true), Some(since)) => eprintln!("emergency stop: ON since {since}; nothing is started, claimed or dialed"),
        _ => eprintln!("emergency stop: off"),
    }
    for c in reply["pausedCampaigns"].as_array().into_iter().flatten() {
        eprintln!("  paused {} ({})", c["name"].as_str().unwrap_or("?"), c["id"].as_str().unwrap_or("?"));
    }
    show(&reply)
}

/// `+` and spaces kept literal in a path segment.
fn encode_phone(phone: &str) -> String {
    phone.chars().filter(|c| !c.is_whitespace()).map(|c| if c == '+' { "%2B".to_string() } else { c.to_string() }).collect()
}
