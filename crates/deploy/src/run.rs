//! A deploy and a rollback from start to end: preflight every host, make each host's plan, print it,
//! walk it host by host with [`Host`], undo the hosts already changed when a later one fails.

use std::time::{Duration, Instant};

use gangplank_core::actions::{group, info};
use gangplank_core::compose::{self, Flavor};
use gangplank_core::error::{combine, Class, Error, Result};
use gangplank_core::exec::Executor;
use gangplank_core::host::lock::Owner;
use gangplank_core::input::HostSpec;

use crate::engine::{current_release, parse_state, Fail, Host};
use crate::plan::{revert, Ctx, HostPlan, Plan, Release, Step};
use crate::rolling::Strategy;
use crate::state::{self, Pending, Record, State};
use crate::{files, preflight, Connect, DeployConfig, Outcome, RollbackConfig, Row};

/// Everything about a deploy that does not depend on the host.
pub struct Job<'a> {
    pub cfg: &'a DeployConfig,
    pub uploads: Vec<files::Upload>,
    pub compose_names: Vec<String>,
    pub image_repos: Vec<String>,
    /// Images pulled before the switch, each as its `pull_policy` says ([`crate::registry::Pull`]).
    pub pulls: Vec<crate::registry::Pull>,
    /// The images whose digests `expect-digests` names (checked after the pull, before the switch).
    pub expect: Vec<crate::registry::Expect>,
    /// Services whose image (one this deploy's tag names) uses a variable the runner has no value for (one
    /// the host's `.env` sets): compose pulls them after the switch.
    pub compose_pull: Vec<String>,
    /// `expect-digests` keys left for the images compose pulls, and whether one of them must match.
    pub compose_expect: std::collections::BTreeMap<String, String>,
    pub compose_must_match: bool,
    pub stamp: String,
    pub owner: Owner,
}

impl Job<'_> {
    fn ctx(&self, flavor: Flavor) -> Ctx {
        let cfg = self.cfg;
        Ctx {
            app: cfg.app.clone(),
            app_dir: cfg.app_dir.clone(),
            flavor,
            services: cfg.services.clone(),
            health_url: cfg.health_url.clone(),
            health_timeout: cfg.health_timeout,
            lock_timeout: cfg.lock_timeout,
            meta: cfg.meta.clone(),
            uploads: self.uploads.clone(),
            docker_config: None,
        }
    }

    /// The plan of one host, from the state it had (at preflight, then again under the lock).
    pub fn host_plan(&self, host: &str, st: &State) -> HostPlan {
        let cfg = self.cfg;
        let rels: Vec<String> = self.uploads.iter().map(|u| u.remote.clone()).collect();
        let new = Release { tag: cfg.tag.clone(), compose_files: self.compose_names.clone() };
        let prev = current_release(st, &self.compose_names);
        let pending = Pending {
            tag: cfg.tag.clone(),
            previous_tag: prev.as_ref().map(|r| r.tag.clone()),
            previous_compose_files: prev.as_ref().map(|r| r.compose_files.clone()).unwrap_or_default(),
            compose_files: self.compose_names.clone(),
            stamp: self.stamp.clone(),
            files: rels.clone(),
            services: cfg.services.clone(),
            run_url: cfg.meta.run_url.clone(),
            started_at: self.owner.started_at.clone(),
        };
        let mut steps = vec![];
        if cfg.force_unlock {
            steps.push(Step::ForceUnlock);
        }
        steps.push(Step::Lock { owner: self.owner.clone(), create: true });
        if let Some(login) = &cfg.login {
            steps.push(Step::Login { login: login.clone() });
        }
        steps.push(Step::Stage { stamp: self.stamp.clone(), files: rels.clone() });
        // The hooks of this host (crate::hooks): pre-deploy once the new images are pulled and the new files
        // are live, before any container changes, post-deploy once the gate passed.
        let index = cfg.ssh.hosts.iter().position(|h| h.to_string() == host).unwrap_or(0);
        let hook = |phase, script: &Option<String>| {
            script.clone().filter(|_| cfg.hooks.runs_on(index)).map(|script| Step::Hook {
                phase,
                script,
                release: new.clone(),
                previous: pending.previous_tag.clone().unwrap_or_default(),
                timeout: cfg.hooks.timeout,
            })
        };
        // The images are pulled (and their digests checked) before the switch: a pull that fails changes
        // nothing live. Images named with a variable of the host's `.env` only compose can resolve, with
        // the switched files.
        if !self.pulls.is_empty() {
            steps.push(Step::PullImages {
                tag: cfg.tag.clone(),
                pulls: self.pulls.clone(),
                expect: self.expect.clone(),
            });
        }
        steps.push(Step::Switch { pending: pending.clone() });
        if !self.compose_pull.is_empty() {
            steps.push(Step::Pull {
                release: new.clone(),
                services: self.compose_pull.clone(),
                expect: self.compose_expect.clone(),
                must_match: self.compose_must_match,
            });
        }
        steps.extend(hook(crate::hooks::Phase::Pre, &cfg.hooks.pre));
        if cfg.strategy == Strategy::Rolling {
            steps.push(Step::Roll { release: new.clone(), services: cfg.services.clone() });
        } else {
            steps.push(Step::Up { release: new.clone(), services: cfg.services.clone() });
        }
        steps.push(Step::Gate { tag: cfg.tag.clone() });
        steps.extend(hook(crate::hooks::Phase::Post, &cfg.hooks.post));
        // A redeploy of the running tag adds no image tag, so there is nothing new to prune (and
        // listing the repository's tags costs a docker call).
        let new_tag = pending.previous_tag.as_deref() != Some(cfg.tag.as_str());
        steps.push(Step::Commit {
            release: new,
            action: "deploy".into(),
            result: "deployed".into(),
            previous: pending.previous_tag.clone().unwrap_or_default(),
            prune_files: rels,
            repos: if new_tag { self.image_repos.clone() } else { vec![] },
        });
        if new_tag {
            steps.push(Step::PruneImages { keep: cfg.keep_images });
        }
        let on_failure = if cfg.auto_rollback {
            revert(&pending, "health-gate-failed", true, true, true, true)
        } else {
            vec![
                Step::ShowLogs,
                Step::Record {
                    tag: cfg.tag.clone(),
                    previous: pending.previous_tag.clone().unwrap_or_default(),
                    result: "health-gate-failed".into(),
                    rolled_back_to: None,
                    unlock: true,
                },
            ]
        };
        HostPlan { host: host.to_string(), steps, on_failure }
    }
}

pub fn new_owner(meta: &state::RunMeta, action: &str, tag: &str) -> Owner {
    use rand::Rng;
    Owner {
        id: format!("{:032x}", rand::thread_rng().gen::<u128>()),
        action: action.into(),
        tag: tag.into(),
        run_url: meta.run_url.clone(),
        git_sha: meta.git_sha.clone(),
        runner_host: meta.runner_host.clone(),
        started_at: state::now_rfc3339(),
        pid: std::process::id(),
    }
}

/// A host that passed preflight, with its open connection.
type Connected = (HostSpec, Box<dyn Executor>, preflight::HostFacts);

/// Read local files, check the compose files, connect and preflight every host. Every failure found is
/// returned at once, as one exit-2 error.
fn prepare<'c>(cfg: &'c DeployConfig, connect: &mut Connect) -> Result<(Job<'c>, Vec<Connected>)> {
    let mut errs = vec![];
    let (uploads, mut file_errs) = files::collect(&cfg.compose_files, &cfg.files, cfg.env_file.as_deref());
    errs.append(&mut file_errs);
    let uploaded: Vec<String> = uploads.iter().map(|u| u.remote.clone()).collect();
    let compose_names: Vec<String> =
        cfg.compose_files.iter().map(|c| files::remote_path(c).unwrap_or_default()).collect();
    let mut image_repos: Vec<String> = vec![];
    for u in uploads.iter().filter(|u| compose_names.contains(&u.remote)) {
        let text = String::from_utf8_lossy(&u.content);
        match compose::references(&text) {
            Err(e) => errs.push(
                Error::bad_input(format!("compose file `{}` is not valid YAML: {e}", u.local.display()))
                    .hint("check it with `docker compose config`"),
            ),
            Ok(refs) => {
                for img in refs.images {
                    let repo = compose::image_repo(&img).to_string();
                    if img.contains("IMAGE_TAG") && !repo.contains('$') && !image_repos.contains(&repo) {
                        image_repos.push(repo);
                    }
                }
            }
        }
    }
    if cfg.strategy == Strategy::Rolling {
        let texts: Vec<(String, String)> = uploads
            .iter()
            .filter(|u| compose_names.contains(&u.remote))
            .map(|u| (u.local.display().to_string(), String::from_utf8_lossy(&u.content).into_owned()))
            .collect();
        errs.extend(crate::rolling::check(&cfg.services, &texts));
    }
    // Every host is connected first: the variables the compose files need may live only in a host's `.env`.
    let mut conns = vec![];
    for h in &cfg.ssh.hosts {
        match connect(h) {
            Err(e) => errs.push(e),
            Ok(exec) => conns.push((h.clone(), exec)),
        }
    }
    let repo = std::env::current_dir().unwrap_or_default();
    let none = std::collections::BTreeSet::new();
    let base = crate::model::Input {
        repo: &repo,
        compose_files: &cfg.compose_files,
        env_file: cfg.env_file.as_deref(),
        tag: &cfg.tag,
        services: &cfg.services,
        use_compose: true,
        placeholders: &none,
    };
    let runner_env = crate::model::runner_environment(&base);
    let placeholders = server_variables(cfg, &base, &runner_env, &mut conns, &mut errs);
    let input = crate::model::Input { placeholders: &placeholders, ..base };
    let host_refs = model_check(cfg, &input, &uploaded, &mut errs);
    let plan = pull_plan(&input, &runner_env, &placeholders, &mut errs);
    let expect = expected(cfg, &plan).unwrap_or_else(|e| {
        errs.push(e);
        Expected::default()
    });
    let mut hosts = vec![];
    for (h, mut exec) in conns {
        let checks = preflight::Checks {
            app_dir: &cfg.app_dir,
            min_free_disk: cfg.min_free_disk,
            host_references: &host_refs,
            uploads: &uploaded,
        };
        match preflight::run(exec.as_mut(), &checks) {
            Ok(facts) => hosts.push((h, exec, facts)),
            Err(mut e) => errs.append(&mut e),
        }
    }
    if let Some(e) = combine(errs) {
        return Err(e);
    }
    let job = Job {
        cfg,
        uploads,
        compose_names,
        image_repos,
        pulls: plan.pulls,
        expect: expect.before,
        compose_pull: plan.compose_pull,
        compose_expect: expect.after,
        compose_must_match: expect.must_match,
        stamp: state::backup_stamp(),
        owner: new_owner(&cfg.meta, "deploy", &cfg.tag),
    };
    Ok((job, hosts))
}

/// The variables the compose files use that the runner has no value for (not `IMAGE_TAG`, not in the
/// `env-file`), looked up by KEY NAME in each host's `.env` (where sync-secrets writes them; one read-only
/// round trip per host, only when there are such variables and no `env-file` replaces that `.env`).
/// Returns those every host's `.env` sets, which get a stand-in value for the runner's resolution; a
/// required one (`${VAR:?…}`) that some host lacks is an error naming it, the hosts and where it can come
/// from. No value is ever read off a host.
fn server_variables(
    cfg: &DeployConfig,
    input: &crate::model::Input,
    runner_env: &std::collections::BTreeMap<String, String>,
    conns: &mut [(HostSpec, Box<dyn Executor>)],
    errs: &mut Vec<Error>,
) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let vars = crate::model::variables(input);
    let missing: Vec<(&String, &crate::model::Variable)> =
        vars.iter().filter(|(n, _)| !runner_env.contains_key(*n)).collect();
    if missing.is_empty() {
        return out;
    }
    if let Some(env_file) = &cfg.env_file {
        // The env-file replaces the host's `.env`: what it lacks, the host will lack.
        for (name, v) in missing.iter().filter(|(_, v)| v.required) {
            errs.push(
                Error::bad_input(format!(
                    "the compose files require `{name}`{}, and it has no value: it is neither `IMAGE_TAG` nor in `env-file` `{}`, which becomes the host's `.env`",
                    if v.non_empty { " (not empty)" } else { "" },
                    env_file.display()
                ))
                .hint(format!("add `{name}=…` to the env-file (or give it a default in the compose file, `${{{name}:-…}}`); nothing was changed")),
            );
            // A stand-in keeps compose's check of the rest from stopping at the same variable.
            out.insert(name.to_string());
        }
        return out;
    }
    let rel = files::env_remote(&cfg.compose_files);
    let path = format!("{}/{rel}", cfg.app_dir.trim_end_matches('/'));
    let mut keys: Vec<(String, Option<std::collections::BTreeMap<String, bool>>)> = vec![];
    for (spec, ex) in conns.iter_mut() {
        match ex.run(&preflight::env_keys_cmd(&path)) {
            Ok(o) if o.success() => keys.push((spec.to_string(), preflight::parse_env_keys(&o.stdout_str()))),
            Ok(o) => errs.push(
                Error::bad_input(format!("the key names of {path} on {spec} could not be read: {}", o.tail(2)))
                    .hint("check that the SSH user may read the app dir"),
            ),
            Err(e) => errs.push(e),
        }
    }
    let names: Vec<&str> = missing.iter().map(|(n, _)| n.as_str()).collect();
    info(format!(
        "compose variables without a value on the runner ({}): looked up by key name in {path} on each host",
        names.join(", ")
    ));
    for (name, v) in missing {
        let lacking: Vec<String> = keys
            .iter()
            .filter_map(|(host, k)| {
                let why = match k.as_ref().map(|k| k.get(name.as_str())) {
                    None => format!("{host} has no {path}"),
                    Some(None) => format!("{host}'s {path} has no `{name}`"),
                    Some(Some(false)) if v.non_empty => format!("{host}'s {path} has `{name}` empty"),
                    Some(Some(_)) => return None,
                };
                Some(why)
            })
            .collect();
        let provided_somewhere = lacking.len() < keys.len();
        if v.required && !lacking.is_empty() {
            errs.push(
                Error::bad_input(format!(
                    "the compose files require `{name}`, and it has no value: it is not `IMAGE_TAG`, there is no `env-file`, and {}",
                    lacking.join(", ")
                ))
                .hint(format!("add `{name}` to the secrets manifest so sync-secrets writes it into {rel} on every host (or pass an `env-file` that sets it); nothing was changed")),
            );
        }
        if provided_somewhere || v.required {
            out.insert(name.clone());
        }
    }
    out
}

/// What is pulled, and how.
struct PullPlan {
    /// Before the switch, by gangplank, each image as its `pull_policy` says.
    pulls: Vec<crate::registry::Pull>,
    /// After the switch, by compose: images of this deploy's tag named with a variable of the host's `.env`.
    compose_pull: Vec<String>,
}

/// Which images are pulled, and when. An image resolves here when every variable it uses has a value on
/// the runner (`${IMAGE_TAG:?…}` and defaults included) and none is set by the host's `.env`: it is pulled
/// before the switch, as its `pull_policy` says; without one, the images this deploy's tag names (the
/// app's own: new tags) are pulled always, and every other image (a database, a proxy: unchanged) only
/// when it is not on the host, compose's own default. Images named with a variable of the host's `.env`
/// are compose's to resolve: compose pulls those of this deploy's tag after the switch, and `up` any other
/// that is missing. A service without `image:` is built by compose, not pulled.
fn pull_plan(
    input: &crate::model::Input,
    runner_env: &std::collections::BTreeMap<String, String>,
    host_only: &std::collections::BTreeSet<String>,
    errs: &mut Vec<Error>,
) -> PullPlan {
    use crate::registry::{Policy, Pull};
    let mut plan = PullPlan { pulls: vec![], compose_pull: vec![] };
    for si in crate::model::service_images(input) {
        let Some(raw) = si.image else { continue };
        let used: Vec<String> = compose::variables_in(&raw).into_iter().map(|v| v.name).collect();
        let app = used.iter().any(|v| v == "IMAGE_TAG");
        let policy = match &si.pull_policy {
            None => Some(if app { Policy::Always } else { Policy::Missing }),
            Some(p) => crate::model::interpolate(p, runner_env).ok().and_then(|p| Policy::parse(&p)),
        };
        let Some(policy) = policy else {
            errs.push(
                Error::bad_input(format!(
                    "service `{}` has `pull_policy: {}`, which is not a pull policy compose knows",
                    si.service,
                    si.pull_policy.unwrap_or_default()
                ))
                .hint("write always, missing, never, build, daily, weekly or every_<duration> (every_12h, every_2d)"),
            );
            continue;
        };
        let on_host = used.iter().any(|v| host_only.contains(v));
        match crate::model::interpolate(&raw, runner_env).ok().filter(|_| !on_host) {
            Some(reference) => match plan.pulls.iter_mut().find(|p| p.reference == reference) {
                Some(p) => {
                    p.services.push(si.service);
                    p.policy = match (p.policy, policy) {
                        (Policy::Refresh(a), Policy::Refresh(b)) => Policy::Refresh(a.min(b)),
                        (a, b) => a.max(b),
                    };
                }
                None => plan.pulls.push(Pull { services: vec![si.service], reference, policy }),
            },
            None if app && !matches!(policy, Policy::Never | Policy::Build) => plan.compose_pull.push(si.service),
            None => {}
        }
    }
    plan
}

/// `expect-digests` matched: before the switch to the images gangplank pulls, after it (on each host,
/// with compose's resolution) the keys left for the images compose pulls.
#[derive(Default)]
struct Expected {
    before: Vec<crate::registry::Expect>,
    after: std::collections::BTreeMap<String, String>,
    must_match: bool,
}

/// The images `expect-digests` speaks of, matched to the deployed services (crate::registry::match_expect).
fn expected(cfg: &DeployConfig, plan: &PullPlan) -> Result<Expected> {
    if cfg.expect_digests.is_empty() {
        return Ok(Expected::default());
    }
    let images: Vec<(String, String)> =
        plan.pulls.iter().flat_map(|p| p.services.iter().map(|s| (s.clone(), p.reference.clone()))).collect();
    let (matched, unmatched) = crate::registry::match_expect(&cfg.expect_digests, &images);
    for e in &matched {
        info(format!("expect-digests: service `{}` ({}) must have {}", e.service, e.reference, e.digest));
    }
    if !plan.compose_pull.is_empty() && !unmatched.is_empty() {
        // compose resolves these images on each host, after the switch: the keys left are matched there.
        info(format!(
            "expect-digests: the image(s) of {} use variables the runner has no value for: compose pulls them on each host after the switch, where key(s) {} are matched and checked; a digest that differs puts the files back, restarting nothing",
            plan.compose_pull.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
            unmatched.join(", ")
        ));
        let after = unmatched.iter().map(|k| (k.clone(), cfg.expect_digests[k].clone())).collect();
        return Ok(Expected { must_match: matched.is_empty(), before: matched, after });
    }
    if matched.is_empty() {
        let names: Vec<&str> = images.iter().map(|(_, r)| r.as_str()).collect();
        return Err(Error::bad_input(format!(
            "no `expect-digests` key ({}) names an image of the deployed services ({})",
            cfg.expect_digests.keys().cloned().collect::<Vec<_>>().join(", "),
            names.join(", ")
        ))
        .hint("a key names an image whose repository is the key or ends with `/<key>` (push-registry's image names); check that the deploy and the push use the same images"));
    }
    for k in unmatched {
        gangplank_core::actions::warning(
            "expect-digests",
            format!("key `{k}` names no image of the deployed services; its digest is not checked"),
        );
    }
    Ok(Expected { before: matched, after: Default::default(), must_match: false })
}

/// The compose model's references (crate::model): failures found here go to `errs`; the paths every
/// host must have are returned for preflight.
fn model_check(
    cfg: &DeployConfig,
    input: &crate::model::Input,
    uploaded: &[String],
    errs: &mut Vec<Error>,
) -> Vec<crate::model::HostRef> {
    let started = Instant::now();
    let model = crate::model::resolve(input);
    let checked = crate::model::check(&model, input.repo, &cfg.app_dir, uploaded, &files::listed_folders(&cfg.files));
    info(format!(
        "compose model: {} reference(s) resolved by {} in {} ms",
        model.refs.len(),
        match model.resolver {
            crate::model::Resolver::ComposeV2 => "`docker compose config`",
            crate::model::Resolver::BuiltIn => "the built-in reader (no compose v2 on this machine)",
        },
        started.elapsed().as_millis()
    ));
    for note in &model.unresolved {
        gangplank_core::actions::warning("compose model", format!("not resolved: {note}"));
    }
    for note in &checked.notes {
        gangplank_core::actions::warning("compose model", note.clone());
    }
    errs.extend(checked.errors);
    checked.host_refs
}

pub(crate) fn new_record(app: &str, hosts: &[HostSpec], meta: &state::RunMeta, action: &str) -> Record {
    Record {
        app: app.to_string(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        status: "failed".into(),
        started_at: state::now_rfc3339(),
        git_sha: meta.git_sha.clone(),
        run_url: meta.run_url.clone(),
        action: action.into(),
        ..Default::default()
    }
}

fn finish(mut out: Outcome) -> Outcome {
    out.record.finished_at = state::now_rfc3339();
    out
}

/// Print each host's plan with the exact commands it would run (`preflight-only`), secrets redacted.
pub fn print_commands(hosts: &mut [Host], plans: &[HostPlan]) {
    for (h, p) in hosts.iter_mut().zip(plans) {
        let _g = group(&format!("commands on {}", h.label()));
        for step in &p.steps {
            if let Step::Lock { owner, .. } = step {
                // The commands after the lock carry its id, as they will in the real run.
                h.lease = Some(owner.id.clone());
            }
            if let Step::Login { .. } = step {
                // The pulls after the login use its Docker config, as they will in the real run.
                h.ctx.docker_config = Some(crate::registry::auth_dir(&h.ctx.app_dir));
            }
            for c in h.commands(step) {
                info(format!("$ {}", c.display(h.ex.sudo()).replace('\n', "⏎")));
            }
        }
    }
}

/// Run a deploy: preflight every host, then each host in turn; put everything back on failure.
pub fn deploy(cfg: &DeployConfig, connect: &mut Connect) -> Outcome {
    let mut out = Outcome {
        record: new_record(&cfg.app, &cfg.ssh.hosts, &cfg.meta, "deploy"),
        rows: vec![],
        rolled_back: false,
        changed: false,
        error: None,
    };
    out.record.deployed_tag = cfg.tag.clone();
    let prepared = {
        let _g = group("preflight");
        prepare(cfg, connect)
    };
    let (job, connected) = match prepared {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e);
            return finish(out);
        }
    };
    let mut hosts = vec![];
    let mut plans = vec![];
    for (spec, ex, facts) in connected {
        let label = spec.to_string();
        let st =
            parse_state(&facts.state_text, &label, &cfg.app_dir, &cfg.app).unwrap_or_else(|_| State::new(&cfg.app));
        plans.push(job.host_plan(&label, &st));
        hosts.push(Host::new(spec, ex, job.ctx(facts.flavor), st));
    }
    let plan = Plan {
        title: format!("deploy `{}` tag `{}` into {}", cfg.app, cfg.tag, cfg.app_dir),
        hosts: plans,
        batch: cfg.max_parallel.max(1),
        first_alone: cfg.hooks.on == crate::hooks::On::First && cfg.hooks.any(),
    };
    info(plan.render().trim_end());
    info(format!("preflight passed on {} host(s)", hosts.len()));
    if cfg.preflight_only {
        print_commands(&mut hosts, &plan.hosts);
        out.record.status = "preflight-passed".into();
        out.record.deployed_tag.clear();
        return finish(out);
    }

    let mut plans = plan.hosts;
    // Every host is locked (and repaired, when a killed run left it mid-deploy) before any changes: a
    // run that cannot have them all changes none, and none is changed under another run's feet.
    for i in 0..hosts.len() {
        let label = hosts[i].label();
        let _g = group(&format!("lock {label}"));
        let upto = locked_upto(&plans[i]);
        if let Err(failure) = run_steps(&job, &mut hosts[i], &mut plans[i], 0..upto, connect) {
            for h in hosts[..i].iter_mut() {
                if let Some(e) = h.release(connect) {
                    gangplank_core::actions::error("unlock", e.message);
                }
            }
            out.rows.push(row(&hosts[i], &plans[i], &cfg.tag, "not changed (lock)", Duration::ZERO));
            out.error = Some(failure.error);
            return finish(out);
        }
    }

    let connect = std::sync::Mutex::new(connect);
    let batch = cfg.max_parallel.max(1);
    let mut done: Vec<usize> = vec![];
    let mut first_failure: Option<(HostFailure, bool)> = None;
    let mut next = 0;
    while next < hosts.len() && first_failure.is_none() {
        // `hooks-on: first`: the first host (its migration) deploys alone, before any other host changes.
        let size = if next == 0 && cfg.hooks.on == crate::hooks::On::First && cfg.hooks.any() { 1 } else { batch };
        let range = next..(next + size).min(hosts.len());
        next = range.end;
        let ends = deploy_batch(&job, &mut hosts[range.clone()], &mut plans[range.clone()], &connect, batch > 1);
        for (i, (end, took)) in range.zip(ends) {
            if out.record.previous_tag.is_empty() {
                out.record.previous_tag = previous_of(&plans[i], &cfg.tag, &hosts[i].st);
            }
            match end {
                Ok(()) => {
                    out.changed = true;
                    if out.record.digests.is_empty() {
                        out.record.digests = hosts[i].st.current.as_ref().map(|c| c.images.clone()).unwrap_or_default();
                    }
                    out.rows.push(row(&hosts[i], &plans[i], &cfg.tag, "deployed", took));
                    done.push(i);
                }
                Err(f) => {
                    out.changed |= f.changed;
                    let result = if f.rolled_back {
                        "rolled back"
                    } else if f.error.class == Class::Interrupted {
                        "interrupted, put back"
                    } else {
                        "failed"
                    };
                    out.rows.push(row(&hosts[i], &plans[i], &cfg.tag, result, took));
                    let put_back = f.rolled_back || !f.changed;
                    match first_failure.as_mut() {
                        None => first_failure = Some((f, put_back)),
                        // A second failure in the same batch counts when it could not be put back.
                        Some((_, all)) => *all &= put_back,
                    }
                }
            }
        }
    }
    let connect = connect.into_inner().unwrap_or_else(|p| p.into_inner());
    let Some((failure, mut all_back)) = first_failure else {
        out.record.status = "deployed".into();
        return finish(out);
    };
    // The first failure stops the run: hosts not reached are unlocked unchanged, and hosts already
    // changed go back too, last first.
    for i in next..hosts.len() {
        if let Some(e) = hosts[i].release(connect) {
            gangplank_core::actions::error("unlock", e.message);
        }
        out.rows.push(row(&hosts[i], &plans[i], &cfg.tag, "not changed (an earlier host failed)", Duration::ZERO));
    }
    for &j in done.iter().rev() {
        let h = &mut hosts[j];
        let _g = group(&format!("roll back {} (another host failed)", h.label()));
        let t = Instant::now();
        let ok = match undo_host(&job, h, &pending_of(&plans[j]), connect) {
            Ok(()) => true,
            Err(e) => {
                gangplank_core::actions::error("rollback failed", format!("{}: {}", h.label(), e.message));
                false
            }
        };
        all_back &= ok;
        let name = h.label();
        if let Some(r) = out.rows.iter_mut().find(|r| r.host == name) {
            r.result = if ok { "rolled back (another host failed)".into() } else { "deployed, rollback failed".into() };
            r.duration += t.elapsed();
        }
    }
    out.rolled_back = all_back && (failure.rolled_back || !done.is_empty());
    out.record.status = if out.rolled_back { "rolled-back".into() } else { "failed".into() };
    out.error = Some(failure.error);
    finish(out)
}

/// The release a rollback of this deploy goes back to: the one that served before, or, when the
/// running tag was deployed again, the one before that (a redeploy is not its own previous).
fn previous_of(plan: &HostPlan, tag: &str, st: &State) -> String {
    match pending_of(plan).previous_tag {
        Some(p) if p == tag => st.previous_tag().unwrap_or_default().to_string(),
        p => p.unwrap_or_default(),
    }
}

fn row(host: &Host, plan: &HostPlan, tag: &str, result: &str, took: Duration) -> Row {
    Row {
        host: host.label(),
        previous_tag: previous_of(plan, tag, &host.st),
        new_tag: tag.to_string(),
        result: result.into(),
        duration: took,
    }
}

/// Deploy a batch of locked hosts, at once when `parallel` (each on a thread of its own, its lines
/// prefixed with its name), each to its end: deployed, or failed and put back.
fn deploy_batch(
    job: &Job,
    hosts: &mut [Host],
    plans: &mut [HostPlan],
    connect: &std::sync::Mutex<&mut Connect>,
    parallel: bool,
) -> Vec<(Result<(), HostFailure>, Duration)> {
    let one = |h: &mut Host, plan: &mut HostPlan| {
        let start = Instant::now();
        let from = locked_upto(plan);
        let mut reconnect = |spec: &HostSpec| (connect.lock().unwrap_or_else(|p| p.into_inner()))(spec);
        let end = run_steps(job, h, plan, from..plan.steps.len(), &mut reconnect);
        if end.is_ok() {
            let prev = h.st.previous_tag().unwrap_or("").to_string();
            info(format!("deployed `{}` on {} (previous `{prev}`)", job.cfg.tag, h.label()));
        }
        (end, start.elapsed())
    };
    if !parallel {
        return hosts
            .iter_mut()
            .zip(plans.iter_mut())
            .map(|(h, p)| {
                let _g = group(&format!("deploy {} to {}", job.cfg.tag, h.label()));
                one(h, p)
            })
            .collect();
    }
    let _g = group(&format!("deploy {} to {} hosts at once", job.cfg.tag, hosts.len()));
    at_once(hosts.iter_mut().zip(plans.iter_mut()), |(h, _)| h.label(), |(h, p)| one(h, p))
}

/// `f` on every item at once, each on a thread of its own with its lines prefixed by `label(item)`; the results
/// in the items' order. Used for the hosts of a batch, in a deploy and in a rollback.
fn at_once<I: Send, R: Send>(
    items: impl IntoIterator<Item = I>,
    label: impl Fn(&I) -> String,
    f: impl Fn(I) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let running: Vec<_> = items
            .into_iter()
            .map(|item| {
                let prefix = label(&item);
                s.spawn(move || gangplank_core::actions::with_prefix(&prefix, || f(item)))
            })
            .collect();
        running.into_iter().map(|t| t.join().expect("a host's thread panicked")).collect()
    })
}

/// The steps every host takes before any host changes: the lock (with any repair) and the registry
/// login, so a refused login stops the run with nothing changed anywhere.
fn locked_upto(plan: &HostPlan) -> usize {
    plan.steps.iter().rposition(|s| matches!(s, Step::Lock { .. } | Step::Login { .. })).map_or(0, |l| l + 1)
}

fn pending_of(plan: &HostPlan) -> Pending {
    plan.steps
        .iter()
        .find_map(|s| if let Step::Switch { pending } = s { Some(pending.clone()) } else { None })
        .expect("a deploy plan has a switch")
}

/// How a host's deploy ended when it did not deploy.
pub struct HostFailure {
    pub error: Error,
    /// The previous release serves again after a switch.
    pub rolled_back: bool,
    /// The host's files or containers were changed during the run.
    pub changed: bool,
}

/// Run the steps of `plan` in `range` on `h`; on a failure, put the host back as the failure calls for.
fn run_steps(
    job: &Job,
    h: &mut Host,
    plan: &mut HostPlan,
    range: std::ops::Range<usize>,
    connect: &mut Connect,
) -> Result<(), HostFailure> {
    let mut i = range.start;
    while i < range.end {
        let step = plan.steps[i].clone();
        let r = if crate::interrupted() {
            Err(Fail::Other(Error::interrupted("interrupted by a signal")))
        } else {
            h.step(&step)
        };
        match r {
            Ok(()) => {
                if let Step::Lock { .. } = step {
                    // The state read under the lock (after any repair) is the one that counts: if
                    // another run deployed since preflight, the rest of the plan is made again from it.
                    let fresh = job.host_plan(&plan.host, &h.st);
                    if fresh.steps[i + 1..] != plan.steps[i + 1..] {
                        info(format!(
                            "the state of {} changed since preflight (now `{}`): plan made again from it",
                            plan.host,
                            h.st.current_tag().unwrap_or("nothing")
                        ));
                        *plan = fresh;
                    }
                }
                i += 1;
            }
            Err(f) => return Err(fail_host(job, h, plan, f, connect)),
        }
    }
    Ok(())
}

/// A step failed on `h`: put the host back as the failure calls for, release the lock, and say what
/// happened in one error.
fn fail_host(job: &Job, h: &mut Host, plan: &HostPlan, f: Fail, connect: &mut Connect) -> HostFailure {
    let cfg = job.cfg;
    let label = h.label();
    let pending = pending_of(plan);
    let interrupted = matches!(&f, Fail::Other(e) if e.class == Class::Interrupted) || crate::interrupted();
    let lost = matches!(&f, Fail::Other(e) if e.class == Class::Lost);
    let reason = f.message();
    if interrupted {
        h.hurry = true;
        h.ex.set_interruptible(false);
    }
    let changed = h.switched || h.upped;
    if !changed {
        let unlock = h.release(connect);
        let mut error = match f {
            Fail::Gate(g) => Error::failed(g.reason),
            Fail::Pull(e) | Fail::Up(e) | Fail::Hook(_, e) | Fail::Other(e) => e,
        };
        if interrupted {
            error = Error::interrupted(format!("interrupted on {label} before anything changed there"))
                .hint("nothing was changed and the lock was released; run the deploy again when ready");
        }
        if let Some(u) = unlock {
            error.message = format!("{}; {}", error.message, u.message);
            error.hint = u.hint;
        }
        return HostFailure { error, rolled_back: false, changed: false };
    }
    if lost {
        // One new connection to put the host back and release the lock.
        match h.reconnect(connect) {
            Ok(()) => {}
            Err(e) => {
                return HostFailure {
                    error: Error::failed(format!(
                        "lost {label} mid-deploy of `{}` ({reason}), and reconnecting failed: {}",
                        cfg.tag, e.message
                    ))
                    .hint("the host keeps a journal of this deploy: the next run that reaches it puts the previous release back first (its lock is still held by this run: pass `force-unlock: true` once no deploy runs)"),
                    rolled_back: false,
                    changed: true,
                }
            }
        }
    }
    let prev = pending.previous_tag.clone();
    let pre_hook = matches!(f, Fail::Hook(crate::hooks::Phase::Pre, _));
    let steps = match f {
        Fail::Gate(g) => {
            gangplank_core::actions::error("health gate", format!("{} on {label}: {}", cfg.tag, g.reason));
            h.gate_failure = Some(g);
            plan.on_failure.clone()
        }
        Fail::Pull(_) => revert(&pending, "pull-failed", false, false, false, true),
        // Before any container changed: the files go back, nothing restarts.
        Fail::Hook(crate::hooks::Phase::Pre, _) => revert(&pending, "pre-deploy-failed", h.upped, false, false, true),
        // A failed gate, recorded as what it was.
        Fail::Hook(crate::hooks::Phase::Post, e) => {
            gangplank_core::actions::error("post-deploy", e.message);
            let mut steps = plan.on_failure.clone();
            for s in &mut steps {
                if let Step::Record { result, .. } = s {
                    *result = "post-deploy-failed".into();
                }
            }
            steps
        }
        Fail::Up(_) if !cfg.auto_rollback && !interrupted => vec![Step::Record {
            tag: cfg.tag.clone(),
            previous: prev.clone().unwrap_or_default(),
            result: "up-failed".into(),
            rolled_back_to: None,
            unlock: true,
        }],
        Fail::Up(_) => revert(&pending, "up-failed", true, !interrupted, false, true),
        Fail::Other(_) if interrupted => revert(&pending, "interrupted", h.upped, false, false, true),
        Fail::Other(_) => revert(&pending, if lost { "connection-lost" } else { "failed" }, h.upped, true, false, true),
    };
    // A rolling deploy that failed while every old container still ran: its new containers go, nothing restarts.
    let unrolls = !h.upped && !h.rolled.is_empty();
    let steps = if unrolls { crate::rolling::untouched_revert(&pending, &steps, h.rolled.clone()) } else { steps };
    let restarts = steps.iter().any(|s| matches!(s, Step::Up { .. } | Step::Down { .. }));
    let reverts = steps.iter().any(|s| matches!(s, Step::Restore { .. }));
    let failed_back = h.walk_revert(&steps);
    let unlock = h.release(connect);
    let back = reverts && failed_back.is_none();
    let prev_name = prev.clone().unwrap_or_default();
    let mut error = match (&failed_back, reverts, &prev) {
        (Some(b), _, _) => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}), and putting the previous release back failed too: {}",
            cfg.tag,
            b.message()
        ))
        .hint("the host keeps a journal of this deploy: the next run that takes the lock puts the previous release back first; or run the rollback action with `to-tag`"),
        (None, false, _) => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); auto-rollback is off, so it stays in place",
            cfg.tag
        ))
        .hint(format!("run the rollback action to go back to `{prev_name}`, or fix and deploy again")),
        (None, true, None) => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); it was the first deploy, so it was stopped and its files removed",
            cfg.tag
        ))
        .hint("read the messages and container logs above, fix the image or compose file and deploy again"),
        (None, true, Some(p)) if restarts => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); rolled back to `{p}`{}",
            cfg.tag,
            if interrupted { " and its files" } else { ", which is healthy" }
        ))
        .hint("read the messages and container logs above, fix the image and deploy again"),
        (None, true, Some(p)) if pre_hook => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); nothing was restarted: `{p}` kept serving and its files are back",
            cfg.tag
        ))
        .hint("read the hook's output above and fix it; what it changed before it failed (a migration part way) is not undone (docs/actions.md, \"Deploy hooks\")"),
        (None, true, Some(p)) if unrolls => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); its new containers were removed before taking any traffic, `{p}` kept serving untouched and its files are back",
            cfg.tag
        ))
        .hint("read the messages and container logs above, fix the image and deploy again"),
        (None, true, Some(p)) => Error::failed(format!(
            "deploy of `{}` on {label} failed ({reason}); `{p}` kept serving and its files are back",
            cfg.tag
        ))
        .hint("check that the tag was pushed and that the host can log in to the registry; nothing was restarted"),
    };
    if interrupted {
        error.class = Class::Interrupted;
        error.message = format!("interrupted: {}", error.message.replacen(&format!(" failed ({reason})"), "", 1));
        if back {
            error.hint = Some("the previous release and its files are back and the lock was released; run the deploy again when ready".into());
        }
    }
    if let Some(u) = unlock {
        error.message = format!("{}; {}", error.message, u.message);
        error.hint = u.hint;
    }
    HostFailure { error, rolled_back: back && (restarts || unrolls) && prev.is_some(), changed: true }
}

/// A host that deployed fine goes back because a later host failed.
fn undo_host(job: &Job, h: &mut Host, p: &Pending, connect: &mut Connect) -> Result<()> {
    let cfg = job.cfg;
    if crate::interrupted() {
        h.hurry = true;
        h.ex.set_interruptible(false);
    }
    let owner = new_owner(&cfg.meta, "rollback", p.previous_tag.as_deref().unwrap_or(""));
    let mut steps = vec![Step::Lock { owner, create: true }];
    match &p.previous_tag {
        Some(prev) => {
            let release = Release { tag: prev.clone(), compose_files: p.previous_compose_files.clone() };
            steps.push(Step::Restore { stamp: p.stamp.clone(), files: p.files.clone() });
            steps.push(Step::Up { release: release.clone(), services: p.services.clone() });
            if !h.hurry {
                steps.push(Step::Gate { tag: prev.clone() });
            }
            steps.push(Step::Commit {
                release,
                action: "rollback".into(),
                result: "rolled-back".into(),
                previous: p.tag.clone(),
                prune_files: vec![],
                repos: vec![],
            });
        }
        None => {
            steps.push(Step::Down { release: Release { tag: p.tag.clone(), compose_files: p.compose_files.clone() } });
            steps.push(Step::Restore { stamp: p.stamp.clone(), files: p.files.clone() });
            steps.push(Step::Record {
                tag: p.tag.clone(),
                previous: String::new(),
                result: "undone".into(),
                rolled_back_to: None,
                unlock: true,
            });
        }
    }
    let r = h.walk(&steps);
    let unlock = h.release(connect);
    match (r, unlock) {
        (Ok(()), None) => Ok(()),
        (Ok(()), Some(e)) => Err(e),
        (Err((_, f)), _) => Err(Error::failed(f.message())),
    }
}

/// Run a rollback on every host, `max-parallel` at a time: to `to-tag`, else `record_previous` (the record file's
/// `previous_tag`), else the host state's previous tag. Uses the compose files and `.env` on the host. The first
/// failure stops the run once its batch has ended: hosts already rolled back stay so, later hosts are not touched.
pub fn rollback(cfg: &RollbackConfig, record_previous: Option<String>, connect: &mut Connect) -> Outcome {
    let mut out = Outcome {
        record: new_record(&cfg.app, &cfg.ssh.hosts, &cfg.meta, "rollback"),
        rows: vec![],
        rolled_back: false,
        changed: false,
        error: None,
    };
    let wanted = cfg.to_tag.clone().or(record_previous);
    let batch = cfg.max_parallel.clamp(1, cfg.ssh.hosts.len().max(1));
    info(format!(
        "plan: roll back `{}` in {} to {} on {}, {}: lock (a never-deployed host is left as it is), \
         repair an interrupted deploy, compose up, health gate, record",
        cfg.app,
        cfg.app_dir,
        wanted.as_deref().map(|t| format!("`{t}`")).unwrap_or_else(|| "the previous tag".into()),
        cfg.ssh.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", "),
        if batch == 1 { "one host at a time".to_string() } else { format!("{batch} hosts at a time") }
    ));
    // Every host reached (its key checked) and its compose found before any host changes, as in a deploy.
    let mut reached = vec![];
    let mut errs = vec![];
    for spec in &cfg.ssh.hosts {
        match connect(spec).and_then(|mut ex| Ok((spec, detect_flavor(ex.as_mut(), spec)?, ex))) {
            Ok(r) => reached.push(r),
            Err(e) => errs.push(e),
        }
    }
    // A row for a host the rollback leaves as it is.
    let untouched = |spec: &HostSpec, why: &str| Row {
        host: spec.to_string(),
        previous_tag: String::new(),
        new_tag: wanted.clone().unwrap_or_default(),
        result: format!("not changed ({why})"),
        duration: Duration::ZERO,
    };
    if let Some(e) = combine(errs) {
        out.rows.extend(cfg.ssh.hosts.iter().map(|spec| untouched(spec, "a host could not be checked")));
        out.error = Some(e);
        return finish(out);
    }
    let connect = std::sync::Mutex::new(connect);
    let one = |(spec, flavor, ex): (&HostSpec, Flavor, Box<dyn Executor>)| {
        let start = Instant::now();
        let mut changed = false;
        let mut reconnect = |spec: &HostSpec| (connect.lock().unwrap_or_else(|p| p.into_inner()))(spec);
        let r = rollback_host(cfg, spec, ex, flavor, wanted.clone(), &mut reconnect, &mut changed);
        (r, changed, start.elapsed())
    };
    let mut reached = reached.into_iter();
    for hosts in cfg.ssh.hosts.chunks(batch) {
        let batch: Vec<_> = reached.by_ref().take(hosts.len()).collect();
        let ends: Vec<_> = if hosts.len() == 1 {
            let _g = group(&format!("roll back {}", hosts[0]));
            batch.into_iter().map(one).collect()
        } else {
            let _g = group(&format!("roll back {} hosts at once", hosts.len()));
            at_once(batch, |(spec, _, _)| spec.to_string(), one)
        };
        for (spec, (r, changed, took)) in hosts.iter().zip(ends) {
            out.changed |= changed;
            match r {
                Ok((from, to)) => {
                    if out.record.deployed_tag.is_empty() {
                        out.record.deployed_tag = to.clone();
                        out.record.previous_tag = from.clone();
                    }
                    out.rows.push(Row {
                        host: spec.to_string(),
                        previous_tag: from,
                        new_tag: to,
                        result: "rolled back".into(),
                        duration: took,
                    });
                }
                Err(e) => {
                    out.rows.push(Row {
                        host: spec.to_string(),
                        previous_tag: String::new(),
                        new_tag: wanted.clone().unwrap_or_default(),
                        result: "failed".into(),
                        duration: took,
                    });
                    out.error.get_or_insert(e);
                }
            }
        }
        if out.error.is_some() {
            let reached = out.rows.len();
            out.rows.extend(cfg.ssh.hosts[reached..].iter().map(|spec| untouched(spec, "an earlier host failed")));
            return finish(out);
        }
    }
    out.record.status = "rolled-back".into();
    out.rolled_back = true;
    finish(out)
}

/// Which compose the host has.
fn detect_flavor(ex: &mut dyn Executor, spec: &HostSpec) -> Result<Flavor> {
    let det = ex.check(&compose::detect(), "detecting compose")?;
    compose::parse_detect(&det.stdout_str()).ok_or_else(|| {
        Error::bad_input(format!("neither `docker compose` nor `docker-compose` is installed on {spec}"))
            .hint("install the compose plugin or docker-compose")
    })
}

fn rollback_host(
    cfg: &RollbackConfig,
    spec: &HostSpec,
    ex: Box<dyn Executor>,
    flavor: Flavor,
    wanted: Option<String>,
    connect: &mut Connect,
    changed: &mut bool,
) -> Result<(String, String)> {
    let ctx = Ctx {
        app: cfg.app.clone(),
        app_dir: cfg.app_dir.clone(),
        flavor,
        services: cfg.services.clone(),
        health_url: cfg.health_url.clone(),
        health_timeout: cfg.health_timeout,
        lock_timeout: cfg.lock_timeout,
        meta: cfg.meta.clone(),
        uploads: vec![],
        docker_config: None,
    };
    let mut h = Host::new(spec.clone(), ex, ctx, State::new(&cfg.app));
    let owner = new_owner(&cfg.meta, "rollback", wanted.as_deref().unwrap_or("previous"));
    let mut first = vec![];
    if cfg.force_unlock {
        first.push(Step::ForceUnlock);
    }
    first.push(Step::Lock { owner, create: false });
    if let Err((_, f)) = h.walk(&first) {
        let e = fail_error(f);
        return Err(with_unlock(e, h.release(connect)));
    }
    if h.absent {
        return Err(Error::bad_input(format!(
            "`{}` was never deployed to {spec} ({} does not exist): there is nothing to roll back to",
            cfg.app, cfg.app_dir
        ))
        .hint("check `app-name`/`app-dir`, or deploy first"));
    }
    let from = h.st.current_tag().unwrap_or("").to_string();
    let Some(target) = wanted.or_else(|| h.st.previous_tag().map(str::to_string)) else {
        let e = Error::bad_input(format!("there is no previous tag of `{}` on {spec} to roll back to", cfg.app))
            .hint("pass `to-tag` with the tag to go back to");
        return Err(with_unlock(e, h.release(connect)));
    };
    if let Err(e) = crate::validate_tag(&target, "to-tag") {
        return Err(with_unlock(e, h.release(connect)));
    }
    if let Some(login) = &cfg.login {
        if let Err((_, f)) = h.walk(&[Step::Login { login: login.clone() }]) {
            return Err(with_unlock(fail_error(f), h.release(connect)));
        }
    }
    info(format!("rolling back {spec} from `{}` to `{target}`", if from.is_empty() { "nothing" } else { &from }));
    let files =
        h.st.current
            .as_ref()
            .map(|c| c.compose_files.clone())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec!["compose.yaml".to_string()]);
    let release = Release { tag: target.clone(), compose_files: files };
    let steps = vec![
        Step::Up { release: release.clone(), services: cfg.services.clone() },
        Step::Gate { tag: target.clone() },
        Step::Commit {
            release,
            action: "rollback".into(),
            result: "rolled-back".into(),
            previous: from.clone(),
            prune_files: vec![],
            repos: vec![],
        },
    ];
    match h.walk(&steps) {
        Ok(()) => {
            *changed = true;
            Ok((from, target))
        }
        Err((_, f)) => {
            *changed |= h.upped;
            if matches!(&f, Fail::Other(e) if e.class == Class::Interrupted) {
                h.hurry = true;
                h.ex.set_interruptible(false);
            }
            let (result, e) = match f {
                Fail::Gate(g) => {
                    let e = Error::failed(format!("rollback to `{target}` on {spec} is not healthy: {}", g.reason))
                        .hint("read the container logs above; pass another `to-tag` to try an older version");
                    h.gate_failure = Some(g);
                    ("health-gate-failed", e)
                }
                Fail::Up(e) => (
                    "failed",
                    e.hint("if the image is no longer on the host, the registry must be reachable (or pass another `to-tag`)"),
                ),
                Fail::Pull(e) | Fail::Hook(_, e) | Fail::Other(e) => ("failed", e),
            };
            let record = vec![
                Step::ShowLogs,
                Step::Record {
                    tag: target.clone(),
                    previous: from,
                    result: result.into(),
                    rolled_back_to: None,
                    unlock: true,
                },
            ];
            h.walk_revert(&record);
            Err(with_unlock(e, h.release(connect)))
        }
    }
}

fn fail_error(f: Fail) -> Error {
    match f {
        Fail::Gate(g) => Error::failed(g.reason),
        Fail::Pull(e) | Fail::Up(e) | Fail::Hook(_, e) | Fail::Other(e) => e,
    }
}

fn with_unlock(mut e: Error, unlock: Option<Error>) -> Error {
    if let Some(u) = unlock {
        e.message = format!("{}; {}", e.message, u.message);
        e.hint = u.hint;
    }
    e
}
