//! The unprivileged path: `ensure_lab_privileges` + `Lab::build` as an ordinary user, through a
//! user namespace. Runs without libtest (`harness = false`) because a user namespace can only be
//! entered while the process is single-threaded, and libtest starts threads before any test.
//!
//! As root, this binary re-runs itself as `nobody` (uid/gid 65534, no capabilities) and checks
//! what that child reports. As an ordinary user it runs the check in-process. It ends with a
//! `N passed, N failed` line.

// The lab is Linux-only; elsewhere this binary has nothing to check.
#[cfg(target_os = "linux")]
#[path = "lab_userns/imp.rs"]
mod imp;

fn main() {
    #[cfg(target_os = "linux")]
    imp::main();
}
