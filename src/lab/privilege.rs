//! Getting the privilege to build a lab: root as is, or an unprivileged user namespace; and when
//! neither works, saying exactly why and what to run instead.

use std::io;

use nix::sched::CloneFlags;

use super::LabError;
use super::netlink::{self, Rtnl};
use super::netns;

/// Capability bits we need over the lab namespaces (see `capabilities(7)`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Reads one line-valued file under /proc, trimmed; `None` if it does not exist or is unreadable.
fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Value of a `Key:\tvalue` field of /proc/self/status.
fn status_field(key: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// True if the effective capability set holds both CAP_NET_ADMIN and CAP_SYS_ADMIN (creating a
/// network namespace and `setns` into it need SYS_ADMIN; veth and routes need NET_ADMIN).
pub(crate) fn has_lab_caps() -> bool {
    let Some(eff) = status_field("CapEff").and_then(|h| u64::from_str_radix(&h, 16).ok()) else {
        return false;
    };
    let need = (1u64 << CAP_NET_ADMIN) | (1u64 << CAP_SYS_ADMIN);
    eff & need == need
}

/// Called first thing in `main`, while the process is still single-threaded, by commands that
/// need the lab.
///
/// * Root (or a process that may otherwise join and leave namespaces owned where it stands):
///   does nothing.
/// * A process that has the capabilities only inside a user namespace (e.g. started under
///   `unshare -r`): moves into a fresh network namespace of its own, because it could enter lab
///   namespaces but never return to one its user namespace does not own.
/// * An ordinary user: moves the whole process into a new user namespace *and* a new network
///   namespace, mapping the current uid/gid to 0 (with `setgroups` denied, as the kernel
///   requires of unprivileged mappings). That grants the capabilities over the lab namespaces
///   created afterwards.
///
/// In the last two cases the process afterwards lives in an empty network namespace (loopback
/// up): it reaches the lab and its own loopback, not the host's network, so only commands that
/// work inside the lab may call this. The host's namespace is never changed. Files created keep
/// the real uid on disk; child processes inherit both namespaces, so `nft` via
/// [`crate::lab::Lab::command_in`] works too.
pub fn ensure_lab_privileges() -> Result<(), LabError> {
    if netns::check_return_home().is_ok() && has_lab_caps() {
        return Ok(());
    }
    let flags = if has_lab_caps() {
        CloneFlags::CLONE_NEWNET
    } else {
        CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET
    };
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    // unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process, which would be
    // diagnosed as a kernel restriction; catch the programming error first. (A new network
    // namespace alone would only move the calling thread, leaving the others behind.)
    if let Some(n) = status_field("Threads")
        && n != "1"
    {
        return Err(LabError::Privilege {
            reason: format!(
                "ensure_lab_privileges was called after the process started threads (Threads: {n}); \
                 a user namespace can only be entered while single-threaded"
            ),
            remedy: "call it first thing in main, before any runtime or thread starts (this is a tcphb bug)"
                .into(),
        });
    }
    let what = if flags.contains(CloneFlags::CLONE_NEWUSER) {
        "unshare(CLONE_NEWUSER | CLONE_NEWNET)"
    } else {
        "unshare(CLONE_NEWNET)"
    };
    if let Err(e) = nix::sched::unshare(flags) {
        return Err(diagnose(what, io::Error::from(e)));
    }
    if flags.contains(CloneFlags::CLONE_NEWUSER) {
        let map = |path: &str, text: String| -> Result<(), LabError> {
            std::fs::write(path, text).map_err(|e| diagnose(&format!("write {path}"), e))
        };
        map("/proc/self/setgroups", "deny".into())?;
        map("/proc/self/uid_map", format!("0 {uid} 1"))?;
        map("/proc/self/gid_map", format!("0 {gid} 1"))?;
    }
    // Loopback starts down in a new namespace; the process may still want 127.0.0.1.
    let mut rtnl = Rtnl::open().map_err(|e| LabError::Setup {
        step: "open netlink socket in own namespace".into(),
        source: e,
    })?;
    rtnl.run(
        vec![netlink::link_set("set lo up in own namespace", 1, true)],
        &[],
    )
    .map_err(|(step, e)| diagnose(&step, e))?;
    Ok(())
}

/// Builds the `Privilege` error for a failed privileged `step`: quotes every kernel knob known to
/// restrict unprivileged user namespaces, with its current value, and says what to run instead.
pub(crate) fn diagnose(step: &str, err: io::Error) -> LabError {
    let mut why = vec![format!("{step} failed: {err}")];
    let euid = nix::unistd::geteuid();
    let cap_eff = status_field("CapEff").unwrap_or_else(|| "?".into());
    let mut fixes = vec![format!(
        "run as root (sudo tcphb ...), or give the binary the capabilities: \
         sudo setcap cap_net_admin,cap_sys_admin+ep \"$(command -v tcphb)\""
    )];

    match err.raw_os_error() {
        Some(libc::EINVAL) => why.push(
            "EINVAL: the process is multi-threaded or chrooted, where the kernel refuses a new user namespace"
                .into(),
        ),
        Some(libc::ENOSPC) => why.push(
            "ENOSPC: the per-user limit of user namespaces is reached (or is 0)".into(),
        ),
        _ => {}
    }
    if let Some(v) = read_proc("/proc/sys/kernel/unprivileged_userns_clone") {
        why.push(format!("kernel.unprivileged_userns_clone = {v}"));
        if v == "0" {
            fixes.push("sudo sysctl -w kernel.unprivileged_userns_clone=1".into());
        }
    }
    if let Some(v) = read_proc("/proc/sys/user/max_user_namespaces") {
        why.push(format!("user.max_user_namespaces = {v}"));
        if v == "0" {
            fixes.push("sudo sysctl -w user.max_user_namespaces=15000".into());
        }
    }
    if let Some(v) = read_proc("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        why.push(format!(
            "kernel.apparmor_restrict_unprivileged_userns = {v}"
        ));
        if v == "1" {
            // Ubuntu 23.10+: the unshare succeeds but AppArmor strips the capabilities inside,
            // so the failure shows up later, at namespace creation or uid_map.
            why.push(
                "AppArmor lets the user namespace be created but denies capabilities inside it"
                    .into(),
            );
            fixes.push("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile allowing userns for tcphb)".into());
        }
    }
    match status_field("Seccomp").as_deref() {
        Some("0") | None => {}
        Some(mode) => {
            why.push(format!(
                "a seccomp filter is active (Seccomp: {mode}); container runtimes' default profiles block unshare/setns"
            ));
            fixes.push("in a container, run it with --privileged or --cap-add SYS_ADMIN,NET_ADMIN and an unconfined seccomp profile".into());
        }
    }
    why.push(format!("euid {euid}, CapEff {cap_eff}"));
    LabError::Privilege {
        reason: why.join("; "),
        remedy: fixes.join("; or "),
    }
}
