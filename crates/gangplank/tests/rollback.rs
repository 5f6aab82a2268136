//! rollback's input checks on the testbed's real sshd. The rollback itself (registry stopped, previous
//! version serving) is in deploy.rs's story test, which runs both steps.

use gangplank_testbed::{scrubbed_command, step_program, Sshd};

fn run(sshd: &Sshd, app_dir: &str, extra: &[&str]) -> (i32, String) {
    let out = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "rollback"))
        .arg("--host")
        .arg(sshd.host_spec())
        .arg(format!("--ssh-key={}", sshd.client_key))
        .arg("--known-hosts")
        .arg(&sshd.known_hosts)
        .args(["--app-name", "rb-test", "--app-dir", app_dir, "--record-file"])
        .arg(format!("{app_dir}.record.json"))
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_to_tag_is_refused_before_any_connection() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    for tag in ["v1;id", "$(id)", "-x", "a b"] {
        let (code, err) = run(&sshd, app.to_str().unwrap(), &[&format!("--to-tag={tag}")]);
        assert_eq!(code, 2, "{tag}: {err}");
        assert!(err.contains("to-tag") && err.contains("hint:"), "{err}");
    }
    assert_eq!(sshd.connections(), 0);
}

#[test]
fn nothing_to_roll_back_to_is_a_bad_input_with_a_hint() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let (code, err) = run(&sshd, app.to_str().unwrap(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("never deployed") && err.contains("nothing to roll back to"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    // Fault 6 of the engine redesign: a rollback on a fresh host used to create the app dir.
    assert!(!app.exists(), "a never-deployed host is left as it was");
    assert_eq!(sshd.connections(), 1);
}

#[test]
fn every_host_is_checked_before_the_first_one_changes() {
    // Three hosts; the third one's key is not in `known-hosts`. Every host is reached and its key checked before any
    // host changes (as a deploy does), so the run stops on host 3's key with exit 2, and hosts 1 and 2 are never
    // locked or touched: here they were never deployed, which a rollback reaching host 1 first would report.
    let sshds: Vec<Sshd> = (0..3).map(|_| Sshd::start().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    let hosts: Vec<String> = sshds.iter().map(|s| s.host_spec()).collect();
    let known = format!("{}\n{}", sshds[0].known_hosts, sshds[1].known_hosts);
    let out = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "rollback"))
        .arg("--host")
        .arg(hosts.join("\n"))
        .arg(format!("--ssh-key={}", sshds[0].client_key))
        .arg("--known-hosts")
        .arg(known)
        .args(["--app-name", "rb-test", "--app-dir"])
        .arg(&app)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("host key") && err.contains("unknown") && err.contains(&hosts[2]), "{err}");
    assert!(!err.contains("never deployed"), "a host was acted on before host 3 was checked: {err}");
    assert!(!app.exists());
}
