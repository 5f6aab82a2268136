//! The secrets manifest (docs/secrets-manifest.md): loading with unknown keys rejected, GitHub's naming
//! rules, and every value rule including placeholder detection.
//!
//! Invariant: nothing here prints, and no error or finding carries a value; findings name the key and
//! the rule only.

use std::collections::BTreeMap;
use std::path::Path;

use gangplank_core::dotenv;
use gangplank_core::error::combine;
use gangplank_core::local::{read_input_text, TEXT_LIMIT};
use gangplank_core::{Error, Result, Secret};
use regex_lite::Regex;
use serde::Deserialize;

/// GitHub's limit on one secret value, enforced for every entry whatever its rules say.
pub const GITHUB_MAX_BYTES: usize = 48 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Github,
    EnvFile,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Github => "github",
            Target::EnvFile => "env-file",
        }
    }
    pub fn parse(s: &str) -> Option<Target> {
        match s.trim() {
            "github" => Some(Target::Github),
            "env-file" => Some(Target::EnvFile),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Placeholders {
    #[default]
    Reject,
    Warn,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    All,
    Private,
    Selected,
}

impl Visibility {
    pub fn name(self) -> &'static str {
        match self {
            Visibility::All => "all",
            Visibility::Private => "private",
            Visibility::Selected => "selected",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    pub targets: Option<Vec<Target>>,
    pub placeholders: Option<Placeholders>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GithubSpec {
    pub environment: Option<String>,
    pub org: Option<String>,
    pub visibility: Option<Visibility>,
    pub repositories: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEntry {
    pub required: Option<bool>,
    pub secret: Option<bool>,
    pub pattern: Option<String>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub equals: Option<String>,
    pub allowed: Option<Vec<String>>,
    pub forbidden: Option<Vec<String>>,
    pub retired: Option<bool>,
    pub placeholders: Option<Placeholders>,
    pub targets: Option<Vec<Target>>,
    pub github: Option<GithubSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawManifest {
    pub defaults: Option<Defaults>,
    pub values: Option<BTreeMap<String, Option<RawEntry>>>,
}

/// Where an entry goes on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GhScope {
    Repo,
    Env(String),
    Org(String),
}

/// An organization entry's visibility and the repository names it is shared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgVisibility {
    pub visibility: Visibility,
    pub repositories: Vec<String>,
}

/// One manifest entry with every default applied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub required: bool,
    pub secret: bool,
    pub pattern: Option<Regex>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub equals: Option<String>,
    pub allowed: Option<Vec<String>>,
    pub forbidden: Vec<String>,
    pub retired: bool,
    /// `None`: the default applies (only to secrets, as the contract words placeholder detection).
    pub placeholders: Option<Placeholders>,
    pub default_placeholders: Placeholders,
    pub targets: Vec<Target>,
    pub scope: GhScope,
    pub org_visibility: Option<OrgVisibility>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    /// Sorted by name: the stable order of every report and of the rendered `.env`.
    pub entries: Vec<Entry>,
}

impl Manifest {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Every target some entry uses.
    pub fn targets(&self) -> Vec<Target> {
        let mut t: Vec<Target> = self.entries.iter().flat_map(|e| e.targets.iter().copied()).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// GitHub's rule for secret and variable names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !b[0].is_ascii_digit()
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

const MANIFEST_HINT: &str = "see docs/secrets-manifest.md for the keys an entry may have";

/// Read and check a manifest file.
pub fn load(path: &Path) -> Result<Manifest> {
    let text = read_input_text(path, "manifest", TEXT_LIMIT)
        .map_err(|e| e.hint("set `manifest` to the path of your secrets manifest (default `.github/secrets.yml`)"))?;
    parse(&text).map_err(|e| e.context(format!("manifest {}", path.display())))
}

/// Parse and check manifest text.
pub fn parse(text: &str) -> Result<Manifest> {
    let raw: RawManifest = serde_saphyr::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("").trim().to_string();
        let hint = if msg.contains("unknown field") {
            "a misspelt rule would silently turn a check off, so unknown keys are errors; fix the spelling"
        } else {
            MANIFEST_HINT
        };
        Error::bad_input(format!("is not valid: {first}")).hint(hint)
    })?;
    let defaults = raw.defaults.unwrap_or_default();
    let default_targets = defaults.targets.unwrap_or_else(|| vec![Target::Github, Target::EnvFile]);
    let default_placeholders = defaults.placeholders.unwrap_or_default();
    let values = raw.values.unwrap_or_default();
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    for (name, e) in &values {
        let e = e.clone().unwrap_or_default();
        let bad = |rule: &str, what: String| Error::bad_input(format!("entry `{name}`: {rule}: {what}"));
        if !valid_name(name) {
            errors.push(
                Error::bad_input(format!("entry `{name}` breaks GitHub's naming rules"))
                    .hint("use letters, digits and `_` only, not starting with a digit or `GITHUB_`"),
            );
            continue;
        }
        let pattern = match &e.pattern {
            Some(p) => match Regex::new(p) {
                Ok(r) => Some(r),
                Err(err) => {
                    let first = err.to_string().lines().last().unwrap_or("").trim().to_string();
                    errors.push(bad("pattern", format!("not a valid regular expression ({first})")));
                    None
                }
            },
            None => None,
        };
        if let (Some(min), Some(max)) = (e.min_length, e.max_length) {
            if min > max {
                errors.push(bad("min-length", format!("{min} is more than max-length {max}")));
            }
        }
        if let Some(other) = &e.equals {
            if !values.contains_key(other) {
                errors.push(bad("equals", format!("names `{other}`, which is not in the manifest")));
            } else if other == name {
                errors.push(bad("equals", "names the entry itself".into()));
            }
        }
        let targets = e.targets.clone().unwrap_or_else(|| default_targets.clone());
        let (scope, org_visibility) = match &e.github {
            None => (GhScope::Repo, None),
            Some(g) => match (&g.environment, &g.org) {
                (Some(_), Some(_)) => {
                    errors.push(bad("github", "give either `environment` or `org`, not both".into()));
                    (GhScope::Repo, None)
                }
                (Some(env), None) => {
                    if g.visibility.is_some() || g.repositories.is_some() {
                        errors.push(bad("github", "`visibility` and `repositories` are for `org` entries".into()));
                    }
                    if env.trim().is_empty() {
                        errors.push(bad("github", "`environment` is empty".into()));
                    }
                    (GhScope::Env(env.clone()), None)
                }
                (None, Some(org)) => {
                    // GitHub requires a visibility for organization secrets; `private` shares with the
                    // organization's private repositories only, the least surprising default.
                    let visibility = g.visibility.unwrap_or(Visibility::Private);
                    let repositories = g.repositories.clone().unwrap_or_default();
                    if visibility == Visibility::Selected && repositories.is_empty() {
                        errors.push(bad("github", "`visibility: selected` needs `repositories`".into()));
                    }
                    if visibility != Visibility::Selected && !repositories.is_empty() {
                        errors.push(bad("github", "`repositories` only applies with `visibility: selected`".into()));
                    }
                    if org.trim().is_empty() || org.contains('/') {
                        errors.push(bad("github", format!("`org: {org}` is not an organization login")));
                    }
                    (GhScope::Org(org.clone()), Some(OrgVisibility { visibility, repositories }))
                }
                (None, None) => {
                    if g.visibility.is_some() || g.repositories.is_some() {
                        errors.push(bad("github", "`visibility` and `repositories` are for `org` entries".into()));
                    }
                    (GhScope::Repo, None)
                }
            },
        };
        entries.push(Entry {
            name: name.clone(),
            required: e.required.unwrap_or(true),
            secret: e.secret.unwrap_or(true),
            pattern,
            min_length: e.min_length,
            max_length: e.max_length,
            equals: e.equals.clone(),
            allowed: e.allowed.clone(),
            forbidden: e.forbidden.clone().unwrap_or_default(),
            retired: e.retired.unwrap_or(false),
            placeholders: e.placeholders,
            default_placeholders,
            targets,
            scope,
            org_visibility,
        });
    }
    if let Some(e) = combine(errors) {
        return Err(if e.hint.is_none() { e.hint(MANIFEST_HINT) } else { e });
    }
    Ok(Manifest { entries })
}

/// A value from the values file or the environment: secret (masked) or plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Secret(Secret),
    Plain(String),
}

impl Value {
    /// The real value, for the process only.
    pub fn expose(&self) -> &str {
        match self {
            Value::Secret(s) => s.expose(),
            Value::Plain(s) => s,
        }
    }
}

/// Values for the manifest's entries: from the dotenv file, then from environment variables named as
/// the entries (env wins). An empty environment variable counts as not set, because a workflow that maps
/// a missing secret (`${{ secrets.X }}`) gets an empty string.
///
/// Every value of a secret entry is registered for masking here, before the caller prints anything.
/// When `manifest` is `None` (it failed to load) every value of the file is masked.
pub fn load_values(
    manifest: Option<&Manifest>,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Value>> {
    let mut raw: BTreeMap<String, String> = BTreeMap::new();
    let mut file_error = None;
    if let Some(path) = file {
        match read_input_text(path, "values-file", TEXT_LIMIT) {
            Ok(text) => {
                let (pairs, err) = dotenv::parse(&text);
                raw.extend(pairs);
                if let Some(dotenv::ParseError { line, reason }) = err {
                    // The message names the line, never its content: it may hold a secret.
                    file_error = Some(
                        Error::bad_input(format!(
                            "values-file {} cannot be parsed at line {line}: {reason}",
                            path.display()
                        ))
                        .hint("write one `KEY=value` per line; quote values with spaces or newlines"),
                    );
                }
            }
            Err(e) => {
                file_error = Some(e.hint(
                    "set `values-file` to a dotenv file, or leave it out and pass values as environment variables",
                ));
            }
        }
    }
    let mut out = BTreeMap::new();
    match manifest {
        None => {
            for v in raw.values() {
                Secret::new(v.clone());
            }
        }
        Some(m) => {
            for e in &m.entries {
                let from_env = env(&e.name).filter(|v| !v.is_empty());
                let v = from_env.or_else(|| raw.get(&e.name).cloned());
                if let Some(v) = v {
                    let value = if e.secret { Value::Secret(Secret::new(v)) } else { Value::Plain(v) };
                    out.insert(e.name.clone(), value);
                }
            }
            // Values in the file that the manifest does not know are still masked: they may be secrets.
            for (k, v) in &raw {
                if m.get(k).is_none() {
                    Secret::new(v.clone());
                }
            }
        }
    }
    match file_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Why a value is a placeholder (docs/secrets-manifest.md, "Placeholder detection"), or `None`.
pub fn placeholder_rule(value: &str) -> Option<&'static str> {
    if value.trim().is_empty() {
        return Some("placeholder (empty)");
    }
    let mut chars = value.chars();
    let first = chars.next()?;
    if value.chars().count() > 1 && chars.all(|c| c == first) {
        return Some("placeholder (one repeated character)");
    }
    let t = value.trim();
    let wrapped =
        |open: &str, close: &str| t.len() >= open.len() + close.len() && t.starts_with(open) && t.ends_with(close);
    if wrapped("<", ">") || wrapped("${", "}") || wrapped("{{", "}}") || wrapped("%", "%") || wrapped("@", "@") {
        return Some("placeholder (template)");
    }
    let norm: String = t.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
    const WORDS: [&str; 17] = [
        "changeme",
        "replaceme",
        "placeholder",
        "todo",
        "tbd",
        "fixme",
        "your",
        "example",
        "dummy",
        "secret",
        "password",
        "null",
        "none",
        "undefined",
        "test",
        "sample",
        "xxx",
    ];
    if WORDS.iter().any(|w| norm.starts_with(w)) {
        return Some("placeholder (well-known word)");
    }
    None
}

/// One rule an entry's value breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub rule: String,
    /// `false` for `placeholders: warn`: reported, not fatal.
    pub fatal: bool,
}

/// Check every entry's value against its rules. Never looks at the network.
pub fn validate(m: &Manifest, values: &BTreeMap<String, Value>) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in &m.entries {
        let mut fail = |rule: String| out.push(Finding { key: e.name.clone(), rule, fatal: true });
        let value = values.get(&e.name).map(Value::expose);
        if e.retired {
            if value.is_some() {
                fail("retired (must have no value)".into());
            }
            continue;
        }
        let Some(v) = value else {
            if e.required {
                fail("required".into());
            }
            continue;
        };
        if v.is_empty() {
            // An empty value is refused by `required`, wherever it came from. For an optional entry it is a
            // deliberate value (written as `KEY=""`), so only the rules that list exact values apply to it.
            if e.required {
                fail("required".into());
                continue;
            }
            if e.equals.as_ref().is_some_and(|other| values.get(other).map(Value::expose) != Some(v)) {
                fail(format!("equals {}", e.equals.as_deref().unwrap_or_default()));
            }
            if e.allowed.as_ref().is_some_and(|a| !a.iter().any(|a| a.is_empty())) {
                fail("allowed".into());
            }
            if e.forbidden.iter().any(String::is_empty) {
                fail("forbidden".into());
            }
            continue;
        }
        if v.len() > GITHUB_MAX_BYTES {
            fail(format!("max-length (GitHub's limit of {GITHUB_MAX_BYTES} bytes)"));
        }
        if let Some(min) = e.min_length {
            if v.len() < min {
                fail(format!("min-length {min}"));
            }
        }
        if let Some(max) = e.max_length {
            if v.len() > max {
                fail(format!("max-length {max}"));
            }
        }
        if let Some(p) = &e.pattern {
            if !p.is_match(v) {
                fail(format!("pattern `{}`", p.as_str()));
            }
        }
        if let Some(other) = &e.equals {
            if values.get(other).map(Value::expose) != Some(v) {
                fail(format!("equals {other}"));
            }
        }
        if let Some(allowed) = &e.allowed {
            if !allowed.iter().any(|a| a == v) {
                fail("allowed".into());
            }
        }
        if e.forbidden.iter().any(|f| f == v) {
            fail("forbidden".into());
        }
        let policy = match e.placeholders {
            Some(p) => p,
            None if e.secret => e.default_placeholders,
            None => Placeholders::Allow,
        };
        if policy != Placeholders::Allow {
            if let Some(rule) = placeholder_rule(v) {
                out.push(Finding {
                    key: e.name.clone(),
                    rule: rule.to_string(),
                    fatal: policy == Placeholders::Reject,
                });
            }
        }
        if e.targets.contains(&Target::EnvFile) {
            if let Err(rule) = crate::envfile::quote_value(v) {
                out.push(Finding { key: e.name.clone(), rule: rule.to_string(), fatal: true });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(manifest: &str, values: &[(&str, &str)], expect: &[(&str, &str)]) {
        let m = parse(manifest).unwrap();
        let vals = values.iter().map(|(k, v)| (k.to_string(), Value::Plain(v.to_string()))).collect();
        let got: Vec<(String, String)> =
            validate(&m, &vals).into_iter().filter(|f| f.fatal).map(|f| (f.key, f.rule)).collect();
        let want: Vec<(String, String)> = expect.iter().map(|(k, r)| (k.to_string(), r.to_string())).collect();
        assert_eq!(got, want, "manifest:\n{manifest}");
    }

    #[test]
    fn rules() {
        check("values:\n  A: {}\n", &[], &[("A", "required")]);
        check("values:\n  A: {required: false}\n", &[], &[]);
        check("values:\n  A: {min-length: 4}\n", &[("A", "k3Q")], &[("A", "min-length 4")]);
        check("values:\n  A: {max-length: 2}\n", &[("A", "k3Q")], &[("A", "max-length 2")]);
        check("values:\n  A: {pattern: '^sk-'}\n", &[("A", "k3Qz")], &[("A", "pattern `^sk-`")]);
        check("values:\n  A: {}\n  B: {equals: A}\n", &[("A", "k3Qz"), ("B", "k3Qy")], &[("B", "equals A")]);
        check("values:\n  A: {secret: false, allowed: [a, b]}\n", &[("A", "c")], &[("A", "allowed")]);
        check("values:\n  A: {forbidden: ['k3Qz']}\n", &[("A", "k3Qz")], &[("A", "forbidden")]);
        check("values:\n  A: {retired: true}\n", &[("A", "k3Qz")], &[("A", "retired (must have no value)")]);
        check("values:\n  A: {}\n", &[("A", "changeme")], &[("A", "placeholder (well-known word)")]);
        check("values:\n  A: {placeholders: allow}\n", &[("A", "changeme")], &[]);
        check("values:\n  A: {secret: false}\n", &[("A", "none")], &[]);
        let big = "k3Q".repeat(GITHUB_MAX_BYTES / 3 + 1);
        check("values:\n  A: {}\n", &[("A", &big)], &[("A", "max-length (GitHub's limit of 49152 bytes)")]);
    }

    #[test]
    fn empty_values() {
        // Required: refused as `required`, as a missing value is (the environment's empty counts as missing).
        check("values:\n  A: {}\n", &[("A", "")], &[("A", "required")]);
        check("values:\n  A: {secret: false}\n", &[("A", "")], &[("A", "required")]);
        // Optional: a value; no placeholder, length or pattern rule, but the exact-value lists apply.
        check("values:\n  A: {required: false, min-length: 4, pattern: '^x'}\n", &[("A", "")], &[]);
        check("values:\n  A: {required: false, forbidden: ['']}\n", &[("A", "")], &[("A", "forbidden")]);
        check("values:\n  A: {required: false, allowed: [a]}\n", &[("A", "")], &[("A", "allowed")]);
        check("values:\n  A: {required: false, allowed: [a, '']}\n", &[("A", "")], &[]);
    }

    #[test]
    fn values_file_errors_name_the_line_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.env");
        std::fs::write(&path, "A=1\nB=\"k9-unclosed-secret\n").unwrap();
        let err = load_values(None, Some(&path), &|_| None).unwrap_err();
        assert!(err.message.contains("line 2") && !err.message.contains("k9-unclosed"), "{}", err.message);
    }

    #[test]
    fn placeholders() {
        for p in [
            "",
            "  ",
            "xxxx",
            "****",
            "<api key>",
            "${TOKEN}",
            "{{ secret }}",
            "%KEY%",
            "@KEY@",
            "changeme",
            "Change-Me",
            "REPLACE_ME",
            "your-api-key",
            "YOUR_TOKEN_HERE",
            "todo",
            "TBD",
            "example.com",
            "dummy",
            "secret123",
            "Password1",
            "null",
            "None",
            "undefined",
            "test-key",
            "sample",
            "xxx-1",
        ] {
            assert!(placeholder_rule(p).is_some(), "{p:?} should be a placeholder");
        }
        for ok in ["sk-or-v1-4f9a8b7c6d5e", "hunter2-k3Q", "a8Kq-LmN0pQ", "-----BEGIN KEY-----\nabc\n-----END KEY-----"]
        {
            assert!(placeholder_rule(ok).is_none(), "{ok:?} is not a placeholder");
        }
    }

    #[test]
    fn manifest_errors_name_the_key() {
        let e = parse("values:\n  A: {patern: x}\n").unwrap_err();
        assert!(e.message.contains("patern"), "{}", e.message);
        assert_eq!(e.exit_code(), 2);
        let e = parse("values:\n  GITHUB_X: {}\n").unwrap_err();
        assert!(e.message.contains("GITHUB_X"), "{}", e.message);
        let e = parse("values:\n  A: {equals: B}\n").unwrap_err();
        assert!(e.message.contains("equals"), "{}", e.message);
        let e = parse("values:\n  A: {github: {org: acme, visibility: selected}}\n").unwrap_err();
        assert!(e.message.contains("repositories"), "{}", e.message);
        let e = parse("values:\n  A: {targets: [gitlab]}\n").unwrap_err();
        assert!(e.message.contains("gitlab"), "{}", e.message);
    }
}
