//! push-registry against the testbed's real `docker-registry` and Docker engine (issue 4).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use gangplank_testbed::{assert_no_secret, images, scrubbed_command, step_program, unique_name, Registry};

const USER: &str = "ci-pusher";
const PASS: &str = "pw-canary-Zq8+/x9";

/// One run of the binary with its own TMPDIR, HOME and GITHUB_OUTPUT, so leftovers can be checked.
struct Run {
    out: Output,
    tmp: tempfile::TempDir,
}

impl Run {
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn outputs_text(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("output")).unwrap_or_default()
    }
    fn outputs(&self) -> BTreeMap<String, String> {
        gangplank_core::actions::parse_output_file(&self.outputs_text()).unwrap().into_iter().collect()
    }
    fn summary(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("summary")).unwrap_or_default()
    }
    fn metadata(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("meta.json")).unwrap_or_default()
    }
    fn all_text(&self) -> Vec<(&'static str, String)> {
        vec![
            ("stdout", self.stdout()),
            ("stderr", self.stderr()),
            ("outputs", self.outputs_text()),
            ("summary", self.summary()),
            ("metadata", self.metadata()),
        ]
    }
    /// The login never persists: no temporary docker config left, nothing written to $HOME/.docker.
    fn assert_no_credentials_left(&self) {
        let left: Vec<PathBuf> = std::fs::read_dir(self.tmp.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().contains("docker-config"))
            .collect();
        assert!(left.is_empty(), "temporary docker config left behind: {left:?}");
        assert!(!self.tmp.path().join("home/.docker").exists(), "the login was written under $HOME/.docker");
        for (label, text) in self.all_text() {
            assert_no_secret(&[(label, &text)], PASS);
        }
    }
}

fn push(args: &[&str]) -> Run {
    push_env(args, &[])
}

/// [`push`] with more variables in the step's environment.
fn push_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["tmp", "home"] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
    }
    let out = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "push-registry"))
        .args(args)
        .arg("--metadata-file")
        .arg(tmp.path().join("meta.json"))
        .env("TMPDIR", tmp.path().join("tmp"))
        .env("HOME", tmp.path().join("home"))
        .env("GITHUB_OUTPUT", tmp.path().join("output"))
        .env("GITHUB_STEP_SUMMARY", tmp.path().join("summary"))
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run { out, tmp }
}

/// The registry's own `Docker-Content-Digest` for `name:tag`, read with the login.
fn registry_digest(reg: &Registry, name: &str, tag: &str) -> String {
    let resp = reqwest::blocking::Client::new()
        .head(format!("http://{}/v2/{name}/manifests/{tag}", reg.addr))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .basic_auth(USER, Some(PASS))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "HEAD {name}:{tag}");
    resp.headers()["docker-content-digest"].to_str().unwrap().to_string()
}

fn login_args(reg: &Registry) -> Vec<String> {
    ["--registry", &reg.addr, "--username", USER, "--password", PASS].iter().map(|s| s.to_string()).collect()
}

fn args_with(reg: &Registry, more: &[&str]) -> Vec<String> {
    let mut a = login_args(reg);
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

fn run_push(a: &[String]) -> Run {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    push(&refs)
}

#[test]
fn push_with_htpasswd_digests_match_the_registry_and_unchanged_push_uploads_nothing() {
    let s = images::samples().unwrap();
    let reg = Registry::start_with_auth(USER, PASS).unwrap();
    let images = format!("app={}\nother={}", s.v1, s.v2);
    let r = run_push(&args_with(&reg, &["--images", &images, "--tag", "build-1", "--extra-tags", "latest, stable"]));
    assert_eq!(r.code(), 0, "{}", r.stderr());
    r.assert_no_credentials_left();

    let outs = r.outputs();
    assert_eq!(outs["tag"], "build-1");
    let digests: BTreeMap<String, String> = serde_json::from_str(&outs["digests"]).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&r.metadata()).unwrap();
    assert_eq!(meta["tag"], "build-1");
    assert_eq!(meta["git_sha"], "0123456789abcdef0123456789abcdef01234567");
    assert!(meta["created_at"].as_str().unwrap().contains('T'));
    for (i, name) in ["app", "other"].iter().enumerate() {
        let want = registry_digest(&reg, name, "build-1");
        assert_eq!(digests[*name], want, "output digest of {name}");
        assert_eq!(meta["images"][i]["name"], *name);
        assert_eq!(meta["images"][i]["digest"], want.as_str(), "metadata digest of {name}");
        assert_eq!(meta["images"][i]["ref"], format!("{}/{name}:build-1", reg.addr));
        for extra in ["latest", "stable"] {
            assert_eq!(registry_digest(&reg, name, extra), want, "{name}:{extra}");
        }
    }
    assert_eq!(outs["digest"], digests["app"]);
    assert_ne!(digests["app"], digests["other"]);
    assert!(r.stderr().contains(": Pushed"), "the first push uploads layers:\n{}", r.stderr());

    // The same image again under a new tag: every layer is already there.
    let r2 = run_push(&args_with(&reg, &["--images", &format!("app={}", s.v1), "--tag", "build-2"]));
    assert_eq!(r2.code(), 0, "{}", r2.stderr());
    let err = r2.stderr();
    assert!(err.contains("Layer already exists"), "{err}");
    assert!(!err.contains(": Pushed"), "an unchanged image uploaded a layer:\n{err}");
    assert!(err.contains("0 layer(s) uploaded"), "{err}");
    assert_eq!(r2.outputs()["digest"], digests["app"]);
    r2.assert_no_credentials_left();
}

#[test]
fn wrong_password_is_exit_2_with_a_hint_and_leaves_no_credentials() {
    let s = images::samples().unwrap();
    let reg = Registry::start_with_auth(USER, "the-right-one").unwrap();
    let r = push(&["--registry", &reg.addr, "--username", USER, "--password", PASS, "--images", &s.v1, "--tag", "x"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("refused the login"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    r.assert_no_credentials_left();
    assert!(r.outputs_text().is_empty());
}

#[test]
fn registry_down_retries_then_exit_1() {
    let s = images::samples().unwrap();
    let mut reg = Registry::start_with_auth(USER, PASS).unwrap();
    reg.stop();
    let r = run_push(&args_with(&reg, &["--images", &s.v1, "--tag", "x"]));
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("attempt 1 of 3") && err.contains("attempt 2 of 3"), "no retries:\n{err}");
    assert!(err.contains("did not answer after 3 attempts"), "{err}");
    // Nothing was built or pushed, so there is nothing to prune.
    assert!(!err.contains("prune"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    r.assert_no_credentials_left();

    // Without a login the push itself meets the dead registry.
    let r = push(&["--registry", &reg.addr, "--images", &s.v1, "--tag", "x", "--cleanup-on-failure", "false"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("failed after 3 attempts"), "{}", r.stderr());
}

#[test]
fn missing_local_image_is_exit_2_naming_it() {
    let reg = Registry::start_with_auth(USER, PASS).unwrap();
    let missing = format!("{}:nope", unique_name("gp-missing"));
    let r = run_push(&args_with(&reg, &["--images", &missing, "--tag", "x"]));
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains(&missing), "{}", r.stderr());
    assert!(r.stderr().contains("does not exist locally"), "{}", r.stderr());
    r.assert_no_credentials_left();
}

#[test]
fn compose_build_services_are_built_with_image_tag_and_pushed() {
    let s = images::samples().unwrap();
    let reg = Registry::start_with_auth(USER, PASS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("web");
    std::fs::create_dir(&ctx).unwrap();
    let marker = unique_name("built");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {}\nLABEL dev.gangplank.test=\"{marker}\"\n", s.v1)).unwrap();
    let compose = dir.path().join("compose.yaml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  web:\n    build: ./web\n    image: {}/web:${{IMAGE_TAG}}\n  cache:\n    image: {}\n",
            reg.addr, s.v2
        ),
    )
    .unwrap();
    let r = run_push(&args_with(&reg, &["--compose-files", compose.to_str().unwrap(), "--tag", "c1"]));
    let local = format!("{}/web:c1", reg.addr);
    let _cleanup = RemoveImage(local.clone());
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let digests: BTreeMap<String, String> = serde_json::from_str(&r.outputs()["digests"]).unwrap();
    assert_eq!(digests.keys().collect::<Vec<_>>(), vec!["web"], "only services with build: are pushed");
    assert_eq!(digests["web"], registry_digest(&reg, "web", "c1"));
    r.assert_no_credentials_left();
}

struct RemoveImage(String);
impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = scrubbed_command("docker").args(["image", "rm", &self.0]).output();
    }
}

#[test]
fn bad_inputs_are_exit_2() {
    let r = push(&["--registry", "127.0.0.1:1", "--images", "gp-surely-absent:b"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("gp-surely-absent:b"), "{}", r.stderr());
    // GITHUB_SHA is set by `push`, so the tag defaults to its first 12 characters; a bad tag is refused.
    let r = push(&["--registry", "127.0.0.1:1", "--images", "a:b", "--tag", "no good"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(r.stderr().contains("hint:"));
    let r = push(&["--registry", "127.0.0.1:1", "--images", "a:b", "--tag", "t", "--cleanup-on-failure", "maybe"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
}

#[test]
fn sigterm_during_retries_still_removes_the_login() {
    let s = images::samples().unwrap();
    // A registry that refuses every connection, for good: port 1, where nothing listens. (A stopped test registry
    // frees its port, and a parallel test's server may take it and answer something that is not retried.)
    let refusing = "127.0.0.1:1";
    let tmp = tempfile::tempdir().unwrap();
    let mut child = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "push-registry"))
        .args(["--registry", refusing, "--username", USER, "--images", &s.v1, "--tag", "x"])
        .env("INPUT_PASSWORD", PASS)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The login dir exists while the step runs.
    let has_config = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("docker-config"))
    };
    // Signal only once the step says it is waiting to retry: then it is between attempts for sure,
    // however slow the machine is, and its temporary docker config exists.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attempt 1 of") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the step announced a retry");
    assert!(has_config(), "no temporary docker config while the step waits to retry");
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted by signal 15"), "{err}");
    assert!(!has_config(), "the temporary docker config survived SIGTERM");
    assert_no_secret(&[("stderr", &err), ("stdout", &String::from_utf8_lossy(&out.stdout))], PASS);
}

/// The runtime settings of examples/compose-app/compose.yaml, whose values only the server's `.env` holds.
const RUNTIME: [&str; 3] = ["POSTGRES_PASSWORD", "SECRET_KEY", "APP_MODE"];

/// A project shaped like examples/compose-app: a `web` service built from `./web` as `${WEB_IMAGE:?}:${IMAGE_TAG:?}`
/// whose runtime settings are required variables, in typed fields too (a port, a duration, a boolean, a bind
/// source), beside a prebuilt `db`. `BUILD_LABEL` comes from the project's `.env`, as compose reads it, and is
/// built into the image; `extra_args` adds build args.
fn runtime_project(s: &images::Samples, marker: &str, extra_args: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("web");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nARG BUILD_LABEL\nLABEL dev.gangplank.test=\"$BUILD_LABEL\"\n", s.v1),
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), format!("BUILD_LABEL={marker}\n")).unwrap();
    let compose = format!(
        r#"services:
  web:
    build:
      context: ./web
      args:
        BUILD_LABEL: ${{BUILD_LABEL:?}}{extra_args}
    image: ${{WEB_IMAGE:?WEB_IMAGE must be set (the image name, e.g. ghcr.io/owner/repo/web)}}:${{IMAGE_TAG:?IMAGE_TAG must be set}}
    environment:
      DATABASE_HOST: db
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?}}
      SECRET_KEY: ${{SECRET_KEY:?}}
      APP_MODE: ${{APP_MODE:?}}
      SENTRY_DSN: ${{SENTRY_DSN:-}}
    ports:
      - "127.0.0.1:${{WEB_PORT:?}}:80"
    stop_grace_period: ${{GRACE:?}}
    read_only: ${{READ_ONLY:?}}
    volumes:
      - ${{DATA_DIR:?}}:/data
    restart: unless-stopped
  db:
    image: {}
    environment:
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?}}
"#,
        s.v2
    );
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    dir
}

/// The repositories the registry holds.
fn catalog(reg: &Registry) -> Vec<String> {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{}/v2/_catalog", reg.addr))
        .basic_auth(USER, Some(PASS))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    body["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
}

#[test]
fn compose_build_needs_no_runtime_secrets() {
    let s = images::samples().unwrap();
    let reg = Registry::start_with_auth(USER, PASS).unwrap();
    let marker = unique_name("from-dotenv");
    let dir = runtime_project(s, &marker, "");
    let compose = dir.path().join("compose.yaml");
    let web_image = format!("{}/web", reg.addr);
    let local = format!("{web_image}:c20");
    let _cleanup = RemoveImage(local.clone());
    for v in RUNTIME {
        assert!(std::env::var_os(v).is_none(), "{v} is set in the test's environment");
    }
    let r = push_env(
        &args_with(&reg, &["--compose-files", compose.to_str().unwrap(), "--tag", "c20"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[("WEB_IMAGE", &web_image)],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let err = r.stderr();
    for v in RUNTIME.iter().chain(&["WEB_PORT", "GRACE", "READ_ONLY", "DATA_DIR"]) {
        assert!(err.contains(&format!("`{v}`")), "the stand-in for {v} is not reported:\n{err}");
    }
    // BUILD_LABEL has its value in the project's `.env`: no stand-in for it, and that value is built in.
    assert!(!err.contains("`BUILD_LABEL`"), "{err}");
    let label = scrubbed_command("docker")
        .args(["image", "inspect", "--format", "{{ index .Config.Labels \"dev.gangplank.test\" }}", &local])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), marker);

    let digests: BTreeMap<String, String> = serde_json::from_str(&r.outputs()["digests"]).unwrap();
    assert_eq!(digests.keys().collect::<Vec<_>>(), vec!["web"], "only services with build: are pushed");
    assert_eq!(digests["web"], registry_digest(&reg, "web", "c20"));
    let meta: serde_json::Value = serde_json::from_str(&r.metadata()).unwrap();
    assert_eq!(meta["images"][0]["digest"], digests["web"].as_str());
    assert_eq!(meta["images"][0]["ref"], local.as_str());
    r.assert_no_credentials_left();
}

#[test]
fn compose_variable_of_the_image_or_a_build_arg_unset_is_exit_2_naming_it() {
    let s = images::samples().unwrap();
    let reg = Registry::start_with_auth(USER, PASS).unwrap();
    let web_image = format!("{}/web", reg.addr);
    // A required build arg with no value here, beside the runtime settings.
    let dir = runtime_project(s, "m", "\n        FLAVOUR: ${FLAVOUR:?}");
    let compose = dir.path().join("compose.yaml");
    let args = args_with(&reg, &["--compose-files", compose.to_str().unwrap(), "--tag", "c21"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // (WEB_IMAGE given, the variable named, where it lands)
    let cases = [(true, "`FLAVOUR`", "services.web.build.args.FLAVOUR"), (false, "`WEB_IMAGE`", "services.web.image")];
    for (with_image, named, path) in cases {
        let env = [("WEB_IMAGE", web_image.as_str())];
        let r = push_env(&args, if with_image { &env } else { &[] });
        assert_eq!(r.code(), 2, "{}", r.stderr());
        let err = r.stderr();
        assert!(err.contains(named) && err.contains(path), "{named} at {path} is not named:\n{err}");
        assert!(err.contains("hint:"), "{err}");
        for v in RUNTIME {
            assert!(!err.contains(&format!("`{v}`")), "{v} only runs on the server, yet it is blamed:\n{err}");
        }
        assert!(!err.contains("41000") && !err.contains("42000"), "a stand-in is shown:\n{err}");
        assert!(r.outputs_text().is_empty());
        r.assert_no_credentials_left();
    }
    assert!(catalog(&reg).is_empty(), "something was pushed: {:?}", catalog(&reg));
}
