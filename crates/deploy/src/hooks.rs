//! Deploy hooks (issue "Release lifecycle"): the user's `pre-deploy` and `post-deploy` shell scripts,
//! each one [`crate::plan::Step::Hook`] run through the host's one SSH connection.
//!
//! Where they run (docs/actions.md, "Deploy hooks"):
//! - `pre-deploy` right after the pull and the switch, before any container is restarted: the new
//!   release's files are live (compose file, `.env`, uploaded `files`) and the old containers still
//!   serve, so `docker compose run --rm web ./migrate` starts the NEW image with the NEW files. Before
//!   the switch the new files exist only under `.gangplank/staging/<stamp>/`, where compose would resolve
//!   `./data` mounts and `.env` against the staging folder. A failure puts the files back from the
//!   journal and restarts nothing.
//! - `post-deploy` after the health gate passed; its failure is a failed gate (auto-rollback).
//!
//! Invariant: the script is user text; it reaches the host as one quoted argument ([`Cmd::arg`], so
//! [`gangplank_core::cmd::quote`]) to a fixed wrapper, never glued into shell text. Its output is
//! untrusted: printed line by line as it arrives, fenced and masked ([`gangplank_core::exec::Executor::run_streamed`]).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use gangplank_core::actions::{group, info};
use gangplank_core::cmd::Cmd;
use gangplank_core::compose::Flavor;
use gangplank_core::error::{Class, Error, Result};
use gangplank_core::exec::Executor;

use crate::engine::Fail;
use crate::plan::{Ctx, Release};

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// After the switch, before pull and `up`.
    Pre,
    /// After the health gate passed, before the commit.
    Post,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Pre => "pre-deploy",
            Phase::Post => "post-deploy",
        })
    }
}

/// Which hosts run the hooks (`hooks-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Every host, each in its own deploy (per-host backups, per-host smoke tests).
    Every,
    /// The first host only, which then deploys alone before the others (a migration of a shared database).
    First,
}

impl On {
    pub fn parse(s: &str) -> Result<On> {
        match s.trim() {
            "" | "every" => Ok(On::Every),
            "first" => Ok(On::First),
            other => Err(Error::bad_input(format!("`hooks-on` {other:?} is neither `every` nor `first`")).hint(
                "`every` runs the hooks on each host; `first` runs them on the first host only (e.g. one migration of a shared database)",
            )),
        }
    }
}

/// The hooks of a deploy (validated inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub pre: Option<String>,
    pub post: Option<String>,
    pub timeout: Duration,
    pub on: On,
}

/// `hook-timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The largest script accepted: far below any command-line limit, far above any sensible hook.
pub const SCRIPT_LIMIT: usize = 64 * 1024;

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks { pre: None, post: None, timeout: DEFAULT_TIMEOUT, on: On::Every }
    }
}

impl Hooks {
    /// From the raw inputs: an empty (or white space only) script is no hook. Bad input is exit 2.
    pub fn new(pre: Option<String>, post: Option<String>, timeout: Duration, on: &str) -> Result<Hooks> {
        let keep = |name: &str, s: Option<String>| -> Result<Option<String>> {
            let Some(s) = s.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
            if s.len() > SCRIPT_LIMIT {
                return Err(Error::bad_input(format!("`{name}` is longer than {} KiB", SCRIPT_LIMIT / 1024)).hint(
                    "put the logic in a script shipped with the image or with `files`, and call it from the hook",
                ));
            }
            if s.contains('\0') {
                return Err(Error::bad_input(format!("`{name}` holds a NUL byte")).hint("pass shell text"));
            }
            Ok(Some(s))
        };
        if timeout.is_zero() {
            return Err(Error::bad_input("`hook-timeout` is zero").hint("give each hook time to run, e.g. `10m`"));
        }
        Ok(Hooks { pre: keep("pre-deploy", pre)?, post: keep("post-deploy", post)?, timeout, on: On::parse(on)? })
    }

    pub fn any(&self) -> bool {
        self.pre.is_some() || self.post.is_some()
    }

    /// Whether `host` (its index in `host`) runs the hooks.
    pub fn runs_on(&self, index: usize) -> bool {
        self.on == On::Every || index == 0
    }
}

/// The fixed wrapper around a hook: stderr joins stdout (one stream, in order), then the script runs
/// under `sh -e` (the first failing command fails the hook, as a workflow's `shell: sh` step does).
/// `$1` is the script, `$2` its name (`$0` inside it, so `sh` names the hook in its messages).
const WRAPPER: &str = r#"exec 2>&1 </dev/null; exec sh -e -c "$1" "$2""#;

/// The folder compose takes as the project directory: the first compose file's, in the app dir.
pub fn project_dir(app_dir: &str, release: &Release) -> String {
    let first = release.compose_files.first().map(String::as_str).unwrap_or("compose.yaml");
    match Path::new(first).parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => Path::new(app_dir).join(p).to_string_lossy().into_owned(),
        None => app_dir.to_string(),
    }
}

/// The command of a hook: in the project directory, with the deploy's environment, as root under
/// `sudo: true` (as compose runs), stopped on the host at `timeout`.
pub fn cmd(ctx: &Ctx, phase: Phase, script: &str, release: &Release, previous: &str, timeout: Duration) -> Cmd {
    let files: Vec<String> =
        release.compose_files.iter().map(|f| Path::new(&ctx.app_dir).join(f).to_string_lossy().into_owned()).collect();
    // COMPOSE_FILE is a list: pick a separator no path holds (`:` unless an app dir has one).
    let sep = [":", ";", "|", ","].into_iter().find(|s| !files.iter().any(|f| f.contains(s))).unwrap_or("\n");
    let compose = match ctx.flavor {
        Flavor::V2 => "docker compose",
        Flavor::V1 => "docker-compose",
    };
    let c = Cmd::new("sh");
    // This run's registry login (crate::registry), so `compose run` can pull a private image too.
    let c = match &ctx.docker_config {
        Some(dir) => c.env("DOCKER_CONFIG", dir),
        None => c,
    };
    c.env("IMAGE_TAG", &release.tag)
        .env("PREVIOUS_TAG", previous)
        .env("GANGPLANK_APP", &ctx.app)
        .env("GANGPLANK_APP_DIR", &ctx.app_dir)
        .env("GANGPLANK_HOOK", phase.to_string())
        .env("COMPOSE", compose)
        .env("COMPOSE_PROJECT_NAME", &ctx.app)
        .env("COMPOSE_PATH_SEPARATOR", sep)
        .env("COMPOSE_FILE", files.join(sep))
        .arg("-c")
        .arg(WRAPPER)
        .arg("gangplank-hook")
        .arg(script)
        .arg(phase.to_string())
        .in_dir(project_dir(&ctx.app_dir, release))
        .privileged()
        .timeout(timeout)
}

/// Run a hook command (from [`cmd`]) and print its output, fenced. A hook that fails or outlives its
/// deadline is [`Fail::Hook`]; an interrupt or a lost connection stay what they are, so the engine puts
/// the host back as for any other step.
pub fn run(ex: &mut dyn Executor, phase: Phase, cmd: &Cmd) -> std::result::Result<(), Fail> {
    let label = ex.label().to_string();
    let _g = group(&format!("{phase} hook on {label}"));
    let start = Instant::now();
    let took = || format!("{:.1}s", start.elapsed().as_secs_f32());
    // The output is printed as it comes (a long migration shows its progress), fenced and masked.
    match ex.run_streamed(cmd) {
        Ok(out) => {
            if out.success() {
                info(format!("{phase} hook passed on {label} in {}", took()));
                Ok(())
            } else {
                Err(Fail::Hook(
                    phase,
                    Error::failed(format!("the {phase} hook failed on {label} (exit {}) after {}", out.status, took()))
                        .hint(hint(phase)),
                ))
            }
        }
        // The SSH executor's one `Failed` answer: the deadline passed and the hook was stopped on the host.
        Err(e) if e.class == Class::Failed => Err(Fail::Hook(
            phase,
            Error::failed(format!(
                "the {phase} hook on {label} did not finish within `hook-timeout` ({}) and was stopped on the host",
                cmd.get_timeout().map(human).unwrap_or_default()
            ))
            .hint(format!("raise `hook-timeout`, or make the hook quicker; {}", hint(phase))),
        )),
        Err(e) => Err(Fail::Other(e)),
    }
}

fn hint(phase: Phase) -> &'static str {
    match phase {
        Phase::Pre => "read the hook's output above; nothing was restarted and the files are back, but what the hook changed before it failed (a migration part way) is not undone (docs/actions.md, \"Deploy hooks\")",
        Phase::Post => "read the hook's output above; it counts as a failed health gate (auto-rollback puts the previous release back, a migration stays)",
    }
}

/// `90s`, `10m`, `1h30m`: a duration as the inputs write it.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        _ if s == 0 => format!("{}ms", d.as_millis()),
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::Local;

    fn ctx(dir: &str) -> Ctx {
        Ctx {
            app: "shop".into(),
            app_dir: dir.into(),
            flavor: Flavor::V2,
            services: vec![],
            health_url: None,
            health_timeout: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(1),
            meta: Default::default(),
            uploads: vec![],
            docker_config: None,
        }
    }

    fn release(files: &[&str]) -> Release {
        Release { tag: "v2".into(), compose_files: files.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn the_script_is_one_quoted_argument() {
        let script = "echo \"$IMAGE_TAG\" 'it''s'; $(id) `id`\nexit 3";
        let c = cmd(&ctx("/opt/my app"), Phase::Pre, script, &release(&["deploy/compose.yaml"]), "v1", DEFAULT_TIMEOUT);
        let line = c.render(false);
        assert!(
            line.starts_with("cd '/opt/my app/deploy' && IMAGE_TAG=v2 PREVIOUS_TAG=v1 GANGPLANK_APP=shop "),
            "{line}"
        );
        assert!(line.contains(" COMPOSE='docker compose' "), "{line}");
        assert!(line.contains("COMPOSE_FILE='/opt/my app/deploy/compose.yaml'"), "{line}");
        assert!(line.ends_with(&format!(" gangplank-hook {} pre-deploy", gangplank_core::quote(script))), "{line}");
        assert_eq!(c.get_timeout(), Some(DEFAULT_TIMEOUT));
        assert_eq!(c.privileged().render(true).matches("sudo -n sh -c").count(), 1);
    }

    #[test]
    fn a_hook_runs_with_the_deploy_environment_in_the_project_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("app:x");
        std::fs::create_dir_all(dir.join("deploy")).unwrap();
        let c = cmd(
            &ctx(&dir.to_string_lossy()),
            Phase::Post,
            "echo \"$GANGPLANK_HOOK $IMAGE_TAG $PREVIOUS_TAG $COMPOSE_PROJECT_NAME $COMPOSE_FILE\"; pwd; echo err >&2; false; echo never",
            &release(&["deploy/a.yaml", "deploy/b.yaml"]),
            "",
            Duration::from_secs(5),
        );
        let out = Local::new(false).run(&c).unwrap();
        let d = dir.to_string_lossy();
        assert_eq!(
            out.stdout_str(),
            format!("post-deploy v2  shop {d}/deploy/a.yaml;{d}/deploy/b.yaml\n{d}/deploy\nerr\n"),
            "stderr joins stdout in order; `sh -e` stops at the first failure"
        );
        assert_eq!(out.status, 1);
    }

    #[test]
    fn inputs() {
        let h = Hooks::new(Some(" \n".into()), Some("true".into()), DEFAULT_TIMEOUT, "").unwrap();
        assert_eq!((h.pre, h.post.as_deref(), h.on), (None, Some("true"), On::Every));
        assert_eq!(Hooks::new(None, None, DEFAULT_TIMEOUT, "all").unwrap_err().exit_code(), 2);
        assert_eq!(Hooks::new(None, None, Duration::ZERO, "every").unwrap_err().exit_code(), 2);
        let big = "x".repeat(SCRIPT_LIMIT + 1);
        assert_eq!(Hooks::new(Some(big), None, DEFAULT_TIMEOUT, "first").unwrap_err().exit_code(), 2);
        assert_eq!([human(Duration::from_secs(600)), human(Duration::from_secs(90))], ["10m", "1m30s"]);
    }
}
