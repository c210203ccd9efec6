//! libFuzzer entry of the `ingest` target (see `tally_fuzz::ingest`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::ingest(data));
