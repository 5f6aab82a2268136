//! What gangplank keeps on a host, shared by every step that writes there (deploy-remote, rollback,
//! sync-secrets): the lock, time stamps, run metadata and audit lines (docs/host-layout.md).

pub mod lock;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cmd::Cmd;

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).expect("RFC 3339 formats every UTC time")
}

/// Now, as a sortable stamp for backup names (`20261122T153611.123Z`).
pub fn backup_stamp() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Who runs this deploy, for owner.json, state, audit and the record file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunMeta {
    pub git_sha: String,
    pub run_url: String,
    pub actor: String,
    pub runner_host: String,
}

impl RunMeta {
    /// From the runner's `GITHUB_*` variables (empty outside Actions) and this machine's host name.
    pub fn from_env() -> RunMeta {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let run_url = run_url().unwrap_or_default();
        let actor = match var("GITHUB_ACTOR") {
            a if a.is_empty() => var("USER"),
            a => a,
        };
        RunMeta { git_sha: var("GITHUB_SHA"), run_url, actor, runner_host: hostname() }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// One line of `audit.log`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine<'a> {
    pub time: String,
    pub action: &'a str,
    pub tag: &'a str,
    pub previous_tag: &'a str,
    pub result: &'a str,
    pub host: &'a str,
    pub run_url: &'a str,
    pub actor: &'a str,
}

impl AuditLine<'_> {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("audit line serialises")
    }
}

/// The run's URL from the runner's variables, when they are all set.
pub fn run_url() -> Option<String> {
    let v = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    Some(format!("{}/{}/actions/runs/{}", v("GITHUB_SERVER_URL")?, v("GITHUB_REPOSITORY")?, v("GITHUB_RUN_ID")?))
}

/// Append one line to `.gangplank/audit.log`; never through a symlinked `.gangplank` or `audit.log`, which
/// would append outside the app dir.
pub fn audit_cmd(app_dir: &str, line: &str) -> Cmd {
    Cmd::script(
        r#"for d in "$1/.gangplank" "$1/.gangplank/audit.log"; do
  if [ -L "$d" ]; then echo "$d is a symlink: gangplank never writes through one" >&2; exit 1; fi
done
mkdir -p -- "$1/.gangplank" && printf '%s\n' "$2" >> "$1/.gangplank/audit.log""#,
    )
    .arg(app_dir)
    .arg(line)
    .privileged()
}
