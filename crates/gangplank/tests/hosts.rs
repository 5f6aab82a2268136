//! deploy-remote to several real hosts (issue 12): three namespaced hosts, each with its own sshd,
//! Docker engine and files (`gangplank_testbed::hosts`), pulling from the testbed registry on their bridge.
//! Health is checked from the runner side on each host's address; the deploy's own gate probes
//! `127.0.0.1:8080` on each host through its SSH connection.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use gangplank_testbed::hosts::Hosts;
use gangplank_testbed::{http_get, run_checked, scrubbed_command, unique_name, wait_for};
use support::{collect, deploy_remote, Run, ENV_CANARY};

const PORT: u16 = 8080;

struct Fleet {
    hosts: Hosts,
    app: String,
    /// `REGISTRY/app`, with tags v1, v2, broken, and v3 (the v1 image under a new tag).
    image: String,
    work: tempfile::TempDir,
}

impl Fleet {
    fn new(prefix: &str) -> Fleet {
        let hosts = Hosts::start(3).expect("3 namespaced hosts start");
        let app = unique_name(prefix);
        let image = hosts.push_samples(&app).expect("sample images pushed");
        // A release the hosts have not seen, to tell it apart from v1 in state and audit.
        let h = &hosts.hosts[0];
        for c in [
            vec!["pull", "-q", &format!("{image}:v1")],
            vec!["tag", &format!("{image}:v1"), &format!("{image}:v3")],
            vec!["push", "-q", &format!("{image}:v3")],
            vec!["rmi", &format!("{image}:v1"), &format!("{image}:v3")],
        ] {
            run_checked(h.docker().args(&c)).expect("v3 pushed");
        }
        let fleet = Fleet { hosts, app, image, work: tempfile::tempdir().unwrap() };
        fleet.write_compose("");
        std::fs::write(fleet.work.path().join("prod.env"), format!("APP_TOKEN={ENV_CANARY}\n")).unwrap();
        fleet
    }

    fn app_dir(&self) -> String {
        self.hosts.root().join("app").display().to_string()
    }

    /// compose.yaml publishing the app on every address of the host; `extra` goes under the service.
    fn write_compose(&self, extra: &str) {
        let yaml = format!(
            "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    ports:\n      - \"{PORT}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n{extra}",
            self.image
        );
        std::fs::write(self.work.path().join("compose.yaml"), yaml).unwrap();
    }

    /// A compose file whose health check also needs `ready` (in the hosts' root) to say `ok`: a
    /// per-host condition the release depends on, as a mounted config or a reachable dependency is.
    fn write_compose_needing_ready(&self, start_period: &str) {
        self.write_compose(&format!(
            "    volumes:\n      - \"{root}/ready:/ready:ro\"\n    healthcheck:\n      test: [\"CMD\", \"/bin/sh\", \"-c\", \"grep -qx ok /ready && wget -q -O- http://127.0.0.1:8080/health\"]\n      interval: 500ms\n      timeout: 2s\n      retries: 3\n      start_period: {start_period}\n",
            root = self.hosts.root().display()
        ));
    }

    fn set_ready(&self, host: usize, text: &str) {
        std::fs::write(self.hosts.hosts[host].path("ready"), format!("{text}\n")).unwrap();
    }

    fn ssh_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.hosts.host_input(),
            format!("--ssh-key={}", self.hosts.client_key()),
            "--known-hosts".into(),
            self.hosts.known_hosts(),
            "--app-name".into(),
            self.app.clone(),
            "--app-dir".into(),
            self.app_dir(),
            "--connect-timeout".into(),
            "10s".into(),
        ]
    }

    fn deploy_args(&self, tag: &str) -> Vec<String> {
        support::deploy_args(self.ssh_args(), tag, PORT)
    }

    fn command(&self, args: &[String]) -> (std::process::Command, tempfile::TempDir) {
        self.command_of(&deploy_remote(), args)
    }

    fn command_of(&self, program: &std::path::Path, args: &[String]) -> (std::process::Command, tempfile::TempDir) {
        let gh = tempfile::tempdir().unwrap();
        let mut c = scrubbed_command(program);
        c.args(args).current_dir(self.work.path());
        c.env("GITHUB_OUTPUT", gh.path().join("output"));
        c.env("GITHUB_STEP_SUMMARY", gh.path().join("summary"));
        c.env("RUNNER_TEMP", gh.path());
        (c, gh)
    }

    fn deploy(&self, args: &[String]) -> Run {
        let (mut c, gh) = self.command(args);
        let out = c.output().expect("deploy-remote runs");
        collect(out, gh.path(), args)
    }

    /// What host `i` answers on /health, over HTTP from the runner side to its address.
    fn health(&self, i: usize) -> Option<String> {
        http_get(&format!("{}:{PORT}", self.hosts.hosts[i].addr), "/health", None)
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.trim().to_string())
    }

    fn wait_health(&self, i: usize, want: &str) {
        let h = &self.hosts.hosts[i];
        wait_for(&format!("{want} on {}'s /health", h.name), Duration::from_secs(20), || {
            (self.health(i).as_deref() == Some(want)).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; it answers {:?}", self.health(i)));
    }

    fn read(&self, i: usize, rel: &str) -> String {
        std::fs::read_to_string(self.hosts.hosts[i].path(&format!("app/{rel}"))).unwrap_or_default()
    }

    fn state(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.read(i, ".gangplank/state.json"))
            .unwrap_or_else(|e| panic!("state.json of h{}: {e}", i + 1))
    }

    /// The image tag host `i`'s containers of the app run (`docker ps` on its engine).
    fn running_tags(&self, i: usize) -> Vec<String> {
        let out = self.hosts.hosts[i]
            .docker()
            .args(["ps", "--filter", &format!("label=com.docker.compose.project={}", self.app)])
            .args(["--format", "{{.Image}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.rsplit_once(':')).map(|(_, t)| t.into()).collect()
    }

    /// Host `i` serves `tag` (the sample app answers `answer` on /health), with state.json naming it, no
    /// journal, no lock and no staging left.
    fn assert_on(&self, i: usize, tag: &str, answer: &str) {
        self.wait_health(i, answer);
        assert_eq!(self.running_tags(i), vec![tag.to_string()], "h{}", i + 1);
        let st = self.state(i);
        assert_eq!(st["current"]["tag"], tag, "h{}: {st}", i + 1);
        assert!(st.get("pending").is_none(), "h{}: journal cleared: {st}", i + 1);
        let dir = self.hosts.hosts[i].path("app/.gangplank");
        assert!(!dir.join("lock").exists(), "h{}: lock released", i + 1);
        assert!(!dir.join("staging").exists(), "h{}: staging removed", i + 1);
    }

    /// The summary table's row for host `i` (`| host | previous | new | result | duration |`).
    fn summary_row<'a>(&self, r: &'a Run, i: usize) -> &'a str {
        let spec = self.hosts.hosts[i].host_spec();
        r.summary
            .lines()
            .find(|l| l.starts_with(&format!("| {spec} |")) || l.starts_with(&format!("| {spec}:22 |")))
            .unwrap_or_else(|| panic!("no summary row for {spec}: {}", r.summary))
    }
}

#[test]
fn v1_then_v2_is_healthy_on_every_host() {
    let fx = Fleet::new("gp-fleet");
    let t = Instant::now();
    let r = fx.deploy(&fx.deploy_args("v1"));
    let first = t.elapsed();
    assert_eq!(r.status, 0, "{r:?}");
    for i in 0..3 {
        fx.assert_on(i, "v1", "v1");
    }
    // v2 goes to all three at once: each host's lines carry its name.
    let mut args = fx.deploy_args("v2");
    args.extend(["--max-parallel", "3"].map(String::from));
    let t = Instant::now();
    let r = fx.deploy(&args);
    eprintln!("3 hosts: v1 one at a time in {first:?}, v2 at once in {:?}", t.elapsed());
    assert_eq!(r.status, 0, "{r:?}");
    for i in 0..3 {
        let label = fx.hosts.hosts[i].host_spec();
        assert!(r.stderr.contains(&format!("[{label}] deployed `v2` on {label}")), "{}", r.stderr);
    }
    assert_eq!(r.out("deployed-tag"), "v2");
    assert_eq!(r.out("previous-tag"), "v1");
    assert_eq!(r.out("rolled-back"), "false");
    for i in 0..3 {
        fx.assert_on(i, "v2", "v2");
        let row = fx.summary_row(&r, i);
        assert!(row.contains("| v1 | v2 | deployed |"), "{row}");
        // One SSH connection per host per step: two runs, two logins.
        assert_eq!(fx.hosts.hosts[i].sshd().connections(), 2, "h{}", i + 1);
        assert!(fx.read(i, ".env").contains(ENV_CANARY));
    }
    let record = support::record_json(&r);
    assert_eq!(record["status"], "deployed");
    assert_eq!(record["hosts"].as_array().map(Vec::len), Some(3), "{record}");
    gangplank_testbed::assert_no_secret(&r.texts(), ENV_CANARY);

    // And back to v1 on all three at once.
    let mut args = fx.ssh_args();
    args.extend(
        ["--max-parallel", "3", "--health-url", "http://127.0.0.1:8080/health", "--health-timeout", "20s"]
            .map(String::from),
    );
    let (mut c, gh) = fx.command_of(&support::rollback_bin(), &args);
    let r = collect(c.output().expect("rollback runs"), gh.path(), &args);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("3 hosts at a time"), "{}", r.stderr);
    assert_eq!(r.out("rolled-back-to"), "v1");
    for i in 0..3 {
        let label = fx.hosts.hosts[i].host_spec();
        assert!(r.stderr.contains(&format!("[{label}] rolling back {label} from `v2` to `v1`")), "{}", r.stderr);
        fx.assert_on(i, "v1", "v1");
        assert!(fx.summary_row(&r, i).contains("| v2 | v1 | rolled back |"), "{}", fx.summary_row(&r, i));
    }
}

#[test]
fn a_release_failing_only_on_host_3_puts_hosts_1_and_2_back_and_exits_1() {
    let fx = Fleet::new("gp-fleet3");
    for (i, ready) in [(0, "ok"), (1, "ok"), (2, "missing-config")] {
        fx.set_ready(i, ready);
    }
    for tag in ["v1", "v2"] {
        let r = fx.deploy(&fx.deploy_args(tag));
        assert_eq!(r.status, 0, "{r:?}");
    }
    let before: Vec<String> = (0..3).map(|i| fx.read(i, "compose.yaml")).collect();

    fx.write_compose_needing_ready("1s");
    let r = fx.deploy(&fx.deploy_args("v3"));

    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true", "{r:?}");
    assert_eq!(r.out("changed"), "true");
    for (i, compose) in before.iter().enumerate() {
        fx.assert_on(i, "v2", "v2");
        assert_eq!(&fx.read(i, "compose.yaml"), compose, "h{}: the previous compose file", i + 1);
    }
    // Hosts 1 and 2 had v3 serving before host 3 failed.
    for i in 0..2 {
        let audit = fx.read(i, ".gangplank/audit.log");
        assert!(audit.contains("\"tag\":\"v3\",\"previous_tag\":\"v2\",\"result\":\"deployed\""), "{audit}");
        let row = fx.summary_row(&r, i);
        assert!(row.contains("| v2 | v3 | rolled back (another host failed) |"), "{row}");
    }
    let audit = fx.read(2, ".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"v3\",\"previous_tag\":\"v2\",\"result\":\"health-gate-failed\""), "{audit}");
    let row = fx.summary_row(&r, 2);
    assert!(row.contains("| v2 | v3 | rolled back |"), "{row}");
    let record = support::record_json(&r);
    assert_eq!(record["status"], "rolled-back", "{record}");
    assert_eq!(record["hosts"].as_array().map(Vec::len), Some(3), "{record}");
    let results: Vec<(&str, &str)> = record["results"]
        .as_array()
        .unwrap_or_else(|| panic!("the record lists each host's result: {record}"))
        .iter()
        .map(|r| (r["host"].as_str().unwrap_or(""), r["result"].as_str().unwrap_or("")))
        .collect();
    let hosts: Vec<String> = fx.hosts.hosts.iter().map(|h| h.host_spec()).collect();
    assert_eq!(
        results,
        vec![
            (hosts[0].as_str(), "rolled back (another host failed)"),
            (hosts[1].as_str(), "rolled back (another host failed)"),
            (hosts[2].as_str(), "rolled back"),
        ],
        "{record}"
    );
    gangplank_testbed::assert_no_secret(&r.texts(), ENV_CANARY);
}

#[test]
fn host_2_cut_off_mid_deploy_ends_the_run_in_its_deadlines_and_the_next_run_repairs_it() {
    let fx = Fleet::new("gp-fleetcut");
    for i in 0..3 {
        fx.set_ready(i, "ok");
    }
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before: Vec<String> = (0..3).map(|i| fx.read(i, "compose.yaml")).collect();

    // Host 2's v3 stays `starting` (a long start period, its `ready` not yet ok): its deploy waits in
    // the gate, with a gate timeout far longer than the cut, so only the deadlines can end the run.
    fx.set_ready(1, "not-yet");
    fx.write_compose_needing_ready("300s");
    let mut args = fx.deploy_args("v3");
    let i = args.iter().position(|a| a == "--health-timeout").unwrap();
    args[i + 1] = "300s".into();
    let (mut c, gh) = fx.command(&args);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("deploy-remote starts");
    wait_for("v3 running on h2", Duration::from_secs(60), || fx.running_tags(1).contains(&"v3".into()).then_some(()))
        .unwrap();
    fx.hosts.cut(1).unwrap();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let r = collect(out, gh.path(), &args);
    eprintln!("the run ended {took:?} after the cut");

    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains(&fx.hosts.hosts[1].addr), "the cut host is named: {}", r.stderr);
    assert!(r.stderr.contains("hint:") && r.stderr.contains("force-unlock"), "{}", r.stderr);
    assert_eq!(r.out("changed"), "true");
    // Host 1 is back on v1; host 3 was never changed.
    fx.assert_on(0, "v1", "v1");
    fx.assert_on(2, "v1", "v1");
    for i in [0, 2] {
        assert_eq!(fx.read(i, "compose.yaml"), before[i], "h{}", i + 1);
    }
    let row = fx.summary_row(&r, 0);
    assert!(row.contains("| v1 | v3 | rolled back (another host failed) |"), "{row}");
    assert!(fx.state(1).get("pending").is_some(), "h2 keeps its journal for the next run: {}", fx.state(1));

    // The link comes back and the job is re-run with force-unlock, as the hint says: host 2 is repaired
    // first, then every host deployed.
    fx.hosts.heal(1).unwrap();
    fx.set_ready(1, "ok");
    fx.write_compose_needing_ready("1s");
    let mut again = fx.deploy_args("v3");
    again.extend(["--force-unlock", "true"].map(String::from));
    let first = fx.deploy(&again);
    let repaired = first.stderr.find("left mid-deploy of `v3`").expect("the repair is reported");
    // The namespaced engine that was cut off sometimes fails its first container start after the heal
    // (runc: "procResume: broken pipe"). That is Docker's fault, not the deploy's: gangplank reports it,
    // puts the host back, and the next run deploys. Anything else must succeed at once.
    let r = if first.status != 0 && first.stderr.contains("OCI runtime") {
        eprintln!("the healed engine failed a container start; running the deploy once more: {}", first.stderr);
        fx.deploy(&again)
    } else {
        assert!(repaired < first.stderr.rfind("deployed `v3`").unwrap_or(0), "repair before deploy: {}", first.stderr);
        first
    };
    assert_eq!(r.status, 0, "{r:?}");
    for i in 0..3 {
        fx.assert_on(i, "v3", "v1");
    }
    let audit = fx.read(1, ".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"v3\",\"previous_tag\":\"v1\",\"result\":\"interrupted\""), "{audit}");
    gangplank_testbed::assert_no_secret(&r.texts(), ENV_CANARY);
}
