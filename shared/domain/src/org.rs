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
