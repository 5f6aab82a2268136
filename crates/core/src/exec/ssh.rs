//! The SSH executor on `ssh2` (libssh2): one verified, authenticated connection per host, reused by
//! every command of a step (spec: "One SSH connection per host serves a whole step").
//!
//! Host keys are always checked against `known-hosts` lines (hashed entries too) or a `SHA256:`
//! fingerprint; an unknown or changed key is refused with the fingerprint the server offered.
//! `insecure-ignore-host-key` is the only bypass, and it warns.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use ssh2::{HostKeyType, MethodType, Session};

use crate::actions;
use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::exec::{Executor, Output};
use crate::input::{HostKeyPolicy, HostSpec, SshConfig};
use crate::known_hosts::{self, Verdict};

/// One verified, authenticated SSH connection to one host, reused for every command of a step.
pub struct SshExecutor {
    label: String,
    sudo: bool,
    session: Session,
    /// A signal stops the running command (off while the engine puts a host back).
    interruptible: bool,
    /// Set once the host stopped answering: later commands fail at once instead of waiting again.
    broken: bool,
    /// Deadline of a command that sets none.
    default_timeout: Duration,
    /// A command cut off with the connection, possibly still running (see [`Executor::stranded`]).
    stranded: Option<u32>,
}

/// `SHA256:<base64 without padding>` of a host key blob, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    }
}

impl SshExecutor {
    /// Connect, verify the host key by the config's policy, and log in with the key.
    /// Every failure here is exit 2: nothing was changed on the host.
    pub fn connect(host: &HostSpec, cfg: &SshConfig) -> Result<SshExecutor> {
        let label = host.to_string();
        let addrs: Vec<_> = (host.host.as_str(), host.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::bad_input(format!("cannot resolve host `{}`: {e}", host.host))
                    .hint("check the `host` input: a name this runner can resolve, or an IP address")
            })?
            .collect();
        let mut last_err = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, cfg.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            let why = last_err.map(|e| e.to_string()).unwrap_or_else(|| "no address".into());
            Error::bad_input(format!("cannot connect to {label}: {why}")).hint(
                "check host and port (is sshd listening there, and does the firewall allow the runner?), or raise `connect-timeout`",
            )
        })?;
        let _ = tcp.set_nodelay(true);

        let mut session = Session::new().map_err(|e| Error::failed(format!("cannot start an SSH session: {e}")))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(cfg.connect_timeout.as_millis().min(u32::MAX as u128) as u32);
        if let HostKeyPolicy::KnownHosts(lines) = &cfg.host_key {
            let types = known_hosts::key_types(&known_hosts::parse(lines)?, &host.host, host.port);
            if !types.is_empty() {
                // Ignore an error: libssh2 refuses names it does not know, and then negotiates freely.
                let _ = session.method_pref(MethodType::HostKey, &types.join(","));
            }
        }
        session.handshake().map_err(|e| {
            Error::bad_input(format!("SSH handshake with {label} failed: {}", e.message()))
                .hint("check that the port is an SSH server's (not a web port), and raise `connect-timeout` if the network is slow")
        })?;

        verify_host_key(&session, host, &label, &cfg.host_key)?;

        let pass = cfg.passphrase.as_ref().map(|p| p.expose());
        session.userauth_pubkey_memory(&host.user, None, cfg.key.expose(), pass).map_err(|e| {
            let msg = e.message().to_string();
            if msg.contains("passphrase") || msg.contains("Unable to extract public key") || msg.contains("decrypt") {
                Error::bad_input(format!("the SSH key could not be read for {label}: {}", actions::redact(&msg)))
                    .hint("check `ssh-key-passphrase`: the key is encrypted and the passphrase does not open it")
            } else {
                Error::bad_input(format!("login as `{}` on {label} was refused: {}", host.user, actions::redact(&msg)))
                    .hint("add the deploy key's public half to ~/.ssh/authorized_keys of that user on the server, and check `user`")
            }
        })?;
        if !session.authenticated() {
            return Err(Error::bad_input(format!("login as `{}` on {label} was refused", host.user))
                .hint("add the deploy key's public half to ~/.ssh/authorized_keys of that user on the server"));
        }
        // Every command has a deadline of its own from now on (see `exec`); keepalives tell the
        // server we are alive (`ServerAliveInterval` in OpenSSH's words).
        session.set_timeout(0);
        session.set_keepalive(true, KEEPALIVE_EVERY.as_secs() as u32);
        Ok(SshExecutor {
            label,
            sudo: cfg.sudo,
            session,
            interruptible: true,
            broken: false,
            default_timeout: DEFAULT_COMMAND_TIMEOUT,
            stranded: None,
        })
    }
}

fn verify_host_key(session: &Session, host: &HostSpec, label: &str, policy: &HostKeyPolicy) -> Result<()> {
    let (key, kind) = session.host_key().ok_or_else(|| Error::bad_input(format!("{label} offered no host key")))?;
    let offered = fingerprint(key);
    let kind_name = key_type_name(kind);
    match policy {
        HostKeyPolicy::Insecure => {
            actions::warning(
                "host key not verified",
                format!(
                    "insecure-ignore-host-key is set: accepting {kind_name} {offered} from {label} without checking it"
                ),
            );
            Ok(())
        }
        HostKeyPolicy::Fingerprint(want) => {
            if want.trim().trim_end_matches('=') == offered {
                Ok(())
            } else {
                Err(Error::bad_input(format!(
                    "the host key of {label} does not match `host-fingerprint`: the server offered {kind_name} {offered}"
                ))
                .hint("if the server was reinstalled, check the new key out of band (e.g. on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and update `host-fingerprint`; otherwise someone may be in the middle"))
            }
        }
        HostKeyPolicy::KnownHosts(lines) => match known_hosts::check(&known_hosts::parse(lines)?, &host.host, host.port, key) {
            Verdict::Match => Ok(()),
            Verdict::Revoked => Err(Error::bad_input(format!(
                "the host key of {label} is REVOKED: the server offered {kind_name} {offered}, which `known-hosts` marks @revoked"
            ))
            .hint("a revoked key is never accepted, even when another line lists it: the server must use a new key, verified out of band and added to `known-hosts`")),
            Verdict::Changed => Err(Error::bad_input(format!(
                "the host key of {label} has CHANGED: the server offered {kind_name} {offered}, which is not the key in `known-hosts`"
            ))
            .hint("if the server was reinstalled, verify the new key out of band and update `known-hosts`; otherwise someone may be in the middle, so do not deploy")),
            Verdict::Unknown => Err(Error::bad_input(format!(
                "the host key of {label} is unknown: the server offered {kind_name} {offered}, and `known-hosts` has no entry for it"
            ))
            .hint(format!(
                "add the line that `ssh-keyscan -p {} {}` prints to `known-hosts` after checking its fingerprint (an entry without `[host]:port` is for port 22 only), or set `host-fingerprint: {offered}`",
                host.port, host.host
            ))),
        },
    }
}

fn lost(label: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::lost(format!("SSH connection to {label} failed while {what}: {e}"))
        .hint("the server may have rebooted or dropped the connection; the next run repairs a host left mid-deploy")
}

/// First line on stderr of every remote command: the process group of everything it starts. sshd
/// runs each command in a session of its own (`setsid`), so the login shell's pid is that group.
const PGID_MARK: &str = "@@gangplank-pgid=";

/// How often a keepalive goes out while a command runs (keeps NAT and firewalls from dropping us).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// A host that sends nothing for this long is taken as frozen or cut off, whatever the command's own
/// deadline: every command beats every [`BEAT_EVERY`] (see [`wrap`]).
const SILENT_AFTER: Duration = Duration::from_secs(20);
const BEAT_EVERY: Duration = Duration::from_secs(5);

/// What the heartbeat prints on stderr; taken out again by [`take_marks`]. One short `printf` is one
/// `write`, so a beat never splits a line of the command's own output.
const BEAT: &str = "\x1e@@gangplank-beat\x1e";

/// The line sshd runs for a command: the process group first (see [`PGID_MARK`]), then a heartbeat
/// ([`BEAT`] on stderr every [`BEAT_EVERY`]) for as long as the command runs.
/// SSH keepalives cannot tell a frozen host (its kernel still acknowledges them) from a busy one; a
/// heartbeat from the host's own shell can, during a 15-minute pull as during a 1-second probe. The
/// beat's `sleep` holds no channel descriptor, so the channel closes as soon as the command ends.
fn wrap(command: &str) -> String {
    format!(
        "printf '{PGID_MARK}%s\\n' \"$$\" >&2; \
         (while sleep {beat} </dev/null >/dev/null 2>&1; do printf '\\036@@gangplank-beat\\036' >&2 || exit 0; done) </dev/null >/dev/null & \
         gangplank_beat=$!; {command}\ngangplank_rc=$?; kill \"$gangplank_beat\" 2>/dev/null; exit \"$gangplank_rc\"",
        beat = BEAT_EVERY.as_secs()
    )
}

/// Stop every process of a remote command: TERM now, KILL a few seconds later if one is left.
/// `-s NAME --` is the POSIX form: dash (Debian's and Ubuntu's `sh`) refuses `kill -TERM -- -PGID`
/// ("Illegal number: -") and so stopped nothing.
const KILL_SCRIPT: &str = r#"kill -s TERM -- "-$1" 2>/dev/null
( sleep 3; kill -s KILL -- "-$1" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
exit 0"#;

/// The command that stops process group `pg` on the host (a command left running by a lost
/// connection, see [`Executor::stranded`]).
pub fn stop_group(pg: u32) -> Cmd {
    Cmd::script(KILL_SCRIPT).arg(pg.to_string()).privileged().timeout(Duration::from_secs(10))
}

/// stdout and stderr of a command.
type Streams = (Vec<u8>, Vec<u8>);

/// Why reading a command's output stopped before it finished.
enum Cut {
    Interrupted,
    Deadline,
    /// Nothing, not even the heartbeat, for this long ([`SILENT_AFTER`], or less at the command's deadline).
    Silent(Duration),
    Io(std::io::Error),
}

impl Executor for SshExecutor {
    fn label(&self) -> &str {
        &self.label
    }

    fn sudo(&self) -> bool {
        self.sudo
    }

    fn set_interruptible(&mut self, on: bool) {
        self.interruptible = on;
    }

    fn stranded(&self) -> Option<u32> {
        self.stranded
    }

    fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output> {
        self.exec_with(cmd, stdin, None)
    }

    /// Prints each line of stdout as it arrives, fenced; when several hosts print at once, when it ends.
    fn run_streamed(&mut self, cmd: &Cmd) -> Result<Output> {
        if crate::actions::prefixed() {
            return super::run_then_print(self, cmd);
        }
        let fence = crate::actions::Untrusted::open();
        let mut partial: Vec<u8> = Vec::new();
        let print = |l: &[u8]| fence.line(String::from_utf8_lossy(l).trim_end_matches(['\n', '\r']));
        let r = {
            let mut each = |chunk: &[u8]| {
                partial.extend_from_slice(chunk);
                while let Some(i) = partial.iter().position(|&b| b == b'\n') {
                    print(&partial[..=i]);
                    partial.drain(..=i);
                }
            };
            self.exec_with(cmd, cmd.stdin_secret().map(|s| s.expose().as_bytes()), Some(&mut each))
        };
        if !partial.is_empty() {
            print(&partial);
        }
        r
    }
}

/// Where [`SshExecutor::exec_with`] hands each chunk of stdout as it arrives.
type OnStdout<'a> = &'a mut dyn FnMut(&[u8]);

impl SshExecutor {
    /// [`Executor::exec`], handing each chunk of stdout to `on_stdout` as it arrives.
    fn exec_with(&mut self, cmd: &Cmd, stdin: Option<&[u8]>, on_stdout: Option<OnStdout>) -> Result<Output> {
        let label = self.label.clone();
        if self.broken {
            return Err(Error::lost(format!("{label} stopped answering earlier in this run"))
                .hint("the next run repairs a host left mid-deploy"));
        }
        let deadline = cmd.get_timeout().unwrap_or(self.default_timeout);
        let line = wrap(&cmd.render(self.sudo));
        // Blocking calls (opening the channel, writing stdin) give up at the command's deadline too.
        self.session.set_timeout(deadline.as_millis().min(u32::MAX as u128) as u32);
        let started = std::time::Instant::now();
        let mut ch = self.session.channel_session().map_err(|e| self.lose(&label, "opening a channel", e))?;
        ch.exec(&line).map_err(|e| self.lose(&label, "starting a command", e))?;
        if let Some(data) = stdin {
            // A failed write shows up below as a short upload (the remote script checks size and hash).
            let _ = ch.write_all(data).and_then(|_| ch.flush());
        }
        let _ = ch.send_eof();
        // Read both streams as data arrives: a command that fills the stderr window while we wait on
        // stdout would otherwise block for ever (seen with 3 MB on each).
        self.session.set_blocking(false);
        let interruptible = self.interruptible;
        let read = read_both(&self.session, &mut ch, started + deadline, interruptible, on_stdout);
        self.session.set_blocking(true);
        match read {
            Ok((stdout, mut stderr)) => {
                take_marks(&mut stderr);
                ch.wait_close().map_err(|e| self.lose(&label, "closing a channel", e))?;
                let mut status = ch.exit_status().map_err(|e| self.lose(&label, "reading the exit status", e))?;
                // A command killed by a signal sends no exit status (libssh2 then says 0): never a success.
                if let Some(sig) = ch.exit_signal().ok().and_then(|s| s.exit_signal) {
                    status = 128 + signal_number(&sig);
                }
                self.session.set_timeout(0);
                Ok(Output { status, stdout, stderr })
            }
            Err((cut, mut stderr)) => {
                let pgid = take_marks(&mut stderr);
                // Stop the remote command whatever happened, so nothing keeps changing the host behind
                // our back (a `compose up` finishing after we put the previous release back). A silent
                // or broken connection cannot carry the kill: the next connection does ([`Executor::stranded`]).
                self.stranded = pgid;
                if matches!(cut, Cut::Silent(_) | Cut::Io(_)) {
                    // Whatever libssh2 still does on this session (freeing the channel, the goodbye on
                    // drop) must not wait on a host that stopped answering.
                    self.session.set_timeout(1000);
                }
                if let (Some(pg), Cut::Interrupted | Cut::Deadline) = (pgid, &cut) {
                    self.session.set_timeout(3000);
                    // The kill goes first: closing the command's channel waits for sshd's close, which
                    // sshd sends only once the command has exited (its session keeps the channel).
                    let kill = stop_group(pg).render(self.sudo);
                    // `wait_close` needs the remote EOF first (libssh2 refuses it before).
                    let stopped = self.session.channel_session().is_ok_and(|mut k| {
                        k.exec(&kill).is_ok() && k.send_eof().is_ok() && k.wait_eof().is_ok() && k.wait_close().is_ok()
                    });
                    let _ = ch.close();
                    if stopped {
                        self.stranded = None;
                    }
                    self.session.set_timeout(0);
                }
                match cut {
                    Cut::Interrupted => Err(Error::interrupted(format!(
                        "interrupted by a signal while running a command on {label}; the command was stopped"
                    ))),
                    Cut::Deadline if self.stranded.is_none() => Err(Error::failed(format!(
                        "a command on {label} did not finish within {}s and was stopped",
                        deadline.as_secs()
                    ))
                    .hint("the host answers but the command hangs: look at what it waits for (a registry, a lock, a full disk)")),
                    Cut::Deadline => Err(self.lose(&label, "stopping a command past its deadline", "no answer")),
                    Cut::Silent(heard_for) => {
                        self.broken = true;
                        Err(Error::lost(format!(
                            "{label} did not answer for {}s (host frozen or network cut?)",
                            heard_for.as_secs()
                        ))
                        .hint("check the host and its network; the next run repairs a host left mid-deploy"))
                    }
                    Cut::Io(e) => Err(self.lose(&label, "reading output", e)),
                }
            }
        }
    }
}

impl SshExecutor {
    fn lose(&mut self, label: &str, what: &str, e: impl std::fmt::Display) -> Error {
        self.broken = true;
        lost(label, what, e)
    }
}

/// Remove the heartbeats and the [`PGID_MARK`] line from stderr, byte for byte (stderr may be
/// binary); return the group that line names.
fn take_marks(stderr: &mut Vec<u8>) -> Option<u32> {
    let mut out = Vec::with_capacity(stderr.len());
    let mut pg = None;
    let mut rest = stderr.as_slice();
    while !rest.is_empty() {
        if rest.starts_with(BEAT.as_bytes()) {
            rest = &rest[BEAT.len()..];
        } else if pg.is_none() && rest.starts_with(PGID_MARK.as_bytes()) {
            let line = rest.iter().position(|b| *b == b'\n').map(|e| e + 1).unwrap_or(rest.len());
            pg = String::from_utf8_lossy(&rest[PGID_MARK.len()..line]).trim().parse().ok();
            rest = &rest[line..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    *stderr = out;
    pg
}

/// The number of a signal as SSH names it (RFC 4254: "TERM", "KILL", …); 127 for one it does not list.
fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 127,
    }
}

/// Drain stdout and stderr of a channel in non-blocking mode until the remote end is done, a signal
/// arrives (when `interruptible`) or `deadline` passes; keepalives go out meanwhile.
fn read_both(
    session: &Session,
    ch: &mut ssh2::Channel,
    deadline: std::time::Instant,
    interruptible: bool,
    mut on_stdout: Option<OnStdout>,
) -> std::result::Result<Streams, (Cut, Vec<u8>)> {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Start polling fast (short commands answer in well under a millisecond), then back off.
    let mut pause = Duration::from_micros(20);
    let mut next_keepalive = std::time::Instant::now() + KEEPALIVE_EVERY;
    let mut heard = std::time::Instant::now();
    loop {
        let mut progressed = false;
        let mut failed = None;
        for (id, stream, sink) in [(0, ch.stream(0), &mut stdout), (1, ch.stderr(), &mut stderr)] {
            let mut stream = stream;
            match stream.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    sink.extend_from_slice(&buf[..n]);
                    if let (0, Some(f)) = (id, on_stdout.as_mut()) {
                        f(&buf[..n]);
                    }
                    progressed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err((Cut::Io(e), stderr));
        }
        if progressed {
            pause = Duration::from_micros(20);
            heard = std::time::Instant::now();
            continue;
        }
        if ch.eof() {
            return Ok((stdout, stderr));
        }
        let now = std::time::Instant::now();
        if interruptible && crate::process::interrupted().is_some() {
            return Err((Cut::Interrupted, stderr));
        }
        if now - heard >= SILENT_AFTER {
            return Err((Cut::Silent(now - heard), stderr));
        }
        if now >= deadline {
            // A host that has not beaten for two beats is not slow but silent: say so, and do not try
            // to stop the command through it.
            let silent = now - heard >= 2 * BEAT_EVERY;
            return Err((if silent { Cut::Silent(now - heard) } else { Cut::Deadline }, stderr));
        }
        if now >= next_keepalive {
            let _ = session.keepalive_send();
            next_keepalive = now + KEEPALIVE_EVERY;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

impl Drop for SshExecutor {
    fn drop(&mut self) {
        if self.broken {
            self.session.set_timeout(1000);
        }
        let _ = self.session.disconnect(None, "gangplank step done", None);
    }
}

/// How long a command may run when it sets no deadline of its own ([`Cmd::timeout`]).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_and_the_group_line_leave_stderr_as_the_command_wrote_it() {
        let mut err =
            [format!("{PGID_MARK}4242\nhalf a {BEAT}line\n").as_bytes(), &[0, 0xff, b'\n'], BEAT.as_bytes()].concat();
        assert_eq!(take_marks(&mut err), Some(4242));
        assert_eq!(err, [&b"half a line\n"[..], &[0, 0xff, b'\n']].concat());
        let mut none = b"plain".to_vec();
        assert_eq!(take_marks(&mut none), None);
        assert_eq!(none, b"plain");
    }

    #[test]
    fn stop_group_stops_a_whole_process_group_under_dash_too() {
        use std::os::unix::process::CommandExt;
        // A group of its own with a child in it, as sshd starts a command.
        let mut group =
            std::process::Command::new("sh").arg("-c").arg("sleep 60 & wait").process_group(0).spawn().unwrap();
        let pg = group.id();
        let out = crate::exec::Local::new(false).run(&stop_group(pg)).unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        // The group leader ends by TERM (not by the KILL 3 s later), well before its sleep would.
        let t = std::time::Instant::now();
        let status = group.wait().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "the group was not stopped by TERM");
        assert!(!status.success());
    }

    #[test]
    fn fingerprint_matches_ssh_keygen_form() {
        // sha256("") in base64 without padding.
        assert_eq!(fingerprint(b""), "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    }
}
