//! `cargo xtask bench zero-downtime` (issue 13): the sample app behind a real Caddy, under the same steady
//! load (`hey`, 4 workers × 25 requests/s, plus a sequential probe), deployed v1 → v2 three ways, each its
//! own compose project and image repository on the same sshd, registry and Docker engine:
//! `strategy: rolling`, `strategy: recreate`, and the seed-style bash (`ssh … compose pull && compose up -d`).
//! Printed: failed requests, the longest gap between successful responses, deploy wall time; rolling's
//! ratios against the other two. Target: rolling 0 failed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_testbed::load::{Load, Report};
use gangplank_testbed::{free_port, http_get, images, unique_name, Registry, Sshd};

struct App {
    name: String,
    image: String,
    port: u16,
    work: PathBuf,
    app_dir: PathBuf,
}

fn sh(cmd: &str) -> Result<String> {
    let out = Command::new("bash").arg("-c").arg(cmd).output().context("running bash")?;
    ensure!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn app(prefix: &str, registry: &Registry, root: &Path) -> Result<App> {
    let samples = images::samples()?;
    let caddy = images::caddy()?;
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
            "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    stop_grace_period: 2s\n  proxy:\n    image: {caddy}\n    ports:\n      - \"127.0.0.1:{port}:80\"\n    depends_on: [web]\n"
        ),
    )?;
    Ok(App { app_dir: root.join(format!("{name}-host")), name, image, port, work })
}

fn answers(port: u16, want: &str) -> bool {
    http_get(&format!("127.0.0.1:{port}"), "/health", None).is_ok_and(|(s, b)| s == 200 && b.trim() == want)
}

/// Twenty answers of `want` in a row: the switch is over as users see it.
fn settled(port: u16, want: &str) -> Result<()> {
    let mut row = 0;
    gangplank_testbed::wait_for(&format!("{want} on 127.0.0.1:{port}"), Duration::from_secs(60), || {
        row = if answers(port, want) { row + 1 } else { 0 };
        (row >= 20).then_some(())
    })
}

fn gangplank(bin: &Path, sshd: &Sshd, a: &App, tag: &str, strategy: &str, tmp: &Path) -> Result<()> {
    let mut cmd = gangplank_testbed::scrubbed_command(bin);
    cmd.arg("deploy-remote")
        .args(["--host", &format!("{}@{}:{}", gangplank_testbed::FAST_USER, sshd.host, sshd.port)])
        .arg(format!("--ssh-key={}", sshd.client_key))
        .args(["--known-hosts", &sshd.known_hosts, "--app-name", &a.name])
        .arg("--app-dir")
        .arg(&a.app_dir)
        .args(["--health-url", &format!("http://127.0.0.1:{}/health", a.port), "--health-timeout", "60s"])
        .args(["--image-tag", tag, "--compose-files", "compose.yaml", "--min-free-disk", "1MiB"])
        .args(["--strategy", strategy, "--services", "web"])
        .current_dir(&a.work)
        .env("RUNNER_TEMP", tmp);
    let out = cmd.output()?;
    ensure!(out.status.success(), "deploy-remote {tag} ({strategy}) failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The seed repositories' way: copy the compose file, then `compose pull` and `compose up -d` over ssh.
fn bash(sshd: &Sshd, a: &App, tag: &str) -> Result<()> {
    let ssh = format!(
        "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -F /dev/null -p {} {}@{}",
        sshd.key_file().display(),
        sshd.known_hosts_file().display(),
        sshd.port,
        gangplank_testbed::FAST_USER,
        sshd.host
    );
    let dir = a.app_dir.display();
    sh(&format!(
        "{ssh} 'mkdir -p {dir}' && {ssh} 'cat > {dir}/compose.yaml' < {work}/compose.yaml && \
         {ssh} 'cd {dir} && IMAGE_TAG={tag} docker compose -p {n} pull -q web && IMAGE_TAG={tag} docker compose -p {n} up -d'",
        work = a.work.display(),
        n = a.name
    ))?;
    Ok(())
}

struct Row {
    report: Report,
    took: Duration,
}

fn measure(a: &App, deploy: impl FnOnce() -> Result<()>) -> Result<Row> {
    settled(a.port, "v1")?;
    let load = Load::start(&format!("127.0.0.1:{}", a.port), "/health", 4, 25, Duration::from_secs(180))?;
    settled(a.port, "v1")?;
    let t = Instant::now();
    deploy()?;
    let took = t.elapsed();
    settled(a.port, "v2")?;
    Ok(Row { report: load.finish()?, took })
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

struct Cleanup<'a>(&'a [&'a App]);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for a in self.0 {
            cleanup(a);
        }
    }
}

pub fn run(_args: &[String]) -> Result<()> {
    gangplank_testbed::require_program("hey", "hey")?;
    eprintln!("building the release executable…");
    let bin = crate::build_gangplank(true)?;
    let sshd = Sshd::start()?;
    let registry = Registry::start()?;
    let user = gangplank_testbed::ensure_fast_user()?;
    let tmp = tempfile::tempdir()?;
    sh(&format!("chown {user} {} && chmod 755 {}", tmp.path().display(), tmp.path().display()))?;
    let rolling = app("zd-rolling", &registry, tmp.path())?;
    let recreate = app("zd-recreate", &registry, tmp.path())?;
    let seed = app("zd-bash", &registry, tmp.path())?;
    let apps = [&rolling, &recreate, &seed];
    let _cleanup = Cleanup(&apps);

    // Each at v1. The recreate app's first deploy is a rolling one too: only that starts the proxy beside
    // `web` (recreate's `up -- web` starts `web` and what it depends on), and the proxy's image is local.
    gangplank(&bin, &sshd, &rolling, "v1", "rolling", tmp.path())?;
    gangplank(&bin, &sshd, &recreate, "v1", "rolling", tmp.path())?;
    bash(&sshd, &seed, "v1")?;

    eprintln!("rolling v1 -> v2 under load…");
    let r = measure(&rolling, || gangplank(&bin, &sshd, &rolling, "v2", "rolling", tmp.path()))?;
    eprintln!("recreate v1 -> v2 under load…");
    let c = measure(&recreate, || gangplank(&bin, &sshd, &recreate, "v2", "recreate", tmp.path()))?;
    eprintln!("seed-style bash v1 -> v2 under load…");
    let b = measure(&seed, || bash(&sshd, &seed, "v2"))?;

    println!(
        "bench zero-downtime: sample app behind Caddy 2.6, v1 -> v2, load 4 x 25 req/s (hey) + a sequential probe"
    );
    println!("                          failed requests   of sent   longest gap   deploy wall time");
    for (name, row) in [("rolling", &r), ("recreate", &c), ("seed bash (up -d)", &b)] {
        let sent = row.report.hey_ok + row.report.hey_failed + row.report.probe.len() as u64;
        println!(
            "  {name:<22} {:>10}   {sent:>10}   {:>9.3} s   {:>9.2} s",
            row.report.failed(),
            row.report.longest_gap().as_secs_f64(),
            row.took.as_secs_f64()
        );
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "  rolling vs recreate: {} fewer failed requests (target: rolling 0), longest gap {:.2}x, wall time {:.2}x",
        c.report.failed() as i64 - r.report.failed() as i64,
        ratio(r.report.longest_gap(), c.report.longest_gap()),
        ratio(r.took, c.took)
    );
    println!(
        "  rolling vs seed bash: {} fewer failed requests, longest gap {:.2}x, wall time {:.2}x",
        b.report.failed() as i64 - r.report.failed() as i64,
        ratio(r.report.longest_gap(), b.report.longest_gap()),
        ratio(r.took, b.took)
    );
    for (name, row) in [("recreate", &c), ("seed bash", &b)] {
        if !row.report.hey_errors.is_empty() {
            let n = row.report.hey_errors.len();
            println!(
                "  {name}: {n} kind(s) of error seen by hey, e.g. {}",
                row.report.hey_errors[..n.min(3)].join("; ")
            );
        }
    }
    Ok(())
}
