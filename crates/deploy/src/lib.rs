//! The deploy engine behind `deploy-remote` and `rollback`.
//!
//! A run is a set of plans ([`plan`]): typed steps that carry their data, computed per host from what
//! preflight read, printed (with the exact commands) by `preflight-only`, and walked by the one
//! executor in [`engine`]. Per host: lock (repairing a host a killed run left mid-deploy) → stage the
//! uploads → switch (journal first, then backups, then the files) → pull + up → health gate → commit
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
pub mod plan;
pub mod preflight;
pub mod run;
pub mod state;

pub use gangplank_core::host::lock;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gangplank_core::actions::info;
use gangplank_core::error::{combine, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::input::{HostSpec, SshConfig};

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

/// Opens the connection to one host. Binaries pass the SSH executor; tests pass recordings.
pub type Connect<'a> = dyn FnMut(&HostSpec) -> Result<Box<dyn Executor>> + 'a;

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
        // The whole command on one line, as `preflight-only` prints it, so a test can compare the two.
        let line = cmd.display(self.0.sudo()).replace('\n', "⏎");
        info(format!("[trace {:>6.0} ms] $ {line}", t.elapsed().as_secs_f64() * 1000.0));
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
