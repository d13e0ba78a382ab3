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

/// Runs each named `async fn(store: impl Store)` of the calling test file on SQLite (in memory),
/// and on DynamoDB at `DYNAMODB_ENDPOINT` (a fresh table named from `$prefix` and the test; the
/// skip printed when the variable is unset): `store::on_both_stores!("dialer-"; first_test, second_test);`
#[macro_export]
macro_rules! on_both_stores {
    ($prefix:literal; $($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test($crate::SqliteStore::open_in_memory().expect("an in-memory SQLite store opens")).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(store) = $crate::testing::dynamodb_test_store(concat!($prefix, stringify!($test))).await {
                        super::$test(store).await;
                    }
                }
            )*
        }
    };
}

/// Registers `phones` as `org`'s caller IDs, each with the given Vapi and ElevenLabs ids.
pub async fn register_caller_ids<S: crate::CallerIdStore>(
    store: &S,
    org: domain::OrgId,
    phones: &[domain::E164],
    vapi_id: Option<&str>,
    elevenlabs_id: Option<&str>,
) {
    for phone in phones {
        let caller = domain::CallerId {
            phone: phone.clone(),
            org_id: org,
            vapi_phone_number_id: vapi_id.map(str::to_string),
            elevenlabs_phone_number_id: elevenlabs_id.map(str::to_string),
            registered_at: chrono::Utc::now(),
        };
        store.register_caller_id(caller).await.expect("the caller ID registers");
    }
}

/// A DynamoStore on a fresh table `table` at `endpoint` whose client counts every request it
/// sends, for benchmarks that report DynamoDB requests per operation.
pub async fn request_counting_dynamodb_store(endpoint: &str, table: &str) -> (DynamoStore, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").endpoint_url(endpoint).load().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&shared).interceptor(CountRequests(counter.clone())).build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table);
    store.create_table().await.expect("create the bench table");
    (store, counter)
}

#[derive(Debug, Clone)]
struct CountRequests(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl aws_sdk_dynamodb::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
