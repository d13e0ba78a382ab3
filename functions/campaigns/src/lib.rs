//! The `campaigns` HTTP function: campaigns and their contacts, scoped to the caller's
//! organisation. So far the read side; creation, import and lifecycle come with the campaign issue.

use axum::{
    Json,
    extract::{Path, State},
};
use domain::{Campaign, CampaignId, Contact, ContactState};
use platform::{AuthState, Authenticated, List, PageQuery, Problem, extract::Query};
use serde::Deserialize;
use store::{ContactFilter, PageRequest, Store};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the handlers need: the store (for records and API keys).
#[derive(Clone)]
pub struct AppState<S> {
    pub store: S,
}

impl<S: Store> AuthState for AppState<S> {
    type Orgs = S;
    fn orgs(&self) -> &S {
        &self.store
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactQuery {
    /// Only contacts in this state.
    pub state: Option<ContactState>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn campaign_id(raw: &str) -> Result<CampaignId, Problem> {
    // an id that cannot exist is simply not found, like another organisation's
    CampaignId::parse(raw).map_err(|_| Problem::not_found(format!("campaign {raw} was not found")))
}

/// The function's routes, with their OpenAPI descriptions.
pub fn router<S: Store>() -> OpenApiRouter<AppState<S>> {
    OpenApiRouter::new().routes(routes!(list_campaigns)).routes(routes!(get_campaign)).routes(routes!(list_contacts))
}

/// List the organisation's campaigns, oldest first.
#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(PageQuery), security(("apiKey" = [])),
    responses((status = 200, body = List<Campaign>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_campaigns<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Query(q): Query<PageQuery>,
) -> Result<Json<List<Campaign>>, Problem> {
    Ok(Json(state.store.list_campaigns(org, q.page()).await?.into()))
}

/// One campaign with its counters.
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", params(("id" = String, Path, description = "campaign id")), security(("apiKey" = [])),
    responses((status = 200, body = Campaign), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_campaign<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, Problem> {
    Ok(Json(state.store.get_campaign(org, campaign_id(&id)?).await?))
}

/// The campaign's contacts, optionally only those in one state.
#[utoipa::path(get, path = "/campaigns/{id}/contacts", tag = "campaigns", params(("id" = String, Path, description = "campaign id"), ContactQuery),
    security(("apiKey" = [])),
    responses((status = 200, body = List<Contact>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn list_contacts<S: Store>(
    State(state): State<AppState<S>>,
    Authenticated(org): Authenticated,
    Path(id): Path<String>,
    Query(q): Query<ContactQuery>,
) -> Result<Json<List<Contact>>, Problem> {
    let page = PageRequest::new(q.limit, q.cursor);
    Ok(Json(state.store.list_contacts(org, campaign_id(&id)?, ContactFilter { state: q.state }, page).await?.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use store::{CampaignStore, OrgStore, SqliteStore};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_key_reads_only_its_own_organisations_campaigns() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (a, b) = (store.create_org("A").await.unwrap().id, store.create_org("B").await.unwrap().id);
        let key_b = store.create_api_key(b).await.unwrap().secret;
        let new = domain::NewCampaign::parse("A's", domain::Cap::DEFAULT, Default::default()).unwrap();
        let campaign = store.create_campaign(a, new).await.unwrap();
        let (app, _) = router().with_state(AppState { store }).split_for_parts();
        let get = |uri: String, key: Option<&str>| {
            let mut req = Request::get(uri);
            if let Some(k) = key {
                req = req.header("authorization", format!("Bearer {k}"));
            }
            app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        let response = get(format!("/campaigns/{}", campaign.id), Some(&key_b)).await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["type"], "https://outdial.dev/problems/not-found");
        assert_eq!(get(format!("/campaigns/{}/contacts", campaign.id), Some(&key_b)).await.unwrap().status(), 404);
        assert_eq!(get("/campaigns/not-an-id".into(), Some(&key_b)).await.unwrap().status(), 404);
        assert_eq!(get(format!("/campaigns/{}", campaign.id), None).await.unwrap().status(), 401);
        assert_eq!(get(format!("/campaigns/{}", campaign.id), Some("odk_wrong")).await.unwrap().status(), 401);
        let bad = get(format!("/campaigns/{}/contacts?state=bogus", campaign.id), Some(&key_b)).await.unwrap();
        assert_eq!((bad.status().as_u16(), &bad.headers()["content-type"]), (400, &"application/problem+json".parse().unwrap()));
    }
}
