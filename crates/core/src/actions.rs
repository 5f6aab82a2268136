//! The GitHub Actions runner protocol: masking, logs and groups, annotations, outputs, step summary.
//!
//! Human lines go to stderr. `::add-mask::` goes to stdout, where the runner reads it before any other
//! line of ours. Outside Actions (`GITHUB_ACTIONS` not `true`) the same calls print plain text, and
//! masks are only kept in memory (printing a secret to a terminal to "mask" it would show it).
//!
//! Invariant: every message printed by this module first goes through [`redact`].

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use crate::error::{Error, Result};

static MASKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Whether we run under the Actions runner.
pub fn is_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// The `::add-mask::` commands for one value: one per non-blank line, because the runner masks line by
/// line and a multi-line key would otherwise leak its middle lines.
pub fn add_mask_commands(value: &str) -> Vec<String> {
    value
        .lines()
        .map(str::trim_end)
        .filter(|l| maskable(l))
        .map(|l| format!("::add-mask::{}", escape_data(l)))
        .collect()
}

/// Whether one line of a secret is registered as a mask. Every line of every secret is, except:
/// - lines shorter than 3 characters: the runner masks a registered string wherever it appears, so
///   masking `1` or `on` would turn every such character of the log into `***` (and a refusal naming
///   its rule would show where the value sits in the rule's text), and a secret of one or two
///   characters protects nothing anyway (the placeholder rules refuse it);
/// - the booleans `true`, `false`, `yes`, `no`, `on`, `off` (any case): the runner drops every job output
///   that contains a masked string, so masking `true` would silently empty outputs such as `rolled-back`,
///   and a boolean is configuration, not a secret.
pub fn maskable(line: &str) -> bool {
    let t = line.trim();
    t.chars().count() >= 3 && !matches!(t.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off")
}

/// Register a secret value: print its `::add-mask::` commands under Actions (on stdout, before anything
/// else of ours is printed) and keep it for [`redact`]. Lines that are not [`maskable`] are left out.
pub fn register_mask(value: &str) {
    if !value.lines().any(maskable) {
        return;
    }
    let mut masks = MASKS.lock().unwrap_or_else(|p| p.into_inner());
    if masks.iter().any(|m| m == value.trim_end()) {
        return;
    }
    for candidate in std::iter::once(value.trim_end()).chain(value.lines().map(str::trim_end)) {
        if maskable(candidate) && !masks.iter().any(|m| m == candidate) {
            masks.push(candidate.to_string());
        }
    }
    // Longest first, so a value that contains another is replaced whole.
    masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
    drop(masks);
    if is_actions() {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for line in add_mask_commands(value) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// Replace every registered secret (and every line of a multi-line one) in `text` with `***`.
pub fn redact(text: &str) -> String {
    let masks = MASKS.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for m in masks.iter() {
        if out.contains(m.as_str()) {
            out = out.replace(m.as_str(), "***");
        }
    }
    out
}

/// Escape the data part of a workflow command, as the runner unescapes it.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escape a property value (`title=`) of a workflow command.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

thread_local! {
    /// Set while one host's deploy runs beside others' (`max-parallel`): its lines carry the host,
    /// and its groups become plain lines (groups from several threads cannot interleave in a log).
    static PREFIX: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` with every line it prints on this thread prefixed by `[prefix] `.
pub fn with_prefix<R>(prefix: &str, f: impl FnOnce() -> R) -> R {
    PREFIX.with(|p| *p.borrow_mut() = Some(format!("[{prefix}] ")));
    let r = f();
    PREFIX.with(|p| *p.borrow_mut() = None);
    r
}

fn prefix() -> Option<String> {
    PREFIX.with(|p| p.borrow().clone())
}

fn eprint_line(line: &str) {
    // A workflow command must start its line; annotations carry the prefix in their message instead.
    let line = match prefix() {
        Some(p) if !line.starts_with("::") => format!("{p}{line}"),
        _ => line.to_string(),
    };
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let _ = writeln!(err, "{}", redact(&line));
}

/// A human line on stderr.
pub fn info(msg: impl AsRef<str>) {
    eprint_line(msg.as_ref());
}

fn annotation(kind: &str, title: &str, msg: &str) {
    let msg = redact(&format!("{}{msg}", prefix().unwrap_or_default()));
    let title = redact(title);
    if is_actions() {
        eprint_line(&format!("::{kind} title={}::{}", escape_property(&title), escape_data(&msg)));
    } else {
        eprint_line(&format!("{kind}: {title}: {msg}"));
    }
}

/// A warning annotation (or `warning: …` outside Actions).
pub fn warning(title: &str, msg: impl AsRef<str>) {
    annotation("warning", title, msg.as_ref());
}

/// An error annotation (or `error: …` outside Actions).
pub fn error(title: &str, msg: impl AsRef<str>) {
    annotation("error", title, msg.as_ref());
}

/// A collapsible group in the log; closed when the guard drops.
#[must_use = "the group closes when this guard is dropped"]
pub struct Group(bool);

pub fn group(name: &str) -> Group {
    let folds = is_actions() && prefix().is_none();
    if folds {
        eprint_line(&format!("::group::{}", escape_data(name)));
    } else {
        eprint_line(&format!("== {name}"));
    }
    Group(folds)
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.0 {
            eprint_line("::endgroup::");
        }
    }
}

/// Print text that came from outside (container logs, hook and smoke output). Under Actions it is
/// fenced with `::stop-commands::`, so a line that looks like a workflow command (`::add-mask::`,
/// `::error::`…) is shown, not obeyed; every registered secret is masked as in every other line.
pub fn print_untrusted(text: &str) {
    let fence = Untrusted::open();
    for l in text.lines() {
        fence.line(l);
    }
}

/// A fence for untrusted lines printed as they arrive ([`print_untrusted`] for text at hand): open from
/// [`Untrusted::open`] until dropped. Workflow commands printed meanwhile, from this thread or another, are
/// shown and not obeyed, so it is held only around output that comes from outside.
pub struct Untrusted(Option<String>);

impl Untrusted {
    pub fn open() -> Untrusted {
        let fence = is_actions().then(|| {
            use rand::Rng;
            format!("gangplank-{:016x}", rand::thread_rng().gen::<u64>())
        });
        if let Some(f) = &fence {
            eprint_line(&format!("::stop-commands::{f}"));
        }
        Untrusted(fence)
    }

    pub fn line(&self, l: &str) {
        info(l);
    }
}

impl Drop for Untrusted {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            eprint_line(&format!("::{f}::"));
        }
    }
}

/// Whether this thread prints for one of several hosts at once ([`with_prefix`]): then untrusted output is
/// printed when its command ends, so no fence stays open while other threads print annotations.
pub fn prefixed() -> bool {
    prefix().is_some()
}

/// Print an error the way every binary does, and return its exit code.
/// This is the one place where errors become annotations, `hint:` lines and exit codes.
pub fn report(err: &Error) -> i32 {
    let title = match err.class {
        crate::Class::BadInput => "bad input",
        crate::Class::Failed => "failed",
        crate::Class::Locked => "locked",
        crate::Class::Interrupted => "interrupted",
        crate::Class::Lost => "host lost",
    };
    error(title, &err.message);
    if let Some(h) = &err.hint {
        eprint_line(&format!("hint: {h}"));
    }
    err.exit_code()
}

/// Run a binary's body and exit with the code its result maps to.
pub fn main_with(body: impl FnOnce() -> Result<()>) -> ! {
    let code = match body() {
        Ok(()) => 0,
        Err(e) => report(&e),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn random_delimiter() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("ghadelimiter_{n:032x}")
}

fn valid_output_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::failed(format!("output name `{name}` is not valid")));
    }
    Ok(())
}

/// The `name<<DELIM` block [`set_output`] appends to `$GITHUB_OUTPUT`, with a random delimiter the value
/// does not contain. Public for the fuzz target that reads it back with [`parse_output_file`].
pub fn output_block(name: &str, value: &str) -> Result<String> {
    valid_output_name(name)?;
    let mut delim = random_delimiter();
    while value.contains(&delim) {
        delim = random_delimiter();
    }
    Ok(format!("{name}<<{delim}\n{value}\n{delim}\n"))
}

/// Set a step output: appended to `$GITHUB_OUTPUT` in the `name<<DELIM` form with a random delimiter,
/// or printed as `name=value` on stdout when the variable is unset (a local run).
pub fn set_output(name: &str, value: &str) -> Result<()> {
    match std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        Some(path) => {
            let block = output_block(name, value)?;
            let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| {
                Error::failed(format!("cannot open GITHUB_OUTPUT file {}: {e}", path.to_string_lossy()))
            })?;
            // One write, so a concurrent writer cannot interleave inside our block.
            f.write_all(block.as_bytes()).map_err(|e| Error::failed(format!("cannot write GITHUB_OUTPUT: {e}")))?;
        }
        None => {
            valid_output_name(name)?;
            println!("{name}={value}");
        }
    }
    Ok(())
}

/// Append Markdown to `$GITHUB_STEP_SUMMARY` when it is set; otherwise do nothing.
pub fn append_summary(markdown: &str) -> Result<()> {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::failed(format!("cannot open GITHUB_STEP_SUMMARY: {e}")))?;
        let text = redact(markdown);
        f.write_all(text.as_bytes())
            .and_then(|_| if text.ends_with('\n') { Ok(()) } else { f.write_all(b"\n") })
            .map_err(|e| Error::failed(format!("cannot write GITHUB_STEP_SUMMARY: {e}")))?;
    }
    Ok(())
}

/// Parse a `$GITHUB_OUTPUT` file the way the runner does: `name=value` lines, and `name<<DELIM` blocks
/// whose value is every line up to the one equal to `DELIM`. Used by tests and by the demo.
pub fn parse_output_file(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let heredoc = line.find("<<");
        let equals = line.find('=');
        match (heredoc, equals) {
            (Some(h), e) if e.is_none_or(|e| h < e) => {
                let name = &line[..h];
                let delim = &line[h + 2..];
                if name.is_empty() || delim.is_empty() {
                    return Err(format!("invalid line `{line}`"));
                }
                let mut value: Vec<&str> = Vec::new();
                let mut closed = false;
                for l in lines.by_ref() {
                    let l = l.strip_suffix('\r').unwrap_or(l);
                    if l == delim {
                        closed = true;
                        break;
                    }
                    value.push(l);
                }
                if !closed {
                    return Err(format!("delimiter `{delim}` of `{name}` is never closed"));
                }
                out.push((name.to_string(), value.join("\n")));
            }
            (_, Some(e)) => out.push((line[..e].to_string(), line[e + 1..].to_string())),
            _ => return Err(format!("invalid line `{line}`")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_workflow_command_data() {
        assert_eq!(escape_data("50%\r\nx"), "50%25%0D%0Ax");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn redacts_whole_values_and_each_line() {
        register_mask("line-one-canary\nline-two-canary");
        assert_eq!(redact("x line-two-canary y"), "x *** y");
        assert_eq!(redact("line-one-canary\nline-two-canary"), "***");
    }

    #[test]
    fn values_too_short_to_protect_anything_never_mask_text() {
        // A refusal of a one-character value names its rule; masking the value would star the rule's
        // text wherever that character appears, and show where it sits.
        register_mask("y");
        register_mask("on\nkx7-second-line");
        let rule = "placeholder (empty or only one repeated character)";
        assert_eq!(redact(rule), rule);
        assert_eq!(redact("kx7-second-line and on"), "*** and on");
        assert_eq!(add_mask_commands("ab\nlonger"), vec!["::add-mask::longer"]);
    }

    #[test]
    fn multi_line_secret_gets_one_add_mask_per_line() {
        let cmds = add_mask_commands("-----BEGIN KEY-----\nAAAA%BBBB\n\n   \nCCCC\r\n-----END KEY-----\n");
        assert_eq!(
            cmds,
            vec![
                "::add-mask::-----BEGIN KEY-----",
                "::add-mask::AAAA%25BBBB",
                "::add-mask::CCCC",
                "::add-mask::-----END KEY-----"
            ]
        );
        assert!(add_mask_commands("  \n").is_empty());
    }

    #[test]
    fn outputs_round_trip_through_the_delimiter_form() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        // Only this test sets GITHUB_OUTPUT in this process.
        std::env::set_var("GITHUB_OUTPUT", &file);
        let values = [
            ("plain", "v1".to_string()),
            ("multi", "line one\nEOF\nghadelimiter_x\n\nname<<X\nk=v\n".to_string()),
            ("empty", String::new()),
            ("json", "{\"web\":\"sha256:abc\"}".to_string()),
        ];
        for (k, v) in &values {
            set_output(k, v).unwrap();
        }
        std::env::remove_var("GITHUB_OUTPUT");
        let parsed = parse_output_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let want: Vec<(String, String)> = values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(parsed, want);
        assert!(set_output("bad name", "x").is_err());
    }

    #[test]
    fn output_file_parses_plain_and_heredoc_forms() {
        let text = "a=1\nb<<EOF\nx\n\ny=z\nEOF\nc=\n";
        let parsed = parse_output_file(text).unwrap();
        assert_eq!(parsed, vec![("a".into(), "1".into()), ("b".into(), "x\n\ny=z".into()), ("c".into(), "".into())]);
        assert!(parse_output_file("b<<EOF\nno end\n").is_err());
    }
}
