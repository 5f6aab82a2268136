//! Deploy hooks end to end (issue "Release lifecycle"; docs/actions.md, "Deploy hooks"): real sshd, Docker,
//! compose and registry. `pre-deploy` migrates with the new image and files before any container changes,
//! `post-deploy` runs after the gate; a failed migration changes nothing, a failed smoke test rolls back,
//! a hook past `hook-timeout` is stopped on the host, and hook output never shows the `.env`'s values.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Every file of the app dir outside `.gangplank/`, with its content: what the release serves from.
fn live_files(fx: &Fixture) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![fx.app_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&fx.app_dir).unwrap().to_string_lossy().into_owned();
            if rel == ".gangplank" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The id of the app's running `web` container.
fn web_container(fx: &Fixture) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", fx.app),
            "--filter",
            "label=com.docker.compose.oneoff=False",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn assert_no_canary(r: &Run) {
    for (what, text) in r.texts() {
        assert!(!text.contains(ENV_CANARY), "the .env value leaked into {what}:\n{text}");
    }
}

/// The compose file with a bind-mounted data folder (where the migration writes) and `marker` as a comment,
/// so a hook can tell which release's compose file is live.
fn write_compose(fx: &Fixture, marker: &str) {
    fx.write_compose(&format!("    volumes:\n      - ./data:/data\n# release {marker}\n"));
}

#[test]
fn pre_deploy_migrates_with_the_new_release_before_any_container_changes_and_a_failed_one_changes_nothing() {
    let fx = Fixture::new("hooks");
    std::fs::create_dir_all(fx.app_dir.join("data")).unwrap();
    let port = fx.port;
    // The backup, then the migration in a one-off container of the NEW image (its /www/health names its
    // version) with the NEW compose file (the bind mount, the marker); what serves meanwhile; the env of
    // the one-off container (the .env's canary must come out masked).
    let pre = format!(
        r#"serving=$(curl -fsS http://127.0.0.1:{port}/health || echo none)
echo "pre $GANGPLANK_HOOK $IMAGE_TAG prev=$PREVIOUS_TAG serving=$serving $(grep '^# release' compose.yaml) app=$GANGPLANK_APP" >> hooks.log
if [ -f data/migrations ]; then cp data/migrations "data/backup-$PREVIOUS_TAG"; fi
$COMPOSE run --rm -T web sh -c 'cat /www/health >> /data/migrations; echo >> /data/migrations; env'
echo '::error::from the hook'
"#
    );
    let post = format!(
        r#"echo "post $IMAGE_TAG serving=$(curl -fsS http://127.0.0.1:{port}/health)" >> hooks.log
$COMPOSE exec -T web cat /proc/1/environ | tr '\0' '\n'"#
    );
    let hooked = |tag: &str| with(fx.deploy_args(tag), &["--pre-deploy", &pre, "--post-deploy", &post]);

    // preflight-only prints both hooks, the script quoted on one line, and runs neither.
    write_compose(&fx, "one");
    let r = fx.deploy(&with(hooked("v1"), &["--preflight-only", "true"]));
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("pre-deploy hook (sh -e in the project directory, IMAGE_TAG=v1"), "{}", r.stderr);
    assert!(r.stderr.contains("post-deploy hook"), "{}", r.stderr);
    assert!(r.stderr.contains("$COMPOSE run --rm -T web sh -c '\\''cat /www/health"), "{}", r.stderr);
    assert!(!r.stderr.lines().any(|l| l.starts_with("::error::from the hook")), "{}", r.stderr);
    assert!(!fx.app_dir.join("hooks.log").exists(), "preflight-only ran a hook");

    let r = fx.deploy(&hooked("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    write_compose(&fx, "two");
    let r = fx.deploy(&hooked("v2"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v2"));
    assert_eq!(
        fx.read_host("hooks.log"),
        format!(
            "pre pre-deploy v1 prev= serving=none # release one app={app}\npost v1 serving=v1\n\
             pre pre-deploy v2 prev=v1 serving=v1 # release two app={app}\npost v2 serving=v2\n",
            app = fx.app
        ),
        "pre-deploy sees the new files while the old release serves; post-deploy runs after the gate"
    );
    assert_eq!(fx.read_host("data/migrations"), "v1\nv2\n", "each migration ran in its own release's image");
    assert_eq!(fx.read_host("data/backup-v1"), "v1\n", "the backup was taken before the migration");
    // Hook output is shown (fenced under Actions), with the .env's values masked.
    assert!(r.stderr.contains("APP_TOKEN=***"), "{}", r.stderr);
    assert!(r.stderr.contains("pre-deploy hook passed on"), "{}", r.stderr);
    assert_no_canary(&r);

    // A migration that fails (exit 3) after printing the env: nothing restarted, the files are back byte for
    // byte, the lock is released, the record and the audit line say so.
    let files_before = live_files(&fx);
    let web_before = web_container(&fx);
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=three\n"));
    write_compose(&fx, "three");
    let failing = "cat .env\nenv\necho migrating >> hooks.log\nexit 3\necho never >> hooks.log";
    let r = fx.deploy(&with(fx.deploy_args("broken"), &["--pre-deploy", failing, "--post-deploy", "touch post-ran"]));
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("the pre-deploy hook failed on") && r.stderr.contains("(exit 3)"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was restarted: `v2` kept serving and its files are back"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:") && r.stderr.contains("Deploy hooks"), "{}", r.stderr);
    assert!(r.stderr.contains("APP_TOKEN=***"), "{}", r.stderr);
    assert_no_canary(&r);
    assert_eq!((r.out("rolled-back"), r.out("previous-tag")), ("false", "v2"));
    assert_eq!(record_json(&r)["status"], "failed");
    assert_eq!(fx.health().as_deref(), Some("v2"));
    assert_eq!(web_container(&fx), web_before, "the serving container was never restarted");
    let mut files_after = live_files(&fx);
    assert_eq!(
        files_after.remove("hooks.log").map(String::from_utf8),
        Some(Ok(format!("{}migrating\n", String::from_utf8_lossy(&files_before["hooks.log"]))))
    );
    let mut files_before = files_before;
    files_before.remove("hooks.log");
    assert_eq!(files_after, files_before, "the live files are byte for byte those of v2");
    assert!(!fx.app_dir.join("post-ran").exists());
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"broken\",\"previous_tag\":\"v2\",\"result\":\"pre-deploy-failed\""), "{audit}");
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    assert_eq!(state["current"]["tag"], "v2");
    assert!(state["pending"].is_null(), "{state}");
}

#[test]
fn a_failed_post_deploy_rolls_back_and_a_hook_past_its_timeout_is_stopped_on_the_host() {
    let fx = Fixture::new("hooks-fail");
    let r = fx.deploy(&fx.deploy_args("v1"));
    assert_eq!(r.status, 0, "{r:?}");

    // A smoke test that fails after the gate passed: a failed gate, so auto-rollback puts v1 back.
    let smoke = "env; cat .env; echo smoke failed >&2; exit 4";
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--post-deploy", smoke]));
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true");
    assert_eq!(record_json(&r)["status"], "rolled-back");
    assert!(r.stderr.contains("the post-deploy hook failed on") && r.stderr.contains("(exit 4)"), "{}", r.stderr);
    assert!(r.stderr.contains("smoke failed"), "{}", r.stderr);
    assert!(r.stderr.contains("rolled back to `v1`"), "{}", r.stderr);
    assert_no_canary(&r);
    assert_eq!(fx.health().as_deref(), Some("v1"));
    let audit = fx.read_host(".gangplank/audit.log");
    assert!(audit.contains("\"tag\":\"v2\",\"previous_tag\":\"v1\",\"result\":\"post-deploy-failed\""), "{audit}");
    assert!(audit.contains("\"action\":\"rollback\",\"tag\":\"v1\",\"previous_tag\":\"v2\",\"result\":\"rolled-back\""));
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");

    // A pre-deploy that hangs: stopped on the host at hook-timeout, the deploy fails with nothing restarted.
    let files_before = live_files(&fx);
    let hang = "sleep 600 &\necho $! > hook.pid\nwait";
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--pre-deploy", hang, "--hook-timeout", "2s"]));
    assert_eq!(r.status, 1, "{r:?}");
    assert!(
        r.stderr.contains("the pre-deploy hook on")
            && r.stderr.contains("did not finish within `hook-timeout` (2s) and was stopped on the host"),
        "{}",
        r.stderr
    );
    let pid = fx.read_host("hook.pid").trim().to_string();
    assert!(!pid.is_empty());
    gangplank_testbed::wait_for("the hook's sleep to be gone", Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .unwrap();
    assert_eq!(fx.health().as_deref(), Some("v1"));
    let mut files_after = live_files(&fx);
    files_after.remove("hook.pid");
    assert_eq!(files_after, files_before, "the files are back");
    assert!(!fx.app_dir.join(".gangplank/lock").exists(), "lock released");

    // Bad hook inputs are refused before any connection.
    let connections = fx.sshd.connections();
    let r = fx.deploy(&with(fx.deploy_args("v2"), &["--post-deploy", "true", "--hooks-on", "some"]));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(fx.sshd.connections(), connections);
}

/// A long hook (a migration) shows its output while it runs, inside an untrusted-output fence: the hook
/// prints a line, then waits for a file only this test creates once it has seen that line in the log.
#[test]
fn hook_output_is_printed_as_it_comes() {
    let fx = Fixture::new("hooks-stream");
    let go = tempfile::tempdir().unwrap();
    let go = go.path().join("go");
    let hook = format!(
        "echo 'migrating: step 1 of 2'\nwhile [ ! -e {} ]; do sleep 0.1; done\necho 'migrating: done'",
        gangplank_core::quote(&go.display().to_string())
    );
    let args = with(fx.deploy_args("v1"), &["--pre-deploy", &hook, "--hook-timeout", "2m"]);
    let (mut c, _outputs) = fx.command(&deploy_remote(), &args, &[("GITHUB_ACTIONS", "true")]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child =
        c.stdout(std::process::Stdio::null()).stderr(log.reopen().unwrap()).spawn().expect("deploy-remote starts");
    let seen = gangplank_testbed::wait_for("the hook's first line in the log", Duration::from_secs(90), || {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        text.lines().any(|l| l == "migrating: step 1 of 2").then_some(text)
    });
    std::fs::write(&go, "").unwrap();
    let status = child.wait().unwrap();
    let seen = seen.unwrap();
    assert!(!seen.lines().any(|l| l == "migrating: done"), "{seen}");
    let fence =
        seen.lines().rev().find(|l| l.starts_with("::stop-commands::")).expect("a fence before the hook's lines");
    let token = fence.trim_start_matches("::stop-commands::");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "{status}: {text}");
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: &str| lines.iter().position(|l| *l == line).unwrap_or_else(|| panic!("{line}: {text}"));
    assert!(at(fence) < at("migrating: step 1 of 2"), "{text}");
    assert!(at("migrating: done") < at(&format!("::{token}::")), "{text}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
}
