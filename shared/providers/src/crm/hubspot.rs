//! HubSpot CRM API v3 (PROTOCOLS.md): `Authorization: Bearer <private app token>`. A delivery
//! finds the contact by phone (or creates it), then logs the call as a `calls` object associated
//! to it (association type 194, call → contact). Neither create is sent twice on a lost answer: a
//! retried step searches first (the contact by phone, the call log by its contact, timestamp and
//! the body line naming the call) and adopts what the earlier try made.

use super::{CrmError, CrmSink, Delivery, id_in};
use crate::{
    RetryPolicy, Secret,
    http::{ApiClient, Body, Credential},
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{
    CallDisposition,
    crm::{CrmStep, FinishedCallRecord, StepDone},
};
use reqwest::Method;
use serde_json::{Value, json};

const TARGET: &str = "hubspot";
/// HubSpot's own association type for a call to its contact.
pub const CALL_TO_CONTACT: u32 = 194;

#[derive(Clone, Debug)]
pub struct HubSpot {
    api: ApiClient,
}

impl HubSpot {
    pub const BASE_URL: &'static str = "https://api.hubapi.com";

    pub fn new(base: &str, token: Secret, retry: RetryPolicy) -> Self {
        Self { api: ApiClient::shared(TARGET, base, Credential::Bearer(token), retry) }
    }

    async fn post(&self, step: &'static str, path: &str, body: &Value) -> Result<Value, CrmError> {
        self.api.call(Method::POST, path, Some(body), path).await.map_err(|error| CrmError::Api { step, error })
    }

    async fn create(&self, step: &'static str, path: &str, body: &Value) -> Result<Value, CrmError> {
        self.api.create(path, body, path).await.map_err(|error| CrmError::Api { step, error })
    }

    /// The call log an earlier try made for this call (its answer lost), if any.
    async fn find_call_log(&self, contact: &str, at: DateTime<Utc>, marker: &str) -> Result<Option<String>, CrmError> {
        let search = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "associations.contact", "operator": "EQ", "value": contact},
                {"propertyName": "hs_timestamp", "operator": "EQ", "value": at.timestamp_millis().to_string()},
            ]}],
            "properties": ["hs_call_body"],
            "limit": 10,
        });
        let found = self.post("finding the call log", "/crm/v3/objects/calls/search", &search).await?;
        let results = found.get("results").and_then(Value::as_array).ok_or(CrmError::Incomplete {
            step: "finding the call log",
            target: TARGET,
            missing: "results",
        })?;
        Ok(results
            .iter()
            .find(|r| r.pointer("/properties/hs_call_body").and_then(Value::as_str).is_some_and(|b| b.contains(marker)))
            .and_then(|r| id_in(r, "/id")))
    }

    async fn find_or_create_contact(&self, record: &FinishedCallRecord) -> Result<String, CrmError> {
        let phone = record.contact.phone.as_str();
        let search = json!({
            "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]}],
            "limit": 1,
        });
        let found = self.post("finding the contact", "/crm/v3/objects/contacts/search", &search).await?;
        if let Some(id) = id_in(&found, "/results/0/id") {
            return Ok(id);
        }
        let (first, last) = record.first_and_last_name();
        let mut properties = json!({"phone": phone});
        for (field, value) in [("firstname", first), ("lastname", last), ("email", record.contact.email.clone())] {
            if let Some(value) = value {
                properties[field] = value.into();
            }
        }
        let created = self.create("creating the contact", "/crm/v3/objects/contacts", &json!({"properties": properties})).await?;
        id_in(&created, "/id").ok_or(CrmError::Incomplete { step: "creating the contact", target: TARGET, missing: "id" })
    }
}

/// HubSpot's `hs_call_status` for how the call ended.
fn call_status(disposition: Option<CallDisposition>) -> &'static str {
    match disposition {
        Some(CallDisposition::AnsweredHuman | CallDisposition::Voicemail | CallDisposition::DoNotCall) => "COMPLETED",
        Some(CallDisposition::NoAnswer) => "NO_ANSWER",
        Some(CallDisposition::Busy) => "BUSY",
        Some(CallDisposition::Canceled | CallDisposition::OutsideWindow | CallDisposition::NoConsent) => "CANCELED",
        Some(CallDisposition::Failed) | None => "FAILED",
    }
}

impl CrmSink for HubSpot {
    async fn perform(&self, step: CrmStep, delivery: Delivery<'_>) -> Result<StepDone, CrmError> {
        let record = delivery.record;
        match step {
            CrmStep::UpsertContact => Ok(StepDone::Contact(self.find_or_create_contact(record).await?)),
            CrmStep::LogCall => {
                let contact = delivery.done.contact_id.clone().ok_or(CrmError::NoSuchStep { target: TARGET, step })?;
                let call = &record.call;
                let at = call.ended_at.or(call.placed_at).unwrap_or(call.created_at);
                // HubSpot keeps milliseconds: the search compares what it stored
                let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
                if let Some(id) = self.find_call_log(&contact, at, &record.note_marker()).await? {
                    return Ok(StepDone::CallLogged(id));
                }
                let mut properties = json!({
                    "hs_timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "hs_call_title": format!("outdial: {} ({})", record.campaign.name, record.outcome()),
                    "hs_call_body": record.note(),
                    "hs_call_duration": u64::from(call.duration_seconds.unwrap_or(0)) * 1000,
                    "hs_call_direction": "OUTBOUND",
                    "hs_call_status": call_status(call.disposition),
                    "hs_call_to_number": call.to.as_str(),
                });
                if let Some(from) = &call.from {
                    properties["hs_call_from_number"] = from.as_str().into();
                }
                if let Some(url) = &call.recording_url {
                    properties["hs_call_recording_url"] = url.as_str().into();
                }
                let body = json!({
                    "properties": properties,
                    "associations": [{"to": {"id": contact},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": CALL_TO_CONTACT}]}],
                });
                let logged = self.create("logging the call", "/crm/v3/objects/calls", &body).await?;
                Ok(StepDone::CallLogged(id_in(&logged, "/id").unwrap_or_default()))
            }
            CrmStep::PostWebhook | CrmStep::AddNote | CrmStep::AddTags | CrmStep::OpenOpportunity => {
                Err(CrmError::NoSuchStep { target: TARGET, step })
            }
        }
    }

    /// Reads one contact: the token and its CRM scopes are checked.
    async fn test(&self, _now: DateTime<Utc>) -> Result<String, CrmError> {
        let query = [("limit", "1".to_string())];
        self.api
            .send(Method::GET, "/crm/v3/objects/contacts", Body::Query(&query), "contacts")
            .await
            .map_err(|error| CrmError::Api { step: "reading contacts", error })?;
        Ok("HubSpot took the token".to_string())
    }
}
