//! `docker inspect` output read by the health gate (`gangplank_core::compose::parse_inspect`) and the gate's
//! one readiness rule (`Container::verdict_as`). Properties, for any JSON that parses:
//! - a container that restarted (count > 0 or `restarting`) is never ready, under either role;
//! - `Ready` means running (healthy or without HEALTHCHECK), or for a dependency exited with code 0;
//! - a dependency is judged at most as strictly as a container that must run.
#![no_main]

use gangplank_core::compose::{parse_detect, parse_inspect, Role, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(json) = gangplank_fuzz::text(data) else { return };
    let _ = parse_detect(json);
    let Ok(cs) = parse_inspect(json) else { return };
    for c in &cs {
        let must = c.verdict_as(Role::MustRun);
        let dep = c.verdict_as(Role::Dependency);
        if c.restarted() {
            assert!(matches!(must, Verdict::Failed(_)) && matches!(dep, Verdict::Failed(_)), "{c:?}");
        }
        if must == Verdict::Ready {
            assert!(c.running && matches!(c.health.as_deref(), None | Some("healthy")), "{c:?}");
            assert_eq!(dep, Verdict::Ready, "{c:?}");
        }
        if dep == Verdict::Ready && !c.running {
            assert!(c.status == "exited" && c.exit_code == 0, "{c:?}");
        }
    }
});
