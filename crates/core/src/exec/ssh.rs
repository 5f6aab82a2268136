//! SSH executor (being written).
