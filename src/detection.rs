//! Detection: what ended a connection, when, and the kernel's counters at that moment.

use std::fmt;

use serde::Serialize;

use crate::tcpinfo::TcpInfo;

/// The mechanism that noticed the dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// TCP keepalive probes went unanswered (idle connection).
    Keepalive,
    /// Retransmissions of unacknowledged data gave up (tcp_retries2).
    Retransmission,
    /// TCP_USER_TIMEOUT expired.
    UserTimeout,
    /// Application heartbeats went unanswered.
    Heartbeat,
    /// The peer answered RST.
    Reset,
    /// The peer closed the connection (FIN).
    Eof,
    /// An ICMP error was reported before any timer could have given up.
    Unreachable,
}

impl Mechanism {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Keepalive => "keepalive",
            Mechanism::Retransmission => "retransmission",
            Mechanism::UserTimeout => "user_timeout",
            Mechanism::Heartbeat => "heartbeat",
            Mechanism::Reset => "reset",
            Mechanism::Eof => "eof",
            Mechanism::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How watching a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A mechanism declared the peer dead (timeout, heartbeat, reset, ICMP).
    Dead,
    /// The peer closed the connection (FIN): its process exited or closed the socket.
    Closed,
    /// The peer was still alive when watching stopped (duration reached or interrupted).
    Alive,
}

impl Outcome {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Dead => "dead",
            Outcome::Closed => "closed",
            Outcome::Alive => "alive",
        }
    }

    /// Whether this outcome counts as "a dead connection was detected" (exit code 3).
    pub fn is_detection(self) -> bool {
        !matches!(self, Outcome::Alive)
    }
}

/// The end of one watched connection. All durations are measured with a monotonic clock.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub outcome: Outcome,
    /// What noticed, when the outcome is not `alive`.
    pub detected_by: Option<Mechanism>,
    /// The errno name the socket reported (`ETIMEDOUT`, `ECONNRESET`…), if any.
    pub errno: Option<String>,
    /// Time since the last packet heard from the peer (TCP_INFO on Linux; the last heartbeat line for
    /// heartbeat detections and elsewhere), ms.
    pub silence_ms: u64,
    /// Time since the connection opened, ms.
    pub elapsed_ms: u64,
    /// Kernel counters at the moment of detection (Linux).
    pub tcp_info: Option<TcpInfo>,
    /// Why the connection was closed by tcphb itself (protocol violation), if it was.
    pub note: Option<String>,
}

/// The symbolic name of an errno (`ETIMEDOUT`), or `E<n>` when unknown.
pub fn errno_name(code: i32) -> String {
    #[cfg(unix)]
    {
        let e = nix::errno::Errno::from_raw(code);
        if e != nix::errno::Errno::UnknownErrno {
            return format!("{e:?}");
        }
    }
    format!("E{code}")
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn errno_names() {
        assert_eq!(super::errno_name(libc::ETIMEDOUT), "ETIMEDOUT");
        assert_eq!(super::errno_name(libc::ECONNRESET), "ECONNRESET");
        assert_eq!(super::errno_name(libc::EHOSTUNREACH), "EHOSTUNREACH");
    }
}
