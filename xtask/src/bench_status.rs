//! `cargo xtask bench status`: `gangplank status` (release build) on three namespaced hosts, each with its own
//! sshd and Docker engine (`gangplank_testbed::hosts`), against the same command on one of them. The app is
//! deployed first, so every host has state, an audit log, a `.env` and a running container to report.
//!
//! The target: at most 1 s per host, one SSH connection and one round trip per host, hosts asked at once (so
//! three hosts take about as long as one). Figures and ratios only; the connection count is checked, as it is
//! exact.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_testbed::hosts::Hosts;
use gangplank_testbed::unique_name;

const ROUNDS: usize = 5;

struct Target<'a> {
    hosts: &'a Hosts,
    app: String,
    work: &'a Path,
}

impl Target<'_> {
    fn ssh_args(&self, on: &[usize]) -> Vec<String> {
        let host_input: Vec<String> = on.iter().map(|&i| self.hosts.hosts[i].host_spec()).collect();
        let known: Vec<String> = on.iter().map(|&i| self.hosts.hosts[i].sshd().known_hosts.clone()).collect();
        vec![
            "--host".into(),
            host_input.join("\n"),
            format!("--ssh-key={}", self.hosts.client_key()),
            "--known-hosts".into(),
            known.join("\n"),
            "--app-name".into(),
            self.app.clone(),
            "--app-dir".into(),
            self.hosts.root().join(&self.app).display().to_string(),
        ]
    }

    /// One `status` run: its wall time, and the round trips it logged (`GANGPLANK_TRACE`).
    fn status(&self, gangplank: &Path, on: &[usize]) -> Result<(Duration, usize)> {
        let before: Vec<usize> = on.iter().map(|&i| self.hosts.hosts[i].sshd().connections()).collect();
        let t = Instant::now();
        let out = gangplank_testbed::scrubbed_command(gangplank)
            .arg("status")
            .args(self.ssh_args(on))
            .current_dir(self.work)
            .env("RUNNER_TEMP", self.work)
            .env("GANGPLANK_TRACE", "1")
            .output()?;
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "status failed:\n{err}");
        ensure!(err.matches("current:  v1").count() == on.len(), "status did not report v1 on every host:\n{err}");
        for (k, &i) in on.iter().enumerate() {
            let n = self.hosts.hosts[i].sshd().connections() - before[k];
            ensure!(n == 1, "status opened {n} connections to host {i}");
        }
        Ok((took, err.matches("[trace ").count()))
    }
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

pub fn run(_args: &[String]) -> Result<()> {
    eprintln!("building the release executable…");
    let gangplank = crate::build_gangplank(true)?;
    let hosts = Hosts::start(3).context("starting 3 namespaced hosts")?;
    let app = unique_name("bench-status");
    let image = hosts.push_samples(&app)?;
    let work = tempfile::tempdir()?;
    std::fs::write(
        work.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    ports:\n      - \"8083:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n"
        ),
    )?;
    std::fs::write(work.path().join("prod.env"), "MODE=bench\n")?;
    let target = Target { hosts: &hosts, app, work: work.path() };
    let all = [0, 1, 2];
    let out = gangplank_testbed::scrubbed_command(&gangplank)
        .arg("deploy-remote")
        .args(target.ssh_args(&all))
        .args([
            "--image-tag=v1",
            "--compose-files",
            "compose.yaml",
            "--env-file",
            "prod.env",
            "--min-free-disk",
            "1MiB",
        ])
        .args(["--health-url", "http://127.0.0.1:8083/health", "--max-parallel", "3"])
        .current_dir(work.path())
        .env("RUNNER_TEMP", work.path())
        .output()?;
    ensure!(out.status.success(), "deploy-remote v1 failed:\n{}", String::from_utf8_lossy(&out.stderr));

    // Warm-up: the first run pays for the page cache and Docker's first inspect.
    target.status(&gangplank, &all)?;
    let (mut one, mut three) = (vec![], vec![]);
    let (mut trips1, mut trips3) = (0, 0);
    for _ in 0..ROUNDS {
        let (t, n) = target.status(&gangplank, &[0])?;
        one.push(t);
        trips1 = n;
        let (t, n) = target.status(&gangplank, &all)?;
        three.push(t);
        trips3 = n;
    }
    let (one, three) = (median(&mut one), median(&mut three));
    println!(
        "bench status: deployed sample app, median of {ROUNDS} runs; 3 namespaced hosts (own sshd and dockerd each)"
    );
    println!("  status, 1 host   {one:>6.3} s   {trips1} round trip(s), 1 connection");
    println!(
        "  status, 3 hosts  {three:>6.3} s   {trips3} round trip(s), 1 connection per host; {:.2}× one host (target: <= 1 s per host)",
        three / one
    );
    Ok(())
}
