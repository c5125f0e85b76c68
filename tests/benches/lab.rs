//! Lab build + teardown time, beside the equivalent `ip netns` shell recipe, measured in the same run.
//!
//! `cargo bench --bench lab` (as root; prints a skip line otherwise). `TCPHB_BENCH_RUNS` sets the
//! number of timed runs of each (default 50). Prints figures only; asserts nothing about time.
//!
//! Both sides end with namespace descriptors closed / mounts removed; the kernel's final cleanup
//! of a namespace (device unregistration, RCU) is asynchronous for both, so neither figure
//! includes it.

// The lab is Linux-only; elsewhere this benchmark has nothing to measure.
#[cfg(target_os = "linux")]
#[path = "support.rs"]
mod support;

#[cfg(target_os = "linux")]
#[path = "lab/imp.rs"]
mod imp;

fn main() {
    #[cfg(target_os = "linux")]
    imp::main();
}
