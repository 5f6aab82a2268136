//! `verify-image`: start an image (or a compose stack with its real dependencies), wait until it is
//! healthy, run smoke commands inside it, check the image's user and size, and always tear it all down.
//!
//! Contract: docs/actions.md, "verify-image". Order of work: validate inputs (exit 2) → start under a unique
//! project name, with a teardown guard armed before anything starts → health gate (container states from
//! `docker inspect`, `health-url` from the runner) within `timeout` → smoke commands → image checks →
//! teardown → report file, outputs, summary.
//!
//! Invariant: what this binary starts is removed on every exit path: success, failure, timeout, panic
//! (the guard's Drop) and SIGINT/SIGTERM (signals only set a flag; the wait loops see it, kill the child
//! they wait on and return, and the teardown runs on the main thread).

pub mod docker;
pub use gangplank_core::process as proc;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use gangplank_core::actions::{self, info};
use gangplank_core::input::{format_size, parse_bool, parse_duration, parse_list, parse_size};
use gangplank_core::{Error, Result};
use serde::Serialize;

use docker::ContainerState;
use proc::{Compose, Finished, Opts, RunError};

/// The label on a single container this binary starts (compose projects carry compose's own label).
pub const LABEL: &str = "dev.gangplank.verify";

/// Start an image or a compose stack, prove it healthy, run smoke commands, tear everything down.
#[derive(Debug, Parser)]
#[command(name = "verify-image", version, about)]
pub struct Args {
    /// A single image to start and check (required unless compose-files)
    #[arg(long, env = "INPUT_IMAGE")]
    pub image: Option<String>,

    /// Compose files of the whole stack (its real dependencies: database, cache…)
    #[arg(long, env = "INPUT_COMPOSE_FILES")]
    pub compose_files: Option<String>,

    /// The compose service to check (required with compose-files)
    #[arg(long, env = "INPUT_SERVICE")]
    pub service: Option<String>,

    /// Environment file for the stack (compose `--env-file`, or `docker run --env-file`)
    #[arg(long, env = "INPUT_ENV_FILE")]
    pub env_file: Option<PathBuf>,

    /// Exported as IMAGE_TAG to compose interpolation
    #[arg(long, env = "INPUT_IMAGE_TAG")]
    pub image_tag: Option<String>,

    /// HTTP URL that must answer 2xx, probed from the runner (use a published port)
    #[arg(long, env = "INPUT_HEALTH_URL")]
    pub health_url: Option<String>,

    /// How long the start and health gate may take
    #[arg(long, env = "INPUT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Commands run inside the service container, one per line; each must exit 0
    #[arg(long, env = "INPUT_SMOKE")]
    pub smoke: Option<String>,

    /// The image must not run as root
    #[arg(long, env = "INPUT_EXPECT_NON_ROOT", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub expect_non_root: bool,

    /// Largest allowed image size, e.g. `300MiB`
    #[arg(long, env = "INPUT_MAX_SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Ports to publish for a single image, `HOST:CONTAINER` (or `127.0.0.1:HOST:CONTAINER`), one per line
    #[arg(long, env = "INPUT_PORTS")]
    pub ports: Option<String>,

    /// Compose project (or container) name [default: a unique `gangplank-verify-…`]
    #[arg(long, env = "INPUT_PROJECT_NAME")]
    pub project_name: Option<String>,

    /// Where the report JSON is written [default: $RUNNER_TEMP/gangplank/verify-report.json]
    #[arg(long, env = "INPUT_REPORT_FILE")]
    pub report_file: Option<PathBuf>,
}

/// What is started.
#[derive(Debug, Clone)]
pub enum Target {
    Image { image: String, ports: Vec<String> },
    Stack { files: Vec<String>, service: String },
}

/// Validated inputs.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub env_file: Option<PathBuf>,
    pub image_tag: Option<String>,
    pub health_url: Option<reqwest::Url>,
    pub timeout: Duration,
    pub smoke: Vec<String>,
    pub expect_non_root: bool,
    pub max_size: Option<u64>,
    pub project: String,
    pub report_file: PathBuf,
}

fn valid_project(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
        && p.starts_with(|c: char| c.is_ascii_alphanumeric())
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let nonempty = |o: Option<String>| o.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let files = parse_list(self.compose_files.as_deref().unwrap_or(""));
        let target = match (nonempty(self.image), files.is_empty()) {
            (Some(_), false) => {
                return Err(Error::bad_input("give either `image` or `compose-files`, not both")
                    .hint("to check a service of a stack, set `compose-files` and `service`"))
            }
            (None, true) => {
                return Err(Error::bad_input("give `image` or `compose-files`: there is nothing to verify")
                    .hint("set `image: myapp:${{ github.sha }}`, or `compose-files` and `service` for a whole stack"))
            }
            (Some(image), true) => {
                // The reference is a docker argument: one starting with `-` would be read as an option.
                if image.starts_with('-') || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::bad_input(format!("`image` {image:?} is not an image reference"))
                        .hint("give a reference such as `myapp:1.2` or `ghcr.io/org/app@sha256:…`"));
                }
                let ports = parse_list(self.ports.as_deref().unwrap_or(""));
                for p in &ports {
                    let ok = p.split(':').count() <= 3
                        && p.split(':').all(|x| {
                            !x.is_empty()
                                && x.chars().all(|c| {
                                    c.is_ascii_digit() || matches!(c, '.' | '/' | '-') || c.is_ascii_lowercase()
                                })
                        });
                    if !ok {
                        return Err(Error::bad_input(format!("port `{p}` is not a port mapping"))
                            .hint("write ports as `HOST:CONTAINER`, e.g. `18080:8080`"));
                    }
                }
                Target::Image { image, ports }
            }
            (None, false) => {
                for f in &files {
                    if !std::path::Path::new(f).is_file() {
                        return Err(Error::bad_input(format!("compose file `{f}` does not exist"))
                            .hint("paths in `compose-files` are relative to the working directory of the step"));
                    }
                }
                let service = nonempty(self.service).ok_or_else(|| {
                    Error::bad_input("`compose-files` is set but `service` is not")
                        .hint("set `service:` to the compose service to check, e.g. `web`")
                })?;
                Target::Stack { files, service }
            }
        };
        if let Some(f) = &self.env_file {
            // Read here only to mask its values (docker reads it itself), and bounded like every input.
            let text = gangplank_core::local::read_input(f, "env-file", gangplank_core::local::TEXT_LIMIT)
                .map_err(|e| e.hint("create it in an earlier step, or leave `env-file` unset"))?;
            gangplank_core::dotenv::register_masks(&String::from_utf8_lossy(&text));
        }
        let health_url = match nonempty(self.health_url) {
            Some(u) => {
                let url = reqwest::Url::parse(&u).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(
                    || {
                        Error::bad_input(format!("health-url `{u}` is not an http(s) URL"))
                            .hint("use a published port, e.g. `http://127.0.0.1:8080/health`")
                    },
                )?;
                Some(url)
            }
            None => None,
        };
        if self.timeout.is_zero() {
            return Err(Error::bad_input("`timeout` is zero").hint("give the stack time to start, e.g. `60s`"));
        }
        let project = match nonempty(self.project_name) {
            Some(p) if valid_project(&p) => p,
            Some(p) => {
                return Err(Error::bad_input(format!("project name `{p}` is not valid"))
                    .hint("use lowercase letters, digits, `-` and `_`"))
            }
            None => {
                use rand::Rng;
                format!("gangplank-verify-{:012x}", rand::thread_rng().gen::<u64>() & 0xffff_ffff_ffff)
            }
        };
        // Smoke commands are shell lines: one per line (commas are part of a command).
        let smoke = self
            .smoke
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let report_file = self.report_file.filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| {
            std::env::var_os("RUNNER_TEMP")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join("gangplank")
                .join("verify-report.json")
        });
        REPORT_OUTPUT.check(&report_file)?;
        Ok(Config {
            target,
            env_file: self.env_file,
            image_tag: nonempty(self.image_tag),
            health_url,
            timeout: self.timeout,
            smoke,
            expect_non_root: self.expect_non_root,
            max_size: self.max_size,
            project,
            report_file,
        })
    }
}

fn run_error(e: RunError) -> Error {
    match e {
        RunError::Spawn(p, e) => Error::bad_input(format!("cannot run `{p}`: {e}"))
            .hint("install the Docker CLI (and docker compose for `compose-files`) on the runner"),
        RunError::TimedOut(f) => Error::failed(format!("a docker command did not finish in time: {}", f.tail(2))),
        RunError::Interrupted(sig) => Error::interrupted(format!("interrupted by signal {sig}")),
    }
}

fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// Run a short docker query (inspect, ps, logs): interruptible, no deadline.
fn query(mut c: Command) -> Result<Finished> {
    proc::run(&mut c, Opts::default()).map_err(run_error)
}

/// Removes what was started; armed before anything starts, so a panic or an early return cleans up too.
pub struct Teardown {
    cfg: Config,
    compose: Option<Compose>,
    done: bool,
    /// Names of things still there after teardown (should be empty).
    pub leftovers: Vec<String>,
}

impl Teardown {
    fn compose_cmd(&self, compose: Compose) -> Command {
        let mut c = compose.command();
        c.arg("-p").arg(&self.cfg.project);
        if let Target::Stack { files, .. } = &self.cfg.target {
            for f in files {
                c.arg("-f").arg(f);
            }
        }
        if let Some(e) = &self.cfg.env_file {
            c.arg("--env-file").arg(e);
        }
        if let Some(t) = &self.cfg.image_tag {
            c.env("IMAGE_TAG", t);
        }
        c
    }

    fn filter(&self) -> String {
        match self.cfg.target {
            Target::Image { .. } => format!("label={LABEL}={}", self.cfg.project),
            Target::Stack { .. } => {
                format!("label=com.docker.compose.project={}", self.cfg.project)
            }
        }
    }

    fn ids(&self, kind: &[&str]) -> Vec<String> {
        let mut c = docker(kind);
        c.args(["-q", "--filter", &self.filter()]);
        match proc::run(&mut c, Opts { uninterruptible: true, ..Default::default() }) {
            Ok(f) if f.ok() => f.stdout.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// Containers are throwaway: killed at once (`rm -f`), then compose `down -v --remove-orphans`
    /// removes networks and volumes, then anything still labelled with the project is removed.
    pub fn run(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let _g = actions::group(&format!("tear down {}", self.cfg.project));
        let unint = Opts {
            uninterruptible: true,
            deadline: Some(Instant::now() + Duration::from_secs(120)),
            ..Default::default()
        };
        let containers = self.ids(&["ps", "-a"]);
        if !containers.is_empty() {
            let mut c = docker(&["rm", "-f", "-v"]);
            c.args(&containers);
            let _ = proc::run(&mut c, unint);
        }
        if let Some(compose) = self.compose {
            let mut c = self.compose_cmd(compose);
            c.args(["down", "-v", "--remove-orphans", "-t", "0"]);
            if let Ok(f) = proc::run(&mut c, unint) {
                if !f.ok() {
                    info(format!("{} down failed: {}", compose.name(), f.tail(2)));
                }
            }
            // Whatever compose missed (a run interrupted mid-`up`, or a `down` that failed).
            let nets = self.ids(&["network", "ls"]);
            if !nets.is_empty() {
                let mut c = docker(&["network", "rm"]);
                c.args(&nets);
                let _ = proc::run(&mut c, unint);
            }
            let vols = self.ids(&["volume", "ls"]);
            if !vols.is_empty() {
                let mut c = docker(&["volume", "rm", "-f"]);
                c.args(&vols);
                let _ = proc::run(&mut c, unint);
            }
        }
        let mut left = Vec::new();
        left.extend(self.ids(&["ps", "-a"]).into_iter().map(|i| format!("container {i}")));
        if self.compose.is_some() {
            left.extend(self.ids(&["network", "ls"]).into_iter().map(|i| format!("network {i}")));
            left.extend(self.ids(&["volume", "ls"]).into_iter().map(|i| format!("volume {i}")));
        }
        if left.is_empty() {
            info(format!("removed every container, network and volume of {}", self.cfg.project));
        } else {
            actions::warning("teardown", format!("left behind: {}", left.join(", ")));
        }
        self.leftovers = left;
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.run();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SmokeResult {
    pub command: String,
    pub exit_code: i32,
    pub ok: bool,
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The report file.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub healthy: bool,
    pub status: String,
    pub project: String,
    pub image: Option<String>,
    pub service: Option<String>,
    pub health_url: Option<String>,
    pub health_url_status: Option<u16>,
    pub time_to_healthy_ms: Option<u128>,
    pub duration_ms: u128,
    pub containers: Vec<ContainerState>,
    pub smoke: Vec<SmokeResult>,
    pub checks: Vec<Check>,
    pub failures: Vec<String>,
    pub leftovers: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    pub git_sha: Option<String>,
    pub run_url: Option<String>,
}

/// Inspect every container of the project; `target` decides which must run.
fn inspect(cfg: &Config, filter: &str) -> Result<Vec<ContainerState>> {
    let f = query(docker(&["ps", "-a", "-q", "--filter", filter]))?;
    let ids: Vec<&str> = f.stdout.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = docker(&["inspect"]);
    c.args(&ids);
    let f = query(c)?;
    if !f.ok() {
        // A container removed between `ps` and `inspect` (a restart): look again next round.
        return Ok(Vec::new());
    }
    let parsed = gangplank_core::compose::parse_inspect(&f.stdout)?;
    Ok(parsed
        .iter()
        .map(|c| {
            let is_target = match &cfg.target {
                Target::Image { .. } => true,
                Target::Stack { service, .. } => c.service == *service,
            };
            ContainerState::new(c, is_target)
        })
        .collect())
}

fn is_target(cfg: &Config, c: &ContainerState) -> bool {
    match &cfg.target {
        Target::Image { .. } => true,
        Target::Stack { service, .. } => c.service == *service,
    }
}

fn show_logs(containers: &[&ContainerState]) {
    for c in containers {
        let _g = actions::group(&format!(
            "logs of {} ({}{})",
            c.name,
            c.status,
            c.health.as_ref().map(|h| format!(", {h}")).unwrap_or_default()
        ));
        match query(docker(&["logs", "--tail", "200", &c.id])) {
            Ok(f) => {
                if f.stdout.trim().is_empty() && f.stderr.trim().is_empty() {
                    info("(no output)");
                } else {
                    actions::print_untrusted(&format!("{}{}", f.stdout, f.stderr));
                }
            }
            Err(e) => info(format!("cannot read logs: {e}")),
        }
    }
}

/// Probe the health URL once: its status, or None when nothing answered.
fn probe(client: &reqwest::blocking::Client, url: &reqwest::Url) -> Option<u16> {
    client.get(url.clone()).send().ok().map(|r| r.status().as_u16())
}

/// The outcome of the verification proper (teardown and report come after).
struct Outcome {
    failures: Vec<String>,
    status: &'static str,
    healthy: bool,
}

fn verify(cfg: &Config, compose: Option<Compose>, td: &Teardown, report: &mut Report) -> Result<Outcome> {
    let start = Instant::now();
    let deadline = start + cfg.timeout;
    let filter = td.filter();
    let fail = |status: &'static str, msg: String| Outcome { failures: vec![msg], status, healthy: false };

    // Start.
    {
        let _g = actions::group(&format!("start {}", cfg.project));
        let mut c = match (&cfg.target, compose) {
            (Target::Image { image, ports }, _) => {
                let mut c = docker(&["run", "-d", "--name", &cfg.project, "--label"]);
                c.arg(format!("{LABEL}={}", cfg.project));
                for p in ports {
                    c.arg("-p").arg(p);
                }
                if let Some(e) = &cfg.env_file {
                    c.arg("--env-file").arg(e);
                }
                c.arg(image);
                c
            }
            (Target::Stack { .. }, Some(compose)) => {
                let mut c = td.compose_cmd(compose);
                c.args(["up", "-d"]);
                c
            }
            (Target::Stack { .. }, None) => unreachable!("compose detected for stacks"),
        };
        match proc::run(&mut c, Opts { deadline: Some(deadline), ..Default::default() }) {
            Ok(f) if f.ok() => {
                for l in f.all().lines().filter(|l| !l.trim().is_empty()) {
                    info(l);
                }
            }
            Ok(f) => {
                report.containers = inspect(cfg, &filter).unwrap_or_default();
                let failing: Vec<&ContainerState> = report.containers.iter().filter(|c| !c.ready).collect();
                drop(_g);
                show_logs(&failing);
                return Ok(fail("start-failed", format!("starting {} failed: {}", cfg.project, f.tail(3))));
            }
            Err(RunError::TimedOut(_)) => {
                report.containers = inspect(cfg, &filter).unwrap_or_default();
                let failing: Vec<&ContainerState> = report.containers.iter().filter(|c| !c.ready).collect();
                drop(_g);
                show_logs(&failing);
                let names: Vec<String> = failing.iter().map(describe).collect();
                return Ok(fail(
                    "timeout",
                    format!(
                        "the stack did not start within {}s; not ready: {}",
                        cfg.timeout.as_secs(),
                        if names.is_empty() { "(none created yet)".into() } else { names.join(", ") }
                    ),
                ));
            }
            Err(e) => return Err(run_error(e)),
        }
    }

    // Health gate: every container running (and healthy where it has a HEALTHCHECK), the service under
    // test among them, and health-url 2xx. Polls fast at first, then backs off to 1s.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
    let g = actions::group("wait until healthy");
    let mut pause = Duration::from_millis(50);
    let mut first = true;
    let mut last_url: Option<u16> = None;
    loop {
        if let Some(sig) = proc::interrupted() {
            return Err(run_error(RunError::Interrupted(sig)));
        }
        let states = inspect(cfg, &filter)?;
        let target_present = states.iter().any(|c| is_target(cfg, c));
        // `up -d` returned, so every service's container exists: a service with none is not in the files.
        if first && !target_present && !states.is_empty() {
            if let Target::Stack { service, .. } = &cfg.target {
                let mut names: Vec<&str> = states.iter().map(|c| c.service.as_str()).collect();
                names.sort();
                names.dedup();
                return Err(Error::bad_input(format!(
                    "service `{service}` is not in the compose files (services: {})",
                    names.join(", ")
                ))
                .hint("set `service:` to one of the services above"));
            }
        }
        first = false;
        let all_ready = target_present && states.iter().all(|c| c.ready);
        let dead: Vec<&ContainerState> = states.iter().filter(|c| c.dead).collect();
        let url_ok = match &cfg.health_url {
            Some(u) if all_ready => {
                last_url = probe(&client, u);
                last_url.is_some_and(|s| (200..300).contains(&s))
            }
            Some(_) => false,
            None => true,
        };
        report.containers = states.clone();
        report.health_url_status = last_url;
        if all_ready && url_ok {
            let t = start.elapsed();
            report.time_to_healthy_ms = Some(t.as_millis());
            info(format!("healthy after {:.1}s", t.as_secs_f32()));
            break;
        }
        if !dead.is_empty() || Instant::now() >= deadline {
            drop(g);
            let not_ready: Vec<&ContainerState> = states.iter().filter(|c| !c.ready).collect();
            let mut msg = if !dead.is_empty() {
                let why: Vec<&str> = dead.iter().filter_map(|c| c.problem.as_deref()).collect();
                format!("not ready and will not become ready: {}", why.join(", "))
            } else if !target_present {
                format!("no container of service `{}` was started within {}s", service_name(cfg), cfg.timeout.as_secs())
            } else if !not_ready.is_empty() {
                format!(
                    "not healthy within {}s: {}",
                    cfg.timeout.as_secs(),
                    not_ready.iter().map(describe).collect::<Vec<_>>().join(", ")
                )
            } else {
                format!(
                    "{} did not answer 2xx within {}s (last: {})",
                    cfg.health_url.as_ref().map(|u| u.as_str()).unwrap_or(""),
                    cfg.timeout.as_secs(),
                    last_url.map_or("no answer".to_string(), |s| s.to_string())
                )
            };
            let mut shown = not_ready;
            if shown.is_empty() {
                shown = states.iter().filter(|c| is_target(cfg, c)).collect();
            }
            show_logs(&shown);
            if dead.is_empty() {
                msg.push_str(" (logs above)");
            }
            let status = match () {
                _ if dead.is_empty() => "timeout",
                _ if dead.iter().any(|c| c.restarted) => "restarted",
                _ if dead.iter().any(|c| c.status == "exited" || c.status == "dead") => "exited",
                _ => "unhealthy",
            };
            return Ok(fail(status, msg));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        proc::sleep(pause.min(left));
        // Most stacks turn healthy within seconds: poll at most every 250 ms for the first 15 s (each
        // round is two short docker calls), then back off to once a second.
        let cap = if start.elapsed() < Duration::from_secs(15) { 250 } else { 1000 };
        pause = (pause.mul_f32(1.5)).min(Duration::from_millis(cap));
    }
    drop(g);

    let target = report.containers.iter().find(|c| is_target(cfg, c)).cloned();
    let Some(target) = target else {
        return Ok(fail("unhealthy", "the service container disappeared".into()));
    };
    let mut failures = Vec::new();

    // Smoke commands inside the service container.
    if !cfg.smoke.is_empty() {
        let g = actions::group("smoke commands");
        for cmd in &cfg.smoke {
            let mut c = docker(&["exec", &target.id, "sh", "-c", cmd]);
            let r = proc::run(&mut c, Opts { deadline: Some(Instant::now() + cfg.timeout), ..Default::default() });
            let (code, output) = match r {
                Ok(f) => (f.status, f.all().trim().to_string()),
                Err(RunError::TimedOut(f)) => {
                    (-1, format!("timed out after {}s\n{}", cfg.timeout.as_secs(), f.all().trim()))
                }
                Err(e) => return Err(run_error(e)),
            };
            let ok = code == 0;
            info(format!("{} `{cmd}` (exit {code})", if ok { "ok  " } else { "FAIL" }));
            if !ok && !output.is_empty() {
                actions::print_untrusted(&output);
            }
            if !ok {
                failures.push(format!("smoke command `{cmd}` failed with exit {code} in {}", target.name));
            }
            report.smoke.push(SmokeResult { command: cmd.clone(), exit_code: code, ok, output });
        }
        drop(g);
    }

    // Image checks.
    if cfg.expect_non_root || cfg.max_size.is_some() {
        let _g = actions::group("image checks");
        let image_id = query(docker(&["inspect", "--format", "{{.Image}}", &target.id]))?.stdout.trim().to_string();
        let f = query(docker(&["image", "inspect", &image_id]))?;
        let img = docker::parse_images(&f.stdout)
            .ok()
            .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
            .ok_or_else(|| Error::failed(format!("cannot inspect image {image_id}: {}", f.tail(1))))?;
        if cfg.expect_non_root {
            let user = img.user().to_string();
            let ok = !docker::is_root_user(&user);
            let detail = if user.is_empty() { "no USER set: runs as root".to_string() } else { format!("USER {user}") };
            info(format!("{} expect-non-root: {detail}", if ok { "ok  " } else { "FAIL" }));
            if !ok {
                failures.push(format!("the image runs as root ({detail})"));
            }
            report.checks.push(Check { name: "expect-non-root".into(), ok, detail });
        }
        if let Some(max) = cfg.max_size {
            let ok = img.size <= max;
            let detail = format!("{} ({} bytes), limit {}", format_size(img.size), img.size, format_size(max));
            info(format!("{} max-size: {detail}", if ok { "ok  " } else { "FAIL" }));
            if !ok {
                failures.push(format!("the image is {} , over max-size {}", format_size(img.size), format_size(max)));
            }
            report.checks.push(Check { name: "max-size".into(), ok, detail });
        }
    }

    if !failures.is_empty() {
        if report.smoke.iter().any(|s| !s.ok) {
            show_logs(&[&target]);
        }
        let status = if report.smoke.iter().any(|s| !s.ok) { "smoke-failed" } else { "checks-failed" };
        return Ok(Outcome { failures, status, healthy: true });
    }
    Ok(Outcome { failures, status: "healthy", healthy: true })
}

/// `db (running, starting, restarted 2 times)`.
fn describe(c: &&ContainerState) -> String {
    format!(
        "{} ({}{}{})",
        c.service,
        c.status,
        c.health.as_ref().map(|h| format!(", {h}")).unwrap_or_default(),
        if c.restart_count > 0 { format!(", restarted {} times", c.restart_count) } else { String::new() }
    )
}

fn service_name(cfg: &Config) -> &str {
    match &cfg.target {
        Target::Image { image, .. } => image,
        Target::Stack { service, .. } => service,
    }
}

/// The report file as an output file: an existing file is ours when it has the report's fields.
const REPORT_OUTPUT: gangplank_core::local::Output =
    gangplank_core::local::Output { input: "report-file", keys: &["healthy", "status", "project", "containers"] };

/// Write the report with every registered secret redacted: smoke output and failure messages are the
/// container's words, and a stack that prints its environment prints the env-file's values. Strings are
/// redacted before encoding, since a value with `"` or `\` is escaped in the JSON text.
fn write_report(cfg: &Config, report: &Report) -> Result<()> {
    let mut r = report.clone();
    for s in &mut r.smoke {
        s.command = actions::redact(&s.command);
        s.output = actions::redact(&s.output);
    }
    for f in &mut r.failures {
        *f = actions::redact(f);
    }
    for c in &mut r.checks {
        c.detail = actions::redact(&c.detail);
    }
    let json = serde_json::to_string_pretty(&r).map_err(|e| Error::failed(format!("cannot encode the report: {e}")))?;
    gangplank_core::local::write_output(&cfg.report_file, (actions::redact(&json) + "\n").as_bytes(), &REPORT_OUTPUT)
}

/// The whole run after inputs were parsed (the `gangplank verify-image` entry point). A signal only sets
/// a flag, so the teardown runs first; the run then ends as interrupted (exit 4, like every step).
pub fn run(args: Args) -> Result<()> {
    proc::install_signal_flag();
    let cfg = args.into_config()?;
    let compose = match cfg.target {
        Target::Stack { .. } => Some(Compose::detect().ok_or_else(|| {
            Error::bad_input("`compose-files` is set but neither `docker compose` nor `docker-compose` is installed")
                .hint("install the compose plugin (or docker-compose v1) on the runner")
        })?),
        Target::Image { ref image, .. } => {
            let f = query(docker(&["image", "inspect", "--format", "{{.Id}}", image]))?;
            if !f.ok() {
                if f.all().contains("Cannot connect to the Docker daemon") {
                    return Err(Error::bad_input(format!("the Docker engine does not answer: {}", f.tail(1)))
                        .hint("start the Docker daemon (or set DOCKER_HOST) on the runner"));
                }
                // In the pipeline verify-image runs on a fresh runner after push-registry: fetch the pushed
                // image (with whatever login the job has) before calling it missing.
                info(format!("image {image} is not on this runner; pulling it"));
                let pulled = query(docker(&["pull", "--quiet", image]))?;
                if !pulled.ok() {
                    return Err(Error::bad_input(format!(
                        "image {image} does not exist locally and could not be pulled: {}",
                        pulled.tail(1)
                    ))
                    .hint("build it in an earlier step, or log in to its registry before this step; `docker image ls` lists what exists"));
                }
            }
            None
        }
    };
    let mut report = Report {
        project: cfg.project.clone(),
        image: match &cfg.target {
            Target::Image { image, .. } => Some(image.clone()),
            Target::Stack { .. } => None,
        },
        service: match &cfg.target {
            Target::Stack { service, .. } => Some(service.clone()),
            Target::Image { .. } => None,
        },
        health_url: cfg.health_url.as_ref().map(|u| u.to_string()),
        started_at: proc::now_rfc3339(),
        git_sha: std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()),
        run_url: proc::run_url(),
        ..Default::default()
    };
    let start = Instant::now();
    info(format!("verifying {} as project {}", service_name(&cfg), cfg.project));
    let mut td = Teardown { cfg: cfg.clone(), compose, done: false, leftovers: Vec::new() };
    let result = verify(&cfg, compose, &td, &mut report);
    td.run();
    report.leftovers = td.leftovers.clone();
    report.duration_ms = start.elapsed().as_millis();
    report.finished_at = proc::now_rfc3339();
    let mut error = None;
    let outcome = match result {
        Ok(o) => o,
        Err(mut e) => {
            let status = if proc::interrupted().is_some() { "interrupted" } else { "error" };
            if status == "interrupted" {
                // Whatever a signal cut short (a smoke command, a wait) failed because of it.
                e.class = gangplank_core::error::Class::Interrupted;
                e.hint = Some("the run was cancelled; everything it started was removed".into());
            }
            let o = Outcome { failures: vec![e.message.clone()], status, healthy: false };
            error = Some(e);
            o
        }
    };
    report.healthy = outcome.healthy && outcome.failures.is_empty();
    report.status = outcome.status.to_string();
    report.failures = outcome.failures.clone();
    write_report(&cfg, &report)?;
    actions::set_output("healthy", if report.healthy { "true" } else { "false" })?;
    actions::set_output("report-file", &cfg.report_file.to_string_lossy())?;
    let mut md = format!(
        "### verify-image: {} {}\n\n| container | state | health | restarts |\n|---|---|---|---|\n",
        service_name(&cfg),
        if report.healthy { "✅ healthy" } else { "❌ failed" }
    );
    for c in &report.containers {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.name,
            c.status,
            c.health.as_deref().unwrap_or("-"),
            c.restart_count
        ));
    }
    for s in &report.smoke {
        md.push_str(&format!("\n- smoke `{}`: exit {}", s.command, s.exit_code));
    }
    for f in &report.failures {
        md.push_str(&format!("\n- **{f}**"));
    }
    actions::append_summary(&md)?;
    if report.healthy {
        info(format!("{} is healthy ({:.1}s)", service_name(&cfg), start.elapsed().as_secs_f32()));
        return Ok(());
    }
    if let Some(e) = error.filter(|e| e.hint.is_some() || e.class != gangplank_core::Class::Failed) {
        // Its own class and hint (a bad `service` is exit 2), now that everything is torn down.
        return Err(e);
    }
    let first = outcome.failures.first().cloned().unwrap_or_else(|| "verification failed".into());
    let rest = if outcome.failures.len() > 1 {
        format!(" (and {} more: {})", outcome.failures.len() - 1, outcome.failures[1..].join("; "))
    } else {
        String::new()
    };
    let hint = match outcome.status {
        "smoke-failed" => "the command's output and the container's logs are in the groups above; run it with `docker exec` locally to reproduce",
        "checks-failed" => "set `USER` in the Dockerfile (e.g. `USER 10001`) / slim the image, or relax the check",
        "interrupted" => "the run was cancelled; everything it started was removed",
        "restarted" => gangplank_core::compose::RESTART_HINT,
        _ => "the logs of the failing containers are in the groups above; raise `timeout` if the stack is only slow to start",
    };
    Err(Error::failed(format!("{first}{rest}")).hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Config> {
        Args::try_parse_from(std::iter::once("verify-image").chain(list.iter().copied())).unwrap().into_config()
    }

    #[test]
    fn inputs() {
        let c = args(&["--image", "app:1", "--smoke", "test -f /a, b\n\nwget -qO- x", "--max-size", "300MiB"]).unwrap();
        assert_eq!(c.smoke, vec!["test -f /a, b", "wget -qO- x"]);
        assert_eq!(c.max_size, Some(300 << 20));
        assert!(c.project.starts_with("gangplank-verify-"));
        assert_eq!(args(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(args(&["--image", "a", "--compose-files", "x.yml"]).unwrap_err().exit_code(), 2);
        let e = args(&["--compose-files", "/nonexistent.yml", "--service", "web"]).unwrap_err();
        assert!(e.message.contains("does not exist"));
        assert_eq!(args(&["--image", "a", "--health-url", "ftp://x"]).unwrap_err().exit_code(), 2);
        assert_eq!(args(&["--image", "a", "--project-name", "Bad Name"]).unwrap_err().exit_code(), 2);
        assert_eq!(args(&["--image", "a", "--ports", "80;rm"]).unwrap_err().exit_code(), 2);
        assert!(Args::try_parse_from(["verify-image", "--timeout", "soon"]).is_err());
    }
}
