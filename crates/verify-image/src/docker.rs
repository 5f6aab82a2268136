//! What `docker inspect` says about containers and images, parsed from its JSON (never from the text
//! tables of `docker ps` or `compose ps`, whose columns differ between compose v1 and v2).

use serde::{Deserialize, Serialize};

/// The part of `docker inspect CONTAINER` this binary reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: State,
    #[serde(default)]
    pub restart_count: u32,
    pub config: ContainerConfig,
    #[serde(default)]
    pub host_config: HostConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: String,
    #[serde(default)]
    pub running: bool,
    #[serde(default)]
    pub restarting: bool,
    #[serde(default)]
    pub exit_code: i64,
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default)]
    pub name: String,
}

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

/// One container's state, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub service: String,
    pub status: String,
    pub health: Option<String>,
    pub restart_count: u32,
    pub exit_code: i64,
    /// Running, and healthy where the image has a HEALTHCHECK (or a one-shot that exited 0).
    pub ready: bool,
    /// Will never become ready: exited non-zero with no restart policy.
    pub dead: bool,
}

impl ContainerInspect {
    pub fn service(&self) -> String {
        self.config
            .labels
            .as_ref()
            .and_then(|l| l.get("com.docker.compose.service"))
            .cloned()
            .unwrap_or_else(|| self.name.trim_start_matches('/').to_string())
    }

    /// Ready and dead as the health gate sees them; `target` is the service under test, which must be
    /// running (a dependency may be a one-shot job that exited 0).
    pub fn state(&self, target: bool) -> ContainerState {
        let s = &self.state;
        let health = s.health.as_ref().map(|h| h.status.clone());
        let policy = self.host_config.restart_policy.as_ref().map_or("", |p| p.name.as_str());
        let stopped = !s.running && !s.restarting && matches!(s.status.as_str(), "exited" | "dead");
        let ready = if s.running && !s.restarting {
            health.as_deref().is_none_or(|h| h == "healthy")
        } else {
            !target && stopped && s.exit_code == 0
        };
        let no_restart = matches!(policy, "" | "no") || (policy == "on-failure" && s.exit_code == 0);
        let dead = stopped && !ready && no_restart;
        ContainerState {
            id: self.id.clone(),
            name: self.name.trim_start_matches('/').to_string(),
            service: self.service(),
            status: s.status.clone(),
            health,
            restart_count: self.restart_count,
            exit_code: s.exit_code,
            ready,
            dead,
        }
    }
}

/// Parse the JSON array `docker inspect` prints.
pub fn parse_containers(json: &str) -> Result<Vec<ContainerInspect>, serde_json::Error> {
    serde_json::from_str(json)
}

pub fn parse_images(json: &str) -> Result<Vec<ImageInspect>, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(status: &str, running: bool, exit: i64, health: Option<&str>, policy: &str) -> ContainerInspect {
        let health = health.map(|h| format!(r#","Health":{{"Status":"{h}","FailingStreak":0}}"#)).unwrap_or_default();
        let json = format!(
            r#"[{{"Id":"abc","Name":"/p_app_1","Image":"sha256:1","RestartCount":2,
            "State":{{"Status":"{status}","Running":{running},"Restarting":false,"ExitCode":{exit}{health}}},
            "Config":{{"User":"","Labels":{{"com.docker.compose.service":"app"}}}},
            "HostConfig":{{"RestartPolicy":{{"Name":"{policy}","MaximumRetryCount":0}}}}}}]"#
        );
        parse_containers(&json).unwrap().remove(0)
    }

    #[test]
    fn readiness_from_inspect() {
        let s = container("running", true, 0, Some("healthy"), "no").state(true);
        assert!(s.ready && !s.dead);
        assert_eq!((s.service.as_str(), s.name.as_str(), s.restart_count), ("app", "p_app_1", 2));
        assert!(!container("running", true, 0, Some("starting"), "no").state(true).ready);
        assert!(!container("running", true, 0, Some("unhealthy"), "no").state(true).ready);
        assert!(container("running", true, 0, None, "no").state(true).ready);
        // A one-shot dependency that finished is fine; the service under test must run.
        assert!(container("exited", false, 0, None, "no").state(false).ready);
        assert!(!container("exited", false, 0, None, "no").state(true).ready);
        let crashed = container("exited", false, 3, None, "no").state(false);
        assert!(!crashed.ready && crashed.dead);
        assert!(!container("exited", false, 3, None, "always").state(false).dead);
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
