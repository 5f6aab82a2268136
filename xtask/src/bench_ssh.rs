//! `cargo xtask bench_ssh` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`bench_ssh` is not written yet")
}
