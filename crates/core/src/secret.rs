//! A value that must never be shown: key material, passwords, tokens, `.env` values marked secret.
//!
//! `Debug` and `Display` print `[REDACTED]`. Creating a `Secret` registers its value with the
//! process-wide mask list (see [`crate::actions::register_mask`]), which prints `::add-mask::` under
//! Actions and lets [`crate::actions::redact`] scrub any message before it is printed.

use std::fmt;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

pub const REDACTED: &str = "[REDACTED]";

impl Secret {
    /// Wrap a value and register it for masking.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        crate::actions::register_mask(&value);
        Secret(value)
    }

    /// The real value, for the process only: never print what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_in_debug_display_or_errors() {
        let s = Secret::new("hunter2-canary");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret,
        }
        assert!(!format!("{:?}", Holder { key: s.clone() }).contains("hunter2"));
        let err = crate::Error::bad_input(format!("bad key {s}"));
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-canary");
    }
}
