//! The SSH executor against the real sshd of the testbed (issue 2, "Must show").

use std::time::Duration;

use gangplank_core::exec::ssh::SshExecutor;
use gangplank_core::exec::{atomic_write, Executor};
use gangplank_core::input::{HostKeyPolicy, HostSpec, SshConfig};
use gangplank_core::{Cmd, Secret};
use gangplank_testbed::Sshd;
use proptest::prelude::*;

fn host(sshd: &Sshd) -> HostSpec {
    HostSpec { user: sshd.user.clone(), host: sshd.host.clone(), port: sshd.port }
}

fn config(sshd: &Sshd, policy: HostKeyPolicy) -> SshConfig {
    SshConfig {
        hosts: vec![host(sshd)],
        key: Secret::new(sshd.client_key.clone()),
        passphrase: None,
        host_key: policy,
        connect_timeout: Duration::from_secs(10),
        sudo: false,
    }
}

fn connect(sshd: &Sshd) -> SshExecutor {
    SshExecutor::connect(&host(sshd), &config(sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts.clone())))
        .expect("connecting to the testbed sshd")
}

#[test]
fn commands_return_status_stdout_and_stderr() {
    let sshd = Sshd::start().unwrap();
    let mut ssh = connect(&sshd);
    let out = ssh.run(&Cmd::script("printf 'to out'; printf 'to err' >&2; exit 7")).unwrap();
    assert_eq!(out.status, 7);
    assert_eq!(out.stdout_str(), "to out");
    assert_eq!(out.stderr_str(), "to err");
    let out = ssh.exec(&Cmd::new("cat"), Some(b"through stdin")).unwrap();
    assert_eq!((out.status, out.stdout.as_slice()), (0, &b"through stdin"[..]));
    // Large output on both streams at once must not deadlock.
    let out = ssh.run(&Cmd::script("head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2")).unwrap();
    assert_eq!((out.stdout.len(), out.stderr.len()), (3_000_000, 3_000_000));
    let err = ssh.check(&Cmd::new("false"), "the check").unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.message.contains("the check failed"), "{}", err.message);
}

#[test]
fn host_keys_are_verified() {
    let sshd = Sshd::start().unwrap();
    let h = host(&sshd);

    // Known, plain and hashed entries.
    SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts.clone()))).unwrap();
    SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts_hashed.clone()))).unwrap();

    // Unknown: known_hosts only has an entry for another host.
    let other = sshd.known_hosts.replacen("127.0.0.1", "127.0.0.2", 1);
    let err =
        SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::KnownHosts(other))).err().expect("unknown key accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.message.contains("unknown"), "{}", err.message);
    assert!(err.message.contains(&sshd.fingerprint), "message must show the offered fingerprint: {}", err.message);

    // Changed: same host, another key.
    let err = SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::KnownHosts(sshd.wrong_known_hosts.clone())))
        .err()
        .expect("changed key accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.message.contains("CHANGED"), "{}", err.message);
    assert!(err.message.contains(&sshd.fingerprint), "{}", err.message);
    assert!(err.hint.is_some());

    // Fingerprints.
    SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::Fingerprint(sshd.fingerprint.clone()))).unwrap();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let err =
        SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::Fingerprint(wrong))).err().expect("wrong fp accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.message.contains(&sshd.fingerprint), "{}", err.message);

    // The only bypass, by name.
    SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::Insecure)).unwrap();
}

/// known_hosts as OpenSSH reads it, against the real sshd (on a port other than 22).
#[test]
fn known_hosts_markers_patterns_and_ports_are_honoured() {
    let sshd = Sshd::start().unwrap();
    let h = host(&sshd);
    let (name, key) = sshd.known_hosts.split_once(' ').unwrap();
    let connect = |text: String| SshExecutor::connect(&h, &config(&sshd, HostKeyPolicy::KnownHosts(text)));

    // Accepted: wildcards (which libssh2 refused), a pattern list, a negation that names another host.
    for ok in [format!("* {key}"), format!("[127.0.0.?]:{} {key}", sshd.port), format!("other,!127.0.0.2,{name} {key}")]
    {
        connect(ok.clone()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // A revoked key is refused even when a plain entry lists it.
    let err = connect(format!("@revoked {name} {key}\n{name} {key}")).err().expect("revoked key accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.message.contains("REVOKED") && err.message.contains(&sshd.fingerprint), "{}", err.message);
    // A negated pattern that matches wins over the rest of its line.
    let err = connect(format!("*,!{name} {key}")).err().expect("negated host accepted");
    assert!(err.message.contains("unknown"), "{}", err.message);
    // An entry without a port is for port 22 only.
    let err = connect(format!("127.0.0.1 {key}")).err().expect("port-22 entry accepted for another port");
    assert!(err.message.contains("unknown") && err.hint.unwrap().contains("port 22 only"), "{}", err.message);
    // A CA key is not a host key.
    assert!(connect(format!("@cert-authority * {key}")).is_err());
}

#[test]
fn encrypted_key_needs_its_passphrase() {
    let sshd = Sshd::start().unwrap();
    let key = Secret::new(sshd.client_key_encrypted.clone());
    let err = gangplank_core::keys::check_private_key(key.expose(), false).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.message.contains("encrypted") && err.message.contains("passphrase"), "{}", err.message);
    assert!(gangplank_core::keys::check_private_key(key.expose(), true).is_ok());

    let mut cfg = config(&sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts.clone()));
    cfg.key = key.clone();
    cfg.passphrase = Some(Secret::new(sshd.passphrase.clone()));
    let mut ssh = SshExecutor::connect(&host(&sshd), &cfg).expect("login with the passphrase");
    assert_eq!(ssh.run(&Cmd::new("echo").arg("ok")).unwrap().stdout_str(), "ok\n");

    cfg.passphrase = Some(Secret::new("not-the-passphrase"));
    let err = SshExecutor::connect(&host(&sshd), &cfg).err().expect("wrong passphrase accepted");
    assert_eq!(err.exit_code(), 2);
    assert!(err.hint.unwrap().contains("passphrase"));
}

#[test]
fn pem_keys_log_in_too() {
    let sshd = Sshd::start().unwrap();
    let mut cfg = config(&sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts.clone()));
    cfg.key = Secret::new(sshd.client_key_pem.clone());
    let mut ssh = SshExecutor::connect(&host(&sshd), &cfg).expect("login with a PEM key");
    assert!(ssh.run(&Cmd::new("true")).unwrap().success());
}

#[test]
fn upload_is_atomic_and_applies_the_mode() {
    let sshd = Sshd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("it's \"a\" $file; ok");
    let d = dest.to_str().unwrap();
    let mut ssh = connect(&sshd);
    ssh.upload(d, b"old content\n", 0o600).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"old content\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);

    // The connection "drops" after part of the content: the script sees a short file and keeps the old one.
    let big = vec![b'n'; 1 << 20];
    let out = ssh.exec(&atomic_write(d, &big, 0o644), Some(&big[..1000])).unwrap();
    assert_eq!(out.status, 75, "{}", out.stderr_str());
    assert_eq!(std::fs::read(&dest).unwrap(), b"old content\n");

    // A real interruption: the remote writer is killed in the middle of a large upload.
    let d2 = d.to_string();
    let huge = vec![b'z'; 256 << 20];
    let known = sshd.known_hosts.clone();
    let cfg = config(&sshd, HostKeyPolicy::KnownHosts(known));
    let h = host(&sshd);
    let uploader = std::thread::spawn(move || {
        let mut ssh = SshExecutor::connect(&h, &cfg).unwrap();
        ssh.upload(&d2, &huge, 0o644)
    });
    // Wait until the temporary file exists, then kill the remote script mid-stream.
    let tmp_prefix = format!(".{}.gangplank-tmp.", dest.file_name().unwrap().to_str().unwrap());
    gangplank_testbed::wait_for("the upload's temporary file", Duration::from_secs(300), || {
        let mut names = std::fs::read_dir(dir.path()).unwrap();
        names.any(|e| e.unwrap().file_name().to_string_lossy().starts_with(&tmp_prefix)).then_some(())
    })
    .unwrap();
    // Only our writer: its command line holds this test's random temporary directory name.
    let ours = dir.path().file_name().unwrap().to_str().unwrap().trim_start_matches('.').to_string();
    let kill = std::process::Command::new("pkill").args(["-TERM", "-f", &ours]).status().unwrap();
    assert!(kill.success(), "no remote writer to interrupt");
    let result = uploader.join().unwrap();
    assert!(result.is_err(), "an interrupted upload must fail");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old content\n", "old file must survive the interruption");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&tmp_prefix))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_step_uses_one_connection() {
    let sshd = Sshd::start().unwrap();
    let before = sshd.connections();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ssh = connect(&sshd);
        for i in 0..10 {
            assert!(ssh.run(&Cmd::new("echo").arg(i.to_string())).unwrap().success());
        }
        ssh.upload(dir.path().join("f").to_str().unwrap(), b"x", 0o644).unwrap();
        ssh.run(&Cmd::new("cat").arg(dir.path().join("f").to_str().unwrap())).unwrap();
    }
    // sshd writes its log line asynchronously: wait for it.
    gangplank_testbed::wait_for("sshd's log of the connection", Duration::from_secs(60), || {
        (sshd.connections() > before).then_some(())
    })
    .unwrap();
    assert_eq!(sshd.connections() - before, 1, "log:\n{}", sshd.log());
}

fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec!['\'', '"', '$', '`', ';', '|', '&', '\n', ' ', '\\', '*', '?', '~', '#', '(', ')', '<', '>', '!', '{', '}', '\t', '=', '%']),
        1 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
    ]
}

#[test]
fn quoting_survives_a_real_shell_for_generated_arguments() {
    let sshd = Sshd::start().unwrap();
    // A user whose bash starts fast: a thousand commands as root would each pay its pyenv start-up.
    let mut h = host(&sshd);
    h.user = gangplank_testbed::ensure_fast_user().unwrap();
    let cfg = config(&sshd, HostKeyPolicy::KnownHosts(sshd.known_hosts.clone()));
    let ssh = std::cell::RefCell::new(SshExecutor::connect(&h, &cfg).unwrap());
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 1000, ..ProptestConfig::default() });
    let strategy = prop::collection::vec(nasty_char(), 0..24).prop_map(|cs| cs.into_iter().collect::<String>());
    runner
        .run(&strategy, |arg| {
            let out = ssh.borrow_mut().run(&Cmd::new("printf").arg("%s").arg(arg.clone())).unwrap();
            prop_assert_eq!(out.status, 0, "stderr: {}", out.stderr_str());
            prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
            Ok(())
        })
        .unwrap();
}
