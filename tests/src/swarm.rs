//! A Docker Swarm over the namespaced hosts ([`crate::hosts`]): the first host is the one manager
//! (`docker swarm init --advertise-addr <its address>`), the others join as workers with the join token.
//! The hosts share one bridge (in the switch namespace), so the Swarm ports (2377/tcp control, 7946
//! tcp+udp gossip, 4789/udp VXLAN data) go host to host on one L2 segment, never through this machine's
//! own namespace or its firewall: nothing is enabled anywhere, [`Swarm::new`] checks they answer.
//!
//! What this machine's kernel allows (checked by [`Swarm::new`] and said in its report):
//! - no IPVS (`ip_vs`), so no ingress routing mesh and no VIP: services publish in `mode: host` (each
//!   node serves the port of the task it runs) and overlay services use `endpoint_mode: dnsrr`;
//! - VXLAN (`vxlan`) is there, so overlay networks work when the engines can make them.
//!
//! Drop: every node leaves (`docker swarm leave --force`, workers first), then the hosts go as usual.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::hosts::{Hosts, HostsOptions};
use crate::run_checked;

/// A Swarm of namespaced hosts: `hosts.hosts[0]` is the manager.
pub struct Swarm {
    pub hosts: Hosts,
    /// Time to init and join every node (the hosts' own start-up not counted).
    pub formation: Duration,
    /// Each host's Swarm node id (every engine shares this machine's hostname, so ids tell nodes apart).
    pub node_ids: Vec<String>,
}

impl Swarm {
    /// `count` namespaced hosts (at least 1) made one Swarm.
    pub fn new(count: usize) -> Result<Swarm> {
        Swarm::from_hosts(Hosts::start_with(&HostsOptions::new(count))?)
    }

    /// Makes a Swarm of hosts already started.
    pub fn from_hosts(hosts: Hosts) -> Result<Swarm> {
        if hosts.hosts.is_empty() {
            bail!("a Swarm needs at least one host");
        }
        let t = Instant::now();
        // Dropped (and left) if any step below fails.
        let mut me = Swarm { hosts, formation: Duration::ZERO, node_ids: vec![] };
        let manager = &me.hosts.hosts[0];
        run_checked(manager.docker().args(["swarm", "init", "--advertise-addr", &manager.addr]))
            .context("docker swarm init on the manager")?;
        let token = run_checked(manager.docker().args(["swarm", "join-token", "-q", "worker"]))?.trim().to_string();
        for w in &me.hosts.hosts[1..] {
            // Gossip and control must reach the manager from the worker's namespace before it joins.
            crate::wait_for(&format!("{} to reach the manager's 2377", w.name), Duration::from_secs(10), || {
                tcp_from(w, &manager.addr, 2377).then_some(())
            })?;
            run_checked(
                w.docker()
                    .args(["swarm", "join", "--advertise-addr", &w.addr, "--token", &token])
                    .arg(format!("{}:2377", manager.addr)),
            )
            .with_context(|| format!("{} joins the Swarm", w.name))?;
        }
        let want = me.hosts.hosts.len();
        crate::wait_for(&format!("{want} nodes ready"), Duration::from_secs(60), || {
            let out =
                run_checked(manager.docker().args(["node", "ls", "--format", "{{.Status}} {{.Availability}}"])).ok()?;
            (out.lines().filter(|l| l.trim() == "Ready Active").count() == want).then_some(())
        })?;
        // Gossip between workers, too (7946/tcp), so a task's state reaches the manager from any node.
        for a in &me.hosts.hosts {
            for b in &me.hosts.hosts {
                if a.name != b.name && !tcp_from(a, &b.addr, 7946) {
                    bail!("{} cannot reach {}:7946 (Swarm gossip)", a.name, b.addr);
                }
            }
        }
        for h in &me.hosts.hosts {
            me.node_ids
                .push(run_checked(h.docker().args(["info", "--format", "{{.Swarm.NodeID}}"]))?.trim().to_string());
        }
        me.formation = t.elapsed();
        Ok(me)
    }

    /// The manager's address.
    pub fn manager_addr(&self) -> &str {
        &self.hosts.hosts[0].addr
    }

    /// `docker` on the manager's engine.
    pub fn manager(&self) -> std::process::Command {
        self.hosts.hosts[0].docker()
    }

    /// The tasks of `service` meant to run (`desired-state=running`): (host index, task state, image).
    pub fn tasks(&self, service: &str) -> Vec<(usize, String, String)> {
        let Ok(ids) =
            run_checked(self.manager().args(["service", "ps", "-q", "--filter", "desired-state=running", service]))
        else {
            return vec![];
        };
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return vec![];
        }
        let fmt = "{{.NodeID}} {{.Status.State}} {{.Spec.ContainerSpec.Image}}";
        let Ok(out) = run_checked(self.manager().args(["inspect", "--format", fmt]).args(&ids)) else { return vec![] };
        out.lines()
            .filter_map(|l| {
                let mut p = l.split_whitespace();
                let (node, state, image) = (p.next()?, p.next()?, p.next()?);
                let i = self.node_ids.iter().position(|n| n == node)?;
                // The image as the stack file names it, without the digest Swarm pins.
                Some((i, state.to_string(), image.split('@').next().unwrap_or(image).to_string()))
            })
            .collect()
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // Workers first, so the manager does not wait for them; then the hosts stop as usual.
        for h in self.hosts.hosts.iter().rev() {
            let _ = h.docker().args(["swarm", "leave", "--force"]).output();
        }
    }
}

/// Whether `from`'s namespace opens a TCP connection to `addr:port` (bash's /dev/tcp, inside the host's
/// network namespace).
fn tcp_from(from: &crate::hosts::Host, addr: &str, port: u16) -> bool {
    std::process::Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", from.netns))
        .args(["timeout", "2", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{addr}/{port}"))
        .output()
        .is_ok_and(|o| o.status.success())
}
