//! The real-parts testbed: used by every integration test and by xtask (bench, demo).
//!
//! Every part is the real program on loopback (docs/testbed.md): `sshd`, `docker-registry`, the Docker engine
//! and compose; only GitHub's API is a local stand-in ([`github`]). Everything started here is torn down
//! on drop, also when a test fails.
//!
//! A part that is missing makes its `start()` fail with a message naming the Debian package to install;
//! nothing is skipped silently.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

pub mod act;
mod compose;
pub mod github;
pub mod hosts;
pub mod images;
pub mod load;
mod registry;
mod sshd;
pub mod swarm;

pub use compose::{compose_program, Compose, Container, TESTBED_LABEL};
pub use registry::Registry;
pub use sshd::{ensure_fast_user, ensure_plain_user, Sshd, SshdOptions, FAST_USER, PLAIN_USER};

/// Fails unless the Docker engine answers `docker info`, naming what to install or start.
pub fn require_docker() -> Result<()> {
    require_program("docker", "docker.io")?;
    let out = scrubbed_command("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .context("running `docker info`")?;
    if !out.status.success() {
        bail!(
            "the Docker engine does not answer `docker info`: start it (`dockerd &`, or `systemctl start docker`); \
             if it is not installed: apt-get install -y docker.io\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A name unique to this process, call and moment, usable as a compose project, container or network name
/// (lowercase `[a-z0-9_-]`, starts like `prefix`).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    let prefix = if prefix.is_empty() { "gp".to_string() } else { prefix };
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos)
}

/// A loopback port that was free a moment ago (the OS picks it, so parallel tests do not collide).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// A port free on `ip` (an address of this machine) a moment ago.
pub fn free_port_on(ip: &str) -> Result<u16> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0 to find a free port"))?;
    Ok(l.local_addr()?.port())
}

/// A `Command` whose environment has no `GITHUB_*`, `RUNNER_*` or `INPUT_*` variables, so a test runs the
/// same inside a GitHub runner as on a laptop; tests set what they need. Its `DOCKER_CONFIG` is the
/// testbed's compose choice ([`compose_docker_config`]), so every docker and gangplank child finds the
/// same compose as the hosts the tests log in to.
pub fn scrubbed_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("GITHUB_") || k.starts_with("RUNNER_") || k.starts_with("INPUT_") {
            cmd.env_remove(&key);
        }
    }
    match compose_docker_config() {
        Some(dir) => cmd.env("DOCKER_CONFIG", dir),
        None => cmd.env_remove("DOCKER_CONFIG"),
    };
    cmd
}

/// Where the compose v2 plugin is installed for the testbed, as a `DOCKER_CONFIG` folder holding
/// `cli-plugins/docker-compose` (docs/testbed.md, "compose v2"; `cargo xtask setup` installs it there).
pub const COMPOSE_V2_DEFAULT_DIR: &str = "/opt/gangplank-compose-v2";

/// Which compose the testbed runs: `GANGPLANK_TEST_COMPOSE=v2` (the default, what servers run today) or
/// `v1` (docker-compose 1.29, the smoke run for old servers).
pub fn test_compose() -> &'static str {
    match std::env::var("GANGPLANK_TEST_COMPOSE").as_deref() {
        Ok("v1") => "v1",
        _ => "v2",
    }
}

/// The `DOCKER_CONFIG` folder that makes `docker compose` the v2 plugin, when the testbed runs v2:
/// `GANGPLANK_COMPOSE_V2_DIR`, else [`COMPOSE_V2_DEFAULT_DIR`]. `None` under v1, where children get no
/// `DOCKER_CONFIG` so only `docker-compose` answers. A v2 folder without the plugin is left as it is:
/// [`compose_program`] then fails with the way to install it.
pub fn compose_docker_config() -> Option<PathBuf> {
    if test_compose() == "v1" {
        return None;
    }
    Some(compose_v2_dir())
}

/// The folder holding `cli-plugins/docker-compose` (v2), under v1 as well: `GANGPLANK_COMPOSE_V2_DIR`, else
/// [`COMPOSE_V2_DEFAULT_DIR`]. `cargo xtask setup` installs the plugin there.
pub fn compose_v2_dir() -> PathBuf {
    std::env::var_os("GANGPLANK_COMPOSE_V2_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(COMPOSE_V2_DEFAULT_DIR))
}

/// The long flags `gangplank <step> --help` lists (its inputs), without `--help`/`--version`, sorted.
pub fn step_flags(gangplank: impl AsRef<Path>, step: &str) -> Result<Vec<String>> {
    let out = scrubbed_command(gangplank.as_ref()).args([step, "--help"]).output()?;
    anyhow::ensure!(out.status.success(), "gangplank {step} --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches([',', '=']).split(['=', ' ', '<']).next().unwrap_or("").to_string())
        .filter(|w| {
            !w.is_empty() && w != "help" && w != "version" && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .collect();
    flags.sort();
    flags.dedup();
    Ok(flags)
}

/// The path of a link named `step` (e.g. `deploy-remote`) to the `gangplank` executable, created next to it
/// in `gangplank-steps/`: running it is running `gangplank <step>`, the way a `PATH` of links installs the
/// steps. Created under a temporary name and renamed into place, so parallel tests never see half a link.
pub fn step_program(gangplank: impl AsRef<Path>, step: &str) -> PathBuf {
    let gangplank = gangplank.as_ref();
    let dir = gangplank.parent().expect("the gangplank executable has a parent directory").join("gangplank-steps");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let link = dir.join(step);
    if std::fs::read_link(&link).is_ok_and(|t| t == gangplank) {
        return link;
    }
    let tmp = dir.join(format!(".{step}.{}", unique_name("link")));
    std::os::unix::fs::symlink(gangplank, &tmp).unwrap_or_else(|e| panic!("linking {}: {e}", tmp.display()));
    std::fs::rename(&tmp, &link).unwrap_or_else(|e| panic!("renaming {} into place: {e}", tmp.display()));
    link
}

/// Panics, naming the label, if `secret` appears in any text raw or base64-encoded (standard and url-safe
/// alphabets, at each of the 3 byte alignments). Lines starting with `::add-mask::` are ignored: that is where
/// a secret is meant to appear.
pub fn assert_no_secret(haystacks: &[(&str, &str)], secret: &str) {
    if secret.is_empty() {
        return;
    }
    let needles = secret_needles(secret);
    for (label, text) in haystacks {
        for line in text.lines().filter(|l| !l.starts_with("::add-mask::")) {
            if line.contains(secret) {
                panic!("secret leaked raw in {label}: line {line:?}");
            }
        }
        // A multi-line secret spans lines, so also look in the text without the add-mask lines.
        let kept: String = text.split_inclusive('\n').filter(|l| !l.starts_with("::add-mask::")).collect();
        if kept.contains(secret) {
            panic!("secret leaked raw in {label}");
        }
        for (how, needle) in &needles {
            if kept.contains(needle.as_str()) {
                panic!("secret leaked {how} in {label}: found {needle:?}");
            }
        }
    }
}

/// Base64 fragments that appear whenever `secret` is encoded, whatever bytes surround it. For alignment `a`
/// (bytes before the secret mod 3), the characters that mix in neighbouring bytes are cut off both ends.
fn secret_needles(secret: &str) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut out = Vec::new();
    for align in 0..3usize {
        let mut bytes = vec![0u8; align];
        bytes.extend_from_slice(secret.as_bytes());
        // Only whole 3-byte groups encode independently of what follows.
        bytes.truncate(bytes.len() / 3 * 3);
        // Characters that carry bits of the `align` prefix bytes: 0, 2 or 3.
        let skip = [0, 2, 3][align];
        for (alphabet, engine) in [("base64", &STANDARD_NO_PAD), ("base64url", &URL_SAFE_NO_PAD)] {
            let encoded = engine.encode(&bytes);
            let needle = encoded.get(skip..).unwrap_or_default().to_string();
            // Too short a fragment would match by chance in any base64 text.
            if needle.len() >= 8 {
                out.push((format!("{alphabet}-encoded (alignment {align})"), needle));
            }
        }
    }
    out
}

/// Fails unless `program` (a path, or a name looked up in `PATH`) exists, naming the Debian package.
pub fn require_program(program: &str, package: &str) -> Result<PathBuf> {
    find_program(program).with_context(|| {
        format!("`{program}` is not installed: install the Debian package `{package}` (apt-get install -y {package})")
    })
}

/// `program` if it is a path that exists, else its first match in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Runs a command to completion; its stdout on success, an error with stderr otherwise.
pub fn run_checked(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A plain HTTP/1.0 GET on a loopback address: (status, body). Optional basic auth. Enough for health files
/// and the registry's `/v2/` without pulling an HTTP client into every test.
pub fn http_get(addr: &str, path: &str, basic_auth: Option<(&str, &str)>) -> Result<(u16, String)> {
    use base64::Engine;
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((user, pass)) = basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).with_context(|| format!("sending request to {addr}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).with_context(|| format!("reading response from {addr}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {addr}: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `files` (relative paths, parents created) under `dir`.
fn write_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = unique_name("My App.1");
        let b = unique_name("My App.1");
        assert_ne!(a, b);
        assert!(a.starts_with("my-app-1-"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'), "{a}");
    }

    #[test]
    fn secret_found_raw_and_encoded_at_every_alignment() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        use base64::Engine;
        let secret = "s3cr3t?>value~~with/+chars";
        assert_no_secret(&[("clean", "nothing here"), ("mask", &format!("::add-mask::{secret}\n"))], secret);
        for prefix in ["", "a", "ab"] {
            for engine in [&STANDARD, &URL_SAFE] {
                let text = format!("log: {}", engine.encode(format!("{prefix}{secret}trailing")));
                let leaked = std::panic::catch_unwind(|| assert_no_secret(&[("out", &text)], secret));
                assert!(leaked.is_err(), "not found with prefix {prefix:?} in {text}");
            }
        }
        let raw = std::panic::catch_unwind(|| assert_no_secret(&[("stderr", &format!("x{secret}y"))], secret));
        assert!(raw.is_err());
    }

    #[test]
    fn multi_line_secret_found_across_lines() {
        let secret = "line one\nline two";
        let text = format!("before\n{secret}\nafter");
        assert!(std::panic::catch_unwind(|| assert_no_secret(&[("out", &text)], secret)).is_err());
        assert_no_secret(&[("masked", "::add-mask::line one\n::add-mask::line two\n")], secret);
    }
}
