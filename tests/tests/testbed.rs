//! The testbed's own tests: each part starts, answers, and is torn down.

use gangplank_testbed::{scrubbed_command, Sshd};

#[test]
fn sshd_accepts_the_client_key_and_counts_logins() {
    let sshd = Sshd::start().expect("start sshd");
    assert_eq!(sshd.connections(), 0);
    let out = scrubbed_command("ssh")
        .args(sshd.ssh_args())
        .arg("echo hello")
        .output()
        .expect("run ssh");
    assert!(
        out.status.success(),
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(sshd.connections(), 1, "sshd log:\n{}", sshd.log());
    let status = scrubbed_command("ssh")
        .args(sshd.ssh_args())
        .arg("true")
        .status()
        .expect("run ssh");
    assert!(status.success());
    assert_eq!(sshd.connections(), 2);
}
