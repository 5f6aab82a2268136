//! `cargo xtask <command>`: the project's own tasks. One match over subcommands; each lives in a module.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};

mod adversary;
mod bench_budgets;
mod bench_deploy;
mod bench_hooks;
mod bench_hosts;
mod bench_secrets;
mod bench_ssh;
mod bench_status;
mod bench_swarm;
mod bench_verify;
mod bench_zero_downtime;
mod codegen;
mod demo;
mod dist;
mod fuzz;
mod setup;
mod test;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test [--full] [ARGS...]
                       install the real parts if missing, then the everyday gate: fmt check, clippy -D warnings,
                       cargo test --workspace; --full (CI) adds fuzz, adversary, the compose v1 smoke, the
                       workflows under act and the static release; each step's wall time at the end
  demo                 install the real parts if missing, bring up the testbed and run the whole story with the
                       real gangplank executable
  setup [--full]       find the real parts the testbed uses (docs/testbed.md) and install what is missing: as
                       root, through sudo -n, or print the one command to run (exit 2)
  bench ssh|deploy|hooks|hosts|verify|secrets|budgets|zero-downtime|swarm|status
                       measure against a baseline in one run and print the figures
  codegen [--check]    regenerate (or check) the inputs/outputs tables of each action README
  dist                 build release archives for the host target, SHA256SUMS and the manifest
  adversary [--runs N] [--seed N] [--jobs N]
                       generated-input runs of every step against the real parts: no panic, no injection,
                       exit 2 always with a hint
  fuzz [--time SECS | --cpu SECS] [--jobs N] [--nice N] [--log-dir DIR] [TARGET...]
                       build the libFuzzer targets (cargo-fuzz, stable + RUSTC_BOOTSTRAP) and run each one";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<()> {
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("test") => test::run(rest),
        Some("demo") => demo::run(rest),
        Some("setup") => setup::run(rest),
        Some("bench") => match rest.first().map(String::as_str) {
            Some("ssh") => bench_ssh::run(&rest[1..]),
            Some("deploy") => bench_deploy::run(&rest[1..]),
            Some("hosts") => bench_hosts::run(&rest[1..]),
            Some("hooks") => bench_hooks::run(&rest[1..]),
            Some("verify") => bench_verify::run(&rest[1..]),
            Some("secrets") => bench_secrets::run(&rest[1..]),
            Some("budgets") => bench_budgets::run(&rest[1..]),
            Some("zero-downtime") => bench_zero_downtime::run(&rest[1..]),
            Some("swarm") => bench_swarm::run(&rest[1..]),
            Some("status") => bench_status::run(&rest[1..]),
            _ => bail!(
                "usage: cargo xtask bench ssh|deploy|hooks|hosts|verify|secrets|budgets|zero-downtime|swarm|status"
            ),
        },
        Some("codegen") => codegen::run(rest),
        Some("dist") => dist::run(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("adversary") => adversary::run(rest),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Build the `gangplank` executable (debug or release) and return its path in the target directory.
pub fn build_gangplank(release: bool) -> Result<PathBuf> {
    let mut cargo = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(project_root()).args(["build", "--quiet", "-p", "gangplank"]);
    if release {
        cargo.arg("--release");
    }
    ensure!(cargo.status().context("running cargo build")?.success(), "cargo build -p gangplank failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"));
    Ok(target.join(if release { "release" } else { "debug" }).join("gangplank"))
}

/// The repository root, from this crate's manifest directory.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repository root").to_path_buf()
}
