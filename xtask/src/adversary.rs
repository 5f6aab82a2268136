//! `cargo xtask adversary [--runs N] [--seed N] [--jobs N]`: generated-input runs of every step against the real
//! parts (issue 14, "Measure": at least 10,000 runs, no injection, no panic).
//!
//! Each run takes a valid configuration of one step (`sync-secrets`, `verify-image`, `push-registry`,
//! `deploy-remote`, `rollback`, `status`) against a real sshd on loopback, a real registry, the local Docker engine
//! and the GitHub API stand-in, and changes one to three of its inputs (as `INPUT_*` the way the action shims pass
//! them, or as flags) and sometimes one of its files. The values come from a seeded generator: boundary values
//! (empty, huge numbers, control characters, 5,000 characters…), options (`--help`), paths (`/dev/zero`, a link out
//! of the repository, an existing file that is not gangplank's) and shell injections (`$(…)`, backticks, `;`, `|`,
//! quotes, newlines, `-oProxyCommand=…`), alone or appended to a valid value. Every injection would create a file
//! named after its run in one marker folder, on the runner and on the host alike (the host is this machine).
//!
//! A run fails the check when it panics (exit 101 or "panicked at"), exits with a code outside 0–4, exits 2 without
//! a `hint:` line and an `::error` annotation, runs past its deadline without having been given a long timeout,
//! prints a secret-input canary outside `::add-mask::`, or leaves a file in the marker folder.
//!
//! Safety on a shared machine: network inputs only ever hold loopback addresses or values that cannot be
//! resolved (`$`, spaces, …), so nothing leaves 127.0.0.0/8; host-side paths and names stay under this run's
//! temporary root and unique names; output files stay under the run's folder; hook and smoke commands (commands by
//! design) are never generated. Compose projects the runs started are taken down at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use gangplank_testbed::github::GitHub;
use gangplank_testbed::{free_port, images, scrubbed_command, unique_name, Registry, Sshd};

const USAGE: &str = "usage: cargo xtask adversary [--runs N] [--seed N] [--jobs N]";

/// The marker every secret-input value carries; it must never be printed outside `::add-mask::`.
const CANARY: &str = "k9advSecret";

/// A run is stopped after this long (SIGTERM, then SIGKILL 30 s later). Base timeouts are a few seconds.
const DEADLINE: Duration = Duration::from_secs(120);

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 10_000usize;
    let mut seed = 1u64;
    let mut jobs = 2usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64> {
            it.next().with_context(|| format!("{name} needs a value\n{USAGE}"))?.parse().context(USAGE)
        };
        match a.as_str() {
            "--runs" => runs = value("--runs")? as usize,
            "--seed" => seed = value("--seed")?,
            "--jobs" => jobs = (value("--jobs")? as usize).max(1),
            _ => bail!("unknown argument `{a}`\n{USAGE}"),
        }
    }
    eprintln!("building gangplank…");
    let gangplank = crate::build_gangplank(false)?;
    let bed = Bed::start(jobs)?;
    self_check(&bed.marker())?;
    eprintln!("adversary: {runs} runs, seed {seed}, {jobs} at once");
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..jobs {
            let (bed, tally, gangplank) = (&bed, &tally, &gangplank);
            let share = runs / jobs + usize::from(w < runs % jobs);
            s.spawn(move || {
                let mut worker = Worker::new(bed, w, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (w as u64 + 1));
                for n in 0..share {
                    let result = worker.one(gangplank, n);
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(outcome) => t.add(outcome),
                        Err(e) => t.failures.push(format!("worker {w} run {n}: harness error: {e:#}")),
                    }
                    if t.runs % 500 == 0 {
                        eprintln!("  {} runs, {:.0}s", t.runs, started.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let left = bed.clean_up();
    let mut t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    t.failures.extend(left);
    let connections: usize = bed.sshds.iter().map(Sshd::connections).sum();
    println!("{}", t.report(elapsed, connections));
    ensure!(t.failures.is_empty(), "{} runs broke a rule (above)", t.failures.len());
    Ok(())
}

/// The detector detects: each injection, put unquoted into a real `sh -c`, must leave its marker file for most
/// templates (some only inject inside quotes or at a line start, by design), and the folder is emptied again.
fn self_check(marker: &Path) -> Result<()> {
    let mut fired = 0;
    for (i, t) in INJECTIONS.iter().enumerate() {
        let file = marker.join(format!("self-check-{i}"));
        let payload = t.replace("{}", &file.display().to_string());
        let _ = Command::new("sh").arg("-c").arg(format!("echo x{payload}")).output()?;
        if file.exists() {
            fired += 1;
            std::fs::remove_file(&file)?;
        }
    }
    ensure!(fired * 2 >= INJECTIONS.len(), "only {fired} of {} injections fired in a plain shell", INJECTIONS.len());
    ensure!(std::fs::read_dir(marker)?.next().is_none(), "the marker folder is not empty");
    eprintln!("self-check: {fired} of {} injection templates run in an unquoted `sh -c`", INJECTIONS.len());
    Ok(())
}

/// The real parts every worker shares.
struct Bed {
    /// One sshd per worker, so a run's connections are its own.
    sshds: Vec<Sshd>,
    registry: Registry,
    github: GitHub,
    /// Everything the runs write: `runner/` (per-run folders), `host/` (app dirs), `marker/`.
    root: tempfile::TempDir,
    /// `REGISTRY/app`, holding `:v1` and `:v2`.
    image: String,
    /// A local image push-registry pushes.
    local_image: String,
    /// Prefix of every app and project name the runs may use.
    prefix: String,
}

impl Bed {
    fn start(jobs: usize) -> Result<Bed> {
        let samples = images::samples()?;
        let sshds = (0..jobs).map(|_| Sshd::start()).collect::<Result<Vec<_>>>()?;
        let registry = Registry::start()?;
        let github = GitHub::start();
        github.add_repo("acme/app");
        let prefix = unique_name("adv");
        let image = registry.image(&prefix);
        for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2)] {
            docker(&["tag", src, &format!("{image}:{tag}")])?;
            docker(&["push", "-q", &format!("{image}:{tag}")])?;
            docker(&["rmi", &format!("{image}:{tag}")])?;
        }
        let local_image = format!("{prefix}-local:v1");
        docker(&["tag", &samples.v1, &local_image])?;
        let root = tempfile::tempdir()?;
        for d in ["runner", "host", "marker"] {
            std::fs::create_dir_all(root.path().join(d))?;
        }
        // The host side runs as the SSH user; the marker folder takes files from anyone.
        std::fs::set_permissions(root.path().join("marker"), std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        Ok(Bed { sshds, registry, github, root, image, local_image, prefix })
    }

    fn marker(&self) -> PathBuf {
        self.root.path().join("marker")
    }

    /// Takes down every compose project a run may have started (their names all start with the prefix), removes
    /// the local image, and returns what a run left that gangplank should have removed itself.
    fn clean_up(&self) -> Vec<String> {
        let mut left = Vec::new();
        let label = "label=com.docker.compose.project";
        let ps = docker_out(&[
            "ps",
            "-a",
            "--filter",
            label,
            "--format",
            "{{.ID}} {{.Label \"com.docker.compose.project\"}}",
        ]);
        for line in ps.lines() {
            let mut f = line.split_whitespace();
            let (Some(id), Some(project)) = (f.next(), f.next()) else { continue };
            if !project.starts_with(&self.prefix) {
                continue;
            }
            // Deploys leave their app running (that is the point); a verify project must be gone.
            if project.contains("-verify-") {
                left.push(format!("verify-image left container {id} of project {project}"));
            }
            let _ = docker(&["rm", "-f", "-v", id]);
        }
        for kind in ["network", "volume"] {
            let ls = docker_out(&[kind, "ls", "-q", "--filter", label]);
            for id in ls.lines() {
                let project =
                    docker_out(&[kind, "inspect", "--format", "{{index .Labels \"com.docker.compose.project\"}}", id]);
                if project.trim().starts_with(&self.prefix) {
                    let _ = docker(&[kind, "rm", id]);
                }
            }
        }
        let _ = docker(&["rmi", &self.local_image]);
        for name in docker_out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
            if name.contains(&self.prefix) {
                let _ = docker(&["rmi", name]);
            }
        }
        left
    }
}

fn docker(args: &[&str]) -> Result<()> {
    let out = scrubbed_command("docker").args(args).stdin(Stdio::null()).output()?;
    ensure!(out.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn docker_out(args: &[&str]) -> String {
    scrubbed_command("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// xorshift64*: the generator must be the same everywhere a seed is replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// How an input's generated values are kept safe for the machine (see the module docs).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Anything.
    Generic,
    /// Reaches a network peer: loopback or unresolvable values only.
    Network,
    /// A path on the host that gangplank writes under: kept under the run's host root.
    HostPath,
    /// A file gangplank writes on the runner: kept under the run's folder.
    LocalOut,
    /// A file gangplank reads on the runner.
    LocalIn,
    /// A secret: every generated value carries the canary.
    Secret,
    /// An app or compose project name: always starts with the bed's prefix.
    Name,
    /// A command run by design (hooks, smoke): never generated.
    Fixed,
}

fn kind(input: &str) -> Kind {
    match input {
        "host" | "registry" | "api-url" | "health-url" | "image" => Kind::Network,
        "app-dir" | "remote-env-path" => Kind::HostPath,
        "record-file" | "metrics-file" | "plan-file" | "status-file" | "report-file" | "metadata-file" => {
            Kind::LocalOut
        }
        "env-file" | "manifest" | "values-file" | "compose-files" | "files" => Kind::LocalIn,
        "ssh-key" | "ssh-key-passphrase" | "registry-password" | "github-token" | "password" => Kind::Secret,
        "app-name" | "project-name" => Kind::Name,
        "pre-deploy" | "post-deploy" | "smoke" => Kind::Fixed,
        _ => Kind::Generic,
    }
}

/// Inputs that bound how long a run may take: a run given one of them may legitimately outlive the deadline.
const TIMEOUTS: &[&str] = &["health-timeout", "lock-timeout", "connect-timeout", "timeout", "hook-timeout"];

/// Values for any input that is not a network peer.
const GENERIC: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "1",
    "3",
    "100000",
    "true",
    "false",
    "yes",
    "TRUE",
    "maybe",
    "99999999999999999999999",
    "18446744073709551616",
    "1e309",
    "NaN",
    "0x10",
    "0s",
    "1s",
    "500ms",
    "2m",
    "999999999999h",
    "-5s",
    "1MiB",
    "10 GiB",
    "1TiB",
    "∞",
    "ünïcödé",
    "\u{202e}lave",
    "\x01\x02\x1b[31m",
    "\r\n",
    "a\nb",
    "::error::forged",
    "::add-mask::x",
    "%0A::warning::x",
    "${{ github.token }}",
    "$HOME",
    "${HOME}",
    "~",
    "*",
    "?",
    "[",
    "{",
    "\\",
    "'",
    "\"",
    "--help",
    "-h",
    "--version",
    "-",
    "--",
    "../../../../etc/passwd",
    "/dev/zero",
    ".",
    "..",
    "v1",
    "v2",
    "latest",
    "web",
    "web\nweb",
    "web\ndb",
    "every",
    "first",
    "rolling",
    "recreate",
    "swarm",
    "compose",
    "github",
    "env-file",
    "github\nenv-file",
    "apply",
    "plan",
    "check",
    "production",
    "acme/app",
    "acme/../other",
    "{\"web\":\"sha256:0000\"}",
    "{\"web\":1}",
    "[]",
];

/// Values for a network input (besides the valid one and injections appended to it): loopback or not a name at
/// all, never a name a resolver would look up.
fn network_values(input: &str, bed: &Bed, w: &WorkerPorts) -> Vec<String> {
    let ssh = w.ssh_port;
    let reg = bed.registry.addr.clone();
    let gh = bed.github.url().to_string();
    let common = ["", " ", "--help", "-", "$HOME", "\x01", "%00", "[", "::1]", "\u{202e}", "127.0.0.1\n"];
    let mut v: Vec<String> = common.iter().map(|s| s.to_string()).collect();
    let specific: Vec<String> = match input {
        "host" => vec![
            "127.0.0.1:1".into(),
            format!("[::1]:{ssh}"),
            format!("localhost:{ssh}"),
            "127.0.0.1:99999".into(),
            "127.0.0.1:0".into(),
            format!("r oot@127.0.0.1:{ssh}"),
            format!("@127.0.0.1:{ssh}"),
            format!("root@127.0.0.1:{ssh}\n127.0.0.1:1"),
            format!("root@127.0.0.1:{ssh}\nroot@127.0.0.1:{ssh}"),
            format!("127.0.0.1:{ssh}:22"),
            "0:1".into(),
            "127.0.0.1 -p 1".into(),
        ],
        "registry" => vec![
            "127.0.0.1:1".into(),
            format!("{reg}/team"),
            format!("http://{reg}"),
            format!("{reg}/"),
            format!("{reg}//x"),
            "127.0.0.1:99999".into(),
        ],
        "api-url" => vec![
            "http://127.0.0.1:1".into(),
            format!("{gh}/"),
            format!("{gh}/../x"),
            "ftp://127.0.0.1/".into(),
            "http://127.0.0.1:99999".into(),
            "https://127.0.0.1:1".into(),
            "not a url".into(),
        ],
        "health-url" => vec![
            "http://127.0.0.1:1/health".into(),
            format!("http://[::1]:{}/health", w.deploy),
            format!("http://127.0.0.1:{}/health with space", w.deploy),
            format!("http://127.0.0.1:{}/\x07", w.deploy),
            "not a url".into(),
            "file:///etc/passwd".into(),
            format!("http://127.0.0.1:{}/health?x=\"'`", w.deploy),
            "http://127.0.0.1:99999/".into(),
        ],
        // verify-image's image: a reference in the bed's registry, or one that no resolver would look up.
        _ => vec![
            format!("{}:v2", bed.image),
            format!("{}:missing", bed.image),
            format!("{}@sha256:{}", bed.image, "0".repeat(64)),
            "127.0.0.1:1/x:v1".into(),
            format!("{}:V1..", bed.image),
            format!("{}:v1 v2", bed.image),
        ],
    };
    v.extend(specific);
    v
}

/// Shell injections; `{}` is the marker file's path. Each would create that file if any shell ran it.
const INJECTIONS: &[&str] = &[
    "$(touch {})",
    "`touch {}`",
    ";touch {};",
    "|touch {}",
    "&&touch {}",
    "||touch {}",
    "&touch {}&",
    "'$(touch {})'",
    "\"$(touch {})\"",
    "';touch {};'",
    "\";touch {};\"",
    "\ntouch {}\n",
    "\r\ntouch {}",
    "$(IFS=,;x=touch,{};$x)",
    "-oProxyCommand=touch {}",
    "x' -oProxyCommand='touch {}",
    "--exec=touch {}",
    "${IFS}$(touch${IFS}{})",
    "\\$(touch {})",
    "'\\''$(touch {})'\\''",
];

/// The free loopback ports one worker's apps publish.
struct WorkerPorts {
    ssh_port: u16,
    deploy: u16,
    verify: u16,
}

struct Worker<'a> {
    bed: &'a Bed,
    w: usize,
    rng: Rng,
    ports: WorkerPorts,
    /// This worker's app (compose project) name and host-side app dir.
    app: String,
    app_dir: PathBuf,
}

/// What one run did and how it ended.
struct Outcome {
    step: &'static str,
    code: i32,
    payloads: usize,
    reached_host: bool,
    failures: Vec<String>,
}

/// A step's valid inputs for one worker, and whether a run of it changes the host.
struct Base {
    step: &'static str,
    inputs: Vec<(String, String)>,
}

impl<'a> Worker<'a> {
    fn new(bed: &'a Bed, w: usize, seed: u64) -> Worker<'a> {
        let app = format!("{}-w{w}", bed.prefix);
        let app_dir = bed.root.path().join("host").join(format!("app-{w}"));
        Worker {
            bed,
            w,
            rng: Rng(seed),
            ports: WorkerPorts { ssh_port: bed.sshds[w].port, deploy: free_port(), verify: free_port() },
            app,
            app_dir,
        }
    }

    fn ssh_inputs(&self) -> Vec<(String, String)> {
        let s = &self.bed.sshds[self.w];
        pairs(&[
            ("host", &s.host_spec()),
            ("ssh-key", &s.client_key),
            ("known-hosts", &s.known_hosts),
            ("connect-timeout", "5s"),
            ("app-dir", &self.app_dir.display().to_string()),
        ])
    }

    fn base(&mut self) -> Base {
        let bed = self.bed;
        let health = format!("http://127.0.0.1:{}/health", self.ports.deploy);
        let roll = self.rng.below(100);
        let (step, extra): (&'static str, Vec<(String, String)>) = match roll {
            0..=29 => (
                "deploy-remote",
                pairs(&[
                    ("app-name", &self.app),
                    ("image-tag", if self.rng.chance(50) { "v1" } else { "v2" }),
                    ("compose-files", "compose.yaml"),
                    ("env-file", "prod.env"),
                    ("health-url", &health),
                    ("health-timeout", "20s"),
                    ("lock-timeout", "2s"),
                    ("min-free-disk", "1MiB"),
                    ("preflight-only", if self.rng.chance(90) { "true" } else { "false" }),
                    ("github-token", &bed.github.token()),
                    ("environment", "production"),
                ]),
            ),
            30..=37 => (
                "rollback",
                pairs(&[
                    ("app-name", &self.app),
                    ("health-url", &health),
                    ("health-timeout", "20s"),
                    ("lock-timeout", "2s"),
                ]),
            ),
            38..=49 => ("status", pairs(&[("app-name", &self.app), ("history", "3")])),
            50..=74 => (
                "sync-secrets",
                pairs(&[
                    ("manifest", "secrets.yml"),
                    ("values-file", "values.env"),
                    ("mode", if self.rng.chance(30) { "apply" } else { "plan" }),
                    ("repository", "acme/app"),
                    ("github-token", &bed.github.token()),
                    ("api-url", bed.github.url()),
                    ("write-interval", "0s"),
                    ("lock-timeout", "2s"),
                ]),
            ),
            75..=87 => (
                "push-registry",
                pairs(&[
                    ("registry", &bed.registry.addr),
                    ("images", &format!("{}/web={}", bed.prefix, bed.local_image)),
                    ("tag", &format!("w{}", self.w)),
                ]),
            ),
            _ => (
                "verify-image",
                pairs(&[
                    ("image", &format!("{}:v1", bed.image)),
                    ("ports", &format!("127.0.0.1:{}:8080", self.ports.verify)),
                    ("health-url", &format!("http://127.0.0.1:{}/health", self.ports.verify)),
                    ("timeout", "20s"),
                    ("project-name", &format!("{}-verify-{}", bed.prefix, self.w)),
                ]),
            ),
        };
        let mut inputs = match step {
            "push-registry" | "verify-image" => Vec::new(),
            "sync-secrets" => {
                let mut ssh = self.ssh_inputs();
                ssh.retain(|(k, _)| k != "connect-timeout" || self.rng.chance(50));
                ssh
            }
            _ => self.ssh_inputs(),
        };
        inputs.extend(extra);
        Base { step, inputs }
    }

    /// Whether this run may change the host or the engine (then names and paths stay the worker's own).
    fn changes(base: &Base) -> bool {
        let get = |k: &str| base.inputs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match base.step {
            "deploy-remote" => get("preflight-only") != Some("true"),
            "sync-secrets" => get("mode") == Some("apply"),
            "status" => false,
            _ => true,
        }
    }

    /// A generated value for `input` of a run; `id` names the marker an injection would create.
    fn value(
        &mut self,
        input: &str,
        valid: Option<&str>,
        changes: bool,
        marker: &Path,
        id: &str,
        dir: &Path,
    ) -> String {
        let inject =
            |rng: &mut Rng| -> String { rng.pick(INJECTIONS).replace("{}", &marker.join(id).display().to_string()) };
        // An injection appended to (or put before) a valid value.
        let with_valid = |rng: &mut Rng, v: &str| -> String {
            let extra = inject(rng);
            if rng.chance(50) {
                format!("{v}{extra}")
            } else {
                format!("{extra}{v}")
            }
        };
        let k = kind(input);
        let valid = valid.unwrap_or("");
        match k {
            Kind::Fixed => valid.to_string(),
            Kind::Secret => {
                let canary = format!("{CANARY}{id}");
                match self.rng.below(4) {
                    0 => canary,
                    1 => format!("{canary}{}", inject(&mut self.rng)),
                    2 => format!("{canary}\n{canary}x"),
                    _ => format!("{valid}{canary}"),
                }
            }
            Kind::Name => {
                let base = if self.rng.chance(50) { valid.to_string() } else { self.app.clone() };
                let tail = match self.rng.below(8) {
                    0 => inject(&mut self.rng),
                    1 => " x".into(),
                    2 => "\nx".into(),
                    3 => "UPPER".into(),
                    4 => "-".into(),
                    5 => "/x".into(),
                    6 => "a".repeat(300),
                    _ => ".x".into(),
                };
                if !changes && self.rng.chance(30) {
                    self.rng.pick(GENERIC).to_string()
                } else {
                    format!("{base}{tail}")
                }
            }
            Kind::HostPath => {
                let root = self.app_dir.display().to_string();
                match self.rng.below(9) {
                    0 => with_valid(&mut self.rng, &root),
                    1 => format!("{root}/a b"),
                    2 => format!("{root}\nx"),
                    3 => "relative/dir".into(),
                    // Empty is the default app dir, outside this bed: only where nothing is written.
                    4 if !changes => String::new(),
                    5 => format!("{root}/link-out/x"),
                    6 => format!("{root}/.gangplank/state.json"),
                    7 => format!("{root}/-x"),
                    _ => format!("{root}/./sub/../env"),
                }
            }
            Kind::LocalOut => {
                let d = dir.display().to_string();
                match self.rng.below(9) {
                    0 => format!("{d}/out{}.json", inject(&mut self.rng)),
                    1 => "compose.yaml".into(),
                    2 => "prod.env".into(),
                    3 => "/dev/full".into(),
                    4 => ".".into(),
                    5 => "missing/dir/out.json".into(),
                    6 => "../out.json".into(),
                    7 => "link-out".into(),
                    _ => "out.json".into(),
                }
            }
            Kind::LocalIn => match self.rng.below(12) {
                0 => with_valid(&mut self.rng, valid),
                1 => "/dev/zero".into(),
                2 => "/proc/self/environ".into(),
                3 => "big.txt".into(),
                4 => "link-out".into(),
                5 => ".".into(),
                6 => "missing.file".into(),
                7 => "../../../../etc/hostname".into(),
                8 => ".gangplank/state.json".into(),
                9 => format!("{valid}\n{valid}"),
                10 => if self.rng.chance(50) { "binary.bin" } else { "scripts" }.into(),
                _ => self.rng.pick(GENERIC).to_string(),
            },
            Kind::Network => {
                let values = network_values(input, self.bed, &self.ports);
                match self.rng.below(3) {
                    0 if !valid.is_empty() => with_valid(&mut self.rng, valid),
                    1 => inject(&mut self.rng),
                    _ => self.rng.pick(&values).clone(),
                }
            }
            Kind::Generic => match self.rng.below(5) {
                0 => inject(&mut self.rng),
                1 if !valid.is_empty() => with_valid(&mut self.rng, valid),
                2 => "x".repeat(5000),
                _ => self.rng.pick(GENERIC).to_string(),
            },
        }
    }

    /// One generated run: build it, run it, judge it.
    fn one(&mut self, gangplank: &Path, n: usize) -> Result<Outcome> {
        let id = format!("w{}r{n}", self.w);
        let dir = self.bed.root.path().join("runner").join(&id);
        self.write_repository(&dir)?;
        let marker = self.bed.marker();
        let mut base = self.base();
        let changes = Self::changes(&base);
        let flags = flags_of(gangplank, base.step)?;
        let mutable: Vec<&String> = flags.iter().filter(|f| kind(f) != Kind::Fixed).collect();
        let count = match self.rng.below(100) {
            0..=7 => 0,
            8..=62 => 1,
            63..=90 => 2,
            _ => 3,
        };
        let mut changed = Vec::new();
        for i in 0..count {
            let input = self.rng.pick(&mutable).to_string();
            // A run that changes the host keeps its worker's app name, so what it starts is found and removed.
            if changes && input == "app-name" {
                continue;
            }
            let valid = base.inputs.iter().find(|(k, _)| *k == input).map(|(_, v)| v.clone());
            let v = self.value(&input, valid.as_deref(), changes, &marker, &format!("{id}i{i}"), &dir);
            base.inputs.retain(|(k, _)| *k != input);
            base.inputs.push((input.clone(), v.clone()));
            changed.push((input, v));
        }
        // Now and then, a file of the repository instead.
        let file_change =
            if self.rng.chance(12) { Some(self.mutate_file(&dir, &marker, &format!("{id}f"))?) } else { None };
        // Preflight-only and read-only runs stay so; a generated value cannot turn one into a change elsewhere.
        let changes_now = Self::changes(&base);
        if changes_now && !changes {
            base.inputs.retain(|(k, _)| k != "mode" && k != "preflight-only");
            base.inputs.push((
                if base.step == "deploy-remote" { "preflight-only" } else { "mode" }.into(),
                if base.step == "deploy-remote" { "true" } else { "plan" }.into(),
            ));
        }
        let as_flags = self.rng.chance(12);
        let unknown = self.rng.chance(3);
        let connections = self.bed.sshds[self.w].connections();
        let mut cmd = scrubbed_command(gangplank);
        cmd.arg(base.step).current_dir(&dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let gh = dir.join("gh");
        std::fs::create_dir_all(gh.join("tmp"))?;
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", gh.join("output"))
            .env("GITHUB_STEP_SUMMARY", gh.join("summary"))
            .env("RUNNER_TEMP", gh.join("tmp"))
            .env("GITHUB_API_URL", self.bed.github.url())
            .env("GITHUB_REPOSITORY", "acme/app")
            .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
            .env("GITHUB_RUN_ID", "1")
            .env("GITHUB_SERVER_URL", "http://127.0.0.1:1");
        for (k, v) in &base.inputs {
            if as_flags {
                if self.rng.chance(50) {
                    cmd.arg(format!("--{k}={v}"));
                } else {
                    cmd.arg(format!("--{k}")).arg(v);
                }
            } else {
                cmd.env(format!("INPUT_{}", k.replace('-', "_").to_uppercase()), v);
            }
        }
        if unknown {
            cmd.arg(if self.rng.chance(50) { "--no-such-input=1" } else { "stray" });
        }
        let started = Instant::now();
        let (code, stdout, stderr, stopped) = run_bounded(cmd)?;
        let _ = started;
        let mut failures = Vec::new();
        let what = || {
            let mut s = format!(
                "{} {}{}",
                base.step,
                if as_flags { "(flags) " } else { "" },
                if unknown { "(+unknown) " } else { "" }
            );
            for (k, v) in &changed {
                let _ = write!(s, "{k}={:?} ", truncate(v));
            }
            if let Some(f) = &file_change {
                let _ = write!(s, "file: {f}");
            }
            s
        };
        let panicked = code == 101 || stderr.contains("panicked at");
        if panicked {
            failures.push(format!("panic: {}\n{}", what(), tail(&stderr)));
        } else if stopped && !changed.iter().any(|(k, _)| TIMEOUTS.contains(&k.as_str())) {
            failures.push(format!("ran past {}s: {}\n{}", DEADLINE.as_secs(), what(), tail(&stderr)));
        } else if !stopped && !(0..=4).contains(&code) {
            failures.push(format!("exit {code}: {}\n{}", what(), tail(&stderr)));
        } else if code == 2 {
            // One problem: a `hint:` line. Several ("N problems found"): each with its hint, in the annotation.
            let annotation = stdout.lines().chain(stderr.lines()).find(|l| l.starts_with("::error")).unwrap_or("");
            let problems = annotation
                .split_once(" problems found:")
                .and_then(|(head, _)| head.rsplit("::").next()?.parse::<usize>().ok());
            let hint = match problems {
                Some(n) => annotation.matches("%0A     hint: ").count() >= n,
                None => stderr.lines().any(|l| l.starts_with("hint: ")),
            };
            let annotation = !annotation.is_empty();
            if !hint || !annotation {
                failures.push(format!(
                    "exit 2 without {}: {}\n{}",
                    if hint { "an ::error annotation" } else { "a hint" },
                    what(),
                    tail(&stderr)
                ));
            }
        }
        let printed: String = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n");
        let written = std::fs::read_to_string(gh.join("output")).unwrap_or_default()
            + &std::fs::read_to_string(gh.join("summary")).unwrap_or_default();
        if printed.contains(CANARY) || written.contains(CANARY) {
            failures.push(format!("secret canary printed or written: {}", what()));
        }
        let injected: Vec<String> = std::fs::read_dir(&marker)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !injected.is_empty() {
            failures.push(format!("INJECTION ran ({}): {}", injected.join(", "), what()));
            for f in &injected {
                let _ = std::fs::remove_file(marker.join(f));
            }
        }
        let payloads = changed.iter().filter(|(_, v)| v.contains("touch ") || v.contains("touch,")).count()
            + usize::from(file_change.as_deref().is_some_and(|f| f.contains("injection")));
        let reached_host = self.bed.sshds[self.w].connections() > connections;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Outcome { step: base.step, code: if stopped { -1 } else { code }, payloads, reached_host, failures })
    }

    /// The run's "repository": compose file, `.env`, manifest and values, and the odd files the generator points
    /// inputs at (a link out of the repository, a big file, a binary one).
    fn write_repository(&self, dir: &Path) -> Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("scripts"))?;
        let compose = format!(
            "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    ports:\n      - \"127.0.0.1:{}:8080\"\n    stop_grace_period: 1s\n",
            self.bed.image, self.ports.deploy
        );
        std::fs::write(dir.join("compose.yaml"), compose)?;
        std::fs::write(dir.join("prod.env"), format!("APP_TOKEN={CANARY}envfile\nMODE=prod\n"))?;
        std::fs::write(
            dir.join("secrets.yml"),
            "defaults:\n  targets: [github, env-file]\nvalues:\n  API_KEY: {}\n  LLM_PROVIDER: {secret: false, allowed: [openrouter, openai]}\n",
        )?;
        std::fs::write(dir.join("values.env"), format!("API_KEY={CANARY}value0001\nLLM_PROVIDER=openai\n"))?;
        std::fs::write(dir.join("scripts").join("migrate.sh"), "#!/bin/sh\necho migrate\n")?;
        std::fs::write(dir.join("big.txt"), "A=".to_string() + &"x".repeat(3 << 20))?;
        std::fs::write(dir.join("binary.bin"), [0u8, 159, 146, 150, 0xff, b'\n', b'='])?;
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link-out"))?;
        Ok(())
    }

    /// Rewrites one file of the run's repository with generated content; returns what it did.
    fn mutate_file(&mut self, dir: &Path, marker: &Path, id: &str) -> Result<String> {
        let payload = self.rng.pick(INJECTIONS).replace("{}", &marker.join(id).display().to_string());
        let (file, text) = match self.rng.below(8) {
            0 => ("prod.env", format!("APP_TOKEN={payload}\n")),
            1 => ("prod.env", format!("A=\"{payload}\"\nB='{payload}'\nC=x # {payload}\n")),
            2 => ("values.env", format!("API_KEY={CANARY}{payload}\nLLM_PROVIDER=openai\n")),
            3 => ("secrets.yml", format!("values:\n  \"{}\": {{}}\n", payload.replace('"', ""))),
            4 => (
                "compose.yaml",
                format!(
                    "services:\n  \"web{}\":\n    image: \"{}:${{IMAGE_TAG}}\"\n",
                    payload.replace(['"', '\n', '\r', '\\'], ""),
                    self.bed.image
                ),
            ),
            5 => ("compose.yaml", "services: [\n".to_string()),
            6 => ("prod.env", "KEY\n=\n\"unterminated\n".to_string()),
            _ => ("values.env", format!("API_KEY=\"{CANARY}\nline two\"\nLLM_PROVIDER=openai\n")),
        };
        std::fs::write(dir.join(file), &text)?;
        Ok(format!("{file} ({}injection)", if text.contains("touch") { "" } else { "no " }))
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The long flags of `gangplank <step> --help`, once per step.
fn flags_of(gangplank: &Path, step: &str) -> Result<Vec<String>> {
    static CACHE: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = cache.get(step) {
        return Ok(f.clone());
    }
    let flags = gangplank_testbed::step_flags(gangplank, step)?;
    cache.insert(step.to_string(), flags.clone());
    Ok(flags)
}

/// Runs `cmd` to its end or to [`DEADLINE`] (then SIGTERM, and SIGKILL 30 s later): exit code (or -1), stdout,
/// stderr, and whether it had to be stopped.
fn run_bounded(mut cmd: Command) -> Result<(i32, String, String, bool)> {
    let mut child = cmd.spawn().context("starting gangplank")?;
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let err = read(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let mut stopped = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let waited = started.elapsed();
        if waited > DEADLINE && !stopped {
            stopped = true;
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        if waited > DEADLINE + Duration::from_secs(30) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let code = status.code().unwrap_or(-1);
    Ok((code, out.join().unwrap_or_default(), err.join().unwrap_or_default(), stopped))
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…({} chars)", s.chars().take(120).collect::<String>(), s.chars().count())
    } else {
        s.to_string()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(6)..]
        .iter()
        .map(|l| format!("    | {}", truncate(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Default)]
struct Tally {
    runs: usize,
    by_step: BTreeMap<&'static str, usize>,
    by_exit: BTreeMap<i32, usize>,
    payload_runs: usize,
    payloads: usize,
    reached_host: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.runs += 1;
        *self.by_step.entry(o.step).or_default() += 1;
        *self.by_exit.entry(o.code).or_default() += 1;
        self.payloads += o.payloads;
        self.payload_runs += usize::from(o.payloads > 0);
        self.reached_host += usize::from(o.reached_host);
        self.failures.extend(o.failures);
    }

    fn report(&self, elapsed: Duration, connections: usize) -> String {
        let count = |word: &str| self.failures.iter().filter(|f| f.starts_with(word)).count();
        let mut s = String::new();
        let _ = writeln!(s, "adversary: {} runs in {:.0}s", self.runs, elapsed.as_secs_f64());
        let steps: Vec<String> = self.by_step.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "  by step:          {}", steps.join(", "));
        let exits: Vec<String> = self
            .by_exit
            .iter()
            .map(|(k, v)| if *k < 0 { format!("stopped {v}") } else { format!("exit {k}: {v}") })
            .collect();
        let _ = writeln!(s, "  by exit code:     {}", exits.join(", "));
        let _ = writeln!(s, "  reached the host: {} runs ({} SSH connections)", self.reached_host, connections);
        let _ = writeln!(s, "  injection payloads: {} in {} runs", self.payloads, self.payload_runs);
        let _ = writeln!(
            s,
            "  injections: {}   panics: {}   exit 2 without hint/annotation: {}   past deadline: {}   canary leaks: {}",
            count("INJECTION"),
            count("panic"),
            count("exit 2 without"),
            count("ran past"),
            count("secret canary")
        );
        for f in self.failures.iter().take(40) {
            let _ = writeln!(s, "FAIL {f}");
        }
        if self.failures.len() > 40 {
            let _ = writeln!(s, "… and {} more", self.failures.len() - 40);
        }
        s
    }
}
