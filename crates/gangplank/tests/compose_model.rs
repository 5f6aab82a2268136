//! The preflight's compose model over fixtures written the way real projects write compose files
//! (tests/fixtures/compose/*/case.txt): with every file present preflight passes; with any one
//! referenced path removed it fails with exit 2 naming that path and every service that uses it. Each
//! fixture runs twice: resolved by `docker compose config` (when the testbed runs compose v2) and by the
//! built-in reader (no docker on the runner's PATH).

use std::path::{Path, PathBuf};
use std::process::Command;

use gangplank_testbed::{scrubbed_command, step_program, Sshd};

struct Case {
    name: String,
    mkdirs: Vec<String>,
    compose: Vec<String>,
    files: Vec<String>,
    env_file: String,
    /// (path, users, on the host only)
    refs: Vec<(String, Vec<String>, bool)>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

fn cases() -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(fixtures().join(&name).join("case.txt")).unwrap();
            let mut c =
                Case { name, mkdirs: vec![], compose: vec![], files: vec![], env_file: String::new(), refs: vec![] };
            for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                let (key, rest) = line.split_once(' ').unwrap();
                let words = || rest.split_whitespace().map(str::to_string).collect::<Vec<_>>();
                match key {
                    "mkdir" => c.mkdirs.extend(words()),
                    "compose" => c.compose.extend(words()),
                    "files" => c.files.extend(words()),
                    "env-file" => c.env_file = rest.trim().to_string(),
                    "ref" | "host" => {
                        let (path, users) = rest.split_once(" | ").unwrap();
                        let users = if users.contains('`') {
                            vec![users.to_string()]
                        } else {
                            users.split_whitespace().map(|u| format!("service `{u}`")).collect()
                        };
                        c.refs.push((path.trim().to_string(), users, key == "host"));
                    }
                    other => panic!("unknown case line {other:?}"),
                }
            }
            c
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().unwrap();
    assert!(status.success());
}

/// A fixture laid out as a checkout (`work/repo`) and a host (`host/app` is the app dir).
struct Layout {
    _root: tempfile::TempDir,
    repo: PathBuf,
    host_root: PathBuf,
}

impl Layout {
    fn new(c: &Case) -> Layout {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("work/repo");
        let host_root = root.path().join("host");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&host_root).unwrap();
        copy_tree(&fixtures().join(&c.name), &repo);
        for d in &c.mkdirs {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        // Absolute host paths are written `{host_root}/…` in the fixtures: the host is a temp dir here.
        let status = Command::new("sh")
            .args([
                "-c",
                r#"grep -rl '{host_root}' "$1" | while read -r f; do sed -i "s|{host_root}|$2|g" "$f"; done"#,
                "sh",
            ])
            .arg(&repo)
            .arg(&host_root)
            .status()
            .unwrap();
        assert!(status.success());
        let l = Layout { _root: root, repo, host_root };
        for (path, _, host) in &c.refs {
            if *host {
                std::fs::create_dir_all(l.host_path(path)).unwrap();
            }
        }
        l
    }

    fn app_dir(&self) -> PathBuf {
        self.host_root.join("app")
    }

    fn host_path(&self, p: &str) -> PathBuf {
        let p = p.replace("{host_root}", &self.host_root.display().to_string());
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            self.app_dir().join(p)
        }
    }

    fn shown(&self, p: &str) -> String {
        p.replace("{host_root}", &self.host_root.display().to_string())
    }
}

struct Outcome {
    status: i32,
    stderr: String,
}

fn preflight(sshd: &Sshd, c: &Case, l: &Layout, builtin: bool) -> Outcome {
    let bin = step_program(env!("CARGO_BIN_EXE_gangplank"), "deploy-remote");
    let mut cmd = scrubbed_command(bin);
    cmd.current_dir(&l.repo)
        .arg("--host")
        .arg(sshd.host_spec())
        .arg(format!("--ssh-key={}", sshd.client_key))
        .arg("--known-hosts")
        .arg(&sshd.known_hosts)
        .args([
            "--app-name",
            "gangplank-model",
            "--image-tag",
            "t1",
            "--preflight-only",
            "true",
            "--min-free-disk",
            "1",
        ])
        .arg("--app-dir")
        .arg(l.app_dir())
        .arg("--env-file")
        .arg(&c.env_file);
    cmd.arg("--compose-files").arg(c.compose.join("\n")).arg("--files").arg(c.files.join("\n"));
    if builtin {
        // No docker on the runner: the built-in reader answers alone.
        cmd.env("PATH", "/nonexistent");
    }
    let out = cmd.output().unwrap();
    Outcome { status: out.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

#[test]
fn every_reference_in_the_fixtures_is_checked_and_named() {
    let sshd = Sshd::start().unwrap();
    let (mut checked, mut false_alarms, mut misses) = (0, vec![], vec![]);
    for builtin in [false, true] {
        let mode = if builtin { "built-in reader" } else { "compose" };
        for c in cases() {
            let l = Layout::new(&c);
            let r = preflight(&sshd, &c, &l, builtin);
            if r.status != 0 {
                false_alarms.push(format!("{} ({mode}), every file present: exit {}\n{}", c.name, r.status, r.stderr));
            }
            for (path, users, host) in &c.refs {
                let l = Layout::new(&c);
                let gone = if *host { l.host_path(path) } else { l.repo.join(path) };
                if gone.is_dir() {
                    std::fs::remove_dir_all(&gone).unwrap();
                } else {
                    std::fs::remove_file(&gone).unwrap();
                }
                checked += 1;
                let r = preflight(&sshd, &c, &l, builtin);
                let named = r.stderr.contains(&format!("`{}`", l.shown(path)))
                    && users.iter().all(|u| r.stderr.contains(u.as_str()))
                    && r.stderr.contains("hint:");
                if r.status != 2 || !named {
                    misses.push(format!(
                        "{} ({mode}) without `{path}` (used by {users:?}): exit {}\n{}",
                        c.name, r.status, r.stderr
                    ));
                }
            }
        }
    }
    eprintln!(
        "compose model: {checked} removals checked, {} false alarms, {} misses",
        false_alarms.len(),
        misses.len()
    );
    assert!(false_alarms.is_empty(), "false alarms:\n{}", false_alarms.join("\n---\n"));
    assert!(misses.is_empty(), "misses:\n{}", misses.join("\n---\n"));
}

/// A 20-service project passes, every reference counted; the runner-side time of the model (compose's
/// answer and the checks) and of the whole preflight are printed, for the issue's figure (no timed
/// assertion: the machine is shared).
#[test]
fn a_twenty_service_project_is_resolved_whole() {
    let sshd = Sshd::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let mut yaml = String::from(
        "x-common: &common\n  image: gangplank.invalid/app:${IMAGE_TAG}\n  restart: unless-stopped\nservices:\n",
    );
    let mut files = vec![];
    for i in 0..20 {
        yaml.push_str(&format!(
            "  svc{i}:\n    <<: *common\n    env_file: [conf/svc{i}.env]\n    volumes:\n      - ./conf/svc{i}:/etc/svc\n      - data{i}:/data\n    configs: [cfg{i}]\n"
        ));
        std::fs::create_dir_all(repo.join(format!("conf/svc{i}"))).unwrap();
        std::fs::write(repo.join(format!("conf/svc{i}/a.conf")), "a").unwrap();
        std::fs::write(repo.join(format!("conf/svc{i}.env")), "A=1\n").unwrap();
        std::fs::write(repo.join(format!("conf/cfg{i}.txt")), "c").unwrap();
    }
    yaml.push_str("volumes:\n");
    for i in 0..20 {
        yaml.push_str(&format!("  data{i}: {{}}\n"));
    }
    yaml.push_str("configs:\n");
    for i in 0..20 {
        yaml.push_str(&format!("  cfg{i}:\n    file: ./conf/cfg{i}.txt\n"));
    }
    std::fs::write(repo.join("compose.yaml"), yaml).unwrap();
    files.push("conf".to_string());
    std::fs::write(repo.join("prod.env"), "X=1\n").unwrap();
    let c = Case {
        name: "twenty".into(),
        mkdirs: vec![],
        compose: vec!["compose.yaml".into()],
        files,
        env_file: "prod.env".into(),
        refs: vec![],
    };
    let l = Layout { repo, host_root: root.path().join("host"), _root: root };
    std::fs::create_dir_all(&l.host_root).unwrap();
    for builtin in [false, true] {
        let started = std::time::Instant::now();
        let r = preflight(&sshd, &c, &l, builtin);
        let wall = started.elapsed();
        assert_eq!(r.status, 0, "{}", r.stderr);
        let line = r.stderr.lines().find(|l| l.starts_with("compose model:")).expect("the model line").to_string();
        assert!(line.starts_with("compose model: 60 reference(s)"), "{line}");
        eprintln!("20 services: {line}; whole preflight-only run {} ms", wall.as_millis());
    }
}

/// The example app's compose file takes its settings from the server `.env`, which sync-secrets writes and
/// which never leaves the host (issue 20): preflight reads that file's KEY NAMES there, gives those variables
/// a stand-in for the runner's resolution, and passes, resolved by compose and by the built-in reader alike;
/// no value of the host's is printed. A required variable neither the runner nor the host's `.env` has is a
/// one-line exit 2 naming it and where it can come from.
#[test]
fn variables_only_the_server_env_sets_are_looked_up_there_by_name() {
    let sshd = Sshd::start().unwrap();
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compose-app");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(repo.join("proxy")).unwrap();
    for f in ["compose.yaml", "proxy/Caddyfile", "Dockerfile", "app.py"] {
        std::fs::copy(example.join(f), repo.join(f)).unwrap();
    }
    // A bind source built from a variable only the host has is reported, not checked.
    let yaml = std::fs::read_to_string(repo.join("compose.yaml")).unwrap();
    let yaml = yaml.replacen(
        "    stop_grace_period: 10s\n",
        "    stop_grace_period: 10s\n    volumes:\n      - ${SITE_DIR:-/srv/site}:/srv:ro\n",
        1,
    );
    std::fs::write(repo.join("compose.yaml"), yaml).unwrap();
    let l = Layout { repo, host_root: root.path().join("host"), _root: root };
    std::fs::create_dir_all(l.app_dir()).unwrap();
    let canaries = ["pgCanary-51c0ffee", "skCanary-9d8e7f60", "siteCanary-2b3c"];
    let write_env = |skip: &str| {
        let mut text = String::from("# Written by gangplank sync-secrets\n");
        for (k, v) in [
            ("WEB_IMAGE", "ghcr.io/acme/shop/web"),
            ("POSTGRES_PASSWORD", canaries[0]),
            ("SECRET_KEY", canaries[1]),
            ("APP_MODE", "production"),
            ("SENTRY_DSN", ""),
            ("SITE_DIR", canaries[2]),
        ] {
            if k != skip {
                text.push_str(&format!("{k}=\"{v}\"\n"));
            }
        }
        std::fs::write(l.app_dir().join(".env"), text).unwrap();
    };
    let run = |builtin: bool| {
        let bin = step_program(env!("CARGO_BIN_EXE_gangplank"), "deploy-remote");
        let mut cmd = scrubbed_command(bin);
        cmd.current_dir(&l.repo)
            .arg("--host")
            .arg(sshd.host_spec())
            .arg(format!("--ssh-key={}", sshd.client_key))
            .arg("--known-hosts")
            .arg(&sshd.known_hosts)
            .args(["--app-name", "gangplank-model-env", "--image-tag", "t1", "--preflight-only", "true"])
            .args(["--min-free-disk", "1", "--files", "proxy", "--services", "web"])
            .arg("--app-dir")
            .arg(l.app_dir());
        if builtin {
            cmd.env("PATH", "/nonexistent");
        }
        let out = cmd.output().unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for c in canaries {
            assert!(!text.contains(c), "a value of the host's .env was printed:\n{text}");
        }
        (out.status.code().unwrap_or(-1), text)
    };
    for builtin in [false, true] {
        let mode = if builtin { "built-in reader" } else { "compose" };
        write_env("");
        let (status, text) = run(builtin);
        assert_eq!(status, 0, "{mode}:\n{text}");
        assert!(text.contains("looked up by key name"), "{mode}:\n{text}");
        assert!(
            text.contains("`${SITE_DIR}`, the bind mount source of service `web`, is built from `SITE_DIR`"),
            "{mode}:\n{text}"
        );
        // WEB_IMAGE is the host's: compose resolves and pulls the app's image there, after the switch.
        assert!(text.contains("compose pull web"), "{mode}:\n{text}");

        write_env("SECRET_KEY");
        let (status, text) = run(builtin);
        assert_eq!(status, 2, "{mode}:\n{text}");
        let line = text.lines().find(|l| l.contains("`SECRET_KEY`")).unwrap_or_else(|| panic!("{mode}:\n{text}"));
        assert!(line.contains("has no `SECRET_KEY`") && line.contains(&sshd.host_spec()), "{line}");
        eprintln!("{mode}: {line}");
        assert_eq!(text.lines().filter(|l| l.contains("has no `SECRET_KEY`")).count(), 1, "one line:\n{text}");
        assert!(text.contains("hint: add `SECRET_KEY` to the secrets manifest"), "{mode}:\n{text}");
    }
}
