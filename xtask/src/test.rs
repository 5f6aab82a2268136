//! `cargo xtask test [--full]`: install what is missing (crate::setup, docs/testbed.md), then run the tiers,
//! stopping at the first failure, and print each step's wall time and the total.
//!
//! The everyday gate: fmt check, clippy with warnings denied, every test on the machine's engine and loopback
//! under cargo-nextest (`.config/nextest.toml`: one process per test, every binary's tests side by side, test
//! groups for what must not overlap, a JUnit report in `target/nextest/`). `--full`, what CI runs, adds the long
//! tier (the namespaced-host and Swarm suites, alone), a brief fuzz of every parser, the generated-input
//! adversary, the compose v1 smoke, the workflows under nektos/act, and the static Linux release as the release
//! workflow builds it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup::{self, Tier};

const USAGE: &str = "usage: cargo xtask test [--full] [ARGS...]

  (no flag)  the everyday gate: fmt check, clippy -D warnings, cargo nextest run --workspace (all but the long tier)
  --full     also: the long tier (namespaced hosts, Swarm), fuzz every parser briefly, the adversary (400
             generated-input runs), the compose v1 smoke, the workflows under act (release.yml's build job is the
             static release, cargo xtask dist); what CI runs
  ARGS       go to `cargo nextest run --workspace` (a filter, or `--no-capture`)

Installs the real parts first (cargo xtask setup [--full]); the testbed runs as root.";

/// `cargo xtask test [--full] [ARGS]`.
pub fn run(args: &[String]) -> Result<()> {
    let Some((tier, test_args)) = parse(args) else {
        println!("{USAGE}");
        return Ok(());
    };
    require_root("test", args);

    let mut steps = Steps::default();
    let result = steps
        .step("setup", &format!("find the real parts, install what is missing ({tier:?})"), || setup::ensure(tier))
        .and_then(|()| gate(&mut steps, tier, &test_args));
    steps.print();
    result?;
    println!("==> all steps passed");
    Ok(())
}

/// The tier and what goes to `cargo nextest run`; `None` for help. Flags of ours come first; everything from the
/// first other word on is nextest's (so `cargo xtask test -- --full` passes `--full` on).
fn parse(args: &[String]) -> Option<(Tier, Vec<String>)> {
    let mut tier = Tier::Everyday;
    let mut it = args.iter();
    let mut test_args = Vec::new();
    for a in it.by_ref() {
        match a.as_str() {
            "--full" => tier = Tier::Full,
            "-h" | "--help" => return None,
            _ => {
                test_args.push(a.clone());
                break;
            }
        }
    }
    test_args.extend(it.cloned());
    Some((tier, test_args))
}

/// The testbed starts sshd and logs in as root, makes users, network namespaces and Docker engines: it runs as
/// root. Said before anything starts, with the one command that does it.
pub fn require_root(command: &str, args: &[String]) {
    if setup::is_root() {
        return;
    }
    let args: String = args.iter().map(|a| format!(" {}", gangplank_core::cmd::quote(a))).collect();
    setup::exit_setup(
        "the testbed runs as root (it starts sshd logging in as root, and makes users, network namespaces and Docker \
         engines)",
        &format!("sudo -E env \"PATH=$PATH\" cargo xtask {command}{args}"),
    );
}

fn gate(steps: &mut Steps, tier: Tier, test_args: &[String]) -> Result<()> {
    steps.cargo("fmt", &["fmt", "--all", "--", "--check"], &[])?;
    steps.cargo("clippy", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    // The default profile leaves out the long tier and act (.config/nextest.toml).
    let mut test = vec!["nextest", "run", "--workspace"];
    test.extend(test_args.iter().map(String::as_str));
    steps.cargo("test", &test, &[])?;
    if tier == Tier::Full {
        full(steps)?;
    }
    // The namespaced hosts' tests clean up on drop; a test process that died without dropping them would leave
    // namespaces, links, engines or mounts behind on this machine.
    let left = gangplank_testbed::hosts::leftovers();
    if !left.is_empty() {
        bail!("the tests left namespaced hosts' parts behind:\n  {}", left.join("\n  "));
    }
    Ok(())
}

/// What `--full` adds to the everyday gate.
fn full(steps: &mut Steps) -> Result<()> {
    // Several namespaced hosts per test, and Swarm: one test at a time (.config/nextest.toml, profile `long`).
    steps.cargo("long tier", &["nextest", "run", "--workspace", "--profile", "long"], &[])?;
    // Every parser's fuzz target for a few seconds (docs/fuzzing.md): a crash names its input.
    let fuzz = strings(&["--time", "10", "--jobs", "2"]);
    steps.step("fuzz", &format!("cargo xtask fuzz {}", fuzz.join(" ")), || crate::fuzz::run(&fuzz))?;
    // Generated inputs against every step and the real parts (issue 14): no panic, no injection, every exit 2
    // with a hint. A fixed seed, so the inputs are the same on every machine; `cargo xtask adversary` alone runs
    // 10,000 (any seed).
    let adversary = strings(&["--runs", "400", "--seed", "14"]);
    steps.step("adversary", &format!("cargo xtask adversary {}", adversary.join(" ")), || {
        crate::adversary::run(&adversary)
    })?;
    // The workspace ran under compose v2 (the testbed's default); the v1 smoke repeats one full deploy, broken
    // release and rollback, and the preflight model check, under docker-compose 1.29. Debian 13 no longer
    // packages 1.29 (its `docker-compose` is v2), so there the smoke has nothing to run against.
    match compose_v1() {
        Some(_) => steps.cargo(
            "v1 smoke",
            &[
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
            ],
            &[("GANGPLANK_TEST_COMPOSE", "v1")],
        )?,
        None => {
            println!("==> v1 smoke: skipped, `docker-compose` here is not compose 1.x (Debian 13 packages v2 only)")
        }
    }
    // The workflows run by a real Actions runner, nektos/act, on this machine (docs/testbed.md, "Workflows under
    // act"); those tests are #[ignore]d in the everyday gate. Their release test runs release.yml, whose build job
    // is `cargo xtask dist` for the static Linux release (a cold fat-LTO musl build with OpenSSL from source, no
    // ELF interpreter, `--version` and a bad-input run alone in an empty image): the static release is checked
    // there, as the release ships it, and not built a second time here.
    steps.cargo(
        "act",
        &["nextest", "run", "-p", "gangplank-testbed", "--test", "act", "--profile", "act", "--run-ignored", "only"],
        &[],
    )
}

/// `docker-compose version --short` when it is compose 1.x.
fn compose_v1() -> Option<String> {
    let out = Command::new("docker-compose").args(["version", "--short"]).output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && version.starts_with("1.")).then_some(version)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The steps that ran, with their wall times.
#[derive(Default)]
struct Steps {
    ran: Vec<(String, Duration, bool)>,
    started: Option<Instant>,
}

impl Steps {
    fn step(&mut self, name: &str, what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        self.started.get_or_insert_with(Instant::now);
        println!("==> {name}: {what}");
        let t = Instant::now();
        let result = f();
        self.ran.push((name.to_string(), t.elapsed(), result.is_ok()));
        result.with_context(|| format!("step `{name}` failed"))
    }

    fn cargo(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
        let shown: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        self.step(name, &format!("{shown}cargo {}", args.join(" ")), || {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(args)
                .envs(env.iter().copied())
                .current_dir(crate::project_root())
                .status()
                .with_context(|| format!("running cargo {}", args.join(" ")))?;
            if !status.success() {
                bail!("cargo {} exited with {status}", args.first().unwrap_or(&""));
            }
            Ok(())
        })
    }

    fn print(&self) {
        if self.ran.is_empty() {
            return;
        }
        println!("\n==> wall time per step");
        for (name, took, ok) in &self.ran {
            println!("  {name:<15} {:>8}{}", clock(*took), if *ok { "" } else { "  FAILED" });
        }
        let total = self.started.map(|s| s.elapsed()).unwrap_or_default();
        println!("  {:<15} {:>8}", "total", clock(total));
    }
}

/// `1:02:03`, `4:05` or `6.2 s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_then_cargo_test_arguments() {
        let p = |args: &[&str]| parse(&strings(args));
        assert_eq!(p(&[]), Some((Tier::Everyday, vec![])));
        assert_eq!(p(&["--full"]), Some((Tier::Full, vec![])));
        assert_eq!(
            p(&["--full", "deploy", "--", "--nocapture"]),
            Some((Tier::Full, strings(&["deploy", "--", "--nocapture"])))
        );
        assert_eq!(p(&["--", "--full"]), Some((Tier::Everyday, strings(&["--", "--full"]))));
        assert_eq!(p(&["--help"]), None);
        assert_eq!(p(&["--full", "-h"]), None);
    }

    #[test]
    fn wall_times() {
        assert_eq!(clock(Duration::from_millis(6_240)), "6.2 s");
        assert_eq!(clock(Duration::from_secs(245)), "4:05");
        assert_eq!(clock(Duration::from_secs(3_723)), "1:02:03");
        let mut steps = Steps::default();
        assert!(steps.step("one", "ok", || Ok(())).is_ok());
        let failed = steps.step("two", "fails", || bail!("no")).unwrap_err();
        assert_eq!(format!("{failed:#}"), "step `two` failed: no");
        let names: Vec<(&str, bool)> = steps.ran.iter().map(|(n, _, ok)| (n.as_str(), *ok)).collect();
        assert_eq!(names, [("one", true), ("two", false)]);
    }
}
