//! What `docker inspect` says about containers and images, parsed from its JSON (never from the text
//! tables of `docker ps` or `compose ps`, whose columns differ between compose v1 and v2). Containers are
//! parsed and judged by `core::compose`, the same rule as the deploy gate; images here.

use gangplank_core::compose;
use serde::{Deserialize, Serialize};

/// The part of `docker image inspect IMAGE` this binary reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    #[serde(default)]
    pub size: u64,
    pub config: Option<ImageConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub user: String,
}

impl ImageInspect {
    pub fn user(&self) -> &str {
        self.config.as_ref().map_or("", |c| c.user.as_str())
    }
}

/// Whether a `USER` value runs as root: empty (the default), `root`, `0`, or `root`/`0` with any group.
pub fn is_root_user(user: &str) -> bool {
    let u = user.trim().split(':').next().unwrap_or("");
    u.is_empty() || u == "root" || u == "0"
}

/// One container's state, as the report shows it. Readiness is decided by the one rule every gate shares,
/// [`compose::Container::verdict_as`]; this is only its record.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub service: String,
    pub status: String,
    pub health: Option<String>,
    pub restart_count: i64,
    pub exit_code: i64,
    /// Passes the gate (a dependency may be a one-shot job that exited 0).
    pub ready: bool,
    /// Failed for good: exited, unhealthy, or restarted. Waiting longer cannot make it ready.
    pub dead: bool,
    /// Why it is not ready, when the rule says.
    pub problem: Option<String>,
    /// It restarted (the failure [`compose::RESTART_HINT`] explains).
    #[serde(skip)]
    pub restarted: bool,
}

impl ContainerState {
    /// `target`: the service under test, which must be running; others are its dependencies.
    pub fn new(c: &compose::Container, target: bool) -> ContainerState {
        let role = if target { compose::Role::MustRun } else { compose::Role::Dependency };
        let verdict = c.verdict_as(role);
        ContainerState {
            id: c.id.clone(),
            name: c.name.clone(),
            // A single image has no compose label: its name stands for the service.
            service: if c.service.is_empty() { c.name.clone() } else { c.service.clone() },
            status: c.status.clone(),
            health: c.health.clone(),
            restart_count: c.restart_count,
            exit_code: c.exit_code,
            ready: verdict == compose::Verdict::Ready,
            dead: matches!(verdict, compose::Verdict::Failed(_)),
            problem: match verdict {
                compose::Verdict::Ready => None,
                compose::Verdict::Waiting(m) | compose::Verdict::Failed(m) => Some(m),
            },
            restarted: c.restarted(),
        }
    }
}

pub fn parse_images(json: &str) -> Result<Vec<ImageInspect>, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rows_follow_the_one_rule() {
        let json = r#"[{"Id":"a","Name":"/p-app-1","RestartCount":1,"State":{"Status":"running","Running":true},
            "Config":{"Labels":{"com.docker.compose.service":"app"}}},
            {"Id":"b","Name":"/p-migrate-1","State":{"Status":"exited","Running":false,"ExitCode":0},"Config":{}}]"#;
        let c = compose::parse_inspect(json).unwrap();
        let app = ContainerState::new(&c[0], true);
        assert!(!app.ready && app.dead && app.restarted, "{app:?}");
        assert_eq!(app.problem.as_deref(), Some("p-app-1 restarted once (exit code 0)"));
        let migrate = ContainerState::new(&c[1], false);
        assert!(migrate.ready && !migrate.dead && migrate.problem.is_none(), "{migrate:?}");
        assert_eq!(migrate.service, "p-migrate-1", "no compose label: the name stands for the service");
        assert!(ContainerState::new(&c[1], true).dead, "the service under test must run");
    }

    #[test]
    fn root_users() {
        for u in ["", "root", "0", "0:0", "root:staff"] {
            assert!(is_root_user(u), "{u}");
        }
        for u in ["app", "1000", "1000:1000", "nobody"] {
            assert!(!is_root_user(u), "{u}");
        }
    }

    #[test]
    fn images() {
        let i = parse_images(r#"[{"Id":"sha256:x","Size":2048,"Config":{"User":"1000"}}]"#).unwrap();
        assert_eq!((i[0].size, i[0].user()), (2048, "1000"));
        let i = parse_images(r#"[{"Id":"sha256:x","Size":1,"Config":null}]"#).unwrap();
        assert_eq!(i[0].user(), "");
    }
}
