//! Following connections through repeated sock_diag dumps (`audit --watch`, `compare --server`):
//! each connection's last observed state, and, when it leaves the kernel's table or changes to a
//! closing state, how it ended, judged from that last state. Pure: the caller makes the dumps.
//!
//! The kernel takes a connection out of its table the moment it gives up on it (keepalive, user
//! timeout, retransmissions) or receives a RST, so a dump that no longer lists it dates the ending
//! to within one poll; the timer that was pending at the last dump dates it exactly, since a timer
//! gives up only when it fires. (sock_diag's destroy notifications are no help here: they are sent
//! when the owner frees the socket, which may be long after the kernel gave up on it.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::detection::{CloseHow, ClosedBy, Detection, Mechanism, Outcome};
use crate::predict::{Prediction, predict_on_path};
use crate::scenario::Load;
use crate::settings::{Effective, KernelTimers};
use crate::sys::{DiagSocket, DiagTimer};
use crate::units::Millis;

/// TCP states (include/net/tcp_states.h) that tell who closed a connection.
const ESTABLISHED: u8 = 1;
const FIN_WAIT1: u8 = 4;
const CLOSE_WAIT: u8 = 8;

/// One connection being followed.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The process holding it and its descriptor, when known.
    pub owner: Option<(u32, i32)>,
    /// Its settings as read back, when they could be.
    pub effective: Option<Effective>,
    /// Its state at the last dump that listed it, and when that dump was made.
    pub last: DiagSocket,
    pub seen_at: Instant,
    /// When it was first seen.
    pub since: Instant,
}

/// A connection that ended, judged.
#[derive(Debug, Clone)]
pub struct Ended {
    pub followed: Followed,
    pub detection: Detection,
    /// When it ended: when its pending timer was due, or (none was) halfway between the two looks.
    pub at: Instant,
    /// What was predicted for it, for the load it was under at the end.
    pub prediction: Prediction,
    /// Which load that was: busy when data was in flight at the last dump.
    pub load: Load,
}

/// The connections being followed, by (local, peer).
#[derive(Debug, Default)]
pub struct Follower {
    conns: HashMap<(SocketAddr, SocketAddr), Followed>,
}

impl Follower {
    /// An empty follower.
    pub fn new() -> Follower {
        Follower::default()
    }

    /// Follow `s` from now on (a connection already followed keeps its first-seen instant).
    pub fn track(
        &mut self,
        s: DiagSocket,
        owner: Option<(u32, i32)>,
        effective: Option<Effective>,
        now: Instant,
    ) {
        let key = (s.local, s.peer);
        let since = self.conns.get(&key).map_or(now, |f| f.since);
        self.conns.insert(
            key,
            Followed {
                owner,
                effective,
                last: s,
                seen_at: now,
                since,
            },
        );
    }

    /// Whether `(local, peer)` is followed.
    pub fn follows(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        self.conns.contains_key(&(local, peer))
    }

    /// How many connections are followed.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Take in a dump made at `now`: every followed connection it lists is updated; one it no longer
    /// lists, or lists in a closing state, has ended and is returned (and no longer followed).
    /// `still_held(owner, inode)` says whether the owner still holds the socket: a connection that
    /// left the table without a timer running out while its owner still holds it was reset by the
    /// peer; otherwise its owner may have aborted it.
    pub fn observe(
        &mut self,
        dump: &[DiagSocket],
        now: Instant,
        kernel: &KernelTimers,
        mut still_held: impl FnMut((u32, i32), u32) -> bool,
    ) -> Vec<Ended> {
        let listed: HashMap<(SocketAddr, SocketAddr), &DiagSocket> =
            dump.iter().map(|s| ((s.local, s.peer), s)).collect();
        let mut ended = Vec::new();
        self.conns.retain(|key, f| match listed.get(key) {
            Some(s) if closing(f.last.state, s.state) => {
                ended.push(closed(f, s, now, kernel));
                false
            }
            Some(s) => {
                f.last = (*s).clone();
                f.seen_at = now;
                true
            }
            None => {
                let held = f.owner.is_some_and(|o| still_held(o, f.last.inode));
                ended.push(gone(f, now, kernel, held));
                false
            }
        });
        ended
    }
}

/// Whether a change from `before` to `after` is a close: the peer's FIN (CLOSE_WAIT) or the owner's
/// (FIN_WAIT1 and later), seen on a connection that was established.
fn closing(before: u8, after: u8) -> bool {
    before == ESTABLISHED && after != ESTABLISHED
}

/// The load a connection was under, from its last state: busy when data was in flight.
fn load_of(s: &DiagSocket) -> Load {
    let in_flight = s.info.is_some_and(|i| i.unacked > 0)
        || matches!(
            s.timer,
            Some(DiagTimer::Retransmit { .. } | DiagTimer::ZeroWindow { .. })
        );
    if in_flight { Load::Busy } else { Load::Idle }
}

fn prediction_for(f: &Followed, load: Load, kernel: &KernelTimers) -> Prediction {
    let path = super::path_of(f.last.info, kernel);
    predict_on_path(&f.effective.unwrap_or_default(), load, kernel, &path)
}

fn detection(f: &Followed, now: Instant, outcome: Outcome, silence: Duration) -> Detection {
    Detection {
        outcome,
        detected_by: None,
        errno: None,
        silence_ms: silence.ms(),
        elapsed_ms: now.duration_since(f.since).ms(),
        tcp_info: f.last.info,
        note: None,
        closed_by: None,
        how: None,
        // Since data was last received (TCP_INFO's last-sent time is not read): the peer's own idle
        // close shows here.
        idled_ms: f.last.info.map_or(0, |i| u64::from(i.last_data_recv_ms))
            + now.duration_since(f.seen_at).ms(),
        icmp: None,
        spoke_heartbeat: false,
        awaiting_answer: false,
    }
}

/// A connection that changed to a closing state: the peer's FIN, or its owner's.
fn closed(f: &Followed, s: &DiagSocket, now: Instant, kernel: &KernelTimers) -> Ended {
    let load = load_of(&f.last);
    let silence = Duration::from_millis(s.info.map_or(0, |i| i.silence_ms()));
    let mut d = detection(f, now, Outcome::Closed, silence);
    d.tcp_info = s.info;
    if s.state == CLOSE_WAIT {
        d.closed_by = Some(ClosedBy::Peer);
        d.how = Some(CloseHow::Fin);
    } else {
        d.closed_by = Some(ClosedBy::Owner);
        d.how = Some(CloseHow::Fin);
        d.note = Some(if s.state == FIN_WAIT1 {
            "the process closed it itself".to_string()
        } else {
            format!(
                "the process closed it itself ({})",
                crate::sys::tcp_state_name(s.state)
            )
        });
    }
    Ended {
        prediction: prediction_for(f, load, kernel),
        followed: f.clone(),
        detection: d,
        at: now,
        load,
    }
}

/// A connection that left the kernel's table between the dump at `f.seen_at` and the one at `now`:
/// judged from the timer that was pending then. `held`: its owner still holds the socket.
fn gone(f: &Followed, now: Instant, kernel: &KernelTimers, held: bool) -> Ended {
    let last = &f.last;
    let gap = now.duration_since(f.seen_at);
    let heard_ago = Duration::from_millis(last.info.map_or(0, |i| i.silence_ms()));
    let probes = last.info.map_or(0, |i| i.probes);
    let retransmits = last.info.map_or(0, |i| i.retransmits.max(i.backoff));
    let user_timeout = f.effective.as_ref().and_then(Effective::user_timeout);
    // A timer that was already probing gives up only when it fires: at its due time, if that came
    // before this dump; otherwise (it fired, was answered or re-armed, and fired again) somewhere in
    // the gap.
    let (mechanism, due, why) = match last.timer {
        Some(DiagTimer::Keepalive { due }) if probes > 0 => (
            keepalive_or_user_timeout(user_timeout, heard_ago + due.min(gap)),
            Some(due),
            format!("{probes} keepalive probes were unanswered"),
        ),
        Some(DiagTimer::Retransmit { due, .. }) if retransmits > 0 => (
            user_timeout.map_or(Mechanism::Retransmission, |_| Mechanism::UserTimeout),
            Some(due),
            format!("it was retransmitting ({retransmits} so far)"),
        ),
        Some(DiagTimer::ZeroWindow { due }) if probes > 0 => (
            user_timeout.map_or(Mechanism::Retransmission, |_| Mechanism::UserTimeout),
            Some(due),
            format!("{probes} zero-window probes were unanswered"),
        ),
        _ => (Mechanism::Reset, None, String::new()),
    };
    let load = load_of(last);
    let ended_after = match due {
        Some(due) if due <= gap => due,
        _ => gap / 2,
    };
    let (outcome, silence, errno, note) = match due {
        Some(_) => (
            Outcome::Dead,
            heard_ago + ended_after,
            "ETIMEDOUT",
            format!(
                "at the last look, {} before it ended, {why}",
                crate::units::human_ms(Some(ended_after.ms()))
            ),
        ),
        None if held => (
            Outcome::Dead,
            heard_ago + ended_after,
            "ECONNRESET",
            "left the kernel's table with no timer running out while its process still held it: the peer reset it (RST)".to_string(),
        ),
        None => (
            Outcome::Closed,
            heard_ago + ended_after,
            "",
            "gone with no timer running out and no longer held by its process: the process aborted it, or the peer reset it and the process closed it at once".to_string(),
        ),
    };
    let mut d = detection(f, now, outcome, silence);
    if outcome == Outcome::Dead {
        d.detected_by = Some(mechanism);
        d.errno = Some(errno.to_string());
    } else {
        d.closed_by = Some(ClosedBy::Owner);
        d.how = Some(CloseHow::Vanished);
    }
    d.note = Some(note);
    Ended {
        prediction: prediction_for(f, load, kernel),
        followed: f.clone(),
        detection: d,
        at: f.seen_at + ended_after,
        load,
    }
}

/// With keepalive probes out, the kernel gives up on the user timeout instead of the probe count
/// when one is set and has run out by then (`tcp_keepalive_timer`).
fn keepalive_or_user_timeout(user_timeout: Option<Duration>, silence: Duration) -> Mechanism {
    match user_timeout {
        Some(u) if silence >= u => Mechanism::UserTimeout,
        _ => Mechanism::Keepalive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpinfo::TcpInfo;

    /// The audit tests' socket, in `state`.
    fn sock(state: u8, timer: Option<DiagTimer>, info: TcpInfo) -> DiagSocket {
        DiagSocket {
            state,
            ..crate::audit::tests::sock(timer, info)
        }
    }

    #[test]
    fn a_connection_gone_with_its_last_probe_out_died_of_keepalive_when_its_timer_fired() {
        let k = KernelTimers::default();
        let t0 = Instant::now();
        let mut f = Follower::new();
        let info = TcpInfo {
            probes: 2,
            last_ack_recv_ms: 5_000,
            last_data_recv_ms: 5_000,
            rto_us: 204_000,
            ..TcpInfo::default()
        };
        let timer = Some(DiagTimer::Keepalive {
            due: Duration::from_millis(940),
        });
        f.track(
            sock(ESTABLISHED, timer, info),
            Some((7, 3)),
            Some(crate::audit::tests::eff(Some((3_000, 1_000, 3)), None)),
            t0,
        );
        // Listed again a tick later, then gone.
        let ended = f.observe(&[], t0 + Duration::from_millis(1_000), &k, |_, _| true);
        assert_eq!(ended.len(), 1);
        let d = &ended[0].detection;
        assert_eq!(
            (d.outcome, d.detected_by, d.errno.as_deref()),
            (Outcome::Dead, Some(Mechanism::Keepalive), Some("ETIMEDOUT"))
        );
        assert_eq!(
            d.silence_ms, 5_940,
            "heard 5 s ago, and the timer fired 940 ms later"
        );
        assert_eq!(ended[0].prediction.expected_ms(), Some(6_000));
        assert!(f.is_empty());
    }

    #[test]
    fn a_retransmitting_connection_with_a_user_timeout_died_of_it() {
        let k = KernelTimers::default();
        let t0 = Instant::now();
        let mut f = Follower::new();
        let info = TcpInfo {
            retransmits: 3,
            backoff: 3,
            unacked: 2,
            ..TcpInfo::default()
        };
        let timer = Some(DiagTimer::Retransmit {
            due: Duration::from_secs(3),
            retransmits: 3,
        });
        let eff = Effective {
            user_timeout_ms: Some(4_000),
            ..Effective::default()
        };
        f.track(sock(ESTABLISHED, timer, info), None, Some(eff), t0);
        let ended = f.observe(&[], t0 + Duration::from_millis(100), &k, |_, _| false);
        let e = &ended[0];
        assert_eq!(e.load, Load::Busy);
        assert_eq!(e.detection.detected_by, Some(Mechanism::UserTimeout));
    }

    #[test]
    fn fin_from_the_peer_and_a_quiet_disappearance_are_told_apart() {
        let k = KernelTimers::default();
        let t0 = Instant::now();
        let mut f = Follower::new();
        let a = sock(ESTABLISHED, None, TcpInfo::default());
        let mut b = a.clone();
        b.peer = "10.0.0.3:40001".parse().unwrap();
        f.track(a.clone(), Some((7, 3)), None, t0);
        f.track(b.clone(), Some((7, 4)), None, t0);
        let mut fin = a.clone();
        fin.state = CLOSE_WAIT;
        let later = t0 + Duration::from_millis(100);
        let ended = f.observe(&[fin], later, &k, |(_, fd), _| fd == 4);
        assert_eq!(ended.len(), 2);
        let by_peer = |p: SocketAddr| {
            ended
                .iter()
                .find(|e| e.followed.last.peer == p)
                .unwrap()
                .detection
                .clone()
        };
        let peer_fin = by_peer(a.peer);
        assert_eq!(peer_fin.outcome, Outcome::Closed);
        assert_eq!(peer_fin.closed_by, Some(ClosedBy::Peer));
        let reset = by_peer(b.peer);
        assert_eq!(
            (reset.outcome, reset.detected_by),
            (Outcome::Dead, Some(Mechanism::Reset))
        );
    }
}
