//! `cargo xtask dist [--target TRIPLE]`: the release archive of the `gangplank` executable (issue 6).
//!
//! On Linux the default target is the host's architecture with musl (`x86_64-unknown-linux-musl`): one static
//! executable for every distribution and libc (OpenSSL, which libssh2 needs, is built from source and linked
//! in for musl and macOS targets: crates/gangplank/Cargo.toml). A Linux archive is checked before it is written:
//! the ELF file must have no interpreter (nothing for the loader to find on the server or runner), and, when a
//! Docker engine is reachable, it must run alone in an empty `FROM scratch` image without a network: `--version`,
//! and a `deploy-remote` run with bad input that must exit 2 with a hint. A macOS archive likewise: the
//! executable may link only libraries every Mac has (/usr/lib, /System/Library; `otool -L`), never Homebrew's
//! OpenSSL or zlib, which a user's runner may lack or have at another version, and it must print its version.
//! Its size and `--version` start time are printed.
//!
//! Builds with `cargo build --release --locked -p gangplank` for the host target (or `--target`), then writes
//! `dist/gangplank-<version>-<target>.tar.gz` (one folder of that name holding `gangplank`, the layout
//! `actions/install.sh` expects; one build, one archive, one checksum per target), `dist/SHA256SUMS` and `dist/manifest.json` over every archive of this version in
//! `dist/` — so the release workflow can gather the archives of all targets and run it once more with
//! `--manifest-only` to write the combined files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::codegen::ACTIONS as STEPS;
use crate::project_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn run(args: &[String]) -> Result<()> {
    let mut target = None;
    let mut manifest_only = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--target" => target = Some(it.next().context("--target needs a value")?.clone()),
            "--manifest-only" => manifest_only = true,
            other => {
                bail!("unknown argument `{other}`\nhint: usage: cargo xtask dist [--target TRIPLE] [--manifest-only]")
            }
        }
    }
    let root = project_root();
    let dist = root.join("dist");
    std::fs::create_dir_all(&dist)?;

    if !manifest_only {
        let target = match target {
            Some(t) => t,
            None => host_target()?,
        };
        build(&root, &dist, &target)?;
    }
    write_sums(&dist)
}

fn host_target() -> Result<String> {
    let out = Command::new("rustc").arg("-vV").output().context("running rustc -vV")?;
    let text = String::from_utf8(out.stdout)?;
    let host = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no `host:` line")?;
    // What Linux releases ship: the static build for this architecture.
    Ok(host.replace("-unknown-linux-gnu", "-unknown-linux-musl"))
}

/// Whether an ELF executable asks for a program interpreter (`PT_INTERP`), i.e. is dynamically linked.
/// Reads the 64-bit little-endian layout of x86_64 and aarch64.
pub fn elf_interpreter(bytes: &[u8]) -> Result<bool> {
    let u16_at = |o: usize| -> Result<u16> {
        Ok(u16::from_le_bytes(bytes.get(o..o + 2).context("truncated ELF header")?.try_into()?))
    };
    let u32_at = |o: usize| -> Result<u32> {
        Ok(u32::from_le_bytes(bytes.get(o..o + 4).context("truncated ELF header")?.try_into()?))
    };
    let u64_at = |o: usize| -> Result<u64> {
        Ok(u64::from_le_bytes(bytes.get(o..o + 8).context("truncated ELF header")?.try_into()?))
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the smoke image however the check ends.
struct Image(String);
impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["image", "rm", "-f", &self.0]).output();
    }
}

/// The static executable alone in an empty image, without a network: it starts, and its input checks work.
pub fn smoke_in_scratch(bin: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(bin, dir.path().join("gangplank"))?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY gangplank /gangplank\nENTRYPOINT [\"/gangplank\"]\n",
    )?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
    let image = Image(format!("gangplank-static-smoke:{}-{nanos}", std::process::id()));
    let out = Command::new("docker").args(["build", "-q", "-t", &image.0]).arg(dir.path()).output()?;
    if !out.status.success() {
        bail!("docker build of the scratch image failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let run =
        |args: &[&str]| Command::new("docker").args(["run", "--rm", "--network", "none", &image.0]).args(args).output();
    let out = run(&["--version"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim() != format!("gangplank {VERSION}") {
        bail!(
            "`gangplank --version` in an empty image: {} {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Bad input is refused before anything connects: exit 2 and a hint, also with no file and no network.
    let out =
        run(&["deploy-remote", "--preflight-only=true", "--host", "deploy@127.0.0.1", "--image-tag", "not a tag"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !err.contains("image-tag") || !err.contains("hint:") {
        bail!("deploy-remote with a bad tag in an empty image: {} {err}", out.status);
    }
    println!("static: runs alone in an empty image (--version; bad input exits 2 with a hint)");
    Ok(())
}

/// Median wall time of `bin --version` over `n` runs.
fn start_time(bin: &Path, n: usize) -> Result<std::time::Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        let out = Command::new(bin).arg("--version").output()?;
        times.push(t.elapsed());
        if !out.status.success() {
            bail!("{} --version failed", bin.display());
        }
    }
    times.sort();
    Ok(times[n / 2])
}

/// A Linux executable must be static and run alone; prints its start time.
fn check_linux(bin: &Path) -> Result<()> {
    if elf_interpreter(&std::fs::read(bin)?)? {
        bail!("{} is dynamically linked (it has an ELF interpreter); a Linux release must be static", bin.display());
    }
    println!("static: no ELF interpreter, no shared library");
    let native = Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success());
    if native {
        println!("start: `gangplank --version` median {:?} over 21 runs", start_time(bin, 21)?);
    }
    let docker = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    if native && docker.is_ok_and(|o| o.status.success()) {
        smoke_in_scratch(bin)?;
    } else {
        println!("static: no Docker engine here (or another architecture): the empty-image check is skipped");
    }
    Ok(())
}

/// The libraries a macOS executable links that are not part of macOS, from `otool -L` output (its first line
/// names the file itself; each further line is `\t<path> (compatibility version …)`).
pub fn foreign_dylibs(otool: &str) -> Vec<String> {
    otool
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split(" (").next())
        .filter(|path| !path.is_empty() && !path.starts_with("/usr/lib/") && !path.starts_with("/System/Library/"))
        .map(str::to_owned)
        .collect()
}

/// A macOS executable must link only what macOS ships, and run.
fn check_macos(bin: &Path) -> Result<()> {
    let out = Command::new("otool")
        .arg("-L")
        .arg(bin)
        .output()
        .context("running otool -L (Xcode's command line tools: xcode-select --install)")?;
    if !out.status.success() {
        bail!("otool -L {} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    let foreign = foreign_dylibs(&String::from_utf8_lossy(&out.stdout));
    if !foreign.is_empty() {
        bail!(
            "{} links libraries that are not part of macOS: {}\nhint: a -sys crate found a Homebrew library; \
             build it from source for macOS (the vendored/static features in crates/gangplank/Cargo.toml)",
            bin.display(),
            foreign.join(", ")
        );
    }
    println!("macOS: links only /usr/lib and /System/Library libraries");
    // Native builds only: an Intel executable also runs on arm64 under Rosetta, an arm64 one not on Intel.
    if let Ok(out) = Command::new(bin).arg("--version").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || text.trim() != format!("gangplank {VERSION}") {
            bail!("`{} --version`: {} {text}", bin.display(), out.status);
        }
        println!("start: `gangplank --version` median {:?} over 21 runs", start_time(bin, 21)?);
    }
    Ok(())
}

fn build(root: &Path, dist: &Path, target: &str) -> Result<()> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root).args(["build", "--release", "--locked", "--target", target, "-p", "gangplank"]);
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed for {target}");
    }

    let name = format!("gangplank-{VERSION}-{target}");
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(&stage)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let from = target_dir.join(target).join("release").join("gangplank");
    let to = stage.join("gangplank");
    std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    let size = std::fs::metadata(&to)?.len();
    println!("gangplank {:>6.2} MB  ({size} bytes, stripped)", size as f64 / 1_000_000.0);
    if target.contains("-linux-") {
        check_linux(&to)?;
    } else if target.contains("-apple-darwin") {
        check_macos(&to)?;
    }
    let archive = format!("{name}.tar.gz");
    let status =
        Command::new("tar").current_dir(dist).args(["-czf", &archive, &name]).status().context("running tar")?;
    if !status.success() {
        bail!("tar failed for {archive}");
    }
    std::fs::remove_dir_all(&stage)?;
    println!("wrote dist/{archive}");
    Ok(())
}

/// `SHA256SUMS` and `manifest.json` over every archive of this version in `dist/`.
fn write_sums(dist: &Path) -> Result<()> {
    let prefix = format!("gangplank-{VERSION}-");
    let mut archives: Vec<String> = std::fs::read_dir(dist)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".tar.gz"))
        .collect();
    archives.sort();
    if archives.is_empty() {
        bail!("no gangplank-{VERSION}-*.tar.gz in dist/\nhint: run `cargo xtask dist` without --manifest-only first");
    }
    let mut sums = String::new();
    let mut entries = Vec::new();
    for archive in &archives {
        let bytes = std::fs::read(dist.join(archive))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        sums.push_str(&format!("{sha}  {archive}\n"));
        let target = &archive[prefix.len()..archive.len() - ".tar.gz".len()];
        entries.push(serde_json::json!({
            "target": target,
            "archive": archive,
            "sha256": sha,
            "size": bytes.len(),
        }));
    }
    std::fs::write(dist.join("SHA256SUMS"), &sums)?;
    let manifest = serde_json::json!({
        "name": "gangplank",
        "version": VERSION,
        "binaries": ["gangplank"],
        "steps": STEPS,
        "archives": entries,
    });
    std::fs::write(dist.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")?;
    print!("{sums}");
    println!("wrote dist/SHA256SUMS and dist/manifest.json");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_has_an_interpreter_and_a_static_one_has_none() {
        // Debian's /bin/sh (dash) is linked against glibc; busybox-static, a testbed part, is static.
        assert!(elf_interpreter(&std::fs::read("/bin/sh").unwrap()).unwrap(), "/bin/sh is dynamic");
        let busybox = gangplank_testbed::images::busybox_static_path().unwrap();
        assert!(!elf_interpreter(&std::fs::read(busybox).unwrap()).unwrap(), "busybox-static is static");
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err(), "a script is no ELF file");
        assert!(elf_interpreter(b"\x7fELF\x02\x01\x01").is_err(), "a truncated header is refused");
    }

    #[test]
    fn a_macos_executable_may_link_only_what_macos_ships() {
        let system = "dist/gangplank:\n\
            \t/System/Library/Frameworks/Security.framework/Versions/A/Security (compatibility version 1.0.0, current version 61439.1.2)\n\
            \t/usr/lib/libz.1.dylib (compatibility version 1.0.0, current version 1.2.12)\n\
            \t/usr/lib/libSystem.B.dylib (compatibility version 1.0.0, current version 1351.0.0)\n";
        assert!(foreign_dylibs(system).is_empty());
        let homebrew = format!(
            "{system}\t/opt/homebrew/opt/openssl@3/lib/libssl.3.dylib (compatibility version 3.0.0, current version 3.0.0)\n\
             \t/usr/local/opt/zlib/lib/libz.1.dylib (compatibility version 1.0.0, current version 1.3.1)\n"
        );
        assert_eq!(
            foreign_dylibs(&homebrew),
            ["/opt/homebrew/opt/openssl@3/lib/libssl.3.dylib", "/usr/local/opt/zlib/lib/libz.1.dylib"]
        );
    }
}
