//! The server `.env` sync-secrets renders (`sync_secrets::envfile`), read back by the parser every step
//! uses (`gangplank_core::dotenv`). Properties:
//! - `render` then `dotenv::parse` yields exactly the pairs rendered (whatever the values: quotes, `$`,
//!   newlines, `#`), or `render` refuses the value by the `env-file quoting` rule;
//! - the drift split (`entry_hashes`, what the host's awk does) finds exactly the rendered keys, and a
//!   changed value changes only its own key's hash;
//! - `entry_hashes` never panics on any text;
//! - one input in 32 also writes the file and runs the host's own split (`HASHES_SCRIPT`, awk) on it through
//!   `read_remote`: it must find the same keys and hashes as `entry_hashes`.
#![no_main]

use gangplank_core::dotenv;
use libfuzzer_sys::fuzz_target;
use sync_secrets::envfile::{entry_hashes, quote_value, read_remote, render};
use sync_secrets::manifest::valid_name;

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let _ = entry_hashes(text);
    // Fields: KEY\0value\0KEY\0value… ; invalid names become generated ones, as the manifest only
    // lets valid names through.
    let parts: Vec<&str> = text.split('\0').collect();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, kv) in parts.chunks(2).enumerate() {
        let k = if valid_name(kv[0]) && !pairs.iter().any(|(k, _)| k == kv[0]) {
            kv[0].to_string()
        } else {
            format!("K{i}")
        };
        if pairs.iter().any(|(p, _)| *p == k) {
            continue;
        }
        pairs.push((k, kv.get(1).copied().unwrap_or_default().to_string()));
    }
    let quotable: Vec<(String, String)> = pairs.iter().filter(|(_, v)| quote_value(v).is_ok()).cloned().collect();
    let file = render(&quotable).expect("quotable values render");
    let (back, err) = dotenv::parse(&file);
    assert_eq!(err, None, "rendered file does not parse");
    assert_eq!(back, quotable, "rendered values do not read back");
    let hashes = entry_hashes(&file);
    let keys: Vec<&String> = hashes.keys().collect();
    let mut want: Vec<&String> = quotable.iter().map(|(k, _)| k).collect();
    want.sort();
    assert_eq!(keys, want, "the drift split finds other keys");
    if gangplank_fuzz::one_in(data, 32) {
        let dir = std::env::temp_dir().join(format!("gangplank-fuzz-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(".env");
        std::fs::write(&path, &file).expect("write .env");
        let mut local = gangplank_core::exec::Local::new(false);
        let remote = read_remote(&mut local, path.to_str().expect("utf-8 temp path")).expect("hashes script runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(remote.keys, hashes, "the host's awk splits the file otherwise");
    }
    if let Some((k0, v0)) = quotable.first() {
        let mut changed = quotable.clone();
        changed[0].1 = format!("{v0}x");
        if let Ok(file2) = render(&changed) {
            let h2 = entry_hashes(&file2);
            for (k, h) in &hashes {
                assert_eq!(h2.get(k) == Some(h), k != k0, "changing {k0} changed the hash of {k} or not its own");
            }
        }
    }
});
