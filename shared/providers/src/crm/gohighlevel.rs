//! GoHighLevel API v2 (PROTOCOLS.md): `Authorization: Bearer <private integration token>` and
//! `Version: 2021-07-28` on every request. A delivery upserts the contact by phone, adds a note,
//! adds the disposition's tags, and opens an opportunity in the connection's pipeline stage when
//! the call was a success. Each step may run twice (a retried delivery after a lost answer)
//! without doubling its effect: the contact and the opportunity are upserts, tags a set, and a
//! note is looked for by the line naming the call before one is added.

use super::{CrmError, CrmSink, Delivery, id_in};
use crate::{
    RetryPolicy, Secret,
    http::{ApiClient, Body, Credential},
};
use chrono::{DateTime, Utc};
use domain::crm::{CrmStep, StepDone};
use reqwest::Method;
use serde_json::{Value, json};

const TARGET: &str = "gohighlevel";
/// The API version whose request and answer shapes this client speaks.
pub const API_VERSION: &str = "2021-07-28";

#[derive(Clone, Debug)]
pub struct GoHighLevel {
    api: ApiClient,
    location_id: String,
    /// `(pipelineId, pipelineStageId)` for opportunities.
    pipeline: Option<(String, String)>,
}

impl GoHighLevel {
    pub const BASE_URL: &'static str = "https://services.leadconnectorhq.com";

    pub fn new(base: &str, token: Secret, location_id: &str, pipeline: Option<(String, String)>, retry: RetryPolicy) -> Self {
        let api = ApiClient::shared(TARGET, base, Credential::Bearer(token), retry).with_header("Version", API_VERSION);
        Self { api, location_id: location_id.to_string(), pipeline }
    }

    async fn post(&self, step: &'static str, path: &str, body: &Value, what: &str) -> Result<Value, CrmError> {
        self.api.call(Method::POST, path, Some(body), what).await.map_err(|error| CrmError::Api { step, error })
    }
}

impl CrmSink for GoHighLevel {
    async fn perform(&self, step: CrmStep, delivery: Delivery<'_>) -> Result<StepDone, CrmError> {
        let record = delivery.record;
        let contact = || delivery.done.contact_id.clone().ok_or(CrmError::NoSuchStep { target: TARGET, step });
        match step {
            CrmStep::UpsertContact => {
                let (first, last) = record.first_and_last_name();
                let mut body = json!({
                    "locationId": self.location_id,
                    "phone": record.contact.phone.as_str(),
                    "timezone": record.contact.timezone,
                    "source": "outdial",
                });
                for (field, value) in [("firstName", first), ("lastName", last), ("email", record.contact.email.clone())] {
                    if let Some(value) = value {
                        body[field] = value.into();
                    }
                }
                // only ever set: a contact marked do-not-disturb elsewhere stays so
                if record.do_not_call() {
                    body["dnd"] = true.into();
                }
                let answer = self.post("upserting the contact", "/contacts/upsert", &body, "contacts").await?;
                let id = id_in(&answer, "/contact/id").ok_or(CrmError::Incomplete {
                    step: "upserting the contact",
                    target: TARGET,
                    missing: "contact.id",
                })?;
                Ok(StepDone::Contact(id))
            }
            CrmStep::AddNote => {
                let id = contact()?;
                let (step, path, what) = ("adding the note", format!("/contacts/{id}/notes"), format!("contact {id}"));
                let existing = self.api.call(Method::GET, &path, None, &what).await.map_err(|error| CrmError::Api { step, error })?;
                let notes = existing.get("notes").and_then(Value::as_array).ok_or(CrmError::Incomplete {
                    step,
                    target: TARGET,
                    missing: "notes",
                })?;
                let marker = record.note_marker();
                if let Some(made) = notes.iter().find(|n| n.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(&marker))) {
                    return Ok(StepDone::Note(id_in(made, "/id").unwrap_or_default()));
                }
                let answer =
                    self.api.create(&path, &json!({"body": record.note()}), &what).await.map_err(|error| CrmError::Api { step, error })?;
                Ok(StepDone::Note(id_in(&answer, "/note/id").unwrap_or_default()))
            }
            CrmStep::AddTags => {
                let id = contact()?;
                self.post("adding tags", &format!("/contacts/{id}/tags"), &json!({"tags": record.tags()}), &format!("contact {id}"))
                    .await?;
                Ok(StepDone::Tagged)
            }
            CrmStep::OpenOpportunity => {
                let id = contact()?;
                let (pipeline, stage) = self.pipeline.as_ref().ok_or(CrmError::NoSuchStep { target: TARGET, step })?;
                let who = record.contact.name.clone().unwrap_or_else(|| record.contact.phone.as_str().to_string());
                let body = json!({
                    "pipelineId": pipeline,
                    "locationId": self.location_id,
                    "name": format!("{who} ({})", record.campaign.name),
                    "pipelineStageId": stage,
                    "status": "open",
                    "contactId": id,
                });
                // one opportunity per contact and pipeline: a second try updates the first
                let answer = self.post("opening the opportunity", "/opportunities/upsert", &body, &format!("pipeline {pipeline}")).await?;
                Ok(StepDone::Opportunity(id_in(&answer, "/opportunity/id").unwrap_or_default()))
            }
            CrmStep::PostWebhook | CrmStep::LogCall => Err(CrmError::NoSuchStep { target: TARGET, step }),
        }
    }

    /// Lists one contact of the location: the token and the location id are both checked.
    async fn test(&self, _now: DateTime<Utc>) -> Result<String, CrmError> {
        let query = [("locationId", self.location_id.clone()), ("limit", "1".to_string())];
        let what = format!("location {}", self.location_id);
        self.api
            .send(Method::GET, "/contacts/", Body::Query(&query), &what)
            .await
            .map_err(|error| CrmError::Api { step: "reading the location's contacts", error })?;
        Ok(format!("GoHighLevel took the token for location {}", self.location_id))
    }
}
