//! `cargo xtask test` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`test` is not written yet")
}
