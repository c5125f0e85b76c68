//! Fuzz regression: every input in `tests/fuzz/corpus/{spec,codec,replies}/` (seeds, and every case the fuzzer ever
//! found) is replayed through the same property checks the fuzz targets run. Stable; runs under `cargo test`.
//! The fuzzing itself: `bash tests/fuzz/run.sh [SECONDS]` (see tests/fuzz/README.md).

#[path = "fuzz/props.rs"]
mod props;

use std::panic;
use std::path::{Path, PathBuf};

/// Run `check` on every file of `tests/fuzz/corpus/<target>/`; fail listing every file that broke a property.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        if panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} corpus files break a property:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn spec_corpus_holds() {
    replay("spec", props::check_spec);
}

#[test]
fn codec_corpus_holds() {
    replay("codec", props::check_codec);
}

#[test]
fn replies_corpus_holds() {
    replay("replies", props::check_replies);
}

/// The properties themselves catch what they claim to: a hand-made over-long line split across chunks.
#[test]
fn codec_property_sees_long_lines_split_anywhere() {
    let mut input = vec![3u8];
    for cut in [1u16, 600, 1035] {
        input.extend(cut.to_le_bytes());
    }
    input.extend(b"PING 1\n");
    input.extend(vec![b'x'; tcphb::heartbeat::MAX_LINE]);
    input.extend(b"\nPONG 2\n");
    let (cuts, stream) = props::split_codec_input(&input);
    assert_eq!(cuts, [1, 600, 1035]);
    assert_eq!(stream.len(), 7 + tcphb::heartbeat::MAX_LINE + 8);
    props::check_codec(&input);
}
