//! The one executor of plans: it walks a host's steps, and on the first failure walks the revert the
//! failure calls for. Deploys, rollbacks, undoing a host when a later host failed, reverting after an
//! interrupt or a lost connection, and repairing a host a killed run left mid-deploy all go through
//! [`Host::run`].
//!
//! Invariant: the host's files are switched only after every upload is staged and a journal is in
//! state.json; until the run records its outcome (one rename of state.json), the journal says exactly
//! what to put back, to this run's revert or to the next run that takes the lock.

use std::time::{Duration, Instant};

use gangplank_core::actions::{info, warning};
use gangplank_core::compose::Container;
use gangplank_core::error::{Class, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::host::lock;
use gangplank_core::input::HostSpec;

use crate::health::{self, GateFailure};
use crate::plan::{revert, Ctx, Release, Step};
use crate::state::{self, Current, Pending, State};
use crate::Connect;

/// How long putting a host back may take after SIGINT/SIGTERM: GitHub sends SIGTERM 7.5 s after
/// SIGINT and SIGKILL 2.5 s later.
pub const HURRY: Duration = Duration::from_secs(6);

/// Why a step failed.
#[derive(Debug)]
pub enum Fail {
    /// The gate did not pass; the containers to show logs of.
    Gate(GateFailure),
    /// A pull failed: nothing was restarted.
    Pull(Error),
    /// `compose up` failed.
    Up(Error),
    /// A deploy hook failed or outlived `hook-timeout` (crate::hooks); `post-deploy` counts as a failed gate.
    Hook(crate::hooks::Phase, Error),
    /// Anything else; its class tells an interrupt or a lost connection.
    Other(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Other(e)
    }
}

impl Fail {
    pub fn message(&self) -> String {
        match self {
            Fail::Gate(g) => format!("health gate: {}", g.reason),
            Fail::Pull(e) | Fail::Up(e) | Fail::Hook(_, e) | Fail::Other(e) => e.message.clone(),
        }
    }
}

/// One host during a run: its connection, the run's settings, and what the host answered.
pub struct Host {
    pub spec: HostSpec,
    pub ex: Box<dyn Executor>,
    pub ctx: Ctx,
    /// state.json as read under the lock (or at preflight), kept up to date by the steps that write it.
    pub st: State,
    /// The lock id while this run holds the lock.
    pub lease: Option<String>,
    /// The lock step found a host that was never deployed to (and created nothing).
    pub absent: bool,
    /// The files were switched: the host differs from its last recorded release until the outcome is.
    pub switched: bool,
    /// `compose up` ran (or may have): containers may differ from the last recorded release.
    pub upped: bool,
    /// Steps taken to put the host back must be quick (a signal arrived).
    pub hurry: bool,
    /// New containers a rolling deploy started while every old one still runs untouched
    /// (crate::rolling): what its revert removes.
    pub rolled: Vec<String>,
    pub containers: Vec<Container>,
    pub tags_seen: Vec<(String, String)>,
    pub gate_failure: Option<GateFailure>,
    /// A step of the revert under way failed.
    pub revert_failed: bool,
    /// What [`Step::PullImages`] pulled: image reference → its repository digests on the host.
    pub pulled: std::collections::BTreeMap<String, Vec<String>>,
}

impl Host {
    pub fn new(spec: HostSpec, ex: Box<dyn Executor>, ctx: Ctx, st: State) -> Host {
        Host {
            spec,
            ex,
            ctx,
            st,
            lease: None,
            absent: false,
            switched: false,
            upped: false,
            hurry: false,
            rolled: vec![],
            containers: vec![],
            tags_seen: vec![],
            gate_failure: None,
            revert_failed: false,
            pulled: Default::default(),
        }
    }

    pub fn label(&self) -> String {
        self.spec.to_string()
    }

    fn audit_line(&self, action: &str, tag: &str, previous: &str, result: &str) -> String {
        state::AuditLine {
            time: state::now_rfc3339(),
            action,
            tag,
            previous_tag: previous,
            result,
            host: &self.label(),
            run_url: &self.ctx.meta.run_url,
            actor: &self.ctx.meta.actor,
        }
        .to_line()
    }

    /// The state.json text `step` writes, from the state this run holds.
    fn next_state(&self, step: &Step) -> State {
        let mut st = self.st.clone();
        match step {
            Step::Switch { pending } => st.pending = Some(pending.clone()),
            Step::Commit { release, action, .. } => {
                st.pending = None;
                let cur = Current {
                    tag: release.tag.clone(),
                    digests: digests(&self.containers),
                    images: repo_digests(&self.containers, &self.pulled),
                    deployed_at: state::now_rfc3339(),
                    git_sha: self.ctx.meta.git_sha.clone(),
                    run_url: self.ctx.meta.run_url.clone(),
                    compose_files: release.compose_files.clone(),
                };
                st.promote(cur, if action == "deploy" { "replaced" } else { "rolled-back" });
            }
            Step::Record { tag, previous, result, .. } => {
                st.pending = None;
                // A first deploy that is undone leaves nothing current.
                if previous.is_empty() && st.current_tag() == Some(tag.as_str()) {
                    st.current = None;
                }
                st.record_failure(tag, &state::now_rfc3339(), result);
            }
            _ => {}
        }
        st
    }

    /// The commands `step` runs, with the data this run holds (what `preflight-only` prints).
    pub fn commands(&self, step: &Step) -> Vec<gangplank_core::Cmd> {
        self.commands_writing(step, &self.next_state(step))
    }

    /// [`Host::commands`] for a step that writes `st` as state.json.
    fn commands_writing(&self, step: &Step, st: &State) -> Vec<gangplank_core::Cmd> {
        let line = match step {
            Step::Commit { release, action, result, previous, .. } => {
                self.audit_line(action, &release.tag, previous, result)
            }
            Step::Record { tag, previous, result, rolled_back_to, .. } => {
                let mut l = self.audit_line("deploy", tag, previous, result);
                if let Some(back) = rolled_back_to {
                    let how = if self.revert_failed { "rollback-failed" } else { "rolled-back" };
                    l.push('\n');
                    l.push_str(&self.audit_line("rollback", back, tag, how));
                }
                l
            }
            _ => String::new(),
        };
        let lock_id = self.lease.clone().unwrap_or_default();
        step.commands(&self.ctx, &st.to_json(), &line, &lock_id)
    }

    /// Run one step.
    pub fn step(&mut self, step: &Step) -> std::result::Result<(), Fail> {
        let label = self.label();
        let dir = self.ctx.app_dir.clone();
        match step {
            Step::ForceUnlock => match lock::force_unlock(self.ex.as_mut(), &dir)? {
                Some(who) => warning("force-unlock", format!("broke the lock on {label} held by {who}")),
                None => info(format!("force-unlock: no lock on {label}")),
            },
            Step::Lock { owner, create } => {
                let got = lock::acquire_with(
                    self.ex.as_mut(),
                    &dir,
                    owner,
                    self.ctx.lock_timeout,
                    &crate::interrupted,
                    *create,
                )?;
                let Some(text) = got else {
                    self.absent = true;
                    return Ok(());
                };
                self.lease = Some(owner.id.clone());
                self.st = parse_state(&text, &label, &dir, &self.ctx.app)?;
                if let Some(p) = self.st.pending.clone() {
                    self.repair(&p)?;
                }
            }
            Step::Stage { files, .. } => {
                let cmds = self.commands(step);
                let (first, writes) = cmds.split_first().expect("stage has its folder command");
                self.ex.check(first, "preparing the staging folder")?;
                // `commands` gives one atomic write per staged upload, in the order of `ctx.uploads`.
                let staged = self.ctx.uploads.iter().filter(|u| files.contains(&u.remote));
                for (cmd, u) in writes.iter().zip(staged) {
                    let out = self.ex.exec(cmd, Some(&u.content))?;
                    if !out.success() {
                        return Err(Error::failed(format!(
                            "uploading {} to {label} failed: {}",
                            u.remote,
                            out.tail(3)
                        ))
                        .hint("check free space and permissions in the app dir; nothing live was changed")
                        .into());
                    }
                }
            }
            Step::Switch { pending } => {
                let cmd = self.commands(step).remove(0);
                // From here on the host may differ from its last release, whatever the answer says.
                self.switched = true;
                crate::host_changing();
                let out = self.ex.check(&cmd, "switching to the new files")?;
                for l in out.stdout_str().lines() {
                    info(l);
                }
                self.st.pending = Some(pending.clone());
            }
            Step::Login { login } => {
                let cmd = self.commands(step).remove(0);
                let out = self.ex.run(&cmd)?;
                if !out.success() {
                    return Err(Fail::Other(crate::registry::login_error(login, &label, &out.tail(3))));
                }
                info(format!(
                    "logged in to {} on {label} as {} (temporary Docker config {})",
                    login.registry,
                    login.username,
                    crate::registry::AUTH_DIR
                ));
                self.ctx.docker_config = Some(crate::registry::auth_dir(&dir));
            }
            Step::PullImages { tag, expect, pulls } => {
                let cmd = self.commands(step).remove(0);
                let out = self.ex.run(&cmd)?;
                let decisions = crate::registry::parse_decisions(&out.stdout_str());
                if out.status == crate::registry::PULL_NEVER_ABSENT {
                    let r = decisions.iter().find(|(k, _)| k == "absent").map(|(_, r)| r.clone()).unwrap_or_default();
                    let services = pulls.iter().find(|p| p.reference == r).map(|p| p.services.join(", "));
                    return Err(Fail::Pull(
                        Error::failed(format!(
                            "the image `{r}` of {} is not on {label} and its `pull_policy` is `never`",
                            services.map(|s| format!("service `{s}`")).unwrap_or_else(|| "a service".into())
                        ))
                        .hint("load or build the image on the host first, or change its `pull_policy`; nothing was switched"),
                    ));
                }
                if !out.success() {
                    return Err(Fail::Pull(self.pull_error(tag, &out.tail(5))));
                }
                for (what, refs) in [
                    ("pulled", "pulled"),
                    ("kept", "on the host, not pulled (its pull_policy asks no pull now)"),
                    ("local", "only on the host (built or loaded there), never pulled"),
                ] {
                    let v: Vec<&str> = decisions.iter().filter(|(k, _)| k == what).map(|(_, r)| r.as_str()).collect();
                    if !v.is_empty() {
                        info(format!("images on {label}, {refs}: {}", v.join(", ")));
                    }
                }
                self.pulled = crate::registry::parse_pulled(&out.stdout_str());
                crate::registry::check(expect, &self.pulled, &label).map_err(|mut e| {
                    e.message.push_str("; nothing was switched");
                    e
                })?;
                if !expect.is_empty() {
                    info(format!("digests on {label} are the expected ones: {}", {
                        let v: Vec<String> = expect.iter().map(|e| format!("{} {}", e.service, e.digest)).collect();
                        v.join(", ")
                    }));
                }
            }
            Step::Up { release, .. } => {
                let mut cmd = self.commands(step).remove(0);
                if self.hurry {
                    cmd = cmd.timeout(HURRY);
                }
                self.upped = true;
                crate::host_changing();
                let out = self.ex.run(&cmd)?;
                if !out.success() {
                    return Err(Fail::Up(Error::failed(format!(
                        "`compose up` of `{}` on {label} failed: {}",
                        release.tag,
                        out.tail(5)
                    ))));
                }
            }
            Step::Roll { release, services } => {
                crate::host_changing();
                crate::rolling::run(self, release, services)?
            }
            Step::Unroll { .. } => {
                let mut cmd = self.commands(step).remove(0);
                if self.hurry {
                    cmd = cmd.timeout(HURRY);
                }
                self.ex.check(&cmd, "removing the new containers")?;
                self.rolled.clear();
            }
            Step::Pull { release, expect, must_match, .. } => {
                let cmd = self.commands(step).remove(0);
                let out = self.ex.run(&cmd)?;
                if !out.success() {
                    return Err(Fail::Pull(self.pull_error(&release.tag, &out.tail(5))));
                }
                if !expect.is_empty() {
                    self.check_composed(release, expect, *must_match).map_err(Fail::Pull)?;
                }
            }
            Step::Hook { phase, .. } => {
                let cmd = self.commands(step).remove(0);
                crate::hooks::run(self.ex.as_mut(), *phase, &cmd)?;
            }
            Step::Gate { .. } => {
                let services = self.ctx.services.clone();
                let url = self.ctx.health_url.clone();
                let g = health::Gate {
                    project: &self.ctx.app,
                    services: &services,
                    health_url: url.as_deref(),
                    timeout: self.ctx.health_timeout,
                    interrupted: &crate::interrupted,
                    only: &[],
                };
                let start = Instant::now();
                match health::wait(self.ex.as_mut(), &g)? {
                    Ok(c) => {
                        info(format!("healthy on {label} after {:.1}s", start.elapsed().as_secs_f32()));
                        self.containers = c;
                    }
                    Err(f) => return Err(Fail::Gate(f)),
                }
            }
            Step::Commit { .. } | Step::Record { .. } => {
                // The state written and the state kept are one value (one clock reading).
                let next = self.next_state(step);
                let cmd = self.commands_writing(step, &next).remove(0);
                let out = self.ex.check(&cmd, "writing state.json and audit.log")?;
                self.tags_seen = crate::files::parse_tags(&out.stdout_str());
                self.st = next;
                let unlocks = matches!(step, Step::Commit { .. } | Step::Record { unlock: true, .. });
                if unlocks {
                    // The registry login went with the lock (files::FINISH_SCRIPT).
                    self.lease = None;
                    self.ctx.docker_config = None;
                }
                self.switched = false;
                self.upped = false;
            }
            Step::PruneImages { keep } => {
                let current = self.st.current_tag().unwrap_or("").to_string();
                let previous = self.st.previous_tag().map(str::to_string);
                let remove = retention(&self.tags_seen, *keep, &current, previous.as_deref());
                if !remove.is_empty() {
                    match self.ex.run(&crate::files::remove_images_cmd(&remove)) {
                        Ok(o) => {
                            for r in o.stdout_str().lines() {
                                info(format!("removed old image {r}"));
                            }
                        }
                        Err(e) => warning("prune", e.message),
                    }
                }
            }
            Step::ShowLogs => {
                if let Some(f) = self.gate_failure.take() {
                    health::show_failure(self.ex.as_mut(), &f);
                }
            }
            Step::Restore { .. } | Step::Down { .. } => {
                let mut cmd = self.commands(step).remove(0);
                if self.hurry {
                    cmd = cmd.timeout(HURRY);
                }
                let what = if matches!(step, Step::Restore { .. }) {
                    "putting the previous files back"
                } else {
                    "stopping the new release"
                };
                self.ex.check(&cmd, what)?;
            }
            Step::Unlock => {
                if self.lease.is_some() {
                    let cmd = self.commands(step).remove(0);
                    self.ex.check(&cmd, "releasing the lock")?;
                    self.lease = None;
                    self.ctx.docker_config = None;
                }
            }
        }
        Ok(())
    }

    /// `expect-digests` for images compose resolved (crate::registry::match_expect): read the model as
    /// compose interpolates it on the host, then the pulled images' repository digests.
    /// The model's images only leave the host: [`crate::registry::images_cmd`] filters compose's answer there,
    /// so the values of the host's `.env` that the model interpolates elsewhere never travel.
    fn check_composed(
        &mut self,
        release: &Release,
        expect: &std::collections::BTreeMap<String, String>,
        must_match: bool,
    ) -> Result<()> {
        let label = self.label();
        let out = self.ex.check(
            &crate::registry::images_cmd(&self.ctx.project(release), &release.tag),
            "reading the compose model's images",
        )?;
        let only = &self.ctx.services;
        let images: Vec<(String, String)> = crate::registry::parse_images(&out.stdout_str())
            .into_iter()
            .filter(|(n, _)| only.is_empty() || only.contains(n))
            .collect();
        let (matched, unmatched) = crate::registry::match_expect(expect, &images);
        if matched.is_empty() && !must_match {
            for k in unmatched {
                warning(
                    "expect-digests",
                    format!("key `{k}` names no image of the deployed services; its digest is not checked"),
                );
            }
            return Ok(());
        }
        if matched.is_empty() {
            let names: Vec<&str> = images.iter().map(|(_, r)| r.as_str()).collect();
            return Err(Error::failed(format!(
                "no `expect-digests` key ({}) names an image of the deployed services on {label} ({})",
                expect.keys().cloned().collect::<Vec<_>>().join(", "),
                names.join(", ")
            )));
        }
        for k in unmatched {
            warning(
                "expect-digests",
                format!("key `{k}` names no image of the deployed services; its digest is not checked"),
            );
        }
        let refs: Vec<String> = matched.iter().map(|e| e.reference.clone()).collect();
        let out = self.ex.check(&crate::registry::digests_cmd(&refs), "reading the pulled images' digests")?;
        self.pulled = crate::registry::parse_pulled(&out.stdout_str());
        crate::registry::check(&matched, &self.pulled, &label)?;
        info(format!("digests on {label} are the expected ones: {}", {
            let v: Vec<String> = matched.iter().map(|e| format!("{} {}", e.service, e.digest)).collect();
            v.join(", ")
        }));
        Ok(())
    }

    fn pull_error(&self, tag: &str, tail: &str) -> Error {
        Error::failed(format!("pulling `{tag}` on {} failed: {tail}", self.label())).hint(
            "check that the tag was pushed and that the host may pull it (inputs `registry`, `registry-username`, `registry-password`); nothing was restarted",
        )
    }

    /// Walk `steps` in order; stop at the first failure and say which step it was.
    pub fn walk(&mut self, steps: &[Step]) -> std::result::Result<(), (usize, Fail)> {
        for (i, s) in steps.iter().enumerate() {
            if crate::interrupted() && !self.hurry {
                return Err((i, Fail::Other(Error::interrupted("interrupted by a signal"))));
            }
            self.step(s).map_err(|f| (i, f))?;
        }
        Ok(())
    }

    /// Walk a revert as far as it goes: a step that fails is reported and the next one still runs
    /// (the files back matter even when the old release does not start), except after a lost
    /// connection. Returns the first failure.
    pub fn walk_revert(&mut self, steps: &[Step]) -> Option<Fail> {
        let mut first = None;
        self.revert_failed = false;
        for s in steps {
            match self.step(s) {
                Ok(()) => {}
                Err(f) => {
                    let lost = matches!(&f, Fail::Other(e) if e.class == Class::Lost);
                    if let Fail::Gate(g) = &f {
                        health::show_failure(self.ex.as_mut(), g);
                    }
                    gangplank_core::actions::error(
                        "putting the host back",
                        format!("{}: {}", self.label(), f.message()),
                    );
                    first.get_or_insert(f);
                    self.revert_failed = true;
                    if lost {
                        break;
                    }
                }
            }
        }
        first
    }

    /// A journal was found under the lock: a run was killed mid-deploy. Put the last good release back
    /// (files and tag) before doing anything else, and say so.
    fn repair(&mut self, p: &Pending) -> Result<()> {
        let prev = p.previous_tag.clone().unwrap_or_else(|| "nothing (it was a first deploy)".into());
        warning(
            "repairing an interrupted deploy",
            format!(
                "{} was left mid-deploy of `{}` by {} (started {}): putting back `{prev}` and its files first",
                self.label(),
                p.tag,
                if p.run_url.is_empty() { "an earlier run" } else { &p.run_url },
                p.started_at
            ),
        );
        let steps = revert(p, "interrupted", true, true, false, false);
        if let Some(f) = self.walk_revert(&steps) {
            if matches!(f, Fail::Gate(_)) {
                warning("repair", format!("`{prev}` is back on {} but did not pass its health gate", self.label()));
            } else {
                return Err(Error::failed(format!(
                    "{} was left mid-deploy by an interrupted run and repairing it failed: {}",
                    self.label(),
                    f.message()
                ))
                .hint("read the messages above; run the step again, or fix the host by hand and remove `pending` from .gangplank/state.json"));
            }
        }
        info(format!("repaired {}: `{prev}` and its files are back", self.label()));
        Ok(())
    }

    /// A new connection in place of a lost one. A command the old one left running on the host (a
    /// `compose up` still starting the new release) is stopped first, so it cannot change the host
    /// behind the revert.
    pub fn reconnect(&mut self, connect: &mut Connect) -> Result<()> {
        let stranded = self.ex.stranded();
        self.ex = connect(&self.spec)?;
        if let Some(pg) = stranded {
            let _ = self.ex.run(&gangplank_core::exec::ssh::stop_group(pg));
        }
        Ok(())
    }

    /// Release the lock if this run still holds it; after a lost connection, reconnect once for it.
    pub fn release(&mut self, connect: &mut Connect) -> Option<Error> {
        self.lease.as_ref()?;
        let first = match self.step(&Step::Unlock) {
            Ok(()) => return None,
            Err(f) => f,
        };
        if matches!(&first, Fail::Other(e) if e.class == Class::Lost)
            && self.reconnect(connect).is_ok()
            && self.step(&Step::Unlock).is_ok()
        {
            return None;
        }
        let id = self.lease.clone().unwrap_or_default();
        Some(Error::failed(format!("the lock on {} could not be released: {}", self.label(), first.message())).hint(
            format!(
                "the next run reports it with this run as its owner (lock id {id}); once no deploy runs, pass `force-unlock: true`"
            ),
        ))
    }
}

/// Parse state.json as the lock script read it (empty: no deploy yet).
pub fn parse_state(text: &str, label: &str, app_dir: &str, app: &str) -> Result<State> {
    if text.trim().is_empty() {
        return Ok(State::new(app));
    }
    State::parse(text).map_err(|e| {
        Error::failed(format!("{app_dir}/.gangplank/state.json on {label} is not valid: {e}"))
            .hint("fix or remove the file (it is rebuilt by the next deploy; audit.log keeps the history)")
    })
}

/// Which `REPO:TAG`s go: per repository, all but the `keep` newest, never `current` or `previous`.
pub fn retention(tags: &[(String, String)], keep: usize, current: &str, previous: Option<&str>) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut out = vec![];
    for (repo, tag) in tags {
        if tag == "<none>" || tag.is_empty() {
            continue;
        }
        let n = seen.entry(repo.as_str()).or_insert(0);
        *n += 1;
        if *n > keep && tag != current && Some(tag.as_str()) != previous {
            out.push(format!("{repo}:{tag}"));
        }
    }
    out
}

fn digests(containers: &[Container]) -> std::collections::BTreeMap<String, String> {
    containers.iter().filter(|c| !c.service.is_empty()).map(|c| (c.service.clone(), c.image_id.clone())).collect()
}

/// Service → the repository digest (`repo@sha256:…`) of the image its container runs, for the images
/// this run pulled itself ([`Step::PullImages`]).
fn repo_digests(
    containers: &[Container],
    pulled: &std::collections::BTreeMap<String, Vec<String>>,
) -> std::collections::BTreeMap<String, String> {
    containers
        .iter()
        .filter(|c| !c.service.is_empty())
        .filter_map(|c| {
            let all = pulled.get(&c.image)?;
            let d = crate::registry::digests_of(&c.image, all).first()?.to_string();
            Some((c.service.clone(), d))
        })
        .collect()
}

/// The release that serves now according to state.json, to start again on a revert.
pub fn current_release(st: &State, fallback_files: &[String]) -> Option<Release> {
    st.current.as_ref().map(|c| Release {
        tag: c.tag.clone(),
        compose_files: if c.compose_files.is_empty() { fallback_files.to_vec() } else { c.compose_files.clone() },
    })
}
