//! The organisation's API keys: created with a name and an optional expiry (the secret is shown
//! once), listed with when each was last used, revoked (its next request gets a 401).

use crate::AppState;
use axum::{
    extract::{Path, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use platform::{Authenticated, CampaignScheduler, JobQueue, List, PageQuery, Problem, extract::Json, extract::Query};
use serde::{Deserialize, Serialize};
use store::{ApiKey, NewApiKey, Store};
use utoipa::ToSchema;

/// An API key as listed: never its secret.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// `key_` and 16 hex digits: what DELETE /keys/{id} takes and logs name it by.
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When a request last used it, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.hash.id(),
            name: k.name,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key and, this once, its secret.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// Send it as `Authorization: Bearer <secret>`; it is not stored and cannot be shown again.
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySpec {
    /// What the key is for (default "default"), up to 100 characters.
    pub name: Option<String>,
    /// When it stops working (RFC 3339); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create an API key for the organisation; the reply holds its secret, the only time it is shown.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = KeySpec, security(("apiKey" = [])),
    responses((status = 201, body = CreatedKey), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn create_key<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Json(spec): Json<KeySpec>,
) -> Result<(StatusCode, axum::Json<CreatedKey>), Problem> {
    let new = NewApiKey::parse(spec.name.as_deref(), spec.expires_at, Utc::now()).map_err(Problem::validation)?;
    let created = state.store.create_named_api_key(org, new).await?;
    tracing::info!(key = %created.key.hash.id(), "API key created");
    Ok((StatusCode::CREATED, axum::Json(CreatedKey { key: created.key.into(), secret: created.secret })))
}

/// The organisation's API keys, oldest first, revoked and expired ones included.
#[utoipa::path(get, path = "/keys", tag = "keys", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<KeyView>), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_keys<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<List<KeyView>>, Problem> {
    let page = state.store.list_api_keys(org, q.page()?).await?;
    Ok(axum::Json(List::of(page, KeyView::from)))
}

/// Revoke a key: its next request gets a 401. Revoking the key making the request is allowed.
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", params(("id" = String, Path, description = "the key's id, key_…")),
    security(("apiKey" = [])),
    responses((status = 204, description = "revoked"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn revoke_key<S: Store, C: CampaignScheduler, Q: JobQueue>(
    State(state): State<AppState<S, C, Q>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    state.store.revoke_api_key(org, &id).await?;
    tracing::info!(key = %id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
