//! `cargo xtask bench budgets`: the budgets of docs/actions.md that are about the executable itself: size of
//! the release `gangplank` (stripped by the release profile; one executable for the five steps), start to
//! `--version` printed, and peak resident memory of each step during real work (the demo's story run with the
//! release executable under `/usr/bin/time`). Targets: ≤ 10 MB, ≤ 10 ms, ≤ 30 MB.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::demo;

const STARTS: usize = 30;

pub fn run(_args: &[String]) -> Result<()> {
    crate::setup::ensure(crate::setup::Tier::Everyday)?;
    let gangplank = crate::build_gangplank(true)?;
    let mut rss: BTreeMap<&str, u64> = BTreeMap::new();
    for row in demo::story(&gangplank)? {
        if let Some(k) = row.rss_kib {
            let e = rss.entry(row.bin).or_default();
            *e = (*e).max(k);
        }
    }
    let size = std::fs::metadata(&gangplank).with_context(|| format!("{}", gangplank.display()))?.len();
    let mut starts = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let t = Instant::now();
        let st = Command::new(&gangplank).arg("--version").stdout(Stdio::null()).status()?;
        starts.push(t.elapsed());
        ensure!(st.success(), "gangplank --version failed");
    }
    starts.sort();
    println!("bench budgets: the release executable (stripped), start to --version ({STARTS} runs), peak RSS per step");
    println!(
        "  gangplank  {:>6.2} MB   start {:>6.2} ms median / {:>5.2} ms best",
        size as f64 / 1e6,
        ms(starts[STARTS / 2]),
        ms(starts[0]),
    );
    println!("  step             peak RSS in the demo story");
    for (step, kib) in &rss {
        println!("  {step:<15} {:>8.1} MB", *kib as f64 / 1024.0);
    }
    println!(
        "  targets: size <= 10 MB, start <= 10 ms, peak RSS <= 30 MB (rollback runs in bench deploy, not in the story)"
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
