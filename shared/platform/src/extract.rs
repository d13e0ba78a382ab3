//! Extractors whose rejections are problem+json like every other error.

use crate::Problem;
use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

/// `axum::extract::Query`, answering a bad query string with a 400 problem that says why.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|rejection| Problem::bad_request(rejection.body_text()))
    }
}

/// `axum::Json` as a body extractor, answering a missing content type (415), a malformed body
/// (400) or a body of the wrong shape (422) with a problem that says why. Every request body of
/// the API is a JSON object: an array is refused even where every field is optional (serde would
/// read it field by field).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let invalid = |detail: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", "Invalid body", detail);
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let (slug, title) = match status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
                StatusCode::UNPROCESSABLE_ENTITY => ("invalid-body", "Invalid body"),
                StatusCode::PAYLOAD_TOO_LARGE => ("payload-too-large", "Body too large"),
                _ => ("malformed-body", "Malformed body"),
            };
            Problem::new(status, slug, title, rejection.body_text())
        })?;
        if !value.is_object() {
            return Err(invalid("the body must be a JSON object".into()));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| invalid(format!("Failed to deserialize the JSON body into the target type: {e}")))
    }
}
