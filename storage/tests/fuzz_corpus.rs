//! Stable-toolchain stand-in for the cargo-fuzz targets in `storage/fuzz/`: replays the
//! committed seed corpus (`storage/fuzz/corpus/<target>/*`) and proptest-generated inputs
//! through the same entry points (`spate_storage::fuzzing`). `cargo fuzz run <target>` on
//! nightly explores much further; this keeps the corpus green in every `cargo test`.
//! `SPATE_FUZZ_CASES=N` sets the mutations per target (`ci/test.sh` with `SPATE_FULL_TESTS=1`
//! runs the cargo-fuzz targets for a bounded time when nightly is installed, and this with many
//! more cases when it is not).

use proptest::prelude::*;
use spate_storage::fuzzing;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .iter()
        .map(|file| std::fs::read(file).expect("corpus file"))
        .collect()
}

#[test]
fn batch_validate_corpus() {
    for input in corpus("batch_validate") {
        fuzzing::batch_validate(&input);
    }
}

#[test]
fn index_load_corpus() {
    for input in corpus("index_load") {
        fuzzing::index_load(&input);
    }
}

#[test]
fn recovery_scan_corpus() {
    for input in corpus("recovery_scan") {
        fuzzing::recovery_scan(&input);
    }
}

/// Mutations of a seed: flip, overwrite, cut and extend at random places.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let length = seed.len().max(1);
    (
        proptest::collection::vec((0..length, any::<u8>()), 0..6),
        0..=length,
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(move |(edits, cut, tail)| {
            let mut bytes = seed.clone();
            for (position, value) in edits {
                if position < bytes.len() {
                    bytes[position] = value;
                }
            }
            bytes.truncate(cut);
            bytes.extend_from_slice(&tail);
            bytes
        })
}

/// Mutation cases per target: `SPATE_FUZZ_CASES` (the full test run raises it), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("SPATE_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn seeds(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    proptest::sample::select(seeds).prop_flat_map(mutated)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn batch_validate_mutations(bytes in seeds("batch_validate")) {
        fuzzing::batch_validate(&bytes);
    }

    #[test]
    fn index_load_mutations(bytes in seeds("index_load")) {
        fuzzing::index_load(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn recovery_scan_mutations(bytes in seeds("recovery_scan")) {
        fuzzing::recovery_scan(&bytes);
    }
}
