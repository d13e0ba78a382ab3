//! Opaque, stable list cursors: each adapter puts its own position inside.

use crate::StoreError;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Serialize, de::DeserializeOwned};

/// One page of a list, and where the next one starts (None on the last page).
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

/// An opaque position in a list, as handed to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    pub(crate) fn encode<P: Serialize>(position: &P) -> Self {
        let json = serde_json::to_vec(position).expect("cursor positions serialise");
        Self(URL_SAFE_NO_PAD.encode(json))
    }

    pub(crate) fn decode<P: DeserializeOwned>(&self) -> Result<P, StoreError> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.0).map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Which page to read: at most `limit` items after `cursor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;

    /// Clamps the limit into 1–500.
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Self {
        Self { limit: limit.unwrap_or(Self::DEFAULT_LIMIT).clamp(1, Self::MAX_LIMIT), cursor: cursor.map(Cursor) }
    }

    pub fn first(limit: u32) -> Self {
        Self::new(Some(limit), None)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::new(None, None)
    }
}

/// Every item of a list, read page by page at the largest page size.
pub async fn every_page<T, F, Fut>(mut list: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, StoreError>>,
{
    let mut items = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let next = list(page.clone()).await?;
        items.extend(next.items);
        match next.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(items),
        }
    }
}
