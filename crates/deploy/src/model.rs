//! The compose model as the hosts will see it: which local paths the compose files make compose read
//! (bind sources, `env_file`, configs and secrets files, `include` and `extends` files, build contexts
//! and Dockerfiles), found the way compose finds them.
//!
//! When `docker compose` (v2) runs on the runner, compose itself resolves the project (`config --format
//! json`, with the same files, `IMAGE_TAG`, env file and profiles as on the host): interpolation, anchors,
//! merge keys, overrides, `include`, `extends` and profiles are then compose's own answer. Its output no
//! longer names the files it has consumed (env files, included and extended files), so those come from
//! the built-in reader below, which walks the same files. Without compose v2 on the runner the built-in
//! reader answers alone, covering the same cases as well as it can, and says what it could not resolve.
//!
//! Compose resolves relative paths against the project directory (the first compose file's folder), an
//! included file's folder, or an extended file's folder; the host layout mirrors the repository
//! (docs/host-layout.md), so a path relative to the repository root here is the same path relative to
//! the app dir there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use gangplank_core::process::{self, Compose, Opts};
use serde_json::Value;

/// What kind of reference a path is, as the messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Bind,
    EnvFile,
    Config,
    Secret,
    Include,
    Extends,
    BuildContext,
    Dockerfile,
}

impl Kind {
    pub fn what(self) -> &'static str {
        match self {
            Kind::Bind => "bind mount source",
            Kind::EnvFile => "env_file",
            Kind::Config => "config file",
            Kind::Secret => "secret file",
            Kind::Include => "included compose file",
            Kind::Extends => "extends file",
            Kind::BuildContext => "build context",
            Kind::Dockerfile => "Dockerfile",
        }
    }

    /// Build inputs are read on the runner (push-registry builds the images there); everything else is
    /// read by compose or Docker on the host.
    pub fn on_host(self) -> bool {
        !matches!(self, Kind::BuildContext | Kind::Dockerfile)
    }
}

/// Where a referenced path is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loc {
    /// Relative to the repository root (the working directory), lexically normalised; it may start with
    /// `..` (beside the repository here, beside the app dir on the host).
    Repo(String),
    /// An absolute path as written: the same path on the host.
    Absolute(String),
    /// Below the home directory (`~/…`): the home of whoever runs compose.
    Home(String),
}

impl Loc {
    /// The path as the messages show it: repository-relative, absolute, or `~/…`.
    pub fn shown(&self) -> String {
        match self {
            Loc::Repo(r) if r.is_empty() => ".".into(),
            Loc::Repo(r) | Loc::Absolute(r) => r.clone(),
            Loc::Home(r) if r.is_empty() => "~".into(),
            Loc::Home(r) => format!("~/{r}"),
        }
    }

    /// The variable a path was built from when it holds a [`placeholder`], and the path as written with
    /// `${VAR}` in the stand-in's place.
    pub fn placeholder(&self) -> Option<(String, String)> {
        let shown = self.shown();
        let at = shown.find(PLACEHOLDER_MARK)?;
        let rest = &shown[at + PLACEHOLDER_MARK.len()..];
        let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let var = rest[..n].to_string();
        let stand_in = format!("{PLACEHOLDER_MARK}{var}");
        let written =
            shown.replace(&format!("/{stand_in}"), &format!("${{{var}}}")).replace(&stand_in, &format!("${{{var}}}"));
        Some((var, written))
    }

    /// Whether the path exists on this machine (the runner).
    pub fn exists_locally(&self, repo: &Path) -> bool {
        match self {
            Loc::Repo(r) => repo.join(r).exists(),
            Loc::Absolute(a) => Path::new(a).exists(),
            Loc::Home(r) => std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(r).exists()),
        }
    }
}

/// One referenced path, with everything that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub loc: Loc,
    pub kind: Kind,
    /// Who uses it: `service \`web\``, `include in deploy/compose.yaml`; each once, in order.
    pub users: Vec<String>,
    /// The compose file opts into Docker creating a missing bind source (long syntax
    /// `bind: {create_host_path: true}` written out).
    pub create_host_path: bool,
}

/// Which reader resolved the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    ComposeV2,
    BuiltIn,
}

/// The resolved references of a set of compose files.
#[derive(Debug, Clone)]
pub struct Model {
    pub resolver: Resolver,
    pub refs: Vec<Reference>,
    /// What could not be resolved (a variable without a value, a file that does not parse), one sentence each.
    pub unresolved: Vec<String>,
    /// compose's own error when it refused the project; the references the built-in reader found still
    /// say which path is missing.
    pub compose_error: Option<String>,
}

/// What the model is resolved from.
pub struct Input<'a> {
    /// The repository root: the step's working directory.
    pub repo: &'a Path,
    /// Compose files as given (relative to `repo`, or absolute).
    pub compose_files: &'a [PathBuf],
    /// The env file uploaded as the project's `.env`.
    pub env_file: Option<&'a Path>,
    pub tag: &'a str,
    /// The services the deploy starts (all when empty).
    pub services: &'a [String],
    /// Try `docker compose` on this machine first.
    pub use_compose: bool,
    /// Variables only the host's `.env` sets: they get a stand-in value ([`placeholder`]) here, so the
    /// model resolves without values that never leave the host.
    pub placeholders: &'a BTreeSet<String>,
}

/// The stand-in value of a variable only the host's `.env` sets. It starts with `/` so that a bind source
/// written as `${DATA_DIR}:/data` stays a path (not a named volume), and it holds the variable's name so a
/// path built from it says which variable it waits for ([`Loc::placeholder`]).
pub fn placeholder(var: &str) -> String {
    format!("/{PLACEHOLDER_MARK}{var}")
}

/// What every [`placeholder`] holds, after its leading `/`.
pub const PLACEHOLDER_MARK: &str = "gangplank-server-env/";

/// Resolve the model: compose v2 when it is here and `use_compose` is set, else the built-in reader.
pub fn resolve(input: &Input) -> Model {
    let env = environment(input);
    let mut reader = Reader::new(input.repo, &env, input.services);
    reader.read_project(input.compose_files);
    let compose = if input.use_compose { Compose::detect().filter(|c| *c == Compose::V2) } else { None };
    let Some(compose) = compose else {
        return Model {
            resolver: Resolver::BuiltIn,
            refs: reader.references(None),
            unresolved: reader.unresolved,
            compose_error: None,
        };
    };
    match compose_config(compose, input) {
        Ok(json) => {
            // Env files, included and extended files are consumed by compose and gone from its output.
            let mut refs = from_compose_json(&json, &reader);
            refs.extend(reader.references(Some(&[Kind::EnvFile, Kind::Include, Kind::Extends])));
            Model { resolver: Resolver::ComposeV2, refs: merge(refs), unresolved: vec![], compose_error: None }
        }
        Err(e) => Model {
            resolver: Resolver::ComposeV2,
            refs: reader.references(None),
            unresolved: reader.unresolved,
            compose_error: Some(e),
        },
    }
}

/// The variables compose interpolates with on the host: `IMAGE_TAG` and the uploaded `.env` (the env
/// file, or the project folder's own `.env` here when none is given), nothing from the runner's shell.
fn environment(input: &Input) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let project_env = input.compose_files.first().map(|f| {
        let dir = input.repo.join(f).parent().map(Path::to_path_buf).unwrap_or_default();
        dir.join(".env")
    });
    let file = input.env_file.map(|e| input.repo.join(e)).or(project_env);
    if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
        let (pairs, _) = gangplank_core::dotenv::parse(&text);
        env.extend(pairs);
    }
    env.insert("IMAGE_TAG".into(), input.tag.into());
    for v in input.placeholders {
        env.entry(v.clone()).or_insert_with(|| placeholder(v));
    }
    env
}

/// The variables this run has values for on the runner: `IMAGE_TAG` and those of the `env-file` (or the
/// project folder's `.env` here when none is given).
pub fn runner_environment(input: &Input) -> BTreeMap<String, String> {
    let none = BTreeSet::new();
    environment(&Input { placeholders: &none, ..*input })
}

/// A variable the compose files interpolate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Written `${VAR:?…}` or `${VAR?…}` somewhere: compose refuses the project without a value.
    pub required: bool,
    /// Written with `:?` somewhere: an empty value is refused too.
    pub non_empty: bool,
}

/// Every variable the compose files (and the files they include or extend) interpolate, anywhere in them:
/// compose interpolates the whole file before it picks services. compose v2's own list (`config
/// --variables`, when this compose has it) is taken together with the files as written
/// ([`gangplank_core::compose::variables_in_yaml`]), which also holds the variables compose's list leaves
/// out (in `volumes` and `env_file`, in compose 2.26).
pub fn variables(input: &Input) -> BTreeMap<String, Variable> {
    let env = runner_environment(input);
    let mut reader = Reader::new(input.repo, &env, input.services);
    reader.read_project(input.compose_files);
    let mut found: Vec<gangplank_core::compose::Variable> = vec![];
    for text in &reader.texts {
        found.extend(gangplank_core::compose::variables_in_yaml(text).unwrap_or_default());
    }
    if input.use_compose {
        if let Some(c) = Compose::detect().filter(|c| *c == Compose::V2) {
            found.extend(compose_variables(c, input).unwrap_or_default());
        }
    }
    let mut out: BTreeMap<String, Variable> = BTreeMap::new();
    for v in found {
        let e = out.entry(v.name.clone()).or_insert(Variable { required: false, non_empty: false });
        e.required |= v.required;
    }
    // `${VAR:?…}` refuses an empty value too, `${VAR?…}` only an unset one.
    for (name, v) in out.iter_mut().filter(|(_, v)| v.required) {
        v.non_empty = reader.texts.iter().any(|t| t.contains(&format!("${{{name}:?")));
    }
    out
}

/// `docker compose config --variables` (compose 2.24 and later), read by
/// [`gangplank_core::compose::parse_variables_output`]. `None` when this compose has no such flag or
/// refuses the project.
fn compose_variables(compose: Compose, input: &Input) -> Option<Vec<gangplank_core::compose::Variable>> {
    let view = View::new(input.repo).ok()?;
    let mut cmd = compose.command();
    cmd.env_clear().current_dir(&view.repo).env("HOME", &view.home).env("IMAGE_TAG", input.tag);
    for key in ["PATH", "DOCKER_CONFIG", "DOCKER_HOST", "DOCKER_CONTEXT"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.args(["-p", "gangplank-preflight"]);
    for f in input.compose_files {
        cmd.arg("-f").arg(view.path_of(input.repo, f));
    }
    if let Some(e) = input.env_file {
        cmd.arg("--env-file").arg(view.path_of(input.repo, e));
    }
    cmd.args(["config", "--variables"]);
    let opts = Opts { deadline: Some(Instant::now() + Duration::from_secs(60)), ..Default::default() };
    let f = process::run(&mut cmd, opts).ok().filter(|f| f.ok())?;
    gangplank_core::compose::parse_variables_output(&f.stdout)
}

/// The images of the services a deploy starts, as written (before interpolation), with their
/// `pull_policy`: the last file (or `extends` parent) that sets each wins, as compose merges them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    pub service: String,
    pub image: Option<String>,
    pub pull_policy: Option<String>,
}

/// [`ServiceImage`] of every service the deploy starts (those named and what they depend on, else every
/// service whose profiles are active), read by the built-in reader.
pub fn service_images(input: &Input) -> Vec<ServiceImage> {
    let env = runner_environment(input);
    let mut reader = Reader::new(input.repo, &env, input.services);
    reader.read_project(input.compose_files);
    let services = std::mem::take(&mut reader.services);
    let wanted = reader.wanted(&services);
    let mut out = vec![];
    for (name, defs) in &services {
        if !wanted.contains(name) {
            continue;
        }
        let mut field = |key: &str| -> Option<String> {
            defs.iter().rev().find_map(|(svc, base, doc)| reader.inherited(svc, base, doc, key, 0))
        };
        let image = field("image");
        let pull_policy = field("pull_policy");
        out.push(ServiceImage { service: name.clone(), image, pull_policy });
    }
    out
}

/// `docker compose … config --format json` over a view of the repository at a unique path, so every
/// path in the answer tells how it was written: under the view's repository (relative), under the view
/// but beside it (`..`), under the view's fake home (`~`), or elsewhere (absolute).
fn compose_config(compose: Compose, input: &Input) -> Result<Value, String> {
    let view = View::new(input.repo).map_err(|e| format!("cannot prepare a view of the repository: {e}"))?;
    let mut cmd = compose.command();
    cmd.env_clear().current_dir(&view.repo).env("HOME", &view.home).env("IMAGE_TAG", input.tag);
    for key in ["PATH", "DOCKER_CONFIG", "DOCKER_HOST", "DOCKER_CONTEXT"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    // The stand-ins of variables only the host's `.env` sets (never a value of the host's).
    for v in input.placeholders {
        cmd.env(v, placeholder(v));
    }
    cmd.args(["-p", "gangplank-preflight"]);
    for f in input.compose_files {
        cmd.arg("-f").arg(view.path_of(input.repo, f));
    }
    if let Some(e) = input.env_file {
        cmd.arg("--env-file").arg(view.path_of(input.repo, e));
    }
    cmd.args(["config", "--format", "json"]);
    if !input.services.is_empty() {
        cmd.arg("--").args(input.services);
    }
    let opts = Opts { deadline: Some(Instant::now() + Duration::from_secs(60)), ..Default::default() };
    match process::run(&mut cmd, opts) {
        Ok(f) if f.ok() => {
            let json: Value = serde_json::from_str(&f.stdout)
                .map_err(|e| format!("`docker compose config` answered something that is not JSON: {e}"))?;
            Ok(view.relabel(json))
        }
        Ok(f) => Err(view.unlabel(f.stderr.trim())),
        Err(e) => Err(format!("`docker compose config` did not finish: {e:?}")),
    }
}

/// A temporary folder holding a link to the repository a few levels down and a fake home.
struct View {
    _dir: tempfile::TempDir,
    /// `<tmp>/u/u/u/u/u/u/repo`, a link to the repository.
    repo: PathBuf,
    /// The folder six levels of `..` can reach: paths under it and outside `repo` are beside the repository.
    top: PathBuf,
    home: PathBuf,
}

impl View {
    fn new(repo: &Path) -> std::io::Result<View> {
        let dir = tempfile::Builder::new().prefix("gangplank-model-").tempdir()?;
        let top = dir.path().join("top");
        let nested = top.join("u/u/u/u/u/u");
        std::fs::create_dir_all(&nested)?;
        let link = nested.join("repo");
        std::os::unix::fs::symlink(repo, &link)?;
        let home = dir.path().join("home");
        Ok(View { repo: link, top, home, _dir: dir })
    }

    fn path_of(&self, repo: &Path, p: &Path) -> PathBuf {
        match p.strip_prefix(repo) {
            Ok(rel) => self.repo.join(rel),
            Err(_) if p.is_absolute() => p.to_path_buf(),
            Err(_) => self.repo.join(p),
        }
    }

    /// Every string in the answer that is a path in the view becomes a tagged location: `repo:REL`,
    /// `home:REL`; absolute paths stay.
    fn relabel(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.label(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.relabel(x)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, self.relabel(x))).collect()),
            other => other,
        }
    }

    fn label(&self, s: &str) -> String {
        let p = Path::new(s);
        if let Ok(rel) = p.strip_prefix(&self.home) {
            return format!("home:{}", rel.display());
        }
        if p.starts_with(&self.top) {
            let rel = relative(&self.repo, p);
            return format!("repo:{rel}");
        }
        s.to_string()
    }

    /// compose's error text with the view's paths shown as repository paths.
    fn unlabel(&self, s: &str) -> String {
        s.replace(&format!("{}/", self.repo.display()), "").replace(&self.repo.display().to_string(), ".")
    }
}

/// `p` relative to `base` (both absolute), lexically, with `..` where it leaves `base`.
fn relative(base: &Path, p: &Path) -> String {
    let (base, p) = (normalize(base), normalize(p));
    let b: Vec<_> = base.components().collect();
    let t: Vec<_> = p.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut out: Vec<String> = vec!["..".into(); b.len() - common];
    out.extend(t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    out.join("/")
}

/// Lexical normalisation: `.` dropped, `..` taken back where it can be (kept at the front of a relative path).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = vec![];
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

fn loc_of(s: &str) -> Option<Loc> {
    if let Some(r) = s.strip_prefix("repo:") {
        Some(Loc::Repo(r.to_string()))
    } else if let Some(r) = s.strip_prefix("home:") {
        Some(Loc::Home(r.to_string()))
    } else if s.starts_with('/') {
        Some(Loc::Absolute(normalize(Path::new(s)).to_string_lossy().into_owned()))
    } else {
        None
    }
}

/// The references in compose's resolved project: bind sources, build contexts and Dockerfiles, and the
/// files of the configs and secrets services use. The opt-in to create a missing bind source is taken
/// from the files as written (compose's answer gives short syntax the same `create_host_path: true`).
fn from_compose_json(json: &Value, reader: &Reader) -> Vec<Reference> {
    let mut refs = vec![];
    let empty = serde_json::Map::new();
    let services = json.get("services").and_then(Value::as_object).unwrap_or(&empty);
    for (name, svc) in services {
        let user = format!("service `{name}`");
        for v in svc.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            if v.get("type").and_then(Value::as_str) != Some("bind") {
                continue;
            }
            let Some(loc) = v.get("source").and_then(Value::as_str).and_then(loc_of) else { continue };
            let target = v.get("target").and_then(Value::as_str).unwrap_or_default();
            let create = reader.opt_ins.contains(&(name.clone(), target.to_string()));
            refs.push(reference(loc, Kind::Bind, &user, create));
        }
        if let Some(build) = svc.get("build") {
            if let Some(ctx) = build.get("context").and_then(Value::as_str).and_then(loc_of) {
                if build.get("dockerfile_inline").is_none() {
                    let file = build.get("dockerfile").and_then(Value::as_str).unwrap_or("Dockerfile");
                    let df = match (&ctx, file.strip_prefix("repo:")) {
                        (_, Some(r)) => Loc::Repo(r.to_string()),
                        (_, None) if file.starts_with('/') => Loc::Absolute(file.to_string()),
                        (Loc::Repo(c), None) => Loc::Repo(join_rel(c, file)),
                        (Loc::Absolute(c), None) => Loc::Absolute(format!("{c}/{file}")),
                        (Loc::Home(c), None) => Loc::Home(join_rel(c, file)),
                    };
                    refs.push(reference(df, Kind::Dockerfile, &user, false));
                }
                refs.push(reference(ctx, Kind::BuildContext, &user, false));
            }
        }
        for (section, kind) in [("configs", Kind::Config), ("secrets", Kind::Secret)] {
            for used in svc.get(section).and_then(Value::as_array).into_iter().flatten() {
                let Some(src) = used.get("source").and_then(Value::as_str).or_else(|| used.as_str()) else { continue };
                let file = json.get(section).and_then(|s| s.get(src)).and_then(|c| c.get("file"));
                if let Some(loc) = file.and_then(Value::as_str).and_then(loc_of) {
                    refs.push(reference(loc, kind, &user, false));
                }
            }
        }
    }
    refs
}

fn join_rel(base: &str, rel: &str) -> String {
    normalize(&Path::new(base).join(rel)).to_string_lossy().into_owned()
}

fn reference(loc: Loc, kind: Kind, user: &str, create: bool) -> Reference {
    Reference { loc, kind, users: vec![user.to_string()], create_host_path: create }
}

/// One entry per path and kind, naming every user once; the opt-in holds when every user opts in.
fn merge(refs: Vec<Reference>) -> Vec<Reference> {
    let mut out: Vec<Reference> = vec![];
    for r in refs {
        match out.iter_mut().find(|o| o.loc == r.loc && o.kind == r.kind) {
            Some(o) => {
                for u in r.users {
                    if !o.users.contains(&u) {
                        o.users.push(u);
                    }
                }
                o.create_host_path &= r.create_host_path;
            }
            None => out.push(r),
        }
    }
    out
}

/// The built-in reader: compose files parsed with serde-saphyr (anchors and merge keys included),
/// interpolated with the host's variables, `include`, `extends`, profiles and overrides followed.
struct Reader<'a> {
    repo: &'a Path,
    env: &'a BTreeMap<String, String>,
    only: &'a [String],
    profiles: Vec<String>,
    /// Per service, in file order: its definition, the folder its relative paths resolve against, and
    /// the document it is in.
    services: BTreeMap<String, Vec<(Value, String, Value)>>,
    /// Every document read, with the folder its relative paths resolve against.
    docs: Vec<(Value, String)>,
    refs: Vec<Reference>,
    /// (service, target) of bind mounts written with `create_host_path: true`.
    opt_ins: BTreeSet<(String, String)>,
    unresolved: Vec<String>,
    seen: BTreeSet<String>,
    /// Every file read (compose files, included and extended ones), as written.
    texts: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(repo: &'a Path, env: &'a BTreeMap<String, String>, only: &'a [String]) -> Self {
        let profiles = env
            .get("COMPOSE_PROFILES")
            .map(|p| p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Reader {
            repo,
            env,
            only,
            profiles,
            services: BTreeMap::new(),
            docs: vec![],
            refs: vec![],
            opt_ins: BTreeSet::new(),
            unresolved: vec![],
            seen: BTreeSet::new(),
            texts: vec![],
        }
    }

    /// `-f` files: the first one's folder is the project directory every one of them resolves against.
    fn read_project(&mut self, files: &[PathBuf]) {
        let rels: Vec<String> = files.iter().map(|f| self.rel_of(f)).collect();
        let project = rels.first().map(|f| parent(f)).unwrap_or_default();
        for f in &rels {
            if let Some(doc) = self.load(f) {
                self.read_doc(&doc, f, &project);
            }
        }
        self.read_services();
    }

    fn rel_of(&self, f: &Path) -> String {
        let abs = if f.is_absolute() { f.to_path_buf() } else { self.repo.join(f) };
        relative(self.repo, &abs)
    }

    fn load(&mut self, rel: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.repo.join(rel)).ok()?;
        match serde_saphyr::from_str::<Value>(&text) {
            Ok(v) => {
                if !self.texts.contains(&text) {
                    self.texts.push(text);
                }
                Some(v)
            }
            Err(e) => {
                self.unresolved.push(format!("`{rel}` is not valid YAML: {e}"));
                None
            }
        }
    }

    fn read_doc(&mut self, doc: &Value, file: &str, base: &str) {
        if !self.seen.insert(format!("{file}\u{0}{base}")) {
            return;
        }
        for inc in doc.get("include").and_then(Value::as_array).into_iter().flatten() {
            let (paths, dir) = match inc {
                Value::String(s) => (vec![s.clone()], None),
                Value::Object(o) => {
                    let paths = match o.get("path") {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                        _ => vec![],
                    };
                    (paths, o.get("project_directory").and_then(Value::as_str).map(str::to_string))
                }
                _ => continue,
            };
            for p in &paths {
                let Some(p) = self.interpolate(p, &format!("include in {file}")) else { continue };
                let Some(loc) = self.locate(&p, base) else { continue };
                self.refs.push(reference(loc.clone(), Kind::Include, &format!("include in `{file}`"), false));
                let Loc::Repo(rel) = loc else { continue };
                // An included file resolves against its own folder unless the entry names a project directory.
                let inc_base = match &dir {
                    Some(d) => self.interpolate(d, file).map(|d| join_rel(base, &d)).unwrap_or_default(),
                    None => parent(&rel),
                };
                if let Some(inc_doc) = self.load(&rel) {
                    self.read_doc(&inc_doc, &rel, &inc_base);
                }
            }
        }
        self.docs.push((doc.clone(), base.to_string()));
        if let Some(services) = doc.get("services").and_then(Value::as_object) {
            for (name, svc) in services {
                self.services.entry(name.clone()).or_default().push((svc.clone(), base.to_string(), doc.clone()));
            }
        }
    }

    /// Every service that runs: its own references, and those of what it extends.
    fn read_services(&mut self) {
        let services = std::mem::take(&mut self.services);
        let wanted = self.wanted(&services);
        for (name, defs) in &services {
            if !wanted.contains(name) {
                continue;
            }
            let user = format!("service `{name}`");
            // Later definitions of a volume target replace earlier ones, as compose merges overrides.
            let mut volumes: BTreeMap<String, (Loc, bool)> = BTreeMap::new();
            for (svc, base, doc) in defs {
                self.read_service(&user, svc, base, doc, &mut volumes, 0);
            }
            for (target, (loc, create)) in volumes {
                if create {
                    self.opt_ins.insert((name.clone(), target));
                }
                self.refs.push(reference(loc, Kind::Bind, &user, create));
            }
        }
        self.services = services;
    }

    /// The services a deploy starts: those named (and what they depend on), else every service whose
    /// profiles are active (none listed, or one in `COMPOSE_PROFILES`).
    fn wanted(&self, services: &BTreeMap<String, Vec<(Value, String, Value)>>) -> BTreeSet<String> {
        let last = |name: &str, key: &str| -> Option<Value> {
            services.get(name)?.iter().rev().find_map(|(s, _, _)| s.get(key).cloned())
        };
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = if self.only.is_empty() {
            services
                .keys()
                .filter(|n| {
                    let profiles: Vec<String> = last(n, "profiles")
                        .and_then(|p| p.as_array().cloned())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect();
                    profiles.is_empty()
                        || profiles.iter().any(|p| self.profiles.contains(p) || self.profiles.iter().any(|a| a == "*"))
                })
                .cloned()
                .collect()
        } else {
            self.only.to_vec()
        };
        while let Some(n) = todo.pop() {
            if !services.contains_key(&n) || !wanted.insert(n.clone()) {
                continue;
            }
            match last(&n, "depends_on") {
                Some(Value::Array(a)) => todo.extend(a.iter().filter_map(|d| d.as_str().map(str::to_string))),
                Some(Value::Object(o)) => todo.extend(o.keys().cloned()),
                _ => {}
            }
        }
        wanted
    }

    /// A service's `key` as written, from its own definition or else what it `extends`.
    fn inherited(&mut self, svc: &Value, base: &str, doc: &Value, key: &str, depth: usize) -> Option<String> {
        if let Some(v) = svc.get(key) {
            return v.as_str().map(str::to_string);
        }
        if depth > 10 {
            return None;
        }
        let (file, parent_name) = match svc.get("extends")? {
            Value::String(s) => (None, s.clone()),
            Value::Object(o) => {
                (o.get("file").and_then(Value::as_str).map(str::to_string), o.get("service")?.as_str()?.to_string())
            }
            _ => return None,
        };
        match file {
            None => {
                let p = doc.get("services")?.get(&parent_name)?.clone();
                self.inherited(&p, base, doc, key, depth + 1)
            }
            Some(f) => {
                let f = interpolate(&f, self.env).ok()?;
                let Loc::Repo(rel) = self.locate(&f, base)? else { return None };
                let ext_doc = self.load(&rel)?;
                let p = ext_doc.get("services")?.get(&parent_name)?.clone();
                self.inherited(&p, &parent(&rel), &ext_doc, key, depth + 1)
            }
        }
    }

    fn read_service(
        &mut self,
        user: &str,
        svc: &Value,
        base: &str,
        doc: &Value,
        volumes: &mut BTreeMap<String, (Loc, bool)>,
        depth: usize,
    ) {
        if depth > 10 {
            self.unresolved.push(format!("{user}: `extends` goes more than 10 levels deep"));
            return;
        }
        // What it extends comes first: its own definition overrides it.
        if let Some(ext) = svc.get("extends") {
            let (file, parent_name) = match ext {
                Value::String(s) => (None, Some(s.clone())),
                Value::Object(o) => (
                    o.get("file").and_then(Value::as_str).map(str::to_string),
                    o.get("service").and_then(Value::as_str).map(str::to_string),
                ),
                _ => (None, None),
            };
            match (file, parent_name) {
                (Some(f), Some(parent_name)) => {
                    if let Some(f) = self.interpolate(&f, user) {
                        if let Some(loc) = self.locate(&f, base) {
                            self.refs.push(reference(loc.clone(), Kind::Extends, user, false));
                            if let Loc::Repo(rel) = loc {
                                if let Some(ext_doc) = self.load(&rel) {
                                    let ext_base = parent(&rel);
                                    if let Some(p) = ext_doc.get("services").and_then(|s| s.get(&parent_name)).cloned()
                                    {
                                        self.read_service(user, &p, &ext_base, &ext_doc, volumes, depth + 1);
                                    }
                                }
                            }
                        }
                    }
                }
                (None, Some(parent_name)) => {
                    if let Some(p) = doc.get("services").and_then(|s| s.get(&parent_name)).cloned() {
                        self.read_service(user, &p, base, doc, volumes, depth + 1);
                    }
                }
                _ => {}
            }
        }
        let env_files: Vec<(String, bool)> = match svc.get("env_file") {
            Some(Value::String(s)) => vec![(s.clone(), true)],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|e| match e {
                    Value::String(s) => Some((s.clone(), true)),
                    Value::Object(o) => Some((
                        o.get("path").and_then(Value::as_str)?.to_string(),
                        o.get("required").and_then(Value::as_bool).unwrap_or(true),
                    )),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        for (path, required) in env_files {
            // An optional env file that is missing is skipped by compose, here and on the host alike.
            if !required {
                continue;
            }
            if let Some(loc) = self.interpolate(&path, user).and_then(|p| self.locate(&p, base)) {
                self.refs.push(reference(loc, Kind::EnvFile, user, false));
            }
        }
        for v in svc.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            match v {
                Value::String(s) => {
                    let Some(s) = self.interpolate(s, user) else { continue };
                    let mut parts = s.splitn(3, ':');
                    let src = parts.next().unwrap_or_default();
                    // One part only is an anonymous volume; a source that is not a path names a volume.
                    let Some(target) = parts.next() else { continue };
                    if !(src.starts_with('.') || src.starts_with('/') || src.starts_with('~')) {
                        continue;
                    }
                    if let Some(loc) = self.locate(src, base) {
                        volumes.insert(target.to_string(), (loc, false));
                    }
                }
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("bind") => {
                    let src = o.get("source").and_then(Value::as_str).and_then(|s| self.interpolate(s, user));
                    let target = o.get("target").and_then(Value::as_str).and_then(|t| self.interpolate(t, user));
                    let create = o
                        .get("bind")
                        .and_then(|b| b.get("create_host_path"))
                        .is_some_and(|c| c.as_bool() == Some(true) || c.as_str() == Some("true"));
                    if let (Some(src), Some(target)) = (src, target) {
                        if let Some(loc) = self.locate(&src, base) {
                            volumes.insert(target, (loc, create));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(build) = svc.get("build") {
            let (ctx, dockerfile, inline) = match build {
                Value::String(s) => (Some(s.clone()), None, false),
                Value::Object(o) => (
                    Some(o.get("context").and_then(Value::as_str).unwrap_or(".").to_string()),
                    o.get("dockerfile").and_then(Value::as_str).map(str::to_string),
                    o.contains_key("dockerfile_inline"),
                ),
                _ => (None, None, true),
            };
            let remote = |c: &str| c.contains("://") || c.starts_with("git@") || c.starts_with("github.com/");
            if let Some(ctx) = ctx.and_then(|c| self.interpolate(&c, user)).filter(|c| !remote(c)) {
                if let Some(ctx_loc) = self.locate(&ctx, base) {
                    if !inline {
                        let df = dockerfile.and_then(|d| self.interpolate(&d, user)).unwrap_or("Dockerfile".into());
                        let df_loc = match &ctx_loc {
                            _ if df.starts_with('/') => Loc::Absolute(df.clone()),
                            Loc::Repo(c) => Loc::Repo(join_rel(c, &df)),
                            Loc::Absolute(c) => Loc::Absolute(format!("{c}/{df}")),
                            Loc::Home(c) => Loc::Home(join_rel(c, &df)),
                        };
                        self.refs.push(reference(df_loc, Kind::Dockerfile, user, false));
                    }
                    self.refs.push(reference(ctx_loc, Kind::BuildContext, user, false));
                }
            }
        }
        for (section, kind) in [("configs", Kind::Config), ("secrets", Kind::Secret)] {
            for used in svc.get(section).and_then(Value::as_array).into_iter().flatten() {
                let Some(src) = used.as_str().or_else(|| used.get("source").and_then(Value::as_str)) else {
                    continue;
                };
                let Some(file) = self.top_level_file(section, src) else { continue };
                let (f, file_base) = file;
                if let Some(loc) = self.interpolate(&f, user).and_then(|p| self.locate(&p, &file_base)) {
                    self.refs.push(reference(loc, kind, user, false));
                }
            }
        }
    }

    /// The `file:` of a top-level config or secret, with the folder it resolves against (the last
    /// document defining it wins, as overrides do).
    fn top_level_file(&self, section: &str, name: &str) -> Option<(String, String)> {
        self.docs.iter().rev().find_map(|(doc, base)| {
            let file = doc.get(section)?.get(name)?.get("file")?.as_str()?;
            Some((file.to_string(), base.clone()))
        })
    }

    /// Compose's interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
    /// `${VAR+alt}`, `${VAR:?err}`, `${VAR?err}`, `$$`. `None` (and a note) when a variable has no value
    /// and no default: compose would put an empty string there and warn.
    fn interpolate(&mut self, s: &str, user: &str) -> Option<String> {
        match interpolate(s, self.env) {
            Ok(v) => Some(v),
            Err(var) => {
                let note = format!("{user}: `{s}` uses `{var}`, which has no value in the env file and no default");
                if !self.unresolved.contains(&note) {
                    self.unresolved.push(note);
                }
                None
            }
        }
    }

    fn locate(&self, p: &str, base: &str) -> Option<Loc> {
        if p.is_empty() {
            return None;
        }
        if p == "~" || p.starts_with("~/") {
            return Some(Loc::Home(p.trim_start_matches('~').trim_start_matches('/').to_string()));
        }
        if p.starts_with('/') {
            return Some(Loc::Absolute(normalize(Path::new(p)).to_string_lossy().into_owned()));
        }
        Some(Loc::Repo(join_rel(base, p)))
    }

    /// The references found, merged; `kinds` keeps only those kinds.
    fn references(&self, kinds: Option<&[Kind]>) -> Vec<Reference> {
        let refs = self.refs.iter().filter(|r| kinds.is_none_or(|k| k.contains(&r.kind))).cloned().collect();
        merge(refs)
    }
}

fn parent(rel: &str) -> String {
    Path::new(rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Interpolate `s` as compose does; `Err(VAR)` names a variable with no value and no default.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            // The closing brace that matches, so defaults may hold `${…}` themselves.
            let mut depth = 1;
            let mut end = None;
            for (j, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { return Err(body.to_string()) };
            out.push_str(&expand(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if n == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            let var = &after[..n];
            out.push_str(env.get(var).ok_or_else(|| var.to_string())?);
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(body: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let n = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (var, op) = body.split_at(n);
    let val = env.get(var);
    let set_nonempty = val.is_some_and(|v| !v.is_empty());
    let pick = |cond: bool, word: &str| -> Result<String, String> {
        if cond {
            Ok(val.cloned().unwrap_or_default())
        } else {
            interpolate(word, env)
        }
    };
    if let Some(w) = op.strip_prefix(":-") {
        pick(set_nonempty, w)
    } else if let Some(w) = op.strip_prefix('-') {
        pick(val.is_some(), w)
    } else if let Some(w) = op.strip_prefix(":+") {
        if set_nonempty {
            interpolate(w, env)
        } else {
            Ok(String::new())
        }
    } else if let Some(w) = op.strip_prefix('+') {
        if val.is_some() {
            interpolate(w, env)
        } else {
            Ok(String::new())
        }
    } else if op.starts_with(":?") || op.starts_with('?') {
        let ok = if op.starts_with(':') { set_nonempty } else { val.is_some() };
        if ok {
            Ok(val.cloned().unwrap_or_default())
        } else {
            Err(var.to_string())
        }
    } else {
        val.cloned().ok_or_else(|| var.to_string())
    }
}

/// A path that must exist on each host, with what to say when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// Absolute, or `~/…` (the home of the user compose runs as).
    pub path: String,
    /// The sentence up to the host's name: "… does not exist on" follows.
    pub message: String,
    pub hint: String,
}

/// What the model asks of the upload and of the hosts.
#[derive(Debug, Default)]
pub struct Checked {
    /// Paths no upload provides: each host must have them (preflight checks them over SSH).
    pub host_refs: Vec<HostRef>,
    /// Failures found here, before any connection.
    pub errors: Vec<gangplank_core::error::Error>,
    /// What could not be checked, said plainly (paths built from a variable only the host's `.env` sets).
    pub notes: Vec<String>,
}

/// Check every reference against the upload (`uploaded`: files relative to the app dir; `folders`: the
/// folders `files` lists and the folders below them, empty ones included) and say which paths the hosts
/// must have. Build inputs must exist here. A bind source the compose file lets Docker create
/// (`create_host_path: true` written out) needs nothing.
pub fn check(model: &Model, repo: &Path, app_dir: &str, uploaded: &[String], folders: &[String]) -> Checked {
    use gangplank_core::error::Error;
    let mut out = Checked::default();
    let provided = |rel: &str, kind: Kind| {
        rel.is_empty()
            || uploaded.iter().any(|u| u == rel)
            || (kind == Kind::Bind
                && (folders.iter().any(|f| f == rel) || uploaded.iter().any(|u| u.starts_with(&format!("{rel}/")))))
    };
    let mut missing_here = false;
    for r in &model.refs {
        let users = r.users.join(", ");
        if let Some((var, written)) = r.loc.placeholder() {
            // Its value never leaves the host: compose reads the path there, at `up`.
            out.notes.push(format!(
                "`{written}`, the {} of {users}, is built from `{var}`, which only the host's `.env` sets: not checked before the deploy",
                r.kind.what()
            ));
            continue;
        }
        let shown = r.loc.shown();
        let here = r.loc.exists_locally(repo);
        if !r.kind.on_host() {
            if !here {
                out.errors
                    .push(Error::bad_input(format!("`{shown}`, the {} of {users}, does not exist", r.kind.what())).hint(
                    "build contexts and Dockerfiles are read on the runner, where push-registry builds the images: \
                         fix the path (relative to the compose file's folder) or add the file",
                ));
            }
            continue;
        }
        if r.kind == Kind::Bind && r.create_host_path {
            continue;
        }
        if !here && matches!(r.kind, Kind::EnvFile | Kind::Include | Kind::Extends) {
            missing_here = true;
        }
        let create = if r.kind == Kind::Bind {
            "; or, for a folder Docker may create empty, write the mount in long syntax with `bind: {create_host_path: true}`"
        } else {
            ""
        };
        let (path, message, hint) = match &r.loc {
            Loc::Repo(rel) if !rel.starts_with("..") => {
                if provided(rel, r.kind) {
                    continue;
                }
                let host = format!("{app_dir}/{rel}");
                if here {
                    (
                        host.clone(),
                        format!("`{shown}`, the {} of {users}, is not uploaded (not in `files:`) and `{host}` does not exist on", r.kind.what()),
                        format!("add `{shown}` (or its folder) to `files:` so it is uploaded beside the compose files{create}"),
                    )
                } else {
                    (
                        host.clone(),
                        format!("`{shown}`, the {} of {users}, is missing in the repository and `{host}` does not exist on", r.kind.what()),
                        format!("create `{shown}` in the repository and list it in `files:`, or create `{host}` on the host{create}"),
                    )
                }
            }
            Loc::Repo(rel) => {
                let host = normalize(&Path::new(app_dir).join(rel)).to_string_lossy().into_owned();
                (
                    host.clone(),
                    format!("`{shown}`, the {} of {users}, is outside the repository: `{host}` (beside the app dir) does not exist on", r.kind.what()),
                    format!("a path outside the repository is never uploaded: create `{host}` on the host first, or move it into the repository and list it in `files:`{create}"),
                )
            }
            Loc::Absolute(p) => (
                p.clone(),
                format!("`{shown}`, the {} of {users}, does not exist on", r.kind.what()),
                format!("create `{p}` on the host first (Docker would create an empty folder in its place){create}"),
            ),
            Loc::Home(_) => (
                shown.clone(),
                format!(
                    "`{shown}`, the {} of {users}, does not exist in the home folder of the deploy user on",
                    r.kind.what()
                ),
                format!(
                    "create `{shown}` on the host first (Docker would create an empty folder in its place){create}"
                ),
            ),
        };
        out.host_refs.push(HostRef { path, message, hint });
    }
    if let Some(e) = &model.compose_error {
        if e.contains(PLACEHOLDER_MARK) {
            // compose refused a stand-in (a port or a number written with a variable of the host's `.env`):
            // the built-in reader's references were checked instead.
            out.notes.push(format!(
                "`docker compose config` cannot check the model with stand-ins for the variables of the host's `.env` ({}); the built-in reader's paths were checked",
                one_line(e)
            ));
        } else if !missing_here {
            // A missing env file, included or extended file is why compose refused: the references say which.
            out.errors.push(
                Error::bad_input(format!("`docker compose config` refuses the compose files: {}", one_line(e)))
                    .hint("run `docker compose -f <compose file> config` in the repository to see the problem"),
            );
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_compose() {
        let env: BTreeMap<String, String> =
            [("A", "a"), ("EMPTY", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let i = |s: &str| interpolate(s, &env);
        assert_eq!(i("./${A}/$A/$$x").unwrap(), "./a/a/$x");
        assert_eq!(i("${EMPTY:-d}|${EMPTY-d}|${NONE-d}").unwrap(), "d||d");
        assert_eq!(i("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}").unwrap(), "alt||alt");
        assert_eq!(i("${NONE:-${A:-x}/conf}").unwrap(), "a/conf");
        assert_eq!(i("${NONE}"), Err("NONE".to_string()));
        assert_eq!(i("${EMPTY:?must be set}"), Err("EMPTY".to_string()));
    }

    #[test]
    fn variables_of_every_file_read_with_whether_compose_requires_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("c.yaml"),
            "include: [inc.yaml]\nservices:\n  s:\n    image: ${WEB_IMAGE:?set it}:${IMAGE_TAG?x}\n    volumes: [\"${DATA:-./d}:/d\"]\n",
        )
        .unwrap();
        std::fs::write(d.path().join("inc.yaml"), "services:\n  t:\n    image: x\n    environment: [\"K=$PLAIN\"]\n")
            .unwrap();
        let none = BTreeSet::new();
        let input = Input {
            repo: d.path(),
            compose_files: &[PathBuf::from("c.yaml")],
            env_file: None,
            tag: "t1",
            services: &[],
            use_compose: false,
            placeholders: &none,
        };
        let got: Vec<(String, bool, bool)> =
            variables(&input).into_iter().map(|(k, v)| (k, v.required, v.non_empty)).collect();
        let want: Vec<(String, bool, bool)> =
            [("DATA", false, false), ("IMAGE_TAG", true, false), ("PLAIN", false, false), ("WEB_IMAGE", true, true)]
                .iter()
                .map(|(k, r, n)| (k.to_string(), *r, *n))
                .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_path_built_from_a_stand_in_names_its_variable() {
        let abs = Loc::Absolute(placeholder("DATA_DIR") + "/conf");
        assert_eq!(abs.placeholder(), Some(("DATA_DIR".to_string(), "${DATA_DIR}/conf".to_string())));
        let rel = Loc::Repo(format!("conf-{}", placeholder("ENV").trim_start_matches('/')));
        assert_eq!(rel.placeholder(), Some(("ENV".to_string(), "conf-${ENV}".to_string())));
        assert_eq!(Loc::Repo("conf".into()).placeholder(), None);
    }

    #[test]
    fn paths_are_relative_to_the_repository() {
        assert_eq!(relative(Path::new("/w/r"), Path::new("/w/r/deploy/conf")), "deploy/conf");
        assert_eq!(relative(Path::new("/w/r"), Path::new("/w/common")), "../common");
        assert_eq!(relative(Path::new("/w/r"), Path::new("/w/r")), "");
        assert_eq!(normalize(Path::new("deploy/../../x/./y")), PathBuf::from("../x/y"));
        assert_eq!(Loc::Repo(String::new()).shown(), ".");
        assert_eq!(Loc::Home("a".into()).shown(), "~/a");
    }

    #[test]
    fn duplicates_are_one_reference_naming_every_user() {
        let r = |u: &str, create| reference(Loc::Repo("conf".into()), Kind::Bind, u, create);
        let m = merge(vec![r("service `a`", true), r("service `b`", false), r("service `a`", true)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].users, vec!["service `a`", "service `b`"]);
        assert!(!m[0].create_host_path, "one user that does not opt in needs the path");
    }

    #[test]
    fn the_built_in_reader_skips_volumes_that_are_not_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("c.yaml"),
            "services:\n  s:\n    image: x\n    volumes: [/anon, named:/n, ./b:/b, ~/h:/h, '/abs:/abs:ro']\n",
        )
        .unwrap();
        let env = BTreeMap::new();
        let mut reader = Reader::new(d.path(), &env, &[]);
        reader.read_project(&[PathBuf::from("c.yaml")]);
        let locs: Vec<Loc> = reader.references(None).into_iter().map(|r| r.loc).collect();
        assert_eq!(locs, vec![Loc::Absolute("/abs".into()), Loc::Repo("b".into()), Loc::Home("h".into())]);
    }
}
