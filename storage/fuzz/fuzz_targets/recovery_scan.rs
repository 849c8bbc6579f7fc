//! cargo-fuzz target: see `spate_storage::fuzzing::recovery_scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    spate_storage::fuzzing::recovery_scan(bytes);
});
