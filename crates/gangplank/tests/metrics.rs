//! `metrics-file` end to end: a real node_exporter (Debian's `prometheus-node-exporter`) reads the file
//! through its textfile collector while deploy-remote and rollback run against the testbed; what it serves
//! over HTTP must agree with the host's `audit.log` and `state.json`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gangplank_testbed::{free_port, http_get, require_program, wait_for};
use support::*;

/// node_exporter on 127.0.0.1 with only the textfile collector; killed on drop.
struct NodeExporter {
    child: Child,
    addr: String,
}

impl NodeExporter {
    fn start(dir: &Path) -> NodeExporter {
        let bin = require_program("prometheus-node-exporter", "prometheus-node-exporter").unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node_exporter starts");
        let ne = NodeExporter { child, addr };
        wait_for("node_exporter to answer", Duration::from_secs(10), || ne.scrape().map(|_| ())).unwrap();
        ne
    }

    fn scrape(&self) -> Option<String> {
        http_get(&self.addr, "/metrics", None).ok().filter(|(status, _)| *status == 200).map(|(_, body)| body)
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the one sample whose line starts with `series` (name and labels as written).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn node_exporter_serves_counts_that_match_the_audit_log() {
    let fx = Fixture::new("metrics");
    let dir = tempfile::tempdir().unwrap();
    let ne = NodeExporter::start(dir.path());
    let file = dir.path().join("gangplank.prom").display().to_string();
    let with_metrics = |mut a: Vec<String>| {
        a.extend(["--metrics-file".to_string(), file.clone()]);
        a
    };

    for tag in ["v1", "v2"] {
        let r = fx.deploy(&with_metrics(fx.deploy_args(tag)));
        assert_eq!(r.status, 0, "{r:?}");
    }
    let mut rb = fx.ssh_args();
    rb.extend(["--health-url".into(), format!("http://127.0.0.1:{}/health", fx.port)]);
    let r = fx.rollback(&with_metrics(rb));
    assert_eq!(r.status, 0, "{r:?}");

    let scrape = ne.scrape().expect("node_exporter answers");
    assert_eq!(value(&scrape, "node_textfile_scrape_error"), Some(0.0), "{scrape}");
    let audit = fx.read_host(".gangplank/audit.log");
    let count = |action: &str, result: &str| {
        audit
            .lines()
            .filter(|l| {
                l.contains(&format!("\"action\":\"{action}\"")) && l.contains(&format!("\"result\":\"{result}\""))
            })
            .count() as f64
    };
    let app = &fx.app;
    assert_eq!(
        value(&scrape, &format!("gangplank_deploys_total{{app=\"{app}\",result=\"deployed\"}}")),
        Some(count("deploy", "deployed")),
        "{scrape}"
    );
    assert_eq!(count("deploy", "deployed"), 2.0, "{audit}");
    assert_eq!(
        value(&scrape, &format!("gangplank_rollbacks_total{{app=\"{app}\",result=\"rolled-back\"}}")),
        Some(count("rollback", "rolled-back")),
        "{scrape}"
    );
    let state: serde_json::Value = serde_json::from_str(&fx.read_host(".gangplank/state.json")).unwrap();
    let tag = state["current"]["tag"].as_str().unwrap();
    assert_eq!(tag, "v1");
    assert_eq!(
        value(&scrape, &format!("gangplank_current_tag_info{{app=\"{app}\",tag=\"{tag}\"}}")),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(scrape.matches("gangplank_current_tag_info{").count(), 1, "one tag per app: {scrape}");
    let duration = value(&scrape, &format!("gangplank_last_deploy_duration_seconds{{app=\"{app}\"}}")).unwrap();
    assert!(duration > 0.0 && duration < 120.0, "{duration}");
    assert!(scrape.contains("# TYPE gangplank_deploys_total counter"), "{scrape}");

    // Only the metrics file is in the folder: no temporary or lock file left behind for the collector.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["gangplank.prom"]);

    // A file that is not gangplank's is refused before any connection, and left as it was.
    let other = dir.path().join("node.prom");
    std::fs::write(&other, "node_thing 1\n").unwrap();
    let connections = fx.sshd.connections();
    let mut a = fx.deploy_args("v2");
    a.extend(["--metrics-file".to_string(), other.display().to_string()]);
    let r = fx.deploy(&a);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("metrics-file") && r.stderr.contains("hint:"), "{}", r.stderr);
    assert_eq!(fx.sshd.connections(), connections);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "node_thing 1\n");
}
