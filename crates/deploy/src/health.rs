//! The health gate: every container of the deployed services running (and healthy where the image has
//! a HEALTHCHECK), and `health-url` answering 2xx, within `health-timeout`.
//!
//! A `localhost`/`127.0.0.1` URL is probed on the host through the step's SSH connection with
//! [`PROBE_SCRIPT`]: curl when present (it starts fastest, and the gate polls often), else python3,
//! else `wget` (GNU or BusyBox), else bash's `/dev/tcp` (plain HTTP only). Other URLs are probed from the runner with reqwest.

use std::time::{Duration, Instant};

use gangplank_core::cmd::Cmd;
use gangplank_core::compose::{self, Container, Verdict};
use gangplank_core::error::{Error, Result};
use gangplank_core::exec::Executor;

/// Exit 0 when the URL answers 2xx; prints what it saw either way. Proxies are ignored: the URL is local.
pub const PROBE_SCRIPT: &str = r#"url=$1
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'
if command -v curl >/dev/null 2>&1; then
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -- "$url"); rc=$?
  case $code in 2[0-9][0-9]) echo "HTTP $code"; exit 0;; 000) echo "no answer (curl exit $rc)"; exit 1;; esac
  echo "HTTP $code"; exit 1
fi
if command -v python3 >/dev/null 2>&1; then
  exec python3 -c '
import sys, urllib.request, urllib.error
o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = o.open(sys.argv[1], timeout=5); print("HTTP", r.status); sys.exit(0 if 200 <= r.status < 300 else 1)
except urllib.error.HTTPError as e:
    print("HTTP", e.code); sys.exit(1)
except Exception as e:
    print(type(e).__name__, e); sys.exit(1)
' "$url"
fi
if command -v wget >/dev/null 2>&1; then
  if wget --version 2>/dev/null | grep -q 'GNU Wget'; then
    wget -q -O /dev/null --tries=1 --timeout=5 "$url" && { echo "HTTP 2xx (wget)"; exit 0; }
  else
    wget -q -O /dev/null -T 5 "$url" && { echo "HTTP 2xx (wget)"; exit 0; }
  fi
  echo "wget failed with exit $?"; exit 1
fi
case $url in http://*) ;; *) echo "no curl, python3 or wget on the host to probe $url"; exit 1;; esac
rest=${url#http://}; hp=${rest%%/*}; path=/${rest#*/}; [ "$rest" = "$hp" ] && path=/
h=${hp%:*}; p=${hp##*:}; [ "$h" = "$hp" ] && p=80
line=$(bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3; head -n1 <&3' x "$h" "$p" "$path" 2>&1)
echo "$line"
case $line in "HTTP/"*" 2"[0-9][0-9]*) exit 0;; *) exit 1;; esac"#;

pub fn probe_cmd(url: &str) -> Cmd {
    Cmd::script(PROBE_SCRIPT).arg(url)
}

/// One poll of the gate in one round trip: the project's `docker inspect` JSON, then a marker line, then
/// the probe's answer and its status. Both scripts are fixed text passed in the environment.
pub const POLL_SCRIPT: &str = r#"sh -c "$GP_INSPECT" gangplank "$1"
printf '\n@@gangplank-probe@@\n'
sh -c "$GP_PROBE" gangplank "$2"
echo "@@status=$?""#;

pub fn poll_cmd(project: &str, url: &str) -> Cmd {
    Cmd::new("env")
        .arg(format!("GP_INSPECT={}", compose::INSPECT_PROJECT_SCRIPT))
        .arg(format!("GP_PROBE={PROBE_SCRIPT}"))
        .args(["sh", "-c", POLL_SCRIPT, "gangplank"])
        .arg(project)
        .arg(url)
        .privileged()
        .timeout(POLL_TIMEOUT)
}

/// One poll answers in well under a second; a host that takes this long is frozen or cut off.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(20);

/// Split [`POLL_SCRIPT`]'s output: (inspect JSON, probe passed, probe text).
pub fn parse_poll(stdout: &str) -> Option<(String, bool, String)> {
    let (json, rest) = stdout.split_once("\n@@gangplank-probe@@\n")?;
    let rest = rest.trim_end();
    let (text, status) = rest.rsplit_once("@@status=")?;
    Some((json.to_string(), status.trim() == "0", text.trim().to_string()))
}

/// Whether a URL names this host's loopback (probed on the host, not from the runner).
pub fn is_host_local(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    let host = hostport.rsplit_once('@').map(|(_, h)| h).unwrap_or(hostport);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "::1"
}

/// How the gate is run.
pub struct Gate<'a> {
    pub project: &'a str,
    pub services: &'a [String],
    pub health_url: Option<&'a str>,
    pub timeout: Duration,
    pub interrupted: &'a dyn Fn() -> bool,
    /// Only these containers (ids) when not empty: a rolling deploy gates its new containers alone.
    pub only: &'a [String],
}

/// A gate that did not pass: why, and the containers to show logs of.
#[derive(Debug)]
pub struct GateFailure {
    pub reason: String,
    pub failing: Vec<Container>,
}

/// How long the gate polls every 100 ms before it backs off.
const FAST_POLLING: Duration = Duration::from_secs(2);

/// Poll every 100 ms for [`FAST_POLLING`], then back off to every 2 s, until everything passes, something fails
/// for good (exited, restarting, unhealthy), or the timeout.
pub fn wait(exec: &mut dyn Executor, gate: &Gate) -> Result<std::result::Result<Vec<Container>, GateFailure>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    let runner_client = match gate.health_url {
        Some(u) if !is_host_local(u) => Some(
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?,
        ),
        _ => None,
    };
    loop {
        if (gate.interrupted)() {
            return Err(Error::interrupted("interrupted during the health gate"));
        }
        // A host-local URL is probed in the same round trip as the inspect.
        let mut host_probe = None;
        let json = match gate.health_url.filter(|u| is_host_local(u)) {
            Some(url) => {
                let out = exec.run(&poll_cmd(gate.project, url))?;
                let (json, ok, text) = parse_poll(&out.stdout_str()).ok_or_else(|| {
                    Error::failed(format!(
                        "the health poll on {} answered something unexpected: {}",
                        exec.label(),
                        out.tail(3)
                    ))
                })?;
                host_probe = Some((ok, text));
                json
            }
            None => exec
                .check(&compose::inspect_project(gate.project).timeout(POLL_TIMEOUT), "docker inspect")?
                .stdout_str(),
        };
        let containers: Vec<Container> = compose::parse_inspect(&json)?
            .into_iter()
            .filter(|c| !c.oneoff && (gate.services.is_empty() || gate.services.contains(&c.service)))
            .filter(|c| gate.only.is_empty() || gate.only.contains(&c.id))
            .collect();
        let mut waiting = None;
        if containers.is_empty() {
            waiting = Some("no containers of the project are running yet".to_string());
        }
        for c in &containers {
            match c.verdict() {
                Verdict::Ready => {}
                Verdict::Waiting(w) => waiting = waiting.or(Some(w)),
                Verdict::Failed(f) => {
                    let failing = containers.iter().filter(|c| c.verdict() != Verdict::Ready).cloned().collect();
                    return Ok(Err(GateFailure { reason: f, failing }));
                }
            }
        }
        if waiting.is_none() {
            if let Some(url) = gate.health_url {
                let probe = match &runner_client {
                    None => host_probe.clone().unwrap_or((false, String::new())),
                    Some(client) => match client.get(url).send() {
                        Ok(r) => (r.status().is_success(), format!("HTTP {}", r.status().as_u16())),
                        Err(e) => (false, e.to_string()),
                    },
                };
                if !probe.0 {
                    waiting = Some(format!("{url} answered {}", if probe.1.is_empty() { "nothing" } else { &probe.1 }));
                }
            }
        }
        let Some(why) = waiting else {
            return Ok(Ok(containers));
        };
        let elapsed = start.elapsed();
        if elapsed >= gate.timeout {
            let failing =
                containers.into_iter().filter(|c| c.verdict() != Verdict::Ready || gate.health_url.is_some()).collect();
            return Ok(Err(GateFailure {
                reason: format!("not healthy within {:.0}s: {why}", gate.timeout.as_secs_f32()),
                failing,
            }));
        }
        std::thread::sleep(delay.min(gate.timeout - elapsed));
        // Most releases turn ready within a couple of seconds (a HEALTHCHECK's first run, a server
        // binding its port): poll every 100 ms that long, then back off.
        if elapsed >= FAST_POLLING {
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// Print the last 100 log lines and the health log of each failing container, in one group.
pub fn show_failure(exec: &mut dyn Executor, failure: &GateFailure) {
    let _g = gangplank_core::actions::group(&format!("logs of failing containers on {}", exec.label()));
    for c in &failure.failing {
        gangplank_core::actions::info(format!(
            "--- {} ({}, status {}, restarts {})",
            c.name, c.image, c.status, c.restart_count
        ));
        match exec.run(&compose::logs(&c.id, 100)) {
            Ok(o) => gangplank_core::actions::print_untrusted(&format!("{}{}", o.stdout_str(), o.stderr_str())),
            Err(e) => gangplank_core::actions::info(format!("(cannot read logs: {})", e.message)),
        }
        if !c.health_log.is_empty() {
            gangplank_core::actions::info(format!("--- health log of {}", c.name));
            gangplank_core::actions::print_untrusted(&c.health_log.join("\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gangplank_core::exec::{Local, Output, Recording};

    #[test]
    fn which_urls_are_probed_on_the_host() {
        for u in ["http://localhost:8080/health", "http://127.0.0.1/", "http://[::1]:80/x", "http://u@LOCALHOST"] {
            assert!(is_host_local(u), "{u}");
        }
        for u in ["https://example.com/health", "http://10.0.0.1:8080", "http://localhost.evil.com/"] {
            assert!(!is_host_local(u), "{u}");
        }
    }

    #[test]
    fn probe_script_reports_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (i, s) in listener.incoming().take(2).enumerate() {
                use std::io::{Read, Write};
                let mut s = s.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let status = if i == 0 { "200 OK" } else { "503 Service Unavailable" };
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\nContent-Length: 2\r\n\r\nok").as_bytes());
            }
        });
        let mut l = Local::new(false);
        let url = format!("http://127.0.0.1:{port}/health");
        let ok = l.run(&probe_cmd(&url)).unwrap();
        assert!(ok.success(), "{}", ok.stdout_str());
        let bad = l.run(&poll_cmd("no-such-project-x", &url)).unwrap();
        let (json, ok, text) = parse_poll(&bad.stdout_str()).unwrap();
        assert_eq!((json.trim(), ok, text.as_str()), ("[]", false, "HTTP 503"));
    }

    /// Each way the probe can reach the URL, alone on the PATH: curl, python3, GNU wget, bash's
    /// `/dev/tcp`. Each must tell 2xx from 503 from nothing listening. (BusyBox's wget branch is not
    /// here: Debian's static BusyBox crashes in its glibc resolver on any URL, which the probe counts
    /// as a failure, as it should.)
    #[test]
    fn every_probe_tool_tells_success_from_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                use std::io::{Read, Write};
                let Ok(mut s) = s else { continue };
                // Read the whole request head: closing with unread bytes sends a reset, not the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let ok = String::from_utf8_lossy(&head).contains("GET /ok ");
                let status = if ok { "200 OK" } else { "503 Service Unavailable" };
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\nContent-Length: 2\r\n\r\nok").as_bytes());
            }
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tools: [(&str, &[(&str, &str)]); 4] = [
            ("curl", &[("curl", "/usr/bin/curl")]),
            ("python3", &[("python3", "/usr/bin/python3")]),
            ("GNU wget", &[("wget", "/usr/bin/wget"), ("grep", "/usr/bin/grep")]),
            ("bash /dev/tcp", &[("bash", "/usr/bin/bash"), ("head", "/usr/bin/head")]),
        ];
        for (name, links) in tools {
            let bin = tempfile::tempdir().unwrap();
            for (link, target) in links.iter().chain(&[("sh", "/bin/sh")]) {
                let there = std::path::Path::new(target).exists();
                assert!(there, "{name}: {target} is missing (`cargo xtask setup` installs it; docs/testbed.md)");
                std::os::unix::fs::symlink(target, bin.path().join(link)).unwrap();
            }
            let probe = |url: String| {
                let cmd = Cmd::new("env")
                    .arg(format!("PATH={}", bin.path().display()))
                    .arg("sh")
                    .arg("-c")
                    .arg(PROBE_SCRIPT)
                    .arg("probe")
                    .arg(url);
                Local::new(false).run(&cmd).unwrap()
            };
            let ok = probe(format!("http://127.0.0.1:{port}/ok"));
            assert!(ok.success(), "{name}: exit {} {}{}", ok.status, ok.stdout_str(), ok.stderr_str());
            let bad = probe(format!("http://127.0.0.1:{port}/bad"));
            assert!(!bad.success(), "{name} took 503 for a success: {}", bad.stdout_str());
            let none = probe(format!("http://127.0.0.1:{closed}/ok"));
            assert!(!none.success(), "{name} took a closed port for a success: {}", none.stdout_str());
        }
    }

    #[test]
    fn gate_fails_fast_on_an_unhealthy_container() {
        let json = r#"[{"Id":"c1","Name":"/app_web_1","State":{"Status":"running","Running":true,"Health":{"Status":"unhealthy"}},"Config":{"Labels":{"com.docker.compose.service":"web"}}}]"#;
        let mut r = Recording::new("h", false).reply("gangplank app", Output::ok(json));
        let gate = Gate {
            project: "app",
            services: &[],
            health_url: None,
            timeout: Duration::from_secs(30),
            interrupted: &|| false,
            only: &[],
        };
        let t = Instant::now();
        let f = wait(&mut r, &gate).unwrap().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(f.reason.contains("unhealthy"), "{}", f.reason);
        assert_eq!(r.log.len(), 1);
    }

    #[test]
    fn gate_passes_when_running_and_url_answers() {
        let json = r#"[{"Id":"c1","Name":"/app_web_1","State":{"Status":"running","Running":true},"Config":{"Labels":{"com.docker.compose.service":"web"}}}]"#;
        let mut r = Recording::new("h", false)
            .reply("GP_INSPECT", Output::ok(format!("{json}\n@@gangplank-probe@@\nHTTP 200\n@@status=0\n")));
        let gate = Gate {
            project: "app",
            services: &["web".to_string()],
            health_url: Some("http://localhost:8080/health"),
            timeout: Duration::from_secs(1),
            interrupted: &|| false,
            only: &[],
        };
        let ok = wait(&mut r, &gate).unwrap().unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(r.log.len(), 1, "inspect and probe in one round trip");
        assert!(r.log[0].ends_with("gangplank app http://localhost:8080/health"), "{}", r.log[0]);
    }
}
