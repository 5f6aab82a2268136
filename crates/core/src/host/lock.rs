//! The deploy lock: `<app-dir>/.gangplank/lock/`, made with `mkdir` (atomic on every filesystem), with
//! `owner.json` saying who holds it (docs/host-layout.md).
//!
//! Invariant: a lock is only ever removed by the run that made it (its random id is in owner.json), or
//! by an explicit `force-unlock` after the owner has been printed. A stale lock is never broken silently.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::exec::Executor;

/// Take the lock: exit 0 and print `acquired` then state.json (read under the lock, saving a round
/// trip), or exit 3 and print the current owner.json. Once it holds the lock it removes a registry
/// login (`docker-auth`) that a killed run left behind. Exit 6 when the app dir or one of gangplank's own
/// paths in it is a symlink: the lock is the first write of every step, so nothing is written through
/// a link to somewhere outside the app dir (issue 14).
pub const ACQUIRE_SCRIPT: &str = r#"dir=$1/.gangplank; lock=$dir/lock
for d in "$1" "$dir" "$lock" "$dir/state.json" "$dir/audit.log" "$dir/backups" "$dir/staging"; do
  if [ -L "$d" ]; then echo "$d is a symlink: gangplank never writes through one" >&2; exit 6; fi
done
if [ "${3:-}" = existing ] && [ ! -d "$dir" ]; then echo absent; exit 5; fi
mkdir -p -- "$dir" || exit 1
if mkdir -- "$lock" 2>/dev/null; then
  printf '%s\n' "$2" > "$lock/owner.json" || { rm -rf -- "$lock"; exit 1; }
  rm -rf -- "$dir/docker-auth"
  echo acquired
  if [ -f "$dir/state.json" ]; then cat -- "$dir/state.json"; fi
  exit 0
fi
cat -- "$lock/owner.json" 2>/dev/null
exit 3"#;

/// Release the lock only when owner.json carries our id. Whatever the holder staged and did not
/// switch in goes with it (a deploy that failed before its switch leaves no trace), and so does its
/// temporary registry login (`docker-auth`, which lives exactly as long as the lock).
pub const RELEASE_SCRIPT: &str = r#"lock=$1/.gangplank/lock
[ -d "$lock" ] || exit 0
if grep -qF -- "$2" "$lock/owner.json" 2>/dev/null; then rm -rf -- "$1/.gangplank/staging" "$1/.gangplank/docker-auth" "$lock"; else echo "lock belongs to another run" >&2; exit 4; fi"#;

/// Break whatever lock is there, printing its owner first.
pub const BREAK_SCRIPT: &str = r#"lock=$1/.gangplank/lock
[ -d "$lock" ] || exit 0
cat -- "$lock/owner.json" 2>/dev/null
rm -rf -- "$lock""#;

pub fn acquire_cmd(app_dir: &str, owner_json: &str) -> Cmd {
    Cmd::script(ACQUIRE_SCRIPT).arg(app_dir).arg(owner_json).privileged().timeout(Duration::from_secs(30))
}

/// Like [`acquire_cmd`], but creates nothing when the app dir was never deployed (exit 5, `absent`):
/// a rollback on a fresh host must leave it as it was.
pub fn acquire_existing_cmd(app_dir: &str, owner_json: &str) -> Cmd {
    acquire_cmd(app_dir, owner_json).arg("existing")
}

pub fn release_cmd(app_dir: &str, id: &str) -> Cmd {
    Cmd::script(RELEASE_SCRIPT).arg(app_dir).arg(id).privileged()
}

pub fn break_cmd(app_dir: &str) -> Cmd {
    Cmd::script(BREAK_SCRIPT).arg(app_dir).privileged()
}

/// Who holds a lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub run_url: String,
    #[serde(default)]
    pub git_sha: String,
    #[serde(default)]
    pub runner_host: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub pid: u32,
}

impl Owner {
    /// A sentence naming the owner and the lock's age.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if !self.action.is_empty() {
            parts.push(format!("{} of `{}`", self.action, self.tag));
        }
        if !self.run_url.is_empty() {
            parts.push(format!("run {}", self.run_url));
        }
        if !self.git_sha.is_empty() {
            parts.push(format!("commit {}", self.git_sha));
        }
        parts.push(format!(
            "runner host `{}` pid {}",
            if self.runner_host.is_empty() { "?" } else { &self.runner_host },
            self.pid
        ));
        if !self.started_at.is_empty() {
            let age = time::OffsetDateTime::parse(&self.started_at, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds());
            match age {
                Some(a) => parts.push(format!("started {} ({a}s ago)", self.started_at)),
                None => parts.push(format!("started {}", self.started_at)),
            }
        }
        parts.join(", ")
    }
}

fn describe_raw(raw: &str) -> String {
    match serde_json::from_str::<Owner>(raw.trim()) {
        Ok(o) => o.describe(),
        Err(_) if raw.trim().is_empty() => "an owner that has not written owner.json yet".to_string(),
        Err(_) => "an owner whose owner.json is unreadable".to_string(),
    }
}

/// Try to take the lock until `timeout`; then fail with exit 3 naming the owner.
/// `interrupted` is checked between attempts. Returns the text of state.json (empty when none).
pub fn acquire(
    exec: &mut dyn Executor,
    app_dir: &str,
    owner: &Owner,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<String> {
    acquire_with(exec, app_dir, owner, timeout, interrupted, true)?
        .ok_or_else(|| Error::failed("the app dir vanished while taking the lock"))
}

/// [`acquire`]; with `create: false`, `Ok(None)` when the app dir has never been deployed to (nothing
/// is created then).
pub fn acquire_with(
    exec: &mut dyn Executor,
    app_dir: &str,
    owner: &Owner,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
    create: bool,
) -> Result<Option<String>> {
    let json = serde_json::to_string(owner).expect("owner serialises");
    let cmd = if create { acquire_cmd(app_dir, &json) } else { acquire_existing_cmd(app_dir, &json) };
    let start = Instant::now();
    let mut announced = false;
    loop {
        let out = exec.run(&cmd)?;
        match out.status {
            5 if !create => return Ok(None),
            0 => {
                let text = out.stdout_str();
                return Ok(Some(text.split_once('\n').map(|(_, rest)| rest.to_string()).unwrap_or_default()));
            }
            3 => {
                let who = describe_raw(&out.stdout_str());
                if start.elapsed() >= timeout {
                    return Err(Error::locked(format!(
                        "another deploy holds the lock on {} ({who}) and did not release it within {}s",
                        exec.label(),
                        timeout.as_secs_f32()
                    ))
                    .hint(format!(
                        "wait for that run to finish; if it is dead, run again with `force-unlock: true` (lock: {app_dir}/.gangplank/lock)"
                    )));
                }
                if !announced {
                    crate::actions::info(format!("waiting for the lock on {}: held by {who}", exec.label()));
                    announced = true;
                }
                if interrupted() {
                    return Err(Error::interrupted("interrupted while waiting for the lock; nothing was changed"));
                }
                let left = timeout.saturating_sub(start.elapsed());
                std::thread::sleep(left.min(Duration::from_millis(500)));
            }
            6 => {
                return Err(Error::bad_input(format!(
                    "nothing was written on {}: {}",
                    exec.label(),
                    out.stderr_str().trim()
                ))
                .hint(format!(
                    "gangplank writes only inside `app-dir`: replace the link with a real folder or file, or set `app-dir` to the folder it points to ({app_dir})"
                )))
            }
            _ => {
                return Err(Error::failed(format!(
                    "cannot create the lock directory {app_dir}/.gangplank/lock on {}: {}",
                    exec.label(),
                    out.tail(3)
                ))
                .hint("check that `app-dir` is writable by the SSH user (or set `sudo: true`)"))
            }
        }
    }
}

/// Break a lock, printing its owner. Returns the description, or `None` when there was no lock.
pub fn force_unlock(exec: &mut dyn Executor, app_dir: &str) -> Result<Option<String>> {
    let out = exec.check(&break_cmd(app_dir), "breaking the lock")?;
    let raw = out.stdout_str();
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(describe_raw(&raw)))
}

pub fn release(exec: &mut dyn Executor, app_dir: &str, id: &str) -> Result<()> {
    exec.check(&release_cmd(app_dir, id), "releasing the lock").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Local, Output, Recording};

    #[test]
    fn command_lines_quote_the_app_dir() {
        assert_eq!(
            release_cmd("/opt/a b;$x", "id1").render(false),
            format!("sh -c {} gangplank '/opt/a b;$x' id1", crate::quote(RELEASE_SCRIPT))
        );
    }

    #[test]
    fn local_lock_is_exclusive_and_names_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("it's $app; x");
        let app = app.to_str().unwrap();
        let mut l = Local::new(false);
        let me = Owner { id: "id-1".into(), run_url: "https://x/run/1".into(), pid: 7, ..Default::default() };
        acquire(&mut l, app, &me, Duration::ZERO, &|| false).unwrap();
        let other = Owner { id: "id-2".into(), ..Default::default() };
        let err = acquire(&mut l, app, &other, Duration::from_millis(10), &|| false).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.message.contains("https://x/run/1") && err.message.contains("pid 7"), "{}", err.message);
        // Someone else's id cannot release it.
        assert!(release(&mut l, app, "id-2").is_err());
        release(&mut l, app, "id-1").unwrap();
        acquire(&mut l, app, &other, Duration::ZERO, &|| false).unwrap();
        let who = force_unlock(&mut l, app).unwrap().unwrap();
        assert!(who.contains("pid 0"), "{who}");
        assert_eq!(force_unlock(&mut l, app).unwrap(), None);
    }

    #[test]
    fn a_failing_mkdir_is_not_a_lock_conflict() {
        let mut r = Recording::new("h", false).reply("gangplank", Output { status: 1, ..Default::default() });
        let err = acquire(&mut r, "/x", &Owner::default(), Duration::ZERO, &|| false).unwrap_err();
        assert_eq!(err.exit_code(), 1);
    }
}
