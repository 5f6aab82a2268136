//! The two ways to run a step are one command: `gangplank <step>` and the executable invoked under the step's
//! name (a link `deploy-remote -> gangplank`, as a `PATH` of links installs the steps) print the same `--help`,
//! and refuse the same bad input with the same exit code and the same lines.

use std::path::Path;
use std::process::{Command, Output};

use gangplank_testbed::step_program;

const GANGPLANK: &str = env!("CARGO_BIN_EXE_gangplank");
const STEPS: [&str; 6] = ["deploy-remote", "rollback", "push-registry", "verify-image", "sync-secrets", "status"];

/// Runs `program args` in `dir` with nothing of the caller's environment but `PATH`, so no `INPUT_*`, token or
/// repository name can turn a bad input into a good one.
fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).args(args).current_dir(dir);
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn subcommand_and_step_name_print_the_same_help() {
    let dir = tempfile::tempdir().unwrap();
    for step in STEPS {
        let sub = run(Path::new(GANGPLANK), &[step, "--help"], dir.path());
        let linked = run(&step_program(GANGPLANK, step), &["--help"], dir.path());
        assert!(sub.status.success(), "gangplank {step} --help: {}", text(&sub.stderr));
        assert_eq!(linked.status.code(), sub.status.code(), "{step}");
        assert_eq!(text(&linked.stdout), text(&sub.stdout), "{step}: --help differs between the two forms");
        let help = text(&sub.stdout);
        assert!(help.contains(&format!("Usage: gangplank {step} [OPTIONS]")), "{step}:\n{help}");
        // Every input is listed with its `INPUT_*` name, and defaults as before (one sample per step).
        let sample = match step {
            "deploy-remote" => "[default: 60s]",
            "rollback" => "[default: 5m]",
            "push-registry" => "[default: true]",
            "verify-image" => "[default: false]",
            "status" => "[default: 5]",
            _ => "[default: .github/secrets.yml]",
        };
        assert!(help.contains("[env: INPUT_") && help.contains(sample), "{step}:\n{help}");
    }
}

#[test]
fn the_top_level_help_lists_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Path::new(GANGPLANK), &["--help"], dir.path());
    assert!(out.status.success());
    let help = text(&out.stdout);
    for step in STEPS {
        assert!(help.lines().any(|l| l.trim_start().starts_with(step)), "{step} missing from:\n{help}");
    }
    let version = run(Path::new(GANGPLANK), &["--version"], dir.path());
    assert_eq!(text(&version.stdout).trim(), format!("gangplank {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn subcommand_and_step_name_refuse_bad_input_alike() {
    let dir = tempfile::tempdir().unwrap();
    for step in STEPS {
        // Nothing given: each step misses a required input (or, for sync-secrets, its manifest) and stops
        // before any connection, with exit 2 and a hint.
        let sub = run(Path::new(GANGPLANK), &[step], dir.path());
        let linked = run(&step_program(GANGPLANK, step), &[], dir.path());
        assert_eq!(sub.status.code(), Some(2), "gangplank {step}: {}", text(&sub.stderr));
        assert_eq!(linked.status.code(), Some(2), "{step} (link): {}", text(&linked.stderr));
        assert!(text(&sub.stderr).lines().any(|l| l.starts_with("hint: ")), "{step}: {}", text(&sub.stderr));
        assert_eq!(text(&linked.stderr), text(&sub.stderr), "{step}: the two forms said different things");
    }
    // A value clap itself refuses is exit 2 in both forms too.
    let sub = run(Path::new(GANGPLANK), &["deploy-remote", "--health-timeout", "soon"], dir.path());
    let linked = run(&step_program(GANGPLANK, "deploy-remote"), &["--health-timeout", "soon"], dir.path());
    assert_eq!((sub.status.code(), linked.status.code()), (Some(2), Some(2)));
    assert_eq!(text(&linked.stderr), text(&sub.stderr));
}

#[test]
fn an_unknown_step_is_refused_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Path::new(GANGPLANK), &["deploy"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("deploy-remote"), "{}", text(&out.stderr));
}

/// A value the argument parser refuses is a bad input like any other: exit 2, a `hint:` line and, under
/// Actions, an `::error` annotation; never a panic, however large a number.
#[test]
fn parser_refusals_and_huge_numbers_are_bad_inputs_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 8] = [
        &["deploy-remote", "--port", "ssh"],
        &["deploy-remote", "--auto-rollback", "maybe"],
        &["deploy-remote", "--lock-timeout", "99999999999999999999999"],
        &["deploy-remote", "--min-free-disk", "99999999999999999999999PiB"],
        &["rollback", "--health-timeout", "1e400"],
        &["sync-secrets", "--lock-timeout", "99999999999999999999999"],
        &["verify-image", "--max-size", "99999999999999999999999"],
        &["push-registry", "--no-such-input", "x"],
    ];
    for args in cases {
        let mut cmd = Command::new(GANGPLANK);
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("GITHUB_ACTIONS", "true");
        let out = cmd.args(args).current_dir(dir.path()).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.lines().any(|l| l.starts_with("::error title=bad input::")), "{args:?}: {err}");
        assert!(err.lines().any(|l| l.starts_with("hint: ") && l.contains("--help")), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Help and version stay as clap prints them.
    let help = run(Path::new(GANGPLANK), &["deploy-remote", "--help"], dir.path());
    assert_eq!(help.status.code(), Some(0));
}
