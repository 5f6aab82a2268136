//! `known-hosts` read as OpenSSH reads a known_hosts file (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT").
//!
//! A line is `[@marker] hostnames keytype base64-key [comment]`:
//! - `hostnames` is a comma-separated list of patterns with `*` and `?` wildcards, matched without regard
//!   to case; a pattern starting with `!` is a negation: a host that matches it is not matched by the line,
//!   whatever the other patterns say;
//! - a host on a port other than 22 is looked up as `[host]:port`, so a plain `host` entry is for port 22
//!   only and `[host]:2222` for port 2222 only;
//! - a hashed entry `|1|salt|hash` (what `ssh-keygen -H` and `ssh-keyscan -H` write) is the HMAC-SHA1 of that
//!   same lookup name keyed with the salt; it is one name, without wildcards or negation;
//! - `@revoked` marks a key that must never be accepted, even when another line lists it for the host;
//! - `@cert-authority` lines hold CA keys for host certificates, which gangplank does not use: they are
//!   read (so a malformed one is still an error) and never match a plain host key.
//!
//! We check keys ourselves rather than through libssh2's known_hosts, which knows none of the markers,
//! negation or wildcards, and accepts an entry without a port for any port.

use base64::Engine;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Plain,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<String>),
}

/// One line of `known-hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    /// The public key blob, as the server sends it.
    key: Vec<u8>,
}

/// What `known-hosts` says about the key a server offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A plain entry for this host holds this key, and no `@revoked` line for the host names it.
    Match,
    /// An `@revoked` line for this host holds this key.
    Revoked,
    /// The host has plain entries for this key type, none with this key.
    Changed,
    /// No plain entry for this host and key type.
    Unknown,
}

/// The name a host is looked up by: `host` on port 22, `[host]:port` on any other port (OpenSSH's
/// `put_host_port`).
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// Parse every line; blank lines and `#` comments are skipped. Errors name the line, never print it whole.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|why| {
            Error::bad_input(format!("line {} of `known-hosts` is not a known_hosts entry: {why}", i + 1))
                .hint("use the output of `ssh-keyscan -p PORT HOST` as it is")
        })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> std::result::Result<Entry, String> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().unwrap_or_default();
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err(format!("unknown marker `{m}` (known: @revoked, @cert-authority)")),
        _ => Marker::Plain,
    };
    if marker != Marker::Plain {
        first = fields.next().ok_or("no host names after the marker")?;
    }
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|').ok_or("a hashed host name needs `|1|salt|hash`")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(salt).map_err(|_| "the salt of a hashed host name is not base64")?;
        let hash = b64.decode(hash).map_err(|_| "the hash of a hashed host name is not base64")?;
        if salt.len() != 20 || hash.len() != 20 {
            return Err("a hashed host name needs a 20-byte salt and hash".into());
        }
        Hosts::Hashed { salt, hash }
    } else if first.starts_with('|') {
        return Err("only `|1|` hashed host names exist".into());
    } else {
        let patterns: Vec<String> = first.split(',').map(str::to_ascii_lowercase).collect();
        if patterns.iter().any(|p| p.is_empty() || p == "!") {
            return Err("an empty host pattern".into());
        }
        Hosts::Patterns(patterns)
    };
    let key_type = fields.next().ok_or("no key type")?.to_string();
    let key = base64::engine::general_purpose::STANDARD
        .decode(fields.next().ok_or("no key")?)
        .map_err(|_| "the key is not base64")?;
    if blob_type(&key) != Some(key_type.as_str()) {
        return Err(format!("the key is not a `{key_type}` key"));
    }
    Ok(Entry { marker, hosts, key_type, key })
}

/// The key type a public key blob starts with (an SSH string: 4-byte length, then the name).
fn blob_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

/// OpenSSH's `match_pattern`: `*` matches any run of characters, `?` any one character.
fn wildcard(name: &[u8], pattern: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice, and no recursion depth to exhaust.
    let (mut n, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == name[n] => {
                n += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                ring::hmac::verify(&k, name.as_bytes(), hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut positive = false;
                for p in patterns {
                    match p.strip_prefix('!') {
                        Some(neg) if wildcard(name.as_bytes(), neg.as_bytes()) => return false,
                        Some(_) => {}
                        None => positive |= wildcard(name.as_bytes(), p.as_bytes()),
                    }
                }
                positive
            }
        }
    }
}

/// Check the key `host:port` offered against the entries.
pub fn check(entries: &[Entry], host: &str, port: u16, key: &[u8]) -> Verdict {
    let name = lookup_name(host, port);
    let for_host: Vec<&Entry> = entries.iter().filter(|e| e.matches(&name)).collect();
    if for_host.iter().any(|e| e.marker == Marker::Revoked && e.key == key) {
        return Verdict::Revoked;
    }
    let plain = || for_host.iter().filter(|e| e.marker == Marker::Plain);
    if plain().any(|e| e.key == key) {
        Verdict::Match
    } else if plain().any(|e| Some(e.key_type.as_str()) == blob_type(key)) {
        Verdict::Changed
    } else {
        Verdict::Unknown
    }
}

/// The host key algorithms of the plain entries for `host:port`, in their order, so the server is asked
/// for a key type we can check (a server with ed25519 and RSA keys must not hand us the one we have no
/// line for).
pub fn key_types(entries: &[Entry], host: &str, port: u16) -> Vec<String> {
    let name = lookup_name(host, port);
    let mut types: Vec<String> = Vec::new();
    for e in entries.iter().filter(|e| e.marker == Marker::Plain && e.matches(&name)) {
        let algs: &[&str] = match e.key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            other => &[other][..],
        };
        for a in algs {
            if !types.iter().any(|x| x == a) {
                types.push(a.to_string());
            }
        }
    }
    types
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A new key pair made by the real `ssh-keygen`: its `.pub` line's `type base64` and its blob.
    fn keygen(dir: &Path, name: &str, kind: &str) -> (String, Vec<u8>) {
        let path = dir.join(name);
        let st = Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", "", "-f"]).arg(&path).status();
        assert!(st.expect("ssh-keygen (openssh-client) is installed").success());
        let text = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
        let mut f = text.split_whitespace();
        let (t, b) = (f.next().unwrap().to_string(), f.next().unwrap().to_string());
        let blob = base64::engine::general_purpose::STANDARD.decode(&b).unwrap();
        (format!("{t} {b}"), blob)
    }

    /// `line` hashed by the real `ssh-keygen -H`.
    fn hashed(dir: &Path, line: &str) -> String {
        let f = dir.join("kh");
        std::fs::write(&f, format!("{line}\n")).unwrap();
        // `output`, not `status`: ssh-keygen -H says where it kept the original on stderr.
        assert!(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&f).output().unwrap().status.success());
        let out = std::fs::read_to_string(&f).unwrap().trim().to_string();
        assert!(out.starts_with("|1|"), "{out}");
        out
    }

    #[test]
    fn markers_patterns_ports_and_hashes_as_openssh_reads_them() {
        let d = tempfile::tempdir().unwrap();
        let (k1, b1) = keygen(d.path(), "k1", "ed25519");
        let (k2, b2) = keygen(d.path(), "k2", "ed25519");
        let (_, b3) = keygen(d.path(), "k3", "ecdsa");
        let v = |text: &str, host: &str, port: u16, key: &[u8]| check(&parse(text).unwrap(), host, port, key);

        // Ports: a plain name is port 22 only; `[host]:port` that port only.
        assert_eq!(v(&format!("127.0.0.1 {k1}"), "127.0.0.1", 22, &b1), Verdict::Match);
        assert_eq!(v(&format!("127.0.0.1 {k1}"), "127.0.0.1", 2222, &b1), Verdict::Unknown);
        assert_eq!(v(&format!("[127.0.0.1]:2222 {k1}"), "127.0.0.1", 2222, &b1), Verdict::Match);
        assert_eq!(v(&format!("[127.0.0.1]:2222 {k1}"), "127.0.0.1", 2200, &b1), Verdict::Unknown);
        assert_eq!(v(&format!("[127.0.0.1]:2222 {k1}"), "127.0.0.1", 22, &b1), Verdict::Unknown);

        // Wildcards and lists, case-insensitive.
        assert_eq!(v(&format!("* {k1}"), "127.0.0.1", 2222, &b1), Verdict::Match);
        assert_eq!(v(&format!("127.0.0.? {k1}"), "127.0.0.7", 22, &b1), Verdict::Match);
        assert_eq!(v(&format!("127.0.0.? {k1}"), "127.0.0.17", 22, &b1), Verdict::Unknown);
        assert_eq!(v(&format!("[127.0.0.?]:2222 {k1}"), "127.0.0.1", 2222, &b1), Verdict::Match);
        assert_eq!(v(&format!("a.example,*.Example.COM {k1}"), "deploy.example.com", 22, &b1), Verdict::Match);

        // Negation wins over any positive pattern of its line, and only of its line.
        let neg = format!("*,!127.0.0.1 {k1}");
        assert_eq!(v(&neg, "127.0.0.1", 22, &b1), Verdict::Unknown);
        assert_eq!(v(&neg, "127.0.0.2", 22, &b1), Verdict::Match);
        assert_eq!(v(&format!("{neg}\n127.0.0.1 {k1}"), "127.0.0.1", 22, &b1), Verdict::Match);
        assert_eq!(v(&format!("!127.0.0.1 {k1}"), "127.0.0.2", 22, &b1), Verdict::Unknown, "no positive pattern");

        // @revoked beats a plain entry for the same key; another key of the host still passes.
        let revoked = format!("@revoked [127.0.0.1]:2222 {k1}\n[127.0.0.1]:2222 {k1}\n[127.0.0.1]:2222 {k2}");
        assert_eq!(v(&revoked, "127.0.0.1", 2222, &b1), Verdict::Revoked);
        assert_eq!(v(&revoked, "127.0.0.1", 2222, &b2), Verdict::Match);
        assert_eq!(v(&format!("@revoked * {k1}\n127.0.0.1 {k1}"), "127.0.0.1", 22, &b1), Verdict::Revoked);

        // @cert-authority lines never match a plain key.
        assert_eq!(v(&format!("@cert-authority * {k1}"), "127.0.0.1", 22, &b1), Verdict::Unknown);

        // Changed: the host has a key of this type, not this one; a type it has no line for is unknown.
        assert_eq!(v(&format!("127.0.0.1 {k2}"), "127.0.0.1", 22, &b1), Verdict::Changed);
        assert_eq!(v(&format!("127.0.0.1 {k2}"), "127.0.0.1", 22, &b3), Verdict::Unknown);

        // Hashed entries, as `ssh-keygen -H` writes them, for port 22 and for another port.
        let h22 = hashed(d.path(), &format!("deploy.example.com {k1}"));
        assert_eq!(v(&h22, "deploy.example.com", 22, &b1), Verdict::Match);
        assert_eq!(v(&h22, "DEPLOY.example.com", 22, &b1), Verdict::Match);
        assert_eq!(v(&h22, "deploy.example.com", 2222, &b1), Verdict::Unknown);
        assert_eq!(v(&h22, "other.example.com", 22, &b1), Verdict::Unknown);
        let hport = hashed(d.path(), &format!("[127.0.0.1]:2222 {k2}"));
        assert_eq!(v(&hport, "127.0.0.1", 2222, &b2), Verdict::Match);
        assert_eq!(v(&format!("@revoked {hport}"), "127.0.0.1", 2222, &b2), Verdict::Revoked);
    }

    #[test]
    fn malformed_lines_are_refused_by_number() {
        let d = tempfile::tempdir().unwrap();
        let (k1, _) = keygen(d.path(), "k1", "ed25519");
        let (t, b) = k1.split_once(' ').unwrap();
        for bad in [
            format!("@trusted h {k1}"),
            "h ssh-ed25519".to_string(),
            format!("h {t} not-base64!"),
            format!("h ssh-rsa {b}"),
            format!("|1|abc|def {k1}"),
            format!("|2|x|y {k1}"),
            format!("a,,b {k1}"),
        ] {
            let e = parse(&format!("# ok\n\n{bad}\n")).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.starts_with("line 3 of `known-hosts`"), "{bad}: {e}");
            assert!(e.hint.is_some());
        }
    }

    #[test]
    fn key_types_come_from_the_hosts_plain_lines() {
        let d = tempfile::tempdir().unwrap();
        let (k1, _) = keygen(d.path(), "k1", "ed25519");
        let (k3, _) = keygen(d.path(), "k3", "ecdsa");
        let (kr, _) = keygen(d.path(), "kr", "rsa");
        let text = format!("[h]:2222 {k1}\n@revoked [h]:2222 {k3}\nother {k3}\n* {kr}\n@cert-authority * {k3}\n");
        assert_eq!(
            key_types(&parse(&text).unwrap(), "h", 2222),
            ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        );
    }

    #[test]
    fn wildcards() {
        for (n, p, ok) in [
            ("abc", "abc", true),
            ("abc", "a*", true),
            ("abc", "*c", true),
            ("abc", "a?c", true),
            ("abc", "a?", false),
            ("", "*", true),
            ("abc", "*b*", true),
            ("aaab", "*a*b", true),
            ("abc", "ab", false),
            ("ab", "abc", false),
        ] {
            assert_eq!(wildcard(n.as_bytes(), p.as_bytes()), ok, "{n} ~ {p}");
        }
    }
}
