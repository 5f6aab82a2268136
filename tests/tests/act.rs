//! This repository's workflows end to end under nektos/act, a real Actions runner (issue 20; docs/testbed.md,
//! "Workflows under act"). Long: each run compiles gangplank once, as the workflow does.
//!
//! The runner is a namespaced host (`h1`: its own loopback, ports and Docker engine, so what the jobs build,
//! publish and start never touches the machine's engine); the deploy target is another (`h2`, sshd on port 22,
//! its own engine publishing 80/443); the registry on their bridge requires a login, as GHCR does; GitHub's API is
//! the stand-in on the bridge. Run with `cargo test -p gangplank-testbed --test act -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gangplank_testbed::act::{
    pin_gangplank_actions, repo_root, target_dir, use_testbed_base_images, ActOutcome, ActRun, Event,
};
use gangplank_testbed::github::{App, GitHub, Scope};
use gangplank_testbed::hosts::{Forward, Hosts, HostsOptions};

use gangplank_testbed::{http_get, images, run_checked, scrubbed_command, unique_name, wait_for, Registry, FAST_USER};
use serde_json::{json, Value};

const REPOSITORY: &str = "gangplank-dev/gangplank";
const ACTOR: &str = "gangplank-ci";
const WORKFLOW: &str = ".github/workflows/deploy.yml";

/// Removes the app dir the test made on the machine's file system (the hosts share it outside their root).
struct AppDir(PathBuf);

impl Drop for AppDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything one deploy scenario needs, torn down in reverse order on drop.
struct DeployBed {
    _forwards: Vec<Forward>,
    github: GitHub,
    hosts: Hosts,
    /// The test copy of the repository (a work tree; also the checkout stand-in's source).
    repo: PathBuf,
    repositories: tempfile::TempDir,
    artifacts: tempfile::TempDir,
    app_name: String,
    app_dir: AppDir,
    secrets: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    next_run: u64,
}

/// The runner host and the deploy host (`h1`, `h2`), and the registry on their bridge, which requires a login with
/// the run's token, as GHCR does. gangplank and Docker speak plain HTTP to loopback registries only (HTTPS
/// elsewhere, as GHCR needs): the registry is reached at the same port of each host's loopback, which is the
/// returned `127.0.0.1:<port>`.
fn runner_and_target(label: &str) -> (String, Hosts, String, Vec<Forward>) {
    let token = format!("ghs_{}", unique_name(label).replace('-', ""));
    let hosts = Hosts::start_with(&HostsOptions {
        registry_auth: Some((ACTOR.to_string(), token.clone())),
        ..HostsOptions::new(2)
    })
    .expect("starting the runner host, the deploy host and the registry");
    let bridge_registry = hosts.registry().addr.clone();
    let port: u16 = bridge_registry.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap();
    let forwards: Vec<_> = hosts
        .hosts
        .iter()
        .map(|h| h.forward_loopback(port, &bridge_registry).expect("forwarding the registry to a host's loopback"))
        .collect();
    (token, hosts, format!("127.0.0.1:{port}"), forwards)
}

/// This work tree's commit, cloned into `dest` (act runs at a commit, as GitHub does, never at a dirty tree).
fn clone_work_tree(dest: &Path) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let root = gangplank_testbed::act::repo_root();
    run_checked(
        scrubbed_command("git")
            .args(["clone", "-q", "--depth", "1"])
            .arg(format!("file://{}", root.display()))
            .arg(dest),
    )
    .expect("cloning the work tree's commit");
}

impl DeployBed {
    fn start() -> DeployBed {
        let (token, hosts, registry, forwards) = runner_and_target("act");
        let github = GitHub::start_on(&hosts.gateway);
        github.set_token(&token);
        github.add_repo(REPOSITORY);
        github.add_environment(REPOSITORY, "production");

        let map = testbed_base_images(&hosts, &registry, Some(&token));

        // The repository at this work tree's commit, the base images substituted, as one commit on top.
        let repositories = tempfile::Builder::new().prefix("gangplank-act-git-").tempdir().unwrap();
        let repo = repositories.path().join(REPOSITORY);
        clone_work_tree(&repo);
        let changed =
            use_testbed_base_images(&repo.join("examples/compose-app"), &map).expect("substituting base images");
        assert!(!changed.is_empty(), "the example names none of the base images any more: update the test's map");
        git(&repo, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        commit(&repo, "testbed: the example's base images from the testbed registry");

        let app_name = unique_name("compose-app");
        let app_dir = AppDir(PathBuf::from("/opt").join(&app_name));
        // The server's set-up (README, quick start): the app dir, owned by the deploy user.
        std::fs::create_dir(&app_dir.0).expect("creating the app dir");
        run_checked(scrubbed_command("chown").arg("-R").arg(format!("{FAST_USER}:")).arg(&app_dir.0))
            .expect("chown app dir");

        let target = &hosts.hosts[1];
        let secrets = BTreeMap::from([
            ("GITHUB_TOKEN".to_string(), token.clone()),
            ("DEPLOY_SSH_KEY".to_string(), hosts.client_key().to_string()),
            ("DATABASE_PASSWORD".to_string(), "act-database-password-0123".to_string()),
            ("SECRET_KEY".to_string(), "act-secret-key-0123456789-abcdefghijkl".to_string()),
            ("REGISTRY_READ_TOKEN".to_string(), token.clone()),
        ]);
        let vars = BTreeMap::from([
            ("DEPLOY_HOST".to_string(), target.host_spec()),
            ("DEPLOY_KNOWN_HOSTS".to_string(), target.sshd().known_hosts.clone()),
            ("REGISTRY".to_string(), registry.clone()),
            ("REGISTRY_USERNAME".to_string(), ACTOR.to_string()),
            ("APP_NAME".to_string(), app_name.clone()),
            ("APP_MODE".to_string(), "production".to_string()),
            ("APP_URL".to_string(), format!("http://{}/", target.addr)),
        ]);
        let artifacts = tempfile::Builder::new().prefix("gangplank-act-artifacts-").tempdir().unwrap();
        github.set_artifact_dir(artifacts.path());
        DeployBed {
            _forwards: forwards,
            github,
            hosts,
            repo,
            repositories,
            artifacts,
            app_name,
            app_dir,
            secrets,
            vars,
            next_run: 9_100_000_001,
        }
    }

    /// Runs deploy.yml for `event` at the copy's HEAD and prints its jobs' results and times.
    fn run(&mut self, label: &str, event: Event) -> ActOutcome {
        let runner = &self.hosts.hosts[0];
        let run_id = self.next_run;
        self.next_run += 1;
        let run = ActRun {
            label: format!("deploy-{label}"),
            repo_dir: self.repo.clone(),
            repository: REPOSITORY.to_string(),
            repositories: self.repositories.path().to_path_buf(),
            workflow: WORKFLOW.to_string(),
            event,
            run_id,
            actor: ACTOR.to_string(),
            secrets: self.secrets.clone(),
            vars: self.vars.clone(),
            env: BTreeMap::from([("GITHUB_API_URL".to_string(), self.github.url().to_string())]),
            machine_env: BTreeMap::from([
                ("DOCKER_HOST".to_string(), runner.docker_host.clone()),
                // The runner host has no way out: cargo builds from what this machine already has.
                ("CARGO_NET_OFFLINE".to_string(), "true".to_string()),
            ]),
            enter: runner.enter_net(),
            artifact_dir: self.artifacts.path().to_path_buf(),
            // The runner host's own loopback: nothing else listens there.
            artifact_port: Some(34567),
            matrix: vec![],
            cache_dir: target_dir().join("act-cache").join("runner"),
            local_repositories: BTreeMap::new(),
        };
        let outcome = run.run(Some(&self.github)).unwrap_or_else(|e| panic!("running act ({label}): {e:#}"));
        println!("act {label} (run {run_id}): {}\n{}", outcome.transcript.display(), outcome.summary());
        outcome
    }

    fn head(&self) -> String {
        run_checked(scrubbed_command("git").arg("-C").arg(&self.repo).args(["rev-parse", "HEAD"]))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The app dir's state.json on the deploy host.
    fn state(&self) -> Value {
        let path = self.app_dir.0.join(".gangplank/state.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    /// GET `path` through the deploy host's published port 80 (the proxy), from this machine.
    fn http(&self, path: &str) -> (u16, String) {
        let addr = format!("{}:80", self.hosts.hosts[1].addr);
        wait_for(&format!("http://{addr}{path} to answer"), std::time::Duration::from_secs(30), || {
            http_get(&addr, path, None).ok()
        })
        .unwrap()
    }

    /// The image of the running `web` container on the deploy host.
    fn web_image(&self) -> String {
        let target = &self.hosts.hosts[1];
        let ids = run_checked(target.docker().args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.app_name),
            "--filter",
            "label=com.docker.compose.service=web",
        ]))
        .unwrap();
        let id = ids.split_whitespace().next().expect("a running web container");
        run_checked(target.docker().args(["inspect", "--format", "{{.Config.Image}}", id])).unwrap().trim().to_string()
    }

    fn print_jobs(outcome: &ActOutcome) {
        for job in &outcome.jobs {
            println!("  job {:<7} {:<8} {:.1}s", job.id, job.result, job.wall.as_secs_f64());
        }
    }
}

/// The example's base images, built on the runner's engine (`hosts.hosts[0]`) and pushed to the testbed registry
/// as `<registry>/library/<name>:<tag>` (`registry`: as the hosts reach it): the map `use_testbed_base_images`
/// takes.
fn testbed_base_images(hosts: &Hosts, registry: &str, token: Option<&str>) -> BTreeMap<String, String> {
    // The example's base images, built on the runner's engine and served from the registry.
    let runner = &hosts.hosts[0];
    let prefix = unique_name("act-base");
    let bases = images::example_bases_on(&runner.docker_host, &prefix).expect("building the base images");
    let map: BTreeMap<String, String> =
        [("python:3.12-alpine", &bases.python), ("caddy:2.6", &bases.caddy), ("postgres:16-alpine", &bases.postgres)]
            .into_iter()
            .map(|(from, local)| {
                let to = format!("{registry}/library/{from}");
                run_checked(runner.docker().args(["tag", local, &to])).expect("tagging a base image");
                (from.to_string(), to)
            })
            .collect();
    let login = tempfile::tempdir().expect("a Docker config for the pushes");
    if let Some(token) = token {
        let mut cmd = runner.docker();
        cmd.arg("--config").arg(login.path()).args(["login", registry, "--username", ACTOR, "--password-stdin"]);
        pipe_in(&mut cmd, token).expect("docker login to the testbed registry");
    }
    for to in map.values() {
        run_checked(runner.docker().arg("--config").arg(login.path()).args(["push", "-q", to]))
            .unwrap_or_else(|e| panic!("pushing {to}: {e:#}"));
    }

    map
}

fn git(repo: &Path, args: &[&str]) -> String {
    run_checked(scrubbed_command("git").arg("-C").arg(repo).args(args))
        .unwrap_or_else(|e| panic!("git {args:?}: {e:#}"))
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(
        repo,
        &[
            "-c",
            "user.name=gangplank testbed",
            "-c",
            "user.email=testbed@gangplank.invalid",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

fn pipe_in(cmd: &mut std::process::Command, input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().expect("stdin").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn assert_jobs(outcome: &ActOutcome, want: &[(&str, &str)]) {
    for (job, result) in want {
        assert_eq!(
            outcome.result(job),
            *result,
            "job {job} of {}:\n{}\n(transcript {})",
            outcome.transcript.display(),
            outcome.summary(),
            outcome.transcript.display()
        );
    }
}

/// deploy.yml on a push to main at this work tree's commit: guard (one compile) → push → verify → deploy, the app
/// serving on the host; then a push whose release is broken in production (healthy under verify's staging
/// settings, unhealthy on the host): deploy red, deploy-remote puts the previous release back itself, so the
/// workflow's decide step does not roll back a second time (docs/actions.md, exit codes), and the host serves the
/// previous tag; then an emergency dispatch of that tag: green.
#[test]
#[ignore = "act tier: cargo xtask test --full"]
fn deploy_workflow_push_broken_push_and_emergency_dispatch_under_act() {
    let mut bed = DeployBed::start();
    let mut compiles = vec![];

    // 1. A push: everything green, the app serving.
    let sha1 = bed.head();
    let tag1 = sha1[..12].to_string();
    let first = bed.run("push", Event::Push { branch: "main".into() });
    DeployBed::print_jobs(&first);
    assert_jobs(&first, &[("guard", "success"), ("push", "success"), ("verify", "success"), ("deploy", "success")]);
    assert!(first.success, "act failed: {}", first.transcript.display());
    assert_eq!(first.compiles, 1, "one compile per run: {}", first.transcript.display());
    compiles.push(first.compiles);
    assert_eq!(first.output("deploy", "deploy", "deployed-tag"), Some(tag1.as_str()), "{}", first.transcript.display());
    assert_eq!(bed.state()["current"]["tag"], json!(tag1));
    let (status, body) = bed.http("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = bed.http("/");
    assert_eq!(status, 200);
    assert!(body.starts_with("compose-app"), "{body}");
    assert!(bed.web_image().ends_with(&format!("/web:{tag1}")), "{}", bed.web_image());

    // 2. A broken release: healthy under verify (APP_MODE=staging from ci.env), unhealthy on the host (production).
    let app = bed.repo.join("examples/compose-app/app.py");
    let text = std::fs::read_to_string(&app).unwrap();
    let broken = text.replacen(
        "        if self.path == \"/healthz\":\n",
        "        if self.path == \"/healthz\" and os.environ.get(\"APP_MODE\") == \"production\":\n            missing = [\"a setting only production lacks\"]\n        if self.path == \"/healthz\":\n",
        1,
    );
    assert_ne!(broken, text, "app.py no longer has the /healthz branch the broken release edits");
    std::fs::write(&app, broken).unwrap();
    commit(&bed.repo, "a release that is broken in production only");
    let tag2 = bed.head()[..12].to_string();
    let second = bed.run("push-broken", Event::Push { branch: "main".into() });
    DeployBed::print_jobs(&second);
    assert_jobs(&second, &[("guard", "success"), ("push", "success"), ("verify", "success"), ("deploy", "failure")]);
    assert_eq!(second.compiles, 1, "{}", second.transcript.display());
    compiles.push(second.compiles);
    let t = second.transcript.display().to_string();
    assert_eq!(second.output("deploy", "deploy", "changed"), Some("true"), "{t}");
    assert_eq!(second.output("deploy", "deploy", "rolled-back"), Some("true"), "{t}");
    assert_eq!(second.output("deploy", "decide", "rollback"), Some("false"), "{t}");
    let state = bed.state();
    assert_eq!(state["current"]["tag"], json!(tag1), "serving the previous tag: {state}");
    let history = state["history"].to_string();
    assert!(history.contains(&tag2), "the broken release is in the history: {state}");
    let (status, body) = bed.http("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    assert!(bed.web_image().ends_with(&format!("/web:{tag1}")), "{}", bed.web_image());

    // 3. An emergency dispatch of the previous tag: verification skipped, deployed.
    let mut inputs = serde_json::Map::new();
    inputs.insert("tag".into(), json!(tag1));
    inputs.insert("emergency".into(), json!(true));
    inputs.insert("confirm".into(), json!("DEPLOY"));
    let third = bed.run("dispatch", Event::WorkflowDispatch { branch: "main".into(), inputs });
    DeployBed::print_jobs(&third);
    assert_jobs(&third, &[("guard", "success"), ("push", "success"), ("verify", "success"), ("deploy", "success")]);
    compiles.push(third.compiles);
    assert_eq!(third.compiles, 1, "{}", third.transcript.display());
    assert_eq!(bed.state()["current"]["tag"], json!(tag1));
    let (status, _) = bed.http("/healthz");
    assert_eq!(status, 200);

    // GitHub's view: three runs, the broken one failed, each of them recorded as deployments of production.
    let deployments = bed.github.deployments(REPOSITORY);
    assert!(!deployments.is_empty(), "deploy-remote recorded no deployment");
    println!("compiles per run: {compiles:?}");
}

/// The artifact path the deploy job's rollback takes, under act with the stand-ins, in a workflow of its own (no
/// compile, no hosts): a run uploads `deploy-record`; a later run finds the last successful run through the API
/// (the same request as deploy.yml's "Find the last successful run") and downloads that run's record with
/// `run-id` and `github-token`; a failing job is red and its run is not the last successful one.
#[test]
#[ignore = "act tier: cargo xtask test --full"]
fn artifacts_cross_runs_under_act() {
    let github = GitHub::start();
    github.add_repo(REPOSITORY);
    let repositories = tempfile::Builder::new().prefix("gangplank-act-git-").tempdir().unwrap();
    let repo = repositories.path().join(REPOSITORY);
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::write(repo.join(".github/workflows/records.yml"), RECORDS_WORKFLOW).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    commit(&repo, "records");
    let artifacts = tempfile::Builder::new().prefix("gangplank-act-artifacts-").tempdir().unwrap();
    github.set_artifact_dir(artifacts.path());
    let run = |label: &str, run_id: u64, fail: bool| {
        ActRun {
            label: format!("records-{label}"),
            repo_dir: repo.clone(),
            repository: REPOSITORY.to_string(),
            repositories: repositories.path().to_path_buf(),
            workflow: ".github/workflows/records.yml".to_string(),
            event: Event::Push { branch: "main".into() },
            run_id,
            actor: ACTOR.to_string(),
            secrets: BTreeMap::from([("GITHUB_TOKEN".to_string(), github.token())]),
            vars: BTreeMap::from([("FAIL".to_string(), fail.to_string())]),
            env: BTreeMap::from([("GITHUB_API_URL".to_string(), github.url().to_string())]),
            machine_env: BTreeMap::new(),
            enter: vec![],
            artifact_dir: artifacts.path().to_path_buf(),
            artifact_port: None,
            matrix: vec![],
            cache_dir: target_dir().join("act-cache").join("runner"),
            local_repositories: BTreeMap::new(),
        }
        .run(Some(&github))
        .unwrap_or_else(|e| panic!("running act ({label}): {e:#}"))
    };
    let first = run("first", 7001, false);
    assert_jobs(&first, &[("record", "success"), ("last", "success")]);
    assert_eq!(
        first.output("last", "last", "run-id"),
        Some(""),
        "no earlier successful run: {}",
        first.transcript.display()
    );
    assert!(artifacts.path().join("7001/deploy-record/deploy-record.zip").is_file());
    let failed = run("failed", 7002, true);
    assert_jobs(&failed, &[("record", "failure")]);
    assert!(!failed.success);
    let third = run("third", 7003, false);
    assert_jobs(&third, &[("record", "success"), ("last", "success")]);
    let t = third.transcript.display().to_string();
    assert_eq!(third.output("last", "last", "run-id"), Some("7001"), "{t}");
    assert_eq!(third.output("last", "read", "tag"), Some("tag-of-7001"), "{t}");
    // The listing and the download went through the REST API with the job's token.
    let paths: Vec<String> = github.requests().iter().map(|r| format!("{} {}", r.status, r.path)).collect();
    assert!(paths.iter().any(|p| p == &format!("200 /repos/{REPOSITORY}/actions/runs/7001/artifacts")), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("302 ") && p.ends_with("/zip")), "{paths:?}");
}

const RECORDS_WORKFLOW: &str = r#"name: records
on: [push]
permissions: {}
jobs:
  record:
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    permissions:
      contents: read
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - name: Write the record
        env:
          FAIL: ${{ vars.FAIL }}
        run: |
          mkdir -p "$RUNNER_TEMP/deploy-record"
          printf '{"deployed_tag":"tag-of-%s"}\n' "$GITHUB_RUN_ID" >"$RUNNER_TEMP/deploy-record/deploy-record.json"
          [[ $FAIL != true ]]
      - uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with:
          name: deploy-record
          path: ${{ runner.temp }}/deploy-record/deploy-record.json
          overwrite: true
  last:
    needs: record
    runs-on: ubuntu-24.04
    timeout-minutes: 5
    permissions:
      actions: read
    steps:
      - name: Find the last successful run
        id: last
        env:
          GH_TOKEN: ${{ github.token }}
        run: |
          runs=$GITHUB_API_URL/repos/$GITHUB_REPOSITORY/actions/workflows/records.yml/runs
          run_id=$(printf 'header = "Authorization: Bearer %s"\n' "$GH_TOKEN" |
            curl --config - -fsS --retry 3 -H 'Accept: application/vnd.github+json' \
              -H 'X-GitHub-Api-Version: 2022-11-28' "$runs?branch=main&status=success&per_page=1" |
            jq -r '.workflow_runs[0].id // empty')
          echo "run-id=$run_id" >>"$GITHUB_OUTPUT"
      - name: The last successful run's record
        if: steps.last.outputs.run-id != ''
        uses: actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c # v8.0.1
        with:
          name: deploy-record
          path: ${{ runner.temp }}/last
          run-id: ${{ steps.last.outputs.run-id }}
          github-token: ${{ github.token }}
      - name: Read it
        id: read
        if: steps.last.outputs.run-id != ''
        run: echo "tag=$(jq -r .deployed_tag "$RUNNER_TEMP/last/deploy-record.json")" >>"$GITHUB_OUTPUT"
"#;

// ---------------------------------------------------------------------------------------------------------------
// release.yml (docs/releasing.md, "Testing the workflow locally")
// ---------------------------------------------------------------------------------------------------------------

/// The one target a release can build here: arm64 Linux and macOS need runners of their own.
const TARGET: &str = "x86_64-unknown-linux-musl";

/// `git` in `dir`, its output trimmed.
fn git_trim(dir: &Path, args: &[&str]) -> String {
    git(dir, args).trim().to_string()
}

/// The work tree as it is (tracked files with their uncommitted changes) as the one commit of branch `main` of a
/// new repository at `dir`, so the release runs what is being tested.
fn snapshot_work_tree(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git_trim(dir, &["init", "-q", "-b", "main"]);
    let root = repo_root();
    let files = run_checked(scrubbed_command("git").arg("-C").arg(&root).args(["ls-files", "-z"])).unwrap();
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let from = root.join(file);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
    git_trim(dir, &["add", "-A"]);
    git_trim(
        dir,
        &[
            "-c",
            "user.name=Maintainer",
            "-c",
            "user.email=maintainer@example.com",
            "commit",
            "-q",
            "-m",
            "Release candidate",
        ],
    );
}

/// `[workspace.package] version` of the work tree's Cargo.toml: the version the test releases.
fn workspace_version() -> String {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let package = text.split("[workspace.package]").nth(1).expect("[workspace.package]");
    let line = package.lines().find(|l| l.starts_with("version")).expect("a version line");
    line.split('"').nth(1).expect("a quoted version").to_string()
}

/// An RSA key pair for the release app: (PEM private key, DER `RSAPublicKey`).
fn app_key(dir: &Path) -> (String, Vec<u8>) {
    let key = dir.join("app-key.pem");
    let public = dir.join("app-key.der");
    run_checked(
        scrubbed_command("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&key),
    )
    .unwrap();
    run_checked(
        scrubbed_command("openssl")
            .args(["rsa", "-in"])
            .arg(&key)
            .args(["-RSAPublicKey_out", "-outform", "DER", "-out"])
            .arg(&public),
    )
    .unwrap();
    (std::fs::read_to_string(&key).unwrap(), std::fs::read(&public).unwrap())
}

/// What release.yml published.
struct Released {
    /// The bare repository the release was pushed to (`gangplank-dev/gangplank`).
    bare: PathBuf,
    /// The release commit: `vX.Y.Z` and the major tag point to it.
    commit: String,
    version: String,
    /// `v1`
    major: String,
    /// The SHA-256 of the x86_64 Linux archive, as the release commit's `actions/checksums.txt` lists it.
    sum: String,
}

/// Cuts a release as a maintainer does: release.yml, dispatched with the work tree's version, runs its x86_64
/// Linux build (`cargo xtask dist`, the static archive checked alone in an empty image), then publish: the
/// release commit with the archive's checksum and its tag pushed to the repository (a local bare one under
/// `scratch`), a draft release made, its assets uploaded and the release published on the GitHub API stand-in
/// `gh`, and `v1` moved, every write with the app's installation token (contents and workflows write). Asserts
/// all of it.
///
/// What differs from GitHub (docs/releasing.md, "Testing the workflow locally"): only the x86_64 musl entry of the
/// build matrix runs (arm64 Linux and macOS need their own runners), so the release holds one archive and the
/// tag check (which wants all four) is not run; the jobs run on this machine, not in a fresh VM.
fn cut_release(s: &Path, gh: &GitHub) -> Released {
    let version = workspace_version();
    let work = s.join("work");
    snapshot_work_tree(&work);
    let dispatched = git_trim(&work, &["rev-parse", "HEAD"]);
    let repositories = s.join("repositories");
    let bare = repositories.join(REPOSITORY);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    run_checked(scrubbed_command("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare)).unwrap();

    gh.add_repo(REPOSITORY);
    gh.set_release_git_dir(REPOSITORY, &bare);
    let (private_key, public_key_der) = app_key(s);
    let client_id = "Iv23liGangplankRelease0";
    gh.add_app(App {
        client_id: client_id.into(),
        slug: "gangplank-release".into(),
        public_key_der,
        permissions: [("contents", "write"), ("workflows", "write"), ("metadata", "read")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        repositories: vec![REPOSITORY.into()],
    });

    let mut inputs = serde_json::Map::new();
    inputs.insert("version".into(), json!(version));
    let run = ActRun {
        label: "release".into(),
        repo_dir: work.clone(),
        repository: REPOSITORY.into(),
        repositories: repositories.clone(),
        workflow: ".github/workflows/release.yml".into(),
        event: Event::WorkflowDispatch { branch: "main".into(), inputs },
        run_id: 7_000_000 + u64::from(std::process::id() % 1_000_000),
        actor: "maintainer".into(),
        secrets: BTreeMap::from([
            ("RELEASE_APP_PRIVATE_KEY".into(), private_key.clone()),
            ("GITHUB_TOKEN".into(), gh.token()),
        ]),
        vars: BTreeMap::from([("RELEASE_APP_CLIENT_ID".into(), client_id.into())]),
        env: BTreeMap::from([
            ("GITHUB_API_URL".into(), gh.url().to_string()),
            ("GITHUB_SERVER_URL".into(), gh.url().to_string()),
        ]),
        // The jobs' cargo shares this build's target dir, so the release build reuses the dependencies built
        // for it (as a runner's cache would) instead of a cold build per run.
        machine_env: BTreeMap::from([("CARGO_TARGET_DIR".into(), target_dir().display().to_string())]),
        enter: vec![],
        artifact_dir: s.join("artifacts"),
        artifact_port: None,
        matrix: vec![format!("target:{TARGET}")],
        local_repositories: BTreeMap::new(),
        cache_dir: target_dir().join("act-cache").join("release"),
    };
    let outcome = run.run(Some(gh)).unwrap();
    let report = format!("{}transcript: {}", outcome.summary(), outcome.transcript.display());
    assert!(outcome.success, "release.yml under act failed:\n{report}");
    assert_eq!(outcome.result("publish"), "success", "{report}");
    assert_eq!(outcome.result("tag-check"), "not run", "a dispatch checks no tag: {report}");

    // The app's token: minted once, for this repository, with exactly the two write permissions; never printed.
    let tokens = gh.installation_tokens();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let expected: BTreeMap<String, String> =
        [("contents", "write"), ("workflows", "write")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    assert_eq!(tokens[0].permissions, expected);
    assert_eq!(tokens[0].repositories, [REPOSITORY]);
    assert!(!outcome.log.contains(&tokens[0].token), "the installation token is in the transcript");
    let key_line = private_key.lines().nth(1).unwrap();
    assert!(!outcome.log.contains(key_line), "the app's private key is in the transcript");

    // The tags: `vX.Y.Z` (annotated) and `v1` on one release commit, whose parent is the dispatched commit and
    // whose one change is the archive's checksum.
    let tag = format!("v{version}");
    let major = format!("v{}", version.split('.').next().unwrap());
    let release_commit = git_trim(&bare, &["rev-parse", &format!("refs/tags/{tag}^{{commit}}")]);
    assert_eq!(git_trim(&bare, &["cat-file", "-t", &format!("refs/tags/{tag}")]), "tag", "{tag} is annotated");
    assert_eq!(git_trim(&bare, &["rev-parse", &format!("refs/tags/{major}^{{commit}}")]), release_commit);
    assert_eq!(git_trim(&bare, &["rev-parse", &format!("{release_commit}^")]), dispatched);
    assert_eq!(git_trim(&bare, &["diff", "--name-only", &dispatched, &release_commit]), "actions/checksums.txt");
    assert_eq!(git_trim(&bare, &["rev-parse", "refs/heads/main"]), dispatched, "main is not changed by a release");
    let checksums = git_trim(&bare, &["show", &format!("{release_commit}:actions/checksums.txt")]);
    let archive = format!("gangplank-{version}-{TARGET}.tar.gz");
    let listed: Vec<&str> = checksums.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(listed.len(), 1, "{checksums}");
    let (sum, name) = listed[0].split_once("  ").unwrap();
    assert_eq!(name, archive);

    // The release: published, latest, the changelog's section as notes, the archive with that digest.
    let releases = gh.releases(REPOSITORY);
    assert_eq!(releases.len(), 1, "{releases:?}");
    let r = &releases[0];
    assert_eq!((r.tag_name.as_str(), r.draft, r.latest), (tag.as_str(), false, true));
    assert_eq!(r.name, format!("gangplank {tag}"));
    assert!(r.body.contains("### Added"), "release notes: {}", r.body);
    let names: Vec<&str> = r.assets.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, [archive.as_str(), "SHA256SUMS", "manifest.json"]);
    let bytes = &r.assets[0].bytes;
    let file = s.join(&archive);
    std::fs::write(&file, bytes).unwrap();
    let hashed = run_checked(scrubbed_command("sha256sum").arg(&file)).unwrap();
    assert_eq!(hashed.split_whitespace().next(), Some(sum), "the released archive is the one checksums.txt lists");
    Released { bare, commit: release_commit, version, major, sum: sum.to_string() }
}

/// The owner of the app repository the story makes.
const APP_OWNER: &str = "acme";

/// A user's repository made from `examples/compose-app`, using gangplank's actions by
/// `gangplank-dev/gangplank/actions/<name>@<ref>` as the example does, at a release release.yml cut, resolved by
/// act from a copy of gangplank at that ref (`--local-repository`), with a fresh target host.
struct StoryBed {
    _forwards: Vec<Forward>,
    /// The release's scratch folder (its bare repository).
    _release_scratch: tempfile::TempDir,
    released: Released,
    /// `GANGPLANK_DOWNLOAD_URL` on the runner: the stand-in's release downloads, at the runner's loopback.
    download_url: String,
    _hub: Registry,
    github: GitHub,
    hosts: Hosts,
    /// The app repository's work tree (`<repositories>/acme/<name>`; the checkout stand-in's source).
    repo: PathBuf,
    /// `acme/<name>`
    repository: String,
    repositories: tempfile::TempDir,
    /// `gangplank-dev/gangplank@<ref>` → gangplank's work tree at that ref.
    gangplank: BTreeMap<String, PathBuf>,
    artifacts: tempfile::TempDir,
    app_name: String,
    app_dir: AppDir,
    secrets: BTreeMap<String, String>,
    vars: BTreeMap<String, String>,
    next_run: u64,
    /// One line per run: label, jobs with results and wall times, compiles.
    summary: String,
}

impl StoryBed {
    /// Everything set up: a release of this work tree cut by release.yml, and the app repository using it as the
    /// README says (deploy and sync-secrets pinned by the release commit's SHA, status by `@v1` as the example
    /// ships), so every job downloads the released executable and none compiles.
    fn start() -> StoryBed {
        let (token, hosts, registry, forwards) = runner_and_target("story");
        let github = GitHub::start_on(&hosts.gateway);
        github.set_token(&token);
        let release_scratch = tempfile::Builder::new().prefix("gangplank-act-release-").tempdir().unwrap();
        let released = cut_release(release_scratch.path(), &github);
        // install.sh downloads over plain http from a loopback host only: the stand-in at the runner's loopback.
        let gh_port: u16 = github.url().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap();
        let gh_addr = format!("{}:{gh_port}", hosts.gateway);
        let mut forwards = forwards;
        forwards.push(hosts.hosts[0].forward_loopback(gh_port, &gh_addr).expect("forwarding the GitHub stand-in"));
        let download_url = format!("http://127.0.0.1:{gh_port}/{REPOSITORY}/releases/download");
        // The base images from a registry of their own that anyone may pull from, as from Docker Hub (the app's
        // registry requires a login, as GHCR does, and the server logs in to that one only), reached at each
        // host's loopback too.
        let hub = Registry::start_on(&hosts.gateway).expect("starting the base images' registry");
        let hub_port: u16 = hub.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap();
        for h in &hosts.hosts {
            forwards.push(h.forward_loopback(hub_port, &hub.addr).expect("forwarding the base images' registry"));
        }
        let map = testbed_base_images(&hosts, &format!("127.0.0.1:{hub_port}"), None);

        // gangplank at the release commit, where act finds `gangplank-dev/gangplank@<sha>` and `@v1`.
        let repositories = tempfile::Builder::new().prefix("gangplank-act-git-").tempdir().unwrap();
        let gangplank = repositories.path().join(REPOSITORY);
        run_checked(scrubbed_command("git").args(["clone", "-q"]).arg(&released.bare).arg(&gangplank))
            .expect("cloning the released repository");
        git(&gangplank, &["checkout", "-q", "--detach", &released.commit]);
        let sha = released.commit.clone();

        // The user's repository: the example folder as its root (README: "Copy this folder as the root of a new
        // repository"), deploy and sync-secrets pinned by the release's commit SHA (README, "Pinning"), status
        // left at `@v1` as shipped, then the testbed's one substitution.
        let app_name = unique_name("compose-app");
        let repository = format!("{APP_OWNER}/{app_name}");
        let repo = repositories.path().join(&repository);
        std::fs::create_dir_all(&repo).unwrap();
        run_checked(scrubbed_command("cp").arg("-a").arg(gangplank.join("examples/compose-app/.")).arg(&repo))
            .expect("copying the example");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        commit(&repo, "compose-app, from gangplank's examples/compose-app");
        let pinned = pin_gangplank_actions(&repo, &sha).expect("pinning gangplank");
        assert_eq!(pinned.len(), 3, "deploy, status and sync-secrets use gangplank's actions: {pinned:?}");
        git(&repo, &["checkout", "HEAD", "--", ".github/workflows/status.yml"]);
        commit(&repo, &format!("Pin gangplank's deploy and sync actions to {sha} (v{})", released.version));
        let status_yml = std::fs::read_to_string(repo.join(".github/workflows/status.yml")).unwrap();
        assert!(status_yml.contains(&format!("gangplank/actions/status@{}\n", released.major)), "{status_yml}");
        let changed = use_testbed_base_images(&repo, &map).expect("substituting base images");
        assert!(!changed.is_empty(), "the example names none of the base images any more: update the map");
        commit(&repo, "testbed: the example's base images from the testbed registry");

        github.add_repo(&repository);
        github.add_environment(&repository, "production");
        let artifacts = tempfile::Builder::new().prefix("gangplank-act-artifacts-").tempdir().unwrap();
        github.set_artifact_dir(artifacts.path());

        // The server's set-up (the example's README, step 1): an empty app dir owned by the deploy user. The
        // default app dir is /opt/<repository name>; nothing else is on the host.
        let app_dir = AppDir(PathBuf::from("/opt").join(&app_name));
        std::fs::create_dir(&app_dir.0).expect("creating the app dir");
        run_checked(scrubbed_command("chown").arg(format!("{FAST_USER}:")).arg(&app_dir.0)).expect("chown app dir");

        // The repository's settings (README, step 2).
        let target = &hosts.hosts[1];
        let secrets = BTreeMap::from([
            ("GITHUB_TOKEN".to_string(), token.clone()),
            ("SECRETS_SYNC_TOKEN".to_string(), token.clone()),
            ("DEPLOY_SSH_KEY".to_string(), hosts.client_key().to_string()),
            ("DATABASE_PASSWORD".to_string(), "story-database-password-0123".to_string()),
            ("SECRET_KEY".to_string(), "story-secret-key-0123456789-abcdefghijkl".to_string()),
            ("REGISTRY_READ_TOKEN".to_string(), token.clone()),
        ]);
        let vars = BTreeMap::from([
            ("DEPLOY_HOST".to_string(), target.host_spec()),
            ("DEPLOY_KNOWN_HOSTS".to_string(), target.sshd().known_hosts.clone()),
            ("REGISTRY".to_string(), registry),
            ("REGISTRY_USERNAME".to_string(), ACTOR.to_string()),
            ("APP_MODE".to_string(), "production".to_string()),
            ("APP_URL".to_string(), format!("http://{}/", target.addr)),
        ]);
        StoryBed {
            _forwards: forwards,
            _hub: hub,
            github,
            hosts,
            repo,
            repository,
            repositories,
            gangplank: BTreeMap::from([
                (format!("{REPOSITORY}@{sha}"), gangplank.clone()),
                (format!("{REPOSITORY}@{}", released.major), gangplank),
            ]),
            _release_scratch: release_scratch,
            released,
            download_url,
            artifacts,
            app_name,
            app_dir,
            secrets,
            vars,
            next_run: 9_200_000_001,
            summary: String::new(),
        }
    }

    /// Runs `workflow` (a file name under .github/workflows) for `event` at the repository's HEAD.
    fn run(&mut self, label: &str, workflow: &str, event: Event) -> ActOutcome {
        let runner = &self.hosts.hosts[0];
        let run_id = self.next_run;
        self.next_run += 1;
        // The one substitution on the runner: the release downloads come from the stand-in, not github.com.
        let machine_env = BTreeMap::from([
            ("DOCKER_HOST".to_string(), runner.docker_host.clone()),
            ("CARGO_NET_OFFLINE".to_string(), "true".to_string()),
            ("GANGPLANK_DOWNLOAD_URL".to_string(), self.download_url.clone()),
        ]);
        let run = ActRun {
            label: format!("story-{label}"),
            repo_dir: self.repo.clone(),
            repository: self.repository.clone(),
            repositories: self.repositories.path().to_path_buf(),
            workflow: format!(".github/workflows/{workflow}"),
            event,
            run_id,
            actor: ACTOR.to_string(),
            secrets: self.secrets.clone(),
            vars: self.vars.clone(),
            env: BTreeMap::from([("GITHUB_API_URL".to_string(), self.github.url().to_string())]),
            machine_env,
            enter: runner.enter_net(),
            artifact_dir: self.artifacts.path().to_path_buf(),
            artifact_port: Some(34567),
            cache_dir: target_dir().join("act-cache").join("runner"),
            local_repositories: self.gangplank.clone(),
            matrix: vec![],
        };
        let outcome = run.run(Some(&self.github)).unwrap_or_else(|e| panic!("running act ({label}): {e:#}"));
        let text =
            format!("{label} ({workflow}, run {run_id}): {}\n{}", outcome.transcript.display(), outcome.summary());
        println!("act {text}");
        self.summary.push_str(&text);
        let path = target_dir().join("act-transcripts").join("story-summary.log");
        std::fs::write(&path, &self.summary).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        outcome
    }

    fn head(&self) -> String {
        git(&self.repo, &["rev-parse", "HEAD"]).trim().to_string()
    }

    fn state(&self) -> Value {
        let path = self.app_dir.0.join(".gangplank/state.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    /// The server `.env` as `KEY → value`.
    fn server_env(&self) -> BTreeMap<String, String> {
        let path = self.app_dir.0.join(".env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches(|c| c == '"' || c == '\'').to_string()))
            .collect()
    }

    /// GET `path` through the deploy host's published port 80 (the proxy), from this machine.
    fn http(&self, path: &str) -> (u16, String) {
        let addr = format!("{}:80", self.hosts.hosts[1].addr);
        wait_for(&format!("http://{addr}{path} to answer"), std::time::Duration::from_secs(30), || {
            http_get(&addr, path, None).ok()
        })
        .unwrap()
    }

    /// GET the proxy's loopback-only health port on the deploy host, from inside the host (127.0.0.1:8080).
    fn loopback_health(&self) -> String {
        let target = &self.hosts.hosts[1];
        let enter = target.enter_net();
        let mut cmd = scrubbed_command(&enter[0]);
        cmd.args(&enter[1..]).args(["curl", "-fsS", "--max-time", "10", "http://127.0.0.1:8080/healthz"]);
        run_checked(&mut cmd).unwrap_or_else(|e| panic!("the host's loopback health port: {e:#}"))
    }

    /// The image of the running `web` container(s) on the deploy host.
    fn web_images(&self) -> Vec<String> {
        let target = &self.hosts.hosts[1];
        let ids = run_checked(target.docker().args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.app_name),
            "--filter",
            "label=com.docker.compose.service=web",
        ]))
        .unwrap();
        ids.split_whitespace()
            .map(|id| {
                run_checked(target.docker().args(["inspect", "--format", "{{.Config.Image}}", id]))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect()
    }

    /// Asserts the host serves `tag`: state.json, the one running `web` container, HTTP through the proxy's
    /// port 80 and its loopback health port.
    fn assert_serving(&self, tag: &str) {
        assert_eq!(self.state()["current"]["tag"], json!(tag), "state.json: {}", self.state());
        let images = self.web_images();
        assert!(
            images.len() == 1 && images[0].ends_with(&format!("/web:{tag}")),
            "the running web containers: {images:?}, expected one of tag {tag}"
        );
        let (status, body) = self.http("/healthz");
        assert_eq!((status, body.trim()), (200, "ok"));
        let (status, body) = self.http("/");
        assert_eq!(status, 200);
        assert!(body.starts_with("compose-app"), "{body}");
        assert_eq!(self.loopback_health().trim(), "ok");
    }
}

/// Release, then the user's story (issue 20). (0) release.yml cuts a release of this work tree
/// ([`cut_release`]). Then an app repository made from `examples/compose-app` runs its workflows under act, with
/// gangplank's deploy and sync actions pinned by the release commit's SHA
/// (`uses: gangplank-dev/gangplank/actions/<name>@<sha>`) and status by `@v1`, on a fresh target host:
/// (1) sync-secrets dispatched once (apply): GitHub's secrets written, the server `.env` created;
/// (2) a push: build and push → verify → deploy, the app serving through the proxy; (3) a release broken in
/// production: deploy red, rolled back as the workflow documents, the previous tag serving; (4) the fix, deployed
/// by a dispatch from the Actions tab: green; (5) the nightly sync (a `schedule` event, no repository in its
/// payload): green, plan only, no deployment; (6) status.yml: green, naming the running tag.
///
/// Every job's install.sh downloads the released archive and checks it against the release commit's
/// `checksums.txt`: no run compiles.
#[test]
#[ignore = "act tier: cargo xtask test --full"]
fn release_then_the_users_story_pinned_at_it_under_act() {
    let mut bed = StoryBed::start();
    let installed = format!("installed gangplank {} ({TARGET}), sha256 {}", bed.released.version, bed.released.sum);
    let mut compiles = vec![];
    let image = format!("{}/{}/web", bed.vars["REGISTRY"], bed.repository);
    let production = Scope::Env(bed.repository.clone(), "production".to_string());

    // 1. First run: sync-secrets from the Actions tab (apply).
    assert!(!bed.app_dir.0.join(".env").exists());
    let sync = bed.run(
        "1-sync-apply",
        "sync-secrets.yml",
        Event::WorkflowDispatch { branch: "main".into(), inputs: serde_json::Map::new() },
    );
    assert_jobs(&sync, &[("sync", "success")]);
    compiles.push(sync.compiles);
    assert_eq!(sync.output("sync", "image", "image"), Some(image.as_str()), "{}", sync.transcript.display());
    let env = bed.server_env();
    assert_eq!(env.get("WEB_IMAGE"), Some(&image), "{env:?}");
    assert_eq!(env.get("APP_MODE").map(String::as_str), Some("production"));
    assert_eq!(env.get("POSTGRES_PASSWORD"), Some(&bed.secrets["DATABASE_PASSWORD"]));
    assert_eq!(env.get("SECRET_KEY"), Some(&bed.secrets["SECRET_KEY"]));
    assert_eq!(bed.github.secret(&production, "DATABASE_PASSWORD"), Some(bed.secrets["DATABASE_PASSWORD"].clone()));
    assert_eq!(bed.github.secret(&production, "SECRET_KEY"), Some(bed.secrets["SECRET_KEY"].clone()));
    // APP_MODE is plain config without an environment in the manifest: a repository variable.
    let repository = Scope::Repo(bed.repository.clone());
    assert_eq!(bed.github.variable(&repository, "APP_MODE").as_deref(), Some("production"));
    assert!(bed.github.deployments(&bed.repository).is_empty(), "a sync made a deployment");
    assert!(sync.log.contains(&installed), "install.sh at the release SHA: {}", sync.transcript.display());

    // 2. A push to main: build and push → verify → deploy, serving.
    let tag1 = bed.head()[..12].to_string();
    let first = bed.run("2-push", "deploy.yml", Event::Push { branch: "main".into() });
    assert_jobs(&first, &[("push", "success"), ("verify", "success"), ("deploy", "success")]);
    compiles.push(first.compiles);
    let t = first.transcript.display().to_string();
    assert_eq!(first.output("deploy", "deploy", "deployed-tag"), Some(tag1.as_str()), "{t}");
    assert_eq!(first.output("deploy", "decide", "rollback"), Some("false"), "{t}");
    bed.assert_serving(&tag1);
    let deployments = bed.github.deployments(&bed.repository);
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!((deployments[0].environment.as_str(), deployments[0].state()), ("production", "success"));

    // 3. A release broken in production only (healthy under verify's staging settings from ci.env).
    let app = bed.repo.join("app.py");
    let text = std::fs::read_to_string(&app).unwrap();
    let broken = text.replacen(
        "        if self.path == \"/healthz\":\n",
        "        if self.path == \"/healthz\" and os.environ.get(\"APP_MODE\") == \"production\":\n            missing = [\"a setting only production lacks\"]\n        if self.path == \"/healthz\":\n",
        1,
    );
    assert_ne!(broken, text, "app.py no longer has the /healthz branch the broken release edits");
    std::fs::write(&app, broken).unwrap();
    commit(&bed.repo, "A release that is broken in production only");
    let tag2 = bed.head()[..12].to_string();
    let second = bed.run("3-push-broken", "deploy.yml", Event::Push { branch: "main".into() });
    assert_jobs(&second, &[("push", "success"), ("verify", "success"), ("deploy", "failure")]);
    compiles.push(second.compiles);
    let t = second.transcript.display().to_string();
    // The workflow's documented rule: deploy-remote changed the host and did not finish healthy, so the
    // previous tag goes back: by deploy-remote itself (rolled-back=true, and the decide step then leaves the
    // rollback step out), or, when it could not (killed), by the rollback step.
    assert_eq!(second.output("deploy", "deploy", "changed"), Some("true"), "{t}");
    assert_ne!(second.step("deploy", "deploy"), Some("success"), "{t}");
    let rolled_back = second.output("deploy", "deploy", "rolled-back") == Some("true");
    let decide = second.output("deploy", "decide", "rollback");
    assert_eq!(decide, Some(if rolled_back { "false" } else { "true" }), "{t}");
    println!(
        "broken release: deploy-remote rolled back itself: {rolled_back}; the workflow's rollback step ran: {}",
        !rolled_back
    );
    bed.assert_serving(&tag1);
    assert!(bed.state()["history"].to_string().contains(&tag2), "the broken release is in the history");

    // 4. The fix (a revert), deployed from the Actions tab: the example's dispatch runs the whole pipeline at the
    // branch's head, verification included.
    git(&bed.repo, &["-c", "user.name=t", "-c", "user.email=t@example.invalid", "revert", "--no-edit", "HEAD"]);
    let tag3 = bed.head()[..12].to_string();
    let third = bed.run(
        "4-dispatch",
        "deploy.yml",
        Event::WorkflowDispatch { branch: "main".into(), inputs: serde_json::Map::new() },
    );
    assert_jobs(&third, &[("push", "success"), ("verify", "success"), ("deploy", "success")]);
    compiles.push(third.compiles);
    assert_eq!(third.output("deploy", "deploy", "deployed-tag"), Some(tag3.as_str()), "{}", third.transcript.display());
    bed.assert_serving(&tag3);

    // 5. The nightly sync: a schedule event as GitHub sends it (no repository object), plan only.
    let deployments: Vec<u64> = bed.github.deployments(&bed.repository).iter().map(|d| d.id).collect();
    let env_before = std::fs::read(bed.app_dir.0.join(".env")).unwrap();
    let nightly = bed.run(
        "5-sync-schedule",
        "sync-secrets.yml",
        Event::Schedule { branch: "main".into(), cron: "17 3 * * *".into() },
    );
    assert_jobs(&nightly, &[("sync", "success")]);
    compiles.push(nightly.compiles);
    let t = nightly.transcript.display().to_string();
    assert_eq!(nightly.output("sync", "image", "image"), Some(image.as_str()), "{t}");
    assert_eq!(std::fs::read(bed.app_dir.0.join(".env")).unwrap(), env_before, "a plan changed the server .env");
    let after: Vec<u64> = bed.github.deployments(&bed.repository).iter().map(|d| d.id).collect();
    assert_eq!(after, deployments, "the nightly sync made a deployment");
    bed.assert_serving(&tag3);

    // 6. status from the Actions tab: read-only, names the running tag.
    let state_before = bed.state();
    let status = bed.run(
        "6-status",
        "status.yml",
        Event::WorkflowDispatch { branch: "main".into(), inputs: serde_json::Map::new() },
    );
    assert_jobs(&status, &[("status", "success")]);
    compiles.push(status.compiles);
    assert!(
        status.log.lines().any(|l| l.contains("current:") && l.contains(&tag3)),
        "status names the running tag {tag3}: {}",
        status.transcript.display()
    );
    assert_eq!(bed.state(), state_before, "status changed the host's state");
    assert!(status.log.contains(&installed), "install.sh at v1: {}", status.transcript.display());
    // At a release every job downloads the archive: nothing compiles, at the SHA or at v1.
    assert_eq!(compiles, [0, 0, 0, 0, 0, 0], "compiles per run");
    println!(
        "compiles per run: {compiles:?}\nsummary: {}",
        target_dir().join("act-transcripts/story-summary.log").display()
    );
}
