//! actions/install.sh against release archives served on loopback (issue 6): a good archive installs the one
//! `gangplank` executable; a tampered one, a missing checksum and a missing hasher are each refused before anything
//! is extracted.
//!
//! Each case lays out a copy of the script next to its own `checksums.txt` (the script trusts only the manifest
//! beside it, as in a release commit), serves archives over plain http from 127.0.0.1 (allowed only because
//! `GANGPLANK_DOWNLOAD_URL` names a loopback host) and runs it with a `PATH` of exactly the tools it may use.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gangplank_testbed::{find_program, scrubbed_command};

const VERSION: &str = "1.2.3";
/// What install.sh picks on this x86_64 Linux machine: the static (musl) archive.
const TARGET: &str = "x86_64-unknown-linux-musl";
/// What install.sh may use besides a hasher.
const TOOLS: [&str; 10] = ["bash", "curl", "tar", "gzip", "mktemp", "mkdir", "rm", "chmod", "mv", "cp"];

fn archive_name() -> String {
    format!("gangplank-{VERSION}-{TARGET}.tar.gz")
}

/// A static file server on 127.0.0.1 that counts the requests it answers.
struct Server {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn serve(root: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let file = root.join(&path);
            let response = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    Server { url, hits }
}

struct Case {
    tmp: tempfile::TempDir,
    script: PathBuf,
    served: PathBuf,
    good_archive: PathBuf,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        let actions = tmp.path().join("gangplank").join("actions");
        std::fs::create_dir_all(&actions).unwrap();
        let script = actions.join("install.sh");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        std::fs::copy(repo.join("actions").join("install.sh"), &script).unwrap();

        // The archive: one folder holding the one executable, as `cargo xtask dist` lays it out.
        let stage = tmp.path().join("stage");
        let folder = stage.join(format!("gangplank-{VERSION}-{TARGET}"));
        std::fs::create_dir_all(&folder).unwrap();
        let p = folder.join("gangplank");
        std::fs::write(&p, format!("#!/bin/sh\necho \"stand-in gangplank {VERSION} $*\"\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let served = tmp.path().join("served");
        std::fs::create_dir_all(served.join(format!("v{VERSION}"))).unwrap();
        let good_archive = tmp.path().join(archive_name());
        let status = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&good_archive)
            .arg("-C")
            .arg(&stage)
            .arg(format!("gangplank-{VERSION}-{TARGET}"))
            .status()
            .unwrap();
        assert!(status.success());
        Case { tmp, script, served, good_archive }
    }

    fn serve_archive(&self, bytes: &[u8]) {
        std::fs::write(self.served.join(format!("v{VERSION}")).join(archive_name()), bytes).unwrap();
    }

    fn write_checksums(&self, body: &str) {
        let text = format!("# test manifest\n{body}");
        std::fs::write(self.script.with_file_name("checksums.txt"), text).unwrap();
    }

    fn good_sum(&self) -> String {
        sha256_hex(&std::fs::read(&self.good_archive).unwrap())
    }

    /// A directory of symlinks to exactly the tools install.sh may use, with or without the hashers.
    fn tools(&self, with_hasher: bool) -> PathBuf {
        let dir = self.tmp.path().join(if with_hasher { "tools" } else { "tools-nohash" });
        if dir.exists() {
            return dir;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let mut names: Vec<&str> = TOOLS.to_vec();
        if with_hasher {
            names.push("sha256sum");
        }
        for name in names {
            let target = find_program(name).unwrap_or_else(|| panic!("`{name}` is needed by this test"));
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
        }
        dir
    }

    fn run(&self, path: &Path, env: &[(&str, &str)]) -> (Output, String) {
        self.run_with_args(path, env, &[])
    }

    fn run_with_args(&self, path: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, String) {
        let output_file = self.tmp.path().join("github-output");
        std::fs::write(&output_file, "").unwrap();
        let runner_temp = self.tmp.path().join("runner-temp");
        std::fs::create_dir_all(&runner_temp).unwrap();
        let mut cmd = scrubbed_command(find_program("bash").unwrap());
        cmd.arg(&self.script)
            .args(args)
            .env_remove("GANGPLANK_BIN_DIR")
            .env_remove("GANGPLANK_DOWNLOAD_URL")
            .env_remove("GANGPLANK_ACTION_REF")
            .env_remove("GANGPLANK_ACTION_PATH")
            .env("PATH", path)
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TEMP", &runner_temp)
            .env("RUNNER_TOOL_CACHE", self.tmp.path().join("tool-cache"))
            .env("GITHUB_OUTPUT", &output_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out, std::fs::read_to_string(&output_file).unwrap())
    }

    /// Binaries extracted anywhere under the runner's temp directory.
    fn extracted(&self) -> bool {
        let rt = self.tmp.path().join("runner-temp");
        std::fs::read_dir(rt).map(|d| d.count() > 0).unwrap_or(false)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    // sha256sum is a test prerequisite anyway (the good case needs a hasher); no crypto crate for one digest.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    let out = std::process::Command::new("sha256sum").arg(tmp.path()).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn good_archive_installs_and_is_cached() {
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let server = serve(case.served.clone());
    let tools = case.tools(true);
    let env = [("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", server.url.as_str())];

    let (out, outputs) = case.run(&tools, &env);
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    let path = outputs.strip_prefix("path=").expect("a path= output").trim();
    assert!(path.ends_with(&format!("gangplank-{VERSION}-{TARGET}/gangplank")), "{path}");
    let ran = std::process::Command::new(path).arg("deploy-remote").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "stand-in gangplank 1.2.3 deploy-remote");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // Second run: the verified archive comes from the tool cache, checked again, not downloaded again.
    let (out, outputs) = case.run(&tools, &env);
    assert!(out.status.success(), "cached install failed: {}", stderr(&out));
    assert!(outputs.starts_with("path="));
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "served from the cache");
}

#[test]
fn a_release_commit_pinned_by_sha_takes_its_version_from_checksums() {
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let server = serve(case.served.clone());
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let (out, outputs) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", sha), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    assert!(outputs.starts_with("path="), "{outputs}");
}

#[test]
fn tampered_archive_is_refused() {
    let case = Case::new();
    let mut bytes = std::fs::read(&case.good_archive).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    case.serve_archive(&bytes);
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let server = serve(case.served.clone());
    let (out, outputs) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("checksum mismatch"), "{}", stderr(&out));
    assert_eq!(outputs, "", "no path output");
    assert!(!case.extracted(), "nothing extracted");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn missing_checksum_is_refused_before_downloading() {
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    // A digest for another target only.
    case.write_checksums(&format!("{}  gangplank-{VERSION}-aarch64-apple-darwin.tar.gz\n", case.good_sum()));
    let server = serve(case.served.clone());
    let (out, outputs) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no SHA-256"), "{}", stderr(&out));
    assert_eq!(outputs, "");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0, "nothing downloaded");

    // And an empty manifest at a release tag is refused too, never a silent build from source.
    case.write_checksums("");
    let (out, _) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no SHA-256"), "{}", stderr(&out));
}

#[test]
fn no_hasher_is_refused_before_downloading() {
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let server = serve(case.served.clone());
    let (out, outputs) =
        case.run(&case.tools(false), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("neither sha256sum nor shasum"), "{}", stderr(&out));
    assert_eq!(outputs, "");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0, "nothing downloaded");
}

#[test]
fn plain_http_to_a_host_off_this_machine_is_refused() {
    let case = Case::new();
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    // Refused before any connection is attempted: the URL is never contacted.
    let (out, _) = case.run(
        &case.tools(true),
        &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", "http://downloads.example.invalid")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only https is allowed"), "{}", stderr(&out));
}

#[test]
fn an_unreleased_ref_builds_from_source_and_says_so_without_cargo() {
    let case = Case::new();
    case.write_checksums("");
    let (out, outputs) = case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "main")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cargo is not installed"), "{}", stderr(&out));
    assert_eq!(outputs, "");
}

#[test]
fn a_preinstalled_binary_is_used_as_it_is() {
    let case = Case::new();
    let bin_dir = case.tmp.path().join("preinstalled");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("gangplank");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, outputs) = case.run(&case.tools(true), &[("GANGPLANK_BIN_DIR", bin_dir.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(outputs.trim(), format!("path={}", bin.display()));
}

/// A stand-in `cargo` that records its arguments and "builds" the binary where cargo would put it.
fn fake_cargo(case: &Case) -> (PathBuf, PathBuf) {
    let dir = case.tmp.path().join("fake-cargo");
    std::fs::create_dir_all(&dir).unwrap();
    let log = case.tmp.path().join("cargo-args");
    let cargo = dir.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/bash\nprintf '%s\\n' \"$@\" >{log}\nmkdir -p \"$CARGO_TARGET_DIR/release\"\n\
             printf '#!/bin/sh\\necho built\\n' >\"$CARGO_TARGET_DIR/release/gangplank\"\n\
             chmod +x \"$CARGO_TARGET_DIR/release/gangplank\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The checkout the action runs from has a workspace manifest.
    std::fs::write(case.script.parent().unwrap().parent().unwrap().join("Cargo.toml"), "[workspace]\n").unwrap();
    (dir, log)
}

#[test]
fn an_unreleased_ref_builds_with_cargo_locked_into_the_tool_cache() {
    let case = Case::new();
    case.write_checksums("");
    let (cargo_dir, log) = fake_cargo(&case);
    let path = format!("{}:{}", cargo_dir.display(), case.tools(true).display());
    let (out, outputs) = case.run(Path::new(&path), &[("GANGPLANK_ACTION_REF", "main")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let args = std::fs::read_to_string(&log).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let root = case.script.parent().unwrap().parent().unwrap();
    assert_eq!(
        args,
        [
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
            &root.join("Cargo.toml").display().to_string(),
            "-p",
            "gangplank"
        ]
    );
    let cache = case.tmp.path().join("tool-cache");
    let installed = outputs.strip_prefix("path=").unwrap().trim();
    assert!(Path::new(installed).starts_with(&cache), "{installed} is under RUNNER_TOOL_CACHE");
    let ran = std::process::Command::new(installed).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "built");
}

#[test]
fn a_checkout_of_the_repository_builds_from_source_even_at_a_release_tag() {
    let case = Case::new();
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let (cargo_dir, log) = fake_cargo(&case);
    let path = format!("{}:{}", cargo_dir.display(), case.tools(true).display());
    let workspace = case.tmp.path().to_str().unwrap().to_string();
    let action_path = case.script.parent().unwrap().join("deploy-remote");
    let (out, outputs) = case.run(
        Path::new(&path),
        &[
            ("GANGPLANK_ACTION_REF", "v1.2.3"),
            ("GITHUB_WORKSPACE", &workspace),
            ("GANGPLANK_ACTION_PATH", action_path.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(log.exists(), "cargo ran");
    assert!(outputs.starts_with("path="));
}

#[test]
fn a_release_checkout_at_its_tag_downloads_instead_of_building() {
    // The pipeline's first job at a release tag: the checkout is the release commit, so its archive is installed
    // and nothing is compiled.
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    let server = serve(case.served.clone());
    let (cargo_dir, log) = fake_cargo(&case);
    let path = format!("{}:{}", cargo_dir.display(), case.tools(true).display());
    let workspace = case.tmp.path().to_str().unwrap().to_string();
    let action_path = case.script.parent().unwrap().join("deploy-remote");
    let env = |ref_: &'static str| {
        vec![
            ("GANGPLANK_ACTION_REF", ref_),
            ("GANGPLANK_RELEASE_CHECKOUT", "true"),
            ("GANGPLANK_DOWNLOAD_URL", server.url.as_str()),
            ("GITHUB_WORKSPACE", workspace.as_str()),
            ("GANGPLANK_ACTION_PATH", action_path.to_str().unwrap()),
        ]
    };
    let (out, outputs) = case.run(Path::new(&path), &env("v1.2.3"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!log.exists(), "cargo ran at a release checkout");
    assert!(case.extracted(), "the release archive was installed");
    assert!(outputs.starts_with("path="), "{outputs}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "downloaded once");
    // Any other ref is a checkout that may hold anything: it is built, whatever the knob says.
    let (out, _) = case.run(Path::new(&path), &env("main"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(log.exists(), "a branch checkout is built from source");
}

#[test]
fn a_step_name_as_argument_is_refused() {
    // install.sh of the five separate binaries took the binary's name; the one executable takes nothing, and a
    // caller still passing a name is told so instead of getting something it did not ask for.
    let case = Case::new();
    let (out, outputs) =
        case.run_with_args(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3")], &["deploy-remote"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("takes no arguments") && stderr(&out).contains("hint:"), "{}", stderr(&out));
    assert_eq!(outputs, "");
}

#[test]
fn plain_http_to_a_host_that_only_looks_like_loopback_is_refused() {
    let case = Case::new();
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    // Each names another host: a subdomain starting with the address, user info before `@`, a name that
    // starts with `localhost`, a port followed by user info, an address out of range.
    for url in [
        "http://127.0.0.1.evil.example",
        "http://127.0.0.1@evil.example",
        "http://127.0.0.1:80@evil.example",
        "http://localhost.evil.example:8080",
        "http://127.0.0.300",
    ] {
        let (out, outputs) =
            case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", url)]);
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains("only https is allowed"), "{url}: {}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{url}: {}", stderr(&out));
        assert!(!stderr(&out).contains("downloading"), "{url}: refused only after trying: {}", stderr(&out));
        assert_eq!(outputs, "");
    }
}

/// A server on 127.0.0.1 that answers every request with a redirect to `to`, counting the requests.
fn redirect_to(to: String) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let _ = stream.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Server { url, hits }
}

#[test]
fn a_plain_http_download_follows_no_redirect() {
    let case = Case::new();
    case.serve_archive(&std::fs::read(&case.good_archive).unwrap());
    case.write_checksums(&format!("{}  {}\n", case.good_sum(), archive_name()));
    // The archive is good and its checksum holds: only the redirect to another origin is wrong.
    let elsewhere = serve(case.served.clone());
    let origin = redirect_to(elsewhere.url.clone());
    let (out, outputs) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &origin.url)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("download of") && stderr(&out).contains("failed"), "{}", stderr(&out));
    assert_eq!(outputs, "");
    assert!(origin.hits.load(Ordering::SeqCst) >= 1, "the origin was asked");
    assert_eq!(elsewhere.hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert!(!case.extracted());
}

#[test]
fn an_archive_whose_top_folder_is_a_symlink_is_refused_and_nothing_outside_changes() {
    let case = Case::new();
    // Outside the install folder: a file at the path the link would lead the chmod to.
    let outside = case.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("gangplank"), "not an executable\n").unwrap();
    std::fs::set_permissions(outside.join("gangplank"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let stage = case.tmp.path().join("evil-stage");
    std::fs::create_dir_all(&stage).unwrap();
    let top = format!("gangplank-{VERSION}-{TARGET}");
    std::os::unix::fs::symlink(&outside, stage.join(&top)).unwrap();
    let evil = case.tmp.path().join("evil.tar.gz");
    let status =
        std::process::Command::new("tar").arg("-czf").arg(&evil).arg("-C").arg(&stage).arg(&top).status().unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&evil).unwrap();
    case.serve_archive(&bytes);
    // The checksum holds: a compromised release, or a mistake in packaging, not a download gone wrong.
    case.write_checksums(&format!("{}  {}\n", sha256_hex(&bytes), archive_name()));
    let server = serve(case.served.clone());
    let (out, outputs) =
        case.run(&case.tools(true), &[("GANGPLANK_ACTION_REF", "v1.2.3"), ("GANGPLANK_DOWNLOAD_URL", &server.url)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds a link"), "{}", stderr(&out));
    assert_eq!(outputs, "");
    let mode = std::fs::metadata(outside.join("gangplank")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the file outside the install folder was chmodded");
}
