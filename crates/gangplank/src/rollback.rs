//! `gangplank rollback`: go back to an earlier tag with the compose files and `.env` already on the host
//! (contract: docs/actions.md, "rollback"). Needs no registry when the image is still on the host:
//! it runs `compose up` without a pull, and compose pulls only images that are missing.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gangplank_core::input::{list_value, parse_bool, parse_duration};
use gangplank_core::metrics::{self, Event};
use gangplank_core::Result;
use gangplank_deploy::{self as deploy, Record, RollbackConfig, RunMeta};

/// Roll a docker compose application back to an earlier tag on one or more hosts.
#[derive(Debug, Parser)]
#[command(name = "rollback", version, args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    ssh: gangplank_core::input::SshArgs,

    #[command(flatten)]
    app: gangplank_core::app::AppArgs,

    /// Subset of services to restart [default: all]
    #[arg(long, env = "INPUT_SERVICES", value_parser = list_value)]
    services: Option<::std::vec::Vec<String>>,

    /// `compose` (docker compose on every host) or `swarm` (the stack on the first host, a Swarm manager)
    #[arg(long, env = "INPUT_TARGET", default_value = "compose")]
    target: String,

    /// HTTP URL that must answer 2xx; localhost URLs are probed on the host itself
    #[arg(long, env = "INPUT_HEALTH_URL")]
    health_url: Option<String>,

    /// How long the health gate waits
    #[arg(long, env = "INPUT_HEALTH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    health_timeout: Duration,

    /// How long to wait for another deploy's lock before exit 3
    #[arg(long, env = "INPUT_LOCK_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    lock_timeout: Duration,

    /// Break a lock left by a dead run (its owner is printed first)
    #[arg(long, env = "INPUT_FORCE_UNLOCK", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    force_unlock: bool,

    /// Hosts rolled back at once (the first failure stops the run once its batch has ended)
    #[arg(long, env = "INPUT_MAX_PARALLEL", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_parallel: u16,

    /// Tag to go back to [default: previous_tag of record-file, else the host state's previous tag]
    #[arg(long, env = "INPUT_TO_TAG")]
    to_tag: Option<String>,

    /// Deploy record to read previous_tag from, and where this rollback's record is written
    /// [default: $RUNNER_TEMP/gangplank/deploy-record.json]
    #[arg(long, env = "INPUT_RECORD_FILE")]
    record_file: Option<PathBuf>,

    /// Prometheus textfile (`*.prom`) on the runner to count this run in [default: none]
    #[arg(long, env = "INPUT_METRICS_FILE")]
    metrics_file: Option<PathBuf>,
    #[command(flatten)]
    github: crate::deployments::GitHubArgs,
    #[command(flatten)]
    registry: gangplank_core::input::RegistryArgs,
}

fn config(a: Args) -> Result<(RollbackConfig, deploy::swarm::Target)> {
    let to_tag = a.to_tag.filter(|t| !t.trim().is_empty());
    if let Some(t) = &to_tag {
        deploy::validate_tag(t, "to-tag")?;
    }
    let (app, app_dir) = a.app.resolve()?;
    deploy::validate_health_url(a.health_url.as_deref())?;
    let services = a.services.unwrap_or_default();
    deploy::validate_services(&services)?;
    let target = deploy::swarm::Target::parse(&a.target)?;
    let record_file = deploy::record_file_or_default(a.record_file);
    deploy::RECORD_OUTPUT.check(&record_file)?;
    let r = a.registry;
    let login = deploy::registry::parse_login(r.registry, r.registry_username, r.registry_password)?;
    let ssh = a.ssh.to_config()?;
    let cfg = RollbackConfig {
        ssh,
        app,
        app_dir,
        services,
        health_url: a.health_url.filter(|u| !u.is_empty()),
        health_timeout: a.health_timeout,
        lock_timeout: a.lock_timeout,
        force_unlock: a.force_unlock,
        to_tag,
        max_parallel: a.max_parallel.into(),
        record_file,
        meta: RunMeta::from_env(),
        login,
    };
    if target == deploy::swarm::Target::Swarm {
        deploy::swarm::check_rollback_inputs(&cfg)?;
    }
    Ok((cfg, target))
}

/// The whole run after inputs were parsed.
pub fn run(mut args: Args) -> Result<()> {
    deploy::install_signal_handlers();
    let github = args.github.reporter()?;
    let metrics_file = metrics::from_input(args.metrics_file.take())?;
    let (cfg, target) = config(args)?;
    // The record of the deploy being undone names the tag to go back to (when it is a valid tag
    // of this app that actually replaced something).
    let record_previous = Record::read(&cfg.record_file)
        .filter(|r| r.app == cfg.app && r.action != "rollback" && !r.previous_tag.is_empty())
        .map(|r| r.previous_tag)
        .filter(|t| deploy::validate_tag(t, "previous_tag").is_ok());
    let mut connect = deploy::connect_ssh(&cfg.ssh);
    let out = match target {
        deploy::swarm::Target::Swarm => deploy::swarm::rollback(&cfg, record_previous, &mut connect),
        deploy::swarm::Target::Compose => deploy::rollback(&cfg, record_previous, &mut connect),
    };
    if let Some(g) = &github {
        crate::deployments::report_rollback(g, &cfg.app, &out);
    }
    let outputs =
        [("rolled-back-to", out.record.deployed_tag.clone()), ("rolled-back-from", out.record.previous_tag.clone())];
    let back = out.error.is_none().then_some(out.record.deployed_tag.as_str());
    let event = Event::Rollback { app: &cfg.app, result: &out.record.status, tag: back };
    metrics::record_or_warn(metrics_file.as_deref(), &event);
    deploy::publish(out, &cfg.record_file, &outputs, &format!("rollback: `{}`", cfg.app))
}
