//! `cargo xtask demo` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`demo` is not written yet")
}
