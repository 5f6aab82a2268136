//! Every input a step reads is an input of its action, and the other way round: `gangplank <step> --help` of
//! the real executable against the `inputs:` of the step's action.yml. A flag added to a step but not to its
//! shim would be unreachable from a workflow.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const STEPS: [&str; 6] = ["sync-secrets", "verify-image", "push-registry", "deploy-remote", "rollback", "status"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `gangplank` executable, built once per test process (a no-op when it is current).
fn gangplank() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let built =
                Command::new(cargo).args(["build", "--quiet", "-p", "gangplank"]).current_dir(root()).status().unwrap();
            assert!(built.success(), "cargo build -p gangplank failed");
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
            target.join("debug").join("gangplank")
        })
        .clone()
}

/// The long flags `gangplank <bin> --help` lists, without `--help`/`--version`.
fn flags(bin: &str) -> BTreeSet<String> {
    gangplank_testbed::step_flags(gangplank(), bin).unwrap().into_iter().collect()
}

/// The `inputs:` keys of an action.yml (two-space indented keys under `inputs:`).
fn inputs(bin: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("actions").join(bin).join("action.yml")).unwrap();
    let mut inside = false;
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            inside = line.trim_end() == "inputs:";
            continue;
        }
        if inside {
            if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !key.starts_with(' ') {
                    keys.insert(key.to_string());
                }
            }
        }
    }
    keys
}

#[test]
fn every_step_flag_is_an_action_input_and_back() {
    for bin in STEPS {
        let f = flags(bin);
        let i = inputs(bin);
        assert!(!f.is_empty() && !i.is_empty(), "{bin}: nothing parsed");
        let missing_in_action: Vec<_> = f.difference(&i).collect();
        let missing_in_binary: Vec<_> = i.difference(&f).collect();
        assert!(
            missing_in_action.is_empty() && missing_in_binary.is_empty(),
            "{bin}: flags without an action input: {missing_in_action:?}; action inputs the binary does not read: {missing_in_binary:?}"
        );
    }
}
