//! `cargo xtask bench secrets`: 100 secrets against the GitHub API stand-in with 100 ms of latency per
//! request and a cap of 4 requests in flight (a 5th gets a secondary rate limit, as GitHub's would).
//!
//! Two runs of the release binary in one go, each against a fresh stand-in:
//! - gangplank: `sync-secrets --mode apply` with its default concurrency (4);
//! - serial: the same binary with `--concurrency 1`, i.e. the same requests (list, public key, one PUT per
//!   secret) sent one after the other, as a shell loop over the API would.
//!
//! Both with `--write-interval 0s` (no pacing, a server without write limits), so the figure is about
//! concurrency alone. Prints both wall times, the ratio (target ≥ 3×), the rate-limit answers of the gangplank
//! run (target 0), the most requests in flight, and checks that every secret decrypts to its value.
//!
//! Then pacing: the stand-in also enforces GitHub's content-creation limit as documented (80 writes in any
//! 60 s; one more gets a 403 secondary limit with `retry-after`), and the same 100 secrets are written
//! unpaced (`--write-interval 0s`, what sync-secrets did before pacing) and paced (the default `1s`). Prints the
//! wall time, the refused writes (target 0 paced) and the most writes in any 60 s. This part takes about
//! three minutes of real time: the limit is per minute.
//!
//! `BENCH_TIMELINE=1` also prints every request with its start and end (ms) as the stand-in saw it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gangplank_testbed::github::{GitHub, Scope};

const SECRETS: usize = 100;
const LATENCY: Duration = Duration::from_millis(100);
const CAP: usize = 4;

struct Measured {
    wall: Duration,
    requests: usize,
    rate_limited: usize,
    max_in_flight: usize,
    /// The most successful writes that started in any 60 s.
    max_writes_per_minute: usize,
}

/// GitHub's content-creation limit: 80 writes a minute.
const WRITE_LIMIT: (usize, Duration) = (80, Duration::from_secs(60));

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("`bench secrets` takes no arguments (got `{a}`)");
    }
    eprintln!("building the release executable…");
    let bin = crate::build_gangplank(true)?;

    let dir = tempfile::tempdir()?;
    let mut manifest = String::from("defaults:\n  targets: [github]\nvalues:\n");
    let mut values = String::new();
    let mut expected = Vec::new();
    for i in 0..SECRETS {
        let name = format!("BENCH_SECRET_{i:03}");
        let value = format!("k9bench-{i:03}-{:016x}", 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1));
        manifest.push_str(&format!("  {name}: {{}}\n"));
        values.push_str(&format!("{name}={value}\n"));
        expected.push((name, value));
    }
    std::fs::write(dir.path().join("secrets.yml"), manifest)?;
    std::fs::write(dir.path().join("values.env"), values)?;

    let gangplank = measure(&bin, dir.path(), &["--write-interval", "0s"], None, &expected)?;
    let serial = measure(&bin, dir.path(), &["--write-interval", "0s", "--concurrency", "1"], None, &expected)?;
    let ratio = serial.wall.as_secs_f64() / gangplank.wall.as_secs_f64();

    println!(
        "sync-secrets: {SECRETS} secrets, {} ms latency per request, stand-in caps {CAP} in flight",
        LATENCY.as_millis()
    );
    println!(
        "  gangplank (concurrency 4): {:>7.2} s  {} requests, at most {} in flight, {} rate-limit errors",
        gangplank.wall.as_secs_f64(),
        gangplank.requests,
        gangplank.max_in_flight,
        gangplank.rate_limited
    );
    println!(
        "  serial loop:               {:>7.2} s  {} requests, at most {} in flight, {} rate-limit errors",
        serial.wall.as_secs_f64(),
        serial.requests,
        serial.max_in_flight,
        serial.rate_limited
    );
    println!("  ratio: {ratio:.1}x faster (target >= 3x); rate-limit errors: {} (target 0)", gangplank.rate_limited);
    if ratio < 3.0 || gangplank.rate_limited > 0 {
        println!("  BUDGET MISSED");
    }

    eprintln!("pacing: two runs under GitHub's content-creation limit (about three minutes)…");
    let unpaced = measure(&bin, dir.path(), &["--write-interval", "0s"], Some(WRITE_LIMIT), &expected)?;
    let paced = measure(&bin, dir.path(), &[], Some(WRITE_LIMIT), &expected)?;
    println!(
        "sync-secrets pacing: {SECRETS} secrets, stand-in refuses more than 80 writes in any 60 s (GitHub's rule)"
    );
    for (name, m) in [("unpaced (write-interval 0s)", &unpaced), ("paced (default 1s)", &paced)] {
        println!(
            "  {name:<28} {:>7.2} s  {} requests, {} refused by the limit, at most {} writes in 60 s",
            m.wall.as_secs_f64(),
            m.requests,
            m.rate_limited,
            m.max_writes_per_minute
        );
    }
    println!("  refused writes paced: {} (target 0)", paced.rate_limited);
    if paced.rate_limited > 0 || paced.max_writes_per_minute > WRITE_LIMIT.0 {
        println!("  BUDGET MISSED");
    }
    Ok(())
}

fn measure(
    bin: &Path,
    dir: &Path,
    extra: &[&str],
    write_limit: Option<(usize, Duration)>,
    expected: &[(String, String)],
) -> Result<Measured> {
    let gh = GitHub::start();
    gh.set_latency(LATENCY);
    gh.set_concurrency_cap(Some(CAP));
    gh.set_write_limit(write_limit);
    let mut cmd = Command::new(bin);
    cmd.arg("sync-secrets")
        .current_dir(dir)
        .args(["--mode", "apply", "--manifest", "secrets.yml", "--values-file", "values.env"])
        .args(["--api-url", gh.url(), "--repository", "acme/app", "--plan-file", "plan.json"])
        .env("INPUT_GITHUB_TOKEN", gh.token())
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_ACTIONS");
    cmd.args(extra);
    let t = Instant::now();
    let out = cmd.output().context("running sync-secrets")?;
    let wall = t.elapsed();
    if !out.status.success() {
        bail!("sync-secrets failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        for r in gh.requests() {
            eprintln!("{} {} {} {}-{}", r.method, r.path, r.status, r.started_ms, r.finished_ms);
        }
    }
    let stored = gh.secrets(&Scope::Repo("acme/app".into()));
    for (name, value) in expected {
        if stored.get(name) != Some(value) {
            bail!("{name} did not decrypt to its value on the stand-in");
        }
    }
    let writes: Vec<u64> =
        gh.requests().iter().filter(|r| r.method != "GET" && r.status < 300).map(|r| r.started_ms).collect();
    let max_writes_per_minute =
        writes.iter().map(|&t| writes.iter().filter(|&&u| u >= t && u < t + 60_000).count()).max().unwrap_or(0);
    Ok(Measured {
        wall,
        max_writes_per_minute,
        requests: gh.requests().len(),
        rate_limited: gh.rate_limited(),
        max_in_flight: gh.max_in_flight(),
    })
}
