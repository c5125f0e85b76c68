//! Arbitrary bytes through a heartbeat protocol's reply parser (byte 0 picks the protocol), split at
//! arbitrary points: no panic, bounded memory, the same outcome whatever the chunking (see
//! ../props.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check_replies(data));
