//! `cargo xtask bench deploy`: deploy-remote (release build) versus a baseline bash script doing what
//! the seeds' scripts did: separate `ssh`/`scp` calls, `docker-compose pull` and `up -d`, then a `curl`
//! loop every second. Both deploy the sample app from the same testbed registry to the same sshd (this
//! machine), each as its own compose project and image repository so neither warms the other's cache.
//!
//! Measured, in one run (issue 3): (a) redeploy of the same tag, (b) a new tag, each the median of
//! `ROUNDS`; rollback time (start → previous version answering over HTTP) with the registry stopped;
//! SSH logins per run from the sshd log. Targets: ≤ 0.7× the baseline in (a) and (b), rollback ≤ 5 s,
//! one SSH connection per host per step.
//!
//! Both log in as the testbed's deploy user (`gangplank-test`, in the docker group), not root: root's
//! `~/.bashrc` on these machines starts pyenv, ~0.4 s for every command sshd runs, which no real deploy
//! user pays and which would drown what is being measured.
//!
//! The sample app (busybox httpd as PID 1) ignores SIGTERM, so both compose files set
//! `stop_grace_period: 1s`; otherwise every container replacement costs docker's 10 s stop timeout,
//! for both sides alike.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_testbed::{free_port, http_get, images, unique_name, Registry, Sshd};

const ROUNDS: usize = 3;

/// The baseline: what the seed repositories' deploy scripts did, step by step.
const BASELINE: &str = r#"#!/usr/bin/env bash
# usage: baseline.sh TAG  (env: SSH_OPTS, SCP_OPTS, DEST, APP_DIR, APP, PORT, WORK)
set -euo pipefail
TAG=$1
ssh $SSH_OPTS "$DEST" "mkdir -p $APP_DIR"
scp -q $SCP_OPTS "$WORK/compose.yaml" "$DEST:$APP_DIR/compose.yaml"
scp -q $SCP_OPTS "$WORK/prod.env" "$DEST:$APP_DIR/.env"
ssh $SSH_OPTS "$DEST" "cd $APP_DIR && IMAGE_TAG=$TAG docker-compose -p $APP pull"
ssh $SSH_OPTS "$DEST" "cd $APP_DIR && IMAGE_TAG=$TAG docker-compose -p $APP up -d"
for i in $(seq 1 60); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "not healthy after 60s" >&2
exit 1
"#;

pub(crate) struct App {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) port: u16,
    pub(crate) work: PathBuf,
    pub(crate) app_dir: PathBuf,
}

pub(crate) fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("bash").arg("-c").arg(cmd).output().context("running bash")?;
    ensure!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn app(prefix: &str, registry: &Registry, root: &Path) -> Result<App> {
    let samples = images::samples()?;
    let name = unique_name(prefix);
    let image = registry.image(&name);
    for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2)] {
        sh(&format!("docker tag {src} {image}:{tag} && docker push -q {image}:{tag} >/dev/null && docker rmi {image}:{tag} >/dev/null"))?;
    }
    let port = free_port();
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work)?;
    std::fs::write(
        work.join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n"
        ),
    )?;
    std::fs::write(work.join("prod.env"), "MODE=bench\n")?;
    Ok(App { app_dir: root.join(format!("{name}-host")), name, image, port, work })
}

pub(crate) fn health(port: u16) -> Option<String> {
    http_get(&format!("127.0.0.1:{port}"), "/health", None)
        .ok()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b.trim().to_string())
}

/// `gangplank <step>` from the release build.
pub(crate) fn release_step(gangplank: &Path, step: &str) -> Command {
    let mut cmd = gangplank_testbed::scrubbed_command(gangplank);
    cmd.arg(step);
    cmd
}

pub(crate) fn gangplank_args(sshd: &Sshd, a: &App) -> Vec<String> {
    vec![
        "--host".into(),
        format!("{}@{}:{}", gangplank_testbed::FAST_USER, sshd.host, sshd.port),
        format!("--ssh-key={}", sshd.client_key),
        "--known-hosts".into(),
        sshd.known_hosts.clone(),
        "--app-name".into(),
        a.name.clone(),
        "--app-dir".into(),
        a.app_dir.display().to_string(),
        "--health-url".into(),
        format!("http://127.0.0.1:{}/health", a.port),
        "--health-timeout".into(),
        "60s".into(),
    ]
}

fn deploy_gangplank(
    gangplank: &Path,
    sshd: &Sshd,
    a: &App,
    tag: &str,
    runner_temp: &Path,
) -> Result<(Duration, usize)> {
    let mut args = gangplank_args(sshd, a);
    args.extend([
        format!("--image-tag={tag}"),
        "--compose-files".into(),
        "compose.yaml".into(),
        "--env-file".into(),
        "prod.env".into(),
    ]);
    args.extend(["--min-free-disk".into(), "1MiB".into()]);
    let before = sshd.connections();
    let t = Instant::now();
    let out = release_step(gangplank, "deploy-remote")
        .args(&args)
        .current_dir(&a.work)
        .env("RUNNER_TEMP", runner_temp)
        .output()?;
    let took = t.elapsed();
    ensure!(out.status.success(), "deploy-remote {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(health(a.port).as_deref() == Some(tag), "gangplank: {tag} is not serving");
    Ok((took, sshd.connections() - before))
}

fn deploy_baseline(sshd: &Sshd, a: &App, tag: &str, script: &Path) -> Result<(Duration, usize)> {
    let ssh_opts = format!(
        "-i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -F /dev/null -p {}",
        sshd.key_file().display(),
        sshd.known_hosts_file().display(),
        sshd.port
    );
    let scp_opts = ssh_opts.replace(" -p ", " -P ");
    let before = sshd.connections();
    let t = Instant::now();
    let out = Command::new("bash")
        .arg(script)
        .arg(tag)
        .env("SSH_OPTS", ssh_opts)
        .env("SCP_OPTS", scp_opts)
        .env("DEST", format!("{}@{}", gangplank_testbed::FAST_USER, sshd.host))
        .env("APP_DIR", &a.app_dir)
        .env("APP", &a.name)
        .env("PORT", a.port.to_string())
        .env("WORK", &a.work)
        .output()?;
    let took = t.elapsed();
    ensure!(out.status.success(), "baseline {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    ensure!(health(a.port).as_deref() == Some(tag), "baseline: {tag} is not serving");
    Ok((took, sshd.connections() - before))
}

pub(crate) fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn cleanup(a: &App) {
    let _ = sh(&format!(
        "ids=$(docker ps -aq --filter label=com.docker.compose.project={n}); [ -n \"$ids\" ] && docker rm -f -v $ids; \
         docker network rm {n}_default >/dev/null 2>&1; refs=$(docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {img}); \
         [ -n \"$refs\" ] && docker rmi $refs >/dev/null; true",
        n = a.name,
        img = a.image
    ));
}

pub(crate) struct Cleanup<'a>(pub(crate) &'a [&'a App]);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for a in self.0 {
            cleanup(a);
        }
    }
}

pub fn run(_args: &[String]) -> Result<()> {
    gangplank_testbed::require_program("curl", "curl")?;
    eprintln!("building the release executable…");
    let gangplank = crate::build_gangplank(true)?;
    let sshd = Sshd::start()?;
    let mut registry = Registry::start()?;
    let user = gangplank_testbed::ensure_fast_user()?;
    let tmp = tempfile::tempdir()?;
    // The deploy user creates the app dirs here and reads the baseline's files.
    sh(&format!("chown {user} {} && chmod 755 {}", tmp.path().display(), tmp.path().display()))?;
    let script = tmp.path().join("baseline.sh");
    std::fs::write(&script, BASELINE)?;
    let base = app("bench-base", &registry, tmp.path())?;
    let gp = app("bench-gp", &registry, tmp.path())?;
    let apps = [&base, &gp];
    let _cleanup = Cleanup(&apps);

    // Warm-up: both at v1.
    deploy_baseline(&sshd, &base, "v1", &script)?;
    deploy_gangplank(&gangplank, &sshd, &gp, "v1", tmp.path())?;

    let (mut same_b, mut same_g, mut new_b, mut new_g) = (vec![], vec![], vec![], vec![]);
    let mut gp_logins = vec![];
    let mut base_logins = 0;
    let mut current = "v1";
    for round in 0..ROUNDS {
        let next = if current == "v1" { "v2" } else { "v1" };
        eprintln!("round {}/{ROUNDS}: redeploy {current}, then {next}", round + 1);
        let (t, n) = deploy_baseline(&sshd, &base, current, &script)?;
        same_b.push(t);
        base_logins = n;
        let (t, n) = deploy_gangplank(&gangplank, &sshd, &gp, current, tmp.path())?;
        same_g.push(t);
        gp_logins.push(n);
        let (t, _) = deploy_baseline(&sshd, &base, next, &script)?;
        new_b.push(t);
        let (t, n) = deploy_gangplank(&gangplank, &sshd, &gp, next, tmp.path())?;
        new_g.push(t);
        gp_logins.push(n);
        current = next;
    }

    // Rollback with the registry stopped: start → the previous version answering.
    let previous = if current == "v1" { "v2" } else { "v1" };
    registry.stop();
    let before = sshd.connections();
    let t = Instant::now();
    let child = release_step(&gangplank, "rollback")
        .args(gangplank_args(&sshd, &gp))
        .env("RUNNER_TEMP", tmp.path().join("rollback"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut answering = None;
    while t.elapsed() < Duration::from_secs(60) {
        if health(gp.port).as_deref() == Some(previous) {
            answering = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let rollback_done = t.elapsed();
    let rollback_logins = sshd.connections() - before;
    ensure!(out.status.success(), "rollback failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let answering = answering.context("the previous version never answered")?;
    registry.restart()?;

    let (sb, sg, nb, ng) = (median(&mut same_b), median(&mut same_g), median(&mut new_b), median(&mut new_g));
    println!("bench deploy: sample app, median of {ROUNDS} rounds, same sshd, registry and Docker engine");
    println!("                                 baseline   deploy-remote   ratio   (target <= 0.70)");
    println!(
        "  (a) redeploy same tag       {:>8.2} s      {:>8.2} s   {:>5.2}",
        secs(sb),
        secs(sg),
        secs(sg) / secs(sb)
    );
    println!(
        "  (b) new tag                 {:>8.2} s      {:>8.2} s   {:>5.2}",
        secs(nb),
        secs(ng),
        secs(ng) / secs(nb)
    );
    println!(
        "  rollback, registry stopped  : previous version answering after {:.2} s (process done after {:.2} s; target <= 5 s)",
        secs(answering),
        secs(rollback_done)
    );
    println!(
        "  SSH logins per run          : deploy-remote {:?} (target 1 per host per step), rollback {rollback_logins}, baseline {base_logins}",
        gp_logins
    );
    Ok(())
}
