//! A real OpenSSH server on a free loopback port, with its own host key and client keys; or, with
//! [`SshdOptions`], inside a namespaced host on its address, with the keys of another server's clients.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{free_port, require_program, run_checked, scrubbed_command};

const SSHD: &str = "/usr/sbin/sshd";

/// A running `sshd` that lets `root` log in with any of the generated client keys.
///
/// Commands run over it execute on this same machine, so they reach the same Docker engine the tests use.
pub struct Sshd {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Unencrypted ed25519 private key, OpenSSH format.
    pub client_key: String,
    /// Another ed25519 key, encrypted with [`Sshd::passphrase`].
    pub client_key_encrypted: String,
    pub passphrase: String,
    /// An RSA key in PEM format (`-----BEGIN RSA PRIVATE KEY-----`).
    pub client_key_pem: String,
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`, as `ssh-keyscan` prints it.
    pub known_hosts: String,
    /// The same entry in the hashed form `ssh-keygen -H` writes (`|1|salt|hash ssh-ed25519 AAAA...`).
    pub known_hosts_hashed: String,
    /// `SHA256:...` of the host key, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// A known_hosts line for the same `[host]:port` with a different ed25519 key ("changed host key").
    pub wrong_known_hosts: String,
    pub log_path: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
    listen: String,
    enter: Vec<String>,
}

/// Where and how a [`Sshd`] runs; [`Default`] is the loopback server most tests use.
#[derive(Clone)]
pub struct SshdOptions<'a> {
    /// The address sshd listens on and clients connect to.
    pub listen: String,
    /// `None`: a free loopback port. A namespaced host has its own ports, so it can take 22.
    pub port: Option<u16>,
    /// A command prefix sshd is started under, e.g. `nsenter --net=…` to run it inside a host's namespaces.
    pub enter: Vec<String>,
    /// The login user the `host_spec` and `ssh_args` name.
    pub user: String,
    /// `SetEnv NAME=VALUE` for every session: `DOCKER_HOST` of a namespaced host's engine, `DOCKER_CONFIG` of
    /// a compose plugin folder.
    pub set_env: Vec<(String, String)>,
    /// Reuse this server's client keys instead of generating new ones, so one `ssh-key` logs in to several
    /// hosts, as one deploy key does for a fleet.
    pub clients_of: Option<&'a Sshd>,
}

impl Default for SshdOptions<'_> {
    fn default() -> Self {
        SshdOptions {
            listen: "127.0.0.1".into(),
            port: None,
            enter: vec![],
            user: "root".into(),
            set_env: vec![],
            clients_of: None,
        }
    }
}

const CLIENT_KEYS: [&str; 3] = ["client_ed25519", "client_encrypted", "client_rsa_pem"];

impl Sshd {
    /// Generates the keys and config, starts sshd on loopback and waits until it listens.
    pub fn start() -> Result<Sshd> {
        Sshd::start_with(&SshdOptions::default())
    }

    /// Starts sshd as `opts` says and waits until it listens.
    pub fn start_with(opts: &SshdOptions) -> Result<Sshd> {
        require_program(SSHD, "openssh-server")?;
        require_program("ssh-keygen", "openssh-client")?;
        // sshd refuses to start without its privilege-separation directory.
        fs::create_dir_all("/run/sshd").context("creating /run/sshd (sshd's privilege separation directory)")?;

        let dir = tempfile::Builder::new().prefix("gangplank-sshd-").tempdir().context("creating sshd temp dir")?;
        let d = dir.path();
        // One host key type only (ed25519), so clients are never offered a second key they were not told about.
        keygen(d, "host_ed25519", &["-t", "ed25519", "-N", ""])?;
        let passphrase = "correct horse battery staple".to_string();
        match opts.clients_of {
            Some(other) => {
                for name in CLIENT_KEYS {
                    for file in [name.to_string(), format!("{name}.pub")] {
                        fs::copy(other.dir.path().join(&file), d.join(&file))
                            .with_context(|| format!("copying client key {file}"))?;
                    }
                }
            }
            None => {
                keygen(d, "client_ed25519", &["-t", "ed25519", "-N", ""])?;
                keygen(d, "client_encrypted", &["-t", "ed25519", "-N", &passphrase])?;
                keygen(d, "client_rsa_pem", &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""])?;
            }
        }
        keygen(d, "other_host_ed25519", &["-t", "ed25519", "-N", ""])?;

        let mut authorized = String::new();
        for name in CLIENT_KEYS {
            authorized.push_str(&read(&d.join(format!("{name}.pub")))?);
        }
        fs::write(d.join("authorized_keys"), authorized).context("writing authorized_keys")?;
        // sshd reads authorized_keys as the user logging in: let every test user traverse and read it
        // (it holds public keys only; the private keys in this directory stay 0600).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d, fs::Permissions::from_mode(0o711)).context("chmod testbed dir")?;
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644))
            .context("chmod authorized_keys")?;

        let fingerprint = {
            let out = run_checked(scrubbed_command("ssh-keygen").arg("-lf").arg(d.join("host_ed25519.pub")))?;
            out.split_whitespace().nth(1).context("unexpected `ssh-keygen -lf` output")?.to_string()
        };

        let log_path = d.join("sshd.log");
        // The port is free when chosen but another process may take it before sshd binds; try a few.
        let mut last_err = None;
        let attempts = if opts.port.is_some() { 1 } else { 5 };
        for _ in 0..attempts {
            let port = opts.port.unwrap_or_else(free_port);
            write_config(d, &opts.listen, port, &opts.set_env)?;
            match spawn(d, &log_path, &opts.enter, &opts.listen, port) {
                Ok(child) => {
                    let host = opts.listen.clone();
                    // ssh-keyscan and known_hosts name port 22 by the bare host, any other as `[host]:port`.
                    let name = if port == 22 { host.clone() } else { format!("[{host}]:{port}") };
                    let pubkey = |name: &str| -> Result<String> {
                        let text = read(&d.join(format!("{name}.pub")))?;
                        let mut f = text.split_whitespace();
                        Ok(format!("{} {}", f.next().unwrap_or_default(), f.next().unwrap_or_default()))
                    };
                    let known_hosts = format!("{name} {}", pubkey("host_ed25519")?);
                    let wrong_known_hosts = format!("{name} {}", pubkey("other_host_ed25519")?);
                    let known_hosts_hashed = hash_known_hosts(d, &known_hosts)?;
                    fs::write(d.join("known_hosts"), format!("{known_hosts}\n")).context("writing known_hosts")?;
                    return Ok(Sshd {
                        host,
                        port,
                        user: opts.user.clone(),
                        client_key: read(&d.join("client_ed25519"))?,
                        client_key_encrypted: read(&d.join("client_encrypted"))?,
                        passphrase,
                        client_key_pem: read(&d.join("client_rsa_pem"))?,
                        known_hosts,
                        known_hosts_hashed,
                        fingerprint,
                        wrong_known_hosts,
                        log_path,
                        dir,
                        child,
                        listen: opts.listen.clone(),
                        enter: opts.enter.clone(),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt")).context("starting sshd")
    }

    /// `root@127.0.0.1:PORT`.
    pub fn host_spec(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The listener's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Logins accepted so far, counted in sshd's log.
    pub fn connections(&self) -> usize {
        fs::read_to_string(&self.log_path).map(|log| log.matches("Accepted publickey").count()).unwrap_or(0)
    }

    /// The unencrypted client key on disk (mode 0600), for the OpenSSH `ssh` client.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A known_hosts file holding [`Sshd::known_hosts`].
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// sshd's log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Arguments for the OpenSSH `ssh` client to log in here non-interactively with [`Sshd::key_file`]
    /// and strict host key checking; append the remote command.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key_file().display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts_file().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-F".into(),
            "/dev/null".into(),
            "-p".into(),
            self.port.to_string(),
            format!("{}@{}", self.user, self.host),
        ]
    }
}

/// Faults a test can inflict on this server, as a real host would suffer them.
impl Sshd {
    /// The per-connection sshd processes (privilege monitor and session), not the commands they run.
    pub fn sessions(&self) -> Vec<u32> {
        descendants(self.child.id()).into_iter().filter(|p| comm(*p).as_deref() == Some("sshd")).collect()
    }

    /// Drop every open connection (the sessions' sshd processes die; the listener stays): a network
    /// blip, or an sshd restart that ends sessions.
    pub fn drop_connections(&self) {
        signal(&self.sessions(), "KILL");
    }

    /// Kill sshd outright, listener and sessions (an OOM kill, a crashed or removed server). The
    /// commands those sessions ran are left to themselves, as on a real host.
    pub fn kill(&mut self) {
        // The listener stops first, so no session can start after the list is read: killed in one go, a
        // client that saw its session die could reconnect before the listener's turn came (seen on a loaded
        // machine), to a session that then outlived the "killed" server.
        stop_listener(self.child.id());
        let mut all = self.sessions();
        all.push(self.child.id());
        signal(&all, "KILL");
        let _ = self.child.wait();
    }

    /// Start sshd again on the same port with the same keys (after [`Sshd::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), &self.log_path, &self.enter, &self.listen, self.port)?;
        Ok(())
    }

    /// Freeze the server: listener and sessions stop (SIGSTOP) with their sockets open, so the
    /// kernel still accepts connections and data but nothing answers, like a host that hangs.
    pub fn freeze(&self) {
        // The listener first, so no session starts after the list is read (as in `kill`).
        stop_listener(self.child.id());
        signal(&self.sessions(), "STOP");
    }

    pub fn thaw(&self) {
        let mut all = self.sessions();
        all.push(self.child.id());
        signal(&all, "CONT");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // The listener we started, and sessions a fault left frozen or still open.
        let sessions = self.sessions();
        signal(&sessions, "CONT");
        signal(&sessions, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid…` (the workspace denies `unsafe`, so no libc here).
fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = scrubbed_command("kill").arg(format!("-{sig}")).args(pids.iter().map(u32::to_string)).status();
}

/// SIGSTOP to the listener, returning once it is stopped (state `T` in /proc), so it forks no session after.
fn stop_listener(pid: u32) {
    signal(&[pid], "STOP");
    let stopped = || (stat_field(pid, 0)? == "T").then_some(());
    let _ = crate::wait_for("sshd's listener to stop", Duration::from_secs(10), stopped);
}

/// Every process below `root`, read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Some(ppid) = stat_field(pid, 1).and_then(|p| p.parse::<u32>().ok()) {
            parent.insert(pid, ppid);
        }
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&c, &pp) in &parent {
            if pp == p {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Field `n` of `/proc/<pid>/stat` after the command name (0: state, 1: parent pid). The name may hold spaces
/// and parentheses, so the fields start after the last `)`.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(n).map(str::to_string)
}

fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

fn keygen(dir: &Path, name: &str, args: &[&str]) -> Result<()> {
    run_checked(scrubbed_command("ssh-keygen").args(["-q", "-C", name, "-f"]).arg(dir.join(name)).args(args))
        .with_context(|| format!("generating key {name}"))?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_config(dir: &Path, listen: &str, port: u16, set_env: &[(String, String)]) -> Result<()> {
    let d = dir.display();
    let mut config = format!(
        "Port {port}
ListenAddress {listen}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
LogLevel VERBOSE
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
# Tests open many connections and many channels per connection (property tests, benchmarks).
MaxStartups 200
MaxSessions 200
Subsystem sftp internal-sftp
"
    );
    // Under compose v2 the login users find the plugin the way a server with it installed would.
    // One SetEnv line for everything: sshd takes the first SetEnv it reads and ignores later ones.
    let mut vars: Vec<(String, String)> = crate::compose_docker_config()
        .map(|d| ("DOCKER_CONFIG".to_string(), d.display().to_string()))
        .into_iter()
        .collect();
    for (name, value) in set_env {
        // sshd splits SetEnv on white space and reads quotes: refuse what it would read differently.
        if value.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') || name.is_empty() {
            bail!("SetEnv {name}={value:?}: the testbed passes only values without white space or quotes");
        }
        vars.retain(|(n, _)| n != name);
        vars.push((name.clone(), value.clone()));
    }
    if !vars.is_empty() {
        let line: Vec<String> = vars.iter().map(|(n, v)| format!("{n}={v}")).collect();
        config.push_str(&format!("SetEnv {}\n", line.join(" ")));
    }
    fs::write(dir.join("sshd_config"), config).context("writing sshd_config")
}

fn spawn(dir: &Path, log: &Path, enter: &[String], listen: &str, port: u16) -> Result<Child> {
    let _ = fs::remove_file(log);
    let mut cmd = match enter.split_first() {
        Some((program, args)) => {
            let mut c = scrubbed_command(program);
            c.args(args).arg(SSHD);
            c
        }
        None => scrubbed_command(SSHD),
    };
    let mut child = cmd
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("sshd.stderr")).context("creating sshd.stderr")?)
        .spawn()
        .with_context(|| format!("spawning {SSHD}"))?;
    // sshd logs this line right after listen(); waiting for it avoids a probe connection in the log.
    let ready = format!("Server listening on {listen} port {port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fs::read_to_string(log).is_ok_and(|l| l.contains(&ready)) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            let stderr = fs::read_to_string(dir.join("sshd.stderr")).unwrap_or_default();
            let log = fs::read_to_string(log).unwrap_or_default();
            bail!("sshd exited ({status}) on port {port}:\n{stderr}{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("sshd did not listen on port {port} within 10s:\n{}", fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hash_known_hosts(dir: &Path, line: &str) -> Result<String> {
    let path = dir.join("known_hosts_hashed");
    fs::write(&path, format!("{line}\n")).context("writing known_hosts to hash")?;
    run_checked(scrubbed_command("ssh-keygen").arg("-H").arg("-f").arg(&path))?;
    let hashed = read(&path)?;
    let hashed = hashed.lines().find(|l| l.starts_with("|1|")).context("`ssh-keygen -H` wrote no hashed line")?;
    Ok(hashed.to_string())
}

/// The name of a login user whose shell starts fast: `bash` with Debian's stock dot files, in the
/// `docker` group like a real deploy user.
///
/// root on these machines sources pyenv from `~/.bashrc`, and Debian's bash reads `~/.bashrc` for every
/// command sshd runs, which costs ~300 ms per command. Tests that run a thousand commands, and the
/// benchmarks, log in as this user instead (the testbed's authorized_keys serves every user). Created on
/// first use when missing; needs root, as the testbed does.
pub const FAST_USER: &str = "gangplank-test";

pub fn ensure_fast_user() -> Result<String> {
    ensure_user(FAST_USER, true)
}

/// A login user with no docker access and no sudo rights: the user a preflight must refuse, with a hint,
/// when `sudo: true` would prompt for a password or the Docker daemon is out of its reach.
pub const PLAIN_USER: &str = "gangplank-plain";

pub fn ensure_plain_user() -> Result<String> {
    ensure_user(PLAIN_USER, false)
}

/// Create `name` when missing (bash, Debian's stock dot files, not locked so sshd lets it in with a
/// key), and put it in the `docker` group when `docker` is set. Needs root, as the testbed does.
fn ensure_user(name: &str, docker: bool) -> Result<String> {
    let exists =
        |n: &str| std::process::Command::new("id").arg(n).output().map(|o| o.status.success()).unwrap_or(false);
    if !exists(name) {
        let out = std::process::Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", name])
            .output()
            .context("running useradd")?;
        // Another test process may have created it at the same moment.
        if !exists(name) {
            bail!("cannot create the test user {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    // No password, but not locked either: sshd refuses locked accounts even for key logins.
    let _ = std::process::Command::new("usermod").args(["-p", "*", name]).output();
    // A deploy user runs docker through the socket's group.
    let has_docker_group = std::process::Command::new("getent")
        .args(["group", "docker"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if docker && has_docker_group {
        let _ = std::process::Command::new("usermod").args(["-aG", "docker", name]).output();
    }
    Ok(name.to_string())
}
