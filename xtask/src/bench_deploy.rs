//! `cargo xtask bench_deploy` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`bench_deploy` is not written yet")
}
