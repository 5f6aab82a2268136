//! The deploy engine shared by `deploy-remote` and `rollback`.
//!
//! A deploy is a [`Plan`]: steps computed before anything runs, printed by `preflight-only` and walked
//! by [`deploy`] (spec/actions.md, "Order of work"): connect → preflight (every host, every failure at
//! once) → per host, one at a time: lock → read state → upload (backups, atomic) → pull → up → health
//! gate → write state, audit, prune → unlock. A failed gate with `auto-rollback` puts the replaced files
//! back, starts the previous tag, gates it and records `rolled-back`; hosts already changed are rolled
//! back too.
//!
//! Invariant: every remote action is a [`Cmd`] run through an [`Executor`]; one executor (one SSH
//! connection) per host serves the whole run. The engine never prints a secret: messages go through
//! [`gangplank_core::actions`], which redacts every registered value.

pub mod files;
pub mod health;
pub use gangplank_core::host::lock;
pub mod preflight;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gangplank_core::actions::{group, info, warning};
use gangplank_core::compose::{self, Flavor, Project};
use gangplank_core::error::{combine, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::input::{HostSpec, SshConfig};

pub use state::{Record, RunMeta, State};

/// How many backups of each file survive a successful deploy.
pub const KEEP_BACKUPS: usize = 10;

/// A valid Docker tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Checked before any connection, so a tag
/// can never smuggle shell text or flags anywhere.
pub fn validate_tag(tag: &str, input: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!("`{input}` {tag:?} is not a valid Docker tag"))
            .hint("a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-` (e.g. the first 12 characters of the commit SHA)"))
    }
}

/// `app-name` and `app-dir` as both binaries read them: the name defaults to the repository's name,
/// the directory to `/opt/<app-name>`; the directory must be absolute and is returned without a trailing `/`.
pub fn resolve_app(app_name: Option<String>, app_dir: Option<String>) -> Result<(String, String)> {
    let from_repo = || {
        let repo = std::env::var("GITHUB_REPOSITORY").ok()?;
        let name = repo.rsplit('/').next()?.to_ascii_lowercase().replace('.', "-");
        (!name.is_empty()).then_some(name)
    };
    let app = app_name.filter(|n| !n.is_empty()).or_else(from_repo).ok_or_else(|| {
        Error::bad_input("input `app-name` is required outside GitHub Actions").hint("pass `--app-name myapp`")
    })?;
    validate_app_name(&app)?;
    let dir = app_dir.filter(|d| !d.is_empty()).unwrap_or_else(|| format!("/opt/{app}"));
    if !dir.starts_with('/') || dir.contains('\0') || dir.trim_end_matches('/').is_empty() {
        return Err(Error::bad_input(format!("`app-dir` {dir:?} is not an absolute directory path"))
            .hint("use an absolute path such as /opt/myapp"));
    }
    Ok((app, dir.trim_end_matches('/').to_string()))
}

/// `health-url` must be an http(s) URL when given.
pub fn validate_health_url(url: Option<&str>) -> Result<()> {
    match url {
        Some(u) if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) => {
            Err(Error::bad_input(format!("`health-url` {u:?} is not an http:// or https:// URL"))
                .hint("e.g. http://localhost:8080/health (probed on the host) or https://example.com/health"))
        }
        _ => Ok(()),
    }
}

/// A compose project name: lowercase letters, digits, `_` and `-`, starting with a letter or digit
/// (what both compose v1 and v2 accept unchanged).
pub fn validate_app_name(name: &str) -> Result<()> {
    let ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!("`app-name` {name:?} is not a valid compose project name"))
            .hint("use lowercase letters, digits, `-` and `_`, starting with a letter or digit"))
    }
}

/// Catch SIGINT and SIGTERM: the run stops at the next step boundary, releasing its lock on the way out.
/// SIGINT/SIGTERM only set a flag from now on; the engine checks it between steps and the lock guard
/// releases the lock on the way out. Shared with the other binaries ([`gangplank_core::process`]).
pub fn install_signal_handlers() {
    gangplank_core::process::install_signal_flag();
}

pub fn interrupted() -> bool {
    gangplank_core::process::interrupted().is_some()
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(Error::failed("interrupted by a signal").hint("the lock was released; run the deploy again"))
    } else {
        Ok(())
    }
}

/// Validated settings of a deploy ("high args").
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub ssh: SshConfig,
    pub app: String,
    pub app_dir: String,
    pub compose_files: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub tag: String,
    pub services: Vec<String>,
    pub health_url: Option<String>,
    pub health_timeout: Duration,
    pub auto_rollback: bool,
    pub keep_images: usize,
    pub lock_timeout: Duration,
    pub force_unlock: bool,
    pub min_free_disk: u64,
    pub preflight_only: bool,
    pub record_file: PathBuf,
    pub meta: RunMeta,
}

/// Validated settings of a rollback.
#[derive(Debug, Clone)]
pub struct RollbackConfig {
    pub ssh: SshConfig,
    pub app: String,
    pub app_dir: String,
    pub services: Vec<String>,
    pub health_url: Option<String>,
    pub health_timeout: Duration,
    pub lock_timeout: Duration,
    pub force_unlock: bool,
    pub to_tag: Option<String>,
    pub record_file: PathBuf,
    pub meta: RunMeta,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Connect,
    Preflight,
    ForceUnlock,
    Lock,
    ReadState,
    Upload(Vec<String>),
    Pull,
    Up(String),
    HealthGate,
    WriteState,
    Prune(usize),
    Unlock,
    ShowLogs,
    RestoreFiles,
    UpPrevious,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Connect => {
                write!(f, "connect over SSH, host key verified (one connection per host for the whole run)")
            }
            Step::Preflight => {
                write!(f, "preflight: sudo, docker daemon, compose, free disk, app-dir, referenced files")
            }
            Step::ForceUnlock => write!(f, "force-unlock: print the lock's owner, then break it"),
            Step::Lock => write!(f, "take the lock .gangplank/lock (mkdir), waiting up to lock-timeout"),
            Step::ReadState => write!(f, "read .gangplank/state.json (current and previous tag)"),
            Step::Upload(files) => write!(f, "upload atomically, backing up replaced files: {}", files.join(", ")),
            Step::Pull => write!(f, "compose pull"),
            Step::Up(tag) => write!(f, "compose up -d --remove-orphans with IMAGE_TAG={tag}"),
            Step::HealthGate => write!(f, "health gate: containers running/healthy (docker inspect), health-url 2xx"),
            Step::WriteState => write!(f, "write state.json and an audit.log line"),
            Step::Prune(n) => write!(
                f,
                "prune: keep {n} image tags of this app (never current or previous), {KEEP_BACKUPS} backups per file"
            ),
            Step::Unlock => write!(f, "release the lock"),
            Step::ShowLogs => write!(f, "print the last 100 log lines and the health log of each failing container"),
            Step::RestoreFiles => write!(f, "put the replaced files back from their backups"),
            Step::UpPrevious => write!(f, "compose up the previous tag (no pull), gate it, record rolled-back"),
        }
    }
}

/// The steps of a run, computed before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub title: String,
    pub hosts: Vec<String>,
    /// Done for every host before anything changes.
    pub checks: Vec<Step>,
    /// Done per host, one host at a time.
    pub steps: Vec<Step>,
    /// Done when the gate fails (and for hosts already changed when a later host fails).
    pub on_failure: Vec<Step>,
}

impl Plan {
    pub fn deploy(cfg: &DeployConfig, uploads: &[String]) -> Plan {
        let mut steps = vec![];
        if cfg.force_unlock {
            steps.push(Step::ForceUnlock);
        }
        steps.extend([
            Step::Lock,
            Step::ReadState,
            Step::Upload(uploads.to_vec()),
            Step::Pull,
            Step::Up(cfg.tag.clone()),
            Step::HealthGate,
            Step::WriteState,
            Step::Prune(cfg.keep_images),
            Step::Unlock,
        ]);
        let on_failure = if cfg.auto_rollback {
            vec![Step::ShowLogs, Step::RestoreFiles, Step::UpPrevious, Step::WriteState, Step::Unlock]
        } else {
            vec![Step::ShowLogs, Step::WriteState, Step::Unlock]
        };
        Plan {
            title: format!("deploy `{}` tag `{}` into {}", cfg.app, cfg.tag, cfg.app_dir),
            hosts: cfg.ssh.hosts.iter().map(|h| h.to_string()).collect(),
            checks: vec![Step::Connect, Step::Preflight],
            steps,
            on_failure,
        }
    }

    pub fn rollback(cfg: &RollbackConfig) -> Plan {
        let mut steps = vec![];
        if cfg.force_unlock {
            steps.push(Step::ForceUnlock);
        }
        let target = cfg.to_tag.clone().unwrap_or_else(|| "the previous tag".into());
        steps.extend([Step::Lock, Step::ReadState, Step::Up(target), Step::HealthGate, Step::WriteState, Step::Unlock]);
        Plan {
            title: format!("roll back `{}` in {}", cfg.app, cfg.app_dir),
            hosts: cfg.ssh.hosts.iter().map(|h| h.to_string()).collect(),
            checks: vec![Step::Connect],
            steps,
            on_failure: vec![Step::ShowLogs, Step::Unlock],
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("plan: {}\nhosts, one at a time: {}\n", self.title, self.hosts.join(", "));
        let mut n = 0;
        for step in &self.checks {
            n += 1;
            s.push_str(&format!("  {n}. {step} (every host, before anything changes)\n"));
        }
        for step in &self.steps {
            n += 1;
            s.push_str(&format!("  {n}. {step}\n"));
        }
        s.push_str("on failure:\n");
        for step in &self.on_failure {
            s.push_str(&format!("  - {step}\n"));
        }
        s
    }
}

/// How one host ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub host: String,
    pub previous_tag: String,
    pub new_tag: String,
    pub result: String,
    pub duration: Duration,
}

/// What a run did, for outputs, record file and summary. `error` decides the exit code.
#[derive(Debug)]
pub struct Outcome {
    pub record: Record,
    pub rows: Vec<Row>,
    pub rolled_back: bool,
    pub error: Option<Error>,
}

pub fn summary_table(title: &str, rows: &[Row]) -> String {
    let mut s =
        format!("### {title}\n\n| host | previous tag | new tag | result | duration |\n|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1}s |\n",
            r.host,
            if r.previous_tag.is_empty() { "—" } else { &r.previous_tag },
            r.new_tag,
            r.result,
            r.duration.as_secs_f32()
        ));
    }
    s
}

/// Opens the connection to one host. Binaries pass the SSH executor; tests pass recordings.
pub type Connect<'a> = dyn FnMut(&HostSpec) -> Result<Box<dyn Executor>> + 'a;

/// Holds a host's lock; releases it when dropped (error, early return, panic).
struct Held<'a> {
    exec: &'a mut dyn Executor,
    app_dir: &'a str,
    id: String,
    released: bool,
}

impl Held<'_> {
    fn release(mut self) -> Result<()> {
        self.released = true;
        lock::release(self.exec, self.app_dir, &self.id)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = lock::release(self.exec, self.app_dir, &self.id) {
                warning("lock", format!("could not release the lock on {}: {}", self.exec.label(), e.message));
            }
        }
    }
}

/// The lock as the body of [`with_lock`] sees it: its id, and whether the body released it already.
struct Lease {
    id: String,
    released: std::cell::Cell<bool>,
}

fn new_lock_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Take the lock (after `force-unlock` if asked), run `body`, release — also when `body` fails.
#[allow(clippy::too_many_arguments)]
fn with_lock<T>(
    exec: &mut dyn Executor,
    app_dir: &str,
    action: &str,
    tag: &str,
    meta: &RunMeta,
    timeout: Duration,
    force: bool,
    body: impl FnOnce(&mut dyn Executor, &str, &Lease) -> Result<T>,
) -> Result<T> {
    if force {
        match lock::force_unlock(exec, app_dir)? {
            Some(who) => warning("force-unlock", format!("broke the lock on {} held by {who}", exec.label())),
            None => info(format!("force-unlock: no lock on {}", exec.label())),
        }
    }
    let owner = lock::Owner {
        id: new_lock_id(),
        action: action.into(),
        tag: tag.into(),
        run_url: meta.run_url.clone(),
        git_sha: meta.git_sha.clone(),
        runner_host: meta.runner_host.clone(),
        started_at: state::now_rfc3339(),
        pid: std::process::id(),
    };
    let state_text = lock::acquire(exec, app_dir, &owner, timeout, &interrupted)?;
    let lease = Lease { id: owner.id.clone(), released: std::cell::Cell::new(false) };
    let mut held = Held { exec, app_dir, id: owner.id, released: false };
    let r = body(&mut *held.exec, &state_text, &lease);
    let released = if lease.released.get() {
        // The finish script already released it in the same round trip.
        held.released = true;
        Ok(())
    } else {
        held.release()
    };
    let v = r?;
    released?;
    Ok(v)
}

/// Parse state.json as the lock script read it (empty: no deploy yet).
fn parse_state(text: &str, exec: &dyn Executor, app_dir: &str, app: &str) -> Result<State> {
    if text.trim().is_empty() {
        return Ok(State::new(app));
    }
    State::parse(text).map_err(|e| {
        Error::failed(format!("{app_dir}/.gangplank/state.json on {} is not valid: {e}", exec.label()))
            .hint("fix or remove the file (it is rebuilt by the next deploy; audit.log keeps the history)")
    })
}

fn write_state(exec: &mut dyn Executor, app_dir: &str, st: &State) -> Result<()> {
    exec.upload(&format!("{app_dir}/.gangplank/state.json"), st.to_json().as_bytes(), 0o644)
}

fn audit(exec: &mut dyn Executor, app_dir: &str, meta: &RunMeta, action: &str, tag: &str, prev: &str, result: &str) {
    let host = exec.label().to_string();
    let line = state::AuditLine {
        time: state::now_rfc3339(),
        action,
        tag,
        previous_tag: prev,
        result,
        host: &host,
        run_url: &meta.run_url,
        actor: &meta.actor,
    }
    .to_line();
    if let Err(e) = exec.check(&files::audit_cmd(app_dir, &line), "appending to audit.log") {
        warning("audit", e.message);
    }
}

fn audit_line(exec: &dyn Executor, meta: &RunMeta, action: &str, tag: &str, prev: &str, result: &str) -> String {
    state::AuditLine {
        time: state::now_rfc3339(),
        action,
        tag,
        previous_tag: prev,
        result,
        host: exec.label(),
        run_url: &meta.run_url,
        actor: &meta.actor,
    }
    .to_line()
}

/// Which `REPO:TAG`s go: per repository, all but the `keep` newest, never `current` or `previous`.
fn retention(tags: &[(String, String)], keep: usize, current: &str, previous: Option<&str>) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = vec![];
    for (repo, tag) in tags {
        if tag == "<none>" || tag.is_empty() {
            continue;
        }
        let n = seen.entry(repo.as_str()).or_insert(0);
        *n += 1;
        if *n > keep && tag != current && Some(tag.as_str()) != previous {
            out.push(format!("{repo}:{tag}"));
        }
    }
    out
}

fn digests(containers: &[compose::Container]) -> BTreeMap<String, String> {
    containers.iter().filter(|c| !c.service.is_empty()).map(|c| (c.service.clone(), c.image_id.clone())).collect()
}

/// Run the gate; on failure print the logs and return the reason.
fn gate(
    exec: &mut dyn Executor,
    app: &str,
    services: &[String],
    url: Option<&str>,
    timeout: Duration,
) -> Result<std::result::Result<Vec<compose::Container>, String>> {
    let g = health::Gate { project: app, services, health_url: url, timeout, interrupted: &interrupted };
    let start = Instant::now();
    match health::wait(exec, &g)? {
        Ok(c) => {
            info(format!("healthy on {} after {:.1}s", exec.label(), start.elapsed().as_secs_f32()));
            Ok(Ok(c))
        }
        Err(f) => {
            health::show_failure(exec, &f);
            Ok(Err(f.reason))
        }
    }
}

/// What happened on one host during a deploy, kept for rolling it back if a later host fails.
struct HostDone {
    previous: Option<String>,
    changed: Vec<String>,
    stamp: String,
    flavor: Flavor,
}

enum HostEnd {
    Deployed(HostDone),
    /// Failed; `rolled_back` says whether the previous version serves again.
    Failed {
        error: Error,
        rolled_back: bool,
        previous: Option<String>,
    },
}

/// A host that passed preflight, with its open connection.
type Connected = (HostSpec, Box<dyn Executor>, preflight::HostFacts);

/// Everything about the run that does not depend on the host.
struct Job<'a> {
    cfg: &'a DeployConfig,
    uploads: Vec<files::Upload>,
    compose_names: Vec<String>,
    image_repos: Vec<String>,
    /// Images to `docker pull` directly; `None`: let compose pull.
    pull_refs: Option<Vec<String>>,
}

/// Read local files, check the compose files, connect and preflight every host. Every failure found is
/// returned at once, as one exit-2 error.
fn prepare<'c>(cfg: &'c DeployConfig, connect: &mut Connect) -> Result<(Job<'c>, Vec<Connected>)> {
    let mut errs = vec![];
    let (uploads, mut file_errs) = files::collect(&cfg.compose_files, &cfg.files, cfg.env_file.as_deref());
    errs.append(&mut file_errs);
    if let Some(env) = uploads.iter().find(|u| u.remote == ".env") {
        for v in files::dotenv_values(&env.content) {
            gangplank_core::actions::register_mask(&v);
        }
    }
    let uploaded: Vec<String> = uploads.iter().map(|u| u.remote.clone()).collect();
    let compose_names: Vec<String> = cfg
        .compose_files
        .iter()
        .map(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    let mut host_refs: Vec<(String, String)> = vec![];
    let mut image_repos: Vec<String> = vec![];
    let mut services: Vec<(String, Option<String>)> = vec![];
    for u in uploads.iter().filter(|u| compose_names.contains(&u.remote) && u.remote != ".env") {
        let text = String::from_utf8_lossy(&u.content);
        match compose::references(&text) {
            Err(e) => errs.push(
                Error::bad_input(format!("compose file `{}` is not valid YAML: {e}", u.local.display()))
                    .hint("check it with `docker compose config`"),
            ),
            Ok(refs) => {
                for (p, what) in refs.files {
                    if p.starts_with('~') {
                        continue;
                    }
                    let r = compose::resolve_reference(&p);
                    if r.starts_with('/') {
                        host_refs.push((r, format!("{what} in {}", u.remote)));
                    } else if !uploaded.iter().any(|up| up == &r || up.starts_with(&format!("{r}/"))) {
                        host_refs.push((format!("{}/{r}", cfg.app_dir), format!("{what} in {}", u.remote)));
                    }
                }
                services.extend(refs.services);
                for img in refs.images {
                    let repo = compose::image_repo(&img).to_string();
                    if img.contains("IMAGE_TAG") && !repo.contains('$') && !image_repos.contains(&repo) {
                        image_repos.push(repo);
                    }
                }
            }
        }
    }
    let mut hosts = vec![];
    for h in &cfg.ssh.hosts {
        match connect(h) {
            Err(e) => errs.push(e),
            Ok(mut exec) => {
                let checks = preflight::Checks {
                    app_dir: &cfg.app_dir,
                    min_free_disk: cfg.min_free_disk,
                    host_references: &host_refs,
                };
                match preflight::run(exec.as_mut(), &checks) {
                    Ok(facts) => hosts.push((h.clone(), exec, facts)),
                    Err(mut e) => errs.append(&mut e),
                }
            }
        }
    }
    if let Some(e) = combine(errs) {
        return Err(e);
    }
    let pull_refs = compose::pull_refs(&services, &cfg.services, &cfg.tag);
    Ok((Job { cfg, uploads, compose_names, image_repos, pull_refs }, hosts))
}

/// Run a deploy: plan, preflight every host, then each host in turn; roll back on failure.
pub fn deploy(cfg: &DeployConfig, connect: &mut Connect) -> Outcome {
    let started_at = state::now_rfc3339();
    let mut record = Record {
        app: cfg.app.clone(),
        hosts: cfg.ssh.hosts.iter().map(|h| h.to_string()).collect(),
        deployed_tag: cfg.tag.clone(),
        status: "failed".into(),
        started_at,
        git_sha: cfg.meta.git_sha.clone(),
        run_url: cfg.meta.run_url.clone(),
        action: "deploy".into(),
        ..Default::default()
    };
    let mut out = Outcome { record: record.clone(), rows: vec![], rolled_back: false, error: None };
    let finish = |mut out: Outcome, mut record: Record| {
        record.finished_at = state::now_rfc3339();
        out.record = record;
        out
    };

    let prepared = {
        let _g = group("preflight");
        prepare(cfg, connect)
    };
    let (job, mut hosts) = match prepared {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return finish(out, record);
        }
    };
    let plan = Plan::deploy(cfg, &job.uploads.iter().map(|u| u.remote.clone()).collect::<Vec<_>>());
    info(plan.render().trim_end());
    info(format!("preflight passed on {} host(s)", hosts.len()));
    if cfg.preflight_only {
        record.status = "preflight-passed".into();
        return finish(out, record);
    }

    let mut done: Vec<(usize, HostDone, Instant)> = vec![];
    for i in 0..hosts.len() {
        let start = Instant::now();
        let (spec, exec, facts) = &mut hosts[i];
        let label = spec.to_string();
        let _g = group(&format!("deploy {} to {label}", cfg.tag));
        let end = deploy_host(&job, &plan, exec.as_mut(), facts.flavor);
        match end {
            HostEnd::Deployed(d) => {
                if record.previous_tag.is_empty() {
                    record.previous_tag = d.previous.clone().unwrap_or_default();
                }
                out.rows.push(Row {
                    host: label,
                    previous_tag: d.previous.clone().unwrap_or_default(),
                    new_tag: cfg.tag.clone(),
                    result: "deployed".into(),
                    duration: start.elapsed(),
                });
                done.push((i, d, start));
            }
            HostEnd::Failed { error, rolled_back, previous } => {
                if record.previous_tag.is_empty() {
                    record.previous_tag = previous.clone().unwrap_or_default();
                }
                out.rows.push(Row {
                    host: label,
                    previous_tag: previous.unwrap_or_default(),
                    new_tag: cfg.tag.clone(),
                    result: if rolled_back { "rolled back".into() } else { "failed".into() },
                    duration: start.elapsed(),
                });
                let mut all_back = rolled_back;
                // The first failure stops the run: hosts already changed go back too.
                for (j, d, _) in done.iter().rev() {
                    let (spec, exec, _) = &mut hosts[*j];
                    let _g = group(&format!("roll back {spec} (a later host failed)"));
                    let t = Instant::now();
                    let ok = match undo_host(&job, exec.as_mut(), d) {
                        Ok(()) => true,
                        Err(e) => {
                            gangplank_core::actions::error("rollback failed", format!("{spec}: {}", e.message));
                            false
                        }
                    };
                    all_back &= ok;
                    if let Some(row) = out.rows.iter_mut().find(|r| r.host == spec.to_string()) {
                        row.result = if ok {
                            "rolled back (a later host failed)".into()
                        } else {
                            "deployed, rollback failed".into()
                        };
                        row.duration += t.elapsed();
                    }
                }
                out.rolled_back = all_back && (rolled_back || !done.is_empty());
                record.status = if out.rolled_back { "rolled-back".into() } else { "failed".into() };
                out.error = Some(error);
                return finish(out, record);
            }
        }
    }
    record.status = "deployed".into();
    finish(out, record)
}

fn project_for(cfg_app: &str, app_dir: &str, flavor: Flavor, files: &[String]) -> Project {
    Project { flavor, name: cfg_app.to_string(), dir: app_dir.to_string(), files: files.to_vec() }
}

/// Stage (back up what will be replaced) and upload what differs. Returns the files that were replaced.
fn upload(ex: &mut dyn Executor, job: &Job, stamp: &str) -> Result<Vec<String>> {
    let app_dir = &job.cfg.app_dir;
    let list: Vec<(String, String)> = job.uploads.iter().map(|u| (u.remote.clone(), u.sha256())).collect();
    let out = ex.check(&files::stage_cmd(app_dir, stamp, &list), "backing up the files to replace")?;
    let verdicts: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    if verdicts.len() != job.uploads.len() {
        return Err(Error::failed(format!(
            "staging the upload on {} answered {} lines for {} files",
            ex.label(),
            verdicts.len(),
            job.uploads.len()
        )));
    }
    let mut changed = vec![];
    let mut same = 0;
    for (u, v) in job.uploads.iter().zip(&verdicts) {
        if v == "same" {
            same += 1;
            continue;
        }
        ex.upload(&format!("{app_dir}/{}", u.remote), &u.content, u.mode)?;
        info(format!("uploaded {} ({v})", u.remote));
        if v == "changed" {
            changed.push(u.remote.clone());
        }
    }
    if same > 0 {
        info(format!("{same} file(s) already up to date"));
    }
    Ok(changed)
}

fn restore(ex: &mut dyn Executor, app_dir: &str, stamp: &str, changed: &[String]) -> Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    ex.check(&files::restore_cmd(app_dir, stamp, changed), "restoring the replaced files from their backups")?;
    info(format!("restored from backups: {}", changed.join(", ")));
    Ok(())
}

fn deploy_host(job: &Job, plan: &Plan, exec: &mut dyn Executor, flavor: Flavor) -> HostEnd {
    let cfg = job.cfg;
    let project = project_for(&cfg.app, &cfg.app_dir, flavor, &job.compose_names);
    let stamp = state::backup_stamp();
    let mut previous: Option<String> = None;
    let force = plan.steps.contains(&Step::ForceUnlock);
    let r = with_lock(
        exec,
        &cfg.app_dir,
        "deploy",
        &cfg.tag,
        &cfg.meta,
        cfg.lock_timeout,
        force,
        |ex, state_text, lease| {
            let mut st = State::new(&cfg.app);
            let mut changed: Vec<String> = vec![];
            let mut containers = vec![];
            let mut upped = false;
            let mut tags_seen: Vec<(String, String)> = vec![];
            for step in &plan.steps {
                if let Err(e) = check_interrupt() {
                    if !upped {
                        let _ = restore(ex, &cfg.app_dir, &stamp, &changed);
                    }
                    return Err(e);
                }
                match step {
                    Step::Connect | Step::Preflight | Step::ForceUnlock | Step::Lock | Step::Unlock => {}
                    Step::ReadState => {
                        st = parse_state(state_text, ex, &cfg.app_dir, &cfg.app)?;
                        previous = st.current_tag().map(str::to_string);
                        info(format!(
                            "current tag on {}: {}",
                            ex.label(),
                            previous.as_deref().unwrap_or("none (first deploy)")
                        ));
                    }
                    Step::Upload(_) => changed = upload(ex, job, &stamp)?,
                    Step::Pull if job.pull_refs.is_some() => {} // pulled in the same round trip as `up`
                    Step::Pull | Step::Up(_) => {
                        let (cmd, is_up) = match (step, &job.pull_refs) {
                            (Step::Up(tag), Some(refs)) => {
                                (compose::pull_and_up(&project, refs, tag, &cfg.services), true)
                            }
                            (Step::Up(tag), None) => (project.up(tag, &cfg.services), true),
                            _ => (project.pull(&cfg.tag, &cfg.services), false),
                        };
                        upped |= is_up;
                        let out = ex.run(&cmd)?;
                        let pull_failed = (!is_up && !out.success())
                            || (job.pull_refs.is_some() && out.status == compose::PULL_FAILED);
                        if pull_failed {
                            let _ = restore(ex, &cfg.app_dir, &stamp, &changed);
                            audit(
                                ex,
                                &cfg.app_dir,
                                &cfg.meta,
                                "deploy",
                                &cfg.tag,
                                previous.as_deref().unwrap_or(""),
                                "pull-failed",
                            );
                            return Ok(HostEnd::Failed {
                            error: Error::failed(format!("pulling `{}` on {} failed: {}", cfg.tag, ex.label(), out.tail(5)))
                                .hint("check that the tag was pushed and that the host is logged in to the registry (`docker login`); nothing was restarted"),
                            rolled_back: false,
                            previous: previous.clone(),
                        });
                        }
                        if !out.success() {
                            let reason = format!("`compose up` failed: {}", out.tail(5));
                            return Ok(on_failure(
                                ex,
                                job,
                                &project,
                                &mut st,
                                previous.clone(),
                                &changed,
                                &stamp,
                                reason,
                            ));
                        }
                    }
                    Step::HealthGate => {
                        match gate(ex, &cfg.app, &cfg.services, cfg.health_url.as_deref(), cfg.health_timeout)? {
                            Ok(c) => containers = c,
                            Err(reason) => {
                                return Ok(on_failure(
                                    ex,
                                    job,
                                    &project,
                                    &mut st,
                                    previous.clone(),
                                    &changed,
                                    &stamp,
                                    reason,
                                ));
                            }
                        }
                    }
                    Step::WriteState => {
                        let cur = state::Current {
                            tag: cfg.tag.clone(),
                            digests: digests(&containers),
                            deployed_at: state::now_rfc3339(),
                            git_sha: cfg.meta.git_sha.clone(),
                            run_url: cfg.meta.run_url.clone(),
                            compose_files: job.compose_names.clone(),
                        };
                        st.promote(cur, "replaced");
                        let line = audit_line(
                            ex,
                            &cfg.meta,
                            "deploy",
                            &cfg.tag,
                            previous.as_deref().unwrap_or(""),
                            "deployed",
                        );
                        let rels: Vec<String> = job.uploads.iter().map(|u| u.remote.clone()).collect();
                        let keep = plan.steps.iter().find_map(|s| if let Step::Prune(n) = s { Some(*n) } else { None });
                        let repos: Vec<String> = if keep.is_some() { job.image_repos.clone() } else { vec![] };
                        let out = ex.check(
                            &files::finish_cmd(
                                &cfg.app_dir,
                                &st.to_json(),
                                &line,
                                KEEP_BACKUPS,
                                &lease.id,
                                &repos,
                                &rels,
                            ),
                            "writing state.json and audit.log",
                        )?;
                        tags_seen = files::parse_tags(&out.stdout_str());
                        lease.released.set(true);
                    }
                    Step::Prune(keep) => {
                        let remove = retention(&tags_seen, *keep, &cfg.tag, previous.as_deref());
                        if !remove.is_empty() {
                            match ex.run(&files::remove_images_cmd(&remove)) {
                                Ok(o) => {
                                    for r in o.stdout_str().lines() {
                                        info(format!("removed old image {r}"));
                                    }
                                }
                                Err(e) => warning("prune", e.message),
                            }
                        }
                    }
                    Step::ShowLogs | Step::RestoreFiles | Step::UpPrevious => {}
                }
            }
            Ok(HostEnd::Deployed(HostDone { previous: previous.clone(), changed, stamp: stamp.clone(), flavor }))
        },
    );
    match r {
        Ok(end) => end,
        Err(error) => HostEnd::Failed { error, rolled_back: false, previous },
    }
}

/// A failed `up` or gate: record it, and with `auto-rollback` go back to the previous tag.
#[allow(clippy::too_many_arguments)]
fn on_failure(
    ex: &mut dyn Executor,
    job: &Job,
    project: &Project,
    st: &mut State,
    previous: Option<String>,
    changed: &[String],
    stamp: &str,
    reason: String,
) -> HostEnd {
    let cfg = job.cfg;
    let host = ex.label().to_string();
    let prev = previous.clone().unwrap_or_default();
    gangplank_core::actions::error("health gate", format!("{} on {host}: {reason}", cfg.tag));
    audit(ex, &cfg.app_dir, &cfg.meta, "deploy", &cfg.tag, &prev, "health-gate-failed");
    st.record_failure(&cfg.tag, &state::now_rfc3339());
    let fail = |msg: String, hint: &str, rolled_back: bool| HostEnd::Failed {
        error: Error::failed(msg).hint(hint),
        rolled_back,
        previous: previous.clone(),
    };
    let end = match (&previous, cfg.auto_rollback) {
        (None, _) => fail(
            format!("deploy of `{}` on {host} failed ({reason}); this was the first deploy, so there is nothing to roll back to", cfg.tag),
            "read the container logs above, fix the image or compose file and deploy again",
            false,
        ),
        (Some(_), false) => fail(
            format!("deploy of `{}` on {host} failed ({reason}); auto-rollback is off, so it stays in place", cfg.tag),
            &format!("run the rollback action to go back to `{prev}`, or fix and deploy again"),
            false,
        ),
        (Some(p), true) => {
            let _g = group(&format!("roll back {host} to {p}"));
            match rollback_in_place(ex, job, project, st, p, changed, stamp) {
                Ok(()) => fail(
                    format!("deploy of `{}` on {host} failed ({reason}); rolled back to `{p}`, which is healthy", cfg.tag),
                    "read the container logs above, fix the image and deploy again",
                    true,
                ),
                Err(e) => fail(
                    format!("deploy of `{}` on {host} failed ({reason}), and the rollback to `{p}` failed too: {}", cfg.tag, e.message),
                    "the host needs attention: read the logs above, then run the rollback action with `to-tag`",
                    false,
                ),
            }
        }
    };
    if let Err(e) = write_state(ex, &cfg.app_dir, st) {
        warning("state", e.message);
    }
    end
}

/// Put the replaced files back and start `prev` (no pull: its image is still on the host), then gate it.
fn rollback_in_place(
    ex: &mut dyn Executor,
    job: &Job,
    project: &Project,
    st: &mut State,
    prev: &str,
    changed: &[String],
    stamp: &str,
) -> Result<()> {
    let cfg = job.cfg;
    restore(ex, &cfg.app_dir, stamp, changed)?;
    ex.check(&project.up(prev, &cfg.services), "compose up of the previous tag")?;
    let r = match gate(ex, &cfg.app, &cfg.services, cfg.health_url.as_deref(), cfg.health_timeout)? {
        Ok(c) => {
            if let Some(cur) = st.current.as_mut() {
                cur.digests = digests(&c);
            }
            Ok(())
        }
        Err(reason) => Err(Error::failed(reason)),
    };
    let result = if r.is_ok() { "rolled-back" } else { "rollback-failed" };
    audit(ex, &cfg.app_dir, &cfg.meta, "rollback", prev, &cfg.tag, result);
    r
}

/// A host that deployed fine goes back because a later host failed.
fn undo_host(job: &Job, exec: &mut dyn Executor, d: &HostDone) -> Result<()> {
    let cfg = job.cfg;
    let Some(prev) = d.previous.clone() else {
        return Err(Error::failed("it had no previous deploy to go back to").hint("deploy a working tag to every host"));
    };
    let project = project_for(&cfg.app, &cfg.app_dir, d.flavor, &job.compose_names);
    with_lock(exec, &cfg.app_dir, "rollback", &prev, &cfg.meta, cfg.lock_timeout, false, |ex, state_text, _lease| {
        let mut st = parse_state(state_text, ex, &cfg.app_dir, &cfg.app)?;
        restore(ex, &cfg.app_dir, &d.stamp, &d.changed)?;
        ex.check(&project.up(&prev, &cfg.services), "compose up of the previous tag")?;
        let c =
            gate(ex, &cfg.app, &cfg.services, cfg.health_url.as_deref(), cfg.health_timeout)?.map_err(Error::failed)?;
        let cur = state::Current {
            tag: prev.clone(),
            digests: digests(&c),
            deployed_at: state::now_rfc3339(),
            git_sha: cfg.meta.git_sha.clone(),
            run_url: cfg.meta.run_url.clone(),
            compose_files: job.compose_names.clone(),
        };
        st.promote(cur, "rolled-back");
        write_state(ex, &cfg.app_dir, &st)?;
        audit(ex, &cfg.app_dir, &cfg.meta, "rollback", &prev, &cfg.tag, "rolled-back");
        Ok(())
    })
}

/// Run a rollback on every host, one at a time: to `to-tag`, else `record_previous` (the record file's
/// `previous_tag`), else the host state's previous tag. Uses the compose files and `.env` on the host.
pub fn rollback(cfg: &RollbackConfig, record_previous: Option<String>, connect: &mut Connect) -> Outcome {
    let mut record = Record {
        app: cfg.app.clone(),
        hosts: cfg.ssh.hosts.iter().map(|h| h.to_string()).collect(),
        status: "failed".into(),
        started_at: state::now_rfc3339(),
        git_sha: cfg.meta.git_sha.clone(),
        run_url: cfg.meta.run_url.clone(),
        action: "rollback".into(),
        ..Default::default()
    };
    let mut out = Outcome { record: record.clone(), rows: vec![], rolled_back: false, error: None };
    let plan = Plan::rollback(cfg);
    info(plan.render().trim_end());
    let force = plan.steps.contains(&Step::ForceUnlock);
    for h in &cfg.ssh.hosts {
        let start = Instant::now();
        let _g = group(&format!("roll back {h}"));
        let r = connect(h).and_then(|mut exec| {
            let det = exec.check(&compose::detect(), "detecting compose")?;
            let flavor = compose::parse_detect(&det.stdout_str()).ok_or_else(|| {
                Error::bad_input(format!("neither `docker compose` nor `docker-compose` is installed on {h}"))
                    .hint("install the compose plugin or docker-compose")
            })?;
            let label = h.to_string();
            let wanted = cfg.to_tag.clone().or_else(|| record_previous.clone());
            with_lock(exec.as_mut(), &cfg.app_dir, "rollback", wanted.as_deref().unwrap_or("previous"), &cfg.meta, cfg.lock_timeout, force, |ex, state_text, lease| {
                let mut st = parse_state(state_text, ex, &cfg.app_dir, &cfg.app)?;
                let from = st.current_tag().unwrap_or("").to_string();
                let target = match wanted.clone().or_else(|| st.previous_tag().map(str::to_string)) {
                    Some(t) => t,
                    None => {
                        return Err(Error::bad_input(format!("there is no previous tag of `{}` on {label} to roll back to", cfg.app))
                            .hint("pass `to-tag` with the tag to go back to"))
                    }
                };
                validate_tag(&target, "to-tag")?;
                info(format!("rolling back {label} from `{}` to `{target}`", if from.is_empty() { "nothing" } else { &from }));
                let compose_files = st
                    .current
                    .as_ref()
                    .map(|c| c.compose_files.clone())
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| vec!["compose.yaml".to_string()]);
                let project = project_for(&cfg.app, &cfg.app_dir, flavor, &compose_files);
                let up = ex.run(&project.up(&target, &cfg.services))?;
                if !up.success() {
                    audit(ex, &cfg.app_dir, &cfg.meta, "rollback", &target, &from, "failed");
                    return Err(Error::failed(format!("`compose up` of `{target}` on {label} failed: {}", up.tail(5)))
                        .hint("if the image is no longer on the host, the registry must be reachable (or pass another `to-tag`)"));
                }
                match gate(ex, &cfg.app, &cfg.services, cfg.health_url.as_deref(), cfg.health_timeout)? {
                    Ok(c) => {
                        let cur = state::Current {
                            tag: target.clone(),
                            digests: digests(&c),
                            deployed_at: state::now_rfc3339(),
                            git_sha: cfg.meta.git_sha.clone(),
                            run_url: cfg.meta.run_url.clone(),
                            compose_files,
                        };
                        st.promote(cur, "rolled-back");
                        let line = audit_line(ex, &cfg.meta, "rollback", &target, &from, "rolled-back");
                        ex.check(&files::finish_cmd(&cfg.app_dir, &st.to_json(), &line, KEEP_BACKUPS, &lease.id, &[], &[]), "writing state.json and audit.log")?;
                        lease.released.set(true);
                        Ok((from, target))
                    }
                    Err(reason) => {
                        audit(ex, &cfg.app_dir, &cfg.meta, "rollback", &target, &from, "health-gate-failed");
                        Err(Error::failed(format!("rollback to `{target}` on {label} is not healthy: {reason}"))
                            .hint("read the container logs above; pass another `to-tag` to try an older version"))
                    }
                }
            })
        });
        match r {
            Ok((from, to)) => {
                if record.deployed_tag.is_empty() {
                    record.deployed_tag = to.clone();
                    record.previous_tag = from.clone();
                }
                out.rows.push(Row {
                    host: h.to_string(),
                    previous_tag: from,
                    new_tag: to,
                    result: "rolled back".into(),
                    duration: start.elapsed(),
                });
            }
            Err(e) => {
                out.rows.push(Row {
                    host: h.to_string(),
                    previous_tag: String::new(),
                    new_tag: cfg.to_tag.clone().unwrap_or_default(),
                    result: "failed".into(),
                    duration: start.elapsed(),
                });
                out.error = Some(e);
                record.finished_at = state::now_rfc3339();
                out.record = record;
                return out;
            }
        }
    }
    record.status = "rolled-back".into();
    out.rolled_back = true;
    record.finished_at = state::now_rfc3339();
    out.record = record;
    out
}

/// Where the record file goes by default: `$RUNNER_TEMP/gangplank/<name>`, else the system temp dir.
pub fn default_record_file(name: &str) -> PathBuf {
    let base =
        std::env::var_os("RUNNER_TEMP").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    base.join("gangplank").join(name)
}

/// The end of every run: write the record file, set the outputs, append the summary, and hand back
/// the error (if any) for the exit code. Nothing here can carry a secret: the record holds tags, hosts
/// and run metadata only, and the summary goes through the redacting writer.
pub fn publish(out: Outcome, record_file: &std::path::Path, outputs: &[(&str, String)], title: &str) -> Result<()> {
    let mut errs = vec![];
    if let Err(e) = out.record.write(record_file) {
        errs.push(e);
    }
    for (k, v) in outputs {
        if let Err(e) = gangplank_core::actions::set_output(k, v) {
            errs.push(e);
        }
    }
    let _ = gangplank_core::actions::set_output("record-file", &record_file.to_string_lossy());
    if !out.rows.is_empty() {
        let mut md = summary_table(title, &out.rows);
        if let Some(e) = &out.error {
            md.push_str(&format!("\n**{}**\n", e.message.lines().next().unwrap_or("")));
        }
        if let Err(e) = gangplank_core::actions::append_summary(&md) {
            errs.push(e);
        }
    }
    match out.error {
        Some(e) => Err(e),
        None => match combine(errs) {
            Some(e) => Err(e),
            None => Ok(()),
        },
    }
}

/// Wraps an executor and logs each command's duration (`GANGPLANK_TRACE=1`), for benchmarks.
pub struct Traced(pub Box<dyn Executor>);

impl Executor for Traced {
    fn label(&self) -> &str {
        self.0.label()
    }
    fn sudo(&self) -> bool {
        self.0.sudo()
    }
    fn exec(&mut self, cmd: &gangplank_core::cmd::Cmd, stdin: Option<&[u8]>) -> Result<gangplank_core::exec::Output> {
        let t = Instant::now();
        let r = self.0.exec(cmd, stdin);
        let line: String = cmd.display(self.0.sudo()).chars().take(90).collect();
        info(format!("[trace {:>6.0} ms] {}", t.elapsed().as_secs_f64() * 1000.0, line.replace('\n', " ")));
        r
    }
}

/// The connector both binaries hand to the engine: one SSH connection per host for the whole run.
pub fn connect_ssh(ssh: &SshConfig) -> impl FnMut(&HostSpec) -> Result<Box<dyn Executor>> + '_ {
    move |h| Ok(maybe_traced(Box::new(gangplank_core::exec::ssh::SshExecutor::connect(h, ssh)?)))
}

/// Wrap in [`Traced`] when `GANGPLANK_TRACE` is set.
pub fn maybe_traced(e: Box<dyn Executor>) -> Box<dyn Executor> {
    if std::env::var_os("GANGPLANK_TRACE").is_some_and(|v| !v.is_empty()) {
        Box::new(Traced(e))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::cmd::Cmd;
    use gangplank_core::exec::{Output, Recording};
    use gangplank_core::input::HostKeyPolicy;
    use gangplank_core::Secret;

    fn config(dir: &std::path::Path, tag: &str) -> DeployConfig {
        std::fs::write(dir.join("compose.yaml"), "services:\n  web:\n    image: \"reg/app:${IMAGE_TAG}\"\n").unwrap();
        DeployConfig {
            ssh: SshConfig {
                hosts: vec![HostSpec { user: "deploy".into(), host: "h1".into(), port: 22 }],
                key: Secret::new("unit-test-key-material"),
                passphrase: None,
                host_key: HostKeyPolicy::Insecure,
                connect_timeout: Duration::from_secs(1),
                sudo: false,
            },
            app: "app".into(),
            app_dir: "/opt/my app".into(),
            compose_files: vec![dir.join("compose.yaml")],
            files: vec![],
            env_file: None,
            tag: tag.into(),
            services: vec![],
            health_url: None,
            health_timeout: Duration::from_secs(1),
            auto_rollback: true,
            keep_images: 5,
            lock_timeout: Duration::from_secs(1),
            force_unlock: false,
            min_free_disk: 1,
            preflight_only: false,
            record_file: dir.join("record.json"),
            meta: RunMeta::default(),
        }
    }

    #[test]
    fn tags_and_app_names() {
        for t in ["v1", "3f2a9c1d0e4b", "_x", "A.b-c_d"] {
            assert!(validate_tag(t, "image-tag").is_ok(), "{t}");
        }
        for t in ["", "-v1", ".v1", "v1;id", "a b", "$(id)", &"x".repeat(129)] {
            assert_eq!(validate_tag(t, "image-tag").unwrap_err().exit_code(), 2, "{t}");
        }
        assert!(validate_app_name("my-app_2").is_ok());
        assert!(validate_app_name("My App").is_err());
    }

    #[test]
    fn the_plan_is_data_computed_before_anything_runs() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2");
        let plan = Plan::deploy(&cfg, &["compose.yaml".into(), ".env".into()]);
        assert_eq!(plan.checks, vec![Step::Connect, Step::Preflight]);
        assert_eq!(
            plan.steps,
            vec![
                Step::Lock,
                Step::ReadState,
                Step::Upload(vec!["compose.yaml".into(), ".env".into()]),
                Step::Pull,
                Step::Up("v2".into()),
                Step::HealthGate,
                Step::WriteState,
                Step::Prune(5),
                Step::Unlock
            ]
        );
        assert_eq!(
            plan.on_failure,
            vec![Step::ShowLogs, Step::RestoreFiles, Step::UpPrevious, Step::WriteState, Step::Unlock]
        );
        let text = plan.render();
        assert!(text.contains("hosts, one at a time: deploy@h1:22"), "{text}");
        assert!(text.contains("4. read .gangplank/state.json"), "{text}");
    }

    const RUNNING: &str = r#"[{"Id":"c1","Name":"/app_web_1","Image":"sha256:abc","State":{"Status":"running","Running":true},"Config":{"Labels":{"com.docker.compose.service":"web"}}}]"#;

    #[test]
    fn a_deploy_runs_the_plan_in_order_over_one_connection() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2");
        cfg.keep_images = 2;
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
        let mut connects = 0;
        struct Shared(Recording, std::rc::Rc<std::cell::RefCell<Vec<String>>>);
        impl Executor for Shared {
            fn label(&self) -> &str {
                self.0.label()
            }
            fn sudo(&self) -> bool {
                false
            }
            fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output> {
                let o = self.0.exec(cmd, stdin);
                self.1.borrow_mut().push(self.0.log.last().unwrap().clone());
                o
            }
        }
        let state = r#"{"app":"app","current":{"tag":"v1","deployed_at":"t"},"history":[]}"#;
        let mut connect = |h: &HostSpec| -> Result<Box<dyn Executor>> {
            connects += 1;
            let r = Recording::new(&h.to_string(), false)
                .reply("echo same", Output::ok("changed\n"))
                .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{state}")))
                .reply("APP_DIR_CHECK", Output::ok("root=/var/lib/docker\ncompose=v1\ndf=1048576\nappdir=ok\n"))
                .reply("nrepos=$6", Output::ok("tag=reg/app\tv2\ntag=reg/app\tv1\ntag=reg/app\tv0\n"))
                .reply("label=com.docker.compose.project", Output::ok(RUNNING));
            Ok(Box::new(Shared(r, log.clone())))
        };
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(connects, 1);
        assert_eq!(out.record.status, "deployed");
        assert_eq!(out.record.previous_tag, "v1");
        let log = log.borrow();
        let short: Vec<String> = log
            .iter()
            .map(|l| {
                for (needle, name) in [
                    ("APP_DIR_CHECK", "preflight"),
                    ("mkdir -- \"$lock\"", "lock"),
                    ("echo same", "stage"),
                    ("gangplank-tmp", "upload"),
                    ("exec \"$@\"", "pull+up"),
                    ("nrepos=$6", "finish"),
                    ("up -d --remove-orphans", "up"),
                    ("label=com.docker.compose.project", "inspect"),
                    ("audit.log", "audit"),
                    ("image ls", "image ls"),
                    ("image rm", "image rm"),
                    ("keep=$2", "prune backups"),
                    ("grep -qF", "unlock"),
                ] {
                    if l.contains(needle) {
                        return name.to_string();
                    }
                }
                l.clone()
            })
            .collect();
        assert_eq!(
            short,
            vec!["preflight", "lock", "stage", "upload", "pull+up", "inspect", "finish", "image rm"],
            "{log:#?}"
        );
        assert!(
            log.iter().any(|l| l.ends_with(
                "gangplank '/opt/my app' v2 1 reg/app:v2 docker-compose -p app -f compose.yaml up -d --remove-orphans"
            )),
            "{log:#?}"
        );
        // keep-images 2 of v2, v1, v0: v0 goes.
        assert!(log.iter().any(|l| l.contains("docker image rm") && l.ends_with("gangplank reg/app:v0")), "{log:#?}");
    }

    #[test]
    fn retention_keeps_newest_current_and_previous() {
        let tags: Vec<(String, String)> =
            ["v5", "v4", "<none>", "v3", "v2", "v1"].iter().map(|t| ("r/a".to_string(), t.to_string())).collect();
        assert_eq!(retention(&tags, 2, "v5", Some("v1")), vec!["r/a:v3", "r/a:v2"]);
        assert_eq!(retention(&tags, 1, "v3", None), vec!["r/a:v4", "r/a:v2", "r/a:v1"]);
    }
}
