//! The five `actions/<name>/action.yml` shims, run the way the runner runs a composite action (issue 6):
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
                ("lock-timeout", Some("5m")),
                ("force-unlock", Some("false")),
                ("min-free-disk", Some("1GiB")),
                ("preflight-only", Some("false")),
                ("record-file", None),
            ];
            outputs = &["deployed-tag", "previous-tag", "rolled-back", "changed", "record-file"];
        }
        "rollback" => {
            inputs.extend_from_slice(SSH);
            own = &[
                ("app-name", None),
                ("app-dir", None),
                ("services", None),
                ("health-url", None),
                ("health-timeout", Some("60s")),
                ("lock-timeout", Some("5m")),
                ("record-file", None),
                ("to-tag", None),
                // Beyond the contract: the same lock escape hatch deploy-remote has.
                ("force-unlock", Some("false")),
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
                // Beyond the contract: request concurrency and retries, the plan file path.
                ("concurrency", Some("4")),
                ("max-retries", Some("5")),
                ("plan-file", None),
            ];
            outputs = &["created", "updated", "deleted", "unchanged", "unknown", "invalid", "plan-file"];
        }
        other => panic!("no contract for {other}"),
    }
    inputs.extend_from_slice(own);
    (inputs, outputs.to_vec())
}

const ACTIONS: [&str; 5] = ["sync-secrets", "verify-image", "push-registry", "deploy-remote", "rollback"];

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
            "rollback" => ["host", "ssh-key"].into(),
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
        let given: BTreeMap<String, String> =
            [("host", "h"), ("ssh-key", "k"), ("image-tag", "v1")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let run = run_action("deploy-remote", &action, &given);
        assert_eq!(run.args, ["deploy-remote"], "{uses}");
        assert_eq!(run.env.get("INPUT_IMAGE_TAG").map(String::as_str), Some("v1"), "{uses}");
    }
}
