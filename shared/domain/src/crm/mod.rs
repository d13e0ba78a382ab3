//! CRM connections: where an organisation's finished calls go (GoHighLevel, HubSpot, or a signed
//! webhook). The connection's secret (an API token, or the webhook's signing secret outdial
//! makes) is not part of it: it is sealed at rest and handed out by no read.

mod delivery;

pub use delivery::{CrmStep, DeliverySteps, FinishedCallRecord, StepDone, is_positive_evaluation};

use crate::{ConnectionId, OrgId, ParseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which CRM a connection delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    Gohighlevel,
    Hubspot,
    Webhook,
}

impl CrmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gohighlevel => "gohighlevel",
            Self::Hubspot => "hubspot",
            Self::Webhook => "webhook",
        }
    }
}

/// What a connection needs besides its secret, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum ConnectionTarget {
    /// A GoHighLevel sub-account; an opportunity is opened in the pipeline's stage when both are given.
    Gohighlevel {
        location_id: String,
        pipeline_id: Option<String>,
        stage_id: Option<String>,
    },
    Hubspot {},
    /// An `https` URL that receives each finished call as signed JSON.
    Webhook {
        url: String,
    },
}

impl ConnectionTarget {
    pub fn kind(&self) -> CrmKind {
        match self {
            Self::Gohighlevel { .. } => CrmKind::Gohighlevel,
            Self::Hubspot {} => CrmKind::Hubspot,
            Self::Webhook { .. } => CrmKind::Webhook,
        }
    }
}

/// A connection as stored and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmConnection {
    pub id: ConnectionId,
    pub org_id: OrgId,
    pub name: String,
    pub target: ConnectionTarget,
    pub created_at: DateTime<Utc>,
}

/// Where one call's delivery to one connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: a retry is due.
    Pending,
    Delivered,
    /// Given up: the target refused it, or it kept failing past the queue's receives.
    Failed,
}

/// One call's delivery to one connection: exactly once per (call, connection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmDelivery {
    pub call_id: crate::CallId,
    pub connection_id: ConnectionId,
    pub kind: CrmKind,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// What has reached the target so far: a retried delivery resumes after it.
    #[serde(default)]
    pub steps: DeliverySteps,
    /// While one worker is delivering it: no other sends anything until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_until: Option<DateTime<Utc>>,
}

impl CrmDelivery {
    /// A delivery not tried yet.
    pub fn new(call_id: crate::CallId, connection_id: ConnectionId, kind: CrmKind) -> Self {
        Self {
            call_id,
            connection_id,
            kind,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            delivered_at: None,
            steps: DeliverySteps::default(),
            leased_until: None,
        }
    }

    /// Another worker holds it at `now`.
    pub fn is_leased(&self, now: DateTime<Utc>) -> bool {
        self.leased_until.is_some_and(|until| until > now)
    }
}

/// A connection as asked for: `{name, kind, token?, locationId?, pipelineId?, stageId?, url?}`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrmConnectionSpec {
    pub name: Option<String>,
    /// `gohighlevel`, `hubspot` or `webhook`.
    pub kind: Option<String>,
    /// The CRM's API token (GoHighLevel private integration token, HubSpot private app token).
    pub token: Option<String>,
    pub location_id: Option<String>,
    pub pipeline_id: Option<String>,
    pub stage_id: Option<String>,
    /// The webhook's `https` URL.
    pub url: Option<String>,
}

/// A valid connection to create, and the API token it came with (webhooks get theirs from outdial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCrmConnection {
    pub name: String,
    pub target: ConnectionTarget,
    pub token: Option<String>,
}

impl NewCrmConnection {
    pub const MAX_NAME: usize = 100;

    /// Every invalid field at once; `allow_private` is `OUTDIAL_CRM_ALLOW_PRIVATE` (see [`webhook_url`]).
    pub fn parse(spec: CrmConnectionSpec, allow_private: bool) -> Result<Self, Vec<ParseError>> {
        let mut errors = Vec::new();
        let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let name = text(spec.name).unwrap_or_default();
        if name.is_empty() || name.chars().count() > Self::MAX_NAME || name.chars().any(char::is_control) {
            errors.push(ParseError::new("name", format!("must be 1–{} characters on one line", Self::MAX_NAME)));
        }
        let token = text(spec.token);
        let mut needs_token = |kind: &str| {
            if token.as_ref().is_none_or(|t| t.len() > 4096 || t.chars().any(char::is_whitespace)) {
                errors.push(ParseError::new("token", format!("is required for {kind}: the API token, one word")));
            }
        };
        let target = match spec.kind.as_deref().map(str::trim) {
            Some("gohighlevel") => {
                needs_token("gohighlevel");
                let location_id = text(spec.location_id);
                if location_id.is_none() {
                    errors.push(ParseError::new("locationId", "is required: the GoHighLevel location (sub-account) id"));
                }
                let (pipeline_id, stage_id) = (text(spec.pipeline_id), text(spec.stage_id));
                if pipeline_id.is_some() != stage_id.is_some() {
                    errors.push(ParseError::new("stageId", "pipelineId and stageId go together: give both, or neither"));
                }
                Some(ConnectionTarget::Gohighlevel { location_id: location_id.unwrap_or_default(), pipeline_id, stage_id })
            }
            Some("hubspot") => {
                needs_token("hubspot");
                Some(ConnectionTarget::Hubspot {})
            }
            Some("webhook") => {
                if token.is_some() {
                    errors.push(ParseError::new("token", "is not taken for a webhook: outdial makes its signing secret"));
                }
                let url = text(spec.url).unwrap_or_default();
                if let Err(reason) = webhook_url(&url, allow_private) {
                    errors.push(ParseError::new("url", reason));
                }
                Some(ConnectionTarget::Webhook { url })
            }
            other => {
                let what = other.map_or("is missing".to_string(), |k| format!("{k:?} is not one"));
                errors.push(ParseError::new("kind", format!("{what}: gohighlevel, hubspot or webhook")));
                None
            }
        };
        match target {
            Some(target) if errors.is_empty() => Ok(Self { name, target, token }),
            _ => Err(errors),
        }
    }
}

/// The one rule for where a CRM webhook may point, checked when a connection is made and again
/// before every delivery: an `https` URL with a host, no credentials and no fragment. With
/// `allow_private` (`OUTDIAL_CRM_ALLOW_PRIVATE=true`, for local testing only) plain `http` is
/// taken too; the delivery also resolves the host and, unless private is allowed, refuses any
/// address that is not public.
pub fn webhook_url(url: &str, allow_private: bool) -> Result<(), String> {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(rest)) if allow_private => rest,
        (None, Some(_)) => {
            return Err(format!(
                "{url:?} is not an https URL (plain http is taken only with OUTDIAL_CRM_ALLOW_PRIVATE=true, for local testing)"
            ));
        }
        (None, None) => return Err(format!("{url:?} is not an https URL")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.contains('#') || url.len() > 2048 || url.contains(char::is_whitespace) {
        return Err(format!("{url:?} is not a usable URL: a host, no user:password@, no #fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> CrmConnectionSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn connections_are_checked_field_by_field_for_their_kind() {
        let ghl = NewCrmConnection::parse(
            spec(serde_json::json!({"name": "Sales", "kind": "gohighlevel", "token": "pit-1",
            "locationId": "loc_1", "pipelineId": "p1", "stageId": "s1"})),
            false,
        )
        .unwrap();
        assert_eq!(
            ghl.target,
            ConnectionTarget::Gohighlevel { location_id: "loc_1".into(), pipeline_id: Some("p1".into()), stage_id: Some("s1".into()) }
        );
        assert_eq!(ghl.token.as_deref(), Some("pit-1"));
        let hook = NewCrmConnection::parse(
            spec(serde_json::json!({"name": "Ops", "kind": "webhook", "url": "https://hooks.example.com/in"})),
            false,
        )
        .unwrap();
        assert_eq!((hook.target.kind(), hook.token), (CrmKind::Webhook, None));
        let fields = |v| NewCrmConnection::parse(spec(v), false).unwrap_err().into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields(serde_json::json!({"kind": "gohighlevel", "pipelineId": "p"})), ["name", "token", "locationId", "stageId"]);
        assert_eq!(fields(serde_json::json!({"name": "x", "kind": "hubspot"})), ["token"]);
        assert_eq!(fields(serde_json::json!({"name": "x", "kind": "webhook", "url": "http://example.com"})), ["url"]);
        assert_eq!(fields(serde_json::json!({"name": "x", "kind": "webhook", "url": "https://u:p@example.com"})), ["url"]);
        assert_eq!(fields(serde_json::json!({"name": "x", "kind": "webhook", "url": "https://example.com", "token": "t"})), ["token"]);
        assert_eq!(fields(serde_json::json!({"name": "x", "kind": "salesforce"})), ["kind"]);
    }

    #[test]
    fn plain_http_is_taken_only_where_private_destinations_are_allowed() {
        let local = "http://127.0.0.1:8099/hook";
        let refused = webhook_url(local, false).unwrap_err();
        assert!(refused.contains("OUTDIAL_CRM_ALLOW_PRIVATE"), "the message says what to set: {refused}");
        assert_eq!(webhook_url(local, true), Ok(()));
        assert!(webhook_url("http://u:p@127.0.0.1/hook", true).is_err());
        assert!(webhook_url("ftp://127.0.0.1/hook", true).is_err());
        let hook = NewCrmConnection::parse(spec(serde_json::json!({"name": "Local", "kind": "webhook", "url": local})), true).unwrap();
        assert_eq!(hook.target, ConnectionTarget::Webhook { url: local.into() });
    }
}
