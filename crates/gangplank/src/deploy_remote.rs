//! `gangplank deploy-remote`: deploy a docker compose app to one or more hosts over SSH, health-gated,
//! rolling back by itself (contract: docs/actions.md, "deploy-remote"). Raw inputs → validated config →
//! plan → engine (`gangplank_deploy`) → outputs, record, summary; `main` turns the result into the exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gangplank_core::input::{list_value, parse_bool, parse_duration, parse_size};
use gangplank_core::local::{read_input, TEXT_LIMIT};
use gangplank_core::metrics::{self, Event};
use gangplank_core::{Error, Result};
use gangplank_deploy::{self as deploy, DeployConfig, RunMeta};

/// Deploy a docker compose application to one or more hosts over SSH; roll back when it is not healthy.
#[derive(Debug, Parser)]
#[command(name = "deploy-remote", version, args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    ssh: gangplank_core::input::SshArgs,

    #[command(flatten)]
    app: gangplank_core::app::AppArgs,

    /// Local compose file(s), uploaded to app-dir
    #[arg(long, env = "INPUT_COMPOSE_FILES", default_value = "compose.yaml", value_parser = list_value)]
    compose_files: ::std::vec::Vec<String>,

    /// Extra local files or folders uploaded under app-dir
    #[arg(long, env = "INPUT_FILES", value_parser = list_value)]
    files: Option<::std::vec::Vec<String>>,

    /// A local .env uploaded as <app-dir>/.env (mode 0600, backup kept)
    #[arg(long, env = "INPUT_ENV_FILE")]
    env_file: Option<PathBuf>,

    /// Exported as IMAGE_TAG to compose interpolation
    #[arg(long, env = "INPUT_IMAGE_TAG")]
    image_tag: Option<String>,

    /// Subset of services to pull and restart [default: all]
    #[arg(long, env = "INPUT_SERVICES", value_parser = list_value)]
    services: Option<::std::vec::Vec<String>>,

    /// `recreate` (restart in place) or `rolling` (new containers beside the old ones, behind a proxy)
    #[arg(long, env = "INPUT_STRATEGY", default_value = "recreate")]
    strategy: String,

    /// `compose` (docker compose on every host) or `swarm` (a stack on the first host, a Swarm manager)
    #[arg(long, env = "INPUT_TARGET", default_value = "compose")]
    target: String,
    /// Shell script run on each host once the new files are live, before any container changes (e.g. a backup and a migration)
    #[arg(long, env = "INPUT_PRE_DEPLOY")]
    pre_deploy: Option<String>,

    /// Shell script run on each host once the health gate passed; a failure counts as a failed gate
    #[arg(long, env = "INPUT_POST_DEPLOY")]
    post_deploy: Option<String>,

    /// How long each hook may run before it is stopped on the host (and fails)
    #[arg(long, env = "INPUT_HOOK_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    hook_timeout: Duration,

    /// `every` host runs the hooks, or only the `first` (which then deploys alone, before the others)
    #[arg(long, env = "INPUT_HOOKS_ON", default_value = "every")]
    hooks_on: String,

    /// HTTP URL that must answer 2xx; localhost URLs are probed on the host itself
    #[arg(long, env = "INPUT_HEALTH_URL")]
    health_url: Option<String>,

    /// How long the health gate waits
    #[arg(long, env = "INPUT_HEALTH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    health_timeout: Duration,

    /// On a failed health gate, redeploy the previous tag
    #[arg(long, env = "INPUT_AUTO_ROLLBACK", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    auto_rollback: bool,

    /// Image tags of this app kept on the host (never the current or previous one removed)
    #[arg(long, env = "INPUT_KEEP_IMAGES", default_value_t = 5)]
    keep_images: usize,

    /// Hosts deployed at once (every host is locked first; the first failure puts every changed host back)
    #[arg(long, env = "INPUT_MAX_PARALLEL", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_parallel: u16,

    /// How long to wait for another deploy's lock before exit 3
    #[arg(long, env = "INPUT_LOCK_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    lock_timeout: Duration,

    /// Break a lock left by a dead run (its owner is printed first)
    #[arg(long, env = "INPUT_FORCE_UNLOCK", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    force_unlock: bool,

    /// Preflight threshold of free space on the Docker data root
    #[arg(long, env = "INPUT_MIN_FREE_DISK", default_value = "1GiB", value_parser = parse_size)]
    min_free_disk: u64,

    /// Run every check, print the plan, change nothing
    #[arg(long, env = "INPUT_PREFLIGHT_ONLY", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    preflight_only: bool,

    /// Where the deploy record is written [default: $RUNNER_TEMP/gangplank/deploy-record.json]
    #[arg(long, env = "INPUT_RECORD_FILE")]
    record_file: Option<PathBuf>,

    /// Prometheus textfile (`*.prom`) on the runner to count this run in [default: none]
    #[arg(long, env = "INPUT_METRICS_FILE")]
    metrics_file: Option<PathBuf>,
    #[command(flatten)]
    github: crate::deployments::GitHubArgs,
    #[command(flatten)]
    registry: gangplank_core::input::RegistryArgs,

    /// push-registry's `digests` output (JSON: image name -> sha256 digest); each matching image must have it on the host before the switch
    #[arg(long, env = "INPUT_EXPECT_DIGESTS")]
    expect_digests: Option<String>,
}

fn config(a: Args) -> Result<(DeployConfig, deploy::swarm::Target)> {
    // The tag first: a bad one is refused before anything else, above all before any connection.
    let tag = a.image_tag.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        Error::bad_input("input `image-tag` is required")
            .hint("pass the tag pushed by push-registry, e.g. `image-tag: ${{ steps.push.outputs.tag }}`")
    })?;
    deploy::validate_tag(&tag, "image-tag")?;
    let (app, app_dir) = a.app.resolve()?;
    deploy::validate_health_url(a.health_url.as_deref())?;
    if a.compose_files.is_empty() {
        return Err(Error::bad_input("`compose-files` is empty").hint("list at least one compose file"));
    }
    let services = a.services.unwrap_or_default();
    deploy::validate_services(&services)?;
    let strategy = deploy::rolling::Strategy::parse(&a.strategy)?;
    let target = deploy::swarm::Target::parse(&a.target)?;
    let hooks = deploy::hooks::Hooks::new(a.pre_deploy, a.post_deploy, a.hook_timeout, &a.hooks_on)?;
    let compose_files: Vec<PathBuf> = a.compose_files.iter().map(PathBuf::from).collect();
    let files: Vec<PathBuf> = a.files.unwrap_or_default().iter().map(PathBuf::from).collect();
    let env_file = a.env_file.filter(|p| !p.as_os_str().is_empty());
    deploy::check_local_files(&compose_files, &files, env_file.as_deref())?;
    let record_file = deploy::record_file_or_default(a.record_file);
    deploy::RECORD_OUTPUT.check(&record_file)?;
    let r = a.registry;
    let login = deploy::registry::parse_login(r.registry, r.registry_username, r.registry_password)?;
    let expect_digests = deploy::registry::parse_expect(a.expect_digests.as_deref().unwrap_or(""))?;
    let ssh = a.ssh.to_config()?;
    let cfg = DeployConfig {
        ssh,
        app,
        app_dir,
        compose_files,
        files,
        env_file,
        tag,
        services,
        strategy,
        hooks,
        health_url: a.health_url.filter(|u| !u.is_empty()),
        health_timeout: a.health_timeout,
        auto_rollback: a.auto_rollback,
        keep_images: a.keep_images.max(1),
        max_parallel: a.max_parallel.into(),
        lock_timeout: a.lock_timeout,
        force_unlock: a.force_unlock,
        min_free_disk: a.min_free_disk,
        preflight_only: a.preflight_only,
        record_file,
        meta: RunMeta::from_env(),
        login,
        expect_digests,
    };
    if target == deploy::swarm::Target::Swarm {
        deploy::swarm::check_deploy_inputs(&cfg)?;
    }
    Ok((cfg, target))
}

/// The whole run after inputs were parsed.
pub fn run(mut args: Args) -> Result<()> {
    deploy::install_signal_handlers();
    let metrics_file = metrics::from_input(args.metrics_file.take())?;
    // The `.env` values are registered before anything else is printed (the preflight group, an error).
    // A file that cannot be read holds nothing to mask; validation and preflight say why.
    if let Some(env) = args.env_file.as_deref().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(text) = read_input(env, "env-file", TEXT_LIMIT) {
            gangplank_core::dotenv::register_masks(&String::from_utf8_lossy(&text));
        }
    }
    let github = args.github.reporter()?;
    let (cfg, target) = config(args)?;
    deploy::announce_changes_early();
    // A preflight changes nothing, so it is no deployment.
    let github = github.filter(|_| !cfg.preflight_only);
    let deployment = github.as_ref().and_then(|g| g.start(&cfg.app, &cfg.tag));
    let mut connect = deploy::connect_ssh(&cfg.ssh);
    let started = std::time::Instant::now();
    let out = match target {
        deploy::swarm::Target::Swarm => deploy::swarm::deploy(&cfg, &mut connect),
        deploy::swarm::Target::Compose => deploy::deploy(&cfg, &mut connect),
    };
    if let Some(g) = &github {
        crate::deployments::report_deploy(g, deployment, &cfg.app, &cfg.tag, &out);
    }
    if cfg.preflight_only && out.error.is_none() {
        return Ok(());
    }
    // Exit 2 or 3: nothing was deployed anywhere, and the outputs say so.
    let nothing = out.error.as_ref().is_some_and(|e| matches!(e.exit_code(), 2 | 3));
    let outputs = [
        ("deployed-tag", if nothing { String::new() } else { cfg.tag.clone() }),
        ("previous-tag", out.record.previous_tag.clone()),
        ("rolled-back", out.rolled_back.to_string()),
    ];
    let now_running = match out.record.status.as_str() {
        "deployed" => Some(cfg.tag.as_str()),
        "rolled-back" => Some(out.record.previous_tag.as_str()),
        _ => None,
    };
    let event = Event::Deploy {
        app: &cfg.app,
        result: &out.record.status,
        duration: started.elapsed(),
        rolled_back: out.rolled_back,
        tag: now_running,
    };
    metrics::record_or_warn(metrics_file.as_deref(), &event);
    deploy::publish(out, &cfg.record_file, &outputs, &format!("deploy-remote: `{}` → `{}`", cfg.app, cfg.tag))
}
