//! Files on the runner: inputs read with a size limit, outputs written atomically and never over a file
//! that is not gangplank's own.
//!
//! Every local input (compose files, `.env`, `files`, the secrets manifest, the values-file, a key file) is
//! read through [`read_input`]: it must be a regular file (a device such as `/dev/zero` or a pipe would be
//! read without end) and at most a limit in size, else the run stops with exit 2 before any connection.
//! Every local output (deploy record, sync plan, push metadata, verify report) is written through
//! [`write_output`]: a temporary file in the same folder, then a rename, so a reader never sees half a
//! file; and an existing file is only replaced when it is empty or already an output of the same kind,
//! so a mistyped path (`record-file: ../../etc/passwd`) cannot destroy an unrelated file.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Limit of a text input (compose file, `.env`, manifest, values-file, key file): 1 MiB. Real ones are
/// a few KiB; anything near this is a wrong path, not a configuration.
pub const TEXT_LIMIT: u64 = 1 << 20;

/// Limit of one file listed in `files`: 64 MiB. Uploads are held in memory and sent over SSH, so this
/// is for configuration and small assets, not for data.
pub const FILE_LIMIT: u64 = 64 << 20;

/// Limit of everything listed in `files` together: 256 MiB, for the same reason.
pub const FILES_TOTAL_LIMIT: u64 = 256 << 20;

/// Read a local input file of at most `limit` bytes. `what` names the input in errors (`env-file`).
pub fn read_input(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let hint = "check the path: it is relative to the working directory of the step (usually the repository root)";
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::bad_input(format!("{what} `{}` cannot be read: {e}", path.display())).hint(hint))?;
    if !meta.is_file() {
        return Err(Error::bad_input(format!("{what} `{}` is not a regular file", path.display()))
            .hint("give the path of a regular file, not a folder, device or pipe"));
    }
    let too_big = || {
        Error::bad_input(format!("{what} `{}` is larger than {}", path.display(), crate::input::format_size(limit)))
            .hint(
                "check that the path names the intended file; gangplank reads only small text and configuration files",
            )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let f = std::fs::File::open(path)
        .map_err(|e| Error::bad_input(format!("{what} `{}` cannot be read: {e}", path.display())).hint(hint))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // One byte over the limit tells a file that grew since `metadata` from one that fits exactly.
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::bad_input(format!("{what} `{}` cannot be read: {e}", path.display())).hint(hint))?;
    if buf.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(buf)
}

/// [`read_input`] for text: UTF-8 required.
pub fn read_input_text(path: &Path, what: &str, limit: u64) -> Result<String> {
    String::from_utf8(read_input(path, what, limit)?).map_err(|_| {
        Error::bad_input(format!("{what} `{}` is not UTF-8 text", path.display()))
            .hint("save the file as UTF-8, or check that the path names the intended file")
    })
}

/// One kind of output file, and how an existing file of that kind is recognised: a JSON object with
/// every one of `keys` (the fields gangplank always writes into it).
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// The input that names the file (`record-file`), for errors.
    pub input: &'static str,
    pub keys: &'static [&'static str],
}

impl Output {
    fn is_own(&self, content: &[u8]) -> bool {
        if content.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        match serde_json::from_slice::<serde_json::Value>(content) {
            Ok(serde_json::Value::Object(m)) => self.keys.iter().all(|k| m.contains_key(*k)),
            _ => false,
        }
    }

    fn refuse(&self, path: &Path, why: &str) -> Error {
        Error::bad_input(format!("`{}` {} {why}", self.input, path.display())).hint(format!(
            "gangplank replaces only its own {} files; point `{}` at a new path (e.g. under $RUNNER_TEMP) or remove that file",
            self.input, self.input
        ))
    }

    /// Whether `path` may be written: absent, or a regular file (not a link) that is empty or an output
    /// of this kind. Called at validation, before any connection, and again by [`write_output`].
    /// `missing/../etc/passwd` names nothing until [`write_output`] creates `missing`, so the path with
    /// its `..` taken away by hand is checked too.
    pub fn check(&self, path: &Path) -> Result<()> {
        let mut lexical = std::path::PathBuf::new();
        for c in path.components() {
            match c {
                std::path::Component::ParentDir if lexical.file_name().is_some() => {
                    lexical.pop();
                }
                std::path::Component::CurDir => {}
                c => lexical.push(c),
            }
        }
        self.check_one(path)?;
        if lexical != path && !lexical.as_os_str().is_empty() {
            self.check_one(&lexical)?;
        }
        Ok(())
    }

    fn check_one(&self, path: &Path) -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.refuse(path, &format!("cannot be inspected: {e}"))),
            Ok(m) if m.file_type().is_symlink() => Err(self.refuse(path, "is a symbolic link")),
            Ok(m) if !m.is_file() => Err(self.refuse(path, "exists and is not a regular file")),
            Ok(_) => {
                let own = read_input(path, self.input, TEXT_LIMIT).map(|c| self.is_own(&c)).unwrap_or(false);
                if own {
                    Ok(())
                } else {
                    Err(self.refuse(path, "exists and is not a file gangplank wrote"))
                }
            }
        }
    }
}

/// Write an output file atomically: a temporary file in the same folder (created new, mode 0644), synced,
/// then renamed over `path`. Refused (exit 2) when `path` is taken by a file that is not ours ([`Output::check`]).
pub fn write_output(path: &Path, content: &[u8], kind: &Output) -> Result<()> {
    let writable = |e: std::io::Error, what: &str| {
        Error::failed(format!("cannot write {what}: {e}")).hint(format!("set `{}` to a writable path", kind.input))
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Checked before creating the folder too, so a refused path leaves nothing behind.
    kind.check(path)?;
    std::fs::create_dir_all(dir).map_err(|e| writable(e, &dir.display().to_string()))?;
    kind.check(path)?;
    let name = path.file_name().ok_or_else(|| kind.refuse(path, "is not a file name"))?;
    let tmp = dir.join(format!(".{}.gangplank-tmp.{}.{:08x}", name.to_string_lossy(), std::process::id(), {
        use rand::Rng;
        rand::thread_rng().gen::<u32>()
    }));
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        writable(e, &path.display().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Output = Output { input: "record-file", keys: &["app", "status"] };

    #[test]
    fn inputs_are_bounded_and_regular() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.env");
        std::fs::write(&f, "A=1\n").unwrap();
        assert_eq!(read_input(&f, "env-file", 4).unwrap(), b"A=1\n");
        let e = read_input(&f, "env-file", 3).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("larger than 3B") && e.hint.is_some(), "{e}");
        for p in [Path::new("/dev/zero"), d.path()] {
            let e = read_input(p, "env-file", TEXT_LIMIT).unwrap_err();
            assert!(e.message.contains("not a regular file"), "{e}");
        }
        assert_eq!(read_input(&d.path().join("none"), "env-file", 9).unwrap_err().exit_code(), 2);
        std::fs::write(&f, [0xff, 0xfe]).unwrap();
        assert!(read_input_text(&f, "env-file", 9).unwrap_err().message.contains("UTF-8"));
    }

    #[test]
    fn outputs_replace_only_their_own_kind_and_leave_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("sub/record.json");
        write_output(&out, b"{\"app\":\"a\",\"status\":\"deployed\"}\n", &KIND).unwrap();
        write_output(&out, b"{\"app\":\"a\",\"status\":\"failed\"}\n", &KIND).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"app\":\"a\",\"status\":\"failed\"}\n");
        // An empty file (e.g. from mktemp) holds nothing to lose.
        let empty = d.path().join("empty.json");
        std::fs::write(&empty, "").unwrap();
        write_output(&empty, b"{}", &KIND).unwrap();

        let passwd = d.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        let other_json = d.path().join("package.json");
        std::fs::write(&other_json, "{\"name\":\"x\"}").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        for (p, why) in [(&passwd, "not a file gangplank wrote"), (&other_json, "not a file"), (&link, "symbolic link")]
        {
            let e = write_output(p, b"{}", &KIND).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.contains(why) && e.hint.as_deref().unwrap().contains("record-file"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "root:x:0:0:root:/root:/bin/bash\n");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(KIND.check(d.path()).unwrap_err().exit_code(), 2, "a folder is not ours");
        // Through a folder that does not exist yet (write_output would create it).
        assert!(KIND.check(&d.path().join("missing/../passwd")).is_err());
        assert!(!d.path().join("missing").exists());
        let names: Vec<String> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["record.json"]);
    }
}
