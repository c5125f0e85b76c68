//! `compare`'s timeline: what each connection sent after its cell was cut, sampled while the cell
//! runs. One task per cell on the measuring runtime (never a thread, never a task per connection)
//! reads every connection's TCP_INFO each [`SAMPLE`] from the cut until the watch stops, and turns
//! counter increments into packets: `total_retrans` rising is a retransmission; `probes` rising is a
//! keepalive probe on an idle connection (the kernel sends none while data is unacknowledged or
//! queued) and a zero-window probe on a busy one. Heartbeat pings come from the watcher's
//! [`PingLog`], drained at each sample, with the instant they were queued.
//!
//! The first sample is taken as soon as the cut is published (the cutting loop yields right after
//! each cut, so it runs before the next cell is cut): counts already there were sent before the cut.

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch::Receiver;
use tokio::time::MissedTickBehavior;

use crate::detection::{PacketKind, Timeline, TimelineEvent};
use crate::scenario::Load;
use crate::tcpinfo::TcpInfo;
use crate::units::Millis;
use crate::watch::PingLog;

/// How often TCP_INFO is read.
pub const SAMPLE: Duration = Duration::from_millis(25);

/// One connection to sample: its strategy's index, its local address, a handle on its socket (a
/// duplicate: reading TCP_INFO never touches the watcher's), and its ping log when it has
/// heartbeats. `compare` reads the same at the cut.
#[derive(Clone)]
pub struct Tracked {
    pub strategy: usize,
    pub local: std::net::SocketAddr,
    pub stream: Arc<TcpStream>,
    pub pings: Option<Arc<PingLog>>,
}

/// One connection's packets as sampled, before its detection is known.
#[derive(Debug, Default)]
pub struct Sampled {
    /// (seen, not before, kind): a sample at `seen` after the cut saw it, the sample before was at
    /// `not before` (equal for heartbeats, logged at their own instant).
    events: Vec<(Duration, Duration, PacketKind)>,
    dropped: u64,
    /// The last sample, after the cut.
    until: Duration,
    /// See [`Sampled::first_window_probe`]: seen as its back-off rising with nothing
    /// unacknowledged (tcp_send_probe0).
    first_window_probe: Option<(Duration, Duration)>,
}

impl Sampled {
    /// A busy connection's first zero-window probe after the cut, between two samples: (not
    /// before, by). The user timeout counts from it.
    pub fn first_window_probe(&self) -> Option<(Duration, Duration)> {
        self.first_window_probe
    }

    fn push(&mut self, seen: Duration, after: Duration, kind: PacketKind, n: u64) {
        for _ in 0..n {
            // Room for the ones after the detection, which `finish` drops.
            if self.events.len() < 2 * Timeline::MAX_EVENTS {
                self.events.push((seen, after, kind));
            } else {
                self.dropped += 1;
            }
        }
    }

    /// The timeline up to `detected` (from the cut; `None` = never): what was sent after it — the
    /// socket is still open on the sampler's handle, so a heartbeat-detected connection goes on
    /// retransmitting — is not part of the story. A kernel event seen by the first sample after the
    /// detection, but possibly sent before it, is kept and placed at the detection.
    pub fn finish(mut self, detected: Option<Duration>) -> Timeline {
        self.events.sort();
        let mut events = Vec::new();
        let mut dropped = self.dropped;
        for (seen, after, kind) in self.events {
            let at = match detected {
                Some(d) if seen <= d => seen,
                Some(d) if after < d && after != seen => d,
                Some(_) => continue,
                None => seen,
            };
            if events.len() < Timeline::MAX_EVENTS {
                events.push(TimelineEvent {
                    at_ms: at.ms(),
                    kind,
                });
            } else {
                dropped += 1;
            }
        }
        Timeline {
            sample_ms: SAMPLE.ms(),
            sampled_ms: detected.map_or(self.until, |d| d.min(self.until)).ms(),
            events,
            events_dropped: dropped,
            detected_ms: detected.map(|d| d.ms()),
            expected_min_ms: None,
            expected_max_ms: None,
        }
    }
}

/// Sample the connections of cell `cell` from its cut (published in `cuts`) until `stop` completes;
/// returns each strategy's packets. Without a cut, nothing was sent after one: empty timelines.
pub async fn sample(
    cell: usize,
    conns: Vec<Tracked>,
    load: Load,
    mut cuts: Receiver<Vec<Option<Instant>>>,
    stop: impl Future<Output = ()>,
) -> (usize, HashMap<usize, Sampled>) {
    tokio::pin!(stop);
    let mut out: HashMap<usize, Sampled> = conns
        .iter()
        .map(|t| (t.strategy, Sampled::default()))
        .collect();
    let cut = tokio::select! {
        biased;
        _ = &mut stop => None,
        c = cuts.wait_for(|c| c[cell].is_some()) => c.ok().and_then(|c| c[cell]),
    };
    let Some(cut) = cut else {
        return (cell, out);
    };
    // The baseline, right at the cut; pings queued before it are not part of the timeline (drained
    // and dropped).
    let mut last: Vec<Option<TcpInfo>> = conns
        .iter()
        .map(|t| crate::sys::tcp_info(&t.stream))
        .collect();
    let mut last_at = cut.elapsed();
    for t in &conns {
        drain_pings(
            t,
            cut,
            out.get_mut(&t.strategy).expect("one entry per strategy"),
        );
    }
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        let stopping = tokio::select! {
            biased;
            _ = &mut stop => true,
            _ = tick.tick() => false,
        };
        let now = cut.elapsed();
        for (t, prev) in conns.iter().zip(last.iter_mut()) {
            let s = out.get_mut(&t.strategy).expect("one entry per strategy");
            if let Some(info) = crate::sys::tcp_info(&t.stream) {
                if let Some(p) = prev {
                    let retrans = info.total_retrans.saturating_sub(p.total_retrans);
                    s.push(now, last_at, PacketKind::Retransmission, retrans.into());
                    let probes = info.probes.saturating_sub(p.probes);
                    let kind = match load {
                        Load::Idle => PacketKind::KeepaliveProbe,
                        Load::Busy => PacketKind::WindowProbe,
                    };
                    s.push(now, last_at, kind, probes.into());
                    if load == Load::Busy
                        && p.backoff == 0
                        && info.backoff > 0
                        && info.unacked == 0
                        && s.first_window_probe.is_none()
                    {
                        // By the end of this reading, which comes after `now`.
                        s.first_window_probe = Some((last_at, cut.elapsed()));
                    }
                }
                *prev = Some(info);
            }
            drain_pings(t, cut, s);
            s.until = now;
        }
        last_at = now;
        if stopping {
            return (cell, out);
        }
    }
}

/// Move `t`'s logged pings sent after `cut` into `s`.
fn drain_pings(t: &Tracked, cut: Instant, s: &mut Sampled) {
    let Some(log) = &t.pings else { return };
    for at in log.drain() {
        if let Some(d) = at.checked_duration_since(cut) {
            s.push(d, d, PacketKind::Heartbeat, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_after_the_detection_is_kept_and_a_straddling_sample_lands_on_it() {
        let mut s = Sampled::default();
        s.push(ms(1000), ms(975), PacketKind::KeepaliveProbe, 1);
        s.push(ms(500), ms(500), PacketKind::Heartbeat, 1);
        // Seen by the first sample after the detection at 2010: sent in (2000, 2025].
        s.push(ms(2025), ms(2000), PacketKind::Retransmission, 2);
        // Wholly after it.
        s.push(ms(3025), ms(3000), PacketKind::Retransmission, 1);
        s.push(ms(2500), ms(2500), PacketKind::Heartbeat, 1);
        s.until = ms(4000);
        let t = s.finish(Some(ms(2010)));
        let got: Vec<(u64, PacketKind)> = t.events.iter().map(|e| (e.at_ms, e.kind)).collect();
        assert_eq!(
            got,
            [
                (500, PacketKind::Heartbeat),
                (1000, PacketKind::KeepaliveProbe),
                (2010, PacketKind::Retransmission),
                (2010, PacketKind::Retransmission),
            ]
        );
        assert_eq!(t.detected_ms, Some(2010));
        assert_eq!(t.sampled_ms, 2010);
        assert_eq!(t.sample_ms, 25);
    }

    #[test]
    fn events_are_bounded_and_the_rest_counted() {
        let mut s = Sampled::default();
        s.push(ms(10), ms(0), PacketKind::Retransmission, 1000);
        s.until = ms(10);
        let t = s.finish(None);
        assert_eq!(t.events.len(), Timeline::MAX_EVENTS);
        assert_eq!(t.events_dropped, 1000 - Timeline::MAX_EVENTS as u64);
        assert_eq!(t.detected_ms, None);
        assert_eq!(t.sampled_ms, 10);
    }
}
