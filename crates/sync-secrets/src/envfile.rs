//! The `env-file` target: render the server `.env` from the manifest, compare it with the file on the host
//! by key and by hash, and replace it atomically with a backup (docs/host-layout.md).
//! The caller holds the host's deploy lock around [`write`].
//!
//! Quoting: the file must read back byte for byte through both compose parsers: compose v1
//! (`docker-compose` 1.29, python-dotenv 0.21) and compose v2 (compose-go's dotenv). What they agree on:
//! - double quotes with `\\`, `\"`, `\n`, `\r` escapes read back exactly in both, as long as the value has no
//!   `$` (v2 expands `$X` and `${X}` inside double quotes; v1 expands `${X}` and keeps `\$` as two characters);
//! - single quotes are literal in v2 and keep everything but `\\`, `\'` and `${X}` in v1, so a value with `$`
//!   but without `'`, `\` and `${` is written single-quoted (newlines included, as real newlines);
//! - a value with `$` and also `'`, `\` or `${` has no spelling both read back, nor has a value ending in `\`
//!   (both parsers take the final `\"` for an escaped quote): such values are refused before anything is
//!   written (rule `env-file quoting`).
//!
//! Drift without revealing values: the host runs [`HASHES_SCRIPT`], which splits the file into entries (a
//! line `KEY=…` starts one; following lines that do not start a key belong to it) and prints each key with the
//! SHA-256 of the entry's text. [`entry_hashes`] does the same split on the rendered file, so equal hashes mean
//! equal entries. Values never leave the host and never reach a log.

use std::collections::BTreeMap;

use gangplank_core::exec::sha256_hex;
use gangplank_core::host::{audit_cmd, backup_stamp};
use gangplank_core::{Cmd, Error, Executor, Result};

/// Quote one value for a `.env` line, or say which rule stops it.
pub fn quote_value(v: &str) -> std::result::Result<String, &'static str> {
    // Both parsers take `\"` at the end for an escaped quote, not an escaped backslash and the closing quote.
    if v.ends_with('\\') {
        return Err("env-file quoting (a value ending in `\\` reads back differently in compose's parsers)");
    }
    if v.contains('$') {
        if v.contains('\'') || v.contains('\\') || v.contains("${") {
            return Err("env-file quoting (a value with `$` and also `'`, `\\` or `${` reads back differently in compose v1 and v2)");
        }
        return Ok(format!("'{v}'"));
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

pub const HEADER: &str = "# Written by gangplank sync-secrets from the secrets manifest: edits here are overwritten.\n";

/// The whole file: a header comment, then `KEY=value` lines in the given (stable) order.
pub fn render(values: &[(String, String)]) -> std::result::Result<String, String> {
    let mut out = String::from(HEADER);
    for (k, v) in values {
        let q = quote_value(v).map_err(|_| k.clone())?;
        out.push_str(k);
        out.push('=');
        out.push_str(&q);
        out.push('\n');
    }
    Ok(out)
}

fn starts_entry(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let b = key.as_bytes();
    let ok = !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    ok.then_some(key)
}

/// Key → SHA-256 of its entry's text, split exactly as [`HASHES_SCRIPT`] splits the file on the host:
/// a line `KEY=…` starts an entry unless a single-quoted value is still open; other lines belong to the entry.
///
/// Only a single-quoted value spans lines in a file [`render`] writes (a double-quoted one has its newlines
/// escaped, and a single-quoted one holds no `'`): a value opens when it starts with `'` and its line holds no
/// other `'`, and closes at the next line holding a `'`. A `'` inside a double-quoted value (`"it's"`)
/// opens nothing; counting every `'` on a line (as this did) hid every later key from the drift report.
pub fn entry_hashes(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, String)> = None;
    // Inside an open single quote (a multi-line value), a line that looks like `KEY=` is still the value.
    let mut open = false;
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
    for line in lines {
        match starts_entry(line) {
            Some(key) if !open => {
                if let Some((k, e)) = cur.take() {
                    out.insert(k, sha256_hex(e.as_bytes()));
                }
                cur = Some((key.to_string(), format!("{line}\n")));
                let value = &line[key.len() + 1..];
                open = value.starts_with('\'') && value.matches('\'').count() == 1;
            }
            _ => {
                if let Some((_, e)) = cur.as_mut() {
                    e.push_str(line);
                    e.push('\n');
                    if open && line.contains('\'') {
                        open = false;
                    }
                }
            }
        }
    }
    if let Some((k, e)) = cur {
        out.insert(k, sha256_hex(e.as_bytes()));
    }
    out
}

/// Prints `absent`, or `file <sha256>` then `<KEY> <sha256>  -` per entry. Never prints a value.
pub const HASHES_SCRIPT: &str = r#"set -eu
f=$1
if [ ! -e "$f" ]; then echo absent; exit 0; fi
printf 'file %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)"
printf 'mode %s\n' "$(stat -c %a "$f" 2>/dev/null || echo unknown)"
awk '
function flush() {
  if (key != "") { printf "%s ", key; fflush(); printf "%s", entry | "sha256sum"; close("sha256sum") }
  key = ""; entry = ""
}
open == 0 && /^[A-Za-z_][A-Za-z0-9_]*=/ {
  flush(); key = substr($0, 1, index($0, "=") - 1); entry = $0 "\n"
  value = substr($0, index($0, "=") + 1); first = substr(value, 1, 1)
  open = (first == "\047" && gsub(/\047/, "", value) == 1); next
}
{ if (key != "") { entry = entry $0 "\n"; if (open && index($0, "\047") > 0) open = 0 } }
END { flush() }
' "$f"
"#;

/// What the host's file looks like, by hashes only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    pub present: bool,
    pub file_hash: String,
    pub mode: String,
    pub keys: BTreeMap<String, String>,
}

pub fn read_remote(ex: &mut dyn Executor, path: &str) -> Result<Remote> {
    let out = ex.check(&Cmd::script(HASHES_SCRIPT).arg(path).privileged(), &format!("reading hashes of {path}"))?;
    let text = out.stdout_str();
    let mut r = Remote::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("absent"), None) => return Ok(Remote::default()),
            (Some("file"), Some(h)) => {
                r.present = true;
                r.file_hash = h.to_string();
            }
            (Some("mode"), Some(m)) => r.mode = m.to_string(),
            (Some(k), Some(h)) => {
                r.keys.insert(k.to_string(), h.to_string());
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Per-key drift between the rendered file and the host's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

pub fn drift(local: &BTreeMap<String, String>, remote: &BTreeMap<String, String>) -> Drift {
    let mut d = Drift::default();
    for (k, h) in local {
        match remote.get(k) {
            None => d.added.push(k.clone()),
            Some(r) if r == h => d.unchanged.push(k.clone()),
            Some(_) => d.changed.push(k.clone()),
        }
    }
    d.removed = remote.keys().filter(|k| !local.contains_key(*k)).cloned().collect();
    d
}

/// Make the `.env`'s missing folders below the app dir, then back up the current file into
/// `backups/.env.<stamp>` (mode 0600) and keep the newest `keep`. Runs under the host's lock; preflight
/// checked the same things before anything changed, and they are checked again here because a host can
/// change in between. A `.env`, backups folder, `.gangplank` or folder on the way to the `.env` that is a
/// symlink is refused before anything is written: a copy would take the link's target (another file's
/// content kept as a backup), and the upload's rename would replace the link, or write through a linked
/// folder, outside the app dir (issue 14). Folders are made one at a time with `mkdir` (which never
/// follows a link), 0755 like the folders a deploy makes for live files. Prints `created <folder>` for each.
pub const BACKUP_SCRIPT: &str = r#"set -eu
f=$1; dir=$2; stamp=$3; keep=$4
g=$(dirname -- "$dir"); app=$(dirname -- "$g")
nolink() { if [ -L "$1" ]; then echo "$1 is a symlink: gangplank never writes through one" >&2; exit 1; fi; }
for d in "$f" "$dir" "$g" "$app"; do nolink "$d"; done
case $f in "$app"/?*) ;; *) echo "$f is not inside $app" >&2; exit 1;; esac
rel=$(dirname -- "${f#"$app"/}")
if [ "$rel" != . ]; then
  d=$app
  ifs=$IFS; IFS=/; set -f
  for c in $rel; do
    d=$d/$c; nolink "$d"
    if [ ! -d "$d" ]; then (umask 022 && mkdir -- "$d"); echo "created $d"; fi
  done
  set +f; IFS=$ifs
fi
umask 077
mkdir -p -- "$dir"
if [ -e "$f" ]; then
  cp -- "$f" "$dir/.env.$stamp"
  chmod 600 "$dir/.env.$stamp"
fi
ls -1A -- "$dir" | grep '^\.env\.' | sort -r | tail -n +"$((keep + 1))" | while IFS= read -r old; do
  rm -f -- "$dir/$old"
done
"#;

/// `sha256sum` of the file and its mode, to verify a write.
pub const VERIFY_SCRIPT: &str = r#"set -eu
printf '%s %s\n' "$(sha256sum < "$1" | cut -d' ' -f1)" "$(stat -c %a "$1")"
"#;

/// Directory of `path` (`/opt/app/.env` → `/opt/app`).
pub fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.into(),
        None => ".".into(),
    }
}

/// Write `content` to `path` on the host: the `.env`'s missing folders and a backup ([`BACKUP_SCRIPT`]),
/// atomic upload at 0600, verify by hash and mode, then `audit_line` appended to the app's audit.log.
pub fn write(
    ex: &mut dyn Executor,
    path: &str,
    app_dir: &str,
    content: &str,
    keep_backups: usize,
    audit_line: &str,
) -> Result<()> {
    let backups = format!("{}/.gangplank/backups", app_dir.trim_end_matches('/'));
    let out = ex.check(
        &Cmd::script(BACKUP_SCRIPT)
            .arg(path)
            .arg(&backups)
            .arg(backup_stamp())
            .arg(keep_backups.to_string())
            .privileged(),
        &format!("backing up {path}"),
    )
    .map_err(|e| {
        if e.message.contains("is a symlink") {
            e.hint("gangplank writes `.env` and its backups only as real files: replace the link with the file itself, or point `remote-env-path` at the file the link names")
        } else {
            e
        }
    })?;
    for folder in out.stdout_str().lines().filter_map(|l| l.strip_prefix("created ")) {
        gangplank_core::actions::info(format!("{}: created {folder} (mode 0755)", ex.label()));
    }
    ex.upload(path, content.as_bytes(), 0o600)?;
    let out = ex.check(&Cmd::script(VERIFY_SCRIPT).arg(path).privileged(), &format!("verifying {path}"))?;
    let text = out.stdout_str();
    let mut parts = text.split_whitespace();
    let (hash, mode) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if hash != sha256_hex(content.as_bytes()) {
        return Err(Error::failed(format!("{path} on {} does not match what was written", ex.label()))
            .hint("another process may be writing the file at the same time; run again"));
    }
    if mode != "600" {
        return Err(Error::failed(format!("{path} on {} has mode {mode}, not 600", ex.label()))
            .hint("check that the file system honours chmod (and that no other tool resets the mode)"));
    }
    ex.check(&audit_cmd(app_dir.trim_end_matches('/'), audit_line), "writing the audit line")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_value("plain").unwrap(), "\"plain\"");
        assert_eq!(quote_value("a\"b\\c\nd").unwrap(), r#""a\"b\\c\nd""#);
        assert_eq!(quote_value("it's # not a comment").unwrap(), "\"it's # not a comment\"");
        assert_eq!(quote_value("pa$word\nline2").unwrap(), "'pa$word\nline2'");
        assert!(quote_value("a$b'c").is_err());
        assert!(quote_value("${X}").is_err());
        assert!(quote_value("$a\\b").is_err());
        assert!(quote_value("ends in a backslash\\").is_err());
    }

    #[test]
    fn entries_split_like_the_host_script() {
        let text = "# c\nA=\"1\"\nB='x\ny=z'\n\nC=3\n";
        let h = entry_hashes(text);
        assert_eq!(h.keys().cloned().collect::<Vec<_>>(), ["A", "B", "C"], "`y=z` inside quotes is not a key");
        assert_eq!(h["A"], sha256_hex(b"A=\"1\"\n"));
        assert_eq!(h["B"], sha256_hex(b"B='x\ny=z'\n\n"));
        let d = drift(&entry_hashes("A=1\nB=2\n"), &entry_hashes("B=3\nC=4\n"));
        assert_eq!(
            (d.added, d.removed, d.changed),
            (vec!["A".to_string()], vec!["C".to_string()], vec!["B".to_string()])
        );
    }

    /// Found by the `envfile` fuzz target: an odd number of `'` inside a double-quoted value left a quote "open",
    /// so every later key vanished into that entry, on the host (awk) and locally alike.
    #[test]
    fn an_apostrophe_in_a_double_quoted_value_hides_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let text = render(&[
            ("A".into(), "it's".into()),
            ("B".into(), "x=1\nC=2".into()),
            ("D".into(), "'quoted' twice' \\ end".into()),
            ("E".into(), "pa$word\nF=not a key".into()),
            ("G".into(), "last".into()),
        ])
        .unwrap();
        let h = entry_hashes(&text);
        assert_eq!(h.keys().cloned().collect::<Vec<_>>(), ["A", "B", "D", "E", "G"]);
        assert_eq!(h["A"], sha256_hex(b"A=\"it's\"\n"));
        assert_eq!(h["E"], sha256_hex(b"E='pa$word\nF=not a key'\n"));
        std::fs::write(&path, &text).unwrap();
        let mut l = gangplank_core::exec::Local::new(false);
        assert_eq!(read_remote(&mut l, path.to_str().unwrap()).unwrap().keys, h, "the host's split differs");
    }

    #[test]
    fn hashes_script_matches_local_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let text = render(&[
            ("A".into(), "one".into()),
            ("B".into(), "multi\nline $x\nNOT_A_KEY=1".into()),
            ("C".into(), "q\"uo\\te".into()),
        ])
        .unwrap();
        std::fs::write(&path, &text).unwrap();
        let mut l = gangplank_core::exec::Local::new(false);
        let r = read_remote(&mut l, path.to_str().unwrap()).unwrap();
        assert!(r.present);
        assert_eq!(r.file_hash, sha256_hex(text.as_bytes()));
        assert_eq!(r.keys, entry_hashes(&text));
        let absent = read_remote(&mut l, dir.path().join("nope").to_str().unwrap()).unwrap();
        assert!(!absent.present);
    }
}
