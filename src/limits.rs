//! Process limits: raise the open-file limit so a run can hold as many connections as asked.

/// Descriptors a run needs besides its connections (stdio, epoll, runtime, listener, slack).
pub const FD_OVERHEAD: u64 = 64;

/// Make room for `connections` sockets; warn on stderr when the hard limit does not allow it.
/// Returns how many connections fit.
pub fn ensure_room_for(connections: u64) -> u64 {
    match crate::sys::raise_nofile(connections + FD_OVERHEAD) {
        Some(limit) if limit < connections + FD_OVERHEAD => {
            let fit = limit.saturating_sub(FD_OVERHEAD);
            crate::cmd::say(&format!(
                "tcphb: the open-file limit is {limit}, room for only {fit} connections: raise it (ulimit -n {} as root, or LimitNOFILE= in systemd)",
                connections + FD_OVERHEAD
            ));
            fit
        }
        _ => connections,
    }
}
