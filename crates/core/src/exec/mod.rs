//! Executors run [`Cmd`]s: on this machine ([`Local`]), over SSH ([`ssh::SshExecutor`]), or not at all
//! ([`Recording`], for plans, dry runs and unit tests).
//!
//! Invariant: only executors do I/O with a host. Builders stay pure.

pub mod ssh;

use std::io::Write;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::cmd::Cmd;
use crate::error::{Error, Result};

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Output {
        Output { status: 0, stdout: stdout.into(), stderr: Vec::new() }
    }
    pub fn success(&self) -> bool {
        self.status == 0
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// The last lines of stderr (or stdout when stderr is empty), for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let text =
            if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) { self.stderr_str() } else { self.stdout_str() };
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Something that runs commands on one host.
pub trait Executor: Send {
    /// The host, for messages (`root@203.0.113.10:22`, `local`).
    fn label(&self) -> &str;

    /// Whether privileged commands get `sudo -n`.
    fn sudo(&self) -> bool;

    /// Run a command, feeding `stdin` when given. `Err` only when the command could not be run at all
    /// (connection lost); a command that ran and failed is an `Ok` with a non-zero status.
    fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output>;

    /// Whether SIGINT/SIGTERM stop a running command (`Err` of class `Interrupted`). On by default;
    /// the engine turns it off while it puts a host back after a signal.
    fn set_interruptible(&mut self, _on: bool) {}

    /// The process group of a remote command that was cut off with the connection and may still
    /// run on the host; a new connection stops it ([`ssh::stop_group`]) before changing anything.
    fn stranded(&self) -> Option<u32> {
        None
    }

    /// Run a command, feeding it the secret it carries for its stdin ([`Cmd::secret_stdin`]), if any.
    fn run(&mut self, cmd: &Cmd) -> Result<Output> {
        self.exec(cmd, cmd.stdin_secret().map(|s| s.expose().as_bytes()))
    }

    /// Run a command whose output comes from outside (a hook) and print that output fenced as untrusted
    /// ([`crate::actions::Untrusted`]): line by line as it arrives where the executor can (SSH), else when the
    /// command ends. Its stdout is also in the returned [`Output`].
    fn run_streamed(&mut self, cmd: &Cmd) -> Result<Output> {
        run_then_print(self, cmd)
    }

    /// Run and require exit 0; otherwise fail (exit 1) naming `what` and the command's last lines.
    fn check(&mut self, cmd: &Cmd, what: &str) -> Result<Output> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::failed(format!("{what} failed on {} (exit {}): {}", self.label(), out.status, out.tail(5))))
        }
    }

    /// Replace `dest` atomically with `content` at `mode` (see [`atomic_write`]).
    fn upload(&mut self, dest: &str, content: &[u8], mode: u32) -> Result<()> {
        let cmd = atomic_write(dest, content, mode);
        let out = self.exec(&cmd, Some(content))?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::failed(format!("writing {dest} on {} failed: {}", self.label(), out.tail(3)))
                .hint("check that the directory exists and is writable by the SSH user (or set `sudo: true`)"))
        }
    }
}

/// The remote half of an atomic upload. The content arrives on stdin into a temporary file in the same
/// directory; it is renamed over the destination only when its size and SHA-256 match, after an fsync,
/// so an interrupted upload leaves the old file and never a partial one (host-layout.md).
pub const ATOMIC_WRITE_SCRIPT: &str = r#"set -eu
dest=$1; mode=$2; size=$3; sum=$4
dir=$(dirname -- "$dest"); base=$(basename -- "$dest")
tmp="$dir/.$base.gangplank-tmp.$$"
trap 'rm -f -- "$tmp"' EXIT HUP INT TERM PIPE
umask 077
cat > "$tmp"
got=$(wc -c < "$tmp" | tr -d ' ')
if [ "$got" != "$size" ]; then
  echo "upload of $dest cut short ($got of $size bytes); the old file is untouched" >&2
  exit 75
fi
if command -v sha256sum >/dev/null 2>&1; then
  printf '%s  %s\n' "$sum" "$tmp" | sha256sum -c --status - || { echo "upload of $dest arrived corrupted; the old file is untouched" >&2; exit 75; }
fi
chmod "$mode" "$tmp"
sync -- "$tmp" 2>/dev/null || sync
mv -f -- "$tmp" "$dest"
trap - EXIT HUP INT TERM PIPE
sync -- "$dir" 2>/dev/null || true
"#;

/// The command that atomically writes `content` (sent on stdin) to `dest` with `mode`.
pub fn atomic_write(dest: &str, content: &[u8], mode: u32) -> Cmd {
    Cmd::script(ATOMIC_WRITE_SCRIPT)
        .arg(dest)
        .arg(format!("{mode:o}"))
        .arg(content.len().to_string())
        .arg(sha256_hex(content))
        .privileged()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Runs commands on this machine with `sh -c`.
pub struct Local {
    sudo: bool,
}

impl Local {
    pub fn new(sudo: bool) -> Local {
        Local { sudo }
    }
}

impl Executor for Local {
    fn label(&self) -> &str {
        "local"
    }
    fn sudo(&self) -> bool {
        self.sudo
    }
    fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd.render(self.sudo))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::failed(format!("cannot start sh: {e}")))?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(&data);
                }))
            }
            _ => None,
        };
        let out = child.wait_with_output().map_err(|e| Error::failed(format!("sh did not finish: {e}")))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(Output { status: out.status.code().unwrap_or(-1), stdout: out.stdout, stderr: out.stderr })
    }
}

/// [`Executor::run_streamed`] where output cannot be printed as it comes: run, then print it fenced.
pub fn run_then_print<E: Executor + ?Sized>(ex: &mut E, cmd: &Cmd) -> Result<Output> {
    let out = ex.run(cmd)?;
    crate::actions::print_untrusted(&out.stdout_str());
    Ok(out)
}

/// Runs nothing: records each command line (secrets redacted) and answers from a script of replies.
/// Used by plans, `preflight-only` printing and unit tests of command sequences.
#[derive(Default)]
pub struct Recording {
    label: String,
    sudo: bool,
    /// Every command seen, as displayed (secrets redacted), with the stdin length.
    pub log: Vec<String>,
    replies: Vec<(String, Output)>,
}

impl Recording {
    pub fn new(label: &str, sudo: bool) -> Recording {
        Recording { label: label.to_string(), sudo, ..Default::default() }
    }

    /// Answer commands whose displayed line contains `needle` with `out` (first match wins).
    pub fn reply(mut self, needle: &str, out: Output) -> Recording {
        self.replies.push((needle.to_string(), out));
        self
    }
}

impl Executor for Recording {
    fn label(&self) -> &str {
        &self.label
    }
    fn sudo(&self) -> bool {
        self.sudo
    }
    fn exec(&mut self, cmd: &Cmd, stdin: Option<&[u8]>) -> Result<Output> {
        let line = cmd.display(self.sudo);
        let out =
            self.replies.iter().find(|(n, _)| line.contains(n.as_str())).map(|(_, o)| o.clone()).unwrap_or_default();
        self.log.push(match stdin {
            Some(d) => format!("{line} <<< {} bytes", d.len()),
            None => line,
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_runs_commands_with_status_and_streams() {
        let mut l = Local::new(false);
        let out = l.run(&Cmd::script("echo out; echo err >&2; exit 3")).unwrap();
        assert_eq!((out.status, out.stdout_str().as_str(), out.stderr_str().as_str()), (3, "out\n", "err\n"));
        let out = l.exec(&Cmd::new("cat"), Some(b"piped")).unwrap();
        assert_eq!(out.stdout, b"piped");
    }

    #[test]
    fn local_upload_is_atomic_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("it's a $file");
        let d = dest.to_str().unwrap();
        let mut l = Local::new(false);
        l.upload(d, b"one\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"one\n");
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        // A cut-short upload: the script is told 100 bytes and gets 3.
        let cmd = atomic_write(d, &[b'x'; 100], 0o644);
        let out = l.exec(&cmd, Some(b"xxx")).unwrap();
        assert_eq!(out.status, 75, "{}", out.stderr_str());
        assert_eq!(std::fs::read(&dest).unwrap(), b"one\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn recording_redacts_and_replies() {
        let s = crate::Secret::new("rec-canary");
        let mut r = Recording::new("h", true).reply("docker info", Output::ok("27.0"));
        let out = r.run(&Cmd::new("docker").arg("info").privileged()).unwrap();
        assert_eq!(out.stdout, b"27.0");
        r.run(&Cmd::new("echo").secret_arg(&s)).unwrap();
        assert_eq!(r.log, vec!["sudo -n docker info", "echo [REDACTED]"]);
    }
}
