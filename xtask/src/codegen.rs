//! `cargo xtask codegen` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`codegen` is not written yet")
}
