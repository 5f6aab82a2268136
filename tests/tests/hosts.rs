//! The namespaced hosts: each has its own address, sshd, engine and files, they all reach the registry
//! on the bridge, a cut link isolates one, and nothing is left once they are dropped.

use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::{Duration, Instant};

use gangplank_testbed::hosts::{leftovers, Host, Hosts};
use gangplank_testbed::{http_get, run_checked, scrubbed_command, wait_for};

fn ssh(h: &Host, command: &str) -> Output {
    scrubbed_command("ssh").args(h.sshd().ssh_args()).arg(command).output().expect("run ssh")
}

fn ssh_ok(h: &Host, command: &str) -> String {
    let out = ssh(h, command);
    assert!(
        out.status.success(),
        "`{command}` on {}: {}\nsshd log:\n{}",
        h.name,
        String::from_utf8_lossy(&out.stderr),
        h.sshd().log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a TCP connection to `addr` opens within a second (a cut host never answers the SYN).
fn reachable(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn three_hosts_each_with_its_own_address_engine_login_and_files() {
    let t = Instant::now();
    let hosts = Hosts::start(3).expect("3 hosts start");
    eprintln!("3 hosts up in {:?} (engines and sshds {:?})", t.elapsed(), hosts.startup);
    let repo = hosts.push_samples("hosts-selftest").expect("samples pushed");

    let mut roots = vec![];
    for h in &hosts.hosts {
        // The login lands on this host's engine, through DOCKER_HOST from the sshd config.
        let root = ssh_ok(h, "docker info --format '{{.DockerRootDir}} {{.Driver}}'");
        assert!(root.ends_with(" vfs"), "{root}");
        roots.push(root);
        ssh_ok(h, "docker-compose version --short");
        // The same path holds this host's own files.
        std::fs::write(h.path("who"), &h.name).unwrap();
        let who = ssh_ok(h, &format!("cat {}/who", hosts.root().display()));
        assert_eq!(who, h.name);
        // Every host pulls from the registry on the bridge.
        ssh_ok(h, &format!("docker pull -q {repo}:v1"));
        // And reaches the other hosts.
        for other in &hosts.hosts {
            ssh_ok(h, &format!("exec 3<>/dev/tcp/{}/22", other.addr));
        }
    }
    roots.sort();
    roots.dedup();
    assert_eq!(roots.len(), 3, "one data root per engine: {roots:?}");
    assert!(!hosts.root().join("who").exists(), "the runner side sees none of the hosts' files");

    // A container on h2 answers on h2's address only.
    ssh_ok(&hosts.hosts[1], &format!("docker run -d --name web -p 8080:8080 {repo}:v1"));
    let h2 = format!("{}:8080", hosts.hosts[1].addr);
    wait_for("h2's web on its address", Duration::from_secs(20), || {
        http_get(&h2, "/health", None).ok().filter(|(s, b)| *s == 200 && b.trim() == "v1")
    })
    .unwrap();
    assert!(!reachable(&format!("{}:8080", hosts.hosts[0].addr)));
    assert!(ssh(&hosts.hosts[0], "docker ps -q --filter name=web").stdout.is_empty(), "h1's engine runs nothing");

    // A cut link isolates h2 from the runner and the other hosts; healed, it answers again.
    hosts.cut(1).unwrap();
    assert!(!reachable(&h2), "h2 answers while cut");
    let from_h3 = ssh(&hosts.hosts[2], &format!("timeout 2 bash -c 'exec 3<>/dev/tcp/{}/8080'", hosts.hosts[1].addr));
    assert!(!from_h3.status.success(), "h3 reaches h2 while cut");
    hosts.heal(1).unwrap();
    wait_for("h2 after heal", Duration::from_secs(10), || reachable(&h2).then_some(())).unwrap();
}

#[test]
fn nothing_is_left_behind_after_drop() {
    let hosts = Hosts::start(2).expect("2 hosts start");
    let repo = hosts.push_samples("hosts-leak").expect("samples pushed");
    for h in &hosts.hosts {
        run_checked(h.docker().args(["run", "-d", "--name", "web", "-p", "8080:8080", &format!("{repo}:v1")])).unwrap();
    }
    // An open session too, as a deploy leaves one when it is cut off.
    let mut session = scrubbed_command("ssh")
        .args(hosts.hosts[0].sshd().ssh_args())
        .arg("sleep 600")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the session", Duration::from_secs(10), || (hosts.hosts[0].sshd().connections() > 0).then_some(()))
        .unwrap();
    let footprint = hosts.footprint();
    assert!(footprint.pids.len() >= 6, "engines, containerds, shims, sshds: {footprint:?}");
    let t = Instant::now();
    drop(hosts);
    eprintln!("2 hosts torn down in {:?}", t.elapsed());
    let _ = session.kill();
    let _ = session.wait();
    assert_eq!(footprint.remaining(), Vec::<String>::new(), "{footprint:?}");
    // Nor anything from an earlier test process.
    assert_eq!(leftovers(), Vec::<String>::new());
}
