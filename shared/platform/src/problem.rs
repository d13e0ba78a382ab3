//! `application/problem+json` (RFC 9457) errors with stable `type` URIs.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use providers::ProviderError;
use serde::Serialize;
use store::StoreError;

const TYPE_BASE: &str = "https://outdial.dev/problems/";

/// An error as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "https://outdial.dev/problems/not-found")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// Per-field reasons, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members particular to one kind of problem (RFC 9457 extensions), e.g. the campaigns that
    /// keep an assistant from being deleted.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extensions: Default::default(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, member: &str, value: impl Serialize) -> Self {
        self.extensions.insert(member.into(), serde_json::to_value(value).expect("problem members serialise"));
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
    }

    /// 503 `secrets-not-configured`: the deployment has no key (`OUTDIAL_SECRET_KEY`) to `purpose` with.
    pub fn secrets_not_configured(purpose: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets-not-configured",
            "No key configured",
            format!("this deployment has no key to {purpose} with: set OUTDIAL_SECRET_KEY (32 bytes, base64)"),
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    /// One problem listing every invalid field.
    pub fn validation(errors: Vec<domain::ParseError>) -> Self {
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let mut p = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request", detail);
        p.errors = errors.into_iter().map(|e| FieldError { field: e.field.into(), reason: e.reason }).collect();
        p
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "Something failed on our side; it was logged. Retry later.",
        )
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::not_found(e.to_string()),
            StoreError::Conflict(detail) => Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail),
            StoreError::InvalidCursor => Self::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor", e.to_string()),
            StoreError::Invalid(reason) => Self::validation(vec![reason]),
            StoreError::StaleVersion { .. } => Self::new(StatusCode::PRECONDITION_FAILED, "stale-version", "Stale version", e.to_string()),
            StoreError::Rejected { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "store-rejected", "Too large to store", e.to_string())
            }
            StoreError::Corrupt(_) | StoreError::Backend { .. } => {
                tracing::error!(error = %e, "store failed");
                Self::internal()
            }
        }
    }
}

impl From<ProviderError> for Problem {
    fn from(e: ProviderError) -> Self {
        let (status, slug, title) = match &e {
            ProviderError::NotFound { .. } => (StatusCode::NOT_FOUND, "provider-not-found", "Not found at the provider"),
            ProviderError::Refused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "provider-refused", "The provider refused"),
            ProviderError::NotConfigured { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "provider-not-configured", "Provider not configured"),
            ProviderError::Unsupported { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "provider-unsupported", "Not supported by the provider")
            }
            ProviderError::RateLimited { .. } => (StatusCode::BAD_GATEWAY, "provider-rate-limited", "The provider is rate-limiting"),
            ProviderError::Unavailable { .. } => (StatusCode::BAD_GATEWAY, "provider-unavailable", "The provider is unavailable"),
            ProviderError::Protocol { .. } => (StatusCode::BAD_GATEWAY, "provider-protocol", "Unexpected provider answer"),
            ProviderError::Undecided { .. } => (StatusCode::BAD_GATEWAY, "provider-undecided", "The provider cannot tell yet"),
        };
        if status == StatusCode::BAD_GATEWAY {
            tracing::warn!(error = %e, "provider failed");
        }
        Self::new(status, slug, title, e.to_string())
    }
}

impl From<providers::signatures::Refusal> for Problem {
    fn from(r: providers::signatures::Refusal) -> Self {
        use providers::signatures::Refusal;
        let (status, slug, title) = match r {
            Refusal::Missing(_) => (StatusCode::UNAUTHORIZED, "webhook-signature-missing", "Webhook signature missing"),
            Refusal::Invalid(_) => (StatusCode::FORBIDDEN, "webhook-signature-invalid", "Webhook signature invalid"),
            Refusal::Stale(_) => (StatusCode::FORBIDDEN, "webhook-signature-stale", "Webhook signature stale"),
            Refusal::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "webhook-not-configured", "Webhook not configured"),
        };
        Self::new(status, slug, title, r.to_string())
    }
}

impl From<crate::SchedulerError> for Problem {
    fn from(e: crate::SchedulerError) -> Self {
        tracing::error!(error = %e, "scheduler failed");
        Self::new(StatusCode::BAD_GATEWAY, "scheduler-unavailable", "Scheduler unavailable", format!("{e}; retry the request"))
    }
}

impl From<crate::QueueError> for Problem {
    fn from(e: crate::QueueError) -> Self {
        tracing::error!(error = %e, "queue failed");
        Self::new(StatusCode::BAD_GATEWAY, "queue-unavailable", "Queue unavailable", format!("{e}; retry the request"))
    }
}

impl From<domain::ReadOnlyTemplate> for Problem {
    fn from(e: domain::ReadOnlyTemplate) -> Self {
        Self::new(StatusCode::FORBIDDEN, "read-only-template", "Read-only template", e.to_string())
    }
}

impl From<domain::ParseError> for Problem {
    fn from(e: domain::ParseError) -> Self {
        Self::validation(vec![e])
    }
}

/// Adds to every operation of the document the problems any route can answer: 401 where an API
/// key is required, 400 where the request has parameters or a body (malformed), 404 where the path
/// names a record, 422 where a parameter or body can be invalid, 413 and 415 where there is a body. Routes document the rest themselves.
pub struct StandardProblems;

impl utoipa::Modify for StandardProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        let problem = |why: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(why)
                    .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, why: &str| {
                    responses.entry(status.to_string()).or_insert_with(|| problem(why));
                };
                if secured {
                    add("401", "no API key, or one that is unknown or revoked");
                }
                if has_parameters || has_body {
                    add("400", "a parameter or the body cannot be read");
                    add("422", "a parameter or the body is readable but not valid; each is named");
                }
                if path.contains('{') {
                    add("404", "not found, or another organisation's");
                }
                if has_body {
                    add("413", "the body is larger than this route accepts");
                    add("415", "the body is not of a content type this route accepts");
                }
            }
        }
    }
}

/// OpenAPI links from the routes that create (or list) records to every route that takes their
/// id, so clients and stateful testers can follow them: `(route, status, where the id is, the
/// path prefix of the routes that take it)`.
pub struct IdLinks(pub &'static [(&'static str, &'static str, &'static str, &'static str)]);

impl utoipa::Modify for IdLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, link::LinkBuilder};
        let mut targets: Vec<(String, String)> = Vec::new();
        for (path, item) in &openapi.paths.paths {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
                if let Some(id) = &operation.operation_id {
                    targets.push((path.clone(), id.clone()));
                }
            }
        }
        for (route, status, pointer, prefix) in self.0 {
            let Some((method, path)) = route.split_once(' ') else { continue };
            let Some(item) = openapi.paths.paths.get_mut(path) else { continue };
            let operation = match method {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                _ => None,
            };
            let Some(RefOr::T(response)) = operation.and_then(|o| o.responses.responses.get_mut(*status)) else { continue };
            for (target, operation_id) in targets.iter().filter(|(t, _)| t.starts_with(prefix)) {
                let link = LinkBuilder::new().operation_id(operation_id).parameter("id", format!("$response.body#{pointer}")).build();
                response.links.insert(format!("{operation_id} ({target})"), RefOr::T(link));
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn store_errors_map_to_stable_problem_types() {
        let response = Problem::from(StoreError::not_found("campaign", "c1")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["type"], "https://outdial.dev/problems/not-found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["detail"], "campaign c1 was not found");
        assert_eq!(Problem::from(StoreError::backend("disk on fire")).detail, Problem::internal().detail, "internals are not leaked");
        let v = Problem::validation(vec![domain::ParseError::new("cap", "61 is outside 1–50")]);
        assert_eq!((v.status, v.errors[0].field.as_str()), (422, "cap"));
    }
}
