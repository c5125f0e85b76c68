//! The kernel's timers after a cut, phase by phase: the keepalive timer as `tcp_keepalive_timer`
//! runs it, and how late the timer wheel fires each timer. Pure: the state at the cut comes in.
//!
//! Two kernel facts decide the numbers:
//! - An answered keepalive probe does not restart the idle time: the timer was already re-armed one
//!   *interval* after the probe, and when it fires it compares the time since the last packet heard
//!   with the idle time. So with `idle < interval` a healthy idle connection probes every interval,
//!   and a cut just after an answered probe is noticed up to one interval later than a cut before
//!   the first probe. A user timeout is only checked when that timer fires, with a probe out.
//! - The timer wheel (kernel/time/timer.c) never fires early and rounds every expiry up to its
//!   level's granularity: 8^level jiffies, the level chosen by how far ahead the timer was armed
//!   (level 0 under 63 jiffies, then ×8). At HZ=250 a 1 s timer fires up to 32 ms late, a 5 s one up
//!   to 256 ms: that is the band around every timer prediction.

use std::time::Duration;

/// The timer wheel of a kernel running at `hz` ticks a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    pub hz: u32,
}

impl Wheel {
    pub fn jiffy(self) -> Duration {
        Duration::from_secs(1) / self.hz.max(1)
    }

    /// The most a timer armed `delta` ahead fires after its expiry: its level's granularity plus
    /// the tick it was armed in.
    pub fn max_late(self, delta: Duration) -> Duration {
        let jiffy = self.jiffy();
        let jiffies = (delta.as_nanos() / jiffy.as_nanos().max(1)) as u64;
        // LVL_START(n) = 63 << 3(n-1): the first delta that lands in level n.
        let mut level = 0u32;
        while level < 8 && jiffies >= 63u64 << (3 * level) {
            level += 1;
        }
        jiffy * (1u32 << (3 * level)) + jiffy
    }
}

/// A connection's keepalive timer at the instant of the cut, as the kernel held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepalivePhase {
    /// Time since the last packet heard from the peer (TCP_INFO `last_ack_recv`).
    pub heard_ago: Duration,
    /// When the keepalive timer fires next, from the cut (`/proc/net/tcp` timer 2).
    pub due_in: Duration,
    /// Keepalive probes out and unanswered.
    pub probes_out: u32,
}

/// What the lab knows of one connection at the instant of its cut; `Default` where nothing is known
/// (a real path: the band then spans every phase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtCut {
    /// Its keepalive timer, when armed.
    pub keepalive: Option<KeepalivePhase>,
    /// Time since the last packet heard from the peer (TCP_INFO `last_ack_recv`).
    pub heard_ago: Option<Duration>,
    /// Its retransmission timeout (TCP_INFO `rto`): the first retransmission of data sent after the
    /// cut goes this long after it.
    pub rto: Option<Duration>,
    /// For `reboot`: when the path was healed, from the cut ([`crate::predict::REBOOT_HEAL`] when
    /// not measured).
    pub heal: Option<Duration>,
    /// When the connection was probing a zero window at the cut (its peer had stopped reading, or
    /// fell behind): until that probe timer fires. Nothing is then in flight but window probes.
    pub zero_window: Option<Duration>,
    /// For `nat-expiry`: how long the middlebox keeps an idle flow (`None`: not known, and the flow
    /// is predicted to have been forgotten).
    pub nat_idle: Option<Duration>,
    /// For an idle connection with heartbeats: when its next ping goes out, counted from the last
    /// packet heard (`None`: not known, predicted over every phase of the ping).
    pub next_ping: Option<Duration>,
    /// When the router's ICMP errors about this connection came back, counted from the last packet
    /// heard (from the ping's send where a heartbeat's ping is the first data), in order (`None`:
    /// not watched; the band then spans every phase of the router's ICMP rate limit). Each one
    /// about a retransmission undoes one RTO back-off (RFC 6069).
    pub icmp: Option<Vec<Duration>>,
    /// With heartbeats: how long before the last packet heard the peer was last heard in the
    /// heartbeat's protocol, whose misses count from there (`None`: not known).
    pub heartbeat_heard: Option<Duration>,
    /// For a busy connection whose peer stopped reading after the cut (`freeze`): its first
    /// zero-window probe, from the cut, between (not before, by) — the lab's samples bracket it.
    pub first_window_probe: Option<(Duration, Duration)>,
}

impl AtCut {
    /// The same phase `gap` later, nothing heard meanwhile: what was read just before a cut, as it
    /// stood at the cut.
    pub fn age(&mut self, gap: Duration) {
        self.heard_ago = self.heard_ago.map(|h| h + gap);
        if let Some(k) = &mut self.keepalive {
            k.heard_ago += gap;
            k.due_in = k.due_in.saturating_sub(gap);
        }
        self.zero_window = self.zero_window.map(|z| z.saturating_sub(gap));
    }
}

/// A busy connection's retransmission timer after a cut, with a user timeout, as
/// `tcp_retransmit_timer` runs it: each firing first checks the user timeout (counted from the
/// first retransmission, `retrans_stamp`), else retransmits, doubles the RTO (up to `rto_max`) and
/// re-arms clamped to the user timeout's end (`tcp_clamp_rto_to_user_timeout`). An ICMP
/// unreachable about that retransmission undoes the doubling and re-arms the timer one back-off
/// step down from the retransmission — without the clamp (`tcp_ld_RTO_revert`), so it can fire
/// past the user timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmissionTimer {
    /// The connection's RTO before any back-off (TCP_INFO `rto` while healthy).
    pub rto: Duration,
    pub rto_max: Duration,
    pub user_timeout: Duration,
}

/// How long after a retransmission the router's ICMP error about it can arrive and still be taken
/// for the answer to it: the lab's router is one hop away (well under a millisecond).
const ICMP_ECHO: Duration = Duration::from_millis(5);

impl RetransmissionTimer {
    /// When the user timeout ends the connection, given its first retransmission nominally at
    /// `first` and up to `first_late` later, and the ICMP errors that came back (`icmp`, in order):
    /// `(nominal, most it can be later, back-off steps reverted)`, all counted from the same instant
    /// as `first`. An ICMP arriving just after a retransmission dates it exactly (its slack is then
    /// known), and reverts one back-off step.
    pub fn give_up(
        &self,
        first: Duration,
        first_late: Duration,
        icmp: &[Duration],
        wheel: Wheel,
    ) -> (Duration, Duration, u32) {
        let echo = |t: Duration, late: Duration| {
            icmp.iter()
                .copied()
                .find(|&a| a >= t && a <= t + late + ICMP_ECHO)
        };
        let rto_at = |backoff: u32| {
            self.rto
                .saturating_mul(1u32 << backoff.min(20))
                .min(self.rto_max)
        };
        let (mut t, mut late) = (first, first_late);
        // retrans_stamp's user-timeout end, set by the first retransmission (and how late it may be).
        let mut end: Option<(Duration, Duration)> = None;
        let (mut backoff, mut reverted) = (0u32, 0u32);
        for _ in 0..10_000 {
            if let Some((deadline, _)) = end
                && t >= deadline
            {
                return (t, late, reverted);
            }
            // A retransmission at `t`; the router's answer to it, if any, dates it.
            let answer = echo(t, late);
            if let Some(a) = answer {
                (t, late) = (a, Duration::ZERO);
            }
            let (deadline, deadline_late) = *end.get_or_insert((t + self.user_timeout, late));
            if answer.is_some() {
                // Backed off, and at once one step back: re-armed from the retransmission with
                // the RTO it went with, unclamped.
                (t, late) = (t + rto_at(backoff), wheel.max_late(rto_at(backoff)));
                reverted += 1;
                continue;
            }
            backoff += 1;
            let remaining = deadline.saturating_sub(t).max(wheel.jiffy());
            (t, late) = if rto_at(backoff) >= remaining {
                (t + remaining, deadline_late + wheel.max_late(remaining))
            } else {
                let (next, next_late) =
                    (t + rto_at(backoff), late + wheel.max_late(rto_at(backoff)));
                // A router's answer to that firing shows it came before the end and retransmitted.
                if next + next_late < deadline || echo(next, next_late).is_some() {
                    (next, next_late)
                } else {
                    // This firing may come after the end (then it ends the connection), else the
                    // clamped one right after it does.
                    let clamped = deadline_late + wheel.max_late(deadline.saturating_sub(next));
                    return (
                        deadline,
                        (next + next_late - deadline).max(clamped),
                        reverted,
                    );
                }
            };
        }
        (t, late, reverted)
    }
}

/// What one firing of the keepalive timer did, in time since the last packet heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// A probe went out.
    Probe(Duration),
    /// Not idle long enough yet: re-armed for last-heard + idle.
    Wait(Duration),
    /// The connection was given up: by the user timeout (`true`) or the probe count.
    GiveUp(Duration, bool),
}

/// Keepalive settings and the user timeout that rides on the same timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveTimer {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
    pub user_timeout: Option<Duration>,
}

impl KeepaliveTimer {
    /// The firings after the cut until the connection is given up, as `tcp_keepalive_timer` does
    /// them, each with the delta it was armed with (for its slack). Stops after 10,000 firings.
    pub fn ticks(&self, at_cut: KeepalivePhase) -> Vec<(Tick, Duration)> {
        let mut out = Vec::new();
        let mut t = at_cut.heard_ago + at_cut.due_in;
        // The pending timer was armed before the cut, with a delta of at most idle or interval.
        let mut armed = self.idle.max(self.interval);
        let mut probes = at_cut.probes_out;
        for _ in 0..10_000 {
            if t < self.idle {
                out.push((Tick::Wait(t), armed));
                armed = self.idle - t;
                t = self.idle;
                continue;
            }
            let give_up = match self.user_timeout {
                Some(uto) => t >= uto && probes > 0,
                None => probes >= self.count,
            };
            if give_up {
                out.push((Tick::GiveUp(t, self.user_timeout.is_some()), armed));
                break;
            }
            out.push((Tick::Probe(t), armed));
            probes += 1;
            armed = self.interval;
            t += self.interval;
        }
        out
    }

    /// When the connection is given up, in time since the last packet heard: (nominal, most the
    /// wheel adds, by the user timeout).
    pub fn give_up(&self, at_cut: KeepalivePhase, wheel: Wheel) -> (Duration, Duration, bool) {
        let ticks = self.ticks(at_cut);
        let late = ticks.iter().map(|(_, armed)| wheel.max_late(*armed)).sum();
        match ticks.last() {
            Some((Tick::GiveUp(t, by_uto), _)) => (*t, late, *by_uto),
            _ => (Duration::MAX, Duration::ZERO, false),
        }
    }

    /// The keepalive probe that meets a path healed at `heal` (time since the last packet heard):
    /// `(earliest, nominal, latest)`. Earliest is the nominal time of the first probe whose slack
    /// reaches past the heal (it may fire after it, or be lost just before); nominal and latest are
    /// those of the first probe surely sent after the heal, or of the tick that gives the
    /// connection up when that comes first (only the earlier probe can then meet the heal). `None`
    /// when the connection is given up before any probe can.
    pub fn first_probe_from(
        &self,
        at_cut: KeepalivePhase,
        heal: Duration,
        wheel: Wheel,
    ) -> Option<(Duration, Duration, Duration)> {
        let mut late = Duration::ZERO;
        let mut earliest = None;
        for (tick, armed) in self.ticks(at_cut) {
            late += wheel.max_late(armed);
            match tick {
                Tick::Probe(t) if t + late >= heal => {
                    let lo = *earliest.get_or_insert(t);
                    if t >= heal {
                        return Some((lo, t, t + late));
                    }
                }
                // Given up before a probe surely meets the healed path; one that may have met it
                // (fired late, past the heal) draws the RST before then.
                Tick::GiveUp(t, _) => return earliest.map(|lo| (lo, t, t + late)),
                _ => {}
            }
        }
        None
    }

    /// The phases a healthy idle connection can be cut in, `steps` of each: before the first probe
    /// (timer due at last-heard + idle) and, when `idle < interval`, after an answered probe (timer
    /// due one interval after that probe). The first is the steady state when `idle ≥ interval`.
    pub fn phases(&self, steps: u32) -> Vec<KeepalivePhase> {
        let mut out = Vec::new();
        let mut add = |due_from_heard: Duration| {
            for k in 0..steps {
                let ago = due_from_heard.mul_f64(f64::from(k) / f64::from(steps.max(1)));
                out.push(KeepalivePhase {
                    heard_ago: ago,
                    due_in: due_from_heard - ago,
                    probes_out: 0,
                });
            }
        };
        add(self.idle);
        if self.idle < self.interval {
            add(self.interval);
        }
        out
    }

    /// The phase the lab or a long-lived idle connection is most likely in: after an answered probe
    /// when `idle < interval` (probes then come every interval), else before the next probe.
    pub fn steady_phase(&self) -> KeepalivePhase {
        KeepalivePhase {
            heard_ago: Duration::ZERO,
            due_in: self.idle.max(self.interval),
            probes_out: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHEEL: Wheel = Wheel { hz: 250 };

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn ka(idle: f64, interval: f64, count: u32, uto: Option<f64>) -> KeepaliveTimer {
        KeepaliveTimer {
            idle: s(idle),
            interval: s(interval),
            count,
            user_timeout: uto.map(s),
        }
    }

    fn millis(ms: &[f64]) -> Vec<Duration> {
        ms.iter().map(|ms| s(ms / 1000.0)).collect()
    }

    /// uto with RTO 204 ms, the first retransmission nominally one RTO after the last packet heard.
    fn rtx(uto: f64) -> RetransmissionTimer {
        RetransmissionTimer {
            rto: s(0.204),
            rto_max: s(120.0),
            user_timeout: s(uto),
        }
    }

    #[test]
    fn a_blackholed_user_timeout_ends_on_the_clamped_firing() {
        // Retransmissions at 0.204, 0.612, 1.428, 3.06 s; the next (3.264 s later) is clamped to the
        // user timeout's end, 5.204 s, armed 2.144 s ahead (level 2: up to 260 ms late).
        let (t, late, _) = rtx(5.0).give_up(s(0.204), s(0.04), &[], WHEEL);
        assert_eq!(t, s(5.204));
        assert_eq!(late, s(0.04) + s(0.26));
        // 3 s: the clamped firing is armed only 144 ms ahead (level 0).
        let (t, late, _) = rtx(3.0).give_up(s(0.204), s(0.04), &[], WHEEL);
        assert_eq!(t, s(3.204));
        assert!(late <= s(0.05), "{late:?}");
    }

    #[test]
    fn each_icmp_about_a_retransmission_reverts_one_backoff_step_past_the_clamp() {
        // Measured in the lab (uto=3s, unreachable, busy), counted from the last packet heard: the
        // router's burst of five right after the cut (new data: no revert), then one ICMP a second
        // as its rate limit allows, each about a retransmission. The last revert re-arms 816 ms
        // after 3.143 s, past the user timeout's end (3.2 s): detected at 3.974 s.
        let icmp = millis(&[16.7, 20.9, 26.8, 31.0, 41.1, 1479.1, 2312.1, 3143.1]);
        let (t, late, _) = rtx(3.0).give_up(s(0.204), s(0.04), &icmp, WHEEL);
        assert_eq!(t, s(3.9591));
        assert_eq!(late, s(0.036));
        // uto=5s, the same router: the retransmission at ≈4 s draws no ICMP (the limit's tokens
        // ran out), so the clamp holds: 5.204 s, measured 5.237 s.
        let icmp = millis(&[13.0, 16.4, 19.5, 28.7, 38.9, 1492.6, 2324.7, 3156.9]);
        let (t, late, _) = rtx(5.0).give_up(s(0.204), s(0.04), &icmp, WHEEL);
        assert_eq!(t, s(5.204));
        assert!(t + late >= s(5.237), "{late:?}");
    }

    #[test]
    fn the_wheel_rounds_up_by_level() {
        // HZ=250: 4 ms jiffies; level 0 below 63 jiffies (252 ms), level 1 below 504 (2.016 s),
        // level 2 below 4032 (16.1 s).
        assert_eq!(WHEEL.max_late(s(0.2)), s(0.008));
        assert_eq!(WHEEL.max_late(s(1.0)), s(0.036));
        assert_eq!(WHEEL.max_late(s(5.0)), s(0.26));
        assert_eq!(WHEEL.max_late(s(11.0)), s(0.26));
        assert_eq!(WHEEL.max_late(s(75.0)), s(2.052));
        // HZ=1000: a 5 s timer is in level 3 (512 ms granularity).
        assert_eq!(Wheel { hz: 1000 }.max_late(s(5.0)), s(0.513));
    }

    #[test]
    fn cut_before_the_first_probe_counts_idle_plus_count_intervals() {
        let k = ka(2.0, 1.0, 4, None);
        let at = KeepalivePhase {
            heard_ago: s(0.5),
            due_in: s(1.5),
            probes_out: 0,
        };
        let (t, late, by_uto) = k.give_up(at, WHEEL);
        assert_eq!(t, s(6.0));
        assert!(!by_uto);
        // Measured here: 6.11 s; five firings of ≤ 36 ms each allow up to 6.18 s.
        assert_eq!(late, s(0.036) * 5);
    }

    #[test]
    fn an_answered_probe_rearms_one_interval_later_so_the_phase_matters() {
        // ka=1s,11s,3 + uto=5s, the capture: 12.1 s when cut before the first probe, 22.0 s
        // when cut 1.5 s after it.
        let k = ka(1.0, 11.0, 3, Some(5.0));
        let before = KeepalivePhase {
            heard_ago: s(0.5),
            due_in: s(0.5),
            probes_out: 0,
        };
        assert_eq!(k.give_up(before, WHEEL).0, s(12.0));
        let after = KeepalivePhase {
            heard_ago: s(1.5),
            due_in: s(9.5),
            probes_out: 0,
        };
        let (t, late, by_uto) = k.give_up(after, WHEEL);
        assert_eq!(t, s(22.0));
        assert!(by_uto);
        assert!(late <= s(0.8), "{late:?}");
    }

    #[test]
    fn idle_at_least_interval_is_phase_free_on_the_silence_basis() {
        let k = ka(5.0, 3.0, 3, None);
        for p in k.phases(7) {
            assert_eq!(k.give_up(p, WHEEL).0, s(14.0), "{p:?}");
        }
        // Measured here: 14.43 s; four firings of ≤ 260 ms allow up to 15.04 s.
        assert_eq!(k.give_up(k.steady_phase(), WHEEL).1, s(1.04));
    }

    #[test]
    fn the_user_timeout_needs_a_probe_out_and_a_tick() {
        // uto 2s with 1s,1s: ticks at 1 (probe), 2 (uto reached, probe out: give up).
        let k = ka(1.0, 1.0, 3, Some(2.0));
        let at = KeepalivePhase {
            heard_ago: Duration::ZERO,
            due_in: s(1.0),
            probes_out: 0,
        };
        assert_eq!(k.give_up(at, WHEEL).0, s(2.0));
        // uto below idle: still the first tick after a probe went out.
        let k = ka(3.0, 1.0, 3, Some(1.0));
        assert_eq!(k.give_up(k.steady_phase(), WHEEL).0, s(4.0));
    }

    #[test]
    fn reboot_heals_and_the_next_probe_meets_the_rst() {
        let k = ka(1.0, 1.0, 3, None);
        let at = KeepalivePhase {
            heard_ago: s(0.3),
            due_in: s(0.7),
            probes_out: 0,
        };
        // Probes at 1, 2, 3 s since heard; the path heals 1 s after the cut (1.3 s since heard).
        assert_eq!(
            k.first_probe_from(at, s(1.3), WHEEL).map(|p| p.0),
            Some(s(2.0))
        );
        // Given up (at 4 s) before a heal at 5 s.
        assert_eq!(k.first_probe_from(at, s(5.0), WHEEL), None);
        // A probe due 10 ms before the heal may fire after it (the wheel fires it up to 36 ms
        // late): the RST then comes one interval sooner than from the first probe surely after it.
        let at = KeepalivePhase {
            heard_ago: s(0.01),
            due_in: s(0.99),
            probes_out: 0,
        };
        let (lo, t, hi) = k.first_probe_from(at, s(1.01), WHEEL).unwrap();
        assert_eq!((lo, t), (s(1.0), s(2.0)));
        assert!(hi > s(2.0) && hi < s(2.1), "{hi:?}");
        // With a user timeout of 2 s, the tick at 2 s gives up instead: the probe just before the
        // heal (1 s, possibly late enough to meet it) is the only one that can draw the RST.
        let k = ka(1.0, 1.0, 3, Some(2.0));
        let (lo, t, _) = k.first_probe_from(at, s(1.01), WHEEL).unwrap();
        assert_eq!((lo, t), (s(1.0), s(2.0)));
    }
}
