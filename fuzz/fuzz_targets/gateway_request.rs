//! libFuzzer entry of the `gateway_request` target (see `tally_fuzz::gateway_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::gateway_request(data));
