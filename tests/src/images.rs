//! Sample images built `FROM scratch` with busybox-static: nothing is ever pulled (no registry outside is
//! reachable from the machines this runs on).
//!
//! The sample app is `busybox httpd -f -p 8080 -h /www` under a shell that exits on SIGTERM, as a
//! well-behaved service does (httpd alone as PID 1 would ignore it and every stop would wait out the
//! grace period); `/www/health` holds the version, and the image's
//! HEALTHCHECK fetches it every half second. `broken` has no health file, so HTTP `/health` is 404 and the
//! container turns unhealthy after three failed checks.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};

use crate::{find_program, require_docker, run_checked, scrubbed_command, write_files};

/// The sample image tags, e.g. `gangplank-sample:v1`.
#[derive(Debug)]
pub struct Samples {
    /// `gangplank-sample`.
    pub repo: String,
    /// Healthy, `/health` answers `v1`.
    pub v1: String,
    /// Healthy, `/health` answers `v2`; a different image ID from v1.
    pub v2: String,
    /// Same app without its health file: unhealthy, `/health` is 404.
    pub broken: String,
    /// `/health` answers `stubborn`; httpd runs as PID 1 and so ignores SIGTERM, as many apps do: every
    /// stop waits out the grace period, then kills it.
    pub stubborn: String,
}

/// Port the sample app listens on inside its container.
pub const APP_PORT: u16 = 8080;

/// Builds the sample images once per process and returns their tags.
pub fn samples() -> Result<&'static Samples> {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(s) = SAMPLES.get() {
        return Ok(s);
    }
    // One build at a time; a failed build is retried by the next caller rather than cached.
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = SAMPLES.get() {
        return Ok(s);
    }
    let busybox = busybox_static()?;
    let repo = "gangplank-sample".to_string();
    let tag = |t: &str| format!("{repo}:{t}");
    for (version, health) in [("v1", Some("v1")), ("v2", Some("v2")), ("broken", None), ("stubborn", Some("stubborn"))]
    {
        let index = format!("<h1>gangplank sample {version}</h1>\n");
        let mut files: Vec<(&str, &[u8])> = vec![("busybox", &busybox), ("www/index.html", index.as_bytes())];
        if let Some(h) = health {
            files.push(("www/health", h.as_bytes()));
        }
        build(&tag(version), &sample_dockerfile(version), &files)
            .with_context(|| format!("building {}", tag(version)))?;
    }
    Ok(SAMPLES.get_or_init(|| Samples {
        v1: tag("v1"),
        v2: tag("v2"),
        broken: tag("broken"),
        stubborn: tag("stubborn"),
        repo: repo.clone(),
    }))
}

fn sample_dockerfile(version: &str) -> String {
    let cmd = if version == "stubborn" {
        r#"["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]"#
    } else {
        r#"["/bin/sh", "-c", "trap 'exit 0' TERM INT; httpd -f -p 8080 -h /www & wait"]"#
    };
    format!(
        r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
LABEL dev.gangplank.testbed="sample" dev.gangplank.version="{version}"
EXPOSE 8080
HEALTHCHECK --interval=500ms --timeout=2s --start-period=1s --retries=3 CMD ["/bin/wget", "-q", "-O-", "http://127.0.0.1:8080/health"]
CMD {cmd}
"#
    )
}

/// Builds image `tag` from a Dockerfile text and context files (written with mode 0755, so a copied binary
/// stays executable). Never pulls: the Dockerfile must start `FROM scratch` or from a local image.
pub fn build(tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> Result<()> {
    require_docker()?;
    build_on(None, tag, dockerfile, files)
}

/// [`build`] on the engine at `docker_host` (`unix:///…`, a namespaced host's), or on the machine's for `None`.
pub fn build_on(docker_host: Option<&str>, tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("gangplank-build-").tempdir().context("creating build context")?;
    write_files(dir.path(), &[("Dockerfile", dockerfile.as_bytes())])?;
    write_files(dir.path(), files)?;
    for (name, _) in files {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    // The classic builder: BuildKit (buildx) is not packaged on Debian 12, and it never pulls `scratch`.
    let mut docker = scrubbed_command("docker");
    if let Some(host) = docker_host {
        docker.arg("-H").arg(host);
    }
    run_checked(docker.env("DOCKER_BUILDKIT", "0").args(["build", "--quiet", "--tag", tag]).arg(dir.path()))
        .with_context(|| format!("docker build -t {tag}"))?;
    Ok(())
}

/// The statically linked busybox binary (a dynamic one would not run in a `FROM scratch` image).
pub fn busybox_static() -> Result<Vec<u8>> {
    let path = busybox_static_path()?;
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Where busybox-static's binary is; an error naming the package when busybox is missing or dynamic.
pub fn busybox_static_path() -> Result<PathBuf> {
    const HINT: &str = "install the Debian package `busybox-static` (apt-get install -y busybox-static)";
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find_map(find_program)
        .with_context(|| format!("busybox is not installed: {HINT}"))?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if has_interpreter(&bytes) {
        bail!("{} is dynamically linked (the `busybox` package): {HINT}", path.display());
    }
    Ok(path)
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP program header, i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// The Caddy image of the testbed, `gangplank-caddy:2.6`, built once per process (docs/testbed.md, "proxy").
pub fn caddy() -> Result<&'static str> {
    static CADDY: OnceLock<String> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(c) = CADDY.get() {
        return Ok(c);
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = CADDY.get() {
        return Ok(c);
    }
    let caddy = caddy_path()?;
    let tag = "gangplank-caddy:2.6".to_string();
    // The binary and exactly what it links (libc, libzstd and the loader), at the paths it looks in.
    let mut files: Vec<(String, Vec<u8>)> = vec![("root/usr/bin/caddy".into(), std::fs::read(&caddy)?)];
    for lib in linked_libraries(&caddy)? {
        let bytes = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        files.push((format!("root{}", lib.display()), bytes));
    }
    files.push(("Caddyfile".into(), CADDYFILE.as_bytes().to_vec()));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    build(&tag, CADDY_DOCKERFILE, &refs).with_context(|| format!("building {tag}"))?;
    Ok(CADDY.get_or_init(|| tag))
}

/// How the proxy finds the service (docs/actions.md, "strategy: rolling"): by its compose service name,
/// which Docker's DNS answers with every container of the service that is attached under that name.
/// Caddy resolves it at each new connection and Go's dialer tries each address in turn; a request whose
/// upstream went away (an old container stopping) is tried again for up to `lb_try_duration`.
pub const CADDYFILE: &str = r#"{
	admin off
	auto_https off
}

:80 {
	reverse_proxy web:8080 {
		lb_try_duration 10s
		lb_try_interval 50ms
		lb_retry_match {
			method GET HEAD
		}
	}
}
"#;

const CADDY_DOCKERFILE: &str = r#"FROM scratch
COPY root/ /
COPY Caddyfile /etc/caddy/Caddyfile
LABEL dev.gangplank.testbed="proxy"
ENV XDG_CONFIG_HOME=/tmp XDG_DATA_HOME=/tmp HOME=/tmp
EXPOSE 80
CMD ["/usr/bin/caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
"#;

/// The folder Debian's `caddy` package is unpacked in: `GANGPLANK_CADDY_ROOT`, else `/opt/gangplank-caddy`
/// (where `cargo xtask setup` unpacks it; docs/testbed.md, "proxy").
pub fn caddy_root() -> PathBuf {
    std::env::var_os("GANGPLANK_CADDY_ROOT")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/gangplank-caddy"))
}

/// Where Debian's `caddy` binary is: `usr/bin/caddy` under [`caddy_root`], else installed.
pub fn caddy_path() -> Result<PathBuf> {
    let root = caddy_root();
    [root.join("usr/bin/caddy"), PathBuf::from("/usr/bin/caddy")].into_iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "Caddy is not there: `cargo xtask setup` unpacks Debian's package into {} (docs/testbed.md, \"proxy\"), \
             or set GANGPLANK_CADDY_ROOT to the folder it was unpacked in",
            root.display()
        )
    })
}

/// The shared libraries `ldd` says `binary` loads, and its loader.
pub fn linked_libraries(binary: &std::path::Path) -> Result<Vec<PathBuf>> {
    let out = run_checked(scrubbed_command("ldd").arg(binary))?;
    let mut libs = vec![];
    for line in out.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() {
        bail!("`ldd {}` named no library:\n{out}", binary.display());
    }
    Ok(libs)
}

/// The example app's base images (examples/compose-app), which cannot be pulled here, built `FROM scratch` on
/// the engine at `docker_host` (docs/testbed.md, "Workflows under act"). Local tags, `<prefix>-python:3.12-alpine`
/// and so on; a test pushes them where the app's files are pointed ([`crate::act::use_testbed_base_images`]).
#[derive(Debug, Clone)]
pub struct ExampleBases {
    /// `python:3.12-alpine`'s place: this machine's own CPython (its binary, the libraries it links and its
    /// standard library, without tests and GUI modules) and busybox as the shell, `adduser` and `wget`.
    pub python: String,
    /// `caddy:2.6`'s place: Debian's Caddy with the official image's paths (`/etc/caddy/Caddyfile`, `/data`,
    /// `/config`) and command.
    pub caddy: String,
    /// `postgres:16-alpine`'s place: no database server (the example app never connects to it), busybox with the
    /// parts compose.yaml uses: the entrypoint refuses to start without `POSTGRES_PASSWORD`, as the real one
    /// does, and `pg_isready` answers once it is up.
    pub postgres: String,
}

/// Builds [`ExampleBases`] on `docker_host`, tagged `<prefix>-{python,caddy,postgres}:…`.
pub fn example_bases_on(docker_host: &str, prefix: &str) -> Result<ExampleBases> {
    let busybox = busybox_static()?;
    let bases = ExampleBases {
        python: format!("{prefix}-python:3.12-alpine"),
        caddy: format!("{prefix}-caddy:2.6"),
        postgres: format!("{prefix}-postgres:16-alpine"),
    };

    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("root/bin/busybox".into(), busybox.clone()),
        ("root/etc/passwd".into(), b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
        ("root/etc/group".into(), b"root:x:0:\n".to_vec()),
        ("root/home/.keep".into(), vec![]),
        ("root/tmp/.keep".into(), vec![]),
        ("root/usr/local/bin/.keep".into(), vec![]),
        // Debian's busybox-static has no `adduser` applet; Alpine's has, and the example's Dockerfile uses it.
        ("root/usr/sbin/adduser".into(), ADDUSER.as_bytes().to_vec()),
    ];
    let python = PathBuf::from("/usr/bin/python3.11");
    if !python.is_file() {
        bail!("{} is missing: install the Debian package `python3.11`", python.display());
    }
    files.push(("root/usr/bin/python3.11".into(), std::fs::read(&python)?));
    let stdlib = PathBuf::from("/usr/lib/python3.11");
    let mut libs = linked_libraries(&python)?;
    let mut stack = vec![stdlib.clone()];
    const SKIP: [&str; 11] = [
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "__pycache__",
        "dist-packages",
        "site-packages",
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if SKIP.contains(&name.as_str()) || name.starts_with("config-") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if name.ends_with(".so") {
                    libs.extend(linked_libraries(&path).unwrap_or_default());
                }
                files.push((format!("root{}", path.display()), bytes));
            }
        }
    }
    libs.sort();
    libs.dedup();
    for lib in libs {
        let bytes = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        files.push((format!("root{}", lib.display()), bytes));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    build_on(Some(docker_host), &bases.python, PYTHON_DOCKERFILE, &refs)
        .with_context(|| format!("building {}", bases.python))?;

    let caddy = caddy_path()?;
    let mut files: Vec<(String, Vec<u8>)> = vec![("root/usr/bin/caddy".into(), std::fs::read(&caddy)?)];
    for lib in linked_libraries(&caddy)? {
        files.push((format!("root{}", lib.display()), std::fs::read(&lib)?));
    }
    files.push(("root/etc/caddy/Caddyfile".into(), CADDYFILE.as_bytes().to_vec()));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    build_on(Some(docker_host), &bases.caddy, EXAMPLE_CADDY_DOCKERFILE, &refs)
        .with_context(|| format!("building {}", bases.caddy))?;

    let files: Vec<(&str, &[u8])> = vec![
        ("root/bin/busybox", &busybox),
        ("root/usr/local/bin/docker-entrypoint.sh", POSTGRES_ENTRYPOINT.as_bytes()),
        ("root/usr/local/bin/pg_isready", PG_ISREADY.as_bytes()),
    ];
    build_on(Some(docker_host), &bases.postgres, POSTGRES_DOCKERFILE, &files)
        .with_context(|| format!("building {}", bases.postgres))?;
    Ok(bases)
}

const PYTHON_DOCKERFILE: &str = r#"FROM scratch
COPY root/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/ln", "-s", "/usr/bin/python3.11", "/usr/local/bin/python"]
RUN ["/bin/ln", "-s", "/usr/bin/python3.11", "/usr/local/bin/python3"]
LABEL dev.gangplank.testbed="example-base"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
"#;

/// Alpine's `adduser` as far as Dockerfiles use it: `adduser -D [-S] [-u UID] [-h HOME] [-s SHELL] [-G GROUP] NAME`
/// (no password; a group of the user's name unless `-G`).
const ADDUSER: &str = r#"#!/bin/sh
uid=1000 home="" shell=/bin/sh group=""
while [ $# -gt 1 ]; do
    case $1 in
        -D | -S) shift ;;
        -u) uid=$2; shift 2 ;;
        -h) home=$2; shift 2 ;;
        -s) shell=$2; shift 2 ;;
        -G) group=$2; shift 2 ;;
        *) echo "adduser: unsupported option $1" >&2; exit 1 ;;
    esac
done
name=$1
[ -n "$name" ] || { echo "usage: adduser -D [-u UID] NAME" >&2; exit 1; }
if grep -q "^$name:" /etc/passwd; then echo "adduser: user '$name' in use" >&2; exit 1; fi
home=${home:-/home/$name}
if [ -z "$group" ]; then
    gid=$uid
    echo "$name:x:$gid:" >>/etc/group
else
    gid=$(grep "^$group:" /etc/group | cut -d: -f3)
    [ -n "$gid" ] || { echo "adduser: unknown group $group" >&2; exit 1; }
fi
echo "$name:x:$uid:$gid:Linux User,,,:$home:$shell" >>/etc/passwd
mkdir -p "$home" && chown "$uid:$gid" "$home"
"#;

const EXAMPLE_CADDY_DOCKERFILE: &str = r#"FROM scratch
COPY root/ /
LABEL dev.gangplank.testbed="example-base"
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
EXPOSE 80 443 2019
WORKDIR /srv
CMD ["/usr/bin/caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
"#;

const POSTGRES_DOCKERFILE: &str = r#"FROM scratch
COPY root/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
LABEL dev.gangplank.testbed="example-base"
ENV PATH=/usr/local/bin:/usr/bin:/bin
EXPOSE 5432
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
"#;

const POSTGRES_ENTRYPOINT: &str = r#"#!/bin/sh
# The postgres image's entrypoint, as far as compose.yaml relies on it: no password, no start.
if [ -z "$POSTGRES_PASSWORD" ]; then
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    exit 1
fi
mkdir -p /var/run/postgresql /var/lib/postgresql/data
touch /var/run/postgresql/ready
trap 'rm -f /var/run/postgresql/ready; exit 0' TERM INT
while :; do
    sleep 1 &
    wait $!
done
"#;

const PG_ISREADY: &str = r#"#!/bin/sh
if [ -f /var/run/postgresql/ready ]; then
    echo "/var/run/postgresql:5432 - accepting connections"
    exit 0
fi
echo "/var/run/postgresql:5432 - no response"
exit 2
"#;
