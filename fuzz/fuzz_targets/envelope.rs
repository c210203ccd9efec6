//! libFuzzer entry of the `envelope` target (see `tally_fuzz::envelope`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::envelope(data));
