//! `gangplank sync-secrets` end to end: the real executable as a child process with a scrubbed environment,
//! against the GitHub API stand-in and the testbed's real sshd (issue 5, "Must show").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gangplank_testbed::github::{GitHub, Limit, Scope};
use gangplank_testbed::{assert_no_secret, scrubbed_command};

/// `sync-secrets` as `gangplank sync-secrets`: the executable, then the subcommand.
const GANGPLANK: &str = env!("CARGO_BIN_EXE_gangplank");

/// A working directory with a manifest and a values file.
struct Case {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
    output_text: String,
    summary: String,
    plan: String,
}

impl Run {
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
    fn out(&self, name: &str) -> &str {
        self.outputs.get(name).map(String::as_str).unwrap_or_else(|| panic!("no output {name}: {:?}", self.outputs))
    }
    /// No secret value anywhere we print or write, raw or base64 (add-mask lines excepted).
    fn assert_no_secret(&self, secret: &str) {
        let texts = [
            ("stdout", self.stdout.as_str()),
            ("stderr", self.stderr.as_str()),
            ("outputs", self.output_text.as_str()),
            ("summary", self.summary.as_str()),
            ("plan file", self.plan.as_str()),
        ];
        assert_no_secret(&texts, secret);
        for line in secret.lines().filter(|l| l.len() >= 8) {
            assert_no_secret(&texts, line);
        }
    }
}

impl Case {
    fn new(manifest: &str, values: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secrets.yml"), manifest).unwrap();
        std::fs::write(dir.path().join("values.env"), values).unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let out_file = self.path("github_output");
        let summary_file = self.path("step_summary");
        std::fs::write(&out_file, "").unwrap();
        std::fs::write(&summary_file, "").unwrap();
        let mut cmd = scrubbed_command(GANGPLANK);
        cmd.arg("sync-secrets")
            .current_dir(self.dir.path())
            .args(["--manifest", "secrets.yml", "--values-file", "values.env"])
            .args(args)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &out_file)
            .env("GITHUB_STEP_SUMMARY", &summary_file)
            .env("RUNNER_TEMP", self.dir.path())
            // The stand-in has no write limit unless a test sets one, so writes go unpaced here (as on a
            // server without limits) and the suite stays fast; pacing has its own test, which sets it.
            .env("INPUT_WRITE_INTERVAL", "0s")
            .envs(env.iter().copied());
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.command(args, env).output().expect("run sync-secrets");
        self.collect(out)
    }

    /// Start the binary with its stderr in `stderr.log`, so a test can wait on what it has printed so far.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let log = std::fs::File::create(self.path("stderr.log")).unwrap();
        self.command(args, env).stdout(std::process::Stdio::piped()).stderr(log).spawn().expect("start sync-secrets")
    }

    fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(self.path("stderr.log")).unwrap_or_default()
    }

    /// Wait for a spawned run to end and read what it left.
    fn wait(&self, child: std::process::Child) -> Run {
        let mut out = child.wait_with_output().expect("wait for sync-secrets");
        out.stderr = std::fs::read(self.path("stderr.log")).unwrap_or_default();
        self.collect(out)
    }

    fn collect(&self, out: std::process::Output) -> Run {
        let out_file = self.path("github_output");
        let summary_file = self.path("step_summary");
        let output_text = std::fs::read_to_string(&out_file).unwrap();
        let outputs: BTreeMap<String, String> = gangplank_core::actions::parse_output_file(&output_text)
            .expect("GITHUB_OUTPUT parses")
            .into_iter()
            .collect();
        let plan = outputs.get("plan-file").map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs,
            output_text,
            summary: std::fs::read_to_string(&summary_file).unwrap(),
            plan,
        }
    }

    /// Run against the stand-in (github target only).
    fn gh(&self, gh: &GitHub, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec!["--mode", mode, "--api-url", gh.url(), "--repository", "acme/app", "--targets", "github"];
        args.extend_from_slice(extra);
        let token = gh.token();
        let mut envs = vec![("INPUT_GITHUB_TOKEN", token.as_str())];
        envs.extend_from_slice(env);
        self.run(&args, &envs)
    }
}

/// A value of `len` bytes that no placeholder rule matches.
fn random_value(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut s = String::from("k9");
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
    }
    s.truncate(len);
    s
}

const MULTILINE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDcanary7Tq0pLmN3vXy\n-----END OPENSSH PRIVATE KEY-----\n";

fn writes(gh: &GitHub) -> usize {
    gh.requests().iter().filter(|r| r.method != "GET").count()
}

// ---------------------------------------------------------------------------------------------------
// Manifest rules: a failing value stops every mode with exit 2 before anything is read or written.

#[test]
fn every_rule_fails_with_exit_2_in_every_mode_and_nothing_is_touched() {
    let gh = GitHub::start();
    let big = random_value(48 * 1024 + 1, 7);
    // (manifest entry, values file, key, words the report must name)
    let cases: Vec<(String, String, &str, &str)> = vec![
        ("DB_PASSWORD: {}".into(), "".into(), "DB_PASSWORD", "required"),
        ("API_KEY: {pattern: '^sk-or-'}".into(), "API_KEY=k9Tq0pLmN3vXy8Rw\n".into(), "API_KEY", "pattern"),
        ("DB_PASSWORD: {min-length: 16}".into(), "DB_PASSWORD=k9Tq0pLm\n".into(), "DB_PASSWORD", "min-length"),
        ("DB_PASSWORD: {max-length: 4}".into(), "DB_PASSWORD=k9Tq0pLm\n".into(), "DB_PASSWORD", "max-length"),
        ("BIG: {}".into(), format!("BIG={big}\n"), "BIG", "max-length"),
        (
            "MINIO_ROOT_PASSWORD: {}\n  MINIO_SECRET_KEY: {equals: MINIO_ROOT_PASSWORD}".into(),
            "MINIO_ROOT_PASSWORD=k9Tq0pLmN3vXy8Rw\nMINIO_SECRET_KEY=k9Tq0pLmN3vXy8Rz\n".into(),
            "MINIO_SECRET_KEY",
            "equals",
        ),
        (
            "LLM_PROVIDER: {secret: false, allowed: [openrouter, openai]}".into(),
            "LLM_PROVIDER=gradient\n".into(),
            "LLM_PROVIDER",
            "allowed",
        ),
        (
            "SENTRY_DSN: {forbidden: ['', 'k9Tq0pLmN3vXy8Rw']}".into(),
            "SENTRY_DSN=k9Tq0pLmN3vXy8Rw\n".into(),
            "SENTRY_DSN",
            "forbidden",
        ),
        (
            "GRADIENT_API_KEY: {retired: true}".into(),
            "GRADIENT_API_KEY=k9Tq0pLmN3vXy8Rw\n".into(),
            "GRADIENT_API_KEY",
            "retired",
        ),
        ("OPENAI_API_KEY: {}".into(), "OPENAI_API_KEY=changeme\n".into(), "OPENAI_API_KEY", "placeholder"),
        ("OPENAI_API_KEY: {}".into(), "OPENAI_API_KEY=YOUR_TOKEN_HERE\n".into(), "OPENAI_API_KEY", "placeholder"),
        ("OPENAI_API_KEY: {}".into(), "OPENAI_API_KEY=xxxxxxxx\n".into(), "OPENAI_API_KEY", "placeholder"),
        ("OPENAI_API_KEY: {}".into(), "OPENAI_API_KEY='<your key>'\n".into(), "OPENAI_API_KEY", "placeholder"),
        ("OPENAI_API_KEY: {}".into(), "OPENAI_API_KEY=\"  \"\n".into(), "OPENAI_API_KEY", "placeholder"),
        ("WEIRD: {targets: [env-file]}".into(), "WEIRD='k9$Tq0\\pLm'\n".into(), "WEIRD", "env-file quoting"),
    ];
    for (entry, values, key, rule) in &cases {
        let manifest = format!("values:\n  {entry}\n  OK_VALUE: {{}}\n");
        let values = format!("{values}OK_VALUE=k9Zz8Yy7Xx6Ww5Vv\n");
        let case = Case::new(&manifest, &values);
        for mode in ["check", "plan", "apply"] {
            let before = gh.requests().len();
            // Default targets (github and env-file): the env-file target has no SSH inputs at all, so any
            // attempt to reach it would fail differently; validation must stop the run first.
            let r = case.run(
                &["--mode", mode, "--api-url", gh.url(), "--repository", "acme/app"],
                &[("INPUT_GITHUB_TOKEN", &gh.token())],
            );
            let ctx = format!("{key} / {rule} / {mode}");
            assert_eq!(r.code, 2, "{ctx}: exit code\n{}", r.stderr);
            assert!(
                r.stderr.contains(key) && r.stderr.contains(rule),
                "{ctx}: report must name key and rule:\n{}",
                r.stderr
            );
            assert!(r.stderr.contains("hint:"), "{ctx}: {}", r.stderr);
            assert_eq!(gh.requests().len(), before, "{ctx}: the stand-in was contacted");
            assert_eq!(r.out("invalid"), "1", "{ctx}");
            assert!(r.plan.contains(key) && r.plan.contains("invalid"), "{ctx}: {}", r.plan);
            if let Some(v) = values.lines().find(|l| l.starts_with(&format!("{key}="))) {
                let v = v.split_once('=').unwrap().1.trim_matches(['\'', '"']);
                if v.len() >= 8 && *rule != "allowed" {
                    r.assert_no_secret(v);
                }
            }
        }
    }
    assert!(gh.secrets(&Scope::Repo("acme/app".into())).is_empty());
}

#[test]
fn a_manifest_typo_is_exit_2_naming_the_key() {
    for (manifest, word) in [
        ("values:\n  A:\n    min-lenght: 3\n", "min-lenght"),
        ("default:\n  targets: [github]\nvalues: {}\n", "default"),
        ("values:\n  A: {targets: [gitlab]}\n", "gitlab"),
        ("values:\n  GITHUB_SHA_X: {}\n", "GITHUB_SHA_X"),
        ("values:\n  9LIVES: {}\n", "9LIVES"),
        ("values:\n  A: {equals: NOPE}\n", "NOPE"),
    ] {
        let case = Case::new(manifest, "A=k9Tq0pLmN3vXy8Rw\n");
        let r = case.run(&["--mode", "check"], &[]);
        assert_eq!(r.code, 2, "{manifest}\n{}", r.stderr);
        assert!(r.stderr.contains(word), "{manifest}: {}", r.stderr);
        assert!(r.stderr.contains("hint:"), "{}", r.stderr);
        r.assert_no_secret("k9Tq0pLmN3vXy8Rw");
    }
}

#[test]
fn check_passes_valid_values_and_env_wins_over_the_file() {
    let case = Case::new(
        "values:\n  API_KEY: {pattern: '^sk-or-', min-length: 20}\n  LLM_PROVIDER: {secret: false, allowed: [openrouter]}\n  REDIS_URL: {required: false}\n",
        "API_KEY=changeme\nLLM_PROVIDER=openrouter\n",
    );
    let r = case.run(&["--mode", "check"], &[("API_KEY", "sk-or-k9Tq0pLmN3vXy8Rw")]);
    r.assert_code(0);
    assert_eq!(r.out("invalid"), "0");
    assert!(r.stdout.contains("::add-mask::sk-or-k9Tq0pLmN3vXy8Rw"), "{}", r.stdout);
    r.assert_no_secret("sk-or-k9Tq0pLmN3vXy8Rw");
}

// ---------------------------------------------------------------------------------------------------
// GitHub target against the stand-in.

fn full_manifest() -> &'static str {
    "defaults:\n  targets: [github]\nvalues:\n  \
       API_KEY: {pattern: '^sk-'}\n  \
       DEPLOY_KEY: {}\n  \
       BIG_BLOB: {}\n  \
       DATABASE_PASSWORD:\n    min-length: 16\n    github: {environment: production}\n  \
       SHARED_TOKEN:\n    github: {org: acme, visibility: selected, repositories: [app, acme/web]}\n  \
       ORG_WIDE:\n    github: {org: acme, visibility: all}\n  \
       LLM_PROVIDER: {secret: false, allowed: [openrouter, openai]}\n  \
       ORG_REGION: {secret: false, github: {org: acme, visibility: private}}\n  \
       GRADIENT_API_KEY: {retired: true}\n"
}

#[test]
fn apply_writes_every_scope_and_every_value_decrypts_exactly() {
    let gh = GitHub::start();
    let big = random_value(48 * 1024, 11);
    let api_key = "sk-k9Tq0pLmN3vXy8Rw-canary";
    let db = "k9Db-canary-pass-0123456789";
    let shared = "k9Shared-canary-token-42";
    let org_wide = "k9OrgWide-canary-token-43";
    let case = Case::new(
        full_manifest(),
        &format!("API_KEY={api_key}\nDATABASE_PASSWORD={db}\nLLM_PROVIDER=openrouter\nORG_REGION=fra1\n"),
    );
    let env = [("DEPLOY_KEY", MULTILINE), ("BIG_BLOB", big.as_str()), ("SHARED_TOKEN", shared), ("ORG_WIDE", org_wide)];
    let r = case.gh(&gh, "apply", &[], &env);
    r.assert_code(0);
    let repo = Scope::Repo("acme/app".into());
    assert_eq!(gh.secret(&repo, "API_KEY").as_deref(), Some(api_key));
    assert_eq!(gh.secret(&repo, "DEPLOY_KEY").as_deref(), Some(MULTILINE));
    assert_eq!(gh.secret(&repo, "BIG_BLOB").as_deref(), Some(big.as_str()));
    assert_eq!(gh.secrets(&repo).len(), 3);
    let env_scope = Scope::Env("acme/app".into(), "production".into());
    assert_eq!(gh.secret(&env_scope, "DATABASE_PASSWORD").as_deref(), Some(db));
    let s = gh.org_secret("acme", "SHARED_TOKEN").unwrap();
    assert_eq!((s.value.as_str(), s.visibility.as_str()), (shared, "selected"));
    let mut ids = s.selected_repository_ids.clone();
    ids.sort();
    assert_eq!(ids, vec![gh.repo_id("acme/app").unwrap(), gh.repo_id("acme/web").unwrap()]);
    let s = gh.org_secret("acme", "ORG_WIDE").unwrap();
    assert_eq!((s.value.as_str(), s.visibility.as_str()), (org_wide, "all"));
    assert_eq!(gh.variable(&repo, "LLM_PROVIDER").as_deref(), Some("openrouter"));
    assert_eq!(gh.variable(&Scope::Org("acme".into()), "ORG_REGION").as_deref(), Some("fra1"));
    assert_eq!(gh.org_variable_visibility("acme", "ORG_REGION").unwrap().0, "private");
    assert_eq!((r.out("created"), r.out("updated"), r.out("invalid")), ("8", "0", "0"));
    for secret in [api_key, db, shared, org_wide, MULTILINE, big.as_str()] {
        r.assert_no_secret(secret);
    }
    // Every line of the multi-line key was masked, one add-mask each.
    for line in MULTILINE.lines() {
        assert!(r.stdout.contains(&format!("::add-mask::{line}")), "{line}");
    }

    // The same sealed boxes open with libsodium itself (PyNaCl).
    for (scope, name, want) in
        [(&repo, "DEPLOY_KEY", MULTILINE), (&repo, "BIG_BLOB", big.as_str()), (&env_scope, "DATABASE_PASSWORD", db)]
    {
        let opened = pynacl_open(&gh.private_key_base64(scope), &gh.sealed_box(scope, name).unwrap());
        assert_eq!(opened, want.as_bytes(), "{name} through PyNaCl");
    }

    // Second run: a changed variable is updated in place, an unchanged one is left alone, and the secrets are
    // written again but counted `unknown`, never `updated` (GitHub never shows their values).
    let r = case.gh(
        &gh,
        "apply",
        &[],
        &[
            ("LLM_PROVIDER", "openai"),
            ("DEPLOY_KEY", MULTILINE),
            ("BIG_BLOB", &big),
            ("SHARED_TOKEN", shared),
            ("ORG_WIDE", org_wide),
        ],
    );
    r.assert_code(0);
    assert_eq!(gh.variable(&repo, "LLM_PROVIDER").as_deref(), Some("openai"));
    assert_eq!((r.out("created"), r.out("updated"), r.out("unchanged"), r.out("unknown")), ("0", "1", "1", "6"));
    assert_eq!(gh.secret(&repo, "API_KEY").as_deref(), Some(api_key), "written again, the same value");
    assert!(gh.requests().iter().any(|q| q.method == "PATCH" && q.path.ends_with("/variables/LLM_PROVIDER")));
}

fn pynacl_open(private_key_b64: &str, box_b64: &str) -> Vec<u8> {
    let script = "import base64, os, sys\n\
try:\n    from nacl.public import PrivateKey, SealedBox\n\
except ImportError:\n    sys.stderr.write('PyNaCl is missing: pip install pynacl\\n'); sys.exit(3)\n\
sk = PrivateKey(base64.b64decode(os.environ['SK']))\n\
sys.stdout.buffer.write(SealedBox(sk).decrypt(base64.b64decode(os.environ['BOX'])))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .env("SK", private_key_b64)
        .env("BOX", box_b64)
        .output()
        .expect("python3 is needed to check interoperability with libsodium: apt-get install python3, then pip install pynacl");
    assert!(
        out.status.success(),
        "PyNaCl could not open the box: {} (pip install pynacl)",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn plan_writes_nothing_and_shows_each_action() {
    let gh = GitHub::start();
    let repo = Scope::Repo("acme/app".into());
    // The secret already holds exactly the value of the values file: what a nightly plan sees every night.
    gh.preset_secret(&repo, "API_KEY", "k9Tq0pLmN3vXy8Rw");
    gh.preset_variable(&repo, "LLM_PROVIDER", "openrouter");
    gh.preset_secret(&repo, "GRADIENT_API_KEY", "old");
    let case = Case::new(
        "defaults: {targets: [github]}\nvalues:\n  API_KEY: {}\n  NEW_KEY: {}\n  LLM_PROVIDER: {secret: false}\n  GRADIENT_API_KEY: {retired: true}\n",
        "API_KEY=k9Tq0pLmN3vXy8Rw\nNEW_KEY=k9Zz8Yy7Xx6Ww5Vv\nLLM_PROVIDER=openrouter\n",
    );
    let r = case.gh(&gh, "plan", &["--prune", "true"], &[]);
    r.assert_code(0);
    assert_eq!(writes(&gh), 0, "plan wrote: {:?}", gh.requests());
    assert_eq!(
        (r.out("created"), r.out("updated"), r.out("deleted"), r.out("unchanged"), r.out("unknown")),
        ("1", "0", "1", "1", "1"),
        "an existing secret is unknown, never reported as updated"
    );
    let plan: serde_json::Value = serde_json::from_str(&r.plan).unwrap();
    let actions: BTreeMap<String, String> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap().to_string(), i["action"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(actions["API_KEY"], "unknown");
    assert_eq!(actions["NEW_KEY"], "create");
    assert_eq!(actions["LLM_PROVIDER"], "unchanged");
    assert_eq!(actions["GRADIENT_API_KEY"], "delete");
    assert!(r.summary.contains("NEW_KEY"), "{}", r.summary);
    r.assert_no_secret("k9Tq0pLmN3vXy8Rw");
    r.assert_no_secret("k9Zz8Yy7Xx6Ww5Vv");
}

#[test]
fn prune_deletes_retired_names_only_when_asked() {
    let gh = GitHub::start();
    let repo = Scope::Repo("acme/app".into());
    gh.preset_secret(&repo, "GRADIENT_API_KEY", "old");
    gh.preset_variable(&repo, "OLD_PROVIDER", "gradient");
    gh.preset_secret(&repo, "UNMANAGED", "keep");
    let case = Case::new(
        "defaults: {targets: [github]}\nvalues:\n  API_KEY: {}\n  GRADIENT_API_KEY: {retired: true}\n  OLD_PROVIDER: {retired: true, secret: false}\n",
        "API_KEY=k9Tq0pLmN3vXy8Rw\n",
    );
    let r = case.gh(&gh, "apply", &[], &[]);
    r.assert_code(0);
    assert!(r.stderr.contains("GRADIENT_API_KEY") && r.stderr.contains("prune"), "{}", r.stderr);
    assert!(gh.secret(&repo, "GRADIENT_API_KEY").is_some());
    let r = case.gh(&gh, "apply", &["--prune", "true"], &[]);
    r.assert_code(0);
    assert_eq!(r.out("deleted"), "2");
    assert!(gh.secret(&repo, "GRADIENT_API_KEY").is_none());
    assert!(gh.variable(&repo, "OLD_PROVIDER").is_none());
    assert!(gh.secret(&repo, "UNMANAGED").is_some(), "names the manifest does not mention are left alone");
    assert_eq!(gh.secret(&repo, "API_KEY").as_deref(), Some("k9Tq0pLmN3vXy8Rw"));
}

#[test]
fn rate_limits_are_waited_out_and_every_value_lands() {
    let gh = GitHub::start();
    let n = 12;
    let manifest: String = std::iter::once("defaults: {targets: [github]}\nvalues:\n".to_string())
        .chain((0..n).map(|i| format!("  KEY_{i}: {{}}\n")))
        .collect();
    let values: String = (0..n).map(|i| format!("KEY_{i}={}\n", random_value(24, i as u64))).collect();
    let case = Case::new(&manifest, &values);
    gh.push_limit(Limit::secondary(403, 1));
    gh.push_limit(Limit::primary(429, 2));
    let t = Instant::now();
    let r = case.gh(&gh, "apply", &[], &[]);
    r.assert_code(0);
    assert!(t.elapsed() >= Duration::from_millis(1500), "did not wait: {:?}", t.elapsed());
    assert_eq!(gh.rate_limited(), 2);
    let repo = Scope::Repo("acme/app".into());
    for i in 0..n {
        assert_eq!(gh.secret(&repo, &format!("KEY_{i}")), Some(random_value(24, i as u64)));
    }
    assert!(r.stderr.contains("slow down"), "{}", r.stderr);
}

#[test]
fn never_more_requests_in_flight_than_the_concurrency() {
    let gh = GitHub::start();
    // Long enough that four requests overlap even on a loaded machine (at 40 ms one run saw only three).
    gh.set_latency(Duration::from_millis(200));
    gh.set_concurrency_cap(Some(4));
    let n = 30;
    let manifest: String = std::iter::once("defaults: {targets: [github]}\nvalues:\n".to_string())
        .chain((0..n).map(|i| format!("  KEY_{i}: {{}}\n")))
        .collect();
    let values: String = (0..n).map(|i| format!("KEY_{i}={}\n", random_value(24, 100 + i as u64))).collect();
    let case = Case::new(&manifest, &values);
    let r = case.gh(&gh, "apply", &[], &[]);
    r.assert_code(0);
    assert_eq!(gh.rate_limited(), 0);
    assert_eq!(gh.max_in_flight(), 4, "default concurrency is 4 and it should be used");
    gh.reset_stats();
    let r = case.gh(&gh, "apply", &["--concurrency", "2"], &[]);
    r.assert_code(0);
    assert!(gh.max_in_flight() <= 2, "{}", gh.max_in_flight());
    assert_eq!(gh.secrets(&Scope::Repo("acme/app".into())).len(), n);
}

/// GitHub's content-creation limit, scaled down (8 writes in any 2 s instead of 80 a minute): unpaced, a
/// burst of writes runs into it; paced by `write-interval`, no write is ever refused and every value lands.
#[test]
fn writes_are_paced_under_githubs_content_creation_limit() {
    let gh = GitHub::start();
    gh.set_latency(Duration::from_millis(20));
    let window = Duration::from_secs(2);
    let n = 12;
    let manifest: String = std::iter::once("defaults: {targets: [github]}\nvalues:\n".to_string())
        .chain((0..n).map(|i| format!("  KEY_{i}: {{}}\n")))
        .collect();
    let values: String = (0..n).map(|i| format!("KEY_{i}={}\n", random_value(24, 300 + i as u64))).collect();
    let case = Case::new(&manifest, &values);
    let puts = |gh: &GitHub| -> Vec<u64> {
        gh.requests().iter().filter(|r| r.method == "PUT" && r.status < 300).map(|r| r.started_ms).collect()
    };

    // Unpaced (as before pacing): the burst is refused past the limit, and waited out.
    gh.set_write_limit(Some((8, window)));
    let r = case.gh(&gh, "apply", &["--write-interval", "0s"], &[]);
    r.assert_code(0);
    assert!(gh.rate_limited() >= 1, "an unpaced burst of {n} writes stays under the limit?");

    // Paced: 300 ms between writes is at most 7 in any 2 s, so GitHub never has to refuse one.
    let changed: String = (0..n).map(|i| format!("KEY_{i}=x{}\n", random_value(24, 300 + i as u64))).collect();
    let case = Case::new(&manifest, &changed);
    gh.reset_stats();
    gh.set_write_limit(Some((8, window)));
    let r = case.gh(&gh, "apply", &["--write-interval", "300ms"], &[]);
    r.assert_code(0);
    assert_eq!(gh.rate_limited(), 0, "{}", r.stderr);
    let starts = puts(&gh);
    assert_eq!(starts.len(), n);
    // The stand-in sees each write when it arrives, a few ms after it left: gaps jitter, the span does not.
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= 200), "{starts:?}");
    assert!(starts[n - 1] - starts[0] >= 300 * (n as u64 - 1) - 150, "{starts:?}");
    assert!(r.stderr.contains("waited for their turn"), "{}", r.stderr);
    let repo = Scope::Repo("acme/app".into());
    for i in 0..n {
        assert_eq!(gh.secret(&repo, &format!("KEY_{i}")), Some(format!("x{}", random_value(24, 300 + i as u64))));
    }
}

#[test]
fn token_and_repository_errors_are_explained() {
    let gh = GitHub::start();
    let case = Case::new("defaults: {targets: [github]}\nvalues:\n  API_KEY: {}\n", "API_KEY=k9Tq0pLmN3vXy8Rw\n");
    let r = case.run(
        &["--mode", "plan", "--api-url", gh.url(), "--repository", "acme/app"],
        &[("INPUT_GITHUB_TOKEN", "ghp_wrong0000000000000000")],
    );
    r.assert_code(2);
    assert!(
        r.stderr.contains("401")
            && r.stderr.contains("hint:")
            && r.stderr.contains("GITHUB_TOKEN cannot write secrets"),
        "{}",
        r.stderr
    );
    assert_no_secret(&[("stderr", &r.stderr)], "ghp_wrong0000000000000000");

    let r = case.run(
        &["--mode", "plan", "--api-url", gh.url(), "--repository", "acme/nope"],
        &[("INPUT_GITHUB_TOKEN", &gh.token())],
    );
    r.assert_code(2);
    assert!(r.stderr.contains("404") && r.stderr.contains("acme/nope"), "{}", r.stderr);

    let r = case.run(&["--mode", "plan", "--api-url", gh.url(), "--repository", "acme/app"], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("github-token") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(writes(&gh), 0);

    // Environments must exist: a missing one is a 404 with a hint, nothing written.
    let case = Case::new(
        "defaults: {targets: [github]}\nvalues:\n  A: {github: {environment: staging}}\n",
        "A=k9Tq0pLmN3vXy8Rw\n",
    );
    let r = case.gh(&gh, "apply", &[], &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("staging") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(writes(&gh), 0);
}

#[test]
fn help_lists_every_input() {
    let out = scrubbed_command(GANGPLANK).arg("sync-secrets").arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for input in [
        "--manifest",
        "--values-file",
        "--mode",
        "--targets",
        "--github-token",
        "--api-url",
        "--repository",
        "--prune",
        "--concurrency",
        "--write-interval",
        "--host",
        "--ssh-key",
        "--known-hosts",
        "--app-dir",
        "--remote-env-path",
        "--keep-backups",
        "--lock-timeout",
    ] {
        assert!(help.contains(input), "{input} missing from --help");
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------
// The rendered .env reads back exactly through compose's own env_file parser.

#[test]
fn rendered_env_file_reads_back_exactly_through_docker_compose() {
    let compose = gangplank_testbed::require_program("docker-compose", "docker-compose").unwrap();
    let values: Vec<(String, String)> = [
        ("PLAIN", "k9Tq0pLmN3vXy8Rw"),
        ("MULTI_LINE", MULTILINE),
        ("QUOTES", "it's a \"quoted\" value"),
        ("BACKSLASH", r#"C:\path\to\n-not-a-newline\\ and \" end"#),
        ("HASH", "abc #not a comment"),
        ("SPACES", "  padded  "),
        ("DOLLAR", "pa$word$HOME and $1"),
        ("DOLLAR_MULTI", "line1 $x\nline2 = y\nZ=not a key"),
        ("EQUALS", "a=b=c"),
        ("UNICODE", "pässwörd-✓"),
        ("TAB", "a\tb"),
        ("EMPTY_LINES", "a\n\n\nb\n"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = sync_secrets::envfile::render(&values).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), &text).unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  app:\n    image: busybox\n    env_file: .env\n")
        .unwrap();
    let out = scrubbed_command(compose)
        .current_dir(dir.path())
        .args(["-p", &gangplank_testbed::unique_name("envq"), "config"])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
    // Read compose's YAML with PyYAML (a dependency of docker-compose itself).
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)['services']['app']['environment']))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = child.wait_with_output().unwrap();
    assert!(parsed.status.success(), "PyYAML is needed (apt-get install python3-yaml)");
    let env: BTreeMap<String, String> = serde_json::from_slice(&parsed.stdout).unwrap();
    for (k, v) in &values {
        // `config` prints a literal `$` as `$$` (its own escape for interpolation).
        let got = env.get(k).map(|g| g.replace("$$", "$"));
        assert_eq!(got.as_deref(), Some(v.as_str()), "{k} did not read back exactly; the file was:\n{text}");
    }
    assert_eq!(env.len(), values.len(), "{env:?}");
}

// ---------------------------------------------------------------------------------------------------
// env-file target on the testbed's real sshd.

struct Host {
    sshd: gangplank_testbed::Sshd,
    dir: tempfile::TempDir,
}

impl Host {
    fn start() -> Host {
        let sshd = gangplank_testbed::Sshd::start().expect("testbed sshd");
        Host { sshd, dir: tempfile::tempdir().unwrap() }
    }
    fn app_dir(&self) -> String {
        self.dir.path().join("app").to_string_lossy().into_owned()
    }
    fn env_path(&self) -> PathBuf {
        self.dir.path().join("app").join(".env")
    }
    fn backups(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("app/.gangplank/backups"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
    fn run(&self, case: &Case, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
        self.with_args(mode, extra, env, |args, envs| case.run(args, envs))
    }
    fn spawn(&self, case: &Case, mode: &str, extra: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        self.with_args(mode, extra, env, |args, envs| case.spawn(args, envs))
    }
    fn with_args<T>(
        &self,
        mode: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        f: impl FnOnce(&[&str], &[(&str, &str)]) -> T,
    ) -> T {
        let host = self.sshd.host_spec();
        let app = self.app_dir();
        let mut args = vec!["--mode", mode, "--targets", "env-file", "--host", &host, "--app-dir", &app];
        args.extend_from_slice(extra);
        let mut envs = vec![
            ("INPUT_SSH_KEY", self.sshd.client_key.as_str()),
            ("INPUT_KNOWN_HOSTS", self.sshd.known_hosts.as_str()),
        ];
        envs.extend_from_slice(env);
        f(&args, &envs)
    }
    fn lock_dir(&self) -> PathBuf {
        self.dir.path().join("app/.gangplank/lock")
    }
    fn audit(&self) -> String {
        read(&self.dir.path().join("app/.gangplank/audit.log"))
    }
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn plan_actions(r: &Run) -> BTreeMap<String, String> {
    let plan: serde_json::Value = serde_json::from_str(&r.plan).unwrap();
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap().to_string(), i["action"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn env_file_first_write_update_with_backup_drift_and_keep_backups() {
    let host = Host::start();
    let db1 = "k9Db-env-canary-0123456789";
    let db2 = "k9Db-env-canary-9876543210";
    let case = Case::new(
        "defaults: {targets: [env-file]}\nvalues:\n  DB_PASSWORD: {}\n  DEPLOY_KEY: {}\n  LLM_PROVIDER: {secret: false}\n  PRICE: {}\n  GRADIENT_API_KEY: {retired: true}\n",
        &format!("DB_PASSWORD={db1}\nLLM_PROVIDER=openrouter\nPRICE='k9$5-per-unit'\n"),
    );
    let env = [("DEPLOY_KEY", MULTILINE)];

    // Plan before anything exists: everything is `create`, nothing is written.
    let r = host.run(&case, "plan", &[], &env);
    r.assert_code(0);
    assert!(plan_actions(&r).values().all(|a| a == "create"), "{}", r.plan);
    assert!(!host.env_path().exists());

    // First write.
    let r = host.run(&case, "apply", &[], &env);
    r.assert_code(0);
    let expected = |db: &str| {
        sync_secrets::envfile::render(&[
            ("DB_PASSWORD".into(), db.into()),
            ("DEPLOY_KEY".into(), MULTILINE.into()),
            ("LLM_PROVIDER".into(), "openrouter".into()),
            ("PRICE".into(), "k9$5-per-unit".into()),
        ])
        .unwrap()
    };
    assert_eq!(std::fs::read_to_string(host.env_path()).unwrap(), expected(db1));
    assert_eq!(mode_of(&host.env_path()), 0o600);
    assert!(host.backups().is_empty(), "nothing to back up on a first write");
    let audit = std::fs::read_to_string(host.dir.path().join("app/.gangplank/audit.log")).unwrap();
    assert!(audit.contains("\"env-sync\""), "{audit}");
    for s in [db1, MULTILINE] {
        r.assert_no_secret(s);
        assert_no_secret(&[("audit.log", &audit)], s);
    }

    // Nothing changed: no write, no backup.
    let r = host.run(&case, "apply", &[], &env);
    r.assert_code(0);
    assert!(r.stderr.contains("already up to date"), "{}", r.stderr);
    assert_eq!(plan_actions(&r).values().filter(|a| *a != "unchanged").count(), 0, "{}", r.plan);
    assert!(host.backups().is_empty());

    // Drift: someone edits the server file by hand; plan shows it per key, by hash, and writes nothing.
    let mut edited = std::fs::read_to_string(host.env_path()).unwrap();
    edited.push_str("HAND_EDITED=k9hand-edited-value\n");
    std::fs::write(host.env_path(), &edited).unwrap();
    let r = host.run(&case, "plan", &[], &[("DEPLOY_KEY", MULTILINE), ("DB_PASSWORD", db2)]);
    r.assert_code(0);
    let actions = plan_actions(&r);
    assert_eq!(actions["DB_PASSWORD"], "update");
    assert_eq!(actions["HAND_EDITED"], "delete");
    assert_eq!(actions["DEPLOY_KEY"], "unchanged");
    assert_eq!(std::fs::read_to_string(host.env_path()).unwrap(), edited, "plan wrote");
    r.assert_no_secret(db2);
    r.assert_no_secret("k9hand-edited-value");

    // Update: the old file is backed up (0600), the new one verified; one SSH connection for the whole step.
    let logins = host.sshd.connections();
    let r = host.run(&case, "apply", &["--keep-backups", "2"], &[("DEPLOY_KEY", MULTILINE), ("DB_PASSWORD", db2)]);
    r.assert_code(0);
    assert_eq!(std::fs::read_to_string(host.env_path()).unwrap(), expected(db2));
    assert_eq!(host.sshd.connections() - logins, 1, "one SSH connection per host per step");
    let backups = host.backups();
    assert_eq!(backups.len(), 1);
    assert!(backups[0].file_name().unwrap().to_string_lossy().starts_with(".env."));
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), edited);
    assert_eq!(mode_of(&backups[0]), 0o600);
    assert_eq!(mode_of(&host.env_path()), 0o600);

    // keep-backups: three more updates, two backups kept, the newest ones.
    for i in 0..3 {
        let db = format!("k9Db-env-canary-round-{i}-xyz");
        let r = host.run(&case, "apply", &["--keep-backups", "2"], &[("DEPLOY_KEY", MULTILINE), ("DB_PASSWORD", &db)]);
        r.assert_code(0);
    }
    let backups = host.backups();
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(std::fs::read_to_string(&backups[1]).unwrap().contains("k9Db-env-canary-round-1-xyz"));
    assert!(std::fs::read_to_string(&backups[0]).unwrap().contains("k9Db-env-canary-round-0-xyz"));
}

#[test]
fn an_interrupted_upload_leaves_the_old_env_file() {
    use gangplank_core::exec::ssh::SshExecutor;
    use gangplank_core::input::{HostKeyPolicy, HostSpec, SshConfig};
    use gangplank_core::{Executor, Secret};
    let host = Host::start();
    std::fs::create_dir_all(host.app_dir()).unwrap();
    std::fs::write(host.env_path(), "OLD=\"k9old-value\"\n").unwrap();
    let cfg = SshConfig {
        hosts: vec![HostSpec::parse(&host.sshd.host_spec(), "root", 22).unwrap()],
        key: Secret::new(host.sshd.client_key.clone()),
        passphrase: None,
        host_key: HostKeyPolicy::KnownHosts(host.sshd.known_hosts.clone()),
        connect_timeout: Duration::from_secs(10),
        sudo: false,
    };
    let mut ex = SshExecutor::connect(&cfg.hosts[0], &cfg).unwrap();
    let path = host.env_path().to_string_lossy().into_owned();
    let new = sync_secrets::envfile::render(&[("NEW".into(), "k9new-value".repeat(1000))]).unwrap();
    // The connection drops half-way: the remote side sees fewer bytes than announced.
    let cmd = gangplank_core::exec::atomic_write(&path, new.as_bytes(), 0o600);
    let out = ex.exec(&cmd, Some(&new.as_bytes()[..new.len() / 2])).unwrap();
    assert_ne!(out.status, 0);
    assert_eq!(std::fs::read_to_string(host.env_path()).unwrap(), "OLD=\"k9old-value\"\n");
    let names: Vec<String> = std::fs::read_dir(host.app_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![".env".to_string()], "a temporary file was left behind");
    // The same path through the binary's writer succeeds and verifies.
    sync_secrets::envfile::write(&mut ex, &path, &host.app_dir(), &new, 3, r#"{"action":"env-sync"}"#).unwrap();
    assert_eq!(std::fs::read_to_string(host.env_path()).unwrap(), new);
    assert_eq!(host.backups().len(), 1);
}

#[test]
fn both_targets_in_one_step_and_the_canary_never_shows() {
    let gh = GitHub::start();
    let host = Host::start();
    let canary = "k9CANARY-both-targets-5f3e2d1c";
    let case = Case::new(
        "values:\n  CANARY: {}\n  LLM_PROVIDER: {secret: false}\n  REDIS_URL: {required: false, targets: [env-file]}\n",
        "LLM_PROVIDER=openrouter\n",
    );
    let token = gh.token();
    let extra = ["--api-url", gh.url(), "--repository", "acme/app"];
    for mode in ["plan", "apply", "plan"] {
        let host_spec = host.sshd.host_spec();
        let app = host.app_dir();
        let mut args = vec!["--mode", mode, "--host", &host_spec, "--app-dir", &app];
        args.extend_from_slice(&extra);
        let r = case.run(
            &args,
            &[
                ("CANARY", canary),
                ("INPUT_GITHUB_TOKEN", &token),
                ("INPUT_SSH_KEY", &host.sshd.client_key),
                ("INPUT_KNOWN_HOSTS", &host.sshd.known_hosts),
            ],
        );
        r.assert_code(0);
        r.assert_no_secret(canary);
        assert_no_secret(&[("stderr", &r.stderr)], &token);
        assert_no_secret(&[("stderr", &r.stderr)], &host.sshd.client_key);
    }
    assert_eq!(gh.secret(&Scope::Repo("acme/app".into()), "CANARY").as_deref(), Some(canary));
    let env = std::fs::read_to_string(host.env_path()).unwrap();
    assert!(env.contains(&format!("CANARY=\"{canary}\"")) && env.contains("LLM_PROVIDER=\"openrouter\""), "{env}");
    let audit = std::fs::read_to_string(host.dir.path().join("app/.gangplank/audit.log")).unwrap();
    assert_no_secret(&[("audit.log", &audit)], canary);
}

// ---------------------------------------------------------------------------------------------------
// The env-file target takes the host's deploy lock while it writes (docs/actions.md, "sync-secrets").

use gangplank_core::exec::Local;
use gangplank_core::host::{audit_cmd, lock, AuditLine};
use gangplank_core::Executor as _;

/// A deploy-remote run holding the lock on the test host, taken and released the way the engine does it.
struct Deploy {
    app: String,
    owner: lock::Owner,
}

impl Deploy {
    fn hold(host: &Host) -> Deploy {
        let owner = lock::Owner {
            id: "deploy-run-42".into(),
            action: "deploy".into(),
            tag: "v2".into(),
            run_url: "https://ci.example/acme/app/actions/runs/42".into(),
            pid: 4242,
            ..Default::default()
        };
        let app = host.app_dir();
        lock::acquire(&mut Local::new(false), &app, &owner, Duration::ZERO, &|| false).unwrap();
        Deploy { app, owner }
    }
    /// The deploy's last steps: its audit line, then the release.
    fn finish(&self) {
        let mut l = Local::new(false);
        let line = AuditLine {
            time: gangplank_core::host::now_rfc3339(),
            action: "deploy",
            tag: "v2",
            previous_tag: "v1",
            result: "deployed",
            host: "local",
            run_url: &self.owner.run_url,
            actor: "test",
        };
        l.check(&audit_cmd(&self.app, &line.to_line()), "audit").unwrap();
        lock::release(&mut l, &self.app, &self.owner.id).unwrap();
    }
    fn still_holds(&self, host: &Host) -> bool {
        read(&host.lock_dir().join("owner.json")).contains(&self.owner.id)
    }
}

/// Poll `cond` until it holds; fail after a minute (a generous bound, never a fixed sleep).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lock_case() -> Case {
    Case::new(
        "defaults: {targets: [env-file]}\nvalues:\n  DB_PASSWORD: {}\n",
        "DB_PASSWORD=k9Db-lock-canary-0123456789\n",
    )
}

#[test]
fn apply_waits_for_a_deploy_lock_and_writes_after_its_release() {
    let host = Host::start();
    let case = lock_case();
    let deploy = Deploy::hold(&host);

    let mut child = host.spawn(&case, "apply", &["--lock-timeout", "5m"], &[]);
    wait_until("sync-secrets says it waits for the lock", || case.stderr_so_far().contains("waiting for the lock"));
    let waiting = case.stderr_so_far();
    assert!(waiting.contains(&deploy.owner.run_url) && waiting.contains("pid 4242"), "{waiting}");
    assert!(child.try_wait().unwrap().is_none(), "sync-secrets ended while the lock was held:\n{waiting}");
    assert!(!host.env_path().exists(), ".env was written under someone else's lock");
    assert!(deploy.still_holds(&host), "the deploy's lock was broken");

    deploy.finish();
    let r = case.wait(child);
    r.assert_code(0);
    assert!(read(&host.env_path()).contains("DB_PASSWORD="));
    // The audit log orders the two runs: the deploy ended (and released) before the env sync wrote.
    let audit = host.audit();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["deploy", "env-sync"], "{audit}");
    assert!(!host.lock_dir().exists(), "the env sync left its lock behind");
    r.assert_no_secret("k9Db-lock-canary-0123456789");
}

#[test]
fn a_lock_held_past_lock_timeout_is_exit_3_naming_the_owner_and_env_is_untouched() {
    let host = Host::start();
    let case = lock_case();
    std::fs::create_dir_all(host.app_dir()).unwrap();
    std::fs::write(host.env_path(), "DB_PASSWORD=\"k9-old-value\"\n").unwrap();
    let deploy = Deploy::hold(&host);

    let r = host.run(&case, "apply", &["--lock-timeout", "1s"], &[]);
    r.assert_code(3);
    assert!(r.stderr.contains(&deploy.owner.run_url) && r.stderr.contains("pid 4242"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(read(&host.env_path()), "DB_PASSWORD=\"k9-old-value\"\n");
    assert!(host.backups().is_empty());
    assert!(!host.audit().contains("env-sync"), "{}", host.audit());
    assert!(deploy.still_holds(&host), "the deploy's lock was broken");

    // plan and check never lock: they finish at once while the lock is held.
    for mode in ["plan", "check"] {
        host.run(&case, mode, &["--lock-timeout", "5m"], &[]).assert_code(0);
    }
    assert!(deploy.still_holds(&host));
}

#[test]
fn a_signal_while_waiting_for_the_lock_is_exit_4_and_leaves_the_other_lock_alone() {
    let host = Host::start();
    let case = lock_case();
    let deploy = Deploy::hold(&host);
    let child = host.spawn(&case, "apply", &["--lock-timeout", "5m"], &[]);
    wait_until("sync-secrets says it waits for the lock", || case.stderr_so_far().contains("waiting for the lock"));
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let r = case.wait(child);
    r.assert_code(4);
    assert!(r.stderr.contains("interrupted") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(!host.env_path().exists());
    assert!(deploy.still_holds(&host), "the deploy's lock was broken");
}

#[test]
fn the_lock_is_released_after_a_success_and_after_a_failure() {
    let host = Host::start();
    let case = lock_case();
    host.run(&case, "apply", &[], &[]).assert_code(0);
    assert!(host.env_path().exists());
    assert!(!host.lock_dir().exists(), "lock left after a success");

    // A write that fails after the lock was taken: preflight passed, then, while the run waited for a
    // deploy's lock, a regular file took the place of the `.env`'s folder.
    let deploy = Deploy::hold(&host);
    let bad_path = host.dir.path().join("app/not-a-dir/.env").to_string_lossy().into_owned();
    let child = host.spawn(&case, "apply", &["--remote-env-path", &bad_path, "--lock-timeout", "5m"], &[]);
    wait_until("sync-secrets says it waits for the lock", || case.stderr_so_far().contains("waiting for the lock"));
    std::fs::write(host.dir.path().join("app/not-a-dir"), "").unwrap();
    deploy.finish();
    let r = case.wait(child);
    r.assert_code(1);
    assert!(!host.lock_dir().exists(), "lock left after a failure:\n{}", r.stderr);
    r.assert_no_secret("k9Db-lock-canary-0123456789");
}

// ---------------------------------------------------------------------------------------------------
// Values are read literally; empty values are kept (docs/secrets-manifest.md, "Values").

#[test]
fn values_file_is_read_literally_and_an_empty_optional_value_is_written() {
    let gh = GitHub::start();
    let host = Host::start();
    let case = Case::new(
        "values:\n  A_KEY: {targets: [github]}\n  B_KEY: {targets: [env-file]}\n  EMPTY_ONE: {required: false, targets: [env-file]}\n",
        "A_KEY=\"pa${HOME}x\"\nB_KEY=\"k9b$HOME-literal\"\nexport EMPTY_ONE=\"\"\n",
    );
    let token = gh.token();
    let (host_spec, app) = (host.sshd.host_spec(), host.app_dir());
    let args =
        ["--mode", "apply", "--host", &host_spec, "--app-dir", &app, "--api-url", gh.url(), "--repository", "acme/app"];
    let r = case.run(
        &args,
        &[
            ("HOME", "/root"),
            ("INPUT_GITHUB_TOKEN", &token),
            ("INPUT_SSH_KEY", &host.sshd.client_key),
            ("INPUT_KNOWN_HOSTS", &host.sshd.known_hosts),
        ],
    );
    r.assert_code(0);
    assert_eq!(gh.secret(&Scope::Repo("acme/app".into()), "A_KEY").as_deref(), Some("pa${HOME}x"));
    let env = read(&host.env_path());
    assert!(env.contains("B_KEY='k9b$HOME-literal'\n"), "{env}");
    assert!(env.contains("EMPTY_ONE=\"\"\n"), "{env}");
}

#[test]
fn an_empty_required_value_is_refused_alike_from_the_file_and_from_the_environment() {
    let manifest = "values:\n  REQ_KEY: {secret: false}\n  OTHER: {secret: false}\n";
    let from_file = Case::new(manifest, "REQ_KEY=\"\"\nOTHER=k9other\n").run(&["--mode", "check"], &[]);
    let from_env = Case::new(manifest, "OTHER=k9other\n").run(&["--mode", "check"], &[("REQ_KEY", "")]);
    for r in [&from_file, &from_env] {
        r.assert_code(2);
        assert_eq!(plan_items(r), [("REQ_KEY".to_string(), "invalid".to_string(), "required".to_string())]);
    }
}

fn plan_items(r: &Run) -> Vec<(String, String, String)> {
    let plan: serde_json::Value = serde_json::from_str(&r.plan).unwrap();
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = |k: &str| i[k].as_str().unwrap().to_string();
            (f("key"), f("action"), f("rule"))
        })
        .collect()
}

/// A `retry-after` too large for any clock is "too long to wait": the sync gives up with its message,
/// it does not panic (issue 14, item 7).
#[test]
fn an_absurd_retry_after_gives_up_without_a_panic() {
    let gh = GitHub::start();
    let case = Case::new("defaults: {targets: [github]}\nvalues:\n  KEY_A: {}\n", "KEY_A=k9-absurd-wait-value\n");
    gh.push_limit(Limit::secondary(429, u64::MAX));
    let r = case.gh(&gh, "apply", &[], &[]);
    assert!(matches!(r.code, 1 | 2), "exit {}\n{}", r.code, r.stderr);
    assert!(r.stderr.contains("gave up") && !r.stderr.contains("panicked"), "{}", r.stderr);
    r.assert_no_secret("k9-absurd-wait-value");
}

/// Without `app-dir`, the server `.env` goes where deploy-remote puts the app by default: `/opt/<app name>`
/// from the one function in gangplank-core, `Acme/Shop.Web` → `/opt/shop-web` (not `/opt/Shop.Web`). `plan`
/// only reads the host, and a missing file there reads as empty.
#[test]
fn without_app_dir_the_env_file_goes_where_deploy_remote_puts_the_app() {
    let host = Host::start();
    let case = Case::new(
        "defaults: {targets: [env-file]}\nvalues:\n  DB_PASSWORD: {}\n",
        "DB_PASSWORD=k9Db-shop-web-0123456789\n",
    );
    let spec = host.sshd.host_spec();
    let args = ["--mode", "plan", "--targets", "env-file", "--host", spec.as_str()];
    let env = [
        ("INPUT_SSH_KEY", host.sshd.client_key.as_str()),
        ("INPUT_KNOWN_HOSTS", host.sshd.known_hosts.as_str()),
        ("GITHUB_REPOSITORY", "Acme/Shop.Web"),
    ];
    let r = case.run(&args, &env);
    r.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&r.plan).unwrap();
    let place = plan["items"][0]["where"].as_str().unwrap();
    assert!(place.ends_with(":/opt/shop-web/.env"), "{place}");
    // The name deploy-remote and rollback derive from the same repository, through the same function.
    assert_eq!(gangplank_core::app::default_app_name("Acme/Shop.Web").as_deref(), Some("shop-web"));

    // Outside Actions, without a repository, the folder must be given.
    let r = case.run(&args, &env[..2]);
    r.assert_code(2);
    assert!(r.stderr.contains("app-dir"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------------
// A fresh server is bootstrapped, and every host is checked before anything is written (issue 20).

/// Both targets in one step, as the example's workflows run them: GitHub through the stand-in, the `.env` on
/// `hosts` (one or more `user@host:port`) under `app_dir`.
fn both_targets(
    case: &Case,
    gh: &GitHub,
    hosts: &str,
    known_hosts: &str,
    key: &str,
    app_dir: &Path,
    extra: &[&str],
) -> Run {
    let app = app_dir.to_string_lossy().into_owned();
    let mut args = vec!["--api-url", gh.url(), "--repository", "acme/app", "--host", hosts, "--app-dir", &app];
    args.extend_from_slice(extra);
    let token = gh.token();
    case.run(&args, &[("INPUT_GITHUB_TOKEN", &token), ("INPUT_SSH_KEY", key), ("INPUT_KNOWN_HOSTS", known_hosts)])
}

/// Every path under `root` (not following links) with its kind and mode: equal listings mean nothing changed.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        out.push(format!("{} {:?} {:o}", p.display(), m.file_type(), m.permissions().mode()));
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn bootstrap_case() -> Case {
    Case::new(
        "values:\n  DB_PASSWORD: {}\n  LLM_PROVIDER: {secret: false}\n",
        "DB_PASSWORD=k9Db-bootstrap-canary-0123456789\nLLM_PROVIDER=openrouter\n",
    )
}

/// The issue's host: `remote-env-path: /opt/compose-app/examples/compose-app/.env` with not even `/opt`
/// there. `plan` says what `apply` would create and creates nothing; `apply` makes the app dir with its
/// missing parents (0755), `.gangplank` and `backups` (0700), the `.env`'s folders (0755) and the `.env`
/// (0600); a second `apply` has nothing to do.
#[test]
fn a_fresh_server_gets_its_app_dir_and_the_env_folders_with_their_modes() {
    let gh = GitHub::start();
    let host = Host::start();
    let case = bootstrap_case();
    let root = host.dir.path().join("fresh");
    let app = root.join("opt/compose-app");
    let env_file = app.join("examples/compose-app/.env");
    let env_arg = env_file.to_string_lossy().into_owned();
    let run = |mode: &str| {
        let (spec, keys, key) = (host.sshd.host_spec(), &host.sshd.known_hosts, &host.sshd.client_key);
        both_targets(&case, &gh, &spec, keys, key, &app, &["--mode", mode, "--remote-env-path", &env_arg])
    };

    let r = run("plan");
    r.assert_code(0);
    assert!(
        r.stderr.contains("apply would create") && r.stderr.contains(&app.to_string_lossy().into_owned()),
        "{}",
        r.stderr
    );
    assert!(!root.exists(), "plan created something");

    let r = run("apply");
    r.assert_code(0);
    for (dir, mode) in [
        (root.clone(), 0o755),
        (root.join("opt"), 0o755),
        (app.clone(), 0o755),
        (app.join(".gangplank"), 0o700),
        (app.join(".gangplank/backups"), 0o700),
        (app.join("examples"), 0o755),
        (app.join("examples/compose-app"), 0o755),
    ] {
        assert!(dir.is_dir(), "{} was not created", dir.display());
        assert_eq!(mode_of(&dir), mode, "mode of {}", dir.display());
    }
    assert_eq!(mode_of(&env_file), 0o600);
    let env = read(&env_file);
    assert!(env.contains("DB_PASSWORD=\"k9Db-bootstrap-canary-0123456789\"\n"), "{env}");
    assert!(!app.join(".gangplank/lock").exists(), "the lock was left behind");
    assert!(read(&app.join(".gangplank/audit.log")).contains("\"env-sync\""));
    assert!(!app.join(".env").exists(), "the .env went to the app dir instead of remote-env-path");
    assert_eq!(
        gh.secret(&Scope::Repo("acme/app".into()), "DB_PASSWORD").as_deref(),
        Some("k9Db-bootstrap-canary-0123456789")
    );
    assert!(r.stderr.contains(&format!("created {}", app.join("examples/compose-app").display())), "{}", r.stderr);
    r.assert_no_secret("k9Db-bootstrap-canary-0123456789");

    let before = listing(&root);
    let r = run("apply");
    r.assert_code(0);
    assert!(!r.stderr.contains("created") && r.stderr.contains("already up to date"), "{}", r.stderr);
    assert_eq!(listing(&root), before);
}

/// A symlink where the sync would write (a folder on the way to the `.env`, gangplank's `backups`, the app
/// dir itself) is refused by preflight: exit 2 with a hint, no GitHub request at all, nothing written through
/// the link and nothing changed in the app dir.
#[test]
fn a_symlink_on_the_way_is_refused_before_github_or_the_host_changes() {
    let gh = GitHub::start();
    let host = Host::start();
    let case = bootstrap_case();
    let app = PathBuf::from(host.app_dir());
    for (link, env_rel) in [("examples", "examples/compose-app/.env"), (".gangplank/backups", ".env"), ("", ".env")] {
        let outside = tempfile::tempdir().unwrap();
        let _ = std::fs::remove_dir_all(&app);
        let _ = std::fs::remove_file(&app);
        if link.is_empty() {
            std::os::unix::fs::symlink(outside.path(), &app).unwrap();
        } else {
            std::fs::create_dir_all(app.join(link).parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(outside.path(), app.join(link)).unwrap();
        }
        let before = listing(&app);
        let env_arg = app.join(env_rel).to_string_lossy().into_owned();
        let (spec, keys, key) = (host.sshd.host_spec(), &host.sshd.known_hosts, &host.sshd.client_key);
        let r = both_targets(&case, &gh, &spec, keys, key, &app, &["--mode", "apply", "--remote-env-path", &env_arg]);
        r.assert_code(2);
        let linked = if link.is_empty() { app.clone() } else { app.join(link) };
        assert!(
            r.stderr.contains(&format!("`{}` on", linked.display())) && r.stderr.contains("is a symlink"),
            "{link}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("hint:") && r.stderr.contains("nothing was written"), "{link}: {}", r.stderr);
        assert_eq!(writes(&gh), 0, "{link}: GitHub was written");
        assert!(gh.requests().is_empty(), "{link}: GitHub was read before the hosts were checked");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{link}: written through the link");
        assert_eq!(listing(&app), before, "{link}: the app dir changed");
    }
}

/// With two hosts, the second one failing its checks (a host key `known-hosts` does not list, a port nobody
/// listens on) stops the run before anything is written: exit 2 naming that host, no GitHub request, and
/// the first host, whose checks passed, untouched.
#[test]
fn a_second_host_that_fails_preflight_stops_the_run_before_github_and_the_first_host() {
    let gh = GitHub::start();
    let first = Host::start();
    let opts = gangplank_testbed::SshdOptions { clients_of: Some(&first.sshd), ..Default::default() };
    let second = gangplank_testbed::Sshd::start_with(&opts).expect("second sshd");
    let case = bootstrap_case();
    let app = PathBuf::from(first.app_dir());
    for (what, spec, expect) in [
        ("unknown host key", second.host_spec(), "is unknown"),
        ("unreachable", "root@127.0.0.1:1".to_string(), "cannot connect to root@127.0.0.1:1"),
    ] {
        let hosts = format!("{},{spec}", first.sshd.host_spec());
        let (keys, key) = (&first.sshd.known_hosts, &first.sshd.client_key);
        let r = both_targets(&case, &gh, &hosts, keys, key, &app, &["--mode", "apply"]);
        r.assert_code(2);
        assert!(r.stderr.contains(expect) && r.stderr.contains("hint:"), "{what}: {}", r.stderr);
        assert!(r.stderr.contains("preflight failed on 1 of 2 host(s)"), "{what}: {}", r.stderr);
        assert_eq!(writes(&gh), 0, "{what}: GitHub was written");
        assert!(gh.requests().is_empty(), "{what}: GitHub was read before the hosts were checked");
        assert!(!app.exists(), "{what}: the first host was changed");
        r.assert_no_secret("k9Db-bootstrap-canary-0123456789");
    }
}

/// A deploy user that may not create the app dir (its parent is root's, as `/opt` is): exit 2 before
/// anything changes, with the one-time command that makes it; after that command the same run writes the
/// `.env`, owned by that user. A `sudo` that would prompt is refused the same way.
#[test]
fn an_app_dir_the_deploy_user_cannot_create_is_exit_2_with_the_command_that_makes_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let gh = GitHub::start();
    let host = Host::start();
    let user = gangplank_testbed::ensure_plain_user().unwrap();
    let id = |flag: &str| {
        let out = std::process::Command::new("id").args([flag, &user]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (group, uid) = (id("-gn"), id("-u"));
    // The user may walk to the parent and not write in it.
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let parent = host.dir.path().join("opt");
    std::fs::create_dir(&parent).unwrap();
    let app = parent.join("compose-app");
    let case = bootstrap_case();
    let spec = format!("{user}@{}:{}", host.sshd.host, host.sshd.port);
    let run = |extra: &[&str]| {
        let mut args = vec!["--mode", "apply"];
        args.extend_from_slice(extra);
        both_targets(&case, &gh, &spec, &host.sshd.known_hosts, &host.sshd.client_key, &app, &args)
    };

    let r = run(&[]);
    r.assert_code(2);
    let setup = format!("install -d -o {user} -g {group} -m 0755 {}", app.display());
    assert!(r.stderr.contains(&format!("`sudo {setup}`")), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("`{user}` cannot create it")), "{}", r.stderr);
    assert_eq!(writes(&gh), 0);
    assert!(!app.exists());

    let r = run(&["--sudo", "true"]);
    r.assert_code(2);
    assert!(r.stderr.contains("sudo would ask for a password") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(writes(&gh), 0);
    assert!(!app.exists());

    // The one-time set-up on the host (this test runs as root: without `sudo`).
    let words: Vec<&str> = setup.split(' ').collect();
    assert!(std::process::Command::new(words[0]).args(&words[1..]).status().unwrap().success());
    let r = run(&[]);
    r.assert_code(0);
    let env_file = app.join(".env");
    assert_eq!(mode_of(&env_file), 0o600);
    assert_eq!(std::fs::metadata(&env_file).unwrap().uid().to_string(), uid, ".env is not the deploy user's");
    assert_eq!(mode_of(&app.join(".gangplank")), 0o700);
    assert!(writes(&gh) > 0, "GitHub was not written once the host passed");
}

/// `apply` takes the lock of every host it will write before it writes GitHub: a deploy that keeps its
/// lock past `lock-timeout` is exit 3 with GitHub untouched, and preflight named the holder up front.
#[test]
fn a_lock_held_past_lock_timeout_with_both_targets_is_exit_3_and_github_is_untouched() {
    let gh = GitHub::start();
    let host = Host::start();
    let case = bootstrap_case();
    let deploy = Deploy::hold(&host);
    let app = PathBuf::from(host.app_dir());
    let (spec, keys, key) = (host.sshd.host_spec(), &host.sshd.known_hosts, &host.sshd.client_key);
    let r = both_targets(&case, &gh, &spec, keys, key, &app, &["--mode", "apply", "--lock-timeout", "1s"]);
    r.assert_code(3);
    let held = r.stderr.find("the lock is held now by").expect("preflight names the holder");
    let waited = r.stderr.find("did not release it within").expect("the lock's error");
    assert!(held < waited && r.stderr.contains("pid 4242"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing was written on GitHub"), "{}", r.stderr);
    assert_eq!(writes(&gh), 0, "GitHub was written although a host could not be locked");
    assert!(!host.env_path().exists());
    assert!(deploy.still_holds(&host), "the deploy's lock was broken");
}

/// The example's first run as its README tells it ("run sync-secrets once" before the first deploy): its
/// manifest, the values its workflow maps from secrets and variables, both targets, a server without the
/// app dir. The `.env` it writes is the one the example's compose file reads on the server: every `${…:?}`
/// resolves. (The workflow leaves `app-dir` to its default `/opt/<repository name>`; here it is a temporary
/// folder, as this machine's `/opt` is shared.)
#[test]
fn the_examples_first_run_writes_the_env_its_compose_file_needs_on_a_fresh_server() {
    let gh = GitHub::start();
    let host = Host::start();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compose-app");
    let case = Case::new(&read(&example.join(".github/secrets.yml")), "");
    let app = host.dir.path().join("opt/compose-app");
    let (db, key) = ("k9Db-example-first-run-0123", "k9Secret-example-first-run-0123456789abcdef");
    let token = gh.token();
    let (host_spec, app_arg) = (host.sshd.host_spec(), app.to_string_lossy().into_owned());
    let r = case.run(
        &[
            "--mode",
            "apply",
            "--api-url",
            gh.url(),
            "--repository",
            "acme/app",
            "--host",
            &host_spec,
            "--app-dir",
            &app_arg,
        ],
        &[
            ("INPUT_GITHUB_TOKEN", token.as_str()),
            ("INPUT_SSH_KEY", host.sshd.client_key.as_str()),
            ("INPUT_KNOWN_HOSTS", host.sshd.known_hosts.as_str()),
            ("DATABASE_PASSWORD", db),
            ("POSTGRES_PASSWORD", db),
            ("SECRET_KEY", key),
            ("SENTRY_DSN", ""),
            ("APP_MODE", "production"),
            ("SITE_ADDRESS", "app.example.com"),
            ("WEB_IMAGE", "ghcr.io/acme/app/web"),
        ],
    );
    r.assert_code(0);
    r.assert_no_secret(db);
    r.assert_no_secret(key);
    let production = Scope::Env("acme/app".into(), "production".into());
    assert_eq!(gh.secret(&production, "DATABASE_PASSWORD").as_deref(), Some(db));
    assert_eq!(gh.variable(&Scope::Repo("acme/app".into()), "APP_MODE").as_deref(), Some("production"));
    assert_eq!(mode_of(&app.join(".env")), 0o600);

    // What deploy-remote uploads next to it, read by compose as on the server (no daemon needed).
    std::fs::create_dir(app.join("proxy")).unwrap();
    for f in ["compose.yaml", "proxy/Caddyfile"] {
        std::fs::copy(example.join(f), app.join(f)).unwrap();
    }
    let compose = gangplank_testbed::compose_program().unwrap();
    let out = scrubbed_command(&compose[0])
        .args(&compose[1..])
        .args(["-p", &gangplank_testbed::unique_name("example-env"), "config"])
        .current_dir(&app)
        .env("IMAGE_TAG", "v1")
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "compose config: {}", String::from_utf8_lossy(&out.stderr));
    assert!(config.contains("ghcr.io/acme/app/web:v1") && config.contains(key), "{config}");
    assert!(config.contains("app.example.com"), "SITE_ADDRESS did not reach compose:\n{config}");
}

/// The hosts are locked while GitHub is written, so a signal then must not wait for GitHub: here a write
/// is told to come back in ten minutes, and SIGTERM ends the run at once with exit 4, the host's lock
/// released and its `.env` not written (the runner's SIGKILL would otherwise leave the lock behind).
#[test]
fn a_signal_while_github_is_written_releases_the_host_locks_and_is_exit_4() {
    let gh = GitHub::start();
    let host = Host::start();
    let case = bootstrap_case();
    // One write goes through; the next is refused with `retry-after` of ten minutes, which the sync waits out.
    gh.set_write_limit(Some((1, Duration::from_secs(600))));
    let (spec, app, token) = (host.sshd.host_spec(), host.app_dir(), gh.token());
    let child = case.spawn(
        &["--mode", "apply", "--api-url", gh.url(), "--repository", "acme/app", "--host", &spec, "--app-dir", &app],
        &[
            ("INPUT_GITHUB_TOKEN", token.as_str()),
            ("INPUT_SSH_KEY", host.sshd.client_key.as_str()),
            ("INPUT_KNOWN_HOSTS", host.sshd.known_hosts.as_str()),
        ],
    );
    wait_until("a GitHub write is told to wait", || gh.rate_limited() >= 1);
    assert!(
        read(&host.lock_dir().join("owner.json")).contains("env-sync"),
        "the host is not locked during the GitHub writes"
    );
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let r = case.wait(child);
    r.assert_code(4);
    assert!(r.stderr.contains("while writing GitHub") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(!host.lock_dir().exists(), "the lock was left behind");
    assert!(!host.env_path().exists(), "a host was written after the signal");
    r.assert_no_secret("k9Db-bootstrap-canary-0123456789");
}
