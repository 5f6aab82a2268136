//! `cargo xtask bench budgets`: the budgets of docs/actions.md that are about the binaries themselves:
//! size of each release binary (stripped by the release profile), start to `--version` printed, and peak
//! resident memory during real work (the demo's story run with the release binaries under
//! `/usr/bin/time`). Targets: ≤ 10 MB, ≤ 10 ms, ≤ 30 MB.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::demo::{self, BINS};

const STARTS: usize = 30;

pub fn run(_args: &[String]) -> Result<()> {
    crate::test::ensure_real_parts()?;
    let bin_dir = demo::build_binaries(true)?;
    let mut rss: BTreeMap<&str, u64> = BTreeMap::new();
    for row in demo::story(&bin_dir)? {
        if let Some(k) = row.rss_kib {
            let e = rss.entry(row.bin).or_default();
            *e = (*e).max(k);
        }
    }
    println!(
        "bench budgets: release binaries (stripped), start to --version ({STARTS} runs), peak RSS in the demo story"
    );
    println!("  binary            size      start (median / best)   peak RSS");
    for bin in BINS {
        let path = bin_dir.join(bin);
        let size = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?.len();
        let mut starts = Vec::with_capacity(STARTS);
        for _ in 0..STARTS {
            let t = Instant::now();
            let st = Command::new(&path).arg("--version").stdout(Stdio::null()).status()?;
            starts.push(t.elapsed());
            ensure!(st.success(), "{bin} --version failed");
        }
        starts.sort();
        let rss = rss.get(bin).map(|k| format!("{:.1} MB", *k as f64 / 1024.0)).unwrap_or_else(|| "-".into());
        println!(
            "  {bin:<15} {:>6.2} MB   {:>6.2} ms / {:>5.2} ms     {rss:>8}",
            size as f64 / 1e6,
            ms(starts[STARTS / 2]),
            ms(starts[0]),
        );
    }
    println!(
        "  targets: size <= 10 MB, start <= 10 ms, peak RSS <= 30 MB (rollback runs in bench deploy, not in the story)"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
