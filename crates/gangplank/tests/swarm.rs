//! deploy-remote and rollback with `target: swarm` on a 3-node Swarm of namespaced hosts
//! (`gangplank_testbed::swarm`): h1 is the manager, h2 and h3 workers, all pulling from the testbed
//! registry. The app publishes 8080 in `mode: host` (this machine has no IPVS for the routing mesh), so
//! each node serves the task it runs; the tests find the node from the task list and ask it over HTTP.

mod support;

use std::process::Stdio;
use std::time::Duration;

use gangplank_testbed::swarm::Swarm;
use gangplank_testbed::{http_get, run_checked, scrubbed_command, unique_name, wait_for};
use support::{collect, deploy_remote, rollback_bin, Run};

const PORT: u16 = 8080;

struct Stack {
    swarm: Swarm,
    app: String,
    /// `REGISTRY/app`, with tags v1, v2 and broken (its HEALTHCHECK never passes).
    image: String,
    work: tempfile::TempDir,
}

impl Stack {
    fn new(prefix: &str) -> Stack {
        let swarm = Swarm::new(3).expect("a 3-node Swarm");
        eprintln!("Swarm formed in {:?} (hosts up in {:?})", swarm.formation, swarm.hosts.startup);
        let app = unique_name(prefix);
        let image = swarm.hosts.push_samples(&app).expect("sample images pushed");
        let st = Stack { swarm, app, image, work: tempfile::tempdir().unwrap() };
        st.write_compose("");
        st
    }

    /// One replica publishing 8080 on the node that runs it; `extra` goes under the service.
    fn write_compose(&self, extra: &str) {
        let yaml = format!(
            "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    ports:\n      - target: 8080\n        published: {PORT}\n        mode: host\n    stop_grace_period: 1s\n    deploy:\n      replicas: 1\n{extra}",
            self.image
        );
        std::fs::write(self.work.path().join("compose.yaml"), yaml).unwrap();
    }

    fn app_dir(&self) -> String {
        self.swarm.hosts.root().join("app").display().to_string()
    }

    /// The SSH and app arguments with `hosts` (indexes) as the `host` input.
    fn ssh_args(&self, hosts: &[usize]) -> Vec<String> {
        let hs = &self.swarm.hosts;
        vec![
            "--host".into(),
            hosts.iter().map(|&i| hs.hosts[i].host_spec()).collect::<Vec<_>>().join("\n"),
            format!("--ssh-key={}", hs.client_key()),
            "--known-hosts".into(),
            hs.known_hosts(),
            "--app-name".into(),
            self.app.clone(),
            "--app-dir".into(),
            self.app_dir(),
            "--connect-timeout".into(),
            "10s".into(),
            "--target".into(),
            "swarm".into(),
            "--lock-timeout".into(),
            "120s".into(),
        ]
    }

    fn deploy_args(&self, tag: &str) -> Vec<String> {
        let mut a = self.ssh_args(&[0]);
        a.extend([format!("--image-tag={tag}"), "--health-timeout=90s".into(), "--min-free-disk=1MiB".into()]);
        a
    }

    fn command(&self, bin: std::path::PathBuf, args: &[String]) -> (std::process::Command, tempfile::TempDir) {
        let gh = tempfile::tempdir().unwrap();
        let mut c = scrubbed_command(bin);
        c.args(args).current_dir(self.work.path());
        c.env("GITHUB_OUTPUT", gh.path().join("output"));
        c.env("GITHUB_STEP_SUMMARY", gh.path().join("summary"));
        c.env("RUNNER_TEMP", gh.path());
        (c, gh)
    }

    fn run(&self, bin: std::path::PathBuf, args: &[String]) -> Run {
        let (mut c, gh) = self.command(bin, args);
        let out = c.output().expect("the step runs");
        collect(out, gh.path(), args)
    }

    fn service(&self) -> String {
        format!("{}_web", self.app)
    }

    /// The one running task of the web service is on `tag`, and its node answers `answer` on /health.
    fn assert_serving(&self, tag: &str, answer: &str) {
        let want = format!("{}:{tag}", self.image);
        let (node, _, _) = wait_for(&format!("one running task on {want}"), Duration::from_secs(30), || {
            let tasks = self.swarm.tasks(&self.service());
            (tasks.len() == 1 && tasks[0].1 == "running" && tasks[0].2 == want).then(|| tasks[0].clone())
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", self.swarm.tasks(&self.service())));
        let addr = format!("{}:{PORT}", self.swarm.hosts.hosts[node].addr);
        let got = http_get(&addr, "/health", None).map(|(s, b)| (s, b.trim().to_string()));
        assert_eq!(got.ok(), Some((200, answer.to_string())), "node h{} serves {tag}", node + 1);
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.swarm.hosts.hosts[0].path(&format!("app/{rel}"))).unwrap_or_default()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.read(".gangplank/state.json")).expect("state.json on the manager")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.swarm.manager().args(["stack", "rm", &self.app]).output();
    }
}

#[test]
fn v1_then_v2_converge_broken_goes_back_and_rollback_needs_no_registry() {
    let mut st = Stack::new("gp-swarm");
    let r = st.run(deploy_remote(), &st.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    st.assert_serving("v1", "v1");

    let t = std::time::Instant::now();
    let r = st.run(deploy_remote(), &st.deploy_args("v2"));
    eprintln!("v1 -> v2 converged in {:?}", t.elapsed());
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!((r.out("deployed-tag"), r.out("previous-tag"), r.out("rolled-back")), ("v2", "v1", "false"));
    st.assert_serving("v2", "v2");
    // The stack file got the update defaults, written by gangplank through serde, not by hand.
    let file: serde_json::Value = serde_json::from_str(&st.read(".gangplank/stack/v2.json")).unwrap();
    let update = &file["services"]["web"]["deploy"]["update_config"];
    assert_eq!((update["order"].as_str(), update["failure_action"].as_str()), (Some("start-first"), Some("rollback")));
    assert_eq!(file["services"]["web"]["image"], format!("{}:${{IMAGE_TAG}}", st.image));
    let spec = run_checked(st.swarm.manager().args([
        "service",
        "inspect",
        &st.service(),
        "--format",
        "{{.Spec.UpdateConfig.Order}} {{.Spec.UpdateConfig.FailureAction}}",
    ]))
    .unwrap();
    assert_eq!(spec.trim(), "start-first rollback");
    assert_eq!(st.state()["current"]["tag"], "v2");
    assert!(r.summary.contains("| v1 | v2 | deployed |"), "{}", r.summary);

    // broken never turns healthy: Swarm rolls the update back by itself, gangplank waits for that.
    let r = st.run(deploy_remote(), &st.deploy_args("broken"));
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true", "{r:?}");
    // Swarm's own rollback (failure_action: rollback, the default gangplank set), waited for by gangplank.
    assert!(r.stderr.contains("Swarm rolled back to `v2` by itself"), "{}", r.stderr);
    st.assert_serving("v2", "v2");
    assert_eq!(st.state()["current"]["tag"], "v2");
    let audit = st.read(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v2\",\"result\":\"health-gate-failed\""), "{audit}");
    assert!(!st.swarm.hosts.hosts[0].path("app/.gangplank/lock").exists(), "lock released");

    // v1 converges but its health-url never answers: Swarm sees nothing wrong, so gangplank deploys v2's
    // own stack file again with v2 and waits for it.
    let mut args = st.ssh_args(&[0]);
    args.extend(
        ["--image-tag=v1", "--health-timeout=25s", "--min-free-disk=1MiB", "--health-url=http://127.0.0.1:9/health"]
            .map(String::from),
    );
    let r = st.run(deploy_remote(), &args);
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true", "{r:?}");
    // gangplank's gate fails on the health-url and it deploys v2's own file; on a loaded machine Swarm's update
    // monitor may roll the service back first. Either way v2 serves again.
    assert!(
        r.stderr.contains("rolled back to `v2`, which converged")
            || r.stderr.contains("Swarm rolled back to `v2` by itself"),
        "{}",
        r.stderr
    );
    st.assert_serving("v2", "v2");
    assert_eq!(st.state()["current"]["tag"], "v2");

    // Rollback to v1 with the registry gone: every node has v1 (pulled now, as after earlier deploys).
    for h in &st.swarm.hosts.hosts {
        run_checked(h.docker().args(["pull", "-q", &format!("{}:v1", st.image)])).unwrap();
    }
    st.swarm.hosts.registry.as_mut().unwrap().stop();
    let mut args = st.ssh_args(&[0]);
    args.extend(["--health-timeout=90s".to_string()]);
    let (mut c, gh) = st.command(rollback_bin(), &args);
    // The record of the v2 deploy names v1 as the tag to go back to.
    std::fs::create_dir_all(gh.path().join("gangplank")).unwrap();
    std::fs::write(
        gh.path().join("gangplank/deploy-record.json"),
        serde_json::json!({"app": st.app, "hosts": [], "deployed_tag": "v2", "previous_tag": "v1", "status": "deployed", "action": "deploy"})
            .to_string(),
    )
    .unwrap();
    let r = collect(c.output().unwrap(), gh.path(), &args);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!((r.out("rolled-back-to"), r.out("rolled-back-from")), ("v1", "v2"));
    st.assert_serving("v1", "v1");
    assert_eq!(st.state()["current"]["tag"], "v1");
}

#[test]
fn preflight_refuses_a_worker_and_a_bad_stack_and_a_second_deploy_waits_for_the_lock() {
    let st = Stack::new("gp-swarml");
    // A worker first: exit 2 before anything changes.
    let mut args = st.ssh_args(&[1, 0]);
    args.push("--image-tag=v1".into());
    let r = st.run(deploy_remote(), &args);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("is not a Swarm manager") && r.stderr.contains("hint:"), "{}", r.stderr);
    // Inputs that do not apply, and what Swarm cannot run.
    let mut args = st.deploy_args("v1");
    args.push("--strategy=rolling".into());
    let r = st.run(deploy_remote(), &args);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("`strategy: rolling` does not apply"), "{}", r.stderr);
    st.write_compose("    container_name: web\n");
    let r = st.run(deploy_remote(), &st.deploy_args("v1"));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("sets `container_name`"), "{}", r.stderr);
    st.write_compose("");
    // preflight-only: the plan and its commands, nothing run.
    let mut args = st.deploy_args("v1");
    args.push("--preflight-only=true".into());
    let r = st.run(deploy_remote(), &args);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stderr.contains(
            "IMAGE_TAG=v1 docker stack deploy --compose-file .gangplank/stack/v1.json --with-registry-auth --prune"
        ),
        "{}",
        r.stderr
    );
    assert!(!st.swarm.hosts.hosts[0].path("app").exists(), "nothing was written on the manager");

    let r = st.run(deploy_remote(), &st.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    // Two deploys of the same stack: the second waits for the first's lock, then goes.
    let (mut a, gha) = st.command(deploy_remote(), &st.deploy_args("v2"));
    let first = a.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let lock = st.swarm.hosts.hosts[0].path("app/.gangplank/lock");
    wait_for("the first deploy's lock", Duration::from_secs(60), || lock.exists().then_some(())).unwrap();
    let second = st.run(deploy_remote(), &st.deploy_args("v1"));
    let first = collect(first.wait_with_output().unwrap(), gha.path(), &st.deploy_args("v2"));
    assert_eq!(first.status, 0, "{first:?}");
    assert_eq!(second.status, 0, "{second:?}");
    assert!(second.stderr.contains("waiting for the lock"), "{}", second.stderr);
    assert_eq!(second.out("previous-tag"), "v2", "the second ran after the first");
    st.assert_serving("v1", "v1");
    let audit = st.read(".gangplank/audit.log");
    let v2 = audit.find("\"tag\":\"v2\",\"previous_tag\":\"v1\",\"result\":\"deployed\"").expect("v2 deployed");
    let v1 = audit.rfind("\"tag\":\"v1\",\"previous_tag\":\"v2\",\"result\":\"deployed\"").expect("then v1");
    assert!(v2 < v1, "{audit}");
}
