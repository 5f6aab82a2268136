//! The pull phase of deploy-remote and rollback: a registry login on the host that lives only as long as
//! the run's lock, the images pulled before the switch, and the digests they must have (`expect-digests`).
//!
//! Invariants: the password reaches the host only on the SSH channel's stdin, read by
//! `docker login --password-stdin`; the login is written to a temporary Docker config inside the app dir
//! ([`AUTH_DIR`], mode 0700), never to the deploy user's `~/.docker/config.json`, and that folder goes with
//! the lock (finish, revert, unlock; the next run's lock removes one a killed run left). A digest that
//! differs from the expected one stops the deploy before the switch: nothing on the host changes.

use std::collections::BTreeMap;

use gangplank_core::cmd::Cmd;
use gangplank_core::compose;
use gangplank_core::error::{Error, Result};
use gangplank_core::Secret;

/// The temporary Docker config of a run, relative to the app dir.
pub const AUTH_DIR: &str = ".gangplank/docker-auth";

/// `registry`, `registry-username` and `registry-password`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// `host[:port]` as `docker login` takes it.
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

/// The three registry inputs: all or none, before any connection (exit 2).
pub fn parse_login(
    registry: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
) -> Result<Option<Login>> {
    let registry = registry.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    let username = username.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    let password = password.filter(|p| !p.is_empty());
    let (registry, username, password) = match (registry, username, password) {
        (None, None, None) => return Ok(None),
        (Some(r), Some(u), Some(p)) => (r, u, p),
        (r, u, p) => {
            let missing: Vec<&str> =
                [("registry", r.is_none()), ("registry-username", u.is_none()), ("registry-password", p.is_none())]
                    .iter()
                    .filter(|(_, m)| *m)
                    .map(|(n, _)| *n)
                    .collect();
            return Err(Error::bad_input(format!(
                "`registry`, `registry-username` and `registry-password` go together: {} {} empty",
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" and "),
                if missing.len() == 1 { "is" } else { "are" }
            ))
            .hint("set all three (e.g. `registry: ghcr.io`, `registry-username: ${{ github.actor }}`, `registry-password: ${{ secrets.GHCR_READ_TOKEN }}`; is the secret defined?), or none to pull with the host's own Docker login"));
        }
    };
    validate_registry(&registry)?;
    if username.chars().any(|c| c.is_whitespace() || c.is_control()) || username.starts_with('-') {
        return Err(Error::bad_input(format!("`registry-username` {username:?} is not a registry user name"))
            .hint("a user name has no white space and does not start with `-`"));
    }
    if password.expose().contains(['\n', '\r']) {
        return Err(Error::bad_input("`registry-password` holds a line break")
            .hint("pass the token alone, without a trailing newline or a second line"));
    }
    Ok(Some(Login { registry, username, password }))
}

/// `host[:port]`: a DNS name or IPv4 address (or `[IPv6]`), an optional numeric port, no scheme or path.
pub fn validate_registry(r: &str) -> Result<()> {
    let bad = || {
        Error::bad_input(format!("`registry` {r:?} is not a registry address (host[:port])"))
            .hint("write it as `ghcr.io`, `registry.example.com` or `127.0.0.1:5000`, without `https://` or a path")
    };
    let (host, port) = match r.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                return Err(bad());
            }
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (h, port)
        }
        None => match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        },
    };
    let host_ok = !r.starts_with('[')
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    if (host_ok || r.starts_with('[')) && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Make [`AUTH_DIR`] afresh (0700, `mkdir` never follows a link: a leftover is removed first, the lock is
/// held) with a `cli-plugins` link to the plugins of the Docker config the commands would use otherwise
/// (compose v2 is such a plugin), then `docker login` into it with the password read from stdin. The
/// folder is removed again when the login fails.
///
/// First, the Docker CLI's own choice of a credential store: with no `credsStore` in the config (ours has
/// none), Linux's Docker CLI keeps logins in `docker-credential-pass` when `pass` and that helper are on the
/// PATH, else in `docker-credential-secretservice` when that helper is (`DetectDefaultStore`). Such a store
/// lives outside the app dir and outlives the run, so the script refuses then ([`CREDENTIAL_STORE_MARK`]).
pub const LOGIN_SCRIPT: &str = r#"a=$1/.gangplank/docker-auth; reg=$2; user=$3
if command -v pass >/dev/null 2>&1; then h=docker-credential-pass; else h=docker-credential-secretservice; fi
if command -v "$h" >/dev/null 2>&1; then echo "gangplank-credential-store: $h" >&2; exit 65; fi
orig=${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}
case $orig in /*) ;; *) orig=$PWD/$orig ;; esac
rm -rf -- "$a" && mkdir -m 700 -- "$a" || exit 1
if [ -d "$orig/cli-plugins" ]; then ln -s -- "$orig/cli-plugins" "$a/cli-plugins" || { rm -rf -- "$a"; exit 1; }; fi
DOCKER_CONFIG=$a docker login --username "$user" --password-stdin "$reg" >/dev/null && exit 0
s=$?; rm -rf -- "$a"; exit "$s""#;

/// How long a login may take (an unreachable registry answers with docker's own timeout).
pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

pub fn login_cmd(app_dir: &str, l: &Login) -> Cmd {
    Cmd::script(LOGIN_SCRIPT)
        .arg(app_dir)
        .arg(&l.registry)
        .arg(&l.username)
        .secret_stdin(&l.password)
        .privileged()
        .timeout(LOGIN_TIMEOUT)
}

/// The folder `DOCKER_CONFIG` names for this run's pulls.
pub fn auth_dir(app_dir: &str) -> String {
    format!("{}/{AUTH_DIR}", app_dir.trim_end_matches('/'))
}

/// Whether a failed login means the registry refused the credentials (not that it could not be reached).
pub fn is_auth_refused(text: &str) -> bool {
    gangplank_core::process::is_registry_auth_refused(text)
}

/// What [`LOGIN_SCRIPT`] prints, before the helper's name, when Docker would keep the login in a credential store.
pub const CREDENTIAL_STORE_MARK: &str = "gangplank-credential-store: ";

/// The one-line error of a failed login on `host` (exit 2: nothing on any host changed yet).
pub fn login_error(l: &Login, host: &str, tail: &str) -> Error {
    let last = tail.lines().last().unwrap_or("").trim();
    if let Some(helper) = tail.lines().find_map(|t| t.trim().strip_prefix(CREDENTIAL_STORE_MARK)) {
        Error::bad_input(format!(
            "on {host}, `docker login` would keep the password for {} in the credential store `{helper}`, outside the app dir and after the run; gangplank does not log in there",
            l.registry
        ))
        .hint("take that helper off the deploy user's PATH, or log the host in to the registry once yourself and leave `registry-username`/`registry-password` empty; nothing was changed")
    } else if is_auth_refused(tail) {
        Error::bad_input(format!("the registry {} refused the login of `{}` on {host}: {last}", l.registry, l.username))
            .hint("check `registry-username` and `registry-password` (for GHCR a token with read:packages); nothing was changed")
    } else {
        Error::bad_input(format!("logging in to the registry {} from {host} failed: {last}", l.registry)).hint(
            "check that `registry` is the registry's address and that the host can reach it (DNS, firewall, TLS); nothing was changed",
        )
    }
}

/// Exit status of [`PULL_SCRIPT`] when an image with `pull_policy: never` is not on the host.
pub const PULL_NEVER_ABSENT: i32 = 91;

/// When an image is pulled, as compose's `pull_policy` says (compose's `up` decides the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// Never pulled: it must be on the host (`never`), or compose builds it there (`build`).
    Never,
    Build,
    /// Pulled when it is not on the host (`missing`, `if_not_present`, and compose's default).
    Missing,
    /// Pulled when it is not on the host or was last tagged there more than this many seconds ago
    /// (`daily`, `weekly`, `every_<duration>`).
    Refresh(u64),
    /// Pulled every time (`always`; gangplank's default for the images the deploy's tag names).
    Always,
}

impl Policy {
    /// compose's `pull_policy` value; `None` when it is not one compose knows.
    pub fn parse(text: &str) -> Option<Policy> {
        let t = text.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "always" => Policy::Always,
            "never" => Policy::Never,
            "build" => Policy::Build,
            "missing" | "if_not_present" => Policy::Missing,
            "daily" => Policy::Refresh(24 * 3600),
            "weekly" => Policy::Refresh(7 * 24 * 3600),
            _ => Policy::Refresh(duration_secs(t.strip_prefix("every_")?)?),
        })
    }

    /// The word [`PULL_SCRIPT`] takes.
    fn word(self) -> String {
        match self {
            Policy::Always => "always".into(),
            Policy::Missing => "missing".into(),
            Policy::Never => "never".into(),
            Policy::Build => "build".into(),
            Policy::Refresh(s) => format!("refresh:{s}"),
        }
    }

    /// How the plan names it.
    pub fn describe(self) -> String {
        match self {
            Policy::Always => "always".into(),
            Policy::Missing => "only when not on the host".into(),
            Policy::Never => "never (pull_policy: never)".into(),
            Policy::Build => "never (pull_policy: build)".into(),
            Policy::Refresh(s) => format!("when not on the host or last pulled more than {s}s ago"),
        }
    }
}

/// A duration as compose writes it in `every_<duration>`: numbers with units `w`, `d`, `h`, `m`, `s`
/// (`12h`, `1h30m`, `2d`), whole seconds; `None` when it is none.
fn duration_secs(t: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'w' => 7 * 24 * 3600,
            'd' => 24 * 3600,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    (num.is_empty() && any).then_some(total)
}

/// One image of the pull before the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// The services that run it.
    pub services: Vec<String>,
    /// `${IMAGE_TAG}` (and every other variable the runner has) resolved.
    pub reference: String,
    pub policy: Policy,
}

/// Per image (`POLICY REPO REF` triples after `$1`, the `DOCKER_CONFIG` of the run's login, empty for the
/// user's own), decide as compose's `up` does whether to pull, then pull (the Go CLI starts in
/// milliseconds; compose v1 takes about a second just to start), then print each present image's repository
/// digests (`digests<TAB>ref<TAB>repo@sha256:… …`), in one round trip. An image on the host without a
/// repository digest of its own repository exists only there (built or `docker load`ed on the host): it is
/// never pulled, whatever the policy, as no registry has it. Prints `pulled`, `kept` (on the host, the
/// policy asks no pull), `local` (only on the host) or `absent` (never pulled and not there) per image.
pub const PULL_SCRIPT: &str = r#"[ -n "$1" ] && { DOCKER_CONFIG=$1; export DOCKER_CONFIG; }
shift
now=$(date +%s)
i=0
for x; do
  i=$((i+1))
  case $i in 1) p=$x; continue;; 2) repo=$x; continue;; esac
  i=0; r=$x
  if t=$(docker image inspect --format '{{.Metadata.LastTagTime.Unix}} {{join .RepoDigests " "}}' "$r" 2>/dev/null); then
    case " ${t#* } " in *" $repo@"*) ;; *) printf 'local\t%s\n' "$r"; continue;; esac
    case $p in
      always) ;;
      refresh:*) at=${t%% *}; [ "$((at + ${p#refresh:}))" -lt "$now" ] || { printf 'kept\t%s\n' "$r"; continue; };;
      *) printf 'kept\t%s\n' "$r"; continue;;
    esac
  else
    case $p in never) printf 'absent\t%s\n' "$r"; exit 91;; build) printf 'absent\t%s\n' "$r"; continue;; esac
  fi
  docker pull -q "$r" >/dev/null || exit 90
  printf 'pulled\t%s\n' "$r"
done
i=0
for x; do
  i=$((i+1))
  case $i in 1|2) continue;; esac
  i=0
  if d=$(docker image inspect --format '{{join .RepoDigests " "}}' "$x" 2>/dev/null); then printf 'digests\t%s\t%s\n' "$x" "$d"; fi
done"#;

/// The repository digests of images already on the host, printed as [`PULL_SCRIPT`] prints them: after a
/// compose pull, for the images compose resolved.
pub const DIGESTS_SCRIPT: &str = r#"for r; do printf 'digests\t%s\t' "$r"; docker image inspect --format '{{join .RepoDigests " "}}' "$r" || exit 1; done"#;

pub fn digests_cmd(refs: &[String]) -> Cmd {
    Cmd::script(DIGESTS_SCRIPT).args(refs).privileged()
}

pub fn pull_cmd(docker_config: Option<&str>, pulls: &[Pull]) -> Cmd {
    let mut c = Cmd::script(PULL_SCRIPT).arg(docker_config.unwrap_or(""));
    for p in pulls {
        c = c.arg(p.policy.word()).arg(normalize_repo(compose::image_repo(&p.reference))).arg(&p.reference);
    }
    c.privileged().timeout(crate::plan::PULL_UP_TIMEOUT)
}

/// compose's resolved model, filtered on the host to `image<TAB>service<TAB>reference` lines: the model
/// interpolates the host's `.env` (passwords in `environment:`), and only the image references may leave
/// the host. `$1` the project directory, `$2` the tag, then compose's command line (`docker compose -p …
/// -f …`); both compose v1 and v2 print `config` as block YAML, a service at two spaces, its keys at four.
pub const IMAGES_SCRIPT: &str = r#"d=$1; t=$2; shift 2
cd -- "$d" || exit 1
IMAGE_TAG=$t; export IMAGE_TAG
m=$("$@" config) || exit "$?"
printf '%s\n' "$m" | awk '
/^[^ #]/ { top = $0; next }
top == "services:" && /^  [^ #]/ { svc = $0; sub(/^  /, "", svc); sub(/:[ ]*$/, "", svc); gsub(/^["\047]|["\047]$/, "", svc); next }
top == "services:" && /^    image: / { img = $0; sub(/^    image: /, "", img); gsub(/^["\047]|["\047]$/, "", img); printf "image\t%s\t%s\n", svc, img }
'"#;

pub fn images_cmd(p: &compose::Project, tag: &str) -> Cmd {
    let mut c = Cmd::script(IMAGES_SCRIPT).arg(&p.dir).arg(tag);
    c = match p.flavor {
        compose::Flavor::V2 => c.arg("docker").arg("compose"),
        compose::Flavor::V1 => c.arg("docker-compose"),
    };
    c = c.arg("-p").arg(&p.name);
    for f in &p.files {
        c = c.arg("-f").arg(f);
    }
    c.privileged()
}

/// The `image` lines of [`IMAGES_SCRIPT`]: (service, image reference).
pub fn parse_images(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("image\t"))
        .filter_map(|l| l.split_once('\t'))
        .map(|(s, i)| (s.to_string(), i.to_string()))
        .collect()
}

/// What [`PULL_SCRIPT`] did with each image: (`pulled`|`kept`|`local`|`absent`, reference).
pub fn parse_decisions(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(k, _)| matches!(*k, "pulled" | "kept" | "local" | "absent"))
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect()
}

/// The `digests` lines of [`PULL_SCRIPT`]: image reference → its repository digests (`repo@sha256:…`).
pub fn parse_pulled(stdout: &str) -> BTreeMap<String, Vec<String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("digests\t"))
        .filter_map(|l| l.split_once('\t'))
        .map(|(r, d)| (r.to_string(), d.split_whitespace().map(str::to_string).collect()))
        .collect()
}

/// A repository as Docker prints it in RepoDigests: Docker Hub's `docker.io/` and `library/` dropped.
pub fn normalize_repo(repo: &str) -> &str {
    let r = repo.strip_prefix("docker.io/").or_else(|| repo.strip_prefix("index.docker.io/")).unwrap_or(repo);
    if r.len() != repo.len() {
        r.strip_prefix("library/").unwrap_or(r)
    } else {
        r
    }
}

/// The repository digests among `digests` that belong to `reference`'s repository.
pub fn digests_of<'a>(reference: &str, digests: &'a [String]) -> Vec<&'a str> {
    let repo = normalize_repo(compose::image_repo(reference));
    digests
        .iter()
        .filter(|d| d.split_once('@').is_some_and(|(r, _)| normalize_repo(r) == repo))
        .map(String::as_str)
        .collect()
}

/// One image whose digest is expected: from `expect-digests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub service: String,
    /// The image reference as pulled (`${IMAGE_TAG}` resolved).
    pub reference: String,
    /// The `expect-digests` key it matched.
    pub key: String,
    /// `sha256:…`
    pub digest: String,
}

/// `expect-digests`: push-registry's `digests` output, a JSON object image name → `sha256:…` digest.
/// Empty (or `{}`) expects nothing.
pub fn parse_expect(text: &str) -> Result<BTreeMap<String, String>> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(BTreeMap::new());
    }
    let bad = |why: String| {
        Error::bad_input(format!("`expect-digests` is not push-registry's `digests` output: {why}"))
            .hint("pass `${{ needs.<build job>.outputs.digests }}`: a JSON object such as {\"app\":\"sha256:…\"}, or leave it empty")
    };
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(t).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let d = v.as_str().ok_or_else(|| bad(format!("the value of `{k}` is not a string")))?;
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad(format!("the digest of `{k}` ({d:?}) is not `sha256:` and 64 lowercase hex digits")));
        }
        let key_ok = !k.is_empty()
            && k.split('/').all(|c| !c.is_empty())
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':'));
        if !key_ok {
            return Err(bad(format!("`{k}` is not an image name")));
        }
        out.insert(k, d.to_string());
    }
    Ok(out)
}

/// Which deployed images the expected digests are for. A key names an image when the image's repository
/// is the key or ends with `/<key>` (push-registry's keys are names under its registry: `app` for
/// `ghcr.io/acme/app`); the longest such key wins. `images`: each deployed service with the image it
/// pulls. Keys naming no deployed image are returned apart (push-registry may push more images than a
/// deploy of some services runs).
pub fn match_expect(expect: &BTreeMap<String, String>, images: &[(String, String)]) -> (Vec<Expect>, Vec<String>) {
    let mut out = vec![];
    let mut used = std::collections::BTreeSet::new();
    for (service, reference) in images {
        let repo = normalize_repo(compose::image_repo(reference));
        let best = expect
            .iter()
            .filter(|(k, _)| {
                let k = normalize_repo(k);
                repo == k || repo.ends_with(&format!("/{k}"))
            })
            .max_by_key(|(k, _)| k.len());
        if let Some((k, d)) = best {
            used.insert(k.clone());
            out.push(Expect {
                service: service.clone(),
                reference: reference.clone(),
                key: k.clone(),
                digest: d.clone(),
            });
        }
    }
    let unmatched = expect.keys().filter(|k| !used.contains(*k)).cloned().collect();
    (out, unmatched)
}

/// Compare what the host pulled with what was expected: the first image whose repository digests on the
/// host do not include the expected one, as an error naming the service and both digests.
pub fn check(expect: &[Expect], pulled: &BTreeMap<String, Vec<String>>, host: &str) -> Result<()> {
    for e in expect {
        let all = pulled.get(&e.reference).cloned().unwrap_or_default();
        let found = digests_of(&e.reference, &all);
        if found.iter().any(|f| f.ends_with(&format!("@{}", e.digest))) {
            continue;
        }
        let found_text = if found.is_empty() {
            "no digest from that repository".to_string()
        } else {
            let v: Vec<&str> = found.iter().map(|f| f.split_once('@').map_or(*f, |(_, d)| d)).collect();
            format!("digest {}", v.join(", "))
        };
        return Err(Error::failed(format!(
            "service `{}` on {host}: {} has {found_text}, expected {} (`expect-digests` key `{}`)",
            e.service, e.reference, e.digest, e.key
        ))
        .hint("the tag was moved in the registry after it was pushed (another push to the same tag?); push again and deploy the new digests, or deploy the right tag"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_read_as_compose_reads_them() {
        assert_eq!(Policy::parse("always"), Some(Policy::Always));
        assert_eq!(Policy::parse("if_not_present"), Some(Policy::Missing));
        assert_eq!(Policy::parse("Never"), Some(Policy::Never));
        assert_eq!(Policy::parse("build"), Some(Policy::Build));
        assert_eq!(Policy::parse("daily"), Some(Policy::Refresh(86400)));
        assert_eq!(Policy::parse("weekly"), Some(Policy::Refresh(604800)));
        assert_eq!(Policy::parse("every_12h"), Some(Policy::Refresh(43200)));
        assert_eq!(Policy::parse("every_1h30m"), Some(Policy::Refresh(5400)));
        assert_eq!(Policy::parse("every_2d"), Some(Policy::Refresh(172800)));
        for bad in ["sometimes", "every_", "every_12", "every_x", ""] {
            assert_eq!(Policy::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_pull_script_decides_per_image_as_compose_up_does() {
        // A fake `docker` on the PATH: `a` is on the host from a registry, `b` only on the host, `c` absent.
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("docker");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho \"$*\" >> \"$LOG\"\ncase \"$1 $2\" in\n'image inspect')\n  for r; do :; done\n  case $r in\n    reg/a:1) case $4 in *Unix*) echo '0 reg/a@sha256:aa';; *) echo 'reg/a@sha256:aa';; esac;;\n    b:1) case $4 in *Unix*) echo '0 ';; *) echo '';; esac;;\n    *) exit 1;;\n  esac;;\npull) exit 0;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let log = d.path().join("log");
        let pull = |reference: &str, policy| Pull { services: vec!["s".into()], reference: reference.into(), policy };
        let cmd = pull_cmd(
            None,
            &[pull("reg/a:1", Policy::Missing), pull("b:1", Policy::Always), pull("reg/c:1", Policy::Missing)],
        );
        let script = format!("PATH={}:$PATH LOG={} {}", d.path().display(), log.display(), cmd.render(false));
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
        let decisions = parse_decisions(&stdout);
        let want: Vec<(String, String)> = [("kept", "reg/a:1"), ("local", "b:1"), ("pulled", "reg/c:1")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(decisions, want, "{stdout}");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().filter(|l| l.starts_with("pull")).collect::<Vec<_>>(), ["pull -q reg/c:1"], "{calls}");
        // A `refresh` image last tagged long ago is pulled again; `never` and absent stops before any pull.
        let cmd = pull_cmd(None, &[pull("reg/a:1", Policy::Refresh(60)), pull("reg/c:1", Policy::Never)]);
        let script = format!("PATH={}:$PATH LOG={} {}", d.path().display(), log.display(), cmd.render(false));
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert_eq!(out.status.code(), Some(PULL_NEVER_ABSENT));
        assert_eq!(
            parse_decisions(&String::from_utf8_lossy(&out.stdout)),
            [("pulled".to_string(), "reg/a:1".to_string()), ("absent".to_string(), "reg/c:1".to_string())]
        );
    }

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn login_inputs_go_together_and_are_checked() {
        let p = || Some(Secret::new("pw-canary-123"));
        assert!(parse_login(None, None, None).unwrap().is_none());
        assert!(parse_login(Some(" ".into()), Some("".into()), Some(Secret::new(""))).unwrap().is_none());
        let l = parse_login(Some("127.0.0.1:5000".into()), Some("ci".into()), p()).unwrap().unwrap();
        assert_eq!((l.registry.as_str(), l.username.as_str()), ("127.0.0.1:5000", "ci"));
        let e = parse_login(Some("ghcr.io".into()), None, p()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("`registry-username` is empty"), "{}", e.message);
        assert!(!e.message.contains("canary") && !format!("{e:?}").contains("canary"));
        let e = parse_login(Some("ghcr.io".into()), Some("u".into()), None).unwrap_err();
        assert!(e.message.contains("`registry-password` is empty"), "{}", e.message);
        let e = parse_login(None, Some("u".into()), None).unwrap_err();
        assert!(e.message.contains("`registry` and `registry-password` are empty"), "{}", e.message);
        for bad in ["https://ghcr.io", "ghcr.io/acme", "ghcr.io:x", "host:0", "a b", "-x.io", "", ":5000", "[::1"] {
            assert_eq!(validate_registry(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        for good in ["ghcr.io", "127.0.0.1:5000", "localhost:5000", "registry-1.docker.io", "[::1]:5000"] {
            assert!(validate_registry(good).is_ok(), "{good}");
        }
        assert!(parse_login(Some("ghcr.io".into()), Some("-u".into()), p()).is_err());
    }

    #[test]
    fn login_command_keeps_the_password_off_the_command_line() {
        let l = Login { registry: "ghcr.io".into(), username: "ci".into(), password: Secret::new("pw-canary-456") };
        let c = login_cmd("/opt/app", &l);
        for text in [c.render(true), c.display(true), format!("{c:?}")] {
            assert!(!text.contains("canary"), "{text}");
        }
        assert_eq!(c.stdin_secret().unwrap().expose(), "pw-canary-456");
        assert_eq!(auth_dir("/opt/app/"), "/opt/app/.gangplank/docker-auth");
        let e = login_error(&l, "h1", "Error response from daemon: Get \"https://ghcr.io/v2/\": unauthorized: bad");
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.starts_with("the registry ghcr.io refused the login of `ci` on h1"), "{}", e.message);
        let e = login_error(&l, "h1", "dial tcp 127.0.0.1:1: connect: connection refused");
        assert!(e.message.contains("logging in to the registry ghcr.io from h1 failed"), "{}", e.message);
    }

    #[test]
    fn the_login_script_makes_a_private_config_with_the_plugins_and_cleans_up() {
        use gangplank_core::exec::{Executor, Local};
        let t = tempfile::tempdir().unwrap();
        let app = t.path().join("app");
        std::fs::create_dir_all(app.join(".gangplank")).unwrap();
        let orig = t.path().join("orig");
        std::fs::create_dir_all(orig.join("cli-plugins")).unwrap();
        // A stand-in `docker` that records its arguments and stdin, and fails for the wrong password.
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("docker"),
            "#!/bin/sh\nprintf '%s ' \"$@\" > \"$DOCKER_CONFIG/args\"; pw=$(cat); [ \"$pw\" = right ] || { echo 'unauthorized: no' >&2; exit 1; }\n",
        )
        .unwrap();
        std::process::Command::new("chmod").arg("755").arg(bin.join("docker")).status().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let run = |pw: &str| {
            let l = Login { registry: "r.example:5000".into(), username: "u".into(), password: Secret::new(pw) };
            let c = Cmd::new("env")
                .arg(format!("PATH={path}"))
                .arg(format!("DOCKER_CONFIG={}", orig.display()))
                .args(["sh", "-c", LOGIN_SCRIPT, "gangplank"])
                .arg(app.display().to_string())
                .arg(&l.registry)
                .arg(&l.username)
                .secret_stdin(&l.password);
            Local::new(false).run(&c).unwrap()
        };
        let out = run("right");
        assert!(out.success(), "{}", out.stderr_str());
        let a = app.join(".gangplank/docker-auth");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_link(a.join("cli-plugins")).unwrap(), orig.join("cli-plugins"));
        let args = std::fs::read_to_string(a.join("args")).unwrap();
        assert_eq!(args.trim(), "login --username u --password-stdin r.example:5000");
        let out = run("wrong");
        assert!(!out.success() && out.stderr_str().contains("unauthorized"));
        assert!(!a.exists(), "a refused login leaves no folder");

        // A credential store the Docker CLI would pick by itself: `pass` with its helper on the PATH. The login
        // is refused before any folder or docker call, naming the helper.
        for helpers in [&["pass", "docker-credential-pass"][..], &["docker-credential-secretservice"][..]] {
            for h in helpers {
                std::fs::write(bin.join(h), "#!/bin/sh\ntouch \"$0.ran\"\n").unwrap();
                std::process::Command::new("chmod").arg("755").arg(bin.join(h)).status().unwrap();
            }
            let out = run("right");
            assert_eq!(out.status, 65, "{}", out.stderr_str());
            let e = login_error(
                &Login { registry: "r.example:5000".into(), username: "u".into(), password: Secret::new("right") },
                "h1",
                &out.tail(3),
            );
            assert!(e.message.contains(&format!("credential store `{}`", helpers.last().unwrap())), "{}", e.message);
            assert!(!a.exists() && !app.join(".gangplank/docker-auth").exists());
            for h in helpers {
                assert!(!bin.join(format!("{h}.ran")).exists(), "{h} ran");
                std::fs::remove_file(bin.join(h)).unwrap();
            }
        }
    }

    #[test]
    fn expected_digests_match_images_by_repository() {
        let expect =
            parse_expect(&format!(r#"{{"app":"{}","team/worker":"{}","other":"{}"}}"#, d('a'), d('b'), d('c')))
                .unwrap();
        let images = vec![
            ("web".to_string(), "127.0.0.1:5000/app:v2".to_string()),
            ("worker".to_string(), "ghcr.io/team/worker:v2".to_string()),
            ("db".to_string(), "postgres:16".to_string()),
            ("myapp".to_string(), "127.0.0.1:5000/myapp:v2".to_string()),
        ];
        let (m, unmatched) = match_expect(&expect, &images);
        assert_eq!(
            m.iter().map(|e| (e.service.as_str(), e.key.as_str())).collect::<Vec<_>>(),
            [("web", "app"), ("worker", "team/worker")]
        );
        assert_eq!(unmatched, ["other"]);
        assert!(parse_expect("").unwrap().is_empty() && parse_expect(" {} ").unwrap().is_empty());
        for bad in ["[1]", r#"{"app":1}"#, r#"{"app":"sha256:abc"}"#, r#"{"App":"sha256:"}"#, "{"] {
            assert_eq!(parse_expect(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn a_moved_tag_is_refused_naming_service_and_both_digests() {
        let e = Expect {
            service: "web".into(),
            reference: "127.0.0.1:5000/app:v2".into(),
            key: "app".into(),
            digest: d('a'),
        };
        let pulled = parse_pulled(&format!(
            "digests\t127.0.0.1:5000/app:v2\t127.0.0.1:5000/app@{} 127.0.0.1:5000/other@{}\n",
            d('b'),
            d('a')
        ));
        let err = check(std::slice::from_ref(&e), &pulled, "h1").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.message.contains("service `web`") && err.message.contains(&d('a')) && err.message.contains(&d('b')),
            "{}",
            err.message
        );
        let ok = parse_pulled(&format!("digests\t127.0.0.1:5000/app:v2\t127.0.0.1:5000/app@{}\n", d('a')));
        assert!(check(&[e], &ok, "h1").is_ok());
        let hub = Expect {
            service: "x".into(),
            reference: "docker.io/library/nginx:1".into(),
            key: "nginx".into(),
            digest: d('c'),
        };
        let p = parse_pulled(&format!("digests\tdocker.io/library/nginx:1\tnginx@{}\n", d('c')));
        assert!(check(&[hub], &p, "h1").is_ok());
    }
}
