//! Guards for what tests start in the Docker engine: a compose project and a single container, each
//! removed (with its volumes) on drop, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{require_docker, run_checked, scrubbed_command, unique_name, wait_for};

/// Label on every container the testbed starts, so a leak can be found with `docker ps -a --filter label=...`.
pub const TESTBED_LABEL: &str = "dev.gangplank.testbed=1";

/// The compose command of the testbed: the v2 plugin (`docker compose`) unless `GANGPLANK_TEST_COMPOSE=v1`
/// asks for `docker-compose` 1.29 (see [`crate::test_compose`]). A missing one fails naming how to install it.
pub fn compose_program() -> Result<&'static [String]> {
    static PROGRAM: OnceLock<Vec<String>> = OnceLock::new();
    if let Some(p) = PROGRAM.get() {
        return Ok(p);
    }
    let works = |cmd: &mut Command| cmd.output().map(|o| o.status.success()).unwrap_or(false);
    let program = if crate::test_compose() == "v2" {
        if !works(scrubbed_command("docker").args(["compose", "version"])) {
            let dir = crate::compose_docker_config().unwrap_or_default();
            bail!(
                "`docker compose` (v2) does not answer with DOCKER_CONFIG={}: `cargo xtask setup` installs the \
                 plugin there (docs/testbed.md, \"compose v2\"), or set GANGPLANK_COMPOSE_V2_DIR to the folder \
                 holding cli-plugins/, or run the v1 smoke with GANGPLANK_TEST_COMPOSE=v1",
                dir.display()
            );
        }
        vec!["docker".to_string(), "compose".to_string()]
    } else if works(scrubbed_command("docker-compose").arg("version")) {
        vec!["docker-compose".to_string()]
    } else {
        bail!(
            "`docker-compose` (v1, GANGPLANK_TEST_COMPOSE=v1) does not work: install the Debian package \
             `docker-compose` (apt-get install -y docker-compose)"
        );
    };
    Ok(PROGRAM.get_or_init(|| program))
}

/// A compose project with a unique name and its own directory; `down -v` on drop.
pub struct Compose {
    pub project: String,
    pub file: PathBuf,
    dir: tempfile::TempDir,
}

impl Compose {
    /// Writes `yaml` as the compose file of a new project named after `prefix`.
    pub fn new(prefix: &str, yaml: &str) -> Result<Compose> {
        require_docker()?;
        compose_program()?;
        let dir = tempfile::Builder::new().prefix("gangplank-compose-").tempdir().context("creating compose dir")?;
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(&file, yaml).context("writing compose file")?;
        Ok(Compose { project: unique_name(prefix), file, dir })
    }

    /// The project directory (put `.env` files or build contexts here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `docker compose -p PROJECT -f FILE` (or `docker-compose ...`), ready for more arguments.
    pub fn command(&self) -> Command {
        let program = compose_program().expect("checked in Compose::new");
        let mut cmd = scrubbed_command(&program[0]);
        cmd.args(&program[1..]).arg("-p").arg(&self.project).arg("-f").arg(&self.file).current_dir(self.dir.path());
        cmd
    }

    /// Runs a compose subcommand; its stdout, or an error with its output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        run_checked(self.command().args(args))
    }

    /// `up -d`.
    pub fn up(&self) -> Result<String> {
        self.run(&["up", "-d"])
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.command().args(["down", "--volumes", "--remove-orphans", "--timeout", "1"]).output();
    }
}

/// A container started with `docker run -d`; removed with its anonymous volumes on drop.
pub struct Container {
    pub id: String,
}

impl Container {
    /// `docker run -d --label dev.gangplank.testbed=1 ARGS...`; `args` ends with the image (and command).
    pub fn run(args: &[&str]) -> Result<Container> {
        require_docker()?;
        let id = run_checked(scrubbed_command("docker").args(["run", "-d", "--label", TESTBED_LABEL]).args(args))?;
        Ok(Container { id: id.trim().to_string() })
    }

    /// `State.Health.Status`: `starting`, `healthy`, `unhealthy`, or empty when the image has no healthcheck.
    pub fn health(&self) -> Result<String> {
        let out = run_checked(scrubbed_command("docker").args([
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &self.id,
        ]))?;
        Ok(out.trim().to_string())
    }

    /// Waits until the health status is `want`.
    pub fn wait_health(&self, want: &str, timeout: Duration) -> Result<()> {
        wait_for(&format!("container {} to be {want}", self.id), timeout, || {
            self.health().ok().filter(|h| h == want).map(|_| ())
        })
        .with_context(|| format!("last status {:?}, logs:\n{}", self.health().unwrap_or_default(), self.logs()))
    }

    /// `docker logs` (stdout and stderr), for failure messages.
    pub fn logs(&self) -> String {
        scrubbed_command("docker")
            .args(["logs", &self.id])
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = scrubbed_command("docker").args(["rm", "--force", "--volumes", &self.id]).output();
    }
}
