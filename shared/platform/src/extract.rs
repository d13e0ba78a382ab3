//! Extractors whose rejections are problem+json like every other error.

use crate::Problem;
use axum::{extract::FromRequestParts, http::request::Parts};
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
