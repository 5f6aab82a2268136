//! A steady, bounded load on one URL during a deploy: `hey` (Debian's package) sends it from several
//! workers, rate-limited and stopped by time, and a sequential probe beside it records what each response
//! said and when, for the version after a switch and the longest gap between successful responses.

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{http_get, require_program, scrubbed_command};

/// One probe response: when it started (since the load began) and the body of a 200 (`None`: failed).
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub body: Option<String>,
}

/// What the load saw.
#[derive(Debug)]
pub struct Report {
    /// Requests `hey` sent that answered 2xx.
    pub hey_ok: u64,
    /// Requests `hey` sent that answered otherwise or got no answer, with what `hey` said about them.
    pub hey_failed: u64,
    pub hey_errors: Vec<String>,
    pub probe: Vec<Sample>,
}

impl Report {
    /// Failed requests of both `hey` and the probe.
    pub fn failed(&self) -> u64 {
        self.hey_failed + self.probe.iter().filter(|s| s.body.is_none()).count() as u64
    }

    /// The longest time between two successful probe responses (from the first to the last).
    pub fn longest_gap(&self) -> Duration {
        let ok: Vec<Duration> = self.probe.iter().filter(|s| s.body.is_some()).map(|s| s.at).collect();
        ok.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }
}

/// A load under way.
pub struct Load {
    start: Instant,
    hey: Option<Child>,
    stop: Arc<AtomicBool>,
    probe: Option<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Start `workers` × `rate` requests per second on `http://ADDR/PATH` (loopback only) for at most
    /// `limit`, and the probe.
    pub fn start(addr: &str, path: &str, workers: u32, rate: u32, limit: Duration) -> Result<Load> {
        if !addr.starts_with("127.") {
            bail!("the load goes to loopback only, not {addr}");
        }
        require_program("hey", "hey")?;
        let hey = scrubbed_command("hey")
            .args(["-z", &format!("{}s", limit.as_secs().max(1))])
            .args(["-c", &workers.to_string(), "-q", &rate.to_string(), "-t", "10"])
            .arg(format!("http://{addr}{path}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting hey")?;
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let (flag, addr, path) = (stop.clone(), addr.to_string(), path.to_string());
        let probe = std::thread::spawn(move || {
            let mut v = vec![];
            while !flag.load(Ordering::Relaxed) && start.elapsed() < limit {
                let at = start.elapsed();
                let body =
                    http_get(&addr, &path, None).ok().filter(|(s, _)| *s == 200).map(|(_, b)| b.trim().to_string());
                v.push(Sample { at, body });
                std::thread::sleep(Duration::from_millis(10));
            }
            v
        });
        Ok(Load { start, hey: Some(hey), stop, probe: Some(probe) })
    }

    /// Time since the load started (the probe's clock).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The probe's samples so far are not shared; wait on a condition with [`crate::wait_for`] and
    /// [`crate::http_get`] instead. Stop the load (SIGINT makes `hey` print its report) and collect it.
    pub fn finish(mut self) -> Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let probe = self.probe.take().expect("probe thread").join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        let mut hey = self.hey.take().expect("hey child");
        // SIGINT, not SIGKILL: hey stops sending and prints its summary.
        let _ = scrubbed_command("kill").arg("-INT").arg(hey.id().to_string()).status();
        let mut text = String::new();
        let read = hey.stdout.take().expect("piped").read_to_string(&mut text);
        hey.wait()?;
        read?;
        let (ok, failed, errors) = parse_hey(&text)?;
        Ok(Report { hey_ok: ok, hey_failed: failed, hey_errors: errors, probe })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut h) = self.hey.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// `hey`'s summary: requests that answered 2xx, requests that did not (other statuses, and the error
/// distribution: timeouts, resets, refused connections), and the error lines.
pub fn parse_hey(text: &str) -> Result<(u64, u64, Vec<String>)> {
    let mut section = "";
    let (mut ok, mut failed, mut errors) = (0u64, 0u64, vec![]);
    let mut seen = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Status code distribution") {
            section = "status";
            seen = true;
            continue;
        }
        if t.starts_with("Error distribution") {
            section = "error";
            seen = true;
            continue;
        }
        if t.is_empty() || !t.starts_with('[') {
            if !t.is_empty() {
                section = "";
            }
            continue;
        }
        // `[200]	1234 responses` or `[12]	Get "http://…": dial tcp …`
        let Some((count, rest)) = t[1..].split_once(']') else { continue };
        match section {
            "status" => {
                let n: u64 = rest.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
                if count.starts_with('2') {
                    ok += n;
                } else {
                    failed += n;
                    errors.push(format!("HTTP {count}: {n}"));
                }
            }
            "error" => {
                failed += count.parse::<u64>().unwrap_or(0);
                errors.push(rest.trim().to_string());
            }
            _ => {}
        }
    }
    if !seen {
        bail!("hey printed no status or error distribution:\n{text}");
    }
    Ok((ok, failed, errors))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hey_summary_counts_statuses_and_errors() {
        let text = "Summary:\n  Total:\t5.0 secs\n\nStatus code distribution:\n  [200]\t480 responses\n  [502]\t3 responses\n\nError distribution:\n  [2]\tGet \"http://127.0.0.1:1/\": dial tcp: connection refused\n\n";
        let (ok, failed, errors) = super::parse_hey(text).unwrap();
        assert_eq!((ok, failed), (480, 5));
        assert_eq!(errors.len(), 2);
        assert!(super::parse_hey("nothing").is_err());
    }
}
