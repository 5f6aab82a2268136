//! `cargo xtask fuzz [--time SECS | --cpu SECS] [--jobs N] [--nice N] [--log-dir DIR] [TARGET…]`: build the
//! libFuzzer targets of `fuzz/` (docs/fuzzing.md) and run each one, then print per target its runs, execs/s,
//! CPU seconds, coverage and features, and whether it crashed. Exits non-zero on a crash, naming the
//! artifact (the input that crashed, under `fuzz/artifacts/<target>/`).
//!
//! Toolchain: cargo-fuzz passes `-Z` flags (sanitizer coverage) to rustc. We build with the toolchain that
//! runs this xtask (stable) and `RUSTC_BOOTSTRAP=1` rather than requiring nightly, so CI needs nothing but
//! `cargo install cargo-fuzz`. No sanitizer (`-s none`): the product forbids `unsafe`, so AddressSanitizer
//! would find nothing a panic does not, at about half the speed; debug assertions and overflow checks stay on.
//!
//! `--time` bounds each target's wall time (default 15 s); `--cpu` instead runs the targets in turn, in rounds
//! of at most 2 minutes, until each has used that much CPU time, which is what a niced run on a shared machine
//! needs; `--wall` stops starting rounds after that many seconds and prints what was reached. CPU time is read from
//! `/proc/<pid>/stat` (the fuzzer and the children it waited for), sampled while it runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

const USAGE: &str =
    "usage: cargo xtask fuzz [--time SECS | --cpu SECS] [--wall SECS] [--jobs N] [--nice N] [--log-dir DIR] [TARGET...]";

struct Opts {
    time: u64,
    cpu: Option<u64>,
    jobs: usize,
    nice: Option<u32>,
    log_dir: Option<PathBuf>,
    wall: Option<u64>,
    targets: Vec<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts { time: 15, cpu: None, jobs: 1, nice: None, log_dir: None, wall: None, targets: vec![] };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value\n{USAGE}")).cloned();
        match a.as_str() {
            "--time" => o.time = value("--time")?.parse().context("--time takes seconds")?,
            "--cpu" => o.cpu = Some(value("--cpu")?.parse().context("--cpu takes seconds")?),
            "--jobs" => o.jobs = value("--jobs")?.parse().context("--jobs takes a number")?,
            "--nice" => o.nice = Some(value("--nice")?.parse().context("--nice takes a number")?),
            "--wall" => o.wall = Some(value("--wall")?.parse().context("--wall takes seconds")?),
            "--log-dir" => o.log_dir = Some(PathBuf::from(value("--log-dir")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => bail!("unknown option `{s}`\n{USAGE}"),
            s => o.targets.push(s.to_string()),
        }
    }
    ensure!(o.jobs >= 1 && o.time >= 1, "--jobs and --time must be at least 1");
    Ok(o)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn fuzz_dir() -> PathBuf {
    crate::project_root().join("fuzz")
}

/// Where cargo-fuzz builds: `$CARGO_TARGET_DIR/fuzz` when set (keeps builds out of the repository and
/// apart from the product build), else `fuzz/target` (ignored by git).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("fuzz"),
        None => fuzz_dir().join("target"),
    }
}

/// Every target, as `fuzz/Cargo.toml` declares them.
fn all_targets() -> Result<Vec<String>> {
    let toml = fs::read_to_string(fuzz_dir().join("Cargo.toml")).context("reading fuzz/Cargo.toml")?;
    Ok(toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \"")?.strip_suffix('"').map(str::to_string))
        .filter(|n| n != "gangplank-fuzz")
        .collect())
}

fn nice_command(nice: Option<u32>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match nice {
        Some(n) => {
            let mut c = Command::new("nice");
            c.arg("-n").arg(n.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn build(nice: Option<u32>) -> Result<PathBuf> {
    let td = target_dir();
    println!("==> fuzz build: cargo fuzz build -s none --target-dir {}", td.display());
    let status = nice_command(nice, cargo())
        .args(["fuzz", "build", "-s", "none", "--target-dir"])
        .arg(&td)
        .current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .context("running cargo fuzz build (install it with `cargo install cargo-fuzz --locked`)")?;
    ensure!(status.success(), "cargo fuzz build failed ({status})");
    Ok(td.join(host_triple()).join("release"))
}

fn host_triple() -> String {
    let out = Command::new("rustc").arg("-vV").output().ok();
    out.and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_string))
    })
    .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into())
}

/// What one target's runs added up to.
#[derive(Default, Clone)]
struct Report {
    runs: u64,
    wall: Duration,
    cpu_ticks: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    crash: Option<String>,
    log: PathBuf,
}

impl Report {
    fn cpu_secs(&self) -> f64 {
        self.cpu_ticks as f64 / CLK_TCK
    }
}

/// `sysconf(_SC_CLK_TCK)`, 100 on every Linux target we build for.
const CLK_TCK: f64 = 100.0;

/// utime + stime + cutime + cstime of a live process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); utime..cstime are fields 14..17.
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

/// One libFuzzer run of `secs` wall seconds; its output goes to `log` (appended).
fn run_once(bin: &Path, target: &str, secs: u64, nice: Option<u32>, log: &Path, r: &mut Report) -> Result<()> {
    let work = target_dir().join("fuzz-corpus").join(target);
    let seeds = fuzz_dir().join("corpus").join(target);
    let artifacts = fuzz_dir().join("artifacts").join(target);
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&seeds)?;
    fs::create_dir_all(&artifacts)?;
    let logf = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let start = Instant::now();
    // New inputs go to the scratch corpus (first directory); the committed seeds are only read.
    let mut child = nice_command(nice, bin.join(target))
        .arg(&work)
        .arg(&seeds)
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=1024"])
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("running fuzz target {target}"))?;
    // `nice` execs the fuzzer: same pid.
    let mut ticks = 0;
    let status = loop {
        if let Some(t) = cpu_ticks(child.id()) {
            ticks = t;
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    r.wall += start.elapsed();
    r.cpu_ticks += ticks;
    // The log holds every round; this round's stats are its last ones.
    let text = fs::read_to_string(log).unwrap_or_default();
    let round = text.rsplit("INFO: Seed:").next().unwrap_or("");
    for line in round.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            r.runs += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(p) = line.split("Test unit written to ").nth(1) {
            r.crash = Some(p.trim().to_string());
        }
        if line.starts_with('#') && (line.contains("DONE") || line.contains("NEW") || line.contains("pulse")) {
            let num = |key: &str| {
                line.split_whitespace().skip_while(|w| *w != key).nth(1)?.split('/').next()?.parse::<u64>().ok()
            };
            r.cov = num("cov:").unwrap_or(r.cov).max(r.cov);
            r.ft = num("ft:").unwrap_or(r.ft).max(r.ft);
            r.corpus = num("corp:").unwrap_or(r.corpus);
        }
    }
    if !status.success() && r.crash.is_none() {
        r.crash = Some(format!("(exited {status}; see {})", log.display()));
    }
    Ok(())
}

/// Targets waiting for their next round, and targets done.
type Queue = std::collections::VecDeque<(String, Report)>;
type Results = Vec<(String, Result<Report>)>;

/// One round of `target`: the whole run with `--time`; with `--cpu`, at most 2 minutes, so that every target
/// gets its share when the run is cut short. Returns whether the target is done.
fn round(bin: &Path, target: &str, o: &Opts, r: &mut Report, stop: Instant) -> Result<bool> {
    let left_wall = stop.saturating_duration_since(Instant::now()).as_secs();
    let done = match o.cpu {
        None => {
            run_once(bin, target, o.time, o.nice, &r.log.clone(), r)?;
            true
        }
        Some(cpu) => {
            let left = cpu as f64 - r.cpu_secs();
            let secs = (left.ceil() as u64).clamp(10, 120).min(left_wall.max(1));
            run_once(bin, target, secs, o.nice, &r.log.clone(), r)?;
            println!("    {target}: {:.0}/{cpu} CPU s, {} runs", r.cpu_secs(), r.runs);
            r.cpu_secs() >= cpu as f64
        }
    };
    Ok(done || r.crash.is_some() || Instant::now() >= stop)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse_opts(args)?;
    let all = all_targets()?;
    for t in &o.targets {
        ensure!(all.contains(t), "no fuzz target `{t}`; targets: {}", all.join(", "));
    }
    let targets = if o.targets.is_empty() { all } else { o.targets.clone() };
    let bin = build(o.nice)?;
    let log_dir = o.log_dir.clone().unwrap_or_else(|| target_dir().join("fuzz-logs"));
    fs::create_dir_all(&log_dir)?;
    let what = match o.cpu {
        Some(c) => format!("{c} CPU s each"),
        None => format!("{} s each", o.time),
    };
    println!("==> fuzz {} target(s), {what}, {} at a time; logs in {}", targets.len(), o.jobs, log_dir.display());
    let stop = Instant::now() + Duration::from_secs(o.wall.unwrap_or(u64::MAX / 4));
    let queue: Arc<Mutex<Queue>> = Arc::new(Mutex::new(
        targets
            .iter()
            .map(|t| (t.clone(), Report { log: log_dir.join(format!("{t}.log")), ..Default::default() }))
            .collect(),
    ));
    let results: Arc<Mutex<Results>> = Arc::default();
    std::thread::scope(|s| {
        for _ in 0..o.jobs.min(targets.len()) {
            let (queue, results, bin, o) = (queue.clone(), results.clone(), &bin, &o);
            s.spawn(move || loop {
                let Some((t, mut r)) = queue.lock().unwrap().pop_front() else { break };
                match round(bin, &t, o, &mut r, stop) {
                    Ok(false) => queue.lock().unwrap().push_back((t, r)),
                    Ok(true) => {
                        let crash = if r.crash.is_some() { ", CRASH" } else { "" };
                        println!("    {t}: {} runs, {:.0} CPU s{crash}", r.runs, r.cpu_secs());
                        results.lock().unwrap().push((t, Ok(r)));
                    }
                    Err(e) => results.lock().unwrap().push((t, Err(e))),
                }
            });
        }
    });
    let mut results =
        Arc::try_unwrap(results).map_err(|_| anyhow::anyhow!("fuzz threads still running"))?.into_inner()?;
    results.sort_by(|a, b| a.0.cmp(&b.0));
    println!(
        "{:<16} {:>12} {:>9} {:>8} {:>6} {:>7} {:>6}  result",
        "target", "runs", "execs/s", "CPU s", "cov", "ft", "corp"
    );
    let mut crashed = vec![];
    for (t, r) in &results {
        match r {
            Ok(r) => {
                let cpu = r.cpu_secs();
                let rate = if cpu > 0.0 { r.runs as f64 / r.wall.as_secs_f64().max(0.001) } else { 0.0 };
                let result = match &r.crash {
                    Some(a) => format!("CRASH: {a} (log {})", r.log.display()),
                    None => "ok".into(),
                };
                println!(
                    "{t:<16} {:>12} {:>9.0} {:>8.1} {:>6} {:>7} {:>6}  {result}",
                    r.runs, rate, cpu, r.cov, r.ft, r.corpus
                );
                if r.crash.is_some() {
                    crashed.push(t.clone());
                }
            }
            Err(e) => {
                println!("{t:<16} error: {e:#}");
                crashed.push(t.clone());
            }
        }
    }
    if !crashed.is_empty() {
        bail!("fuzz target(s) {} crashed; reproduce with `{}/<target> <artifact>`", crashed.join(", "), bin.display());
    }
    Ok(())
}
