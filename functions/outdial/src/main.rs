//! `outdial`: the local stack, the demo, and administration.

use clap::{Parser, Subcommand};
use platform::{Config, StoreConfig, telemetry};
use std::path::PathBuf;
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
    /// Run a whole simulated campaign end to end.
    Demo,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation; prints its id alone on the last line.
    Create { name: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; prints the key, once, alone on the last line.
    Create {
        #[arg(long)]
        org: String,
    },
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
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match config.store {
        StoreConfig::Sqlite { path } => {
            let path = cli.db.clone().unwrap_or(path);
            let store = SqliteStore::open(&path)?;
            if matches!(cli.command, Command::Migrate) {
                println!("{} is at schema version {}", path.display(), store.schema_version()?);
            }
            execute(store, cli.command).await
        }
        StoreConfig::DynamoDb { table, endpoint } => {
            let store = DynamoStore::connect(&table, endpoint.as_deref()).await;
            if matches!(cli.command, Command::Migrate) {
                store.create_table().await?;
                println!("table {table} is ready");
            }
            execute(store, cli.command).await
        }
    }
}

async fn execute<S: Store>(store: S, command: Command) -> Result<(), Error> {
    match command {
        Command::Org { command: OrgCommand::Create { name } } => {
            let org = store.create_org(&name).await?;
            eprintln!("created organisation {:?}", org.name);
            println!("{}", org.id);
        }
        Command::Key { command: KeyCommand::Create { org } } => {
            let created = store.create_api_key(domain::OrgId::parse(&org)?).await?;
            eprintln!("created an API key for organisation {org}; it is shown only this once:");
            println!("{}", created.secret);
        }
        Command::Migrate => {}
        Command::Serve { port } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            tracing::info!(address = %listener.local_addr()?, "outdial local stack listening");
            outdial::serve(store, listener).await?;
        }
        Command::Demo => {
            println!("outdial demo: the simulated campaign arrives with the dialing and webhook issues.");
            println!("Today the local stack runs with `outdial serve`; see README.md.");
        }
    }
    Ok(())
}
