//! `target: swarm`: the compose file deployed as a Docker Swarm stack on a manager over SSH
//! (docs/actions.md, "target: swarm").
//!
//! The stack file is never edited as text: `docker stack config --skip-interpolation` (Docker CLI ≥ 25, on
//! the runner, in the repository) resolves the compose files into one model (`env_file` values inlined,
//! `extends` merged), which is read with serde, checked for what Swarm cannot run (a service with only
//! `build:`, `container_name`, files outside the stack file), given the update defaults a zero-downtime
//! update needs where the file says nothing ([`with_defaults`]), and written as JSON (YAML's subset) to
//! `.gangplank/stack/<tag>.json` on the manager. `${IMAGE_TAG}` stays in it: `docker stack deploy`
//! interpolates it from its environment, so a rollback redeploys the previous release's own stack file
//! with the previous tag.
//!
//! The run on the manager (the first host; any other listed host must be a manager of the same Swarm,
//! checked at preflight, and nothing runs there): lock (the same `.gangplank/lock` as compose, in the
//! manager's app dir) → upload the stack file → `docker stack deploy --with-registry-auth --prune` →
//! the convergence gate ([`converge`]: every service's `UpdateStatus`, every desired task running on the
//! service's image; Swarm starts a task `running` only once its HEALTHCHECK passed) → `health-url` →
//! commit (state.json, audit line, unlock: the compose path's one finishing script). On a failed gate:
//! when Swarm rolled back by itself (`failure_action: rollback`) gangplank waits for that to converge;
//! otherwise it deploys the previous release's stack file with the previous tag and waits for that.
//!
//! No journal is written: a stack deploy replaces the services' specs in one call on the manager, and
//! the previous spec stays in Swarm (`docker service rollback`) and on disk (the previous stack file).

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use gangplank_core::actions::{error as annotate, group, info, warning};
use gangplank_core::cmd::Cmd;
use gangplank_core::error::{combine, Class, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::host::lock;
use gangplank_core::input::HostSpec;
use gangplank_core::process::{self, Opts};

use crate::state::{self, Current, State};
use crate::{Connect, DeployConfig, Outcome, RollbackConfig, Row};

/// Where a deploy goes: compose on every host (the default) or a Swarm stack on a manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Compose,
    Swarm,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        match s.trim() {
            "" | "compose" => Ok(Target::Compose),
            "swarm" => Ok(Target::Swarm),
            other => Err(Error::bad_input(format!("`target` {other:?} is neither `compose` nor `swarm`"))
                .hint("`compose` deploys with docker compose on every host; `swarm` deploys a stack on the first host, a Swarm manager")),
        }
    }
}

/// The update a service gets when its file says nothing: new task first, Swarm's own rollback on failure,
/// a window in which a task that stops or turns unhealthy counts as a failure.
pub const UPDATE_DEFAULTS: &[(&str, &str)] =
    &[("parallelism", "1"), ("order", "start-first"), ("failure_action", "rollback"), ("monitor", "5s")];
/// Swarm's rollback of a failed update: also new (old) task first.
pub const ROLLBACK_DEFAULTS: &[(&str, &str)] =
    &[("parallelism", "1"), ("order", "start-first"), ("failure_action", "pause"), ("monitor", "5s")];

/// The stack file, relative to the app dir, of a release.
pub fn stack_file(tag: &str) -> String {
    format!(".gangplank/stack/{tag}.json")
}

/// Inputs of deploy-remote that do not apply to a Swarm stack: refused before any connection.
pub fn check_deploy_inputs(cfg: &DeployConfig) -> Result<()> {
    let mut errs = vec![];
    if cfg.strategy != crate::rolling::Strategy::Recreate {
        errs.push(
            Error::bad_input("`strategy: rolling` does not apply to `target: swarm`")
                .hint("Swarm updates each service itself (update_config, start-first by default); drop `strategy`"),
        );
    }
    if cfg.max_parallel > 1 {
        errs.push(
            Error::bad_input("`max-parallel` does not apply to `target: swarm`")
                .hint("the stack is deployed once, on the manager; Swarm spreads the tasks over its nodes (set `deploy.update_config.parallelism` in the compose file)"),
        );
    }
    if !cfg.services.is_empty() {
        errs.push(Error::bad_input("`services` does not apply to `target: swarm`").hint(
            "a stack deploy updates every service of the file; services whose spec did not change are left as they are",
        ));
    }
    if !cfg.files.is_empty() {
        errs.push(Error::bad_input("`files` does not apply to `target: swarm`").hint(
            "a Swarm task may run on any node: ship configuration in the image or as Swarm configs/secrets (`external: true`)",
        ));
    }
    if cfg.hooks.pre.is_some() || cfg.hooks.post.is_some() {
        errs.push(Error::bad_input("`pre-deploy` and `post-deploy` do not apply to `target: swarm`").hint(
            "run a migration as a one-off job before the deploy (`docker service create --restart-condition none …` or a step of your workflow); Swarm's own update_config monitors the new tasks",
        ));
    }
    if !cfg.expect_digests.is_empty() {
        errs.push(
            Error::bad_input("`expect-digests` is not checked on `target: swarm`")
                .hint("Swarm resolves each tag to a digest itself when the stack is deployed; to deploy exactly what was pushed, name the image by digest in the compose file (`image: <repo>@sha256:…`), or drop `expect-digests`"),
        );
    }
    if cfg.env_file.is_some() {
        errs.push(
            Error::bad_input("`env-file` does not apply to `target: swarm`")
                .hint("the stack file is resolved on the runner and `env_file:` values are written into each service's environment: point `env_file:` in the compose file at a file in the checkout, or use Swarm secrets"),
        );
    }
    combine(errs).map_or(Ok(()), Err)
}

/// Inputs of rollback that do not apply to a Swarm stack.
pub fn check_rollback_inputs(cfg: &RollbackConfig) -> Result<()> {
    if !cfg.services.is_empty() {
        return Err(Error::bad_input("`services` does not apply to `target: swarm`")
            .hint("a stack rollback puts every service of the previous release's stack file back"));
    }
    if cfg.max_parallel > 1 {
        return Err(Error::bad_input("`max-parallel` does not apply to `target: swarm`")
            .hint("the stack is rolled back once, on the manager; Swarm spreads the tasks over its nodes"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The stack file

/// Resolve the compose files with `docker stack config` on the runner (in the working directory).
pub fn resolve(compose_files: &[std::path::PathBuf]) -> Result<Value> {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["stack", "config", "--skip-interpolation"]);
    for f in compose_files {
        cmd.arg("--compose-file").arg(f);
    }
    // Client-side only: no engine is needed, and none of the runner's is asked.
    cmd.env("DOCKER_HOST", "unix:///nonexistent/gangplank-no-engine.sock");
    let opts = Opts { deadline: Some(Instant::now() + Duration::from_secs(60)), ..Default::default() };
    let hint = "the Swarm stack file is resolved on the runner with `docker stack config` (Docker CLI 25 or later)";
    match process::run(&mut cmd, opts) {
        Ok(f) if f.ok() => serde_saphyr::from_str::<Value>(&f.stdout).map_err(|e| {
            Error::bad_input(format!("`docker stack config` answered something that is not YAML: {e}")).hint(hint)
        }),
        Ok(f) => Err(Error::bad_input(format!(
            "the compose file(s) are not a valid Swarm stack file: `docker stack config` says: {}",
            f.tail(5)
        ))
        .hint("check them with `docker stack config -c <file>`; Swarm reads the compose file format 3 (deploy:, no build-only services)")),
        Err(process::RunError::Spawn(_, e)) => {
            Err(Error::bad_input(format!("cannot run `docker` on the runner: {e}")).hint(hint))
        }
        Err(e) => Err(Error::bad_input(format!("`docker stack config` did not finish: {e:?}")).hint(hint)),
    }
}

/// Check a resolved stack for what Swarm cannot run or what would not reach the manager, and add the
/// update defaults. Every problem at once.
/// `swarm_rollback`: `failure_action: rollback` (else `pause`, for `auto-rollback: false`).
pub fn with_defaults(mut stack: Value, swarm_rollback: bool) -> Result<Value> {
    let mut errs = vec![];
    let Some(services) = stack.get_mut("services").and_then(Value::as_object_mut) else {
        return Err(Error::bad_input("the stack file has no services").hint("list at least one service"));
    };
    for (name, svc) in services.iter_mut() {
        let Some(svc) = svc.as_object_mut() else { continue };
        if svc.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(Error::bad_input(format!("service `{name}` has no `image`")).hint(
                "Swarm does not build images: push the image (push-registry) and name it with `image: …:${IMAGE_TAG}`",
            ));
        }
        if svc.contains_key("container_name") {
            errs.push(
                Error::bad_input(format!("service `{name}` sets `container_name`"))
                    .hint("Swarm names each task's container itself (and may run several): remove `container_name`"),
            );
        }
        // Swarm ignores these silently; `build` beside `image` is fine (the image is what runs).
        svc.remove("build");
        // `docker stack config` inlined the values; the path would be read again on the manager.
        svc.remove("env_file");
        let global = svc
            .get("deploy")
            .and_then(|d| d.get("mode"))
            .and_then(Value::as_str)
            .is_some_and(|m| m == "global" || m == "global-job");
        let host_ports = svc
            .get("ports")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p.get("mode").and_then(Value::as_str) == Some("host")));
        let deploy = svc.entry("deploy").or_insert_with(|| json!({}));
        let Some(deploy) = deploy.as_object_mut() else { continue };
        for (key, defaults) in [("update_config", UPDATE_DEFAULTS), ("rollback_config", ROLLBACK_DEFAULTS)] {
            let cfg = deploy.entry(key).or_insert_with(|| json!({}));
            let Some(cfg) = cfg.as_object_mut() else { continue };
            for (k, v) in defaults.iter() {
                let v = match (*k, global && host_ports) {
                    // A global service's new task lands on the node of the old one: with a host-mode port
                    // it cannot start while the old one holds the port.
                    ("order", true) => "stop-first",
                    ("failure_action", _) if key == "update_config" && !swarm_rollback => "pause",
                    _ => v,
                };
                cfg.entry(k.to_string()).or_insert_with(|| match v.parse::<u64>() {
                    Ok(n) => json!(n),
                    Err(_) => json!(v),
                });
            }
        }
    }
    // Files Swarm reads on the client (configs and secrets from files) would be runner paths on the
    // manager.
    for kind in ["configs", "secrets"] {
        for (name, def) in stack.get(kind).and_then(Value::as_object).into_iter().flatten() {
            if def.get("file").is_some() {
                errs.push(
                    Error::bad_input(format!("{kind} `{name}` is read from a file"))
                        .hint(format!("create it on the Swarm first (`docker {} create`) and mark it `external: true`; the stack file is resolved on the runner", &kind[..kind.len() - 1])),
                );
            }
        }
    }
    match combine(errs) {
        Some(e) => Err(e),
        None => Ok(stack),
    }
}

/// The image each service runs with `tag`, by stack service name (`<app>_<service>`): only images named
/// with `${IMAGE_TAG}` (or `$IMAGE_TAG`) and no other variable, the ones whose task image the gate checks.
pub fn expected_images(stack: &Value, app: &str, tag: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for (name, svc) in stack.get("services").and_then(Value::as_object).into_iter().flatten() {
        let Some(img) = svc.get("image").and_then(Value::as_str) else { continue };
        let img = img.replace("${IMAGE_TAG}", tag).replace("$IMAGE_TAG", tag);
        if !img.contains('$') {
            out.push((format!("{app}_{name}"), img));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Commands on the manager

/// What preflight asks the manager (read only): whether it is a manager, its cluster, and the free space
/// of its Docker data root.
const PREFLIGHT_SCRIPT: &str = r#"printf 'swarm=%s\n' "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Cluster.ID}}' 2>&1 | head -n1)"
root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)
printf 'df=%s\n' "$(df -Pk "${root:-/}" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ -L "$1" ]; then echo "appdir=symlink"; fi"#;

pub fn preflight_cmd(app_dir: &str) -> Cmd {
    Cmd::script(PREFLIGHT_SCRIPT).arg(app_dir).privileged().timeout(Duration::from_secs(60))
}

/// Make `.gangplank/stack/` (never through a symbolic link) for [`gangplank_core::exec::atomic_write`].
const STACK_DIR_SCRIPT: &str = r#"g=$1/.gangplank
for p in "$g" "$g/stack"; do
  if [ -L "$p" ]; then echo "$p is a symbolic link: refusing to write through it" >&2; exit 6; fi
  [ -d "$p" ] || mkdir -m 700 -- "$p" || exit 1
done"#;

pub fn stack_dir_cmd(app_dir: &str) -> Cmd {
    Cmd::script(STACK_DIR_SCRIPT).arg(app_dir).privileged().timeout(Duration::from_secs(60))
}

/// `docker stack deploy` of `file` (relative to the app dir) with `IMAGE_TAG`.
///
/// `--with-registry-auth` forwards the SSH user's registry login on the manager (its docker config, where
/// the `registry-*` inputs' `docker login` lands) to the agents that pull: that login, done before this
/// command, is the one hook registry credentials need here. `--prune` removes services the file no longer
/// has. It returns once the specs are updated (`--detach`, the CLI's default): [`converge`] then gates.
/// `docker_config`: this run's registry login ([`login`]), which `--with-registry-auth` hands to the
/// nodes that pull.
pub fn stack_deploy_cmd(app_dir: &str, app: &str, file: &str, tag: &str, docker_config: Option<&str>) -> Cmd {
    let c = Cmd::new("docker")
        .args(["stack", "deploy", "--compose-file", file, "--with-registry-auth", "--prune", app])
        .env("IMAGE_TAG", tag);
    let c = match docker_config {
        Some(dir) => c.env("DOCKER_CONFIG", dir),
        None => c,
    };
    c.in_dir(app_dir).privileged().timeout(crate::plan::PULL_UP_TIMEOUT)
}

/// With `registry`: log in on the manager, under the lock, into the temporary Docker config that goes
/// with the lock (crate::registry), and return its folder for [`stack_deploy_cmd`].
fn login(
    ex: &mut dyn Executor,
    app_dir: &str,
    login: Option<&crate::registry::Login>,
    spec: &str,
) -> Result<Option<String>> {
    let Some(l) = login else { return Ok(None) };
    let out = ex.run(&crate::registry::login_cmd(app_dir, l))?;
    if !out.success() {
        return Err(crate::registry::login_error(l, spec, &out.tail(3)));
    }
    info(format!(
        "logged in to {} on {spec} as {} (temporary Docker config {})",
        l.registry,
        l.username,
        crate::registry::AUTH_DIR
    ));
    Ok(Some(crate::registry::auth_dir(app_dir)))
}

/// `docker stack rm`: a first deploy that failed goes.
pub fn stack_rm_cmd(app: &str) -> Cmd {
    Cmd::new("docker").args(["stack", "rm", app]).privileged().timeout(Duration::from_secs(120))
}

/// One poll of the convergence gate: the stack's services (`docker service inspect`), a marker, then
/// every task meant to run (`docker inspect` of `docker service ps -q --filter desired-state=running`).
const POLL_SCRIPT: &str = r#"ids=$(docker service ls -q --filter "label=com.docker.stack.namespace=$1") || exit 1
if [ -z "$ids" ]; then printf '[]\n@@tasks\n[]\n'; exit 0; fi
docker service inspect $ids || exit 1
echo '@@tasks'
t=$(docker service ps -q --filter desired-state=running $ids) || exit 1
if [ -n "$t" ]; then docker inspect $t || exit 1; else echo '[]'; fi"#;

pub fn poll_cmd(app: &str) -> Cmd {
    Cmd::script(POLL_SCRIPT).arg(app).privileged().timeout(crate::health::POLL_TIMEOUT)
}

/// The last log lines of a failing service (fenced: they are untrusted).
pub fn logs_cmd(service: &str) -> Cmd {
    Cmd::new("docker")
        .args(["service", "logs", "--no-task-ids", "--tail", "50", service])
        .privileged()
        .timeout(Duration::from_secs(30))
}

// ---------------------------------------------------------------------------------------------------
// The convergence gate

/// One service as the gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// The image of its current spec, digest taken off.
    pub image: String,
    /// `None`: global.
    pub replicas: Option<u64>,
    pub update_state: String,
    pub update_message: String,
    /// When the update in `update_state` started: tells an update of this run from one left by an earlier run.
    pub update_started: String,
    /// Tasks meant to run: (state, image without digest, error).
    pub tasks: Vec<(String, String, String)>,
}

fn strip_digest(image: &str) -> String {
    image.split('@').next().unwrap_or(image).to_string()
}

/// Parse [`POLL_SCRIPT`]'s answer.
pub fn parse_poll(stdout: &str) -> std::result::Result<Vec<Service>, String> {
    let (svcs, tasks) = stdout.split_once("@@tasks").ok_or("no task list in the answer")?;
    let svcs: Vec<Value> = serde_json::from_str(svcs.trim()).map_err(|e| format!("service inspect: {e}"))?;
    let tasks: Vec<Value> = serde_json::from_str(tasks.trim()).map_err(|e| format!("task inspect: {e}"))?;
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(svcs
        .iter()
        .map(|v| {
            let id = s(v, "/ID");
            Service {
                name: s(v, "/Spec/Name"),
                image: strip_digest(&s(v, "/Spec/TaskTemplate/ContainerSpec/Image")),
                replicas: v.pointer("/Spec/Mode/Replicated/Replicas").and_then(Value::as_u64),
                update_state: s(v, "/UpdateStatus/State"),
                update_message: s(v, "/UpdateStatus/Message"),
                update_started: s(v, "/UpdateStatus/StartedAt"),
                tasks: tasks
                    .iter()
                    .filter(|t| s(t, "/ServiceID") == id)
                    .map(|t| {
                        (s(t, "/Status/State"), strip_digest(&s(t, "/Spec/ContainerSpec/Image")), s(t, "/Status/Err"))
                    })
                    .collect(),
                id,
            }
        })
        .collect())
}

/// Where the stack stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every service converged on the images wanted.
    Converged,
    /// Still moving (what is waited for).
    Waiting(String),
    /// Swarm is rolling an update back, or has (`done`).
    SwarmRollback { done: bool, why: String },
    /// An update Swarm paused (failure_action: pause, or a rollback that failed).
    Paused(String),
}

/// The verdict on the services of a poll. `want`: (service, image) the release runs.
pub fn verdict(services: &[Service], want: &[(String, String)]) -> Verdict {
    let mut rollback: Option<(bool, String)> = None;
    let mut waiting = vec![];
    for (name, _) in want {
        if !services.iter().any(|s| &s.name == name) {
            waiting.push(format!("{name}: not created yet"));
        }
    }
    for s in services {
        let why = if s.update_message.is_empty() { s.update_state.clone() } else { s.update_message.clone() };
        match s.update_state.as_str() {
            "paused" | "rollback_paused" => return Verdict::Paused(format!("{}: {why}", s.name)),
            "rollback_started" => {
                rollback = Some((false, format!("{}: {why}", s.name)));
                continue;
            }
            "rollback_completed" => {
                rollback.get_or_insert((true, format!("{}: {why}", s.name)));
            }
            "updating" => {
                waiting.push(format!("{}: updating", s.name));
                continue;
            }
            _ => {}
        }
        let running = s.tasks.iter().filter(|t| t.0 == "running" && t.1 == s.image).count() as u64;
        let desired = s.replicas.unwrap_or(s.tasks.len() as u64);
        if running < desired || (s.replicas.is_none() && s.tasks.is_empty()) {
            let states: Vec<String> = s
                .tasks
                .iter()
                .map(|t| if t.2.is_empty() { t.0.clone() } else { format!("{} ({})", t.0, t.2) })
                .collect();
            waiting.push(format!("{}: {running}/{desired} running [{}]", s.name, states.join(", ")));
        }
    }
    if let Some((done, why)) = rollback {
        let done = done && waiting.is_empty();
        return Verdict::SwarmRollback { done, why };
    }
    // The services run the wanted images (an update Swarm rolled back shows the old one in its spec).
    for (name, img) in want {
        if let Some(s) = services.iter().find(|s| &s.name == name) {
            if &s.image != img {
                waiting.push(format!("{name}: spec has {} (not {img})", s.image));
            }
        }
    }
    if waiting.is_empty() {
        Verdict::Converged
    } else {
        Verdict::Waiting(waiting.join("; "))
    }
}

/// How a wait for convergence ended.
#[derive(Debug)]
pub enum Converge {
    Converged(Vec<Service>),
    /// Swarm rolled the update back by itself; `done`: and that converged.
    SwarmRolledBack {
        why: String,
        done: bool,
    },
    Failed(String),
}

/// The stack's services before a deploy (empty when unreadable), for [`converge`].
pub fn snapshot(ex: &mut dyn Executor, app: &str) -> Vec<Service> {
    ex.run(&poll_cmd(app))
        .ok()
        .filter(|o| o.success())
        .and_then(|o| parse_poll(&o.stdout_str()).ok())
        .unwrap_or_default()
}

/// Forget an update status that was there before this deploy (same start time): a service whose spec did
/// not change keeps the `rollback_completed` or `paused` of an earlier run, which says nothing about this one.
fn without_stale(mut svcs: Vec<Service>, before: &[Service]) -> Vec<Service> {
    for s in &mut svcs {
        let stale = before
            .iter()
            .any(|b| b.name == s.name && !b.update_started.is_empty() && b.update_started == s.update_started);
        if stale {
            s.update_state.clear();
            s.update_message.clear();
        }
    }
    svcs
}

/// Poll until the stack converges on `want`, Swarm rolls back (then wait for that too), the update
/// pauses, or `timeout`. `before`: the services before the deploy ([`snapshot`]). A lost poll fails the wait.
pub fn converge(
    ex: &mut dyn Executor,
    app: &str,
    want: &[(String, String)],
    before: &[Service],
    timeout: Duration,
) -> Result<Converge> {
    let start = Instant::now();
    let mut last = String::new();
    let mut said = String::new();
    let mut rolling_back: Option<String> = None;
    loop {
        if crate::interrupted() {
            return Err(Error::interrupted("interrupted while waiting for the stack to converge"));
        }
        let out = ex.run(&poll_cmd(app))?;
        if out.success() {
            match parse_poll(&out.stdout_str()) {
                Err(e) => last = format!("unreadable answer: {e}"),
                Ok(svcs) => match verdict(&without_stale(svcs.clone(), before), want) {
                    Verdict::Converged if rolling_back.is_none() => return Ok(Converge::Converged(svcs)),
                    Verdict::Converged => {}
                    Verdict::Waiting(w) => last = w,
                    Verdict::Paused(w) => return Ok(Converge::Failed(format!("Swarm paused the update: {w}"))),
                    Verdict::SwarmRollback { done, why } => {
                        if rolling_back.is_none() {
                            warning("swarm", format!("Swarm is rolling the update back by itself: {why}"));
                        }
                        rolling_back = Some(why.clone());
                        if done {
                            return Ok(Converge::SwarmRolledBack { why, done: true });
                        }
                        last = format!("Swarm rolling back: {why}");
                    }
                },
            }
        } else {
            last = format!("polling failed: {}", out.tail(3));
        }
        if last != said {
            info(format!("swarm: {last}"));
            said = last.clone();
        }
        if start.elapsed() >= timeout {
            return Ok(match rolling_back {
                Some(why) => Converge::SwarmRolledBack { why, done: false },
                None => Converge::Failed(format!("not converged within {}s: {last}", timeout.as_secs())),
            });
        }
        let pause = if start.elapsed() < Duration::from_secs(2) { 200 } else { 1000 };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// `health-url` after convergence: probed on the manager when it names localhost, else from the runner.
fn probe_health(ex: &mut dyn Executor, url: &str, timeout: Duration) -> Result<std::result::Result<(), String>> {
    let start = Instant::now();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
    let mut last;
    loop {
        if crate::health::is_host_local(url) {
            let out = ex.run(&crate::health::probe_cmd(url).timeout(crate::health::POLL_TIMEOUT))?;
            if out.success() {
                return Ok(Ok(()));
            }
            last = out.stdout_str().trim().to_string();
        } else {
            match client.get(url).send() {
                Ok(r) if r.status().is_success() => return Ok(Ok(())),
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = e.to_string(),
            }
        }
        if start.elapsed() >= timeout {
            return Ok(Err(format!("{url} did not answer 2xx within {}s: {last}", timeout.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Print the last log lines of the services not running the wanted image.
fn show_logs(ex: &mut dyn Executor, app: &str) {
    let Ok(out) = ex.run(&poll_cmd(app)) else { return };
    let Ok(svcs) = parse_poll(&out.stdout_str()) else { return };
    for s in svcs {
        if let Ok(o) = ex.run(&logs_cmd(&s.name)) {
            let text = format!("{}{}", o.stdout_str(), o.stderr_str());
            info(format!(
                "last log lines of service {} (untrusted output):\n-----8<-----\n{}\n-----8<-----",
                s.name,
                text.trim_end()
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The runs

/// What preflight found on the manager.
struct Manager {
    spec: HostSpec,
    ex: Box<dyn Executor>,
}

fn preflight_host(ex: &mut dyn Executor, app_dir: &str, min_free: u64) -> Result<String> {
    let out = ex.check(&preflight_cmd(app_dir), "preflight")?;
    let text = out.stdout_str();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_default().to_string();
    let swarm = get("swarm");
    let mut parts = swarm.split_whitespace();
    let (state, control, cluster) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
    let label = ex.label().to_string();
    if state != "active" || control != "true" {
        return Err(Error::bad_input(format!(
            "{label} is not a Swarm manager (docker info: {})",
            if swarm.is_empty() { "no answer" } else { &swarm }
        ))
        .hint("`target: swarm` deploys on the first host in `host`, which must be a manager (`docker swarm init`, or `docker node promote`)"));
    }
    if text.lines().any(|l| l == "appdir=symlink") {
        return Err(Error::bad_input(format!("`app-dir` {app_dir} is a symbolic link on {label}"))
            .hint("gangplank writes only inside `app-dir`: set it to the real folder"));
    }
    if let Ok(kib) = get("df").parse::<u64>() {
        if kib.saturating_mul(1024) < min_free {
            return Err(Error::bad_input(format!(
                "{label} has {} free on its Docker data root, less than `min-free-disk` {}",
                gangplank_core::input::format_size(kib * 1024),
                gangplank_core::input::format_size(min_free)
            ))
            .hint("free space on the manager (docker image prune) or lower `min-free-disk`"));
        }
    }
    Ok(cluster.unwrap_or_default().to_string())
}

/// Connect to every listed host, check the first is a manager and every other a manager of the same
/// Swarm. Every failure at once (exit 2).
fn connect_managers(
    hosts: &[HostSpec],
    app_dir: &str,
    min_free: u64,
    connect: &mut Connect,
    mut errs: Vec<Error>,
) -> Result<Manager> {
    let mut first: Option<(Manager, String)> = None;
    for (i, h) in hosts.iter().enumerate() {
        let mut ex = match connect(h) {
            Ok(ex) => ex,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        match preflight_host(ex.as_mut(), app_dir, min_free) {
            Err(e) => errs.push(e),
            Ok(cluster) if i == 0 => first = Some((Manager { spec: h.clone(), ex }, cluster)),
            Ok(cluster) => {
                if let Some((_, c0)) = &first {
                    if *c0 != cluster {
                        errs.push(
                            Error::bad_input(format!("{h} is a manager of another Swarm than {}", hosts[0]))
                                .hint("list managers of one Swarm only: the first one deploys"),
                        );
                    }
                }
            }
        }
    }
    match (combine(errs), first) {
        (Some(e), _) => Err(e),
        (None, Some((m, _))) => Ok(m),
        (None, None) => Err(Error::bad_input("no host to deploy to").hint("set `host`")),
    }
}

fn audit(spec: &HostSpec, meta: &state::RunMeta, action: &str, tag: &str, prev: &str, res: &str) -> String {
    state::AuditLine {
        time: state::now_rfc3339(),
        action,
        tag,
        previous_tag: prev,
        result: res,
        host: &spec.to_string(),
        run_url: &meta.run_url,
        actor: &meta.actor,
    }
    .to_line()
}

fn new_outcome(app: &str, hosts: &[HostSpec], meta: &state::RunMeta, action: &str) -> Outcome {
    Outcome {
        record: crate::run::new_record(app, hosts, meta, action),
        rows: vec![],
        rolled_back: false,
        changed: false,
        error: None,
    }
}

fn finish(mut out: Outcome) -> Outcome {
    out.record.finished_at = state::now_rfc3339();
    out
}

/// The plan of a Swarm deploy; with `preflight-only`, the exact commands too.
fn render_plan(cfg: &DeployConfig, manager: &HostSpec, ex: &dyn Executor, stack_json: &str) -> String {
    let file = stack_file(&cfg.tag);
    let mut s = format!(
        "plan: deploy `{}` tag `{}` as a Swarm stack from manager {manager} (app dir {})\n",
        cfg.app, cfg.tag, cfg.app_dir
    );
    let steps = [
        "connect over SSH, host key verified; preflight: the first host is a Swarm manager (others: managers of the same Swarm), app dir, free disk; the stack file resolved by `docker stack config` and checked".to_string(),
        "take the lock .gangplank/lock on the manager (mkdir), waiting up to lock-timeout; read state.json".into(),
        format!("upload the stack file to {file} (update_config defaults: start-first, failure_action rollback, monitor 5s, where the file says nothing)"),
        format!("docker stack deploy --with-registry-auth --prune {} with IMAGE_TAG={}", cfg.app, cfg.tag),
        "converge: every service's UpdateStatus completed, every desired task running (healthy where the image has a HEALTHCHECK) on the new image; then health-url 2xx".into(),
        "commit: state.json current, audit line, release the lock".into(),
    ];
    for (i, step) in steps.iter().enumerate() {
        s.push_str(&format!("  {}. {step}\n", i + 1));
    }
    s.push_str("on a failed gate: when Swarm rolled back by itself, wait for that to converge; else stack deploy the previous release's stack file with its tag and wait; record, release the lock (a first deploy: docker stack rm)\n");
    if !cfg.preflight_only {
        return s;
    }
    let sudo = ex.sudo();
    s.push_str(&format!("commands on {manager}:\n"));
    for c in [
        lock::acquire_cmd(&cfg.app_dir, "<owner>"),
        stack_dir_cmd(&cfg.app_dir),
        gangplank_core::exec::atomic_write(&format!("{}/{file}", cfg.app_dir), stack_json.as_bytes(), 0o600),
        stack_deploy_cmd(&cfg.app_dir, &cfg.app, &file, &cfg.tag, None),
        poll_cmd(&cfg.app),
    ] {
        s.push_str(&format!("$ {}\n", c.display(sudo).replace('\n', "⏎")));
    }
    s
}

/// A Swarm deploy: preflight, lock, upload, stack deploy, converge, health-url, commit; on failure the
/// previous release back (by Swarm or by gangplank).
pub fn deploy(cfg: &DeployConfig, connect: &mut Connect) -> Outcome {
    let mut out = new_outcome(&cfg.app, &cfg.ssh.hosts, &cfg.meta, "deploy");
    out.record.deployed_tag = cfg.tag.clone();
    let prepared = {
        let _g = group("preflight (swarm)");
        let mut errs = vec![];
        let stack = match resolve(&cfg.compose_files).and_then(|s| with_defaults(s, cfg.auto_rollback)) {
            Ok(s) => Some(s),
            Err(e) => {
                errs.push(e);
                None
            }
        };
        connect_managers(&cfg.ssh.hosts, &cfg.app_dir, cfg.min_free_disk, connect, errs)
            .map(|m| (m, stack.expect("no error, so the stack resolved")))
    };
    let (mut m, stack) = match prepared {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return finish(out);
        }
    };
    let stack_json = serde_json::to_string_pretty(&stack).expect("a stack serialises") + "\n";
    info(render_plan(cfg, &m.spec, m.ex.as_ref(), &stack_json).trim_end());
    info("preflight passed on the manager");
    if cfg.preflight_only {
        out.record.status = "preflight-passed".into();
        out.record.deployed_tag.clear();
        return finish(out);
    }
    let start = Instant::now();
    let owner = crate::run::new_owner(&cfg.meta, "deploy", &cfg.tag);
    let host = m.spec.to_string();
    let row = |out: &mut Outcome, prev: &str, result: &str| {
        out.rows.push(Row {
            host: host.clone(),
            previous_tag: prev.to_string(),
            new_tag: cfg.tag.clone(),
            result: result.into(),
            duration: start.elapsed(),
        })
    };
    if cfg.force_unlock {
        match lock::force_unlock(m.ex.as_mut(), &cfg.app_dir) {
            Ok(Some(who)) => warning("force-unlock", format!("broke the lock on {} held by {who}", m.spec)),
            Ok(None) => info(format!("force-unlock: no lock on {}", m.spec)),
            Err(e) => {
                out.error = Some(e);
                return finish(out);
            }
        }
    }
    let got = {
        let _g = group(&format!("lock {}", m.spec));
        lock::acquire(m.ex.as_mut(), &cfg.app_dir, &owner, cfg.lock_timeout, &crate::interrupted)
    };
    let text = match got {
        Ok(t) => t,
        Err(e) => {
            row(&mut out, "", "not changed (lock)");
            out.error = Some(e);
            return finish(out);
        }
    };
    let mut st = match crate::engine::parse_state(&text, &m.spec.to_string(), &cfg.app_dir, &cfg.app) {
        Ok(st) => st,
        Err(e) => {
            out.error = Some(unlock_after(m.ex.as_mut(), &cfg.app_dir, &owner.id, e));
            return finish(out);
        }
    };
    if st.pending.is_some() {
        let e = Error::bad_input(format!(
            "{} holds the journal of an unfinished compose deploy of `{}`",
            m.spec, cfg.app
        ))
        .hint("this app dir was deployed with `target: compose`: finish or roll back that deploy first, or use another `app-name`/`app-dir` for the stack");
        out.error = Some(unlock_after(m.ex.as_mut(), &cfg.app_dir, &owner.id, e));
        return finish(out);
    }
    let cur = st.current.clone();
    let prev_tag = match cur.as_ref().map(|c| c.tag.clone()) {
        Some(t) if t != cfg.tag => Some(t),
        _ => st.previous_tag().map(str::to_string),
    };
    let prev_file = prev_tag.as_deref().map(|t| {
        cur.as_ref()
            .filter(|c| c.tag == t)
            .and_then(|c| c.compose_files.first().cloned())
            .unwrap_or_else(|| stack_file(t))
    });
    out.record.previous_tag = prev_tag.clone().unwrap_or_default();
    let prev_name = prev_tag.clone().unwrap_or_default();
    let file = stack_file(&cfg.tag);

    // Upload, then deploy.
    let mut before = vec![];
    let mut ran = false;
    let mut docker_config = None;
    let deployed = (|before: &mut Vec<Service>, ran: &mut bool, dc: &mut Option<String>| -> Result<()> {
        let _g = group(&format!("stack deploy on {}", m.spec));
        *dc = login(m.ex.as_mut(), &cfg.app_dir, cfg.login.as_ref(), &m.spec.to_string())?;
        m.ex.check(&stack_dir_cmd(&cfg.app_dir), "making .gangplank/stack")?;
        m.ex.upload(&format!("{}/{file}", cfg.app_dir), stack_json.as_bytes(), 0o600)?;
        *before = snapshot(m.ex.as_mut(), &cfg.app);
        *ran = true;
        let o = m
            .ex
            .check(&stack_deploy_cmd(&cfg.app_dir, &cfg.app, &file, &cfg.tag, dc.as_deref()), "docker stack deploy")?;
        let text = format!("{}{}", o.stdout_str(), o.stderr_str());
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            info(format!("  {l}"));
        }
        Ok(())
    })(&mut before, &mut ran, &mut docker_config);
    if let (Err(e), false) = (&deployed, ran) {
        // Nothing reached Swarm: the host keeps only an unused stack file.
        row(&mut out, &prev_name, "not changed");
        out.error = Some(unlock_after(m.ex.as_mut(), &cfg.app_dir, &owner.id, e.clone()));
        return finish(out);
    }
    out.changed = true;
    let want = expected_images(&stack, &cfg.app, &cfg.tag);
    let gate = match deployed {
        Err(e) => Err(e),
        Ok(()) => {
            let _g = group(&format!("converge {}", m.spec));
            match converge(m.ex.as_mut(), &cfg.app, &want, &before, cfg.health_timeout) {
                Err(e) => Err(e),
                Ok(Converge::Converged(_)) => match cfg.health_url.as_deref() {
                    None => Ok(Ok(())),
                    Some(u) => probe_health(m.ex.as_mut(), u, cfg.health_timeout).map(|r| r.map_err(Gated::Url)),
                },
                Ok(Converge::SwarmRolledBack { why, done }) => Ok(Err(Gated::SwarmRolledBack(why, done))),
                Ok(Converge::Failed(why)) => Ok(Err(Gated::Failed(why))),
            }
        }
    };
    let reason = match gate {
        Ok(Ok(())) => {
            let line = audit(&m.spec, &cfg.meta, "deploy", &cfg.tag, &prev_name, "deployed");
            let new = Current {
                tag: cfg.tag.clone(),
                digests: Default::default(),
                images: Default::default(),
                deployed_at: state::now_rfc3339(),
                git_sha: cfg.meta.git_sha.clone(),
                run_url: cfg.meta.run_url.clone(),
                compose_files: vec![file.clone()],
            };
            st.promote(new, "replaced");
            let fin =
                crate::files::finish_cmd(&cfg.app_dir, &st.to_json(), &line, crate::KEEP_BACKUPS, &owner.id, &[], &[]);
            match m.ex.check(&fin, "recording the deploy") {
                Ok(_) => {
                    info(format!("`{}` converged on `{}` on the Swarm of {}", cfg.app, cfg.tag, m.spec));
                    out.record.status = "deployed".into();
                    row(&mut out, &prev_name, "deployed");
                }
                Err(e) => {
                    row(&mut out, &prev_name, "failed");
                    out.error = Some(e);
                }
            }
            return finish(out);
        }
        Ok(Err(g)) => g,
        Err(e) => Gated::Failed(e.message),
    };
    // A signal: the previous spec goes back without waiting for it (GitHub kills the job seconds later).
    let hurry = crate::interrupted();
    // Failed: the previous release back.
    annotate("swarm", format!("{} on {}: {}", cfg.tag, m.spec, reason.text()));
    m.ex.set_interruptible(false);
    if !hurry {
        show_logs(m.ex.as_mut(), &cfg.app);
    }
    let back: std::result::Result<String, String> = match (&reason, &prev_tag, &prev_file) {
        _ if !cfg.auto_rollback => Err("auto-rollback is off, so it stays in place".into()),
        (_, None, _) => {
            // A first deploy: nothing to go back to, so the stack goes.
            match m.ex.check(&stack_rm_cmd(&cfg.app), "docker stack rm") {
                Ok(_) => Ok("it was the first deploy, so the stack was removed".into()),
                Err(e) => Err(format!("removing the stack failed: {}", e.message)),
            }
        }
        (Gated::SwarmRolledBack(_, true), Some(p), _) => Ok(format!("Swarm rolled back to `{p}` by itself")),
        (_, Some(p), Some(pf)) => {
            let want_prev = expected_images(&stack, &cfg.app, p);
            let _g = group(&format!("roll back {} to {p}", m.spec));
            let before_back = snapshot(m.ex.as_mut(), &cfg.app);
            match m.ex.check(
                &stack_deploy_cmd(&cfg.app_dir, &cfg.app, pf, p, docker_config.as_deref()),
                "docker stack deploy (previous)",
            ) {
                Err(e) => Err(format!("deploying `{p}` again failed: {}", e.message)),
                Ok(_) if hurry => Ok(format!("`{p}`'s spec was deployed again (its convergence not waited for)")),
                Ok(_) => match converge(m.ex.as_mut(), &cfg.app, &want_prev, &before_back, cfg.health_timeout) {
                    Ok(Converge::Converged(_)) => Ok(format!("rolled back to `{p}`, which converged")),
                    Ok(Converge::SwarmRolledBack { why, .. }) | Ok(Converge::Failed(why)) => {
                        Err(format!("`{p}` did not converge either: {why}"))
                    }
                    Err(e) => Err(e.message),
                },
            }
        }
        (_, Some(_), None) => Err("no previous stack file".into()),
    };
    let rolled = back.is_ok() && prev_tag.is_some() && cfg.auto_rollback;
    let result = if hurry { "interrupted" } else { "health-gate-failed" };
    let mut line = audit(&m.spec, &cfg.meta, "deploy", &cfg.tag, &prev_name, result);
    if rolled {
        line.push('\n');
        line.push_str(&audit(&m.spec, &cfg.meta, "rollback", &prev_name, &cfg.tag, "rolled-back"));
    }
    if prev_tag.is_none() && back.is_ok() {
        st.current = None;
    }
    st.record_failure(&cfg.tag, &state::now_rfc3339(), result);
    let fin = crate::files::finish_cmd(&cfg.app_dir, &st.to_json(), &line, crate::KEEP_BACKUPS, &owner.id, &[], &[]);
    let recorded = m.ex.check(&fin, "recording the failed deploy");
    let mut e = match &back {
        Ok(how) => Error::failed(format!("deploy of `{}` on the Swarm of {} failed ({}); {how}", cfg.tag, m.spec, reason.text()))
            .hint("read the messages and service logs above, fix the image and deploy again"),
        Err(how) => Error::failed(format!(
            "deploy of `{}` on the Swarm of {} failed ({}); {how}",
            cfg.tag,
            m.spec,
            reason.text()
        ))
        .hint(format!("run the rollback action (target: swarm) to go back to `{prev_name}`, or `docker service rollback` on the manager")),
    };
    if let Err(r) = recorded {
        e.message = format!("{}; {}", e.message, r.message);
    }
    if hurry {
        e.class = Class::Interrupted;
    }
    row(&mut out, &prev_name, if rolled { "rolled back" } else { "failed" });
    out.rolled_back = rolled;
    out.error = Some(e);
    finish(out)
}

#[derive(Debug)]
enum Gated {
    Url(String),
    Failed(String),
    SwarmRolledBack(String, bool),
}

impl Gated {
    fn text(&self) -> String {
        match self {
            Gated::Url(w) => format!("health-url: {w}"),
            Gated::Failed(w) => w.clone(),
            Gated::SwarmRolledBack(w, _) => format!("Swarm rolled the update back: {w}"),
        }
    }
}

fn unlock_after(ex: &mut dyn Executor, app_dir: &str, id: &str, mut e: Error) -> Error {
    if let Err(u) = lock::release(ex, app_dir, id) {
        e.message = format!("{}; {}", e.message, u.message);
    }
    e
}

/// A Swarm rollback: the previous release's stack file deployed with its tag on the manager, converged,
/// `health-url`, recorded. Images already on the nodes serve without the registry.
pub fn rollback(cfg: &RollbackConfig, record_previous: Option<String>, connect: &mut Connect) -> Outcome {
    let mut out = new_outcome(&cfg.app, &cfg.ssh.hosts, &cfg.meta, "rollback");
    let wanted = cfg.to_tag.clone().or(record_previous);
    let start = Instant::now();
    let mut m = match connect_managers(&cfg.ssh.hosts, &cfg.app_dir, 0, connect, vec![]) {
        Ok(m) => m,
        Err(e) => {
            out.error = Some(e);
            return finish(out);
        }
    };
    info(format!(
        "plan: roll back the Swarm stack `{}` from manager {} to {}: lock, docker stack deploy of that release's stack file, converge, health-url, record",
        cfg.app,
        m.spec,
        wanted.as_deref().map(|t| format!("`{t}`")).unwrap_or_else(|| "the previous tag".into())
    ));
    if cfg.force_unlock {
        if let Ok(Some(who)) = lock::force_unlock(m.ex.as_mut(), &cfg.app_dir) {
            warning("force-unlock", format!("broke the lock on {} held by {who}", m.spec));
        }
    }
    let owner = crate::run::new_owner(&cfg.meta, "rollback", wanted.as_deref().unwrap_or("previous"));
    let got = lock::acquire_with(m.ex.as_mut(), &cfg.app_dir, &owner, cfg.lock_timeout, &crate::interrupted, false);
    let text = match got {
        Ok(Some(t)) => t,
        Ok(None) => {
            out.error = Some(
                Error::bad_input(format!(
                    "`{}` was never deployed to {} ({} does not exist): there is nothing to roll back to",
                    cfg.app, m.spec, cfg.app_dir
                ))
                .hint("check `app-name`/`app-dir`, or deploy first"),
            );
            return finish(out);
        }
        Err(e) => {
            out.error = Some(e);
            return finish(out);
        }
    };
    let r = (|| -> Result<(String, String)> {
        let mut st = crate::engine::parse_state(&text, &m.spec.to_string(), &cfg.app_dir, &cfg.app)?;
        let from = st.current_tag().unwrap_or("").to_string();
        let target = wanted.clone().or_else(|| st.previous_tag().map(str::to_string)).ok_or_else(|| {
            Error::bad_input(format!("there is no previous tag of `{}` on {} to roll back to", cfg.app, m.spec))
                .hint("pass `to-tag` with the tag to go back to")
        })?;
        crate::validate_tag(&target, "to-tag")?;
        // The target's own stack file when the host has it, else the current one.
        let own = stack_file(&target);
        let has_own =
            m.ex.run(&Cmd::new("test").args(["-f", &format!("{}/{own}", cfg.app_dir)]).privileged())
                .is_ok_and(|o| o.success());
        let file = if has_own {
            own
        } else {
            st.current.as_ref().and_then(|c| c.compose_files.first().cloned()).ok_or_else(|| {
                Error::bad_input(format!("no stack file of `{target}` or of the current release on {}", m.spec))
                    .hint("deploy with `target: swarm` first")
            })?
        };
        info(format!(
            "rolling back {} from `{}` to `{target}` ({file})",
            m.spec,
            if from.is_empty() { "nothing" } else { &from }
        ));
        let stack_text =
            m.ex.check(&Cmd::new("cat").arg(format!("{}/{file}", cfg.app_dir)).privileged(), "reading the stack file")?;
        let stack: Value = serde_json::from_slice(&stack_text.stdout).unwrap_or(Value::Object(Map::new()));
        let before = snapshot(m.ex.as_mut(), &cfg.app);
        let dc = login(m.ex.as_mut(), &cfg.app_dir, cfg.login.as_ref(), &m.spec.to_string())?;
        m.ex.check(&stack_deploy_cmd(&cfg.app_dir, &cfg.app, &file, &target, dc.as_deref()), "docker stack deploy")?;
        let want = expected_images(&stack, &cfg.app, &target);
        let fail = |why: String, st: &mut State, ex: &mut dyn Executor| -> Error {
            show_logs(ex, &cfg.app);
            st.record_failure(&target, &state::now_rfc3339(), "health-gate-failed");
            let line = audit(&m.spec, &cfg.meta, "rollback", &target, &from, "health-gate-failed");
            let _ = ex.check(
                &crate::files::finish_cmd(&cfg.app_dir, &st.to_json(), &line, crate::KEEP_BACKUPS, &owner.id, &[], &[]),
                "recording",
            );
            Error::failed(format!("rollback to `{target}` on the Swarm of {} is not healthy: {why}", m.spec))
                .hint("read the service logs above; pass another `to-tag` to try an older version")
        };
        match converge(m.ex.as_mut(), &cfg.app, &want, &before, cfg.health_timeout)? {
            Converge::Converged(_) => {}
            Converge::SwarmRolledBack { why, .. } | Converge::Failed(why) => {
                return Err(fail(why, &mut st, m.ex.as_mut()))
            }
        }
        if let Some(u) = cfg.health_url.as_deref() {
            if let Err(why) = probe_health(m.ex.as_mut(), u, cfg.health_timeout)? {
                return Err(fail(why, &mut st, m.ex.as_mut()));
            }
        }
        let new = Current {
            tag: target.clone(),
            digests: Default::default(),
            images: Default::default(),
            deployed_at: state::now_rfc3339(),
            git_sha: cfg.meta.git_sha.clone(),
            run_url: cfg.meta.run_url.clone(),
            compose_files: vec![file],
        };
        st.promote(new, "rolled-back");
        let line = audit(&m.spec, &cfg.meta, "rollback", &target, &from, "rolled-back");
        m.ex.check(
            &crate::files::finish_cmd(&cfg.app_dir, &st.to_json(), &line, crate::KEEP_BACKUPS, &owner.id, &[], &[]),
            "recording the rollback",
        )?;
        Ok((from, target))
    })();
    match r {
        Ok((from, to)) => {
            out.changed = true;
            out.record.deployed_tag = to.clone();
            out.record.previous_tag = from.clone();
            out.record.status = "rolled-back".into();
            out.rolled_back = true;
            out.rows.push(Row {
                host: m.spec.to_string(),
                previous_tag: from,
                new_tag: to,
                result: "rolled back".into(),
                duration: start.elapsed(),
            });
        }
        Err(e) => {
            // The lock goes whatever happened (the recording scripts release it too; this is a no-op then).
            let _ = lock::release(m.ex.as_mut(), &cfg.app_dir, &owner.id);
            out.rows.push(Row {
                host: m.spec.to_string(),
                previous_tag: String::new(),
                new_tag: wanted.unwrap_or_default(),
                result: "failed".into(),
                duration: start.elapsed(),
            });
            out.error = Some(e);
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_only_what_the_file_leaves_out() {
        let stack = json!({"version": "3.13", "services": {
            "web": {"image": "r/a:${IMAGE_TAG}", "env_file": [".env"], "deploy": {"update_config": {"order": "stop-first"}}},
            "edge": {"image": "caddy", "ports": [{"mode": "host", "target": 80, "published": 80}], "deploy": {"mode": "global"}}
        }});
        let s = with_defaults(stack.clone(), true).unwrap();
        let web = &s["services"]["web"]["deploy"];
        assert_eq!(web["update_config"]["order"], "stop-first", "the file's own choice stays");
        assert_eq!(web["update_config"]["failure_action"], "rollback");
        assert_eq!(web["update_config"]["parallelism"], 1);
        assert_eq!(web["rollback_config"]["order"], "start-first");
        assert!(s["services"]["web"].get("env_file").is_none());
        assert_eq!(s["services"]["edge"]["deploy"]["update_config"]["order"], "stop-first", "global + host port");
        let paused = with_defaults(stack, false).unwrap();
        assert_eq!(paused["services"]["web"]["deploy"]["update_config"]["failure_action"], "pause");
        assert_eq!(
            expected_images(&s, "shop", "v2"),
            vec![("shop_edge".to_string(), "caddy".to_string()), ("shop_web".to_string(), "r/a:v2".to_string())]
        );
    }

    #[test]
    fn what_swarm_cannot_run_is_refused_at_once() {
        let stack = json!({"services": {
            "a": {"build": {"context": "."}},
            "b": {"image": "x", "container_name": "b"}
        }, "configs": {"c": {"file": "/runner/c.conf"}}});
        let e = with_defaults(stack, true).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        for needle in ["`a` has no `image`", "`b` sets `container_name`", "configs `c` is read from a file"] {
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }

    fn svc(name: &str, image: &str, state: &str, tasks: &[(&str, &str)]) -> Service {
        Service {
            id: name.into(),
            name: name.into(),
            image: image.into(),
            replicas: Some(tasks.len().max(1) as u64),
            update_state: state.into(),
            update_message: String::new(),
            update_started: String::new(),
            tasks: tasks.iter().map(|(s, i)| (s.to_string(), i.to_string(), String::new())).collect(),
        }
    }

    #[test]
    fn verdicts() {
        let want = vec![("a_web".to_string(), "r/a:v2".to_string())];
        let v = |s: Service| verdict(&[s], &want);
        assert_eq!(v(svc("a_web", "r/a:v2", "completed", &[("running", "r/a:v2")])), Verdict::Converged);
        assert!(matches!(v(svc("a_web", "r/a:v2", "updating", &[("running", "r/a:v1")])), Verdict::Waiting(_)));
        assert!(matches!(v(svc("a_web", "r/a:v2", "", &[("starting", "r/a:v2")])), Verdict::Waiting(_)));
        assert!(matches!(v(svc("a_web", "r/a:v2", "paused", &[])), Verdict::Paused(_)));
        assert_eq!(
            v(svc("a_web", "r/a:v1", "rollback_completed", &[("running", "r/a:v1")])),
            Verdict::SwarmRollback { done: true, why: "a_web: rollback_completed".into() }
        );
        assert!(matches!(
            v(svc("a_web", "r/a:v1", "rollback_started", &[("running", "r/a:v2")])),
            Verdict::SwarmRollback { done: false, .. }
        ));
        assert!(matches!(verdict(&[], &want), Verdict::Waiting(_)));
    }

    #[test]
    fn an_update_status_left_by_an_earlier_run_is_not_this_runs() {
        let want = vec![("a_web".to_string(), "r/a:v2".to_string())];
        let mut old = svc("a_web", "r/a:v2", "rollback_completed", &[("running", "r/a:v2")]);
        old.update_started = "t0".into();
        let now = without_stale(vec![old.clone()], std::slice::from_ref(&old));
        assert_eq!(verdict(&now, &want), Verdict::Converged);
        let mut new = old.clone();
        new.update_started = "t1".into();
        assert!(matches!(verdict(&without_stale(vec![new], &[old]), &want), Verdict::SwarmRollback { .. }));
    }

    #[test]
    fn a_poll_answer_is_parsed() {
        let text = r#"[{"ID":"s1","Spec":{"Name":"a_web","Mode":{"Replicated":{"Replicas":1}},"TaskTemplate":{"ContainerSpec":{"Image":"r/a:v2@sha256:00"}}},"UpdateStatus":{"State":"completed"}}]
@@tasks
[{"ServiceID":"s1","Status":{"State":"running"},"Spec":{"ContainerSpec":{"Image":"r/a:v2@sha256:00"}}}]"#;
        let s = parse_poll(text).unwrap();
        assert_eq!(s[0].image, "r/a:v2");
        assert_eq!(s[0].tasks, vec![("running".to_string(), "r/a:v2".to_string(), String::new())]);
    }

    #[test]
    fn targets() {
        assert_eq!(Target::parse("").unwrap(), Target::Compose);
        assert_eq!(Target::parse("swarm").unwrap(), Target::Swarm);
        assert_eq!(Target::parse("k8s").unwrap_err().exit_code(), 2);
    }
}
