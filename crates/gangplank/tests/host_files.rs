//! Files on the host keep the mode they have in the repository and are never written through a symlink
//! (issue 14, items 4 and 5), on the testbed's real sshd, Docker engine and registry.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Every path, mode and content under `dir` (links as links), to show nothing changed there.
fn tree(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -printf '%p %y %m %s %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
        .arg("tree")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn uploaded_files_keep_their_mode_through_switch_backup_and_restore() {
    let fx = Fixture::new("modes");
    let w = fx.work.path();
    std::fs::create_dir_all(w.join("conf/keys")).unwrap();
    for (rel, m) in
        [("conf/keys/tls.key", 0o600), ("conf/app.conf", 0o640), ("conf/run.sh", 0o755), ("conf/open.txt", 0o666)]
    {
        std::fs::write(w.join(rel), format!("{rel} one\n")).unwrap();
        set_mode(&w.join(rel), m);
    }
    // A world-readable env file still lands as 0600.
    set_mode(&w.join("prod.env"), 0o644);
    let args = |tag: &str| with(fx.deploy_args(tag), &["--files", "conf"]);
    let r = fx.deploy(&args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    let a = &fx.app_dir;
    let want =
        [("conf/keys/tls.key", 0o600), ("conf/app.conf", 0o640), ("conf/run.sh", 0o755), ("conf/open.txt", 0o644)];
    for (rel, m) in want {
        assert_eq!(mode(&a.join(rel)), m, "{rel} after the first deploy");
    }
    assert_eq!(mode(&a.join(".env")), 0o600);
    // Folders made for live files can be entered by a container running as another user.
    assert_eq!(mode(&a.join("conf")), 0o755);
    assert_eq!(mode(&a.join("conf/keys")), 0o755);

    // A release that fails its gate: the changed key is backed up at 0600 and comes back at 0600.
    std::fs::write(w.join("conf/keys/tls.key"), "conf/keys/tls.key two\n").unwrap();
    let r = fx.deploy(&args("broken"));
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(r.out("rolled-back"), "true", "{r:?}");
    let backups: Vec<_> = std::fs::read_dir(a.join(".gangplank/backups/conf/keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".new"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(mode(&backups[0]), 0o600, "the backup keeps the mode");
    assert_eq!(fx.read_host("conf/keys/tls.key"), "conf/keys/tls.key one\n");
    for (rel, m) in want {
        assert_eq!(mode(&a.join(rel)), m, "{rel} after the restore");
    }
    assert_eq!(mode(&a.join(".env")), 0o600);

    // The next good release switches the new key in, still 0600.
    let r = fx.deploy(&args("v2"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.read_host("conf/keys/tls.key"), "conf/keys/tls.key two\n");
    for (rel, m) in want {
        assert_eq!(mode(&a.join(rel)), m, "{rel} after the second deploy");
    }
}

/// A host where someone (or something) put a symlink where gangplank writes. Each case is set up on a
/// deployed app dir, refused before anything changes, and taken away again.
struct Case {
    name: &'static str,
    /// The path (relative to the app dir) made a symlink to a folder or file outside.
    link: &'static str,
    /// Link to a file (`.env`) rather than a folder.
    file: bool,
}

const CASES: &[Case] = &[
    Case { name: "a symlinked subfolder with uploads", link: "conf", file: false },
    Case { name: "a symlinked .gangplank", link: ".gangplank", file: false },
    Case { name: "a symlinked .gangplank/backups", link: ".gangplank/backups", file: false },
    Case { name: "a symlinked .gangplank/staging", link: ".gangplank/staging", file: false },
    Case { name: "a symlinked folder under backups", link: ".gangplank/backups/conf", file: false },
    Case { name: "a symlinked .env", link: ".env", file: true },
    Case { name: "a symlinked uploaded file", link: "conf/app.conf", file: true },
];

/// Replace `rel` in the app dir by a symlink to a copy of it in `outside` (so the link leads to real
/// content, as a hand-made link would); returns how to put the real path back.
fn make_link(app: &Path, rel: &str, outside: &Path, file: bool) -> impl FnOnce() {
    let real = app.join(rel);
    let target = outside.join(rel.replace('/', "_"));
    if real.exists() {
        assert!(Command::new("cp").arg("-a").arg(&real).arg(&target).status().unwrap().success());
        let parked = app.join(format!("{rel}.parked"));
        std::fs::rename(&real, &parked).unwrap();
    } else if file {
        std::fs::write(&target, "ANOTHER_APP_SECRET=elsewhere\n").unwrap();
    } else {
        std::fs::create_dir_all(&target).unwrap();
    }
    std::os::unix::fs::symlink(&target, &real).unwrap();
    let app = app.to_path_buf();
    let rel = rel.to_string();
    move || {
        std::fs::remove_file(app.join(&rel)).unwrap();
        let parked = app.join(format!("{rel}.parked"));
        if parked.exists() || std::fs::symlink_metadata(&parked).is_ok() {
            std::fs::rename(parked, app.join(&rel)).unwrap();
        }
    }
}

#[test]
fn uploads_and_backups_never_follow_a_symlink_on_the_host() {
    let fx = Fixture::new("host-links");
    let w = fx.work.path();
    std::fs::create_dir_all(w.join("conf")).unwrap();
    std::fs::write(w.join("conf/app.conf"), "one\n").unwrap();
    let args = |tag: &str| with(fx.deploy_args(tag), &["--files", "conf"]);
    let r = fx.deploy(&args("v1"));
    assert_eq!(r.status, 0, "{r:?}");
    // The next deploy would replace conf/app.conf and .env, so each needs a backup.
    std::fs::write(w.join("conf/app.conf"), "two\n").unwrap();
    fx.write_env(&format!("APP_TOKEN={ENV_CANARY}\nMODE=two\n"));

    for case in CASES {
        let outside = tempfile::tempdir().unwrap();
        let undo = make_link(&fx.app_dir, case.link, outside.path(), case.file);
        let app_before = fx.tree_hash();
        let outside_before = tree(outside.path());

        let r = fx.deploy(&args("v2"));
        assert_eq!(r.status, 2, "{}: {r:?}", case.name);
        let link = fx.app_dir.join(case.link);
        assert!(
            r.stderr.contains(&format!("`{}` on ", link.display())) && r.stderr.contains("is a symlink"),
            "{}: {}",
            case.name,
            r.stderr
        );
        assert!(r.stderr.contains("hint: "), "{}: {}", case.name, r.stderr);
        assert_eq!(tree(outside.path()), outside_before, "{}: written outside the app dir", case.name);
        assert_eq!(fx.tree_hash(), app_before, "{}: the app dir changed", case.name);
        assert_eq!(fx.health().as_deref(), Some("v1"), "{}", case.name);

        // rollback and sync-secrets take the same lock first; for gangplank's own folders it refuses.
        if case.link.starts_with(".gangplank") && !case.link.contains("/conf") {
            let mut rb = fx.ssh_args();
            rb.extend(["--health-timeout".to_string(), "20s".into()]);
            let r = fx.rollback(&rb);
            assert_eq!(r.status, 2, "rollback, {}: {r:?}", case.name);
            assert!(r.stderr.contains("is a symlink") && r.stderr.contains("hint: "), "{}: {}", case.name, r.stderr);
            assert_eq!(tree(outside.path()), outside_before, "rollback, {}: written outside", case.name);
            assert_eq!(fx.tree_hash(), app_before, "rollback, {}: the app dir changed", case.name);
        }
        undo();
    }

    // With every link gone the same deploy goes through.
    let r = fx.deploy(&args("v2"));
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(fx.read_host("conf/app.conf"), "two\n");
}

/// sync-secrets' env-file target backs up `.env` before it writes it: a `.env` that is a link would have
/// the link's target copied into backups and the link replaced; a linked `.gangplank` or backups folder
/// would take the lock, backup and audit line outside the app dir.
#[test]
fn the_secret_sync_never_backs_up_or_writes_through_a_symlink() {
    let sshd = gangplank_testbed::Sshd::start().expect("testbed sshd");
    let host_root = tempfile::tempdir().unwrap();
    let app = host_root.path().join("app");
    std::fs::create_dir_all(app.join(".gangplank/backups")).unwrap();
    std::fs::write(app.join(".env"), "OLD=1\n").unwrap();
    set_mode(&app.join(".env"), 0o600);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("secrets.yml"), "defaults: {targets: [env-file]}\nvalues:\n  DB_PASSWORD: {}\n")
        .unwrap();
    std::fs::write(work.path().join("values.env"), "DB_PASSWORD=k9Db-link-canary-31337\n").unwrap();
    let sync = || {
        let mut c = gangplank_testbed::scrubbed_command(env!("CARGO_BIN_EXE_gangplank"));
        c.arg("sync-secrets")
            .current_dir(work.path())
            .args(["--manifest", "secrets.yml", "--values-file", "values.env", "--mode", "apply"])
            .args(["--targets", "env-file", "--host", &sshd.host_spec(), "--app-dir"])
            .arg(&app)
            .env("INPUT_SSH_KEY", &sshd.client_key)
            .env("INPUT_KNOWN_HOSTS", &sshd.known_hosts)
            .env("GITHUB_OUTPUT", work.path().join("out"))
            .env("GITHUB_STEP_SUMMARY", work.path().join("summary"));
        let o = c.output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for (name, link, file) in [
        ("a symlinked .env", ".env", true),
        ("a symlinked .gangplank", ".gangplank", false),
        ("a symlinked backups folder", ".gangplank/backups", false),
    ] {
        let outside = tempfile::tempdir().unwrap();
        let undo = make_link(&app, link, outside.path(), file);
        let app_before = tree(&app);
        let outside_before = tree(outside.path());
        let (code, stderr) = sync();
        assert!(matches!(code, Some(1) | Some(2)), "{name}: exit {code:?}\n{stderr}");
        assert!(stderr.contains("is a symlink") && stderr.contains("hint: "), "{name}: {stderr}");
        assert_eq!(tree(outside.path()), outside_before, "{name}: written outside the app dir");
        assert_eq!(tree(&app), app_before, "{name}: the app dir changed");
        undo();
    }
    let (code, stderr) = sync();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read_to_string(app.join(".env")).unwrap().contains("DB_PASSWORD="));
}
