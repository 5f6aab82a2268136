//! `cargo xtask bench hosts`: deploy-remote (release build) to three namespaced hosts, each with its own
//! sshd and Docker engine (`gangplank_testbed::hosts`), against the same deploy to one of them, and against
//! a seed-style bash loop over the three hosts (separate `ssh`/`scp` calls per host, `docker-compose pull`
//! and `up -d`, then a `curl` loop every second on the host's address). Figures and ratios only, measured in
//! one run; nothing is asserted about time.
//!
//! Issue 12's target is "parallel ≤ 1.3× a single host's deploy time" with `max-parallel: 3`; the same
//! three hosts one at a time (`max-parallel: 1`, the default) are measured beside it.
//!
//! Three apps, each its own compose project, image repository and port, so none warms another's cache:
//! the baseline's and gangplank's on all three hosts, and gangplank's single-host one on the first.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_testbed::hosts::Hosts;
use gangplank_testbed::{http_get, unique_name};

const ROUNDS: usize = 3;

/// The seed repositories' deploy script, run over every host in turn.
const BASELINE: &str = r#"#!/usr/bin/env bash
# usage: baseline.sh TAG  (env: SSH_OPTS, SCP_OPTS, LOGIN, HOSTS, APP_DIR, APP, PORT, WORK)
set -euo pipefail
TAG=$1
for h in $HOSTS; do
  ssh $SSH_OPTS "$LOGIN@$h" "mkdir -p $APP_DIR"
  scp -q $SCP_OPTS "$WORK/compose.yaml" "$LOGIN@$h:$APP_DIR/compose.yaml"
  scp -q $SCP_OPTS "$WORK/prod.env" "$LOGIN@$h:$APP_DIR/.env"
  ssh $SSH_OPTS "$LOGIN@$h" "cd $APP_DIR && IMAGE_TAG=$TAG docker-compose -p $APP pull"
  ssh $SSH_OPTS "$LOGIN@$h" "cd $APP_DIR && IMAGE_TAG=$TAG docker-compose -p $APP up -d"
  ok=
  for i in $(seq 1 60); do
    if curl -fsS "http://$h:$PORT/health" >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  [ -n "$ok" ] || { echo "$h not healthy after 60s" >&2; exit 1; }
done
"#;

struct App {
    name: String,
    port: u16,
    work: tempfile::TempDir,
    /// Indexes of the hosts it goes to.
    on: Vec<usize>,
}

fn app(hosts: &Hosts, prefix: &str, port: u16, on: Vec<usize>) -> Result<App> {
    let name = unique_name(prefix);
    let image = hosts.push_samples(&name)?;
    let work = tempfile::tempdir()?;
    std::fs::write(
        work.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    ports:\n      - \"{port}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n"
        ),
    )?;
    std::fs::write(work.path().join("prod.env"), "MODE=bench\n")?;
    Ok(App { name, port, work, on })
}

fn app_dir(hosts: &Hosts, a: &App) -> String {
    hosts.root().join(&a.name).display().to_string()
}

fn serving(hosts: &Hosts, a: &App, tag: &str) -> bool {
    a.on.iter().all(|&i| {
        http_get(&format!("{}:{}", hosts.hosts[i].addr, a.port), "/health", None)
            .is_ok_and(|(s, b)| s == 200 && b.trim() == tag)
    })
}

fn deploy_gangplank(
    gangplank: &Path,
    hosts: &Hosts,
    a: &App,
    tag: &str,
    runner_temp: &Path,
    parallel: u16,
) -> Result<Duration> {
    let host_input: Vec<String> = a.on.iter().map(|&i| hosts.hosts[i].host_spec()).collect();
    let known: Vec<String> = a.on.iter().map(|&i| hosts.hosts[i].sshd().known_hosts.clone()).collect();
    let t = Instant::now();
    let out = gangplank_testbed::scrubbed_command(gangplank)
        .arg("deploy-remote")
        .arg("--host")
        .arg(host_input.join("\n"))
        .arg(format!("--ssh-key={}", hosts.client_key()))
        .arg("--known-hosts")
        .arg(known.join("\n"))
        .args(["--app-name", &a.name, "--app-dir", &app_dir(hosts, a)])
        .arg(format!("--image-tag={tag}"))
        .args(["--compose-files", "compose.yaml", "--env-file", "prod.env", "--min-free-disk", "1MiB"])
        .args(["--health-timeout", "60s", "--health-url", &format!("http://127.0.0.1:{}/health", a.port)])
        .args(["--max-parallel", &parallel.to_string()])
        .current_dir(a.work.path())
        .env("RUNNER_TEMP", runner_temp)
        .output()?;
    let took = t.elapsed();
    ensure!(out.status.success(), "deploy-remote {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(serving(hosts, a, tag), "gangplank: {tag} is not serving on every host");
    Ok(took)
}

fn deploy_baseline(hosts: &Hosts, a: &App, tag: &str, script: &Path, known_hosts: &Path) -> Result<Duration> {
    let ssh_opts = format!(
        "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -F /dev/null",
        hosts.hosts[0].sshd().key_file().display(),
        known_hosts.display()
    );
    let addrs: Vec<&str> = a.on.iter().map(|&i| hosts.hosts[i].addr.as_str()).collect();
    let t = Instant::now();
    let out = Command::new("bash")
        .arg(script)
        .arg(tag)
        .env("SSH_OPTS", &ssh_opts)
        .env("SCP_OPTS", &ssh_opts)
        .env("LOGIN", &hosts.hosts[0].sshd().user)
        .env("HOSTS", addrs.join(" "))
        .env("APP_DIR", app_dir(hosts, a))
        .env("APP", &a.name)
        .env("PORT", a.port.to_string())
        .env("WORK", a.work.path())
        .output()?;
    let took = t.elapsed();
    ensure!(out.status.success(), "baseline {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(serving(hosts, a, tag), "baseline: {tag} is not serving on every host");
    Ok(took)
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

pub fn run(_args: &[String]) -> Result<()> {
    gangplank_testbed::require_program("curl", "curl")?;
    eprintln!("building the release executable…");
    let gangplank = crate::build_gangplank(true)?;
    let t = Instant::now();
    let hosts = Hosts::start(3).context("starting 3 namespaced hosts")?;
    let up = t.elapsed();
    let base = app(&hosts, "bench-hosts-base", 8081, vec![0, 1, 2])?;
    let gp3 = app(&hosts, "bench-hosts-gp3", 8080, vec![0, 1, 2])?;
    let gp1 = app(&hosts, "bench-hosts-gp1", 8082, vec![0])?;
    let tmp = tempfile::tempdir()?;
    let script = tmp.path().join("baseline.sh");
    std::fs::write(&script, BASELINE)?;
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, hosts.known_hosts() + "\n")?;
    // Warm-up: everything at v1.
    deploy_baseline(&hosts, &base, "v1", &script, &known_hosts)?;
    deploy_gangplank(&gangplank, &hosts, &gp3, "v1", tmp.path(), 1)?;
    deploy_gangplank(&gangplank, &hosts, &gp1, "v1", tmp.path(), 1)?;

    let (mut b3, mut g3, mut p3, mut g1) = (vec![], vec![], vec![], vec![]);
    let mut current = "v1";
    for round in 0..ROUNDS {
        let next = if current == "v1" { "v2" } else { "v1" };
        eprintln!("round {}/{ROUNDS}: {current} → {next}", round + 1);
        b3.push(deploy_baseline(&hosts, &base, next, &script, &known_hosts)?);
        g3.push(deploy_gangplank(&gangplank, &hosts, &gp3, next, tmp.path(), 1)?);
        p3.push(deploy_gangplank(&gangplank, &hosts, &gp3, current, tmp.path(), 3)?);
        g3.push(deploy_gangplank(&gangplank, &hosts, &gp3, next, tmp.path(), 1)?);
        g1.push(deploy_gangplank(&gangplank, &hosts, &gp1, next, tmp.path(), 1)?);
        current = next;
    }
    let (b3, g3, p3, g1) = (median(&mut b3), median(&mut g3), median(&mut p3), median(&mut g1));
    println!(
        "bench hosts: sample app, new tag, median of {ROUNDS} rounds; 3 namespaced hosts (own sshd and dockerd each)"
    );
    println!("  3 hosts up (namespaces, registry, engines, sshds) in {:.2} s", up.as_secs_f64());
    println!("  deploy-remote, 1 host              {g1:>7.2} s");
    println!("  deploy-remote, 3 hosts one at a time {g3:>5.2} s   {:>5.2}× one host", g3 / g1);
    println!(
        "  deploy-remote, 3 hosts at once       {p3:>5.2} s   {:>5.2}× one host (target with max-parallel 3: <= 1.30)",
        p3 / g1
    );
    println!("  seed-style bash loop, 3 hosts      {b3:>7.2} s   deploy-remote (at once)/baseline {:>5.2}", p3 / b3);
    Ok(())
}
