//! Action input parsing (`gangplank_core::input`): the same text through every parser. Properties:
//! - a duration that parses is at most 24 h, and its rendering in seconds parses back within 1 µs;
//! - a size that parses is at most 1 PiB, its byte count parses back exactly, and `format_size` parses back
//!   within its rounding (one decimal: 5 %);
//! - a boolean's `true`/`false` parses back to it; a list's entries are trimmed, non-empty, without `,`
//!   or newlines, and joining them parses back to them;
//! - a host spec's rendering `user@host:port` (`[v6]` bracketed) parses back to the same spec;
//! - an absolute path is absolute, has no trailing `/` or control character, and is a fixed point.
#![no_main]

use gangplank_core::input::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(s) = gangplank_fuzz::text(data) else { return };
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION);
        let again = parse_duration(&format!("{}", d.as_secs_f64())).expect("rendered duration parses");
        let diff = if again > d { again - d } else { d - again };
        assert!(diff.as_nanos() <= 1000, "{d:?} re-parsed as {again:?}");
        let ms = parse_duration(&format!("{}ms", d.as_millis())).expect("rendered ms duration parses");
        let gap = if ms > d { ms - d } else { d - ms };
        assert!(gap < std::time::Duration::from_millis(1), "{d:?} in ms re-parsed as {ms:?}");
    }
    if let Ok(v) = parse_size(s) {
        assert!(v <= MAX_SIZE);
        assert_eq!(parse_size(&v.to_string()), Ok(v), "byte count does not parse back");
        let f = format_size(v);
        let back = parse_size(&f).unwrap_or_else(|e| panic!("format_size({v}) = {f} does not parse: {e}"));
        assert!((back as f64 - v as f64).abs() <= v as f64 * 0.05 + 1.0, "{v} -> {f} -> {back}");
    }
    if let Ok(b) = parse_bool(s) {
        assert_eq!(parse_bool(&b.to_string()), Ok(b));
    }
    let list = parse_list(s);
    for e in &list {
        assert!(!e.is_empty() && e.trim() == e && !e.contains([',', '\n']), "list entry {e:?}");
    }
    assert_eq!(parse_list(&list.join("\n")), list);
    assert_eq!(parse_list(&list.join(",")), list);
    if let Ok(h) = HostSpec::parse(s, "deploy", 22) {
        let again = HostSpec::parse(&h.to_string(), "other", 2222).expect("rendered host spec parses");
        assert_eq!(again, h, "host spec {s:?} rendered as {h}");
        assert!(h.port > 0 && !h.host.is_empty() && !h.user.is_empty());
    }
    if let Ok(p) = absolute_path(s, "app-dir") {
        assert!(p.starts_with('/') && p.len() > 1 && !p.ends_with('/') && !p.chars().any(char::is_control));
        assert_eq!(absolute_path(&p, "app-dir").ok().as_deref(), Some(p.as_str()));
    }
});
