//! The deployment-package extractor against arbitrary bytes: it may refuse, never panic,
//! and never writes outside its destination.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_store::{extract_zip, PackageLimits};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let dest = dir.path().join("tree");
    let limits = PackageLimits {
        max_unzipped_bytes: 8 << 20,
        ..PackageLimits::default()
    };
    let _ = extract_zip(data, &dest, limits);
    // Nothing may appear beside the destination (a path or link that escaped).
    let stray = std::fs::read_dir(dir.path())
        .map(|entries| entries.filter_map(Result::ok).filter(|e| e.file_name() != "tree").count())
        .unwrap_or(0);
    assert_eq!(stray, 0, "the extractor wrote outside its destination");
});
