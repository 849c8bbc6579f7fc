//! cargo-fuzz target: see `spate_storage::fuzzing::index_load`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    spate_storage::fuzzing::index_load(bytes);
});
