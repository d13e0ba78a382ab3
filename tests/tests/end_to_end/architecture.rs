//! The layering, read from `cargo metadata`: functions are adapters over `shared/app`, so no
//! function crate depends on another (in any dependency kind), and no shared crate depends on a
//! function crate.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Each workspace package: its name, its directory, and the directories of its path dependencies.
fn packages() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let dir = |manifest: &str| Path::new(manifest).parent().expect("a manifest has a directory").to_path_buf();
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps =
                p["dependencies"].as_array().expect("dependencies").iter().filter_map(|d| d["path"].as_str().map(PathBuf::from)).collect();
            (p["name"].as_str().expect("name").to_string(), dir(p["manifest_path"].as_str().expect("manifest_path")), deps)
        })
        .collect()
}

fn in_layer(dir: &Path, layer: &str) -> bool {
    dir.parent().and_then(Path::file_name).is_some_and(|parent| parent == layer)
}

type Package = (String, PathBuf, Vec<PathBuf>);

/// Each dependency that breaks the layering, in words.
fn violations(packages: &[Package]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, dir, deps) in packages {
        let layer = if in_layer(dir, "functions") {
            "function"
        } else if in_layer(dir, "shared") {
            "shared"
        } else {
            continue;
        };
        for dep in deps.iter().filter(|d| in_layer(d, "functions")) {
            wrong.push(format!("{layer} crate {name} depends on function crate {}", dep.display()));
        }
    }
    wrong
}

#[test]
fn no_function_crate_depends_on_another_and_shared_crates_on_none() {
    let packages = packages();
    let functions: Vec<_> = packages.iter().filter(|(_, dir, _)| in_layer(dir, "functions")).collect();
    assert!(functions.len() >= 6, "the function crates are found under functions/: {functions:?}");
    let wrong = violations(&packages);
    assert!(wrong.is_empty(), "move what they share into shared/app:\n{}", wrong.join("\n"));
}

#[test]
fn a_dependency_between_functions_or_from_shared_is_a_violation() {
    let at = |p: &str| PathBuf::from("/w").join(p);
    let packages = vec![
        ("webhooks".to_string(), at("functions/webhooks"), vec![at("shared/app"), at("functions/campaigns")]),
        ("app".to_string(), at("shared/app"), vec![at("functions/dialer")]),
        ("outdial".to_string(), at("cli"), vec![at("functions/campaigns")]),
        ("dialer".to_string(), at("functions/dialer"), vec![at("shared/store")]),
    ];
    let wrong = violations(&packages);
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    assert!(wrong[0].starts_with("function crate webhooks") && wrong[1].starts_with("shared crate app"), "{wrong:?}");
}
