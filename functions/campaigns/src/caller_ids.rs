//! The organisation's caller-ID registry: the numbers its campaigns may call from, each checked
//! with the provider accounts before it is registered and held by one organisation only.

use crate::AppState;
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use domain::{CallerId, E164, Region, caller_id::parse_provider_number_id};
use platform::{Authenticated, CampaignScheduler, JobQueue, List, PageQuery, Problem, extract::Json, extract::Query};
use serde::{Deserialize, Serialize};
use store::Store;
use utoipa::ToSchema;

/// A number the organisation may call from.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerIdView {
    pub phone: E164,
    /// Vapi's id of the number: Vapi campaigns call from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vapi_phone_number_id: Option<String>,
    /// ElevenLabs' id of the number: ElevenLabs campaigns call from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elevenlabs_phone_number_id: Option<String>,
    pub registered_at: DateTime<Utc>,
}

impl From<CallerId> for CallerIdView {
    fn from(c: CallerId) -> Self {
        Self {
            phone: c.phone,
            vapi_phone_number_id: c.vapi_phone_number_id,
            elevenlabs_phone_number_id: c.elevenlabs_phone_number_id,
            registered_at: c.registered_at,
        }
    }
}

/// A number to register, with its ids at Vapi and ElevenLabs when campaigns there call from it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallerIdSpec {
    /// E.164, or national with `region`.
    pub phone: String,
    /// Country in which a national number is read (ISO 3166-1 alpha-2).
    pub region: Option<String>,
    pub vapi_phone_number_id: Option<String>,
    pub elevenlabs_phone_number_id: Option<String>,
}

/// Register a number to call from. The deployment's provider accounts must hold it (Twilio: an
/// owned number or a verified caller ID; Vapi and ElevenLabs: the number behind the id given),
/// and no other organisation may have registered it. Registering it again updates its ids.
#[utoipa::path(post, path = "/caller-ids", tag = "caller-ids", request_body = CallerIdSpec, security(("apiKey" = [])),
    responses((status = 201, body = CallerIdView, description = "registered"), (status = 200, body = CallerIdView, description = "already registered: its ids updated"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "another organisation holds the number"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "invalid, or not held by the provider accounts"),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn register_caller_id<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Json(spec): Json<CallerIdSpec>,
) -> Result<(StatusCode, axum::Json<CallerIdView>), Problem> {
    let region = spec.region.as_deref().map(Region::parse).transpose()?;
    let mut errors = Vec::new();
    let phone = E164::parse(&spec.phone, region).map_err(|e| errors.push(domain::ParseError::new("phone", e.reason))).ok();
    let vapi = parse_provider_number_id("vapiPhoneNumberId", spec.vapi_phone_number_id).map_err(|e| errors.push(e)).ok().flatten();
    let eleven =
        parse_provider_number_id("elevenlabsPhoneNumberId", spec.elevenlabs_phone_number_id).map_err(|e| errors.push(e)).ok().flatten();
    let Some(phone) = phone.filter(|_| errors.is_empty()) else { return Err(Problem::validation(errors)) };
    // a number another organisation holds is refused before any provider is asked about it
    let existing = state.store.registered_caller_ids(org, std::slice::from_ref(&phone)).await?;
    if let Some(refusal) = state.numbers.refusal(&phone, vapi.as_deref(), eleven.as_deref()).await? {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "caller-id-not-held", "Not a number of the provider accounts", refusal));
    }
    let caller = CallerId { phone, org_id: org, vapi_phone_number_id: vapi, elevenlabs_phone_number_id: eleven, registered_at: Utc::now() };
    let registered = state.store.register_caller_id(caller).await?;
    tracing::info!(phone = %registered.phone, "caller ID registered");
    let status = if existing.is_empty() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(registered.into())))
}

/// The organisation's caller IDs, in number order.
#[utoipa::path(get, path = "/caller-ids", tag = "caller-ids", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<CallerIdView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_caller_ids<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<CallerIdView>>, Problem> {
    let page = state.store.list_caller_ids(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, CallerIdView::from)))
}

/// Take a number off the registry: campaigns stop calling from it at their next dial.
#[utoipa::path(delete, path = "/caller-ids/{phone}", tag = "caller-ids", params(("phone" = String, Path, description = "the number, E.164")),
    security(("apiKey" = [])),
    responses((status = 204, description = "removed"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove_caller_id<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(raw): Path<String>,
) -> Result<StatusCode, Problem> {
    let phone = E164::parse(&raw, None)?;
    if state.store.remove_caller_id(org, &phone).await? {
        tracing::info!(phone = %phone, "caller ID removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("{} is not a registered caller ID of this organisation", phone.as_str())))
    }
}
