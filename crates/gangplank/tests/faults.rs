//! Faults on the real testbed (sshd, Docker, compose, registry): a deploy that is interrupted, killed
//! or whose containers print workflow commands leaves the previous release serving with its own files,
//! and the next run repairs what a killed run left (issue "Engine redesign", faults 1, 2, 4, 5).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{collect, deploy_remote, rollback_bin, Fixture, ENV_CANARY};

/// A release's files as the host holds them: (name, content, mode).
type ReleaseFiles = Vec<(String, String, u32)>;

/// The files of a release as the host holds them: compose file and `.env`, content and mode.
fn release_files(fx: &Fixture) -> ReleaseFiles {
    use std::os::unix::fs::PermissionsExt;
    ["compose.yaml", ".env"]
        .iter()
        .map(|f| {
            let p = fx.app_dir.join(f);
            let mode = std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            (f.to_string(), fx.read_host(f), mode)
        })
        .collect()
}

fn state(fx: &Fixture) -> serde_json::Value {
    serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap()
}

/// Wait until the app's container runs `tag` (the deploy is past `up`).
fn wait_running(fx: &Fixture, tag: &str) {
    gangplank_testbed::wait_for(&format!("a container of {tag}"), Duration::from_secs(30), || {
        let out = std::process::Command::new("docker")
            .args(["ps", "--filter", &format!("label=com.docker.compose.project={}", fx.app), "--format", "{{.Image}}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l.ends_with(&format!(":{tag}"))).then_some(())
    })
    .unwrap();
}

/// Start a deploy of `tag` in the background; it stops in the health gate (`broken` never passes it).
fn start_deploy(fx: &Fixture, tag: &str) -> (std::process::Child, tempfile::TempDir, Vec<String>) {
    let args = fx.deploy_args(tag);
    let (mut c, gh) = fx.command(&deploy_remote(), &args, &[]);
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("deploy-remote starts");
    (child, gh, args)
}

#[test]
fn sigterm_in_the_health_gate_puts_the_previous_release_back_and_exits_4() {
    let fx = Fixture::new("gp-sigterm");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = release_files(&fx);

    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=new\n"));
    let (child, gh, args) = start_deploy(&fx, "broken");
    wait_running(&fx, "broken");
    assert!(fx.read_host(".env").contains("MODE=new"), "the new files are switched in");
    let t = Instant::now();
    assert!(unsafe_free_kill(child.id(), "TERM"));
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let r = collect(out, gh.path(), &args);

    eprintln!("exit {took:?} after SIGTERM");
    assert_eq!(r.status, 4, "{r:?}");
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(r.out("changed"), "true");
    support::wait_health(&fx, "v1");
    assert_eq!(release_files(&fx), before, "the previous release's files, byte for byte and mode");
    let st = state(&fx);
    assert_eq!(st["current"]["tag"], "v1");
    assert!(st.get("pending").is_none(), "journal cleared: {st}");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v1\",\"result\":\"interrupted\""), "{audit}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");
    assert!(!r.stderr.contains(ENV_CANARY));
}

#[test]
fn sigkill_mid_deploy_leaves_a_journal_that_the_next_run_repairs() {
    let fx = Fixture::new("gp-sigkill");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = release_files(&fx);

    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=new\n"));
    let (mut child, gh, _args) = start_deploy(&fx, "broken");
    wait_running(&fx, "broken");
    assert!(unsafe_free_kill(child.id(), "KILL"));
    let _ = child.wait();
    // Killed before it could publish anything, yet `changed=true` went to GITHUB_OUTPUT the moment the host was
    // switched: the workflow's rollback step can tell that this host needs putting back (issue 10, item 3).
    let written = std::fs::read_to_string(gh.path().join("output")).unwrap_or_default();
    let outputs: std::collections::BTreeMap<String, String> =
        gangplank_core::actions::parse_output_file(&written).unwrap().into_iter().collect();
    assert_eq!(outputs.get("changed").map(String::as_str), Some("true"), "{written}");
    assert_eq!(outputs.get("rolled-back"), None, "nothing claims the host was put back");
    assert!(state(&fx).get("pending").is_some(), "a killed run leaves its journal");
    assert!(fx.app_dir.join(".gangplank/lock").exists(), "and its lock");

    // The next run is told who holds the lock, and changes nothing.
    let mut args = fx.ssh_args();
    args.extend(["--to-tag", "v1", "--lock-timeout", "1s", "--health-timeout", "20s"].map(String::from));
    args.extend(["--health-url".into(), format!("http://127.0.0.1:{}/health", fx.port)]);
    let r = fx.run(&rollback_bin(), &args, &[]);
    assert_eq!(r.status, 3, "{r:?}");
    assert!(r.stderr.contains("deploy of `broken`") && r.stderr.contains("pid"), "{}", r.stderr);

    // With force-unlock it repairs first: files and tag of the last good release, then says so.
    args.extend(["--force-unlock", "true"].map(String::from));
    let r = fx.run(&rollback_bin(), &args, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("left mid-deploy of `broken`"), "{}", r.stderr);
    support::wait_health(&fx, "v1");
    assert_eq!(release_files(&fx), before);
    let st = state(&fx);
    assert_eq!(st["current"]["tag"], "v1");
    assert!(st.get("pending").is_none(), "{st}");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v1\",\"result\":\"interrupted\""), "{audit}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists());
    assert!(!fx.app_dir.join(".gangplank/staging").exists());
}

#[test]
fn preflight_only_prints_the_commands_the_real_run_executes() {
    let fx = Fixture::new("gp-plan");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let mut args = fx.deploy_args("v2");
    args.extend(["--preflight-only", "true"].map(String::from));
    let planned = fx.deploy(&args);
    assert_eq!(planned.status, 0, "{planned:?}");
    assert_eq!(planned.out("deployed-tag"), "", "preflight-only deploys nothing");
    let ran = fx.run(&deploy_remote(), &fx.deploy_args("v2"), &[("GANGPLANK_TRACE", "1")]);
    assert_eq!(ran.status, 0, "{ran:?}");

    let planned = commands(planned.stderr.lines().filter_map(|l| l.strip_prefix("$ ")));
    let ran = commands(ran.stderr.lines().filter_map(|l| l.split_once("] $ ").map(|(_, c)| c)));
    let from = |v: &[String]| v.iter().position(|c| c.contains("mkdir -- \"$lock\"")).expect("the lock command");
    let ran = ran[from(&ran)..].to_vec();
    assert!(planned.len() >= 6, "{planned:#?}");
    assert_eq!(planned, ran);
    assert!(!planned.iter().any(|c| c.contains(ENV_CANARY)));
}

/// Commands with what differs between two runs blanked out (JSON payloads, stamps, lock ids), and a
/// poll repeated by the gate counted once.
fn commands<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let json = regex::Regex::new(r"'\{[^']*\}(⏎)?'").unwrap();
    let stamp = regex::Regex::new(r"\d{8}T\d{6}\.\d{3}Z").unwrap();
    let id = regex::Regex::new(r" [0-9a-f]{32} ").unwrap();
    let mut out: Vec<String> = vec![];
    for l in lines {
        let l = stamp.replace_all(&json.replace_all(l, "'{…}'"), "STAMP").into_owned();
        let l = id.replace_all(&l, " LOCK-ID ").into_owned();
        if out.last() != Some(&l) {
            out.push(l);
        }
    }
    out
}

#[test]
fn workflow_commands_in_container_logs_are_shown_not_obeyed() {
    let fx = Fixture::new("gp-fence");
    fx.write_compose(
        "    command: [\"/bin/sh\", \"-c\", \"echo '::add-mask::leaked-mask'; echo '::error::forged by the app'; exit 3\"]\n",
    );
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v1"), &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(r.status, 1, "{r:?}");
    let fence = r.stderr.find("::stop-commands::").expect("container logs are fenced");
    let token = r.stderr[fence + "::stop-commands::".len()..].lines().next().unwrap().to_string();
    let end = r.stderr.find(&format!("::{token}::")).expect("the fence is closed");
    let forged = r.stderr.find("::error::forged by the app").expect("the log line is shown");
    assert!(fence < forged && forged < end, "{}", r.stderr);
    assert!(!r.stderr[..fence].contains("leaked-mask") && !r.stderr[end..].contains("::add-mask::leaked-mask"));
}

/// `kill -SIG pid` through the shell (the workspace denies `unsafe`, so no libc::kill here).
fn unsafe_free_kill(pid: u32, sig: &str) -> bool {
    std::process::Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().is_ok_and(|s| s.success())
}

/// What every fault test checks once the host is back: the previous release serving over HTTP, its
/// files byte for byte and mode, state.json naming it with no journal, the audit line, no lock.
fn assert_previous_release_back(fx: &Fixture, before: &[(String, String, u32)], tag: &str, result: &str) {
    support::wait_health(fx, "v1");
    assert_eq!(release_files(fx), before, "the previous release's files, byte for byte and mode");
    let st = state(fx);
    assert_eq!(st["current"]["tag"], "v1");
    assert!(st.get("pending").is_none(), "journal cleared: {st}");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains(&format!("\"tag\":\"{tag}\",\"previous_tag\":\"v1\",\"result\":\"{result}\"")), "{audit}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");
    assert!(!fx.app_dir.join(".gangplank/staging").exists(), "staging removed");
}

/// The release files before, the deploy under way, its output folder and its arguments.
type Breaking = (ReleaseFiles, std::process::Child, tempfile::TempDir, Vec<String>);

/// A deployed v1, then a deploy of `broken` with new `.env` content started in the background and
/// waited on until its container runs (the deploy is in its health gate).
fn deploy_then_break(fx: &Fixture) -> Breaking {
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = release_files(fx);
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=new\n"));
    let (child, gh, args) = start_deploy(fx, "broken");
    wait_running(fx, "broken");
    (before, child, gh, args)
}

#[test]
fn a_dropped_connection_mid_deploy_reconnects_once_and_puts_the_previous_release_back() {
    let fx = Fixture::new("gp-drop");
    let (before, child, gh, args) = deploy_then_break(&fx);
    fx.sshd.drop_connections();
    let r = collect(child.wait_with_output().unwrap(), gh.path(), &args);

    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("SSH connection to"), "the lost connection is named: {}", r.stderr);
    assert!(r.stderr.contains("rolled back to `v1`"), "{}", r.stderr);
    assert_eq!(r.out("rolled-back"), "true");
    assert_previous_release_back(&fx, &before, "broken", "connection-lost");
    assert!(!r.stderr.contains(ENV_CANARY));
}

#[test]
fn sshd_killed_mid_deploy_leaves_a_journal_that_the_next_run_repairs() {
    let mut fx = Fixture::new("gp-sshdkill");
    let (before, child, gh, args) = deploy_then_break(&fx);
    fx.sshd.kill();
    let r = collect(child.wait_with_output().unwrap(), gh.path(), &args);

    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("reconnecting failed"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:") && r.stderr.contains("force-unlock"), "{}", r.stderr);
    assert!(state(&fx).get("pending").is_some(), "the journal stays for the next run");

    // sshd comes back and the job is re-run, deploying v1 with the new files, as the hint says: the
    // host is repaired first (files and tag of the last good release), then deployed.
    fx.sshd.restart().expect("sshd starts again");
    let mut again = fx.deploy_args("v1");
    again.extend(["--force-unlock", "true"].map(String::from));
    let r = fx.deploy(&again);
    assert_eq!(r.status, 0, "{r:?}");
    let repaired = r.stderr.find("left mid-deploy of `broken`").expect("the repair is reported");
    assert!(repaired < r.stderr.find("deployed `v1`").unwrap(), "repair before deploy: {}", r.stderr);
    support::wait_health(&fx, "v1");
    assert_ne!(release_files(&fx), before, "the re-run's own files");
    let st = state(&fx);
    assert_eq!(st["current"]["tag"], "v1", "{st}");
    assert!(st.get("pending").is_none(), "{st}");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v1\",\"result\":\"interrupted\""), "{audit}");
    assert!(!fx.app_dir.join(".gangplank/lock").exists());
}

#[test]
fn a_frozen_host_ends_the_run_within_its_deadlines_and_the_next_run_repairs_it() {
    let fx = Fixture::new("gp-frozen");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = release_files(&fx);
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=new\n"));
    // A gate far longer than the freeze: only the deadlines can end this run.
    let mut args = fx.deploy_args("broken");
    set(&mut args, "--health-timeout", "300s");
    let (c, gh) = fx.command(&deploy_remote(), &args, &[]);
    let child = {
        let mut c = c;
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    wait_running(&fx, "broken");
    fx.sshd.freeze();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    fx.sshd.thaw();
    let r = collect(out, gh.path(), &args);

    eprintln!("the run ended {took:?} after the host froze");
    assert_eq!(r.status, 1, "{r:?}");
    // A deadline of the connection ended the run (the gate's 300 s could not have): the heartbeat's ("did not
    // answer for"), or a channel's or the reconnection's ("Timed out"), whichever comes first. How long that takes
    // is `cargo xtask bench`'s to measure, not a test's.
    let deadline = r.stderr.contains("did not answer for") || r.stderr.contains("Timed out");
    assert!(r.stderr.contains("mid-deploy") && deadline, "{}", r.stderr);
    assert!(state(&fx).get("pending").is_some(), "the journal stays for the next run");

    let mut again = fx.ssh_args();
    again.extend(["--to-tag", "v1", "--force-unlock", "true", "--health-timeout", "20s"].map(String::from));
    again.extend(["--health-url".into(), format!("http://127.0.0.1:{}/health", fx.port)]);
    let r = fx.run(&rollback_bin(), &again, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("left mid-deploy of `broken`"), "{}", r.stderr);
    assert_previous_release_back(&fx, &before, "broken", "interrupted");
}

#[test]
fn a_full_disk_during_the_upload_changes_nothing_and_releases_the_lock() {
    let fx = Fixture::on_small_disk("gp-fulldisk", 8 << 20);
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let before = release_files(&fx);
    let tree = fx.tree_hash();

    // The next release carries a 2 MiB asset; the disk has room for half of it.
    std::fs::write(fx.work.path().join("asset.bin"), vec![7u8; 2 << 20]).unwrap();
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=new\n"));
    fx.fill_disk(1 << 20);
    let mut args = fx.deploy_args("v2");
    set(&mut args, "--min-free-disk", "1KiB");
    args.extend(["--files", "asset.bin"].map(String::from));
    let r = fx.deploy(&args);

    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(r.out("changed"), "false", "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert_eq!(release_files(&fx), before);
    assert_eq!(fx.tree_hash(), tree, "nothing under the app dir changed, staging included");
    assert!(!r.stderr.contains(ENV_CANARY));
}

/// Replace the value of `flag` in `args`.
fn set(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    args[i + 1] = value.to_string();
}
