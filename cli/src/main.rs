//! `outdial`: the local stack, the demo, and administration.

mod campaign_commands;

use campaign_commands::{CallerIdCommand, CampaignCommand, CrmCommand, DncCommand};
use clap::{Args, Parser, Subcommand};
use outdial::Stack;
use outdial::client::ApiClient;
use platform::{Config, StoreConfig, telemetry};
use serde_json::{Value, json};
use std::{collections::BTreeMap, path::PathBuf};
use store::{DynamoStore, SqliteStore, Store};

#[derive(Parser)]
#[command(name = "outdial", version, about = "AI phone-call campaigns, on a laptop or on AWS")]
struct Cli {
    /// SQLite database file (default: $OUTDIAL_DB, else ./outdial.db). Ignored with OUTDIAL_STORE=dynamodb.
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// parsed once per process, so the size of its largest variant does not matter
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Organisations (tenants).
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Create or upgrade the database schema (DynamoDB: create the table).
    Migrate,
    /// Run the local stack: every HTTP function on one port.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run a whole simulated campaign end to end: a fresh database (a temporary one unless --db),
    /// the simulator, live progress, a final report read back from the store.
    Demo {
        /// How many contacts to generate.
        #[arg(long, default_value_t = 500)]
        contacts: u32,
        /// Seeds the contacts and every simulated call's life: the same seed, the same outcome.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 120.0)]
        speed: f64,
    },
    /// The assistant directory, through the HTTP API of the local stack or a deployment.
    Assistant {
        #[command(flatten)]
        api: Api,
        #[command(subcommand)]
        command: AssistantCommand,
    },
    /// Campaigns: create, import contacts, start, pause, resume, cancel, status, list.
    Campaign {
        #[command(flatten)]
        api: Api,
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// The organisation's do-not-call list.
    Dnc {
        #[command(flatten)]
        api: Api,
        #[command(subcommand)]
        command: DncCommand,
    },
    /// The numbers the organisation's campaigns may call from.
    CallerId {
        #[command(flatten)]
        api: Api,
        #[command(subcommand)]
        command: CallerIdCommand,
    },
    /// A campaign's report: its numbers as JSON; with --html the page with its charts, with --csv
    /// every call. `outdial report daily [--date D]`: the organisation's daily report (yesterday's
    /// unless --date says which day).
    Report {
        #[command(flatten)]
        api: Api,
        /// A campaign id, or `daily` for the organisation's daily report.
        campaign: String,
        /// With `daily`: the day (2026-11-24, yesterday or today; yesterday when not given).
        #[arg(long)]
        date: Option<String>,
        /// Stream every call of the campaign as CSV into this file.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
        /// Write the report as one HTML page with its charts into this file.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Full phone numbers in the CSV instead of masked ones.
        #[arg(long)]
        include_phone: bool,
    },
    /// CRM connections and deliveries.
    Crm {
        #[command(flatten)]
        api: Api,
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// The deployment's credentials in AWS: the one Secrets Manager secret the functions read at
    /// cold start (the stack's `SecretsArn` output).
    Secrets {
        /// The secret's ARN or name.
        #[arg(long, env = "OUTDIAL_SECRETS_ARN", global = true)]
        secret_id: Option<String>,
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The emergency stop: pause every running campaign and place no call until it is lifted.
    Stop {
        #[command(flatten)]
        api: Api,
        /// Lift the stop (campaigns it paused stay paused until resumed).
        #[arg(long, conflicts_with = "status")]
        lift: bool,
        /// Only show whether the stop holds.
        #[arg(long)]
        status: bool,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set one credential (e.g. TWILIO_AUTH_TOKEN), keeping the others: the value is read from
    /// standard input, never the command line; an empty value removes it. Functions read it at
    /// their next cold start.
    Set { name: String },
    /// The credentials the secret holds, by name (never their values).
    List,
}

/// Where the API is and the key to it.
#[derive(Args)]
struct Api {
    /// Base URL of the API: the local stack (`outdial serve`) or a deployed function URL.
    #[arg(long, env = "OUTDIAL_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An API key of the organisation (`outdial key create`).
    #[arg(long, env = "OUTDIAL_API_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum AssistantCommand {
    /// List assistants (templates included) as a JSON array.
    List {
        /// local, imported or template.
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        active: Option<bool>,
    },
    /// Create an assistant at its provider and in the directory; prints it as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// vapi, elevenlabs, retell or simulator.
        #[arg(long, default_value = "simulator")]
        provider: String,
        /// A JSON file with the whole config (camelCase, as in the API); the flags below override it.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        system_prompt: Option<String>,
        /// The opening line; it should say the caller is an AI assistant.
        #[arg(long)]
        first_message: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        language: Option<String>,
        #[arg(long, requires = "voice_id")]
        voice_provider: Option<String>,
        #[arg(long, requires = "voice_provider")]
        voice_id: Option<String>,
        #[arg(long)]
        silence_timeout_seconds: Option<u32>,
        #[arg(long)]
        max_duration_seconds: Option<u32>,
    },
    /// Bring an assistant that exists at a provider into the directory (again: updates it).
    Import {
        #[arg(long)]
        provider: String,
        /// The assistant's id at the provider.
        #[arg(long)]
        provider_assistant_id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Copy an assistant or template into a new editable one; prints it as JSON.
    Clone {
        /// The assistant or template to copy.
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Where to create the copy (default: the original's provider).
        #[arg(long)]
        provider: Option<String>,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation with the built-in assistant templates; prints its id alone on the last line.
    Create { name: String },
    /// Install the built-in assistant templates in an organisation, or bring them up to date.
    Templates {
        #[arg(long)]
        org: String,
    },
    /// Every organisation of the deployment, oldest first: id, name, created.
    List,
    /// One organisation: its name, templates, campaigns and API keys.
    Show { id: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; prints the key, once, alone on the last line.
    Create {
        #[arg(long)]
        org: String,
        /// What the key is for.
        #[arg(long, default_value = "default")]
        name: String,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// The organisation's keys: id, name, created, last used, expiry, revoked.
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by its id (`key_…`): its next request gets a 401.
    Revoke { id: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Assistant { api, command } => return assistant(api, command).await,
        Command::Campaign { api, command } => return campaign_commands::campaign(&api.client()?, command).await,
        Command::Dnc { api, command } => return campaign_commands::dnc(&api.client()?, command).await,
        Command::CallerId { api, command } => return campaign_commands::caller_id(&api.client()?, command).await,
        Command::Crm { api, command } => return campaign_commands::crm(&api.client()?, command).await,
        Command::Report { api, campaign, date, html, .. } if campaign == "daily" => {
            return campaign_commands::daily_report(&api.client()?, date.as_deref().unwrap_or("yesterday"), html.as_deref()).await;
        }
        Command::Report { date: Some(_), .. } => {
            return Err("--date goes with `outdial report daily`; a campaign's report covers all its days".into());
        }
        Command::Report { api, campaign, csv, html, include_phone, .. } => {
            let files = campaign_commands::ReportFiles { csv: csv.as_deref(), html: html.as_deref(), include_phone };
            return campaign_commands::report(&api.client()?, &campaign, files).await;
        }
        Command::Stop { api, lift, status } => return campaign_commands::stop(&api.client()?, lift, status).await,
        Command::Secrets { secret_id, command } => return secrets(secret_id, command).await,
        _ => {}
    }
    let config = Config::from_env()?;
    if let Command::Demo { contacts, seed, speed } = cli.command {
        // the progress bar is the demo's output; logs only when something goes wrong
        telemetry::init_at(config.log_format, "warn");
        return demo(cli.db, &config, outdial::demo::DemoOptions { contacts, seed, speed, ..Default::default() }).await;
    }
    telemetry::init(config.log_format);
    let stack = Stack::from_config(&config);
    match config.store {
        StoreConfig::Sqlite { path } => {
            let path = cli.db.clone().unwrap_or(path);
            let store = SqliteStore::open(&path)?;
            let stack = stack.with_queue_at(&path)?.with_secrets_beside(&path)?.with_uploads_beside(&path);
            if matches!(cli.command, Command::Migrate) {
                println!("{} is at schema version {}", path.display(), store.schema_version());
            }
            execute(store, stack, cli.command).await
        }
        StoreConfig::DynamoDb { table, endpoint } => {
            let store = DynamoStore::connect(&table, endpoint.as_deref()).await;
            if matches!(cli.command, Command::Migrate) {
                store.create_table().await?;
                let finalised = store.finalise_contacts_without_consent(chrono::Utc::now()).await?;
                println!("table {table} is ready; {finalised} contacts without consent finalised as no_consent");
            }
            execute(store, stack, cli.command).await
        }
    }
}

async fn execute<S: Store>(store: S, stack: Stack, command: Command) -> Result<(), Error> {
    match command {
        Command::Org { command: OrgCommand::Create { name } } => {
            let org = store.create_org(&name).await?;
            let templates = assistants::install_templates(&store, org.id).await.map_err(|e| {
                format!(
                    "organisation {} was created but its templates were not installed ({e}): run `outdial org templates --org {}`",
                    org.id, org.id
                )
            })?;
            eprintln!("created organisation {:?} with {} assistant templates", org.name, templates.len());
            println!("{}", org.id);
        }
        Command::Org { command: OrgCommand::List } => {
            println!("id\tname\tcreated");
            for org in store::every_page(|page| store.list_orgs(page)).await? {
                println!("{}\t{}\t{}", org.id, org.name, org.created_at.to_rfc3339());
            }
        }
        Command::Org { command: OrgCommand::Show { id } } => print!("{}", show_org(&store, domain::OrgId::parse(&id)?).await?),
        Command::Org { command: OrgCommand::Templates { org } } => {
            let org = domain::OrgId::parse(&org)?;
            store.get_org(org).await?;
            for template in assistants::install_templates(&store, org).await? {
                println!("{}\t{}", template.id, template.name);
            }
        }
        Command::Key { command: KeyCommand::Create { org, name, expires_in_days } } => {
            let now = chrono::Utc::now();
            let expires_at = expires_in_days.map(|d| now + chrono::TimeDelta::days(d.into()));
            let new = store::NewApiKey::parse(Some(&name), expires_at, now)
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
            let created = store.create_named_api_key(domain::OrgId::parse(&org)?, new).await?;
            eprintln!("created API key {} ({name}) for organisation {org}; it is shown only this once:", created.key.hash.id());
            println!("{}", created.secret);
        }
        Command::Key { command: KeyCommand::List { org } } => {
            let org = domain::OrgId::parse(&org)?;
            store.get_org(org).await?;
            println!("id\tname\tcreated\tlast used\texpires\trevoked");
            let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_string(), |t| t.to_rfc3339());
            for k in store::every_page(|page| store.list_api_keys(org, page)).await? {
                let (id, created) = (k.hash.id(), k.created_at.to_rfc3339());
                println!("{id}\t{}\t{created}\t{}\t{}\t{}", k.name, at(k.last_used_at), at(k.expires_at), at(k.revoked_at));
            }
        }
        Command::Key { command: KeyCommand::Revoke { id } } => {
            let key = store.api_key_by_id(&id).await?.ok_or_else(|| format!("there is no API key {id}"))?;
            store.revoke_api_key(key.org_id, &id).await?;
            eprintln!("revoked API key {id} ({}) of organisation {}", key.name, key.org_id);
        }
        Command::Migrate => {}
        Command::Serve { port } => {
            outdial::check_exposure(&stack.config)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            tracing::info!(address = %listener.local_addr()?, "outdial local stack listening");
            outdial::serve(store, stack, listener).await?;
        }
        Command::Assistant { .. }
        | Command::Campaign { .. }
        | Command::Dnc { .. }
        | Command::CallerId { .. }
        | Command::Crm { .. }
        | Command::Report { .. }
        | Command::Stop { .. }
        | Command::Secrets { .. }
        | Command::Demo { .. } => {
            unreachable!("handled before the store is opened")
        }
    }
    Ok(())
}

/// `outdial org show`: what an operator checks after onboarding a team.
async fn show_org<S: Store>(store: &S, id: domain::OrgId) -> Result<String, Error> {
    let org = store.get_org(id).await?;
    let filter = store::AssistantFilter { active: None, source: Some(domain::AssistantSource::Template) };
    let templates = store::every_page(|page| store.list_assistants(id, filter, page)).await?;
    let campaigns = store::every_page(|page| store.list_campaigns(id, page)).await?;
    let keys = store::every_page(|page| store.list_api_keys(id, page)).await?;
    let mut by_status = BTreeMap::<&str, usize>::new();
    for c in &campaigns {
        *by_status.entry(c.status.as_str()).or_default() += 1;
    }
    let statuses = by_status.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
    let active_keys = keys.iter().filter(|k| k.is_active(chrono::Utc::now())).count();
    let stop = org.emergency_stop.as_ref().map_or("off".to_string(), |s| format!("on since {}", s.since.to_rfc3339()));
    let names = templates.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    Ok(format!(
        "id              {}\nname            {}\ncreated         {}\ntemplates       {} ({names})\ncampaigns       {}{}\nkeys            {} ({active_keys} active)\nemergency stop  {stop}\n",
        org.id,
        org.name,
        org.created_at.to_rfc3339(),
        templates.len(),
        campaigns.len(),
        if statuses.is_empty() { String::new() } else { format!(" ({statuses})") },
        keys.len(),
    ))
}

async fn secrets(secret_id: Option<String>, command: SecretsCommand) -> Result<(), Error> {
    let id = secret_id.ok_or("name the secret: --secret-id or OUTDIAL_SECRETS_ARN (the stack's SecretsArn output)")?;
    let endpoint = std::env::var("SECRETSMANAGER_ENDPOINT").ok().filter(|e| !e.is_empty());
    let secret = match command {
        SecretsCommand::Set { name } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)?;
            let secret = platform::DeploymentSecret::set(&id, endpoint.as_deref(), &name, value.trim_end_matches(['\r', '\n'])).await?;
            eprintln!("{name} {}; functions read it at their next cold start", if secret.get(&name).is_some() { "set" } else { "removed" });
            secret
        }
        SecretsCommand::List => platform::DeploymentSecret::fetch(&id, endpoint.as_deref()).await?,
    };
    for name in secret.variables() {
        println!("{name}");
    }
    Ok(())
}

/// The demo always runs on a fresh SQLite database: `--db` if given, else a temporary one.
async fn demo(db: Option<PathBuf>, config: &Config, options: outdial::demo::DemoOptions) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = db.unwrap_or_else(|| dir.path().join("outdial-demo.db"));
    let store = SqliteStore::open(&path)?;
    // the demo is the simulator's: it runs whatever OUTDIAL_SIMULATOR says
    let mut config = config.clone();
    config.providers.simulator = true;
    let stack = Stack::from_config(&config).with_queue_at(&path)?.with_secrets_beside(&path)?;
    eprintln!("outdial demo: {} simulated contacts, seed {}, database {}", options.contacts, options.seed, path.display());
    let report = outdial::demo::run(store.clone(), stack, &options).await?;
    println!("{report}");
    // the same page `GET /campaigns/{id}/report.html` serves, kept after the demo's database is gone
    let page = reports::html::render(&reports::campaign_report(&store, report.org, report.campaign).await?);
    let file = std::env::temp_dir().join(format!("outdial-demo-report-{}.html", report.campaign));
    std::fs::write(&file, page)?;
    println!("report: {}", file.display());
    Ok(())
}

/// The `assistant` commands: requests to the API, replies printed as JSON.
impl Api {
    fn client(self) -> Result<ApiClient, Error> {
        let key = self.key.ok_or("an API key is needed: pass --key or set OUTDIAL_API_KEY (create one with `outdial key create`)")?;
        Ok(ApiClient::new(&self.url, &key))
    }
}

async fn assistant(api: Api, command: AssistantCommand) -> Result<(), Error> {
    let client = api.client()?;
    let reply = match command {
        AssistantCommand::List { source, active } => {
            let mut query = Vec::new();
            query.extend(source.map(|s| ("source", s)));
            query.extend(active.map(|a| ("active", a.to_string())));
            Value::Array(client.get_all("/assistants", &query).await?)
        }
        AssistantCommand::Create {
            name,
            provider,
            config,
            system_prompt,
            first_message,
            model,
            language,
            voice_provider,
            voice_id,
            silence_timeout_seconds,
            max_duration_seconds,
        } => {
            let mut config: Value = match config {
                Some(path) => serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| format!("{}: not JSON: {e}", path.display()))?,
                None => json!({}),
            };
            let overrides = [
                ("systemPrompt", system_prompt.map(Value::from)),
                ("firstMessage", first_message.map(Value::from)),
                ("model", model.map(Value::from)),
                ("language", language.map(Value::from)),
                ("silenceTimeoutSeconds", silence_timeout_seconds.map(Value::from)),
                ("maxDurationSeconds", max_duration_seconds.map(Value::from)),
                ("voice", voice_provider.zip(voice_id).map(|(provider, id)| json!({ "provider": provider, "voiceId": id }))),
            ];
            for (field, value) in overrides {
                if let Some(value) = value {
                    config[field] = value;
                }
            }
            client.post("/assistants", &json!({ "name": name, "provider": provider, "config": config })).await?
        }
        AssistantCommand::Import { provider, provider_assistant_id, name } => {
            let body = json!({ "provider": provider, "providerAssistantId": provider_assistant_id, "name": name });
            client.post("/assistants/import", &body).await?
        }
        AssistantCommand::Clone { id, name, provider } => {
            client.post(&format!("/assistants/{id}/clone"), &json!({ "name": name, "provider": provider })).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}
