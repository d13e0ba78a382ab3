//! What the deployment is made of stays whole: every sample event in `events/` is fed to its
//! handler by some test, and every function the template deploys is a binary of the workspace.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_under(dir: &Path, extension: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        let skip = path.file_name().is_some_and(|n| n == "target" || n == "node_modules" || n.to_string_lossy().starts_with('.'));
        if path.is_dir() && !skip {
            files_under(&path, extension, found);
        } else if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
}

/// The test sources of the workspace: each crate's `tests/` (and the functions' own unit tests).
fn test_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in ["functions", "shared", "cli", "tests"] {
        files_under(&root().join(dir), "rs", &mut files);
    }
    files
        .into_iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "tests"))
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect()
}

#[test]
fn every_sample_event_is_fed_to_its_handler_by_a_test() {
    let events = root().join("events");
    let mut samples = Vec::new();
    files_under(&events, "json", &mut samples);
    assert!(samples.len() > 40, "the samples are found: {samples:?}");
    let sources = test_sources();
    let unused: Vec<String> = samples
        .iter()
        .map(|s| s.strip_prefix(&events).unwrap().to_string_lossy().replace('\\', "/"))
        .filter(|relative| {
            let (dir, file) = relative.rsplit_once('/').unwrap_or(("", relative));
            // by its path, or by its name from a test that loads that folder's samples
            !sources.iter().any(|(_, text)| {
                text.contains(&format!("\"{relative}\"")) || (text.contains(&format!("\"{file}\"")) && text.contains(&format!("{dir}/")))
            })
        })
        .collect();
    assert!(unused.is_empty(), "sample events no test runs: {unused:?}");
}

#[test]
fn every_function_the_template_deploys_is_a_binary_of_the_workspace() {
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    let binaries: Vec<&str> = template.lines().filter_map(|l| l.trim().strip_prefix("Binary: ")).collect();
    assert!(binaries.len() >= 11, "{binaries:?}");
    let mut manifests = Vec::new();
    files_under(&root().join("functions"), "toml", &mut manifests);
    let declared: String = manifests.iter().filter(|m| m.ends_with("Cargo.toml")).map(|m| std::fs::read_to_string(m).unwrap()).collect();
    for binary in binaries {
        assert!(declared.contains(&format!("name = \"{binary}\"")), "the template builds {binary}, which no function crate declares");
    }
}

#[test]
fn no_credential_is_a_plain_variable_and_every_dead_letter_queue_has_its_alarm() {
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    let bridge = std::fs::read_to_string(root().join("infra/media-bridge.yaml")).unwrap();
    for credential in platform::SECRET_VARIABLES {
        for (name, text) in [("template.yaml", &template), ("media-bridge.yaml", &bridge)] {
            let set = text.lines().any(|l| l.trim().starts_with(&format!("{credential}:")) || l.contains(&format!("Name: {credential},")));
            assert!(!set, "{name} sets {credential} as a variable: it belongs in the credentials secret");
        }
    }
    let queues: Vec<&str> = template.lines().filter_map(|l| l.strip_prefix("  ")?.strip_suffix("DeadLetters:")).collect();
    assert_eq!(queues.len(), 3, "{queues:?}");
    for queue in queues {
        assert!(template.contains(&format!("  {queue}DeadLettersAlarm:")), "{queue}DeadLetters has no alarm");
    }
    // one base URL: the HTTP API; the only function URL is the streamed calls export
    assert_eq!(template.matches("FunctionUrlConfig:").count(), 1);
    assert!(template.contains("  CallsExportFunction:"));
}
