//! The workflows and action.yml files are held to zizmor (no findings, offline, auditor persona), to GitHub's schemas
//! (check-jsonschema's vendored `github-workflows` / `github-actions`), and to the pipeline's own rules
//! (issue 6); the action READMEs are held to their action.yml (`cargo xtask codegen --check`).

use std::path::{Path, PathBuf};
use std::process::Command;

use gangplank_testbed::{find_program, scrubbed_command};
use serde_json::Value;

const INSTALL_HINT: &str = "pip install zizmor check-jsonschema";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed; install it with `{INSTALL_HINT}` (the test command does)")
    })
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    out.sort();
    out
}

fn workflows() -> Vec<PathBuf> {
    let mut all = yml_files(&root().join(".github/workflows"));
    all.extend(yml_files(&root().join("examples/compose-app/.github/workflows")));
    all
}

fn action_ymls() -> Vec<PathBuf> {
    ["sync-secrets", "verify-image", "push-registry", "deploy-remote", "rollback", "status"]
        .iter()
        .map(|n| root().join("actions").join(n).join("action.yml"))
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn zizmor_finds_nothing() {
    let zizmor = tool("zizmor");
    // The repository: its workflows and the five action.yml files, with the auditor persona (every audit, also
    // those that are noisy by default).
    let audit = ["--offline", "--no-progress", "--persona", "auditor"];
    let (ok, text) = run(scrubbed_command(&zizmor).args(audit).arg(".").current_dir(root()));
    assert!(ok && text.contains("No findings"), "zizmor over the repository:\n{text}");
    // The example app is a repository of its own, with its own zizmor policy.
    let (ok, text) = run(scrubbed_command(&zizmor)
        .args(audit)
        .args(["--config", "examples/compose-app/.github/zizmor.yml"])
        .arg("examples/compose-app")
        .current_dir(root()));
    assert!(ok && text.contains("No findings"), "zizmor over examples/compose-app:\n{text}");
}

#[test]
fn workflows_and_actions_match_githubs_schemas() {
    let check = tool("check-jsonschema");
    let (ok, text) =
        run(scrubbed_command(&check).args(["--builtin-schema", "vendor.github-workflows"]).args(workflows()));
    assert!(ok, "check-jsonschema (workflows):\n{text}");
    let (ok, text) =
        run(scrubbed_command(&check).args(["--builtin-schema", "vendor.github-actions"]).args(action_ymls()));
    assert!(ok, "check-jsonschema (actions):\n{text}");
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every step of every job of a workflow.
fn steps(workflow: &Value) -> Vec<&Value> {
    workflow["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_array().into_iter().flatten())
        .collect()
}

#[test]
fn workflows_follow_the_pipeline_rules() {
    for path in workflows() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let wf = load(&path);
        assert_eq!(wf["permissions"], serde_json::json!({}), "{name}: top-level permissions are empty");
        for (job_name, job) in wf["jobs"].as_object().unwrap() {
            assert!(job.get("permissions").is_some(), "{name}: job {job_name} states its permissions");
            assert!(job.get("timeout-minutes").is_some(), "{name}: job {job_name} has a timeout");
        }
        for step in steps(&wf) {
            if let Some(run) = step["run"].as_str() {
                assert!(!run.contains("${{"), "{name}: `${{{{ }}}}` inside run: {run:?}");
            }
            let Some(uses) = step["uses"].as_str() else {
                continue;
            };
            if uses.starts_with("$/") || uses.starts_with("./") || uses.starts_with("gangplank-dev/gangplank/") {
                continue;
            }
            let (_, reference) = uses.split_once('@').unwrap_or_else(|| panic!("{name}: {uses} is unpinned"));
            assert!(
                reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: {uses} is not pinned by a full commit SHA"
            );
            if uses.starts_with("actions/checkout@") {
                assert_eq!(step["with"]["persist-credentials"], Value::Bool(false), "{name}: {uses}");
            }
        }
    }
}

/// Every string in an action's metadata that holds an expression, with its path (`inputs.x.description`).
fn expressions(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains("${{") => out.push(path.to_string()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                expressions(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                expressions(item, &sub, out);
            }
        }
        _ => {}
    }
}

/// GitHub evaluates expressions in action metadata when it loads the action, where only `runs:` steps and an
/// output's `value` have contexts to read: `${{ github.actor }}` in an input's description failed every job that
/// used deploy-remote or rollback before its first step ("Unrecognized named-value: 'github'"), while zizmor,
/// actionlint and our own runner emulation passed it (issue 20). act refuses it the same way.
#[test]
fn action_metadata_holds_expressions_only_where_github_evaluates_them() {
    for path in action_ymls() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let action = load(&path);
        let mut found = Vec::new();
        for (key, value) in action.as_object().unwrap() {
            match key.as_str() {
                "runs" => {}
                "outputs" => {
                    for (output, spec) in value.as_object().unwrap() {
                        for (field, text) in spec.as_object().unwrap() {
                            if field != "value" {
                                expressions(text, &format!("outputs.{output}.{field}"), &mut found);
                            }
                        }
                    }
                }
                _ => expressions(value, key, &mut found),
            }
        }
        assert!(found.is_empty(), "{name}: `${{{{ }}}}` where GitHub cannot evaluate it: {found:?}");
    }
    // The check itself: an expression in a description is found.
    let mut found = Vec::new();
    expressions(&serde_json::json!({"u": {"description": "for GHCR: ${{ github.actor }}"}}), "inputs", &mut found);
    assert_eq!(found, ["inputs.u.description"]);
}

#[test]
fn the_deploy_pipeline_has_its_shape() {
    let wf = load(&root().join(".github/workflows/deploy.yml"));
    assert!(wf.get("concurrency").is_none(), "no workflow-level queue: build and verify of runs may overlap");
    let dispatch = &wf["on"]["workflow_dispatch"]["inputs"];
    for input in ["tag", "emergency", "confirm"] {
        assert!(dispatch.get(input).is_some(), "workflow_dispatch input {input}");
    }
    let jobs = wf["jobs"].as_object().unwrap();
    // The guard runs first: it needs nothing, and the chain below starts from it.
    assert!(jobs["guard"].get("needs").is_none(), "the emergency confirmation is checked first");
    let needs = |job: &str| -> Vec<String> {
        match &jobs[job]["needs"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        }
    };
    assert!(needs("push").contains(&"guard".to_string()));
    assert!(needs("verify").contains(&"push".to_string()));
    assert!(needs("deploy").contains(&"verify".to_string()));
    assert_eq!(jobs.keys().collect::<Vec<_>>(), ["deploy", "guard", "push", "verify"], "rollback is part of deploy");
    // Only the job that changes the server is queued, and a running deploy is never cancelled.
    for (name, job) in jobs {
        assert_eq!(job.get("concurrency").is_some(), name == "deploy", "{name}: concurrency");
    }
    let conc = &jobs["deploy"]["concurrency"];
    assert_eq!(conc["cancel-in-progress"], Value::Bool(false), "a running deploy is never cancelled");
    let group = conc["group"].as_str().unwrap();
    assert!(group.contains("workflow_dispatch") && group.contains("github.run_id"), "a dispatch has its own group");
    let guard = jobs["guard"]["steps"][0]["run"].as_str().unwrap();
    assert!(guard.contains("DEPLOY"), "the guard checks confirm = DEPLOY");

    let uses: Vec<&str> = steps(&wf).iter().filter_map(|s| s["uses"].as_str()).collect();
    for action in ["push-registry", "verify-image", "sync-secrets", "deploy-remote", "rollback"] {
        assert!(uses.contains(&format!("$/actions/{action}").as_str()), "deploy.yml uses {action}");
    }
    // Every upload replaces the artifact of an earlier attempt: a re-run must not fail with 409.
    for step in steps(&wf) {
        if step["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@")) {
            assert_eq!(step["with"]["overwrite"], Value::Bool(true), "{step}");
        }
    }
    assert!(
        steps(&wf).iter().any(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/download-artifact@"))
            && s["with"].get("run-id").is_some()),
        "the last successful run's record is downloaded"
    );
    // One compile per run: only the first job installs (builds) gangplank; every gangplank step of a later job
    // runs the artifact through GANGPLANK_BIN_DIR.
    for (name, job) in jobs {
        for step in job["steps"].as_array().unwrap() {
            let run = step["run"].as_str().unwrap_or("");
            assert_eq!(run.contains("install.sh"), name == "guard" && step["id"] == "install", "{name}: {run}");
            if step["uses"].as_str().is_some_and(|u| u.starts_with("$/actions/")) {
                assert_eq!(
                    step["env"]["GANGPLANK_BIN_DIR"].as_str(),
                    Some("${{ runner.temp }}/gangplank-bin"),
                    "{name}: {step}"
                );
            }
        }
    }
}

/// The pipeline's decision whether to roll back, as deploy.yml's own `decide` step script takes it, for what
/// deploy-remote can leave behind: `changed` (written early, so it survives a kill), the step's outcome and
/// `rolled-back`.
#[test]
fn the_rollback_fires_exactly_when_a_host_was_changed_and_not_left_healthy() {
    let wf = load(&root().join(".github/workflows/deploy.yml"));
    let deploy = wf["jobs"]["deploy"]["steps"].as_array().unwrap();
    let decide = deploy.iter().find(|s| s["id"] == "decide").unwrap();
    assert_eq!(decide["if"], "always()", "the decision is taken also in a cancelled or failed job");
    let script = decide["run"].as_str().unwrap().to_string();
    for s in deploy.iter().skip_while(|s| s["id"] != "decide").skip(1) {
        let cond = s["if"].as_str().unwrap_or("");
        assert!(cond.starts_with("always() && steps.decide.outputs.rollback == 'true'"), "{s}");
    }
    let decide = |changed: &str, outcome: &str, rolled_back: &str| -> String {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let ok = scrubbed_command("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .env("CHANGED", changed)
            .env("OUTCOME", outcome)
            .env("ROLLED_BACK", rolled_back)
            .env("GITHUB_OUTPUT", &out)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok);
        std::fs::read_to_string(out).unwrap().trim().to_string()
    };
    let cases = [
        // (changed, outcome, rolled-back, rollback?, what happened)
        ("true", "success", "false", false, "healthy deploy (also when a later upload failed)"),
        ("true", "failure", "true", false, "unhealthy, deploy-remote already put it back"),
        ("true", "failure", "false", true, "unhealthy and the automatic rollback failed"),
        ("true", "failure", "", true, "killed after the switch (step timeout): only the early `changed` was written"),
        ("true", "cancelled", "", true, "run cancelled mid-`up`, process killed before it could put it back"),
        ("true", "cancelled", "true", false, "run cancelled, deploy-remote put it back on SIGINT"),
        ("false", "failure", "false", false, "exit 2: preflight failed, nothing changed"),
        ("false", "failure", "false", false, "exit 3: locked, nothing changed"),
        ("", "failure", "", false, "install failed: deploy-remote never ran"),
        ("", "skipped", "", false, "an earlier step failed, deploy never started"),
        ("", "cancelled", "", false, "cancelled before anything changed"),
    ];
    for (changed, outcome, rolled_back, want, what) in cases {
        let want = format!("rollback={want}");
        assert_eq!(decide(changed, outcome, rolled_back), want, "{what}");
    }
}

#[test]
fn the_emergency_guard_refuses_without_confirmation() {
    let wf = load(&root().join(".github/workflows/deploy.yml"));
    let script = wf["jobs"]["guard"]["steps"][0]["run"].as_str().unwrap().to_string();
    let check = |emergency: &str, confirm: &str, tag: &str| -> bool {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        scrubbed_command("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .env("EMERGENCY", emergency)
            .env("CONFIRM", confirm)
            .env("TAG", tag)
            .env("GITHUB_OUTPUT", &out)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(check("false", "", ""), "a normal push");
    assert!(check("true", "DEPLOY", "v1"), "a confirmed emergency");
    assert!(!check("true", "", "v1"), "an unconfirmed emergency");
    assert!(!check("true", "deploy", "v1"), "confirm is exact");
    assert!(!check("false", "", "v1; rm -rf /"), "a tag that is not a tag");
}

#[test]
fn action_readmes_match_action_yml() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (ok, text) = run(scrubbed_command(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "codegen", "--check"])
        .current_dir(root()));
    assert!(ok, "the action READMEs drifted from action.yml:\n{text}");
}
