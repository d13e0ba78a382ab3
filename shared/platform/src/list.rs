//! The one list shape of the API: `{items, nextCursor}` with an opaque cursor.

use serde::{Deserialize, Serialize};
use store::{Page, PageRequest};
use utoipa::{IntoParams, ToSchema};

use crate::Problem;

/// A page of a list.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for List<T> {
    fn from(p: Page<T>) -> Self {
        Self::of(p, |item| item)
    }
}

impl<T> List<T> {
    /// The page with each item shown as `show` makes it.
    pub fn of<U>(page: Page<U>, show: impl FnMut(U) -> T) -> Self {
        Self { items: page.items.into_iter().map(show).collect(), next_cursor: page.next_cursor.map(|c| c.as_str().to_string()) }
    }

    /// A list that always fits on one page.
    pub fn whole(items: Vec<T>) -> Self {
        Self { items, next_cursor: None }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(self) -> Result<PageRequest, Problem> {
        page_request(self.limit, self.cursor)
    }
}

/// The page a list request asks for; a `limit` outside 1–500 is refused, as the document says.
pub fn page_request(limit: Option<u32>, cursor: Option<String>) -> Result<PageRequest, Problem> {
    match limit {
        Some(n) if !(1..=PageRequest::MAX_LIMIT).contains(&n) => Err(Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid-limit",
            "Invalid limit",
            format!("limit must be 1–{} items per page, not {n}", PageRequest::MAX_LIMIT),
        )),
        _ => Ok(PageRequest::new(limit, cursor)),
    }
}
