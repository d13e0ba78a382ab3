//! The agent's time tool at the edge: a Spin HTTP component. `GET /time?tz=<IANA>&at=<RFC 3339>`
//! answers the JSON outdial's `GET /tools/time` answers for the same input (one crate,
//! `agent-time`, makes both), and the same problem when the input is bad.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn time(request: Request) -> Response {
    let (mut tz, mut at) = (None, None);
    for (name, value) in form_urlencoded::parse(request.query().as_bytes()) {
        match name.as_ref() {
            "tz" => tz = Some(value.into_owned()),
            "at" => at = Some(value.into_owned()),
            _ => {}
        }
    }
    match answer(tz.as_deref(), at.as_deref()) {
        Ok(body) => Response::builder().status(200).header("content-type", "application/json").body(body).build(),
        Err((field, reason)) => {
            let problem = serde_json::json!({
                "type": "https://outdial.dev/problems/validation",
                "title": "Invalid request",
                "status": 422,
                "detail": format!("{field}: {reason}"),
                "errors": [{ "field": field, "reason": reason }],
            });
            Response::builder().status(422).header("content-type", "application/problem+json").body(problem.to_string()).build()
        }
    }
}

fn answer(tz: Option<&str>, at: Option<&str>) -> Result<String, (&'static str, String)> {
    let zone = agent_time::zone(tz.ok_or(("tz", "is required: an IANA time zone, such as America/New_York".to_string()))?)
        .map_err(|e| ("tz", e.0))?;
    let at = match at {
        Some(at) => agent_time::instant(at).map_err(|e| ("at", e.0))?,
        None => chrono::Utc::now(),
    };
    let answer = agent_time::answer(at, zone, None).map_err(|e| ("at", e.0))?;
    serde_json::to_string(&answer).map_err(|e| ("at", e.to_string()))
}
