//! `known-hosts` as OpenSSH reads it (`gangplank_core::known_hosts`). Input: `host\0port\0known_hosts text`.
//! Properties, for any text that parses:
//! - `check` and `key_types` never panic, for any host, port and offered key;
//! - adding the line `ssh-keyscan` would print for the host (`[host]:port type key`) makes that key match,
//!   unless an `@revoked` line for the host names it;
//! - adding an `@revoked` line for the host and key makes it revoked, whatever the other lines say;
//! - a key type from `key_types` is one some plain line gives for the host.
#![no_main]

use base64::Engine;
use gangplank_core::known_hosts::{check, key_types, lookup_name, parse, Verdict};
use libfuzzer_sys::fuzz_target;

fn blob(key_type: &str, body: &[u8]) -> Vec<u8> {
    let mut b = (key_type.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(key_type.as_bytes());
    b.extend_from_slice(body);
    b
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let f = gangplank_fuzz::fields(text, 3);
    // A host name as users write them (names, IPv4, IPv6): the characters `HostSpec` accepts.
    let host: String =
        f[0].chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')).take(64).collect();
    let port: u16 = f[1].trim().parse().unwrap_or(22);
    let Ok(entries) = parse(f[2]) else { return };
    let host = if host.is_empty() { "h".to_string() } else { host };
    // Whatever key the server offers.
    let offered = blob("ssh-ed25519", f[1].as_bytes());
    let _ = check(&entries, &host, port, &offered);
    let _ = check(&entries, &host, port, f[1].as_bytes());
    let types = key_types(&entries, &host, port);
    for t in &types {
        let base = t.trim_start_matches("rsa-sha2-512").trim_start_matches("rsa-sha2-256");
        assert!(!base.is_empty() || t.starts_with("rsa-sha2"), "empty key type");
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&offered);
    let name = lookup_name(&host, port);
    let revoked_before = check(&entries, &host, port, &offered) == Verdict::Revoked;
    let with_line = format!("{}\n{name} ssh-ed25519 {b64}\n", f[2]);
    let e2 = parse(&with_line).expect("text plus a well-formed line parses");
    let want = if revoked_before { Verdict::Revoked } else { Verdict::Match };
    // A negated pattern elsewhere may exclude the host only from its own line, never from ours.
    assert_eq!(check(&e2, &host, port, &offered), want, "the keyscan line for {name} does not match");
    assert!(key_types(&e2, &host, port).iter().any(|t| t == "ssh-ed25519"), "key type of our line not offered");
    let revoked = format!("{with_line}@revoked {name} ssh-ed25519 {b64}\n");
    let e3 = parse(&revoked).expect("text plus a revoked line parses");
    assert_eq!(check(&e3, &host, port, &offered), Verdict::Revoked, "an @revoked key is accepted");
});
