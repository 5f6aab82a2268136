//! verify-image against the real Docker engine and compose (issue 4). After every run, nothing of its
//! project may be left: containers, networks, volumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gangplank_testbed::{free_port, images, require_docker, scrubbed_command, step_program, unique_name};

/// A stack of the sample app plus a busybox dependency (`db`) with a named volume. The app waits for the
/// dependency to be healthy; `db_health` is the dependency's health check path.
fn stack_yaml(port: u16, db_health: &str, db_retries: u32) -> String {
    let s = images::samples().unwrap();
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
    command: ["/bin/sh", "-c", "echo db starting on 9000; exec /bin/busybox httpd -f -p 9000 -h /www"]
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "/bin/wget", "-q", "-O-", "http://127.0.0.1:9000{db_health}"]
      interval: 1s
      timeout: 2s
      retries: {db_retries}
volumes:
  data: {{}}
"#,
        app = s.v1,
        db = s.v2,
    )
}

struct Stack {
    dir: tempfile::TempDir,
    project: String,
    port: u16,
}

impl Stack {
    fn new(yaml_for_port: impl Fn(u16) -> String) -> Stack {
        require_docker().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("compose.yaml"), yaml_for_port(port)).unwrap();
        Stack { dir, project: unique_name("gpverify"), port }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("compose.yaml")
    }
    fn command(&self, more: &[&str]) -> Command {
        let mut c = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"));
        c.arg("--compose-files")
            .arg(self.file())
            .args(["--service", "app", "--project-name", &self.project])
            .arg("--report-file")
            .arg(self.dir.path().join("report.json"))
            .env("GITHUB_OUTPUT", self.dir.path().join("output"))
            .args(more);
        c
    }
    fn run(&self, more: &[&str]) -> Output {
        self.command(more).output().unwrap()
    }
    fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("report.json")).unwrap()).unwrap()
    }
    fn outputs(&self) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.path().join("output")).unwrap_or_default();
        gangplank_core::actions::parse_output_file(&text).unwrap().into_iter().collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Only reached with leftovers when an assertion failed first; never leave them for other tests.
        remove_everything(&format!("label=com.docker.compose.project={}", self.project));
    }
}

fn docker_ids(args: &[&str], filter: &str) -> Vec<String> {
    let out = scrubbed_command("docker").args(args).args(["-q", "--filter", filter]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

fn remove_everything(filter: &str) {
    for (list, rm) in [
        (&["ps", "-a"][..], &["rm", "-f", "-v"][..]),
        (&["network", "ls"][..], &["network", "rm"][..]),
        (&["volume", "ls"][..], &["volume", "rm", "-f"][..]),
    ] {
        let ids = docker_ids(list, filter);
        if !ids.is_empty() {
            let _ = scrubbed_command("docker").args(rm).args(&ids).output();
        }
    }
}

/// No container, network or volume carries the project's label.
fn assert_nothing_left(filter: &str) {
    for (what, list) in
        [("container", &["ps", "-a"][..]), ("network", &["network", "ls"][..]), ("volume", &["volume", "ls"][..])]
    {
        let ids = docker_ids(list, filter);
        assert!(ids.is_empty(), "{what}(s) of {filter} left behind: {ids:?}");
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn stack_with_a_real_dependency_is_healthy_and_removed_after() {
    let st = Stack::new(|p| stack_yaml(p, "/health", 3));
    let url = format!("http://127.0.0.1:{}/health", st.port);
    let o = st.run(&[
        "--health-url",
        &url,
        "--timeout",
        "60s",
        // The app reaches its dependency over the stack's network, and serves its own version.
        "--smoke",
        "wget -q -O- http://db:9000/health | grep -qx v2\ntest -f /www/health",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(st.outputs()["healthy"], "true");
    let r = st.report();
    assert_eq!(r["healthy"], true);
    assert_eq!(r["status"], "healthy");
    assert_eq!(r["health_url_status"], 200);
    assert_eq!(r["smoke"].as_array().unwrap().len(), 2);
    let services: Vec<&str> =
        r["containers"].as_array().unwrap().iter().map(|c| c["service"].as_str().unwrap()).collect();
    assert!(services.contains(&"app") && services.contains(&"db"), "{services:?}");
    assert_eq!(r["leftovers"].as_array().unwrap().len(), 0);
    assert_nothing_left(&format!("label=com.docker.compose.project={}", st.project));
}

#[test]
fn failing_smoke_command_is_exit_1_naming_it_with_logs() {
    let st = Stack::new(|p| stack_yaml(p, "/health", 3));
    let o = st
        .command(&[
            "--smoke",
            "true\ntest -f /usr/lib/libpq.so.5\necho ::warning::from-container; exit 3",
            "--timeout",
            "60s",
        ])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    // Container output is fenced: the runner shows it and does not obey it.
    let fence = err.find("::stop-commands::").expect("no ::stop-commands:: fence");
    let line = err.find("\n::warning::from-container").expect("the smoke output is missing");
    assert!(fence < line, "{err}");
    assert!(err.contains("::group::logs of"), "{err}");
    assert!(err.contains("smoke command `test -f /usr/lib/libpq.so.5` failed"), "{err}");
    assert!(err.contains("logs of"), "no logs shown:\n{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(st.outputs()["healthy"], "false");
    assert_eq!(st.report()["status"], "smoke-failed");
    assert_nothing_left(&format!("label=com.docker.compose.project={}", st.project));
}

#[test]
fn dependency_never_ready_fails_within_timeout_with_its_logs() {
    // The dependency's health check fails forever (a missing path, retried far more than the timeout allows).
    let st = Stack::new(|p| stack_yaml(p, "/not-there", 1000));
    let o = st.run(&["--timeout", "8s"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("logs of") && err.contains("db starting on 9000"),
        "the dependency's logs are missing:\n{err}"
    );
    assert!(err.contains("8s"), "{err}");
    assert_eq!(st.report()["healthy"], false);
    assert_nothing_left(&format!("label=com.docker.compose.project={}", st.project));
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn sigterm_mid_run_still_tears_everything_down() {
    let st = Stack::new(|p| stack_yaml(p, "/not-there", 1000));
    let filter = format!("label=com.docker.compose.project={}", st.project);
    let child = st.command(&["--timeout", "120s"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until the stack is really up (its containers exist), then interrupt.
    gangplank_testbed::wait_for("the stack's containers", Duration::from_secs(300), || {
        (!docker_ids(&["ps", "-a"], &filter).is_empty()).then_some(())
    })
    .unwrap();
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "interrupted, as every step: {}", stderr(&out));
    assert!(stderr(&out).contains("tear down"), "{}", stderr(&out));
    assert_eq!(st.report()["status"], "interrupted");
    assert_nothing_left(&filter);
}

/// Runs verify-image on a single image; returns (exit code, stderr, report).
fn verify_single(image: &str, more: &[&str]) -> (i32, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let project = unique_name("gpverify-one");
    let o = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"))
        .args(["--image", image, "--project-name", &project])
        .env("INPUT_TIMEOUT", "30s")
        .arg("--report-file")
        .arg(dir.path().join("r.json"))
        .env("GITHUB_OUTPUT", dir.path().join("out"))
        .args(more)
        .output()
        .unwrap();
    let filter = format!("label=dev.gangplank.verify={project}");
    let left = docker_ids(&["ps", "-a"], &filter);
    remove_everything(&filter);
    assert!(left.is_empty(), "containers left: {left:?}");
    let report = std::fs::read_to_string(dir.path().join("r.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), stderr(&o), report)
}

fn non_root_image() -> String {
    let s = images::samples().unwrap();
    let tag = "gangplank-sample:nonroot";
    images::build(tag, &format!("FROM {}\nUSER 10001\n", s.v1), &[]).unwrap();
    tag.to_string()
}

#[test]
fn expect_non_root_fails_on_root_and_passes_on_a_user() {
    let s = images::samples().unwrap();
    let (code, err, report) = verify_single(&s.v1, &["--expect-non-root", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("runs as root"), "{err}");
    assert_eq!(report["checks"][0]["ok"], false);

    let nonroot = non_root_image();
    let port = free_port();
    let ports = format!("127.0.0.1:{port}:8080");
    let url = format!("http://127.0.0.1:{port}/health");
    let (code, err, report) =
        verify_single(&nonroot, &["--expect-non-root", "true", "--ports", &ports, "--health-url", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["checks"][0]["name"], "expect-non-root");
    assert_eq!(report["checks"][0]["ok"], true);
    assert_eq!(report["health_url_status"], 200);
}

#[test]
fn max_size_fails_over_the_limit_and_passes_under_it() {
    let s = images::samples().unwrap();
    let (code, err, _) = verify_single(&s.v1, &["--max-size", "100KiB"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("over max-size 100.0KiB"), "{err}");
    let (code, err, report) = verify_single(&s.v1, &["--max-size", "50MiB"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["checks"][0]["name"], "max-size");
    assert_eq!(report["checks"][0]["ok"], true);
}

#[test]
fn unhealthy_single_image_is_exit_1_with_logs() {
    let s = images::samples().unwrap();
    let (code, err, report) = verify_single(&s.broken, &["--timeout", "10s"]);
    assert_eq!(code, 1, "{err}");
    // `unhealthy` fails at once, as in the deploy gate: waiting out the timeout would not change it.
    assert!(err.contains("will not become ready") && err.contains("is unhealthy"), "{err}");
    assert_eq!(report["status"], "unhealthy");
    assert!(err.contains("logs of"), "{err}");
    assert_eq!(report["healthy"], false);
}

/// A service that crashes on its first start and runs after its restart policy brings it back.
fn crash_once_yaml(_port: u16) -> String {
    let s = images::samples().unwrap();
    format!(
        r#"services:
  app:
    image: {app}
    restart: on-failure
    command: ["/bin/sh", "-c", "if [ ! -f /data/crashed ]; then touch /data/crashed; echo crashed on first start; exit 1; fi; exec /bin/busybox httpd -f -p 9000 -h /www"]
    volumes:
      - data:/data
volumes:
  data: {{}}
"#,
        app = s.v2,
    )
}

#[test]
fn a_container_that_restarted_fails_with_the_depends_on_hint() {
    let st = Stack::new(crash_once_yaml);
    let o = st.run(&["--timeout", "60s"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // Caught between its crash and its restart (compose v2's `up` returns sooner) it "keeps restarting".
    assert!(err.contains("restarted") || err.contains("keeps restarting"), "{err}");
    assert!(err.contains("hint:") && err.contains("condition: service_healthy"), "{err}");
    assert!(err.contains("crashed on first start"), "the crash's logs are missing:\n{err}");
    let r = st.report();
    assert_eq!((r["healthy"].as_bool(), r["status"].as_str()), (Some(false), Some("restarted")));
    assert!(r["containers"][0]["restart_count"].as_i64() >= Some(1), "{r}");
    assert_nothing_left(&format!("label=com.docker.compose.project={}", st.project));
}

#[test]
fn bad_inputs_are_exit_2_and_start_nothing() {
    let (code, err, _) = verify_single("gangplank-surely-absent:1", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gangplank-surely-absent:1") && err.contains("hint:"), "{err}");
    let o = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"))
        .args(["--compose-files", "/nonexistent/compose.yaml", "--service", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"))
        .args(["--image", "x", "--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn unknown_service_is_exit_2_and_removed() {
    let st = Stack::new(|p| stack_yaml(p, "/health", 3));
    let o = st.command(&[]).args(["--service", "nope"]).output().unwrap();
    // `--service` given twice: clap refuses, nothing starts.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"))
        .arg("--compose-files")
        .arg(st.file())
        .args(["--service", "nope", "--project-name", &st.project, "--timeout", "30s"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("service `nope` is not in the compose files") && err.contains("app, db"), "{err}");
    assert_nothing_left(&format!("label=com.docker.compose.project={}", st.project));
}

/// The env-file's values are masked before anything is printed, and a stack that prints its environment
/// (here a smoke command) leaves them neither in the log nor in the report file (issue 14).
#[test]
fn env_file_values_are_masked_and_kept_out_of_the_report() {
    let s = images::samples().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let canary = "k9-verify-canary-5531";
    std::fs::write(dir.path().join("app.env"), format!("APP_TOKEN={canary}\nPIN=k9z\nDEBUG=true\n")).unwrap();
    let project = unique_name("gpverify-mask");
    let o = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "verify-image"))
        .args(["--image", &s.v1, "--project-name", &project, "--timeout", "30s"])
        .arg("--env-file")
        .arg(dir.path().join("app.env"))
        .args(["--smoke", "env\necho \"token=$APP_TOKEN pin=$PIN\"; exit 3"])
        .arg("--report-file")
        .arg(dir.path().join("r.json"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", dir.path().join("out"))
        .output()
        .unwrap();
    remove_everything(&format!("label=dev.gangplank.verify={project}"));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{err}");
    let masks: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("::add-mask::")).collect();
    assert!(masks.contains(&canary) && masks.contains(&"k9z") && !masks.contains(&"true"), "{out}");
    let report = std::fs::read_to_string(dir.path().join("r.json")).unwrap();
    assert!(report.contains("token=*** pin=***"), "the smoke output is kept, redacted: {report}");
    for secret in [canary, "k9z"] {
        gangplank_testbed::assert_no_secret(&[("stderr", &err), ("report", &report)], secret);
    }
}
