//! `cargo xtask bench_secrets` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`bench_secrets` is not written yet")
}
