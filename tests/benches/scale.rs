//! Scale benchmark: a `tcphb listen --heartbeat 1s,3` in the lab's server namespace holds N
//! connections driven by `tcphb connect --connections N` in the client namespace; then the link is cut
//! for all of them at once.
//!
//! `cargo bench --bench scale` (as root; prints a skip line otherwise). Prints figures, asserts none:
//! connections held, user-space RSS per connection, CPU per 1,000 heartbeats over a healthy period
//! (and false detections in it), the detection lateness distribution of the mass cut against the
//! prediction (interval × misses), and the lab build + teardown time.
//! `TCPHB_BENCH_CONNS` (default 10000) and `TCPHB_BENCH_HEALTHY_SECS` (default 30) change the run.

// The lab is Linux-only; elsewhere this benchmark has nothing to measure.
#[cfg(target_os = "linux")]
#[path = "support.rs"]
mod support;

#[cfg(target_os = "linux")]
#[path = "scale/imp.rs"]
mod imp;

fn main() {
    #[cfg(target_os = "linux")]
    imp::main();
}
