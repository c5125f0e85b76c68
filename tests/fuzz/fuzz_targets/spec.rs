//! Arbitrary text through every spec parser: no panic, and Display round-trips (see ../props.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check_spec(data));
