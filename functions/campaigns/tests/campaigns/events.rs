//! The sample events in `events/campaigns/`, `events/caller-ids/`, `events/dnc/` and `events/schedules/`, fed to the
//! handlers as Lambda and EventBridge Scheduler deliver them, so the samples stay true to the code.

use axum::http::StatusCode;
use campaigns::{AppState, router};
use platform::{
    CampaignScheduler, LocalScheduler, ScheduledAction, ScheduledRun,
    testing::{invoke_event, load_event},
};
use serde_json::Value;
use store::{AssistantStore, CampaignStore, OrgStore, SqliteStore};

const KEY: &str = "odk_REPLACE_WITH_AN_API_KEY";
const ASSISTANT: &str = "01970000-0000-7000-8000-00000000a551";
const CAMPAIGN: &str = "01970000-0000-7000-8000-0000000ca111";
const ORG: &str = "01970000-0000-7000-8000-0000000000a9";

#[tokio::test]
async fn every_sample_event_is_answered_by_its_route() {
    let store = SqliteStore::open_in_memory().unwrap();
    let org = store.create_org("Acme Outbound").await.unwrap().id;
    let key = store.create_api_key(org).await.unwrap().secret;
    let config = domain::assistant::templates()[0].config.clone();
    let new = domain::NewAssistant::local("Agent", domain::ProviderKind::Simulator, config).unwrap();
    let assistant = store.create_assistant(org, new, chrono::Utc::now()).await.unwrap().id.to_string();
    let (scheduler, _fired) = LocalScheduler::new(std::time::Duration::from_secs(3600));
    let queue = platform::LocalQueue::open_in_memory(5).unwrap();
    let state = AppState::from_config(&platform::testing::config(&[("OUTDIAL_SIMULATOR", "on")]), store.clone(), scheduler.clone(), queue);
    let (app, _) = router().with_state(state.clone()).split_for_parts();

    let (status, registered) = invoke_event(&app, "caller-ids/register.json", &[(KEY, &key)]).await;
    assert_eq!((status, registered["phone"].as_str()), (StatusCode::CREATED, Some("+14155550100")), "{registered}");
    let (status, listed) = invoke_event(&app, "caller-ids/list.json", &[(KEY, &key)]).await;
    assert_eq!((status, listed["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{listed}");
    let (status, created) = invoke_event(&app, "campaigns/create.json", &[(KEY, &key), (ASSISTANT, &assistant)]).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let with = [(KEY, key.as_str()), (CAMPAIGN, id.as_str())];
    type Check = fn(&Value) -> bool;
    let expectations: [(&str, StatusCode, Check); 15] = [
        ("campaigns/list.json", StatusCode::OK, |v| v["items"].as_array().is_some_and(|i| i.len() == 1)),
        ("campaigns/contacts-import-csv.json", StatusCode::OK, |v| v["imported"] == 2),
        ("campaigns/contacts-import-json.json", StatusCode::OK, |v| v["imported"] == 1),
        ("campaigns/contacts-list.json", StatusCode::OK, |v| v["items"].as_array().is_some_and(|i| i.len() == 3)),
        ("dnc/add.json", StatusCode::OK, |v| v["added"] == 1),
        ("dnc/import.json", StatusCode::OK, |v| v["added"] == 2),
        ("dnc/list.json", StatusCode::OK, |v| v["items"].as_array().is_some_and(|i| i.len() == 3)),
        ("dnc/remove.json", StatusCode::NO_CONTENT, Value::is_null),
        ("campaigns/start.json", StatusCode::OK, |v| v["status"] == "running"),
        ("campaigns/pause.json", StatusCode::OK, |v| v["status"] == "paused"),
        ("campaigns/resume.json", StatusCode::OK, |v| v["status"] == "running"),
        ("campaigns/emergency-stop.json", StatusCode::OK, |v| v["active"] == true && v["pausedCampaigns"][0]["status"] == "paused"),
        ("campaigns/emergency-stop-status.json", StatusCode::OK, |v| v["active"] == true),
        ("campaigns/emergency-stop-lift.json", StatusCode::OK, |v| v["active"] == false),
        ("campaigns/cancel.json", StatusCode::OK, |v| v["status"] == "canceled"),
    ];
    for (name, expected, check) in expectations {
        let (status, body) = invoke_event(&app, name, &with).await;
        assert_eq!(status, expected, "{name}: {body}");
        assert!(check(&body), "{name}: {body}");
    }
    let (status, fetched) = invoke_event(&app, "campaigns/get.json", &with).await;
    assert_eq!((status, fetched["progress"]["byDisposition"]["canceled"].as_u64()), (StatusCode::OK, Some(3)));
    assert_eq!(invoke_event(&app, "caller-ids/remove.json", &with).await.0, StatusCode::NO_CONTENT);
    invoke_event(&app, "caller-ids/register.json", &with).await;

    // the scheduler's start payload at startAt (ticks are campaign-tick's: its tests feed schedules/tick.json)
    let draft = store
        .create_campaign(
            org,
            domain::NewCampaign::parse(
                "later",
                domain::Cap::DEFAULT,
                domain::CampaignSettings { caller_ids: vec!["+14155550100".parse().unwrap()], ..Default::default() },
            )
            .unwrap()
            .with_assistant(assistant.parse().unwrap()),
        )
        .await
        .unwrap();
    store
        .add_contacts(
            org,
            draft.id,
            vec![domain::NewContact::new("+14155550177".parse().unwrap(), chrono_tz::UTC, domain::Consent::on_file(chrono::Utc::now()))],
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let (org_s, draft_s) = (org.to_string(), draft.id.to_string());
    let run = |name: &str| serde_json::from_str::<ScheduledRun>(&load_event(name, &[(ORG, &org_s), (CAMPAIGN, &draft_s)])).unwrap();
    state.lifecycle().on_scheduled_start(&run("schedules/start.json")).await.unwrap();
    assert_eq!(store.get_campaign(org, draft.id).await.unwrap().status, domain::CampaignStatus::Running);
    assert!(scheduler.get(draft.id, ScheduledAction::Tick).await.unwrap().is_some());
}
