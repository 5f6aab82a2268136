//! `$GITHUB_OUTPUT` files (`gangplank_core::actions::parse_output_file`, the runner's format) and the blocks
//! `set_output` writes (`output_block`). Input: `name\0value\0name\0value…`; the whole input is also parsed
//! as a file. Properties:
//! - parsing any text never panics;
//! - the blocks `set_output` would append for valid names parse back to exactly those outputs, in order,
//!   for every value (a `\r` before a line end is dropped by the runner too, so values are compared without
//!   `\r`);
//! - `output_block` refuses an invalid name.
#![no_main]

use gangplank_core::actions::{output_block, parse_output_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = gangplank_fuzz::text(data) else { return };
    let _ = parse_output_file(text);
    let parts: Vec<&str> = text.split('\0').collect();
    let mut file = String::new();
    let mut want = Vec::new();
    for (i, nv) in parts.chunks(2).enumerate() {
        let value = nv.get(1).copied().unwrap_or_default().replace('\r', "");
        let name = match output_block(nv[0], &value) {
            Ok(_) => nv[0].to_string(),
            Err(_) => {
                assert!(
                    nv[0].is_empty() || !nv[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "valid name {:?} refused",
                    nv[0]
                );
                format!("out_{i}")
            }
        };
        file.push_str(&output_block(&name, &value).expect("valid name"));
        want.push((name, value));
    }
    assert_eq!(parse_output_file(&file), Ok(want), "outputs do not read back");
});
