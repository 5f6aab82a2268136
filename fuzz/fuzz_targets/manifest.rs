//! The secrets manifest (`sync_secrets::manifest::parse`) and the value rules (`validate`), with values
//! read from a values-file (`dotenv`). Input: `manifest YAML\0values-file`. Properties:
//! - a manifest that parses has valid, unique names, sorted;
//! - every finding names a manifest entry, and its rule is one of the documented rule texts, built only
//!   from the manifest (a pattern, an `equals` name, a length): never from a value, so no value can reach
//!   a log through a finding;
//! - `placeholder_rule` never panics.
#![no_main]

use std::collections::BTreeMap;

use gangplank_core::dotenv;
use libfuzzer_sys::fuzz_target;
use sync_secrets::manifest::{parse, placeholder_rule, valid_name, validate, Value, GITHUB_MAX_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let f = gangplank_fuzz::fields(text, 2);
    let _ = placeholder_rule(f[1]);
    let Ok(m) = parse(f[0]) else { return };
    for w in m.entries.windows(2) {
        assert!(w[0].name < w[1].name, "entries not sorted and unique");
    }
    let (pairs, _) = dotenv::parse(f[1]);
    // Plain values: a `Secret` would register a mask for each run and grow without bound.
    let values: BTreeMap<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::Plain(v))).collect();
    for fnd in validate(&m, &values) {
        let e = m.get(&fnd.key).unwrap_or_else(|| panic!("finding for {:?}, not in the manifest", fnd.key));
        assert!(valid_name(&e.name));
        let r = fnd.rule.as_str();
        let known = matches!(r, "required" | "retired (must have no value)" | "allowed" | "forbidden")
            || r.starts_with("placeholder (")
            || r.starts_with("env-file quoting (")
            || r == format!("max-length (GitHub's limit of {GITHUB_MAX_BYTES} bytes)")
            || e.min_length.is_some_and(|n| r == format!("min-length {n}"))
            || e.max_length.is_some_and(|n| r == format!("max-length {n}"))
            || e.pattern.as_ref().is_some_and(|p| r == format!("pattern `{}`", p.as_str()))
            || e.equals.as_ref().is_some_and(|o| r == format!("equals {o}"));
        assert!(known, "finding for {} with an unknown rule text {r:?}", fnd.key);
    }
});
