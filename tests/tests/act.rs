//! This repository's workflows under nektos/act against the testbed (tests/src/act.rs): the long tier
//! (`cargo xtask test --full`), each test `#[ignore]`d in the default run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gangplank_testbed::act::{repo_root, target_dir, ActRun, Event};
use gangplank_testbed::github::{App, GitHub};
use gangplank_testbed::{run_checked, scrubbed_command};
use serde_json::json;

/// The repository the release is made for (the owner the README's `uses:` lines name).
const REPO: &str = "gangplank-dev/gangplank";
/// The one target a release can build here: arm64 Linux and macOS need runners of their own.
const TARGET: &str = "x86_64-unknown-linux-musl";

fn git(dir: &Path, args: &[&str]) -> String {
    run_checked(scrubbed_command("git").arg("-C").arg(dir).args(args))
        .unwrap_or_else(|e| panic!("git {args:?} in {}: {e:#}", dir.display()))
        .trim()
        .to_string()
}

/// The work tree as it is (tracked files with their uncommitted changes) as the one commit of branch `main` of a
/// new repository at `dir`, so the release runs what is being tested.
fn snapshot_work_tree(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
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
    git(dir, &["add", "-A"]);
    git(
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

/// actions/install.sh of the action at `commit`, laid out where the runner puts `uses: <REPO>/actions/…@<reference>`
/// (`…/_actions/<owner>/<name>/<reference>/`), with downloads from the stand-in: the executable it installed.
fn install_at(bare: &Path, commit: &str, reference: &str, scratch: &Path, gh: &GitHub) -> (PathBuf, String) {
    let action = scratch.join("_actions").join(REPO).join(reference);
    std::fs::create_dir_all(&action).unwrap();
    git(&action, &["init", "-q"]);
    git(&action, &["fetch", "-q", &format!("file://{}", bare.display()), commit]);
    git(&action, &["checkout", "-q", "--detach", "FETCH_HEAD"]);
    let output = scratch.join(format!("output-{reference}"));
    let out = scrubbed_command("bash")
        .arg(action.join("actions/install.sh"))
        .env("GANGPLANK_DOWNLOAD_URL", format!("{}/{REPO}/releases/download", gh.url()))
        .env("RUNNER_TOOL_CACHE", scratch.join(format!("tool-cache-{reference}")))
        .env("RUNNER_TEMP", scratch.join("runner-temp"))
        .env("GITHUB_OUTPUT", &output)
        .env_remove("GANGPLANK_BIN_DIR")
        .current_dir(scratch)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "install.sh at {reference}:\n{log}");
    let text = std::fs::read_to_string(&output).unwrap();
    let path = text.lines().find_map(|l| l.strip_prefix("path=")).expect("install.sh wrote path=").to_string();
    (PathBuf::from(path), log)
}

/// release.yml, dispatched with the work tree's version, runs its x86_64 Linux build (`cargo xtask dist`, the
/// static archive checked alone in an empty image), then publish: the release commit with the archive's checksum
/// and its tag pushed to the repository (a local bare one), a draft release made, its assets uploaded and the
/// release published on the GitHub API stand-in, and `v1` moved, every write with the app's installation token
/// (contents and workflows write). Then install.sh, as `uses: …@<release commit SHA>` and `uses: …@v1`,
/// downloads the archive from the release and verifies it against the committed checksum.
///
/// What differs from GitHub (docs/releasing.md, "Testing the workflow locally"): only the x86_64 musl entry of the
/// build matrix runs (arm64 Linux and macOS need their own runners), so the release holds one archive and the
/// tag check (which wants all four) is not run; the jobs run on this machine, not in a fresh VM.
#[test]
#[ignore = "long tier: cargo xtask test --full"]
fn release_workflow_publishes_a_release_that_install_sh_verifies_at_the_sha_and_at_v1() {
    let version = workspace_version();
    let scratch = tempfile::Builder::new().prefix("gangplank-act-release-").tempdir().unwrap();
    let s = scratch.path();
    let work = s.join("work");
    snapshot_work_tree(&work);
    let dispatched = git(&work, &["rev-parse", "HEAD"]);
    let repositories = s.join("repositories");
    let bare = repositories.join(REPO);
    std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
    run_checked(scrubbed_command("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare)).unwrap();

    let gh = GitHub::start();
    gh.add_repo(REPO);
    gh.set_release_git_dir(REPO, &bare);
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
        repositories: vec![REPO.into()],
    });

    let mut inputs = serde_json::Map::new();
    inputs.insert("version".into(), json!(version));
    let run = ActRun {
        label: "release".into(),
        repo_dir: work.clone(),
        repository: REPO.into(),
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
        cache_dir: target_dir().join("act-cache").join("release"),
    };
    let outcome = run.run(Some(&gh)).unwrap();
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
    assert_eq!(tokens[0].repositories, [REPO]);
    assert!(!outcome.log.contains(&tokens[0].token), "the installation token is in the transcript");
    let key_line = private_key.lines().nth(1).unwrap();
    assert!(!outcome.log.contains(key_line), "the app's private key is in the transcript");

    // The tags: `vX.Y.Z` (annotated) and `v1` on one release commit, whose parent is the dispatched commit and
    // whose one change is the archive's checksum.
    let tag = format!("v{version}");
    let major = format!("v{}", version.split('.').next().unwrap());
    let release_commit = git(&bare, &["rev-parse", &format!("refs/tags/{tag}^{{commit}}")]);
    assert_eq!(git(&bare, &["cat-file", "-t", &format!("refs/tags/{tag}")]), "tag", "{tag} is annotated");
    assert_eq!(git(&bare, &["rev-parse", &format!("refs/tags/{major}^{{commit}}")]), release_commit);
    assert_eq!(git(&bare, &["rev-parse", &format!("{release_commit}^")]), dispatched);
    assert_eq!(git(&bare, &["diff", "--name-only", &dispatched, &release_commit]), "actions/checksums.txt");
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), dispatched, "main is not changed by a release");
    let checksums = git(&bare, &["show", &format!("{release_commit}:actions/checksums.txt")]);
    let archive = format!("gangplank-{version}-{TARGET}.tar.gz");
    let listed: Vec<&str> = checksums.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(listed.len(), 1, "{checksums}");
    let (sum, name) = listed[0].split_once("  ").unwrap();
    assert_eq!(name, archive);

    // The release: published, latest, the changelog's section as notes, the archive with that digest.
    let releases = gh.releases(REPO);
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

    // install.sh, as the runner lays out `uses: …@<sha>` and `uses: …@v1`: downloads and verifies that archive.
    let install = s.join("install");
    for reference in [release_commit.as_str(), major.as_str()] {
        let (exe, log) = install_at(&bare, &release_commit, reference, &install, &gh);
        assert!(
            log.contains(&format!("installed gangplank {version} ({TARGET}), sha256 {sum}")),
            "{reference}:\n{log}"
        );
        assert!(!log.contains("building gangplank"), "{reference}: built from source:\n{log}");
        let out = std::process::Command::new(&exe).arg("--version").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("gangplank {version}"), "{reference}");
    }
}
