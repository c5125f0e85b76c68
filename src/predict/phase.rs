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
    fn jiffy(self) -> Duration {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtCut {
    /// Its keepalive timer, when armed.
    pub keepalive: Option<KeepalivePhase>,
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
    /// those of the first probe surely sent after the heal. `None` when the connection is given up
    /// first.
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
                Tick::GiveUp(..) => return None,
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
    }
}
