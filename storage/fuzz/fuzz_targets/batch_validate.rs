//! cargo-fuzz target: see `spate_storage::fuzzing::batch_validate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    spate_storage::fuzzing::batch_validate(bytes);
});
