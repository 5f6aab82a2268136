//! The pull phase against a real htpasswd-protected registry: deploy-remote and rollback log each host in
//! with `registry`/`registry-username`/`registry-password`, the credential never lands anywhere but the
//! run's temporary Docker config (gone after the run), a refused login changes nothing, and
//! `expect-digests` refuses a tag that was moved in the registry before anything switches.

mod support;

use std::path::Path;
use std::process::Command;

use gangplank_testbed::{assert_no_secret, free_port, images, unique_name, Registry, Sshd};
use support::{record_json, wait_health, Fixture, Run};

const USER: &str = "ci-puller";

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The usual fixture, but its registry requires `USER`/`password`. The sample images are pushed with a
/// throw-away Docker config of the test's own (removed before any deploy), then removed from the engine so
/// that a host must pull them through the login.
fn private_fixture(prefix: &str, password: &str) -> Fixture {
    let samples = images::samples().expect("sample images build");
    let registry = Registry::start_with_auth(USER, password).expect("registry starts");
    let app = unique_name(prefix);
    let image = registry.image(&app);
    let pusher = tempfile::tempdir().unwrap();
    let dc = gangplank_core::quote(&pusher.path().display().to_string());
    sh(&format!(
        "printf '%s' {} | DOCKER_CONFIG={dc} docker login -u {USER} --password-stdin {} >/dev/null",
        gangplank_core::quote(password),
        registry.addr
    ));
    for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2)] {
        sh(&format!(
            "docker tag {src} {image}:{tag} && DOCKER_CONFIG={dc} docker push -q {image}:{tag} >/dev/null && docker rmi {image}:{tag} >/dev/null"
        ));
    }
    drop(pusher);
    let host_root = tempfile::tempdir().unwrap();
    let fx = Fixture {
        sshd: Sshd::start().expect("sshd starts"),
        app_dir: host_root.path().join("app"),
        registry,
        app,
        image,
        port: free_port(),
        work: tempfile::tempdir().unwrap(),
        host_root,
        small_disk: None,
    };
    fx.write_compose("");
    fx.write_env("MODE=private\n");
    fx
}

fn login_args(fx: &Fixture, password: &str) -> Vec<String> {
    vec![
        "--registry".into(),
        fx.registry.addr.clone(),
        "--registry-username".into(),
        USER.into(),
        format!("--registry-password={password}"),
    ]
}

fn deploy(fx: &Fixture, tag: &str, password: &str) -> Run {
    let mut a = fx.deploy_args(tag);
    a.extend(login_args(fx, password));
    fx.deploy(&a)
}

/// Every regular file under `root` (links not followed) whose path passes `keep`, as (path, text).
fn files_under(root: &Path, keep: impl Fn(&Path) -> bool) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if meta.is_file() && keep(&p) {
            let bytes = std::fs::read(&p).unwrap_or_default();
            out.push((p.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

/// The run's texts (stdout, stderr, summary, record) and its outputs.
fn runner_texts(r: &Run) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r.texts().into_iter().map(|(k, t)| (k.to_string(), t.to_string())).collect();
    v.extend(r.outputs.iter().map(|(k, t)| (format!("output {k}"), t.clone())));
    v
}

/// Neither `password` nor this registry's login is anywhere on the host side or in what the runs left.
fn assert_no_credential(fx: &Fixture, runs: &[&Run], password: &str) {
    assert!(!fx.app_dir.join(".gangplank/docker-auth").exists(), "the temporary Docker config is gone after the run");
    let mut texts: Vec<(String, String)> = vec![];
    for r in runs {
        texts.extend(runner_texts(r));
    }
    texts.extend(files_under(fx.host_root.path(), |_| true));
    texts.extend(files_under(fx.work.path(), |_| true));
    // The deploy user's own Docker config (and the testbed's, which sshd hands to every session) never
    // gets the login: neither the password nor the registry appears there.
    let home = sh(&format!("getent passwd {} | cut -d: -f6", fx.sshd.user)).trim().to_string();
    let mut configs = vec![Path::new(&home).join(".docker")];
    configs.extend(gangplank_testbed::compose_docker_config());
    for dir in configs {
        for (p, t) in files_under(&dir, |p| p.extension().is_some_and(|e| e == "json")) {
            assert!(!t.contains(&fx.registry.addr), "{p} mentions the registry {}", fx.registry.addr);
            texts.push((p, t));
        }
    }
    let refs: Vec<(&str, &str)> = texts.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
    assert_no_secret(&refs, password);
}

#[test]
fn deploy_and_rollback_pull_through_the_login_and_leave_no_credential() {
    let password = format!("regCanary-{}", unique_name("pw"));
    let fx = private_fixture("gp-priv", &password);

    // Without the login the host cannot pull: the registry really is private.
    let anon = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(anon.status, 1, "{anon:?}");
    assert!(anon.stderr.contains("pulling `v1`"), "{anon:?}");

    let first = deploy(&fx, "v1", &password);
    assert_eq!(first.status, 0, "{first:?}");
    assert!(first.stderr.contains(&format!("logged in to {}", fx.registry.addr)), "{first:?}");
    wait_health(&fx, "v1");
    let second = deploy(&fx, "v2", &password);
    assert_eq!(second.status, 0, "{second:?}");
    wait_health(&fx, "v2");
    // The record keeps the digest of what runs.
    let rec = record_json(&second);
    let web = rec["digests"]["web"].as_str().unwrap_or_default();
    assert!(web.starts_with(&format!("{}@sha256:", fx.image)), "{rec}");

    // The rollback must pull v1 again: it is no longer on the host.
    sh(&format!("docker rmi {}:v1 >/dev/null", fx.image));
    let mut a = fx.ssh_args();
    a.extend([
        "--health-url".into(),
        format!("http://127.0.0.1:{}/health", fx.port),
        "--health-timeout".into(),
        "20s".into(),
    ]);
    a.extend(login_args(&fx, &password));
    let back = fx.rollback(&a);
    assert_eq!(back.status, 0, "{back:?}");
    assert_eq!(back.out("rolled-back-to"), "v1", "{back:?}");
    wait_health(&fx, "v1");

    assert_no_credential(&fx, &[&anon, &first, &second, &back], &password);
}

#[test]
fn a_refused_login_changes_nothing_and_names_the_registry() {
    let password = format!("regCanary-{}", unique_name("pw"));
    let fx = private_fixture("gp-privbad", &password);
    let first = deploy(&fx, "v1", &password);
    assert_eq!(first.status, 0, "{first:?}");
    wait_health(&fx, "v1");
    let before = fx.tree_hash();

    let wrong = format!("wrongCanary-{}", unique_name("pw"));
    let r = deploy(&fx, "v2", &wrong);
    assert_eq!(r.status, 2, "{r:?}");
    let line = r.stderr.lines().find(|l| l.contains("refused the login")).unwrap_or_else(|| panic!("{r:?}"));
    assert!(line.contains(&fx.registry.addr) && line.contains(USER), "{line}");
    assert!(r.stderr.contains("hint:"), "{r:?}");
    assert_eq!(r.out("changed"), "false", "{r:?}");
    assert_eq!(fx.tree_hash(), before, "a refused login leaves the app dir as it was");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "the lock was released");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert_no_credential(&fx, &[&first, &r], &wrong);
    assert_no_credential(&fx, &[&first, &r], &password);
}

/// The digest a push of `src` as `image:tag` gave, as the registry names it.
fn push(src: &str, image: &str, tag: &str) -> String {
    let out = sh(&format!("docker tag {src} {image}:{tag} && docker push {image}:{tag}"));
    let digest = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in the push output: {out}"))
        .to_string();
    sh(&format!("docker rmi {image}:{tag} >/dev/null"));
    digest
}

#[test]
fn expect_digests_refuses_a_moved_tag_before_the_switch() {
    let fx = Fixture::new("gp-digest");
    let samples = images::samples().unwrap();
    let first = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(first.status, 0, "{first:?}");
    wait_health(&fx, "v1");

    // `rel` is pushed (its digest is what the build job would hand on), then moved to another image.
    let pushed = push(&samples.v2, &fx.image, "rel");
    let moved = push(&samples.stubborn, &fx.image, "rel");
    assert_ne!(pushed, moved);
    let before = fx.tree_hash();
    let mut a = fx.deploy_args("rel");
    a.push(format!("--expect-digests={{\"{}\":\"{pushed}\"}}", fx.app));
    let r = fx.deploy(&a);
    assert_eq!(r.status, 1, "{r:?}");
    let line = r.stderr.lines().find(|l| l.contains("service `web` on")).unwrap_or_else(|| panic!("{r:?}"));
    assert!(line.contains(&pushed) && line.contains(&moved) && line.contains("nothing was switched"), "{line}");
    assert_eq!(r.out("changed"), "false", "{r:?}");
    assert_eq!(fx.tree_hash(), before, "nothing on the host changed");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "the lock was released");
    assert_eq!(fx.health().as_deref(), Some("v1"));

    // The digest the registry holds now passes, and state and record keep it.
    let mut a = fx.deploy_args("rel");
    a.push(format!("--expect-digests={{\"{}\":\"{moved}\"}}", fx.app));
    let ok = fx.deploy(&a);
    assert_eq!(ok.status, 0, "{ok:?}");
    wait_health(&fx, "stubborn");
    let want = format!("{}@{moved}", fx.image);
    assert_eq!(record_json(&ok)["digests"]["web"].as_str(), Some(want.as_str()), "{}", ok.record);
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["images"]["web"].as_str(), Some(want.as_str()), "{state}");
}

/// How many manifest requests (GET or HEAD, as the registry's access log writes them) for `repo` the
/// registry has answered so far. A sentinel request is made and waited for in the log first, so every
/// request made before it is counted.
fn manifest_requests(registry: &gangplank_testbed::Registry, repo: &str) -> usize {
    let sentinel = unique_name("gp-sentinel");
    let _ = gangplank_testbed::http_get(&registry.addr, &format!("/v2/{sentinel}/manifests/x"), None);
    let log =
        gangplank_testbed::wait_for("the sentinel in the registry's log", std::time::Duration::from_secs(10), || {
            let log = registry.log();
            log.contains(&format!("/v2/{sentinel}/manifests/x HTTP")).then_some(log)
        })
        .unwrap();
    let (get, head) = (format!("\"GET /v2/{repo}/manifests/"), format!("\"HEAD /v2/{repo}/manifests/"));
    log.lines().filter(|l| l.contains(&get) || l.contains(&head)).count()
}

/// Removes the images a test tagged on the shared engine.
struct Untag(Vec<String>);

impl Drop for Untag {
    fn drop(&mut self) {
        for r in &self.0 {
            let _ = Command::new("docker").args(["rmi", r]).output();
        }
    }
}

/// Pull like compose (issue 20): the app's image, named with `${IMAGE_TAG:?…}`, is pulled before the switch
/// on every deploy; an unchanged third-party image is pulled only while it is missing on the host (compose's
/// default `missing`), again with `pull_policy: always`; an image that exists only on the host (tagged there,
/// as `docker load` leaves it) is never pulled. Measured by the manifest requests the registry answered.
#[test]
fn images_are_pulled_as_their_pull_policy_says_and_never_when_only_on_the_host() {
    let fx = Fixture::new("gp-pullpol");
    let samples = images::samples().unwrap();
    let app_repo = fx.image.split_once('/').map(|(_, r)| r.to_string()).unwrap();
    let db_repo = format!("{app_repo}-db");
    let db = format!("{}/{db_repo}:16", fx.registry.addr);
    sh(&format!("docker tag {} {db} && docker push -q {db} >/dev/null && docker rmi {db} >/dev/null", samples.v1));
    let local = unique_name("gp-hostonly");
    let mut tagged = vec![db.clone()];
    for t in ["v1", "v2"] {
        sh(&format!("docker tag {} {local}:{t}", samples.v1));
        tagged.push(format!("{local}:{t}"));
    }
    let _untag = Untag(tagged);
    let write = |db_policy: &str| {
        let yaml = format!(
            "services:\n  web:\n    image: \"{}:${{IMAGE_TAG:?IMAGE_TAG must be set}}\"\n    ports:\n      - \"127.0.0.1:{}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n  db:\n    image: {db}\n    stop_grace_period: 1s\n{db_policy}  side:\n    image: \"{local}:${{IMAGE_TAG}}\"\n    stop_grace_period: 1s\n",
            fx.image, fx.port
        );
        std::fs::write(fx.work.path().join("compose.yaml"), yaml).unwrap();
    };
    write("");
    let mut counts = vec![];
    let mut deploy = |tag: &str| {
        let (web0, db0) = (manifest_requests(&fx.registry, &app_repo), manifest_requests(&fx.registry, &db_repo));
        let r = fx.deploy(&fx.deploy_args(tag));
        assert_eq!(r.status, 0, "{r:?}");
        let (web, db) =
            (manifest_requests(&fx.registry, &app_repo) - web0, manifest_requests(&fx.registry, &db_repo) - db0);
        eprintln!("deploy of {tag}: manifest requests: app image {web}, third-party image {db}");
        counts.push((web, db));
        r
    };
    // First deploy: the third-party image is missing on the host, so it is pulled, before the switch.
    let first = deploy("v1");
    let line = |r: &Run, what: &str| r.stderr.lines().find(|l| l.contains(what)).unwrap_or_default().to_string();
    let pulled = line(&first, ", pulled: ");
    assert!(pulled.contains(&format!("{}:v1", fx.image)) && pulled.contains(&db), "{first:?}");
    assert!(line(&first, "never pulled: ").contains(&format!("{local}:v1")), "{first:?}");
    // `${IMAGE_TAG:?…}` resolves on the runner: the images are pulled before the switch, not by compose after it.
    assert!(first.stderr.contains("docker pull before the switch"), "{first:?}");
    assert!(!first.stderr.contains("compose pull"), "{first:?}");
    wait_health(&fx, "v1");
    // Second deploy: the app's new tag is pulled; the unchanged third-party image is on the host: 0 requests.
    let second = deploy("v2");
    assert!(line(&second, "not pulled (its pull_policy asks no pull now)").contains(&db), "{second:?}");
    assert!(!line(&second, ", pulled: ").contains(&db), "{second:?}");
    wait_health(&fx, "v2");
    // `pull_policy: always` pulls it every time.
    write("    pull_policy: always\n");
    deploy("v1");
    assert!(counts[0].0 >= 1 && counts[0].1 >= 1, "{counts:?}");
    assert!(counts[1].0 >= 1, "{counts:?}");
    assert_eq!(counts[1].1, 0, "an unchanged third-party image is not asked for again: {counts:?}");
    assert!(counts[2].1 >= 1, "pull_policy: always asks every time: {counts:?}");
}

/// `expect-digests` with an image named by a variable of the server `.env` (the example app's
/// `${WEB_IMAGE:?…}:${IMAGE_TAG:?…}`): the runner cannot resolve the image, so compose pulls it on the host
/// after the switch, and the digest is checked there: a moved tag puts the files back without restarting
/// anything (exit 1), the digest the push gave passes and is recorded (docs/actions.md, "Pull and digests").
#[test]
fn expect_digests_checks_an_image_named_by_the_server_env_after_compose_pulls_it() {
    let fx = Fixture::new("gp-digest-env");
    let samples = images::samples().unwrap();
    std::fs::create_dir_all(&fx.app_dir).unwrap();
    std::fs::write(fx.app_dir.join(".env"), format!("WEB_IMAGE={}\nAPP_TOKEN=x\n", fx.image)).unwrap();
    let yaml = format!(
        "services:\n  web:\n    image: \"${{WEB_IMAGE:?WEB_IMAGE must be set}}:${{IMAGE_TAG:?IMAGE_TAG must be set}}\"\n    ports:\n      - \"127.0.0.1:{}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n",
        fx.port
    );
    std::fs::write(fx.work.path().join("compose.yaml"), yaml).unwrap();
    // No env-file: the server `.env` stays the host's own.
    let args = |tag: &str, digest: Option<&str>| {
        let mut a = fx.deploy_args(tag);
        let i = a.iter().position(|x| x == "--env-file").unwrap();
        a.drain(i..i + 2);
        if let Some(d) = digest {
            a.push(format!("--expect-digests={{\"{}\":\"{d}\"}}", fx.app));
        }
        a
    };
    let first = fx.deploy(&args("v1", None));
    assert_eq!(first.status, 0, "{first:?}");
    assert!(first.stderr.contains("compose pull web"), "{first:?}");
    wait_health(&fx, "v1");

    let pushed = push(&samples.v2, &fx.image, "rel");
    let moved = push(&samples.stubborn, &fx.image, "rel");
    let before = fx.read_host("compose.yaml");
    let r = fx.deploy(&args("rel", Some(&pushed)));
    assert_eq!(r.status, 1, "{r:?}");
    let line = r.stderr.lines().find(|l| l.contains("service `web` on")).unwrap_or_else(|| panic!("{r:?}"));
    assert!(line.contains(&pushed) && line.contains(&moved), "{line}");
    assert!(r.stderr.contains("`v1` kept serving and its files are back"), "{r:?}");
    assert_eq!(fx.read_host("compose.yaml"), before);
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "the lock was released");
    assert_eq!(fx.health().as_deref(), Some("v1"));

    let ok = fx.deploy(&args("rel", Some(&moved)));
    assert_eq!(ok.status, 0, "{ok:?}");
    wait_health(&fx, "stubborn");
    let want = format!("{}@{moved}", fx.image);
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["images"]["web"].as_str(), Some(want.as_str()), "{state}");
}
