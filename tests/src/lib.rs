//! The real-parts testbed used by every integration test and by xtask.
