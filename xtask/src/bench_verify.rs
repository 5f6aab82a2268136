//! `cargo xtask bench verify [--iterations N]`: verify-image (release build) against the shell script
//! teams write by hand, on the same stack, in one run; then push-registry times for a changed and an
//! unchanged image (issue 4, "Measure").
//!
//! The stack is the testbed's sample app plus a busybox dependency it waits for (`depends_on:
//! service_healthy`). Baseline: `docker-compose up -d`, a `curl` loop every second until the app's
//! `/health` answers, `docker-compose down -v`. Target: verify-image ≤ 0.8× the baseline's median.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gangplank_testbed::{compose_program, free_port, images, require_docker, scrubbed_command, unique_name, Registry};

const BASELINE: &str = r#"set -eu
echo "T_START $(date +%s%N)" >&2
$COMPOSE -p "$PROJECT" -f "$FILE" up -d
for i in $(seq 1 120); do
  if curl -fsS "$URL" >/dev/null 2>&1; then break; fi
  sleep 1
done
echo "T_HEALTHY $(date +%s%N)" >&2
$COMPOSE -p "$PROJECT" -f "$FILE" down -v
"#;

/// Seconds from `T_START` to `T_HEALTHY` in the baseline's stderr.
fn baseline_healthy(stderr: &str) -> Option<Duration> {
    let at = |k: &str| stderr.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
    Some(Duration::from_nanos(at("T_HEALTHY ")?.checked_sub(at("T_START ")?)?))
}

fn stack_yaml(app: &str, db: &str, port: u16) -> String {
    format!(
        r#"services:
  app:
    image: {app}
    ports:
      - "127.0.0.1:{port}:8080"
    depends_on:
      db:
        condition: service_healthy
  db:
    image: {db}
    command: ["/bin/busybox", "httpd", "-f", "-p", "9000", "-h", "/www"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "/bin/wget", "-q", "-O-", "http://127.0.0.1:9000/health"]
      interval: 1s
      timeout: 2s
      retries: 3
volumes:
  data: {{}}
"#
    )
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Remove anything of `project` a failed run may have left, so every iteration starts clean.
fn sweep(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    for (list, rm) in [
        (&["ps", "-a"][..], &["rm", "-f", "-v"][..]),
        (&["network", "ls"][..], &["network", "rm"][..]),
        (&["volume", "ls"][..], &["volume", "rm", "-f"][..]),
    ] {
        let out = scrubbed_command("docker").args(list).args(["-q", "--filter", &filter]).output();
        let ids: Vec<String> = out
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = scrubbed_command("docker").args(rm).args(&ids).output();
        }
    }
}

fn timed(cmd: &mut Command, what: &str) -> Result<Duration> {
    timed_err(cmd, what).map(|(t, _)| t)
}

/// Run to the end: wall time and stderr.
fn timed_err(cmd: &mut Command, what: &str) -> Result<(Duration, String)> {
    let t = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().with_context(|| format!("running {what}"))?;
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("{what} failed ({}):\n{err}", out.status);
    }
    Ok((took, err))
}

pub fn run(args: &[String]) -> Result<()> {
    let mut iterations = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--iterations" | "-n" => {
                iterations =
                    it.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0).context("--iterations needs a number")?
            }
            other => bail!("unknown argument `{other}`; usage: cargo xtask bench verify [--iterations N]"),
        }
    }
    require_docker()?;
    let compose = compose_program()?.join(" ");
    gangplank_testbed::require_program("curl", "curl")?;
    eprintln!("building the release executable…");
    let gangplank = crate::build_gangplank(true)?;

    let s = images::samples()?;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, stack_yaml(&s.v1, &s.v2, port))?;
    let url = format!("http://127.0.0.1:{port}/health");

    let report = dir.path().join("report.json");
    // (total, start to healthy) per run.
    let mut ours: Vec<(Duration, Duration)> = Vec::new();
    let mut base: Vec<(Duration, Duration)> = Vec::new();
    for i in 0..iterations {
        // Alternate which goes first so neither always gets a warm or cold engine.
        for ours_turn in [i % 2 == 0, i % 2 != 0] {
            let project = unique_name("gpbench");
            if ours_turn {
                let r = timed(
                    scrubbed_command(&gangplank)
                        .arg("verify-image")
                        .arg("--compose-files")
                        .arg(&file)
                        .args(["--service", "app", "--health-url", &url])
                        .args(["--project-name", &project])
                        .arg("--report-file")
                        .arg(&report),
                    "verify-image",
                );
                sweep(&project);
                let t = r?;
                let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
                let healthy = Duration::from_millis(rep["time_to_healthy_ms"].as_u64().unwrap_or(0));
                eprintln!("  run {}: verify-image {} (healthy after {})", i + 1, secs(t), secs(healthy));
                ours.push((t, healthy));
            } else {
                let r = timed_err(
                    scrubbed_command("bash")
                        .args(["-c", BASELINE])
                        .env("COMPOSE", &compose)
                        .env("PROJECT", &project)
                        .env("FILE", &file)
                        .env("URL", &url),
                    "baseline script",
                );
                sweep(&project);
                let (t, err) = r?;
                let healthy = baseline_healthy(&err).unwrap_or_default();
                eprintln!("  run {}: baseline     {} (healthy after {})", i + 1, secs(t), secs(healthy));
                base.push((t, healthy));
            }
        }
    }
    let med = |v: &[(Duration, Duration)], f: fn(&(Duration, Duration)) -> Duration| {
        median(&mut v.iter().map(f).collect::<Vec<_>>())
    };
    let (m_ours, m_base) = (med(&ours, |x| x.0), med(&base, |x| x.0));
    let (h_ours, h_base) = (med(&ours, |x| x.1), med(&base, |x| x.1));
    let ratio = m_ours.as_secs_f64() / m_base.as_secs_f64();
    println!("verify on the sample stack (app + dependency), {iterations} iterations each, medians:");
    println!(
        "  baseline (compose up -d, curl every 1s, compose down -v): {} total, healthy after {}, teardown {}",
        secs(m_base),
        secs(h_base),
        secs(m_base.saturating_sub(h_base))
    );
    println!(
        "  verify-image (health gate, teardown of containers, networks, volumes): {} total, healthy after {}, rest {}",
        secs(m_ours),
        secs(h_ours),
        secs(m_ours.saturating_sub(h_ours))
    );
    println!("  ratio: {ratio:.2}x (target <= 0.80x) {}", if ratio <= 0.8 { "OK" } else { "OVER TARGET" });
    println!("  start-to-healthy ratio: {:.2}x", h_ours.as_secs_f64() / h_base.as_secs_f64().max(0.001));

    push_times(&gangplank, dir.path())?;
    Ok(())
}

/// Push time of a changed image (one new layer on top of layers the registry has) and of the same image
/// again (nothing to upload).
/// push-registry times, through `gangplank push-registry`.
fn push_times(gangplank: &Path, dir: &Path) -> Result<()> {
    let s = images::samples()?;
    let (user, pass) = ("bench", "bench-password-not-secret");
    let reg = Registry::start_with_auth(user, pass)?;
    let base_args = |images: &str, tag: &str| {
        let mut c = scrubbed_command(gangplank);
        c.arg("push-registry")
            .args(["--registry", &reg.addr, "--username", user, "--images", images, "--tag", tag])
            .env("INPUT_PASSWORD", pass)
            .arg("--metadata-file")
            .arg(dir.join("push-metadata.json"))
            .env("TMPDIR", dir);
        c
    };
    // Warm-up: the registry holds the base layers, as it does after the first deploy.
    timed(&mut base_args(&format!("app={}", s.v1), "base"), "push of the base image")?;
    let changed = format!("gangplank-bench-changed:{}", unique_name("c"));
    images::build(&changed, &format!("FROM {}\nRUN echo {} > /stamp\n", s.v1, unique_name("stamp")), &[])?;
    let t_changed = timed(&mut base_args(&format!("app={changed}"), "changed"), "push of the changed image");
    let t_same = timed(&mut base_args(&format!("app={changed}"), "unchanged"), "push of the unchanged image");
    let _ = scrubbed_command("docker").args(["image", "rm", &changed]).output();
    println!("push-registry (login, tag, push, digest from the registry):");
    println!("  changed image (one new layer): {}", secs(t_changed?));
    println!("  unchanged image (no layer uploaded): {}", secs(t_same?));
    Ok(())
}
