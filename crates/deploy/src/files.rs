//! The files a deploy uploads: read locally before anything connects, staged on the host with a backup
//! of every file about to be replaced, then written atomically (docs/host-layout.md).

use std::path::{Component, Path, PathBuf};

use gangplank_core::cmd::Cmd;
use gangplank_core::error::Error;
use gangplank_core::exec::sha256_hex;

/// One file to upload.
#[derive(Clone, PartialEq, Eq)]
pub struct Upload {
    pub local: PathBuf,
    /// Path relative to the app dir.
    pub remote: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl std::fmt::Debug for Upload {
    // Never the content: a `.env` is secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upload({} -> {}, {:o}, {} bytes)", self.local.display(), self.remote, self.mode, self.content.len())
    }
}

impl Upload {
    pub fn sha256(&self) -> String {
        sha256_hex(&self.content)
    }
}

/// A relative path that stays inside the app dir, `/`-separated.
fn clean_relative(p: &Path) -> Option<String> {
    let mut parts = vec![];
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The mode an uploaded file keeps on the host: its local permission bits, so a 0600 or 0640 file stays
/// as private as it is in the repository (docs/host-layout.md). Never wider than the local file, and
/// narrower in three ways: no set-user-ID, set-group-ID or sticky bit (they mean nothing in a
/// checkout and a set-ID file is dangerous on a server), no write for group and others (a checkout made
/// under `umask 000` must not leave world-writable files in the app dir), and always readable by its
/// owner (backups and restores copy it). The env file does not come here: it is always 0600.
pub fn mode_of(local_mode: u32) -> u32 {
    (local_mode & 0o755) | 0o400
}

/// Where a listed compose file or `files` entry lands, relative to the app dir: the host layout mirrors
/// the repository (the working directory), so relative paths in compose files resolve on the host as
/// they do here. An absolute path inside the repository keeps its place in it; one outside goes under
/// its base name. `None`: it would land outside the app dir.
pub fn remote_path(p: &Path) -> Option<String> {
    if p.is_absolute() {
        let inside = std::env::current_dir().ok().and_then(|cwd| p.strip_prefix(cwd).ok().and_then(clean_relative));
        return inside.or_else(|| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    clean_relative(p)
}

/// Where the env file lands: `.env` in the project directory, the first compose file's folder, which is
/// where compose reads it.
pub fn env_remote(compose_files: &[PathBuf]) -> String {
    let project = compose_files
        .first()
        .and_then(|c| remote_path(c))
        .and_then(|r| Path::new(&r).parent().map(|p| p.to_string_lossy().into_owned()).filter(|p| !p.is_empty()));
    match project {
        Some(dir) => format!("{dir}/.env"),
        None => ".env".into(),
    }
}

/// The folders `files` lists (relative to the app dir), with every folder below them, empty ones too.
pub fn listed_folders(files: &[PathBuf]) -> Vec<String> {
    let mut out = vec![];
    for f in files {
        let Some(base) = remote_path(f) else { continue };
        let mut stack = vec![(f.clone(), base)];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            out.push(rel.clone());
            for e in rd.filter_map(|e| e.ok()) {
                if e.path().is_dir() {
                    stack.push((e.path(), format!("{rel}/{}", e.file_name().to_string_lossy())));
                }
            }
        }
    }
    out
}

/// Collect the uploads: compose files and `files` (files or folders) under their path in the repository
/// ([`remote_path`]) with their local mode ([`mode_of`]), the env file as `.env` in the project directory
/// ([`env_remote`], always 0600, whatever its local mode). Every
/// missing or unreadable file is an error; all are returned at once.
pub fn collect(compose_files: &[PathBuf], files: &[PathBuf], env_file: Option<&Path>) -> (Vec<Upload>, Vec<Error>) {
    let mut ups = vec![];
    let mut errs = vec![];
    let read =
        |local: &Path, remote: String, mode: Option<u32>, what: &str, ups: &mut Vec<Upload>, errs: &mut Vec<Error>| {
            match std::fs::metadata(local).and_then(|m| std::fs::read(local).map(|c| (m, c))) {
                Ok((m, content)) => ups.push(Upload {
                    local: local.to_path_buf(),
                    remote,
                    mode: mode.unwrap_or_else(|| {
                        use std::os::unix::fs::PermissionsExt;
                        mode_of(m.permissions().mode())
                    }),
                    content,
                }),
                Err(e) => errs
                    .push(Error::bad_input(format!("{what} `{}` cannot be read: {e}", local.display())).hint(
                    "check the path: it is relative to the working directory of the step (usually the repository root)",
                )),
            }
        };
    for c in compose_files {
        let Some(name) = remote_path(c) else {
            errs.push(
                Error::bad_input(format!("compose file `{}` would land outside the app dir", c.display()))
                    .hint("list compose files by a path below the working directory (the repository), without `..`"),
            );
            continue;
        };
        read(c, name, None, "compose file", &mut ups, &mut errs);
    }
    for f in files {
        let Some(base) = remote_path(f).map(PathBuf::from) else {
            errs.push(
                Error::bad_input(format!("file `{}` would land outside the app dir", f.display()))
                    .hint("list files by a path below the working directory, without `..`"),
            );
            continue;
        };
        if f.is_dir() {
            let mut stack = vec![(f.clone(), base)];
            while let Some((dir, rel)) = stack.pop() {
                let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
                    Err(e) => {
                        errs.push(Error::bad_input(format!("folder `{}` cannot be read: {e}", dir.display())));
                        continue;
                    }
                };
                entries.sort_by_key(|e| e.file_name());
                for e in entries {
                    let p = e.path();
                    let r = rel.join(e.file_name());
                    if p.is_dir() {
                        stack.push((p, r));
                    } else {
                        read(&p, r.to_string_lossy().into_owned(), None, "file", &mut ups, &mut errs);
                    }
                }
            }
        } else {
            read(f, base.to_string_lossy().into_owned(), None, "file", &mut ups, &mut errs);
        }
    }
    if let Some(env) = env_file {
        read(env, env_remote(compose_files), Some(0o600), "env-file", &mut ups, &mut errs);
    }
    (ups, errs)
}

/// Make an empty staging folder for this deploy (`.gangplank/staging/<stamp>/…`): uploads land there,
/// never on live files. A staging folder left by a killed run is removed (we hold the lock). Refuses
/// an app dir whose `.gangplank` folders are symlinks, so nothing is written outside the app dir.
pub const STAGE_SCRIPT: &str = r#"set -u
app=$1; stamp=$2; shift 2
g=$app/.gangplank
for d in "$app" "$g" "$g/staging" "$g/backups"; do
  if [ -L "$d" ]; then echo "$d is a symlink: refusing to write through it" >&2; exit 1; fi
done
umask 077
rm -rf -- "$g/staging" && mkdir -p -- "$g/staging/$stamp" "$g/backups" || exit 1
for rel in "$@"; do mkdir -p -- "$(dirname -- "$g/staging/$stamp/$rel")" || exit 1; done"#;

pub fn stage_cmd(app_dir: &str, stamp: &str, rels: &[String]) -> Cmd {
    Cmd::script(STAGE_SCRIPT).arg(app_dir).arg(stamp).args(rels).privileged().timeout(STEP_TIMEOUT)
}

/// Where a file is staged before the switch.
pub fn staged_path(app_dir: &str, stamp: &str, rel: &str) -> String {
    format!("{app_dir}/.gangplank/staging/{stamp}/{rel}")
}

/// The switch: write state.json with the journal (`pending`) first, then back up every live file that
/// will be replaced (`backups/<rel>.<stamp>`, mode kept by `cp -p`) or mark it new (`<rel>.<stamp>.new`),
/// then move the staged files into place (`mv` keeps the mode the upload set). Every write stays inside
/// the app dir: a destination, a folder on its way, a folder under `backups/` or one of gangplank's own
/// paths that is a symlink is refused before anything moves. Folders made for live files get 0755 (the
/// files in them keep their own modes; a 0700 folder would hide a bind-mounted `./conf` from a container
/// that runs as another user); folders under `.gangplank` stay 0700. Prints `same|changed|new <rel>` per
/// file.
pub const SWITCH_SCRIPT: &str = r#"set -u
durable() { sync -- "$@" 2>/dev/null || sync; }
app=$1; stamp=$2; state=$3; shift 3
g=$app/.gangplank; st=$g/staging/$stamp; b=$g/backups
umask 077
nolink() { if [ -L "$1" ]; then echo "$1 is a symlink: refusing to write through it" >&2; exit 1; fi; }
for d in "$app" "$g" "$g/state.json" "$g/staging" "$b"; do nolink "$d"; done
for rel in "$@"; do
  for top in "$app" "$b"; do
    d=$(dirname -- "$top/$rel")
    while [ "$d" != "$top" ] && [ "$d" != / ] && [ "$d" != . ]; do nolink "$d"; d=$(dirname -- "$d"); done
  done
  dest=$app/$rel
  if [ -L "$dest" ]; then echo "$dest is a symlink: refusing to replace it" >&2; exit 1; fi
  nolink "$b/$rel.$stamp"; nolink "$b/$rel.$stamp.new"
  [ -f "$st/$rel" ] || { echo "the staged copy of $rel is missing" >&2; exit 1; }
done
tmp=$g/.state.json.new.$$
{ printf '%s' "$state" > "$tmp" && chmod 644 "$tmp" && mv -f -- "$tmp" "$g/state.json"; } || { rm -f -- "$tmp"; echo "cannot write $g/state.json" >&2; exit 1; }
for rel in "$@"; do
  dest=$app/$rel
  mkdir -p -- "$(dirname -- "$b/$rel")" || exit 1
  (umask 022 && mkdir -p -- "$(dirname -- "$dest")") || exit 1
  if [ -e "$dest" ]; then
    if cmp -s -- "$st/$rel" "$dest"; then echo "same $rel"; continue; fi
    cp -p -- "$dest" "$b/$rel.$stamp" || exit 1
    echo "changed $rel"
  else
    : > "$b/$rel.$stamp.new" || exit 1
    echo "new $rel"
  fi
done
# The journal and the backups reach the disk before any live file changes; then the renames do.
# Only these files and folders: a global `sync` flushes every filesystem of a busy server.
for rel in "$@"; do if [ -f "$b/$rel.$stamp" ]; then durable "$b/$rel.$stamp" "$(dirname -- "$b/$rel.$stamp")"; fi; done
durable "$g/state.json" "$g"
for rel in "$@"; do mv -f -- "$st/$rel" "$app/$rel" || exit 1; done
rm -rf -- "$g/staging"
for rel in "$@"; do durable "$(dirname -- "$app/$rel")"; done"#;

pub fn switch_cmd(app_dir: &str, stamp: &str, state_json: &str, rels: &[String]) -> Cmd {
    Cmd::script(SWITCH_SCRIPT).arg(app_dir).arg(stamp).arg(state_json).args(rels).privileged().timeout(STEP_TIMEOUT)
}

/// Put the files of a switch back: a file with a backup gets it again (atomically, `cp -p` keeping its
/// mode), a file that was new goes. Idempotent, so a repair can run it again after a killed restore. A
/// file whose folder or backup became a symlink since the switch is left alone and reported (exit 1):
/// a repair never writes or removes outside the app dir.
pub const RESTORE_SCRIPT: &str = r#"set -u
durable() { sync -- "$@" 2>/dev/null || sync; }
app=$1; stamp=$2; shift 2
b=$app/.gangplank/backups; rc=0
linked() {
  for top in "$app" "$b"; do
    d=$(dirname -- "$top/$1")
    while [ "$d" != / ] && [ "$d" != . ]; do
      if [ -L "$d" ]; then echo "$d is a symlink: $1 is not put back through it" >&2; return 0; fi
      [ "$d" = "$app" ] && break
      d=$(dirname -- "$d")
    done
  done
  if [ -L "$b/$1.$stamp" ]; then echo "$b/$1.$stamp is a symlink: $1 is not put back from it" >&2; return 0; fi
  return 1
}
for rel in "$@"; do
  dest=$app/$rel
  if linked "$rel"; then rc=1; continue; fi
  if [ -f "$b/$rel.$stamp" ]; then
    tmp=$(dirname -- "$dest")/.$(basename -- "$dest").gangplank-restore.$$
    { cp -p -- "$b/$rel.$stamp" "$tmp" && mv -f -- "$tmp" "$dest"; } || { rm -f -- "$tmp"; rc=1; }
  elif [ -e "$b/$rel.$stamp.new" ]; then
    rm -f -- "$dest" || rc=1
  fi
done
rm -rf -- "$app/.gangplank/staging"
for rel in "$@"; do if [ -e "$app/$rel" ]; then durable "$app/$rel"; fi; durable "$(dirname -- "$app/$rel")"; done
exit $rc"#;

pub fn restore_cmd(app_dir: &str, stamp: &str, rels: &[String]) -> Cmd {
    Cmd::script(RESTORE_SCRIPT).arg(app_dir).arg(stamp).args(rels).privileged().timeout(STEP_TIMEOUT)
}

/// Deadline of the short bookkeeping scripts (stage, switch, restore, finish).
pub const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The end of a successful deploy in one round trip: write state.json (temporary name, then rename),
/// append the audit line, list the tags of each image repository (`tag=REPO<TAB>TAG`, newest first),
/// keep the newest `keep` backups of each uploaded file, and release the lock when `lock_id` is ours.
pub const FINISH_SCRIPT: &str = r#"set -u
app=$1; state=$2; line=$3; keep=$4; lockid=$5; nrepos=$6; shift 6
g=$app/.gangplank; tmp=$g/.state.json.new.$$
umask 022
{ printf '%s' "$state" > "$tmp" && mv -f -- "$tmp" "$g/state.json"; } || { rm -f -- "$tmp"; echo "cannot write $g/state.json" >&2; exit 1; }
printf '%s\n' "$line" >> "$g/audit.log" || exit 1
i=0
while [ "$i" -lt "$nrepos" ]; do
  repo=$1; shift; i=$((i+1))
  docker image ls --format '{{.Tag}}' "$repo" | while IFS= read -r t; do printf 'tag=%s\t%s\n' "$repo" "$t"; done
done
prune() { total=0; for f in "$@"; do [ -e "$f" ] && total=$((total+1)); done
  i=0; for f in "$@"; do [ -e "$f" ] || continue; i=$((i+1)); [ "$i" -le $((total-keep)) ] && rm -f -- "$f"; done; return 0; }
for rel in "$@"; do prune "$g/backups/$rel".*; done
rm -rf -- "$g/staging"
if [ -n "$lockid" ] && grep -qF -- "$lockid" "$g/lock/owner.json" 2>/dev/null; then rm -rf -- "$g/docker-auth" "$g/lock"; fi
exit 0"#;

pub fn finish_cmd(
    app_dir: &str,
    state_json: &str,
    audit_line: &str,
    keep_backups: usize,
    lock_id: &str,
    repos: &[String],
    rels: &[String],
) -> Cmd {
    Cmd::script(FINISH_SCRIPT)
        .arg(app_dir)
        .arg(state_json)
        .arg(audit_line)
        .arg(keep_backups.to_string())
        .arg(lock_id)
        .arg(repos.len().to_string())
        .args(repos)
        .args(rels)
        .privileged()
        .timeout(STEP_TIMEOUT)
}

/// Parse the `tag=REPO<TAB>TAG` lines of [`FINISH_SCRIPT`], in order.
pub fn parse_tags(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("tag="))
        .filter_map(|l| l.split_once('\t'))
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect()
}

/// Remove image references, never forced: an image a container still uses stays. Prints what went.
pub fn remove_images_cmd(refs: &[String]) -> Cmd {
    Cmd::script(r#"for r in "$@"; do docker image rm "$r" >/dev/null 2>&1 && printf '%s\n' "$r"; done; exit 0"#)
        .args(refs)
        .privileged()
}

pub use gangplank_core::host::audit_cmd;

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::{Executor, Local};

    #[test]
    fn collect_maps_paths_and_reports_every_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::create_dir_all(root.join("conf/sub")).unwrap();
        std::fs::write(root.join("conf/sub/a.conf"), "a").unwrap();
        std::fs::write(root.join("prod.env"), "TOKEN=canary-value\n").unwrap();
        let (ups, errs) = collect(
            &[root.join("compose.yaml"), root.join("missing.yaml")],
            &[root.join("conf"), PathBuf::from("../escape")],
            Some(&root.join("prod.env")),
        );
        let names: Vec<(&str, u32)> = ups.iter().map(|u| (u.remote.as_str(), u.mode)).collect();
        assert_eq!(names, vec![("compose.yaml", 0o644), ("conf/sub/a.conf", 0o644), (".env", 0o600)]);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("missing.yaml"));
        assert!(!format!("{ups:?}").contains("canary"));
    }

    #[test]
    fn uploads_keep_their_local_mode_but_never_a_wider_one() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let cases = [
            ("secret.key", 0o600, 0o600),
            ("group.conf", 0o640, 0o640),
            ("run.sh", 0o755, 0o755),
            ("open.txt", 0o666, 0o644),
            ("setuid", 0o4777, 0o755),
        ];
        std::fs::create_dir(root.join("f")).unwrap();
        for (name, local, _) in cases {
            std::fs::write(root.join("f").join(name), name).unwrap();
            std::fs::set_permissions(root.join("f").join(name), std::fs::Permissions::from_mode(local)).unwrap();
        }
        std::fs::write(root.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::set_permissions(root.join("compose.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // A world-readable env file is still uploaded as 0600: it is secret whatever its local mode.
        std::fs::write(root.join("prod.env"), "A=b\n").unwrap();
        std::fs::set_permissions(root.join("prod.env"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ups, errs) = collect(&[root.join("compose.yaml")], &[root.join("f")], Some(&root.join("prod.env")));
        assert!(errs.is_empty(), "{errs:?}");
        let got: Vec<(String, u32)> = ups.iter().map(|u| (u.remote.clone(), u.mode)).collect();
        let mut want = vec![("compose.yaml".to_string(), 0o600)];
        let mut files: Vec<_> = cases.iter().map(|(n, _, m)| (format!("f/{n}"), *m)).collect();
        files.sort();
        want.extend(files);
        want.push((".env".into(), 0o600));
        assert_eq!(got, want);
    }

    #[test]
    fn the_host_layout_mirrors_the_repository() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(remote_path(&p("deploy/compose.yaml")).as_deref(), Some("deploy/compose.yaml"));
        assert_eq!(remote_path(&p("./conf/a.conf")).as_deref(), Some("conf/a.conf"));
        assert_eq!(remote_path(&p("../outside.yaml")), None);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(remote_path(&cwd.join("sub/c.yaml")).as_deref(), Some("sub/c.yaml"));
        assert_eq!(remote_path(&p("/elsewhere/c.yaml")).as_deref(), Some("c.yaml"));
        // `.env` goes where compose reads it: the first compose file's folder.
        assert_eq!(env_remote(&[p("deploy/compose.yaml"), p("compose.override.yaml")]), "deploy/.env");
        assert_eq!(env_remote(&[p("compose.yaml")]), ".env");
        assert_eq!(env_remote(&[]), ".env");
    }

    #[test]
    fn listed_folders_include_empty_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data/empty")).unwrap();
        std::fs::write(d.path().join("data/a"), "a").unwrap();
        let mut got = listed_folders(&[d.path().join("data"), d.path().join("data/a")]);
        got.sort();
        assert_eq!(got, vec!["data", "data/empty"]);
    }

    #[test]
    fn switch_backs_up_marks_new_files_and_restore_puts_everything_back() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("a $b; 'c'");
        let a = app.to_str().unwrap();
        std::fs::create_dir_all(app.join(".gangplank")).unwrap();
        std::fs::write(app.join("compose.yaml"), "old").unwrap();
        std::fs::write(app.join("same.txt"), "same").unwrap();
        let rels: Vec<String> = ["compose.yaml", "same.txt", "dir x/new.txt"].map(String::from).to_vec();
        let mut l = Local::new(false);
        l.check(&stage_cmd(a, "S1", &rels), "stage").unwrap();
        for (rel, body) in rels.iter().zip(["new", "same", "n"]) {
            l.upload(&staged_path(a, "S1", rel), body.as_bytes(), 0o600).unwrap();
        }
        let out = l.check(&switch_cmd(a, "S1", "{\"pending\":1}", &rels), "switch").unwrap();
        assert_eq!(out.stdout_str(), "changed compose.yaml\nsame same.txt\nnew dir x/new.txt\n");
        assert_eq!(std::fs::read_to_string(app.join(".gangplank/state.json")).unwrap(), "{\"pending\":1}");
        assert_eq!(std::fs::read(app.join("compose.yaml")).unwrap(), b"new");
        assert_eq!(std::fs::read(app.join(".gangplank/backups/compose.yaml.S1")).unwrap(), b"old");
        assert!(app.join(".gangplank/backups/dir x/new.txt.S1.new").exists());
        assert!(!app.join(".gangplank/staging").exists());
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(app.join("dir x/new.txt")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the local mode is kept");
        }
        // Twice, as a repair after a killed restore would.
        for _ in 0..2 {
            l.check(&restore_cmd(a, "S1", &rels), "restore").unwrap();
        }
        assert_eq!(std::fs::read(app.join("compose.yaml")).unwrap(), b"old");
        assert_eq!(std::fs::read(app.join("same.txt")).unwrap(), b"same");
        assert!(!app.join("dir x/new.txt").exists());
    }

    #[test]
    fn switch_refuses_symlinks_before_anything_moves() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        let a = app.to_str().unwrap();
        std::fs::create_dir_all(app.join(".gangplank")).unwrap();
        std::os::unix::fs::symlink(outside.path(), app.join("conf")).unwrap();
        let rels = vec!["compose.yaml".to_string(), "conf/x.conf".to_string()];
        let mut l = Local::new(false);
        l.check(&stage_cmd(a, "S1", &rels), "stage").unwrap();
        for rel in &rels {
            l.upload(&staged_path(a, "S1", rel), b"x", 0o644).unwrap();
        }
        let out = l.run(&switch_cmd(a, "S1", "{}", &rels)).unwrap();
        assert_ne!(out.status, 0);
        assert!(out.stderr_str().contains("symlink"), "{}", out.stderr_str());
        assert!(!app.join("compose.yaml").exists(), "nothing moved");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the app dir");
        // A symlinked backups folder is refused at the stage already.
        std::fs::remove_file(app.join("conf")).unwrap();
        std::fs::remove_dir_all(app.join(".gangplank/backups")).unwrap();
        std::os::unix::fs::symlink(outside.path(), app.join(".gangplank/backups")).unwrap();
        assert_ne!(l.run(&stage_cmd(a, "S2", &rels)).unwrap().status, 0);
    }

    #[test]
    fn finish_writes_state_and_audit_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("a");
        let a = app.to_str().unwrap();
        std::fs::create_dir_all(app.join(".gangplank/backups")).unwrap();
        for s in ["S1", "S2", "S3"] {
            std::fs::write(app.join(format!(".gangplank/backups/compose.yaml.{s}")), s).unwrap();
        }
        let mut l = Local::new(false);
        l.check(&audit_cmd(a, "{\"a\":\"$x;'\"}"), "audit").unwrap();
        assert_eq!(std::fs::read_to_string(app.join(".gangplank/audit.log")).unwrap(), "{\"a\":\"$x;'\"}\n");
        let out = l
            .check(&finish_cmd(a, "{\"app\":\"x'$y\"}", "line two", 1, "", &[], &["compose.yaml".into()]), "finish")
            .unwrap();
        assert_eq!(parse_tags(&out.stdout_str()), vec![]);
        assert_eq!(std::fs::read_to_string(app.join(".gangplank/state.json")).unwrap(), "{\"app\":\"x'$y\"}");
        assert!(std::fs::read_to_string(app.join(".gangplank/audit.log")).unwrap().ends_with("line two\n"));
        assert_eq!(std::fs::read_dir(app.join(".gangplank/backups")).unwrap().count(), 1);
        assert_eq!(
            parse_tags("tag=r/a\tv1\nnoise\ntag=r/a\tv0\n"),
            vec![("r/a".into(), "v1".into()), ("r/a".into(), "v0".into())]
        );
    }
}
