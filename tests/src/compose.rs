//! Compose and container guards (being written).

pub struct Compose;
pub struct Container;
