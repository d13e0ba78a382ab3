//! The `assistants` HTTP function: the organisation's directory of AI assistants, each mirrored at
//! its provider. Creates and config changes go to the provider first and are stored only once it
//! accepted them; imports are keyed by the provider's id; templates are read-only starting points.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use domain::{
    Assistant, AssistantConfig, AssistantId, AssistantPatch, AssistantSource, AssistantVersion, NewAssistant, OrgId, ProviderKind,
};
use platform::{
    AuthState, Authenticated, List, Problem,
    extract::{Json, Query},
};
use providers::{AssistantProvider, AssistantProviders};
use serde::{Deserialize, Serialize};
use store::{AssistantFilter, AssistantStore, Store, StoreError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the handlers need: the store, the providers this deployment has accounts with, and what
/// the agents it creates are declared with (tools at `OUTDIAL_PUBLIC_URL`).
#[derive(Clone)]
pub struct AppState<S> {
    pub store: S,
    pub providers: AssistantProviders,
    pub tools: app::ToolDeclarations,
}

impl<S> AppState<S> {
    pub fn from_config(config: &platform::Config, store: S) -> Self {
        Self {
            store,
            providers: AssistantProviders::new(&config.providers, providers::RetryPolicy::default()),
            tools: app::ToolDeclarations::from_config(config),
        }
    }
}

impl<S: Store> AuthState for AppState<S> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.store
    }
}

/// Adds the built-in templates to an organisation's directory, or brings them up to date
/// (keyed like imports, so running it again never makes copies).
pub async fn install_templates<S: AssistantStore>(store: &S, org: OrgId) -> Result<Vec<Assistant>, StoreError> {
    let mut installed = Vec::new();
    for template in domain::assistant::templates() {
        installed.push(store.import_assistant(org, template, Utc::now()).await?.0);
    }
    Ok(installed)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AssistantQuery {
    /// Only active (`true`) or inactive (`false`) assistants.
    pub active: Option<bool>,
    /// Only assistants that came into the directory this way.
    pub source: Option<AssistantSource>,
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAssistant {
    pub name: String,
    pub provider: ProviderKind,
    pub config: AssistantConfig,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportAssistant {
    pub provider: ProviderKind,
    /// The assistant's id at the provider (Vapi assistant id, ElevenLabs agent id, Retell agent id).
    pub provider_assistant_id: String,
    /// The name in the directory; the provider's name when absent.
    pub name: Option<String>,
}

/// Absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAssistant {
    pub name: Option<String>,
    pub config: Option<AssistantConfig>,
    pub active: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneAssistant {
    /// The copy's name; "<original> (copy)" when absent.
    pub name: Option<String>,
    /// Where the copy is created; the original's provider when absent.
    pub provider: Option<ProviderKind>,
}

/// A campaign that keeps an assistant from being deleted.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignInUse {
    pub id: domain::CampaignId,
    pub name: String,
    pub status: domain::CampaignStatus,
}

/// An assistant with its version as the `ETag`, to send back as `If-Match`.
struct Versioned(StatusCode, Assistant);

impl IntoResponse for Versioned {
    fn into_response(self) -> Response {
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.1.version)).expect("a number is a valid header value");
        (self.0, [(header::ETAG, etag)], axum::Json(self.1)).into_response()
    }
}

fn assistant_id(raw: &str) -> Result<AssistantId, Problem> {
    // an id that cannot exist is simply not found, like another organisation's
    AssistantId::parse(raw).map_err(|_| Problem::not_found(format!("assistant {raw} was not found")))
}

/// The version an update is based on, from `If-Match: "3"` (also `3` or `W/"3"`).
fn expected_version(headers: &HeaderMap) -> Result<u32, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "If-Match required",
            "send If-Match with the assistant's version (its ETag, e.g. \"3\") so a concurrent change is not overwritten",
        ));
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Problem::bad_request("If-Match must be the assistant's version, e.g. \"3\""))
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: Store>() -> OpenApiRouter<AppState<S>> {
    OpenApiRouter::new()
        .routes(routes!(list_assistants, create_assistant))
        .routes(routes!(import_assistant))
        .routes(routes!(get_assistant, update_assistant, delete_assistant))
        .routes(routes!(list_versions))
        .routes(routes!(clone_assistant))
}

/// List the organisation's assistants (templates included), oldest first.
#[utoipa::path(get, path = "/assistants", tag = "assistants", params(AssistantQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<Assistant>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_assistants<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Query(q): Query<AssistantQuery>,
) -> Result<axum::Json<List<Assistant>>, Problem> {
    let filter = AssistantFilter { active: q.active, source: q.source };
    Ok(axum::Json(state.store.list_assistants(org, filter, platform::list::page_request(q.limit, q.cursor)?).await?.into()))
}

/// Create an assistant at its provider, then keep it in the directory. Nothing is kept when the
/// provider refuses.
#[utoipa::path(post, path = "/assistants", tag = "assistants", request_body = CreateAssistant, security(("apiKey" = [])),
    responses(
        (status = 201, body = Assistant, headers(("ETag" = String, description = "the version, for If-Match"))),
        (status = 422, description = "invalid fields, the provider refused, or the provider is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "the provider failed or kept rate-limiting", body = Problem, content_type = "application/problem+json")))]
async fn create_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Json(body): Json<CreateAssistant>,
) -> Result<impl IntoResponse, Problem> {
    let new = NewAssistant::local(&body.name, body.provider, body.config).map_err(Problem::validation)?;
    Ok(Versioned(StatusCode::CREATED, create_at_provider(&state, org, new).await?))
}

async fn create_at_provider<S: Store>(state: &AppState<S>, org: OrgId, mut new: NewAssistant) -> Result<Assistant, Problem> {
    let provider = state.providers.get(new.provider)?;
    let provider_id = provider.create_assistant(&new.name, &new.config, &state.tools.for_assistant(org, &new.config)).await?;
    new.provider_assistant_id = Some(provider_id.clone());
    new.tools_url = state.tools.declared_at(new.provider);
    state.store.create_assistant(org, new, Utc::now()).await.map_err(|e| {
        // the provider has it but we could not record it: say where, so it can be imported
        tracing::error!(provider = provider.kind().as_str(), provider_assistant_id = provider_id, error = %e, "created at the provider but not stored");
        Problem::from(e)
    })
}

/// Not found unless `org` owns (or may take) the provider's id: every organisation shares the
/// deployment's provider accounts, so outdial keeps each provider resource to one of them.
async fn owned_by<S: Store>(store: &S, org: domain::OrgId, provider: domain::ProviderKind, provider_id: &str) -> Result<(), Problem> {
    match store.provider_id_owner(provider, provider_id).await? {
        Some(owner) if owner != org => Err(Problem::not_found(format!("{} assistant {provider_id} was not found", provider.as_str()))),
        _ => Ok(()),
    }
}

/// Import an assistant that already exists at a provider. Importing the same one again updates
/// the directory's record instead of adding another.
#[utoipa::path(post, path = "/assistants/import", tag = "assistants", request_body = ImportAssistant, security(("apiKey" = [])),
    responses(
        (status = 201, description = "imported", body = Assistant),
        (status = 200, description = "already in the directory; updated from the provider", body = Assistant),
        (status = 404, description = "the provider has no such assistant", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
async fn import_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Json(body): Json<ImportAssistant>,
) -> Result<impl IntoResponse, Problem> {
    let provider_id = body.provider_assistant_id.trim();
    if provider_id.is_empty() || provider_id.starts_with(domain::assistant::TEMPLATE_PREFIX) {
        return Err(Problem::validation(vec![domain::ParseError::new(
            "providerAssistantId",
            "must be the assistant's id at the provider",
        )]));
    }
    // another organisation's agent is not found, before the provider is asked anything
    owned_by(&state.store, org, body.provider, provider_id).await?;
    let fetched = state.providers.get(body.provider)?.get_assistant(provider_id).await?;
    let new = NewAssistant {
        name: body.name.filter(|n| !n.trim().is_empty()).unwrap_or(fetched.name),
        provider: body.provider,
        provider_assistant_id: Some(fetched.id),
        source: AssistantSource::Imported,
        config: fetched.config,
        tools_url: None,
    };
    let (assistant, created) = state.store.import_assistant(org, new, Utc::now()).await?;
    Ok(Versioned(if created { StatusCode::CREATED } else { StatusCode::OK }, assistant))
}

/// One assistant; its `ETag` is the version to send as `If-Match` when updating.
#[utoipa::path(get, path = "/assistants/{id}", tag = "assistants", params(("id" = String, Path, description = "assistant id")), security(("apiKey" = [])),
    responses((status = 200, body = Assistant, headers(("ETag" = String))), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    Ok(Versioned(StatusCode::OK, state.store.get_assistant(org, assistant_id(&id)?).await?))
}

/// Change the name, config or active flag. A changed name or config is pushed to the provider
/// first; if it refuses, nothing changes here. Requires `If-Match` with the current version.
#[utoipa::path(patch, path = "/assistants/{id}", tag = "assistants", request_body = UpdateAssistant,
    params(("id" = String, Path, description = "assistant id"), ("If-Match" = String, Header, pattern = r#"^(W/)?"?[0-9]{1,9}"?$"#, description = "the version being changed, e.g. \"3\"")),
    security(("apiKey" = [])),
    responses(
        (status = 200, body = Assistant, headers(("ETag" = String))),
        (status = 403, description = "templates are read-only", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "the version is stale", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing", body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
async fn update_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<UpdateAssistant>,
) -> Result<impl IntoResponse, Problem> {
    let id = assistant_id(&id)?;
    let expected = expected_version(&headers)?;
    let mut patch = AssistantPatch::parse(body.name.as_deref(), body.config, body.active).map_err(Problem::validation)?;
    let current = state.store.get_assistant(org, id).await?;
    current.ensure_editable()?;
    if current.version != expected {
        return Err(StoreError::StaleVersion { expected, current: current.version }.into());
    }
    // a save also declares the tools again where they now point elsewhere
    let redeclare = current.undeclared_tools(state.tools.public_url.as_deref()).is_some();
    let provider_copy = match (&current.provider_assistant_id, patch.changes_provider_copy(&current) || redeclare) {
        (Some(provider_id), true) => {
            patch.tools_url = Some(state.tools.declared_at(current.provider));
            owned_by(&state.store, org, current.provider, provider_id).await?;
            let provider = state.providers.get(current.provider)?;
            let mut next = current.clone();
            next.apply(&patch, Utc::now());
            provider.update_assistant(provider_id, &next.name, &next.config, &state.tools.for_assistant(org, &next.config)).await?;
            Some((provider, provider_id.clone()))
        }
        _ => None,
    };
    match state.store.update_assistant(org, id, expected, patch, Utc::now()).await {
        Ok(updated) => Ok(Versioned(StatusCode::OK, updated)),
        Err(e) => {
            // the change was not stored (someone else's got in first): the provider gets the directory's copy back
            if let Some((provider, provider_id)) = provider_copy {
                let truth = state.store.get_assistant(org, id).await.unwrap_or(current);
                let tools = state.tools.for_assistant(org, &truth.config);
                if let Err(rollback) = provider.update_assistant(&provider_id, &truth.name, &truth.config, &tools).await {
                    tracing::error!(assistant = %id, error = %rollback, "could not restore the provider's copy after a failed update");
                }
            }
            Err(e.into())
        }
    }
}

/// Remove an assistant from the directory (never from its provider). Refused while a draft,
/// running or paused campaign uses it, or one that completed in the last 24 hours.
#[utoipa::path(delete, path = "/assistants/{id}", tag = "assistants", params(("id" = String, Path, description = "assistant id")), security(("apiKey" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, description = "templates are read-only", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "in use; `campaigns` lists the campaigns", body = Problem, content_type = "application/problem+json")))]
async fn delete_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let assistant = state.store.get_assistant(org, assistant_id(&id)?).await?;
    assistant.ensure_editable()?;
    let now = Utc::now();
    let holding: Vec<CampaignInUse> = state
        .store
        .campaigns_using_assistant(org, assistant.id)
        .await?
        .into_iter()
        .filter(|c| c.holds_assistant(now))
        .map(|c| CampaignInUse { id: c.id, name: c.name, status: c.status })
        .collect();
    if !holding.is_empty() {
        let names = holding.iter().map(|c| format!("{} ({}, {})", c.name, c.id, c.status.as_str())).collect::<Vec<_>>().join(", ");
        let detail = format!(
            "assistant {} is used by {names}; it can be deleted once no draft, running or paused campaign uses it and none completed in the last 24 hours",
            assistant.id
        );
        return Err(Problem::new(StatusCode::CONFLICT, "assistant-in-use", "Assistant in use", detail).with("campaigns", holding));
    }
    state.store.delete_assistant(org, assistant.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of the assistant, oldest first: each change to its name, config or active flag.
#[utoipa::path(get, path = "/assistants/{id}/versions", tag = "assistants", params(("id" = String, Path, description = "assistant id")),
    security(("apiKey" = [])),
    responses((status = 200, body = List<AssistantVersion>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_versions<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<axum::Json<List<AssistantVersion>>, Problem> {
    Ok(axum::Json(List::whole(state.store.list_assistant_versions(org, assistant_id(&id)?).await?)))
}

/// Copy an assistant (a template, usually) into a new, editable one, created at the provider
/// like any new assistant.
#[utoipa::path(post, path = "/assistants/{id}/clone", tag = "assistants", request_body = CloneAssistant,
    params(("id" = String, Path, description = "the assistant or template to copy")), security(("apiKey" = [])),
    responses(
        (status = 201, body = Assistant, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json")))]
async fn clone_assistant<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<CloneAssistant>,
) -> Result<impl IntoResponse, Problem> {
    let original = state.store.get_assistant(org, assistant_id(&id)?).await?;
    let name = body.name.unwrap_or_else(|| format!("{} (copy)", original.name));
    let new = NewAssistant::local(&name, body.provider.unwrap_or(original.provider), original.config).map_err(Problem::validation)?;
    Ok(Versioned(StatusCode::CREATED, create_at_provider(&state, org, new).await?))
}
