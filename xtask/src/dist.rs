//! `cargo xtask dist [--target TRIPLE]`: the release archive of the `gangplank` executable (issue 6).
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
    text.lines().find_map(|l| l.strip_prefix("host: ")).map(str::to_owned).context("rustc -vV printed no `host:` line")
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
