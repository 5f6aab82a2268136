//! Several hosts on this machine, each with its own network namespace and address, its own Docker engine
//! (own data root) and its own sshd (docs/testbed.md, "Namespaced hosts"). A switch
//! namespace (`gp-A-B-sw`) holds a bridge with the far end of every host's veth pair and of the runner
//! side's own link (`gpb-A-B`, address `10.A.B.1/24`, hosts from `.2`); the testbed registry listens on that
//! address, so every host pulls from it, and every host reaches the others. The bridge lives in its own
//! namespace because this machine's firewall (Docker's `FORWARD` policy `DROP`, applied to bridged frames
//! by `br_netfilter`) would drop host-to-host traffic on a bridge here, and the testbed does not touch it.
//!
//! The hosts also share this machine's file system, while a deploy gives every host the same `app-dir`.
//! So each host's engine and sshd run in a mount namespace of their own in which the host's own folder is
//! bound over [`Hosts::root`]: the same path holds different files on each host, as on real machines.
//! Whatever the engine mounts (container network namespaces, shm) stays in that namespace and goes with it.
//!
//! Everything is torn down in reverse order on drop, also when a test fails; [`leftovers`] lists what a
//! process that is gone left behind, so a test can prove nothing leaks.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    ensure_fast_user, images, require_program, run_checked, scrubbed_command, wait_for, Registry, Sshd, SshdOptions,
    FAST_USER,
};

/// What every testbed interface carries in its alias, with the owning process id after it.
const OWNER_ALIAS: &str = "gangplank-testbed pid=";
/// The prefix of every testbed folder; the owning process id follows it.
const DIR_PREFIX: &str = "gangplank-hosts-";

/// How many hosts, and how their logins look.
#[derive(Debug, Clone)]
pub struct HostsOptions {
    pub count: usize,
    /// The login user on every host; its `DOCKER_HOST` is that host's engine.
    pub user: String,
    /// More `SetEnv` for every session, e.g. a `DOCKER_CONFIG` holding the compose v2 plugin.
    pub set_env: Vec<(String, String)>,
    /// `Some((user, password))`: the registry on the bridge requires this login, as GHCR does.
    pub registry_auth: Option<(String, String)>,
}

impl HostsOptions {
    /// `count` hosts with the fast deploy user ([`FAST_USER`], in the docker group).
    pub fn new(count: usize) -> HostsOptions {
        HostsOptions { count, user: FAST_USER.to_string(), set_env: vec![], registry_auth: None }
    }
}

/// One namespaced host. Dropped with its [`Hosts`].
pub struct Host {
    /// `h1`, `h2`, …
    pub name: String,
    /// The host's address on the bridge, e.g. `10.201.37.2`.
    pub addr: String,
    /// The network namespace (`ip netns`), e.g. `gp-201-37-h1`.
    pub netns: String,
    /// The switch-side end of the host's veth pair, on the bridge; [`Hosts::cut`] takes it down.
    pub veth: String,
    /// `unix:///…/docker.sock`, this host's engine.
    pub docker_host: String,
    sshd: Option<Sshd>,
    dockerd: Option<Child>,
    /// `mnt:[…]` of the engine's mount namespace, to find its processes at teardown.
    mnt_ns: Option<String>,
    /// This host's folder: `srv/` (bound over [`Hosts::root`] on the host), `data/`, `exec/`, logs.
    dir: PathBuf,
}

impl Host {
    /// The host's sshd (keys, known_hosts line, log, faults).
    pub fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("a started host has an sshd")
    }

    /// `user@addr` (port 22).
    pub fn host_spec(&self) -> String {
        self.sshd().host_spec()
    }

    /// The command prefix that runs a program in this host's network namespace, as a process of the host
    /// (its loopback, its ports, its routes), e.g. a CI runner on the host; its files are the machine's.
    pub fn enter_net(&self) -> Vec<String> {
        vec!["nsenter".into(), format!("--net=/var/run/netns/{}", self.netns), "--".into()]
    }

    /// Forwards `127.0.0.1:<port>` on this host to `target` (`ip:port`, e.g. the registry on the bridge), so a
    /// program on the host reaches it at a loopback address, as Docker and gangplank reach a plain-HTTP registry.
    /// A small Python forwarder in the host's network namespace; it ends with the returned value, or at the
    /// latest with the host (every process in its namespace is stopped).
    pub fn forward_loopback(&self, port: u16, target: &str) -> Result<Forward> {
        require_program("python3", "python3")?;
        let (host, target_port) = target.rsplit_once(':').context("target is ip:port")?;
        let mut child = scrubbed_command("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(["--", "python3", "-c", FORWARDER, "127.0.0.1", &port.to_string(), host, target_port])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the loopback forwarder")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("the forwarder's stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the forwarder on {} to {target} did not start", self.name);
        }
        Ok(Forward(child))
    }

    /// `docker` talking to this host's engine.
    pub fn docker(&self) -> Command {
        let mut c = scrubbed_command("docker");
        c.arg("-H").arg(&self.docker_host);
        c
    }

    /// The file at `rel` under [`Hosts::root`] as this host sees it, read from the runner side.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join("srv").join(rel)
    }

    /// The engine's log so far (for failure messages).
    pub fn dockerd_log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        // sshd first: its sessions may be running docker commands against the engine.
        drop(self.sshd.take());
        if let Some(mut dockerd) = self.dockerd.take() {
            // Containers go first and at once: a daemon stopping them itself waits out their grace periods.
            if let Ok(ids) = run_checked(self.docker().args(["ps", "-aq"])) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let _ = self.docker().args(["rm", "-f", "-v"]).args(&ids).output();
                }
            }
            signal(&[dockerd.id()], "TERM");
            let stopped = wait_for("dockerd to stop", Duration::from_secs(15), || dockerd.try_wait().ok().flatten());
            if stopped.is_err() {
                let _ = dockerd.kill();
                let _ = dockerd.wait();
            }
        }
        // containerd and its shims re-parent away from dockerd; find them by namespace.
        let left = self.processes();
        if !left.is_empty() {
            signal(&left, "KILL");
            let _ = wait_for("the host's processes to end", Duration::from_secs(10), || {
                left.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists()).then_some(())
            });
        }
        // Mounts live in the host's own mount namespace, gone with its last process; anything of ours that
        // still shows here was propagated by mistake, and is taken off rather than left behind.
        for m in mounts_under(&self.dir.display().to_string()).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }

    /// Every process in this host's network namespace or its engine's mount namespace.
    fn processes(&self) -> Vec<u32> {
        let net = fs::metadata(format!("/var/run/netns/{}", self.netns)).ok().map(|m| format!("net:[{}]", m.ino()));
        let mut out = vec![];
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let ns = |kind: &str| fs::read_link(e.path().join("ns").join(kind)).ok().map(|p| p.display().to_string());
            if (net.is_some() && ns("net") == net) || (self.mnt_ns.is_some() && ns("mnt") == self.mnt_ns) {
                out.push(pid);
            }
        }
        out
    }
}

/// A running [`Host::forward_loopback`]; stopped on drop.
pub struct Forward(Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `python3 -c FORWARDER LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT`: prints `ready` once it listens, then copies
/// each connection both ways, passing a half close on.
const FORWARDER: &str = r#"
import asyncio, sys
lh, lp, th, tp = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
        if w.can_write_eof():
            w.write_eof()
    except Exception:
        pass
async def handle(r, w):
    try:
        tr, tw = await asyncio.open_connection(th, tp)
    except Exception:
        w.close()
        return
    await asyncio.gather(pipe(r, tw), pipe(tr, w))
    for x in (w, tw):
        x.close()
async def main():
    srv = await asyncio.start_server(handle, lh, lp)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"#;

/// N namespaced hosts, their bridge and the registry on it.
pub struct Hosts {
    pub hosts: Vec<Host>,
    /// Listens on [`Hosts::gateway`]; every engine counts it as an insecure (plain HTTP) registry.
    pub registry: Option<Registry>,
    /// The runner side's link to the switch, e.g. `gpb-201-37`.
    pub link: String,
    /// The switch namespace holding the bridge, e.g. `gp-201-37-sw`.
    pub switch: String,
    /// The runner side's address on the bridge, e.g. `10.201.37.1`.
    pub gateway: String,
    /// Time to bring the hosts up: namespaces, engines answering, sshds listening (not the registry).
    pub startup: Duration,
    dir: tempfile::TempDir,
}

impl Hosts {
    /// `count` hosts logging in [`FAST_USER`].
    pub fn start(count: usize) -> Result<Hosts> {
        Hosts::start_with(&HostsOptions::new(count))
    }

    pub fn start_with(opts: &HostsOptions) -> Result<Hosts> {
        require_program("ip", "iproute2")?;
        require_program("nsenter", "util-linux")?;
        require_program("unshare", "util-linux")?;
        require_program("dockerd", "docker.io")?;
        require_program("docker", "docker.io")?;
        require_program("/usr/sbin/sshd", "openssh-server")?;
        if opts.user == FAST_USER {
            ensure_fast_user()?;
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating the hosts' folder")?;
        // The login user traverses it to its host's files and the engine's socket.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).context("chmod hosts folder")?;
        fs::create_dir(dir.path().join("srv")).context("creating the hosts' shared root")?;
        let mut me = Hosts {
            hosts: vec![],
            registry: None,
            link: String::new(),
            switch: String::new(),
            gateway: String::new(),
            startup: Duration::ZERO,
            dir,
        };
        let t = Instant::now();
        let (a, b) = me.claim_subnet()?;
        me.gateway = format!("10.{a}.{b}.1");
        // The registry comes first: every engine is started knowing its address.
        let registry = match &opts.registry_auth {
            Some((user, pass)) => Registry::start_on_with_auth(&me.gateway, user, pass),
            None => Registry::start_on(&me.gateway),
        };
        me.registry = Some(registry.context("starting the registry on the bridge")?);
        let registry_addr = me.registry.as_ref().expect("just started").addr.clone();
        let registry_time = t.elapsed();

        for i in 1..=opts.count {
            me.add_host(a, b, i, &registry_addr, &opts.user).with_context(|| format!("bringing up host h{i}"))?;
        }
        for h in &mut me.hosts {
            let sock = h.docker_host.clone();
            let dockerd = h.dockerd.as_mut().expect("just started");
            let log = h.dir.join("dockerd.log");
            wait_for(&format!("dockerd of {} to answer", h.name), Duration::from_secs(60), || {
                if let Ok(Some(status)) = dockerd.try_wait() {
                    return Some(Err(status));
                }
                let ok = scrubbed_command("docker")
                    .args(["-H", &sock, "version", "--format", "{{.Server.Version}}"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                ok.then_some(Ok(()))
            })?
            .map_err(|status| {
                anyhow::anyhow!(
                    "dockerd of {} exited ({status}):\n{}",
                    h.name,
                    fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
            h.mnt_ns = fs::read_link(format!("/proc/{}/ns/mnt", dockerd.id())).ok().map(|p| p.display().to_string());
        }
        // sshd joins the engine's namespaces, which exist for sure once the engine answers.
        for i in 0..me.hosts.len() {
            let h = &me.hosts[i];
            let pid = h.dockerd.as_ref().expect("started").id();
            let mut set_env = vec![("DOCKER_HOST".to_string(), h.docker_host.clone())];
            set_env.extend(opts.set_env.iter().cloned());
            let sshd = Sshd::start_with(&SshdOptions {
                listen: h.addr.clone(),
                port: Some(22),
                enter: vec![
                    "nsenter".into(),
                    format!("--net=/var/run/netns/{}", h.netns),
                    format!("--mount=/proc/{pid}/ns/mnt"),
                ],
                user: opts.user.clone(),
                set_env,
                clients_of: me.hosts.first().and_then(|h| h.sshd.as_ref()),
            })
            .with_context(|| format!("starting sshd on {}", h.name))?;
            me.hosts[i].sshd = Some(sshd);
        }
        me.startup = t.elapsed().saturating_sub(registry_time);
        Ok(me)
    }

    /// Claims a free `10.A.B.0/24` by creating its switch namespace `gp-A-B-sw`: a namespace name is unique
    /// on the machine, so two test processes never get the same subnet, and every name after it is derived
    /// from it.
    fn claim_subnet(&mut self) -> Result<(u8, u8)> {
        let pid = std::process::id();
        // Second octet 128–254 from the process id, third walked from there: far from the 10.0.x and
        // 10.1.x ranges that networks usually take.
        let a = 128 + (pid % 127) as u8;
        let start = (pid / 127) as usize;
        for k in 0..256 {
            let b = ((start + k) % 256) as u8;
            if !subnet_free(a, b) {
                continue;
            }
            let switch = format!("gp-{a}-{b}-sw");
            let made = Command::new("ip").args(["netns", "add", &switch]).output().context("running ip")?;
            if !made.status.success() {
                let err = String::from_utf8_lossy(&made.stderr);
                if err.contains("File exists") {
                    continue;
                }
                bail!("`ip netns add {switch}` failed (the testbed needs root): {}", err.trim());
            }
            self.switch = switch.clone();
            let link = format!("gpb-{a}-{b}");
            ip(&["link", "add", &link, "type", "veth", "peer", "name", "uplink", "netns", &switch])?;
            self.link = link.clone();
            ip(&["link", "set", "dev", &link, "alias", &format!("{OWNER_ALIAS}{pid}")])?;
            ip(&["addr", "add", &format!("10.{a}.{b}.1/24"), "dev", &link])?;
            ip(&["link", "set", &link, "up"])?;
            ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &switch, "link", "set", "uplink", "master", "br0", "up"])?;
            ip(&["-n", &switch, "link", "set", "br0", "up"])?;
            return Ok((a, b));
        }
        bail!("no free 10.{a}.x.0/24 subnet for the hosts' bridge")
    }

    fn add_host(&mut self, a: u8, b: u8, i: usize, registry: &str, user: &str) -> Result<()> {
        let name = format!("h{i}");
        let netns = format!("gp-{a}-{b}-{name}");
        let veth = format!("h{i}");
        let dir = self.dir.path().join(&name);
        let sock = dir.join("docker.sock");
        ip(&["netns", "add", &netns])?;
        self.hosts.push(Host {
            name: name.clone(),
            addr: format!("10.{a}.{b}.{}", i + 1),
            netns: netns.clone(),
            veth: veth.clone(),
            docker_host: format!("unix://{}", sock.display()),
            sshd: None,
            dockerd: None,
            mnt_ns: None,
            dir: dir.clone(),
        });
        let addr = self.hosts.last().expect("just pushed").addr.clone();
        // Made in the switch namespace with its peer straight in the host's: no name in the machine's
        // namespace to collide with another process's.
        ip(&["-n", &self.switch, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        ip(&["-n", &self.switch, "link", "set", &veth, "master", "br0", "up"])?;
        ip(&["-n", &netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;

        for sub in ["srv", "data", "exec"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {name}/{sub}"))?;
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).context("chmod host folder")?;
        // The deploy user owns the host's root, as it would own /srv or /opt/<app> on a server.
        run_checked(Command::new("chown").arg(format!("{user}:")).arg(dir.join("srv")))?;
        let config = dir.join("daemon.json");
        // An empty configuration keeps the machine's /etc/docker/daemon.json (data root, driver) out.
        fs::write(&config, "{}\n").context("writing daemon.json")?;
        let log = fs::File::create(dir.join("dockerd.log")).context("creating dockerd.log")?;
        // `nsenter`, not `ip netns exec`, which remounts /sys and leaves dockerd without its cgroups. The
        // shell binds the host's folder over the shared root inside the new mount namespace, then becomes
        // dockerd, so the child's pid is the engine's.
        let child = scrubbed_command("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(dir.join("srv"))
            .arg(self.root())
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--storage-driver", "vfs", "--insecure-registry", registry])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning log handle")?)
            .stderr(log)
            .spawn()
            .context("spawning dockerd")?;
        self.hosts.last_mut().expect("just pushed").dockerd = Some(child);
        Ok(())
    }

    /// The folder whose contents differ per host: the same path on every host, each host's own files
    /// (empty on the runner side). Put `app-dir` under it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    pub fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("a started testbed has a registry")
    }

    /// Every host's `user@addr`, one per line, as the `host` input takes them.
    pub fn host_input(&self) -> String {
        self.hosts.iter().map(Host::host_spec).collect::<Vec<_>>().join("\n")
    }

    /// Every host's known_hosts line.
    pub fn known_hosts(&self) -> String {
        self.hosts.iter().map(|h| h.sshd().known_hosts.clone()).collect::<Vec<_>>().join("\n")
    }

    /// The client key every host accepts.
    pub fn client_key(&self) -> &str {
        &self.hosts[0].sshd().client_key
    }

    /// Pushes the sample images as `REGISTRY/name:{v1,v2,broken}` and returns `REGISTRY/name`. They go
    /// through the first host's engine (the machine's engine would refuse a plain-HTTP registry outside
    /// 127.0.0.0/8) and leave it again, so every host pulls them from the registry.
    pub fn push_samples(&self, name: &str) -> Result<String> {
        let samples = images::samples()?;
        let repo = self.registry().image(name);
        let h = &self.hosts[0];
        let mut save = scrubbed_command("docker")
            .args(["save", &samples.v1, &samples.v2, &samples.broken])
            .stdout(Stdio::piped())
            .spawn()
            .context("docker save")?;
        let stdout = save.stdout.take().context("docker save's stdout")?;
        let load = h.docker().args(["load", "-q"]).stdin(stdout).output().context("docker load")?;
        let saved = save.wait()?;
        if !saved.success() || !load.status.success() {
            bail!("loading the samples into {}: {}", h.name, String::from_utf8_lossy(&load.stderr));
        }
        for (tag, src) in [("v1", &samples.v1), ("v2", &samples.v2), ("broken", &samples.broken)] {
            let dst = format!("{repo}:{tag}");
            run_checked(h.docker().args(["tag", src, &dst]))?;
            run_checked(h.docker().args(["push", "-q", &dst])).with_context(|| format!("pushing {dst}"))?;
            run_checked(h.docker().args(["rmi", &dst, src]))?;
        }
        Ok(repo)
    }

    /// Cuts `host` off: its veth goes down, so packets to and from it are dropped without a reset, as when
    /// a link or a machine in between fails.
    pub fn cut(&self, host: usize) -> Result<()> {
        ip(&["-n", &self.switch, "link", "set", &self.hosts[host].veth, "down"])
    }

    /// Puts the link of `host` back.
    pub fn heal(&self, host: usize) -> Result<()> {
        ip(&["-n", &self.switch, "link", "set", &self.hosts[host].veth, "up"])
    }

    /// The names, processes and paths this testbed holds, to check after drop that none is left.
    pub fn footprint(&self) -> Footprint {
        let mut pids = vec![];
        for h in &self.hosts {
            pids.extend(h.processes());
            pids.extend(h.sshd.as_ref().map(|s| s.pid()));
        }
        Footprint {
            links: vec![self.link.clone()],
            netns: std::iter::once(self.switch.clone()).chain(self.hosts.iter().map(|h| h.netns.clone())).collect(),
            pids,
            dir: self.dir.path().to_path_buf(),
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        while let Some(mut h) = self.hosts.pop() {
            h.stop();
        }
        drop(self.registry.take());
        // The bridge and the runner side's link go with the switch namespace; the link is deleted as well
        // in case its peer never moved in.
        if !self.switch.is_empty() {
            let _ = Command::new("ip").args(["netns", "del", &self.switch]).output();
        }
        if !self.link.is_empty() && link_exists(&self.link) {
            let _ = Command::new("ip").args(["link", "del", &self.link]).output();
        }
    }
}

/// What one [`Hosts`] held: see [`Hosts::footprint`].
#[derive(Debug, Clone)]
pub struct Footprint {
    pub links: Vec<String>,
    pub netns: Vec<String>,
    pub pids: Vec<u32>,
    pub dir: PathBuf,
}

impl Footprint {
    /// What of it still exists.
    pub fn remaining(&self) -> Vec<String> {
        let mut out = vec![];
        out.extend(self.links.iter().filter(|l| link_exists(l)).map(|l| format!("link {l}")));
        let namespaces = netns_list();
        out.extend(self.netns.iter().filter(|n| namespaces.contains(n)).map(|n| format!("netns {n}")));
        out.extend(
            self.pids.iter().filter(|p| Path::new(&format!("/proc/{p}")).exists()).map(|p| format!("process {p}")),
        );
        let dir = self.dir.display().to_string();
        out.extend(mounts_under(&dir).into_iter().map(|m| format!("mount {m}")));
        for n in &self.netns {
            out.extend(mounts_under(&format!("/run/netns/{n}")).into_iter().map(|m| format!("mount {m}")));
        }
        if self.dir.exists() {
            out.push(format!("folder {dir}"));
        }
        out
    }
}

/// Testbed hosts' parts whose owning process is gone: runner-side links (owner in their alias), network
/// namespaces named after a subnet no live testbed's link holds, processes and mounts under a folder of a
/// process that is gone. Empty after a test suite that cleaned up.
pub fn leftovers() -> Vec<String> {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let mut out = vec![];
    let mut live_bridges = vec![];
    let links = Command::new("ip").args(["-o", "link", "show"]).output().map(|o| o.stdout).unwrap_or_default();
    for line in String::from_utf8_lossy(&links).lines() {
        // `N: name[@peer]: <…> … alias gangplank-testbed pid=P`
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else { continue };
        if !name.starts_with("gpb-") {
            continue;
        }
        let owner = line.split(OWNER_ALIAS).nth(1).and_then(|p| p.split_whitespace().next()?.parse::<u32>().ok());
        match owner {
            Some(pid) if alive(pid) => {
                if let Some(subnet) = name.strip_prefix("gpb-") {
                    live_bridges.push(subnet.to_string());
                }
            }
            _ => out.push(format!("link {name}")),
        }
    }
    for ns in netns_list() {
        let Some(rest) = ns.strip_prefix("gp-") else { continue };
        // `gp-A-B-hN` and `gp-A-B-sw`: owned while the link `gpb-A-B` is.
        let subnet = rest.rsplit_once('-').map(|(s, _)| s).unwrap_or(rest);
        if !live_bridges.iter().any(|b| b == subnet) {
            out.push(format!("netns {ns}"));
        }
    }
    let dead_dir = |text: &str| {
        text.split(DIR_PREFIX)
            .skip(1)
            .any(|rest| rest.split('-').next().and_then(|p| p.parse::<u32>().ok()).is_some_and(|pid| !alive(pid)))
    };
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if dead_dir(&cmdline) {
            out.push(format!("process {pid}: {}", cmdline.trim()));
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let point = line.split_whitespace().nth(4).unwrap_or_default();
        let orphan_ns = point.strip_prefix("/run/netns/gp-").is_some_and(|rest| {
            let subnet = rest.rsplit_once('-').map(|(s, _)| s).unwrap_or(rest);
            !live_bridges.iter().any(|b| b == subnet)
        });
        if dead_dir(point) || orphan_ns {
            out.push(format!("mount {point}"));
        }
    }
    out
}

/// Whether nothing on this machine routes `10.a.b.0/24` yet: `ip route get` of its first address answers
/// through the default gateway (` via `), or not at all.
fn subnet_free(a: u8, b: u8) -> bool {
    let out = Command::new("ip").args(["-4", "route", "get", &format!("10.{a}.{b}.1")]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).contains(" via "),
        _ => true,
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run_checked(Command::new("ip").args(args)).map(|_| ())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
}

/// Mount points at or under `prefix` in this process's mount namespace, in mount order.
fn mounts_under(prefix: &str) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(String::from)
        .collect()
}

/// `kill -SIG pid…` (the workspace denies `unsafe`, so no libc here).
fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = scrubbed_command("kill").arg(format!("-{sig}")).args(pids.iter().map(u32::to_string)).status();
}
