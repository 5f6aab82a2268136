//! `gangplank status`: what runs where, read-only (contract: docs/actions.md, "status").
//!
//! Per host: one SSH connection and one round trip ([`STATUS_SCRIPT`]) that prints `state.json`, the lock's
//! `owner.json`, the tail of `audit.log`, the state of the project's containers and the key names and hashes of
//! the server `.env`; hosts are asked in parallel. It never takes the lock and writes nothing on a host.
//!
//! No value of the server `.env` leaves the host: the host hashes each entry (the same split sync-secrets uses,
//! `sync_secrets::envfile::HASHES_SCRIPT`) and prints key names with hashes. Container states come from a
//! `docker inspect --format` template naming only state fields, so a container's environment (which holds the
//! same values) never crosses the connection either.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use gangplank_core::actions::{self, info};
use gangplank_core::host::lock::Owner;
use gangplank_core::input::{HostSpec, SshConfig};
use gangplank_core::{Cmd, Error, Result};
use gangplank_deploy::{self as deploy, State};
use serde::Serialize;
use serde_json::Value;
use sync_secrets::manifest::{Manifest, Target};

/// Show what runs on each host: tags, containers, lock, recent deploys and `.env` drift. Changes nothing.
#[derive(Debug, Parser)]
#[command(name = "status", version, args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    ssh: gangplank_core::input::SshArgs,

    #[command(flatten)]
    app: gangplank_core::app::AppArgs,

    /// Secrets manifest the server .env is compared with [default: .github/secrets.yml when it exists]
    #[arg(long, env = "INPUT_MANIFEST")]
    manifest: Option<PathBuf>,

    /// Path of the server .env [default: <app-dir>/.env]
    #[arg(long, env = "INPUT_REMOTE_ENV_PATH")]
    remote_env_path: Option<String>,

    /// How many recent deploys and rollbacks of audit.log to show per host
    #[arg(long, env = "INPUT_HISTORY", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    history: u16,

    /// Where the status (JSON) is written [default: $RUNNER_TEMP/gangplank/status.json]
    #[arg(long, env = "INPUT_STATUS_FILE")]
    status_file: Option<PathBuf>,
}

/// The status file as an output: an existing file is ours when it has these fields.
const STATUS_OUTPUT: gangplank_core::local::Output =
    gangplank_core::local::Output { input: "status-file", keys: &["app", "checked_at", "hosts"] };

/// Marks the start of each part of [`STATUS_SCRIPT`]'s output. No line of JSON, of `audit.log` or of the
/// hashes script starts with it.
const MARK: &str = "@@gangplank-status:";

/// One round trip: `$1` app dir, `$2` compose project, `$3` server .env, `$4` the inspect template, `$5` the
/// hashes script. Reads only; a symlinked `.gangplank` file is reported, not followed.
pub const STATUS_SCRIPT: &str = r#"d=$1/.gangplank
part() { printf '\n@@gangplank-status:%s\n' "$1"; }
part state
if [ -L "$1" ] || [ -L "$d" ] || [ -L "$d/state.json" ]; then echo symlink; elif [ -f "$d/state.json" ]; then cat -- "$d/state.json"; fi
part lock
if [ -d "$d/lock" ] && [ ! -L "$d/lock" ]; then echo held; cat -- "$d/lock/owner.json" 2>/dev/null; fi
part audit
if [ -f "$d/audit.log" ] && [ ! -L "$d/audit.log" ]; then tail -n 500 -- "$d/audit.log"; fi
part containers
if ids=$(docker ps -aq --filter "label=com.docker.compose.project=$2" 2>&1); then
  if [ -n "$ids" ]; then docker inspect --format "$4" $ids 2>&1; fi
else echo "error: $ids" | head -n 3; fi
part env
if [ -L "$3" ]; then echo symlink; else sh -c "$5" gangplank "$3" 2>&1 || echo "error: exit $?"; fi
part end"#;

/// Only state fields: never `.Config.Env`, which holds the values of the `.env`.
pub const INSPECT_FORMAT: &str = r#"{"name":{{json .Name}},"service":{{json (index .Config.Labels "com.docker.compose.service")}},"oneoff":{{json (index .Config.Labels "com.docker.compose.oneoff")}},"image":{{json .Config.Image}},"image_id":{{json .Image}},"status":{{json .State.Status}},"health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}""{{end}},"restarts":{{.RestartCount}},"exit_code":{{.State.ExitCode}}}"#;

pub fn status_cmd(app_dir: &str, project: &str, env_path: &str) -> Cmd {
    Cmd::script(STATUS_SCRIPT)
        .arg(app_dir)
        .arg(project)
        .arg(env_path)
        .arg(INSPECT_FORMAT)
        .arg(sync_secrets::envfile::HASHES_SCRIPT)
        .privileged()
        .timeout(Duration::from_secs(30))
}

struct Config {
    ssh: SshConfig,
    app: String,
    app_dir: String,
    env_path: String,
    manifest: Option<(PathBuf, Manifest)>,
    history: usize,
    status_file: PathBuf,
}

fn config(a: Args) -> Result<Config> {
    let (app, app_dir) = a.app.resolve()?;
    let env_path = match a.remote_env_path.filter(|p| !p.trim().is_empty()) {
        Some(p) => gangplank_core::input::absolute_path(&p, "remote-env-path")?,
        None => format!("{}/.env", app_dir.trim_end_matches('/')),
    };
    // An explicit manifest must be readable; the default one is used when the repository has it.
    let manifest_path = match a.manifest.filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => Some(p),
        None => Some(PathBuf::from(".github/secrets.yml")).filter(|p| p.exists()),
    };
    let manifest = match manifest_path {
        Some(p) => {
            let m = sync_secrets::manifest::load(&p)?;
            Some((p, m))
        }
        None => None,
    };
    let status_file = a
        .status_file
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| deploy::default_record_file("status.json"));
    STATUS_OUTPUT.check(&status_file)?;
    let ssh = a.ssh.to_config()?;
    Ok(Config { ssh, app, app_dir, env_path, manifest, history: a.history.into(), status_file })
}

/// One container, by state only.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    pub name: String,
    pub service: String,
    #[serde(default)]
    pub oneoff: String,
    pub image: String,
    pub image_id: String,
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, or empty when the image has no HEALTHCHECK.
    pub health: String,
    pub restarts: i64,
    pub exit_code: i64,
}

/// The server `.env` by key names and hashes, and how it drifts from the manifest.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EnvState {
    pub path: String,
    pub present: bool,
    /// SHA-256 of the whole file.
    pub sha256: String,
    pub mode: String,
    /// Key → SHA-256 of its entry (`KEY=value` as written), for comparing hosts.
    pub keys: BTreeMap<String, String>,
    /// Keys the manifest writes to the `.env` (`required`, not retired) that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that the manifest does not write to the `.env`.
    pub not_in_manifest: Vec<String>,
    /// Keys the manifest marks `retired` that are still in the file.
    pub retired: Vec<String>,
    /// Whether a manifest was compared at all.
    pub compared: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A deploy or rollback from `audit.log`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub previous_tag: String,
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub run_url: String,
    #[serde(default)]
    pub actor: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Deployed {
    pub tag: String,
    pub deployed_at: String,
    pub git_sha: String,
    pub run_url: String,
    pub actor: String,
    /// Every `*digest*` field `state.json` keeps for the release (service → image ID or digest).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LockState {
    pub owner: Option<Owner>,
    pub description: String,
}

/// Everything status knows about one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub current: Option<Deployed>,
    pub previous_tag: Option<String>,
    /// The journal of a deploy under way (or killed): its tag.
    pub pending_tag: Option<String>,
    pub lock: Option<LockState>,
    /// `healthy`, `unhealthy`, `starting` or `none` (no container).
    pub health: String,
    pub containers: Vec<ContainerState>,
    /// Newest first.
    pub recent: Vec<AuditEntry>,
    pub env: EnvState,
    /// What could not be read (a symlink where gangplank keeps its files, Docker unreachable…).
    pub problems: Vec<String>,
    pub seconds: f64,
}

/// Split the script's output into its parts.
fn parts(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<String> = None;
    let mut buf = String::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            if let Some(c) = cur.take() {
                out.insert(c, std::mem::take(&mut buf));
            }
            cur = Some(name.to_string());
            buf.clear();
        } else if cur.is_some() {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    if let Some(c) = cur {
        out.insert(c, buf);
    }
    out
}

/// Read one host's answer.
pub fn parse_host(
    host: &str,
    stdout: &str,
    env_path: &str,
    manifest: Option<&Manifest>,
    history: usize,
) -> std::result::Result<HostStatus, String> {
    let p = parts(stdout);
    if !p.contains_key("end") {
        return Err("the status script ended early".into());
    }
    let mut st = HostStatus { host: host.to_string(), reachable: true, ..Default::default() };
    let part = |k: &str| p.get(k).map(String::as_str).unwrap_or("").trim();

    // Recent deploys and rollbacks, newest first.
    let audit: Vec<AuditEntry> = part("audit").lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let moves: Vec<&AuditEntry> = audit.iter().filter(|a| a.action == "deploy" || a.action == "rollback").collect();
    st.recent = moves.iter().rev().take(history).map(|a| (*a).clone()).collect();

    match part("state") {
        "" => {}
        "symlink" => st.problems.push(".gangplank or its state.json is a symbolic link: not read".into()),
        text => match State::parse(text) {
            Ok(s) => {
                let raw: Value = serde_json::from_str(text).unwrap_or_default();
                if let Some(c) = &s.current {
                    let digests = raw["current"]
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .filter(|(k, _)| k.contains("digest"))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    // The actor is in the audit line of the run that made this tag current.
                    let by = moves
                        .iter()
                        .rev()
                        .find(|a| a.tag == c.tag && matches!(a.result.as_str(), "deployed" | "rolled-back"));
                    st.current = Some(Deployed {
                        tag: c.tag.clone(),
                        deployed_at: c.deployed_at.clone(),
                        git_sha: c.git_sha.clone(),
                        run_url: if c.run_url.is_empty() {
                            by.map(|a| a.run_url.clone()).unwrap_or_default()
                        } else {
                            c.run_url.clone()
                        },
                        actor: by.map(|a| a.actor.clone()).unwrap_or_default(),
                        digests,
                    });
                }
                st.previous_tag = s.previous_tag().map(str::to_string);
                st.pending_tag = s.pending.as_ref().map(|p| p.tag.clone());
            }
            Err(e) => st.problems.push(format!("state.json is not readable: {e}")),
        },
    }

    let lock = part("lock");
    if let Some(rest) = lock.strip_prefix("held") {
        let owner = serde_json::from_str::<Owner>(rest.trim()).ok();
        let description = match &owner {
            Some(o) => o.describe(),
            None => "an owner whose owner.json is missing or unreadable".into(),
        };
        st.lock = Some(LockState { owner, description });
    }

    for l in part("containers").lines() {
        match serde_json::from_str::<ContainerState>(l) {
            Ok(mut c) => {
                c.name = c.name.trim_start_matches('/').to_string();
                if !c.oneoff.eq_ignore_ascii_case("true") {
                    st.containers.push(c);
                }
            }
            Err(_) if l.starts_with("error: ") => st.problems.push(format!("docker: {}", &l[7..])),
            Err(_) => {}
        }
    }
    st.containers.sort_by(|a, b| (&a.service, &a.name).cmp(&(&b.service, &b.name)));
    st.health = health_of(&st.containers).into();

    st.env = parse_env(part("env"), env_path, manifest);
    Ok(st)
}

/// One word for the whole project: `unhealthy` when any container is not running or fails its
/// HEALTHCHECK, `starting` while a check has not passed yet, `none` without containers.
fn health_of(cs: &[ContainerState]) -> &'static str {
    if cs.is_empty() {
        return "none";
    }
    if cs.iter().any(|c| c.status != "running" || c.health == "unhealthy") {
        return "unhealthy";
    }
    if cs.iter().any(|c| c.health == "starting") {
        return "starting";
    }
    "healthy"
}

fn parse_env(text: &str, path: &str, manifest: Option<&Manifest>) -> EnvState {
    let mut e = EnvState { path: path.to_string(), compared: manifest.is_some(), ..Default::default() };
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("absent"), None) => {}
            (Some("symlink"), None) => e.error = "the .env is a symbolic link: not read".into(),
            (Some("error:"), _) => e.error = format!("the .env could not be read ({})", line.trim()),
            (Some("file"), Some(h)) => {
                e.present = true;
                e.sha256 = h.to_string();
            }
            (Some("mode"), Some(m)) => e.mode = m.to_string(),
            (Some(k), Some(h)) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                e.keys.insert(k.to_string(), h.to_string());
            }
            _ => {}
        }
    }
    if let Some(m) = manifest {
        for entry in &m.entries {
            let on_server = e.keys.contains_key(&entry.name);
            if entry.retired {
                if on_server {
                    e.retired.push(entry.name.clone());
                }
            } else if entry.targets.contains(&Target::EnvFile) && entry.required && !on_server {
                e.missing.push(entry.name.clone());
            }
        }
        e.not_in_manifest = e
            .keys
            .keys()
            .filter(|k| m.get(k).is_none_or(|en| !en.retired && !en.targets.contains(&Target::EnvFile)))
            .cloned()
            .collect();
    }
    e
}

/// Ask every host at once: one connection and one command each.
fn query(cfg: &Config) -> Vec<HostStatus> {
    let manifest = cfg.manifest.as_ref().map(|(_, m)| m);
    std::thread::scope(|s| {
        let handles: Vec<_> = cfg.ssh.hosts.iter().map(|h| s.spawn(move || query_host(cfg, h, manifest))).collect();
        handles
            .into_iter()
            .zip(&cfg.ssh.hosts)
            .map(|(j, h)| {
                j.join().unwrap_or_else(|_| HostStatus {
                    host: h.to_string(),
                    error: "the status thread panicked".into(),
                    ..Default::default()
                })
            })
            .collect()
    })
}

fn query_host(cfg: &Config, h: &HostSpec, manifest: Option<&Manifest>) -> HostStatus {
    let t = Instant::now();
    let label = h.to_string();
    let run = || -> std::result::Result<HostStatus, String> {
        let ex = gangplank_core::exec::ssh::SshExecutor::connect(h, &cfg.ssh).map_err(|e| e.message)?;
        let mut ex = deploy::maybe_traced(Box::new(ex));
        let out = ex.run(&status_cmd(&cfg.app_dir, &cfg.app, &cfg.env_path)).map_err(|e| e.message)?;
        if !out.success() {
            return Err(format!("the status script failed (exit {}): {}", out.status, out.tail(3)));
        }
        parse_host(&label, &out.stdout_str(), &cfg.env_path, manifest, cfg.history)
    };
    let mut st = run().unwrap_or_else(|e| HostStatus { host: label.clone(), error: e, ..Default::default() });
    st.seconds = t.elapsed().as_secs_f64();
    st
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "—"
    } else {
        s
    }
}

fn containers_line(st: &HostStatus) -> String {
    if st.containers.is_empty() {
        return "none".into();
    }
    st.containers
        .iter()
        .map(|c| {
            let mut s = format!("{} {}", or_dash(&c.service), c.status);
            if !c.health.is_empty() {
                s.push_str(&format!(" {}", c.health));
            }
            if c.restarts > 0 {
                s.push_str(&format!(" ({} restarts)", c.restarts));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn drift_line(e: &EnvState) -> String {
    if !e.error.is_empty() {
        return e.error.clone();
    }
    if !e.present {
        return "no .env".into();
    }
    if !e.compared {
        return format!("{} keys (no manifest to compare with)", e.keys.len());
    }
    let mut parts = vec![];
    if !e.missing.is_empty() {
        parts.push(format!("missing: {}", e.missing.join(", ")));
    }
    if !e.not_in_manifest.is_empty() {
        parts.push(format!("not in manifest: {}", e.not_in_manifest.join(", ")));
    }
    if !e.retired.is_empty() {
        parts.push(format!("retired but present: {}", e.retired.join(", ")));
    }
    if parts.is_empty() {
        format!("{} keys, matches the manifest", e.keys.len())
    } else {
        parts.join("; ")
    }
}

fn print_host(app: &str, st: &HostStatus) {
    let _g = actions::group(&format!("status of {app} on {}", st.host));
    if !st.reachable {
        info(format!("unreachable: {}", st.error));
        return;
    }
    match &st.current {
        Some(c) => {
            let mut line = format!("current:  {} (deployed {}", c.tag, or_dash(&c.deployed_at));
            if !c.actor.is_empty() {
                line.push_str(&format!(" by {}", c.actor));
            }
            if !c.run_url.is_empty() {
                line.push_str(&format!(", run {}", c.run_url));
            }
            line.push(')');
            info(line);
            for (k, v) in &c.digests {
                match v.as_object() {
                    Some(per_service) => {
                        for (svc, d) in per_service {
                            info(format!(
                                "{k}:  {svc} {}",
                                d.as_str().map(str::to_string).unwrap_or_else(|| d.to_string())
                            ));
                        }
                    }
                    None => info(format!("{k}: {v}")),
                }
            }
        }
        None => info("current:  never deployed"),
    }
    info(format!("previous: {}", st.previous_tag.as_deref().unwrap_or("—")));
    if let Some(p) = &st.pending_tag {
        info(format!("under way (or interrupted): deploy of `{p}`"));
    }
    match &st.lock {
        Some(l) => info(format!("lock:     held by {}", l.description)),
        None => info("lock:     free"),
    }
    info(format!("health:   {} ({})", st.health, containers_line(st)));
    info(format!(".env:     {} ({})", drift_line(&st.env), st.env.path));
    if st.recent.is_empty() {
        info("recent:   none in audit.log");
    } else {
        info("recent:");
        for a in &st.recent {
            info(format!(
                "  {} {} `{}` (from `{}`): {}{}",
                a.time,
                a.action,
                a.tag,
                or_dash(&a.previous_tag),
                a.result,
                if a.actor.is_empty() { String::new() } else { format!(" by {}", a.actor) }
            ));
        }
    }
    for p in &st.problems {
        actions::warning("status", format!("{}: {p}", st.host));
    }
}

fn cell(s: &str) -> String {
    or_dash(s).replace('|', "\\|").replace('\n', " ")
}

pub fn summary(app: &str, hosts: &[HostStatus]) -> String {
    let mut s = format!(
        "### status: `{app}`\n\n| host | current | previous | deployed | by | health | lock | .env drift |\n|---|---|---|---|---|---|---|---|\n"
    );
    for h in hosts {
        if !h.reachable {
            s.push_str(&format!("| {} | unreachable | | | | | | {} |\n", cell(&h.host), cell(&h.error)));
            continue;
        }
        let c = h.current.clone().unwrap_or_default();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} |\n",
            cell(&h.host),
            cell(&c.tag),
            cell(h.previous_tag.as_deref().unwrap_or("")),
            cell(&c.deployed_at),
            cell(&c.actor),
            h.health,
            cell(&containers_line(h)),
            cell(&h.lock.as_ref().map(|l| format!("held: {}", l.description)).unwrap_or_else(|| "free".into())),
            cell(&drift_line(&h.env)),
        ));
    }
    s
}

/// The whole run after inputs were parsed.
pub fn run(args: Args) -> Result<()> {
    let cfg = config(args)?;
    let t = Instant::now();
    let hosts = query(&cfg);
    for h in &hosts {
        print_host(&cfg.app, h);
    }
    info(format!("status of {} host(s) in {:.2}s", hosts.len(), t.elapsed().as_secs_f64()));
    let doc = serde_json::json!({
        "app": cfg.app,
        "app_dir": cfg.app_dir,
        "checked_at": gangplank_core::host::now_rfc3339(),
        "manifest": cfg.manifest.as_ref().map(|(p, _)| p.display().to_string()),
        "hosts": hosts,
    });
    let mut errs = vec![];
    let text = serde_json::to_string_pretty(&doc).expect("status serialises") + "\n";
    if let Err(e) = gangplank_core::local::write_output(&cfg.status_file, text.as_bytes(), &STATUS_OUTPUT) {
        errs.push(e);
    }
    if let Err(e) = actions::set_output("status-file", &cfg.status_file.to_string_lossy()) {
        errs.push(e);
    }
    if let Err(e) = actions::append_summary(&summary(&cfg.app, &hosts)) {
        errs.push(e);
    }
    let down: Vec<String> =
        hosts.iter().filter(|h| !h.reachable).map(|h| format!("{} ({})", h.host, h.error)).collect();
    if !down.is_empty() {
        return Err(Error::failed(format!(
            "{} of {} host(s) could not be read: {}",
            down.len(),
            hosts.len(),
            down.join("; ")
        ))
        .hint("check that the host is up and reachable over SSH with this key; the other hosts are reported above"));
    }
    match gangplank_core::error::combine(errs) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_output_is_read_by_parts_and_never_carries_a_value() {
        let m = sync_secrets::manifest::parse(
            "defaults: { targets: [env-file] }\nvalues:\n  A: {}\n  B: {}\n  OLD: { retired: true }\n  OPT: { required: false }\n",
        )
        .unwrap();
        let out = format!(
            "\n{MARK}state\n{}\n{MARK}lock\nheld\n{}\n{MARK}audit\n{}\n{}\nnot json\n{MARK}containers\n{}\nerror: x\n{MARK}env\nfile abc\nmode 600\nA 111  -\nOLD 222  -\nEXTRA 333  -\n{MARK}end\n",
            r#"{"app":"a","current":{"tag":"v2","deployed_at":"t2","digests":{"web":"sha256:1"}},"history":[{"tag":"v1","deployed_at":"t1","status":"replaced"}]}"#,
            r#"{"id":"x","action":"deploy","tag":"v3","pid":7}"#,
            r#"{"time":"t1","action":"deploy","tag":"v1","previous_tag":"","result":"deployed","actor":"ann"}"#,
            r#"{"time":"t2","action":"deploy","tag":"v2","previous_tag":"v1","result":"deployed","actor":"bob"}"#,
            r#"{"name":"/a-web-1","service":"web","oneoff":"","image":"r/a:v2","image_id":"sha256:1","status":"running","health":"healthy","restarts":0,"exit_code":0}"#,
        );
        let st = parse_host("h", &out, "/opt/a/.env", Some(&m), 5).unwrap();
        let c = st.current.as_ref().unwrap();
        assert_eq!((c.tag.as_str(), c.actor.as_str()), ("v2", "bob"));
        assert_eq!(c.digests["digests"]["web"], "sha256:1");
        assert_eq!(st.previous_tag.as_deref(), Some("v1"));
        assert!(st.lock.as_ref().unwrap().description.contains("deploy of `v3`"));
        assert_eq!(st.recent.iter().map(|a| a.tag.as_str()).collect::<Vec<_>>(), ["v2", "v1"]);
        assert_eq!((st.health.as_str(), st.containers.len()), ("healthy", 1));
        assert_eq!(st.problems, ["docker: x"]);
        assert_eq!((st.env.missing.clone(), st.env.retired.clone()), (vec!["B".to_string()], vec!["OLD".to_string()]));
        assert_eq!(st.env.not_in_manifest, ["EXTRA"]);
        assert!(parse_host("h", "\n@@gangplank-status:state\n", "/e", None, 5).is_err(), "a cut answer");
    }
}
