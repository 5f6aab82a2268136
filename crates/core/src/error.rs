//! One error type for the whole product, and the one place that maps it to an exit code.
//!
//! Every error is one sentence saying what is wrong plus, where we know it, a `hint:` saying how to fix
//! it. The [`Class`] decides the exit code of the binary (docs/actions.md, "exit codes").

use std::fmt;

/// What kind of failure this is; decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The operation ran and failed (an unhealthy deploy that was rolled back, a push that failed). Exit 1.
    Failed,
    /// Bad input, bad config or a failed preflight: nothing was changed anywhere. Exit 2.
    BadInput,
    /// Another deploy holds the lock: nothing was changed. Exit 3.
    Locked,
    /// SIGINT/SIGTERM: the run stopped, put back what it had changed and released its lock. Exit 4.
    Interrupted,
    /// The connection to a host was lost or a host stopped answering within a deadline. Exit 1, but the
    /// engine tells it apart: it reconnects once to put the host back and release the lock.
    Lost,
}

impl Class {
    pub fn exit_code(self) -> i32 {
        match self {
            Class::Failed | Class::Lost => 1,
            Class::BadInput => 2,
            Class::Locked => 3,
            Class::Interrupted => 4,
        }
    }
}

/// A failure with a message, an optional hint, and a class that decides the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub class: Class,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Error { class, message: message.into(), hint: None }
    }
    /// Bad input or failed preflight (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Class::BadInput, message)
    }
    /// The operation ran and failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Class::Failed, message)
    }
    /// Another run holds the lock (exit 3).
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(Class::Locked, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(Class::Interrupted, message)
    }
    pub fn lost(message: impl Into<String>) -> Self {
        Self::new(Class::Lost, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Prefix the message with context, keeping class and hint.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
    pub fn exit_code(&self) -> i32 {
        self.class.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Several errors found at once (preflight lists every failure, not just the first).
pub fn combine(errors: Vec<Error>) -> Option<Error> {
    match errors.len() {
        0 => None,
        1 => errors.into_iter().next(),
        n => {
            let class =
                if errors.iter().all(|e| e.class == Class::BadInput) { Class::BadInput } else { errors[0].class };
            let mut message = format!("{n} problems found:");
            for (i, e) in errors.iter().enumerate() {
                message.push_str(&format!("\n  {}. {}", i + 1, e.message));
                if let Some(h) = &e.hint {
                    message.push_str(&format!("\n     hint: {h}"));
                }
            }
            Some(Error { class, message, hint: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_hint_on_its_own_line() {
        let e =
            Error::bad_input("the tag `a b` is not a valid Docker tag").hint("use letters, digits, `_`, `.` and `-`");
        assert_eq!(
            e.to_string(),
            "the tag `a b` is not a valid Docker tag\nhint: use letters, digits, `_`, `.` and `-`"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn combine_lists_every_failure() {
        let e = combine(vec![Error::bad_input("a").hint("fix a"), Error::bad_input("b")]).unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("1. a\n     hint: fix a\n  2. b"), "{}", e.message);
        assert!(combine(vec![]).is_none());
    }
}
