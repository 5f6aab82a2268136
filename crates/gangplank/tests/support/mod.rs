//! What the deploy-remote and rollback tests share: a fixture with a real sshd, a real registry holding
//! the sample images as `REGISTRY/APP:{v1,v2,broken}`, a compose file publishing a free loopback port,
//! and an app dir in a temp dir. Dropping it takes the compose project down.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use gangplank_testbed::{free_port, http_get, images, scrubbed_command, unique_name, Registry, Sshd};

pub struct Fixture {
    pub sshd: Sshd,
    pub registry: Registry,
    pub app: String,
    pub image: String,
    pub port: u16,
    /// The local "repository": compose.yaml, prod.env, extra files.
    pub work: tempfile::TempDir,
    /// Parent of the host-side app dir.
    pub host_root: tempfile::TempDir,
    pub app_dir: PathBuf,
    /// `host_root` is a tmpfs of this many bytes, unmounted on drop ([`Fixture::on_small_disk`]).
    pub small_disk: Option<u64>,
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub outputs: BTreeMap<String, String>,
    pub summary: String,
    pub record: String,
}

impl Run {
    pub fn out(&self, k: &str) -> &str {
        self.outputs.get(k).map(String::as_str).unwrap_or("")
    }
    pub fn texts(&self) -> Vec<(&str, &str)> {
        vec![
            ("stdout", self.stdout.as_str()),
            ("stderr", self.stderr.as_str()),
            ("summary", self.summary.as_str()),
            ("record", self.record.as_str()),
        ]
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub const ENV_CANARY: &str = "envCanary-7f3b9d2e41";

impl Fixture {
    pub fn new(prefix: &str) -> Fixture {
        Self::with_app_dir(prefix, "app")
    }

    /// `app_dir_name` is the last component of the app dir (may hold shell metacharacters).
    pub fn with_app_dir(prefix: &str, app_dir_name: &str) -> Fixture {
        let samples = images::samples().expect("sample images build");
        let sshd = Sshd::start().expect("sshd starts");
        let registry = Registry::start().expect("registry starts");
        let app = unique_name(prefix);
        let image = registry.image(&app);
        for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2), ("broken", &samples.broken)] {
            sh(&format!("docker tag {src} {image}:{tag} && docker push -q {image}:{tag} >/dev/null && docker rmi {image}:{tag} >/dev/null"));
        }
        let port = free_port();
        let work = tempfile::tempdir().unwrap();
        let host_root = tempfile::tempdir().unwrap();
        let app_dir = host_root.path().join(app_dir_name);
        let fx = Fixture { sshd, registry, app, image, port, work, host_root, app_dir, small_disk: None };
        fx.write_compose("");
        fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\n"));
        fx
    }

    /// A fixture whose host side (the app dir's parent) is a tmpfs of `bytes`, to fill the disk.
    pub fn on_small_disk(prefix: &str, bytes: u64) -> Fixture {
        let mut fx = Self::new(prefix);
        let root = fx.host_root.path().display().to_string();
        sh(&format!("mount -t tmpfs -o size={bytes},mode=0755 gangplank-test {}", gangplank_core::quote(&root)));
        fx.small_disk = Some(bytes);
        fx
    }

    /// Fill the host's disk until `left` bytes are free, with a file outside the app dir.
    pub fn fill_disk(&self, left: u64) {
        let root = self.host_root.path();
        let free =
            sh(&format!("df -B1 --output=avail {} | tail -1", gangplank_core::quote(&root.display().to_string())));
        let free: u64 = free.trim().parse().expect("df prints a number");
        let fill = free.saturating_sub(left);
        std::fs::write(root.join("filler"), vec![0u8; fill as usize]).expect("filling the disk");
    }

    /// compose.yaml with the sample service; `extra` is appended under the service.
    pub fn write_compose(&self, extra: &str) {
        let yaml = format!(
            "services:\n  web:\n    image: \"{}:${{IMAGE_TAG}}\"\n    ports:\n      - \"127.0.0.1:{}:8080\"\n    env_file: .env\n    stop_grace_period: 1s\n{extra}",
            self.image, self.port
        );
        std::fs::write(self.work.path().join("compose.yaml"), yaml).unwrap();
    }

    pub fn write_env(&self, text: &str) {
        std::fs::write(self.work.path().join("prod.env"), text).unwrap();
    }

    pub fn app_dir(&self) -> String {
        self.app_dir.to_string_lossy().into_owned()
    }

    /// Base arguments for either binary.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.sshd.host_spec(),
            format!("--ssh-key={}", self.sshd.client_key),
            "--known-hosts".into(),
            self.sshd.known_hosts.clone(),
            "--app-name".into(),
            self.app.clone(),
            "--app-dir".into(),
            self.app_dir(),
            "--connect-timeout".into(),
            "10s".into(),
        ]
    }

    pub fn deploy_args(&self, tag: &str) -> Vec<String> {
        deploy_args(self.ssh_args(), tag, self.port)
    }

    pub fn deploy(&self, args: &[String]) -> Run {
        self.run(&deploy_remote(), args, &[])
    }

    pub fn rollback(&self, args: &[String]) -> Run {
        self.run(&rollback_bin(), args, &[])
    }

    pub fn command(&self, bin: &Path, args: &[String], env: &[(&str, &str)]) -> (Command, tempfile::TempDir) {
        let gh = tempfile::tempdir().unwrap();
        let mut c = scrubbed_command(bin);
        c.args(args).current_dir(self.work.path());
        c.env("GITHUB_OUTPUT", gh.path().join("output"));
        c.env("GITHUB_STEP_SUMMARY", gh.path().join("summary"));
        if !args.iter().any(|a| a == "--record-file") {
            c.env("RUNNER_TEMP", gh.path());
        }
        for (k, v) in env {
            c.env(k, v);
        }
        (c, gh)
    }

    pub fn run(&self, bin: &Path, args: &[String], env: &[(&str, &str)]) -> Run {
        let (mut c, gh) = self.command(bin, args, env);
        let out = c.output().expect("binary runs");
        collect(out, gh.path(), args)
    }

    /// What the sample app answers on /health, over HTTP from here.
    pub fn health(&self) -> Option<String> {
        http_get(&format!("127.0.0.1:{}", self.port), "/health", None)
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b.trim().to_string())
    }

    pub fn read_host(&self, rel: &str) -> String {
        std::fs::read_to_string(self.app_dir.join(rel)).unwrap_or_default()
    }

    /// A hash of every path, mode and content under the app dir.
    pub fn tree_hash(&self) -> String {
        if !self.app_dir.exists() {
            return "absent".into();
        }
        sh(&format!(
            "cd {} && find . -printf '%p %m %s\\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum",
            gangplank_core::quote(&self.app_dir())
        ))
    }
}

/// deploy-remote's arguments after `ssh` (host, key, app): the sample compose file and env file, a
/// 20 s gate on `/health` of `port` on the host, small disk and lock limits.
pub fn deploy_args(ssh: Vec<String>, tag: &str, port: u16) -> Vec<String> {
    let mut a = ssh;
    a.push(format!("--image-tag={tag}"));
    a.extend(
        [
            "--compose-files",
            "compose.yaml",
            "--env-file",
            "prod.env",
            "--health-timeout",
            "20s",
            "--min-free-disk",
            "1MiB",
            "--lock-timeout",
            "30s",
        ]
        .map(String::from),
    );
    a.push("--health-url".into());
    a.push(format!("http://127.0.0.1:{port}/health"));
    a
}

pub fn collect(out: Output, gh: &Path, args: &[String]) -> Run {
    let outputs = std::fs::read_to_string(gh.join("output")).unwrap_or_default();
    let outputs = gangplank_core::actions::parse_output_file(&outputs).unwrap().into_iter().collect::<BTreeMap<_, _>>();
    let record_path = args
        .iter()
        .position(|a| a == "--record-file")
        .map(|i| PathBuf::from(&args[i + 1]))
        .unwrap_or_else(|| gh.join("gangplank/deploy-record.json"));
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs,
        summary: std::fs::read_to_string(gh.join("summary")).unwrap_or_default(),
        record: std::fs::read_to_string(record_path).unwrap_or_default(),
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.small_disk.is_some() {
            let _ = Command::new("umount").arg("-l").arg(self.host_root.path()).status();
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ids=$(docker ps -aq --filter label=com.docker.compose.project={a}); [ -n \"$ids\" ] && docker rm -f -v $ids; \
                 docker network rm {a}_default; refs=$(docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {img}); [ -n \"$refs\" ] && docker rmi $refs",
                a = self.app,
                img = self.image
            ))
            .output();
    }
}

/// `deploy-remote` as a link to the `gangplank` executable under test.
pub fn deploy_remote() -> PathBuf {
    gangplank_testbed::step_program(env!("CARGO_BIN_EXE_gangplank"), "deploy-remote")
}

/// `rollback` as a link to the same executable.
pub fn rollback_bin() -> PathBuf {
    gangplank_testbed::step_program(env!("CARGO_BIN_EXE_gangplank"), "rollback")
}

pub fn wait_health(fx: &Fixture, want: &str) {
    gangplank_testbed::wait_for(&format!("{want} on /health"), Duration::from_secs(10), || {
        (fx.health().as_deref() == Some(want)).then_some(())
    })
    .unwrap();
}

pub fn record_json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.record).unwrap_or_else(|e| panic!("record file is not JSON ({e}): {:?}", r.record))
}
