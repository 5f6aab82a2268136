//! A real `docker-registry` (CNCF distribution) on a free loopback port.

/// A running registry (being written).
pub struct Registry {
    pub addr: String,
    pub auth: Option<(String, String)>,
}
