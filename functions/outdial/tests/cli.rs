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
    assert!(ok && out.contains("schema version 3"), "{out}");
    let (ok, out, err) = outdial(&db, &["org", "create", "Acme Outbound"]);
    assert!(ok, "{err}");
    let org = last_line(&out).to_string();
    assert!(domain::OrgId::parse(&org).is_ok(), "{out:?}");
    let (ok, out, err) = outdial(&db, &["key", "create", "--org", &org]);
    assert!(ok, "{err}");
    let key = last_line(&out);
    assert!(key.starts_with("odk_"), "{out:?}");
    assert!(!err.contains(key), "the key is printed once, on stdout");

    let (ok, _, err) = outdial(&db, &["key", "create", "--org", "nope"]);
    assert!(!ok);
    assert!(err.contains("organisation"), "{err}");
    let (ok, _, err) = outdial(&db, &["key", "create", "--org", &domain::OrgId::new().to_string()]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[test]
fn demo_command_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = outdial(&dir.path().join("demo.db"), &["demo"]);
    assert!(ok && out.contains("demo"), "{out}");
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
