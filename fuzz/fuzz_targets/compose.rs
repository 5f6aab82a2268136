//! Compose file image references (`gangplank_core::compose::references`, `image_repo`).
//! Properties, for any YAML that parses:
//! - `images` are exactly the services' `image:` values, in order;
//! - `image_repo` is a prefix of the reference that drops only a `:tag` and/or an `@digest`.
#![no_main]

use gangplank_core::compose::{image_repo, references};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(yaml) = gangplank_fuzz::text(data) else { return };
    let Ok(refs) = references(yaml) else { return };
    let imgs: Vec<&String> = refs.services.iter().filter_map(|(_, i)| i.as_ref()).collect();
    assert_eq!(refs.images.iter().collect::<Vec<_>>(), imgs);
    for img in &refs.images {
        let repo = image_repo(img);
        assert!(img.starts_with(repo), "{repo:?} is not a prefix of {img:?}");
        let rest = &img[repo.len()..];
        assert!(rest.is_empty() || rest.starts_with([':', '@']), "image_repo({img:?}) dropped {rest:?}");
        let last = repo.rsplit('/').next().unwrap_or_default();
        assert!(!last.contains([':', '@']), "image_repo({img:?}) = {repo:?} keeps a tag or digest");
    }
});
