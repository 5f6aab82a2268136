//! Canary secrets in every secret-bearing input of every step, in runs that succeed and runs that fail
//! (issue 14, "Must show"): the SSH key passphrase, `.env` values (one line and several lines), the registry
//! password, the GitHub token and values-file values. After each run the test reads stdout, stderr,
//! GITHUB_OUTPUT, the step summary, every file the run wrote on the runner (its RUNNER_TEMP, TMPDIR and HOME,
//! and anything new in the working directory) and every file on the host except the intended `.env` and that
//! file's own backups, and looks for each canary raw, base64, base64url, url-encoded and line by line.

mod support;

use std::path::{Path, PathBuf};

use gangplank_testbed::github::GitHub;
use gangplank_testbed::{images, scrubbed_command, step_program, unique_name, Registry};
use support::*;

const ENV_ONE: &str = "k9envOne+/Canary=Zx41";
const ENV_LINE_1: &str = "k9envLineOne-Canary-7731";
const ENV_LINE_2: &str = "k9envLineTwo-Canary-8842";
const REGISTRY_PASSWORD: &str = "k9reg+/Canary=Pw55";
const GITHUB_TOKEN: &str = "ghp_k9CanaryToken0000000000000000000042";
const VALUE_ONE: &str = "k9value+/Canary=Vv66";
const VALUE_LINE_1: &str = "k9valueLineOne-Canary-9953";
const VALUE_LINE_2: &str = "k9valueLineTwo-Canary-1064";

/// Every form a canary could leak in besides raw and base64 (which `assert_no_secret` covers): url-encoded
/// (percent-encoding of everything but unreserved characters, and the form flavour with `+` for a space)
/// and each of its lines.
fn needles(secret: &str) -> Vec<(String, String)> {
    let mut out = vec![("raw".to_string(), secret.to_string())];
    let pct = |space_plus: bool| {
        secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' if space_plus => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    for (how, enc) in [("url-encoded", pct(false)), ("form-encoded", pct(true))] {
        if enc != secret {
            out.push((how.to_string(), enc.clone()));
            out.push((
                format!("{how} (lower-case hex)"),
                enc.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
            ));
        }
    }
    for line in secret.lines().filter(|l| l.len() >= 8 && *l != secret) {
        out.push(("one of its lines".to_string(), line.to_string()));
    }
    out
}

/// Fails naming the canary, the encoding and where it was found.
fn assert_clean(texts: &[(String, String)], canaries: &[&str], run: &str) {
    for secret in canaries {
        let haystacks: Vec<(&str, &str)> = texts.iter().map(|(l, t)| (l.as_str(), t.as_str())).collect();
        gangplank_testbed::assert_no_secret(&haystacks, secret);
        for line in secret.lines().filter(|l| l.len() >= 8) {
            gangplank_testbed::assert_no_secret(&haystacks, line);
        }
        for (label, text) in texts {
            let kept: String = text.split_inclusive('\n').filter(|l| !l.starts_with("::add-mask::")).collect();
            for (how, needle) in needles(secret) {
                assert!(!kept.contains(&needle), "{run}: canary leaked {how} in {label}: {needle:?}");
            }
        }
    }
}

/// Every regular file under `dir` (links not followed) except those `skip` refuses, as (path, text).
fn files_under(dir: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && !skip(&p) {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((p.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

/// One run of a step with its own RUNNER_TEMP, TMPDIR and HOME; returns every text to search.
struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    fn new() -> Probe {
        let dir = tempfile::tempdir().unwrap();
        for d in ["runner-temp", "tmp", "home"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Probe { dir }
    }

    fn run(&self, step: &str, cwd: &Path, args: &[String], env: &[(&str, &str)]) -> (i32, Vec<(String, String)>) {
        let d = self.dir.path();
        let mut c = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), step));
        c.args(args)
            .current_dir(cwd)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", d.join("output"))
            .env("GITHUB_STEP_SUMMARY", d.join("summary"))
            .env("RUNNER_TEMP", d.join("runner-temp"))
            .env("TMPDIR", d.join("tmp"))
            .env("HOME", d.join("home"));
        for (k, v) in env {
            c.env(k, v);
        }
        let before: Vec<PathBuf> = files_under(cwd, &|_| false).into_iter().map(|(p, _)| PathBuf::from(p)).collect();
        let o = c.output().expect("gangplank runs");
        let mut texts = vec![
            ("stdout".to_string(), String::from_utf8_lossy(&o.stdout).into_owned()),
            ("stderr".to_string(), String::from_utf8_lossy(&o.stderr).into_owned()),
        ];
        // GITHUB_OUTPUT, the summary and every file under RUNNER_TEMP, TMPDIR and HOME.
        texts.extend(files_under(d, &|_| false));
        // Anything the run wrote in the working directory (the inputs were there before it).
        texts.extend(files_under(cwd, &|p| before.iter().any(|b| b == p)));
        (o.status.code().unwrap_or(-1), texts)
    }
}

/// Every file on the host's app dir but the `.env` the step is meant to write and that file's backups.
fn host_texts(app_dir: &Path) -> Vec<(String, String)> {
    files_under(app_dir, &|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        p == app_dir.join(".env") || (p.starts_with(app_dir.join(".gangplank/backups")) && name.starts_with(".env."))
    })
}

fn check(run: &str, code: i32, want: &[i32], texts: &[(String, String)], canaries: &[&str]) {
    let stderr = texts.iter().find(|(l, _)| l == "stderr").map(|(_, t)| t.as_str()).unwrap_or("");
    assert!(want.contains(&code), "{run}: exit {code}, wanted {want:?}\n{stderr}");
    assert_clean(texts, canaries, run);
}

#[test]
fn no_canary_leaks_from_any_step_in_success_or_failure() {
    let fx = Fixture::new("canary");
    let env_text = format!("APP_TOKEN={ENV_ONE}\nMULTI=\"{ENV_LINE_1}\n{ENV_LINE_2}\"\nMODE=one\n");
    fx.write_env(&env_text);
    let env_multi = format!("{ENV_LINE_1}\n{ENV_LINE_2}");
    let passphrase = fx.sshd.passphrase.clone();
    let deploy_canaries = [ENV_ONE, env_multi.as_str(), passphrase.as_str()];
    let key_env = [("INPUT_SSH_KEY_PASSPHRASE", passphrase.as_str())];
    // The encrypted key, so the passphrase is a real input of every SSH step.
    let with_encrypted_key = |mut args: Vec<String>| {
        let k = args.iter().position(|a| a.starts_with("--ssh-key=")).unwrap();
        args[k] = format!("--ssh-key={}", fx.sshd.client_key_encrypted);
        args
    };
    let work = fx.work.path().to_path_buf();
    let app_dir = fx.app_dir.clone();

    // deploy-remote: a first deploy, a release that fails its gate (its logs print the environment), a tag
    // that does not exist (the pull fails).
    for (run, tag, want) in
        [("deploy v1", "v1", &[0][..]), ("deploy broken", "broken", &[1]), ("deploy a missing tag", "nope", &[1])]
    {
        let (code, mut texts) =
            Probe::new().run("deploy-remote", &work, &with_encrypted_key(fx.deploy_args(tag)), &key_env);
        texts.extend(host_texts(&app_dir));
        check(run, code, want, &texts, &deploy_canaries);
    }
    // The .env really holds the canaries (the search above did not pass by missing them).
    let env_on_host = std::fs::read_to_string(app_dir.join(".env")).unwrap();
    assert!(env_on_host.contains(ENV_ONE) && env_on_host.contains(ENV_LINE_2), "{env_on_host}");

    // rollback: to the previous release (v1 is current: a rollback has nothing to go back to, exit 1 or 2),
    // after a second release it goes back to v1.
    let (code, mut texts) =
        Probe::new().run("deploy-remote", &work, &with_encrypted_key(fx.deploy_args("v2")), &key_env);
    texts.extend(host_texts(&app_dir));
    check("deploy v2", code, &[0], &texts, &deploy_canaries);
    let mut rb = with_encrypted_key(fx.ssh_args());
    rb.extend(["--health-timeout".to_string(), "20s".into()]);
    let (code, mut texts) = Probe::new().run("rollback", &work, &rb, &key_env);
    texts.extend(host_texts(&app_dir));
    check("rollback to v1", code, &[0], &texts, &deploy_canaries);
    let mut wrong = rb.clone();
    wrong.extend([
        "--health-url".to_string(),
        "http://127.0.0.1:1/health".into(),
        "--health-timeout".into(),
        "3s".into(),
    ]);
    let (code, mut texts) = Probe::new().run("rollback", &work, &wrong, &key_env);
    texts.extend(host_texts(&app_dir));
    check("rollback failing its gate", code, &[1, 2], &texts, &deploy_canaries);

    // verify-image: the smoke command prints the environment, once passing and once failing.
    let s = images::samples().unwrap();
    for (run, smoke, want) in [
        ("verify passing", "env; echo \"$APP_TOKEN $MULTI\"", &[0][..]),
        ("verify failing", "env; echo \"$APP_TOKEN $MULTI\"; exit 3", &[1]),
    ] {
        let project = unique_name("gpcanary");
        let args: Vec<String> = [
            "--image",
            &s.v1,
            "--project-name",
            &project,
            "--timeout",
            "30s",
            "--env-file",
            "prod.env",
            "--smoke",
            smoke,
        ]
        .map(String::from)
        .to_vec();
        let (code, texts) = Probe::new().run("verify-image", &work, &args, &[]);
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ids=$(docker ps -aq --filter label=dev.gangplank.verify={project}); [ -n \"$ids\" ] && docker rm -f -v $ids"))
            .output();
        check(run, code, want, &texts, &[ENV_ONE, env_multi.as_str()]);
    }

    // push-registry: a push that works and one that fails after the login (an image that does not exist).
    let reg = Registry::start_with_auth("ci-canary", REGISTRY_PASSWORD).unwrap();
    for (run, images_in, want) in [
        ("push", format!("app={}", s.v1), &[0][..]),
        ("push a missing image", "app=gangplank-no-such-image:never".to_string(), &[1, 2]),
    ] {
        let args: Vec<String> = [
            "--registry",
            &reg.addr,
            "--username",
            "ci-canary",
            "--password",
            REGISTRY_PASSWORD,
            "--images",
            &images_in,
            "--tag",
            "canary-1",
        ]
        .map(String::from)
        .to_vec();
        let (code, texts) = Probe::new().run("push-registry", &work, &args, &[]);
        check(run, code, want, &texts, &[REGISTRY_PASSWORD]);
    }

    // sync-secrets: both targets (GitHub stand-in with a canary token, the host's .env over SSH with the
    // encrypted key), then a failing run (a repository the token cannot see).
    let gh = GitHub::start();
    gh.set_token(GITHUB_TOKEN);
    let value_multi = format!("{VALUE_LINE_1}\n{VALUE_LINE_2}");
    std::fs::write(work.join("secrets.yml"), "values:\n  API_KEY: {}\n  CERT: {}\n  MODE: {secret: false}\n").unwrap();
    std::fs::write(
        work.join("values.env"),
        format!("API_KEY={VALUE_ONE}\nCERT=\"{VALUE_LINE_1}\n{VALUE_LINE_2}\"\nMODE=prod\n"),
    )
    .unwrap();
    let sync_canaries = [VALUE_ONE, value_multi.as_str(), GITHUB_TOKEN, passphrase.as_str()];
    let host = fx.sshd.host_spec();
    let app = fx.app_dir();
    for (run, repo, want) in
        [("sync-secrets apply", "acme/app", &[0][..]), ("sync-secrets on an unknown repository", "acme/nope", &[1, 2])]
    {
        let args: Vec<String> = [
            "--mode",
            "apply",
            "--manifest",
            "secrets.yml",
            "--values-file",
            "values.env",
            "--api-url",
            gh.url(),
            "--repository",
            repo,
            "--host",
            &host,
            "--app-dir",
            &app,
            "--write-interval",
            "0s",
        ]
        .map(String::from)
        .to_vec();
        let env = [
            ("INPUT_GITHUB_TOKEN", GITHUB_TOKEN),
            ("INPUT_SSH_KEY", fx.sshd.client_key_encrypted.as_str()),
            ("INPUT_SSH_KEY_PASSPHRASE", passphrase.as_str()),
            ("INPUT_KNOWN_HOSTS", fx.sshd.known_hosts.as_str()),
        ];
        let (code, mut texts) = Probe::new().run("sync-secrets", &work, &args, &env);
        texts.extend(host_texts(&app_dir));
        check(run, code, want, &texts, &sync_canaries);
    }
    let env_on_host = std::fs::read_to_string(app_dir.join(".env")).unwrap();
    assert!(env_on_host.contains(VALUE_ONE), "the sync wrote the canary where it belongs: {env_on_host}");
}

/// The search itself: each form a canary can take is found, so a clean result above means something.
#[test]
fn the_search_finds_a_canary_in_every_form() {
    use base64::Engine as _;
    let multi = format!("{ENV_LINE_1}\n{ENV_LINE_2}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x{ENV_ONE}"));
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("xy{ENV_ONE}"));
    let forms = [
        (ENV_ONE, format!("token={ENV_ONE}")),
        (ENV_ONE, format!("auth: {b64}")),
        (ENV_ONE, format!("u={b64url}")),
        (ENV_ONE, "q=k9envOne%2B%2FCanary%3DZx41".to_string()),
        (ENV_ONE, "q=k9envOne%2b%2fCanary%3dZx41".to_string()),
        (multi.as_str(), format!("second line: {ENV_LINE_2}")),
    ];
    for (canary, text) in forms {
        let texts = vec![("file".to_string(), text.clone())];
        let found = std::panic::catch_unwind(|| assert_clean(&texts, &[canary], "self-test")).is_err();
        assert!(found, "not found in {text:?}");
    }
    // The runner's own mask lines are not leaks.
    assert_clean(&[("stdout".to_string(), format!("::add-mask::{ENV_ONE}\n"))], &[ENV_ONE], "self-test");
}
