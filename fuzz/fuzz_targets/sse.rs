//! libFuzzer entry of the `sse` target (see `tally_fuzz::sse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::sse(data));
