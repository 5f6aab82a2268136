//! Deploy metrics for Prometheus: the `metrics-file` input of deploy-remote, rollback and sync-secrets.
//!
//! After a run, the step rewrites one file in the text exposition format, meant for node_exporter's
//! textfile collector (`--collector.textfile.directory`). The file lives on the machine the step runs on
//! (the runner), so it is scraped where a self-hosted runner's node_exporter runs (docs/actions.md,
//! "Deploy metrics").
//!
//! Counters survive from run to run because the previous file is read back and added to: the file is the
//! only memory a runner has. Several apps (and the three steps) may share one file; each run changes only
//! its own series. Writes are atomic (a temporary file in the same folder, then a rename, so the collector
//! never reads half a file; the temporary name does not end in `.prom`, so the collector skips it), serialized
//! between runs on the same machine by an `flock` on the folder, never through a symbolic link, and never over
//! a file that is not gangplank's own metrics (every line a comment or a `gangplank_` sample).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// One metric family: name, type and help, in the order they are written.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "gangplank_deploys_total",
        kind: "counter",
        help: "deploy-remote runs, by app and result (deployed, rolled-back, failed)",
    },
    Family {
        name: "gangplank_last_deploy_timestamp_seconds",
        kind: "gauge",
        help: "When the last deploy-remote run of the app ended (Unix time)",
    },
    Family {
        name: "gangplank_last_deploy_duration_seconds",
        kind: "gauge",
        help: "How long the last deploy-remote run of the app took",
    },
    Family {
        name: "gangplank_rollbacks_total",
        kind: "counter",
        help: "Rollbacks of the app, by result: rollback runs and deploys that rolled back by themselves",
    },
    Family {
        name: "gangplank_last_rollback_timestamp_seconds",
        kind: "gauge",
        help: "When the last rollback of the app ended (Unix time)",
    },
    Family {
        name: "gangplank_current_tag_info",
        kind: "gauge",
        help: "The tag the app runs after the last deploy or rollback (always 1)",
    },
    Family {
        name: "gangplank_secret_syncs_total",
        kind: "counter",
        help: "sync-secrets apply runs, by result (ok, failed)",
    },
    Family {
        name: "gangplank_last_secret_sync_timestamp_seconds",
        kind: "gauge",
        help: "When the last sync-secrets apply run ended (Unix time)",
    },
];

const HEADER: &str =
    "# gangplank deploy metrics: rewritten after every deploy-remote, rollback and sync-secrets run.\n";

/// What a run did, as far as metrics go.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A deploy-remote run. `result` is the record's status; `tag` is what the app runs now, when known.
    Deploy { app: &'a str, result: &'a str, duration: Duration, rolled_back: bool, tag: Option<&'a str> },
    /// A rollback run.
    Rollback { app: &'a str, result: &'a str, tag: Option<&'a str> },
    /// A sync-secrets apply run.
    SecretSync { result: &'a str },
}

type Labels = Vec<(String, String)>;

/// Every series of the file: family name → labels → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(BTreeMap<String, BTreeMap<Labels, f64>>);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Metrics {
    fn set(&mut self, name: &str, l: Labels, v: f64) {
        self.0.entry(name.to_string()).or_default().insert(l, v);
    }

    fn add(&mut self, name: &str, l: Labels, v: f64) {
        *self.0.entry(name.to_string()).or_default().entry(l).or_insert(0.0) += v;
    }

    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        self.0.get(name)?.get(&labels(pairs)).copied()
    }

    /// The app's one `gangplank_current_tag_info` series: the old tag's series goes.
    fn set_tag(&mut self, app: &str, tag: &str) {
        let fam = self.0.entry("gangplank_current_tag_info".into()).or_default();
        fam.retain(|l, _| !l.iter().any(|(k, v)| k == "app" && v == app));
        fam.insert(labels(&[("app", app), ("tag", tag)]), 1.0);
    }

    /// Fold one run into the series. `now` is Unix time in seconds.
    pub fn apply(&mut self, event: &Event, now: f64) {
        match *event {
            Event::Deploy { app, result, duration, rolled_back, tag } => {
                self.add("gangplank_deploys_total", labels(&[("app", app), ("result", result)]), 1.0);
                self.set("gangplank_last_deploy_timestamp_seconds", labels(&[("app", app)]), now);
                self.set("gangplank_last_deploy_duration_seconds", labels(&[("app", app)]), duration.as_secs_f64());
                if rolled_back {
                    // The automatic rollback of a failed deploy: `audit.log` has a `rollback` line for it too.
                    self.add("gangplank_rollbacks_total", labels(&[("app", app), ("result", "rolled-back")]), 1.0);
                    self.set("gangplank_last_rollback_timestamp_seconds", labels(&[("app", app)]), now);
                }
                if let Some(t) = tag.filter(|t| !t.is_empty()) {
                    self.set_tag(app, t);
                }
            }
            Event::Rollback { app, result, tag } => {
                self.add("gangplank_rollbacks_total", labels(&[("app", app), ("result", result)]), 1.0);
                self.set("gangplank_last_rollback_timestamp_seconds", labels(&[("app", app)]), now);
                if let Some(t) = tag.filter(|t| !t.is_empty()) {
                    self.set_tag(app, t);
                }
            }
            Event::SecretSync { result } => {
                self.add("gangplank_secret_syncs_total", labels(&[("result", result)]), 1.0);
                self.set("gangplank_last_secret_sync_timestamp_seconds", vec![], now);
            }
        }
    }

    /// Read a file this module wrote. Lines of families it does not know are dropped.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some((name, l, v)) = parse_sample(line) {
                if FAMILIES.iter().any(|f| f.name == name) {
                    m.set(&name, l, v);
                }
            }
        }
        m
    }

    /// The file's text: a header, then per family `# HELP`, `# TYPE` and its samples.
    pub fn render(&self) -> String {
        let mut out = String::from(HEADER);
        for f in FAMILIES {
            let Some(series) = self.0.get(f.name).filter(|s| !s.is_empty()) else { continue };
            out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.kind));
            for (l, v) in series {
                out.push_str(f.name);
                if !l.is_empty() {
                    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                    out.push_str(&format!("{{{}}}", inner.join(",")));
                }
                out.push_str(&format!(" {}\n", format_value(*v)));
            }
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// A label value as the exposition format writes it: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// `name{k="v",…} value` or `name value`.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut l = vec![];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let (i, c) = *chars.peek()?;
            if c == '}' {
                rest = &r[i + 1..];
                break;
            }
            let eq = r[i..].find('=')? + i;
            let key = r[i..eq].trim().to_string();
            while chars.peek().is_some_and(|(j, _)| *j <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut val = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        c => val.push(c),
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            l.push((key, val));
        }
    }
    let v: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, l, v))
}

/// Whether `path` may be used as `metrics-file`: a `.prom` name (the collector reads nothing else), and
/// absent or a regular file (not a link) that gangplank wrote. Checked before any connection (exit 2).
pub fn check(path: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::bad_input(format!("`metrics-file` {} {why}", path.display())).hint(
            "point `metrics-file` at a new `*.prom` file in node_exporter's textfile collector folder (e.g. /var/lib/prometheus/node-exporter/gangplank.prom)",
        )
    };
    if path.extension().is_none_or(|e| e != "prom") || path.file_name().is_none() {
        return Err(refuse("does not end in `.prom`, so node_exporter's textfile collector would skip it".into()));
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(refuse("contains `..`".into()));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refuse(format!("cannot be inspected: {e}"))),
        Ok(m) if m.file_type().is_symlink() => Err(refuse("is a symbolic link".into())),
        Ok(m) if !m.is_file() => Err(refuse("exists and is not a regular file".into())),
        Ok(_) => {
            let text = crate::local::read_input(path, "metrics-file", crate::local::TEXT_LIMIT)
                .map_err(|e| refuse(format!("cannot be read: {}", e.message)))?;
            if is_own(&String::from_utf8_lossy(&text)) {
                Ok(())
            } else {
                Err(refuse("exists and is not a metrics file gangplank wrote".into()))
            }
        }
    }
}

fn is_own(text: &str) -> bool {
    text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l.starts_with("gangplank_"))
}

/// A lock file beside the metrics file (`.<name>.gangplank-lock`, made with `O_EXCL`), held while the file is
/// read, changed and renamed, so two runs on one machine do not lose each other's counts. The critical section
/// takes milliseconds, so a lock older than [`STALE_LOCK`] was left by a killed process and is taken over.
struct DirLock(std::path::PathBuf);

const STALE_LOCK: Duration = Duration::from_secs(30);

impl DirLock {
    fn take(path: std::path::PathBuf) -> std::io::Result<DirLock> {
        let deadline = std::time::Instant::now() + STALE_LOCK + Duration::from_secs(5);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(DirLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::symlink_metadata(&path)
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        let _ = std::fs::remove_file(&path);
                    } else if std::time::Instant::now() > deadline {
                        return Err(std::io::Error::other(format!("{} is held by another run", path.display())));
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `metrics-file` input: unset or empty is off; a path is checked now, before any connection.
pub fn from_input(given: Option<std::path::PathBuf>) -> Result<Option<std::path::PathBuf>> {
    let p = given.filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = &p {
        check(p)?;
    }
    Ok(p)
}

/// Fold `event` into the file at `path` (created, with its folder, when missing).
pub fn record(path: &Path, event: &Event) -> Result<()> {
    check(path)?;
    let failed = |e: std::io::Error| {
        Error::failed(format!("cannot write `metrics-file` {}: {e}", path.display()))
            .hint("set `metrics-file` to a writable path in node_exporter's textfile collector folder")
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let name = path.file_name().expect("checked").to_string_lossy();
    let _lock = DirLock::take(dir.join(format!(".{name}.gangplank-lock"))).map_err(failed)?;
    // Again under the lock: the file may have been replaced since validation.
    check(path)?;
    let previous = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(failed(e)),
    };
    let mut m = Metrics::parse(&previous);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    m.apply(event, now);
    let tmp = dir.join(format!(".{name}.gangplank-tmp.{}.{:08x}", std::process::id(), rand::random::<u32>()));
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(m.render().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })
}

/// [`record`] at the end of a run: a failure to write metrics is a warning, never the run's failure
/// (the deploy itself happened or not whatever the metrics file says).
pub fn record_or_warn(path: Option<&Path>, event: &Event) {
    if let Some(p) = path {
        if let Err(e) = record(p, event) {
            crate::actions::warning(
                "metrics",
                format!("{}{}", e.message, e.hint.map(|h| format!(" ({h})")).unwrap_or_default()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_over_and_labels_round_trip() {
        let mut m = Metrics::default();
        let app = "we\"ird\\app\nx";
        let ev = Event::Deploy {
            app,
            result: "deployed",
            duration: Duration::from_millis(1500),
            rolled_back: false,
            tag: Some("v1"),
        };
        m.apply(&ev, 100.0);
        let text = m.render();
        assert!(text.contains(r#"gangplank_deploys_total{app="we\"ird\\app\nx",result="deployed"} 1"#), "{text}");
        assert!(text.contains("# TYPE gangplank_deploys_total counter"), "{text}");
        let mut back = Metrics::parse(&text);
        assert_eq!(back, m);
        back.apply(&ev, 200.0);
        back.apply(&Event::Rollback { app, result: "rolled-back", tag: Some("v0") }, 300.0);
        back.apply(&Event::SecretSync { result: "ok" }, 300.0);
        let again = Metrics::parse(&back.render());
        assert_eq!(again.get("gangplank_deploys_total", &[("app", app), ("result", "deployed")]), Some(2.0));
        assert_eq!(again.get("gangplank_rollbacks_total", &[("app", app), ("result", "rolled-back")]), Some(1.0));
        assert_eq!(again.get("gangplank_current_tag_info", &[("app", app), ("tag", "v0")]), Some(1.0));
        assert_eq!(again.get("gangplank_current_tag_info", &[("app", app), ("tag", "v1")]), None, "one tag per app");
        assert_eq!(again.get("gangplank_last_deploy_duration_seconds", &[("app", app)]), Some(1.5));
        assert_eq!(again.get("gangplank_secret_syncs_total", &[("result", "ok")]), Some(1.0));
    }

    #[test]
    fn the_file_is_replaced_only_when_it_is_ours() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/gangplank.prom");
        let ev = Event::SecretSync { result: "ok" };
        record(&p, &ev).unwrap();
        record(&p, &ev).unwrap();
        let m = Metrics::parse(&std::fs::read_to_string(&p).unwrap());
        assert_eq!(m.get("gangplank_secret_syncs_total", &[("result", "ok")]), Some(2.0));
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");

        let other = d.path().join("node.prom");
        std::fs::write(&other, "node_cpu_seconds_total 1\n").unwrap();
        let link = d.path().join("link.prom");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        for (path, why) in [(&other, "not a metrics file"), (&link, "symbolic link")] {
            let e = record(path, &ev).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.contains(why), "{}", e.message);
        }
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "node_cpu_seconds_total 1\n");
        assert!(check(&d.path().join("metrics.txt")).unwrap_err().message.contains(".prom"));
    }
}
