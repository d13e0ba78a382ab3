//! ECS task scale-in protection: while a task carries calls, neither a scale-in nor a deploy may
//! stop it (it would cut live calls). The ECS agent's endpoint (`$ECS_AGENT_URI`, injected into
//! every task) is told when calls start and when the last one ends; protection is renewed before
//! it lapses, and expires by itself should the task stop answering.

use serde_json::json;
use std::time::Duration;
use tokio::sync::Notify;

/// How long one grant of protection lasts; renewed well before it lapses.
pub const PROTECTION_MINUTES: u64 = 60;
const RENEW_AFTER: Duration = Duration::from_secs(PROTECTION_MINUTES * 60 / 2);
/// How often the call count is looked at besides when a call starts.
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// The task's protection endpoint.
#[derive(Clone, Debug)]
pub struct ScaleInProtection {
    state_url: String,
    http: reqwest::Client,
}

impl ScaleInProtection {
    /// On ECS, where the agent injects `ECS_AGENT_URI`; None elsewhere (nothing to protect).
    pub fn from_env() -> Option<Self> {
        std::env::var("ECS_AGENT_URI").ok().filter(|uri| !uri.is_empty()).map(|uri| Self::at(&uri))
    }

    pub fn at(agent_uri: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { state_url: format!("{}/task-protection/v1/state", agent_uri.trim_end_matches('/')), http }
    }

    /// `PUT …/task-protection/v1/state`: protected for `PROTECTION_MINUTES`, or not at all.
    pub async fn set(&self, protected: bool) -> Result<(), String> {
        let body = if protected {
            json!({ "ProtectionEnabled": true, "ExpiresInMinutes": PROTECTION_MINUTES })
        } else {
            json!({ "ProtectionEnabled": false })
        };
        let response = self.http.put(&self.state_url).json(&body).send().await.map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        // the agent answers 200 with {"error": …} when ECS refused the change
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(answer) if status.is_success() && answer.get("error").is_none_or(serde_json::Value::is_null) => Ok(()),
            _ => Err(format!("the ECS agent answered {status}: {}", text.chars().take(300).collect::<String>())),
        }
    }

    /// Keeps the task protected exactly while `calls()` is above zero, looking again whenever
    /// `call_started` is notified and every few seconds; runs until the task stops.
    pub async fn guard(self, calls: impl Fn() -> usize, call_started: &Notify) {
        let mut granted: Option<tokio::time::Instant> = None;
        loop {
            let busy = calls() > 0;
            let due = match (busy, granted) {
                (true, None) => true,
                (true, Some(at)) => at.elapsed() >= RENEW_AFTER,
                (false, Some(_)) => true,
                (false, None) => false,
            };
            if due {
                match self.set(busy).await {
                    Ok(()) => {
                        tracing::info!(protected = busy, "task scale-in protection set");
                        granted = busy.then(tokio::time::Instant::now);
                    }
                    Err(e) => tracing::warn!(protected = busy, error = %e, "task scale-in protection not set; trying again"),
                }
            }
            tokio::select! {
                _ = call_started.notified() => {}
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    }
}
