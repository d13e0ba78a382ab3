//! Cal.com bookings for the agent's booking tool: `POST /v2/bookings` with `Authorization: Bearer`
//! and `cal-api-version: 2024-08-13`, into one event type the deployment names.

use crate::{
    ProviderError, RetryPolicy,
    http::{ApiClient, Credential},
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::Booking;
use reqwest::Method;
use serde_json::json;

const PROVIDER: &str = "cal.com";
/// The bookings API version whose request and answer shapes this client speaks.
pub const API_VERSION: &str = "2024-08-13";

/// A Cal.com account and the event type appointments are booked into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalcomAccount {
    pub base_url: String,
    pub api_key: crate::Secret,
    pub event_type_id: u64,
}

impl CalcomAccount {
    pub const BASE_URL: &'static str = "https://api.cal.com";
}

/// What Cal.com answered for a booking it made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookedAppointment {
    pub uid: String,
    pub start: DateTime<Utc>,
    /// `accepted`, or `pending` when the event type needs the host to confirm.
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct CalCom {
    api: ApiClient,
    event_type_id: u64,
}

impl CalCom {
    pub fn new(account: &CalcomAccount, retry: RetryPolicy) -> Self {
        let api = ApiClient::new(PROVIDER, &account.base_url, Credential::Bearer(account.api_key.clone()), retry)
            .with_header("cal-api-version", API_VERSION);
        Self { api, event_type_id: account.event_type_id }
    }

    pub async fn book(&self, booking: &Booking) -> Result<BookedAppointment, ProviderError> {
        let body = json!({
            "start": booking.start.to_rfc3339_opts(SecondsFormat::Millis, true),
            "eventTypeId": self.event_type_id,
            "attendee": {
                "name": booking.attendee_name,
                "email": booking.attendee_email.as_str(),
                "timeZone": booking.time_zone.name(),
                "phoneNumber": booking.phone.as_str(),
            },
        });
        let answer = self.api.call(Method::POST, "/v2/bookings", Some(&body), &format!("event type {}", self.event_type_id)).await?;
        let data = &answer["data"];
        let protocol = |detail: &str| ProviderError::Protocol { provider: PROVIDER, detail: detail.to_string() };
        if answer["status"] != "success" {
            return Err(protocol(&format!("the booking answered status {} instead of \"success\"", answer["status"])));
        }
        let uid = data["uid"].as_str().ok_or_else(|| protocol("the booking answered without data.uid"))?;
        let start = data["start"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .ok_or_else(|| protocol("the booking answered without an ISO 8601 data.start"))?;
        Ok(BookedAppointment {
            uid: uid.to_string(),
            start: start.with_timezone(&Utc),
            status: data["status"].as_str().unwrap_or("accepted").to_string(),
        })
    }
}
