//! The real-parts testbed: used by every integration test and by xtask (bench, demo).
//!
//! Every part is the real program on loopback (testbed.md): `sshd`, `docker-registry`, the Docker engine
//! and compose; only GitHub's API is a local stand-in ([`github`]). Everything started here is torn down
//! on drop, also when a test fails.

pub mod github;
