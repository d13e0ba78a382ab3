//! For the functions' tests (feature `testing`): the sample events of `events/`, delivered to a
//! router as Lambda delivers them.

use axum::{Router, http::StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// `events/<name>` with each placeholder replaced by its value.
pub fn load_event(name: &str, replacements: &[(&str, &str)]) -> String {
    let file = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut event = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    for (placeholder, value) in replacements {
        event = event.replace(placeholder, value);
    }
    event
}

/// Runs the function URL event `events/<name>` (placeholders filled in) through `app`: the
/// status and the JSON body (null when empty).
pub async fn invoke_event(app: &Router, name: &str, replacements: &[(&str, &str)]) -> (StatusCode, Value) {
    let request = lambda_http::request::from_str(&load_event(name, replacements))
        .unwrap_or_else(|e| panic!("{name} is not a function URL event: {e}"));
    let response = app.clone().oneshot(request.map(|body| axum::body::Body::from(body.to_vec()))).await.expect("the router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("the body is readable").to_bytes();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("the body is JSON") })
}

/// A fixed-offset zone (`Etc/GMT±n`) in which it is between 12:00 and 13:00 at `now`: a contact
/// living there is inside the federal calling hours (and any all-day window) for hours to come.
pub fn midday_zone(now: chrono::DateTime<chrono::Utc>) -> chrono_tz::Tz {
    use chrono::Timelike;
    // Etc/GMT+n is n hours behind UTC
    let behind = i64::from(now.hour()) - 12;
    let name = match behind {
        0 => "Etc/GMT".to_string(),
        n if n > 0 => format!("Etc/GMT+{n}"),
        n => format!("Etc/GMT{n}"),
    };
    name.parse().expect("Etc/GMT-12 … Etc/GMT+11 are IANA zones")
}

/// The configuration an environment holding exactly `vars` gives: what a function's
/// `State::from_config` is built from in tests, as in Lambda.
pub fn config(vars: &[(&str, &str)]) -> crate::Config {
    crate::Config::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
        .unwrap_or_else(|e| panic!("{vars:?} is not a valid configuration: {e}"))
}

/// A Secrets Manager client on moto_server at `SECRETSMANAGER_ENDPOINT` and that endpoint, or
/// `None` with `test`'s skip printed when the variable is unset.
pub async fn secrets_manager_on_moto(test: &str) -> Option<(aws_sdk_secretsmanager::Client, String)> {
    let Ok(endpoint) = std::env::var("SECRETSMANAGER_ENDPOINT") else {
        use std::io::Write;
        let _ =
            writeln!(std::io::stderr(), "skipped {test}: SECRETSMANAGER_ENDPOINT is unset (scripts/test starts moto_server and sets it)");
        return None;
    };
    Some((crate::aws::secrets_manager(Some(&endpoint)).await, endpoint))
}
