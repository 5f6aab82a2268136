//! What gangplank keeps on a host (`.gangplank/state.json`, `audit.log`) and the local record file
//! (docs/host-layout.md, docs/actions.md "record file"). None of these ever holds a secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use gangplank_core::host::{backup_stamp, now_rfc3339, AuditLine, RunMeta};

/// How many past deploys `state.json` remembers.
pub const HISTORY_LEN: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub app: String,
    #[serde(default)]
    pub current: Option<Current>,
    #[serde(default)]
    pub history: Vec<Past>,
    /// The journal of a deploy under way: written (with the rest of this file, in one rename) before
    /// the first live file is replaced, cleared by the rename that records the outcome. Found by the
    /// next run that takes the lock, it says exactly what to put back (ARCHITECTURE.md, "All or nothing").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// What an unfinished deploy changed or may have changed on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The tag being deployed.
    pub tag: String,
    /// The tag serving before (none on a first deploy).
    #[serde(default)]
    pub previous_tag: Option<String>,
    /// Compose files of the previous release, to start it again.
    #[serde(default)]
    pub previous_compose_files: Vec<String>,
    /// Compose files of the new release, to stop it on a first deploy.
    #[serde(default)]
    pub compose_files: Vec<String>,
    /// Backup stamp: `backups/<file>.<stamp>` is the file's previous content, `<file>.<stamp>.new`
    /// marks a file that did not exist before.
    pub stamp: String,
    /// Every file the switch may have replaced or created, relative to the app dir.
    pub files: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub run_url: String,
    #[serde(default)]
    pub started_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub tag: String,
    /// Service → image ID the service's container runs.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// Service → repository digest (`repo@sha256:…`) of the image it runs, as the registry named it
    /// when this deploy pulled it (what push-registry's `digests` and `expect-digests` speak of).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    pub deployed_at: String,
    #[serde(default)]
    pub git_sha: String,
    #[serde(default)]
    pub run_url: String,
    /// Compose file names relative to the app dir, so `rollback` can use what is on the host.
    #[serde(default)]
    pub compose_files: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Past {
    pub tag: String,
    pub deployed_at: String,
    /// `replaced` (was serving, then a newer deploy replaced it), `failed` (never passed the gate),
    /// `rolled-back` (was serving, then a rollback went back past it).
    pub status: String,
}

impl State {
    pub fn new(app: &str) -> State {
        State { app: app.to_string(), ..Default::default() }
    }

    pub fn parse(text: &str) -> Result<State, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("state serialises");
        s.push('\n');
        s
    }

    pub fn current_tag(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.tag.as_str())
    }

    /// The tag to go back to: the newest one that served and was replaced, other than the current one.
    pub fn previous_tag(&self) -> Option<&str> {
        let cur = self.current_tag();
        self.history.iter().find(|p| p.status == "replaced" && Some(p.tag.as_str()) != cur).map(|p| p.tag.as_str())
    }

    /// `new` passed the gate and now serves; the old current goes to history as `how`.
    pub fn promote(&mut self, new: Current, how: &str) {
        if let Some(old) = self.current.take() {
            if old.tag != new.tag {
                self.push_history(Past { tag: old.tag, deployed_at: old.deployed_at, status: how.to_string() });
            }
        }
        self.current = Some(new);
    }

    /// A tag that was tried and did not become current (`failed`, `interrupted`, `pull-failed`…).
    pub fn record_failure(&mut self, tag: &str, at: &str, status: &str) {
        self.push_history(Past { tag: tag.to_string(), deployed_at: at.to_string(), status: status.into() });
    }

    fn push_history(&mut self, p: Past) {
        self.history.insert(0, p);
        self.history.truncate(HISTORY_LEN);
    }
}

/// The deploy record written on the runner (docs/actions.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub app: String,
    pub hosts: Vec<String>,
    pub deployed_tag: String,
    pub previous_tag: String,
    /// `deployed`, `rolled-back` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub git_sha: String,
    pub run_url: String,
    #[serde(default)]
    pub action: String,
    /// How each host ended, in the order the run worked on them (the summary's table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<HostResult>,
    /// Service → repository digest (`repo@sha256:…`) of the image that runs, from the first host
    /// deployed (deploys that pulled the images themselves).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
}

/// One host's line in the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    pub previous_tag: String,
    pub new_tag: String,
    /// `deployed`, `rolled back`, `rolled back (another host failed)`, `failed`, …
    pub result: String,
}

impl Record {
    /// Written atomically, and only over a record (or an empty file): [`crate::RECORD_OUTPUT`].
    pub fn write(&self, path: &std::path::Path) -> gangplank_core::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("record serialises");
        gangplank_core::local::write_output(path, (text + "\n").as_bytes(), &crate::RECORD_OUTPUT)
    }

    pub fn read(path: &std::path::Path) -> Option<Record> {
        let text = gangplank_core::local::read_input(path, "record-file", gangplank_core::local::TEXT_LIMIT).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(tag: &str) -> Current {
        Current { tag: tag.into(), deployed_at: "t".into(), ..Default::default() }
    }

    #[test]
    fn previous_tag_follows_replacements_and_skips_failures() {
        let mut s = State::new("app");
        assert_eq!(s.previous_tag(), None);
        s.promote(cur("v1"), "replaced");
        assert_eq!(s.previous_tag(), None);
        s.promote(cur("v2"), "replaced");
        assert_eq!((s.current_tag(), s.previous_tag()), (Some("v2"), Some("v1")));
        s.record_failure("broken", "t", "failed");
        assert_eq!(s.previous_tag(), Some("v1"));
        // A rollback to v1: v2 is remembered as rolled back, and v1 is not its own previous.
        s.promote(cur("v1"), "rolled-back");
        assert_eq!((s.current_tag(), s.previous_tag()), (Some("v1"), None));
        // Redeploying the same tag does not push history.
        let n = s.history.len();
        s.promote(cur("v1"), "replaced");
        assert_eq!(s.history.len(), n);
        let back = State::parse(&s.to_json()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn stamps_sort_as_time() {
        let a = backup_stamp();
        assert_eq!(a.len(), "20261122T153611.123Z".len(), "{a}");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
