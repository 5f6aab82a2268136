//! deploy-remote and rollback end to end on the testbed: real sshd, real Docker engine and compose,
//! real registry (issue 3, "Must show").

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::*;

#[test]
fn v1_then_v2_then_broken_rolls_back_then_rollback_without_registry() {
    let mut fx = Fixture::new("story");

    // First deploy of v1. An empty value stays set and empty (compose v1 and v2 alike read `KEY=""` so).
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nEMPTY_ONE=\"\"\n"));
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    let env = container_env(&fx);
    assert!(env.iter().any(|e| e == "EMPTY_ONE="), "an empty value reaches the container as empty: {env:?}");
    assert_eq!((r.out("deployed-tag"), r.out("previous-tag"), r.out("rolled-back")), ("v1", "", "false"));
    assert!(r.out("record-file").ends_with("deploy-record.json"));
    let rec = record_json(&r);
    assert_eq!(rec["status"], "deployed");
    assert_eq!(rec["deployed_tag"], "v1");
    assert_eq!(rec["previous_tag"], "");
    assert_eq!(rec["app"], fx.app.as_str());
    assert!(rec["started_at"].as_str().unwrap().ends_with('Z') && rec["finished_at"].as_str().unwrap().ends_with('Z'));
    let env_mode = std::fs::metadata(fx.app_dir.join(".env")).unwrap().permissions().mode() & 0o777;
    assert_eq!(env_mode, 0o600);
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v1");
    assert!(state["current"]["digests"]["web"].as_str().unwrap().starts_with("sha256:"));
    assert!(fx.read_host(".gangplank/audit.log").contains("\"action\":\"deploy\",\"tag\":\"v1\""));
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");
    assert!(r.summary.contains("| host | previous tag | new tag | result | duration |"), "{}", r.summary);
    // One SSH connection for the whole run.
    assert_eq!(fx.sshd.connections(), 1);

    // v2: previous-tag is v1, HTTP answers v2. The .env changes, so its backup is kept.
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=two\n"));
    let r = fx.deploy(&fx.deploy_args("v2"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!((r.out("deployed-tag"), r.out("previous-tag"), r.out("rolled-back")), ("v2", "v1", "false"));
    assert_eq!(fx.health().as_deref(), Some("v2"));
    assert_eq!(fx.sshd.connections(), 2);

    // broken: the gate fails, the previous version comes back by itself.
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=three\n"));
    let r = fx.deploy(&fx.deploy_args("broken"));
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true");
    assert_eq!(r.out("previous-tag"), "v2");
    assert_eq!(record_json(&r)["status"], "rolled-back");
    assert_eq!(fx.health().as_deref(), Some("v2"), "v2 serves again");
    assert!(r.stderr.contains("logs of failing containers"), "{}", r.stderr);
    assert!(r.stderr.contains("rolled back to `v2`"), "{}", r.stderr);
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v2\",\"result\":\"health-gate-failed\""), "{audit}");
    assert!(
        audit.contains("\"action\":\"rollback\",\"tag\":\"v2\",\"previous_tag\":\"broken\",\"result\":\"rolled-back\""),
        "{audit}"
    );
    // The replaced .env is back, and the backups stay.
    assert!(fx.read_host(".env").contains("MODE=two"));
    let backups: Vec<String> = std::fs::read_dir(fx.app_dir.join(".gangplank/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(backups.iter().filter(|b| b.starts_with(".env.")).count() >= 2, "{backups:?}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released after a failure");

    // rollback with the registry stopped: v1 comes back from the image still on the host.
    fx.registry.stop();
    let mut args = fx.ssh_args();
    args.extend([
        "--health-url".to_string(),
        format!("http://127.0.0.1:{}/health", fx.port),
        "--health-timeout".into(),
        "20s".into(),
    ]);
    let bin = rollback_bin();
    let r = fx.run(&bin, &args, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!((r.out("rolled-back-to"), r.out("rolled-back-from")), ("v1", "v2"));
    assert_eq!(fx.health().as_deref(), Some("v1"));
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v1");
}

/// The environment of the app's running container, as Docker holds it.
fn container_env(fx: &Fixture) -> Vec<String> {
    let ids = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=com.docker.compose.project={}", fx.app)])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&ids.stdout).lines().next().expect("a running container").to_string();
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .Config.Env}}", &id])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).expect("docker inspect prints the environment as JSON")
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Seed lesson: a `sudo` that prompted for a password hung the pipeline. And a deploy user outside the
/// docker group cannot reach the daemon. Both are preflight errors with a hint, and nothing changes.
#[test]
fn sudo_that_would_prompt_and_an_unreachable_docker_daemon_are_preflight_errors() {
    let fx = Fixture::new("preflight-user");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = fx.tree_hash();
    let user = gangplank_testbed::ensure_plain_user().unwrap();
    let as_plain = |extra: &[&str]| {
        let mut args = fx.deploy_args("v2");
        let h = args.iter().position(|a| a == "--host").unwrap();
        args[h + 1] = format!("{user}@{}:{}", fx.sshd.host, fx.sshd.port);
        with(args, extra)
    };

    let r = fx.deploy(&as_plain(&["--sudo", "true"]));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("sudo would ask for a password"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:") && r.stderr.contains("NOPASSWD"), "{}", r.stderr);
    assert_eq!(fx.tree_hash(), before, "sudo prompt: the app dir changed");

    let r = fx.deploy(&as_plain(&[]));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("Docker daemon on") && r.stderr.contains("is not reachable"), "{}", r.stderr);
    assert!(r.stderr.contains("docker` group"), "{}", r.stderr);
    assert_eq!(fx.tree_hash(), before, "docker unreachable: the app dir changed");
}

#[test]
fn every_preflight_failure_exits_2_and_leaves_the_app_dir_unchanged() {
    let fx = Fixture::new("preflight");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = fx.tree_hash();
    let connections = fx.sshd.connections();

    let check = |what: &str, args: Vec<String>, expect: &[&str]| {
        let r = fx.deploy(&args);
        assert_eq!(r.status, 2, "{what}: {r:?}");
        for e in expect {
            assert!(r.stderr.contains(e), "{what}: expected {e:?} in\n{}", r.stderr);
        }
        assert!(r.stderr.contains("hint:"), "{what}: no hint in\n{}", r.stderr);
        assert_eq!(fx.tree_hash(), before, "{what}: the app dir changed");
    };

    check(
        "local file missing",
        with(fx.deploy_args("v2"), &["--files", "nope.txt"]),
        &["file `nope.txt` cannot be read"],
    );
    check(
        "disk below min-free-disk",
        with(fx.deploy_args("v2"), &["--min-free-disk", "1000TiB"]),
        &["below min-free-disk 1000.0TiB"],
    );
    let yaml = format!(
        "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    ports: [\"127.0.0.1:{}:8080\"]\n    env_file: [.env, extra.env]\n    volumes: [\"./conf/site.conf:/etc/site.conf:ro\"]\n    secrets: [tok]\nsecrets:\n  tok:\n    file: ./secrets/token.txt\n",
        fx.image, fx.port
    );
    std::fs::write(fx.work.path().join("compose.yaml"), yaml).unwrap();
    check(
        "compose references missing",
        fx.deploy_args("v2"),
        &[
            "`conf/site.conf`, the bind mount source of service `web`",
            "`extra.env`, the env_file of service `web`",
            "`secrets/token.txt`, the secret file of service `web`",
        ],
    );
    // Every failure at once.
    check(
        "all at once",
        with(fx.deploy_args("v2"), &["--files", "nope.txt", "--min-free-disk", "1000TiB"]),
        &["5 problems found", "nope.txt", "min-free-disk", "conf/site.conf", "extra.env", "token.txt"],
    );
    fx.write_compose("");
    // The encrypted key without its passphrase is refused before any connection.
    let mut args = fx.deploy_args("v2");
    let k = args.iter().position(|a| a.starts_with("--ssh-key=")).unwrap();
    args[k] = format!("--ssh-key={}", fx.sshd.client_key_encrypted);
    check("encrypted key without passphrase", args, &["passphrase"]);
    assert_eq!(fx.sshd.connections(), connections + 4, "the key check happens before connecting");

    // An app dir that cannot be created: its parent is a file.
    let blocker = fx.host_root.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let mut args = fx.deploy_args("v2");
    let d = args.iter().position(|a| a == "--app-dir").unwrap();
    args[d + 1] = blocker.join("app").to_string_lossy().into_owned();
    check("app dir not creatable", args, &["is not usable", "cannot be created"]);
    assert_eq!(std::fs::read(&blocker).unwrap(), b"x");

    // preflight-only passes and changes nothing either.
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--preflight-only", "true"]));
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("plan: deploy"), "{}", r.stderr);
    assert_eq!(fx.tree_hash(), before);
    assert_eq!(fx.health().as_deref(), Some("v1"));
}

#[test]
fn two_deploys_at_once_one_waits_then_exits_3_and_a_stale_lock_needs_force_unlock() {
    let fx = Fixture::new("lock");
    // The first deploy holds the lock in its pre-deploy hook until the test lets it go (a file appears; the host is
    // this machine), so the second one meets the lock however slow the machine is: no race on who starts first.
    let go = fx.work.path().join("let-the-first-deploy-go");
    let hold = format!("while [ ! -e '{}' ]; do sleep 0.1; done", go.display());
    let first = with(fx.deploy_args("v1"), &["--pre-deploy", &hold]);
    let (mut a, _ga) = fx.command(&deploy_remote(), &first, &[]);
    let ca = a.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    gangplank_testbed::wait_for("the first deploy's lock", Duration::from_secs(120), || {
        fx.app_dir.join(".gangplank/lock/owner.json").exists().then_some(())
    })
    .unwrap();
    let loser = fx.deploy(&with(fx.deploy_args("v1"), &["--lock-timeout", "1s"]));
    std::fs::write(&go, "").unwrap();
    let winner = ca.wait_with_output().unwrap();
    assert_eq!(winner.status.code(), Some(0), "{}", String::from_utf8_lossy(&winner.stderr));
    let loser_err = &loser.stderr;
    assert_eq!(loser.status, 3, "{loser_err}");
    assert!(loser_err.contains("another deploy holds the lock") && loser_err.contains("pid "), "{loser_err}");
    assert!(loser_err.contains("waiting for the lock"), "{loser_err}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists());

    // A deploy killed while it holds the lock leaves it behind.
    let slow = with(fx.deploy_args("broken"), &["--health-timeout", "60s", "--auto-rollback", "false"]);
    let (mut c, _gc) = fx.command(&deploy_remote(), &slow, &[]);
    let mut child = c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id();
    gangplank_testbed::wait_for("the lock", Duration::from_secs(20), || {
        fx.app_dir.join(".gangplank/lock/owner.json").exists().then_some(())
    })
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--lock-timeout", "1s"]));
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.stderr.contains(&format!("pid {pid}")), "owner named: {}", r.stderr);
    assert!(r.stderr.contains("force-unlock"), "{}", r.stderr);
    assert!(fx.app_dir.join(".gangplank/lock").exists(), "never broken silently");
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--lock-timeout", "1s", "--force-unlock", "true"]));
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("broke the lock") && r.stderr.contains(&format!("pid {pid}")), "{}", r.stderr);
    assert_eq!(fx.health().as_deref(), Some("v2"));
}

#[test]
fn shell_metacharacters_reach_the_host_literally_and_bad_tags_never_connect() {
    let dir_name = "it's a \"dir\" $HOME; touch pwned `id`";
    let fx = Fixture::with_app_dir("meta", dir_name);
    let odd = "we'ird \"name\" $x; touch pwned.txt";
    std::fs::write(fx.work.path().join(odd), "literal $x `id`").unwrap();
    let r = fx.deploy(&with(fx.deploy_args("v1"), &["--files", odd]));
    assert_eq!(r.status, 0, "{r:?}");
    assert!(fx.app_dir.is_dir(), "app dir made with its literal name");
    assert_eq!(fx.read_host(odd), "literal $x `id`");
    let stray: Vec<_> =
        walk(fx.host_root.path()).into_iter().filter(|p| p.ends_with("pwned") || p.ends_with("pwned.txt")).collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert!(!fx.work.path().join("pwned").exists());

    let before = fx.sshd.connections();
    for tag in ["v1;touch /tmp/pwned", "$(id)", "-v1", ".v1", "v 1", "a'b", ""] {
        let r = fx.deploy(&fx.deploy_args(tag));
        assert_eq!(r.status, 2, "{tag:?}: {r:?}");
        assert!(r.stderr.contains("image-tag"), "{tag:?}: {}", r.stderr);
    }
    assert_eq!(fx.sshd.connections(), before, "no connection for a bad tag");
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn canary_secrets_never_leak_in_success_or_failure() {
    let fx = Fixture::new("canary");
    let passphrase = fx.sshd.passphrase.clone();
    let key = fx.sshd.client_key_encrypted.clone();
    let mut args = fx.deploy_args("v1");
    args.retain(|a| !a.starts_with("--ssh-key="));
    let env = [
        ("INPUT_SSH_KEY", key.as_str()),
        ("INPUT_SSH_KEY_PASSPHRASE", passphrase.as_str()),
        ("GITHUB_ACTIONS", "true"),
    ];
    let ok = fx.run(&deploy_remote(), &args, &env);
    assert_eq!(ok.status, 0, "{ok:?}");
    let mut failed_args = fx.deploy_args("broken");
    failed_args.retain(|a| !a.starts_with("--ssh-key="));
    let bad = fx.run(&deploy_remote(), &failed_args, &env);
    assert_eq!(bad.status, 1, "{bad:?}");
    assert!(bad.stdout.contains("::add-mask::"), "masks registered under Actions");
    for run in [&ok, &bad] {
        let outputs = format!("{:?}", run.outputs);
        let mut texts = run.texts();
        texts.push(("outputs", &outputs));
        for secret in [passphrase.as_str(), ENV_CANARY] {
            gangplank_testbed::assert_no_secret(&texts, secret);
        }
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            gangplank_testbed::assert_no_secret(&texts, line);
        }
    }
}
