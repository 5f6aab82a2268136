//! The six `actions/<name>/action.yml` shims, run the way the runner runs a composite action (issue 6):
//! each step's `env:` evaluated (`${{ inputs.x }}`, `${{ github.action_path }}`, `${{ steps.id.outputs.x }}`),
//! its `run:` script executed with `bash --noprofile --norc -eo pipefail`, a fresh `GITHUB_OUTPUT` file per step,
//! and the action's `outputs:` read back from the steps' outputs.
//!
//! The install step runs too, with `GANGPLANK_BIN_DIR` pointing at a stand-in `gangplank` (the documented knob
//! of actions/install.sh for a preinstalled executable), so the run step executes the stand-in: it records the
//! arguments and environment it received and writes the outputs the test chose. The checks: the one executable
//! was called with the step's name as its only argument, received every input of the contract as `INPUT_*`,
//! byte for byte, and nothing else as `INPUT_*`; every output came back through the action's `outputs:` mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gangplank_testbed::scrubbed_command;
use serde::Deserialize;

const SSH: &[(&str, Option<&str>)] = &[
    ("host", None),
    ("user", Some("root")),
    ("port", Some("22")),
    ("ssh-key", None),
    ("ssh-key-passphrase", None),
    ("known-hosts", None),
    ("host-fingerprint", None),
    ("insecure-ignore-host-key", Some("false")),
    ("connect-timeout", Some("30s")),
    ("sudo", Some("false")),
];

/// The contract (docs/actions.md): each action's inputs with their literal defaults (`None`: no default
/// in action.yml, the binary computes it or the input is optional), and its outputs.
fn contract(name: &str) -> (Vec<(&'static str, Option<&'static str>)>, Vec<&'static str>) {
    let own: &[(&str, Option<&str>)];
    let outputs: &[&str];
    let mut inputs = Vec::new();
    match name {
        "deploy-remote" => {
            inputs.extend_from_slice(SSH);
            own = &[
                ("app-name", None),
                ("app-dir", None),
                ("compose-files", Some("compose.yaml")),
                ("files", None),
                ("env-file", None),
                ("image-tag", None),
                ("services", None),
                ("health-url", None),
                ("health-timeout", Some("60s")),
                ("auto-rollback", Some("true")),
                ("keep-images", Some("5")),
                ("max-parallel", Some("1")),
                ("strategy", Some("recreate")),
                ("target", Some("compose")),
                ("pre-deploy", None),
                ("post-deploy", None),
                ("hook-timeout", Some("10m")),
                ("hooks-on", Some("every")),
                ("lock-timeout", Some("5m")),
                ("force-unlock", Some("false")),
                ("min-free-disk", Some("1GiB")),
                ("preflight-only", Some("false")),
                ("record-file", None),
                ("metrics-file", None),
                // GitHub Deployments (docs/actions.md, "GitHub Deployments").
                ("environment", None),
                ("environment-url", None),
                ("github-token", None),
                ("registry", None),
                ("registry-username", None),
                ("registry-password", None),
                ("expect-digests", None),
            ];
            outputs = &["deployed-tag", "previous-tag", "rolled-back", "changed", "record-file"];
        }
        "rollback" => {
            inputs.extend_from_slice(SSH);
            own = &[
                ("app-name", None),
                ("app-dir", None),
                ("services", None),
                ("target", Some("compose")),
                ("health-url", None),
                ("health-timeout", Some("60s")),
                ("lock-timeout", Some("5m")),
                ("record-file", None),
                ("to-tag", None),
                ("max-parallel", Some("1")),
                // Beyond the contract: the same lock escape hatch deploy-remote has.
                ("force-unlock", Some("false")),
                ("metrics-file", None),
                // GitHub Deployments (docs/actions.md, "GitHub Deployments").
                ("environment", None),
                ("environment-url", None),
                ("github-token", None),
                ("registry", None),
                ("registry-username", None),
                ("registry-password", None),
            ];
            outputs = &["rolled-back-to", "rolled-back-from", "record-file"];
        }
        "push-registry" => {
            own = &[
                ("registry", None),
                ("username", None),
                ("password", None),
                ("images", None),
                ("compose-files", None),
                ("tag", None),
                ("extra-tags", None),
                ("cleanup-on-failure", Some("true")),
                ("metadata-file", None),
            ];
            outputs = &["tag", "digest", "digests", "metadata-file"];
        }
        "verify-image" => {
            own = &[
                ("image", None),
                ("compose-files", None),
                ("service", None),
                ("env-file", None),
                ("image-tag", None),
                ("health-url", None),
                ("timeout", Some("60s")),
                ("smoke", None),
                ("expect-non-root", Some("false")),
                ("max-size", None),
                // Beyond the contract: published ports for a single image, a fixed project name, the report path.
                ("ports", None),
                ("project-name", None),
                ("report-file", None),
            ];
            outputs = &["healthy", "report-file"];
        }
        "sync-secrets" => {
            inputs.extend_from_slice(SSH);
            own = &[
                ("manifest", Some(".github/secrets.yml")),
                ("values-file", None),
                ("mode", Some("plan")),
                ("targets", None),
                ("github-token", None),
                ("api-url", None),
                ("repository", None),
                ("prune", Some("false")),
                ("app-dir", None),
                ("remote-env-path", None),
                ("keep-backups", Some("10")),
                ("lock-timeout", Some("5m")),
                ("metrics-file", None),
                // Beyond the contract: request concurrency and retries, the plan file path.
                ("concurrency", Some("4")),
                ("max-retries", Some("5")),
                ("write-interval", Some("1s")),
                ("plan-file", None),
            ];
            outputs = &["created", "updated", "deleted", "unchanged", "unknown", "invalid", "plan-file"];
        }
        "status" => {
            inputs.extend_from_slice(SSH);
            own = &[
                ("app-name", None),
                ("app-dir", None),
                ("manifest", None),
                ("remote-env-path", None),
                ("history", Some("5")),
                ("status-file", None),
            ];
            outputs = &["status-file"];
        }
        other => panic!("no contract for {other}"),
    }
    inputs.extend_from_slice(own);
    (inputs, outputs.to_vec())
}

const ACTIONS: [&str; 6] = ["sync-secrets", "verify-image", "push-registry", "deploy-remote", "rollback", "status"];

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Action {
    name: String,
    description: String,
    branding: Branding,
    inputs: BTreeMap<String, Input>,
    outputs: BTreeMap<String, Output>,
    runs: Runs,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Branding {
    icon: String,
    color: String,
}

#[derive(Deserialize)]
struct Input {
    description: String,
    #[serde(default)]
    required: bool,
    default: Option<String>,
}

#[derive(Deserialize)]
struct Output {
    value: String,
}

#[derive(Deserialize)]
struct Runs {
    using: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    id: Option<String>,
    shell: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    run: Option<String>,
    uses: Option<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn load(name: &str) -> Action {
    let path = root().join("actions").join(name).join("action.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn input_env(input: &str) -> String {
    format!("INPUT_{}", input.to_uppercase().replace('-', "_"))
}

/// A value that breaks any script that pastes it instead of passing it through the environment.
fn tricky(input: &str) -> String {
    format!("{input}: 'single' \"double\" $HOME $(id) `id` ; & | \\ %0A\nsecond line\n  indented ${{{{ x }}}}")
}

#[test]
fn every_action_has_the_contracts_inputs_outputs_and_shape() {
    for name in ACTIONS {
        let action = load(name);
        let (inputs, outputs) = contract(name);
        assert!(!action.name.is_empty() && !action.description.is_empty(), "{name}: name and description");
        assert!(!action.branding.icon.is_empty(), "{name}: branding");

        let want: BTreeSet<&str> = inputs.iter().map(|(n, _)| *n).collect();
        let got: BTreeSet<&str> = action.inputs.keys().map(String::as_str).collect();
        assert_eq!(got, want, "{name}: inputs differ from the contract");
        for (input, default) in &inputs {
            let spec = &action.inputs[*input];
            assert!(!spec.description.trim().is_empty(), "{name}: `{input}` has no description");
            assert!(!spec.description.contains('\n'), "{name}: `{input}` description is one line");
            assert_eq!(spec.default.as_deref(), *default, "{name}: default of `{input}`");
        }
        let required: BTreeSet<&str> =
            action.inputs.iter().filter(|(_, i)| i.required).map(|(n, _)| n.as_str()).collect();
        let want_required: BTreeSet<&str> = match name {
            "deploy-remote" => ["host", "ssh-key", "image-tag"].into(),
            "rollback" | "status" => ["host", "ssh-key"].into(),
            "push-registry" => ["registry"].into(),
            _ => BTreeSet::new(),
        };
        assert_eq!(required, want_required, "{name}: required inputs");
        let want: BTreeSet<&str> = outputs.iter().copied().collect();
        let got: BTreeSet<&str> = action.outputs.keys().map(String::as_str).collect();
        assert_eq!(got, want, "{name}: outputs differ from the contract");
        for (output, spec) in &action.outputs {
            assert_eq!(spec.value, format!("${{{{ steps.run.outputs.{output} }}}}"), "{name}: output {output}");
        }

        assert_eq!(action.runs.using, "composite", "{name}");
        let ids: Vec<_> = action.runs.steps.iter().map(|s| s.id.as_deref().unwrap_or("")).collect();
        assert_eq!(ids, ["install", "run"], "{name}: the install step, then the run step");
        for step in &action.runs.steps {
            assert!(step.uses.is_none(), "{name}: no third-party action inside the shim");
            assert_eq!(step.shell.as_deref(), Some("bash"), "{name}");
            let run = step.run.as_deref().unwrap_or_default();
            assert!(!run.contains("${{"), "{name}: `${{{{ }}}}` inside run: {run:?}");
        }
        assert!(action.runs.steps[0].run.as_deref().unwrap().contains("install.sh"), "{name}");
        // The one executable, the step as a fixed word: nothing of the inputs reaches the command line.
        assert_eq!(
            action.runs.steps[1].run.as_deref().map(str::trim),
            Some(format!("\"$GANGPLANK_BIN\" {name}").as_str()),
            "{name}: the run step calls the installed gangplank with the step's name"
        );

        // Inputs reach the binary only through the run step's env, each under its INPUT_ name.
        let env = &action.runs.steps[1].env;
        for (input, _) in &inputs {
            assert_eq!(
                env.get(&input_env(input)).map(String::as_str),
                Some(format!("${{{{ inputs.{input} }}}}").as_str()),
                "{name}: `{input}` is mapped through env"
            );
        }
        let mapped = env.keys().filter(|k| k.starts_with("INPUT_")).count();
        assert_eq!(mapped, inputs.len(), "{name}: no extra INPUT_ variables");
    }
}

#[test]
fn every_input_reaches_the_binary_and_every_output_comes_back() {
    for name in ACTIONS {
        let action = load(name);
        let given: BTreeMap<String, String> = action.inputs.keys().map(|k| (k.clone(), tricky(k))).collect();
        let run = run_action(name, &action, &given);
        assert_eq!(run.args, [name], "{name}: gangplank got the step's name and nothing else");
        for input in action.inputs.keys() {
            assert_eq!(
                run.env.get(&input_env(input)),
                Some(&tricky(input)),
                "{name}: the binary got `{input}` as {}",
                input_env(input)
            );
        }
        let extra: Vec<_> = run
            .env
            .keys()
            .filter(|k| k.starts_with("INPUT_"))
            .filter(|k| !action.inputs.keys().any(|i| &input_env(i) == *k))
            .collect();
        assert!(extra.is_empty(), "{name}: unexpected {extra:?}");
        for output in action.outputs.keys() {
            assert_eq!(run.outputs.get(output), Some(&output_value(output)), "{name}: output `{output}`");
        }
    }
}

#[test]
fn inputs_left_out_arrive_as_their_default_or_empty() {
    for name in ACTIONS {
        let action = load(name);
        let run = run_action(name, &action, &BTreeMap::new());
        let (inputs, _) = contract(name);
        for (input, default) in inputs {
            assert_eq!(
                run.env.get(&input_env(input)).map(String::as_str),
                Some(default.unwrap_or("")),
                "{name}: `{input}` not given"
            );
        }
    }
}

struct Ran {
    /// The arguments the stand-in `gangplank` received.
    args: Vec<String>,
    /// The environment the stand-in binary received.
    env: BTreeMap<String, String>,
    /// The action's outputs, as its `outputs:` mapping evaluates them.
    outputs: BTreeMap<String, String>,
}

fn output_value(output: &str) -> String {
    format!("{output} out: 'q' \"dq\" $HOME\nline two")
}

/// Runs the steps of `action` as the runner does, with a stand-in for the binary.
fn run_action(name: &str, action: &Action, given: &BTreeMap<String, String>) -> Ran {
    let tmp = tempfile::tempdir().unwrap();
    let action_dir = root().join("actions").join(name);

    // The stand-in: records its arguments and environment (NUL-separated) and appends the chosen outputs.
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let record = tmp.path().join("env.record");
    let args_record = tmp.path().join("args.record");
    let outputs_file = tmp.path().join("outputs.txt");
    let mut outs = String::new();
    for output in action.outputs.keys() {
        outs.push_str(&format!("{output}<<GP_DELIM_7f3a\n{}\nGP_DELIM_7f3a\n", output_value(output)));
    }
    std::fs::write(&outputs_file, outs).unwrap();
    let stand_in = bin_dir.join("gangplank");
    std::fs::write(
        &stand_in,
        "#!/usr/bin/env bash\nset -eu\nprintf '%s\\0' \"$@\" >\"$GP_TEST_ARGS\"\nenv -0 >\"$GP_TEST_RECORD\"\n\
         cat \"$GP_TEST_OUTPUTS\" >>\"$GITHUB_OUTPUT\"\n",
    )
    .unwrap();
    chmod_x(&stand_in);

    // What `${{ inputs.x }}` evaluates to: the given value, else the default, else empty.
    let inputs: BTreeMap<String, String> = action
        .inputs
        .iter()
        .map(|(k, v)| {
            let value = given.get(k).cloned().or_else(|| v.default.clone()).unwrap_or_default();
            (k.clone(), value)
        })
        .collect();

    let mut step_outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (i, step) in action.runs.steps.iter().enumerate() {
        let id = step.id.clone().unwrap_or_else(|| format!("__{i}"));
        let script = tmp.path().join(format!("step-{i}.sh"));
        std::fs::write(&script, step.run.as_deref().unwrap()).unwrap();
        let output_file = tmp.path().join(format!("output-{i}"));
        std::fs::write(&output_file, "").unwrap();

        let mut cmd = scrubbed_command("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"]).arg(&script).current_dir(tmp.path());
        // The job's environment: the stand-in first on PATH, and the install knob pointing at it.
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", bin_dir.display()))
            .env("GANGPLANK_BIN_DIR", &bin_dir)
            .env("GP_TEST_RECORD", &record)
            .env("GP_TEST_ARGS", &args_record)
            .env("GP_TEST_OUTPUTS", &outputs_file)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_ACTION_PATH", &action_dir)
            .env("GITHUB_OUTPUT", &output_file)
            .env("RUNNER_TEMP", tmp.path());
        for (key, value) in &step.env {
            cmd.env(key, eval(value, &inputs, &action_dir, &step_outputs));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{name}: step `{id}` failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let written = std::fs::read_to_string(&output_file).unwrap();
        step_outputs.insert(id, parse_output_file(&written));
    }

    assert_eq!(
        step_outputs["install"].get("path").map(PathBuf::from),
        Some(stand_in.clone()),
        "{name}: install.sh reported the stand-in (GANGPLANK_BIN_DIR)"
    );
    let raw = std::fs::read(&record).unwrap_or_else(|_| panic!("{name}: the stand-in binary never ran"));
    let env = raw
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let args = std::fs::read(&args_record).unwrap();
    let args =
        args.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let outputs =
        action.outputs.iter().map(|(k, o)| (k.clone(), eval(&o.value, &inputs, &action_dir, &step_outputs))).collect();
    Ran { args, env, outputs }
}

/// Evaluates the `${{ … }}` expressions the shims use; any other expression is a test failure, so a new kind
/// of expression in an action.yml gets a thought here first.
fn eval(
    text: &str,
    inputs: &BTreeMap<String, String>,
    action_dir: &Path,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unterminated expression") + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(input) = expr.strip_prefix("inputs.") {
            inputs.get(input).cloned().unwrap_or_else(|| panic!("unknown input {input}"))
        } else if expr == "github.action_path" {
            action_dir.display().to_string()
        } else if expr == "github.action_ref" {
            String::new()
        } else if let Some(path) = expr.strip_prefix("steps.") {
            let (id, output) = path.split_once(".outputs.").expect("steps.<id>.outputs.<name>");
            steps.get(id).and_then(|o| o.get(output)).cloned().unwrap_or_default()
        } else {
            panic!("the test does not evaluate `{expr}`");
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The runner's `GITHUB_OUTPUT` format: `name=value` lines and `name<<DELIM` … `DELIM` blocks.
fn parse_output_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn output_file_parser_reads_both_forms() {
    let got = parse_output_file("a=1\nb<<EOF\nx\ny\nEOF\nc=\n");
    let want: BTreeMap<String, String> =
        [("a", "1"), ("b", "x\ny"), ("c", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(got, want);
}

/// Where the runner finds a local action: `$/…` (GitHub's self-repository form) is the repository at the run's
/// commit, `./…` the same path in the checkout (`GITHUB_WORKSPACE`, here the repository itself).
fn resolve_local_uses(uses: &str, workspace: &Path) -> PathBuf {
    let rest = uses.strip_prefix("$/").or_else(|| uses.strip_prefix("./")).expect("a local action");
    workspace.join(rest)
}

#[test]
fn both_local_forms_run_the_same_shim() {
    for uses in ["./actions/deploy-remote", "$/actions/deploy-remote"] {
        let dir = resolve_local_uses(uses, &root());
        assert_eq!(dir, root().join("actions").join("deploy-remote"), "{uses}");
        let text = std::fs::read_to_string(dir.join("action.yml")).unwrap();
        let action: Action = serde_saphyr::from_str(&text).unwrap();
        let given: BTreeMap<String, String> = [("host", "h"), ("ssh-key", "k"), ("image-tag", "v1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let run = run_action("deploy-remote", &action, &given);
        assert_eq!(run.args, ["deploy-remote"], "{uses}");
        assert_eq!(run.env.get("INPUT_IMAGE_TAG").map(String::as_str), Some("v1"), "{uses}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// The pipeline, run as the runner runs it: .github/workflows/deploy.yml's jobs in order, each step's `if:`
// evaluated with GitHub's status functions (`success()`, `failure()`, `always()`, `cancelled()`) and its
// expressions (`steps.*`, `needs.*`, `github.*`, `env.*`, `runner.temp`, `&&`/`||` returning operands), `run:`
// steps in bash with a fresh `GITHUB_OUTPUT` each, the five `$/actions/*` composites through their action.yml
// (install step included), and artifacts as directories (upload refuses an existing name unless `overwrite`,
// download drops the file mode, as the artifact service does). The one `gangplank` is a stand-in whose
// deploy-remote behaves as a scenario says; a fake `cargo` counts compiles.
// ---------------------------------------------------------------------------------------------------------

use serde_json::Value as Json;

/// What the stand-in `deploy-remote` does in one attempt.
#[derive(Clone, Copy, Debug)]
enum DeployBehaviour {
    Healthy,
    /// Failed its health gate and put the host back itself (exit 1, `rolled-back=true`).
    UnhealthyPutBack,
    /// Failed and could not put the host back (exit 1, `rolled-back=false`).
    UnhealthyStuck,
    /// Preflight refused: nothing changed (exit 2).
    Preflight,
    /// Another deploy holds the lock: nothing changed (exit 3).
    Locked,
    /// The run is cancelled mid-`up` and the process killed before it could put anything back: only the early
    /// `changed=true` reached `GITHUB_OUTPUT`.
    KilledMidUp,
}

struct Pipeline {
    tmp: tempfile::TempDir,
    wf: Json,
    /// This run's artifacts: `<artifacts>/<name>/<files>`.
    artifacts: PathBuf,
    /// The last successful run's artifacts, for `download-artifact` with `run-id`.
    last_run: PathBuf,
    bin_dir: PathBuf,
    /// Job results and outputs, as `needs.<job>` sees them.
    results: BTreeMap<String, String>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
}

/// What one job did.
struct JobRun {
    result: String,
    /// Step id (or name) → outcome, in order.
    steps: Vec<(String, String)>,
}

impl JobRun {
    fn outcome(&self, step: &str) -> &str {
        self.steps.iter().find(|(s, _)| s == step).map(|(_, o)| o.as_str()).unwrap_or("")
    }
}

impl Pipeline {
    fn new() -> Pipeline {
        let tmp = tempfile::tempdir().unwrap();
        let wf: Json =
            serde_saphyr::from_str(&std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).unwrap())
                .unwrap();
        let artifacts = tmp.path().join("artifacts");
        let last_run = tmp.path().join("last-run-artifacts");
        let bin_dir = tmp.path().join("bin");
        for d in [&artifacts, &last_run, &bin_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        // The last successful run deployed `v0`.
        std::fs::create_dir_all(last_run.join("deploy-record")).unwrap();
        std::fs::write(
            last_run.join("deploy-record/deploy-record.json"),
            r#"{"app":"compose-app","hosts":["h"],"deployed_tag":"v0","previous_tag":"","status":"success"}"#,
        )
        .unwrap();
        let p = Pipeline { tmp, wf, artifacts, last_run, bin_dir, results: BTreeMap::new(), outputs: BTreeMap::new() };
        p.write_stand_ins();
        p
    }

    fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.tmp.path().join(name)).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// `cargo` that "builds" the stand-in gangplank and counts itself; `gh` and `docker` for the steps that
    /// call them; and the stand-in `gangplank`, which the fake cargo copies into place.
    fn write_stand_ins(&self) {
        let t = self.tmp.path().display().to_string();
        let gangplank = format!(
            r#"#!/usr/bin/env bash
set -u
echo "$1" >>"{t}/gangplank.log"
out() {{ printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; }}
case $1 in
  --version) echo "gangplank stand-in" ;;
  push-registry) out tag abc123; out digest "sha256:$(printf 'd%.0s' {{1..64}})" ;;
  verify-image) echo "verify $VERIFY_IMAGE" >>"{t}/verify.log"; out healthy true ;;
  sync-secrets) out created 0 ;;
  rollback) echo "to=${{INPUT_TO_TAG}}" >>"{t}/rollback.log"; out rolled-back-to "${{INPUT_TO_TAG}}" ;;
  deploy-remote)
    behaviour=$(cat "{t}/deploy-behaviour")
    record() {{ mkdir -p "$(dirname "$INPUT_RECORD_FILE")"; printf '{{"app":"a","hosts":["h"],"deployed_tag":"%s","previous_tag":"v0","status":"%s"}}' "$INPUT_IMAGE_TAG" "$1" >"$INPUT_RECORD_FILE"; }}
    case $behaviour in
      Preflight) out changed false; out deployed-tag ""; exit 2 ;;
      Locked) out changed false; out deployed-tag ""; exit 3 ;;
    esac
    out changed true   # written the moment the host is switched, as deploy-remote does
    case $behaviour in
      Healthy) record success; out deployed-tag "$INPUT_IMAGE_TAG"; out rolled-back false ;;
      UnhealthyPutBack) record rolled-back; out rolled-back true; exit 1 ;;
      UnhealthyStuck) record failed; out rolled-back false; exit 1 ;;
      KilledMidUp) touch "{t}/cancelled"; exit 143 ;;
    esac ;;
esac
"#
        );
        let src = self.tmp.path().join("gangplank-source");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("gangplank"), gangplank).unwrap();
        chmod_x(&src.join("gangplank"));
        let tools = [
            (
                "cargo",
                format!(
                    "#!/usr/bin/env bash\necho build >>{t}/cargo.log\nmkdir -p \"$CARGO_TARGET_DIR/release\"\n\
                     cp {src}/gangplank \"$CARGO_TARGET_DIR/release/gangplank\"\n",
                    src = src.display()
                ),
            ),
            // GitHub's "List workflow runs for a workflow", as the deploy job's curl asks it.
            ("curl", "#!/usr/bin/env bash\ncat >/dev/null\necho '{\"workflow_runs\":[{\"id\":4242}]}'\n".to_string()),
            ("docker", "#!/usr/bin/env bash\ncat >/dev/null\n".to_string()),
        ];
        for (name, text) in tools {
            std::fs::write(self.bin_dir.join(name), text).unwrap();
            chmod_x(&self.bin_dir.join(name));
        }
    }

    fn job(&self, name: &str) -> &Json {
        &self.wf["jobs"][name]
    }

    /// Run one job as the runner does; `deploy` decides what deploy-remote does in this attempt.
    fn run_job(&mut self, name: &str, deploy: DeployBehaviour) -> JobRun {
        std::fs::write(self.tmp.path().join("deploy-behaviour"), format!("{deploy:?}")).unwrap();
        let job = self.job(name).clone();
        // Every job gets a runner of its own: a fresh RUNNER_TEMP, nothing left from an earlier job or attempt.
        let runner_temp = self.tmp.path().join(format!("runner-temp-{name}-{}", rand_suffix()));
        std::fs::create_dir_all(&runner_temp).unwrap();
        let mut ctx = Ctx {
            pipeline: self,
            runner_temp: runner_temp.clone(),
            steps: BTreeMap::new(),
            failed: false,
            cancelled: false,
        };
        let mut record = vec![];
        for (i, step) in job["steps"].as_array().unwrap().iter().enumerate() {
            let id = step["id"].as_str().map(str::to_string).unwrap_or_else(|| format!("__{i}"));
            let cond = step["if"].as_str().unwrap_or("success()");
            let outcome = if !truthy(&ctx.eval_expr(cond)) {
                "skipped".to_string()
            } else {
                let (outcome, outputs) = ctx.run_step(step);
                ctx.steps.insert(id.clone(), (outcome.clone(), outputs));
                let continue_on_error = step["continue-on-error"].as_bool().unwrap_or(false);
                match outcome.as_str() {
                    "failure" if !continue_on_error => ctx.failed = true,
                    "cancelled" => ctx.cancelled = true,
                    _ => {}
                }
                outcome
            };
            ctx.steps.entry(id.clone()).or_insert_with(|| (outcome.clone(), BTreeMap::new()));
            record.push((id, outcome));
        }
        let result = if ctx.cancelled {
            "cancelled"
        } else if ctx.failed {
            "failure"
        } else {
            "success"
        }
        .to_string();
        // Job outputs are evaluated at the end of the job, whatever its result.
        let outs: BTreeMap<String, String> = job["outputs"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), ctx.interpolate(v.as_str().unwrap()))).collect())
            .unwrap_or_default();
        drop(ctx);
        self.results.insert(name.to_string(), result.clone());
        self.outputs.insert(name.to_string(), outs);
        JobRun { result, steps: record }
    }

    /// The whole run: every job in order of `needs`, each after the jobs it needs, skipped when they failed.
    fn run(&mut self, deploy: DeployBehaviour) -> BTreeMap<String, JobRun> {
        let mut runs = BTreeMap::new();
        for name in ["guard", "push", "verify", "deploy"] {
            let needs = match &self.job(name)["needs"] {
                Json::String(s) => vec![s.clone()],
                Json::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
                _ => vec![],
            };
            if needs.iter().any(|n| self.results.get(n).map(String::as_str) != Some("success")) {
                self.results.insert(name.to_string(), "skipped".into());
                continue;
            }
            runs.insert(name.to_string(), self.run_job(name, deploy));
        }
        runs
    }
}

struct Ctx<'a> {
    pipeline: &'a Pipeline,
    runner_temp: PathBuf,
    /// Step id → (outcome, outputs).
    steps: BTreeMap<String, (String, BTreeMap<String, String>)>,
    failed: bool,
    cancelled: bool,
}

impl Ctx<'_> {
    /// The value of a context path such as `steps.deploy.outputs.changed`; unknown contexts fail the test.
    fn lookup(&self, path: &str) -> Json {
        let p = self.pipeline;
        let parts: Vec<&str> = path.split('.').collect();
        let s = |v: &str| Json::String(v.to_string());
        match parts.as_slice() {
            ["steps", id, "outputs", name] => {
                self.steps.get(*id).and_then(|(_, o)| o.get(*name)).map(|v| s(v)).unwrap_or(Json::Null)
            }
            ["steps", id, "outcome"] => self.steps.get(*id).map(|(o, _)| s(o)).unwrap_or(Json::Null),
            ["needs", job, "outputs", name] => {
                p.outputs.get(*job).and_then(|o| o.get(*name)).map(|v| s(v)).unwrap_or(Json::Null)
            }
            ["needs", job, "result"] => p.results.get(*job).map(|v| s(v)).unwrap_or(Json::Null),
            ["env", name] => p.wf["env"].get(*name).map(|v| s(&self.interpolate(&as_text(v)))).unwrap_or(Json::Null),
            ["runner", "temp"] => s(&self.runner_temp.display().to_string()),
            ["inputs", _] => Json::Null,
            ["github", "event_name"] => s("push"),
            ["github", "ref_type"] => s("branch"),
            ["github", "ref_name"] => s("main"),
            ["github", "sha"] => s("0123456789abcdef0123456789abcdef01234567"),
            ["github", "run_id"] => s("1001"),
            ["github", "repository_owner"] => s("Acme"),
            ["github", "repository"] => s("Acme/Shop.Web"),
            ["github", "event", "repository", "name"] => s("Shop.Web"),
            ["github", "server_url"] => s("https://github.com"),
            ["github", "actor"] => s("octocat"),
            ["github", "token"] => s("ghs_stand_in_token"),
            // Variables with a default in the workflow (`vars.REGISTRY || 'ghcr.io'`) are unset, as in a
            // repository that keeps the defaults.
            ["vars", "REGISTRY" | "APP_NAME"] => Json::Null,
            ["secrets", _] | ["vars", _] => s("stand-in"),
            _ => panic!("the pipeline test does not know the context `{path}`"),
        }
    }

    /// GitHub's expression language, as far as deploy.yml uses it.
    fn eval_expr(&self, text: &str) -> Json {
        let text = text.trim();
        let text = text.strip_prefix("${{").and_then(|t| t.strip_suffix("}}")).unwrap_or(text);
        let tokens = tokenize(text);
        let mut pos = 0;
        let v = self.parse_or(&tokens, &mut pos);
        assert_eq!(pos, tokens.len(), "unparsed rest of `{text}`");
        v
    }

    fn parse_or(&self, t: &[String], pos: &mut usize) -> Json {
        let mut left = self.parse_and(t, pos);
        while t.get(*pos).map(String::as_str) == Some("||") {
            *pos += 1;
            let right = self.parse_and(t, pos);
            left = if truthy(&left) { left } else { right };
        }
        left
    }

    fn parse_and(&self, t: &[String], pos: &mut usize) -> Json {
        let mut left = self.parse_cmp(t, pos);
        while t.get(*pos).map(String::as_str) == Some("&&") {
            *pos += 1;
            let right = self.parse_cmp(t, pos);
            left = if truthy(&left) { right } else { left };
        }
        left
    }

    fn parse_cmp(&self, t: &[String], pos: &mut usize) -> Json {
        let left = self.parse_unary(t, pos);
        match t.get(*pos).map(String::as_str) {
            Some(op @ ("==" | "!=")) => {
                let op = op.to_string();
                *pos += 1;
                let right = self.parse_unary(t, pos);
                // Strings compare ignoring case; null compares as ''.
                let eq = as_text(&left).eq_ignore_ascii_case(&as_text(&right));
                Json::Bool(if op == "==" { eq } else { !eq })
            }
            _ => left,
        }
    }

    fn parse_unary(&self, t: &[String], pos: &mut usize) -> Json {
        let tok = t[*pos].clone();
        *pos += 1;
        if tok == "!" {
            return Json::Bool(!truthy(&self.parse_unary(t, pos)));
        }
        if tok == "(" {
            let v = self.parse_or(t, pos);
            assert_eq!(t[*pos], ")");
            *pos += 1;
            return v;
        }
        if let Some(s) = tok.strip_prefix('\'') {
            return Json::String(s.to_string());
        }
        if tok == "true" || tok == "false" {
            return Json::Bool(tok == "true");
        }
        if t.get(*pos).map(String::as_str) == Some("(") {
            *pos += 1;
            let mut args = vec![];
            while t[*pos] != ")" {
                args.push(self.parse_or(t, pos));
                if t[*pos] == "," {
                    *pos += 1;
                }
            }
            *pos += 1;
            return match tok.as_str() {
                "always" => Json::Bool(true),
                "cancelled" => Json::Bool(self.cancelled),
                "failure" => Json::Bool(self.failed && !self.cancelled),
                "success" => Json::Bool(!self.failed && !self.cancelled),
                "format" => {
                    let mut s = as_text(&args[0]);
                    for (i, a) in args[1..].iter().enumerate() {
                        s = s.replace(&format!("{{{i}}}"), &as_text(a));
                    }
                    Json::String(s)
                }
                f => panic!("the pipeline test does not evaluate `{f}()`"),
            };
        }
        self.lookup(&tok)
    }

    /// `text` with every `${{ … }}` replaced by its value.
    fn interpolate(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").unwrap() + start;
            out.push_str(&as_text(&self.eval_expr(&rest[start + 3..end])));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    fn env_of(&self, step: &Json) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for scope in [&self.pipeline.wf["env"], &step["env"]] {
            if let Some(o) = scope.as_object() {
                for (k, v) in o {
                    env.insert(k.clone(), self.interpolate(v.as_str().unwrap_or_default()));
                }
            }
        }
        env
    }

    /// One step: its outcome (`success`, `failure`, `cancelled`) and its outputs.
    fn run_step(&self, step: &Json) -> (String, BTreeMap<String, String>) {
        let env = self.env_of(step);
        let with: BTreeMap<String, String> = step["with"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), self.interpolate(&as_text(v)))).collect())
            .unwrap_or_default();
        if let Some(run) = step["run"].as_str() {
            return self.bash(run, &env);
        }
        let uses = step["uses"].as_str().unwrap();
        let ok = |b: bool| (if b { "success" } else { "failure" }.to_string(), BTreeMap::new());
        if uses.starts_with("actions/checkout@") {
            return ok(true);
        }
        if uses.starts_with("actions/upload-artifact@") {
            let src = PathBuf::from(&with["path"]);
            if !src.exists() {
                return ok(with.get("if-no-files-found").map(String::as_str) == Some("ignore"));
            }
            let dir = self.pipeline.artifacts.join(&with["name"]);
            if dir.exists() && with.get("overwrite").map(String::as_str) != Some("true") {
                // The artifact service answers 409 Conflict: an artifact with this name exists in the run.
                return ok(false);
            }
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(&src, dir.join(src.file_name().unwrap())).unwrap();
            return ok(true);
        }
        if uses.starts_with("actions/download-artifact@") {
            let from = if with.contains_key("run-id") { &self.pipeline.last_run } else { &self.pipeline.artifacts };
            let Ok(entries) = std::fs::read_dir(from.join(&with["name"])) else { return ok(false) };
            let dest = PathBuf::from(&with["path"]);
            std::fs::create_dir_all(&dest).unwrap();
            for e in entries {
                let e = e.unwrap();
                // The artifact service keeps contents, not modes.
                std::fs::write(dest.join(e.file_name()), std::fs::read(e.path()).unwrap()).unwrap();
            }
            return ok(true);
        }
        let name = uses.strip_prefix("$/actions/").expect("an action of this repository");
        self.composite(name, &with, &env)
    }

    fn bash(&self, script: &str, env: &BTreeMap<String, String>) -> (String, BTreeMap<String, String>) {
        let out_file = self.runner_temp.join(format!("output-{}", rand_suffix()));
        std::fs::write(&out_file, "").unwrap();
        let mut cmd = scrubbed_command("bash");
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(root())
            .env("PATH", format!("{}:{path}", self.pipeline.bin_dir.display()))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &out_file)
            .env("GITHUB_WORKSPACE", root())
            .env("GITHUB_REPOSITORY", "Acme/Shop.Web")
            .env("GITHUB_ACTOR", "octocat")
            .env("RUNNER_TEMP", &self.runner_temp)
            .env("RUNNER_TOOL_CACHE", self.runner_temp.join("tool-cache"))
            .env("REGISTRY", "ghcr.io");
        cmd.envs(env);
        let status = cmd.output().unwrap();
        let outputs = parse_output_file(&std::fs::read_to_string(&out_file).unwrap());
        // The stand-in leaves this marker when the scenario cancels the run while it runs: the runner then
        // reports the step as cancelled, whatever its exit code.
        let cancelled = std::fs::remove_file(self.pipeline.tmp.path().join("cancelled")).is_ok();
        let outcome = if cancelled {
            "cancelled"
        } else if status.status.success() {
            "success"
        } else {
            "failure"
        };
        (outcome.to_string(), outputs)
    }

    /// A composite action of this repository, its steps run as the runner runs them (see `run_action`), the
    /// calling step's `env:` passed down to every inner step.
    fn composite(
        &self,
        name: &str,
        with: &BTreeMap<String, String>,
        env: &BTreeMap<String, String>,
    ) -> (String, BTreeMap<String, String>) {
        let action = load(name);
        let action_dir = root().join("actions").join(name);
        let inputs: BTreeMap<String, String> = action
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), with.get(k).cloned().or_else(|| v.default.clone()).unwrap_or_default()))
            .collect();
        let mut steps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut outcome = "success".to_string();
        for step in &action.runs.steps {
            let mut step_env = env.clone();
            for (k, v) in &step.env {
                step_env.insert(k.clone(), eval(v, &inputs, &action_dir, &steps));
            }
            let (o, outs) = self.bash(step.run.as_deref().unwrap(), &step_env);
            steps.insert(step.id.clone().unwrap_or_default(), outs);
            if o != "success" {
                outcome = o;
                break;
            }
        }
        // The action's outputs are evaluated after its steps, also when one failed or was cancelled.
        let outputs =
            action.outputs.iter().map(|(k, o)| (k.clone(), eval(&o.value, &inputs, &action_dir, &steps))).collect();
        (outcome, outputs)
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = vec![];
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::from("'");
            i += 1;
            while i < b.len() {
                if b[i] == '\'' && b.get(i + 1) == Some(&'\'') {
                    s.push('\'');
                    i += 2;
                } else if b[i] == '\'' {
                    i += 1;
                    break;
                } else {
                    s.push(b[i]);
                    i += 1;
                }
            }
            out.push(s);
        } else if ["&&", "||", "==", "!="].contains(&b[i..(i + 2).min(b.len())].iter().collect::<String>().as_str()) {
            out.push(b[i..i + 2].iter().collect());
            i += 2;
        } else if "!(),".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || "._-".contains(b[i])) {
                i += 1;
            }
            assert!(i > start, "cannot tokenize `{text}` at {i}");
            out.push(b[start..i].iter().collect());
        }
    }
    out
}

fn truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::String(s) => !s.is_empty(),
        Json::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

fn as_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn the_pipeline_runs_in_order_compiles_once_and_verifies_the_pushed_digest() {
    let mut p = Pipeline::new();
    let runs = p.run(DeployBehaviour::Healthy);
    for job in ["guard", "push", "verify", "deploy"] {
        assert_eq!(runs[job].result, "success", "{job}: {:?}", runs[job].steps);
    }
    assert_eq!(p.log("cargo.log").len(), 1, "one compile for the whole run");
    assert_eq!(p.outputs["guard"]["image"], "ghcr.io/acme/shop.web/web", "GHCR wants it lowercase");
    let digest = format!("sha256:{}", "d".repeat(64));
    assert_eq!(p.outputs["push"]["ref"], format!("ghcr.io/acme/shop.web/web@{digest}"));
    assert_eq!(p.log("verify.log"), [format!("verify ghcr.io/acme/shop.web/web@{digest}")], "verify ran the digest");
    // Every gangplank step after the first job ran the artifact (GANGPLANK_BIN_DIR), none built it again.
    assert_eq!(p.log("gangplank.log"), ["--version", "push-registry", "verify-image", "sync-secrets", "deploy-remote"]);
    assert_eq!(runs["deploy"].outcome("decide"), "success");
    assert_eq!(runs["deploy"].outcome("rollback"), "skipped", "a healthy deploy is never rolled back");
    assert_eq!(p.outputs["deploy"]["rollback"], "false");
}

/// Which rollbacks fire: one pipeline run per thing deploy-remote can do.
#[test]
fn the_rollback_fires_only_when_a_changed_host_was_not_left_healthy() {
    let cases = [
        (DeployBehaviour::Healthy, "success", false),
        (DeployBehaviour::UnhealthyPutBack, "failure", false),
        (DeployBehaviour::UnhealthyStuck, "failure", true),
        (DeployBehaviour::Preflight, "failure", false),
        (DeployBehaviour::Locked, "failure", false),
        (DeployBehaviour::KilledMidUp, "cancelled", true),
    ];
    for (behaviour, result, fires) in cases {
        let mut p = Pipeline::new();
        let runs = p.run(behaviour);
        let deploy = &runs["deploy"];
        assert_eq!(deploy.result, result, "{behaviour:?}: {:?}", deploy.steps);
        assert_eq!(deploy.outcome("rollback") == "success", fires, "{behaviour:?}: {:?}", deploy.steps);
        assert_eq!(p.log("rollback.log").len(), usize::from(fires), "{behaviour:?}");
        // The record goes up in every case that wrote one, and the job's outputs are there also when cancelled.
        assert_eq!(p.outputs["deploy"]["rollback"], fires.to_string(), "{behaviour:?}");
        if fires {
            // Back to the tag before this deploy, from this run's record or else the last successful run's.
            assert_eq!(p.log("rollback.log"), ["to=v0"], "{behaviour:?}");
        }
    }
}

#[test]
fn a_rerun_of_a_failed_deploy_job_replaces_the_record_and_rolls_nothing_back() {
    let mut p = Pipeline::new();
    let first = p.run(DeployBehaviour::UnhealthyStuck);
    assert_eq!(first["deploy"].result, "failure");
    assert_eq!(p.log("rollback.log").len(), 1, "attempt 1: the stuck host is rolled back");
    // "Re-run failed jobs": the deploy job runs again with this run's artifacts still there.
    let again = p.run_job("deploy", DeployBehaviour::Healthy);
    assert_eq!(again.result, "success", "{:?}", again.steps);
    assert_eq!(again.outcome("__5"), "success", "the record upload replaced attempt 1's (overwrite)");
    assert_eq!(p.log("rollback.log").len(), 1, "attempt 2 rolls nothing back");
    assert_eq!(p.log("cargo.log").len(), 1, "the re-run compiles nothing: the first job's artifact is reused");

    // Without `overwrite` the upload fails with 409 and the job fails, but the deploy step itself was healthy,
    // so still nothing is rolled back (the rollback bug of issue 10, item 3).
    let steps = p.wf["jobs"]["deploy"]["steps"].as_array_mut().unwrap();
    for s in steps.iter_mut() {
        if s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@")) {
            s["with"].as_object_mut().unwrap().remove("overwrite");
        }
    }
    let third = p.run_job("deploy", DeployBehaviour::Healthy);
    assert_eq!(third.outcome("__5"), "failure", "409: the artifact exists");
    assert_eq!(third.result, "failure");
    assert_eq!(third.outcome("rollback"), "skipped", "a healthy deploy is not rolled back because an upload failed");
}
