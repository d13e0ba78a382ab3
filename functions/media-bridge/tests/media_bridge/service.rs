//! The bridge's own binary, started the way its Fargate task starts it: exactly the environment
//! `infra/media-bridge.yaml` gives the container, its credentials in the deployment's Secrets
//! Manager secret and a DynamoDB table (moto_server at `DYNAMODB_ENDPOINT` and
//! `SECRETSMANAGER_ENDPOINT`, skipped without them). It must come up healthy, refuse an unsigned
//! stream (the credentials reached it from the secret), and exit cleanly on SIGTERM.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const TEMPLATE: &str = include_str!("../../../../infra/media-bridge.yaml");

/// The container's `Environment` (name → value as written) and its `Secrets`' names.
fn task_environment() -> (BTreeMap<String, String>, Vec<String>) {
    let mut environment = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut section = "";
    for line in TEMPLATE.lines().map(str::trim) {
        if line.ends_with(':') && !line.starts_with('-') {
            section = line;
        }
        match section {
            "Environment:" => {
                if let Some(entry) = line.strip_prefix("- { Name: ").and_then(|l| l.strip_suffix(" }")) {
                    let (name, value) = entry.split_once(", Value: ").expect("an environment entry is `- { Name: N, Value: V }`");
                    environment.insert(name.to_string(), value.trim_matches('"').to_string());
                }
            }
            "Secrets:" => {
                if let Some(name) = line.strip_prefix("- Name: ") {
                    secrets.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    (environment, secrets)
}

#[test]
fn the_task_definition_gives_the_bridge_what_it_reads() {
    let (environment, secrets) = task_environment();
    for name in [
        "PORT",
        "OUTDIAL_STORE",
        "OUTDIAL_TABLE",
        "OUTDIAL_BRIDGE_URL",
        "OUTDIAL_BRIDGE_DRAIN_SECONDS",
        "OUTDIAL_SECRETS_ARN",
        "CALCOM_EVENT_TYPE_ID",
        "OUTDIAL_EMAIL_FROM",
    ] {
        assert!(environment.contains_key(name), "{name} is missing from the task's environment: {environment:?}");
    }
    assert_eq!(environment["OUTDIAL_STORE"], "dynamodb");
    assert!(secrets.is_empty(), "credentials come from the deployment's secret, read by the bridge: {secrets:?}");
    for credential in platform::SECRET_VARIABLES {
        assert!(!environment.contains_key(*credential), "{credential} must not be a plain variable of the task");
    }
    assert!(!environment.contains_key("OUTDIAL_BRIDGE_VERIFY_SIGNATURE"), "signatures are checked in AWS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_from_its_task_definition_and_drains_on_sigterm() {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        let _ = writeln!(std::io::stderr(), "skipped the_service_starts_from_its_task_definition: DYNAMODB_ENDPOINT is unset");
        return;
    };
    let table = format!("bridge-service-{}", domain::OrgId::new());
    store::DynamoStore::connect(&table, Some(&endpoint)).await.create_table().await.expect("the table");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address").port()
    };

    let Some((secrets, secrets_endpoint)) = platform::testing::secrets_manager_on_moto("the_service_starts_from_its_task_definition").await
    else {
        return;
    };
    // the deployment's credentials secret, as `outdial secrets set` fills it
    let credentials = secrets
    .create_secret()
    .name(format!("bridge-credentials-{}", domain::OrgId::new()))
    .secret_string(r#"{"TWILIO_ACCOUNT_SID":"AC00000000000000000000000000000001","TWILIO_AUTH_TOKEN":"secret-token","ELEVENLABS_API_KEY":"secret-key"}"#)
    .send()
    .await
    .expect("the credentials secret")
    .arn
    .expect("its ARN");

    let (environment, _) = task_environment();
    // what the template fills in from its parameters, as a deployment would
    let deployed = |name: &str, written: &str| match name {
        "PORT" => port.to_string(),
        "OUTDIAL_TABLE" => table.clone(),
        "OUTDIAL_BRIDGE_URL" => "wss://bridge.example.com/media".into(),
        "OUTDIAL_BRIDGE_DRAIN_SECONDS" => "2".into(),
        "OUTDIAL_SECRETS_ARN" => credentials.clone(),
        "CALCOM_EVENT_TYPE_ID" => "1837761".into(),
        "OUTDIAL_EMAIL_FROM" => "calls@acme.example".into(),
        _ => written.to_string(),
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_media-bridge"));
    command
        .env_clear()
        .env("DYNAMODB_ENDPOINT", &endpoint)
        .env("SECRETSMANAGER_ENDPOINT", &secrets_endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for aws in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"] {
        if let Ok(value) = std::env::var(aws) {
            command.env(aws, value);
        }
    }
    for (name, written) in &environment {
        command.env(name, deployed(name, written));
    }
    let mut bridge = command.spawn().expect("the media-bridge binary");

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(format!("{base}/health")).send().await
            && response.status() == 200
        {
            break;
        }
        assert!(bridge.try_wait().expect("status").is_none(), "the bridge exited: {}", stderr_of(bridge));
        assert!(started.elapsed() < Duration::from_secs(30), "no healthy bridge after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let unsigned = http
        .get(format!("{base}/media"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("the upgrade request");
    assert_eq!(unsigned.status(), 401, "the auth token from the credentials secret is what signatures are checked with");

    let killed = Command::new("kill").args(["-TERM", &bridge.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = bridge.try_wait().expect("status") {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(10), "the bridge did not stop within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logs = stderr_of(bridge);
    assert!(status.success(), "exit {status}: {logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.lines().all(|l| l.starts_with('{')), "the task's LOG_FORMAT gives JSON lines: {logs}");
    assert!(!logs.contains("secret-"), "no secret in the logs: {logs}");
}

fn stderr_of(child: std::process::Child) -> String {
    let output = child.wait_with_output().map(|o| o.stderr).unwrap_or_default();
    String::from_utf8_lossy(&output).into_owned()
}
