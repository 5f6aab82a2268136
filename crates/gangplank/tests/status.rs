//! `gangplank status` on the testbed: real sshd, Docker and registry. One story: a host mid-deploy (its lock
//! held the way another run holds it), after a rollback, with a drifted `.env`, next to an unreachable host;
//! no value of the `.env` appears anywhere, and nothing on the host changes.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use gangplank_core::host::lock;
use support::*;

fn status_bin() -> PathBuf {
    gangplank_testbed::step_program(env!("CARGO_BIN_EXE_gangplank"), "status")
}

fn status(fx: &Fixture, extra: &[&str]) -> (Run, serde_json::Value) {
    let file = fx.work.path().join("status.json").display().to_string();
    let mut args = fx.ssh_args();
    args.extend(["--status-file".to_string(), file.clone()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = fx.run(&status_bin(), &args, &[("GANGPLANK_TRACE", "1")]);
    assert_eq!(r.out("status-file"), file);
    let json = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    (r, json)
}

const CANARY_OLD: &str = "retiredCanary-5d1e0c77";
const CANARY_STRAY: &str = "strayCanary-a93f1b08";

#[test]
fn status_shows_a_held_lock_a_rollback_and_env_drift_and_never_a_value() {
    let fx = Fixture::new("status");
    for tag in ["v1", "v2"] {
        let r = fx.deploy(&fx.deploy_args(tag));
        assert_eq!(r.status, 0, "{r:?}");
    }
    // The repository's manifest: the default `manifest` input finds it.
    std::fs::create_dir_all(fx.work.path().join(".github")).unwrap();
    std::fs::write(
        fx.work.path().join(".github/secrets.yml"),
        "defaults: { targets: [env-file] }\nvalues:\n  APP_TOKEN: {}\n  NEEDED_KEY: {}\n  OLD_KEY: { retired: true }\n",
    )
    .unwrap();

    // Mid-deploy: another run holds the lock, taken by the lock module itself.
    let owner = lock::Owner {
        id: "other-run".into(),
        action: "deploy".into(),
        tag: "v3".into(),
        run_url: "https://github.example/o/r/actions/runs/42".into(),
        started_at: gangplank_core::host::now_rfc3339(),
        pid: 4242,
        ..Default::default()
    };
    let mut local = gangplank_core::exec::Local::new(false);
    lock::acquire(&mut local, &fx.app_dir(), &owner, Duration::ZERO, &|| false).unwrap();
    let before = fx.tree_hash();
    let connections = fx.sshd.connections();
    let (r, json) = status(&fx, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.sshd.connections(), connections + 1, "one connection");
    assert_eq!(r.stderr.matches("[trace ").count(), 1, "one round trip: {}", r.stderr);
    assert_eq!(fx.tree_hash(), before, "status changes nothing, the lock stays");
    let h = &json["hosts"][0];
    assert_eq!(h["reachable"], true, "{json}");
    assert_eq!(h["current"]["tag"], "v2");
    assert_eq!(h["previous_tag"], "v1");
    assert!(h["current"]["digests"]["digests"]["web"].as_str().unwrap().starts_with("sha256:"), "{h}");
    assert_eq!(h["lock"]["owner"]["pid"], 4242);
    assert!(
        r.stderr.contains("lock:     held by deploy of `v3`, run https://github.example/o/r/actions/runs/42"),
        "{}",
        r.stderr
    );
    assert_eq!(h["health"], "healthy", "{h}");
    assert_eq!(h["containers"][0]["service"], "web");
    assert_eq!(h["containers"][0]["status"], "running");
    assert_eq!(h["recent"].as_array().unwrap().len(), 2);
    assert_eq!(h["recent"][0]["tag"], "v2");
    assert!(r.summary.contains("| host | current | previous |") && r.summary.contains("| v2 | v1 |"), "{}", r.summary);
    lock::release(&mut local, &fx.app_dir(), "other-run").unwrap();

    // After a rollback, with the server .env drifted by hand: a retired key back, a stray key added.
    let mut rb = fx.ssh_args();
    rb.extend(["--health-url".into(), format!("http://127.0.0.1:{}/health", fx.port)]);
    let r = fx.rollback(&rb);
    assert_eq!(r.status, 0, "{r:?}");
    let env = fx.app_dir.join(".env");
    let mut text = std::fs::read_to_string(&env).unwrap();
    text.push_str(&format!("OLD_KEY={CANARY_OLD}\nSTRAY_KEY=\"{CANARY_STRAY}\"\n"));
    std::fs::write(&env, text).unwrap();

    // A second host that does not answer is reported by name; the first one still is.
    let dead = format!("127.0.0.1:{}", gangplank_testbed::free_port());
    let mut args = fx.ssh_args();
    let i = args.iter().position(|a| a == "--host").unwrap();
    args[i + 1] = format!("{},{dead}", fx.sshd.host_spec());
    let file = fx.work.path().join("status.json").display().to_string();
    args.extend(["--connect-timeout".into(), "3s".into(), "--status-file".into(), file]);
    let r = fx.run(&status_bin(), &args, &[]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("could not be read") && r.stderr.contains(&dead), "{}", r.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.out("status-file")).unwrap()).unwrap();
    let h = &json["hosts"][0];
    assert_eq!((h["current"]["tag"].as_str(), h["previous_tag"].as_str()), (Some("v1"), None), "{h}");
    assert_eq!(h["recent"][0]["action"], "rollback");
    assert_eq!(h["lock"], serde_json::Value::Null);
    assert_eq!(h["env"]["missing"], serde_json::json!(["NEEDED_KEY"]));
    assert_eq!(h["env"]["retired"], serde_json::json!(["OLD_KEY"]));
    assert_eq!(h["env"]["not_in_manifest"], serde_json::json!(["STRAY_KEY"]));
    assert_eq!(json["hosts"][1]["reachable"], false);
    assert!(r.summary.contains("retired but present: OLD_KEY") && r.summary.contains("unreachable"), "{}", r.summary);

    let file = std::fs::read_to_string(r.out("status-file")).unwrap();
    let outputs = format!("{:?}", r.outputs);
    let mut texts = r.texts();
    texts.push(("status file", &file));
    texts.push(("outputs", &outputs));
    for canary in [ENV_CANARY, CANARY_OLD, CANARY_STRAY] {
        gangplank_testbed::assert_no_secret(&texts, canary);
    }
}

#[test]
fn bad_input_exits_2_before_any_connection() {
    let sshd = gangplank_testbed::Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (extra, expect) in [
        (vec!["--history", "0"], "history"),
        (vec!["--manifest", "missing.yml"], "missing.yml"),
        (vec!["--remote-env-path", "relative/.env"], "remote-env-path"),
    ] {
        let out = gangplank_testbed::scrubbed_command(status_bin())
            .args(["--host", &sshd.host_spec(), &format!("--ssh-key={}", sshd.client_key)])
            .args(["--known-hosts", &sshd.known_hosts, "--app-name", "st-test", "--app-dir", "/nonexistent/st"])
            .args(&extra)
            .current_dir(dir.path())
            .env("RUNNER_TEMP", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(expect) && err.contains("hint:"), "{extra:?}: {err}");
    }
    assert_eq!(sshd.connections(), 0);
}
