//! `cargo xtask bench_verify` (not written yet).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`bench_verify` is not written yet")
}
