//! `cargo xtask test`: make sure the real parts are installed (testbed.md), then fmt check, clippy with
//! warnings denied, `cargo test --workspace` and a brief fuzz of every parser, stopping at the first failure.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gangplank_testbed::{find_program, images, scrubbed_command};

/// `cargo xtask test [ARGS]`: ARGS go to `cargo test --workspace` (e.g. `-- --nocapture`, or a filter).
pub fn run(args: &[String]) -> Result<()> {
    ensure_real_parts()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let steps: [(&str, Vec<String>); 3] = [
        ("fmt", strings(&["fmt", "--all", "--", "--check"])),
        ("clippy", strings(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])),
        ("test", strings(&["test", "--workspace"]).into_iter().chain(args.iter().cloned()).collect()),
    ];
    for (name, step_args) in steps {
        println!("==> {name}: cargo {}", step_args.join(" "));
        let status = Command::new(&cargo)
            .args(&step_args)
            .current_dir(crate::project_root())
            .status()
            .with_context(|| format!("running cargo {name}"))?;
        if !status.success() {
            bail!("step `{name}` failed ({status})");
        }
    }
    // Every parser's fuzz target for a few seconds (docs/fuzzing.md): cheap, and a crash names its input.
    // cargo-fuzz is a developer tool, so a machine without it skips the step; CI (.ci/run) installs it.
    if crate::fuzz::available() {
        let fuzz = strings(&["--time", "10", "--jobs", "2"]);
        println!("==> fuzz: cargo xtask fuzz {}", fuzz.join(" "));
        crate::fuzz::run(&fuzz).context("step `fuzz` failed")?;
    } else if std::env::var_os("CI").is_some() {
        bail!("step `fuzz`: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)");
    } else {
        println!("==> fuzz: skipped, cargo-fuzz is not installed (cargo install cargo-fuzz --locked)");
    }
    // Generated inputs against every step and the real parts (issue 14): no panic, no injection, every exit 2
    // with a hint. A fixed seed, so the suite's inputs are the same on every machine; `cargo xtask adversary`
    // alone runs 10,000 (any seed).
    let adversary = strings(&["--runs", "400", "--seed", "14"]);
    println!("==> adversary: cargo xtask adversary {}", adversary.join(" "));
    crate::adversary::run(&adversary).context("step `adversary` failed")?;
    // The whole workspace ran under compose v2 (the testbed's default); the v1 smoke repeats one full
    // deploy, broken release and rollback, and the preflight model check, under docker-compose 1.29.
    let smoke = strings(&[
        "test",
        "-p",
        "gangplank",
        "--test",
        "deploy",
        "--test",
        "compose_model",
        "--",
        "v1_then_v2_then_broken_rolls_back_then_rollback_without_registry",
        "every_reference",
    ]);
    println!("==> v1 smoke: GANGPLANK_TEST_COMPOSE=v1 cargo {}", smoke.join(" "));
    let status = Command::new(&cargo)
        .args(&smoke)
        .env("GANGPLANK_TEST_COMPOSE", "v1")
        .current_dir(crate::project_root())
        .status()
        .context("running cargo test (v1 smoke)")?;
    if !status.success() {
        bail!("step `v1 smoke` failed ({status})");
    }
    // The static Linux release, as `cargo xtask dist` builds and checks it (no ELF interpreter; `--version` and a
    // bad-input run alone in an empty image). A cold fat-LTO musl build with OpenSSL from source costs ~10 CPU
    // minutes, so the suite runs it when asked; the release workflow runs it for every Linux archive it ships.
    if std::env::var("GANGPLANK_TEST_STATIC").is_ok_and(|v| v == "1") {
        println!("==> static release: cargo xtask dist (GANGPLANK_TEST_STATIC=1)");
        crate::dist::run(&[])?;
    }
    // The namespaced hosts' tests clean up on drop; a test process that died without dropping them would
    // leave namespaces, links, engines or mounts behind on this machine.
    let left = gangplank_testbed::hosts::leftovers();
    if !left.is_empty() {
        bail!("the tests left namespaced hosts' parts behind:\n  {}", left.join("\n  "));
    }
    println!("==> all steps passed");
    Ok(())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A part the tests need and the Debian package that provides it.
struct Part {
    what: &'static str,
    package: &'static str,
    present: fn() -> bool,
}

const APT_PARTS: &[Part] = &[
    Part { what: "sshd", package: "openssh-server", present: || Path::new("/usr/sbin/sshd").is_file() },
    Part { what: "ssh, ssh-keygen", package: "openssh-client", present: || has("ssh") && has("ssh-keygen") },
    Part { what: "docker-registry", package: "docker-registry", present: || has("docker-registry") },
    Part { what: "busybox (static)", package: "busybox-static", present: || images::busybox_static_path().is_ok() },
    Part { what: "htpasswd", package: "apache2-utils", present: || has("htpasswd") },
    // The deploy preflight test needs a real sudo that would prompt.
    Part { what: "sudo", package: "sudo", present: || has("sudo") },
    // docker-compose 1.29, for the v1 smoke run; compose v2 is checked after the packages (see
    // `ensure_compose_v2`), as Debian 12 does not package it.
    Part { what: "docker-compose (v1)", package: "docker-compose", present: || has("docker-compose") },
    Part { what: "docker", package: "docker.io", present: || has("docker") },
    // The namespaced hosts (network namespaces, veths, a bridge) and entering them.
    Part { what: "ip", package: "iproute2", present: || has("ip") },
    Part { what: "nsenter, unshare", package: "util-linux", present: || has("nsenter") && has("unshare") },
    Part { what: "pkg-config", package: "pkg-config", present: || has("pkg-config") },
    // musl-gcc, for the C parts of the static Linux release (`cargo xtask dist`).
    Part { what: "musl-gcc", package: "musl-tools", present: || has("musl-gcc") },
    // ssh2 builds against the system OpenSSL.
    Part {
        what: "OpenSSL headers",
        package: "libssl-dev",
        present: || succeeds(Command::new("pkg-config").args(["--exists", "openssl"])),
    },
    // The load generator of the rolling-deploy tests and `bench zero-downtime`.
    Part { what: "hey", package: "hey", present: || has("hey") },
    Part { what: "python3", package: "python3", present: || has("python3") },
    Part {
        what: "pip",
        package: "python3-pip",
        present: || succeeds(Command::new("python3").args(["-m", "pip", "--version"])),
    },
];

/// Python tools: (what, pip package, present).
const PIP_PARTS: &[Part] = &[
    Part { what: "zizmor", package: "zizmor", present: || has("zizmor") },
    Part { what: "check-jsonschema", package: "check-jsonschema", present: || has("check-jsonschema") },
    Part {
        what: "python module nacl",
        package: "pynacl",
        present: || succeeds(Command::new("python3").args(["-c", "import nacl.public"])),
    },
];

fn has(program: &str) -> bool {
    find_program(program).is_some()
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn missing(parts: &[Part]) -> Vec<&Part> {
    parts.iter().filter(|p| !(p.present)()).collect()
}

/// Installs the missing real parts (as root on Debian/Ubuntu) and makes sure the Docker engine answers.
/// Where it cannot install, prints the exact commands and exits with status 2.
pub fn ensure_real_parts() -> Result<()> {
    let apt = missing(APT_PARTS);
    let pip = missing(PIP_PARTS);
    if !apt.is_empty() || !pip.is_empty() {
        let apt_packages: Vec<&str> = dedup(apt.iter().map(|p| p.package));
        let pip_packages: Vec<&str> = pip.iter().map(|p| p.package).collect();
        for p in apt.iter().chain(&pip) {
            eprintln!("missing: {} (package {})", p.what, p.package);
        }
        if !(is_root() && is_debian()) {
            let mut commands = Vec::new();
            if !apt_packages.is_empty() {
                commands.push("sudo apt-get update".to_string());
                commands.push(format!("sudo apt-get install -y {}", apt_packages.join(" ")));
            }
            if !pip_packages.is_empty() {
                commands.push(format!("python3 -m pip install {}", pip_packages.join(" ")));
            }
            exit_setup(&format!(
                "the real parts the tests use are missing ({}); install them with:\n  {}",
                if is_debian() { "not root" } else { "not Debian/Ubuntu" },
                commands.join("\n  ")
            ));
        }
        if !apt_packages.is_empty() {
            println!("==> installing {}", apt_packages.join(" "));
            run_status(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
            run_status(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends"])
                    .args(&apt_packages)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
        // Python tools may have been missing only because pip was; look again.
        let pip_packages: Vec<&str> = missing(PIP_PARTS).iter().map(|p| p.package).collect();
        if !pip_packages.is_empty() {
            pip_install(&pip_packages)?;
        }
        let still: Vec<String> = missing(APT_PARTS)
            .iter()
            .chain(&missing(PIP_PARTS))
            .map(|p| format!("{} ({})", p.what, p.package))
            .collect();
        if !still.is_empty() {
            bail!("still missing after installing: {} (is pip's script directory on PATH?)", still.join(", "));
        }
    }
    ensure_docker_engine()?;
    ensure_compose_v2();
    ensure_caddy()
}

/// Caddy is unpacked from Debian's package, not installed (testbed.md, "proxy"): as root, do it here.
fn ensure_caddy() -> Result<()> {
    if images::caddy_path().is_ok() {
        return Ok(());
    }
    if !(is_root() && is_debian()) {
        exit_setup(&format!("{:#}", images::caddy_path().unwrap_err()));
    }
    println!("==> unpacking Debian's caddy into /opt/gangplank-caddy");
    let dir = tempfile::tempdir().context("creating a download folder")?;
    run_status(Command::new("apt-get").args(["download", "-q", "caddy"]).current_dir(dir.path()))?;
    let deb = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download caddy left no .deb")?;
    run_status(Command::new("dpkg").arg("-x").arg(&deb).arg("/opt/gangplank-caddy"))?;
    images::caddy_path().map(|_| ())
}

/// The testbed runs under compose v2 unless told otherwise; without the plugin, say how to install it.
fn ensure_compose_v2() {
    if let Err(e) = gangplank_testbed::compose_program() {
        exit_setup(&format!("{e:#}"));
    }
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
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet"])
        .args(packages)
        .output()
        .context("running python3 -m pip install")?;
    if out.status.success() {
        return Ok(());
    }
    // Debian's system Python refuses pip installs (PEP 668) unless told; only then pass the flag.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("externally-managed-environment") {
        return run_status(
            Command::new("python3").args(["-m", "pip", "install", "--quiet", "--break-system-packages"]).args(packages),
        );
    }
    bail!("python3 -m pip install {} failed ({}):\n{stderr}", packages.join(" "), out.status)
}

/// `docker info` must answer; as root with dockerd installed, start it when it does not.
fn ensure_docker_engine() -> Result<()> {
    if gangplank_testbed::require_docker().is_ok() {
        return Ok(());
    }
    if !(is_root() && has("dockerd")) {
        exit_setup(
            "the Docker engine does not answer `docker info`: start it (`sudo systemctl start docker`, or \
             `sudo dockerd &`); if it is not installed: sudo apt-get install -y docker.io",
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

fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Setup problems the user must fix (not test failures) exit with status 2.
fn exit_setup(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

fn is_root() -> bool {
    // /proc/self belongs to the effective user of this process.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn is_debian() -> bool {
    if !has("apt-get") {
        return false;
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    os.lines().any(|l| {
        let l = l.replace('"', "");
        (l.starts_with("ID=") || l.starts_with("ID_LIKE=")) && (l.contains("debian") || l.contains("ubuntu"))
    })
}
