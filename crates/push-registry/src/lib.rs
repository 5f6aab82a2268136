//! `push-registry`: log in, optionally build, tag, push, and read each digest back from the registry.
//!
//! Contract: docs/actions.md, "push-registry". Order of work: validate inputs → check every local image
//! exists (exit 2, nothing pushed) → log in into a temporary `DOCKER_CONFIG` (removed at exit, so the
//! credentials never persist on the runner) → build compose services → tag and push each tag with
//! bounded retries → HEAD each manifest for its digest → metadata file, outputs, summary.
//!
//! Invariant: the password reaches docker only on stdin and the registry only in an `Authorization`
//! header; it is a [`Secret`] from the moment clap reads it.

pub use gangplank_core::process as proc;
pub mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use gangplank_core::actions::{self, info};
use gangplank_core::compose as compose_file;
use gangplank_core::input::{parse_bool, parse_list};
use gangplank_core::{Error, Result, Secret};
use serde::Serialize;

use proc::{Finished, Opts, RunError};
use registry::{DigestReader, Login, RegistryRef};

fn secret_value(s: &str) -> std::result::Result<Secret, String> {
    Ok(Secret::new(s))
}

/// Push local images (or the images of a compose file's build services) to a registry.
#[derive(Debug, Parser)]
#[command(name = "push-registry", version, about)]
pub struct Args {
    /// Registry address, e.g. `ghcr.io`, `registry.digitalocean.com/team`, `127.0.0.1:5000` (required)
    #[arg(long, env = "INPUT_REGISTRY")]
    pub registry: Option<String>,

    /// Login user (none: push with the runner's existing docker login, if any)
    #[arg(long, env = "INPUT_USERNAME")]
    pub username: Option<String>,

    /// Login password or token; sent to `docker login --password-stdin`, never on a command line
    #[arg(long, env = "INPUT_PASSWORD", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    pub password: Option<Secret>,

    /// Local images to push, one per line: `local-ref` or `name=local-ref` (required unless compose-files)
    #[arg(long, env = "INPUT_IMAGES")]
    pub images: Option<String>,

    /// Compose files: build every service with a `build:` section (IMAGE_TAG set), then push those images
    #[arg(long, env = "INPUT_COMPOSE_FILES")]
    pub compose_files: Option<String>,

    /// Tag to push [default: first 12 characters of GITHUB_SHA]
    #[arg(long, env = "INPUT_TAG")]
    pub tag: Option<String>,

    /// More tags for the same images, e.g. `latest`
    #[arg(long, env = "INPUT_EXTRA_TAGS")]
    pub extra_tags: Option<String>,

    /// Prune build cache and dangling images when a build or push fails
    #[arg(long, env = "INPUT_CLEANUP_ON_FAILURE", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub cleanup_on_failure: bool,

    /// Where the metadata JSON is written [default: $RUNNER_TEMP/gangplank/push-metadata.json]
    #[arg(long, env = "INPUT_METADATA_FILE")]
    pub metadata_file: Option<PathBuf>,
}

/// One image to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Repository name under the registry (`app`, `team/app`).
    pub name: String,
    /// The local image reference.
    pub local: String,
}

/// Validated inputs.
#[derive(Debug)]
pub struct Config {
    pub registry: RegistryRef,
    pub login: Option<(String, Secret)>,
    pub images: Vec<ImageSpec>,
    pub compose_files: Vec<String>,
    pub tag: String,
    pub extra_tags: Vec<String>,
    pub cleanup_on_failure: bool,
    pub metadata_file: PathBuf,
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, Docker's tag grammar.
pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !t.starts_with(['.', '-'])
}

/// The repository name an image is pushed under when the user gives none: the local reference without
/// its tag or digest and without a registry host (`ghcr.io/org/app:1` → `org/app`, `app:dev` → `app`).
pub fn default_name(local: &str, registry: &RegistryRef) -> String {
    let no_digest = local.split('@').next().unwrap_or(local);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let repo = match no_digest[last_slash..].rfind(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    if let Some(rest) = repo.strip_prefix(&format!("{}/", registry.base())) {
        return rest.to_string();
    }
    match repo.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest.to_string(),
        _ => repo.to_string(),
    }
}

fn valid_name(n: &str) -> bool {
    n.split('/').all(registry::valid_path_component)
}

/// Parse one `images` line: `local-ref` or `name=local-ref`.
pub fn parse_image_line(line: &str, registry: &RegistryRef) -> Result<ImageSpec> {
    let (name, local) = match line.split_once('=') {
        Some((n, l)) => (n.trim().to_string(), l.trim().to_string()),
        None => (default_name(line.trim(), registry), line.trim().to_string()),
    };
    let local_ok = !local.is_empty() && !local.starts_with('-') && !local.chars().any(char::is_whitespace);
    if !local_ok || !valid_name(&name) {
        return Err(Error::bad_input(format!("image `{line}` is not a valid image reference")).hint(
            "write one image per line as `local-ref` or `name=local-ref`, e.g. `app=myapp:dev`; names are lowercase",
        ));
    }
    Ok(ImageSpec { name, local })
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let registry =
            RegistryRef::parse(self.registry.as_deref().filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                Error::bad_input("input `registry` is required")
                    .hint("set `registry:` to e.g. `ghcr.io` or `127.0.0.1:5000`")
            })?)?;
        let login = match (self.username.filter(|u| !u.trim().is_empty()), self.password.filter(|p| !p.is_empty())) {
            (Some(u), Some(p)) => Some((u.trim().to_string(), p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::bad_input("input `username` is set but `password` is empty")
                    .hint("pass the registry password or token as `password: ${{ secrets.REGISTRY_TOKEN }}` (is the secret defined?)"))
            }
            (None, Some(_)) => {
                return Err(Error::bad_input("input `password` is set but `username` is empty")
                    .hint("set `username:` to the registry account the password belongs to"))
            }
        };
        let images = parse_list_lines(self.images.as_deref())
            .iter()
            .map(|l| parse_image_line(l, &registry))
            .collect::<Result<Vec<_>>>()?;
        let compose_files = parse_list(self.compose_files.as_deref().unwrap_or(""));
        if images.is_empty() && compose_files.is_empty() {
            return Err(Error::bad_input("give `images` or `compose-files`: there is nothing to push")
                .hint("list local images one per line in `images:`, e.g. `app=myapp:dev`"));
        }
        for f in &compose_files {
            if !std::path::Path::new(f).is_file() {
                return Err(Error::bad_input(format!("compose file `{f}` does not exist"))
                    .hint("paths in `compose-files` are relative to the working directory of the step"));
            }
        }
        let tag = match self.tag.filter(|t| !t.trim().is_empty()) {
            Some(t) => t.trim().to_string(),
            None => {
                std::env::var("GITHUB_SHA").ok().filter(|s| s.len() >= 12).map(|s| s[..12].to_string()).ok_or_else(
                    || {
                        Error::bad_input("input `tag` is not set and GITHUB_SHA is not available")
                            .hint("set `tag:` (outside Actions there is no GITHUB_SHA to default to)")
                    },
                )?
            }
        };
        let extra_tags = parse_list(self.extra_tags.as_deref().unwrap_or(""));
        for t in std::iter::once(&tag).chain(&extra_tags) {
            if !valid_tag(t) {
                return Err(Error::bad_input(format!("`{t}` is not a valid image tag")).hint(
                    "tags use letters, digits, `_`, `.` and `-`, at most 128 characters, not starting with `.` or `-`",
                ));
            }
        }
        let metadata_file = self
            .metadata_file
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| default_out_dir().join("push-metadata.json"));
        METADATA_OUTPUT.check(&metadata_file)?;
        Ok(Config {
            registry,
            login,
            images,
            compose_files,
            tag,
            extra_tags,
            cleanup_on_failure: self.cleanup_on_failure,
            metadata_file,
        })
    }
}

/// `images` is one per line; commas are accepted too, as for every list input.
fn parse_list_lines(s: Option<&str>) -> Vec<String> {
    parse_list(s.unwrap_or(""))
}

/// `$RUNNER_TEMP/gangplank`, or the system temp dir's `gangplank` outside Actions.
pub fn default_out_dir() -> PathBuf {
    std::env::var_os("RUNNER_TEMP")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("gangplank")
}

/// The temporary docker client config holding the login; removed on drop (every exit path of [`run`]).
struct DockerConfig {
    dir: Option<tempfile::TempDir>,
}

impl DockerConfig {
    fn path(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for DockerConfig {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let path = d.path().to_path_buf();
            if d.close().is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// Runs docker with the step's client config.
struct Docker<'a> {
    config: &'a DockerConfig,
    /// Set once a build or push started: only then does `cleanup-on-failure` prune.
    building: std::cell::Cell<bool>,
}

impl Docker<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        if let Some(p) = self.config.path() {
            c.env("DOCKER_CONFIG", p);
        }
        c.args(args);
        c
    }

    fn run(&self, mut c: Command, stdin: Option<&[u8]>) -> Result<Finished> {
        proc::run(&mut c, Opts { stdin, ..Default::default() }).map_err(run_error)
    }
}

fn run_error(e: RunError) -> Error {
    match e {
        RunError::Spawn(p, e) => Error::bad_input(format!("cannot run `{p}`: {e}"))
            .hint("install the Docker CLI on the runner (and docker compose when `compose-files` is set)"),
        RunError::TimedOut(f) => Error::failed(format!("a docker command timed out: {}", f.tail(3))),
        RunError::Interrupted(sig) => {
            Error::failed(format!("interrupted by signal {sig}")).hint("the run was cancelled; nothing more was pushed")
        }
    }
}

/// Whether a failed docker login/push looks like a registry that is down or overloaded (worth a retry).
pub fn is_transient(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let auth = ["unauthorized", "denied", "authentication required", "incorrect username or password"];
    if auth.iter().any(|a| t.contains(a)) {
        return false;
    }
    [
        "connection refused",
        "connection reset",
        "timeout",
        "timed out",
        "eof",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway",
        "500 internal server error",
        "too many requests",
        "tls handshake",
        "broken pipe",
        "no route to host",
        "server misbehaving",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Whether a failed login means the credentials were refused.
pub fn is_auth_failure(text: &str) -> bool {
    gangplank_core::process::is_registry_auth_refused(text)
}

/// How many times a transient failure is tried, and the pause before each retry.
const ATTEMPTS: u32 = 3;
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(750 * 2u64.pow(attempt.saturating_sub(1)))
}

/// Run `make()` until it succeeds, fails for good, or [`ATTEMPTS`] transient failures happened.
fn with_retries(
    what: &str,
    docker: &Docker<'_>,
    make: impl Fn() -> Command,
) -> Result<std::result::Result<Finished, Finished>> {
    let mut last = Finished::default();
    for attempt in 1..=ATTEMPTS {
        let f = docker.run(make(), None)?;
        if f.ok() {
            return Ok(Ok(f));
        }
        if !is_transient(&f.all()) {
            return Ok(Err(f));
        }
        if attempt < ATTEMPTS {
            let pause = backoff(attempt);
            actions::warning(
                "retrying",
                format!(
                    "{what} failed (attempt {attempt} of {ATTEMPTS}), retrying in {:.1}s: {}",
                    pause.as_secs_f32(),
                    f.tail(1)
                ),
            );
            proc::sleep(pause);
            if let Some(sig) = proc::interrupted() {
                return Err(run_error(RunError::Interrupted(sig)));
            }
        }
        last = f;
    }
    Ok(Err(last))
}

fn login(cfg: &Config, docker: &Docker<'_>, user: &str, password: &Secret) -> Result<()> {
    let _g = actions::group(&format!("log in to {}", cfg.registry.host));
    let mut last = Finished::default();
    for attempt in 1..=ATTEMPTS {
        let c = docker.cmd(&["login", "--username", user, "--password-stdin", &cfg.registry.host]);
        let f = docker.run(c, Some(password.expose().as_bytes()))?;
        if f.ok() {
            info(format!("logged in to {} as {user} (credentials in a temporary DOCKER_CONFIG)", cfg.registry.host));
            return Ok(());
        }
        if is_auth_failure(&f.all()) {
            return Err(Error::bad_input(format!("the registry {} refused the login of `{user}`: {}", cfg.registry.host, f.tail(1)))
                .hint("check `username` and `password` (for GHCR a token with write:packages, for Docker Hub an access token); the secret may be expired or for another registry"));
        }
        if !is_transient(&f.all()) {
            return Err(Error::failed(format!("docker login to {} failed: {}", cfg.registry.host, f.tail(2)))
                .hint("check that `registry` is the registry's address, e.g. `ghcr.io` or `127.0.0.1:5000`"));
        }
        if attempt < ATTEMPTS {
            actions::warning(
                "retrying",
                format!("login to {} failed (attempt {attempt} of {ATTEMPTS}): {}", cfg.registry.host, f.tail(1)),
            );
            proc::sleep(backoff(attempt));
            if let Some(sig) = proc::interrupted() {
                return Err(run_error(RunError::Interrupted(sig)));
            }
        }
        last = f;
    }
    Err(Error::failed(format!(
        "the registry {} did not answer after {ATTEMPTS} attempts: {}",
        cfg.registry.host,
        last.tail(1)
    ))
    .hint("check that the registry is up and reachable from the runner, then re-run the job"))
}

/// What building the compose services needs: the services with a `build:` section and their `image:`
/// (resolved by compose itself), and the stand-ins of variables that have no value here.
struct ComposeBuild {
    services: Vec<(String, String)>,
    /// `(name, stand-in)` for compose's interpolation, given to `config` and `build` only.
    stand_ins: Vec<(String, String)>,
}

/// The form of a stand-in. Compose casts some interpolated values (ports and counts are numbers, grace
/// periods durations, `read_only` a boolean, a volume source a path), so a stand-in must have the type of
/// the field it lands in; compose's error names the value it could not take, and the stand-in moves on to
/// the next form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Number,
    Duration,
    Path,
    Boolean,
}

/// A stand-in for a required variable (`${X:?}`) that has no value on the runner. The build's
/// interpolation needs some value, and a runtime setting's value (a password, the app's mode) only
/// exists on the server; any value does, so long as it reaches nothing the build or push uses, which
/// [`compose_build_services`] proves by reading the model with two different stand-ins.
#[derive(Debug, Clone)]
struct StandIn {
    name: String,
    index: usize,
    form: Form,
}

impl StandIn {
    /// The unique number in the stand-in of read `a` (or the second read): 41000+i and 42000+i are valid
    /// ports, counts and image tags, and no two stand-ins share one.
    fn token(&self, a: bool) -> Option<String> {
        (self.form != Form::Boolean).then(|| (if a { 41000 } else { 42000 } + self.index).to_string())
    }

    fn value(&self, a: bool) -> String {
        let n = self.token(a).unwrap_or_default();
        match self.form {
            Form::Number => n,
            Form::Duration => format!("{n}s"),
            Form::Path => format!("/gangplank-unset/{n}"),
            Form::Boolean => (if a { "true" } else { "false" }).to_string(),
        }
    }

    /// Move on to the next form; false when none is left.
    fn next_form(&mut self) -> bool {
        self.form = match self.form {
            Form::Number => Form::Duration,
            Form::Duration => Form::Path,
            // A boolean last: it carries no number, so an error cannot name it.
            Form::Path => Form::Boolean,
            Form::Boolean => return false,
        };
        true
    }
}

/// Whether `token` (digits) occurs in `text` as a number of its own, not inside a longer one.
fn has_number(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + token.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// `docker compose -f F… <args>` with `IMAGE_TAG`, the step's docker config and `stand_ins` in its environment.
fn compose_command(
    cfg: &Config,
    compose: proc::Compose,
    docker: &Docker<'_>,
    stand_ins: &[(String, String)],
    args: &[&str],
) -> Command {
    let mut c = compose.command();
    for f in &cfg.compose_files {
        c.arg("-f").arg(f);
    }
    c.args(args).env("IMAGE_TAG", &cfg.tag).envs(stand_ins.iter().map(|(k, v)| (k, v)));
    if let Some(p) = docker.config.path() {
        c.env("DOCKER_CONFIG", p);
    }
    c
}

/// The variables of the compose model: compose's own answer (`config --variables`, compose 2.24 and later),
/// with the files as written. Compose reads them from its model before interpolation, where the short
/// syntax of a volume is already split at its colons (`${DATA:?}:/data` loses `DATA`); docker-compose 1.x
/// has no answer at all. A variable either names is taken; one both miss (in a file `include` or `extends`
/// brings in, under 1.x) comes from compose's refusal in [`compose_build_services`].
fn model_variables(cfg: &Config, compose: proc::Compose, docker: &Docker<'_>) -> Result<Vec<compose_file::Variable>> {
    let mut vars: Vec<compose_file::Variable> = Vec::new();
    let mut add = |found: Vec<compose_file::Variable>| {
        for v in found {
            match vars.iter_mut().find(|w| w.name == v.name) {
                Some(w) => w.required |= v.required,
                None => vars.push(v),
            }
        }
    };
    if compose == proc::Compose::V2 {
        let f = docker.run(compose_command(cfg, compose, docker, &[], &["config", "--variables"]), None)?;
        add(f.ok().then(|| compose_file::parse_variables_output(&f.stdout)).flatten().unwrap_or_default());
    }
    for file in &cfg.compose_files {
        // A file that does not read is compose's to report, in `config`.
        add(std::fs::read_to_string(file)
            .ok()
            .and_then(|t| compose_file::variables_in_yaml(&t).ok())
            .unwrap_or_default());
    }
    Ok(vars)
}

/// Whether a variable has a value for compose here: a non-empty one in the step's environment or in the
/// project's `.env` (the first compose file's folder, where compose reads it). `IMAGE_TAG` is ours.
struct Values {
    dotenv: Vec<(String, String)>,
}

impl Values {
    fn new(cfg: &Config) -> Values {
        let dotenv = cfg
            .compose_files
            .first()
            .and_then(|f| std::path::Path::new(f).parent().map(|d| d.join(".env")))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| gangplank_core::dotenv::parse(&t).0)
            .unwrap_or_default();
        Values { dotenv }
    }

    fn has(&self, name: &str) -> bool {
        name == "IMAGE_TAG"
            || std::env::var(name).is_ok_and(|v| !v.is_empty())
            || self.dotenv.iter().any(|(k, v)| k == name && !v.is_empty())
    }
}

/// What the build and the push take from the resolved model: the project name (compose labels what it
/// builds with it), and of every service with a `build:` section its `image`, `build` and `platform`, with
/// the top-level secrets its build mounts.
fn build_part(model: &serde_json::Value) -> serde_json::Value {
    let mut services = serde_json::Map::new();
    let mut secrets = serde_json::Map::new();
    for (name, svc) in model.get("services").and_then(|s| s.as_object()).into_iter().flatten() {
        let Some(build) = svc.get("build") else { continue };
        let keep = ["image", "build", "platform"];
        let part: serde_json::Map<_, _> =
            keep.iter().filter_map(|k| svc.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
        services.insert(name.clone(), part.into());
        for s in build.get("secrets").and_then(|s| s.as_array()).into_iter().flatten() {
            let source = s.as_str().or_else(|| s.get("source").and_then(|x| x.as_str()));
            if let Some((src, def)) = source.and_then(|n| model.get("secrets")?.get(n).map(|d| (n, d))) {
                secrets.insert(src.to_string(), def.clone());
            }
        }
    }
    serde_json::json!({ "name": model.get("name"), "services": services, "secrets": secrets })
}

/// The paths (`services.web.image`) where `a` and `b` differ, with the strings found there in each.
fn differences(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &join(k), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &join(&i.to_string()), out);
            }
        }
        _ if a != b => out.push((path.to_string(), format!("{a} {b}"))),
        _ => {}
    }
}

/// `config` with `stand_ins` (read `a` or the second): the resolved model, or compose's refusal.
fn read_model(
    cfg: &Config,
    compose: proc::Compose,
    docker: &Docker<'_>,
    stand_ins: &[StandIn],
    a: bool,
) -> Result<std::result::Result<serde_json::Value, Finished>> {
    let env: Vec<(String, String)> = stand_ins.iter().map(|s| (s.name.clone(), s.value(a))).collect();
    let f = docker.run(compose_command(cfg, compose, docker, &env, &["config"]), None)?;
    if !f.ok() {
        return Ok(Err(f));
    }
    let model = serde_saphyr::from_str(&f.stdout)
        .map_err(|e| Error::bad_input(format!("cannot read the output of `{} config`: {e}", compose.name())))?;
    Ok(Ok(model))
}

fn names(list: &[String]) -> String {
    list.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The services of the compose files with a `build:` section, and their `image:` (IMAGE_TAG resolved by
/// compose itself through `config`).
///
/// Required variables with no value here (runtime settings whose values live in the server's `.env`) get
/// stand-ins for the interpolation of `config` and `build` only. The model is read twice, with two
/// different stand-ins each: when what the build and push take from it ([`build_part`]) differs, a
/// stand-in would be built or pushed, and the step refuses, naming the variable; no value is ever shown.
fn compose_build_services(cfg: &Config, compose: proc::Compose, docker: &Docker<'_>) -> Result<ComposeBuild> {
    let values = Values::new(cfg);
    let mut unset: Vec<String> = model_variables(cfg, compose, docker)?
        .into_iter()
        .filter(|v| v.required && !values.has(&v.name))
        .map(|v| v.name)
        .collect();
    let mut stand_ins: Vec<StandIn> = unset
        .iter()
        .enumerate()
        .map(|(index, name)| StandIn { name: name.clone(), index, form: Form::Number })
        .collect();
    let refused = |f: &Finished, unset: &[String]| {
        let hint = if unset.is_empty() {
            format!("run `IMAGE_TAG={} {} -f … config` locally to see the problem", cfg.tag, compose.name())
        } else {
            format!(
                "compose read the files with a stand-in (a number, a duration, a path or a boolean) for {}, which \
                 have no value here; when its message is about one of them, give that one a value for the build in \
                 the step's `env:` (any valid one when only the server uses it)",
                names(unset)
            )
        };
        Error::bad_input(format!("the compose files are not valid: {}", f.tail(3))).hint(hint)
    };
    let model = loop {
        match read_model(cfg, compose, docker, &stand_ins, true)? {
            Ok(m) => break m,
            Err(f) => {
                // A required variable neither list had: compose v2 names it, docker-compose 1.x quotes the
                // text it was interpolating.
                let text = f.all();
                let mut named: Vec<String> = compose_file::variables_in(&text)
                    .into_iter()
                    .filter(|v| v.required)
                    .map(|v| v.name)
                    .chain(compose_file::missing_required(&text).map(str::to_string))
                    .filter(|n| !values.has(n) && !unset.contains(n))
                    .collect();
                named.sort();
                named.dedup();
                // The stand-ins' numbers stay apart (41000+i, 42000+i) for fewer than 1000 of them.
                if !named.is_empty() && unset.len() + named.len() < 1000 {
                    for name in named {
                        stand_ins.push(StandIn { name: name.clone(), index: unset.len(), form: Form::Number });
                        unset.push(name);
                    }
                    continue;
                }
                // Compose names the value it could not cast; that stand-in takes its next form.
                let culprit = stand_ins.iter_mut().find(|s| s.token(true).is_some_and(|t| has_number(&text, &t)));
                if !culprit.is_some_and(|s| s.next_form()) {
                    return Err(refused(&f, &unset));
                }
            }
        }
    };
    if !stand_ins.is_empty() {
        let other = read_model(cfg, compose, docker, &stand_ins, false)?.map_err(|f| refused(&f, &unset))?;
        let mut diff = Vec::new();
        let part = build_part(&model);
        differences(&part, &build_part(&other), "", &mut diff);
        let mut culprits: Vec<String> = Vec::new();
        // A build secret taken from a variable (`environment: NAME`) names it, and stays the same in both reads.
        for (secret, def) in part["secrets"].as_object().into_iter().flatten() {
            if let Some(var) = def.get("environment").and_then(|e| e.as_str()).filter(|v| unset.iter().any(|u| u == v))
            {
                culprits.push(var.to_string());
                diff.push((format!("secrets.{secret}.environment"), String::new()));
            }
        }
        if !diff.is_empty() {
            for (_, text) in diff.iter().filter(|(_, t)| !t.is_empty()) {
                let found: Vec<&StandIn> = stand_ins
                    .iter()
                    .filter(|s| {
                        s.token(true).is_some_and(|t| has_number(text, &t))
                            || s.token(false).is_some_and(|t| has_number(text, &t))
                    })
                    .collect();
                // A boolean stand-in has no number to find; then every one may be the cause.
                let found = if found.is_empty() { stand_ins.iter().collect() } else { found };
                for s in found {
                    if !culprits.contains(&s.name) {
                        culprits.push(s.name.clone());
                    }
                }
            }
            let paths: Vec<String> = diff.iter().map(|(p, _)| p.clone()).collect();
            return Err(Error::bad_input(format!(
                "{} {} no value here, and the build or push uses {} ({})",
                names(&culprits),
                if culprits.len() == 1 { "has" } else { "have" },
                if culprits.len() == 1 { "it" } else { "them" },
                paths.join(", ")
            ))
            .hint(
                "give it a value in the push step's `env:` (an image name, a build arg, a build context…); only \
                 variables of what runs on the server (environment, ports, volumes) may stay unset when building",
            ));
        }
        info(format!(
            "no value here for {} (runtime settings): compose interpolates stand-ins, which reach nothing built or pushed",
            names(&unset)
        ));
    }
    let mut services = Vec::new();
    for (svc, s) in model.get("services").and_then(|s| s.as_object()).into_iter().flatten() {
        if s.get("build").is_none() {
            continue;
        }
        let image = s.get("image").and_then(|i| i.as_str()).filter(|i| !i.trim().is_empty()).ok_or_else(|| {
            Error::bad_input(format!("compose service `{svc}` has a `build:` section but no `image:`"))
                .hint(format!("give it a name to push, e.g. `image: {}/{svc}:${{IMAGE_TAG}}`", cfg.registry.base()))
        })?;
        services.push((svc.clone(), image.to_string()));
    }
    if services.is_empty() {
        return Err(Error::bad_input("no service of the compose files has a `build:` section")
            .hint("list prebuilt images in `images:` instead of `compose-files:`"));
    }
    let stand_ins = stand_ins.iter().map(|s| (s.name.clone(), s.value(true))).collect();
    Ok(ComposeBuild { services, stand_ins })
}

/// What was pushed for one image.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub layers_uploaded: usize,
    pub layers_existing: usize,
}

/// The metadata file as an output file: an existing file is ours when it has the metadata's fields.
const METADATA_OUTPUT: gangplank_core::local::Output =
    gangplank_core::local::Output { input: "metadata-file", keys: &["registry", "tag", "images", "created_at"] };

#[derive(Debug, Serialize)]
struct Metadata<'a> {
    registry: String,
    tag: &'a str,
    images: &'a [Pushed],
    git_sha: Option<String>,
    created_at: String,
    run_url: Option<String>,
}

/// Tags this run added to local images; removed again at exit so the runner's image list stays as it was.
struct CreatedTags<'a> {
    docker: &'a Docker<'a>,
    refs: Vec<String>,
}

impl Drop for CreatedTags<'_> {
    fn drop(&mut self) {
        if self.refs.is_empty() {
            return;
        }
        let mut c = self.docker.cmd(&["image", "rm", "--no-prune"]);
        c.args(&self.refs);
        let _ = proc::run(&mut c, Opts { uninterruptible: true, ..Default::default() });
    }
}

fn prune(docker: &Docker<'_>) {
    // Only build cache and dangling images: never `system prune -a`, which deletes rollback targets.
    let _g = actions::group("cleanup after failure: prune build cache and dangling images");
    for args in [["builder", "prune", "--force"], ["image", "prune", "--force"]] {
        let mut c = docker.cmd(&args);
        match proc::run(&mut c, Opts { uninterruptible: true, ..Default::default() }) {
            Ok(f) => info(format!("docker {}: {}", args.join(" "), f.tail(1))),
            Err(e) => info(format!("docker {} could not run: {e:?}", args.join(" "))),
        }
    }
}

/// Push one reference; returns (layers uploaded, layers already in the registry).
fn push_ref(docker: &Docker<'_>, target: &str) -> Result<(usize, usize)> {
    let _g = actions::group(&format!("push {target}"));
    let res = with_retries(&format!("push of {target}"), docker, || docker.cmd(&["push", target]))?;
    match res {
        Ok(f) => {
            for l in f.stdout.lines().filter(|l| !l.trim().is_empty()) {
                info(l);
            }
            let uploaded = f.stdout.lines().filter(|l| l.ends_with(": Pushed")).count();
            let existing = f.stdout.lines().filter(|l| l.ends_with(": Layer already exists")).count();
            info(format!("{target}: {uploaded} layer(s) uploaded, {existing} already in the registry"));
            Ok((uploaded, existing))
        }
        Err(f) => {
            let text = f.all();
            let err = if is_transient(&text) {
                Error::failed(format!("the push of {target} failed after {ATTEMPTS} attempts: {}", f.tail(1)))
                    .hint("the registry is down or unreachable from the runner; check it and re-run the job")
            } else if is_auth_failure(&text) {
                Error::failed(format!("the registry refused the push of {target}: {}", f.tail(1)))
                    .hint("set `username` and `password` to an account with push permission on this repository")
            } else {
                Error::failed(format!("the push of {target} failed: {}", f.tail(2)))
                    .hint("check the registry's logs; the message above is docker's")
            };
            Err(err)
        }
    }
}

/// The whole run, after inputs were parsed (the `gangplank push-registry` entry point). Every temporary
/// thing is dropped before this returns: a signal only sets a flag, so the temporary `DOCKER_CONFIG` is
/// removed before the process exits.
pub fn run(args: Args) -> Result<()> {
    proc::install_signal_flag();
    let cfg = args.into_config()?;
    let mut config = DockerConfig { dir: None };
    if cfg.login.is_some() {
        let base = std::env::var_os("RUNNER_TEMP")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new().prefix("gangplank-docker-config-").tempdir_in(&base).map_err(|e| {
            Error::failed(format!("cannot create a temporary docker config in {}: {e}", base.display()))
        })?;
        // An empty config lets docker pick a platform credential helper (secretservice, pass) when one is
        // installed, which would store the login outside this directory and keep it after we exit. A
        // config that already holds an `auths` entry makes docker use the plain file store right here.
        std::fs::write(dir.path().join("config.json"), "{\"auths\": {\"gangplank.invalid\": {}}}\n")
            .map_err(|e| Error::failed(format!("cannot write the temporary docker config: {e}")))?;
        // Docker looks for CLI plugins (compose v2, buildx) in the config folder first: a plugin installed
        // for the user only (`~/.docker/cli-plugins`, or under `DOCKER_CONFIG`) must stay found.
        let user_config = std::env::var_os("DOCKER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        if let Some(plugins) = user_config.map(|c| c.join("cli-plugins")).filter(|p| p.is_dir()) {
            std::os::unix::fs::symlink(&plugins, dir.path().join("cli-plugins")).map_err(|e| {
                Error::failed(format!("cannot link the docker CLI plugins into the temporary config: {e}"))
            })?;
        }
        config.dir = Some(dir);
    }
    let docker = Docker { config: &config, building: std::cell::Cell::new(false) };
    let result = push_all(&cfg, &docker);
    if result.is_err() && cfg.cleanup_on_failure && docker.building.get() {
        prune(&docker);
    }
    drop(config);
    let pushed = result?;
    write_results(&cfg, &pushed)
}

fn push_all(cfg: &Config, docker: &Docker<'_>) -> Result<Vec<Pushed>> {
    let mut images = cfg.images.clone();
    let compose = if cfg.compose_files.is_empty() {
        None
    } else {
        let c = proc::Compose::detect().ok_or_else(|| {
            Error::bad_input("`compose-files` is set but neither `docker compose` nor `docker-compose` is installed")
                .hint("install the compose plugin (or docker-compose v1) on the runner")
        })?;
        let services = compose_build_services(cfg, c, docker)?;
        Some((c, services))
    };

    // Preflight: every local image must exist before anything is pushed.
    if !images.is_empty() {
        let mut missing = Vec::new();
        for img in &images {
            let f = docker.run(docker.cmd(&["image", "inspect", "--format", "{{.Id}}", &img.local]), None)?;
            if !f.ok() {
                if f.all().contains("Cannot connect to the Docker daemon") {
                    return Err(Error::bad_input(format!("the Docker engine does not answer: {}", f.tail(1)))
                        .hint("start the Docker daemon (or set DOCKER_HOST) on the runner"));
                }
                missing.push(img.local.clone());
            }
        }
        if !missing.is_empty() {
            return Err(Error::bad_input(format!("image {} does not exist locally", missing.join(", "))).hint(
                "build it in an earlier step (or fix the name in `images:`); `docker image ls` lists what exists",
            ));
        }
    }

    if let Some((user, password)) = &cfg.login {
        login(cfg, docker, user, password)?;
    }

    if let Some((c, build)) = &compose {
        let _g = actions::group("build compose services");
        docker.building.set(true);
        let mut cmd = compose_command(cfg, *c, docker, &build.stand_ins, &["build"]);
        cmd.args(build.services.iter().map(|(s, _)| s));
        let f = docker.run(cmd, None)?;
        for l in f.all().lines().filter(|l| !l.trim().is_empty()) {
            info(l);
        }
        if !f.ok() {
            return Err(Error::failed(format!("building the compose services failed: {}", f.tail(2)))
                .hint("the build log is in the group above; run the same build locally to reproduce"));
        }
        for (svc, image) in &build.services {
            let name = default_name(image, &cfg.registry);
            if !valid_name(&name) {
                return Err(Error::bad_input(format!(
                    "the image `{image}` of service `{svc}` has no valid repository name"
                ))
                .hint("use lowercase names, e.g. `image: 127.0.0.1:5000/app:${IMAGE_TAG}`"));
            }
            images.push(ImageSpec { name, local: image.clone() });
        }
    }

    let tags: Vec<&String> = std::iter::once(&cfg.tag).chain(&cfg.extra_tags).collect();
    docker.building.set(true);
    let mut created = CreatedTags { docker, refs: Vec::new() };
    let mut pushed = Vec::new();
    for img in &images {
        let repo = format!("{}/{}", cfg.registry.base(), img.name);
        let mut up = 0;
        let mut existing = 0;
        for t in &tags {
            let target = format!("{repo}:{t}");
            if target != img.local {
                let f = docker.run(docker.cmd(&["tag", &img.local, &target]), None)?;
                if !f.ok() {
                    return Err(Error::failed(format!("docker tag {} {target} failed: {}", img.local, f.tail(1))));
                }
                created.refs.push(target.clone());
            }
            let (u, e) = push_ref(docker, &target)?;
            up += u;
            existing += e;
        }
        pushed.push(Pushed {
            name: img.name.clone(),
            reference: format!("{repo}:{}", cfg.tag),
            digest: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            layers_uploaded: up,
            layers_existing: existing,
        });
    }
    drop(created);

    let _g = actions::group("read digests from the registry");
    let login = cfg.login.as_ref().map(|(u, p)| Login { username: u, password: p });
    let reader = DigestReader::new(&cfg.registry, login)?;
    for p in &mut pushed {
        let mut digest: Option<String> = None;
        for t in &p.tags {
            let d = reader.digest(&p.name, t)?;
            info(format!("{}/{}:{t} = {d}", cfg.registry.base(), p.name));
            match &digest {
                None => digest = Some(d),
                Some(first) if *first != d => {
                    return Err(Error::failed(format!(
                        "tag `{t}` of {} points at {d}, not at {first} like `{}`",
                        p.name, cfg.tag
                    ))
                    .hint("another push to the same repository ran at the same time; re-run the job"));
                }
                Some(_) => {}
            }
        }
        p.digest = digest.unwrap_or_default();
    }
    Ok(pushed)
}

fn write_results(cfg: &Config, pushed: &[Pushed]) -> Result<()> {
    let meta = Metadata {
        registry: cfg.registry.base(),
        tag: &cfg.tag,
        images: pushed,
        git_sha: std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()),
        created_at: proc::now_rfc3339(),
        run_url: proc::run_url(),
    };
    let json =
        serde_json::to_string_pretty(&meta).map_err(|e| Error::failed(format!("cannot encode metadata: {e}")))?;
    gangplank_core::local::write_output(&cfg.metadata_file, (json + "\n").as_bytes(), &METADATA_OUTPUT)?;
    let digests: BTreeMap<&str, &str> = pushed.iter().map(|p| (p.name.as_str(), p.digest.as_str())).collect();
    actions::set_output("tag", &cfg.tag)?;
    actions::set_output("digest", pushed.first().map_or("", |p| p.digest.as_str()))?;
    actions::set_output("digests", &serde_json::to_string(&digests).unwrap_or_default())?;
    actions::set_output("metadata-file", &cfg.metadata_file.to_string_lossy())?;
    let mut md = "### push-registry\n\n| image | tags | digest | layers uploaded |\n|---|---|---|---|\n".to_string();
    for p in pushed {
        md.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            p.reference,
            p.tags.join(", "),
            p.digest,
            p.layers_uploaded
        ));
    }
    actions::append_summary(&md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    #[test]
    fn default_names() {
        let r = reg("127.0.0.1:5000");
        for (local, name) in [
            ("app:dev", "app"),
            ("app", "app"),
            ("ghcr.io/org/app:1.2", "org/app"),
            ("localhost:5000/app", "app"),
            ("127.0.0.1:5000/team/app:x", "team/app"),
            ("org/app@sha256:abcd", "org/app"),
        ] {
            assert_eq!(default_name(local, &r), name, "{local}");
        }
        assert_eq!(default_name("registry.example.com/team/app:1", &reg("registry.example.com/team")), "app");
    }

    #[test]
    fn image_lines() {
        let r = reg("ghcr.io");
        assert_eq!(
            parse_image_line("web=myapp:dev", &r).unwrap(),
            ImageSpec { name: "web".into(), local: "myapp:dev".into() }
        );
        assert_eq!(parse_image_line("Web=x", &r).unwrap_err().exit_code(), 2);
        assert_eq!(parse_image_line("a=b c", &r).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest") && valid_tag("0123456789ab") && valid_tag("v1.2_3-rc"));
        assert!(
            !valid_tag("")
                && !valid_tag("-x")
                && !valid_tag("a b")
                && !valid_tag("a:b")
                && !valid_tag(&"x".repeat(129))
        );
    }

    #[test]
    fn failure_classes() {
        let refused = r#"Error response from daemon: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused"#;
        assert!(is_transient(refused) && !is_auth_failure(refused));
        let bad =
            r#"Error response from daemon: Get "http://127.0.0.1:5000/v2/": unauthorized: authentication required"#;
        assert!(!is_transient(bad) && is_auth_failure(bad));
        assert!(is_transient("received unexpected HTTP status: 503 Service Unavailable"));
        assert!(!is_transient("manifest invalid"));
    }

    #[test]
    fn stand_ins_take_the_type_compose_asks_for() {
        let mut s = StandIn { name: "PORT".into(), index: 3, form: Form::Number };
        assert_eq!((s.value(true), s.value(false)), ("41003".to_string(), "42003".to_string()));
        assert!(s.next_form());
        assert_eq!(s.value(true), "41003s");
        assert!(s.next_form());
        assert_eq!(s.value(false), "/gangplank-unset/42003");
        assert!(s.next_form());
        assert_eq!((s.value(true).as_str(), s.value(false).as_str(), s.token(true)), ("true", "false", None));
        assert!(!s.next_form());
        assert!(has_number("invalid boolean: 41003", "41003"));
        assert!(has_number(r#"Named volume "41003:/data:rw""#, "41003"));
        assert!(!has_number("port 410031", "41003") && !has_number("v141003", "41003"));
    }

    #[test]
    fn the_build_part_of_a_model_and_where_two_differ() {
        let model = |image: &str, arg: &str, env: &str| {
            serde_json::json!({
                "name": "app",
                "services": {
                    "web": {"image": image, "build": {"context": "/r/web", "args": {"A": arg}, "secrets": ["token"]},
                            "environment": {"K": env}, "ports": [{"published": env}]},
                    "db": {"image": "postgres", "environment": {"K": env}}
                },
                "secrets": {"token": {"file": "/r/token"}, "other": {"file": env}}
            })
        };
        let part = build_part(&model("r/web:1", "x", "41000"));
        assert_eq!(
            part,
            serde_json::json!({"name": "app",
                "services": {"web": {"image": "r/web:1", "build": {"context": "/r/web", "args": {"A": "x"}, "secrets": ["token"]}}},
                "secrets": {"token": {"file": "/r/token"}}})
        );
        // What only runs on the server differs; the build part does not.
        let mut diff = Vec::new();
        differences(&part, &build_part(&model("r/web:1", "x", "42000")), "", &mut diff);
        assert!(diff.is_empty(), "{diff:?}");
        differences(
            &build_part(&model("r/41001:1", "41002", "41000")),
            &build_part(&model("r/42001:1", "42002", "42000")),
            "",
            &mut diff,
        );
        let paths: Vec<&str> = diff.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["services.web.build.args.A", "services.web.image"]);
        assert!(has_number(&diff[1].1, "41001") && has_number(&diff[1].1, "42001"));
    }

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("push-registry").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn config_validation() {
        let c = args(&[
            "--registry",
            "127.0.0.1:5000",
            "--images",
            "a:1\nweb=b:2",
            "--tag",
            "v1",
            "--extra-tags",
            "latest,stable",
        ])
        .into_config()
        .unwrap();
        assert_eq!(c.images.len(), 2);
        assert_eq!(c.extra_tags, vec!["latest", "stable"]);
        assert!(c.login.is_none() && c.cleanup_on_failure);
        let e =
            args(&["--registry", "r.io", "--images", "a", "--tag", "v1", "--username", "u"]).into_config().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.hint.is_some());
        let e = args(&["--registry", "r.io", "--tag", "v1"]).into_config().unwrap_err();
        assert!(e.message.contains("nothing to push"));
        let e = args(&["--registry", "r.io", "--images", "a", "--tag", "bad tag"]).into_config().unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
