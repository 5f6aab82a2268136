//! docker compose and docker command builders, and parsers of what they answer.
//!
//! Invariant: builders here are pure (they return [`Cmd`]s); container state comes from `docker inspect`
//! JSON, never from the text of `docker compose ps` (issue 3: a seed script grepped `ps` output and
//! called a restarting container "Up").

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cmd::Cmd;
use crate::error::{Error, Result};

/// Which compose CLI the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The `docker compose` plugin.
    V2,
    /// The standalone `docker-compose` 1.x.
    V1,
}

/// Prints `v2`, `v1` or `none`: which compose the host has, v2 preferred.
pub const DETECT_SCRIPT: &str = r#"if docker compose version >/dev/null 2>&1; then echo v2
elif command -v docker-compose >/dev/null 2>&1; then echo v1
else echo none; fi"#;

pub fn detect() -> Cmd {
    Cmd::script(DETECT_SCRIPT).privileged()
}

pub fn parse_detect(stdout: &str) -> Option<Flavor> {
    match stdout.trim() {
        "v2" => Some(Flavor::V2),
        "v1" => Some(Flavor::V1),
        _ => None,
    }
}

/// One compose project on one host: the project name, its directory and files there, and the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub flavor: Flavor,
    pub name: String,
    /// The app directory on the host; compose runs there, so relative paths and `.env` resolve in it.
    pub dir: String,
    /// Compose file names relative to `dir`.
    pub files: Vec<String>,
    /// `DOCKER_CONFIG` for commands that may pull: the run's temporary registry login on the host
    /// (`<app-dir>/.gangplank/docker-auth`), `None` for the user's own Docker config.
    pub docker_config: Option<String>,
}

impl Project {
    /// `docker compose -p NAME -f F…` (or `docker-compose …`) with `IMAGE_TAG` in its environment, in `dir`.
    fn base(&self, tag: &str) -> Cmd {
        let mut c = match self.flavor {
            Flavor::V2 => Cmd::new("docker").arg("compose"),
            Flavor::V1 => Cmd::new("docker-compose"),
        };
        if let Some(dc) = &self.docker_config {
            c = c.env("DOCKER_CONFIG", dc.as_str());
        }
        c = c.env("IMAGE_TAG", tag).arg("-p").arg(&self.name);
        for f in &self.files {
            c = c.arg("-f").arg(f);
        }
        c
    }

    fn finish(&self, c: Cmd) -> Cmd {
        c.in_dir(&self.dir).privileged()
    }

    /// Pull the images of `services` (all when empty).
    pub fn pull(&self, tag: &str, services: &[String]) -> Cmd {
        let c = self.base(tag).arg("pull").arg("--quiet");
        self.finish(with_services(c, services))
    }

    /// `config`: the model as compose resolves it (interpolated YAML), for the images it will run.
    pub fn config(&self, tag: &str) -> Cmd {
        self.finish(self.base(tag).arg("config"))
    }

    /// `down --remove-orphans` (volumes stay): stops a release that had nothing before it.
    pub fn down(&self, tag: &str) -> Cmd {
        let c = self.base(tag).args(["down", "--remove-orphans"]);
        self.finish(c)
    }

    /// `up -d --remove-orphans`: compose pulls only images that are missing, so a rollback to an image
    /// still on the host needs no registry.
    pub fn up(&self, tag: &str, services: &[String]) -> Cmd {
        let c = self.base(tag).args(["up", "-d", "--remove-orphans"]);
        self.finish(with_services(c, services))
    }
}

fn with_services(mut c: Cmd, services: &[String]) -> Cmd {
    if !services.is_empty() {
        c = c.arg("--");
        for s in services {
            c = c.arg(s);
        }
    }
    c
}

/// Prints a JSON array of `docker inspect` objects for every container of the project (`[]` when none).
/// Containers are found by compose's project label, never by name patterns.
pub const INSPECT_PROJECT_SCRIPT: &str = r#"ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1") || exit $?
if [ -z "$ids" ]; then echo '[]'; else docker inspect $ids; fi"#;

pub fn inspect_project(project: &str) -> Cmd {
    Cmd::script(INSPECT_PROJECT_SCRIPT).arg(project).privileged()
}

/// The last `lines` log lines of one container, stdout and stderr together.
pub fn logs(container: &str, lines: u32) -> Cmd {
    Cmd::script(r#"docker logs --tail "$2" "$1" 2>&1"#).arg(container).arg(lines.to_string()).privileged()
}

/// The state of one container, from `docker inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image: String,
    /// The image ID (`sha256:…`) the container runs.
    pub image_id: String,
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    /// `None` when the image has no HEALTHCHECK.
    pub health: Option<String>,
    pub health_log: Vec<String>,
    pub restart_count: i64,
    pub oneoff: bool,
}

/// Whether a container passes the gate, is still on its way, or has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Waiting(String),
    Failed(String),
}

/// What a container is to the gate: one that must be running, or a dependency of the service under test,
/// which may be a one-shot job (a migration) that has done its work and exited 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    MustRun,
    Dependency,
}

/// The hint for a container that restarted, for every gate that reports one.
pub const RESTART_HINT: &str = "a container that crashes on start is a bug even when its restart policy brings it back; when it starts before a dependency is ready, make it wait with `depends_on: {<dependency>: {condition: service_healthy}}` and give the dependency a HEALTHCHECK";

impl Container {
    /// The deploy gate's verdict: every container must be running.
    pub fn verdict(&self) -> Verdict {
        self.verdict_as(Role::MustRun)
    }

    /// The one readiness rule (deploy gate and verify-image): running, and healthy where the image has a
    /// HEALTHCHECK. A container that has restarted even once fails for good: a crash on start is a bug,
    /// not a warm-up (issue 3: a seed script waited out a crash loop and called the stack healthy), so
    /// waiting longer never turns it into a pass. See [`RESTART_HINT`].
    pub fn verdict_as(&self, role: Role) -> Verdict {
        if self.restarted() {
            return Verdict::Failed(match self.status.as_str() {
                "restarting" => format!(
                    "{} keeps restarting (exit code {}, {} restarts)",
                    self.name, self.exit_code, self.restart_count
                ),
                _ => format!(
                    "{} restarted {} (exit code {})",
                    self.name,
                    if self.restart_count == 1 { "once".to_string() } else { format!("{} times", self.restart_count) },
                    self.exit_code
                ),
            });
        }
        if !self.running {
            return match self.status.as_str() {
                "created" => Verdict::Waiting(format!("{} is created, not started", self.name)),
                "exited" if role == Role::Dependency && self.exit_code == 0 => Verdict::Ready,
                s => Verdict::Failed(format!("{} is {s} (exit code {})", self.name, self.exit_code)),
            };
        }
        match self.health.as_deref() {
            None | Some("healthy") => Verdict::Ready,
            Some("unhealthy") => Verdict::Failed(format!("{} is unhealthy (HEALTHCHECK)", self.name)),
            Some(s) => Verdict::Waiting(format!("{} health is {s}", self.name)),
        }
    }

    /// Whether the container has restarted (or is restarting now): the rule's one reason for [`RESTART_HINT`].
    pub fn restarted(&self) -> bool {
        self.restart_count > 0 || self.status == "restarting"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    restart_count: i64,
    state: RawState,
    config: RawConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    running: bool,
    #[serde(default)]
    exit_code: i64,
    #[serde(default)]
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealth {
    #[serde(default)]
    status: String,
    #[serde(default)]
    log: Option<Vec<RawHealthLog>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealthLog {
    #[serde(default)]
    exit_code: i64,
    #[serde(default)]
    output: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Parse `docker inspect` output for containers.
pub fn parse_inspect(json: &str) -> Result<Vec<Container>> {
    let raw: Vec<RawContainer> = serde_json::from_str(json.trim())
        .map_err(|e| Error::failed(format!("docker inspect answered something that is not container JSON: {e}")))?;
    Ok(raw
        .into_iter()
        .map(|r| {
            let labels = r.config.labels.unwrap_or_default();
            Container {
                id: r.id,
                name: r.name.trim_start_matches('/').to_string(),
                service: labels.get("com.docker.compose.service").cloned().unwrap_or_default(),
                oneoff: labels.get("com.docker.compose.oneoff").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                image: r.config.image,
                image_id: r.image,
                status: r.state.status,
                running: r.state.running,
                exit_code: r.state.exit_code,
                health_log: r
                    .state
                    .health
                    .as_ref()
                    .and_then(|h| h.log.as_ref())
                    .map(|l| l.iter().map(|e| format!("exit {}: {}", e.exit_code, e.output.trim_end())).collect())
                    .unwrap_or_default(),
                health: r.state.health.map(|h| h.status).filter(|s| !s.is_empty() && s != "none"),
                restart_count: r.restart_count,
            }
        })
        .collect())
}

/// The images a compose file runs. Which local paths it needs is the compose model's business
/// (`gangplank_deploy::model`, resolved by compose itself where it can).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// `image:` values as written (e.g. `registry/app:${IMAGE_TAG}`).
    pub images: Vec<String>,
    /// Each service with its `image:` (none for a build-only service).
    pub services: Vec<(String, Option<String>)>,
}

/// Read a compose file's services and their images as written.
pub fn references(yaml: &str) -> std::result::Result<References, String> {
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let mut refs = References::default();
    if let Some(services) = doc.get("services").and_then(|s| s.as_object()) {
        for (name, svc) in services {
            let img = svc.get("image").and_then(|i| i.as_str());
            if let Some(img) = img {
                refs.images.push(img.to_string());
            }
            refs.services.push((name.clone(), img.map(str::to_string)));
        }
    }
    Ok(refs)
}

/// The repository part of an image reference (`registry:5000/app:${IMAGE_TAG}` → `registry:5000/app`).
pub fn image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    }
}

/// One variable a compose model interpolates, and whether compose refuses to go on without a value
/// (`${X:?…}` or `${X?…}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub required: bool,
}

/// The variables of a compose model: compose's own answer where it has one (`docker compose config
/// --variables`, [`parse_variables_output`]), else [`variables_in_yaml`] over the files as written. Both
/// give each name once, required when any use of it is.
fn add_variable(out: &mut Vec<Variable>, name: &str, required: bool) {
    match out.iter_mut().find(|v| v.name == name) {
        Some(v) => v.required |= required,
        None => out.push(Variable { name: name.to_string(), required }),
    }
}

/// Read the answer of `docker compose config --variables`: the table of compose 2.24 and later (`NAME
/// REQUIRED DEFAULT VALUE ALTERNATE VALUE`; only the first two columns are read, as defaults may hold
/// spaces), or the JSON object of name to `{Name, Required, …}` that newer versions print with `--format
/// json`. `None` when the answer is neither.
pub fn parse_variables_output(stdout: &str) -> Option<Vec<Variable>> {
    let text = stdout.trim();
    let mut out = Vec::new();
    if text.starts_with('{') {
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        for (name, v) in map {
            add_variable(&mut out, &name, v.get("Required").and_then(|r| r.as_bool()).unwrap_or(false));
        }
        return Some(out);
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    if header.first() != Some(&"NAME") || header.get(1) != Some(&"REQUIRED") {
        return None;
    }
    for line in lines {
        let mut cols = line.split_whitespace();
        let (Some(name), Some(required)) = (cols.next(), cols.next()) else { continue };
        add_variable(&mut out, name, required == "true");
    }
    Some(out)
}

/// The variables the string values of a compose file interpolate (`$X`, `${X}`, `${X:-default}`, `${X:?err}`
/// and the others, defaults holding variables themselves; `$$` is a literal `$`), for a compose that cannot
/// answer [`parse_variables_output`]'s question itself (docker-compose 1.x). Comments and keys are not
/// interpolated by compose, so they are not read.
pub fn variables_in_yaml(yaml: &str) -> std::result::Result<Vec<Variable>, String> {
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<Variable>) {
        match v {
            serde_json::Value::String(s) => scan_variables(s, out),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&doc, &mut out);
    Ok(out)
}

/// The variables a compose message or value interpolates, as [`variables_in_yaml`] reads one string: docker-compose
/// 1.x names a missing required variable only by quoting the text it was interpolating.
pub fn variables_in(text: &str) -> Vec<Variable> {
    let mut out = Vec::new();
    scan_variables(text, &mut out);
    out
}

/// The variable compose v2 names in "required variable X is missing a value".
pub fn missing_required(message: &str) -> Option<&str> {
    let rest = &message[message.find("required variable ")? + "required variable ".len()..];
    let name = &rest[..rest.find(" is missing a value")?];
    (!name.is_empty() && name.chars().all(is_name_char)).then_some(name)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn scan_variables(s: &str, out: &mut Vec<Variable>) {
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            // The brace that closes this one, so a default may hold `${…}` itself.
            let mut depth = 1;
            let end = body.char_indices().find_map(|(j, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(j)
            });
            let Some(end) = end else { return };
            let inner = &body[..end];
            let n = inner.find(|c: char| !is_name_char(c)).unwrap_or(inner.len());
            let (name, op) = inner.split_at(n);
            if !name.is_empty() {
                add_variable(out, name, op.starts_with(":?") || op.starts_with('?'));
            }
            let word = op.trim_start_matches(':').get(1..).unwrap_or("");
            scan_variables(word, out);
            rest = &body[end + 1..];
        } else {
            let n = after.find(|c: char| !is_name_char(c)).unwrap_or(after.len());
            if n > 0 {
                add_variable(out, &after[..n], false);
            }
            rest = &after[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(flavor: Flavor) -> Project {
        Project {
            flavor,
            name: "my-app".into(),
            dir: "/opt/it's $x; y".into(),
            files: vec!["compose.yaml".into()],
            docker_config: None,
        }
    }

    #[test]
    fn v1_and_v2_command_lines() {
        let svc = vec!["web".to_string()];
        assert_eq!(
            project(Flavor::V1).up("v1", &svc).render(false),
            r#"cd '/opt/it'\''s $x; y' && IMAGE_TAG=v1 docker-compose -p my-app -f compose.yaml up -d --remove-orphans -- web"#
        );
        assert_eq!(
            project(Flavor::V2).pull("v2", &[]).render(false),
            r#"cd '/opt/it'\''s $x; y' && IMAGE_TAG=v2 docker compose -p my-app -f compose.yaml pull --quiet"#
        );
        assert_eq!(
            project(Flavor::V2).up("v2", &[]).render(true),
            r#"sudo -n sh -c 'cd '\''/opt/it'\''\'\'''\''s $x; y'\'' && IMAGE_TAG=v2 docker compose -p my-app -f compose.yaml up -d --remove-orphans'"#
        );
    }

    #[test]
    fn detect_and_inspect_builders() {
        assert_eq!(parse_detect("v1\n"), Some(Flavor::V1));
        assert_eq!(parse_detect("none\n"), None);
        assert_eq!(
            inspect_project("a'b").render(false),
            format!("sh -c {} gangplank 'a'\\''b'", crate::quote(INSPECT_PROJECT_SCRIPT))
        );
    }

    #[test]
    fn inspect_json_gives_state_health_and_restarts() {
        let json = r#"[{"Id":"abc","Name":"/my-app_web_1","Image":"sha256:111","RestartCount":0,
            "State":{"Status":"running","Running":true,"ExitCode":0,"Health":{"Status":"unhealthy","Log":[{"ExitCode":1,"Output":"wget: 404\n"}]}},
            "Config":{"Image":"r/app:broken","Labels":{"com.docker.compose.service":"web"}}},
            {"Id":"def","Name":"/db","Image":"sha256:222","RestartCount":3,
            "State":{"Status":"restarting","Running":false,"ExitCode":1},"Config":{"Image":"db","Labels":null}}]"#;
        let c = parse_inspect(json).unwrap();
        assert_eq!(c[0].service, "web");
        assert_eq!(c[0].name, "my-app_web_1");
        assert_eq!(c[0].health.as_deref(), Some("unhealthy"));
        assert_eq!(c[0].health_log, vec!["exit 1: wget: 404"]);
        assert!(matches!(c[0].verdict(), Verdict::Failed(_)));
        assert!(matches!(c[1].verdict(), Verdict::Failed(m) if m.contains("keeps restarting")));
        let ok =
            r#"[{"Id":"x","State":{"Status":"running","Running":true,"Health":{"Status":"starting"}},"Config":{}}]"#;
        assert!(matches!(parse_inspect(ok).unwrap()[0].verdict(), Verdict::Waiting(_)));
        let plain = r#"[{"Id":"x","State":{"Status":"running","Running":true},"Config":{}}]"#;
        assert_eq!(parse_inspect(plain).unwrap()[0].verdict(), Verdict::Ready);
        assert!(parse_inspect("[]").unwrap().is_empty());
    }

    fn container(status: &str, exit_code: i64, health: Option<&str>, restart_count: i64) -> Container {
        Container {
            id: "abc".into(),
            name: "p-app-1".into(),
            service: "app".into(),
            image: "r/app:v1".into(),
            image_id: "sha256:1".into(),
            status: status.into(),
            running: status == "running",
            exit_code,
            health: health.map(str::to_string),
            health_log: vec![],
            restart_count,
            oneoff: false,
        }
    }

    #[test]
    fn one_readiness_rule() {
        use Role::{Dependency, MustRun};
        let ready = |c: &Container, r| c.verdict_as(r) == Verdict::Ready;
        let failed = |c: &Container, r| matches!(c.verdict_as(r), Verdict::Failed(_));
        let waiting = |c: &Container, r| matches!(c.verdict_as(r), Verdict::Waiting(_));
        for role in [MustRun, Dependency] {
            assert!(ready(&container("running", 0, None, 0), role));
            assert!(ready(&container("running", 0, Some("healthy"), 0), role));
            assert!(waiting(&container("running", 0, Some("starting"), 0), role));
            assert!(waiting(&container("created", 0, None, 0), role));
            assert!(failed(&container("running", 0, Some("unhealthy"), 0), role));
            assert!(failed(&container("exited", 3, None, 0), role));
            // One restart is enough to fail, healthy or not, running or not.
            for c in [
                container("running", 0, Some("healthy"), 1),
                container("running", 0, None, 1),
                container("restarting", 1, None, 0),
                container("exited", 0, None, 2),
            ] {
                assert!(failed(&c, role) && c.restarted(), "{c:?}");
            }
        }
        // A one-shot dependency that did its work is ready; a container that must run is not.
        assert!(ready(&container("exited", 0, None, 0), Dependency));
        assert!(failed(&container("exited", 0, None, 0), MustRun));
        assert_eq!(container("running", 0, None, 0).verdict(), container("running", 0, None, 0).verdict_as(MustRun));
        let Verdict::Failed(m) = container("running", 0, None, 1).verdict() else { unreachable!() };
        assert_eq!(m, "p-app-1 restarted once (exit code 0)");
    }

    #[test]
    fn compose_references() {
        let yaml = r#"
services:
  web:
    image: "127.0.0.1:5000/app:${IMAGE_TAG}"
    env_file: .env
    volumes:
      - ./conf/site.conf:/etc/site.conf:ro
      - data:/data
      - type: bind
        source: /srv/shared
        target: /shared
  worker:
    image: worker
    env_file:
      - path: ./optional.env
        required: false
      - worker.env
volumes:
  data: {}
configs:
  caddy:
    file: ./Caddyfile
secrets:
  token:
    file: ./secrets/token.txt
"#;
        let r = references(yaml).unwrap();
        assert_eq!(r.images, vec!["127.0.0.1:5000/app:${IMAGE_TAG}", "worker"]);
        assert!(references("services: [").is_err());
    }

    #[test]
    fn image_repos_and_paths() {
        assert_eq!(image_repo("127.0.0.1:5000/app:${IMAGE_TAG}"), "127.0.0.1:5000/app");
        assert_eq!(image_repo("ghcr.io/o/app"), "ghcr.io/o/app");
        assert_eq!(image_repo("busybox:1@sha256:ab"), "busybox");
    }

    #[test]
    fn variables_from_compose_and_from_the_files() {
        let table = "NAME                REQUIRED            DEFAULT VALUE       ALTERNATE VALUE\n\
POSTGRES_PASSWORD   true                                    \n\
D                   false               two words           \n\
IMAGE_TAG           true                                    \n";
        let v = parse_variables_output(table).unwrap();
        assert_eq!(
            v,
            vec![
                Variable { name: "POSTGRES_PASSWORD".into(), required: true },
                Variable { name: "D".into(), required: false },
                Variable { name: "IMAGE_TAG".into(), required: true },
            ]
        );
        let json = r#"{"A":{"Name":"A","DefaultValue":"","PresenceValue":"","Required":true},"B":{"Name":"B","Required":false}}"#;
        assert_eq!(
            parse_variables_output(json).unwrap(),
            vec![Variable { name: "A".into(), required: true }, Variable { name: "B".into(), required: false }]
        );
        assert_eq!(parse_variables_output("unknown flag: --variables"), None);

        let yaml = r#"
# ${IN_A_COMMENT:?} is not read
services:
  web:
    image: ${WEB_IMAGE:?must be set}:${IMAGE_TAG}
    environment:
      KEY: ${SECRET_KEY?}
      MODE: $APP_MODE
      PRICE: "$$5 and $${NOT_A_VAR}"
      NESTED: ${OUTER:-${INNER:?}}
      PLAIN: ${SECRET_KEY:-x}
"#;
        let v = variables_in_yaml(yaml).unwrap();
        let mut names: Vec<(&str, bool)> = v.iter().map(|v| (v.name.as_str(), v.required)).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("APP_MODE", false),
                ("IMAGE_TAG", false),
                ("INNER", true),
                ("OUTER", false),
                ("SECRET_KEY", true),
                ("WEB_IMAGE", true),
            ]
        );
        assert!(variables_in_yaml("services: [").is_err());
        let v1 =
            r#"Missing mandatory value for "volumes" option interpolating ['${DATA:?}:/data'] in service "web": DATA"#;
        assert_eq!(variables_in(v1), vec![Variable { name: "DATA".into(), required: true }]);
        let v2 = "error while interpolating services.web.volumes.[]: required variable DATA_DIR is missing a value";
        assert_eq!(missing_required(v2), Some("DATA_DIR"));
        assert_eq!(missing_required("required variable is missing a value"), None);
    }
}
