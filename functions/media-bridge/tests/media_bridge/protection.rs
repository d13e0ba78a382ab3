//! Task scale-in protection against a fake ECS agent speaking the agent's endpoint
//! (`PUT $ECS_AGENT_URI/task-protection/v1/state`): protected when the first call starts, released
//! when the last ends, and a refusal tried again.

use media_bridge::protection::{PROTECTION_MINUTES, ScaleInProtection};
use serde_json::{Value, json};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;
use tokio::sync::Notify;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

async fn bodies(agent: &MockServer) -> Vec<Value> {
    agent.received_requests().await.unwrap_or_default().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

async fn until(agent: &MockServer, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let seen = bodies(agent).await;
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the agent got {:?}, not {n} requests", bodies(agent).await);
}

#[tokio::test]
async fn a_task_is_protected_exactly_while_it_carries_calls() {
    let agent = MockServer::start().await;
    Mock::given(matchers::method("PUT"))
        .and(matchers::path("/v1/tasks/task-protection/v1/state"))
        .and(matchers::header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"protection": {"ProtectionEnabled": true, "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/1"}}),
            ),
        )
        .mount(&agent)
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let protection = ScaleInProtection::at(&format!("{}/v1/tasks", agent.uri()));
    let (count, wake) = (calls.clone(), started.clone());
    let guard = tokio::spawn(async move { protection.guard(move || count.load(Ordering::SeqCst), &wake).await });

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(bodies(&agent).await.is_empty(), "an idle task asks for nothing");
    calls.store(1, Ordering::SeqCst);
    started.notify_one();
    let seen = until(&agent, 1).await;
    assert_eq!(seen[0], json!({"ProtectionEnabled": true, "ExpiresInMinutes": PROTECTION_MINUTES}));
    calls.store(3, Ordering::SeqCst);
    started.notify_one();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(bodies(&agent).await.len(), 1, "more calls need no new grant");
    guard.abort();

    // the last call ended: released at the next look (every 10 s, here driven by the notify)
    let agent_released = MockServer::start().await;
    Mock::given(matchers::method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"protection": {"ProtectionEnabled": false}})))
        .mount(&agent_released)
        .await;
    let protection = ScaleInProtection::at(&agent_released.uri());
    let (count, wake) = (calls.clone(), started.clone());
    let guard = tokio::spawn(async move { protection.guard(move || count.load(Ordering::SeqCst), &wake).await });
    until(&agent_released, 1).await;
    calls.store(0, Ordering::SeqCst);
    started.notify_one();
    let seen = until(&agent_released, 2).await;
    assert_eq!(seen[1], json!({"ProtectionEnabled": false}));
    guard.abort();
}

#[tokio::test]
async fn a_refused_grant_is_an_error_and_asked_again() {
    let agent = MockServer::start().await;
    // what the agent answers when ECS refuses: 200 with an error member
    Mock::given(matchers::method("PUT"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"error": {"Code": "AccessDeniedException", "Message": "not authorized"}})),
        )
        .up_to_n_times(1)
        .mount(&agent)
        .await;
    Mock::given(matchers::method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"protection": {}})))
        .mount(&agent)
        .await;
    let protection = ScaleInProtection::at(&agent.uri());
    let err = protection.set(true).await.unwrap_err();
    assert!(err.contains("AccessDeniedException"), "{err}");
    protection.set(true).await.unwrap();

    let again = MockServer::start().await;
    Mock::given(matchers::method("PUT")).respond_with(ResponseTemplate::new(500)).up_to_n_times(1).mount(&again).await;
    Mock::given(matchers::method("PUT"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"protection": {}})))
        .mount(&again)
        .await;
    let started = Arc::new(Notify::new());
    let wake = started.clone();
    let uri = again.uri();
    let guard = tokio::spawn(async move { ScaleInProtection::at(&uri).guard(|| 1, &wake).await });
    until(&again, 1).await;
    started.notify_one();
    let seen = until(&again, 2).await;
    assert_eq!(
        seen,
        vec![json!({"ProtectionEnabled": true, "ExpiresInMinutes": PROTECTION_MINUTES}); 2],
        "the failed grant was asked again"
    );
    started.notify_one();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(bodies(&again).await.len(), 2, "once granted, not asked again until renewal");
    guard.abort();
}
