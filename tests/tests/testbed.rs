//! The testbed's own tests: each part starts, answers, and is torn down.

use std::time::Duration;

use gangplank_testbed::images::{self, APP_PORT};
use gangplank_testbed::{
    free_port, http_get, scrubbed_command, unique_name, wait_for, Compose, Container, Registry, Sshd,
};

fn ssh(sshd: &Sshd, key: &std::path::Path, command: &str) -> std::process::Output {
    let mut args = sshd.ssh_args();
    let i = args.iter().position(|a| a == "-i").expect("-i in ssh_args");
    args[i + 1] = key.display().to_string();
    scrubbed_command("ssh").args(args).arg(command).output().expect("run ssh")
}

#[test]
fn sshd_accepts_the_client_key_and_counts_logins() {
    let sshd = Sshd::start().expect("start sshd");
    assert_eq!(sshd.connections(), 0);
    let out = ssh(&sshd, &sshd.key_file(), "echo hello; echo oops >&2; exit 3");
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(sshd.connections(), 1, "sshd log:\n{}", sshd.log());
    let out = ssh(&sshd, &sshd.key_file(), "true");
    assert!(out.status.success());
    assert_eq!(sshd.connections(), 2);
    assert_eq!(sshd.host_spec(), format!("root@127.0.0.1:{}", sshd.port));
}

#[test]
fn sshd_keys_and_host_key_forms_are_consistent() {
    let sshd = Sshd::start().expect("start sshd");
    assert!(sshd.client_key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert!(sshd.client_key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(sshd.fingerprint.starts_with("SHA256:"));
    assert!(sshd.known_hosts.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port)));
    assert!(sshd.known_hosts_hashed.starts_with("|1|"));
    let key = |line: &str| line.split_whitespace().nth(2).unwrap_or_default().to_string();
    assert_eq!(key(&sshd.known_hosts), key(&sshd.known_hosts_hashed));
    assert_ne!(key(&sshd.known_hosts), key(&sshd.wrong_known_hosts));

    // The PEM key is authorized too.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pem");
    std::fs::write(&pem, &sshd.client_key_pem).unwrap();
    std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = ssh(&sshd, &pem, "true");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The encrypted key decrypts with the passphrase (ssh-keygen -y), and needs it.
    let enc = dir.path().join("enc");
    std::fs::write(&enc, &sshd.client_key_encrypted).unwrap();
    std::fs::set_permissions(&enc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let with =
        scrubbed_command("ssh-keygen").arg("-y").arg("-P").arg(&sshd.passphrase).arg("-f").arg(&enc).output().unwrap();
    assert!(with.status.success());
    let without = scrubbed_command("ssh-keygen").arg("-y").arg("-P").arg("").arg("-f").arg(&enc).output().unwrap();
    assert!(!without.status.success());

    // A hashed known_hosts file and the fingerprint name the same key the server offers.
    let hashed = dir.path().join("known_hosts");
    std::fs::write(&hashed, format!("{}\n", sshd.known_hosts_hashed)).unwrap();
    let mut args = sshd.ssh_args();
    let i = args.iter().position(|a| a.starts_with("UserKnownHostsFile=")).unwrap();
    args[i] = format!("UserKnownHostsFile={}", hashed.display());
    let out = scrubbed_command("ssh").args(&args).arg("true").output().unwrap();
    assert!(out.status.success(), "hashed known_hosts: {}", String::from_utf8_lossy(&out.stderr));

    // The "changed host key" line is refused by OpenSSH.
    std::fs::write(&hashed, format!("{}\n", sshd.wrong_known_hosts)).unwrap();
    let out = scrubbed_command("ssh").args(&args).arg("true").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"));
}

#[test]
fn sshd_stops_on_drop() {
    let sshd = Sshd::start().expect("start sshd");
    let addr = format!("127.0.0.1:{}", sshd.port);
    drop(sshd);
    wait_for("sshd to stop listening", Duration::from_secs(5), || {
        std::net::TcpStream::connect(&addr).is_err().then_some(())
    })
    .unwrap();
}

#[test]
fn registry_with_auth_answers_401_without_credentials_and_200_with() {
    let mut registry = Registry::start_with_auth("deployer", "s3cret pass").expect("start registry");
    let (status, _) = http_get(&registry.addr, "/v2/", None).unwrap();
    assert_eq!(status, 401);
    let (status, _) = http_get(&registry.addr, "/v2/", Some(("deployer", "wrong"))).unwrap();
    assert_eq!(status, 401);
    let (status, _) = http_get(&registry.addr, "/v2/", Some(("deployer", "s3cret pass"))).unwrap();
    assert_eq!(status, 200, "{}", registry.log());

    registry.stop();
    assert!(http_get(&registry.addr, "/v2/", None).is_err(), "stopped registry still answers");
    registry.restart().expect("restart registry");
    assert_eq!(http_get(&registry.addr, "/v2/", None).unwrap().0, 401);
}

#[test]
fn registry_without_auth_keeps_pushed_images_across_restart() {
    let samples = images::samples().expect("build samples");
    let mut registry = Registry::start().expect("start registry");
    assert_eq!(http_get(&registry.addr, "/v2/", None).unwrap().0, 200);
    let image = registry.image(&format!("{}:v1", unique_name("push")));
    let docker = |args: &[&str]| {
        let out = scrubbed_command("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), registry.log());
    };
    docker(&["tag", &samples.v1, &image]);
    docker(&["push", &image]);
    docker(&["image", "rm", &image]);
    registry.stop();
    registry.restart().unwrap();
    let repo = image.split_once('/').unwrap().1.split_once(':').unwrap().0;
    let (status, body) = http_get(&registry.addr, &format!("/v2/{repo}/tags/list"), None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"v1\""), "{body}");
}

fn serve(image: &str) -> (Container, String) {
    let port = free_port();
    let name = unique_name("sample");
    let c =
        Container::run(&["--name", &name, "-p", &format!("127.0.0.1:{port}:{APP_PORT}"), image]).expect("docker run");
    (c, format!("127.0.0.1:{port}"))
}

#[test]
fn samples_v1_and_v2_are_healthy_and_serve_their_version() {
    let samples = images::samples().expect("build samples");
    assert_eq!(samples.v1, format!("{}:v1", samples.repo));
    let id = |image: &str| {
        let out = scrubbed_command("docker").args(["image", "inspect", "--format", "{{.Id}}", image]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_ne!(id(&samples.v1), id(&samples.v2));
    for (image, version) in [(&samples.v1, "v1"), (&samples.v2, "v2")] {
        let (container, addr) = serve(image);
        let body = wait_for(&format!("{image} to serve /health"), Duration::from_secs(10), || {
            http_get(&addr, "/health", None).ok().filter(|(s, _)| *s == 200).map(|(_, b)| b)
        })
        .unwrap();
        assert_eq!(body, version);
        let (status, index) = http_get(&addr, "/", None).unwrap();
        assert_eq!(status, 200);
        assert!(index.contains(version), "{index}");
        container.wait_health("healthy", Duration::from_secs(15)).unwrap();
    }
}

#[test]
fn sample_broken_is_unhealthy() {
    let samples = images::samples().expect("build samples");
    let (container, addr) = serve(&samples.broken);
    container.wait_health("unhealthy", Duration::from_secs(20)).unwrap();
    assert_eq!(http_get(&addr, "/health", None).unwrap().0, 404);
}

#[test]
fn compose_project_is_removed_on_drop() {
    let samples = images::samples().expect("build samples");
    let yaml = format!("version: \"2.4\"\nservices:\n  web:\n    image: {}\n", samples.v1);
    let compose = Compose::new("testbed", &yaml).unwrap();
    compose.up().unwrap();
    let project = compose.project.clone();
    let running = |project: &str| {
        let out = scrubbed_command("docker")
            .args(["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={project}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!running(&project).is_empty());
    drop(compose);
    assert_eq!(running(&project), "");
}
