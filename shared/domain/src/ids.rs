//! Time-ordered identifiers (UUIDv7): sortable by creation, so lists and cursors are stable.

use crate::ParseError;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "Uuid", into = "Uuid")]
        pub struct $name(Uuid);

        impl $name {
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(input: &str) -> Result<Self, ParseError> {
                let uuid = Uuid::parse_str(input.trim())
                    .map_err(|_| ParseError::new($field, format!("{input:?} is not a UUID")))?;
                Self::try_from(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl TryFrom<Uuid> for $name {
            type Error = ParseError;
            fn try_from(uuid: Uuid) -> Result<Self, ParseError> {
                match uuid.get_version_num() {
                    7 => Ok(Self(uuid)),
                    v => Err(ParseError::new($field, format!("{uuid} is a version {v} UUID; ids are time-ordered UUIDv7"))),
                }
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
                    .description(Some(concat!("time-ordered id (UUIDv7) of ", $field)))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

time_ordered_id!(
    /// An organisation: the tenant every record belongs to.
    OrgId, "organisation"
);
time_ordered_id!(CampaignId, "campaign");
time_ordered_id!(ContactId, "contact");
time_ordered_id!(CallId, "call");
time_ordered_id!(AssistantId, "assistant");
time_ordered_id!(
    /// A CRM connection: where an organisation's finished calls are delivered.
    ConnectionId, "CRM connection"
);
time_ordered_id!(
    /// A contact file uploaded to object storage and imported when it lands.
    UploadId, "upload"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let ids: Vec<CallId> = (0..1000).map(|_| CallId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.windows(2).all(|w| w[0].to_string() < w[1].to_string()), "string order is creation order");
        let s = ids[0].to_string();
        assert_eq!(CallId::parse(&s).unwrap(), ids[0]);
        let json = serde_json::to_string(&ids[0]).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<CallId>(&json).unwrap(), ids[0]);
    }

    #[test]
    fn non_v7_and_garbage_are_refused() {
        assert!(OrgId::parse("not-a-uuid").is_err());
        let v4 = "9b2f1b9e-4b8f-4d6e-9a57-1c2b3d4e5f60";
        let err = OrgId::parse(v4).unwrap_err();
        assert!(err.reason.contains("UUIDv7"), "{err}");
        assert!(serde_json::from_str::<OrgId>(&format!("\"{v4}\"")).is_err());
    }
}
