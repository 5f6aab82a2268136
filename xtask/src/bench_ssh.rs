//! `cargo xtask bench ssh`: 20 short commands over one gangplank connection versus 20 separate `ssh`
//! invocations of the OpenSSH client, against the same testbed sshd, in one run (issue 2).
//! Target: at least 5× faster. Prints both medians and the ratio.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gangplank_core::exec::ssh::SshExecutor;
use gangplank_core::input::{HostKeyPolicy, HostSpec, SshConfig};
use gangplank_core::{Cmd, Executor, Secret};
use gangplank_testbed::Sshd;

const COMMANDS: usize = 20;
const ROUNDS: usize = 7;

pub fn run(_args: &[String]) -> Result<()> {
    let sshd = Sshd::start().context("starting the testbed sshd")?;
    // Log in as a user whose shell starts fast, so the figures measure SSH and not root's ~/.bashrc
    // (pyenv on these machines), which both sides would otherwise pay on every command.
    let user = gangplank_testbed::ensure_fast_user()?;
    let host = HostSpec { user: user.clone(), host: sshd.host.clone(), port: sshd.port };
    let cfg = SshConfig {
        hosts: vec![host.clone()],
        key: Secret::new(sshd.client_key.clone()),
        passphrase: None,
        host_key: HostKeyPolicy::KnownHosts(sshd.known_hosts.clone()),
        connect_timeout: Duration::from_secs(10),
        sudo: false,
    };

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let before = sshd.connections();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut ssh = SshExecutor::connect(&host, &cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        for i in 0..COMMANDS {
            let out = ssh.run(&Cmd::new("echo").arg(i.to_string())).map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(out.stdout_str() == format!("{i}\n"), "unexpected output {:?}", out.stdout_str());
        }
        drop(ssh);
        ours.push(t.elapsed());

        let t = Instant::now();
        for i in 0..COMMANDS {
            let out = Command::new("ssh")
                .args(ssh_args_for(&sshd, &user))
                .arg(format!("echo {i}"))
                .output()
                .context("running the OpenSSH client")?;
            ensure!(out.status.success(), "ssh failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        theirs.push(t.elapsed());
    }
    std::thread::sleep(Duration::from_millis(200));
    let logins = sshd.connections() - before;

    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!("bench ssh: {COMMANDS} short commands, median of {ROUNDS} rounds, same sshd");
    println!("  gangplank, one connection : {:>8.1} ms", ms(a));
    println!("  OpenSSH, {COMMANDS} invocations  : {:>8.1} ms", ms(b));
    println!("  speed-up                  : {:>8.1}x (target >= 5x)", ms(b) / ms(a));
    println!(
        "  logins seen by sshd       : {logins} ({ROUNDS} for gangplank = 1 per step, {} for OpenSSH)",
        logins.saturating_sub(ROUNDS)
    );
    Ok(())
}

/// The testbed's OpenSSH client arguments, logging in as `user`.
fn ssh_args_for(sshd: &Sshd, user: &str) -> Vec<String> {
    let mut args = sshd.ssh_args();
    if let Some(last) = args.last_mut() {
        *last = format!("{user}@{}", sshd.host);
    }
    args
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
