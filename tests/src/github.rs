//! The GitHub REST API stand-in: just the endpoints gangplank calls, as GitHub documents them
//! (docs/testbed.md, "The GitHub API stand-in").
//!
//! - Actions secrets for the repository, environment and organization scopes: `public-key`, list (paginated),
//!   get, put, delete. Every scope holds a real X25519 key pair and every `encrypted_value` is opened as a
//!   libsodium sealed box; a wrong `key_id`, bad base64 or a box that does not open is a 422, as on GitHub.
//!   Organization secrets keep `visibility` and `selected_repository_ids`.
//! - Actions variables for the same scopes: create (POST, 201; 409 when it exists), update (PATCH, 204), get,
//!   list (paginated), delete.
//! - `GET /repos/{owner}/{repo}` (to resolve repository names to ids).
//! - Deployments and deployment statuses (`deployments.rs`-style, as GitHub's "REST API endpoints for
//!   deployments" and "… for deployment statuses" document them): create (201; `ref` required and must name
//!   a commit, else 422 "No ref found for"; `environment` defaults to `production`, `production_environment`
//!   to true for `production`, `transient_environment` to false), list newest first with the `sha`, `ref`,
//!   `task` and `environment` filters and pagination, get one (404 when unknown); statuses: create (201;
//!   `state` one of error, failure, inactive, in_progress, queued, pending, success, else 422; `description`
//!   at most 140 characters, else 422) and list newest first. `auto_inactive` (default true): a `success`
//!   status gives every earlier non-transient, non-production deployment of the same repository and
//!   environment whose latest status is `success` an `inactive` status, exactly as GitHub's reference documents
//!   it ("all prior non-transient, non-production environment deployments"). Production deployments are left
//!   alone, so a client that wants one active production deployment must mark the earlier ones itself.
//! - Workflow runs and their artifacts, as GitHub's "REST API endpoints for workflow runs" and "… for
//!   artifacts" document them, for a workflow that looks up an earlier run (the deploy job's rollback): list a
//!   repository's runs or one workflow's (`/actions/workflows/{id or file name}/runs`), newest first, with the
//!   `branch`, `event`, `status` (a status or a conclusion) and `head_sha` filters and pagination; get one run;
//!   list a run's artifacts (`name` filter); download one (`/actions/artifacts/{id}/zip`: 302 to a signed,
//!   unauthenticated blob URL, as GitHub redirects to its object store). Runs are what a test records
//!   ([`GitHub::record_run`]); artifacts are read from the folder an Actions runner's artifact server keeps
//!   (`<dir>/<run id>/<name>/<name>.zip`, act's `--artifact-server-path`), given by [`GitHub::set_artifact_dir`].
//! - Releases, release assets and their public downloads, and GitHub App installation tokens, for the release
//!   workflow: the "Releases and GitHub App installation tokens" section below.
//! - GitHub's rules: names of letters, digits and `_`, not starting with a digit or `GITHUB_` (422); 100
//!   repository secrets (422); 48 KB per value (422); 401 for a bad token; 404 for an unknown repository,
//!   environment or organization.
//! - Knobs for tests and benches: latency per request, scripted rate-limit answers (403/429 with
//!   `retry-after`, or `x-ratelimit-remaining: 0` with `x-ratelimit-reset`), and a concurrency cap: a request
//!   that arrives while `cap` others are in flight is answered with a secondary rate limit, so a client that
//!   keeps to the cap never sees one; a content-creation limit (at most N writes in any window, GitHub's is 80
//!   a minute), answered the same way with the time until the window has room; a token of the test's
//!   choosing (a canary). Every request is recorded with its timing, and the highest number in flight at
//!   once is kept.
//!
//! The server runs on its own thread and tokio runtime, so it serves blocking tests and async code alike,
//! and stops when the [`GitHub`] value drops.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::Engine as _;
use crypto_box::SecretKey;
use serde_json::{json, Value};

/// The token the stand-in accepts unless told otherwise.
pub const TOKEN: &str = "ghp_standin0000000000000000000000000000";

/// GitHub's limit on one secret or variable value: 48 KB.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;
/// GitHub's limit on repository secrets.
pub const MAX_REPO_SECRETS: usize = 100;

const TIMESTAMP: &str = "2026-01-01T00:00:00Z";

/// Where a secret or variable lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `owner/name`
    Repo(String),
    /// `owner/name` and environment name
    Env(String, String),
    /// organization login
    Org(String),
}

/// One scripted rate-limit answer, given to the next request that arrives.
#[derive(Debug, Clone)]
pub struct Limit {
    /// 403 or 429.
    pub status: u16,
    /// `retry-after` in seconds (secondary limits).
    pub retry_after: Option<u64>,
    /// Seconds from now for `x-ratelimit-reset`, sent with `x-ratelimit-remaining: 0` (primary limits).
    pub reset_in: Option<u64>,
}

impl Limit {
    /// A secondary rate limit: `status` (403 or 429) with `retry-after`.
    pub fn secondary(status: u16, retry_after: u64) -> Limit {
        Limit { status, retry_after: Some(retry_after), reset_in: None }
    }
    /// A primary rate limit: `status` with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `reset_in` from now.
    pub fn primary(status: u16, reset_in: u64) -> Limit {
        Limit { status, retry_after: None, reset_in: Some(reset_in) }
    }
}

/// One scripted fault, given to the next request that arrives (after rate limits).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and GitHub's error body, doing nothing.
    Status(u16),
    /// Answer 502 after this long, doing nothing (a client with a shorter timeout sees a timeout). Logged on
    /// arrival with status 0.
    Hang(Duration),
}

/// One deployment status, as listed.
#[derive(Debug, Clone)]
pub struct DeploymentStatus {
    pub id: u64,
    pub state: String,
    pub description: String,
    pub environment_url: String,
    pub log_url: String,
}

/// One deployment with its statuses (oldest first).
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: u64,
    pub repo: String,
    pub sha: String,
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub description: String,
    pub payload: Value,
    pub transient_environment: bool,
    pub production_environment: bool,
    pub statuses: Vec<DeploymentStatus>,
}

impl Deployment {
    /// The latest status's state, or `""` before the first status.
    pub fn state(&self) -> &str {
        self.statuses.last().map(|s| s.state.as_str()).unwrap_or("")
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    /// The request body as sent (JSON for writes), empty for reads.
    pub body: String,
    pub status: u16,
    /// Milliseconds since the stand-in started.
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// One workflow run, as a test records it ([`GitHub::record_run`]).
#[derive(Debug, Clone)]
pub struct WorkflowRun {
    pub id: u64,
    pub repo: String,
    /// The workflow's path in the repository, e.g. `.github/workflows/deploy.yml`.
    pub path: String,
    /// The workflow's `name:`.
    pub name: String,
    pub head_branch: String,
    pub head_sha: String,
    /// `push`, `workflow_dispatch`, `schedule`, …
    pub event: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// `success`, `failure`, `cancelled`, … once completed; empty before.
    pub conclusion: String,
}

/// A decrypted organization secret with its visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSecret {
    pub value: String,
    pub visibility: String,
    pub selected_repository_ids: Vec<u64>,
}

struct Stored {
    value: String,
    /// The `encrypted_value` as sent (base64), for interoperability checks with libsodium itself.
    sealed: String,
    visibility: Option<String>,
    selected: Vec<u64>,
}

struct Var {
    value: String,
    visibility: Option<String>,
    selected: Vec<u64>,
}

struct ScopeData {
    secret_key: SecretKey,
    key_id: String,
    secrets: BTreeMap<String, Stored>,
    variables: BTreeMap<String, Var>,
}

impl ScopeData {
    fn new(n: usize) -> ScopeData {
        let secret_key = SecretKey::generate(&mut rand::rngs::OsRng);
        ScopeData {
            secret_key,
            key_id: format!("{:019}", 3_380_204_578_043_523_366u64.wrapping_add(n as u64)),
            secrets: BTreeMap::new(),
            variables: BTreeMap::new(),
        }
    }
}

struct State {
    token: String,
    latency: Duration,
    cap: Option<usize>,
    /// GitHub's content-creation limit: at most this many writes in any window.
    write_limit: Option<(usize, Duration)>,
    writes: VecDeque<Instant>,
    limits: VecDeque<Limit>,
    repos: BTreeMap<String, u64>,
    environments: BTreeMap<String, Vec<String>>,
    orgs: Vec<String>,
    scopes: BTreeMap<Scope, ScopeData>,
    log: Vec<Recorded>,
    in_flight: usize,
    max_in_flight: usize,
    rate_limited: usize,
    next_id: u64,
    faults: VecDeque<Fault>,
    deployments: Vec<Deployment>,
    next_deployment_id: u64,
    runs: Vec<WorkflowRun>,
    artifact_dir: Option<std::path::PathBuf>,
    /// (run id, artifact name) by artifact id − [`FIRST_ARTIFACT_ID`]: ids are handed out as artifacts are seen.
    artifacts: Vec<(u64, String)>,
    /// The signature part of blob URLs, fixed per stand-in.
    blob_key: String,
    /// Apps, installation tokens and releases (the "Releases and GitHub App installation tokens" section).
    releases: ReleaseState,
}

const FIRST_ARTIFACT_ID: u64 = 4_400_000;

impl State {
    fn scope(&mut self, s: &Scope) -> &mut ScopeData {
        let n = self.scopes.len();
        self.scopes.entry(s.clone()).or_insert_with(|| ScopeData::new(n))
    }
}

type Shared = Arc<(Mutex<State>, Instant)>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running stand-in. Stops when dropped.
pub struct GitHub {
    url: String,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GitHub {
    /// Start on `127.0.0.1:<free port>` with repository `acme/app` (environment `production`), repository
    /// `acme/web`, and organization `acme`.
    pub fn start() -> GitHub {
        GitHub::start_on("127.0.0.1")
    }

    /// As [`GitHub::start`], listening on a free port of `ip`, an address of this machine (the namespaced
    /// hosts' bridge, so a runner inside a host reaches it).
    pub fn start_on(ip: &str) -> GitHub {
        let bind = format!("{ip}:0");
        let state = State {
            token: TOKEN.to_string(),
            latency: Duration::ZERO,
            cap: None,
            write_limit: None,
            writes: VecDeque::new(),
            limits: VecDeque::new(),
            repos: BTreeMap::new(),
            environments: BTreeMap::new(),
            orgs: Vec::new(),
            scopes: BTreeMap::new(),
            log: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            rate_limited: 0,
            next_id: 1_296_269,
            faults: VecDeque::new(),
            deployments: Vec::new(),
            next_deployment_id: 1_000,
            runs: Vec::new(),
            artifact_dir: None,
            artifacts: Vec::new(),
            blob_key: format!("{:016x}", rand::random::<u64>()),
            releases: ReleaseState::default(),
        };
        let shared: Shared = Arc::new((Mutex::new(state), Instant::now()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let served = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime for the GitHub stand-in");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::bind(&bind).await.unwrap_or_else(|e| panic!("bind {bind}: {e}"));
                addr_tx.send(listener.local_addr().expect("local addr")).expect("send addr");
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let s = served.clone();
                    async move { serve(s, req).await }
                });
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().expect("the GitHub stand-in did not start");
        let gh = GitHub { url: format!("http://{addr}"), shared, stop: Some(stop_tx), thread: Some(thread) };
        gh.add_repo("acme/app");
        gh.add_repo("acme/web");
        gh.add_environment("acme/app", "production");
        gh.add_org("acme");
        gh
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (what `api-url` should be set to).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token the stand-in accepts.
    pub fn token(&self) -> String {
        lock(&self.shared).token.clone()
    }

    /// Records a workflow run, or replaces the one with the same id (a run that went from `in_progress` to
    /// `completed`).
    pub fn record_run(&self, run: WorkflowRun) {
        let mut s = lock(&self.shared);
        s.runs.retain(|r| r.id != run.id);
        s.runs.push(run);
    }

    /// The folder of an artifact server (`<dir>/<run id>/<name>/<name>.zip`) whose artifacts the runs have.
    pub fn set_artifact_dir(&self, dir: &std::path::Path) {
        lock(&self.shared).artifact_dir = Some(dir.to_path_buf());
    }

    /// Accept this token instead (a canary, to look for it in everything a run prints and writes).
    pub fn set_token(&self, token: &str) {
        lock(&self.shared).token = token.to_string();
    }

    /// Add a repository `owner/name`; returns its id.
    pub fn add_repo(&self, full_name: &str) -> u64 {
        let mut s = lock(&self.shared);
        if let Some(id) = s.repos.get(full_name) {
            return *id;
        }
        s.next_id += 1;
        let id = s.next_id;
        s.repos.insert(full_name.to_string(), id);
        s.scope(&Scope::Repo(full_name.to_string()));
        id
    }

    /// The id of a repository added before.
    pub fn repo_id(&self, full_name: &str) -> Option<u64> {
        lock(&self.shared).repos.get(full_name).copied()
    }

    pub fn add_environment(&self, repo: &str, env: &str) {
        let mut s = lock(&self.shared);
        s.environments.entry(repo.to_string()).or_default().push(env.to_string());
        s.scope(&Scope::Env(repo.to_string(), env.to_string()));
    }

    pub fn add_org(&self, org: &str) {
        let mut s = lock(&self.shared);
        s.orgs.push(org.to_string());
        s.scope(&Scope::Org(org.to_string()));
    }

    /// Latency added to every request before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared).latency = latency;
    }

    /// At most `cap` requests in flight; one more is answered with a 403 secondary rate limit.
    pub fn set_concurrency_cap(&self, cap: Option<usize>) {
        lock(&self.shared).cap = cap;
    }

    /// At most `writes` POST/PUT/PATCH/DELETE requests in any `window` (GitHub's content-creation limit: 80 a
    /// minute); one more is answered with a 403 secondary rate limit whose `retry-after` is the time until
    /// the window has room again, rounded up to whole seconds.
    pub fn set_write_limit(&self, limit: Option<(usize, Duration)>) {
        let mut s = lock(&self.shared);
        s.write_limit = limit;
        s.writes.clear();
    }

    /// Answer the next request that arrives with this rate limit (queued: several calls, several requests).
    pub fn push_limit(&self, limit: Limit) {
        lock(&self.shared).limits.push_back(limit);
    }

    /// Answer the next request that arrives (after any rate limit) with this fault (queued, like limits).
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared).faults.push_back(fault);
    }

    /// Every deployment of a repository, oldest first, with its statuses.
    pub fn deployments(&self, repo: &str) -> Vec<Deployment> {
        lock(&self.shared).deployments.iter().filter(|d| d.repo == repo).cloned().collect()
    }

    /// Store a secret directly (as if set earlier through the UI).
    pub fn preset_secret(&self, scope: &Scope, name: &str, value: &str) {
        let mut s = lock(&self.shared);
        s.scope(scope).secrets.insert(
            name.to_string(),
            Stored { value: value.to_string(), sealed: String::new(), visibility: None, selected: Vec::new() },
        );
    }

    /// Store a variable directly.
    pub fn preset_variable(&self, scope: &Scope, name: &str, value: &str) {
        let mut s = lock(&self.shared);
        s.scope(scope)
            .variables
            .insert(name.to_string(), Var { value: value.to_string(), visibility: None, selected: Vec::new() });
    }

    /// Every secret of a scope, decrypted.
    pub fn secrets(&self, scope: &Scope) -> BTreeMap<String, String> {
        let mut s = lock(&self.shared);
        s.scope(scope).secrets.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()
    }

    pub fn secret(&self, scope: &Scope, name: &str) -> Option<String> {
        self.secrets(scope).remove(name)
    }

    /// An organization secret with its visibility and selected repository ids.
    pub fn org_secret(&self, org: &str, name: &str) -> Option<OrgSecret> {
        let mut s = lock(&self.shared);
        s.scope(&Scope::Org(org.to_string())).secrets.get(name).map(|v| OrgSecret {
            value: v.value.clone(),
            visibility: v.visibility.clone().unwrap_or_default(),
            selected_repository_ids: v.selected.clone(),
        })
    }

    /// The sealed box (base64, as sent) last stored for a secret.
    pub fn sealed_box(&self, scope: &Scope, name: &str) -> Option<String> {
        let mut s = lock(&self.shared);
        s.scope(scope).secrets.get(name).map(|v| v.sealed.clone()).filter(|b| !b.is_empty())
    }

    /// The scope's X25519 private key, base64: for opening boxes with libsodium itself in tests.
    pub fn private_key_base64(&self, scope: &Scope) -> String {
        let mut s = lock(&self.shared);
        base64::engine::general_purpose::STANDARD.encode(s.scope(scope).secret_key.to_bytes())
    }

    /// Every variable of a scope.
    pub fn variables(&self, scope: &Scope) -> BTreeMap<String, String> {
        let mut s = lock(&self.shared);
        s.scope(scope).variables.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()
    }

    pub fn variable(&self, scope: &Scope, name: &str) -> Option<String> {
        self.variables(scope).remove(name)
    }

    /// Visibility of an organization variable.
    pub fn org_variable_visibility(&self, org: &str, name: &str) -> Option<(String, Vec<u64>)> {
        let mut s = lock(&self.shared);
        s.scope(&Scope::Org(org.to_string()))
            .variables
            .get(name)
            .map(|v| (v.visibility.clone().unwrap_or_default(), v.selected.clone()))
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared).log.clone()
    }

    /// The highest number of requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        lock(&self.shared).max_in_flight
    }

    /// How many requests were answered with a rate limit (scripted or over the concurrency cap).
    pub fn rate_limited(&self) -> usize {
        lock(&self.shared).rate_limited
    }

    /// Forget the request log and counters (keeps secrets, variables and knobs).
    pub fn reset_stats(&self) {
        let mut s = lock(&self.shared);
        s.log.clear();
        s.max_in_flight = 0;
        s.rate_limited = 0;
    }
}

impl Drop for GitHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Body> {
    let mut r = Response::new(if status == 204 { Body::empty() } else { Body::from(body.to_string()) });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status != 204 {
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    }
    r
}

fn message(status: u16, msg: &str) -> Response<Body> {
    reply(status, json!({ "message": msg, "documentation_url": "https://docs.github.com/rest" }))
}

fn limited(limit: &Limit) -> Response<Body> {
    let primary = limit.reset_in.is_some();
    let mut r = message(
        limit.status,
        if primary {
            "API rate limit exceeded for user ID 1."
        } else {
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        },
    );
    let h = r.headers_mut();
    if let Some(s) = limit.retry_after {
        h.insert("retry-after", HeaderValue::from(s));
    }
    if let Some(s) = limit.reset_in {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        h.insert("x-ratelimit-limit", HeaderValue::from(5000u64));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
        h.insert("x-ratelimit-reset", HeaderValue::from(now + s));
    }
    r
}

/// Decrements the in-flight count however the handler ends.
struct InFlight(Shared);
impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).in_flight -= 1;
    }
}

/// A write over the content-creation limit: how long until the window has room. Otherwise counts it.
fn over_write_limit(s: &mut State, method: &Method, now: Instant) -> Option<Duration> {
    let (n, window) = s.write_limit?;
    if *method == Method::GET {
        return None;
    }
    while s.writes.front().is_some_and(|t| now.duration_since(*t) >= window) {
        s.writes.pop_front();
    }
    if s.writes.len() >= n {
        return Some(window.saturating_sub(now.duration_since(s.writes[0])));
    }
    s.writes.push_back(now);
    None
}

async fn serve(shared: Shared, req: axum::extract::Request) -> Response<Body> {
    let started = shared.1.elapsed();
    let arrived = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let over_cap;
    let latency;
    {
        let mut s = lock(&shared);
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        over_cap = s.cap.is_some_and(|c| s.in_flight > c);
        latency = s.latency;
    }
    let _guard = InFlight(shared.clone());
    let limit = if path.starts_with("/uploads/") { MAX_UPLOAD_BYTES } else { 4 << 20 };
    let body = axum::body::to_bytes(req.into_body(), limit).await.unwrap_or_default();
    // Open a sealed box before taking the lock: X25519 is slow in unoptimised test builds, and the
    // stand-in must not serialise requests that GitHub would serve in parallel.
    let opened = if method == Method::PUT { open_box(&shared, &path, &body) } else { None };
    let mut hang = None;
    let response = {
        let mut s = lock(&shared);
        if over_cap {
            s.rate_limited += 1;
            limited(&Limit::secondary(403, 1))
        } else if let Some(l) = s.limits.pop_front() {
            s.rate_limited += 1;
            limited(&l)
        } else if let Some(wait) = over_write_limit(&mut s, &method, arrived) {
            s.rate_limited += 1;
            limited(&Limit::secondary(403, wait.as_secs_f64().ceil().max(1.0) as u64))
        } else if let Some(f) = s.faults.pop_front() {
            match f {
                Fault::Status(code) => message(code, "Server Error"),
                Fault::Hang(d) => {
                    hang = Some(d);
                    message(502, "Server Error")
                }
            }
        } else if let Some(blob) = path.strip_prefix("/_blobs/artifacts/") {
            // The object store GitHub redirects artifact downloads to: no token, a signed URL.
            artifact_blob(&s, blob, &query)
        } else if let Some(r) = {
            // Releases and apps authenticate on their own (a JWT, an installation token, or none for a download).
            let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
            release_api(&mut s, &method, &path, &query, &headers, &body, &format!("http://{host}"))
        } {
            r
        } else if !authorized(&s, &headers) {
            message(401, "Bad credentials")
        } else {
            route(&mut s, &method, &path, &query, &body, opened)
        }
    };
    if let Some(d) = hang {
        // Logged now, with status 0 (no answer yet): a client that gives up first closes the connection, and
        // the server then drops this handler in the sleep below.
        lock(&shared).log.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status: 0,
            started_ms: started.as_millis() as u64,
            finished_ms: started.as_millis() as u64,
        });
        tokio::time::sleep(d).await;
        return response;
    }
    // Latency is the time from arrival to answer, whatever the work took, so timings do not depend on
    // how fast the stand-in itself is.
    if !latency.is_zero() {
        tokio::time::sleep_until((arrived + latency).into()).await;
    }
    let mut s = lock(&shared);
    let finished = shared.1.elapsed();
    s.log.push(Recorded {
        method: method.to_string(),
        path,
        query,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: response.status().as_u16(),
        started_ms: started.as_millis() as u64,
        finished_ms: finished.as_millis() as u64,
    });
    response
}

fn authorized(s: &State, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")).unwrap_or("");
    token == s.token
}

/// GitHub's rule for secret and variable names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !b[0].is_ascii_digit()
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

fn page_params(query: &str) -> (usize, usize) {
    let mut per_page = 30;
    let mut page = 1;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("per_page", v)) => per_page = v.parse().unwrap_or(30).clamp(1, 100),
            Some(("page", v)) => page = v.parse().unwrap_or(1).max(1),
            _ => {}
        }
    }
    (per_page, page)
}

fn paginate(path: &str, query: &str, field: &str, items: Vec<Value>) -> Response<Body> {
    let (per_page, page) = page_params(query);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut r = reply(200, json!({ "total_count": total, field: slice }));
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{path}?per_page={per_page}&page={}>; rel=\"next\"", page + 1));
        links.push(format!("<{path}?per_page={per_page}&page={last}>; rel=\"last\""));
    }
    if page > 1 {
        links.push(format!("<{path}?per_page={per_page}&page={}>; rel=\"prev\"", page - 1));
        links.push(format!("<{path}?per_page={per_page}&page=1>; rel=\"first\""));
    }
    if !links.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
            r.headers_mut().insert("link", v);
        }
    }
    r
}

/// The result of opening a PUT's sealed box: the plaintext, or why it did not open.
type Opened = Option<Result<Vec<u8>, &'static str>>;

fn open_box(shared: &Shared, path: &str, body: &[u8]) -> Opened {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let scope = match segs.as_slice() {
        ["repos", o, r, "actions", "secrets", _] => Scope::Repo(format!("{o}/{r}")),
        ["repos", o, r, "environments", e, "secrets", _] => Scope::Env(format!("{o}/{r}"), e.to_string()),
        ["orgs", org, "actions", "secrets", _] => Scope::Org(org.to_string()),
        _ => return None,
    };
    let body: Value = serde_json::from_slice(body).ok()?;
    let enc = body.get("encrypted_value")?.as_str()?;
    let key = lock(shared).scopes.get(&scope)?.secret_key.clone();
    let Ok(sealed) = base64::engine::general_purpose::STANDARD.decode(enc) else {
        return Some(Err("Bad request: encrypted_value is not valid base64."));
    };
    Some(key.unseal(&sealed).map_err(|_| "Bad request: encrypted_value could not be decrypted."))
}

fn route(s: &mut State, method: &Method, path: &str, query: &str, body: &[u8], opened: Opened) -> Response<Body> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || message(404, "Not Found");
    // (scope, "secrets"|"variables", rest)
    let (scope, kind, rest): (Scope, &str, &[&str]) = match segs.as_slice() {
        ["repos", o, r] if method == Method::GET => {
            let full = format!("{o}/{r}");
            return match s.repos.get(&full) {
                Some(id) => reply(
                    200,
                    json!({ "id": id, "name": r, "full_name": full, "owner": { "login": o }, "private": true }),
                ),
                None => not_found(),
            };
        }
        ["repos", o, r, "deployments", rest @ ..] => {
            let full = format!("{o}/{r}");
            if !s.repos.contains_key(&full) {
                return not_found();
            }
            return deployments(s, method, &full, path, rest, query, body);
        }
        ["repos", o, r, "actions", "runs" | "workflows" | "artifacts", ..] if method == Method::GET => {
            let full = format!("{o}/{r}");
            if !s.repos.contains_key(&full) {
                return not_found();
            }
            return actions_runs(s, &full, path, &segs[4..], query);
        }
        ["repos", o, r, "actions", kind, rest @ ..] => (Scope::Repo(format!("{o}/{r}")), *kind, rest),
        ["repos", o, r, "environments", e, kind, rest @ ..] => {
            (Scope::Env(format!("{o}/{r}"), e.to_string()), *kind, rest)
        }
        ["orgs", org, "actions", kind, rest @ ..] => (Scope::Org(org.to_string()), *kind, rest),
        _ => return not_found(),
    };
    let exists = match &scope {
        Scope::Repo(r) => s.repos.contains_key(r),
        Scope::Env(r, e) => s.repos.contains_key(r) && s.environments.get(r).is_some_and(|es| es.contains(e)),
        Scope::Org(o) => s.orgs.contains(o),
    };
    if !exists {
        return not_found();
    }
    let is_org = matches!(scope, Scope::Org(_));
    let body_json: Value =
        if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
    match (kind, rest, method.clone()) {
        ("secrets", ["public-key"], Method::GET) => {
            let d = s.scope(&scope);
            let key = base64::engine::general_purpose::STANDARD.encode(d.secret_key.public_key().as_bytes());
            reply(200, json!({ "key_id": d.key_id, "key": key }))
        }
        ("secrets", [], Method::GET) => {
            let items = s.scope(&scope).secrets.iter().map(|(n, v)| secret_json(n, v, is_org)).collect();
            paginate(path, query, "secrets", items)
        }
        ("secrets", [name], Method::GET) => match s.scope(&scope).secrets.get(*name) {
            Some(v) => reply(200, secret_json(name, v, is_org)),
            None => not_found(),
        },
        ("secrets", [name], Method::DELETE) => match s.scope(&scope).secrets.remove(*name) {
            Some(_) => reply(204, Value::Null),
            None => not_found(),
        },
        ("secrets", [name], Method::PUT) => put_secret(s, &scope, name, &body_json, opened),
        ("variables", [], Method::GET) => {
            let items = s.scope(&scope).variables.iter().map(|(n, v)| variable_json(n, v, is_org)).collect();
            paginate(path, query, "variables", items)
        }
        ("variables", [], Method::POST) => {
            let name = body_json.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let Some(value) = body_json.get("value").and_then(Value::as_str) else {
                return message(422, "Invalid request.\n\n\"value\" wasn't supplied.");
            };
            if !valid_name(&name) {
                return message(422, "Failed to create variable. Variable names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_). Spaces are not allowed. Must start with a letter ([a-z], [A-Z]) or underscores (_).");
            }
            if value.len() > MAX_VALUE_BYTES {
                return message(422, "Variable value is too large.");
            }
            let (visibility, selected) = match org_visibility(s, is_org, &body_json) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let d = s.scope(&scope);
            if d.variables.contains_key(&name) {
                return message(409, "Already exists - Variable already exists");
            }
            d.variables.insert(name, Var { value: value.to_string(), visibility, selected });
            reply(201, json!({}))
        }
        ("variables", [name], Method::GET) => match s.scope(&scope).variables.get(*name) {
            Some(v) => reply(200, variable_json(name, v, is_org)),
            None => not_found(),
        },
        ("variables", [name], Method::PATCH) => {
            let value = body_json.get("value").and_then(Value::as_str).map(str::to_string);
            if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
                return message(422, "Variable value is too large.");
            }
            let vis = if is_org && body_json.get("visibility").is_some() {
                match org_visibility(s, is_org, &body_json) {
                    Ok(v) => Some(v),
                    Err(r) => return r,
                }
            } else {
                None
            };
            let d = s.scope(&scope);
            match d.variables.get_mut(*name) {
                Some(v) => {
                    if let Some(value) = value {
                        v.value = value;
                    }
                    if let Some((visibility, selected)) = vis {
                        v.visibility = visibility;
                        v.selected = selected;
                    }
                    reply(204, Value::Null)
                }
                None => not_found(),
            }
        }
        ("variables", [name], Method::DELETE) => match s.scope(&scope).variables.remove(*name) {
            Some(_) => reply(204, Value::Null),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// GitHub's states for a deployment status.
const DEPLOYMENT_STATES: [&str; 7] = ["error", "failure", "inactive", "in_progress", "queued", "pending", "success"];

fn validation_failed(resource: &str, field: &str, msg: &str) -> Response<Body> {
    reply(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [{ "resource": resource, "code": "custom", "field": field, "message": msg }],
            "documentation_url": "https://docs.github.com/rest/deployments",
        }),
    )
}

fn deployment_json(d: &Deployment) -> Value {
    json!({
        "id": d.id,
        "node_id": format!("DE_{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.environment,
        "environment": d.environment,
        "description": d.description,
        "creator": { "login": "github-actions[bot]", "type": "Bot" },
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
    })
}

fn status_json(d: &Deployment, st: &DeploymentStatus) -> Value {
    json!({
        "id": st.id,
        "node_id": format!("DES_{}", st.id),
        "state": st.state,
        "description": st.description,
        "environment": d.environment,
        "target_url": st.log_url,
        "log_url": st.log_url,
        "environment_url": st.environment_url,
        "creator": { "login": "github-actions[bot]", "type": "Bot" },
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    })
}

/// A JSON array answer, paginated as GitHub does (`per_page`, `page`, `Link`).
fn paginate_array(path: &str, query: &str, items: Vec<Value>) -> Response<Body> {
    let (per_page, page) = page_params(query);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut r = reply(200, Value::Array(slice));
    if page < last {
        let link = format!(
            "<{path}?per_page={per_page}&page={}>; rel=\"next\", <{path}?per_page={per_page}&page={last}>; rel=\"last\"",
            page + 1
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert("link", v);
        }
    }
    r
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| unescape(v)))
}

/// A query value as sent: `%XX` and `+` decoded.
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run_json(run: &WorkflowRun) -> Value {
    let file = run.path.rsplit('/').next().unwrap_or(&run.path);
    json!({
        "id": run.id,
        "name": run.name,
        "display_title": run.name,
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.path,
        "run_number": run.id,
        "run_attempt": 1,
        "event": run.event,
        "status": run.status,
        "conclusion": if run.conclusion.is_empty() { Value::Null } else { json!(run.conclusion) },
        "workflow_id": workflow_id(file),
        "url": format!("/repos/{}/actions/runs/{}", run.repo, run.id),
        "html_url": format!("https://github.com/{}/actions/runs/{}", run.repo, run.id),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "repository": { "full_name": run.repo },
    })
}

/// A workflow's numeric id, derived from its file name (GitHub accepts either in the URL).
fn workflow_id(file: &str) -> u64 {
    161_335 + file.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1_000_000
}

/// The artifacts of run `run` in the artifact server's folder, each given an id the first time it is seen.
fn run_artifacts(s: &mut State, run: u64) -> Vec<(u64, String, u64)> {
    let Some(dir) = s.artifact_dir.clone() else { return vec![] };
    let mut names: Vec<String> = std::fs::read_dir(dir.join(run.to_string()))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = vec![];
    for name in names {
        let zip = dir.join(run.to_string()).join(&name).join(format!("{name}.zip"));
        let Ok(meta) = std::fs::metadata(&zip) else { continue };
        let index = match s.artifacts.iter().position(|(r, n)| *r == run && *n == name) {
            Some(i) => i,
            None => {
                s.artifacts.push((run, name.clone()));
                s.artifacts.len() - 1
            }
        };
        out.push((FIRST_ARTIFACT_ID + index as u64, name, meta.len()));
    }
    out
}

fn actions_runs(s: &mut State, repo: &str, path: &str, rest: &[&str], query: &str) -> Response<Body> {
    let not_found = || message(404, "Not Found");
    let list = |s: &State, workflow: Option<&str>| {
        let filter = |name: &str| query_param(query, name);
        let (branch, event, status, sha) = (filter("branch"), filter("event"), filter("status"), filter("head_sha"));
        let mut runs: Vec<&WorkflowRun> = s
            .runs
            .iter()
            .filter(|r| r.repo == repo)
            .filter(|r| {
                workflow.is_none_or(|w| {
                    let file = r.path.rsplit('/').next().unwrap_or(&r.path);
                    w == file || w == workflow_id(file).to_string()
                })
            })
            .filter(|r| branch.as_ref().is_none_or(|b| *b == r.head_branch))
            .filter(|r| event.as_ref().is_none_or(|e| *e == r.event))
            .filter(|r| status.as_ref().is_none_or(|st| *st == r.status || *st == r.conclusion))
            .filter(|r| sha.as_ref().is_none_or(|h| *h == r.head_sha))
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.id));
        runs.into_iter().map(run_json).collect::<Vec<_>>()
    };
    match rest {
        ["runs"] => paginate(path, query, "workflow_runs", list(s, None)),
        ["workflows", workflow, "runs"] => {
            let known = s.runs.iter().any(|r| {
                let file = r.path.rsplit('/').next().unwrap_or(&r.path);
                r.repo == repo && (*workflow == file || *workflow == workflow_id(file).to_string())
            });
            if !known {
                return not_found();
            }
            paginate(path, query, "workflow_runs", list(s, Some(workflow)))
        }
        ["runs", id] => match s.runs.iter().find(|r| r.repo == repo && r.id.to_string() == *id) {
            Some(r) => reply(200, run_json(r)),
            None => not_found(),
        },
        ["runs", id, "artifacts"] => {
            let Some(run) = s.runs.iter().find(|r| r.repo == repo && r.id.to_string() == *id).cloned() else {
                return not_found();
            };
            let name = query_param(query, "name");
            let items = run_artifacts(s, run.id)
                .into_iter()
                .filter(|(_, n, _)| name.as_ref().is_none_or(|want| want == n))
                .map(|(aid, n, size)| artifact_json(repo, &run, aid, &n, size))
                .collect();
            paginate(path, query, "artifacts", items)
        }
        ["artifacts", id, "zip"] => {
            let Some(index) = id.parse::<u64>().ok().and_then(|i| i.checked_sub(FIRST_ARTIFACT_ID)) else {
                return not_found();
            };
            let Some((run, _)) = s.artifacts.get(index as usize) else { return not_found() };
            if !s.runs.iter().any(|r| r.repo == repo && r.id == *run) {
                return not_found();
            }
            let mut r = reply(204, Value::Null);
            *r.status_mut() = StatusCode::FOUND;
            let location = format!("/_blobs/artifacts/{}.zip?sig={}", FIRST_ARTIFACT_ID + index, s.blob_key);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        _ => not_found(),
    }
}

fn artifact_json(repo: &str, run: &WorkflowRun, id: u64, name: &str, size: u64) -> Value {
    json!({
        "id": id,
        "node_id": format!("MDg6QXJ0aWZhY3Q{id}"),
        "name": name,
        "size_in_bytes": size,
        "url": format!("/repos/{repo}/actions/artifacts/{id}"),
        "archive_download_url": format!("/repos/{repo}/actions/artifacts/{id}/zip"),
        "expired": false,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "expires_at": "2026-04-01T00:00:00Z",
        "workflow_run": { "id": run.id, "head_branch": run.head_branch, "head_sha": run.head_sha },
    })
}

/// `GET /_blobs/artifacts/<id>.zip?sig=…`: the zip itself, for the signature the redirect handed out.
fn artifact_blob(s: &State, blob: &str, query: &str) -> Response<Body> {
    let index =
        blob.strip_suffix(".zip").and_then(|i| i.parse::<u64>().ok()).and_then(|i| i.checked_sub(FIRST_ARTIFACT_ID));
    if query_param(query, "sig").as_deref() != Some(s.blob_key.as_str()) {
        return message(403, "Server failed to authenticate the request.");
    }
    let Some((run, name)) = index.and_then(|i| s.artifacts.get(i as usize)) else {
        return message(404, "The specified blob does not exist.");
    };
    let Some(dir) = &s.artifact_dir else { return message(404, "The specified blob does not exist.") };
    match std::fs::read(dir.join(run.to_string()).join(name).join(format!("{name}.zip"))) {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/zip"));
            r
        }
        Err(_) => message(404, "The specified blob does not exist."),
    }
}

/// `/repos/{owner}/{repo}/deployments…` of an existing repository.
fn deployments(
    s: &mut State,
    method: &Method,
    repo: &str,
    path: &str,
    rest: &[&str],
    query: &str,
    body: &[u8],
) -> Response<Body> {
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
    let find = |s: &mut State, id: &str| {
        let id: u64 = id.parse().ok()?;
        s.deployments.iter().position(|d| d.repo == repo && d.id == id)
    };
    match (rest, method.clone()) {
        ([], Method::POST) => {
            let Some(git_ref) = body.get("ref").and_then(Value::as_str) else {
                return message(422, "Invalid request.\n\n\"ref\" wasn't supplied.");
            };
            // The stand-in has no git history: a full commit SHA or the default branch is a ref it knows.
            let is_sha = git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_sha && git_ref != "main" {
                return message(422, &format!("No ref found for: {git_ref}"));
            }
            for field in ["auto_merge", "transient_environment", "production_environment"] {
                if body.get(field).is_some_and(|v| !v.is_boolean()) {
                    return message(
                        422,
                        &format!("Invalid request.\n\nFor '{field}', {} is not a boolean.", body[field]),
                    );
                }
            }
            if let Some(c) = body.get("required_contexts") {
                if !c.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return message(422, "Invalid request.\n\nFor 'required_contexts', it is not an array of strings.");
                }
            }
            let payload = match body.get("payload") {
                None | Some(Value::Null) => json!({}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(Value::String(t)) => match serde_json::from_str::<Value>(t) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => return message(422, "Invalid request.\n\nFor 'payload', it is not a JSON object."),
                },
                Some(_) => return message(422, "Invalid request.\n\nFor 'payload', it is not an object or a string."),
            };
            let environment = body.get("environment").and_then(Value::as_str).unwrap_or("production").to_string();
            s.next_deployment_id += 1;
            let d = Deployment {
                id: s.next_deployment_id,
                repo: repo.to_string(),
                sha: if is_sha { git_ref.to_ascii_lowercase() } else { "0".repeat(40) },
                git_ref: git_ref.to_string(),
                task: body.get("task").and_then(Value::as_str).unwrap_or("deploy").to_string(),
                production_environment: body
                    .get("production_environment")
                    .and_then(Value::as_bool)
                    .unwrap_or(environment == "production"),
                transient_environment: body.get("transient_environment").and_then(Value::as_bool).unwrap_or(false),
                environment,
                description: body.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
                payload,
                statuses: Vec::new(),
            };
            let j = deployment_json(&d);
            s.deployments.push(d);
            reply(201, j)
        }
        ([], Method::GET) => {
            let filters: Vec<(&str, String)> = ["sha", "ref", "task", "environment"]
                .into_iter()
                .filter_map(|k| query_param(query, k).map(|v| (k, v)))
                .collect();
            let items = s
                .deployments
                .iter()
                .rev()
                .filter(|d| d.repo == repo)
                .filter(|d| {
                    filters.iter().all(|(k, v)| match *k {
                        "sha" => &d.sha == v,
                        "ref" => &d.git_ref == v,
                        "task" => &d.task == v,
                        _ => &d.environment == v,
                    })
                })
                .map(deployment_json)
                .collect();
            paginate_array(path, query, items)
        }
        ([id], Method::GET) => match find(s, id) {
            Some(i) => reply(200, deployment_json(&s.deployments[i])),
            None => message(404, "Not Found"),
        },
        ([id, "statuses"], Method::GET) => match find(s, id) {
            Some(i) => {
                let d = &s.deployments[i];
                paginate_array(path, query, d.statuses.iter().rev().map(|st| status_json(d, st)).collect())
            }
            None => message(404, "Not Found"),
        },
        ([id, "statuses"], Method::POST) => {
            let Some(i) = find(s, id) else { return message(404, "Not Found") };
            let Some(state) = body.get("state").and_then(Value::as_str) else {
                return message(422, "Invalid request.\n\n\"state\" wasn't supplied.");
            };
            if !DEPLOYMENT_STATES.contains(&state) {
                return validation_failed("DeploymentStatus", "state", "state is not included in the list");
            }
            let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let description = text("description");
            if description.chars().count() > 140 {
                return validation_failed(
                    "DeploymentStatus",
                    "description",
                    "description is too long (maximum is 140 characters)",
                );
            }
            let log_url = if body.get("log_url").is_some() { text("log_url") } else { text("target_url") };
            let auto_inactive = body.get("auto_inactive").and_then(Value::as_bool).unwrap_or(true);
            if let Some(env) = body.get("environment").and_then(Value::as_str) {
                s.deployments[i].environment = env.to_string();
            }
            s.next_deployment_id += 1;
            let st = DeploymentStatus {
                id: s.next_deployment_id,
                state: state.to_string(),
                description,
                environment_url: text("environment_url"),
                log_url,
            };
            let j = status_json(&s.deployments[i], &st);
            s.deployments[i].statuses.push(st);
            if state == "success" && auto_inactive {
                let (this, env) = (s.deployments[i].id, s.deployments[i].environment.clone());
                for k in 0..s.deployments.len() {
                    let d = &s.deployments[k];
                    let prior = d.repo == repo
                        && d.id < this
                        && d.environment == env
                        && !d.transient_environment
                        && !d.production_environment;
                    if prior && d.state() == "success" {
                        s.next_deployment_id += 1;
                        let id = s.next_deployment_id;
                        s.deployments[k].statuses.push(DeploymentStatus {
                            id,
                            state: "inactive".into(),
                            description: String::new(),
                            environment_url: String::new(),
                            log_url: String::new(),
                        });
                    }
                }
            }
            reply(201, j)
        }
        _ => message(404, "Not Found"),
    }
}

fn secret_json(name: &str, v: &Stored, is_org: bool) -> Value {
    let mut j = json!({ "name": name, "created_at": TIMESTAMP, "updated_at": TIMESTAMP });
    if is_org {
        j["visibility"] = json!(v.visibility.clone().unwrap_or_else(|| "all".into()));
    }
    j
}

fn variable_json(name: &str, v: &Var, is_org: bool) -> Value {
    let mut j = json!({ "name": name, "value": v.value, "created_at": TIMESTAMP, "updated_at": TIMESTAMP });
    if is_org {
        j["visibility"] = json!(v.visibility.clone().unwrap_or_else(|| "all".into()));
    }
    j
}

/// `visibility` and `selected_repository_ids` of an organization secret or variable.
#[allow(clippy::result_large_err)]
fn org_visibility(s: &State, is_org: bool, body: &Value) -> Result<(Option<String>, Vec<u64>), Response<Body>> {
    if !is_org {
        return Ok((None, Vec::new()));
    }
    let visibility = body.get("visibility").and_then(Value::as_str).unwrap_or("");
    if !["all", "private", "selected"].contains(&visibility) {
        return Err(message(422, "Invalid request.\n\nNo subschema in \"anyOf\" matched. \"visibility\" must be one of all, private, selected."));
    }
    let ids: Vec<u64> = body
        .get("selected_repository_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if visibility == "selected" {
        let known: Vec<u64> = s.repos.values().copied().collect();
        if let Some(bad) = ids.iter().find(|i| !known.contains(i)) {
            return Err(message(422, &format!("Repository {bad} is not accessible")));
        }
    }
    Ok((Some(visibility.to_string()), if visibility == "selected" { ids } else { Vec::new() }))
}

fn put_secret(s: &mut State, scope: &Scope, name: &str, body: &Value, opened: Opened) -> Response<Body> {
    if !valid_name(name) {
        return message(422, "Failed to add secret. Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_). Spaces are not allowed. Must start with a letter ([a-z], [A-Z]) or underscores (_).");
    }
    let (Some(enc), Some(key_id)) =
        (body.get("encrypted_value").and_then(Value::as_str), body.get("key_id").and_then(Value::as_str))
    else {
        return message(422, "Invalid request.\n\n\"encrypted_value\" and \"key_id\" are required.");
    };
    let is_org = matches!(scope, Scope::Org(_));
    let (visibility, selected) = match org_visibility(s, is_org, body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = s.scope(scope);
    if key_id != d.key_id {
        return message(422, "Bad request: key_id does not match the current public key.");
    }
    // Opened before the lock was taken (see `open_box`); opened here when it was not.
    let opened = opened.unwrap_or_else(|| {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(enc)
            .map_err(|_| "Bad request: encrypted_value is not valid base64.")?;
        d.secret_key.unseal(&sealed).map_err(|_| "Bad request: encrypted_value could not be decrypted.")
    });
    let plain = match opened {
        Ok(p) => p,
        Err(msg) => return message(422, msg),
    };
    if plain.len() > MAX_VALUE_BYTES {
        return message(422, "Secret value is too large: the limit is 48 KB.");
    }
    let Ok(value) = String::from_utf8(plain) else {
        return message(422, "Bad request: the decrypted value is not UTF-8.");
    };
    let created = !d.secrets.contains_key(name);
    if created && matches!(scope, Scope::Repo(_)) && d.secrets.len() >= MAX_REPO_SECRETS {
        return message(422, "Secret limit reached: a repository can have up to 100 secrets.");
    }
    d.secrets.insert(name.to_string(), Stored { value, sealed: enc.to_string(), visibility, selected });
    if created {
        reply(201, json!({}))
    } else {
        reply(204, Value::Null)
    }
}

// ================================================================================================================
// Releases and GitHub App installation tokens (.github/workflows/release.yml, docs/releasing.md)
//
// What the release workflow calls, as GitHub documents it:
//
// - A GitHub App's installation token ("REST API endpoints for GitHub Apps"), as actions/create-github-app-token
//   mints it: `GET /repos/{owner}/{repo}/installation` and `POST /app/installations/{id}/access_tokens`, each
//   authenticated by a JWT (RS256, `iss` the app's client ID, `iat`/`exp` around now, at most 10 minutes apart)
//   that is verified against the app's public key; the token may ask for a subset of the app's permissions
//   (`permissions`) and of its repositories (`repositories`), else 422. `DELETE /installation/token` revokes it.
//   An installation token is accepted wherever the stand-in's own token is accepted, for its repositories.
// - Releases ("REST API endpoints for releases" and "… for release assets"): create (201; `tag_name` required;
//   422 `already_exists` for a second release of one tag), list (paginated, drafts included: the caller can
//   push), get by id, get by tag (published only, as GitHub answers 404 for a draft), update (`PATCH`: name,
//   body, draft, prerelease, make_latest); upload an asset to the release's `upload_url` (`POST …?name=`, raw
//   body, `Content-Type` required; 422 `already_exists` for a name taken), each asset with `state: uploaded`,
//   `size`, `digest` (`sha256:…`) and `browser_download_url`. `make_latest` (default true for a published
//   release): `true` makes it the repository's only latest release.
// - The public download of a published release's asset, `GET /{owner}/{repo}/releases/download/{tag}/{name}`
//   (what actions/install.sh fetches; `GANGPLANK_DOWNLOAD_URL` = `<url>/{owner}/{repo}/releases/download`).
//   Served directly: GitHub answers with a redirect to its object store, which install.sh follows over https only
//   and refuses over plain http (loopback), so the stand-in gives the bytes at once. 404 for a draft.
//
// GitHub creates a missing tag from `target_commitish` when a release is published; the stand-in has no git, so
// with a git folder set ([`GitHub::set_release_git_dir`]) publishing a release whose tag that folder lacks is a
// 422 instead: the release workflow always pushes its tag first, and the stand-in holds it to that.
// ================================================================================================================

/// A GitHub App as the stand-in knows it: what it may be granted and where it is installed.
#[derive(Debug, Clone)]
pub struct App {
    /// The app's client ID (`Iv23…`), the JWT's `iss`.
    pub client_id: String,
    pub slug: String,
    /// The app's public key, as a DER `RSAPublicKey` (PKCS#1; `openssl rsa -RSAPublicKey_out -outform DER`).
    pub public_key_der: Vec<u8>,
    /// The app's permissions, e.g. `{"contents": "write", "workflows": "write", "metadata": "read"}`.
    pub permissions: BTreeMap<String, String>,
    /// `owner/name` of each repository the installation covers.
    pub repositories: Vec<String>,
}

/// One installation token handed out.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    pub token: String,
    pub client_id: String,
    /// The permissions it was minted with (the app's own when the request named none).
    pub permissions: BTreeMap<String, String>,
    pub repositories: Vec<String>,
    pub revoked: bool,
}

/// One release asset.
#[derive(Debug, Clone)]
pub struct ReleaseAsset {
    pub id: u64,
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One release, as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: u64,
    pub repo: String,
    pub tag_name: String,
    pub target_commitish: String,
    pub name: String,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    /// The repository's latest release (`make_latest`).
    pub latest: bool,
    pub assets: Vec<ReleaseAsset>,
}

#[derive(Default)]
struct ReleaseState {
    apps: Vec<(App, u64)>,
    tokens: Vec<InstallationToken>,
    releases: Vec<Release>,
    next_id: u64,
    git_dirs: BTreeMap<String, std::path::PathBuf>,
}

/// The installation id of the `n`th app.
const FIRST_INSTALLATION_ID: u64 = 51_000_000;
/// Ids of releases and assets.
const FIRST_RELEASE_ID: u64 = 190_000_000;
/// Uploads are release archives: larger than any other body the stand-in takes.
const MAX_UPLOAD_BYTES: usize = 64 << 20;

impl GitHub {
    /// Registers a GitHub App installed on `app.repositories`; returns its installation id.
    pub fn add_app(&self, app: App) -> u64 {
        let mut s = lock(&self.shared);
        let id = FIRST_INSTALLATION_ID + s.releases.apps.len() as u64;
        s.releases.apps.push((app, id));
        id
    }

    /// Every installation token minted so far, in order.
    pub fn installation_tokens(&self) -> Vec<InstallationToken> {
        lock(&self.shared).releases.tokens.clone()
    }

    /// The releases of `repo`, in the order they were created.
    pub fn releases(&self, repo: &str) -> Vec<Release> {
        lock(&self.shared).releases.releases.iter().filter(|r| r.repo == repo).cloned().collect()
    }

    /// The git folder (bare or not) holding `repo`'s tags: a release is published only when its tag is there.
    pub fn set_release_git_dir(&self, repo: &str, dir: &std::path::Path) {
        lock(&self.shared).releases.git_dirs.insert(repo.to_string(), dir.to_path_buf());
    }
}

/// The release endpoints, the app endpoints and the public download, each with its own authentication; `None`
/// for any other path.
fn release_api(
    s: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    base: &str,
) -> Option<Response<Body>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("token ")))
        .unwrap_or("")
        .to_string();
    let json_body = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match (method.clone(), segs.as_slice()) {
        (Method::GET, [o, r, "releases", "download", tag, name]) => Some(download(s, &format!("{o}/{r}"), tag, name)),
        (Method::GET, ["repos", o, r, "installation"]) => Some(match app_from_jwt(s, &bearer) {
            Err(e) => e,
            Ok(i) => {
                let (app, id) = &s.releases.apps[i];
                if app.repositories.iter().any(|x| *x == format!("{o}/{r}")) {
                    reply(
                        200,
                        json!({ "id": id, "app_slug": app.slug, "account": { "login": o }, "target_type": "Organization" }),
                    )
                } else {
                    message(404, "Not Found")
                }
            }
        }),
        (Method::POST, ["app", "installations", id, "access_tokens"]) => Some(match app_from_jwt(s, &bearer) {
            Err(e) => e,
            Ok(i) => mint_token(s, i, id, &json_body()),
        }),
        (Method::DELETE, ["installation", "token"]) => {
            Some(match s.releases.tokens.iter_mut().find(|t| t.token == bearer && !t.revoked) {
                Some(t) => {
                    t.revoked = true;
                    reply(204, Value::Null)
                }
                None => message(401, "Bad credentials"),
            })
        }
        (_, ["repos", o, r, "releases", rest @ ..]) | (_, ["uploads", "repos", o, r, "releases", rest @ ..]) => {
            let repo = format!("{o}/{r}");
            let upload = segs[0] == "uploads";
            let write = *method != Method::GET;
            if let Err(e) = release_auth(s, &bearer, &repo, write) {
                return Some(e);
            }
            if !s.repos.contains_key(&repo) {
                return Some(message(404, "Not Found"));
            }
            Some(match (method.clone(), upload, rest) {
                (Method::POST, false, []) => create_release(s, &repo, &json_body(), base),
                (Method::GET, false, []) => {
                    let items = s
                        .releases
                        .releases
                        .iter()
                        .rev()
                        .filter(|x| x.repo == repo)
                        .map(|x| release_json(x, base))
                        .collect();
                    paginate_array(path, query, items)
                }
                (Method::GET, false, ["tags", tag]) => {
                    match s.releases.releases.iter().find(|x| x.repo == repo && x.tag_name == *tag && !x.draft) {
                        Some(x) => reply(200, release_json(x, base)),
                        None => message(404, "Not Found"),
                    }
                }
                (Method::GET, false, [id]) => match find_release(s, &repo, id) {
                    Some(i) => reply(200, release_json(&s.releases.releases[i], base)),
                    None => message(404, "Not Found"),
                },
                (Method::PATCH, false, [id]) => match find_release(s, &repo, id) {
                    Some(i) => update_release(s, i, &json_body(), base),
                    None => message(404, "Not Found"),
                },
                (Method::POST, true, [id, "assets"]) => match find_release(s, &repo, id) {
                    Some(i) => upload_asset(s, i, query, headers, body, base),
                    None => message(404, "Not Found"),
                },
                _ => message(404, "Not Found"),
            })
        }
        _ => None,
    }
}

/// The app whose JWT this is (its index), or the answer GitHub gives a bad one.
#[allow(clippy::result_large_err)] // the answer itself, as org_visibility returns it
fn app_from_jwt(s: &State, jwt: &str) -> Result<usize, Response<Body>> {
    let bad = |why: &str| message(401, &format!("A JSON web token could not be decoded ({why})"));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three parts"));
    };
    let header: Value =
        b64.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| bad("header"))?;
    if header["alg"] != "RS256" {
        return Err(bad("alg must be RS256"));
    }
    let claims: Value =
        b64.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| bad("payload"))?;
    let sig = b64.decode(sig).map_err(|_| bad("signature"))?;
    let iss = match &claims["iss"] {
        Value::String(v) => v.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad("no iss")),
    };
    let Some(i) = s.releases.apps.iter().position(|(a, _)| a.client_id == iss) else {
        return Err(message(401, "Integration not found"));
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &s.releases.apps[i].0.public_key_der,
    );
    if key.verify(format!("{h}.{p}").as_bytes(), &sig).is_err() {
        return Err(bad("signature does not verify"));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(i64::MAX), claims["exp"].as_i64().unwrap_or(0));
    if iat > now + 60 || exp <= now || exp - iat > 600 + 60 {
        return Err(message(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"));
    }
    Ok(i)
}

fn mint_token(s: &mut State, app: usize, id: &str, body: &Value) -> Response<Body> {
    let (a, installation) = s.releases.apps[app].clone();
    if id.parse::<u64>().ok() != Some(installation) {
        return message(404, "Not Found");
    }
    let mut permissions = a.permissions.clone();
    if let Some(asked) = body.get("permissions").and_then(Value::as_object) {
        permissions.clear();
        for (k, v) in asked {
            let v = v.as_str().unwrap_or("");
            let granted = a.permissions.get(k).map(String::as_str);
            let ok = matches!((granted, v), (Some("write"), "write" | "read") | (Some("read"), "read"));
            if !ok {
                return message(422, "The permissions requested are not granted to this installation.");
            }
            permissions.insert(k.clone(), v.to_string());
        }
    }
    let owner = a.repositories.first().and_then(|r| r.split_once('/')).map(|(o, _)| o.to_string()).unwrap_or_default();
    let mut repositories = a.repositories.clone();
    if let Some(names) = body.get("repositories").and_then(Value::as_array) {
        repositories.clear();
        for n in names {
            let full = format!("{owner}/{}", n.as_str().unwrap_or(""));
            if !a.repositories.contains(&full) {
                return message(422, "There is at least one repository that does not exist or is not accessible to the parent installation.");
            }
            repositories.push(full);
        }
    }
    let token = format!("ghs_{:036x}", rand::random::<u128>() ^ (s.releases.tokens.len() as u128));
    let expires = time_string(SystemTime::now() + Duration::from_secs(3600));
    let names: Vec<&str> = repositories.iter().filter_map(|r| r.split_once('/').map(|(_, n)| n)).collect();
    let answer = json!({
        "token": token,
        "expires_at": expires,
        "permissions": permissions,
        "repository_selection": "selected",
        "repositories": names.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>(),
    });
    s.releases.tokens.push(InstallationToken {
        token,
        client_id: a.client_id,
        permissions,
        repositories,
        revoked: false,
    });
    reply(201, answer)
}

/// The stand-in's token may do anything; an installation token only on its repositories, and writes only with
/// `contents: write`.
#[allow(clippy::result_large_err)] // the answer itself, as org_visibility returns it
fn release_auth(s: &State, bearer: &str, repo: &str, write: bool) -> Result<(), Response<Body>> {
    if bearer == s.token {
        return Ok(());
    }
    let Some(t) = s.releases.tokens.iter().find(|t| t.token == bearer && !t.revoked) else {
        return Err(message(401, "Bad credentials"));
    };
    if !t.repositories.iter().any(|r| r == repo) {
        return Err(message(404, "Not Found"));
    }
    let contents = t.permissions.get("contents").map(String::as_str);
    if write && contents != Some("write") {
        return Err(message(403, "Resource not accessible by integration"));
    }
    Ok(())
}

fn time_string(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn find_release(s: &State, repo: &str, id: &str) -> Option<usize> {
    let id: u64 = id.parse().ok()?;
    s.releases.releases.iter().position(|x| x.repo == repo && x.id == id)
}

fn asset_json(r: &Release, a: &ReleaseAsset, base: &str) -> Value {
    let sha = hex_sha256(&a.bytes);
    json!({
        "id": a.id,
        "name": a.name,
        "label": "",
        "state": "uploaded",
        "content_type": a.content_type,
        "size": a.bytes.len(),
        "digest": format!("sha256:{sha}"),
        "download_count": 0,
        "url": format!("{base}/repos/{}/releases/assets/{}", r.repo, a.id),
        "browser_download_url": format!("{base}/{}/releases/download/{}/{}", r.repo, r.tag_name, a.name),
    })
}

fn release_json(r: &Release, base: &str) -> Value {
    json!({
        "id": r.id,
        "tag_name": r.tag_name,
        "target_commitish": r.target_commitish,
        "name": r.name,
        "body": r.body,
        "draft": r.draft,
        "prerelease": r.prerelease,
        "url": format!("{base}/repos/{}/releases/{}", r.repo, r.id),
        "html_url": format!("{base}/{}/releases/tag/{}", r.repo, r.tag_name),
        "assets_url": format!("{base}/repos/{}/releases/{}/assets", r.repo, r.id),
        "upload_url": format!("{base}/uploads/repos/{}/releases/{}/assets{{?name,label}}", r.repo, r.id),
        "assets": r.assets.iter().map(|a| asset_json(r, a, base)).collect::<Vec<_>>(),
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Publishing needs the tag in the repository's git folder, when one is set.
fn tag_missing(s: &State, repo: &str, tag: &str) -> Option<Response<Body>> {
    let dir = s.releases.git_dirs.get(repo)?;
    let ok = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "-q", "--verify", &format!("refs/tags/{tag}^{{commit}}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        None
    } else {
        Some(validation_failed(
            "Release",
            "tag_name",
            "tag does not exist in the repository (the stand-in creates no tag)",
        ))
    }
}

fn set_latest(s: &mut State, i: usize, make_latest: Option<&Value>) {
    let r = &s.releases.releases[i];
    if r.draft || r.prerelease {
        return;
    }
    // GitHub's default for a published release is `true`; "legacy" is judged by date and version, which the
    // stand-in takes as `true` too.
    if make_latest.and_then(Value::as_str) == Some("false") {
        return;
    }
    let repo = r.repo.clone();
    for x in s.releases.releases.iter_mut().filter(|x| x.repo == repo) {
        x.latest = false;
    }
    s.releases.releases[i].latest = true;
}

fn create_release(s: &mut State, repo: &str, body: &Value, base: &str) -> Response<Body> {
    let Some(tag) = body.get("tag_name").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
        return validation_failed("Release", "tag_name", "missing_field");
    };
    if s.releases.releases.iter().any(|x| x.repo == repo && x.tag_name == tag) {
        return validation_failed("Release", "tag_name", "already_exists");
    }
    let draft = body.get("draft").and_then(Value::as_bool).unwrap_or(false);
    if !draft {
        if let Some(e) = tag_missing(s, repo, tag) {
            return e;
        }
    }
    s.releases.next_id += 1;
    let id = FIRST_RELEASE_ID + s.releases.next_id;
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    s.releases.releases.push(Release {
        id,
        repo: repo.to_string(),
        tag_name: tag.to_string(),
        target_commitish: body.get("target_commitish").and_then(Value::as_str).unwrap_or("main").to_string(),
        name: text("name"),
        body: text("body"),
        draft,
        prerelease: body.get("prerelease").and_then(Value::as_bool).unwrap_or(false),
        latest: false,
        assets: Vec::new(),
    });
    let i = s.releases.releases.len() - 1;
    set_latest(s, i, body.get("make_latest"));
    reply(201, release_json(&s.releases.releases[i], base))
}

fn update_release(s: &mut State, i: usize, body: &Value, base: &str) -> Response<Body> {
    let was_draft = s.releases.releases[i].draft;
    let draft = body.get("draft").and_then(Value::as_bool).unwrap_or(was_draft);
    if !draft {
        let (repo, tag) = (s.releases.releases[i].repo.clone(), s.releases.releases[i].tag_name.clone());
        let tag = body.get("tag_name").and_then(Value::as_str).map(str::to_string).unwrap_or(tag);
        if let Some(e) = tag_missing(s, &repo, &tag) {
            return e;
        }
    }
    let r = &mut s.releases.releases[i];
    for (k, field) in [("name", &mut r.name), ("body", &mut r.body), ("tag_name", &mut r.tag_name)] {
        if let Some(v) = body.get(k).and_then(Value::as_str) {
            *field = v.to_string();
        }
    }
    if let Some(v) = body.get("prerelease").and_then(Value::as_bool) {
        r.prerelease = v;
    }
    r.draft = draft;
    set_latest(s, i, body.get("make_latest"));
    reply(200, release_json(&s.releases.releases[i], base))
}

fn upload_asset(s: &mut State, i: usize, query: &str, headers: &HeaderMap, body: &[u8], base: &str) -> Response<Body> {
    let Some(name) = query_param(query, "name").filter(|n| !n.is_empty()) else {
        return validation_failed("ReleaseAsset", "name", "missing_field");
    };
    let Some(content_type) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
        return message(422, "Content-Type header is required");
    };
    if s.releases.releases[i].assets.iter().any(|a| a.name == name) {
        return validation_failed("ReleaseAsset", "name", "already_exists");
    }
    s.releases.next_id += 1;
    let asset = ReleaseAsset {
        id: FIRST_RELEASE_ID + s.releases.next_id,
        name,
        content_type: content_type.to_string(),
        bytes: body.to_vec(),
    };
    let answer = asset_json(&s.releases.releases[i], &asset, base);
    s.releases.releases[i].assets.push(asset);
    reply(201, answer)
}

fn download(s: &State, repo: &str, tag: &str, name: &str) -> Response<Body> {
    let asset = s
        .releases
        .releases
        .iter()
        .find(|r| r.repo == repo && r.tag_name == tag && !r.draft)
        .and_then(|r| r.assets.iter().find(|a| a.name == name));
    match asset {
        Some(a) => {
            let mut r = Response::new(Body::from(a.bytes.clone()));
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/octet-stream"));
            r
        }
        None => message(404, "Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One HTTP/1.1 request with `Connection: close`: (status, lower-cased headers, body).
    fn http(gh: &GitHub, method: &str, path: &str, token: &str, body: &str) -> (u16, String, String) {
        let addr = gh.url().trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    fn seal(gh: &GitHub, scope_path: &str, value: &[u8]) -> (String, String) {
        let (_, _, body) = http(gh, "GET", &format!("{scope_path}/secrets/public-key"), TOKEN, "");
        let j: Value = serde_json::from_str(&body).unwrap();
        let key: [u8; 32] =
            base64::engine::general_purpose::STANDARD.decode(j["key"].as_str().unwrap()).unwrap().try_into().unwrap();
        let sealed = crypto_box::PublicKey::from(key).seal(&mut rand::rngs::OsRng, value).unwrap();
        (j["key_id"].as_str().unwrap().to_string(), base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    #[test]
    fn names_follow_github_rules() {
        for ok in ["A", "_x", "DATABASE_PASSWORD", "a1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1A", "GITHUB_TOKEN", "github_x", "A-B", "A B", "É"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_are_opened_and_bad_ones_refused_as_github_does() {
        let gh = GitHub::start();
        let repo = "/repos/acme/app/actions";
        let (key_id, enc) = seal(&gh, repo, b"k9-value");
        let put = |name: &str, key_id: &str, enc: &str| {
            http(
                &gh,
                "PUT",
                &format!("{repo}/secrets/{name}"),
                TOKEN,
                &json!({"encrypted_value": enc, "key_id": key_id}).to_string(),
            )
            .0
        };
        assert_eq!(put("A", &key_id, &enc), 201);
        assert_eq!(put("A", &key_id, &enc), 204);
        assert_eq!(gh.secret(&Scope::Repo("acme/app".into()), "A").as_deref(), Some("k9-value"));
        assert_eq!(put("B", "000", &enc), 422, "wrong key_id");
        assert_eq!(put("B", &key_id, "%%%not base64"), 422, "bad base64");
        let (_, other) = seal(&gh, "/repos/acme/app/environments/production", b"x");
        assert_eq!(put("B", &key_id, &other), 422, "a box for another key does not open");
        assert_eq!(put("GITHUB_X", &key_id, &enc), 422, "reserved prefix");
        let (_, big) = seal(&gh, repo, &vec![b'k'; MAX_VALUE_BYTES + 1]);
        assert_eq!(put("BIG", &key_id, &big), 422, "over 48 KB");
        assert_eq!(http(&gh, "GET", &format!("{repo}/secrets"), "wrong", "").0, 401);
        assert_eq!(http(&gh, "GET", "/repos/acme/nope/actions/secrets", TOKEN, "").0, 404);
        assert_eq!(http(&gh, "GET", "/repos/acme/app/environments/nope/secrets", TOKEN, "").0, 404);
    }

    #[test]
    fn repository_secret_limit_pagination_and_rate_limits() {
        let gh = GitHub::start();
        let scope = Scope::Repo("acme/app".into());
        for i in 0..MAX_REPO_SECRETS {
            gh.preset_secret(&scope, &format!("S{i:03}"), "v");
        }
        let (key_id, enc) = seal(&gh, "/repos/acme/app/actions", b"k9");
        let body = json!({"encrypted_value": enc, "key_id": key_id}).to_string();
        assert_eq!(http(&gh, "PUT", "/repos/acme/app/actions/secrets/ONE_MORE", TOKEN, &body).0, 422);
        assert_eq!(http(&gh, "PUT", "/repos/acme/app/actions/secrets/S000", TOKEN, &body).0, 204, "updates still work");
        let (status, head, body) = http(&gh, "GET", "/repos/acme/app/actions/secrets?per_page=30&page=2", TOKEN, "");
        assert_eq!(status, 200);
        let j: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((j["total_count"].as_u64(), j["secrets"].as_array().unwrap().len()), (Some(100), 30));
        assert_eq!(j["secrets"][0]["name"], "S030");
        assert!(head.contains("rel=\"next\"") && head.contains("page=4>; rel=\"last\""), "{head}");

        gh.push_limit(Limit::secondary(403, 7));
        gh.push_limit(Limit::primary(429, 30));
        let (status, head, _) = http(&gh, "GET", "/repos/acme/app", TOKEN, "");
        assert_eq!(status, 403);
        assert!(head.contains("retry-after: 7"), "{head}");
        let (status, head, _) = http(&gh, "GET", "/repos/acme/app", TOKEN, "");
        assert_eq!(status, 429);
        assert!(head.contains("x-ratelimit-remaining: 0") && head.contains("x-ratelimit-reset: "), "{head}");
        assert_eq!(http(&gh, "GET", "/repos/acme/app", TOKEN, "").0, 200);
        assert_eq!(gh.rate_limited(), 2);
    }

    #[test]
    fn variables_create_update_and_conflict() {
        let gh = GitHub::start();
        let base = "/repos/acme/app/actions/variables";
        let create = json!({"name": "REGION", "value": "fra1"}).to_string();
        assert_eq!(http(&gh, "POST", base, TOKEN, &create).0, 201);
        assert_eq!(http(&gh, "POST", base, TOKEN, &create).0, 409);
        let update = json!({"name": "REGION", "value": "ams3"}).to_string();
        assert_eq!(http(&gh, "PATCH", &format!("{base}/REGION"), TOKEN, &update).0, 204);
        assert_eq!(gh.variable(&Scope::Repo("acme/app".into()), "REGION").as_deref(), Some("ams3"));
        assert_eq!(http(&gh, "PATCH", &format!("{base}/NOPE"), TOKEN, &update).0, 404);
        assert_eq!(http(&gh, "DELETE", &format!("{base}/REGION"), TOKEN, "").0, 204);
        let org =
            json!({"name": "R", "value": "x", "visibility": "selected", "selected_repository_ids": [999]}).to_string();
        assert_eq!(http(&gh, "POST", "/orgs/acme/actions/variables", TOKEN, &org).0, 422, "unknown repository id");
    }

    #[test]
    fn deployments_statuses_and_auto_inactive_as_github_documents() {
        let gh = GitHub::start();
        let base = "/repos/acme/app/deployments";
        let sha = "a".repeat(40);
        let create = |env: &str, tag: &str| {
            let body = json!({"ref": sha, "environment": env, "auto_merge": false, "required_contexts": [],
                              "payload": {"image_tag": tag}});
            let (status, _, body) = http(&gh, "POST", base, TOKEN, &body.to_string());
            assert_eq!(status, 201, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()["id"].as_u64().unwrap()
        };
        let status =
            |id: u64, body: Value| http(&gh, "POST", &format!("{base}/{id}/statuses"), TOKEN, &body.to_string()).0;
        assert_eq!(http(&gh, "POST", base, TOKEN, "{}").0, 422, "ref is required");
        assert_eq!(http(&gh, "POST", base, TOKEN, &json!({"ref": "nope"}).to_string()).0, 422, "unknown ref");
        assert_eq!(http(&gh, "POST", base, "wrong", &json!({"ref": sha}).to_string()).0, 401);
        assert_eq!(http(&gh, "POST", "/repos/acme/nope/deployments", TOKEN, &json!({"ref": sha}).to_string()).0, 404);
        let one = create("production", "v1");
        let staging = create("staging", "v1");
        assert_eq!(status(one, json!({"state": "success"})), 201);
        assert_eq!(status(staging, json!({"state": "success"})), 201);
        assert_eq!(status(one, json!({"state": "done"})), 422, "not a state");
        assert_eq!(status(one, json!({"state": "success", "description": "d".repeat(141)})), 422);
        assert_eq!(status(999_999, json!({"state": "success"})), 404);
        let two = create("production", "v2");
        assert_eq!(status(two, json!({"state": "in_progress"})), 201);
        let states =
            |gh: &GitHub| gh.deployments("acme/app").iter().map(|d| (d.id, d.state().to_string())).collect::<Vec<_>>();
        assert_eq!(
            states(&gh),
            [(one, "success".to_string()), (staging, "success".to_string()), (two, "in_progress".to_string())]
        );
        assert_eq!(status(two, json!({"state": "success", "environment_url": "https://app.example"})), 201);
        // A production deployment: GitHub documents auto_inactive for non-production ones only.
        assert_eq!(
            states(&gh),
            [(one, "success".to_string()), (staging, "success".to_string()), (two, "success".to_string())]
        );
        // In another environment the earlier success becomes inactive; production is untouched.
        let staging_two = create("staging", "v2");
        assert_eq!(status(staging_two, json!({"state": "success"})), 201);
        assert_eq!(
            states(&gh),
            [
                (one, "success".to_string()),
                (staging, "inactive".to_string()),
                (two, "success".to_string()),
                (staging_two, "success".to_string())
            ]
        );
        // auto_inactive false leaves earlier ones alone.
        let three = create("staging", "v3");
        assert_eq!(status(three, json!({"state": "success", "auto_inactive": false})), 201);
        assert_eq!(gh.deployments("acme/app")[4].state(), "success");
        assert_eq!(gh.deployments("acme/app")[3].state(), "success");
        let (code, _, list) = http(&gh, "GET", &format!("{base}?environment=staging&per_page=2"), TOKEN, "");
        assert_eq!(code, 200);
        let list: Value = serde_json::from_str(&list).unwrap();
        let ids: Vec<u64> = list.as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [three, staging_two], "newest first, filtered, one page");
        let (_, _, sts) = http(&gh, "GET", &format!("{base}/{two}/statuses"), TOKEN, "");
        let sts: Value = serde_json::from_str(&sts).unwrap();
        assert_eq!(sts[0]["state"], "success");
        assert_eq!(sts[0]["environment_url"], "https://app.example");
        gh.push_fault(Fault::Status(500));
        assert_eq!(http(&gh, "GET", base, TOKEN, "").0, 500);
        assert_eq!(http(&gh, "GET", base, TOKEN, "").0, 200);
    }
}

#[cfg(test)]
mod release_tests {
    //! The "Releases and GitHub App installation tokens" section, as GitHub documents those endpoints.
    use super::*;
    use std::io::{Read, Write};

    /// One HTTP/1.1 request with `Connection: close` and raw bytes: (status, body).
    fn http(gh: &GitHub, method: &str, path: &str, auth: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let addr = gh.url().trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if !auth.is_empty() {
            req.push_str(&format!("Authorization: Bearer {auth}\r\n"));
        }
        if !content_type.is_empty() {
            req.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&out[..at]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out[at + 4..].to_vec())
    }

    fn json_of(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
    }

    /// An RS256 JWT for `iss`, signed by openssl with `key` (as octokit's auth-app makes it).
    fn jwt(key: &std::path::Path, iss: &str, iat: i64, exp: i64) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64.encode(json!({ "iat": iat, "exp": exp, "iss": iss }).to_string())
        );
        let mut child = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let sig = child.wait_with_output().unwrap().stdout;
        format!("{input}.{}", b64.encode(sig))
    }

    fn rsa_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Vec<u8>) {
        let key = dir.join(format!("{name}.pem"));
        let der = dir.join(format!("{name}.der"));
        let ok = |c: &mut std::process::Command| assert!(c.output().unwrap().status.success(), "{c:?}");
        ok(std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
            .arg(&key));
        ok(std::process::Command::new("openssl")
            .args(["rsa", "-in"])
            .arg(&key)
            .args(["-RSAPublicKey_out", "-outform", "DER", "-out"])
            .arg(&der));
        let public = std::fs::read(&der).unwrap();
        (key, public)
    }

    #[test]
    fn app_tokens_releases_assets_and_downloads_as_github_documents() {
        let dir = tempfile::tempdir().unwrap();
        let gh = GitHub::start();
        let (key, public_key_der) = rsa_key(dir.path(), "app");
        let (other_key, _) = rsa_key(dir.path(), "other");
        let permissions: BTreeMap<String, String> =
            [("contents", "write"), ("workflows", "write"), ("metadata", "read")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let installation = gh.add_app(App {
            client_id: "Iv23liTest".into(),
            slug: "release-app".into(),
            public_key_der,
            permissions,
            repositories: vec!["acme/app".into()],
        });
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;

        // The JWT: the app's key, its client ID, a live window of at most 10 minutes.
        let good = jwt(&key, "Iv23liTest", now - 60, now + 540);
        let (st, body) = http(&gh, "GET", "/repos/acme/app/installation", &good, "", b"");
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["id"], installation);
        assert_eq!(json_of(&body)["app_slug"], "release-app");
        for bad in [
            jwt(&other_key, "Iv23liTest", now - 60, now + 540),
            jwt(&key, "Iv23liTest", now - 700, now - 100),
            jwt(&key, "Iv23liTest", now - 60, now + 3600),
            gh.token(),
        ] {
            assert_eq!(http(&gh, "GET", "/repos/acme/app/installation", &bad, "", b"").0, 401);
        }
        assert_eq!(http(&gh, "GET", "/repos/acme/web/installation", &good, "", b"").0, 404, "not installed there");

        // Installation tokens: a subset of the app's permissions and repositories, else 422.
        let path = format!("/app/installations/{installation}/access_tokens");
        let ask = |body: Value| http(&gh, "POST", &path, &good, "application/json", body.to_string().as_bytes());
        assert_eq!(ask(json!({ "permissions": { "administration": "write" } })).0, 422);
        assert_eq!(ask(json!({ "permissions": { "metadata": "write" } })).0, 422);
        assert_eq!(ask(json!({ "repositories": ["web"] })).0, 422);
        let (st, body) = ask(json!({ "repositories": ["app"], "permissions": { "contents": "read" } }));
        assert_eq!(st, 201);
        let read_only = json_of(&body)["token"].as_str().unwrap().to_string();
        let (st, body) =
            ask(json!({ "repositories": ["app"], "permissions": { "contents": "write", "workflows": "write" } }));
        assert_eq!(st, 201);
        let token = json_of(&body)["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("ghs_"));
        assert_eq!(gh.installation_tokens().len(), 2);
        assert_eq!(gh.installation_tokens()[1].permissions["workflows"], "write");

        // Releases: a read-only token may list but not create; a draft is not served by tag nor downloadable.
        let create = json!({ "tag_name": "v1.0.0", "name": "gangplank v1.0.0", "body": "notes", "draft": true });
        let post = |t: &str, body: &Value| {
            http(&gh, "POST", "/repos/acme/app/releases", t, "application/json", body.to_string().as_bytes())
        };
        assert_eq!(post(&read_only, &create).0, 403);
        assert_eq!(http(&gh, "GET", "/repos/acme/app/releases", &read_only, "", b"").0, 200);
        let (st, body) = post(&token, &create);
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let release = json_of(&body);
        assert_eq!(post(&token, &create).0, 422, "one release per tag");
        let id = release["id"].as_u64().unwrap();
        let upload = release["upload_url"].as_str().unwrap();
        let upload = upload.split('{').next().unwrap().strip_prefix(gh.url()).unwrap().to_string();
        assert!(upload.starts_with("/uploads/repos/acme/app/releases/"), "{upload}");
        assert_eq!(http(&gh, "GET", "/repos/acme/app/releases/tags/v1.0.0", &token, "", b"").0, 404);

        // Assets: Content-Type and a name needed, each name once; larger than the API's other bodies.
        let archive: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        let up = |name: &str, ct: &str| http(&gh, "POST", &format!("{upload}?name={name}"), &token, ct, &archive);
        assert_eq!(up("a.tar.gz", "").0, 422);
        let (st, body) = up("a.tar.gz", "application/octet-stream");
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let asset = json_of(&body);
        assert_eq!(asset["state"], "uploaded");
        assert_eq!(asset["size"], archive.len());
        assert_eq!(asset["digest"], format!("sha256:{}", hex_sha256(&archive)));
        assert_eq!(up("a.tar.gz", "application/octet-stream").0, 422, "a name is taken once");
        let download = "/acme/app/releases/download/v1.0.0/a.tar.gz";
        assert_eq!(http(&gh, "GET", download, "", "", b"").0, 404, "a draft's asset is not public");

        // Publishing needs the tag in the repository's git folder, when the test gave one.
        let git = dir.path().join("repo");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("git").arg("-C").arg(&git).args(args).output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::create_dir_all(&git).unwrap();
        run(&["init", "-q"]);
        run(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"]);
        gh.set_release_git_dir("acme/app", &git);
        let patch = |body: Value| {
            let path = format!("/repos/acme/app/releases/{id}");
            http(&gh, "PATCH", &path, &token, "application/json", body.to_string().as_bytes())
        };
        assert_eq!(patch(json!({ "draft": false })).0, 422, "no tag v1.0.0 yet");
        run(&["tag", "v1.0.0"]);
        let (st, body) = patch(json!({ "draft": false, "make_latest": "true" }));
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["draft"], false);
        assert_eq!(http(&gh, "GET", "/repos/acme/app/releases/tags/v1.0.0", &token, "", b"").0, 200);
        let (st, bytes) = http(&gh, "GET", download, "", "", b"");
        assert_eq!((st, bytes.len()), (200, archive.len()));
        assert!(bytes == archive, "the download is the uploaded asset");
        let releases = gh.releases("acme/app");
        assert!(releases[0].latest && !releases[0].draft);

        // A revoked token is refused.
        assert_eq!(http(&gh, "DELETE", "/installation/token", &token, "", b"").0, 204);
        assert_eq!(post(&token, &json!({ "tag_name": "v1.0.1" })).0, 401);
    }
}
