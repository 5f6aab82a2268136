//! push-registry's inputs and registry answers: registry addresses (`RegistryRef::parse`), `images` lines
//! (`parse_image_line`, `default_name`), tags (`valid_tag`) and `WWW-Authenticate` challenges
//! (`parse_challenge`). Input: `registry\0image line\0tag\0header-or-realm\0service\0scope`. Properties:
//! - a registry that parses re-parses from its `base()` to itself, and is plain HTTP only on loopback;
//! - an image line that parses has a name of valid lowercase path components and a local reference
//!   without white space that cannot be read as an option;
//! - an image pulled from the registry as `base/name:tag` gets `name` back as its default name;
//! - a valid tag is at most 128 characters and holds nothing that would end a reference (`:`, `/`, `@`);
//! - a `Bearer` challenge built with quoted, escaped parameters parses back to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_registry::registry::{parse_challenge, valid_path_component, Challenge, RegistryRef};
use push_registry::{default_name, is_auth_failure, is_transient, parse_image_line, valid_tag};

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let f = gangplank_fuzz::fields(text, 6);
    let _ = parse_challenge(f[3]);
    if is_transient(f[3]) {
        assert!(!f[3].to_ascii_lowercase().contains("unauthorized"));
    }
    let _ = is_auth_failure(f[3]);
    if valid_tag(f[2]) {
        assert!(f[2].len() <= 128 && !f[2].contains([':', '/', '@']) && !f[2].starts_with(['-', '.']));
    }
    // Parameter values as a registry sends them: no `,`-free requirement, but no surrounding blanks.
    let (realm, service, scope) = (f[3].trim(), f[4].trim(), f[5].trim());
    if !realm.is_empty() {
        let h = format!("Bearer realm={},service={},scope={}", q(realm), q(service), q(scope));
        let want = Challenge::Bearer {
            realm: realm.to_string(),
            service: Some(service.to_string()),
            scope: Some(scope.to_string()),
        };
        assert_eq!(parse_challenge(&h), Some(want), "{h}");
    }
    let Ok(reg) = RegistryRef::parse(f[0]) else { return };
    assert_eq!(RegistryRef::parse(&reg.base()).ok().as_ref(), Some(&reg), "registry {:?} re-parsed", f[0]);
    if reg.scheme() == "http" {
        // Docker's insecure defaults: 127.0.0.0/8 and ::1 (and `localhost`, which resolves there).
        let h = match reg.host.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => reg.host.as_str(),
        };
        let v4 = h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback());
        assert!(h == "localhost" || v4 || h == "[::1]", "plain HTTP to {}", reg.host);
    }
    let Ok(spec) = parse_image_line(f[1], &reg) else { return };
    assert!(spec.name.split('/').all(valid_path_component), "name {:?}", spec.name);
    assert!(!spec.local.is_empty() && !spec.local.starts_with('-') && !spec.local.contains(char::is_whitespace));
    let tag = if valid_tag(f[2]) { f[2] } else { "latest" };
    let pulled = format!("{}/{}:{tag}", reg.base(), spec.name);
    assert_eq!(default_name(&pulled, &reg), spec.name, "default name of {pulled}");
});
