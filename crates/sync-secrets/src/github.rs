//! The `github` target: Actions secrets (sealed boxes) and variables for the repository, environment and
//! organization scopes, through octocrab's raw HTTP methods so the rate-limit headers can be read.
//!
//! Every request goes through [`Gh::call`]: at most `concurrency` in flight (a semaphore), a shared pause
//! when GitHub says to wait (`retry-after`, or `x-ratelimit-remaining: 0` until `x-ratelimit-reset`),
//! exponential backoff with jitter on secondary limits without a hint and on 5xx, and a bounded number of
//! retries. GitHub's own advice for its secondary limits is to avoid concurrent bursts and to honour these
//! headers: <https://docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-rest-api>.
//!
//! Writes are also paced before GitHub has to say anything ([`Pace`]), by its documented secondary limits
//! (<https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits>):
//! at most 100 concurrent requests; at most 900 points per minute per REST endpoint, a POST, PATCH, PUT or
//! DELETE costing 5 (so 180 writes a minute to one endpoint); at most 80 content-creating requests a minute
//! and 500 an hour; and, from the best-practices page, "wait at least one second between each" mutative
//! request when making many. Every write (PUT/POST/PATCH/DELETE, retries included) waits for its turn:
//! `write-interval` after the previous write started (1 s by default, i.e. 60 a minute, under both per-minute
//! limits), and never more than 80 in any minute or 500 in any hour. Reads are not paced.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use gangplank_core::{Class, Error, Result, Secret};
use octocrab::Octocrab;
use serde_json::{json, Value as Json};
use tokio::sync::Semaphore;

use crate::manifest::{GhScope, OrgVisibility};

/// The longest single wait we accept from GitHub before giving up.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// GitHub's content-creation limits (module docs): writes in any rolling minute and hour.
pub const WRITES_PER_MINUTE: usize = 80;
pub const WRITES_PER_HOUR: usize = 500;
/// GitHub's cap on concurrent requests, shared by REST and GraphQL.
pub const MAX_CONCURRENCY: u32 = 100;

/// When writes may start: `interval` after the previous one, at most [`WRITES_PER_MINUTE`] a minute and
/// [`WRITES_PER_HOUR`] an hour. An interval of zero turns pacing off (a GitHub Enterprise Server whose
/// administrator disabled rate limits, where only the server's answers count).
pub struct Pace {
    interval: Duration,
    started: Mutex<std::collections::VecDeque<Instant>>,
    /// Writes that had to wait for their turn, and for how long in all.
    pub waited: AtomicUsize,
    pub waited_ms: AtomicUsize,
}

impl Pace {
    pub fn new(interval: Duration) -> Pace {
        Pace {
            interval,
            started: Mutex::new(Default::default()),
            waited: AtomicUsize::new(0),
            waited_ms: AtomicUsize::new(0),
        }
    }

    /// How long a write asked for `now` must wait; `None`: it may start, and is counted as started.
    fn turn(&self, now: Instant) -> Option<Duration> {
        if self.interval.is_zero() {
            return None;
        }
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let hour = Duration::from_secs(3600);
        while started.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            started.pop_front();
        }
        let mut at = now;
        if let Some(last) = started.back() {
            at = at.max(*last + self.interval);
        }
        let n = started.len();
        if n >= WRITES_PER_MINUTE {
            at = at.max(started[n - WRITES_PER_MINUTE] + Duration::from_secs(60));
        }
        if n >= WRITES_PER_HOUR {
            at = at.max(started[n - WRITES_PER_HOUR] + hour);
        }
        if at <= now {
            started.push_back(now);
            None
        } else {
            Some(at - now)
        }
    }

    /// Wait for this write's turn.
    pub async fn wait(&self) {
        let mut first = true;
        while let Some(wait) = self.turn(Instant::now()) {
            if first {
                self.waited.fetch_add(1, Ordering::Relaxed);
                first = false;
            }
            self.waited_ms.fetch_add(wait.as_millis() as usize, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

pub struct Gh {
    oc: Octocrab,
    repo: String,
    sem: Semaphore,
    pub pace: Pace,
    pause_until: Mutex<Option<Instant>>,
    max_retries: u32,
    /// Rate-limit answers seen (and waited out).
    pub rate_limited: AtomicUsize,
    /// Errors of this phase are bad input (exit 2: nothing written yet) or failures (exit 1).
    pub class: Mutex<Class>,
}

const TOKEN_HINT: &str = "use a fine-grained token or GitHub App token with `Secrets: read and write` and `Variables: read and write` on the repository (`Environments` too for environment secrets, organization `Secrets`/`Variables` for org entries); the workflow's GITHUB_TOKEN cannot write secrets";

impl Gh {
    pub fn new(
        api_url: &str,
        token: &Secret,
        repo: &str,
        concurrency: usize,
        max_retries: u32,
        write_interval: Duration,
    ) -> Result<Gh> {
        let bad_url = |e: String| {
            Error::bad_input(format!("api-url `{api_url}` is not a URL: {e}"))
                .hint("leave `api-url` unset for github.com, or use https://HOST/api/v3 for GitHub Enterprise Server")
        };
        let oc = Octocrab::builder()
            .base_uri(api_url.trim_end_matches('/'))
            .map_err(|e| bad_url(e.to_string()))?
            .personal_token(token.expose().to_string())
            .build()
            .map_err(|e| bad_url(e.to_string()))?;
        Ok(Gh {
            oc,
            repo: repo.to_string(),
            sem: Semaphore::new(concurrency.clamp(1, MAX_CONCURRENCY as usize)),
            pace: Pace::new(write_interval),
            pause_until: Mutex::new(None),
            max_retries,
            rate_limited: AtomicUsize::new(0),
            class: Mutex::new(Class::BadInput),
        })
    }

    fn class(&self) -> Class {
        *self.class.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `/repos/o/r/actions`, `/repos/o/r/environments/ENV`, `/orgs/ORG/actions`.
    pub fn base(&self, scope: &GhScope) -> String {
        match scope {
            GhScope::Repo => format!("/repos/{}/actions", self.repo),
            GhScope::Env(e) => format!("/repos/{}/environments/{}", self.repo, encode(e)),
            GhScope::Org(o) => format!("/orgs/{}/actions", encode(o)),
        }
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self.pause_until.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u.into()).await,
                _ => return,
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> std::result::Result<(u16, BTreeMap<String, String>, String), String> {
        let _permit = self.sem.acquire().await.map_err(|e| e.to_string())?;
        let resp = match method {
            Method::Get => self.oc._get(path).await,
            Method::Put => self.oc._put(path, body).await,
            Method::Post => self.oc._post(path, body).await,
            Method::Patch => self.oc._patch(path, body).await,
            Method::Delete => self.oc._delete(path, body).await,
        }
        .map_err(|e| first_line(&e.to_string()))?;
        let status = resp.status().as_u16();
        let headers: BTreeMap<String, String> = ["retry-after", "x-ratelimit-remaining", "x-ratelimit-reset"]
            .iter()
            .filter_map(|n| {
                resp.headers().get(*n).and_then(|v| v.to_str().ok()).map(|v| (n.to_string(), v.trim().to_string()))
            })
            .collect();
        let text = self.oc.body_to_string(resp).await.map_err(|e| first_line(&e.to_string()))?;
        Ok((status, headers, text))
    }

    /// One API call with the rate-limit and retry rules. `Ok((status, body))` for 2xx and for the
    /// statuses in `ok_also` (e.g. 404 on a lookup); an explained error otherwise.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        ok_also: &[u16],
    ) -> Result<(u16, String)> {
        let what = format!("{} {path}", method.name());
        let mut attempt = 0u32;
        loop {
            self.wait_for_pause().await;
            if method != Method::Get {
                self.pace.wait().await;
                // A pause GitHub asked for while this write waited its turn still holds.
                self.wait_for_pause().await;
            }
            let (status, headers, text) = match self.send_once(method, path, body).await {
                Ok(r) => r,
                Err(e) => {
                    if attempt >= self.max_retries {
                        return Err(Error::new(self.class(), format!("{what} failed: {e}"))
                            .hint("check that `api-url` is right and reachable from the runner"));
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            if (200..300).contains(&status) || ok_also.contains(&status) {
                return Ok((status, text));
            }
            let header = |n: &str| headers.get(n).cloned();
            let retry_after = header("retry-after").and_then(|v| v.parse::<f64>().ok());
            let exhausted = header("x-ratelimit-remaining").is_some_and(|v| v == "0");
            let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
            let msg = github_message(&text);
            let rate_limited = (status == 403 || status == 429)
                && (retry_after.is_some() || exhausted || msg.to_ascii_lowercase().contains("rate limit"));
            if rate_limited || status >= 500 {
                if rate_limited {
                    self.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                // The headers are the server's words: a huge or odd value means "too long", never a panic.
                let wait = if let Some(s) = retry_after {
                    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
                } else if let (true, Some(r)) = (exhausted, reset) {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                    Duration::from_secs(r).saturating_sub(now).saturating_add(Duration::from_millis(250))
                } else {
                    backoff(attempt + 1)
                };
                if attempt >= self.max_retries || wait > MAX_WAIT {
                    let why = if rate_limited { "GitHub's rate limit" } else { "GitHub's server errors" };
                    return Err(Error::new(
                        self.class(),
                        format!("{what} gave up after {attempt} retries because of {why} (HTTP {status})"),
                    )
                    .hint("run again later, or lower `concurrency`; values written so far are kept"));
                }
                attempt += 1;
                self.pause(wait);
                continue;
            }
            return Err(explain(self.class(), &what, status, &msg, &self.repo));
        }
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> Result<Json> {
        let (_, text) = self.call(Method::Get, path, None, &[]).await?;
        serde_json::from_str(&text)
            .map_err(|e| Error::new(self.class(), format!("GET {path}: the answer is not JSON: {e}")))
    }

    /// Every item of a paginated list (`field` is `secrets` or `variables`).
    pub async fn list(&self, path: &str, field: &str) -> Result<Vec<Json>> {
        let mut out = Vec::new();
        for page in 1.. {
            let doc = self.get_json(&format!("{path}?per_page=100&page={page}")).await?;
            let items = doc.get(field).and_then(Json::as_array).cloned().unwrap_or_default();
            let total = doc.get("total_count").and_then(Json::as_u64).unwrap_or(0) as usize;
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() >= total || page >= 1000 {
                break;
            }
        }
        Ok(out)
    }

    /// Names of the secrets of a scope.
    pub async fn secret_names(&self, scope: &GhScope) -> Result<Vec<String>> {
        let items = self.list(&format!("{}/secrets", self.base(scope)), "secrets").await?;
        Ok(items.iter().filter_map(|i| i.get("name").and_then(Json::as_str).map(str::to_string)).collect())
    }

    /// Variables of a scope: name → (value, visibility).
    pub async fn variables(&self, scope: &GhScope) -> Result<BTreeMap<String, (String, Option<String>)>> {
        let items = self.list(&format!("{}/variables", self.base(scope)), "variables").await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let name = i.get("name")?.as_str()?.to_string();
                let value = i.get("value").and_then(Json::as_str).unwrap_or("").to_string();
                let vis = i.get("visibility").and_then(Json::as_str).map(str::to_string);
                Some((name, (value, vis)))
            })
            .collect())
    }

    /// The scope's public key: (key_id, key bytes).
    pub async fn public_key(&self, scope: &GhScope) -> Result<(String, [u8; 32])> {
        let doc = self.get_json(&format!("{}/secrets/public-key", self.base(scope))).await?;
        let key_id = doc.get("key_id").and_then(Json::as_str).unwrap_or("").to_string();
        let key = doc.get("key").and_then(Json::as_str).unwrap_or("");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| Error::new(self.class(), "GitHub's public key for secrets is not a 32-byte base64 key"))?;
        Ok((key_id, bytes))
    }

    /// Repository id of `name` (`org/name`, or `name` in `org`).
    pub async fn repo_id(&self, org: &str, name: &str) -> Result<u64> {
        let full = if name.contains('/') { name.to_string() } else { format!("{org}/{name}") };
        let (status, text) = self.call(Method::Get, &format!("/repos/{full}"), None, &[404]).await?;
        if status == 404 {
            return Err(Error::bad_input(format!(
                "repository `{full}` (in `repositories` of an org entry) was not found"
            ))
            .hint("list repositories by name as they appear on GitHub, and check that the token can see them"));
        }
        let doc: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        doc.get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| Error::failed(format!("GET /repos/{full}: no `id` in the answer")))
    }
}

/// Seal `value` for GitHub: a libsodium sealed box to the scope's X25519 public key, base64-encoded.
pub fn seal(public_key: &[u8; 32], value: &str) -> Result<String> {
    let pk = crypto_box::PublicKey::from(*public_key);
    let sealed =
        pk.seal(&mut rand::rngs::OsRng, value.as_bytes()).map_err(|_| Error::failed("sealing a secret failed"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

/// The body of an organization secret or variable write.
pub fn org_fields(body: &mut Json, vis: &OrgVisibility, ids: &[u64]) {
    body["visibility"] = json!(vis.visibility.name());
    if vis.visibility == crate::manifest::Visibility::Selected {
        body["selected_repository_ids"] = json!(ids);
    }
}

fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let base = Duration::from_secs(1) * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

fn github_message(text: &str) -> String {
    serde_json::from_str::<Json>(text)
        .ok()
        .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn explain(class: Class, what: &str, status: u16, msg: &str, repo: &str) -> Error {
    let said = if msg.is_empty() { String::new() } else { format!(": {}", first_line(msg)) };
    match status {
        401 => Error::new(class, format!("GitHub refused the token (HTTP 401{said})"))
            .hint(format!("check `github-token`: it may be expired or mistyped; {TOKEN_HINT}")),
        403 => Error::new(class, format!("{what} is not allowed for this token (HTTP 403{said})")).hint(TOKEN_HINT),
        404 => Error::new(class, format!("{what} was not found (HTTP 404{said})")).hint(format!(
            "check `repository` ({repo}) and that the token can access it; environments and organizations must exist and be visible to the token (GitHub answers 404 when a token lacks access)"
        )),
        _ => Error::new(class, format!("{what} failed (HTTP {status}{said})"))
            .hint("check the entry's name and GitHub scope in the manifest"),
    }
}

/// Percent-encode a path segment.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_paced_by_interval_per_minute_and_per_hour() {
        let t0 = Instant::now();
        let p = Pace::new(Duration::from_millis(500));
        assert_eq!(p.turn(t0), None);
        assert_eq!(p.turn(t0), Some(Duration::from_millis(500)), "the interval after the previous write");
        assert_eq!(p.turn(t0 + Duration::from_millis(500)), None);
        // With a short interval the minute's 80 writes come first, then the 81st waits for the first to age.
        let p = Pace::new(Duration::from_millis(1));
        let mut t = t0;
        for _ in 0..WRITES_PER_MINUTE {
            while let Some(w) = p.turn(t) {
                t += w;
            }
        }
        let wait = p.turn(t).expect("the 81st write waits");
        assert_eq!(t + wait, t0 + Duration::from_secs(60));
        // 500 an hour: after 500 writes spread over minutes, the 501st waits for the first to be an hour old.
        let mut t = t0 + Duration::from_secs(60);
        for _ in WRITES_PER_MINUTE..WRITES_PER_HOUR {
            while let Some(w) = p.turn(t) {
                t += w;
            }
        }
        let wait = p.turn(t).expect("the 501st write waits");
        assert_eq!(t + wait, t0 + Duration::from_secs(3600));
        // Zero: no pacing at all.
        let p = Pace::new(Duration::ZERO);
        assert!((0..1000).all(|_| p.turn(t0).is_none()));
    }
}
