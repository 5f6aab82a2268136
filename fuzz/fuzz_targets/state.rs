//! The host's `.gangplank/state.json` (`gangplank_deploy::State`) and the local record file (`Record`).
//! Properties, for any JSON that parses:
//! - `to_json` parses back to the same state, and renders the same text again (a fixed point);
//! - `previous_tag` is never the current tag and is a tag of history marked `replaced`;
//! - `promote` and `record_failure` keep history within `HISTORY_LEN` and the result still round-trips.
#![no_main]

use gangplank_deploy::state::{Current, Record, State, HISTORY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(json) = gangplank_fuzz::text(data) else { return };
    let _ = serde_json::from_str::<Record>(json);
    let Ok(mut s) = State::parse(json) else { return };
    let text = s.to_json();
    let back = State::parse(&text).expect("rendered state parses");
    assert_eq!(back, s, "state does not round-trip");
    assert_eq!(back.to_json(), text, "rendering is not a fixed point");
    if let Some(p) = s.previous_tag() {
        assert_ne!(Some(p), s.current_tag(), "previous tag is the current one");
        assert!(s.history.iter().any(|h| h.tag == p && h.status == "replaced"));
    }
    let next = s.history.first().map(|h| h.tag.clone()).unwrap_or_else(|| "next".into());
    s.promote(Current { tag: next.clone(), deployed_at: "t".into(), ..Default::default() }, "replaced");
    s.record_failure("broken", "t", "failed");
    assert_eq!(s.current_tag(), Some(next.as_str()));
    assert!(s.history.len() <= HISTORY_LEN, "history grew past its bound");
    assert_eq!(State::parse(&s.to_json()).as_ref(), Ok(&s), "state after promote does not round-trip");
});
