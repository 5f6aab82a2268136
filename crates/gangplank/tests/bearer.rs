//! push-registry against a real `docker-registry` configured for token authentication (the `Bearer
//! realm=…,service=…,scope=…` challenge hosted registries use). The token service is the small part that
//! only exists as a separate product (Docker Hub's auth server, GHCR's): here it is a few lines that issue
//! ES256 JWTs the registry verifies against the certificate in its `rootcertbundle`, as distribution's
//! token spec describes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gangplank_testbed::{assert_no_secret, free_port, http_get, images, scrubbed_command, step_program, wait_for};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const USER: &str = "token-user";
const PASS: &str = "tok-pw-canary-7731";
const SERVICE: &str = "gangplank-registry";
const ISSUER: &str = "gangplank-token-issuer";

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
}

impl Signer {
    /// A P-256 key (ring) and a self-signed certificate for it (openssl), written as `cert.pem` in `dir`.
    fn new(dir: &Path) -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        std::fs::write(dir.join("key.p8"), pkcs8.as_ref()).unwrap();
        let run = |args: &[&str]| {
            let out = scrubbed_command("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (apt-get install -y openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["pkey", "-inform", "DER", "-in", "key.p8", "-out", "key.pem"]);
        run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gangplank-token",
        ]);
        run(&["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"]);
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Signer { key, cert_der: std::fs::read(dir.join("cert.der")).unwrap() }
    }

    fn token(&self, sub: &str, scopes: &[String]) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let mut p = s.splitn(3, ':');
                let (t, name, actions) = (p.next()?, p.next()?, p.next()?);
                Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&self.cert_der)]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now - 10,
            "jti": format!("{now}-{}", scopes.len()), "access": access,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.key.sign(&ring::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token endpoint: Basic credentials in, a JWT for the requested scopes out. Records each request's
/// user agent and scopes.
struct TokenServer {
    addr: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    tokens: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(signer: Signer) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2, tokens2) = (stop.clone(), seen.clone(), tokens.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v.trim().to_string())
                        })
                        .unwrap_or_default()
                };
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let scopes: Vec<String> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == "scope")
                    .map(|(_, v)| percent_decode(v))
                    .collect();
                let ok_auth = header("authorization")
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b).ok())
                    .is_some_and(|d| d == format!("{USER}:{PASS}").as_bytes());
                seen2.lock().unwrap().push(format!("{} {}", header("user-agent"), scopes.join(" ")));
                let (status, body) = if ok_auth {
                    let t = signer.token(USER, &scopes);
                    tokens2.lock().unwrap().push(t.clone());
                    ("200 OK", serde_json::json!({"token": t, "access_token": t, "expires_in": 300}).to_string())
                } else {
                    ("401 Unauthorized", r#"{"details":"bad credentials"}"#.to_string())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { addr, stop, seen, tokens }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct TokenRegistry {
    addr: String,
    child: Child,
    _dir: tempfile::TempDir,
    tokens: TokenServer,
}

impl TokenRegistry {
    fn start() -> TokenRegistry {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenServer::start(Signer::new(dir.path()));
        let addr = format!("127.0.0.1:{}", free_port());
        std::fs::create_dir(dir.path().join("storage")).unwrap();
        let config = format!(
            "version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
http:
  addr: {addr}
  secret: gangplank-bearer-test
auth:
  token:
    realm: http://{realm}/token
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {cert}
",
            storage = dir.path().join("storage").display(),
            realm = tokens.addr,
            cert = dir.path().join("cert.pem").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = scrubbed_command("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install -y docker-registry)");
        let r = TokenRegistry { addr, child, _dir: dir, tokens };
        wait_for("the token registry", Duration::from_secs(15), || {
            matches!(http_get(&r.addr, "/v2/", None), Ok((401, _))).then_some(())
        })
        .unwrap();
        r
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bearer_token_registry_digest_matches() {
    let s = images::samples().unwrap();
    let reg = TokenRegistry::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = scrubbed_command(step_program(env!("CARGO_BIN_EXE_gangplank"), "push-registry"))
        .args(["--registry", &reg.addr, "--username", USER, "--images", &format!("app={}", s.v1)])
        .args(["--tag", "b1", "--extra-tags", "latest"])
        .arg("--metadata-file")
        .arg(tmp.path().join("meta.json"))
        .env("INPUT_PASSWORD", PASS)
        .env("TMPDIR", tmp.path())
        .env("GITHUB_OUTPUT", tmp.path().join("out"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let outputs: BTreeMap<String, String> =
        gangplank_core::actions::parse_output_file(&std::fs::read_to_string(tmp.path().join("out")).unwrap())
            .unwrap()
            .into_iter()
            .collect();

    // The registry's own answer, through a token of our own.
    assert!(!reg.tokens.tokens.lock().unwrap().is_empty(), "the daemon never asked for a token");
    let (status, body) = {
        let resp = reqwest::blocking::Client::new()
            .get(format!("http://{}/token?service={SERVICE}&scope=repository:app:pull", reg.tokens.addr))
            .basic_auth(USER, Some(PASS))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    assert_eq!(status, 200);
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    let head = |tag: &str| {
        let resp = reqwest::blocking::Client::new()
            .head(format!("http://{}/v2/app/manifests/{tag}", reg.addr))
            .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
            .bearer_auth(t["token"].as_str().unwrap())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["docker-content-digest"].to_str().unwrap().to_string()
    };
    assert_eq!(outputs["digest"], head("b1"));
    assert_eq!(head("latest"), head("b1"));

    // Our HEAD went through the Bearer challenge: the token service saw our user agent and the pull scope.
    let seen = reg.tokens.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.starts_with("gangplank-push-registry/") && l.contains("repository:app:pull")),
        "{seen:?}"
    );
    let files = std::fs::read_to_string(tmp.path().join("meta.json")).unwrap()
        + &std::fs::read_to_string(tmp.path().join("out")).unwrap();
    for text in [&*stdout, &*stderr, &files] {
        assert_no_secret(&[("output", text)], PASS);
        for tok in reg.tokens.tokens.lock().unwrap().iter() {
            assert_no_secret(&[("output", text)], tok);
        }
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("docker-config"))
        .collect();
    assert!(left.is_empty());
}
