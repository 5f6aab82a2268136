//! `cargo xtask dist` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`dist` is not written yet")
}
