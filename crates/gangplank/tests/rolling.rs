//! `strategy: rolling` end to end (issue 13, "Must show"): real sshd, Docker, compose and registry, and a
//! real Caddy in front of the sample app, reached only through the proxy's published port under a steady
//! load from `hey` and a sequential probe.

mod support;

use std::time::Duration;

use gangplank_testbed::load::{Load, Report};
use gangplank_testbed::{http_get, images, wait_for};
use support::*;

/// The app behind Caddy: `web` publishes nothing (it runs twice during a roll); the proxy publishes the
/// fixture's port and finds `web` by its service name.
fn write_proxied_compose(fx: &Fixture, grace: &str) {
    let caddy = images::caddy().expect("the Caddy image builds");
    let yaml = format!(
        "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    env_file: .env\n    stop_grace_period: {grace}\n  proxy:\n    image: {caddy}\n    ports:\n      - \"127.0.0.1:{}:80\"\n    depends_on: [web]\n",
        fx.image, fx.port
    );
    std::fs::write(fx.work.path().join("compose.yaml"), yaml).unwrap();
}

fn rolling_args(fx: &Fixture, tag: &str) -> Vec<String> {
    let mut a = fx.deploy_args(tag);
    a.extend(["--strategy", "rolling", "--services", "web"].map(String::from));
    a
}

/// (id, StartedAt, image) of each container of the app's `web` service.
fn web_containers(fx: &Fixture) -> Vec<(String, String, String)> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ids=$(docker ps -aq --filter label=com.docker.compose.project={} --filter label=com.docker.compose.service=web); \
             [ -z \"$ids\" ] || docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.Config.Image}}}} {{{{.State.Status}}}}' $ids",
            fx.app
        ))
        .output()
        .unwrap();
    let mut v: Vec<(String, String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4).then(|| (w[0].to_string(), format!("{} {}", w[1], w[3]), w[2].to_string()))
        })
        .collect();
    v.sort();
    v
}

/// Twenty answers in a row of `want` through the proxy: the switch is behind us, as the load sees it.
fn settled(fx: &Fixture, want: &str) {
    let mut in_a_row = 0;
    wait_for(&format!("20 answers of {want} in a row"), Duration::from_secs(20), || {
        let ok = http_get(&format!("127.0.0.1:{}", fx.port), "/health", None)
            .is_ok_and(|(s, b)| s == 200 && b.trim() == want);
        in_a_row = if ok { in_a_row + 1 } else { 0 };
        (in_a_row >= 20).then_some(())
    })
    .unwrap();
}

fn load(fx: &Fixture) -> Load {
    Load::start(&format!("127.0.0.1:{}", fx.port), "/health", 4, 25, Duration::from_secs(120)).expect("hey starts")
}

fn assert_no_failures(what: &str, r: &Report) {
    assert!(r.hey_ok > 0 && r.probe.len() > 20, "{what}: the load did not run: {r:?}");
    assert_eq!(
        r.failed(),
        0,
        "{what}: failed requests: {:?}; probe failures at {:?}",
        r.hey_errors,
        r.probe.iter().filter(|s| s.body.is_none()).map(|s| s.at).collect::<Vec<_>>()
    );
}

#[test]
fn rolling_v1_to_v2_under_load_fails_no_request_and_serves_v2_after_the_switch() {
    let fx = Fixture::new("roll");
    write_proxied_compose(&fx, "2s");
    let r = fx.deploy(&rolling_args(&fx, "v1"));
    assert_eq!(r.status, 0, "{r:?}");
    wait_health(&fx, "v1");
    let before = web_containers(&fx);
    assert_eq!(before.len(), 1, "{before:?}");

    let l = load(&fx);
    settled(&fx, "v1");
    let r = fx.deploy(&rolling_args(&fx, "v2"));
    let switched = l.elapsed();
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("not yet reachable by the service's name"), "{}", r.stderr);
    settled(&fx, "v2");
    let report = l.finish().unwrap();
    assert_no_failures("v1 -> v2", &report);
    assert!(report.probe.iter().any(|s| s.at < switched && s.body.as_deref() == Some("v1")), "v1 served before");
    let after: Vec<&str> = report.probe.iter().filter(|s| s.at >= switched).filter_map(|s| s.body.as_deref()).collect();
    assert!(!after.is_empty() && after.iter().all(|b| *b == "v2"), "after the switch: {after:?}");

    // One web container, the new one; the old one is gone.
    let now = web_containers(&fx);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, before[0].0);
    assert!(now[0].2.ends_with(":v2"), "{now:?}");
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v2");
}

#[test]
fn rolling_a_broken_release_fails_no_request_and_never_stops_the_old_containers() {
    let fx = Fixture::new("roll-broken");
    write_proxied_compose(&fx, "2s");
    let r = fx.deploy(&rolling_args(&fx, "v1"));
    assert_eq!(r.status, 0, "{r:?}");
    wait_health(&fx, "v1");
    let before = web_containers(&fx);

    let l = load(&fx);
    settled(&fx, "v1");
    let r = fx.deploy(&rolling_args(&fx, "broken"));
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains("removed before taking any traffic") && r.stderr.contains("`v1` kept serving untouched"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("logs of failing containers"), "{}", r.stderr);
    assert_eq!(r.out("rolled-back"), "true");
    settled(&fx, "v1");
    let report = l.finish().unwrap();
    assert_no_failures("broken", &report);
    let bodies: Vec<&str> = report.probe.iter().filter_map(|s| s.body.as_deref()).collect();
    assert!(bodies.iter().all(|b| *b == "v1"), "a response did not come from v1: {bodies:?}");

    // The same container, never restarted (same StartedAt), and nothing of the broken release left.
    assert_eq!(web_containers(&fx), before);
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v1");
    assert!(state["pending"].is_null(), "{state}");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v1\",\"result\":\"health-gate-failed\""), "{audit}");
}

/// Busybox httpd as PID 1 ignores SIGTERM: each old container serves until its grace period ends and it is
/// killed. The new one serves beside it all along, so no request fails.
#[test]
fn rolling_away_from_an_app_that_ignores_sigterm_fails_no_request() {
    let fx = Fixture::new("roll-stubborn");
    let samples = images::samples().unwrap();
    let pushed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker tag {} {img}:stubborn && docker push -q {img}:stubborn >/dev/null && docker rmi {img}:stubborn >/dev/null",
            samples.stubborn,
            img = fx.image
        ))
        .status()
        .unwrap();
    assert!(pushed.success());
    write_proxied_compose(&fx, "3s");
    let r = fx.deploy(&rolling_args(&fx, "stubborn"));
    assert_eq!(r.status, 0, "{r:?}");
    wait_health(&fx, "stubborn");

    let l = load(&fx);
    settled(&fx, "stubborn");
    let r = fx.deploy(&rolling_args(&fx, "v2"));
    assert_eq!(r.status, 0, "{r:?}");
    settled(&fx, "v2");
    let report = l.finish().unwrap();
    assert_no_failures("stubborn -> v2", &report);
    assert_eq!(web_containers(&fx).len(), 1);
}

#[test]
fn rolling_refuses_a_fixed_host_port_or_container_name_at_preflight() {
    let fx = Fixture::new("roll-preflight");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = fx.tree_hash();
    // The fixture's compose file publishes web on a fixed host port.
    let r = fx.deploy(&rolling_args(&fx, "v2"));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(
        r.stderr.contains("publishes the fixed host port") && r.stderr.contains("put a proxy in front"),
        "{}",
        r.stderr
    );
    fx.write_compose("    container_name: fixed-name\n");
    let r = fx.deploy(&rolling_args(&fx, "v2"));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("`container_name: fixed-name`") && r.stderr.contains("hint:"), "{}", r.stderr);
    let mut no_services = fx.deploy_args("v2");
    no_services.extend(["--strategy".to_string(), "rolling".to_string()]);
    let r = fx.deploy(&no_services);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("needs `services`"), "{}", r.stderr);
    assert_eq!(fx.tree_hash(), before, "a refused rolling deploy changed the app dir");
    assert_eq!(fx.health().as_deref(), Some("v1"));
}
