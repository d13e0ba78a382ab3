use crate::{OrgId, ParseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The tenant: every record belongs to exactly one organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organisation {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Set while the organisation's emergency stop holds: nothing is started, claimed or dialed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_stop: Option<EmergencyStop>,
}

/// An organisation's emergency stop: since when, and the API key that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyStop {
    pub since: DateTime<Utc>,
    /// The id of the API key that set it (None when set from the command line on the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Organisation {
    pub fn parse_name(name: &str) -> Result<String, ParseError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ParseError::new("name", "must be 1–200 characters"));
        }
        Ok(name.to_string())
    }
}
