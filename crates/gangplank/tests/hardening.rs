//! Bad inputs found by the adversarial run of issue 14, each refused before any connection with exit 2 and a
//! `hint:`: masking of `.env` values before anything is printed, output files that are not gangplank's,
//! unbounded local reads, symlinks out of the repository, names that would be read as options.
//!
//! The SSH host is `127.0.0.1:1`, where nothing listens: a run that got as far as connecting fails with
//! "cannot connect", so every test here also shows that its refusal came first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gangplank_testbed::scrubbed_command;

const GANGPLANK: &str = env!("CARGO_BIN_EXE_gangplank");

/// A repository-like working directory with a compose file, a real ed25519 key and a known_hosts line for
/// the (closed) host.
struct Work {
    dir: tempfile::TempDir,
    key: String,
    known_hosts: String,
}

struct Run {
    code: Option<i32>,
    /// stdout and stderr as one stream, in the order they were written.
    both: String,
    /// The same without the `::add-mask::` lines.
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n{}", self.code, self.both)
    }
}

impl Run {
    /// Exit 2 with a hint, refused for `why`, and never got as far as connecting.
    fn refused(&self, why: &str) {
        assert_eq!(self.code, Some(2), "{self:?}");
        assert!(self.stderr.contains(why), "expected `{why}`: {self:?}");
        assert!(self.stderr.lines().any(|l| l.starts_with("hint: ")), "{self:?}");
        assert!(!self.stderr.contains("cannot connect"), "refused only after connecting: {self:?}");
    }
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("compose.yaml"), "services:\n  web:\n    image: \"app:${IMAGE_TAG}\"\n").unwrap();
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
            .arg(d.join("id"))
            .status()
            .unwrap();
        assert!(st.success());
        let key = std::fs::read_to_string(d.join("id")).unwrap();
        let public = std::fs::read_to_string(d.join("id.pub")).unwrap();
        std::fs::remove_file(d.join("id")).unwrap();
        std::fs::remove_file(d.join("id.pub")).unwrap();
        let known_hosts = format!("[127.0.0.1]:1 {}", public.trim());
        Work { dir, key, known_hosts }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `gangplank <step> args` in the working directory, under Actions (`GITHUB_ACTIONS=true`).
    fn run(&self, step: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let both = self.path(".both");
        let mut c = scrubbed_command(GANGPLANK);
        c.arg(step).args(args).current_dir(self.dir.path()).env("GITHUB_ACTIONS", "true");
        c.env("RUNNER_TEMP", self.path(".runner"));
        for (k, v) in env {
            c.env(k, v);
        }
        // stdout and stderr go to one file, so the order of masks and other lines shows.
        let f = std::fs::File::create(&both).unwrap();
        c.stdout(Stdio::from(f.try_clone().unwrap())).stderr(Stdio::from(f));
        let code = c.status().unwrap().code();
        let text = std::fs::read_to_string(&both).unwrap();
        let stderr = text.lines().filter(|l| !l.starts_with("::add-mask::")).collect::<Vec<_>>().join("\n");
        Run { code, both: text, stderr }
    }

    /// deploy-remote to the closed host with `more` arguments.
    fn deploy(&self, more: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec![
            "--host",
            "deploy@127.0.0.1:1",
            "--known-hosts",
            &self.known_hosts,
            "--app-name",
            "app",
            "--app-dir",
            "/srv/app",
            "--image-tag",
            "v1",
            "--connect-timeout",
            "2s",
        ];
        args.extend_from_slice(more);
        let mut env = env.to_vec();
        env.push(("INPUT_SSH_KEY", &self.key));
        self.run("deploy-remote", &args, &env)
    }
}

#[test]
fn env_values_are_masked_line_by_line_before_anything_else_is_printed() {
    let w = Work::new();
    w.write(
        "prod.env",
        "# the app's settings\nTOK=k9a # prod\nSHORT_ONE=xyz\nMULTI=\"k9-line-one\nk9-line-two\"\nDEBUG=true\nN=1\nexport QUOTED='k9 quoted value'\n",
    );
    let r = w.deploy(&["--env-file", "prod.env"], &[]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("cannot connect"), "the run went as far as the connection: {r:?}");
    let first_other = r.both.lines().position(|l| !l.starts_with("::add-mask::")).unwrap();
    let masks: Vec<&str> = r.both.lines().filter_map(|l| l.strip_prefix("::add-mask::")).collect();
    assert!(
        r.both.lines().skip(first_other).all(|l| !l.starts_with("::add-mask::")),
        "a mask came after other output: {r:?}"
    );
    assert!(r.both.lines().nth(first_other).unwrap().starts_with("::"), "{r:?}");
    for v in ["k9a", "xyz", "k9-line-one", "k9-line-two", "k9 quoted value"] {
        assert!(masks.contains(&v), "`{v}` not masked: {masks:?}");
    }
    // Booleans and one- or two-character values are not registered (they would mask all the log).
    for v in ["true", "1"] {
        assert!(!masks.contains(&v), "`{v}` masked: {masks:?}");
    }
}

#[test]
fn output_files_that_are_not_gangplanks_are_never_replaced() {
    let w = Work::new();
    let passwd = "root:x:0:0:root:/root:/bin/bash\n";
    w.write("etc/passwd", passwd);
    std::os::unix::fs::symlink(w.path("etc/passwd"), w.path("link.json")).unwrap();
    for target in ["etc/passwd", "link.json", "./sub/../etc/passwd"] {
        w.deploy(&["--record-file", target], &[]).refused("`record-file`");
        let rollback =
            ["--host", "127.0.0.1:1", "--known-hosts", &w.known_hosts, "--app-name", "app", "--record-file", target];
        w.run("rollback", &rollback, &[("INPUT_SSH_KEY", &w.key)]).refused("`record-file`");
    }
    w.write("secrets.yml", "values:\n  A_KEY: {secret: false}\n");
    w.write("values.env", "A_KEY=k9value\n");
    let sync = ["--manifest", "secrets.yml", "--values-file", "values.env", "--mode", "check", "--plan-file"];
    w.run("sync-secrets", &[&sync[..], &["etc/passwd"]].concat(), &[]).refused("`plan-file`");
    let push = ["--registry", "127.0.0.1:1", "--images", "app:1", "--tag", "v1", "--metadata-file", "etc/passwd"];
    w.run("push-registry", &push, &[]).refused("`metadata-file`");
    w.run("verify-image", &["--image", "app:1", "--report-file", "etc/passwd"], &[]).refused("`report-file`");
    assert_eq!(std::fs::read_to_string(w.path("etc/passwd")).unwrap(), passwd);
    assert!(std::fs::symlink_metadata(w.path("link.json")).unwrap().file_type().is_symlink());

    // A record gangplank wrote before (and an empty file) are its own: the run gets as far as connecting.
    w.write(
        "old-record.json",
        "{\"app\":\"app\",\"hosts\":[],\"deployed_tag\":\"v0\",\"previous_tag\":\"\",\"status\":\"deployed\"}\n",
    );
    w.write("empty.json", "");
    for own in ["old-record.json", "empty.json"] {
        let r = w.deploy(&["--record-file", own], &[]);
        assert!(r.stderr.contains("cannot connect"), "{r:?}");
        let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(w.path(own)).unwrap()).unwrap();
        assert_eq!(rec["status"], "failed", "the record of this run replaced the old one");
    }
    let leftovers: Vec<String> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("gangplank-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn local_inputs_are_bounded_and_must_be_regular_files() {
    let w = Work::new();
    w.deploy(&["--env-file", "/dev/zero"], &[]).refused("`/dev/zero` is not a regular file");
    w.deploy(&["--compose-files", "/dev/zero"], &[]).refused("`/dev/zero` is not a regular file");
    w.deploy(&["--files", "/dev/zero"], &[]).refused("`/dev/zero` is not a regular file");
    // Sparse files: large, and no room taken on disk.
    let big = std::fs::File::create(w.path("big.env")).unwrap();
    big.set_len(2 << 20).unwrap();
    w.deploy(&["--env-file", "big.env"], &[]).refused("larger than 1.0MiB");
    std::fs::create_dir(w.path("assets")).unwrap();
    std::fs::File::create(w.path("assets/huge.bin")).unwrap().set_len(65 << 20).unwrap();
    w.deploy(&["--files", "assets"], &[]).refused("`assets/huge.bin` is larger than 64.0MiB");

    w.write("secrets.yml", "values:\n  A_KEY: {secret: false}\n");
    let sync = |args: &[&str]| w.run("sync-secrets", &[&["--mode", "check"][..], args].concat(), &[]);
    sync(&["--manifest", "/dev/zero"]).refused("not a regular file");
    sync(&["--manifest", "secrets.yml", "--values-file", "/dev/zero"]).refused("not a regular file");
    w.run("verify-image", &["--image", "app:1", "--env-file", "/dev/zero"], &[]).refused("not a regular file");
    let key_file = w.path("key");
    std::fs::File::create(&key_file).unwrap().set_len(2 << 20).unwrap();
    w.run(
        "deploy-remote",
        &["--host", "127.0.0.1:1", "--ssh-key", key_file.to_str().unwrap(), "--image-tag", "v1", "--app-name", "a"],
        &[],
    )
    .refused("larger than 1.0MiB");
}

#[test]
fn files_never_leave_the_repository_nor_enter_gangplanks_own_folder() {
    let w = Work::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "runner secret").unwrap();
    let link = |target: &Path, at: &str| std::os::unix::fs::symlink(target, w.path(at)).unwrap();
    w.write("conf/app.conf", "ok");
    link(&outside.path().join("secret.txt"), "passwd-link");
    w.deploy(&["--files", "passwd-link"], &[]).refused("symbolic link leading outside the repository");
    link(&outside.path().join("secret.txt"), "conf/inner-link");
    w.deploy(&["--files", "conf"], &[]).refused("`conf/inner-link` -> ");
    std::fs::remove_file(w.path("conf/inner-link")).unwrap();
    link(outside.path(), "conf/dir-link");
    w.deploy(&["--files", "conf"], &[]).refused("`conf/dir-link` -> ");
    std::fs::remove_file(w.path("conf/dir-link")).unwrap();
    link(Path::new(".."), "conf/loop");
    w.deploy(&["--files", "conf"], &[]).refused("a folder that contains it");
    std::fs::remove_file(w.path("conf/loop")).unwrap();

    w.write(".gangplank/state.json", "{}");
    for own in [".gangplank/state.json", "./.gangplank", ".gangplank"] {
        w.deploy(&["--files", own], &[]).refused("would be written into .gangplank/");
    }
    let abs = w.path(".gangplank");
    w.deploy(&["--files", abs.to_str().unwrap()], &[]).refused("would be written into .gangplank/");

    // A link that stays inside the repository is fine: the run gets as far as connecting.
    link(&w.path("conf/app.conf"), "app-link.conf");
    let r = w.deploy(&["--files", "conf\napp-link.conf"], &[]);
    assert!(r.stderr.contains("cannot connect"), "{r:?}");
}

#[test]
fn names_that_would_be_options_and_late_failures_are_refused_first() {
    let w = Work::new();
    w.deploy(&[], &[("INPUT_SERVICES", "web\n--help")]).refused("`services` entry \"--help\"");
    w.deploy(&["--health-url", "http://127.0.0.1:8080/he alth"], &[]).refused("`health-url`");
    w.deploy(&["--health-url", "http://127.0.0.1:8080/x\ty"], &[]).refused("`health-url`");
    w.deploy(&["--app-dir", "/srv/app\n/etc"], &[]).refused("`app-dir`");
    let rollback = ["--host", "127.0.0.1:1", "--known-hosts", &w.known_hosts, "--app-name", "app"];
    w.run("rollback", &rollback, &[("INPUT_SSH_KEY", &w.key), ("INPUT_SERVICES", "-d")]).refused("`services` entry");
    w.run("verify-image", &["--image=--help"], &[]).refused("is not an image reference");

    w.write("secrets.yml", "values:\n  A_KEY: {secret: false, targets: [env-file]}\n");
    w.write("values.env", "A_KEY=k9value\n");
    let sync = |more: &[&str]| {
        let base = [
            "--manifest",
            "secrets.yml",
            "--values-file",
            "values.env",
            "--mode",
            "plan",
            "--host",
            "127.0.0.1:1",
            "--known-hosts",
            &w.known_hosts,
        ];
        w.run("sync-secrets", &[&base[..], more].concat(), &[("INPUT_SSH_KEY", &w.key)])
    };
    sync(&["--app-dir", "/srv/app", "--remote-env-path", "relative/.env"]).refused("`remote-env-path`");
    sync(&["--app-dir", "/srv/a\nb"]).refused("`app-dir`");

    // Found by `cargo xtask adversary`: a token with a line break, or an API URL that is not one, panicked
    // inside the HTTP client (exit 101). Both are bad input now, and the token's value is never shown.
    w.write("secrets.yml", "values:\n  A_KEY: {targets: [github]}\n");
    w.write("values.env", "A_KEY=k9value-long-enough\n");
    let github = |token: &str, more: &[&str]| {
        let base =
            ["--manifest", "secrets.yml", "--values-file", "values.env", "--mode", "plan", "--repository", "acme/app"];
        w.run("sync-secrets", &[&base[..], more].concat(), &[("INPUT_GITHUB_TOKEN", token)])
    };
    let r = github("k9tokenCanary\nsecond-line", &["--api-url", "http://127.0.0.1:1"]);
    r.refused("`github-token`");
    assert!(!r.stderr.contains("second-line"), "{r:?}");
    github("k9tokenCanary", &["--api-url", "-"]).refused("`api-url`");
    github("k9tokenCanary", &["--api-url=--help"]).refused("`api-url`");
    github("k9tokenCanary", &["--api-url", "ftp://127.0.0.1/"]).refused("`api-url`");
    // A trailing line break is what pasting leaves: accepted (the run then fails at the closed port, exit 2).
    let r = github("k9tokenCanary\n", &["--api-url", "http://127.0.0.1:1"]);
    assert!(!r.stderr.contains("`github-token` holds"), "{r:?}");
    assert_eq!(r.code, Some(2), "{r:?}");
    let deploy_env = [("INPUT_ENVIRONMENT", "production"), ("INPUT_GITHUB_TOKEN", "k9tokenCanary\tx")];
    w.deploy(&[], &deploy_env).refused("`github-token`");
}
