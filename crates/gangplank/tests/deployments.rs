//! GitHub Deployments end to end: deploy-remote and rollback on the testbed (real sshd, Docker, compose,
//! registry) report to the GitHub API stand-in, which keeps deployments and statuses as GitHub documents them
//! (auto_inactive for non-production environments only, so production's earlier ones are made inactive by
//! gangplank). The requests are checked one by one, in order, with their bodies.

mod support;

use std::process::Stdio;
use std::time::Duration;

use gangplank_testbed::github::{Fault, GitHub, Recorded};
use serde_json::Value;
use support::*;

const REPO: &str = "acme/app";
const TOKEN_CANARY: &str = "ghs_deploymentsCanary5c1e0a9d7b";
const RUN_URL: &str = "https://github.com/acme/app/actions/runs/4242";

fn sha(n: u8) -> String {
    format!("{n:x}").repeat(40)
}

/// The runner's variables for one run at commit `sha`, and the Deployments inputs.
fn env<'a>(gh: &'a GitHub, sha: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GITHUB_API_URL", gh.url()),
        ("GITHUB_REPOSITORY", REPO),
        ("GITHUB_SHA", sha),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_RUN_ID", "4242"),
        ("INPUT_ENVIRONMENT", "production"),
        ("INPUT_ENVIRONMENT_URL", "https://app.example.com"),
        ("INPUT_GITHUB_TOKEN", TOKEN_CANARY),
    ]
}

fn body(r: &Recorded) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// The requests since the last call, as `METHOD path`, and their bodies; the log is then cleared.
fn take(gh: &GitHub) -> Vec<(String, Value)> {
    let reqs = gh.requests();
    gh.reset_stats();
    reqs.iter().map(|r| (format!("{} {}", r.method, r.path), body(r))).collect()
}

fn id_of(gh: &GitHub, n: usize) -> u64 {
    gh.deployments(REPO)[n].id
}

/// Checks a create-deployment body and returns nothing: ref, environment, the fields GitHub needs from us.
fn assert_create(b: &Value, sha: &str, tag: &str) {
    assert_eq!(b["ref"], sha, "{b}");
    assert_eq!(b["environment"], "production", "{b}");
    assert_eq!(b["auto_merge"], false, "{b}");
    assert_eq!(b["required_contexts"], Value::Array(vec![]), "{b}");
    assert_eq!(b["payload"]["image_tag"], tag, "{b}");
    assert_eq!(b["transient_environment"], false, "{b}");
    assert_eq!(b["production_environment"], true, "{b}");
    assert!(b["description"].as_str().is_some_and(|d| !d.is_empty() && d.chars().count() <= 140), "{b}");
}

fn states(gh: &GitHub) -> Vec<(String, String)> {
    gh.deployments(REPO)
        .iter()
        .map(|d| (d.payload["image_tag"].as_str().unwrap_or("").to_string(), d.state().to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn assert_no_token(r: &Run) {
    for (name, text) in r.texts() {
        assert!(!text.contains(TOKEN_CANARY), "the token is in {name}: {text}");
    }
}

#[test]
fn deploys_auto_rollback_and_rollback_show_up_as_github_deployments() {
    let fx = Fixture::new("ghdeploy");
    let gh = GitHub::start();
    gh.set_token(TOKEN_CANARY);
    let deployments = format!("/repos/{REPO}/deployments");

    // v1: a deployment for the commit, in_progress before the hosts are touched, success with the URLs.
    let (s1, s2, s3, s4) = (sha(1), sha(2), sha(3), sha(4));
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v1"), &env(&gh, &s1));
    assert_eq!(r.status, 0, "{r:?}");
    assert_no_token(&r);
    let reqs = take(&gh);
    let d1 = id_of(&gh, 0);
    let statuses = format!("{deployments}/{d1}/statuses");
    let paths: Vec<&str> = reqs.iter().map(|(p, _)| p.as_str()).collect();
    // Then the environment's list, to close deployments a killed run left unfinished: there is none before v1.
    assert_eq!(
        paths,
        [
            format!("POST {deployments}"),
            format!("POST {statuses}"),
            format!("POST {statuses}"),
            format!("GET {deployments}")
        ],
        "{reqs:?}"
    );
    assert_create(&reqs[0].1, &s1, "v1");
    assert_eq!(reqs[1].1["state"], "in_progress");
    assert_eq!(reqs[1].1["log_url"], RUN_URL);
    assert_eq!(reqs[2].1["state"], "success");
    assert_eq!(reqs[2].1["environment_url"], "https://app.example.com");
    assert_eq!(reqs[2].1["log_url"], RUN_URL);
    assert_eq!(states(&gh), pairs(&[("v1", "success")]));
    let d = &gh.deployments(REPO)[0];
    assert_eq!((d.sha.as_str(), d.environment.as_str()), (s1.as_str(), "production"));
    assert_eq!(d.statuses.last().unwrap().environment_url, "https://app.example.com");

    // v2: the new deployment succeeds. GitHub's auto_inactive leaves production deployments alone (as GitHub
    // documents it), so deploy-remote makes v1's inactive itself.
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v2"), &env(&gh, &s2));
    assert_eq!(r.status, 0, "{r:?}");
    let reqs = take(&gh);
    assert_eq!(reqs.len(), 6, "{reqs:?}");
    assert_create(&reqs[0].1, &s2, "v2");
    // v1's deployment was the active one: it becomes inactive, and the look back stops there.
    assert_eq!(reqs[4].0, format!("GET {deployments}/{d1}/statuses"), "{reqs:?}");
    assert_eq!(reqs[5].0, format!("POST {deployments}/{d1}/statuses"), "{reqs:?}");
    assert_eq!(reqs[5].1["state"], "inactive");
    assert!(reqs[5].1["description"].as_str().unwrap().contains("superseded by the deploy of v2"), "{:?}", reqs[5]);
    assert_eq!(states(&gh), pairs(&[("v1", "inactive"), ("v2", "success")]));

    // broken: the gate fails, v2 comes back by itself. The broken deployment fails; v2 is recorded again,
    // from the commit it was deployed from, as the environment's newest and only active deployment.
    let r = fx.run(&deploy_remote(), &fx.deploy_args("broken"), &env(&gh, &s3));
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true");
    assert_no_token(&r);
    let reqs = take(&gh);
    let d3 = id_of(&gh, 2);
    let d4 = id_of(&gh, 3);
    let paths: Vec<String> = reqs.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        [
            format!("POST {deployments}"),
            format!("POST {deployments}/{d3}/statuses"),
            format!("POST {deployments}/{d3}/statuses"),
            format!("GET {deployments}"),
            format!("POST {deployments}"),
            format!("POST {deployments}/{d4}/statuses"),
            // Older than the restored one: the broken one (failed), then v2's first, active until now.
            format!("GET {deployments}/{d3}/statuses"),
            format!("GET {deployments}/{}/statuses", id_of(&gh, 1)),
            format!("POST {deployments}/{}/statuses", id_of(&gh, 1)),
        ],
        "{reqs:?}"
    );
    assert_create(&reqs[0].1, &s3, "broken");
    assert_eq!(reqs[1].1["state"], "in_progress");
    assert_eq!(reqs[2].1["state"], "failure");
    assert!(reqs[2].1["description"].as_str().unwrap().contains("rolled back to v2"), "{:?}", reqs[2]);
    assert_create(&reqs[4].1, &s2, "v2");
    assert_eq!(reqs[5].1["state"], "success");
    assert_eq!(reqs[5].1["environment_url"], "https://app.example.com");
    assert_eq!(states(&gh), pairs(&[("v1", "inactive"), ("v2", "inactive"), ("broken", "failure"), ("v2", "success")]));

    // The rollback step, back to v1: a new deployment of v1 from v1's commit, success; v2's goes inactive.
    let mut args = fx.ssh_args();
    args.extend(["--to-tag", "v1", "--health-timeout", "20s"].map(String::from));
    args.push(format!("--health-url=http://127.0.0.1:{}/health", fx.port));
    let r = fx.run(&rollback_bin(), &args, &env(&gh, &s4));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert_no_token(&r);
    let reqs = take(&gh);
    let d5 = id_of(&gh, 4);
    let paths: Vec<String> = reqs.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        [
            format!("GET {deployments}"),
            format!("POST {deployments}"),
            format!("POST {deployments}/{d5}/statuses"),
            format!("GET {deployments}/{d4}/statuses"),
            format!("POST {deployments}/{d4}/statuses")
        ],
        "{reqs:?}"
    );
    assert_create(&reqs[1].1, &s1, "v1");
    assert_eq!(reqs[1].1["payload"]["rolled_back_from"], "v2");
    assert_eq!(reqs[2].1["state"], "success");
    assert_eq!(reqs[4].1["state"], "inactive");
    assert_eq!(
        states(&gh),
        pairs(&[("v1", "inactive"), ("v2", "inactive"), ("broken", "failure"), ("v2", "inactive"), ("v1", "success")])
    );
}

/// A deploy killed mid-run (a cancelled job) never posts its last status; the rollback step that follows closes
/// that deployment as `error`, naming itself, before it records the restored release.
#[test]
fn a_killed_deploys_deployment_is_closed_by_the_rollback_step() {
    let fx = Fixture::new("ghkilled");
    let gh = GitHub::start();
    gh.set_token(TOKEN_CANARY);
    let (s1, s2, s3) = (sha(1), sha(2), sha(3));
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v1"), &env(&gh, &s1));
    assert_eq!(r.status, 0, "{r:?}");

    // `broken` waits in the health gate; killed there.
    let (mut c, _outputs) = fx.command(&deploy_remote(), &fx.deploy_args("broken"), &env(&gh, &s2));
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("deploy-remote starts");
    gangplank_testbed::wait_for("the broken release running", Duration::from_secs(60), || {
        let out = std::process::Command::new("docker")
            .args(["ps", "--filter", &format!("label=com.docker.compose.project={}", fx.app), "--format", "{{.Image}}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l.ends_with(":broken")).then_some(())
    })
    .unwrap();
    assert!(std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap().success());
    let _ = child.wait();
    assert_eq!(states(&gh), pairs(&[("v1", "success"), ("broken", "in_progress")]));

    let mut args = fx.ssh_args();
    args.extend(["--to-tag", "v1", "--force-unlock", "true", "--health-timeout", "20s"].map(String::from));
    args.push(format!("--health-url=http://127.0.0.1:{}/health", fx.port));
    let r = fx.run(&rollback_bin(), &args, &env(&gh, &s3));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(states(&gh), pairs(&[("v1", "inactive"), ("broken", "error"), ("v1", "success")]));
    let killed = &gh.deployments(REPO)[1];
    let last = killed.statuses.last().unwrap();
    assert!(last.description.contains("rolled back to v1 (run 4242)"), "{}", last.description);
    assert_eq!(last.log_url, RUN_URL);
}

#[test]
fn github_errors_and_timeouts_never_fail_a_deploy_and_bad_inputs_stop_before_any_connection() {
    let fx = Fixture::new("ghfault");
    let gh = GitHub::start();
    gh.set_token(TOKEN_CANARY);
    let s1 = sha(1);

    // Bad inputs: exit 2 with a hint, before GitHub or the host is reached.
    let cases: [(&str, &str, &str); 4] = [
        ("INPUT_GITHUB_TOKEN", "", "github-token"),
        ("INPUT_ENVIRONMENT_URL", "app.example.com", "environment-url"),
        ("GITHUB_API_URL", "ftp://api.example", "GITHUB_API_URL"),
        ("GITHUB_REPOSITORY", "not-a-repo", "GITHUB_REPOSITORY"),
    ];
    for (key, value, names) in cases {
        let mut e = env(&gh, &s1);
        e.retain(|(k, _)| *k != key);
        e.push((key, value));
        let r = fx.run(&deploy_remote(), &fx.deploy_args("v1"), &e);
        assert_eq!(r.status, 2, "{key}={value}: {r:?}");
        assert!(r.stderr.contains(names) && r.stderr.contains("hint:"), "{key}: {}", r.stderr);
        assert_no_token(&r);
    }
    let mut args = fx.ssh_args();
    args.extend(["--environment-url", "https://app.example.com"].map(String::from));
    let r = fx.run(&rollback_bin(), &args, &[]);
    assert_eq!(r.status, 2, "environment-url without environment: {r:?}");
    assert_eq!(fx.sshd.connections(), 0, "nothing connected to the host");
    assert!(gh.requests().is_empty(), "nothing reached GitHub");

    // GitHub answers 500 to the deployment: a warning, and the deploy goes on and succeeds.
    gh.push_fault(Fault::Status(500));
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v1"), &env(&gh, &s1));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v1"));
    assert!(r.stderr.contains("GitHub Deployments") && r.stderr.contains("HTTP 500"), "{}", r.stderr);
    assert_no_token(&r);
    let reqs = take(&gh);
    assert_eq!(reqs.len(), 1, "no status for a deployment that was not created: {reqs:?}");

    // GitHub does not answer: one bounded wait, then the deploy goes on without reporting.
    gh.push_fault(Fault::Hang(Duration::from_secs(12)));
    let r = fx.run(&deploy_remote(), &fx.deploy_args("v2"), &env(&gh, &s1));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.health().as_deref(), Some("v2"));
    assert!(r.stderr.contains("GitHub Deployments") && r.stderr.contains("timed out"), "{}", r.stderr);
    assert_no_token(&r);
    // The request that hung was the only one: after a timeout the rest of the run's requests are skipped.
    let reqs = gh.requests();
    assert_eq!(reqs.len(), 1, "after a timeout the rest is skipped: {reqs:?}");
    assert_eq!((reqs[0].method.as_str(), reqs[0].status), ("POST", 0), "{reqs:?}");
}
