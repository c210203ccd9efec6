//! libFuzzer entry of the `import_report` target (see `tally_fuzz::import_report`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::import_report(data));
