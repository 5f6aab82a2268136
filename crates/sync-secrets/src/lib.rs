//! `sync-secrets`: make GitHub secrets/variables and the server `.env` match one manifest
//! (docs/actions.md "sync-secrets", docs/secrets-manifest.md).
//!
//! Order of work: read the manifest and the values, masking every secret value before anything is
//! printed → validate every value (a failure stops here with exit 2: nothing was read from or written to
//! any target) → `check` ends here → connect to every host of the `env-file` target and run its preflight
//! (host key, login, sudo, app dir writable or creatable, no symlink in the way, who holds the lock; every
//! failure of every host at once, exit 2, before GitHub is read) → plan per target (GitHub lists, hashes of
//! the host's `.env`) → print the plan and write the plan file → `apply` takes the lock of every host it will
//! write, then writes GitHub, then each host's `.env`, then releases the locks.
//!
//! Choices where the contract is silent:
//! - `pattern` is searched in the value (as JSON Schema's `pattern` is), so `'^sk-or-'` checks a prefix;
//!   anchor both ends to match the whole value.
//! - placeholder detection applies to secrets by default; a `secret: false` entry opts in with its own
//!   `placeholders:`.
//! - GitHub never shows a secret's value, so an existing secret is `unknown` (written again by `apply`, counted
//!   apart from `update`); variables are compared.
//! - an org entry without `visibility` is `private`.
//! - in `plan`, the `created`/`updated`/`deleted`/`unchanged` outputs count what `apply` would do.
//! - `apply` takes the deploy lock of every host whose `.env` differs before the first write anywhere, as
//!   deploy-remote locks every host before it changes one: a lock that is not released within `lock-timeout`
//!   is exit 3 with GitHub untouched. It reads the file's hashes again under the lock, so the audit line says
//!   what really changed; `check` and `plan` never lock.
//! - a missing app dir is created when the SSH user may (its nearest existing parent is writable to it);
//!   otherwise preflight refuses it with the one-time `sudo install -d` that makes it ([`hosts`]).
//! - SIGINT/SIGTERM once locks are held: GitHub writes stop at once, a host write in progress finishes (it
//!   is atomic and takes a moment), every lock is released, no further host is written, exit 4. Before
//!   that phase a signal ends the process at once, as nothing it could leave behind needs cleaning up.

pub mod envfile;
pub mod github;
pub mod hosts;
pub mod manifest;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use gangplank_core::actions::{self, info};
use gangplank_core::error::combine;
use gangplank_core::host::{lock, now_rfc3339, AuditLine, RunMeta};
use gangplank_core::input::{absolute_path, parse_bool, parse_duration, parse_list, SshArgs};
use gangplank_core::local;
use gangplank_core::{process, Class, Error, Executor, Result, Secret};
use serde_json::{json, Value as Json};

use crate::github::{Gh, Method};
use crate::manifest::{Entry, GhScope, Manifest, Target, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Validate values; no network
    Check,
    /// Show what would change; no writes
    Plan,
    /// Make every target match
    Apply,
}

fn secret_value(s: &str) -> std::result::Result<Secret, String> {
    Ok(Secret::new(s))
}

/// Inputs of the sync-secrets action (flag `--foo-bar` = env `INPUT_FOO_BAR`).
#[derive(Debug, Parser)]
#[command(
    name = "sync-secrets",
    version,
    about = "Make GitHub secrets/variables and the server .env match one manifest"
)]
pub struct Args {
    /// The secrets manifest
    #[arg(long, env = "INPUT_MANIFEST", default_value = ".github/secrets.yml")]
    pub manifest: PathBuf,

    /// Dotenv file with values; environment variables named as the entries win over it
    #[arg(long, env = "INPUT_VALUES_FILE")]
    pub values_file: Option<PathBuf>,

    /// check (validate, no network), plan (show changes), apply
    #[arg(long, env = "INPUT_MODE", value_enum, default_value = "plan")]
    pub mode: Mode,

    /// Subset of targets: github, env-file [default: every target in the manifest]
    #[arg(long, env = "INPUT_TARGETS")]
    pub targets: Option<String>,

    /// Token for the github target (a PAT or app token: GITHUB_TOKEN cannot write secrets)
    #[arg(long, env = "INPUT_GITHUB_TOKEN", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    pub github_token: Option<Secret>,

    /// GitHub API URL [default: $GITHUB_API_URL or https://api.github.com]
    #[arg(long, env = "INPUT_API_URL")]
    pub api_url: Option<String>,

    /// owner/name [default: $GITHUB_REPOSITORY]
    #[arg(long, env = "INPUT_REPOSITORY")]
    pub repository: Option<String>,

    /// Delete GitHub secrets/variables that the manifest marks retired
    #[arg(long, env = "INPUT_PRUNE", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub prune: bool,

    /// GitHub requests in flight at once
    #[arg(long, env = "INPUT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,

    /// Least time between the starts of two GitHub writes (GitHub's advice: 1s); `0s` turns pacing off
    #[arg(long, env = "INPUT_WRITE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub write_interval: Duration,

    /// Retries of one GitHub request after rate limits or server errors
    #[arg(long, env = "INPUT_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,

    /// Where the plan (JSON, no values) is written [default: $RUNNER_TEMP/gangplank/secrets-plan.json]
    #[arg(long, env = "INPUT_PLAN_FILE")]
    pub plan_file: Option<PathBuf>,

    #[command(flatten)]
    pub ssh: SshArgs,

    /// Application directory on the host [default: /opt/<repository name>]
    #[arg(long, env = "INPUT_APP_DIR")]
    pub app_dir: Option<String>,

    /// Path of the server .env [default: <app-dir>/.env]
    #[arg(long, env = "INPUT_REMOTE_ENV_PATH")]
    pub remote_env_path: Option<String>,

    /// Backups of the server .env to keep
    #[arg(long, env = "INPUT_KEEP_BACKUPS", default_value_t = 10)]
    pub keep_backups: usize,

    /// How long apply waits for the host's deploy lock before exit 3 (env-file target)
    #[arg(long, env = "INPUT_LOCK_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Prometheus textfile (`*.prom`) on the runner to count apply runs in [default: none]
    #[arg(long, env = "INPUT_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Create,
    Update,
    Delete,
    Unchanged,
    /// An existing secret: GitHub never shows its value, so whether `apply` changes it cannot be known. It is
    /// written again by `apply` and counted apart, never as `update`: a nightly `plan` would otherwise report
    /// every secret as changed every night. (A digest of the value stored next to it would make this
    /// decidable, but a plain hash can be brute-forced for short values, and a keyed one needs a key that is
    /// itself a secret the step must be given; "unknown" is honest without either.)
    Unknown,
    Invalid,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Unchanged => "unchanged",
            Action::Unknown => "unknown",
            Action::Invalid => "invalid",
        }
    }
}

/// One line of the report and of the plan file: never a value.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub target: String,
    pub place: String,
    pub action: Action,
    pub rule: String,
}

enum OpKind {
    PutSecret,
    CreateVar,
    UpdateVar,
    DeleteSecret,
    DeleteVar,
}

struct Op {
    kind: OpKind,
    scope: GhScope,
    name: String,
    value: Option<String>,
    org: Option<(manifest::OrgVisibility, Vec<u64>)>,
}

fn scope_label(repo: &str, s: &GhScope) -> String {
    match s {
        GhScope::Repo => format!("repo {repo}"),
        GhScope::Env(e) => format!("environment {e}"),
        GhScope::Org(o) => format!("org {o}"),
    }
}

/// The binary's body: inputs → plan → (apply) → report, outputs, summary; an `apply` is counted in
/// `metrics-file` whatever its end.
pub fn run(mut args: Args) -> Result<()> {
    let metrics_file = gangplank_core::metrics::from_input(args.metrics_file.take())?;
    let apply = args.mode == Mode::Apply;
    let result = sync(args);
    if apply {
        let r = if result.is_ok() { "ok" } else { "failed" };
        gangplank_core::metrics::record_or_warn(
            metrics_file.as_deref(),
            &gangplank_core::metrics::Event::SecretSync { result: r },
        );
    }
    result
}

fn sync(args: Args) -> Result<()> {
    // Masks first: nothing is printed before every secret value is registered.
    let loaded = manifest::load(&args.manifest);
    let values = manifest::load_values(loaded.as_ref().ok(), args.values_file.as_deref(), &|k| std::env::var(k).ok())?;
    let m = loaded?;
    PLAN_OUTPUT.check(&plan_file(&args))?;

    let targets = selected_targets(&args, &m)?;
    let _g = actions::group("validate");
    let findings = manifest::validate(&m, &values);
    drop(_g);
    let mut items = Vec::new();
    for f in &findings {
        if !f.fatal {
            actions::warning("placeholder", format!("{}: {} (placeholders: warn)", f.key, f.rule));
        }
    }
    let fatal: Vec<&manifest::Finding> = findings.iter().filter(|f| f.fatal).collect();
    for f in &fatal {
        let e = m.get(&f.key);
        let t = e
            .map(|e| e.targets.iter().filter(|t| targets.contains(t)).map(|t| t.name()).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        items.push(Item {
            key: f.key.clone(),
            target: t,
            place: String::new(),
            action: Action::Invalid,
            rule: f.rule.clone(),
        });
    }
    let invalid_keys = {
        let mut k: Vec<&str> = fatal.iter().map(|f| f.key.as_str()).collect();
        k.dedup();
        k.len()
    };

    if !fatal.is_empty() || args.mode == Mode::Check {
        finish(&args, &items, invalid_keys)?;
        if fatal.is_empty() {
            info(format!("all {} entries of the manifest are valid", m.entries.len()));
            return Ok(());
        }
        let list: Vec<String> = fatal.iter().map(|f| format!("{} ({})", f.key, f.rule)).collect();
        return Err(Error::bad_input(format!(
            "{invalid_keys} value(s) failed validation, so nothing was written: {}",
            list.join(", ")
        ))
        .hint("fix the values (values-file or environment variables) or the manifest's rules, then run again"));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;

    // Inputs for every selected target, checked before any network use.
    let gh_cfg = if targets.contains(&Target::Github) { Some(github_config(&args)?) } else { None };
    let env_cfg = if targets.contains(&Target::EnvFile) { Some(env_config(&args)?) } else { None };

    // Every host first: its key, the login and a preflight that changes nothing, all failures at once,
    // before GitHub is even read. A host that would refuse the `.env` stops the run with nothing changed
    // anywhere (exit 2); GitHub, written first in `apply`, cannot be put back.
    let mut hosts: Vec<HostRun> = Vec::new();
    if let Some(cfg) = &env_cfg {
        let _g = actions::group("preflight: hosts");
        hosts = preflight_hosts(cfg, args.mode == Mode::Apply)?;
    }

    // Plan.
    let mut gh_plan = None;
    if let Some((api, token, repo)) = &gh_cfg {
        let _g = actions::group("plan: github");
        // octocrab's client spawns its worker on the runtime when it is built.
        let _rt = rt.enter();
        let gh = Gh::new(api, token, repo, args.concurrency as usize, args.max_retries, args.write_interval)?;
        let (gi, ops, keys) = rt.block_on(plan_github(&gh, &m, &values, args.prune, args.mode == Mode::Apply))?;
        items.extend(gi);
        gh_plan = Some((gh, ops, keys));
    }
    let mut env_content = String::new();
    if let Some(cfg) = &env_cfg {
        let _g = actions::group("plan: env-file");
        let content = render_env(&m, &values)?;
        let local = envfile::entry_hashes(&content);
        for h in hosts.iter_mut() {
            let remote = envfile::read_remote(&mut h.ex, &cfg.path)?;
            let d = envfile::drift(&local, &remote.keys);
            for (keys, action) in [
                (&d.added, Action::Create),
                (&d.changed, Action::Update),
                (&d.removed, Action::Delete),
                (&d.unchanged, Action::Unchanged),
            ] {
                for k in keys {
                    items.push(Item {
                        key: k.clone(),
                        target: "env-file".into(),
                        place: h.place.clone(),
                        action,
                        rule: String::new(),
                    });
                }
            }
            h.needs_write = !d.is_empty()
                || !remote.present
                || remote.file_hash != gangplank_core::exec::sha256_hex(content.as_bytes())
                || remote.mode != "600";
        }
        env_content = content;
    }
    items.sort_by(|a, b| (&a.target, &a.key, &a.place).cmp(&(&b.target, &b.key, &b.place)));
    print_table(&items);

    if args.mode == Mode::Plan {
        finish(&args, &items, 0)?;
        return Ok(());
    }

    // Apply: the lock of every host to be written, then GitHub, then the hosts.
    let meta = RunMeta::from_env();
    let owner = lock::Owner {
        id: format!("{:032x}", rand::random::<u128>()),
        action: "env-sync".into(),
        tag: env_cfg.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
        run_url: meta.run_url.clone(),
        git_sha: meta.git_sha.clone(),
        runner_host: meta.runner_host.clone(),
        started_at: now_rfc3339(),
        pid: std::process::id(),
    };
    // Only a run that will hold a lock turns signals into a flag: otherwise a signal ends it at once, as
    // nothing it could leave behind needs cleaning up.
    if let Some(cfg) = env_cfg.as_ref().filter(|_| hosts.iter().any(|h| h.needs_write)) {
        let _g = actions::group("lock: env-file");
        // From here a signal only sets a flag, so every lock this run takes is released.
        process::install_signal_flag();
        lock_hosts(&mut hosts, cfg, &owner, args.lock_timeout)?;
    }
    let result = apply_all(&rt, gh_plan, env_cfg.as_ref(), &mut hosts, &env_content, &args, &meta);
    // Whatever happened, no lock of this run stays behind.
    let unlocked = release_all(&mut hosts, env_cfg.as_ref(), &owner.id);
    result?;
    unlocked?;
    finish(&args, &items, 0)?;
    Ok(())
}

/// One host of the `env-file` target through the run.
struct HostRun {
    ex: gangplank_core::exec::ssh::SshExecutor,
    /// `user@host:port:/path/.env`, for the report.
    place: String,
    facts: hosts::Facts,
    needs_write: bool,
    /// Whether this run holds the host's lock.
    locked: bool,
}

/// Connect to every host and run its preflight; every failure of every host in one error (exit 2).
fn preflight_hosts(cfg: &EnvCfg, apply: bool) -> Result<Vec<HostRun>> {
    let mut errs = vec![];
    let mut out = vec![];
    // What passed hosts will get is said only when every host passed: a failed run creates nothing.
    let mut notes = vec![];
    for spec in &cfg.ssh.hosts {
        let place = format!("{spec}:{}", cfg.path);
        let mut ex = match gangplank_core::exec::ssh::SshExecutor::connect(spec, &cfg.ssh) {
            Ok(ex) => ex,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        match hosts::preflight(&mut ex, &spec.user, &cfg.app_dir, &cfg.path) {
            Err(mut e) => errs.append(&mut e),
            Ok(facts) => {
                let label = ex.label().to_string();
                if !facts.creates.is_empty() {
                    let verb = if apply { "creates" } else { "would create" };
                    notes.push(format!(
                        "{label}: apply {verb} {} (folders 0755, .gangplank 0700)",
                        facts.creates.join(", ")
                    ));
                }
                if let Some(who) = &facts.lock_holder {
                    notes.push(format!(
                        "{label}: the lock is held now by {who}{}",
                        if apply { "; apply waits for it up to `lock-timeout` before anything is written" } else { "" }
                    ));
                }
                out.push(HostRun { ex, place, facts, needs_write: false, locked: false });
            }
        }
    }
    if let Some(e) = combine(errs) {
        let n = cfg.ssh.hosts.len();
        return Err(e.context(format!(
            "preflight failed on {} of {n} host(s); nothing was written, on GitHub or any host",
            n - out.len()
        )));
    }
    for n in notes {
        info(n);
    }
    info(format!("preflight passed on {} host(s)", out.len()));
    Ok(out)
}

/// Take the lock of every host that will be written, in the order of `host`, each waiting up to
/// `lock-timeout`, before anything is written anywhere: a run that cannot have them all writes nothing
/// (as deploy-remote does). A missing app dir and its `.gangplank` are made first (the lock lives there).
/// On a failure the locks already taken are released by the caller's [`release_all`].
fn lock_hosts(hosts: &mut [HostRun], cfg: &EnvCfg, owner: &lock::Owner, timeout: std::time::Duration) -> Result<()> {
    let stop = || process::interrupted().is_some();
    for i in 0..hosts.len() {
        if !hosts[i].needs_write {
            continue;
        }
        let result = lock_one(&mut hosts[i], cfg, owner, timeout, &stop);
        if let Err(e) = result {
            // Nothing was written yet: the caller releases the locks taken so far.
            let e = match process::interrupted() {
                Some(sig) => interrupted(sig, &format!("while waiting for the lock on {}", hosts[i].ex.label())),
                None if e.class == Class::Locked => {
                    Error { message: format!("{}; nothing was written on GitHub or to any `.env`", e.message), ..e }
                }
                None => e,
            };
            release_all(hosts, Some(cfg), &owner.id).ok();
            return Err(e);
        }
    }
    Ok(())
}

fn lock_one(
    h: &mut HostRun,
    cfg: &EnvCfg,
    owner: &lock::Owner,
    timeout: std::time::Duration,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    // A write and the lock's release run to their end after a signal (they are short and atomic): the
    // run stops between commands, never in the middle of one.
    h.ex.set_interruptible(false);
    if h.facts.prepare {
        let out = h.ex.run(&hosts::prepare_cmd(&cfg.app_dir))?;
        if out.status == 6 {
            return Err(Error::bad_input(format!(
                "nothing was written on {}: {}",
                h.ex.label(),
                out.stderr_str().trim()
            ))
            .hint("gangplank writes only inside `app-dir`: replace the link with a real folder, or set `app-dir` to the folder it points to"));
        }
        if !out.success() {
            return Err(Error::failed(format!(
                "cannot create the app dir {} on {}: {}",
                cfg.app_dir,
                h.ex.label(),
                out.tail(3)
            ))
            .hint("check that the SSH user may create it (or create it once: `sudo install -d -o <user> -g <user> -m 0755 <app-dir>`)"));
        }
        for l in out.stdout_str().lines().filter_map(|l| l.strip_prefix("created ")) {
            let mode = if l.ends_with("/.gangplank") { "0700" } else { "0755" };
            info(format!("{}: created {l} (mode {mode})", h.ex.label()));
        }
    }
    lock::acquire(&mut h.ex, &cfg.app_dir, owner, timeout, stop)?;
    h.locked = true;
    Ok(())
}

/// Release every lock this run holds; the first failure is returned, every one is reported.
fn release_all(hosts: &mut [HostRun], cfg: Option<&EnvCfg>, id: &str) -> Result<()> {
    let Some(cfg) = cfg else { return Ok(()) };
    let mut first = None;
    for h in hosts.iter_mut().filter(|h| h.locked) {
        h.ex.set_interruptible(false);
        match lock::release(&mut h.ex, &cfg.app_dir, id) {
            Ok(()) => h.locked = false,
            Err(e) => {
                actions::warning("lock", format!("{}: {}", h.ex.label(), e.message));
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The writes, GitHub first, then each host's `.env` under the lock this run holds there.
fn apply_all(
    rt: &tokio::runtime::Runtime,
    gh_plan: Option<(Gh, Vec<Op>, PublicKeys)>,
    env_cfg: Option<&EnvCfg>,
    hosts: &mut [HostRun],
    content: &str,
    args: &Args,
    meta: &RunMeta,
) -> Result<()> {
    let watching = hosts.iter().any(|h| h.locked);
    if let Some((gh, ops, keys)) = gh_plan {
        let _g = actions::group("apply: github");
        *gh.class.lock().unwrap_or_else(|p| p.into_inner()) = Class::Failed;
        let writes = apply_github(&gh, ops, keys, args.concurrency as usize);
        if watching {
            // Hosts are locked while GitHub is written: a signal stops the writes at once, so the locks are
            // released before the runner's SIGKILL follows its SIGINT.
            let signal = async {
                while process::interrupted().is_none() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            };
            rt.block_on(async {
                tokio::select! {
                    r = writes => r,
                    _ = signal => Err(interrupted(
                        process::interrupted().unwrap_or(0),
                        "while writing GitHub (some secrets or variables may be written; no host was)",
                    )),
                }
            })?;
        } else {
            rt.block_on(writes)?;
        }
        let waits = gh.rate_limited.load(Ordering::Relaxed);
        if waits > 0 {
            info(format!("GitHub asked us to slow down {waits} time(s); every request completed after waiting"));
        }
        let paced = gh.pace.waited.load(Ordering::Relaxed);
        if paced > 0 {
            let secs = gh.pace.waited_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            info(format!(
                "{paced} write(s) waited for their turn under GitHub's secondary limits ({secs:.1}s in all; `write-interval`)"
            ));
        }
    }
    let Some(cfg) = env_cfg else { return Ok(()) };
    let _g = actions::group("apply: env-file");
    for h in hosts.iter_mut() {
        if let Some(sig) = process::interrupted() {
            return Err(interrupted(sig, &format!("before writing {}", h.place)));
        }
        if !h.locked {
            info(format!("{}: already up to date", h.place));
            continue;
        }
        let written = write_under_lock(&mut h.ex, cfg, content, args.keep_backups, meta).map_err(|e| {
            // Something may have changed by now: never exit 2 from here.
            if e.class == Class::BadInput {
                Error { class: Class::Failed, ..e }
            } else {
                e
            }
        })?;
        if written {
            info(format!("{}: written (mode 0600, verified by hash)", h.place));
        } else {
            info(format!("{}: already up to date", h.place));
        }
    }
    if let Some(sig) = process::interrupted() {
        return Err(interrupted(sig, "after the last write"));
    }
    Ok(())
}

fn interrupted(sig: i32, when: &str) -> Error {
    Error::interrupted(format!("interrupted by signal {sig} {when}; every lock this run took is released"))
        .hint("run again: a sync writes every host's .env from the manifest, so a second run finishes the job")
}

/// The audit line of an env sync: the common fields, then which keys changed (names only, never values).
#[derive(serde::Serialize)]
struct EnvSyncAudit<'a> {
    #[serde(flatten)]
    line: AuditLine<'a>,
    file: &'a str,
    added: &'a [String],
    changed: &'a [String],
    removed: &'a [String],
}

/// Write one host's `.env` under the lock this run holds there, so a secret sync and a deploy on the same
/// host run one after the other instead of both writing `<app-dir>`. The file's hashes are read again
/// under the lock (a deploy may have replaced it since the plan). Returns whether the file was written.
fn write_under_lock(ex: &mut dyn Executor, cfg: &EnvCfg, content: &str, keep: usize, meta: &RunMeta) -> Result<bool> {
    let remote = envfile::read_remote(ex, &cfg.path)?;
    if remote.present
        && remote.file_hash == gangplank_core::exec::sha256_hex(content.as_bytes())
        && remote.mode == "600"
    {
        return Ok(false);
    }
    let d = envfile::drift(&envfile::entry_hashes(content), &remote.keys);
    let host = ex.label().to_string();
    let audit = EnvSyncAudit {
        line: AuditLine {
            time: now_rfc3339(),
            action: "env-sync",
            tag: "",
            previous_tag: "",
            result: "written",
            host: &host,
            run_url: &meta.run_url,
            actor: &meta.actor,
        },
        file: &cfg.path,
        added: &d.added,
        changed: &d.changed,
        removed: &d.removed,
    };
    let line = serde_json::to_string(&audit).expect("audit line serialises");
    envfile::write(ex, &cfg.path, &cfg.app_dir, content, keep, &line)?;
    Ok(true)
}

fn selected_targets(args: &Args, m: &Manifest) -> Result<Vec<Target>> {
    let in_manifest = m.targets();
    match &args.targets {
        None => Ok(in_manifest),
        Some(raw) if parse_list(raw).is_empty() => Ok(in_manifest),
        Some(raw) => {
            let list = parse_list(raw);
            let mut out = Vec::new();
            for t in list {
                let t = Target::parse(&t).ok_or_else(|| {
                    Error::bad_input(format!("target `{t}` is not known")).hint("use `github`, `env-file` or both")
                })?;
                if in_manifest.contains(&t) && !out.contains(&t) {
                    out.push(t);
                }
            }
            Ok(out)
        }
    }
}

fn github_config(args: &Args) -> Result<(String, Secret, String)> {
    let token = args.github_token.clone().filter(|t| !t.expose().trim().is_empty()).ok_or_else(|| {
        Error::bad_input("input `github-token` is required for the github target")
            .hint(format!("{}; or set `targets: env-file`", TOKEN_HINT_SHORT))
    })?;
    // A pasted token often ends with a line break; anything else that is not a token is refused.
    let token = Secret::new(token.expose().trim());
    gangplank_core::input::check_token(&token, "github-token")?;
    let api = args
        .api_url
        .clone()
        .or_else(|| std::env::var("GITHUB_API_URL").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://api.github.com".into());
    if !gangplank_core::input::is_http_url(&api) {
        return Err(Error::bad_input(format!("`api-url` is not an http(s) URL: `{api}`"))
            .hint("e.g. `https://api.github.com`, or `https://ghes.example.com/api/v3` for GitHub Enterprise Server"));
    }
    let repo = repository(args).ok_or_else(|| {
        Error::bad_input("input `repository` is required outside Actions").hint("set `repository: owner/name`")
    })?;
    Ok((api, token, repo))
}

const TOKEN_HINT_SHORT: &str =
    "pass a fine-grained PAT or GitHub App token with Secrets and Variables write access as `github-token: ${{ secrets.SECRETS_SYNC_TOKEN }}` (GITHUB_TOKEN cannot write secrets)";

fn repository(args: &Args) -> Option<String> {
    let r = args
        .repository
        .clone()
        .or_else(|| std::env::var("GITHUB_REPOSITORY").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())?;
    let ok = r.split('/').count() == 2
        && r.split('/')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    ok.then_some(r)
}

struct EnvCfg {
    ssh: gangplank_core::input::SshConfig,
    app_dir: String,
    path: String,
}

fn env_config(args: &Args) -> Result<EnvCfg> {
    let ssh = args.ssh.to_config().map_err(|e| match &e.hint {
        Some(h) => Error {
            hint: Some(format!("{h} (the env-file target writes the server .env over SSH; or set `targets: github`)")),
            ..e
        },
        None => e,
    })?;
    // Without `app-dir`, the folder deploy-remote uses by default, from the same function:
    // `/opt/<app name of the repository>` (`Acme/Shop.Web` → `/opt/shop-web`).
    let app_dir = match args.app_dir.as_deref().filter(|d| !d.trim().is_empty()) {
        Some(d) => absolute_path(d.trim(), "app-dir")?,
        None => match gangplank_core::app::resolve_app(None, None) {
            Ok((_, dir)) => dir,
            Err(_) => {
                return Err(Error::bad_input(
                    "input `app-dir` is required for the env-file target outside GitHub Actions",
                )
                .hint("set `app-dir` to the application's directory on the host, e.g. /opt/myapp"))
            }
        },
    };
    let path = match &args.remote_env_path {
        Some(p) if !p.trim().is_empty() => absolute_path(p.trim(), "remote-env-path")?,
        _ => format!("{app_dir}/.env"),
    };
    // Every file gangplank writes on a host stays inside the app dir (docs/host-layout.md), and the folders
    // sync-secrets makes for the `.env` are made below it: so the path is a file in it, spelt plainly.
    let inside = path.strip_prefix(app_dir.as_str()).and_then(|r| r.strip_prefix('/')).filter(|rel| {
        rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..") && rel.split('/').next() != Some(".gangplank")
    });
    if inside.is_none() {
        return Err(Error::bad_input(format!(
            "`remote-env-path` {path} is not a file inside `app-dir` {app_dir} (or it is in `.gangplank`, or has a `.`, `..` or empty part)"
        ))
        .hint(format!("gangplank writes only inside the app dir: set `remote-env-path` to where compose reads the `.env` under it, e.g. {app_dir}/.env")));
    }
    Ok(EnvCfg { ssh, app_dir, path })
}

fn render_env(m: &Manifest, values: &BTreeMap<String, Value>) -> Result<String> {
    let pairs: Vec<(String, String)> = m
        .entries
        .iter()
        .filter(|e| e.targets.contains(&Target::EnvFile) && !e.retired)
        .filter_map(|e| values.get(&e.name).map(|v| (e.name.clone(), v.expose().to_string())))
        .collect();
    envfile::render(&pairs).map_err(|k| {
        Error::bad_input(format!("{k}: env-file quoting")).hint("see the quoting rules in the sync-secrets docs")
    })
}

/// Public keys of scopes: key_id and key bytes.
type PublicKeys = BTreeMap<GhScope, (String, [u8; 32])>;

async fn plan_github(
    gh: &Gh,
    m: &Manifest,
    values: &BTreeMap<String, Value>,
    prune: bool,
    prefetch_keys: bool,
) -> Result<(Vec<Item>, Vec<Op>, PublicKeys)> {
    let entries: Vec<&Entry> = m.entries.iter().filter(|e| e.targets.contains(&Target::Github)).collect();
    let mut scopes: Vec<GhScope> = entries.iter().map(|e| e.scope.clone()).collect();
    scopes.sort();
    scopes.dedup();
    let entries_ref = &entries;
    let listed = futures::future::join_all(scopes.iter().map(|s| async move {
        let need_secrets = entries_ref.iter().any(|e| &e.scope == s && (e.secret || e.retired));
        let need_vars = entries_ref.iter().any(|e| &e.scope == s && (!e.secret || e.retired));
        // The public key is fetched alongside the lists when the plan will be applied: one round trip less.
        let need_key = prefetch_keys && entries_ref.iter().any(|e| &e.scope == s && e.secret && !e.retired);
        let (secrets, vars, key) = tokio::join!(
            async {
                if need_secrets {
                    gh.secret_names(s).await
                } else {
                    Ok(Vec::new())
                }
            },
            async {
                if need_vars {
                    gh.variables(s).await
                } else {
                    Ok(BTreeMap::new())
                }
            },
            async {
                if need_key {
                    gh.public_key(s).await.map(Some)
                } else {
                    Ok(None)
                }
            },
        );
        Ok::<_, Error>((s.clone(), (secrets?, vars?), key?))
    }))
    .await;
    let mut existing = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for r in listed {
        let (s, v, key) = r?;
        if let Some(k) = key {
            keys.insert(s.clone(), k);
        }
        existing.insert(s, v);
    }
    // Repository names of org entries → ids.
    let mut ids: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in &entries {
        if let (GhScope::Org(org), Some(v)) = (&e.scope, &e.org_visibility) {
            for r in &v.repositories {
                if let std::collections::btree_map::Entry::Vacant(slot) = ids.entry((org.clone(), r.clone())) {
                    slot.insert(gh.repo_id(org, r).await?);
                }
            }
        }
    }
    let repo = gh.base(&GhScope::Repo);
    let repo_name = repo.trim_start_matches("/repos/").trim_end_matches("/actions").to_string();
    let mut items = Vec::new();
    let mut ops = Vec::new();
    for e in entries {
        let (secrets, vars) = &existing[&e.scope];
        let place = scope_label(&repo_name, &e.scope);
        let org = match (&e.scope, &e.org_visibility) {
            (GhScope::Org(o), Some(v)) => {
                Some((v.clone(), v.repositories.iter().map(|r| ids[&(o.clone(), r.clone())]).collect::<Vec<u64>>()))
            }
            _ => None,
        };
        let item = |action: Action, rule: &str| Item {
            key: e.name.clone(),
            target: "github".into(),
            place: place.clone(),
            action,
            rule: rule.to_string(),
        };
        let op = |kind: OpKind, value: Option<String>| Op {
            kind,
            scope: e.scope.clone(),
            name: e.name.clone(),
            value,
            org: org.clone(),
        };
        if e.retired {
            let is_secret = secrets.contains(&e.name);
            let is_var = vars.contains_key(&e.name);
            if !is_secret && !is_var {
                continue;
            }
            if prune {
                items.push(item(Action::Delete, "retired"));
                if is_secret {
                    ops.push(op(OpKind::DeleteSecret, None));
                }
                if is_var {
                    ops.push(op(OpKind::DeleteVar, None));
                }
            } else {
                actions::warning(
                    "retired",
                    format!("{} is retired but still set on GitHub ({place}); `prune: true` deletes it", e.name),
                );
                items.push(item(Action::Unchanged, "retired, still set (prune: false)"));
            }
            continue;
        }
        // GitHub gets nothing for an empty value: an unset secret or variable already reads as empty in a
        // workflow, and the server `.env` is where `KEY=""` matters.
        let Some(v) = values.get(&e.name).filter(|v| !v.expose().is_empty()) else {
            continue;
        };
        if e.secret {
            if secrets.contains(&e.name) {
                items.push(item(Action::Unknown, "set; GitHub never shows a secret's value"));
            } else {
                items.push(item(Action::Create, ""));
            }
            ops.push(op(OpKind::PutSecret, Some(v.expose().to_string())));
        } else {
            match vars.get(&e.name) {
                None => {
                    items.push(item(Action::Create, ""));
                    ops.push(op(OpKind::CreateVar, Some(v.expose().to_string())));
                }
                Some((cur, vis)) => {
                    let same_vis = match &org {
                        None => true,
                        Some((ov, _)) => {
                            ov.visibility != manifest::Visibility::Selected
                                && vis.as_deref() == Some(ov.visibility.name())
                        }
                    };
                    if cur == v.expose() && same_vis {
                        items.push(item(Action::Unchanged, ""));
                    } else {
                        items.push(item(Action::Update, ""));
                        ops.push(op(OpKind::UpdateVar, Some(v.expose().to_string())));
                    }
                }
            }
        }
    }
    Ok((items, ops, keys))
}

async fn apply_github(gh: &Gh, mut ops: Vec<Op>, mut keys: PublicKeys, concurrency: usize) -> Result<()> {
    // Writes first, deletes last: a failed run never leaves a retired name deleted with its successor unset.
    ops.sort_by_key(|o| matches!(o.kind, OpKind::DeleteSecret | OpKind::DeleteVar));
    let mut key_scopes: Vec<GhScope> =
        ops.iter().filter(|o| matches!(o.kind, OpKind::PutSecret)).map(|o| o.scope.clone()).collect();
    key_scopes.sort();
    key_scopes.dedup();
    for s in key_scopes {
        if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(s) {
            let k = gh.public_key(slot.key()).await?;
            slot.insert(k);
        }
    }
    // Every request is made (and every secret sealed) before the first is sent: sealing is CPU work, and on
    // this one-thread runtime it would run between a write's turn under `write-interval` and its sending,
    // so the writes would reach GitHub closer together than they were paced.
    let mut calls: Vec<(Method, String, Option<Json>, &[u16])> = Vec::with_capacity(ops.len());
    for op in ops {
        let base = gh.base(&op.scope);
        let value = op.value.as_deref().unwrap_or("");
        let with_org = |mut body: Json| {
            if let Some((v, ids)) = &op.org {
                github::org_fields(&mut body, v, ids);
            }
            body
        };
        calls.push(match op.kind {
            OpKind::PutSecret => {
                let (key_id, key) = &keys[&op.scope];
                let body = with_org(json!({ "encrypted_value": github::seal(key, value)?, "key_id": key_id }));
                (Method::Put, format!("{base}/secrets/{}", op.name), Some(body), &[])
            }
            OpKind::CreateVar => {
                let body = with_org(json!({ "name": op.name, "value": value }));
                (Method::Post, format!("{base}/variables"), Some(body), &[])
            }
            OpKind::UpdateVar => {
                let body = with_org(json!({ "name": op.name, "value": value }));
                (Method::Patch, format!("{base}/variables/{}", op.name), Some(body), &[])
            }
            OpKind::DeleteSecret => (Method::Delete, format!("{base}/secrets/{}", op.name), None, &[404]),
            OpKind::DeleteVar => (Method::Delete, format!("{base}/variables/{}", op.name), None, &[404]),
        });
    }
    let results: Vec<Result<()>> =
        futures::stream::iter(calls)
            .map(|(method, path, body, ok_also)| async move {
                gh.call(method, &path, body.as_ref(), ok_also).await.map(|_| ())
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    match combine(results.into_iter().filter_map(|r| r.err()).collect()) {
        Some(e) => Err(Error { class: Class::Failed, ..e }),
        None => Ok(()),
    }
}

fn print_table(items: &[Item]) {
    let _g = actions::group("plan");
    if items.is_empty() {
        info("nothing to do");
        return;
    }
    let wk = items.iter().map(|i| i.key.len()).max().unwrap_or(3).max(3);
    let wt = items.iter().map(|i| i.target.len()).max().unwrap_or(6).max(6);
    let wp = items.iter().map(|i| i.place.len()).max().unwrap_or(5).max(5);
    info(format!("{:<wk$}  {:<wt$}  {:<wp$}  {:<9}  rule", "key", "target", "where", "action"));
    for i in items {
        info(
            format!("{:<wk$}  {:<wt$}  {:<wp$}  {:<9}  {}", i.key, i.target, i.place, i.action.name(), i.rule)
                .trim_end(),
        );
    }
}

fn count(items: &[Item], a: Action) -> usize {
    items.iter().filter(|i| i.action == a).count()
}

/// The plan file as an output file: an existing file is ours when it has the plan's fields.
const PLAN_OUTPUT: local::Output = local::Output { input: "plan-file", keys: &["mode", "counts", "items"] };

/// `plan-file`, or `$RUNNER_TEMP/gangplank/secrets-plan.json` (the system temp dir outside Actions).
fn plan_file(args: &Args) -> PathBuf {
    args.plan_file.clone().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| {
        let base = std::env::var_os("RUNNER_TEMP")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        base.join("gangplank").join("secrets-plan.json")
    })
}

/// Plan file, outputs and summary: the same counts everywhere.
fn finish(args: &Args, items: &[Item], invalid_keys: usize) -> Result<()> {
    if args.mode == Mode::Check || invalid_keys > 0 {
        print_table(items);
    }
    let plan_file = plan_file(args);
    let mode = match args.mode {
        Mode::Check => "check",
        Mode::Plan => "plan",
        Mode::Apply => "apply",
    };
    let counts = [
        ("created", count(items, Action::Create)),
        ("updated", count(items, Action::Update)),
        ("deleted", count(items, Action::Delete)),
        ("unchanged", count(items, Action::Unchanged)),
        ("unknown", count(items, Action::Unknown)),
        ("invalid", invalid_keys),
    ];
    let doc = json!({
        "mode": mode,
        "counts": counts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "items": items.iter().map(|i| json!({
            "key": i.key, "target": i.target, "where": i.place, "action": i.action.name(), "rule": i.rule,
        })).collect::<Vec<_>>(),
    });
    let text = actions::redact(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    local::write_output(&plan_file, (text + "\n").as_bytes(), &PLAN_OUTPUT)?;
    for (k, v) in counts {
        actions::set_output(k, &v.to_string())?;
    }
    actions::set_output("plan-file", &plan_file.to_string_lossy())?;
    let mut md = format!("### sync-secrets ({mode})\n\n");
    md.push_str(&counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "));
    md.push_str("\n\n");
    if !items.is_empty() {
        md.push_str("| key | target | where | action | rule |\n|---|---|---|---|---|\n");
        for i in items {
            md.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", i.key, i.target, i.place, i.action.name(), i.rule));
        }
    }
    actions::append_summary(&md)?;
    Ok(())
}
