//! Child processes with a deadline and an interrupt flag.
//!
//! SIGINT/SIGTERM/SIGHUP only set a flag (signal-hook); every wait on a child polls that flag, kills the
//! child and returns [`RunError::Interrupted`], so the caller's cleanup (Drop guards) runs on the main
//! thread before the process exits. Commands are argv vectors, never shell text.
//!
//! Each child starts a process group of its own, and a deadline or an interrupt kills the whole group: a
//! program's own children go with it. (`docker compose` runs the compose plugin as a child of the docker CLI;
//! killing the CLI alone left the plugin running with the output pipes open, and the run waited on them for
//! ever, seen with Debian 12's docker.io CLI.)
//!
//! Used by the binaries that drive local programs (push-registry, verify-image).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Catch SIGINT, SIGTERM and SIGHUP: from now on they only set the flag [`interrupted`] reads.
pub fn install_signal_flag() {
    let flag = SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let _ = signal_hook::flag::register_usize(sig, Arc::clone(flag), sig as usize);
    }
}

/// The signal received, if any.
pub fn interrupted() -> Option<i32> {
    SIGNAL.get().map(|f| f.load(Ordering::SeqCst)).filter(|s| *s != 0).map(|s| s as i32)
}

/// Sleep up to `d`, waking early when a signal arrives.
pub fn sleep(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && interrupted().is_none() {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
}

/// What a finished child left.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
    /// stderr and stdout together, for classifying failures.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stderr, self.stdout)
    }
    /// The last `n` non-blank lines of stderr (or stdout when stderr is empty).
    pub fn tail(&self, n: usize) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (not installed).
    Spawn(String, std::io::Error),
    /// The deadline passed; the child was killed. Holds what it printed so far.
    TimedOut(Finished),
    /// A signal arrived; the child was killed.
    Interrupted(i32),
}

/// Options of one run.
#[derive(Default, Clone, Copy)]
pub struct Opts<'a> {
    pub stdin: Option<&'a [u8]>,
    pub deadline: Option<Instant>,
    /// Cleanup commands are not interruptible: they must finish even after a signal.
    pub uninterruptible: bool,
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run `cmd` to the end (or deadline, or signal), capturing stdout and stderr.
pub fn run(cmd: &mut Command, opts: Opts<'_>) -> Result<Finished, RunError> {
    use std::os::unix::process::CommandExt;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .process_group(0)
        .stdin(if opts.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Spawn(program.clone(), e))?;
    if let (Some(data), Some(mut pipe)) = (opts.stdin, child.stdin.take()) {
        // Small inputs (a password): written whole, then the pipe closes so the child sees EOF.
        let _ = pipe.write_all(data);
    }
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let collect =
        |out: Option<std::thread::JoinHandle<String>>, err: Option<std::thread::JoinHandle<String>>, status| Finished {
            status,
            stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
            stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
        };
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(collect(out, err, st.code().unwrap_or(-1))),
            Ok(None) => {}
            Err(e) => return Err(RunError::Spawn(program, e)),
        }
        if !opts.uninterruptible {
            if let Some(sig) = interrupted() {
                kill_group(&mut child);
                return Err(RunError::Interrupted(sig));
            }
        }
        if opts.deadline.is_some_and(|d| Instant::now() >= d) {
            kill_group(&mut child);
            return Err(RunError::TimedOut(collect(out, err, -1)));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILL to `child`'s process group (it leads one: [`run`] starts it so), then reap it. `kill` of the shell,
/// since the standard library signals one process only.
fn kill_group(child: &mut std::process::Child) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s KILL -- \"-$1\" 2>/dev/null", "sh", &child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether an executable named `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| std::fs::metadata(d.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
}

/// Which compose command this machine has: the v2 plugin (`docker compose`) or v1 (`docker-compose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compose {
    V2,
    V1,
}

impl Compose {
    /// Detect compose: `docker compose version` first, then `docker-compose` on PATH.
    pub fn detect() -> Option<Compose> {
        let v2 = run(Command::new("docker").args(["compose", "version"]), Opts::default());
        if v2.is_ok_and(|f| f.ok()) {
            return Some(Compose::V2);
        }
        on_path("docker-compose").then_some(Compose::V1)
    }

    /// A command for this compose, with `args` after the program.
    pub fn command(self) -> Command {
        match self {
            Compose::V2 => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            Compose::V1 => Command::new("docker-compose"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compose::V2 => "docker compose",
            Compose::V1 => "docker-compose",
        }
    }
}

// The binaries that drive local programs stamp their reports with the same clock and run URL as the
// host layout does.
pub use crate::host::{now_rfc3339, run_url};

/// Whether the output of a failed `docker login`, `pull` or `push` says the registry refused the
/// credentials (not that it could not be reached): push-registry and the hosts' login read it alike.
pub fn is_registry_auth_refused(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["unauthorized", "401", "incorrect username or password", "authentication required", "denied"]
        .iter()
        .any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_stdin_and_deadline() {
        let f = run(&mut Command::new("cat"), Opts { stdin: Some(b"hello"), ..Default::default() }).unwrap();
        assert_eq!((f.status, f.stdout.as_str()), (0, "hello"));
        let r = run(
            Command::new("sleep").arg("5"),
            Opts { deadline: Some(Instant::now() + Duration::from_millis(200)), ..Default::default() },
        );
        assert!(matches!(r, Err(RunError::TimedOut(_))));
        assert!(matches!(run(&mut Command::new("/nonexistent/x"), Opts::default()), Err(RunError::Spawn(..))));
    }

    #[test]
    fn a_deadline_kills_the_childs_own_children_too() {
        // The child leaves a child of its own holding the output pipes, as the docker CLI does with the compose
        // plugin; that grandchild marks a file if it lives to finish. The run ends at its deadline and the
        // grandchild is killed with it: the run does not wait for it, and the mark never appears.
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("grandchild-finished");
        let script = "(sleep 3; touch \"$1\") & wait";
        let r = run(
            Command::new("sh").args(["-c", script, "sh"]).arg(&mark),
            Opts { deadline: Some(Instant::now() + Duration::from_millis(500)), ..Default::default() },
        );
        assert!(matches!(r, Err(RunError::TimedOut(_))));
        assert!(!mark.exists(), "the run waited for a grandchild that outlived its deadline");
        std::thread::sleep(Duration::from_secs(4));
        assert!(!mark.exists(), "the grandchild outlived the run");
    }

    #[test]
    fn tail_prefers_stderr() {
        let f = Finished { status: 1, stdout: "o".into(), stderr: "a\n\nb\nc\n".into() };
        assert_eq!(f.tail(2), "b\nc");
    }
}
