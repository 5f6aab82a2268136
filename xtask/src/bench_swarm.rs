//! `cargo xtask bench swarm`: deploy-remote with `target: swarm` (release build) on a 3-node Swarm of
//! namespaced hosts (`gangplank_testbed::swarm`): the time from the command's start to a converged
//! v1 → v2 (and back), and the requests that failed during each update under a bounded, steady load.
//!
//! The app runs 2 replicas publishing 8080 in `mode: host` (this machine has no IPVS, so no routing
//! mesh). The load (`hey`, 4 workers × 25 requests/s, and a sequential probe) goes to a real Caddy on
//! 127.0.0.1 that proxies to the three nodes' 8080, with active health checks on `/health` and retries
//! of failed dials: what a load balancer in front of a Swarm does. Swarm's update is start-first (the
//! default gangplank sets), so a node with a healthy task always serves. Target: 0 failed requests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_testbed::load::Load;
use gangplank_testbed::swarm::Swarm;
use gangplank_testbed::{free_port, http_get, images, unique_name, wait_for};

const ROUNDS: usize = 2;

struct Caddy(Child);

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn answers(port: u16, want: &str) -> bool {
    http_get(&format!("127.0.0.1:{port}"), "/health", None).is_ok_and(|(s, b)| s == 200 && b.trim() == want)
}

/// Twenty answers of `want` in a row through the proxy.
fn settled(port: u16, want: &str) -> Result<()> {
    let mut row = 0;
    wait_for(&format!("{want} through the proxy"), Duration::from_secs(60), || {
        row = if answers(port, want) { row + 1 } else { 0 };
        (row >= 20).then_some(())
    })
}

/// `--debug`: the debug executable (Swarm's convergence dominates the figures; a release build costs minutes).
pub fn run(args: &[String]) -> Result<()> {
    gangplank_testbed::require_program("hey", "hey")?;
    let release = !args.iter().any(|a| a == "--debug");
    eprintln!("building the {} executable…", if release { "release" } else { "debug" });
    let gangplank = crate::build_gangplank(release)?;
    let t = Instant::now();
    let swarm = Swarm::new(3).context("a 3-node Swarm")?;
    let up = t.elapsed();
    let app = unique_name("bench-swarm");
    let image = swarm.hosts.push_samples(&app)?;
    let work = tempfile::tempdir()?;
    std::fs::write(
        work.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    ports:\n      - target: 8080\n        published: 8080\n        mode: host\n    stop_grace_period: 2s\n    deploy:\n      replicas: 2\n"
        ),
    )?;
    let app_dir = swarm.hosts.root().join("app").display().to_string();
    let runner_temp = tempfile::tempdir()?;
    let deploy = |tag: &str| -> Result<Duration> {
        let t = Instant::now();
        let out = gangplank_testbed::scrubbed_command(&gangplank)
            .arg("deploy-remote")
            .args(["--target", "swarm", "--host", &swarm.hosts.hosts[0].host_spec()])
            .arg(format!("--ssh-key={}", swarm.hosts.client_key()))
            .args(["--known-hosts", &swarm.hosts.known_hosts()])
            .args(["--app-name", &app, "--app-dir", &app_dir])
            .arg(format!("--image-tag={tag}"))
            .args(["--min-free-disk", "1MiB", "--health-timeout", "120s"])
            .current_dir(work.path())
            .env("RUNNER_TEMP", runner_temp.path())
            .output()?;
        let took = t.elapsed();
        ensure!(out.status.success(), "deploy-remote {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Ok(took)
    };
    let first = deploy("v1")?;

    // The proxy: every node's 8080, active health checks, failed dials retried on another node.
    let port = free_port();
    let upstreams: Vec<String> = swarm.hosts.hosts.iter().map(|h| format!("{}:8080", h.addr)).collect();
    let caddyfile = format!(
        "{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{port} {{\n  bind 127.0.0.1\n  reverse_proxy {} {{\n    lb_policy round_robin\n    lb_try_duration 5s\n    lb_try_interval 50ms\n    fail_duration 2s\n    health_uri /health\n    health_interval 250ms\n    health_timeout 1s\n  }}\n}}\n",
        upstreams.join(" ")
    );
    let conf = work.path().join("Caddyfile");
    std::fs::write(&conf, caddyfile)?;
    let _caddy = Caddy(
        Command::new(images::caddy_path()?)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf)
            .env("HOME", work.path())
            .env("XDG_DATA_HOME", work.path())
            .env("XDG_CONFIG_HOME", work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting caddy")?,
    );
    settled(port, "v1")?;

    let mut rows = vec![];
    let mut current = "v1";
    for round in 0..ROUNDS {
        let next = if current == "v1" { "v2" } else { "v1" };
        eprintln!("round {}/{ROUNDS}: {current} → {next} under load", round + 1);
        let load = Load::start(&format!("127.0.0.1:{port}"), "/health", 4, 25, Duration::from_secs(180))?;
        let took = deploy(next)?;
        settled(port, next)?;
        let report = load.finish()?;
        rows.push((current, next, took, report));
        current = next;
    }
    println!(
        "bench swarm: sample app, 2 replicas, host-mode port 8080, 3-node Swarm of namespaced hosts, Caddy in front"
    );
    println!(
        "  Swarm up (3 hosts, init, 2 joins) in {:.2} s; first deploy (create) {:.2} s",
        up.as_secs_f64(),
        first.as_secs_f64()
    );
    for (from, to, took, r) in &rows {
        let sent = r.hey_ok + r.hey_failed + r.probe.len() as u64;
        println!(
            "  {from} → {to}: converged in {:>6.2} s (deploy-remote start to exit 0); {sent} requests, {} failed (target 0), longest gap {:.2} s",
            took.as_secs_f64(),
            r.failed(),
            r.longest_gap().as_secs_f64()
        );
        for e in r.hey_errors.iter().take(3) {
            println!("      hey: {e}");
        }
    }
    let _ = swarm.manager().args(["stack", "rm", &app]).output();
    Ok(())
}
