//! The media bridge as a service (Fargate): configuration from the environment, DynamoDB, one
//! port (`PORT`, default 8080); on ECS, scale-in protection while calls are carried; SIGTERM stops
//! new calls and drains the active ones.

use media_bridge::{Bridge, BridgeSettings, serve};
use platform::{Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::load().await?;
    telemetry::init(config.log_format);
    let settings = BridgeSettings::from_config(&config);
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| format!("PORT must be a port number, not {port:?}"))?,
        Err(_) => 8080,
    };
    let store = config.connect_dynamodb().await?;
    let bridge = Bridge::from_config(store, &config, settings);
    // on ECS: scale-in and deploys never stop a task while it carries calls
    if let Some(protection) = media_bridge::protection::ScaleInProtection::from_env() {
        let guarded = bridge.clone();
        tokio::spawn(async move { guarded.protect_while_busy(protection).await });
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, "media bridge listening");
    serve(bridge, listener, terminated()).await?;
    Ok(())
}

async fn terminated() {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
}
