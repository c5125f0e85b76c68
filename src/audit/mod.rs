//! Another process's connections, judged: for each TCP connection a running service holds, its
//! detection settings as read back, its live state as the kernel shows it, when a dead peer would be
//! noticed idle and busy on this connection's own RTT/RTO, and plain flags for what an operator must
//! know ("keepalive off", "retransmitting for 3 m 10 s"). Pure: the platform layer finds and reads the
//! sockets ([`crate::sys::tcp_table`], [`crate::sys::read_back_of`]).

pub mod follow;

use std::time::Duration;

use serde::Serialize;

use crate::detection::Mechanism;
use crate::predict::{Backoff, PathTimes, predict_on_path};
use crate::scenario::Load;
use crate::settings::{Effective, KernelTimers};
use crate::sys::{DiagSocket, DiagTimer, tcp_state_name};
use crate::tcpinfo::TcpInfo;
use crate::units::{Millis, human_ms, rough_ms};

/// One audited connection.
#[derive(Debug, Clone, Serialize)]
pub struct Audited {
    /// The process holding it and its descriptor, when found.
    pub pid: Option<u32>,
    pub fd: Option<i32>,
    pub local: String,
    pub peer: String,
    pub state: &'static str,
    /// Read back from the owner's socket; `null` when it could not be (see the report's
    /// `unreadable`).
    pub effective: Option<Effective>,
    /// The pending timer: `retransmit`, `keepalive`, `zero_window`, or `null`.
    pub timer: Option<&'static str>,
    /// When that timer fires, ms from now.
    pub timer_due_ms: Option<u64>,
    /// Keepalive (or zero-window) probes out and unanswered.
    pub probes_out: u8,
    /// Retransmissions of the head segment so far, and the back-off.
    pub retransmits: u8,
    pub backoff: u8,
    /// Segments in flight, and bytes queued to send or unacknowledged / received and unread.
    pub unacked: u32,
    pub send_queue_bytes: u32,
    pub recv_queue_bytes: u32,
    /// Since anything was last heard from the peer, ms (TCP_INFO).
    pub last_heard_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub rto_ms: Option<u64>,
    /// Predicted on this connection's RTO, counted from the last packet heard: a dead peer noticed
    /// after this long when the connection is idle / busy, and by what (`null` = never).
    pub idle_ms: Option<u64>,
    pub idle_by: Option<Mechanism>,
    pub busy_ms: Option<u64>,
    pub busy_by: Option<Mechanism>,
    /// What an operator must know, one sentence each (JSON `alerts`: `flags` is probe's pasteable
    /// command-line flags).
    #[serde(rename = "alerts")]
    pub flags: Vec<String>,
}

impl Audited {
    /// The later of the idle and busy predictions (`None` = never): what `--detect-within` is held to.
    pub fn worst_ms(&self) -> Option<u64> {
        Some(self.idle_ms?.max(self.busy_ms?))
    }
}

/// A pending timer's name, as in JSON: `retransmit`, `keepalive`, `zero_window`.
pub fn timer_name(t: Option<DiagTimer>) -> Option<&'static str> {
    Some(match t? {
        DiagTimer::Retransmit { .. } => "retransmit",
        DiagTimer::Keepalive { .. } => "keepalive",
        DiagTimer::ZeroWindow { .. } => "zero_window",
    })
}

/// A connection's path times from its TCP_INFO; without it, no RTT and the RTO_min lower bound.
pub(crate) fn path_of(info: Option<TcpInfo>, kernel: &KernelTimers) -> PathTimes {
    PathTimes {
        rtt: info.map_or(Duration::ZERO, |i| i.rtt()),
        rto: info.map_or(Duration::from_millis(kernel.rto_min_ms), |i| i.rto()),
    }
}

/// Judge one socket: `effective` is `None` when its settings could not be read back.
pub fn judge(
    s: &DiagSocket,
    owner: Option<(u32, i32)>,
    effective: Option<Effective>,
    kernel: &KernelTimers,
) -> Audited {
    let info = s.info;
    let path = path_of(info, kernel);
    let (idle, busy) = match &effective {
        Some(e) => (
            Some(predict_on_path(e, Load::Idle, kernel, &path)),
            Some(predict_on_path(e, Load::Busy, kernel, &path)),
        ),
        None => (None, None),
    };
    let (due, retransmits) = match s.timer {
        Some(DiagTimer::Retransmit { due, retransmits }) => (Some(due), retransmits),
        Some(DiagTimer::Keepalive { due } | DiagTimer::ZeroWindow { due }) => (Some(due), 0),
        None => (None, 0),
    };
    let timer = timer_name(s.timer);
    let mut a = Audited {
        pid: owner.map(|o| o.0),
        fd: owner.map(|o| o.1),
        local: s.local.to_string(),
        peer: s.peer.to_string(),
        state: tcp_state_name(s.state),
        effective,
        timer,
        timer_due_ms: due.map(|d| d.ms()),
        probes_out: info.map_or(0, |i| i.probes),
        retransmits: info.map_or(retransmits, |i| i.retransmits.max(retransmits)),
        backoff: info.map_or(0, |i| i.backoff),
        unacked: info.map_or(0, |i| i.unacked),
        send_queue_bytes: s.send_queue,
        recv_queue_bytes: s.recv_queue,
        last_heard_ms: info.map(|i| i.silence_ms()),
        rtt_ms: info.map(|i| f64::from(i.rtt_us) / 1000.0),
        rto_ms: info.map(|i| u64::from(i.rto_us) / 1000),
        idle_ms: idle.as_ref().and_then(|p| p.expected_ms()),
        idle_by: idle.as_ref().and_then(|p| p.mechanism),
        busy_ms: busy.as_ref().and_then(|p| p.expected_ms()),
        busy_by: busy.as_ref().and_then(|p| p.mechanism),
        flags: Vec::new(),
    };
    a.flags = flags(&a, kernel, path.rto);
    a
}

/// The plain sentences: settings that leave a dead peer unnoticed, and a connection already in
/// trouble.
fn flags(a: &Audited, kernel: &KernelTimers, rto: Duration) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &a.effective {
        match e.keepalive() {
            None if e.heartbeat().is_none() => {
                out.push("keepalive off: an idle dead peer is never noticed".to_string())
            }
            Some((idle, intvl, count))
                if idle.ms() == kernel.keepalive_time_ms
                    && intvl.ms() == kernel.keepalive_intvl_ms
                    && count == kernel.keepalive_probes =>
            {
                out.push(format!(
                    "keepalive at the OS default ({} idle): an idle dead peer is noticed after ≈{}",
                    rough_ms(idle.ms()),
                    rough_ms(
                        a.idle_ms
                            .unwrap_or(kernel.keepalive_time_ms + intvl.ms() * u64::from(count))
                    )
                ))
            }
            _ => {}
        }
        if e.user_timeout().is_none() && a.busy_by == Some(Mechanism::Retransmission) {
            out.push(format!(
                "no user timeout: a busy connection to a dead peer lingers ≈{} (retransmissions)",
                rough_ms(a.busy_ms.unwrap_or(0))
            ));
        }
    }
    // A connection in trouble: since the peer was last heard, and what is left of its user timeout.
    let silent = a.last_heard_ms.unwrap_or(0);
    let user_timeout_left = a
        .effective
        .as_ref()
        .and_then(Effective::user_timeout)
        .map(|u| u.ms().saturating_sub(silent));
    if a.timer == Some("retransmit") && a.retransmits > 0 {
        let gives_up = user_timeout_left
            .unwrap_or_else(|| Backoff::of(kernel).giveup(rto).ms().saturating_sub(silent));
        out.push(format!(
            "retransmitting for {} ({} retransmissions): the peer is probably gone; the kernel gives up in ≈{}",
            human_ms(Some(silent)),
            a.retransmits,
            rough_ms(gives_up)
        ));
    }
    if a.timer == Some("zero_window") && a.probes_out > 0 {
        let gives_up = match user_timeout_left {
            Some(left) => format!("the kernel gives up in ≈{}", rough_ms(left)),
            None => "with no user timeout the kernel probes for as long as the peer answers".into(),
        };
        out.push(format!(
            "probing the peer's closed window ({} probes unanswered, {} since it was last heard): the peer stopped reading, or is gone; {gives_up}",
            a.probes_out,
            human_ms(Some(silent))
        ));
    }
    if a.timer == Some("keepalive")
        && a.probes_out > 0
        && let Some((_, _, count)) = a.effective.as_ref().and_then(Effective::keepalive)
    {
        out.push(format!(
            "{} of {count} keepalive probes unanswered",
            a.probes_out
        ));
    }
    out
}

/// How many audited connections would notice a dead peer later than `within` (or never), idle or
/// busy; connections whose settings could not be read are not counted.
pub fn slower_than(conns: &[Audited], within: Duration) -> usize {
    conns
        .iter()
        .filter(|a| a.effective.is_some())
        .filter(|a| a.worst_ms().is_none_or(|w| w > within.ms()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sock(timer: Option<DiagTimer>, info: TcpInfo) -> DiagSocket {
        DiagSocket {
            local: "10.0.0.1:5432".parse().unwrap(),
            peer: "10.0.0.2:40000".parse().unwrap(),
            state: 1,
            inode: 7,
            timer,
            recv_queue: 0,
            send_queue: 1000,
            info: Some(info),
        }
    }

    pub(super) fn eff(ka: Option<(u64, u64, u32)>, uto: Option<u64>) -> Effective {
        Effective {
            keepalive_idle_ms: ka.map(|k| k.0),
            keepalive_interval_ms: ka.map(|k| k.1),
            keepalive_count: ka.map(|k| k.2),
            user_timeout_ms: uto,
            ..Effective::default()
        }
    }

    #[test]
    fn keepalive_off_and_os_default_are_flagged_with_their_cost() {
        let k = KernelTimers::default();
        let info = TcpInfo {
            rto_us: 204_000,
            ..TcpInfo::default()
        };
        let off = judge(&sock(None, info), None, Some(eff(None, None)), &k);
        assert!(off.flags[0].starts_with("keepalive off"), "{:?}", off.flags);
        assert_eq!(off.idle_ms, None);
        let os = judge(
            &sock(None, info),
            None,
            Some(eff(Some((7_200_000, 75_000, 9)), None)),
            &k,
        );
        assert!(
            os.flags[0].contains("OS default") && os.flags[0].contains("2 h 11 m"),
            "{:?}",
            os.flags
        );
        assert!(os.flags[1].starts_with("no user timeout"), "{:?}", os.flags);
    }

    #[test]
    fn a_connection_stuck_retransmitting_is_named_with_the_time_left() {
        let k = KernelTimers::default();
        let info = TcpInfo {
            rto_us: 3_200_000,
            retransmits: 4,
            backoff: 4,
            unacked: 3,
            last_ack_recv_ms: 10_000,
            last_data_recv_ms: 10_000,
            ..TcpInfo::default()
        };
        let timer = Some(DiagTimer::Retransmit {
            due: Duration::from_millis(1500),
            retransmits: 4,
        });
        let a = judge(
            &sock(timer, info),
            Some((42, 7)),
            Some(eff(None, Some(30_000))),
            &k,
        );
        let f = a
            .flags
            .iter()
            .find(|f| f.starts_with("retransmitting"))
            .unwrap();
        assert!(
            f.contains("for 10.0 s") && f.contains("gives up in ≈20.0 s"),
            "{f}"
        );
        assert_eq!((a.pid, a.fd), (Some(42), Some(7)));
        assert_eq!(slower_than(&[a], Duration::from_secs(20)), 1);
    }

    #[test]
    fn unanswered_keepalive_probes_are_counted() {
        let k = KernelTimers::default();
        let info = TcpInfo {
            rto_us: 204_000,
            probes: 2,
            ..TcpInfo::default()
        };
        let timer = Some(DiagTimer::Keepalive {
            due: Duration::from_secs(5),
        });
        let a = judge(
            &sock(timer, info),
            None,
            Some(eff(Some((10_000, 5_000, 9)), None)),
            &k,
        );
        assert!(
            a.flags
                .contains(&"2 of 9 keepalive probes unanswered".to_string()),
            "{:?}",
            a.flags
        );
        assert_eq!(a.idle_ms, Some(55_000));
    }

    #[test]
    fn a_connection_probing_a_closed_window_is_named() {
        let k = KernelTimers::default();
        let info = TcpInfo {
            rto_us: 204_000,
            probes: 3,
            last_ack_recv_ms: 2_500,
            last_data_recv_ms: 2_500,
            ..TcpInfo::default()
        };
        let timer = Some(DiagTimer::ZeroWindow {
            due: Duration::from_millis(800),
        });
        let a = judge(&sock(timer, info), None, Some(eff(None, Some(6_000))), &k);
        let f = a
            .flags
            .iter()
            .find(|f| f.starts_with("probing the peer's closed window"))
            .unwrap_or_else(|| panic!("{:?}", a.flags));
        assert!(
            f.contains("3 probes unanswered") && f.contains("gives up in ≈3.5 s"),
            "{f}"
        );
    }
}
