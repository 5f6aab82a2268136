//! The hosts of the `env-file` target before anything is written: one read-only preflight per host (sudo,
//! app dir, symlinks, lock), and the folders a fresh host gets (docs/host-layout.md, docs/actions.md
//! "sync-secrets").
//!
//! Why every host is checked first: `apply` writes GitHub before the hosts, and GitHub cannot be put back.
//! A host that would refuse the write (an unknown host key, a `sudo` that prompts, an app dir the deploy
//! user cannot create, a symlink in the way) must stop the run while nothing has changed anywhere.
//!
//! What a fresh host gets: a missing app dir is created when the SSH user may create it (its nearest
//! existing parent is a folder the user can write), with mode 0755 as every folder on its way; otherwise
//! preflight refuses it with the one-time `sudo install -d` that makes it. `.gangplank` is made 0700, like
//! the folders under it, and the `.env`'s folders below the app dir 0755, like the folders a deploy makes for
//! live files (compose reads the `.env` there). Nothing is created outside the app dir but the app dir's
//! own missing parents, and nothing through a symlink.

use gangplank_core::host::lock;
use gangplank_core::{quote, Cmd, Error, Executor};

/// Prints `user=` (who the commands run as), `group=` (the primary group of the login user), then one
/// `path=<link> <kind> <writable> <path>` line per path given: `link` 1 when the path itself is a symlink,
/// `kind` what it is after following links (`dir`, `file`, `other`, `missing`), `writable` `w` or `-`.
/// Then `@@owner` and the lock's owner.json when the lock is held. Reads only.
pub const PREFLIGHT_SCRIPT: &str = r#"login=$1; lock=$2; shift 2
printf 'user=%s\n' "$(id -un)"
printf 'group=%s\n' "$(id -gn -- "$login" 2>/dev/null || id -gn)"
for p in "$@"; do
  l=0; if [ -L "$p" ]; then l=1; fi
  if [ -d "$p" ]; then k=dir; elif [ -f "$p" ]; then k=file; elif [ -e "$p" ]; then k=other; else k=missing; fi
  w=-; if [ "$k" != missing ] && [ -w "$p" ] && { [ "$k" != dir ] || [ -x "$p" ]; }; then w=w; fi
  printf 'path=%s %s %s %s\n' "$l" "$k" "$w" "$p"
done
if [ -d "$lock" ] && [ ! -L "$lock" ]; then echo @@owner; cat -- "$lock/owner.json" 2>/dev/null; fi
exit 0"#;

/// Makes a missing app dir (0755, with its missing parents) and its `.gangplank` (0700), never through a
/// symlink, before the lock is taken there (the lock lives in `.gangplank`). Prints `created <path>` for
/// each folder it made, top down (paths hold no line break: `absolute_path` refuses control characters).
/// Exit 6 for a symlink, as the lock's own script.
pub const PREPARE_SCRIPT: &str = r#"set -eu
app=$1; g=$1/.gangplank
for d in "$app" "$g"; do
  if [ -L "$d" ]; then echo "$d is a symlink: gangplank never writes through one" >&2; exit 6; fi
done
if [ ! -d "$app" ]; then
  p=$app; new=
  while [ ! -e "$p" ] && [ ! -L "$p" ]; do new="$p
$new"; p=$(dirname -- "$p"); done
  (umask 022 && mkdir -p -- "$app")
  printf '%s' "$new" | while IFS= read -r d; do echo "created $d"; done
fi
if [ ! -d "$g" ]; then (umask 077 && mkdir -- "$g"); echo "created $g"; fi"#;

pub fn prepare_cmd(app_dir: &str) -> Cmd {
    Cmd::script(PREPARE_SCRIPT).arg(app_dir).privileged()
}

/// What preflight learnt about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The folders `apply` makes, top down (the app dir and its missing parents, `.gangplank` in it, the
    /// `.env`'s folders); `.gangplank/backups`, made with the first backup, is not listed.
    pub creates: Vec<String>,
    /// Whether the app dir or its `.gangplank` must be made before the lock can be taken ([`prepare_cmd`]).
    pub prepare: bool,
    /// Who holds the host's lock now, when someone does; `apply` waits for it up to `lock-timeout`.
    pub lock_holder: Option<String>,
}

/// What the script said about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathFacts {
    link: bool,
    kind: String,
    writable: bool,
}

impl PathFacts {
    fn exists(&self) -> bool {
        self.kind != "missing" || self.link
    }
}

/// Every folder above `path`, from `/` down (`/opt/app` → `/`, `/opt`).
fn parents(path: &str) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for i in 1..parts.len() {
        out.push(format!("/{}", parts[..i].join("/")));
    }
    out
}

/// The folders strictly below `app_dir` that hold `env_path`, top down (`/a`, `/a/x/y/.env` → `/a/x`,
/// `/a/x/y`). `env_path` is inside `app_dir` (checked with the inputs).
pub fn env_folders(app_dir: &str, env_path: &str) -> Vec<String> {
    let rel = env_path.strip_prefix(app_dir).unwrap_or("").trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    (1..parts.len()).map(|i| format!("{app_dir}/{}", parts[..i].join("/"))).collect()
}

/// The `sudo install -d` that makes `app_dir` the SSH user's, once, on the host.
pub fn install_hint(user: &str, group: &str, app_dir: &str) -> String {
    format!("sudo install -d -o {} -g {} -m 0755 {}", quote(user), quote(group), quote(app_dir))
}

/// Check one host without changing it: `sudo -n true` when `sudo` is on, then [`PREFLIGHT_SCRIPT`]. Returns
/// what `apply` will create and who holds the lock, or every reason the host would refuse the write.
pub fn preflight(
    ex: &mut dyn Executor,
    login: &str,
    app_dir: &str,
    env_path: &str,
) -> std::result::Result<Facts, Vec<Error>> {
    let host = ex.label().to_string();
    if ex.sudo() {
        let o = ex.run(&Cmd::new("sudo").args(["-n", "true"])).map_err(|e| vec![e])?;
        if !o.success() {
            return Err(vec![Error::bad_input(format!(
                "`sudo -n true` fails on {host}: sudo would ask for a password ({})",
                o.tail(1)
            ))
            .hint("allow the deploy user passwordless sudo (e.g. `deploy ALL=(root) NOPASSWD: /bin/sh`), or set `sudo: false` and give the user the app dir")]);
        }
    }
    let g = format!("{app_dir}/.gangplank");
    let own: Vec<String> =
        ["lock", "state.json", "audit.log", "backups", "staging"].iter().map(|p| format!("{g}/{p}")).collect();
    let folders = env_folders(app_dir, env_path);
    let above = parents(app_dir);
    let mut paths = above.clone();
    paths.push(app_dir.to_string());
    paths.push(g.clone());
    paths.extend(own.iter().cloned());
    paths.extend(folders.iter().cloned());
    paths.push(env_path.to_string());
    let out = ex
        .run(&Cmd::script(PREFLIGHT_SCRIPT).arg(login).arg(format!("{g}/lock")).args(&paths).privileged())
        .map_err(|e| vec![e])?;
    let all = out.stdout_str();
    let (text, owner) = match all.split_once("\n@@owner\n") {
        Some((t, o)) => (t.to_string(), Some(o.to_string())),
        None => (all.clone(), None),
    };
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).unwrap_or("");
    let (user, group) = (get("user").to_string(), get("group").to_string());
    let mut facts_of = std::collections::BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("path=") else { continue };
        let mut f = rest.splitn(4, ' ');
        if let (Some(link), Some(kind), Some(w), Some(p)) = (f.next(), f.next(), f.next(), f.next()) {
            facts_of.insert(p.to_string(), PathFacts { link: link == "1", kind: kind.into(), writable: w == "w" });
        }
    }
    if !out.success() || user.is_empty() || facts_of.len() < paths.len() {
        return Err(vec![Error::bad_input(format!(
            "the preflight checks could not run on {host}: {}",
            out.tail(3).trim().replace('\n', " / ")
        ))
        .hint("check that the SSH user has a POSIX shell (`sh`) on the host")]);
    }
    let at = |p: &str| facts_of.get(p).cloned().expect("every path was printed");
    let group = if group.is_empty() { login.to_string() } else { group };
    let setup = install_hint(login, &group, app_dir);

    let mut errs = vec![];
    let mut facts = Facts::default();
    let link_err = |p: &str| {
        Error::bad_input(format!(
            "`{p}` on {host} is a symlink: gangplank writes only inside app-dir, never through or over a link"
        ))
        .hint("replace the link with the folder or file itself (or set `app-dir` to the folder it points to), then run again")
    };

    // The app dir: there and writable, or missing and creatable by the SSH user.
    let app = at(app_dir);
    let creating = !app.exists();
    if app.link {
        errs.push(link_err(app_dir));
    } else if creating {
        // The nearest folder above that exists (following links: `/opt` may be one) must take a new folder.
        let top = above.iter().rev().find(|p| at(p).exists()).cloned().unwrap_or_else(|| "/".into());
        let t = at(&top);
        if t.kind != "dir" || !t.writable {
            errs.push(
                Error::bad_input(format!(
                    "app-dir `{app_dir}` does not exist on {host}, and `{user}` cannot create it: `{top}` is not {}",
                    if t.kind == "dir" { format!("writable by `{user}`") } else { "a folder".to_string() }
                ))
                .hint(format!(
                    "create it once on the host and give it to the SSH user: `{setup}` (or set `sudo: true`)"
                )),
            );
        } else {
            facts.creates.extend(above.iter().filter(|p| !at(p).exists()).cloned());
            facts.creates.push(app_dir.to_string());
            facts.prepare = true;
        }
    } else if app.kind != "dir" {
        errs.push(
            Error::bad_input(format!("app-dir `{app_dir}` on {host} exists and is not a folder"))
                .hint("remove it or set `app-dir` to another folder"),
        );
    } else if !app.writable {
        errs.push(
            Error::bad_input(format!("app-dir `{app_dir}` on {host} is not writable by `{user}`"))
                .hint(format!("give it to the SSH user once on the host: `{setup}` (or set `sudo: true`)")),
        );
    }

    // gangplank's own paths: never links; `.gangplank` and `backups` folders the user can write.
    for p in std::iter::once(&g).chain(own.iter()) {
        let f = at(p);
        if f.link {
            errs.push(link_err(p));
            continue;
        }
        let folder = p == &g || p.ends_with("/backups") || p.ends_with("/lock") || p.ends_with("/staging");
        if !f.exists() {
            if p == &g {
                facts.creates.push(p.clone());
                facts.prepare = true;
            }
        } else if folder && f.kind != "dir" {
            errs.push(
                Error::bad_input(format!("`{p}` on {host} exists and is not a folder"))
                    .hint("gangplank keeps its lock, backups and state there: remove what is in the way"),
            );
        } else if (p == &g || p.ends_with("/backups") || p.ends_with("/audit.log")) && !f.writable {
            errs.push(Error::bad_input(format!("`{p}` on {host} is not writable by `{user}`")).hint(format!(
                "give the app dir to the SSH user: `sudo chown -R {} {}` (or set `sudo: true`)",
                quote(&format!("{login}:{group}")),
                quote(app_dir)
            )));
        }
    }

    // The `.env`'s folders below the app dir: never links, folders where they exist, and the deepest one
    // that exists must take the file (or the next folder).
    let mut deepest = if creating { None } else { Some(app_dir.to_string()) };
    for p in &folders {
        let f = at(p);
        if f.link {
            errs.push(link_err(p));
        } else if !f.exists() {
            facts.creates.push(p.clone());
        } else if f.kind != "dir" {
            errs.push(
                Error::bad_input(format!("`{p}` on {host} is not a folder, so `{env_path}` cannot be written"))
                    .hint("remove what is in the way, or set `remote-env-path` to where compose reads the `.env`"),
            );
        } else {
            deepest = Some(p.clone());
        }
    }
    if let Some(d) = deepest.filter(|d| d != app_dir) {
        if !at(&d).writable {
            errs.push(
                Error::bad_input(format!(
                    "`{d}` on {host} is not writable by `{user}`, so `{env_path}` cannot be written"
                ))
                .hint(format!(
                    "give the app dir to the SSH user: `sudo chown -R {} {}` (or set `sudo: true`)",
                    quote(&format!("{login}:{group}")),
                    quote(app_dir)
                )),
            );
        }
    }
    let env = at(env_path);
    if env.link {
        errs.push(link_err(env_path).hint(
            "gangplank writes `.env` and its backups only as real files: replace the link with the file itself, or point `remote-env-path` at the file the link names",
        ));
    } else if env.exists() && env.kind != "file" {
        errs.push(
            Error::bad_input(format!("`{env_path}` on {host} exists and is not a file"))
                .hint("remove what is in the way, or set `remote-env-path` to another file"),
        );
    }

    if let Some(raw) = owner {
        facts.lock_holder = Some(match serde_json::from_str::<lock::Owner>(raw.trim()) {
            Ok(o) => o.describe(),
            Err(_) if raw.trim().is_empty() => "an owner that has not written owner.json yet".to_string(),
            Err(_) => "an owner whose owner.json is unreadable".to_string(),
        });
    }
    if errs.is_empty() {
        Ok(facts)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::Local;

    #[test]
    fn folders_above_and_below() {
        assert_eq!(parents("/opt/app"), ["/", "/opt"]);
        assert_eq!(parents("/a"), ["/"]);
        assert_eq!(env_folders("/opt/app", "/opt/app/.env"), Vec::<String>::new());
        assert_eq!(env_folders("/opt/app", "/opt/app/x/y/.env"), ["/opt/app/x", "/opt/app/x/y"]);
        assert_eq!(
            install_hint("deploy", "deploy", "/opt/my app"),
            "sudo install -d -o deploy -g deploy -m 0755 '/opt/my app'"
        );
    }

    fn path(p: &std::path::Path) -> String {
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn a_fresh_app_dir_is_created_below_a_writable_folder_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = path(&dir.path().join("srv/it's $app"));
        let env = format!("{app}/deploy/compose/.env");
        let mut l = Local::new(false);
        let me = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let f = preflight(&mut l, &me, &app, &env).unwrap();
        assert_eq!(
            f.creates,
            [
                path(&dir.path().join("srv")),
                app.clone(),
                format!("{app}/.gangplank"),
                format!("{app}/deploy"),
                format!("{app}/deploy/compose"),
            ]
        );
        assert_eq!(f.lock_holder, None);
        assert!(f.prepare);
        assert!(!dir.path().join("srv").exists(), "preflight created something");

        // A linked folder on the way to the `.env` is refused.
        std::fs::create_dir_all(&app).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), format!("{app}/deploy")).unwrap();
        let errs = preflight(&mut l, &me, &app, &env).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("/deploy` on local is a symlink"), "{}", errs[0].message);
        assert_eq!(errs[0].exit_code(), 2);
    }
}
