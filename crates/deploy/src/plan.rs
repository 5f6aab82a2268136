//! Plans: every step a run takes on a host, computed as data before it runs, walked by the one
//! executor in [`crate::engine`], and printed — with the exact commands — by `preflight-only`.
//!
//! A deploy, a rollback, the undo of a host when a later host failed, the revert after a failed gate,
//! an interrupt or a lost connection, and the repair of a host a killed run left mid-deploy are all
//! plans made of the same [`Step`]s.

use std::fmt;

use gangplank_core::cmd::Cmd;
use gangplank_core::compose::{self, Flavor, Project};
use gangplank_core::host::lock::{self, Owner};

use crate::files;
use crate::state::Pending;

/// One compose release on a host: the files compose reads and the tag it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub tag: String,
    pub compose_files: Vec<String>,
}

/// One step on one host. Each carries what it needs; the executor adds only what the host answered
/// (state.json read under the lock, the containers the gate saw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Print the lock's owner, then break it (`force-unlock`).
    ForceUnlock,
    /// Take the lock (waiting up to `lock-timeout`) and read state.json under it; a journal left by
    /// an interrupted run is repaired first. `create: false` leaves a never-deployed host untouched.
    Lock { owner: Owner, create: bool },
    /// Make `.gangplank/staging/<stamp>/` and upload every file there; no live file changes.
    Stage { stamp: String, files: Vec<String> },
    /// `docker login` to the registry into a temporary Docker config in the app dir (crate::registry),
    /// the password on stdin only; the pulls and `up` of this run use it, and it goes with the lock.
    Login { login: crate::registry::Login },
    /// Before the switch: pull each image its `pull_policy` asks for (never one that exists only on the
    /// host) and read the repository digests, in one round trip; refuse an image whose digest is not the
    /// expected one. A failure here changes nothing live.
    PullImages { tag: String, pulls: Vec<crate::registry::Pull>, expect: Vec<crate::registry::Expect> },
    /// Write the journal into state.json, back up what will be replaced, move the staged files in.
    Switch { pending: Pending },
    /// `compose pull` of `services`, the deployed images whose reference uses a variable the runner has no
    /// value for (the host's `.env` sets it), after the switch; with `expect` (`expect-digests` keys no image pulled before the
    /// switch matched), the images compose resolved are then checked like [`Step::PullImages`] checks its
    /// own (a mismatch puts the files back, restarting nothing). `must_match`: no key matched before the
    /// switch, so one must match here.
    Pull {
        release: Release,
        services: Vec<String>,
        expect: std::collections::BTreeMap<String, String>,
        must_match: bool,
    },
    /// `compose up -d --remove-orphans` with `IMAGE_TAG`.
    Up { release: Release, services: Vec<String> },
    /// `strategy: rolling` (crate::rolling): start new containers of `services` beside the old ones,
    /// hidden from the service's DNS name; gate them; make them reachable; stop and remove the old ones.
    Roll { release: Release, services: Vec<String> },
    /// Remove the containers a rolling deploy started while the old ones were untouched.
    Unroll { containers: Vec<String> },
    /// Wait for every container to run (and be healthy) and for `health-url` to answer 2xx.
    Gate { tag: String },
    /// A user's `pre-deploy`/`post-deploy` script (crate::hooks), run in the project directory with
    /// `IMAGE_TAG` = `release.tag` and `PREVIOUS_TAG` = `previous`, stopped on the host after `timeout`.
    Hook {
        phase: crate::hooks::Phase,
        script: String,
        release: Release,
        previous: String,
        timeout: std::time::Duration,
    },
    /// Record `release` as current in state.json (journal cleared), append the audit line, prune
    /// backups, release the lock: one rename, one round trip.
    Commit {
        release: Release,
        action: String,
        result: String,
        previous: String,
        prune_files: Vec<String>,
        /// Image repositories whose tags are listed for [`Step::PruneImages`].
        repos: Vec<String>,
    },
    /// Remove image tags of this app beyond `keep` (never the current or previous one).
    PruneImages { keep: usize },
    /// Print the logs of the containers that failed the gate (fenced: they are untrusted).
    ShowLogs,
    /// Put the files of a switch back from their backups; files that were new go.
    Restore { stamp: String, files: Vec<String> },
    /// `compose down` of a release that had nothing before it (a first deploy that failed).
    Down { release: Release },
    /// Record a deploy that did not become current (state.json journal cleared, history, audit line);
    /// release the lock when `unlock`.
    /// `rolled_back_to`: the revert started that tag again (a second audit line, for the rollback).
    Record { tag: String, previous: String, result: String, rolled_back_to: Option<String>, unlock: bool },
    /// Release the lock.
    Unlock,
}

/// What every step of a run on one host reads that is not host state: the run's settings.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub app: String,
    pub app_dir: String,
    pub flavor: Flavor,
    pub services: Vec<String>,
    pub health_url: Option<String>,
    pub health_timeout: std::time::Duration,
    pub lock_timeout: std::time::Duration,
    pub meta: crate::state::RunMeta,
    /// The files a deploy uploads (empty for a rollback).
    pub uploads: Vec<files::Upload>,
    /// `DOCKER_CONFIG` of the commands that may pull, while this run's registry login exists on the
    /// host (set by [`Step::Login`], cleared when the lock goes).
    pub docker_config: Option<String>,
}

impl Ctx {
    pub fn project(&self, release: &Release) -> Project {
        Project {
            flavor: self.flavor,
            name: self.app.clone(),
            dir: self.app_dir.clone(),
            files: release.compose_files.clone(),
            docker_config: self.docker_config.clone(),
        }
    }
}

/// How long a pull and `up` may take before the host counts as gone.
pub const PULL_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Step {
    /// The commands this step runs first, in order, as the executor runs them (the gate repeats its
    /// poll; `ShowLogs` depends on what failed). `state_json` is the state.json text the step writes,
    /// when it writes one.
    pub fn commands(&self, ctx: &Ctx, state_json: &str, audit_line: &str, lock_id: &str) -> Vec<Cmd> {
        let dir = &ctx.app_dir;
        match self {
            Step::Stage { stamp, files } => {
                let mut v = vec![files::stage_cmd(dir, stamp, files)];
                for u in ctx.uploads.iter().filter(|u| files.contains(&u.remote)) {
                    v.push(gangplank_core::exec::atomic_write(
                        &files::staged_path(dir, stamp, &u.remote),
                        &u.content,
                        u.mode,
                    ));
                }
                v
            }
            Step::Gate { .. } => vec![match ctx.health_url.as_deref().filter(|u| crate::health::is_host_local(u)) {
                Some(url) => crate::health::poll_cmd(&ctx.app, url),
                None => compose::inspect_project(&ctx.app).timeout(crate::health::POLL_TIMEOUT),
            }],
            Step::ForceUnlock => vec![lock::break_cmd(dir)],
            Step::Lock { owner, create } => {
                let json = serde_json::to_string(owner).expect("owner serialises");
                vec![if *create { lock::acquire_cmd(dir, &json) } else { lock::acquire_existing_cmd(dir, &json) }]
            }
            Step::Switch { pending } => vec![files::switch_cmd(dir, &pending.stamp, state_json, &pending.files)],
            Step::Login { login } => vec![crate::registry::login_cmd(dir, login)],
            Step::PullImages { pulls, .. } => vec![crate::registry::pull_cmd(ctx.docker_config.as_deref(), pulls)],
            Step::Pull { release, services, .. } => {
                vec![ctx.project(release).pull(&release.tag, services).timeout(PULL_UP_TIMEOUT)]
            }
            Step::Up { release, services } => {
                vec![ctx.project(release).up(&release.tag, services).timeout(PULL_UP_TIMEOUT)]
            }
            Step::Roll { release, services } => {
                vec![crate::rolling::start_cmd(&ctx.project(release), &release.tag, services)]
            }
            Step::Unroll { containers } => vec![crate::rolling::remove_cmd(containers)],
            Step::Hook { phase, script, release, previous, timeout } => {
                vec![crate::hooks::cmd(ctx, *phase, script, release, previous, *timeout)]
            }
            Step::ShowLogs | Step::PruneImages { .. } => vec![],
            Step::Commit { prune_files, repos, .. } => {
                vec![files::finish_cmd(dir, state_json, audit_line, crate::KEEP_BACKUPS, lock_id, repos, prune_files)]
            }
            Step::Restore { stamp, files } => vec![files::restore_cmd(dir, stamp, files)],
            Step::Down { release } => vec![ctx.project(release).down(&release.tag).timeout(PULL_UP_TIMEOUT)],
            Step::Record { unlock, .. } => vec![files::finish_cmd(
                dir,
                state_json,
                audit_line,
                crate::KEEP_BACKUPS,
                if *unlock { lock_id } else { "" },
                &[],
                &[],
            )],
            Step::Unlock => vec![lock::release_cmd(dir, lock_id)],
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::ForceUnlock => write!(f, "force-unlock: print the lock's owner, then break it"),
            Step::Lock { create, .. } => write!(
                f,
                "take the lock .gangplank/lock (mkdir), waiting up to lock-timeout; read state.json; repair a deploy a killed run left{}",
                if *create { "" } else { " (a never-deployed host is left as it is)" }
            ),
            Step::Stage { files, .. } => write!(f, "upload to .gangplank/staging (nothing live changes): {}", files.join(", ")),
            Step::Switch { pending } => write!(
                f,
                "switch: journal in state.json, back up replaced files, move the staged files in ({})",
                pending.files.join(", ")
            ),
            Step::Login { login } => write!(
                f,
                "docker login {} as {} into .gangplank/docker-auth (password on stdin; removed with the lock)",
                login.registry, login.username
            ),
            Step::PullImages { pulls, expect, .. } => {
                let each: Vec<String> =
                    pulls.iter().map(|p| format!("{} ({})", p.reference, p.policy.describe())).collect();
                write!(
                    f,
                    "docker pull before the switch, never an image only on the host (a failed pull changes nothing): {}",
                    each.join(", ")
                )?;
                if !expect.is_empty() {
                    let names: Vec<String> = expect.iter().map(|e| format!("{} = {}", e.service, e.digest)).collect();
                    write!(f, "; refuse unless the digests are {}", names.join(", "))?;
                }
                Ok(())
            }
            Step::Pull { release, expect, services, .. } => write!(
                f,
                "compose pull {} with IMAGE_TAG={} (their image names use variables only the host has){}",
                services.join(" "),
                release.tag,
                if expect.is_empty() { "" } else { "; then compose config and docker image inspect: refuse unless the digests are the expected ones" }
            ),
            Step::Up { release, .. } => write!(f, "compose up -d --remove-orphans with IMAGE_TAG={}", release.tag),
            Step::Roll { release, services } => write!(
                f,
                "rolling start of {} with IMAGE_TAG={}: new containers beside the old ones, hidden from the service name until healthy (HEALTHCHECK), then reachable; the old ones stop (stop_grace_period) and go",
                services.join(", "),
                release.tag
            ),
            Step::Unroll { containers } => {
                write!(f, "remove the {} new container(s); the old ones never stopped", containers.len())
            }
            Step::Gate { tag } => {
                write!(f, "health gate of {tag}: containers running/healthy (docker inspect), health-url 2xx")
            }
            Step::Hook { phase, script, release, timeout, .. } => write!(
                f,
                "{phase} hook (sh -e in the project directory, IMAGE_TAG={}, within {}; {}): {}",
                release.tag,
                crate::hooks::human(*timeout),
                match phase {
                    crate::hooks::Phase::Pre => "a failure puts the files back, nothing was restarted",
                    crate::hooks::Phase::Post => "a failure counts as a failed gate",
                },
                // One line, as `preflight-only` prints commands: no script line can start a log line.
                gangplank_core::quote(script).replace('\n', "⏎")
            ),
            Step::Commit { release, result, .. } => write!(
                f,
                "commit: state.json current = {} ({result}), audit line, keep {} backups per file, release the lock",
                release.tag,
                crate::KEEP_BACKUPS
            ),
            Step::PruneImages { keep } => write!(f, "prune: keep {keep} image tags of this app (never current or previous)"),
            Step::ShowLogs => write!(f, "print the last 100 log lines and the health log of each failing container"),
            Step::Restore { files, .. } => write!(f, "put the replaced files back from their backups: {}", files.join(", ")),
            Step::Down { release } => write!(f, "compose down (no volumes) of {}: there is no previous release", release.tag),
            Step::Record { tag, result, unlock, .. } => write!(
                f,
                "record {tag} as {result} (journal cleared, audit line){}",
                if *unlock { ", release the lock" } else { "" }
            ),
            Step::Unlock => write!(f, "release the lock"),
        }
    }
}

/// The plan of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub host: String,
    pub steps: Vec<Step>,
    /// Taken when the gate fails (with `auto-rollback`), shown for the record; an interrupt, a lost
    /// connection, a failed pull or `up` take the same revert with fewer steps ([`revert`]).
    pub on_failure: Vec<Step>,
}

/// Put a host back after a switch: the files, then the previous release (or down on a first deploy).
/// `upped`: containers may have changed; `gate`: wait for the previous release to be healthy;
/// `unlock`: release the lock at the end (a repair keeps it for the run that found it).
pub fn revert(p: &Pending, result: &str, upped: bool, gate: bool, logs: bool, unlock: bool) -> Vec<Step> {
    let mut v = vec![];
    if logs {
        v.push(Step::ShowLogs);
    }
    let restore = Step::Restore { stamp: p.stamp.clone(), files: p.files.clone() };
    match &p.previous_tag {
        Some(prev) => {
            v.push(restore);
            if upped {
                let release = Release { tag: prev.clone(), compose_files: p.previous_compose_files.clone() };
                v.push(Step::Up { release, services: p.services.clone() });
                if gate {
                    v.push(Step::Gate { tag: prev.clone() });
                }
            }
        }
        None => {
            if upped {
                v.push(Step::Down { release: Release { tag: p.tag.clone(), compose_files: p.compose_files.clone() } });
            }
            v.push(restore);
        }
    }
    v.push(Step::Record {
        tag: p.tag.clone(),
        previous: p.previous_tag.clone().unwrap_or_default(),
        result: result.into(),
        rolled_back_to: p.previous_tag.clone().filter(|_| upped),
        unlock,
    });
    v
}

/// The whole run, for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub title: String,
    pub hosts: Vec<HostPlan>,
    /// How many hosts deploy at once (`max-parallel`), after every host is locked.
    pub batch: usize,
    /// `hooks-on: first` with a hook: the first host deploys alone, before the others.
    pub first_alone: bool,
}

impl Plan {
    pub fn render(&self) -> String {
        let names: Vec<&str> = self.hosts.iter().map(|h| h.host.as_str()).collect();
        let batch = self.batch.clamp(1, names.len().max(1));
        let how = match (batch, self.first_alone && names.len() > 1) {
            (1, _) => "one at a time".to_string(),
            (n, false) => format!("{n} at a time, every host locked first"),
            (n, true) => format!("the first alone (hooks-on: first), then {n} at a time, every host locked first"),
        };
        let mut s = format!(
            "plan: {}\nhosts, {how}: {}\n  1. connect over SSH, host key verified; preflight (every host, before anything changes)\n",
            self.title,
            names.join(", ")
        );
        if let Some(h) = self.hosts.first() {
            for (i, step) in h.steps.iter().enumerate() {
                s.push_str(&format!("  {}. {step}\n", i + 2));
            }
            if !h.on_failure.is_empty() {
                s.push_str("on a failed gate:\n");
                for step in &h.on_failure {
                    s.push_str(&format!("  - {step}\n"));
                }
            }
            s.push_str("on an interrupt, a lost connection or a failed up: the same, without logs or gate; a failed pull or a digest that differs before the switch: nothing to put back, the lock is released\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_plan_says_how_many_hosts_deploy_at_once() {
        let host = |h: &str| HostPlan { host: h.into(), steps: vec![], on_failure: vec![] };
        let plan = |n: usize, batch: usize, first_alone: bool| Plan {
            title: "t".into(),
            hosts: (1..=n).map(|i| host(&format!("h{i}"))).collect(),
            batch,
            first_alone,
        };
        let line = |p: Plan| p.render().lines().nth(1).unwrap().to_string();
        assert_eq!(line(plan(3, 1, false)), "hosts, one at a time: h1, h2, h3");
        assert_eq!(line(plan(3, 2, false)), "hosts, 2 at a time, every host locked first: h1, h2, h3");
        assert_eq!(line(plan(2, 5, false)), "hosts, 2 at a time, every host locked first: h1, h2");
        assert_eq!(
            line(plan(3, 3, true)),
            "hosts, the first alone (hooks-on: first), then 3 at a time, every host locked first: h1, h2, h3"
        );
        assert_eq!(line(plan(1, 4, true)), "hosts, one at a time: h1");
    }
}
