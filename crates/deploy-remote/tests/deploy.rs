//! deploy-remote and rollback end to end on the testbed: real sshd, real Docker engine and compose,
//! real registry (issue 3, "Must show").

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::*;

#[test]
fn v1_then_v2_then_broken_rolls_back_then_rollback_without_registry() {
    let mut fx = Fixture::new("story");

    // First deploy of v1.
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert_eq!(
        (
            r.out("deployed-tag"),
            r.out("previous-tag"),
            r.out("rolled-back")
        ),
        ("v1", "", "false")
    );
    assert!(r.out("record-file").ends_with("deploy-record.json"));
    let rec = record_json(&r);
    assert_eq!(rec["status"], "deployed");
    assert_eq!(rec["deployed_tag"], "v1");
    assert_eq!(rec["previous_tag"], "");
    assert_eq!(rec["app"], fx.app.as_str());
    assert!(
        rec["started_at"].as_str().unwrap().ends_with('Z')
            && rec["finished_at"].as_str().unwrap().ends_with('Z')
    );
    let env_mode = std::fs::metadata(fx.app_dir.join(".env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(env_mode, 0o600);
    let state: serde_json::Value =
        serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v1");
    assert!(state["current"]["digests"]["web"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(fx
        .read_host(".gangplank/audit.log")
        .contains("\"action\":\"deploy\",\"tag\":\"v1\""));
    assert!(
        !fx.app_dir.join(".gangplank/lock").exists(),
        "lock released"
    );
    assert!(
        r.summary
            .contains("| host | previous tag | new tag | result | duration |"),
        "{}",
        r.summary
    );
    // One SSH connection for the whole run.
    assert_eq!(fx.sshd.connections(), 1);

    // v2: previous-tag is v1, HTTP answers v2. The .env changes, so its backup is kept.
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=two\n"));
    let r = fx.deploy(&fx.deploy_args("v2"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        (
            r.out("deployed-tag"),
            r.out("previous-tag"),
            r.out("rolled-back")
        ),
        ("v2", "v1", "false")
    );
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
    assert!(
        r.stderr.contains("logs of failing containers"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("rolled back to `v2`"), "{}", r.stderr);
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(
        audit.contains(
            "\"tag\":\"broken\",\"previous_tag\":\"v2\",\"result\":\"health-gate-failed\""
        ),
        "{audit}"
    );
    assert!(audit.contains("\"action\":\"rollback\",\"tag\":\"v2\",\"previous_tag\":\"broken\",\"result\":\"rolled-back\""), "{audit}");
    // The replaced .env is back, and the backups stay.
    assert!(fx.read_host(".env").contains("MODE=two"));
    let backups: Vec<String> = std::fs::read_dir(fx.app_dir.join(".gangplank/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.iter().filter(|b| b.starts_with(".env.")).count() >= 2,
        "{backups:?}"
    );
    assert!(
        !fx.app_dir.join(".gangplank/lock").exists(),
        "lock released after a failure"
    );

    // rollback with the registry stopped: v1 comes back from the image still on the host.
    fx.registry.stop();
    let mut args = fx.ssh_args();
    args.extend([
        "--health-url".to_string(),
        format!("http://127.0.0.1:{}/health", fx.port),
        "--health-timeout".into(),
        "20s".into(),
    ]);
    let t = std::time::Instant::now();
    let r = fx.rollback(&args);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        (r.out("rolled-back-to"), r.out("rolled-back-from")),
        ("v1", "v2")
    );
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "rollback took {:?}",
        t.elapsed()
    );
    let state: serde_json::Value =
        serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v1");
}
