//! `strategy: rolling` (issue 13): each rolled service's new containers start beside the old ones, hidden
//! from the service's DNS name until they pass their gate, then the old ones stop (their
//! `stop_grace_period` lets in-flight requests drain) and go. A new release that fails its gate is
//! removed before any user request could reach it, and the old containers are never touched.
//!
//! The technique is docker-rollout's (`up --scale SERVICE=2N --no-recreate`, gate the new containers,
//! remove the old ones), with one addition: the new containers are created stopped and attached to their
//! networks under their own container name only. A proxy that finds the service by its Docker DNS name
//! (Caddy's `reverse_proxy web:8080`, nginx with a resolver, Traefik) therefore never sends them a
//! request before they are healthy, whatever health checking the proxy does or lacks: Caddy does not
//! health-check dynamic upstreams at all.
//!
//! The builders here are pure; [`run`] is the engine's half of [`Step::Roll`], the only place that runs them.

use std::collections::BTreeMap;
use std::time::Instant;

use gangplank_core::actions::info;
use gangplank_core::cmd::Cmd;
use gangplank_core::compose::{Flavor, Project};
use gangplank_core::error::Error;

use crate::engine::{Fail, Host};
use crate::plan::{revert, Release, Step, PULL_UP_TIMEOUT};
use crate::state::Pending;

/// How a deploy replaces containers (`strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// `compose up`: the old containers stop, then the new ones start.
    #[default]
    Recreate,
    /// New containers beside the old ones, gated, then the old ones stop.
    Rolling,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, Error> {
        match s.trim() {
            "" | "recreate" => Ok(Strategy::Recreate),
            "rolling" => Ok(Strategy::Rolling),
            other => Err(Error::bad_input(format!("`strategy` {other:?} is not `recreate` or `rolling`"))
                .hint("`recreate` (the default) restarts in place; `rolling` starts new containers beside the old ones behind a proxy")),
        }
    }
}

/// The compose command line without a subcommand: `docker compose -p NAME -f F…` or `docker-compose …`.
fn compose_argv(project: &Project) -> Vec<String> {
    let mut v: Vec<String> = match project.flavor {
        Flavor::V2 => vec!["docker".into(), "compose".into()],
        Flavor::V1 => vec!["docker-compose".into()],
    };
    v.extend(["-p".to_string(), project.name.clone()]);
    for f in &project.files {
        v.extend(["-f".to_string(), f.clone()]);
    }
    v
}

/// Prints `old SERVICE ID` for each container each rolled service has, starts the project's other
/// services where they do not run (never restarting one that does), then creates — stopped — as many new
/// containers of each rolled service as it has old ones, and prints `new SERVICE ID` for each (also when
/// compose failed half-way, so the engine can remove them). A service with no container yet is started
/// by the first `up` and printed as `fresh SERVICE`: there is nothing to roll from.
pub const START_SCRIPT: &str = r#"dir=$1; tag=$2; project=$3; n=$4; shift 4
svcs=; while [ "$n" -gt 0 ]; do svcs="$svcs $1"; shift; n=$((n-1)); done
cd -- "$dir" || exit 1
IMAGE_TAG=$tag; export IMAGE_TAG
ids() { docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" --filter label=com.docker.compose.oneoff=False; }
olds=
for s in $svcs; do for id in $(ids "$s"); do olds="$olds $s:$id"; echo "old $s $id"; done; done
"$@" up -d --no-recreate --remove-orphans >&2 || exit 1
for s in $svcs; do
  k=0; for t in $olds; do [ "${t%%:*}" = "$s" ] && k=$((k+1)); done
  if [ "$k" -eq 0 ]; then echo "fresh $s"; continue; fi
  "$@" up --no-start --no-deps --no-recreate --scale "$s=$((k*2))" "$s" >&2; rc=$?
  for id in $(ids "$s"); do case "$olds " in *" $s:$id "*) ;; *) echo "new $s $id";; esac; done
  [ "$rc" -eq 0 ] || exit "$rc"
done"#;

pub fn start_cmd(project: &Project, tag: &str, services: &[String]) -> Cmd {
    Cmd::script(START_SCRIPT)
        .arg(&project.dir)
        .arg(tag)
        .arg(&project.name)
        .arg(services.len().to_string())
        .args(services)
        .args(compose_argv(project))
        .privileged()
        .timeout(PULL_UP_TIMEOUT)
}

/// Attach container `$2` to network `$1` again under the aliases that follow, and no others (Docker adds
/// the short id itself). Disconnecting is the only way to change an endpoint's aliases.
pub const RECONNECT_SCRIPT: &str = r#"net=$1; id=$2; shift 2
n=$#; for a; do set -- "$@" --alias "$a"; done; shift "$n"
docker network disconnect "$net" "$id" >/dev/null && docker network connect "$@" "$net" "$id""#;

pub fn reconnect_cmd(network: &str, id: &str, aliases: &[String]) -> Cmd {
    Cmd::script(RECONNECT_SCRIPT).arg(network).arg(id).args(aliases).privileged()
}

/// `docker inspect` of the given containers (their networks and aliases).
pub fn inspect_cmd(ids: &[String]) -> Cmd {
    Cmd::new("docker").arg("inspect").args(ids).privileged()
}

pub fn start_containers_cmd(ids: &[String]) -> Cmd {
    Cmd::new("docker").arg("start").args(ids).privileged().timeout(PULL_UP_TIMEOUT)
}

/// Stop the old containers — `docker stop` waits each one's `StopTimeout`, which compose sets from
/// `stop_grace_period`, so requests under way finish — remove them, then tell compose the service has its
/// usual number of containers again (`--no-recreate`: nothing that runs is touched).
pub const FINISH_SCRIPT: &str = r#"dir=$1; tag=$2; n=$3; shift 3
set -f
olds=; while [ "$n" -gt 0 ]; do olds="$olds $1"; shift; n=$((n-1)); done
docker stop $olds >/dev/null || exit 1
docker rm -v $olds >/dev/null || exit 1
cd -- "$dir" || exit 1
IMAGE_TAG=$tag; export IMAGE_TAG
exec "$@" >&2"#;

pub fn finish_cmd(project: &Project, tag: &str, old: &[String], scale: &BTreeMap<String, usize>) -> Cmd {
    let mut up = compose_argv(project);
    up.extend(["up", "-d", "--no-deps", "--no-recreate"].map(String::from));
    for (s, n) in scale {
        up.extend(["--scale".to_string(), format!("{s}={n}")]);
    }
    up.push("--".into());
    up.extend(scale.keys().cloned());
    Cmd::script(FINISH_SCRIPT)
        .arg(&project.dir)
        .arg(tag)
        .arg(old.len().to_string())
        .args(old)
        .args(up)
        .privileged()
        .timeout(PULL_UP_TIMEOUT)
}

/// Remove new containers that never took traffic (their anonymous volumes too: they were new as well).
pub fn remove_cmd(ids: &[String]) -> Cmd {
    Cmd::new("docker").args(["rm", "--force", "--volumes"]).args(ids).privileged().timeout(PULL_UP_TIMEOUT)
}

/// What [`START_SCRIPT`] printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Started {
    pub old: Vec<(String, String)>,
    pub new: Vec<(String, String)>,
    pub fresh: Vec<String>,
}

pub fn parse_started(stdout: &str) -> Started {
    let mut s = Started::default();
    for l in stdout.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["old", svc, id] => s.old.push((svc.to_string(), id.to_string())),
            ["new", svc, id] => s.new.push((svc.to_string(), id.to_string())),
            ["fresh", svc] => s.fresh.push(svc.to_string()),
            _ => {}
        }
    }
    s
}

/// One network endpoint of a new container: the aliases it keeps while hidden, and all of them.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub network: String,
    pub own: Vec<String>,
    pub all: Vec<String>,
}

/// From `docker inspect` JSON: each endpoint whose aliases include more than the container's own name and
/// short id (the service name, user aliases): the names a proxy may route by.
pub fn endpoints(json: &str) -> Result<Vec<Endpoint>, Error> {
    let v: serde_json::Value = serde_json::from_str(json.trim())
        .map_err(|e| Error::failed(format!("docker inspect answered something that is not JSON: {e}")))?;
    let mut out = vec![];
    for c in v.as_array().into_iter().flatten() {
        let id = c["Id"].as_str().unwrap_or_default().to_string();
        let name = c["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string();
        let Some(nets) = c["NetworkSettings"]["Networks"].as_object() else { continue };
        for (net, ep) in nets {
            let all: Vec<String> =
                ep["Aliases"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect();
            let own: Vec<String> = all.iter().filter(|a| **a == name || id.starts_with(a.as_str())).cloned().collect();
            if own.len() < all.len() {
                out.push(Endpoint { id: id.clone(), network: net.clone(), own, all });
            }
        }
    }
    Ok(out)
}

/// The engine's half of [`Step::Roll`]: start, hide, gate, reveal, retire the old containers.
/// `h.rolled` holds the new containers while the old ones are untouched (what a revert removes);
/// `h.upped` is set once an old container may have stopped (or a service started from nothing).
pub fn run(h: &mut Host, release: &Release, services: &[String]) -> Result<(), Fail> {
    let label = h.label();
    let project = h.ctx.project(release);
    let out = h.ex.run(&start_cmd(&project, &release.tag, services))?;
    let started = parse_started(&out.stdout_str());
    h.rolled = started.new.iter().map(|(_, id)| id.clone()).collect();
    if !started.fresh.is_empty() {
        h.upped = true;
    }
    if !out.success() {
        return Err(Fail::Up(Error::failed(format!(
            "starting the new containers of `{}` on {label} failed: {}",
            release.tag,
            out.tail(5)
        ))));
    }
    let new = h.rolled.clone();
    if new.is_empty() {
        return Ok(());
    }
    let inspected = h.ex.check(&inspect_cmd(&new), "inspecting the new containers")?;
    let eps = endpoints(&inspected.stdout_str())?;
    for ep in &eps {
        h.ex.check(&reconnect_cmd(&ep.network, &ep.id, &ep.own), "hiding the new containers from the service's name")?;
    }
    h.ex.check(&start_containers_cmd(&new), "starting the new containers")?;
    info(format!(
        "{} new container(s) of {} started beside {} old one(s) on {label}, not yet reachable by the service's name",
        new.len(),
        services.join(", "),
        started.old.len()
    ));
    let t = Instant::now();
    let gate = crate::health::Gate {
        project: &h.ctx.app,
        services,
        health_url: None,
        timeout: h.ctx.health_timeout,
        interrupted: &crate::interrupted,
        only: &new,
    };
    if let Err(f) = crate::health::wait(h.ex.as_mut(), &gate)? {
        return Err(Fail::Gate(f));
    }
    info(format!("the new containers are healthy after {:.1}s; the old ones stop now", t.elapsed().as_secs_f32()));
    for ep in &eps {
        h.ex.check(&reconnect_cmd(&ep.network, &ep.id, &ep.all), "making the new containers reachable")?;
    }
    // From here the old release is being taken down: a failure puts it back with `up`.
    h.upped = true;
    h.rolled.clear();
    let old: Vec<String> = started.old.iter().map(|(_, id)| id.clone()).collect();
    let mut scale = BTreeMap::new();
    for (s, _) in &started.old {
        *scale.entry(s.clone()).or_insert(0) += 1;
    }
    let mut cmd = finish_cmd(&project, &release.tag, &old, &scale);
    if h.hurry {
        cmd = cmd.timeout(crate::engine::HURRY);
    }
    let out = h.ex.run(&cmd)?;
    if !out.success() {
        return Err(Fail::Up(Error::failed(format!(
            "stopping the old containers of {} on {label} failed: {}",
            services.join(", "),
            out.tail(5)
        ))));
    }
    Ok(())
}

/// The revert of a rolling deploy stopped before any old container did (`new`: the containers it
/// started): those go, the files come back, and the old release — never stopped — needs no restart.
/// `chosen` is the revert the failure called for under `recreate`; its result and logs are kept.
pub fn untouched_revert(p: &Pending, chosen: &[Step], new: Vec<String>) -> Vec<Step> {
    let result = chosen
        .iter()
        .find_map(|s| match s {
            Step::Record { result, .. } => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "failed".into());
    let logs = chosen.contains(&Step::ShowLogs);
    let mut v = revert(p, &result, false, false, logs, true);
    v.insert(usize::from(logs), Step::Unroll { containers: new });
    v
}

/// Preflight of `strategy: rolling` (local, before any connection): `services` must name the services
/// to roll, and none of them may have a fixed host port or a `container_name` — two containers cannot
/// hold either at once. `compose_files`: (name, text) of each compose file uploaded.
pub fn check(services: &[String], compose_files: &[(String, String)]) -> Vec<Error> {
    if services.is_empty() {
        return vec![Error::bad_input("`strategy: rolling` needs `services`: the services to roll")
            .hint("list the services behind your proxy (e.g. `services: web`); a database or the proxy itself cannot run twice and is deployed with `strategy: recreate`")];
    }
    let mut errs = vec![];
    for (file, text) in compose_files {
        let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else { continue };
        for s in services {
            let svc = &doc["services"][s.as_str()];
            if let Some(name) =
                svc.get("container_name").and_then(|n| n.as_str().map(str::to_string).or(Some(n.to_string())))
            {
                errs.push(
                    Error::bad_input(format!(
                        "service `{s}` has `container_name: {name}` in {file}: `strategy: rolling` runs two containers of it at once, and a name is taken once"
                    ))
                    .hint(format!("remove `container_name` and reach the service by its compose service name (Docker DNS), e.g. from a proxy: `reverse_proxy {s}:8080`")),
                );
            }
            for p in svc.get("ports").and_then(|p| p.as_array()).into_iter().flatten() {
                if let Some(fixed) = fixed_host_port(p) {
                    errs.push(
                        Error::bad_input(format!(
                            "service `{s}` publishes the fixed host port `{fixed}` in {file}: `strategy: rolling` runs two containers of it at once, and a host port is taken once"
                        ))
                        .hint(format!("put a proxy in front (a Caddy service with `reverse_proxy {s}:<port>`, deployed with `recreate`) that publishes the port, and drop `ports` from `{s}`")),
                    );
                }
            }
        }
    }
    errs
}

/// The published host part of a `ports` entry, when it has one (a container port alone is published
/// on a random host port, which two containers can both have).
fn fixed_host_port(entry: &serde_json::Value) -> Option<String> {
    match entry {
        serde_json::Value::Object(m) => {
            m.get("published").filter(|v| !v.is_null() && v.as_str() != Some("")).map(|v| match v.as_str() {
                Some(s) => s.to_string(),
                None => v.to_string(),
            })
        }
        serde_json::Value::String(s) => {
            let spec = s.split('/').next().unwrap_or(s);
            // `[IP:]HOST:CONTAINER`; an IPv6 address is in brackets.
            let no_ip = match spec.rsplit_once(']') {
                Some((_, rest)) => rest.trim_start_matches(':'),
                None => spec,
            };
            let parts: Vec<&str> = no_ip.split(':').collect();
            (parts.len() >= 2 && !parts[parts.len() - 2].is_empty()).then(|| s.clone())
        }
        serde_json::Value::Number(_) => None,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::{Executor, Local};

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
    fn command_lines_quote_every_argument() {
        let p = project(Flavor::V2);
        assert_eq!(
            start_cmd(&p, "v2", &["web".into()]).render(false),
            format!(
                "sh -c {} gangplank '/opt/it'\\''s $x; y' v2 my-app 1 web docker compose -p my-app -f compose.yaml",
                gangplank_core::quote(START_SCRIPT)
            )
        );
        let mut scale = BTreeMap::new();
        scale.insert("web".to_string(), 2);
        assert_eq!(
            finish_cmd(&project(Flavor::V1), "v2", &["a1".into(), "b2".into()], &scale).render(false),
            format!(
                "sh -c {} gangplank '/opt/it'\\''s $x; y' v2 2 a1 b2 docker-compose -p my-app -f compose.yaml up -d --no-deps --no-recreate --scale web=2 -- web",
                gangplank_core::quote(FINISH_SCRIPT)
            )
        );
        assert_eq!(
            reconnect_cmd("net 1", "abc", &["x'y\"$z;\n".into()]).render(false),
            format!("sh -c {} gangplank 'net 1' abc 'x'\\''y\"$z;\n'", gangplank_core::quote(RECONNECT_SCRIPT))
        );
        assert_eq!(remove_cmd(&["abc".into()]).render(false), "docker rm --force --volumes abc");
    }

    /// The alias options are built from positional parameters, so an alias with spaces or quotes stays one
    /// argument: run the script with `docker` replaced by a stand-in that prints its argv.
    #[test]
    fn reconnect_passes_each_alias_as_one_argument() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("docker");
        let log = d.path().join("log");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a; do printf '<%s>' \"$a\"; done >>'{}'; echo >>'{}'\n",
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cmd = Cmd::new("env").arg(format!("PATH={}:/usr/bin:/bin", d.path().display())).args([
            "sh",
            "-c",
            RECONNECT_SCRIPT,
            "gangplank",
            "n",
            "id1",
            "a b",
            "c'd",
        ]);
        assert!(Local::new(false).run(&cmd).unwrap().success());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "<network><disconnect><n><id1>\n<network><connect><--alias><a b><--alias><c'd><n><id1>\n"
        );
    }

    #[test]
    fn started_and_endpoints_are_parsed() {
        let s = parse_started("old web a1\nold web a2\nnew web b1\nfresh api\nnoise\n");
        assert_eq!(s.old, vec![("web".into(), "a1".into()), ("web".into(), "a2".into())]);
        assert_eq!(s.new, vec![("web".into(), "b1".into())]);
        assert_eq!(s.fresh, vec!["api".to_string()]);
        let json = r#"[{"Id":"b1c2d3e4f5a6b7","Name":"/app-web-2","NetworkSettings":{"Networks":{
            "app_default":{"Aliases":["app-web-2","web","b1c2d3e4f5a6"]},
            "other":{"Aliases":["app-web-2"]},
            "edge":{"Aliases":null}}}}]"#;
        let eps = endpoints(json).unwrap();
        assert_eq!(
            eps,
            vec![Endpoint {
                id: "b1c2d3e4f5a6b7".into(),
                network: "app_default".into(),
                own: vec!["app-web-2".into(), "b1c2d3e4f5a6".into()],
                all: vec!["app-web-2".into(), "web".into(), "b1c2d3e4f5a6".into()],
            }]
        );
    }

    #[test]
    fn preflight_refuses_fixed_ports_and_container_names() {
        let yaml = r#"
services:
  web:
    image: x
    ports: ["8080", "127.0.0.1::8080", {target: 8080}]
  api:
    image: x
    container_name: api
    ports: ["127.0.0.1:9000:9000", "[::1]:9001:9001/tcp", {target: 80, published: "8081"}, "9002:9002"]
  proxy:
    image: caddy
    ports: ["80:80"]
"#;
        let files = vec![("compose.yaml".to_string(), yaml.to_string())];
        assert!(check(&["web".into()], &files).is_empty(), "a container port alone is not fixed");
        let errs = check(&["api".into()], &files);
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errs.len(), 5, "{msgs:#?}");
        assert!(msgs[0].contains("`container_name: api`"));
        assert!(msgs[1].contains("`127.0.0.1:9000:9000`") && msgs[2].contains("[::1]:9001:9001/tcp"));
        assert!(msgs[3].contains("`8081`") && msgs[4].contains("`9002:9002`"));
        assert!(errs.iter().all(|e| e.exit_code() == 2 && e.hint.as_deref().is_some_and(|h| h.contains("api"))));
        let none = check(&[], &files);
        assert!(none[0].message.contains("needs `services`"));
        assert_eq!(Strategy::parse("rolling").unwrap(), Strategy::Rolling);
        assert_eq!(Strategy::parse("").unwrap(), Strategy::Recreate);
        assert_eq!(Strategy::parse("blue-green").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn untouched_revert_removes_the_new_containers_and_restarts_nothing() {
        let p = Pending {
            tag: "v2".into(),
            previous_tag: Some("v1".into()),
            previous_compose_files: vec!["compose.yaml".into()],
            compose_files: vec!["compose.yaml".into()],
            stamp: "s".into(),
            files: vec!["compose.yaml".into()],
            services: vec!["web".into()],
            run_url: String::new(),
            started_at: String::new(),
        };
        let chosen = revert(&p, "health-gate-failed", true, true, true, true);
        let v = untouched_revert(&p, &chosen, vec!["n1".into()]);
        assert_eq!(v[0], Step::ShowLogs);
        assert_eq!(v[1], Step::Unroll { containers: vec!["n1".into()] });
        assert!(matches!(v[2], Step::Restore { .. }));
        assert!(!v.iter().any(|s| matches!(s, Step::Up { .. } | Step::Gate { .. } | Step::Down { .. })));
        assert!(
            matches!(&v[3], Step::Record { result, rolled_back_to: None, unlock: true, .. } if result == "health-gate-failed")
        );
    }
}
