//! Preflight: every check that can fail before anything changes, run on each host, every failure
//! listed at once (exit 2). Nothing here writes to the host.
//!
//! Seed lessons each check guards: a `sudo` that waited for a password, a daemon that was down, a
//! host without compose, a full disk, an app dir owned by someone else, a bind-mount source that was
//! never uploaded (docker then creates an empty directory in its place).

use crate::cmd::Cmd;
use crate::compose::{self, Flavor};
use crate::error::Error;
use crate::exec::Executor;
use crate::input::format_size;

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

pub fn app_dir_cmd(app_dir: &str) -> Cmd {
    Cmd::script(APP_DIR_SCRIPT).arg(app_dir).privileged()
}

/// Prints each given path that does not exist.
pub const MISSING_SCRIPT: &str = r#"for f in "$@"; do [ -e "$f" ] || printf '%s\n' "$f"; done"#;

pub fn missing_cmd(paths: &[String]) -> Cmd {
    Cmd::script(MISSING_SCRIPT).args(paths).privileged()
}

/// What preflight needs to know about the run.
pub struct Checks<'a> {
    pub app_dir: &'a str,
    pub min_free_disk: u64,
    /// Host paths (absolute) that compose files reference and that are not uploaded, with what uses them.
    pub host_references: &'a [(String, String)],
}

/// What preflight learnt about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub flavor: Flavor,
}

/// Run every check on one host; return the facts, or every failure.
pub fn run(exec: &mut dyn Executor, checks: &Checks) -> Result<HostFacts, Vec<Error>> {
    let host = exec.label().to_string();
    let mut errs = vec![];
    let run = |exec: &mut dyn Executor, c: &Cmd| exec.run(c).map_err(|e| vec![e]);

    if exec.sudo() {
        let o = run(exec, &Cmd::new("sudo").args(["-n", "true"]))?;
        if !o.success() {
            return Err(vec![Error::bad_input(format!("`sudo -n true` fails on {host}: sudo would ask for a password ({})", o.tail(1)))
                .hint("allow the deploy user passwordless sudo (e.g. `deploy ALL=(root) NOPASSWD: /usr/bin/docker, /bin/sh`), or set `sudo: false` and add the user to the docker group")]);
        }
    }

    let info = run(exec, &compose::docker_info())?;
    let root = info.stdout_str().trim().to_string();
    let daemon_ok = info.success() && !root.is_empty();
    if !daemon_ok {
        errs.push(
            Error::bad_input(format!("the Docker daemon on {host} is not reachable: {}", one_line(&info.tail(2))))
                .hint("start it (`systemctl start docker`), and give the SSH user access: add it to the `docker` group or set `sudo: true`"),
        );
    }

    let det = run(exec, &compose::detect())?;
    let flavor = compose::parse_detect(&det.stdout_str());
    if flavor.is_none() {
        errs.push(
            Error::bad_input(format!("neither `docker compose` nor `docker-compose` is installed on {host}"))
                .hint("install the compose plugin (`apt-get install docker-compose-plugin`) or docker-compose (`apt-get install docker-compose`)"),
        );
    }

    if daemon_ok {
        let df = run(exec, &compose::free_disk(&root))?;
        match compose::parse_df_free_bytes(&df.stdout_str()) {
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
                Error::bad_input(format!("cannot read free disk space of {root} on {host}: {}", one_line(&df.tail(2))))
                    .hint("check that `df` works for the SSH user on the host"),
            ),
        }
    }

    let ad = run(exec, &app_dir_cmd(checks.app_dir))?;
    if !ad.success() {
        errs.push(
            Error::bad_input(format!(
                "app-dir `{}` on {host} is not usable: {}",
                checks.app_dir,
                one_line(&ad.tail(1))
            ))
            .hint("create it and give it to the SSH user (`sudo install -d -o deploy /opt/app`), or set `sudo: true`"),
        );
    }

    if !checks.host_references.is_empty() {
        let paths: Vec<String> = checks.host_references.iter().map(|(p, _)| p.clone()).collect();
        let m = run(exec, &missing_cmd(&paths))?;
        for missing in m.stdout_str().lines().filter(|l| !l.is_empty()) {
            let what =
                checks.host_references.iter().find(|(p, _)| p == missing).map(|(_, w)| w.as_str()).unwrap_or("a file");
            errs.push(
                Error::bad_input(format!("`{missing}`, the {what}, exists neither in the upload nor on {host}"))
                    .hint("add it to `files:` so it is uploaded, or create it on the host first"),
            );
        }
    }

    match (errs.is_empty(), flavor) {
        (true, Some(flavor)) => Ok(HostFacts { flavor }),
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
    use crate::exec::{Output, Recording};

    fn fail(msg: &str) -> Output {
        Output { status: 1, stdout: vec![], stderr: msg.as_bytes().to_vec() }
    }

    #[test]
    fn every_failure_is_listed_at_once() {
        let mut r = Recording::new("deploy@h:22", false)
            .reply("docker info", fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock"))
            .reply("docker compose version", Output::ok("none\n"))
            .reply(
                "is not a directory",
                Output { status: 1, stdout: b"it is not writable by deploy\n".to_vec(), stderr: vec![] },
            )
            .reply("printf", Output::ok("/srv/shared\n"));
        let refs = vec![("/srv/shared".to_string(), "bind mount of service `web`".to_string())];
        let errs = run(&mut r, &Checks { app_dir: "/opt/app", min_free_disk: 1, host_references: &refs }).unwrap_err();
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errs.len(), 4, "{msgs:#?}");
        assert!(msgs[0].contains("Docker daemon on deploy@h:22 is not reachable"));
        assert!(msgs[1].contains("neither `docker compose` nor `docker-compose`"));
        assert!(msgs[2].contains("not writable by deploy"));
        assert!(msgs[3].contains("/srv/shared") && msgs[3].contains("bind mount"));
        assert!(errs.iter().all(|e| e.exit_code() == 2 && e.hint.is_some()));
        // Nothing but reads: no df without a daemon, no mkdir anywhere.
        assert!(!r.log.iter().any(|l| l.contains("mkdir")), "{:#?}", r.log);
    }

    #[test]
    fn sudo_that_would_prompt_stops_preflight_with_a_hint() {
        let mut r = Recording::new("h", true).reply("sudo -n true", fail("sudo: a password is required"));
        let errs = run(&mut r, &Checks { app_dir: "/opt/app", min_free_disk: 1, host_references: &[] }).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("sudo would ask for a password"));
        assert!(errs[0].hint.as_deref().unwrap().contains("NOPASSWD"));
    }

    #[test]
    fn low_disk_and_a_healthy_host() {
        let df = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100 1 1024 1% /\n";
        let host = || {
            Recording::new("h", true)
                .reply("docker info", Output::ok("/var/lib/docker\n"))
                .reply("docker compose version", Output::ok("v1\n"))
                .reply("df -P", Output::ok(df))
        };
        let errs = run(&mut host(), &Checks { app_dir: "/opt/app", min_free_disk: 2 << 20, host_references: &[] })
            .unwrap_err();
        assert!(errs[0].message.contains("only 1.0MiB free"), "{}", errs[0].message);
        let mut r = host();
        let facts = run(&mut r, &Checks { app_dir: "/opt/app", min_free_disk: 1 << 20, host_references: &[] }).unwrap();
        assert_eq!(facts.flavor, Flavor::V1);
        assert_eq!(r.log[0], "sudo -n true");
        assert_eq!(r.log[1], "sudo -n docker info --format '{{.DockerRootDir}}'");
    }
}
