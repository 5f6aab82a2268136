//! The GitHub REST API stand-in (being written).
