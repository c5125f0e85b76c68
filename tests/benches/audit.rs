//! Audit benchmark: the cost of `tcphb audit` on a process holding many connections. A `tcphb
//! listen --keepalive 1h,1m,4` on loopback holds N connections opened by this benchmark; then
//! `tcphb audit --pid` reads them all back.
//!
//! `cargo bench --bench audit` (as root: reading another process's sockets needs ptrace rights;
//! prints a skip line otherwise). Prints figures, asserts none: wall time of one audit (median of 5),
//! its syscalls per connection (strace -c, when strace is installed), its peak RSS, and the share of a core
//! `audit --watch` takes to follow all N connections. `TCPHB_BENCH_CONNS` (default 10000).

#[cfg(target_os = "linux")]
#[path = "support.rs"]
mod support;

#[cfg(target_os = "linux")]
#[path = "audit/imp.rs"]
mod imp;

#[cfg(target_os = "linux")]
fn main() {
    imp::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("audit bench: skipped, audit reads sockets through Linux's sock_diag and pidfd_getfd");
}
