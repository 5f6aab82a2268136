//! A real `docker-registry` (CNCF distribution 2.8) on a free loopback port, with filesystem storage in a
//! temp dir. The Docker engine treats 127.0.0.0/8 registries as insecure (plain HTTP) by default, so pushes
//! and pulls need no daemon configuration. [`Registry::start_on`] listens on another address of this machine
//! instead: the bridge of the namespaced hosts ([`crate::hosts`]), whose engines are told it is insecure.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port_on, http_get, require_program, run_checked, scrubbed_command, wait_for};

const PROGRAM: &str = "docker-registry";

/// A running registry; `auth` is `Some((user, password))` when it requires htpasswd login.
pub struct Registry {
    /// `127.0.0.1:PORT` (or the address given to [`Registry::start_on`]), also the image name prefix (`127.0.0.1:PORT/app:v1`).
    pub addr: String,
    pub auth: Option<(String, String)>,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Registry {
    /// A registry without authentication.
    pub fn start() -> Result<Registry> {
        Registry::start_inner("127.0.0.1", None)
    }

    /// A registry without authentication listening on `ip` (an address of this machine the test made, such
    /// as the namespaced hosts' bridge), on a port free there.
    pub fn start_on(ip: &str) -> Result<Registry> {
        Registry::start_inner(ip, None)
    }

    /// A registry on `ip` (see [`Registry::start_on`]) that requires `user`/`pass`.
    pub fn start_on_with_auth(ip: &str, user: &str, pass: &str) -> Result<Registry> {
        Registry::start_inner(ip, Some((user.to_string(), pass.to_string())))
    }

    /// A registry that requires `user`/`pass` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, pass: &str) -> Result<Registry> {
        Registry::start_inner("127.0.0.1", Some((user.to_string(), pass.to_string())))
    }

    fn start_inner(ip: &str, auth: Option<(String, String)>) -> Result<Registry> {
        require_program(PROGRAM, "docker-registry")?;
        let dir = tempfile::Builder::new().prefix("gangplank-registry-").tempdir().context("creating registry dir")?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).context("creating registry storage")?;
        let auth_section = match &auth {
            Some((user, pass)) => {
                require_program("htpasswd", "apache2-utils")?;
                // distribution only accepts bcrypt entries.
                let line = run_checked(scrubbed_command("htpasswd").args(["-Bbn", user, pass]))?;
                let path = dir.path().join("htpasswd");
                fs::write(&path, line.trim()).context("writing htpasswd")?;
                format!("auth:\n  htpasswd:\n    realm: gangplank-testbed\n    path: {}\n", path.display())
            }
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        let mut registry = Registry { addr: String::new(), auth, dir, config, child: None };
        // The port is free when chosen but may be taken before the registry binds it; try a few. It stays
        // fixed after the first start so restart() keeps the address images were tagged with.
        let mut last_err = None;
        for _ in 0..3 {
            registry.addr = format!("{ip}:{}", free_port_on(ip)?);
            registry.write_config(&storage, &auth_section)?;
            match registry.restart() {
                Ok(()) => return Ok(registry),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt")).context("starting docker-registry")
    }

    fn write_config(&self, storage: &std::path::Path, auth_section: &str) -> Result<()> {
        let config = format!(
            "version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {}
  secret: gangplank-testbed-secret
{auth_section}",
            storage.display(),
            self.addr
        );
        fs::write(&self.config, config).context("writing registry config")
    }

    /// The registry's log (stdout and stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the process ("registry down"); storage and address are kept for [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same address with the same storage; waits until `/v2/` answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let log_path = self.dir.path().join("registry.log");
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path).context("opening registry log")?;
        let mut child = scrubbed_command(PROGRAM)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {PROGRAM}"))?;
        let addr = self.addr.clone();
        let ready = wait_for(&format!("the registry at {addr} to answer /v2/"), Duration::from_secs(15), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            // 200 without auth, 401 with: either means it is serving.
            match http_get(&addr, "/v2/", None) {
                Ok((200 | 401, _)) => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Ok(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Ok(Err(status)) => bail!("{PROGRAM} exited ({status}):\n{}", self.log()),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e).context(self.log())
            }
        }
    }

    /// `127.0.0.1:PORT/name`: an image reference in this registry.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
