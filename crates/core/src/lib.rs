//! gangplank's core: everything the five binaries share.
//!
//! - [`app`]: the app's name and folder on the host, derived from the repository in one place.
//! - [`actions`]: the Actions runner protocol (masks, logs, groups, annotations, outputs, summary).
//! - [`error`]: one error type, its `hint:` and the exit-code mapping.
//! - [`secret`]: a value that redacts itself and registers for masking.
//! - [`input`]: input parsing (booleans, lists, durations, sizes) and the shared SSH inputs.
//! - [`dotenv`]: dotenv files read literally, and the masking of `.env` values.
//! - [`keys`]: private key inspection (encrypted or not) before any connection.
//! - [`known_hosts`]: host keys checked as OpenSSH reads known_hosts (markers, patterns, ports, hashes).
//! - [`local`]: local input files read with a limit, output files written atomically.
//! - [`cmd`]: commands as values and the one shell-quoting function.
//! - [`exec`]: executors: local, recording, and SSH.
//! - [`process`]: local child processes with a deadline and an interrupt flag (SIGINT/SIGTERM).
//! - [`compose`]: docker compose / docker inspect command builders and parsers.
//! - [`host`]: what every step that writes on a host shares: the lock, audit lines, stamps, run metadata.

pub mod actions;
pub mod app;
pub mod cmd;
pub mod compose;
pub mod dotenv;
pub mod error;
pub mod exec;
pub mod host;
pub mod input;
pub mod keys;
pub mod known_hosts;
pub mod local;
pub mod metrics;
pub mod process;
pub mod secret;

pub use cmd::{quote, Cmd};
pub use error::{Class, Error, Result};
pub use exec::{Executor, Output};
pub use secret::Secret;
