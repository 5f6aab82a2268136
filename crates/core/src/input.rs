//! Parsing of action inputs: booleans, lists, durations, sizes, and the SSH inputs shared by
//! `deploy-remote`, `rollback` and `sync-secrets`.
//!
//! Every input `foo-bar` is the flag `--foo-bar` and the environment variable `INPUT_FOO_BAR` (flag wins);
//! clap does that mapping. The parsers here are clap value parsers, so a bad value is reported by clap
//! with the input's name and exits 2.

use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// `true`/`false`, `1`/`0`, `yes`/`no` (any case). Anything else is a bad input.
pub fn parse_bool(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("`{other}` is not a boolean; use true or false")),
    }
}

/// Newline- or comma-separated; entries trimmed, blank entries ignored.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(['\n', ',']).map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
}

/// The longest duration an input may give: one day. Every duration bounds a wait inside one step of a
/// job, and a deadline computed from a larger one could overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The largest size an input may give: 1 PiB, above any disk or image, far below `u64::MAX`.
pub const MAX_SIZE: u64 = 1 << 50;

/// `90s`, `5m`, `1h`, `250ms`, or a bare number of seconds; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{t}` is not a duration of at most 24h; use e.g. 90s, 5m, 1h or a number of seconds");
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 || secs > MAX_DURATION.as_secs_f64() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `1GiB`, `300MiB`, `512KiB`, `2GB`, `10MB`, or a bare number of bytes; at most [`MAX_SIZE`].
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{t}` is not a size of at most 1PiB; use e.g. 300MiB, 1GiB or a number of bytes");
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > MAX_SIZE as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

/// Format a byte count the way users write it back (`1.5GiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// An absolute path on a host (`app-dir`, `remote-env-path`), returned without a trailing `/`. Refused when
/// relative, when it is `/` itself, or when it holds a control character (a newline would split the
/// lines of state files, audit lines and scripts' output that name it).
pub fn absolute_path(path: &str, input: &str) -> Result<String> {
    let trimmed = path.trim_end_matches('/');
    if !path.starts_with('/') || trimmed.is_empty() || path.chars().any(char::is_control) {
        return Err(Error::bad_input(format!("`{input}` {path:?} is not an absolute path without control characters"))
            .hint("use an absolute path on the host such as /opt/myapp"));
    }
    Ok(trimmed.to_string())
}

/// A clap value parser for a list input.
/// An `http://` or `https://` URL with a host and no credentials, spaces or control characters: what an API
/// URL input may hold (GitHub's, a GitHub Enterprise Server's, a stand-in's).
pub fn is_http_url(u: &str) -> bool {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    }) && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A token sent as `Authorization: Bearer …` must be one line of visible ASCII (an HTTP header cannot
/// carry anything else): refused as bad input naming `input`, never showing the value.
pub fn check_token(token: &Secret, input: &str) -> Result<()> {
    if token.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "`{input}` holds a space, a line break or a character outside ASCII: a token is one word of visible ASCII"
    ))
    .hint("paste the token alone into the secret, without quotes, spaces or a second line"))
}

pub fn list_value(s: &str) -> std::result::Result<Vec<String>, String> {
    Ok(parse_list(s))
}

/// One SSH destination, parsed from `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl HostSpec {
    /// Parse `[user@]host[:port]` (`[v6addr]:port` too), with the defaults for missing parts.
    pub fn parse(s: &str, default_user: &str, default_port: u16) -> Result<HostSpec> {
        let s = s.trim();
        let hint = "write hosts as `host`, `user@host` or `user@host:port`, one per line";
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (u.to_string(), r),
            None => (default_user.to_string(), s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| Error::bad_input(format!("host `{s}` has an unclosed `[`")).hint(hint))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(Error::bad_input(format!("host `{s}` is not valid")).hint(hint)),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                _ => (rest.to_string(), None),
            }
        };
        let port =
            match port {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    Error::bad_input(format!("port `{p}` of host `{s}` is not a port number")).hint(hint)
                })?,
                None => default_port,
            };
        let valid_host =
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !valid_host {
            return Err(Error::bad_input(format!("host `{host}` is not a valid host name or address")).hint(hint));
        }
        let valid_user = !user.is_empty()
            && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !user.starts_with('-');
        if !valid_user {
            return Err(Error::bad_input(format!("user `{user}` is not a valid login name")).hint(hint));
        }
        Ok(HostSpec { user, host, port })
    }
}

impl std::fmt::Display for HostSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// A private key given as text or, for local runs, as a path to a key file (read with the text limit).
fn secret_key_value(s: &str) -> std::result::Result<Secret, String> {
    if !s.contains("-----BEGIN") && !s.contains('\n') && std::path::Path::new(s.trim()).is_file() {
        let path = std::path::Path::new(s.trim());
        let text = crate::local::read_input_text(path, "key file", crate::local::TEXT_LIMIT).map_err(|e| e.message)?;
        return Ok(Secret::new(text));
    }
    Ok(Secret::new(s))
}

fn secret_value(s: &str) -> std::result::Result<Secret, String> {
    Ok(Secret::new(s))
}

/// The SSH inputs shared by deploy-remote, rollback and sync-secrets (docs/actions.md, "SSH inputs").
#[derive(Debug, Clone, Args)]
pub struct SshArgs {
    /// One or more `[user@]host[:port]`, newline- or comma-separated
    // Spelled with its path so clap's derive keeps the parsed list as one value instead of reading
    // `Option<Vec<_>>` as "many values" (which panics on access).
    #[arg(long, env = "INPUT_HOST", value_parser = list_value)]
    pub host: Option<::std::vec::Vec<String>>,

    /// Login user when `host` names none
    #[arg(long, env = "INPUT_USER", default_value = "root")]
    pub user: String,

    /// SSH port when `host` names none
    #[arg(long, env = "INPUT_PORT", default_value_t = 22)]
    pub port: u16,

    /// Private key text (OpenSSH or PEM); locally also a path to a key file
    #[arg(long, env = "INPUT_SSH_KEY", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_key_value)]
    pub ssh_key: Option<Secret>,

    /// Passphrase of an encrypted key
    #[arg(long, env = "INPUT_SSH_KEY_PASSPHRASE", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    pub ssh_key_passphrase: Option<Secret>,

    /// known_hosts lines for the target hosts, as ssh-keyscan prints them (hashed or not)
    #[arg(long, env = "INPUT_KNOWN_HOSTS")]
    pub known_hosts: Option<String>,

    /// Alternative to known-hosts: `SHA256:…` as `ssh-keygen -lf` prints it
    #[arg(long, env = "INPUT_HOST_FINGERPRINT")]
    pub host_fingerprint: Option<String>,

    /// Skip host key checking (the only way to; prints a warning)
    #[arg(long, env = "INPUT_INSECURE_IGNORE_HOST_KEY", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub insecure_ignore_host_key: bool,

    /// How long to wait for the TCP connection and SSH handshake
    #[arg(long, env = "INPUT_CONNECT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Prefix privileged commands with `sudo -n`
    #[arg(long, env = "INPUT_SUDO", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub sudo: bool,
}

/// The registry login of deploy-remote and rollback (docs/actions.md): all three or none; validated by
/// `gangplank_deploy::registry::parse_login`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registry the hosts log in to before pulling, `host[:port]` (e.g. ghcr.io, 127.0.0.1:5000)
    #[arg(long, env = "INPUT_REGISTRY")]
    pub registry: Option<String>,

    /// User name of the registry login
    #[arg(long, env = "INPUT_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,

    /// Password or token of the registry login; reaches `docker login --password-stdin` on the host's stdin only
    #[arg(long, env = "INPUT_REGISTRY_PASSWORD", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    pub registry_password: Option<Secret>,
}

/// How to check the server's host key.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Lines in known_hosts format (hashed entries too).
    KnownHosts(String),
    /// `SHA256:<base64>` as `ssh-keygen -lf` prints it.
    Fingerprint(String),
    /// Opted out by name with `insecure-ignore-host-key`.
    Insecure,
}

/// Validated SSH settings for one step: every host, the key, and how host keys are checked.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub hosts: Vec<HostSpec>,
    pub key: Secret,
    pub passphrase: Option<Secret>,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub sudo: bool,
}

impl SshArgs {
    /// Raw inputs → validated SSH settings. Fails with exit 2 before any connection.
    pub fn to_config(&self) -> Result<SshConfig> {
        let hosts_raw = self.host.clone().unwrap_or_default();
        if hosts_raw.is_empty() {
            return Err(Error::bad_input("input `host` is required")
                .hint("set `host:` to the server, e.g. `deploy@203.0.113.10` or `203.0.113.10:2222`"));
        }
        let hosts = hosts_raw.iter().map(|h| HostSpec::parse(h, &self.user, self.port)).collect::<Result<Vec<_>>>()?;
        let key = self.ssh_key.clone().filter(|k| !k.expose().trim().is_empty()).ok_or_else(|| {
            Error::bad_input("input `ssh-key` is required")
                .hint("store the private key in a secret and pass it as `ssh-key: ${{ secrets.DEPLOY_KEY }}`")
        })?;
        let passphrase = self.ssh_key_passphrase.clone().filter(|p| !p.is_empty());
        crate::keys::check_private_key(key.expose(), passphrase.is_some())?;
        let known = self.known_hosts.clone().filter(|k| !k.trim().is_empty());
        let fp = self.host_fingerprint.clone().filter(|k| !k.trim().is_empty());
        let host_key = match (known, fp, self.insecure_ignore_host_key) {
            (Some(k), None, false) => {
                crate::known_hosts::parse(&k)?;
                HostKeyPolicy::KnownHosts(k)
            }
            (None, Some(f), false) => {
                let f = f.trim().to_string();
                if !f.starts_with("SHA256:") || f.len() < 20 {
                    return Err(Error::bad_input(format!("host-fingerprint `{f}` is not a SHA256 fingerprint"))
                        .hint("run `ssh-keyscan HOST | ssh-keygen -lf -` and copy the `SHA256:…` part"));
                }
                HostKeyPolicy::Fingerprint(f)
            }
            (None, None, true) => HostKeyPolicy::Insecure,
            (None, None, false) => {
                return Err(Error::bad_input("no way to verify the server's host key was given")
                    .hint("set `known-hosts` to the output of `ssh-keyscan -p PORT HOST`, or `host-fingerprint` to its `SHA256:…` fingerprint"))
            }
            _ => {
                return Err(Error::bad_input(
                    "give only one of `known-hosts`, `host-fingerprint` and `insecure-ignore-host-key`",
                )
                .hint("prefer `known-hosts`; `insecure-ignore-host-key` turns off protection against a man in the middle"))
            }
        };
        Ok(SshConfig { hosts, key, passphrase, host_key, connect_timeout: self.connect_timeout, sudo: self.sudo })
    }
}

/// Parse inputs from `argv` (program name first) and `INPUT_*` variables.
///
/// action.yml maps every input through `env:`, so an input the user left out arrives as an empty
/// `INPUT_FOO`. clap would take that empty string as a value and skip the default, so empty `INPUT_*`
/// variables are dropped first. A value clap refuses is reported like every other bad input
/// ([`clap_error`]); `--help` and `--version` print and exit as clap does.
pub fn parse_inputs_from<T, I, A>(argv: I) -> T
where
    T: clap::Parser,
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, v)| k.to_string_lossy().starts_with("INPUT_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
    T::try_parse_from(argv).unwrap_or_else(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp
        | clap::error::ErrorKind::DisplayVersion
        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => std::process::exit(crate::actions::report(&clap_error(&e))),
    })
}

/// A refusal by clap (a bad port, a bad boolean, an unknown flag) as gangplank's bad-input error: the
/// first line of clap's message, its `tip:` if it has one, and a hint naming the input, so it gets the
/// same `::error` annotation, `hint:` line and exit 2 as every other bad input.
pub fn clap_error(e: &clap::Error) -> Error {
    use clap::error::ContextKind;
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let message = lines.next().unwrap_or("the arguments are not valid");
    let message = message.strip_prefix("error: ").unwrap_or(message).to_string();
    let tip = lines.find_map(|l| l.strip_prefix("tip: ")).map(|t| format!("{t}; "));
    let input = e.get(ContextKind::InvalidArg).map(|a| a.to_string()).and_then(|a| {
        let flag = a.strip_prefix("--")?;
        Some(flag.split([' ', '=', '<']).next().unwrap_or(flag).to_string())
    });
    let about = match input {
        Some(i) => {
            format!("check input `{i}` (flag `--{i}`, variable `INPUT_{}`); ", i.to_ascii_uppercase().replace('-', "_"))
        }
        None => String::new(),
    };
    Error::bad_input(message)
        .hint(format!("{}{about}`gangplank <step> --help` lists every input with its format", tip.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for (s, v) in [("true", true), ("YES", true), ("1", true), ("false", false), ("no", false), ("0", false)] {
            assert_eq!(parse_bool(s), Ok(v), "{s}");
        }
        assert!(parse_bool("maybe").unwrap_err().contains("`maybe` is not a boolean"));
    }

    #[test]
    fn lists_split_on_newlines_and_commas() {
        assert_eq!(parse_list("a, b\n\n c,\n"), vec!["a", "b", "c"]);
        assert!(parse_list(" \n, ").is_empty());
    }

    #[test]
    fn clap_refusals_become_bad_inputs_with_a_hint() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct T {
            #[command(flatten)]
            ssh: SshArgs,
        }
        let e = clap_error(&T::try_parse_from(["t", "--port", "70000"]).unwrap_err());
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("70000") && !e.message.starts_with("error:"), "{e}");
        assert!(e.hint.as_deref().unwrap().contains("`port` (flag `--port`, variable `INPUT_PORT`)"), "{e}");
        let e = clap_error(&T::try_parse_from(["t", "--sudo", "maybe"]).unwrap_err());
        assert!(e.message.contains("not a boolean") && e.hint.unwrap().contains("INPUT_SUDO"), "{}", e.message);
        let e = clap_error(&T::try_parse_from(["t", "--bogus"]).unwrap_err());
        assert!(e.message.contains("--bogus") && e.hint.is_some(), "{}", e.message);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        // Large enough to overflow a `Duration` (it used to panic), or just longer than a day.
        for big in ["99999999999999999999999", "1e400", "25h", "86401", "99999999999h"] {
            assert!(parse_duration(big).unwrap_err().contains("at most 24h"), "{big}");
        }
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("300MiB"), Ok(300 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("17"), Ok(17));
        assert!(parse_size("lots").is_err());
        for big in ["99999999999999999999999", "2PiB", "1025TiB", "18446744073709551615"] {
            assert!(parse_size(big).unwrap_err().contains("at most 1PiB"), "{big}");
        }
        assert_eq!(parse_size("1024TiB"), Ok(MAX_SIZE));
        assert_eq!(format_size(1536 << 20), "1.5GiB");
    }

    #[test]
    fn ssh_args_parse_from_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            ssh: SshArgs,
        }
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let t = T::try_parse_from(["t", "--host", "a@h1:2222, h2\nh3", "--ssh-key", key, "--port", "2200"]).unwrap();
        assert_eq!(t.ssh.host.clone().unwrap(), vec!["a@h1:2222", "h2", "h3"]);
        assert_eq!(t.ssh.ssh_key.as_ref().unwrap().expose(), key);
        assert_eq!(t.ssh.connect_timeout, Duration::from_secs(30));
        assert!(!t.ssh.sudo && !t.ssh.insecure_ignore_host_key);
        let e = T::try_parse_from(["t", "--sudo", "maybe"]).err().unwrap().to_string();
        assert!(e.contains("not a boolean"), "{e}");
    }

    #[test]
    fn host_specs() {
        let h = HostSpec::parse("deploy@example.com:2222", "root", 22).unwrap();
        assert_eq!((h.user.as_str(), h.host.as_str(), h.port), ("deploy", "example.com", 2222));
        let h = HostSpec::parse("10.0.0.1", "root", 22).unwrap();
        assert_eq!(h.to_string(), "root@10.0.0.1:22");
        let h = HostSpec::parse("[::1]:2200", "u", 22).unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", 2200));
        assert_eq!(HostSpec::parse("h;rm -rf /", "root", 22).unwrap_err().exit_code(), 2);
        assert_eq!(HostSpec::parse("h:99999", "root", 22).unwrap_err().exit_code(), 2);
        assert_eq!(HostSpec::parse("-oProxyCommand=x@h", "root", 22).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn absolute_paths() {
        assert_eq!(absolute_path("/opt/my app/", "app-dir").unwrap(), "/opt/my app");
        for bad in ["opt/app", "./x", "", "/", "//", "/opt/app\n/etc", "/opt/a\tb", "/opt/\u{7f}"] {
            let e = absolute_path(bad, "app-dir").unwrap_err();
            assert!(e.exit_code() == 2 && e.message.contains("`app-dir`") && e.hint.is_some(), "{bad:?}");
        }
    }
}
