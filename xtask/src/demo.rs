//! `cargo xtask demo`: the README's first command. Brings up the testbed (installing what is missing first,
//! with the same `crate::setup::ensure` as `cargo xtask test`), then runs the story with the real `gangplank`
//! executable: sync-secrets (the server `.env` for real; the GitHub target against the local API stand-in),
//! push-registry, verify-image, deploy v1, deploy v2, deploy a broken version that rolls back by itself. Prints
//! a table; exit 0 only when the story held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gangplank_testbed::github::{GitHub, Scope};
use gangplank_testbed::{free_port, http_get, images, scrubbed_command, unique_name, Registry, Sshd};

const REPO: &str = "acme/shop";

/// One line of the final table.
pub struct Row {
    /// The gangplank step this row ran.
    pub bin: &'static str,
    /// Peak resident memory of gangplank in KiB, as `/usr/bin/time` reports it (largest call of the step).
    pub rss_kib: Option<u64>,
    step: String,
    exit: i32,
    took: Duration,
    what: String,
    held: bool,
}

/// What a step left behind.
struct Ran {
    code: i32,
    rss_kib: Option<u64>,
    outputs: BTreeMap<String, String>,
    stderr: String,
}

impl Ran {
    fn out(&self, k: &str) -> &str {
        self.outputs.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Takes the demo's compose project down however the story ends.
struct Down {
    project: String,
    dir: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["-p", &self.project, "down", "--volumes", "--remove-orphans", "--timeout", "1"])
            .current_dir(&self.dir)
            .env("IMAGE_TAG", "none")
            .output();
    }
}

/// `cargo xtask demo [--release]`.
pub fn run(args: &[String]) -> Result<()> {
    let started = Instant::now();
    crate::test::require_root("demo", args);
    crate::setup::ensure(crate::setup::Tier::Everyday)?;
    let release = args.iter().any(|a| a == "--release");
    println!("==> building gangplank{}", if release { " (release)" } else { "" });
    let gangplank = crate::build_gangplank(release)?;
    let rows = story(&gangplank)?;
    print_table(&rows);
    println!("\nthe story held: every step did what it should ({:.1} s in all)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The story on a fresh testbed, with the `gangplank` executable at `gangplank`. Fails at the first step that
/// did not hold.
pub fn story(gangplank: &Path) -> Result<Vec<Row>> {
    println!("==> bringing up the testbed: sshd, registry, GitHub API stand-in, sample images");
    let samples = images::samples()?;
    let sshd = Sshd::start()?;
    let registry = Registry::start()?;
    let github = GitHub::start();
    github.add_repo(REPO);

    let app = unique_name("demo-shop");
    let port = free_port();
    let work = tempfile::tempdir()?;
    let host_root = tempfile::tempdir()?;
    let app_dir = host_root.path().join("shop");
    std::fs::create_dir_all(&app_dir)?;
    let image = registry.image("shop");
    let _down = Down { project: app.clone(), dir: app_dir.clone() };
    write_repo(work.path(), &image, port)?;

    let token_value = "sk-or-demo-0123456789abcdef0123456789abcdef";
    let db_password = "correct-horse-battery-staple-42";
    let ssh: Vec<String> = vec![
        "--host".into(),
        sshd.host_spec(),
        "--ssh-key".into(),
        sshd.client_key.clone(),
        "--known-hosts".into(),
        sshd.known_hosts.clone(),
        "--app-dir".into(),
        app_dir.display().to_string(),
    ];
    let mut rows = Vec::new();
    let demo = Demo { gangplank, work: work.path() };

    // 1. sync-secrets: GitHub (stand-in) and the server .env (real, over SSH).
    let mut args: Vec<String> = vec![
        "--mode".into(),
        "apply".into(),
        "--manifest".into(),
        "secrets.yml".into(),
        "--github-token".into(),
        github.token(),
        "--api-url".into(),
        github.url().to_string(),
        "--repository".into(),
        REPO.into(),
    ];
    args.extend(ssh.iter().cloned());
    let envs =
        [("OPENROUTER_API_KEY", token_value), ("DATABASE_PASSWORD", db_password), ("LLM_PROVIDER", "openrouter")];
    let (ran, took) = demo.run("sync-secrets", &args, &envs)?;
    let repo = Scope::Repo(REPO.into());
    let synced = ran.code == 0
        && github.secret(&repo, "OPENROUTER_API_KEY").as_deref() == Some(token_value)
        && github.variable(&repo, "LLM_PROVIDER").as_deref() == Some("openrouter")
        && std::fs::read_to_string(app_dir.join(".env")).map(|e| e.contains("DATABASE_PASSWORD")).unwrap_or(false);
    rows.push(Row {
        bin: "sync-secrets",
        rss_kib: ran.rss_kib,
        step: "sync-secrets apply".into(),
        exit: ran.code,
        took,
        what: format!(
            "{} entries created (GitHub secrets and variable, server .env at 0600); each secret decrypts exactly in the stand-in",
            ran.out("created")
        ),
        held: synced,
    });
    if !synced {
        return fail(&rows, &ran);
    }

    // 2. push-registry: the three versions, digests read back from the registry.
    let mut push_ok = true;
    let mut digests = Vec::new();
    let mut push_took = Duration::ZERO;
    let mut push_rss = None;
    for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2), ("broken", &samples.broken)] {
        let args = vec![
            "--registry".into(),
            registry.addr.clone(),
            "--images".into(),
            format!("shop={src}"),
            "--tag".into(),
            tag.to_string(),
        ];
        let (ran, took) = demo.run("push-registry", &args, &[])?;
        push_took += took;
        push_rss = push_rss.max(ran.rss_kib);
        push_ok &= ran.code == 0 && ran.out("digest").starts_with("sha256:");
        digests.push(format!("{tag} {}", short(ran.out("digest"))));
        if ran.code != 0 {
            rows.push(Row {
                bin: "push-registry",
                rss_kib: ran.rss_kib,
                step: format!("push-registry {tag}"),
                exit: ran.code,
                took,
                what: String::new(),
                held: false,
            });
            return fail(&rows, &ran);
        }
    }
    rows.push(Row {
        bin: "push-registry",
        rss_kib: push_rss,
        step: "push-registry v1 v2 broken".into(),
        exit: 0,
        took: push_took,
        what: format!("digests from the registry: {}", digests.join(", ")),
        held: push_ok,
    });

    // 3. verify-image: v2 must become healthy before it may reach the server.
    let args = vec!["--image".into(), format!("{image}:v2"), "--timeout".into(), "60s".into()];
    let (ran, took) = demo.run("verify-image", &args, &[])?;
    let verified = ran.code == 0 && ran.out("healthy") == "true";
    rows.push(Row {
        bin: "verify-image",
        rss_kib: ran.rss_kib,
        step: "verify-image v2".into(),
        exit: ran.code,
        took,
        what: "started, healthy by its HEALTHCHECK, torn down".into(),
        held: verified,
    });
    if !verified {
        return fail(&rows, &ran);
    }

    // 4-6. deploy v1, v2, then a broken version that must roll back to v2 by itself.
    let health = format!("http://127.0.0.1:{port}/health");
    for (tag, want_code, want_serving) in [("v1", 0, "v1"), ("v2", 0, "v2"), ("broken", 1, "v2")] {
        let mut args = ssh.clone();
        args.extend([
            "--app-name".into(),
            app.clone(),
            "--image-tag".into(),
            tag.to_string(),
            "--compose-files".into(),
            "compose.yaml".into(),
            "--health-url".into(),
            health.clone(),
            "--health-timeout".into(),
            "15s".into(),
            "--min-free-disk".into(),
            "10MiB".into(),
        ]);
        let (ran, took) = demo.run("deploy-remote", &args, &[])?;
        let serving = http_get(&format!("127.0.0.1:{port}"), "/health", None)
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.trim().to_string())
            .unwrap_or_else(|| "nothing".into());
        let held = ran.code == want_code && serving == want_serving;
        let what = if ran.out("rolled-back") == "true" {
            format!("health gate failed, rolled back by itself; serving {serving}")
        } else {
            let prev = ran.out("previous-tag");
            format!("serving {serving} (previous: {})", if prev.is_empty() { "none" } else { prev })
        };
        rows.push(Row {
            bin: "deploy-remote",
            rss_kib: ran.rss_kib,
            step: format!("deploy-remote {tag}"),
            exit: ran.code,
            took,
            what,
            held,
        });
        if !held {
            return fail(&rows, &ran);
        }
    }

    Ok(rows)
}

struct Demo<'a> {
    gangplank: &'a Path,
    work: &'a Path,
}

impl Demo<'_> {
    /// Run `gangplank <bin>` as a workflow step would: scrubbed environment, GITHUB_OUTPUT and summary files.
    fn run(&self, bin: &str, args: &[String], env: &[(&str, &str)]) -> Result<(Ran, Duration)> {
        let gh = tempfile::tempdir()?;
        let rss_file = gh.path().join("rss");
        // `/usr/bin/time -f %M` reports the peak resident memory of gangplank (spec budget: 30 MB).
        let timed = Path::new("/usr/bin/time").exists();
        let mut c = if timed {
            let mut c = scrubbed_command("/usr/bin/time");
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(self.gangplank);
            c
        } else {
            scrubbed_command(self.gangplank)
        };
        c.arg(bin)
            .args(args)
            .current_dir(self.work)
            .env("GITHUB_OUTPUT", gh.path().join("output"))
            .env("GITHUB_STEP_SUMMARY", gh.path().join("summary"))
            .env("RUNNER_TEMP", gh.path())
            .env("GITHUB_REPOSITORY", REPO);
        for (k, v) in env {
            c.env(k, v);
        }
        println!("==> {bin} {}", args.first().map(String::as_str).unwrap_or(""));
        let t = Instant::now();
        let out = c.output().with_context(|| format!("running {bin}"))?;
        let took = t.elapsed();
        let text = std::fs::read_to_string(gh.path().join("output")).unwrap_or_default();
        let outputs = gangplank_core::actions::parse_output_file(&text)
            .map_err(|e| anyhow::anyhow!("{bin} wrote a bad GITHUB_OUTPUT: {e}"))?
            .into_iter()
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let rss_kib = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().rev().find_map(|l| l.trim().parse::<u64>().ok()));
        Ok((Ran { code: out.status.code().unwrap_or(-1), rss_kib, outputs, stderr }, took))
    }
}

/// The user's repository: a compose file taking the tag from IMAGE_TAG, and a secrets manifest.
fn write_repo(dir: &Path, image: &str, port: u16) -> Result<()> {
    let compose = format!(
        "services:\n  web:\n    image: \"{image}:${{IMAGE_TAG}}\"\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n"
    );
    std::fs::write(dir.join("compose.yaml"), compose)?;
    let manifest = "\
defaults:
  targets: [github, env-file]
  placeholders: reject
values:
  OPENROUTER_API_KEY:
    pattern: '^sk-or-'
    min-length: 32
  DATABASE_PASSWORD:
    min-length: 16
  LLM_PROVIDER:
    secret: false
    allowed: [openrouter, openai]
  GRADIENT_API_KEY:
    retired: true
";
    std::fs::write(dir.join("secrets.yml"), manifest)?;
    Ok(())
}

fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| step | exit | time | peak RSS | what happened | held |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} s | {} | {} | {} |",
            r.step,
            r.exit,
            r.took.as_secs_f64(),
            r.rss_kib.map(|k| format!("{:.1} MB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
            r.what,
            if r.held { "yes" } else { "NO" }
        );
    }
}

fn fail<T>(rows: &[Row], last: &Ran) -> Result<T> {
    print_table(rows);
    eprintln!("\n--- stderr of the last step\n{}", last.stderr);
    bail!("the story did not hold at `{}`", rows.last().map(|r| r.step.as_str()).unwrap_or("start"))
}
