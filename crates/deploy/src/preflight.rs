//! Preflight: every check that can fail before anything changes, run on each host, every failure
//! listed at once (exit 2). Nothing here writes to the host.
//!
//! Seed lessons each check guards: a `sudo` that waited for a password, a daemon that was down, a
//! host without compose, a full disk, an app dir owned by someone else, a bind-mount source that was
//! never uploaded (docker then creates an empty directory in its place).

use gangplank_core::cmd::Cmd;
use gangplank_core::compose::{self, Flavor};
use gangplank_core::error::Error;
use gangplank_core::exec::Executor;
use gangplank_core::input::format_size;

use crate::model::HostRef;

/// Whether `app-dir` is (or can be created as) a writable directory; prints the reason when not.
pub const APP_DIR_SCRIPT: &str = r#"d=$1
if [ -e "$d" ] || [ -L "$d" ]; then
  [ -d "$d" ] || { echo "it exists and is not a directory"; exit 1; }
  [ -w "$d" ] && [ -x "$d" ] || { echo "it is not writable by $(id -un)"; exit 1; }
  if [ -e "$d/.gangplank" ] && ! [ -w "$d/.gangplank" ]; then echo "$d/.gangplank is not writable by $(id -un)"; exit 1; fi
  exit 0
fi
p=$d
while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done
if [ -d "$p" ] && [ -w "$p" ] && [ -x "$p" ]; then exit 0; fi
echo "it cannot be created: $p is not a writable directory for $(id -un)"; exit 1"#;

/// Every host check in one round trip. Prints `key=value` lines: `root=` (Docker data root) or
/// `daemon_err=`, `compose=v2|v1|none`, `df=` (free KiB there), `appdir=ok` or the reason, one
/// `symlink=` per path the deploy would write through or replace that is a symlink (the app dir, gangplank's
/// own paths, each upload and the folders on its way, the folders its backup goes to), and one `missing=`
/// per referenced path that does not exist (`~/…` in the home of the user compose runs as). Reads only.
pub const PREFLIGHT_SCRIPT: &str = r#"app=$1; n=$2; shift 2
link() { if [ -L "$1" ]; then printf 'symlink=%s\n' "$1"; fi; }
g=$app/.gangplank
for p in "$app" "$g" "$g/lock" "$g/state.json" "$g/audit.log" "$g/backups" "$g/staging"; do link "$p"; done
i=0
while [ "$i" -lt "$n" ]; do
  rel=$1; shift; i=$((i+1))
  p=$app/$rel
  while [ "$p" != "$app" ] && [ "$p" != / ] && [ "$p" != . ]; do link "$p"; p=$(dirname -- "$p"); done
  p=$(dirname -- "$g/backups/$rel")
  while [ "$p" != "$g/backups" ] && [ "$p" != / ] && [ "$p" != . ]; do link "$p"; p=$(dirname -- "$p"); done
done
if root=$(docker info --format '{{.DockerRootDir}}' 2>&1) && [ -n "$root" ]; then echo "root=$root"
else echo "daemon_err=$(printf '%s' "$root" | tail -n 2 | tr '\n' ' ')"; root=; fi
if docker compose version >/dev/null 2>&1; then echo compose=v2
elif command -v docker-compose >/dev/null 2>&1; then echo compose=v1
else echo compose=none; fi
if [ -n "$root" ]; then echo "df=$(df -P -k -- "$root" 2>&1 | awk 'NR==2 {print $4}')"; fi
echo "appdir=$(sh -c "$APP_DIR_CHECK" gangplank "$app" 2>&1 && echo ok)"
for f in "$@"; do
  case $f in "~") p=$HOME;; "~/"*) p=$HOME/${f#"~/"};; *) p=$f;; esac
  [ -e "$p" ] || printf 'missing=%s\n' "$f"
done
if [ -f "$app/.gangplank/state.json" ] && [ ! -L "$app/.gangplank/state.json" ]; then echo @@state; cat -- "$app/.gangplank/state.json"; fi"#;

/// The one preflight command: [`PREFLIGHT_SCRIPT`] with [`APP_DIR_SCRIPT`] handed over in the
/// environment (fixed text, never data).
pub fn preflight_cmd(app_dir: &str, uploads: &[String], paths: &[String]) -> Cmd {
    Cmd::new("env")
        .arg(format!("APP_DIR_CHECK={APP_DIR_SCRIPT}"))
        .args(["sh", "-c", PREFLIGHT_SCRIPT, "gangplank"])
        .arg(app_dir)
        .arg(uploads.len().to_string())
        .args(uploads)
        .args(paths)
        .privileged()
}

/// The KEY NAMES of a `.env` on the host, never a value: prints `absent` when there is no such file, else
/// `key<TAB>NAME<TAB>set` or `key<TAB>NAME<TAB>empty` per entry (an empty value, `""` or `''`: compose's
/// `${VAR:?}` refuses it). Entries are split as compose's parsers read them: `[export ]NAME=…` starts one
/// unless a quoted value is still open from an earlier line, so no line of a multi-line value is taken
/// for a key. Reads only.
pub const ENV_KEYS_SCRIPT: &str = r##"f=$1
if [ ! -e "$f" ]; then echo absent; exit 0; fi
[ -r "$f" ] || { echo unreadable; exit 0; }
awk '
open != "" { if (index($0, open) > 0) open = ""; next }
/^[ \t]*(export[ \t]+)?[A-Za-z_][A-Za-z0-9_]*[ \t]*=/ {
  line = $0; sub(/^[ \t]*(export[ \t]+)?/, "", line)
  eq = index(line, "="); name = substr(line, 1, eq - 1); sub(/[ \t]+$/, "", name)
  v = substr(line, eq + 1); sub(/^[ \t]+/, "", v)
  q = substr(v, 1, 1)
  if ((q == "\"" || q == "\047") && index(substr(v, 2), q) == 0) open = q
  empty = (v == "" || v == "\"\"" || v == "\047\047" || substr(v, 1, 1) == "#")
  printf "key\t%s\t%s\n", name, (empty ? "empty" : "set")
}
' "$f""##;

pub fn env_keys_cmd(path: &str) -> Cmd {
    Cmd::script(ENV_KEYS_SCRIPT).arg(path).privileged()
}

/// What [`ENV_KEYS_SCRIPT`] printed: `None` when the file is absent (or unreadable), else each key with
/// whether its value is non-empty.
pub fn parse_env_keys(stdout: &str) -> Option<std::collections::BTreeMap<String, bool>> {
    let t = stdout.trim();
    if t == "absent" || t == "unreadable" {
        return None;
    }
    Some(
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("key\t"))
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v == "set"))
            .collect(),
    )
}

/// What preflight needs to know about the run.
pub struct Checks<'a> {
    pub app_dir: &'a str,
    pub min_free_disk: u64,
    /// Paths the compose model needs that no upload provides ([`crate::model::check`]).
    pub host_references: &'a [HostRef],
    /// Where the uploads land, relative to the app dir: none may be, or sit below, a symlink.
    pub uploads: &'a [String],
}

/// What preflight learnt about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub flavor: Flavor,
    /// `.gangplank/state.json` as it was (empty: never deployed); the host's plan is made from it.
    pub state_text: String,
}

/// Run every check on one host (two round trips at most: `sudo -n true`, then one script); return
/// the facts, or every failure.
pub fn run(exec: &mut dyn Executor, checks: &Checks) -> Result<HostFacts, Vec<Error>> {
    let host = exec.label().to_string();
    let mut errs = vec![];

    if exec.sudo() {
        let o = exec.run(&Cmd::new("sudo").args(["-n", "true"])).map_err(|e| vec![e])?;
        if !o.success() {
            return Err(vec![Error::bad_input(format!("`sudo -n true` fails on {host}: sudo would ask for a password ({})", o.tail(1)))
                .hint("allow the deploy user passwordless sudo (e.g. `deploy ALL=(root) NOPASSWD: /usr/bin/docker, /bin/sh`), or set `sudo: false` and add the user to the docker group")]);
        }
    }

    let paths: Vec<String> = checks.host_references.iter().map(|r| r.path.clone()).collect();
    let out = exec.run(&preflight_cmd(checks.app_dir, checks.uploads, &paths)).map_err(|e| vec![e])?;
    let all = out.stdout_str();
    let (text, state_text) = match all.split_once("\n@@state\n") {
        Some((t, s)) => (format!("{t}\n"), s.to_string()),
        None => (all, String::new()),
    };
    let get =
        |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('='))).map(str::to_string);
    if !out.success() || get("compose").is_none() {
        return Err(vec![Error::bad_input(format!(
            "the preflight checks could not run on {host}: {}",
            one_line(&out.tail(3))
        ))
        .hint("check that the SSH user has a POSIX shell (`sh`) on the host")]);
    }

    let root = get("root").unwrap_or_default();
    if root.is_empty() {
        errs.push(
            Error::bad_input(format!("the Docker daemon on {host} is not reachable: {}", one_line(&get("daemon_err").unwrap_or_default())))
                .hint("start it (`systemctl start docker`), and give the SSH user access: add it to the `docker` group or set `sudo: true`"),
        );
    }

    let flavor = compose::parse_detect(&get("compose").unwrap_or_default());
    if flavor.is_none() {
        errs.push(
            Error::bad_input(format!("neither `docker compose` nor `docker-compose` is installed on {host}"))
                .hint("install the compose plugin (`apt-get install docker-compose-plugin`) or docker-compose (`apt-get install docker-compose`)"),
        );
    }

    if !root.is_empty() {
        let df = get("df").unwrap_or_default();
        match df.trim().parse::<u64>().ok().map(|k| k * 1024) {
            Some(free) if free < checks.min_free_disk => errs.push(
                Error::bad_input(format!(
                    "only {} free on {host}'s Docker data root {root}, below min-free-disk {}",
                    format_size(free),
                    format_size(checks.min_free_disk)
                ))
                .hint("free space (`docker image prune`, remove old volumes) or lower `min-free-disk`"),
            ),
            Some(_) => {}
            None => errs.push(
                Error::bad_input(format!("cannot read free disk space of {root} on {host}: {}", one_line(&df)))
                    .hint("check that `df` works for the SSH user on the host"),
            ),
        }
    }

    let ad = get("appdir").unwrap_or_default();
    if ad != "ok" {
        errs.push(
            Error::bad_input(format!("app-dir `{}` on {host} is not usable: {}", checks.app_dir, one_line(&ad))).hint(
                "create it and give it to the SSH user (`sudo install -d -o deploy /opt/app`), or set `sudo: true`",
            ),
        );
    }

    // Each link once, however many uploads go through it.
    let mut links: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("symlink=")).collect();
    links.sort_unstable();
    links.dedup();
    for link in links {
        errs.push(
            Error::bad_input(format!(
                "`{link}` on {host} is a symlink: gangplank writes only inside app-dir, never through or over a link"
            ))
            .hint("replace the link with the folder or file itself (or set `app-dir` to the folder it points to), then run again"),
        );
    }

    for missing in text.lines().filter_map(|l| l.strip_prefix("missing=")) {
        // Each path is asked once, so each missing one is one error naming everything that uses it.
        if let Some(r) = checks.host_references.iter().find(|r| r.path == missing) {
            errs.push(Error::bad_input(format!("{} {host}", r.message)).hint(r.hint.clone()));
        }
    }

    match (errs.is_empty(), flavor) {
        (true, Some(flavor)) => Ok(HostFacts { flavor, state_text }),
        _ => Err(errs),
    }
}

fn one_line(s: &str) -> String {
    let t = s.trim().replace('\n', " / ");
    if t.is_empty() {
        "no output".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::{Local, Output, Recording};

    fn fail(msg: &str) -> Output {
        Output { status: 1, stdout: vec![], stderr: msg.as_bytes().to_vec() }
    }

    fn answering(lines: &str) -> Recording {
        Recording::new("deploy@h:22", false).reply("APP_DIR_CHECK", Output::ok(lines))
    }

    #[test]
    fn every_failure_is_listed_at_once() {
        let mut r = answering(
            "daemon_err=Cannot connect to the Docker daemon at unix:///var/run/docker.sock\ncompose=none\nappdir=it is not writable by deploy\nmissing=/srv/shared\n",
        );
        let refs = vec![HostRef {
            path: "/srv/shared".into(),
            message: "`/srv/shared`, the bind mount source of service `web`, does not exist on".into(),
            hint: "create it".into(),
        }];
        let errs = run(&mut r, &Checks { app_dir: "/opt/app", min_free_disk: 1, host_references: &refs, uploads: &[] })
            .unwrap_err();
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errs.len(), 4, "{msgs:#?}");
        assert!(msgs[0].contains("Docker daemon on deploy@h:22 is not reachable: Cannot connect"));
        assert!(msgs[1].contains("neither `docker compose` nor `docker-compose`"));
        assert!(msgs[2].contains("not writable by deploy"));
        assert_eq!(msgs[3], "`/srv/shared`, the bind mount source of service `web`, does not exist on deploy@h:22");
        assert!(errs.iter().all(|e| e.exit_code() == 2 && e.hint.is_some()));
        assert_eq!(r.log.len(), 1, "one round trip");
    }

    #[test]
    fn sudo_that_would_prompt_stops_preflight_with_a_hint() {
        let mut r = Recording::new("h", true).reply("sudo -n true", fail("sudo: a password is required"));
        let errs = run(&mut r, &Checks { app_dir: "/opt/app", min_free_disk: 1, host_references: &[], uploads: &[] })
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("sudo would ask for a password"));
        assert!(errs[0].hint.as_deref().unwrap().contains("NOPASSWD"));
    }

    #[test]
    fn low_disk_and_a_healthy_host() {
        let host = || answering("root=/var/lib/docker\ncompose=v1\ndf=1024\nappdir=ok\n");
        let errs = run(
            &mut host(),
            &Checks { app_dir: "/opt/app", min_free_disk: 2 << 20, host_references: &[], uploads: &[] },
        )
        .unwrap_err();
        assert!(errs[0].message.contains("only 1.0MiB free"), "{}", errs[0].message);
        let facts = run(
            &mut host(),
            &Checks { app_dir: "/opt/app", min_free_disk: 1 << 20, host_references: &[], uploads: &[] },
        )
        .unwrap();
        assert_eq!(facts.flavor, Flavor::V1);
    }

    #[test]
    fn the_script_reads_a_real_host_and_quotes_paths() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("a 'b' $c; d");
        let present = d.path().join("x y");
        std::fs::write(&present, "").unwrap();
        let paths = vec![
            present.to_string_lossy().into_owned(),
            d.path().join("gone $x").to_string_lossy().into_owned(),
            "~/.gangplank-no-such-file".to_string(),
            "~".to_string(),
        ];
        let out = Local::new(false).run(&preflight_cmd(app.to_str().unwrap(), &[], &paths)).unwrap();
        let text = out.stdout_str();
        assert!(text.contains("\nappdir=ok\n"), "{text}");
        assert!(text.contains(&format!("missing={}/gone $x\n", d.path().display())), "{text}");
        assert!(!text.contains("x y"), "{text}");
        // `~` and `~/…` are looked up in the home folder.
        assert!(text.contains("missing=~/.gangplank-no-such-file\n") && !text.contains("missing=~\n"), "{text}");
        assert!(!app.exists(), "preflight creates nothing");
    }

    #[test]
    fn the_env_keys_script_prints_names_never_values() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(".env");
        std::fs::write(
            &f,
            "# c\nA=secretA1\nexport B = \"x\"\nEMPTY=\nQ=''\nM='line1\nNOTAKEY=inside\nend'\nD=\"a\nINSIDE2=x\"\nLAST=1\n",
        )
        .unwrap();
        let out = Local::new(false).run(&env_keys_cmd(f.to_str().unwrap())).unwrap().stdout_str();
        assert!(!out.contains("secretA1") && !out.contains("inside") && !out.contains("line1"), "{out}");
        let keys = parse_env_keys(&out).unwrap();
        let want: Vec<(&str, bool)> =
            vec![("A", true), ("B", true), ("D", true), ("EMPTY", false), ("LAST", true), ("M", true), ("Q", false)];
        assert_eq!(keys.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), want);
        let gone = Local::new(false).run(&env_keys_cmd(&d.path().join("none").to_string_lossy())).unwrap();
        assert_eq!(parse_env_keys(&gone.stdout_str()), None);
    }

    #[test]
    fn symlinks_on_the_way_of_an_upload_or_its_backup_are_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        std::fs::create_dir_all(app.join(".gangplank/backups")).unwrap();
        std::os::unix::fs::symlink(outside.path(), app.join("conf")).unwrap();
        std::os::unix::fs::symlink(outside.path(), app.join(".gangplank/backups/data")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), app.join(".env")).unwrap();
        let uploads: Vec<String> =
            ["conf/a.conf", "conf/b.conf", "data/seed.sql", ".env", "compose.yaml"].map(String::from).to_vec();
        let out = Local::new(false).run(&preflight_cmd(app.to_str().unwrap(), &uploads, &[])).unwrap();
        let mut links: Vec<String> =
            out.stdout_str().lines().filter_map(|l| l.strip_prefix("symlink=")).map(String::from).collect();
        links.sort();
        links.dedup();
        let a = app.display();
        assert_eq!(links, vec![format!("{a}/.env"), format!("{a}/.gangplank/backups/data"), format!("{a}/conf")]);
    }
}
