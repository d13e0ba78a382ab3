//! The local stack on port 0, driven over HTTP like a user.

use domain::{Cap, NewCampaign};
use serde_json::Value;
use store::{CampaignStore, OrgStore, SqliteStore};

struct App {
    base: String,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e2e.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(outdial::serve(store.clone(), outdial::Stack::default(), listener));
    App { base, store, _dir: dir }
}

#[tokio::test]
async fn a_key_of_one_organisation_gets_404_for_another_organisations_campaign() {
    let app = spawn_app().await;
    let (a, b) = (app.store.create_org("A").await.unwrap().id, app.store.create_org("B").await.unwrap().id);
    let (key_a, key_b) = (app.store.create_api_key(a).await.unwrap().secret, app.store.create_api_key(b).await.unwrap().secret);
    let campaign = app.store.create_campaign(a, NewCampaign::parse("A only", Cap::DEFAULT, Default::default()).unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/campaigns/{}", app.base, campaign.id);

    let own = http.get(&url).bearer_auth(&key_a).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await.unwrap();
    assert_eq!(body["id"], campaign.id.to_string());
    assert_eq!(body["progress"]["activeCalls"], 0, "camelCase JSON");

    let other = http.get(&url).bearer_auth(&key_b).send().await.unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(other.headers()["content-type"], "application/problem+json");
    let problem: Value = other.json().await.unwrap();
    assert_eq!(problem["type"], "https://outdial.dev/problems/not-found");

    let list: Value = http.get(format!("{}/campaigns", app.base)).bearer_auth(&key_b).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], serde_json::json!([]));
    assert!(list["nextCursor"].is_null());

    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let problem: Value = anonymous.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("Bearer"));

    app.store.revoke_api_key(a, &store::KeyHash::of_secret(&key_a)).await.unwrap();
    assert_eq!(http.get(&url).bearer_auth(&key_a).send().await.unwrap().status(), 401, "a revoked key stops working");
}

#[tokio::test]
async fn lists_page_through_opaque_cursors_over_http() {
    let app = spawn_app().await;
    let org = app.store.create_org("A").await.unwrap().id;
    let key = app.store.create_api_key(org).await.unwrap().secret;
    for i in 0..7 {
        app.store.create_campaign(org, NewCampaign::parse(&format!("c{i}"), Cap::DEFAULT, Default::default()).unwrap()).await.unwrap();
    }
    let http = reqwest::Client::new();
    let mut names = Vec::new();
    let mut url = format!("{}/campaigns?limit=3", app.base);
    loop {
        let page: Value = http.get(&url).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        names.extend(page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()));
        match page["nextCursor"].as_str() {
            Some(cursor) => url = format!("{}/campaigns?limit=3&cursor={cursor}", app.base),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let bad = http.get(format!("{}/campaigns?cursor=garbage", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["type"], "https://outdial.dev/problems/invalid-cursor");
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let health = reqwest::get(format!("{}/health", app.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let doc: Value = reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes = [
        ("get", "/health"),
        ("get", "/campaigns"),
        ("get", "/campaigns/{id}"),
        ("get", "/campaigns/{id}/contacts"),
        ("get", "/assistants"),
        ("post", "/assistants"),
        ("post", "/assistants/import"),
        ("get", "/assistants/{id}"),
        ("patch", "/assistants/{id}"),
        ("delete", "/assistants/{id}"),
        ("get", "/assistants/{id}/versions"),
        ("post", "/assistants/{id}/clone"),
    ];
    for (method, path) in routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from {:?}", doc["paths"].as_object().unwrap().keys());
    }
    assert_eq!(doc["components"]["securitySchemes"]["apiKey"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let unknown = reqwest::get(format!("{}/no/such/route", app.base)).await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
}
