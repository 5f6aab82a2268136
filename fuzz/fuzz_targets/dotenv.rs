//! `.env` / values-file reading (`gangplank_core::dotenv`). Properties:
//! - parsing never panics, and keeps the pairs read before the first error (a prefix of the file that ends
//!   at a line boundary parses to a prefix of the pairs);
//! - every maskable line of every parsed value is among the strings to mask (a value that is read is never
//!   printed unmasked);
//! - an error names a line of the file.
#![no_main]

use gangplank_core::dotenv::{mask_values, maskable, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let (pairs, err) = parse(text);
    if let Some(e) = &err {
        assert!(e.line >= 1 && e.line <= text.split('\n').count(), "error line {} out of range", e.line);
    }
    let masks = mask_values(text);
    for (k, v) in &pairs {
        assert!(!k.is_empty(), "empty key");
        for l in v.lines().map(str::trim).filter(|l| maskable(l)) {
            assert!(masks.iter().any(|m| m == l), "value line of {k} is not masked");
        }
    }
    // Cutting the file after a complete line keeps what was read before the cut, when nothing before
    // it was left open (no quote spans the cut: the first line of the rest starts a new entry).
    if err.is_none() {
        if let Some(cut) = text.rfind('\n') {
            let (head, _) = text.split_at(cut + 1);
            let (head_pairs, head_err) = parse(head);
            if head_err.is_none() {
                assert!(head_pairs.len() <= pairs.len(), "a prefix of the file has more pairs");
                for ((hk, _), (k, _)) in head_pairs.iter().zip(&pairs) {
                    assert_eq!(hk, k, "a prefix of the file reads other keys");
                }
            }
        }
    }
});
