//! `gangplank`: the one executable of the five steps (`gangplank <step> [flags]`).
//!
//! Invoked under a step's name (argv[0] basename, e.g. a symlink `deploy-remote -> gangplank`) it behaves
//! exactly as `gangplank <that step>`, so a `PATH` of links works where separate binaries used to.
//! Every step goes the same way: inputs from flags and `INPUT_*` (`core::input::parse_inputs_from`), the
//! step's run, then `core::actions::main_with`, the one place errors become exit codes.

mod deploy_remote;
mod deployments;
mod rollback;
mod status;

use std::ffi::OsString;
use std::path::Path;

use clap::{CommandFactory, Parser, Subcommand};

/// Deploys from GitHub Actions to your own servers over SSH: push, verify, sync secrets, deploy, roll back.
#[derive(Debug, Parser)]
#[command(name = "gangplank", bin_name = "gangplank", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    step: Step,
}

/// The five steps. Each one's description, inputs, defaults and `INPUT_*` names come from its own `Args`, so
/// `gangplank <step> --help` lists what the step's binary listed before.
#[derive(Debug, Subcommand)]
// Parsed once per process and moved into its step: the size of the largest inputs costs nothing.
#[allow(clippy::large_enum_variant)]
enum Step {
    DeployRemote(deploy_remote::Args),
    Rollback(rollback::Args),
    PushRegistry(push_registry::Args),
    VerifyImage(verify_image::Args),
    SyncSecrets(sync_secrets::Args),
    Status(status::Args),
}

impl Step {
    fn run(self) -> gangplank_core::Result<()> {
        match self {
            Step::DeployRemote(args) => deploy_remote::run(args),
            Step::Rollback(args) => rollback::run(args),
            Step::PushRegistry(args) => push_registry::run(args),
            Step::VerifyImage(args) => verify_image::run(args),
            Step::SyncSecrets(args) => sync_secrets::run(args),
            Step::Status(args) => status::run(args),
        }
    }
}

/// `argv` as `gangplank` parses it: when the program was invoked under a step's name, that name becomes
/// the subcommand, so `deploy-remote --help` and `gangplank deploy-remote --help` are the same command.
fn normalize(mut argv: Vec<OsString>) -> Vec<OsString> {
    let called = argv.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).map(str::to_owned);
    if let Some(step) = called {
        if Cli::command().get_subcommands().any(|s| s.get_name() == step) {
            argv.splice(0..1, [OsString::from("gangplank"), OsString::from(step)]);
        }
    }
    argv
}

fn main() {
    let cli: Cli = gangplank_core::input::parse_inputs_from(normalize(std::env::args_os().collect()));
    gangplank_core::actions::main_with(|| cli.step.run())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(argv: &[&str]) -> Vec<OsString> {
        argv.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_step_name_as_program_name_becomes_the_subcommand() {
        assert_eq!(
            normalize(words(&["/usr/local/bin/deploy-remote", "--image-tag", "v1"])),
            words(&["gangplank", "deploy-remote", "--image-tag", "v1"])
        );
        assert_eq!(normalize(words(&["rollback"])), words(&["gangplank", "rollback"]));
        // Any other name is gangplank itself; a step name among the arguments is left to clap.
        assert_eq!(normalize(words(&["/opt/gangplank", "rollback"])), words(&["/opt/gangplank", "rollback"]));
        assert_eq!(normalize(words(&["gp", "--help"])), words(&["gp", "--help"]));
        assert_eq!(normalize(vec![]), Vec::<OsString>::new());
    }

    #[test]
    fn the_cli_is_well_formed_and_names_every_step() {
        Cli::command().debug_assert();
        let names: Vec<_> = Cli::command().get_subcommands().map(|s| s.get_name().to_owned()).collect();
        assert_eq!(names, ["deploy-remote", "rollback", "push-registry", "verify-image", "sync-secrets", "status"]);
    }
}
