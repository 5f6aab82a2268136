//! Reading a pushed digest from the registry itself (distribution API), not from CLI text.
//!
//! `HEAD /v2/<name>/manifests/<tag>` with every manifest media type in `Accept`; the answer's
//! `Docker-Content-Digest` is the digest. A 401 carries a `WWW-Authenticate` challenge: `Basic` (htpasswd
//! registries) is answered with the login; `Bearer realm=…,service=…,scope=…` (Docker Hub, GHCR, most
//! hosted registries) with a token fetched from the realm, with the login when there is one.

use std::time::Duration;

use gangplank_core::{Error, Result, Secret};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::StatusCode;

/// Every manifest type a push can produce; without them a registry may answer with a converted
/// schema-1 manifest whose digest is not the pushed one.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.manifest.v1+json";

/// A registry as the user wrote it: `ghcr.io`, `registry.digitalocean.com/team`, `127.0.0.1:5000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`
    pub host: String,
    /// Path prefix under the host (`team`), empty when none.
    pub prefix: String,
}

impl RegistryRef {
    pub fn parse(s: &str) -> Result<RegistryRef> {
        let t = s.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
        let (host, prefix) = t.split_once('/').unwrap_or((t, ""));
        let ok_host = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        let ok_prefix = prefix.split('/').all(|p| prefix.is_empty() || valid_path_component(p));
        if !ok_host || !ok_prefix {
            return Err(Error::bad_input(format!("registry `{s}` is not a registry address"))
                .hint("write it as `ghcr.io`, `registry.example.com/team` or `127.0.0.1:5000`"));
        }
        Ok(RegistryRef { host: host.to_string(), prefix: prefix.to_string() })
    }

    /// `host/prefix` (what goes in front of image names).
    pub fn base(&self) -> String {
        if self.prefix.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.prefix)
        }
    }

    /// The repository path on this registry of image `name`.
    pub fn repo_path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Docker talks plain HTTP to loopback registries (its default insecure ranges 127.0.0.0/8 and ::1)
    /// and HTTPS to every other one; so do we. Loopback is an address that parses as one, or `localhost`:
    /// a name such as `127.example.com` is not, and gets HTTPS (the login must not cross a network in clear).
    pub fn scheme(&self) -> &'static str {
        let h = self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                self.host.as_str()
            }
        });
        let loopback_v4 = h.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback());
        if h == "localhost" || loopback_v4 || h == "[::1]" {
            "http"
        } else {
            "https"
        }
    }
}

/// `[a-z0-9]+([._-][a-z0-9]+)*`, the distribution spec's path component.
pub fn valid_path_component(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && p.starts_with(|c: char| c.is_ascii_alphanumeric())
        && p.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parse `Basic realm="x"` or `Bearer realm="https://…",service="…",scope="repository:a:pull"`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

/// `k="v",k2=v2` with quoted values that may hold commas (scopes do: `repository:a:pull,push`).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.push((key.trim().to_string(), val.trim().to_string()));
    }
    out
}

pub struct Login<'a> {
    pub username: &'a str,
    pub password: &'a Secret,
}

/// Reads manifest digests from one registry.
pub struct DigestReader<'a> {
    client: Client,
    registry: &'a RegistryRef,
    login: Option<Login<'a>>,
}

impl<'a> DigestReader<'a> {
    pub fn new(registry: &'a RegistryRef, login: Option<Login<'a>>) -> Result<Self> {
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gangplank-push-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(DigestReader { client, registry, login })
    }

    /// The `Docker-Content-Digest` of `name:tag` on the registry.
    pub fn digest(&self, name: &str, tag: &str) -> Result<String> {
        let url = format!(
            "{}://{}/v2/{}/manifests/{tag}",
            self.registry.scheme(),
            self.registry.host,
            self.registry.repo_path(name)
        );
        let head = || self.client.head(&url).header(ACCEPT, MANIFEST_ACCEPT);
        let mut resp = send(head(), &url)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            resp = match challenge {
                Some(Challenge::Basic) => match &self.login {
                    Some(l) => send(head().basic_auth(l.username, Some(l.password.expose())), &url)?,
                    None => resp,
                },
                Some(Challenge::Bearer { realm, service, scope }) => {
                    let token = self.token(&realm, service.as_deref(), scope.as_deref())?;
                    let r = send(head().bearer_auth(token.expose()), &url)?;
                    drop(token);
                    r
                }
                None => resp,
            };
        }
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::failed(format!("the registry refused to show the manifest of {name}:{tag} ({status})"))
                .hint("the login needs pull permission on the repository it pushed to"));
        }
        if !status.is_success() {
            return Err(Error::failed(format!("the registry answered {status} for the manifest of {name}:{tag}"))
                .hint("check that the push finished and that `registry` names the registry pushed to"));
        }
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string)
            .ok_or_else(|| {
                Error::failed(format!("the registry sent no Docker-Content-Digest for {name}:{tag}"))
                    .hint("the registry must implement the distribution API v2 manifest endpoint")
            })
    }

    /// A bearer token from the challenge's realm (`token` or `access_token` in the JSON answer).
    fn token(&self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<Secret> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        if let Some(s) = scope {
            query.push(("scope", s));
        }
        let mut req = self.client.get(realm).query(&query);
        if let Some(l) = &self.login {
            req = req.basic_auth(l.username, Some(l.password.expose()));
        }
        let resp = send(req, realm)?;
        if !resp.status().is_success() {
            return Err(Error::failed(format!("the registry's token service answered {}", resp.status()))
                .hint("check `username` and `password`; the token needs pull permission on the repository"));
        }
        let body: serde_json::Value =
            resp.json().map_err(|e| Error::failed(format!("the registry's token answer is not JSON: {e}")))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::failed("the registry's token answer holds no token"))?;
        Ok(Secret::new(token))
    }
}

fn send(req: RequestBuilder, url: &str) -> Result<Response> {
    req.send().map_err(|e| {
        // reqwest's error text never holds request headers, so no credential can leak through it.
        Error::failed(format!("cannot reach the registry at {url}: {e}"))
            .hint("check that the registry is up and reachable from the runner")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:team/app:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://ghcr.io/token, service=ghcr.io"),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn registries() {
        let r = RegistryRef::parse("registry.digitalocean.com/team").unwrap();
        assert_eq!((r.host.as_str(), r.prefix.as_str(), r.scheme()), ("registry.digitalocean.com", "team", "https"));
        assert_eq!(r.repo_path("app"), "team/app");
        let r = RegistryRef::parse("127.0.0.1:5000").unwrap();
        assert_eq!((r.base().as_str(), r.scheme()), ("127.0.0.1:5000", "http"));
        assert_eq!(RegistryRef::parse("localhost:5000/").unwrap().scheme(), "http");
        assert_eq!(RegistryRef::parse("ghcr.io").unwrap().scheme(), "https");
        assert_eq!(RegistryRef::parse("bad host").unwrap_err().exit_code(), 2);
        assert_eq!(RegistryRef::parse("ghcr.io/Team").unwrap_err().exit_code(), 2);
    }

    /// Found by the `push_registry` fuzz target: any host starting with `127.` was spoken to in plain HTTP,
    /// `127.attacker.example` included, with the registry login in clear.
    #[test]
    fn plain_http_only_for_loopback_addresses() {
        for (host, scheme) in [
            ("127.0.0.1:5000", "http"),
            ("127.1.2.3", "http"),
            ("localhost", "http"),
            ("[::1]:5000", "http"),
            ("127.attacker.example", "https"),
            ("127.0.0.1.nip.io:5000", "https"),
            ("127.0.0.1000", "https"),
            ("10.0.0.1:5000", "https"),
        ] {
            assert_eq!(RegistryRef::parse(host).unwrap().scheme(), scheme, "{host}");
        }
    }
}
