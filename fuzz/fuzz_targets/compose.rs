//! Compose file image references (`gangplank_core::compose::references`, `pull_refs`, `image_repo`).
//! Properties, for any YAML that parses:
//! - `images` are exactly the services' `image:` values, in order;
//! - `pull_refs` never returns a reference that still needs interpolation (`$`) or is empty, never
//!   twice the same, and returns `None` as soon as a selected service has no image;
//! - `image_repo` is a prefix of the reference that drops only a `:tag` and/or an `@digest`.
#![no_main]

use gangplank_core::compose::{image_repo, pull_refs, references};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(yaml) = gangplank_fuzz::text(data) else { return };
    let Ok(refs) = references(yaml) else { return };
    let imgs: Vec<&String> = refs.services.iter().filter_map(|(_, i)| i.as_ref()).collect();
    assert_eq!(refs.images.iter().collect::<Vec<_>>(), imgs);
    for only in [vec![], refs.services.iter().take(1).map(|(n, _)| n.clone()).collect()] {
        match pull_refs(&refs.services, &only, "v1.2") {
            Some(out) => {
                for (i, r) in out.iter().enumerate() {
                    assert!(!r.is_empty() && !r.contains('$'), "pull ref {r:?}");
                    assert!(!out[..i].contains(r), "pull ref {r:?} twice");
                }
                let selected = refs.services.iter().filter(|(n, _)| only.is_empty() || only.contains(n));
                assert!(selected.clone().all(|(_, i)| i.is_some()), "a selected service without image is pulled");
            }
            None => {}
        }
    }
    for img in &refs.images {
        let repo = image_repo(img);
        assert!(img.starts_with(repo), "{repo:?} is not a prefix of {img:?}");
        let rest = &img[repo.len()..];
        assert!(rest.is_empty() || rest.starts_with([':', '@']), "image_repo({img:?}) dropped {rest:?}");
        let last = repo.rsplit('/').next().unwrap_or_default();
        assert!(!last.contains([':', '@']), "image_repo({img:?}) = {repo:?} keeps a tag or digest");
    }
});
