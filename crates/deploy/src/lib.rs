//! The deploy engine behind `deploy-remote` and `rollback`.
//!
//! A run is a set of plans ([`plan`]): typed steps that carry their data, computed per host from what
//! preflight read, printed (with the exact commands) by `preflight-only`, and walked by the one
//! executor in [`engine`]. Per host: lock (repairing a host a killed run left mid-deploy) → registry login
//! → stage the uploads → pull (digests checked) → switch (journal first, then backups, then the files) →
//! `pre-deploy` hook → up → health gate → `post-deploy` hook ([`hooks`]) → commit
//! (state, audit, prune, unlock in one rename). A failed gate, a failed pull or `up`, a signal or a
//! lost connection walk the matching revert plan; hosts already changed are undone too.
//! Contract: docs/actions.md ("deploy-remote", "rollback"); host files: docs/host-layout.md.
//!
//! Invariant: every remote action is a [`gangplank_core::Cmd`] run through an [`Executor`]; one
//! executor (one SSH connection) per host serves the whole run, plus one reconnection to put a host
//! back after a lost connection. The engine never prints a secret: messages go through
//! [`gangplank_core::actions`], which redacts every registered value.

pub mod engine;
pub mod files;
pub mod health;
pub mod hooks;
pub mod model;
pub mod plan;
pub mod preflight;
pub mod registry;
pub mod rolling;
pub mod run;
pub mod state;
pub mod swarm;

pub use gangplank_core::host::lock;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gangplank_core::actions::info;
use gangplank_core::error::{combine, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::input::{HostSpec, SshConfig};
use gangplank_core::local::{FILES_TOTAL_LIMIT, FILE_LIMIT, TEXT_LIMIT};

pub use plan::{Plan, Step};
pub use run::{deploy, rollback};
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

/// `app-name` and `app-dir`: derived from the repository by the one function sync-secrets uses too.
pub use gangplank_core::app::{resolve_app, validate_app_name};

/// `health-url` must be an http(s) URL with a host when given, written without white space or control
/// characters (a URL parser would drop or encode them silently, and the URL is also a curl argument on
/// the host).
pub fn validate_health_url(url: Option<&str>) -> Result<()> {
    let Some(u) = url.filter(|u| !u.is_empty()) else { return Ok(()) };
    let parsed = reqwest::Url::parse(u).ok();
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
        && parsed.is_some_and(|p| p.host_str().is_some_and(|h| !h.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!("`health-url` {u:?} is not an http:// or https:// URL"))
            .hint("e.g. http://localhost:8080/health (probed on the host) or https://example.com/health; percent-encode spaces"))
    }
}

/// `services` entries are compose service names (`[A-Za-z0-9][A-Za-z0-9_.-]*`): anything else, above all a
/// name starting with `-`, would reach compose's command line as an option.
pub fn validate_services(services: &[String]) -> Result<()> {
    for s in services {
        let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(Error::bad_input(format!("`services` entry {s:?} is not a compose service name"))
                .hint("list service names as in the compose file (letters, digits, `_`, `.`, `-`, starting with a letter or digit)"));
        }
    }
    Ok(())
}

/// The deploy record as an output file: an existing file is ours when it has the record's fields.
pub const RECORD_OUTPUT: gangplank_core::local::Output = gangplank_core::local::Output {
    input: "record-file",
    keys: &["app", "hosts", "deployed_tag", "previous_tag", "status"],
};

/// Check the local files of a deploy before any connection (every problem at once): compose files and
/// `env-file` are regular files of at most [`TEXT_LIMIT`]; `files` entries are regular files or folders
/// whose files are regular and at most [`FILE_LIMIT`] each ([`FILES_TOTAL_LIMIT`] together); no symlink,
/// listed or inside a listed folder, leads outside the repository (the working directory) or outside
/// the listed entry; and nothing lands in `.gangplank/`, gangplank's own folder on the host. A file that
/// does not exist is left to preflight, which lists it with every other failure at once.
pub fn check_local_files(compose_files: &[PathBuf], files: &[PathBuf], env_file: Option<&Path>) -> Result<()> {
    use gangplank_core::local::read_input;
    let mut errs = vec![];
    // A missing file is left to preflight, which lists it with every other failure it finds.
    for (path, what) in
        compose_files.iter().map(|c| (c.as_path(), "compose file")).chain(env_file.map(|e| (e, "env-file")))
    {
        if path.exists() {
            if let Err(e) = read_input(path, what, TEXT_LIMIT) {
                errs.push(e);
            }
        }
    }
    let repo = std::env::current_dir().and_then(|d| d.canonicalize()).map_err(|e| {
        Error::bad_input(format!("the working directory cannot be read: {e}")).hint("run the step in the repository")
    })?;
    let mut total = 0u64;
    for f in files {
        let remote = if f.is_absolute() { f.file_name().map(PathBuf::from) } else { Some(f.clone()) };
        let own = remote.as_deref().and_then(|r| {
            r.components().find(|c| !matches!(c, std::path::Component::CurDir)).map(|c| c.as_os_str() == ".gangplank")
        });
        if own == Some(true) {
            errs.push(
                Error::bad_input(format!("`files` entry `{}` would be written into .gangplank/", f.display()))
                    .hint("`.gangplank/` in the app dir is gangplank's own state (lock, journal, backups); list files outside it"),
            );
            continue;
        }
        walk_entry(f, &repo, &mut total, &mut errs);
    }
    if total > FILES_TOTAL_LIMIT {
        errs.push(
            Error::bad_input(format!(
                "`files` hold {} together, more than {}",
                gangplank_core::input::format_size(total),
                gangplank_core::input::format_size(FILES_TOTAL_LIMIT)
            ))
            .hint("upload configuration and small assets with `files`; ship data in the image or a volume"),
        );
    }
    match combine(errs) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Check one `files` entry and, for a folder, everything under it (following symlinks that stay inside,
/// each folder once).
fn walk_entry(entry: &Path, repo: &Path, total: &mut u64, errs: &mut Vec<Error>) {
    let outside = |link: &Path, target: &Path| {
        Error::bad_input(format!(
            "`files` entry `{}` is or holds a symbolic link leading outside the repository: `{}` -> `{}`",
            entry.display(),
            link.display(),
            target.display()
        ))
        .hint("a link in `files` must point inside the repository; copy the file in instead, or remove the link")
    };
    // The listed entry itself may live anywhere (an absolute path is allowed); links inside it must stay in
    // the repository or in the entry.
    let is_link = std::fs::symlink_metadata(entry).is_ok_and(|m| m.file_type().is_symlink());
    let Ok(real) = entry.canonicalize() else {
        // Missing or a dangling link: preflight reports it with every other failure it finds.
        return;
    };
    if is_link && !real.starts_with(repo) {
        errs.push(outside(entry, &real));
        return;
    }
    let root = real.clone();
    let allowed = |p: &Path| p.starts_with(repo) || p.starts_with(&root);
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![(entry.to_path_buf(), real)];
    while let Some((shown, real)) = stack.pop() {
        let meta = match std::fs::metadata(&real) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.is_dir() {
            if !seen.insert(real.clone()) {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&real) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                let link = e.file_type().is_ok_and(|t| t.is_symlink());
                match p.canonicalize() {
                    Ok(target) if link && !allowed(&target) => errs.push(outside(&shown.join(e.file_name()), &target)),
                    // A link to a folder that holds it would be walked without end by the upload.
                    Ok(target) if link && real.starts_with(&target) => errs.push(
                        Error::bad_input(format!(
                            "`files` entry `{}` holds a symbolic link to a folder that contains it: `{}`",
                            entry.display(),
                            shown.join(e.file_name()).display()
                        ))
                        .hint("remove the link: it makes a loop"),
                    ),
                    Ok(target) => stack.push((shown.join(e.file_name()), target)),
                    Err(_) if link => errs.push(
                        Error::bad_input(format!(
                            "`files` entry `{}` holds a broken symbolic link `{}`",
                            entry.display(),
                            shown.join(e.file_name()).display()
                        ))
                        .hint("remove the link or make it point to a file in the repository"),
                    ),
                    Err(_) => {}
                }
            }
        } else if !meta.is_file() {
            errs.push(
                Error::bad_input(format!("`files` entry `{}` is not a regular file", shown.display()))
                    .hint("list regular files and folders, not devices, pipes or sockets"),
            );
        } else if meta.len() > FILE_LIMIT {
            errs.push(
                Error::bad_input(format!(
                    "`files` entry `{}` is larger than {}",
                    shown.display(),
                    gangplank_core::input::format_size(FILE_LIMIT)
                ))
                .hint("upload configuration and small assets with `files`; ship data in the image or a volume"),
            );
        } else {
            *total += meta.len();
        }
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
    /// How containers are replaced (issue 13): `recreate`, or `rolling` behind a proxy.
    pub strategy: rolling::Strategy,
    /// `pre-deploy` / `post-deploy` scripts, `hook-timeout`, `hooks-on` (crate::hooks).
    pub hooks: hooks::Hooks,
    pub health_url: Option<String>,
    pub health_timeout: Duration,
    pub auto_rollback: bool,
    pub keep_images: usize,
    /// Hosts deployed at once, in batches of this size, after every host is locked.
    pub max_parallel: usize,
    pub lock_timeout: Duration,
    pub force_unlock: bool,
    pub min_free_disk: u64,
    pub preflight_only: bool,
    pub record_file: PathBuf,
    pub meta: RunMeta,
    /// `registry`, `registry-username`, `registry-password`: a login on each host for this run's pulls.
    pub login: Option<registry::Login>,
    /// `expect-digests`: image name → `sha256:…` (push-registry's `digests`), checked before the switch.
    pub expect_digests: std::collections::BTreeMap<String, String>,
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
    /// Hosts rolled back at once (the first failure stops the run after its batch).
    pub max_parallel: usize,
    pub record_file: PathBuf,
    pub meta: RunMeta,
    /// A registry login on each host, for the images `up` must pull.
    pub login: Option<registry::Login>,
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
    /// Some host was changed during the run (also when it was put back): a workflow's cue that a
    /// rollback may be due.
    pub changed: bool,
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

/// Whether `changed=true` goes to `GITHUB_OUTPUT` the moment a host is first changed: 0 off, 1 armed, 2 written.
static EARLY_CHANGED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Write `changed=true` to `GITHUB_OUTPUT` as soon as the first host is changed, not only at the end: a run
/// killed before [`publish`] (the runner's SIGKILL after a cancel or a job timeout) still tells the workflow
/// that a host may differ from its last release, so its rollback step can fire. The runner reads the file
/// after the step however it ended, and the last value of a name wins, so the final `changed` (also `true`)
/// written by [`publish`] agrees. Only inside Actions: a local run prints its outputs once, at the end.
pub fn announce_changes_early() {
    if std::env::var_os("GITHUB_OUTPUT").is_some_and(|p| !p.is_empty()) {
        EARLY_CHANGED.store(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Called by the engine right before it changes a host (the file switch, `compose up`).
pub(crate) fn host_changing() {
    use std::sync::atomic::Ordering;
    if EARLY_CHANGED.compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        if let Err(e) = gangplank_core::actions::set_output("changed", "true") {
            gangplank_core::actions::warning("changed", e.message);
        }
    }
}

/// Opens the connection to one host. Binaries pass the SSH executor; tests pass recordings.
pub type Connect<'a> = dyn FnMut(&HostSpec) -> Result<Box<dyn Executor>> + Send + 'a;

/// `record-file` as given, or [`default_record_file`] when it is unset or empty.
pub fn record_file_or_default(given: Option<PathBuf>) -> PathBuf {
    given.filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| default_record_file("deploy-record.json"))
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
pub fn publish(mut out: Outcome, record_file: &std::path::Path, outputs: &[(&str, String)], title: &str) -> Result<()> {
    let mut errs = vec![];
    // The record lists every host's result, as the summary does (docs/actions.md, record file).
    out.record.results = out
        .rows
        .iter()
        .map(|r| state::HostResult {
            host: r.host.clone(),
            previous_tag: r.previous_tag.clone(),
            new_tag: r.new_tag.clone(),
            result: r.result.clone(),
        })
        .collect();
    if let Err(e) = out.record.write(record_file) {
        errs.push(e);
    }
    for (k, v) in outputs {
        if let Err(e) = gangplank_core::actions::set_output(k, v) {
            errs.push(e);
        }
    }
    let _ = gangplank_core::actions::set_output("record-file", &record_file.to_string_lossy());
    let _ = gangplank_core::actions::set_output("changed", &out.changed.to_string());
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
    fn set_interruptible(&mut self, on: bool) {
        self.0.set_interruptible(on)
    }
    fn exec(&mut self, cmd: &gangplank_core::cmd::Cmd, stdin: Option<&[u8]>) -> Result<gangplank_core::exec::Output> {
        let t = Instant::now();
        let r = self.0.exec(cmd, stdin);
        self.trace(cmd, t);
        r
    }
    fn run_streamed(&mut self, cmd: &gangplank_core::cmd::Cmd) -> Result<gangplank_core::exec::Output> {
        let t = Instant::now();
        let r = self.0.run_streamed(cmd);
        self.trace(cmd, t);
        r
    }
}

impl Traced {
    /// The whole command on one line, as `preflight-only` prints it (so a test can compare the two), and its time.
    fn trace(&self, cmd: &gangplank_core::cmd::Cmd, started: Instant) {
        let line = cmd.display(self.0.sudo()).replace('\n', "⏎");
        info(format!("[trace {:>6.0} ms] $ {line}", started.elapsed().as_secs_f64() * 1000.0));
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
    use std::sync::{Arc, Mutex};

    fn config(dir: &std::path::Path, tag: &str, hosts: &[&str]) -> DeployConfig {
        std::fs::write(dir.join("compose.yaml"), "services:\n  web:\n    image: \"reg/app:${IMAGE_TAG}\"\n").unwrap();
        DeployConfig {
            ssh: SshConfig {
                hosts: hosts
                    .iter()
                    .map(|h| HostSpec { user: "deploy".into(), host: h.to_string(), port: 22 })
                    .collect(),
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
            strategy: rolling::Strategy::Recreate,
            hooks: hooks::Hooks::default(),
            health_url: None,
            health_timeout: Duration::from_millis(300),
            auto_rollback: true,
            keep_images: 5,
            max_parallel: 1,
            lock_timeout: Duration::from_secs(1),
            force_unlock: false,
            min_free_disk: 1,
            preflight_only: false,
            record_file: dir.join("record.json"),
            meta: RunMeta::default(),
            login: None,
            expect_digests: Default::default(),
        }
    }

    #[test]
    fn expect_digests_is_refused_on_swarm_rather_than_left_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), "v1", &["a"]);
        assert!(swarm::check_deploy_inputs(&cfg).is_ok());
        cfg.expect_digests = [("reg/app".to_string(), format!("sha256:{}", "a".repeat(64)))].into();
        let e = swarm::check_deploy_inputs(&cfg).unwrap_err();
        assert_eq!(e.class, gangplank_core::error::Class::BadInput);
        assert!(e.message.contains("`expect-digests` is not checked on `target: swarm`"), "{}", e.message);
        assert!(e.hint.as_deref().unwrap_or("").contains("@sha256:"), "{:?}", e.hint);
    }

    const STATE_V1: &str =
        r#"{"app":"app","current":{"tag":"v1","deployed_at":"t","compose_files":["compose.yaml"]},"history":[]}"#;
    const RUNNING: &str = r#"[{"Id":"c1","Name":"/app_web_1","Image":"sha256:abc","State":{"Status":"running","Running":true},"Config":{"Labels":{"com.docker.compose.service":"web"}}}]"#;
    const EXITED: &str = r#"[{"Id":"c1","Name":"/app_web_1","Image":"sha256:abc","State":{"Status":"exited","Running":false,"ExitCode":3},"Config":{"Labels":{"com.docker.compose.service":"web"}}}]"#;

    /// A recording host whose log the test keeps; `gate` is what `docker inspect` answers.
    struct Shared(Recording, Arc<Mutex<Vec<String>>>);
    impl Executor for Shared {
        fn label(&self) -> &str {
            self.0.label()
        }
        fn sudo(&self) -> bool {
            false
        }
        fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<gangplank_core::Output> {
            let o = self.0.exec(cmd, stdin);
            self.1.lock().unwrap().push(self.0.log.last().unwrap().clone());
            o
        }
    }

    fn host(label: &str, log: &Arc<Mutex<Vec<String>>>, inspect: &str, state: &str) -> Box<dyn Executor> {
        let r = Recording::new(label, false)
            .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{state}")))
            .reply(
                "APP_DIR_CHECK",
                Output::ok(format!("root=/var/lib/docker\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{state}")),
            )
            .reply("label=com.docker.compose.project", Output::ok(inspect));
        Box::new(Shared(r, log.clone()))
    }

    /// Each command of a log, named by what it does.
    fn names(log: &[String]) -> Vec<&'static str> {
        log.iter()
            .map(|l| {
                for (needle, name) in [
                    ("gangplank-hook", "hook"),
                    ("APP_DIR_CHECK", "preflight"),
                    ("mkdir -- \"$lock\"", "lock"),
                    ("refusing to write through it\" >&2; exit 1; fi\ndone\numask", "stage"),
                    ("gangplank-tmp", "upload"),
                    ("cmp -s", "switch"),
                    ("docker pull -q", "pull"),
                    ("docker login", "login"),
                    ("pull --quiet", "compose pull"),
                    ("config) || exit", "config"),
                    ("echo unreadable", "env keys"),
                    ("RepoDigests", "digests"),
                    ("gangplank-restore", "restore"),
                    ("nrepos=$6", "record"),
                    ("down --remove-orphans", "down"),
                    ("up -d --remove-orphans", "up"),
                    ("label=com.docker.compose.project", "inspect"),
                    ("docker logs", "logs"),
                    ("grep -qF", "unlock"),
                ] {
                    if l.contains(needle) {
                        return name;
                    }
                }
                "other"
            })
            .collect()
    }

    #[test]
    fn a_deploy_walks_its_plan_over_one_connection_per_host() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1"]);
        let log = Arc::new(Mutex::new(vec![]));
        let mut connects = 0;
        let mut connect = |h: &HostSpec| {
            connects += 1;
            Ok(host(&h.to_string(), &log, RUNNING, STATE_V1))
        };
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(
            (out.record.status.as_str(), out.record.previous_tag.as_str(), out.changed),
            ("deployed", "v1", true)
        );
        assert_eq!(connects, 1);
        assert_eq!(
            names(&log.lock().unwrap()),
            vec!["preflight", "lock", "stage", "upload", "pull", "switch", "up", "inspect", "record"]
        );
    }

    #[test]
    fn a_later_host_that_fails_puts_every_host_back_even_when_its_own_rollback_fails() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1", "h2"]);
        let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..2).map(|_| Arc::new(Mutex::new(vec![]))).collect();
        let mut connect = |h: &HostSpec| {
            let i = if h.host == "h1" { 0 } else { 1 };
            Ok(host(&h.to_string(), &logs[i], if i == 0 { RUNNING } else { EXITED }, STATE_V1))
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("the run fails");
        assert_eq!(e.exit_code(), 1);
        // h2's previous release does not pass its gate either (the recording answers `exited`).
        assert!(e.message.contains("putting the previous release back failed too"), "{}", e.message);
        assert!(e.hint.as_deref().unwrap().contains("journal"));
        assert!(!out.rolled_back && out.changed);
        assert_eq!(out.record.status, "failed");
        let h1 = names(&logs[0].lock().unwrap());
        assert_eq!(
            &h1[h1.len() - 5..],
            ["lock", "restore", "up", "inspect", "record"],
            "h1 is undone after h2 failed: {h1:?}"
        );
        let h2 = names(&logs[1].lock().unwrap());
        assert_eq!(&h2[h2.len() - 6..], ["logs", "restore", "up", "inspect", "logs", "record"], "{h2:?}");
        assert_eq!(
            out.rows.iter().map(|r| r.result.as_str()).collect::<Vec<_>>(),
            ["rolled back (another host failed)", "failed"]
        );
    }

    /// How [`Faulty`] fails its step.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fault {
        /// The command exits 1.
        Status,
        /// The connection is lost while it runs.
        Lost,
        /// SIGINT/SIGTERM arrives while it runs.
        Interrupted,
    }

    /// A recording host whose first command named `at` (by [`names`]) fails as `fault`.
    struct Faulty {
        inner: Box<dyn Executor>,
        at: &'static str,
        fault: Fault,
        fired: Arc<Mutex<bool>>,
    }
    impl Executor for Faulty {
        fn label(&self) -> &str {
            self.inner.label()
        }
        fn sudo(&self) -> bool {
            false
        }
        fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<gangplank_core::Output> {
            let out = self.inner.exec(cmd, stdin)?;
            let mut fired = self.fired.lock().unwrap();
            if *fired || names(&[cmd.display(false)])[0] != self.at {
                return Ok(out);
            }
            *fired = true;
            match self.fault {
                Fault::Status => Ok(Output { status: 1, stdout: vec![], stderr: b"injected".to_vec() }),
                Fault::Lost => Err(Error::lost("injected: connection lost")),
                Fault::Interrupted => Err(Error::interrupted("injected: interrupted")),
            }
        }
    }

    /// Every step of a deploy of v2 over v1 failing each way, on the recording executor: before the switch
    /// nothing is put back and the lock is released; from the switch on, the previous release's files come back,
    /// v1 is started again once v2's `up` ran, and the outcome is recorded; an interrupt is exit 4, every other
    /// failure exit 1; at most one reconnection.
    #[test]
    fn every_step_failing_every_way_leaves_the_previous_release_or_nothing_changed() {
        for at in ["stage", "upload", "pull", "switch", "up", "inspect"] {
            for fault in [Fault::Status, Fault::Lost, Fault::Interrupted] {
                let d = tempfile::tempdir().unwrap();
                let mut cfg = config(d.path(), "v2", &["h1"]);
                cfg.health_timeout = Duration::from_millis(50);
                let log = Arc::new(Mutex::new(vec![]));
                let fired = Arc::new(Mutex::new(false));
                let mut connects = 0;
                let mut connect = |h: &HostSpec| {
                    connects += 1;
                    let inner = host(&h.to_string(), &log, RUNNING, STATE_V1);
                    Ok(Box::new(Faulty { inner, at, fault, fired: fired.clone() }) as Box<dyn Executor>)
                };
                let out = deploy(&cfg, &mut connect);
                let log = log.lock().unwrap().clone();
                let steps = names(&log);
                let case = format!("{at} {fault:?}: {steps:?}");
                let failed = steps.iter().position(|s| *s == at).unwrap_or_else(|| panic!("{case}"));
                let after = &steps[failed + 1..];
                let e = out.error.as_ref().unwrap_or_else(|| panic!("{case}: no error"));
                let code = if fault == Fault::Interrupted { 4 } else { 1 };
                assert_eq!(e.exit_code(), code, "{case}: {}", e.message);
                assert!(connects <= 2, "{case}: at most one reconnection");
                let switched = !matches!(at, "stage" | "upload" | "pull");
                if switched {
                    assert!(out.changed, "{case}");
                    let restore = after.iter().position(|s| *s == "restore").unwrap_or_else(|| panic!("{case}"));
                    // Once `up` of v2 ran, v1 is started again; a failed switch changed no container.
                    if at == "switch" {
                        assert!(!after.contains(&"up"), "{case}");
                    } else {
                        let up = log.iter().rposition(|l| names(std::slice::from_ref(l))[0] == "up");
                        let up = up.unwrap_or_else(|| panic!("{case}: v1 never started again"));
                        assert!(up > failed + restore && log[up].contains("IMAGE_TAG=v1"), "{case}: {}", log[up]);
                    }
                    assert_eq!(after.last(), Some(&"record"), "{case}");
                } else {
                    assert!(!out.changed, "{case}");
                    assert!(!after.contains(&"restore") && !after.contains(&"up"), "{case}");
                    assert_eq!(after.last(), Some(&"unlock"), "{case}");
                }
            }
        }
    }

    #[test]
    fn a_redeploy_of_the_running_tag_is_not_its_own_previous() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1"]);
        let state = r#"{"app":"app","current":{"tag":"v2","deployed_at":"t","compose_files":["compose.yaml"]},"history":[{"tag":"v1","deployed_at":"t0","status":"replaced"}]}"#;
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, RUNNING, state));
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.record.previous_tag, "v1", "a rollback goes back to v1, not to v2 again");
        assert_eq!(out.rows[0].previous_tag, "v1");
    }

    #[test]
    fn every_host_is_locked_before_any_host_changes() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1", "h2"]);
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, RUNNING, STATE_V1));
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        let n = names(&log.lock().unwrap());
        assert_eq!(&n[..5], ["preflight", "preflight", "lock", "lock", "stage"], "{n:?}");
    }

    #[test]
    fn a_host_whose_lock_is_held_stops_the_run_before_any_host_changes() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1", "h2"]);
        cfg.lock_timeout = std::time::Duration::ZERO;
        let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..2).map(|_| Arc::new(Mutex::new(vec![]))).collect();
        let mut connect = |h: &HostSpec| {
            let i = if h.host == "h1" { 0 } else { 1 };
            let mut r = Recording::new(&h.to_string(), false).reply(
                "APP_DIR_CHECK",
                Output::ok(format!("root=/r\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{STATE_V1}")),
            );
            r = if i == 0 {
                r.reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{STATE_V1}")))
            } else {
                let owner = r#"{"id":"x","action":"deploy","tag":"v9","run_url":"","pid":1}"#;
                r.reply("mkdir -- \"$lock\"", Output { status: 3, stdout: owner.into(), stderr: vec![] })
            };
            Ok(Box::new(Shared(r, logs[i].clone())) as Box<dyn Executor>)
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("the run stops");
        assert_eq!(e.exit_code(), 3, "{}", e.message);
        assert!(!out.changed);
        assert_eq!(names(&logs[0].lock().unwrap()), ["preflight", "lock", "unlock"], "h1 is unlocked unchanged");
    }

    #[test]
    fn hosts_deployed_at_once_all_go_back_when_one_fails() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1", "h2", "h3"]);
        cfg.max_parallel = 2;
        let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..3).map(|_| Arc::new(Mutex::new(vec![]))).collect();
        let mut connect = |h: &HostSpec| {
            let i: usize = h.host[1..].parse::<usize>().unwrap() - 1;
            Ok(host(&h.to_string(), &logs[i], if i == 1 { EXITED } else { RUNNING }, STATE_V1))
        };
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_some());
        let h1 = names(&logs[0].lock().unwrap());
        assert_eq!(&h1[h1.len() - 4..], ["restore", "up", "inspect", "record"], "h1 went back: {h1:?}");
        assert_eq!(names(&logs[2].lock().unwrap()), ["preflight", "lock", "unlock"], "h3 was never changed");
        assert_eq!(
            out.rows.iter().map(|r| r.result.as_str()).collect::<Vec<_>>(),
            ["rolled back (another host failed)", "failed", "not changed (an earlier host failed)"]
        );
    }

    #[test]
    fn a_first_deploy_that_fails_is_taken_down_and_its_files_removed() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v1", &["h1"]);
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, EXITED, ""));
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("fails");
        assert!(e.message.contains("first deploy, so it was stopped and its files removed"), "{}", e.message);
        assert!(!out.rolled_back);
        let n = names(&log.lock().unwrap());
        assert_eq!(&n[n.len() - 4..], ["logs", "down", "restore", "record"], "{n:?}");
    }

    /// A host whose pull answers `pull`, and whose login answers `login`.
    fn pulling_host(label: &str, log: &Arc<Mutex<Vec<String>>>, pull: Output, login: Output) -> Box<dyn Executor> {
        let r = Recording::new(label, false)
            .reply("docker pull -q", pull)
            .reply("docker login", login)
            .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{STATE_V1}")))
            .reply(
                "APP_DIR_CHECK",
                Output::ok(format!("root=/r\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{STATE_V1}")),
            )
            .reply("label=com.docker.compose.project", Output::ok(RUNNING));
        Box::new(Shared(r, log.clone()))
    }

    #[test]
    fn a_failed_pull_comes_before_the_switch_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1"]);
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| {
            let fail = Output { status: 90, stdout: vec![], stderr: b"manifest unknown".to_vec() };
            Ok(pulling_host(&h.to_string(), &log, fail, Output::ok("")))
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("fails");
        assert_eq!(e.exit_code(), 1);
        assert!(e.message.contains("pulling `v2` on deploy@h1:22 failed: manifest unknown"), "{}", e.message);
        assert!(!out.changed);
        let n = names(&log.lock().unwrap());
        assert_eq!(n, ["preflight", "lock", "stage", "upload", "pull", "unlock"], "{n:?}");
    }

    #[test]
    fn a_digest_that_differs_stops_the_deploy_before_the_switch() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1"]);
        let (want, got) = (format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64)));
        cfg.expect_digests = [("app".to_string(), want.clone())].into();
        let log = Arc::new(Mutex::new(vec![]));
        let answer = format!("digests\treg/app:v2\treg/app@{got}\n");
        let mut connect =
            |h: &HostSpec| Ok(pulling_host(&h.to_string(), &log, Output::ok(answer.clone()), Output::ok("")));
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("refused");
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.message.contains("service `web`") && e.message.contains(&want) && e.message.contains(&got),
            "{}",
            e.message
        );
        assert!(!out.changed);
        assert_eq!(names(&log.lock().unwrap()), ["preflight", "lock", "stage", "upload", "pull", "unlock"]);

        // The expected digest passes, and the record keeps the digest of what runs.
        let log = Arc::new(Mutex::new(vec![]));
        let running = RUNNING.replace(r#""Config":{"#, r#""Config":{"Image":"reg/app:v2","#);
        let answer = format!("digests\treg/app:v2\treg/app@{want}\n");
        let mut connect = |h: &HostSpec| {
            let r = Recording::new(&h.to_string(), false)
                .reply("docker pull -q", Output::ok(answer.clone()))
                .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{STATE_V1}")))
                .reply(
                    "APP_DIR_CHECK",
                    Output::ok(format!("root=/r\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{STATE_V1}")),
                )
                .reply("label=com.docker.compose.project", Output::ok(running.clone()));
            Ok(Box::new(Shared(r, log.clone())) as Box<dyn Executor>)
        };
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.record.digests.get("web"), Some(&format!("reg/app@{want}")));
    }

    #[test]
    fn images_compose_resolves_are_checked_after_its_pull_and_a_mismatch_puts_the_files_back() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1"]);
        std::fs::write(d.path().join("compose.yaml"), "services:\n  web:\n    image: \"${REG}/app:${IMAGE_TAG}\"\n")
            .unwrap();
        let (want, got) = (format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64)));
        cfg.expect_digests = [("app".to_string(), want.clone())].into();
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| {
            let r = Recording::new(&h.to_string(), false)
                .reply("config) || exit", Output::ok("image\tweb\treg.example/app:v2\n"))
                .reply("RepoDigests", Output::ok(format!("digests\treg.example/app:v2\treg.example/app@{got}\n")))
                .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{STATE_V1}")))
                .reply(
                    "APP_DIR_CHECK",
                    Output::ok(format!("root=/r\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{STATE_V1}")),
                )
                .reply("label=com.docker.compose.project", Output::ok(RUNNING));
            Ok(Box::new(Shared(r, log.clone())) as Box<dyn Executor>)
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("refused");
        assert_eq!(e.exit_code(), 1);
        assert!(e.message.contains("service `web`") && e.message.contains(&got), "{}", e.message);
        assert!(e.message.contains("`v1` kept serving and its files are back"), "{}", e.message);
        let n = names(&log.lock().unwrap());
        // REG is no variable of the runner's: its key is looked up in the host's `.env` first.
        assert_eq!(&n[..2], ["env keys", "preflight"], "{n:?}");
        assert_eq!(&n[5..], ["switch", "compose pull", "config", "digests", "restore", "record"], "{n:?}");
    }

    #[test]
    fn expect_digests_that_name_no_deployed_image_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1"]);
        cfg.expect_digests = [("other".to_string(), format!("sha256:{}", "a".repeat(64)))].into();
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, RUNNING, STATE_V1));
        let e = deploy(&cfg, &mut connect).error.expect("refused");
        assert_eq!(e.exit_code(), 2, "{}", e.message);
        assert!(e.message.contains("no `expect-digests` key (other) names an image"), "{}", e.message);
    }

    #[test]
    fn a_refused_login_stops_every_host_before_any_changes() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1", "h2"]);
        cfg.login = Some(registry::Login {
            registry: "127.0.0.1:5000".into(),
            username: "ci".into(),
            password: Secret::new("unit-pw-canary"),
        });
        let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..2).map(|_| Arc::new(Mutex::new(vec![]))).collect();
        let mut connect = |h: &HostSpec| {
            let i = if h.host == "h1" { 0 } else { 1 };
            let login = if i == 0 {
                Output::ok("")
            } else {
                Output { status: 1, stdout: vec![], stderr: b"Error response from daemon: unauthorized: no".to_vec() }
            };
            Ok(pulling_host(&h.to_string(), &logs[i], Output::ok(""), login))
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("refused");
        assert_eq!(e.exit_code(), 2, "{}", e.message);
        assert!(
            e.message.starts_with("the registry 127.0.0.1:5000 refused the login of `ci` on deploy@h2:22"),
            "{}",
            e.message
        );
        assert!(!out.changed);
        assert_eq!(names(&logs[0].lock().unwrap()), ["preflight", "lock", "login", "unlock"]);
        assert_eq!(names(&logs[1].lock().unwrap()), ["preflight", "lock", "login", "unlock"]);
        for l in logs.iter().flat_map(|l| l.lock().unwrap().clone()) {
            assert!(!l.contains("canary"), "{l}");
        }
    }

    #[test]
    fn hooks_run_after_the_pull_and_switch_and_after_the_gate_and_a_failed_pre_deploy_restarts_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1"]);
        cfg.hooks =
            hooks::Hooks::new(Some("migrate".into()), Some("smoke".into()), Duration::from_secs(5), "every").unwrap();
        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, RUNNING, STATE_V1));
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(
            names(&log.lock().unwrap()),
            vec!["preflight", "lock", "stage", "upload", "pull", "switch", "hook", "up", "inspect", "hook", "record"]
        );

        let log = Arc::new(Mutex::new(vec![]));
        let mut connect = |h: &HostSpec| {
            let r = Recording::new(&h.to_string(), false)
                .reply("gangplank-hook", Output { status: 3, stdout: b"no".to_vec(), stderr: vec![] })
                .reply("mkdir -- \"$lock\"", Output::ok(format!("acquired\n{STATE_V1}")))
                .reply(
                    "APP_DIR_CHECK",
                    Output::ok(format!("root=/r\ncompose=v1\ndf=1048576\nappdir=ok\n@@state\n{STATE_V1}")),
                );
            Ok(Box::new(Shared(r, log.clone())) as Box<dyn Executor>)
        };
        let out = deploy(&cfg, &mut connect);
        let e = out.error.expect("fails");
        assert!(e.message.contains("(exit 3)") && e.message.contains("nothing was restarted"), "{}", e.message);
        assert!(!out.rolled_back && out.record.status == "failed");
        let n = names(&log.lock().unwrap());
        assert_eq!(&n[n.len() - 4..], ["switch", "hook", "restore", "record"], "{n:?}");
    }

    #[test]
    fn hooks_on_first_runs_them_on_the_first_host_only() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = config(d.path(), "v2", &["h1", "h2"]);
        cfg.max_parallel = 2;
        cfg.hooks =
            hooks::Hooks::new(Some("migrate".into()), Some("smoke".into()), Duration::from_secs(5), "first").unwrap();
        let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..2).map(|_| Arc::new(Mutex::new(vec![]))).collect();
        let mut connect = |h: &HostSpec| {
            let i = if h.host == "h1" { 0 } else { 1 };
            Ok(host(&h.to_string(), &logs[i], RUNNING, STATE_V1))
        };
        let out = deploy(&cfg, &mut connect);
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(names(&logs[0].lock().unwrap()).iter().filter(|n| **n == "hook").count(), 2);
        assert!(!names(&logs[1].lock().unwrap()).contains(&"hook"));
    }

    #[test]
    fn the_plan_is_data_and_renders_every_step() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "v2", &["h1"]);
        let log = Arc::new(Mutex::new(vec![]));
        let mut cfg2 = cfg.clone();
        cfg2.preflight_only = true;
        let mut connect = |h: &HostSpec| Ok(host(&h.to_string(), &log, RUNNING, STATE_V1));
        let out = deploy(&cfg2, &mut connect);
        assert!(out.error.is_none());
        assert_eq!(out.record.status, "preflight-passed");
        assert_eq!(names(&log.lock().unwrap()), vec!["preflight"], "preflight-only runs nothing else");
    }

    #[test]
    fn retention_keeps_newest_current_and_previous() {
        let tags: Vec<(String, String)> =
            ["v5", "v4", "<none>", "v3", "v2", "v1"].iter().map(|t| ("r/a".to_string(), t.to_string())).collect();
        assert_eq!(engine::retention(&tags, 2, "v5", Some("v1")), vec!["r/a:v3", "r/a:v2"]);
        assert_eq!(engine::retention(&tags, 1, "v3", None), vec!["r/a:v4", "r/a:v2", "r/a:v1"]);
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
}
