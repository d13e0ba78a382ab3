//! Bearer API-key authentication: an extractor that yields the caller's organisation.

use crate::Problem;
use axum::{extract::FromRequestParts, http::request::Parts};
use domain::OrgId;
use store::{KeyHash, OrgStore};

/// State that can resolve API keys.
pub trait AuthState: Send + Sync {
    type Orgs: OrgStore;
    fn orgs(&self) -> &Self::Orgs;
}

/// The organisation of the API key in `Authorization: Bearer …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated(pub OrgId);

/// The organisation and the public id of the API key that made the request, for what is
/// recorded in the key's name (an attestation, an emergency stop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedKey {
    pub org: OrgId,
    pub key_id: String,
}

/// The key in `Authorization: Bearer …` and its organisation.
async fn authenticate<S: AuthState>(parts: &Parts, state: &S) -> Result<(OrgId, KeyHash), Problem> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
        Problem::unauthorized("Send your API key as `Authorization: Bearer <key>` (create one with `outdial key create`).")
    })?;
    let key = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Problem::unauthorized("The Authorization header must be `Bearer <key>`."))?;
    let hash = KeyHash::of_secret(key);
    let now = chrono::Utc::now();
    let Some(found) = state.orgs().api_key(&hash).await?.filter(|k| k.is_active(now)) else {
        return Err(Problem::unauthorized("This API key is unknown, revoked or expired."));
    };
    if found.use_is_news(now)
        && let Err(e) = state.orgs().record_api_key_use(&hash, now).await
    {
        // the request goes on: a missed last-use time is not worth refusing it for
        tracing::warn!(error = %e, key = %hash.id(), "the API key's last use was not recorded");
    }
    Ok((found.org_id, hash))
}

impl<S: AuthState> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        authenticate(parts, state).await.map(|(org, _)| Self(org))
    }
}

impl<S: AuthState> FromRequestParts<S> for AuthenticatedKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        authenticate(parts, state).await.map(|(org, hash)| Self { org, key_id: hash.id() })
    }
}

/// Adds the `apiKey` scheme (`Authorization: Bearer`) that authenticated routes name in their
/// `security(("apiKey" = []))`, to an OpenAPI document.
pub struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("apiKey", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}
