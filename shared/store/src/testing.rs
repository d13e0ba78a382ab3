//! For tests of any crate that run on both stores (feature `testing`).

use crate::DynamoStore;
use std::io::Write;

/// A DynamoStore on a fresh table at `DYNAMODB_ENDPOINT` (moto_server in CI), or `None` with the
/// skip printed when the variable is unset.
pub async fn dynamodb_test_store(test: &str) -> Option<DynamoStore> {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        // straight to the handle: libtest hides `eprintln!` of passing tests, and a skip must be seen
        let _ = writeln!(
            std::io::stderr(),
            "skipped dynamodb::{test}: DYNAMODB_ENDPOINT is unset (scripts/test starts moto_server and sets it)"
        );
        return None;
    };
    let table = format!("test-{test}-{}", uuid::Uuid::now_v7().simple());
    let store = DynamoStore::connect(&table, Some(&endpoint)).await;
    store.create_table().await.expect("create the test table");
    Some(store)
}
