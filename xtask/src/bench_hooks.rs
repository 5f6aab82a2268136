//! `cargo xtask bench hooks`: what deploy hooks cost beyond the hook commands themselves (target ≤ 100 ms
//! for `pre-deploy` and `post-deploy` together). One app, one sshd, one registry; after a warm-up, redeploys of
//! the same tag alternate without hooks and with `pre-deploy: true` and `post-deploy: true`, `ROUNDS` of each
//! in one run, so both sides share the machine's load. Both run with `GANGPLANK_TRACE`, which times every remote
//! command: the hook commands' own time (a round trip over the open connection and a `sh` start) is taken out
//! of the difference, what is left is the engine's part (printing, grouping, planning).
//!
//! Logs in as the testbed's deploy user, as `bench deploy` does (root's `~/.bashrc` starts pyenv on these
//! machines, which no deploy user pays).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use gangplank_testbed::{Registry, Sshd};

use crate::bench_deploy::{app, gangplank_args, health, median, release_step, sh, App, Cleanup};

const ROUNDS: usize = 7;

/// One redeploy of `v1`; returns its wall time and the summed time of the hook commands it ran.
fn deploy(gangplank: &Path, sshd: &Sshd, a: &App, hooks: bool, runner_temp: &Path) -> Result<(Duration, Duration)> {
    let mut args = gangplank_args(sshd, a);
    args.extend(
        ["--image-tag=v1", "--compose-files", "compose.yaml", "--env-file", "prod.env", "--min-free-disk", "1MiB"]
            .map(String::from),
    );
    if hooks {
        args.extend(["--pre-deploy", "true", "--post-deploy", "true"].map(String::from));
    }
    let t = Instant::now();
    let out = release_step(gangplank, "deploy-remote")
        .args(&args)
        .current_dir(&a.work)
        .env("RUNNER_TEMP", runner_temp)
        .env("GANGPLANK_TRACE", "1")
        .output()?;
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "deploy-remote failed:\n{stderr}");
    ensure!(health(a.port).as_deref() == Some("v1"), "v1 is not serving");
    // `[trace    12 ms] $ … gangplank-hook …`: the hook commands as the executor timed them.
    let hook_ms: f64 = stderr
        .lines()
        .filter(|l| l.contains("gangplank-hook"))
        .filter_map(|l| l.split("[trace").nth(1)?.split("ms]").next()?.trim().parse::<f64>().ok())
        .sum();
    ensure!(!hooks || hook_ms > 0.0, "no hook command in the trace:\n{stderr}");
    Ok((took, Duration::from_secs_f64(hook_ms / 1000.0)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(_args: &[String]) -> Result<()> {
    eprintln!("building the release executable…");
    let gangplank = crate::build_gangplank(true)?;
    let sshd = Sshd::start()?;
    let registry = Registry::start()?;
    let user = gangplank_testbed::ensure_fast_user()?;
    let tmp = tempfile::tempdir()?;
    sh(&format!("chown {user} {} && chmod 755 {}", tmp.path().display(), tmp.path().display()))?;
    let a = app("bench-hooks", &registry, tmp.path())?;
    let apps = [&a];
    let _cleanup = Cleanup(&apps);

    // Warm-up: the first deploy, then one of each.
    deploy(&gangplank, &sshd, &a, false, tmp.path())?;
    deploy(&gangplank, &sshd, &a, true, tmp.path())?;
    let (mut without, mut with, mut hook_cmds, mut diffs) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        // Alternate which goes first, so a drift in load does not favour one side.
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        let mut pair = [Duration::ZERO; 2];
        for hooks in order {
            let (t, h) = deploy(&gangplank, &sshd, &a, hooks, tmp.path())?;
            if hooks {
                with.push(t);
                hook_cmds.push(h);
                pair[1] = t.saturating_sub(h);
            } else {
                without.push(t);
                pair[0] = t;
            }
        }
        diffs.push(ms(pair[1]) - ms(pair[0]));
    }
    let (w0, w1, h) = (median(&mut without), median(&mut with), median(&mut hook_cmds));
    let in_order: Vec<f64> = diffs.iter().map(|d| d.round()).collect();
    diffs.sort_by(f64::total_cmp);
    let overhead = diffs[diffs.len() / 2];
    println!("bench hooks: redeploy of the same tag, median of {ROUNDS} rounds, same sshd, registry and Docker engine");
    println!("  without hooks                              {:>8.0} ms", ms(w0));
    println!("  with pre-deploy: true, post-deploy: true   {:>8.0} ms", ms(w1));
    println!(
        "  the two hook commands themselves           {:>8.0} ms  (round trip and `sh` start, from the trace)",
        ms(h)
    );
    println!(
        "  overhead beyond the hook commands          {:>8.0} ms  (median of per-round differences; target <= 100 ms)",
        overhead
    );
    println!("  per round, in order (ms, with minus its hook commands minus without): {in_order:?}");
    // The spread says how much the machine's load moved the figures.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average at the end: {}", load.split_whitespace().next().unwrap_or("?"));
    Ok(())
}
