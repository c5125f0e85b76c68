//! Arbitrary bytes, split at arbitrary points, through the heartbeat line codec: no panic, bounded buffer,
//! the same messages and errors whatever the chunking (see ../props.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check_codec(data));
