//! The command line as a user runs it: output contracts of `org create`, `key create`, `migrate`.

use std::process::Command;

fn outdial(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outdial"))
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("OUTDIAL_STORE")
        .output()
        .expect("run outdial");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default().trim()
}

#[test]
fn org_and_key_creation_print_the_value_alone_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let (ok, out, _) = outdial(&db, &["migrate"]);
    assert!(ok && out.contains("schema version 19"), "{out}");
    let (ok, out, err) = outdial(&db, &["org", "create", "Acme Outbound"]);
    assert!(ok, "{err}");
    let org = last_line(&out).to_string();
    assert!(domain::OrgId::parse(&org).is_ok(), "{out:?}");
    let (ok, out, err) = outdial(&db, &["key", "create", "--org", &org]);
    assert!(ok, "{err}");
    let key = last_line(&out);
    assert!(key.starts_with("odk_"), "{out:?}");
    assert!(!err.contains(key), "the key is printed once, on stdout");

    // named, listed with their use, revoked by id
    let (ok, out, err) = outdial(&db, &["key", "create", "--org", &org, "--name", "ci", "--expires-in-days", "30"]);
    assert!(ok && err.contains("(ci)"), "{err}");
    let ci_secret = last_line(&out).to_string();
    let (ok, out, _) = outdial(&db, &["key", "list", "--org", &org]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(ok && rows.len() == 2 && rows[1].contains("\tci\t"), "{out}");
    let ci_id = rows[1].split('\t').next().unwrap().to_string();
    assert_eq!(ci_id, store::KeyHash::of_secret(&ci_secret).id());
    let (ok, _, err) = outdial(&db, &["key", "revoke", &ci_id]);
    assert!(ok && err.contains("revoked"), "{err}");
    let (_, out, _) = outdial(&db, &["key", "list", "--org", &org]);
    assert!(!out.lines().nth(2).unwrap().ends_with("\t-"), "the revocation time is listed: {out}");
    let (ok, _, err) = outdial(&db, &["key", "revoke", "key_0123456789abcdef"]);
    assert!(!ok && err.contains("no API key"), "{err}");

    let (ok, _, err) = outdial(&db, &["key", "create", "--org", "nope"]);
    assert!(!ok);
    assert!(err.contains("organisation"), "{err}");
    let (ok, _, err) = outdial(&db, &["key", "create", "--org", &domain::OrgId::new().to_string()]);
    assert!(!ok && err.contains("not found"), "{err}");
}

/// `outdial demo --contacts 200 --seed 7` as a user runs it: it succeeds and its report adds up
/// (tests/tests/demo.rs recounts the same report from the store).
#[test]
fn the_demo_runs_a_whole_campaign_and_its_report_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = outdial(&dir.path().join("demo.db"), &["demo", "--contacts", "200", "--seed", "7"]);
    assert!(ok, "{err}");
    assert!(out.lines().next().is_some_and(|l| l.starts_with("campaign ") && l.contains(" completed in ")), "{out}");
    assert!(out.contains("contacts          200 (200 finalised)"), "{out}");
    let number = |line: &str| line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok());
    let lines: Vec<&str> = out.lines().collect();
    let calls_at = lines.iter().position(|l| l.starts_with("calls (attempts)")).expect("a calls line");
    let attempts = lines[calls_at].split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok()).expect("attempts");
    let contacts: u64 = lines[2..calls_at].iter().filter_map(|l| number(l)).sum();
    let calls: u64 = lines[calls_at + 1..].iter().take_while(|l| l.starts_with("  ")).filter_map(|l| number(l)).sum();
    assert_eq!((contacts, calls), (200, attempts), "{out}");
    let page = lines.iter().find_map(|l| l.strip_prefix("report: ")).expect("a report line");
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("id=\"funnel\"") && html.matches("<svg").count() == 3, "the HTML report with its charts: {page}");
    assert!(html.contains(&format!("<strong>{attempts}</strong>")), "its calls finished are the demo's attempts");
    let _ = std::fs::remove_file(page);
}

#[test]
fn the_same_commands_run_on_dynamodb() {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped the_same_commands_run_on_dynamodb: DYNAMODB_ENDPOINT is unset");
        return;
    };
    let table = format!("cli-{}", uuid_like());
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outdial"))
            .args(args)
            .env("OUTDIAL_STORE", "dynamodb")
            .env("OUTDIAL_TABLE", &table)
            .env("DYNAMODB_ENDPOINT", &endpoint)
            .output()
            .expect("run outdial");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["migrate"]);
    run(&["migrate"]);
    let org = run(&["org", "create", "Acme"]);
    let key = run(&["key", "create", "--org", last_line(&org)]);
    assert!(last_line(&key).starts_with("odk_"));
}

fn uuid_like() -> String {
    domain::OrgId::new().to_string()
}

/// `outdial assistant …` against a local stack serving the same database, as a user would run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistant_commands_are_a_client_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assistants.db");
    let (ok, out, err) = outdial(&db, &["org", "create", "Acme Outbound"]);
    assert!(ok && err.contains("3 assistant templates"), "{err}");
    let org = last_line(&out).to_string();
    let (_, key, _) = outdial(&db, &["key", "create", "--org", &org]);
    let key = last_line(&key).to_string();
    let (ok, installed, err) = outdial(&db, &["org", "templates", "--org", &org]);
    assert!(ok && installed.lines().count() == 3 && installed.contains("Discovery call"), "{installed}{err}");
    let (ok, _, err) = outdial(&db, &["org", "templates", "--org", &domain::OrgId::new().to_string()]);
    assert!(!ok && err.contains("not found"), "{err}");

    let store = store::SqliteStore::open(&db).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stack = outdial::Stack::default();
    let providers = stack.providers.clone();
    tokio::spawn(outdial::serve(store, stack, listener));
    let cli = |args: Vec<String>, key: Option<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_outdial"));
            command.arg("assistant").args(&args).env("OUTDIAL_URL", url).env_remove("OUTDIAL_API_KEY");
            if let Some(key) = key {
                command.env("OUTDIAL_API_KEY", key);
            }
            let out = command.output().expect("run outdial");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            (
                out.status.success(),
                serde_json::from_str::<serde_json::Value>(&stdout).ok(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok, listed, err) = cli(args(&["list", "--source", "template"]), Some(key.clone())).await.unwrap();
    assert!(ok, "{err}");
    let templates = listed.unwrap().as_array().unwrap().clone();
    assert_eq!(templates.len(), 3);

    let create =
        args(&["create", "--name", "CLI booker", "--system-prompt", "You book demos.", "--first-message", "Hi, I'm an AI assistant."]);
    let (ok, created, err) = cli(create, Some(key.clone())).await.unwrap();
    assert!(ok, "{err}");
    let created = created.unwrap();
    assert_eq!((created["provider"].as_str(), created["source"].as_str()), (Some("simulator"), Some("local")));

    let template_id = templates[0]["id"].as_str().unwrap();
    let (ok, cloned, err) = cli(args(&["clone", template_id, "--name", "Our voicemail"]), Some(key.clone())).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(cloned.unwrap()["name"], "Our voicemail");

    let simulator = providers.get(domain::ProviderKind::Simulator).unwrap();
    let config = domain::assistant::templates()[1].config.clone();
    let provider_id =
        providers::AssistantProvider::create_assistant(&simulator, "Built elsewhere", &config, &Default::default()).await.unwrap();
    let import = args(&["import", "--provider", "simulator", "--provider-assistant-id", &provider_id]);
    let (ok, imported, err) = cli(import, Some(key.clone())).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(imported.unwrap()["source"], "imported");
    let (_, all, _) = cli(args(&["list"]), Some(key.clone())).await.unwrap();
    assert_eq!(all.unwrap().as_array().unwrap().len(), 6);

    let bad = args(&["create", "--name", "Bad", "--system-prompt", "p", "--first-message", ""]);
    let (ok, _, err) = cli(bad, Some(key.clone())).await.unwrap();
    assert!(!ok && err.contains("config.firstMessage"), "the server's reason is shown: {err}");
    let (ok, _, err) = cli(args(&["list"]), None).await.unwrap();
    assert!(!ok && err.contains("OUTDIAL_API_KEY"), "{err}");
    let (ok, _, err) = cli(args(&["list"]), Some("odk_wrong".into())).await.unwrap();
    assert!(!ok && err.contains("401"), "{err}");
}

/// `outdial campaign …` and `outdial dnc …` against a local stack: a campaign created, a file
/// imported (streamed), started, shown as a table, canceled; a number put on the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_and_dnc_commands_are_a_client_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("campaigns.db");
    let (_, out, _) = outdial(&db, &["org", "create", "Acme Outbound"]);
    let org = last_line(&out).to_string();
    let (_, key, _) = outdial(&db, &["key", "create", "--org", &org]);
    let key = last_line(&key).to_string();
    let (_, templates, _) = outdial(&db, &["org", "templates", "--org", &org]);
    let assistant = templates.lines().next().unwrap().split('\t').next().unwrap().to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(outdial::serve(store::SqliteStore::open(&db).unwrap(), outdial::Stack::default(), listener));
    let run = |args: Vec<String>| {
        let (url, key) = (url.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_outdial"))
                .args(&args)
                .env("OUTDIAL_URL", url)
                .env("OUTDIAL_API_KEY", key)
                .output()
                .unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = run(args(&["dnc", "add", "+1 415 555 0163"])).await.unwrap();
    assert!(ok && out.contains("\"added\": 1"), "{out}{err}");
    let create = args(&["campaign", "create", "--name", "Renewals", "--assistant", &assistant, "--caller-id", "+14155550100"]);
    let (ok, _, err) = run(create.clone()).await.unwrap();
    assert!(!ok && err.contains("POST /caller-ids"), "an unregistered caller ID is refused: {err}");
    let (ok, out, err) = run(args(&["caller-id", "add", "(415) 555-0100"])).await.unwrap();
    assert!(!ok && err.contains("phone"), "a national number needs its region: {out}{err}");
    let (ok, out, err) = run(args(&["caller-id", "add", "+14155550100"])).await.unwrap();
    assert!(ok && out.contains("\"phone\": \"+14155550100\""), "{out}{err}");
    let (ok, out, err) = run(args(&["caller-id", "add", "+14155550109"])).await.unwrap();
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(args(&["caller-id", "remove", "+14155550109"])).await.unwrap();
    assert!(ok && out.contains("removed"), "{out}{err}");
    let (ok, out, _) = run(args(&["caller-id", "list"])).await.unwrap();
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && listed.as_array().unwrap().len() == 1 && listed[0]["phone"] == "+14155550100", "{out}");
    let (ok, out, err) = run(create).await.unwrap();
    assert!(ok, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let file = dir.path().join("contacts.csv");
    std::fs::write(&file, "phone,name\n(415) 555-0161,Ada\n(415) 555-0162,Grace\n(415) 555-0163,Listed\nbad,Row\n").unwrap();
    let (ok, _, err) = run(args(&["campaign", "import", &id, file.to_str().unwrap()])).await.unwrap();
    assert!(!ok && err.contains("consent"), "no consent column, no attestation: {err}");
    let import = args(&["campaign", "import", &id, file.to_str().unwrap(), "--consent-source", "web form, 2026-10"]);
    let (ok, out, err) = run(import).await.unwrap();
    assert!(ok && err.contains("imported 2, duplicate 0, do-not-call 1, invalid 1") && err.contains("line 5"), "{out}{err}");
    assert!(out.contains("\"imported\": 2"), "{out}");

    // a file over 5 MB goes through an upload URL: PUT to the stack's own signed URL, imported where it lands
    let (ok, out, err) =
        run(args(&["campaign", "create", "--name", "Big list", "--assistant", &assistant, "--caller-id", "+14155550100"])).await.unwrap();
    assert!(ok, "{err}");
    let big_campaign = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_string();
    let big = dir.path().join("big.csv");
    let notes = "n".repeat(260);
    let rows: String = (0..20_000).map(|i| format!("+1415{:07},Contact {i},{notes}\n", 2_000_000 + i)).collect();
    std::fs::write(&big, format!("phone,name,notes\n{rows}")).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 5 * 1024 * 1024);
    let (ok, out, err) =
        run(args(&["campaign", "import", &big_campaign, big.to_str().unwrap(), "--consent-source", "web form, 2026-10"])).await.unwrap();
    assert!(ok && err.contains("imported 20000, duplicate 0, do-not-call 0, invalid 0"), "{out}{err}");
    let (_, status, _) = run(args(&["campaign", "status", &big_campaign])).await.unwrap();
    assert!(status.contains("20000"), "{status}");
    let (ok, out, err) = run(args(&["campaign", "start", &id])).await.unwrap();
    assert!(ok && out.contains("status         running"), "{out}{err}");
    let (ok, out, _) = run(args(&["campaign", "list"])).await.unwrap();
    assert!(ok && out.contains(&id) && out.contains("running"), "{out}");
    let (ok, out, err) = run(args(&["campaign", "cancel", &id])).await.unwrap();
    assert!(ok && out.contains("disposition    canceled: 2"), "{out}{err}");
    let (ok, _, err) = run(args(&["campaign", "start", &id])).await.unwrap();
    assert!(!ok && err.contains("canceled and cannot be started"), "{err}");
    let csv = dir.path().join("calls.csv");
    let html = dir.path().join("report.html");
    let (ok, out, err) = run(args(&["report", &id, "--csv", csv.to_str().unwrap(), "--html", html.to_str().unwrap()])).await.unwrap();
    assert!(ok && err.contains("Renewals: ") && err.contains("csv: ") && err.contains("html: "), "{out}{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.matches("<svg").count() == 3, "{page}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["contacts"]["total"], 2, "{out}");
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(written.starts_with("call_id,contact_id,phone,"), "{written}");
    let (ok, _, err) = run(args(&["report", &domain::CampaignId::new().to_string()])).await.unwrap();
    assert!(!ok && err.contains("not found"), "{err}");
    let daily_html = dir.path().join("daily.html");
    let (ok, out, err) = run(args(&["report", "daily", "--html", daily_html.to_str().unwrap()])).await.unwrap();
    assert!(ok && err.contains("daily report ") && err.contains("all campaigns: 0 calls"), "{out}{err}");
    let yesterday: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(std::fs::read_to_string(&daily_html).unwrap().contains("Daily report — "), "the page is written");
    let (ok, out, err) = run(args(&["report", "daily", "--date", yesterday["date"].as_str().unwrap()])).await.unwrap();
    assert!(ok && serde_json::from_str::<serde_json::Value>(&out).unwrap()["date"] == yesterday["date"], "{out}{err}");
    let (ok, _, err) = run(args(&["report", "daily", "--date", "someday"])).await.unwrap();
    assert!(!ok && err.contains("is not a day like 2026-11-24"), "{err}");
    let (ok, _, err) = run(args(&["report", &id, "--date", "2026-11-24"])).await.unwrap();
    assert!(!ok && err.contains("--date goes with `outdial report daily`"), "{err}");
    let (ok, out, err) = run(args(&["crm", "retry-failed", "--campaign", &id])).await.unwrap();
    assert!(ok && err.contains("re-queued 0 failed deliveries of 0 calls") && out.contains("\"calls\": 0"), "{out}{err}");

    let (ok, out, err) = run(args(&["stop", "--status"])).await.unwrap();
    assert!(ok && err.contains("emergency stop: off") && out.contains("\"active\": false"), "{out}{err}");
    let (ok, out, err) = run(args(&["stop"])).await.unwrap();
    assert!(ok && err.contains("emergency stop: ON since") && out.contains("\"active\": true"), "{out}{err}");
    let (ok, out, err) = run(args(&["stop", "--status"])).await.unwrap();
    assert!(ok && out.contains("\"active\": true"), "{out}{err}");
    let (ok, out, err) = run(args(&["stop", "--lift"])).await.unwrap();
    assert!(ok && err.contains("emergency stop: off") && out.contains("\"active\": false"), "{out}{err}");
}

#[tokio::test]
async fn secrets_set_fills_the_deployment_secret_from_standard_input() {
    let Some((client, endpoint)) = platform::testing::secrets_manager_on_moto("secrets_set_fills_the_deployment_secret").await else {
        return;
    };
    let name = format!("outdial-cli-{}", uuid_like());
    let arn = client.create_secret().name(&name).secret_string("{}").send().await.unwrap().arn.unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_outdial"))
            .args(args)
            .env("OUTDIAL_SECRETS_ARN", &arn)
            .env("SECRETSMANAGER_ENDPOINT", &endpoint)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run outdial");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, out, err) = run(&["secrets", "set", "TWILIO_AUTH_TOKEN"], "tok-123\n");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "TWILIO_AUTH_TOKEN");
    assert!(!out.contains("tok-123") && !err.contains("tok-123"), "the value is never printed");
    let stored = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert_eq!(stored.secret_string(), Some(r#"{"TWILIO_AUTH_TOKEN":"tok-123"}"#), "the line's newline is not part of it");
    let (ok, _, err) = run(&["secrets", "set", "TWILIO_TOKEN"], "x");
    assert!(!ok && err.contains("TWILIO_AUTH_TOKEN"), "an unknown name lists the known ones: {err}");
    let (ok, out, _) = run(&["secrets", "list"], "");
    assert!(ok);
    assert_eq!(out.trim(), "TWILIO_AUTH_TOKEN");
}

/// Where a CLI run keeps its data: a SQLite file, or a DynamoDB table on moto.
#[derive(Clone)]
enum StoreAt {
    Sqlite(std::path::PathBuf),
    Dynamo { table: String, endpoint: String },
}

impl StoreAt {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outdial"));
        command.args(args).env_remove("OUTDIAL_API_KEY").env_remove("OUTDIAL_URL");
        match self {
            Self::Sqlite(db) => command.arg("--db").arg(db).env_remove("OUTDIAL_STORE"),
            Self::Dynamo { table, endpoint } => {
                command.env("OUTDIAL_STORE", "dynamodb").env("OUTDIAL_TABLE", table).env("DYNAMODB_ENDPOINT", endpoint)
            }
        };
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run outdial");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Kills the served stack however the test ends.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two organisations onboarded from the shell, each with its templates and keys, and each key
/// sees only its own organisation's records over the API.
async fn two_organisations_each_see_only_their_own(at: StoreAt) {
    at.run(&["migrate"]);
    let a = last_line(&at.run(&["org", "create", "Acme"])).to_string();
    let b = last_line(&at.run(&["org", "create", "Bravo"])).to_string();
    assert_ne!(a, b);
    let listed = at.run(&["org", "list"]);
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert!(rows.len() == 2 && rows[0].starts_with(&format!("{a}\tAcme\t")) && rows[1].starts_with(&format!("{b}\tBravo\t")), "{listed}");
    let key_a = last_line(&at.run(&["key", "create", "--org", &a])).to_string();
    let key_b = last_line(&at.run(&["key", "create", "--org", &b, "--name", "bravo-ci"])).to_string();
    let keys_b = at.run(&["key", "list", "--org", &b]);
    assert!(keys_b.lines().count() == 2 && keys_b.contains("\tbravo-ci\t"), "{keys_b}");
    let shown = at.run(&["org", "show", &b]);
    for line in ["name            Bravo", "templates       3 (", "campaigns       0", "keys            1 (1 active)", "emergency stop  off"]
    {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
    let out = at.command(&["org", "show", &domain::OrgId::new().to_string()]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _served = Served(at.command(&["serve", "--port", &port.to_string()]).env("OUTDIAL_SIMULATOR", "on").spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{url}/openapi.json")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let get = |path: String, key: &str| {
        let request = http.get(format!("{url}{path}")).bearer_auth(key);
        async move {
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.json::<serde_json::Value>().await.unwrap())
        }
    };
    let ids = |list: &serde_json::Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
    };
    let (status, templates_a) = get("/assistants?source=template".into(), &key_a).await;
    assert_eq!((status, ids(&templates_a).len()), (200, 3), "{templates_a}");
    let (_, templates_b) = get("/assistants?source=template".into(), &key_b).await;
    assert_eq!(ids(&templates_b).len(), 3);
    assert!(ids(&templates_a).iter().all(|id| !ids(&templates_b).contains(id)), "each organisation has its own templates");
    for id in ids(&templates_a) {
        let (status, problem) = get(format!("/assistants/{id}"), &key_b).await;
        assert_eq!(status, 404, "another organisation's template is not found: {problem}");
        assert_eq!(get(format!("/assistants/{id}"), &key_a).await.0, 200);
    }
    let post = |path: &str, key: &str, body: serde_json::Value| http.post(format!("{url}{path}")).bearer_auth(key).json(&body).send();
    let registered = post("/caller-ids", &key_a, serde_json::json!({"phone": "+14155550100"})).await.unwrap();
    assert_eq!(registered.status(), 201);
    let taken = post("/caller-ids", &key_b, serde_json::json!({"phone": "+14155550100"})).await.unwrap();
    assert_eq!(taken.status(), 409, "a number another organisation holds");
    let campaign = post(
        "/campaigns",
        &key_a,
        serde_json::json!({"name": "A's list", "assistantId": ids(&templates_a)[0], "callerIds": ["+14155550100"]}),
    )
    .await
    .unwrap();
    let campaign: serde_json::Value = campaign.json().await.unwrap();
    let campaign_id = campaign["id"].as_str().unwrap_or_else(|| panic!("{campaign}"));
    assert_eq!(get(format!("/campaigns/{campaign_id}"), &key_b).await.0, 404);
    assert_eq!(ids(&get("/campaigns".into(), &key_b).await.1).len(), 0);
    assert_eq!(ids(&get("/campaigns".into(), &key_a).await.1), vec![campaign_id.to_string()]);
    assert!(at.run(&["org", "show", &a]).contains("campaigns       1 (1 draft)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_organisation_is_onboarded_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    two_organisations_each_see_only_their_own(StoreAt::Sqlite(dir.path().join("orgs.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_organisation_is_onboarded_on_dynamodb() {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") else {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped a_second_organisation_is_onboarded_on_dynamodb: DYNAMODB_ENDPOINT is unset");
        return;
    };
    two_organisations_each_see_only_their_own(StoreAt::Dynamo { table: format!("orgs-{}", uuid_like()), endpoint }).await;
}
