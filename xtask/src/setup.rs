//! The real parts the testbed uses (docs/testbed.md), found and installed by one function, [`ensure`], which
//! `cargo xtask setup`, `cargo xtask test` and `cargo xtask demo` all call first. A fresh Debian 12 or 13 or
//! Ubuntu 24.04 machine with Rust and Docker needs nothing else.
//!
//! What needs root (Debian packages, the compose v2 plugin and Caddy unpacked under /opt) is one shell script,
//! run as root, or through `sudo -n` for a user with passwordless sudo (GitHub's hosted runners). Where neither
//! works, or on a system without apt, that script is printed as the one command to run and the run exits 2:
//! the printed text is the text that would have run, so it cannot drift from it. What belongs to the user's
//! toolchain and Python (the musl target, cargo-fuzz, the Python tools) is installed as the user. A second run
//! finds everything and installs nothing. act, for the act tier, is the harness's own: it fetches its pinned
//! release on first use (docs/testbed.md, "Workflows under act").

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gangplank_core::cmd::quote;
use gangplank_testbed::{find_program, images, scrubbed_command};

/// Which tier's parts: the everyday gate's, or those `--full` adds (the static release, fuzzing, act).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tier {
    Everyday,
    Full,
}

/// `cargo xtask setup [--full]`: install what is missing and say what is there.
pub fn run(args: &[String]) -> Result<()> {
    let mut tier = Tier::Everyday;
    for a in args {
        match a.as_str() {
            "--full" => tier = Tier::Full,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\nhint: {USAGE}"),
        }
    }
    let started = Instant::now();
    ensure(tier)?;
    println!("==> every real part is there ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

const USAGE: &str = "usage: cargo xtask setup [--full]";

/// A part the tests need, the Debian package that provides it, and for which tier.
struct Part {
    what: &'static str,
    package: &'static str,
    present: fn() -> bool,
    tier: Tier,
}

const fn part(what: &'static str, package: &'static str, present: fn() -> bool) -> Part {
    Part { what, package, present, tier: Tier::Everyday }
}

const APT_PARTS: &[Part] = &[
    part("sshd", "openssh-server", || Path::new("/usr/sbin/sshd").is_file()),
    part("ssh, ssh-keygen", "openssh-client", || has("ssh") && has("ssh-keygen")),
    part("docker-registry", "docker-registry", || has("docker-registry")),
    part("busybox (static)", "busybox-static", || images::busybox_static_path().is_ok()),
    part("htpasswd", "apache2-utils", || has("htpasswd")),
    // The deploy preflight test needs a real sudo that would prompt.
    part("sudo", "sudo", || has("sudo")),
    // docker-compose 1.29 for the v1 smoke (Debian 12, Ubuntu 24.04); Debian 13's package of that name is
    // compose v2. Compose v2 itself is unpacked after the packages (see `compose_v2_route`).
    part("docker-compose", "docker-compose", || has("docker-compose")),
    // Only where Docker is missing altogether: a machine with Docker's own packages (docker-ce, as on GitHub's
    // runners) has `docker` and keeps it.
    part("docker", "docker.io", || has("docker") && has("dockerd")),
    // The namespaced hosts (network namespaces, veths) and entering them.
    part("ip", "iproute2", || has("ip")),
    part("nsenter, unshare", "util-linux", || has("nsenter") && has("unshare")),
    part("pkg-config", "pkg-config", || has("pkg-config")),
    // ssh2 builds against the system OpenSSL.
    part("OpenSSL headers", "libssl-dev", || succeeds(Command::new("pkg-config").args(["--exists", "openssl"]))),
    part("openssl", "openssl", || has("openssl")),
    part("curl", "curl", || has("curl")),
    // The workflows' own steps read the API's JSON with jq (GitHub's runners carry it); the runner emulation and
    // act run those steps here.
    part("jq", "jq", || has("jq")),
    // The health probe's test tries every tool the probe script knows: curl, python3, GNU wget, bash.
    part("wget", "wget", || has("wget")),
    // The load generator of the rolling-deploy tests and `bench zero-downtime`.
    part("hey", "hey", || has("hey")),
    // The metrics test scrapes a real node_exporter.
    part("prometheus-node-exporter", "prometheus-node-exporter", || has("prometheus-node-exporter")),
    // The demo reports each step's peak memory through /usr/bin/time.
    part("/usr/bin/time", "time", || Path::new("/usr/bin/time").is_file()),
    part("python3", "python3", || has("python3")),
    // Asking `python3 -m pip` costs a second through pyenv's shims; a pip program on PATH answers first.
    part("pip", "python3-pip", || has("pip3") || succeeds(Command::new("python3").args(["-m", "pip", "--version"]))),
    // musl-gcc, for the C parts of the static Linux release (`cargo xtask dist`).
    Part { what: "musl-gcc", package: "musl-tools", present: || has("musl-gcc"), tier: Tier::Full },
];

/// Python tools, installed with pip into the `python3` on PATH.
const PIP_PARTS: &[Part] = &[
    part("zizmor", "zizmor", || has("zizmor")),
    part("check-jsonschema", "check-jsonschema", || has("check-jsonschema")),
    part("python module nacl", "pynacl", || succeeds(Command::new("python3").args(["-c", "import nacl.public"]))),
];

fn has(program: &str) -> bool {
    find_program(program).is_some()
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn missing(parts: &[Part], tier: Tier) -> Vec<&Part> {
    parts.iter().filter(|p| (tier == Tier::Full || p.tier == Tier::Everyday) && !(p.present)()).collect()
}

/// The system, as far as choosing packages goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum System {
    /// Debian 12 or older: compose v2 comes from Debian 13 (`trixie`), through a source pinned low.
    DebianBeforeTrixie,
    /// Debian 13 or newer (or testing): its `docker-compose` package is compose v2.
    Debian,
    /// Ubuntu (24.04 and newer): compose v2 is the `docker-compose-v2` package.
    Ubuntu,
    /// Anything without apt: nothing is installed here.
    Other(String),
}

impl System {
    /// Reads /etc/os-release.
    pub fn detect() -> System {
        let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        System::from_os_release(&text, has("apt-get"))
    }

    fn from_os_release(text: &str, apt: bool) -> System {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let (id, like) = (field("ID"), field("ID_LIKE"));
        let pretty = field("PRETTY_NAME");
        let name = if pretty.is_empty() { "an unknown system".to_string() } else { pretty };
        if !apt {
            return System::Other(name);
        }
        if id == "ubuntu" || like.split_whitespace().any(|w| w == "ubuntu") {
            return System::Ubuntu;
        }
        if id == "debian" || like.split_whitespace().any(|w| w == "debian") {
            // Testing and unstable have no VERSION_ID; they are past 13.
            let major = field("VERSION_ID").split('.').next().and_then(|v| v.parse::<u32>().ok());
            return match major {
                Some(v) if v < 13 => System::DebianBeforeTrixie,
                _ => System::Debian,
            };
        }
        System::Other(name)
    }
}

/// How this process may run what needs root.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Privilege {
    Root,
    /// Passwordless sudo (`sudo -n true` succeeds).
    Sudo,
    None,
}

fn privilege() -> Privilege {
    if is_root() {
        Privilege::Root
    } else if has("sudo") && succeeds(Command::new("sudo").args(["-n", "true"]).stdin(Stdio::null())) {
        Privilege::Sudo
    } else {
        Privilege::None
    }
}

pub fn is_root() -> bool {
    // /proc/self belongs to the effective user of this process.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Finds every real part of `tier` and installs what is missing; then makes sure the Docker engine answers.
/// Exits with status 2, printing the one command to run, where it may not or cannot install.
pub fn ensure(tier: Tier) -> Result<()> {
    let started = Instant::now();
    let system = System::detect();

    // What needs root: packages, the compose v2 plugin, Caddy; one script.
    let apt = missing(APT_PARTS, tier);
    let compose_missing = !compose_v2_answers();
    let caddy_missing = images::caddy_path().is_err();
    if !apt.is_empty() || compose_missing || caddy_missing {
        let mut what: Vec<String> = apt.iter().map(|p| format!("{} (package {})", p.what, p.package)).collect();
        if compose_missing {
            what.push(format!("compose v2 (plugin under {})", gangplank_testbed::compose_v2_dir().display()));
        }
        if caddy_missing {
            what.push(format!("caddy (unpacked under {})", images::caddy_root().display()));
        }
        println!("==> missing: {}", what.join(", "));
        let packages = dedup(apt.iter().map(|p| p.package));
        let script = root_script(&system, &packages, compose_missing, caddy_missing, &debian_uri)?;
        match privilege() {
            Privilege::Root => run_script(Command::new("sh").arg("-c").arg(&script))?,
            Privilege::Sudo => {
                println!("==> through sudo -n");
                run_script(Command::new("sudo").args(["-n", "sh", "-c"]).arg(&script))?
            }
            Privilege::None => exit_setup(
                &format!("missing: {}; installing them needs root, and `sudo -n` may not run here", what.join(", ")),
                &format!("sudo sh -c {}", quote(&script)),
            ),
        }
        let still: Vec<String> =
            missing(APT_PARTS, tier).iter().map(|p| format!("{} ({})", p.what, p.package)).collect();
        if !still.is_empty() {
            bail!("still missing after installing: {}", still.join(", "));
        }
        if !compose_v2_answers() {
            bail!(
                "`docker compose version` still does not answer with DOCKER_CONFIG={}",
                gangplank_testbed::compose_v2_dir().display()
            );
        }
        images::caddy_path()?;
    }

    // What belongs to the user: Python tools, toolchain parts.
    let mut pip: Vec<&str> = missing(PIP_PARTS, tier).iter().map(|p| p.package).collect();
    if !pip.is_empty() {
        // Installed by an earlier run, maybe into a script folder that is not on PATH.
        add_python_scripts_to_path();
        pip = missing(PIP_PARTS, tier).iter().map(|p| p.package).collect();
    }
    if !pip.is_empty() {
        pip_install(&pip)?;
        add_python_scripts_to_path();
        let still: Vec<String> =
            missing(PIP_PARTS, tier).iter().map(|p| format!("{} ({})", p.what, p.package)).collect();
        if !still.is_empty() {
            bail!("still missing after pip install: {} (is pip's script folder on PATH?)", still.join(", "));
        }
    }
    ensure_components()?;
    ensure_cargo_tool("nextest")?;
    if tier == Tier::Full {
        ensure_musl_target()?;
        ensure_cargo_tool("fuzz")?;
    }
    ensure_docker_engine()?;
    println!("==> real parts checked ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The script that installs, as root, what is missing. `debian_uri` finds the URI of the machine's own
/// Debian source, which the `trixie` source reuses (only called on Debian 12 and older).
fn root_script(
    system: &System,
    packages: &[&str],
    compose: bool,
    caddy: bool,
    debian_uri: &dyn Fn() -> Result<(String, String)>,
) -> Result<String> {
    if let System::Other(name) = system {
        let mut what: Vec<String> = packages.iter().map(|p| format!("Debian's {p}")).collect();
        if compose {
            what.push(format!(
                "the compose v2 plugin as {}/cli-plugins/docker-compose",
                gangplank_testbed::compose_v2_dir().display()
            ));
        }
        if caddy {
            what.push(format!("Caddy 2 as {}/usr/bin/caddy", images::caddy_root().display()));
        }
        exit_setup(
            &format!("this is {name}: cargo xtask installs the real parts with apt on Debian and Ubuntu only"),
            &format!("install the equivalents of: {}", what.join(", ")),
        );
    }
    let mut lines: Vec<String> =
        vec!["set -e".into(), "export DEBIAN_FRONTEND=noninteractive".into(), "apt-get update -q".into()];
    if !packages.is_empty() {
        lines.push(format!("apt-get install -y -q --no-install-recommends {}", packages.join(" ")));
    }
    // `apt-get download` as root would warn that its sandbox user cannot write the temporary folder.
    let download = "apt-get download -q -o APT::Sandbox::User=root";
    if compose {
        let package = match system {
            System::DebianBeforeTrixie => {
                // Debian 13 packages compose v2, on the same package servers. A `trixie` source pinned at
                // priority 100 upgrades nothing on its own; the one package is asked for by name and unpacked.
                let (uri, keyring) = debian_uri()?;
                let source = ["Types: deb", &format!("URIs: {uri}"), "Suites: trixie", "Components: main"]
                    .into_iter()
                    .map(str::to_string)
                    .chain((!keyring.is_empty()).then(|| format!("Signed-By: {keyring}")))
                    .map(|l| quote(&l))
                    .collect::<Vec<_>>()
                    .join(" ");
                lines.push(format!("printf '%s\\n' {source} >/etc/apt/sources.list.d/trixie.sources"));
                let pin = ["Package: *", "Pin: release n=trixie", "Pin-Priority: 100"].map(quote).join(" ");
                lines.push(format!("printf '%s\\n' {pin} >/etc/apt/preferences.d/trixie"));
                lines.push("apt-get update -q".into());
                "docker-compose/trixie"
            }
            System::Debian => "docker-compose",
            System::Ubuntu => "docker-compose-v2",
            System::Other(_) => unreachable!("handled above"),
        };
        let plugin = gangplank_testbed::compose_v2_dir().join("cli-plugins/docker-compose");
        lines.extend([
            "d=$(mktemp -d)".into(),
            "cd \"$d\"".into(),
            format!("{download} {package}"),
            "dpkg -x ./*.deb root".into(),
            format!(
                "install -D -m 0755 root/usr/libexec/docker/cli-plugins/docker-compose {}",
                quote(&plugin.display().to_string())
            ),
            "cd /".into(),
            "rm -rf \"$d\"".into(),
        ]);
    }
    if caddy {
        // Only unpacked: the testbed copies the binary and the libraries it links into a FROM scratch image.
        let root = quote(&images::caddy_root().display().to_string());
        lines.extend([
            "d=$(mktemp -d)".into(),
            "cd \"$d\"".into(),
            format!("{download} caddy"),
            format!("mkdir -p {root}"),
            format!("dpkg -x ./caddy_*.deb {root}"),
            "cd /".into(),
            "rm -rf \"$d\"".into(),
        ]);
    }
    Ok(lines.join("; "))
}

/// The URI and keyring of the machine's Debian source for its own release (not `-security`), from the
/// deb822 files under /etc/apt/sources.list.d or the one-line /etc/apt/sources.list.
fn debian_uri() -> Result<(String, String)> {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list")) {
            // Our own trixie source is not the machine's.
            if p.file_stem().is_some_and(|s| s == "trixie") {
                continue;
            }
            texts.push(std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    texts.iter().find_map(|t| debian_uri_in(t)).context(
        "found no Debian source (a `Suites: bookworm` stanza or a `deb URI bookworm main` line) under /etc/apt to \
         take the package server from",
    )
}

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn debian_uri_in(text: &str) -> Option<(String, String)> {
    let release = |s: &str| !s.is_empty() && !s.contains('-') && s != "trixie";
    // deb822 stanzas, separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':'))).map(|v| v.trim())
        };
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else { continue };
        let components = field("Components").unwrap_or("");
        if suites.split_whitespace().any(release) && components.split_whitespace().any(|c| c == "main") {
            let uri = uris.split_whitespace().next()?.to_string();
            // Signed-By is a keyring file, or a key written into the stanza (then reuse Debian's keyring).
            let keyring = field("Signed-By").filter(|k| k.starts_with('/')).unwrap_or(DEBIAN_KEYRING);
            return Some((uri, keyring.to_string()));
        }
    }
    // One-line format: `deb [options] URI SUITE COMPONENT...`.
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("deb ")) {
        let words: Vec<&str> = line.split_whitespace().filter(|w| !w.starts_with('[') && !w.ends_with(']')).collect();
        if let [_, uri, suite, components @ ..] = words.as_slice() {
            if release(suite) && components.contains(&"main") {
                return Some((uri.to_string(), DEBIAN_KEYRING.to_string()));
            }
        }
    }
    None
}

fn run_script(cmd: &mut Command) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().context("running the install script")?;
    if !status.success() {
        bail!("the install script failed ({status})");
    }
    Ok(())
}

/// `docker compose version` with the testbed's compose v2 folder as DOCKER_CONFIG.
fn compose_v2_answers() -> bool {
    succeeds(
        Command::new("docker").args(["compose", "version"]).env("DOCKER_CONFIG", gangplank_testbed::compose_v2_dir()),
    )
}

fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn pip_install(packages: &[&str]) -> Result<()> {
    println!("==> pip installing {}", packages.join(" "));
    // As root, pip warns on every install that root is not a virtual environment: root is what the testbed is.
    let out = Command::new("python3")
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .args(["-m", "pip", "install", "--quiet", "--no-warn-script-location"])
        .args(packages)
        .stdin(Stdio::null())
        .output()
        .context("running python3 -m pip install")?;
    if out.status.success() {
        return Ok(());
    }
    // Debian's and Ubuntu's system Python refuse pip installs (PEP 668) unless told; only then pass the flag.
    // Debian's pip leaves the packages apt installed in place rather than removing them.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("externally-managed-environment") {
        let status = Command::new("python3")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .args(["-m", "pip", "install", "--quiet", "--no-warn-script-location", "--break-system-packages"])
            .args(packages)
            .stdin(Stdio::null())
            .status()
            .context("running python3 -m pip install --break-system-packages")?;
        if status.success() {
            return Ok(());
        }
        bail!("python3 -m pip install --break-system-packages {} failed ({status})", packages.join(" "));
    }
    bail!("python3 -m pip install {} failed ({}):\n{stderr}", packages.join(" "), out.status)
}

/// Appends the folders pip puts scripts in (the interpreter's, and the user's for an install without root) to
/// this process's PATH, which every step and test inherits. Appended, so nothing already on PATH is shadowed.
fn add_python_scripts_to_path() {
    let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.getuserbase() + '/bin')",
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let mut changed = false;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let dir = PathBuf::from(line.trim());
        if dir.is_dir() && !dirs.contains(&dir) {
            dirs.push(dir);
            changed = true;
        }
    }
    if changed {
        if let Ok(joined) = std::env::join_paths(dirs) {
            // Single-threaded here: called before any step or test starts.
            std::env::set_var("PATH", joined);
        }
    }
}

/// rustfmt and clippy, for the gate's first two steps: components of the user's rustup toolchain.
fn ensure_components() -> Result<()> {
    let missing: Vec<&str> = [("rustfmt", "fmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(_, sub)| !succeeds(Command::new(cargo()).args([*sub, "--version"])))
        .map(|(component, _)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("==> rustup component add {}", missing.join(" "));
    let status = Command::new("rustup").arg("component").arg("add").args(&missing).status();
    if !status.is_ok_and(|s| s.success()) {
        bail!(
            "`cargo fmt` and `cargo clippy` need the toolchain's {} component, and rustup could not add it\nhint: \
             rustup component add {}",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// The musl target for `cargo xtask dist` (the static Linux release). The machine's toolchain may ship it
/// already; rustup is asked only when it is missing.
fn ensure_musl_target() -> Result<()> {
    let target = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let sysroot =
        Command::new("rustc").args(["--print", "sysroot"]).output().context("running rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(&target).join("lib").is_dir() {
        return Ok(());
    }
    println!("==> rustup target add {target}");
    let status = Command::new("rustup").args(["target", "add", &target]).status();
    if !status.is_ok_and(|s| s.success()) {
        bail!("the toolchain has no {target} target\nhint: rustup target add {target}");
    }
    Ok(())
}

/// A cargo subcommand (`cargo <sub>`) from its crate on crates.io, built into the user's cargo bin folder when
/// `cargo <sub> --version` does not answer: cargo-nextest runs the tests (docs/testbed.md, "Running the tests"),
/// cargo-fuzz the fuzz step (docs/fuzzing.md).
fn ensure_cargo_tool(sub: &str) -> Result<()> {
    if cargo_tool_answers(sub) {
        return Ok(());
    }
    let krate = format!("cargo-{sub}");
    println!("==> cargo install {krate} --locked");
    let status = Command::new(cargo()).args(["install", &krate, "--locked"]).status()?;
    if !status.success() || !cargo_tool_answers(sub) {
        bail!("cargo install {krate} failed ({status})\nhint: cargo install {krate} --locked");
    }
    Ok(())
}

fn cargo_tool_answers(sub: &str) -> bool {
    Command::new(cargo())
        .args([sub, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// `docker info` must answer; as root with dockerd installed, start it when it does not.
fn ensure_docker_engine() -> Result<()> {
    if gangplank_testbed::require_docker().is_ok() {
        return Ok(());
    }
    if !(is_root() && has("dockerd")) {
        exit_setup(
            "the Docker engine does not answer `docker info` for this user",
            "sudo systemctl start docker   # or run as root, as the testbed needs",
        );
    }
    println!("==> starting dockerd (log: /var/log/gangplank-dockerd.log)");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/var/log/gangplank-dockerd.log")
        .context("opening dockerd log")?;
    // Left running on purpose: the engine outlives this command, as a service would.
    let mut child = scrubbed_command("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning dockerd")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if gangplank_testbed::require_docker().is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("dockerd exited ({status}); see /var/log/gangplank-dockerd.log");
        }
        if Instant::now() > deadline {
            bail!("dockerd did not answer `docker info` within 60s; see /var/log/gangplank-dockerd.log");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Setup problems the user must fix (not test failures): the problem, then the one line to run, exit 2.
pub fn exit_setup(message: &str, hint: &str) -> ! {
    eprintln!("error: {message}");
    eprintln!("hint: {hint}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> Result<(String, String)> {
        Ok(("http://mirror.example/debian".into(), "/usr/share/keyrings/debian-archive-keyring.gpg".into()))
    }

    #[test]
    fn systems() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        let trixie = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID=\"13\"\nID=debian\n";
        let noble = "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n";
        let fedora = "PRETTY_NAME=\"Fedora Linux 41\"\nID=fedora\nVERSION_ID=41\n";
        assert_eq!(System::from_os_release(bookworm, true), System::DebianBeforeTrixie);
        assert_eq!(System::from_os_release(trixie, true), System::Debian);
        assert_eq!(System::from_os_release("ID=debian\n", true), System::Debian);
        assert_eq!(System::from_os_release(noble, true), System::Ubuntu);
        assert_eq!(System::from_os_release(fedora, false), System::Other("Fedora Linux 41".into()));
        assert_eq!(System::from_os_release(bookworm, false), System::Other("Debian GNU/Linux 12 (bookworm)".into()));
    }

    #[test]
    fn compose_v2_package_per_system() {
        let debian12 = root_script(&System::DebianBeforeTrixie, &["hey"], true, false, &uri).unwrap();
        assert!(debian12.starts_with("set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "));
        assert!(debian12.contains("apt-get install -y -q --no-install-recommends hey; "), "{debian12}");
        assert!(
            debian12.contains(
                "printf '%s\\n' 'Types: deb' 'URIs: http://mirror.example/debian' 'Suites: trixie' \
                 'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
                 >/etc/apt/sources.list.d/trixie.sources; "
            ),
            "{debian12}"
        );
        assert!(debian12.contains("'Pin-Priority: 100' >/etc/apt/preferences.d/trixie; apt-get update -q; "));
        assert!(debian12.contains(" docker-compose/trixie; "), "{debian12}");
        assert!(!debian12.contains("caddy"));

        let debian13 = root_script(&System::Debian, &[], true, true, &uri).unwrap();
        assert!(!debian13.contains("trixie") && !debian13.contains("apt-get install"), "{debian13}");
        assert!(debian13.contains(" docker-compose; dpkg -x ./*.deb root; "), "{debian13}");
        assert!(debian13.contains(" caddy; mkdir -p /opt/gangplank-caddy; dpkg -x ./caddy_*.deb "), "{debian13}");

        let ubuntu = root_script(&System::Ubuntu, &[], true, false, &uri).unwrap();
        assert!(ubuntu.contains(" docker-compose-v2; dpkg -x ./*.deb root; "), "{ubuntu}");
        assert!(!ubuntu.contains("trixie"));
        // One line: it is printed as the command to run.
        assert!(!ubuntu.contains('\n') && !debian12.contains('\n'));
    }

    #[test]
    fn debian_source_of_the_machine() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: http://a.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        assert_eq!(debian_uri_in(deb822), Some(("http://a.example/debian".into(), "/k.gpg".into())));
        let security_only = "Types: deb\nURIs: http://s.example/x\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(debian_uri_in(security_only), None);
        let one_line = "deb [arch=amd64] http://b.example/debian bookworm main contrib\n";
        assert_eq!(debian_uri_in(one_line).map(|u| u.0), Some("http://b.example/debian".into()));
    }
}
