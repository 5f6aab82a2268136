//! GitHub Deployments for deploy-remote and rollback: with `environment` and `github-token` set, a run shows
//! up on the repository's environment page as GitHub's own deployments do (docs/actions.md, "GitHub
//! Deployments"). The REST calls, as GitHub documents them (API version 2022-11-28):
//!
//! - `POST /repos/{owner}/{repo}/deployments` with `ref` (the commit, `GITHUB_SHA`), `environment`,
//!   `auto_merge: false` (never merge the default branch into the deployed commit), `required_contexts: []`
//!   (the workflow already gated the commit; GitHub would otherwise demand every commit status be green),
//!   `payload` (app and image tag), `description`, `transient_environment: false` and
//!   `production_environment` (GitHub's own default: true for `production`). 201 is the deployment.
//! - `POST /repos/{owner}/{repo}/deployments/{id}/statuses`: `in_progress` before the hosts are touched, then
//!   `success` (with `environment_url` and `log_url`, the run's URL) or `failure`. Exactly one deployment of
//!   the app is the environment's active one: GitHub's `auto_inactive` (default true) gives every earlier
//!   successful deployment an `inactive` status when a new one succeeds, but GitHub documents it for
//!   non-production environments only. In a production environment (`production_environment: true`) the run
//!   that made a deployment succeed gives the one that was active before an `inactive` status itself (found in
//!   the same walk as the abandoned ones below).
//! - A rolled-back run (auto-rollback after a failed gate, or the rollback step) records the restored tag as
//!   a new deployment of the environment (`ref` = the commit that deployment of that tag was made from,
//!   found with `GET /repos/{owner}/{repo}/deployments?environment=…`, else `GITHUB_SHA`) and gives it
//!   `success`. Why a new one rather than a fresh status on the old deployment: `auto_inactive` only touches
//!   deployments created *before* the one that succeeds, so a success posted on an older deployment would
//!   leave a newer successful one active too (the rollback step after a deploy that did succeed), and the
//!   environment's newest deployment (what the repository page shows) would still be the failed one. A new
//!   deployment makes the restored tag both the newest and the only active one, with its original commit.
//! - A deploy step killed by a cancel or a timeout never posts its last status, so its deployment would stay
//!   `in_progress` for good. When a run has ended (its lock released), the newest earlier deployments of the
//!   same app in the environment are read (`GET …/deployments/{id}/statuses?per_page=1`, newest first, until
//!   one that finished — in production after a success, until the one that was active —, at most
//!   [`LOOKBACK`]); one still `in_progress`, `queued` or `pending` gets an `error` status saying which run
//!   superseded it. Only deployments created before this run's own are touched, so a run that is waiting for
//!   the lock keeps its own.
//!
//! Reporting never fails or holds up a deploy: every request has a short timeout, an error is a warning
//! annotation, and after a request that timed out or could not connect the rest are skipped. The token is a
//! [`Secret`]: masked, never printed, sent only in the `Authorization` header. Bad inputs (an environment
//! without a token, a URL that is not http(s)) are exit 2 before anything connects.

use std::time::Duration;

use gangplank_core::actions;
use gangplank_core::input::{check_token, is_http_url};
use gangplank_core::{Error, Result, Secret};
use serde_json::{json, Value};

/// GitHub's REST API version these requests are written against.
const API_VERSION: &str = "2022-11-28";
/// Per request: GitHub answers these in well under a second; a deploy never waits longer than this for one.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// GitHub's limit on a deployment status description.
const MAX_DESCRIPTION: usize = 140;
const TITLE: &str = "GitHub Deployments";
/// How many earlier deployments of the app a run reads the state of, looking for abandoned ones and, in
/// production, the one that was active.
const LOOKBACK: usize = 5;

/// The inputs deploy-remote and rollback share for GitHub Deployments.
#[derive(Debug, Clone, clap::Args)]
pub struct GitHubArgs {
    /// GitHub environment to record this run in as a deployment, e.g. `production` [default: none, no record]
    #[arg(long, env = "INPUT_ENVIRONMENT")]
    environment: Option<String>,

    /// URL of the deployed app, shown on the environment's deployment
    #[arg(long, env = "INPUT_ENVIRONMENT_URL")]
    environment_url: Option<String>,

    /// Token for the Deployments API: `${{ github.token }}` with `permissions: deployments: write`
    #[arg(long, env = "INPUT_GITHUB_TOKEN", hide_env_values = true, allow_hyphen_values = true, value_parser = secret_value)]
    github_token: Option<Secret>,
}

fn secret_value(s: &str) -> std::result::Result<Secret, String> {
    Ok(Secret::new(s.trim()))
}

impl GitHubArgs {
    /// The reporter these inputs ask for: `None` without `environment`. Checks everything here, so bad input
    /// is exit 2 before any connection (to GitHub or to a host).
    pub fn reporter(&self) -> Result<Option<Reporter>> {
        let env = self.environment.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let url = self.environment_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let token = self.github_token.clone().filter(|t| !t.is_empty());
        let Some(env) = env else {
            if url.is_some() {
                return Err(Error::bad_input("`environment-url` is set without `environment`")
                    .hint("name the GitHub environment too, e.g. `environment: production`"));
            }
            return Ok(None);
        };
        // GitHub's rule for environment names: at most 255 characters; printable ones only here.
        if env.chars().count() > 255 || env.chars().any(char::is_control) {
            return Err(Error::bad_input("`environment` is not a GitHub environment name")
                .hint("at most 255 printable characters, e.g. `production`"));
        }
        let token = token.ok_or_else(|| {
            Error::bad_input("`environment` is set but `github-token` is empty")
                .hint("pass `github-token: ${{ github.token }}` and give the job `permissions: deployments: write`")
        })?;
        check_token(&token, "github-token")?;
        if let Some(u) = url {
            if !is_http_url(u) {
                return Err(Error::bad_input(format!("`environment-url` is not an http(s) URL: `{u}`"))
                    .hint("e.g. `environment-url: https://app.example.com`"));
            }
        }
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let api = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        if !is_http_url(&api) {
            return Err(Error::bad_input(format!("GITHUB_API_URL is not an http(s) URL: `{api}`"))
                .hint("the runner sets it; unset it to use https://api.github.com"));
        }
        let repo = var("GITHUB_REPOSITORY").filter(|r| {
            let mut parts = r.split('/');
            let ok = |p: Option<&str>| {
                p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            };
            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
        });
        let repo = repo.ok_or_else(|| {
            Error::bad_input("GITHUB_REPOSITORY is not `owner/name`: GitHub Deployments need the repository").hint(
                "the runner sets it; outside Actions set GITHUB_REPOSITORY=owner/name, or leave `environment` empty",
            )
        })?;
        let sha = var("GITHUB_SHA").filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let sha = sha.ok_or_else(|| {
            Error::bad_input("GITHUB_SHA is not a commit SHA: a GitHub deployment is made for a commit")
                .hint("the runner sets it; outside Actions set GITHUB_SHA, or leave `environment` empty")
        })?;
        let client = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // GitHub answers the API directly; a redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gangplank/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::failed(format!("HTTP client for GitHub: {e}")))?;
        Ok(Some(Reporter {
            client,
            api: api.trim_end_matches('/').to_string(),
            repo,
            token,
            environment: env.to_string(),
            environment_url: url.map(str::to_string),
            sha,
            log_url: gangplank_core::host::run_url().unwrap_or_default(),
            gave_up: std::cell::Cell::new(false),
        }))
    }
}

/// Records runs as deployments of one environment. Every method warns instead of failing.
pub struct Reporter {
    client: reqwest::blocking::Client,
    api: String,
    repo: String,
    token: Secret,
    environment: String,
    environment_url: Option<String>,
    sha: String,
    log_url: String,
    /// Set after a request timed out or could not connect: the rest are skipped, so an unreachable API
    /// costs a deploy one timeout, not one per request.
    gave_up: std::cell::Cell<bool>,
}

/// A deployment this run created.
#[derive(Debug, Clone, Copy)]
pub struct Deployment(u64);

/// A status description as GitHub stores it: the first line of `s`, every registered secret masked (the runner
/// masks logs, not what a step sends to the API, where anyone who can read the repository reads it), every URL
/// without its credentials, query and fragment (a token in `?t=…` is not a registered secret), within GitHub's
/// length.
fn clip(s: &str) -> String {
    let line = scrub_urls(&gangplank_core::actions::redact(s.lines().next().unwrap_or("").trim()));
    let line = line.as_str();
    if line.chars().count() <= MAX_DESCRIPTION {
        return line.to_string();
    }
    let mut out: String = line.chars().take(MAX_DESCRIPTION - 1).collect();
    out.push('…');
    out
}

impl Reporter {
    fn call(&self, method: reqwest::Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Option<Value> {
        if self.gave_up.get() {
            return None;
        }
        let url = format!("{}/repos/{}{path}", self.api, self.repo);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .query(query)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .bearer_auth(self.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!("{method} /repos/{}{path}", self.repo);
        match req.send() {
            Err(e) => {
                self.gave_up.set(true);
                // reqwest's error names the URL, never the headers; without_url keeps it short anyway.
                let why = if e.is_timeout() { "timed out".to_string() } else { e.without_url().to_string() };
                actions::warning(
                    TITLE,
                    format!("{what}: {why}; the deploy goes on without reporting to GitHub Deployments"),
                );
                None
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().unwrap_or_default();
                if status.is_success() {
                    return Some(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                let hint = match status.as_u16() {
                    401 => "; is `github-token` the job's `${{ github.token }}`?",
                    403 | 404 => "; does the job have `permissions: deployments: write`?",
                    _ => "",
                };
                actions::warning(
                    TITLE,
                    format!("{what}: HTTP {} {}{hint}; the deploy goes on", status.as_u16(), clip(&msg)),
                );
                None
            }
        }
    }

    fn create(&self, sha: &str, payload: Value, description: &str) -> Option<Deployment> {
        let body = json!({
            "ref": sha,
            "environment": self.environment,
            "auto_merge": false,
            "required_contexts": [],
            "payload": payload,
            "description": clip(description),
            "transient_environment": false,
            // GitHub's default, said out loud.
            "production_environment": self.environment == "production",
        });
        let v = self.call(reqwest::Method::POST, "/deployments", &[], Some(&body))?;
        match v.get("id").and_then(Value::as_u64) {
            Some(id) => Some(Deployment(id)),
            None => {
                // 202 (GitHub merged the default branch in) cannot happen with auto_merge false; say so if it does.
                actions::warning(TITLE, "GitHub created no deployment (no `id` in its answer)");
                None
            }
        }
    }

    fn status(&self, d: Deployment, state: &str, description: &str) {
        let mut body = json!({ "state": state, "description": clip(description) });
        if !self.log_url.is_empty() {
            body["log_url"] = json!(self.log_url);
        }
        if state == "success" {
            if let Some(u) = &self.environment_url {
                body["environment_url"] = json!(u);
            }
            // Earlier successful deployments of the environment become inactive (GitHub's default, said out loud;
            // GitHub does it outside production only, see `settle_earlier`).
            body["auto_inactive"] = json!(true);
        }
        self.call(reqwest::Method::POST, &format!("/deployments/{}/statuses", d.0), &[], Some(&body));
    }

    /// A deployment of `tag` for this run's commit, marked `in_progress`: before any host is touched.
    pub fn start(&self, app: &str, tag: &str) -> Option<Deployment> {
        let d =
            self.create(&self.sha, json!({ "app": app, "image_tag": tag }), &format!("deploy-remote: {app} {tag}"))?;
        self.status(d, "in_progress", &format!("deploying {tag}"));
        Some(d)
    }

    /// "run N", or "a later run" outside Actions: how a status names the run that wrote it.
    fn run_label(&self) -> String {
        match std::env::var("GITHUB_RUN_ID") {
            Ok(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) => format!("run {id}"),
            _ => "a later run".to_string(),
        }
    }

    pub fn succeeded(&self, d: Option<Deployment>, tag: &str) -> bool {
        if let Some(d) = d {
            self.status(d, "success", &format!("{tag} is live and healthy"));
        }
        d.is_some()
    }

    /// Whether GitHub treats this environment as production (what `create` sends), where `auto_inactive` does not
    /// apply.
    fn production(&self) -> bool {
        self.environment == "production"
    }

    pub fn failed(&self, d: Option<Deployment>, why: &str) {
        if let Some(d) = d {
            self.status(d, "failure", why);
        }
    }

    /// The environment's deployments, newest first (first page).
    fn list(&self) -> Vec<Value> {
        self.call(
            reqwest::Method::GET,
            "/deployments",
            &[("environment", self.environment.as_str()), ("per_page", "100")],
            None,
        )
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    }

    /// The commit an earlier deployment of `tag` to this environment was made from.
    fn commit_of(list: &[Value], tag: &str) -> Option<String> {
        list.iter()
            .find(|d| d.pointer("/payload/image_tag").and_then(Value::as_str) == Some(tag))
            .and_then(|d| d.get("sha").and_then(Value::as_str))
            .map(str::to_string)
    }

    /// Settles the deployments of `app` created before `own` (module docs): one a killed run left unfinished gets
    /// `error`; when `replaced` (a newer deployment just succeeded) in a production environment, the one that was
    /// active gets `inactive`, which GitHub's `auto_inactive` does only outside production.
    fn settle_earlier(&self, list: &[Value], app: &str, own: Option<Deployment>, by: &str, replaced: bool) {
        let mut find_active = replaced && self.production();
        let earlier = list.iter().filter(|d| {
            d.pointer("/payload/app").and_then(Value::as_str) == Some(app)
                && d.get("id").and_then(Value::as_u64).is_some_and(|id| own.is_none_or(|o| id < o.0))
        });
        for d in earlier.take(LOOKBACK) {
            let Some(id) = d.get("id").and_then(Value::as_u64) else { continue };
            let Some(latest) =
                self.call(reqwest::Method::GET, &format!("/deployments/{id}/statuses"), &[("per_page", "1")], None)
            else {
                return;
            };
            let state = latest.pointer("/0/state").and_then(Value::as_str).unwrap_or("");
            let tag = d.pointer("/payload/image_tag").and_then(Value::as_str).unwrap_or("?");
            match state {
                "in_progress" | "queued" | "pending" => {
                    self.status(Deployment(id), "error", &format!("{tag}: the run stopped before it finished; {by}"));
                    continue;
                }
                "success" if find_active => {
                    self.status(Deployment(id), "inactive", &format!("{tag}: {by}"));
                    find_active = false;
                }
                _ => {}
            }
            // Deploys of one app run one at a time: below a finished one, every older one finished too, and
            // below the one that was active, every older one was made inactive by the run that replaced it.
            if !find_active {
                return;
            }
        }
    }

    /// `tag` runs again after a rollback: a new deployment of it (from the commit it was first deployed
    /// from), `success` when it is healthy, so it is the environment's newest and only active deployment.
    fn restored(&self, list: &[Value], app: &str, tag: &str, from: &str, healthy: bool) -> Option<Deployment> {
        if tag.is_empty() {
            return None;
        }
        let sha = Self::commit_of(list, tag).unwrap_or_else(|| self.sha.clone());
        let payload = json!({ "app": app, "image_tag": tag, "rolled_back_from": from });
        let what =
            if from.is_empty() { format!("rollback to {tag}") } else { format!("rollback from {from} to {tag}") };
        let d = self.create(&sha, payload, &format!("{what}: {app}"))?;
        if healthy {
            self.status(d, "success", &format!("{what}: healthy"));
        } else {
            self.status(d, "failure", &format!("{what} failed"));
        }
        Some(d)
    }
}

/// deploy-remote's run as deployments: the run's own deployment gets `success` or `failure`, and an
/// auto-rollback that put the previous tag back records that tag as the environment's current deployment.
/// Earlier deployments a killed run left unfinished are closed afterwards (module docs), when this run has a
/// deployment of its own (without one, GitHub refused it, and the others are left alone).
pub fn report_deploy(g: &Reporter, d: Option<Deployment>, app: &str, tag: &str, out: &gangplank_deploy::Outcome) {
    let mut list = None;
    // The deployment that is active now, when this run made one succeed.
    let mut active = None;
    match &out.error {
        None => active = d.filter(|_| g.succeeded(d, tag)),
        Some(e) => {
            let previous = out.record.previous_tag.as_str();
            let restored = out.rolled_back && out.record.status == "rolled-back" && !previous.is_empty();
            let why = e.message.lines().next().unwrap_or("").to_string();
            if restored {
                g.failed(d, &format!("rolled back to {previous}: {why}"));
                let l = list.insert(g.list());
                active = g.restored(l, app, previous, tag, true);
            } else {
                g.failed(d, &why);
            }
        }
    }
    if d.is_some() {
        let list = list.unwrap_or_else(|| g.list());
        // The list was read before a restored deployment was made: every entry is older than `active`.
        let own = active.or(d);
        let by = format!("superseded by the deploy of {tag} ({})", g.run_label());
        g.settle_earlier(&list, app, own, &by, active.is_some());
    }
}

/// rollback's run as a deployment of the tag it went back to: `success` when every host is back and healthy,
/// `failure` when a host was changed and did not come back healthy. A run that changed nothing (no host
/// reachable, nothing to go back to) records nothing: the environment's deployments stay as they were.
pub fn report_rollback(g: &Reporter, app: &str, out: &gangplank_deploy::Outcome) {
    let tag = if out.record.deployed_tag.is_empty() {
        out.rows.iter().map(|r| r.new_tag.as_str()).find(|t| !t.is_empty()).unwrap_or("")
    } else {
        out.record.deployed_tag.as_str()
    };
    let healthy = out.error.is_none();
    if healthy || out.changed {
        // Read before the restored deployment exists: every deployment of the app in the list is older than it.
        let list = g.list();
        let restored = g.restored(&list, app, tag, &out.record.previous_tag, healthy);
        let by = format!("rolled back to {tag} ({})", g.run_label());
        g.settle_earlier(&list, app, None, &by, healthy && restored.is_some());
    }
}

/// Every `http://` or `https://` URL in `text` as scheme, host and path only.
fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|p| rest.find(p)).min() {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(|c: char| c.is_whitespace() || "`'\"<>()".contains(c)).map_or(rest.len(), |e| at + e);
        let url = &rest[at..end];
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let (scheme, after) = url.split_at(scheme_end);
        let cut = after.find(['?', '#']).unwrap_or(after.len());
        let (authority_and_path, dropped) = after.split_at(cut);
        let slash = authority_and_path.find('/').unwrap_or(authority_and_path.len());
        let (authority, path) = authority_and_path.split_at(slash);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        out.push_str(scheme);
        out.push_str(host);
        out.push_str(path);
        if !dropped.is_empty() || host.len() != authority.len() {
            out.push('…');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_no_url_credentials_or_registered_secret() {
        let token = "tok-9f8e7d6c5b4a-descr";
        assert_eq!(
            clip(&format!("health-url http://10.0.0.5:8080/health?t={token}&x=1 answered 503")),
            "health-url http://10.0.0.5:8080/health… answered 503"
        );
        assert_eq!(
            clip(&format!("`https://ci:{token}@reg.example.com/v2/` refused")),
            "`https://reg.example.com/v2/…` refused"
        );
        assert_eq!(clip("see https://example.com/a#frag then http://h"), "see https://example.com/a… then http://h");
        gangplank_core::secret::Secret::new("registered-descr-secret-42");
        assert_eq!(clip("login with registered-descr-secret-42 failed"), "login with *** failed");
    }

    #[test]
    fn descriptions_fit_githubs_limit() {
        assert_eq!(clip("short\nsecond line"), "short");
        let long = "x".repeat(300);
        assert_eq!(clip(&long).chars().count(), MAX_DESCRIPTION);
    }

    #[test]
    fn only_plain_http_urls_pass() {
        for ok in ["https://api.github.com", "http://127.0.0.1:8080", "https://ghe.example.com/api/v3"] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in ["", "api.github.com", "ftp://x", "https://", "https://user:pw@host", "https://a b", "https://a\n"] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }
}
