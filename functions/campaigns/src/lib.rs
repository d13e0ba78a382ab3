//! The `campaigns` HTTP function: campaigns, their contacts (streaming import), their lifecycle
//! and schedules, the emergency stop and the organisation's do-not-call list, all scoped to the
//! caller's organisation.

mod caller_ids;
mod calls;
mod crm;
mod dnc;
mod import;
mod keys;
pub mod lifecycle;
pub mod uploads;

use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;
use domain::{Campaign, CampaignId, CampaignSpec, Contact, ContactDisposition, ContactState, NewCampaign};
use platform::{AuthState, Authenticated, CampaignScheduler, JobQueue, List, PageQuery, Problem, Schedule, extract::Json, extract::Query};
use providers::{NumberOwnership, ProviderAccounts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use store::{ContactFilter, ContactTally, Store};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use calls::{CallEventView, CallView};
pub use domain::upload::ImportReport;

/// What the handlers need: the store, the scheduler, which providers have credentials, and the
/// largest upload accepted.
#[derive(Clone)]
pub struct AppState<S, C, Q> {
    pub store: S,
    pub scheduler: C,
    /// `crm-jobs`, where failed CRM deliveries are queued again.
    pub queue: Q,
    pub accounts: ProviderAccounts,
    /// Where assistants' tools must be declared (a launch check).
    pub tools_url: Option<String>,
    /// Where a caller ID is checked before it is registered.
    pub numbers: NumberOwnership,
    pub import_max_bytes: u64,
    /// Seals CRM tokens; None when the deployment has no key (`OUTDIAL_SECRET_KEY`).
    pub secrets: Option<platform::SecretBox>,
    /// Where a connection test goes.
    pub crm: providers::crm::CrmSetup,
    pub crm_max_receives: u32,
    /// Where large contact files are uploaded (S3 in AWS, a folder locally); None: no uploads.
    pub uploads: Option<platform::UploadBucket>,
}

impl<S, C, Q> AppState<S, C, Q> {
    pub fn from_config(config: &platform::Config, store: S, scheduler: C, queue: Q) -> Self {
        Self {
            store,
            scheduler,
            queue,
            crm: config.crm.clone(),
            crm_max_receives: config.crm_max_receives,
            numbers: NumberOwnership::new(&config.providers),
            accounts: config.providers.clone(),
            tools_url: config.tools.public_url.clone(),
            import_max_bytes: config.import_max_bytes,
            secrets: config.secrets.clone(),
            uploads: None,
        }
    }

    /// The same state, taking contact files through `bucket`.
    pub fn with_uploads(self, bucket: Option<platform::UploadBucket>) -> Self {
        Self { uploads: bucket, ..self }
    }
}

impl<S: Store, C: CampaignScheduler, Q: JobQueue> AuthState for AppState<S, C, Q> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.store
    }
}

/// How far a campaign has got.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub contacts_total: u64,
    /// Contacts with a final disposition.
    pub contacts_done: u64,
    pub active_calls: u32,
    /// Calls placed so far, retries included.
    pub attempts: u64,
    /// Finished contacts out of all, 0–100.
    pub completion_percent: f64,
    /// Contacts by state (single-campaign reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_state: Option<BTreeMap<ContactState, u64>>,
    /// Finished contacts by disposition (single-campaign reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_disposition: Option<BTreeMap<ContactDisposition, u64>>,
}

/// A campaign as the API shows it: its settings, status and progress.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub progress: Progress,
    /// What the legal calling hours narrow in the campaign's window for its contacts (the
    /// federal 08:00–21:00, their states' rules), one sentence each (single-campaign reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_window_notes: Option<Vec<String>>,
}

impl CampaignView {
    pub fn new(campaign: Campaign, tally: Option<ContactTally>) -> Self {
        let c = campaign.counters;
        let completion_percent =
            if c.contacts_total == 0 { 0.0 } else { (c.contacts_done as f64 * 1000.0 / c.contacts_total as f64).round() / 10.0 };
        let progress = Progress {
            contacts_total: c.contacts_total,
            contacts_done: c.contacts_done,
            active_calls: c.active_calls,
            attempts: c.calls_total,
            completion_percent,
            by_state: tally.as_ref().map(|t| t.by_state.clone()),
            by_disposition: tally.map(|t| t.by_disposition),
        };
        Self { campaign, progress, effective_window_notes: None }
    }

    /// The view of one campaign read on its own: its progress by state and disposition, and
    /// what the law narrows in its window for the areas its contacts are in.
    pub async fn single<S: Store>(store: &S, campaign: Campaign) -> Result<Self, store::StoreError> {
        let (org, id) = (campaign.org_id, campaign.id);
        let tally = store.contact_tally(org, id).await?;
        let areas = store.calling_areas(org, id).await?;
        let notes = domain::calling_hours::narrowing_notes(&campaign.settings.calling_window, areas.iter().map(|a| a.state));
        Ok(Self { effective_window_notes: Some(notes), ..Self::new(campaign, Some(tally)) })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContactQuery {
    /// Only contacts in this state.
    pub state: Option<ContactState>,
    /// Only finished contacts with this disposition.
    pub disposition: Option<ContactDisposition>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub(crate) fn campaign_id(raw: &str) -> Result<CampaignId, Problem> {
    // an id that cannot exist is simply not found, like another organisation's
    CampaignId::parse(raw).map_err(|_| Problem::not_found(format!("campaign {raw} was not found")))
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: Store, C: CampaignScheduler, Q: JobQueue>() -> OpenApiRouter<AppState<S, C, Q>> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign))
        .routes(routes!(list_contacts, import::import_contacts))
        .routes(routes!(uploads::create_upload))
        .routes(routes!(uploads::get_upload))
        .routes(routes!(lifecycle::start_campaign))
        .routes(routes!(lifecycle::pause_campaign))
        .routes(routes!(lifecycle::resume_campaign))
        .routes(routes!(lifecycle::cancel_campaign))
        .routes(routes!(lifecycle::emergency_stop, lifecycle::emergency_stop_status, lifecycle::lift_emergency_stop))
        .routes(routes!(dnc::list_do_not_call, dnc::import_do_not_call))
        .routes(routes!(dnc::add_do_not_call, dnc::remove_do_not_call))
        .routes(routes!(dnc::list_do_not_call_removals))
        .routes(routes!(caller_ids::list_caller_ids, caller_ids::register_caller_id))
        .routes(routes!(caller_ids::remove_caller_id))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(crm::list_connections, crm::create_connection))
        .routes(routes!(crm::delete_connection))
        .routes(routes!(crm::test_connection))
        .routes(routes!(crm::retry_call))
        .routes(routes!(crm::retry_campaign))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::list_calls))
}

/// Create a draft campaign. Every invalid field is reported in one 422 problem; with `startAt`
/// the campaign starts by itself then.
#[utoipa::path(post, path = "/campaigns", tag = "campaigns", request_body = CampaignSpec, security(("apiKey" = [])),
    responses((status = 201, body = CampaignView),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid fields, listed in `errors`"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn create_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Json(spec): Json<CampaignSpec>,
) -> Result<(StatusCode, axum::Json<CampaignView>), Problem> {
    let plan = NewCampaign::from_spec(spec, Utc::now()).map_err(Problem::validation)?;
    let assistant = match state.store.get_assistant(org, plan.assistant_id).await {
        Ok(a) => a,
        Err(store::StoreError::NotFound { .. }) => {
            let reason = format!("assistant {} was not found in this organisation", plan.assistant_id);
            return Err(Problem::validation(vec![domain::ParseError::new("assistantId", reason)]));
        }
        Err(e) => return Err(e.into()),
    };
    let new = plan.with_assistant(&assistant).map_err(Problem::validation)?;
    let registered = state.store.registered_caller_ids(org, &new.settings.caller_ids).await?;
    let unregistered = domain::caller_id::unregistered_caller_ids(&new.settings.caller_ids, &registered, new.settings.provider);
    if !unregistered.is_empty() {
        return Err(Problem::validation(domain::caller_id::registration_errors(
            &new.settings.caller_ids,
            &unregistered,
            new.settings.provider,
        )));
    }
    let mut unknown = Vec::new();
    for (i, id) in new.settings.crm.iter().flat_map(|crm| &crm.connection_ids).enumerate() {
        match state.store.crm_connection(org, *id).await {
            Ok(_) => {}
            Err(store::StoreError::NotFound { .. }) => unknown.push(domain::ParseError::new(
                "crm.connectionIds",
                format!("[{i}] {id} is not a CRM connection of this organisation; create one with POST /crm/connections"),
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if !unknown.is_empty() {
        return Err(Problem::validation(unknown));
    }
    let start_at = new.settings.start_at;
    let campaign = state.store.create_campaign(org, new).await?;
    if let Some(at) = start_at {
        state
            .scheduler
            .create(org, campaign.id, Schedule::StartAt(at))
            .await
            .map_err(|e| Problem::from(e).with("campaignId", campaign.id))?;
    }
    tracing::info!(campaign = %campaign.id, "campaign created");
    Ok((StatusCode::CREATED, axum::Json(CampaignView::new(campaign, None))))
}

/// List the organisation's campaigns, oldest first.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<CampaignView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_campaigns<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<CampaignView>>, Problem> {
    let page = state.store.list_campaigns(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, |c| CampaignView::new(c, None))))
}

/// One campaign with its progress (contacts by state and disposition, active calls, attempts) and
/// `effectiveWindowNotes`: what the legal calling hours narrow in its window.
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = CampaignView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_campaign<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<CampaignView>, Problem> {
    let campaign = state.store.get_campaign(org, campaign_id(&id)?).await?;
    Ok(axum::Json(CampaignView::single(&state.store, campaign).await?))
}

/// The campaign's contacts, optionally only those in one state or with one disposition.
#[utoipa::path(get, path = "/campaigns/{id}/contacts", tag = "campaigns", params(("id" = String, Path, description = "campaign id"), ContactQuery),
    security(("apiKey" = [])),
    responses((status = 200, body = List<Contact>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_contacts<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<ContactQuery>,
) -> Result<axum::Json<List<Contact>>, Problem> {
    let page = platform::list::page_request(q.limit, q.cursor)?;
    let filter = ContactFilter { state: q.state, disposition: q.disposition };
    Ok(axum::Json(state.store.list_contacts(org, campaign_id(&id)?, filter, page).await?.into()))
}
