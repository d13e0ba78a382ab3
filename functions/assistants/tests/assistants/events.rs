//! The sample function URL events in `events/assistants/`, fed to the handler as Lambda delivers
//! them, so the samples stay true to the routes.

use assistants::{AppState, router};
use axum::{Router, http::StatusCode};
use providers::AssistantProvider;
use serde_json::Value;
use store::{OrgStore, SqliteStore};

const KEY_PLACEHOLDER: &str = "odk_REPLACE_WITH_AN_API_KEY";
const ID_PLACEHOLDER: &str = "01970000-0000-7000-8000-00000000a551";
const PROVIDER_ID_PLACEHOLDER: &str = "sim_asst_REPLACE_WITH_A_PROVIDER_ID";

async fn invoke(app: &Router, name: &str, replacements: &[(&str, &str)]) -> (StatusCode, Value) {
    platform::testing::invoke_event(app, &format!("assistants/{name}"), replacements).await
}

#[tokio::test]
async fn every_sample_event_is_answered_by_its_route() {
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme Outbound").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let state = AppState::from_config(&platform::testing::config(&[]), store);
    let providers = state.providers.clone();
    let (app, _) = router().with_state(state).split_for_parts();
    let with_key = [(KEY_PLACEHOLDER, key.as_str())];

    let (status, created) = invoke(&app, "create.json", &with_key).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let with_id = [(KEY_PLACEHOLDER, key.as_str()), (ID_PLACEHOLDER, id.as_str())];

    let (status, listed) = invoke(&app, "list.json", &with_key).await;
    assert_eq!((status, listed["items"][0]["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (status, fetched) = invoke(&app, "get.json", &with_id).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &created));
    let (status, updated) = invoke(&app, "update.json", &with_id).await;
    assert_eq!((status, updated["version"].as_u64(), updated["name"].as_str()), (StatusCode::OK, Some(2), Some("Lead qualifier")));
    let (status, versions) = invoke(&app, "versions.json", &with_id).await;
    assert_eq!((status, versions["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    let (status, cloned) = invoke(&app, "clone.json", &with_id).await;
    assert_eq!((status, cloned["source"].as_str()), (StatusCode::CREATED, Some("local")));

    let simulator = providers.get(domain::ProviderKind::Simulator).unwrap();
    let provider_id =
        simulator.create_assistant("Made at the provider", &domain::assistant::templates()[0].config, &Default::default()).await.unwrap();
    let (status, imported) =
        invoke(&app, "import.json", &[(KEY_PLACEHOLDER, key.as_str()), (PROVIDER_ID_PLACEHOLDER, provider_id.as_str())]).await;
    assert_eq!(
        (status, imported["source"].as_str(), imported["name"].as_str()),
        (StatusCode::CREATED, Some("imported"), Some("Imported booker"))
    );

    let (status, _) = invoke(&app, "delete.json", &with_id).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = invoke(&app, "get.json", &with_id).await;
    assert_eq!((status, gone["type"].as_str()), (StatusCode::NOT_FOUND, Some("https://outdial.dev/problems/not-found")));
}
