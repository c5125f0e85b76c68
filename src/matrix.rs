//! The comparison matrix: runs of (strategy, fault, load), their aggregation into one result per cell
//! (median and spread over repeats, beside the prediction), and the verdict per fault in words.
//! Pure: no sockets, no clocks.

use std::time::Duration;

use serde::Serialize;

use crate::detection::{IcmpSeen, Mechanism, Outcome, Timeline};
use crate::predict::{Basis, Prediction, judge_band};
use crate::scenario::{Fault, Load};

/// One measured run of one strategy in one lab.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// From the cut to the detection; `null` when nothing noticed before the deadline.
    pub latency_ms: Option<u64>,
    /// Silence before detection (since the last packet heard).
    pub silence_ms: u64,
    pub detected_by: Option<Mechanism>,
    pub errno: Option<String>,
    pub outcome: Outcome,
    /// Its timers as the kernel held them at the cut, when they could be read.
    pub cut_phase: Option<CutPhase>,
    /// It ended during the warm-up, before anything was cut: the run measured no fault (the lab's
    /// peer stopped answering, or the machine was too loaded to run it), and disagrees.
    pub ended_before_cut: bool,
    /// Predicted for this run's own phase, on the cell's basis, with the timer-wheel band.
    pub expected_ms: Option<u64>,
    pub expected_min_ms: Option<u64>,
    pub expected_max_ms: Option<u64>,
    /// Whether this run fell within its own band (± [`crate::predict::BAND_MARGIN`]).
    pub agrees: bool,
    /// The ICMP errors this connection received after the cut.
    pub icmp: Option<IcmpSeen>,
    /// What it sent from the cut to its detection, beside its own band (`compare --svg` draws it).
    pub timeline: Timeline,
    /// `compare --server`: when the operator's server noticed this dead client (`null`: not within
    /// the deadline, the fault stopped the server itself, or no `--server`).
    pub server: Option<ServerRun>,
}

/// `compare --server`: the operator's server noticing the dead client of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRun {
    /// What noticed, judged from the server socket's last state (as `audit --watch` does).
    pub detected_by: Option<Mechanism>,
    pub errno: Option<String>,
    /// Silence before it noticed (since it last heard the client), ms.
    pub silence_ms: u64,
    /// From the cut to when it noticed, ms.
    pub latency_ms: u64,
    /// Predicted from its own settings, read back from its socket, counted from the last packet it
    /// heard, with the band of the timers' slack.
    pub expected_ms: Option<u64>,
    pub expected_min_ms: Option<u64>,
    pub expected_max_ms: Option<u64>,
    pub expected_by: Option<Mechanism>,
}

impl ServerRun {
    /// The one that noticed in the median time: the lower median, a run that happened, not an
    /// average of two (`None` when none noticed).
    pub fn median<'a>(noticed: impl Iterator<Item = &'a ServerRun>) -> Option<&'a ServerRun> {
        let mut noticed: Vec<&ServerRun> = noticed.collect();
        noticed.sort_by_key(|s| s.latency_ms);
        noticed.get(noticed.len().saturating_sub(1) / 2).copied()
    }
}

/// Measured: one connection's timers at the instant of the cut, which its prediction is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CutPhase {
    /// Since the last packet heard from the peer, ms.
    pub heard_ago_ms: u64,
    /// Its retransmission timeout (TCP_INFO), ms.
    pub rto_ms: u64,
    /// Until the keepalive timer fired next, ms; null when keepalive was off.
    pub keepalive_due_ms: Option<u64>,
    /// Keepalive probes out and unanswered; null when keepalive was off.
    pub probes_out: Option<u32>,
    /// reboot: when the path was healed, from this cell's cut, ms.
    pub heal_ms: Option<u64>,
    /// It was probing a zero window at the cut (its peer had fallen behind reading): until that
    /// probe timer fired, ms; null otherwise.
    pub zero_window_probe_due_ms: Option<u64>,
    /// With heartbeats: when the ping left unacked by the cut went out (or goes), from the last
    /// packet heard, ms; null without heartbeats or before the first ping.
    pub ping_at_ms: Option<u64>,
}

impl Run {
    fn noticed(&self) -> bool {
        self.outcome.is_detection()
    }
}

/// The aggregated result of one (strategy, fault, load).
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// Label or spec.
    pub strategy: String,
    /// The spec without label.
    pub spec: String,
    pub fault: Fault,
    pub load: Load,
    /// The mechanism that noticed in most runs.
    pub detected_by: Option<Mechanism>,
    /// The errno seen in most runs.
    pub errno: Option<String>,
    /// Median latency from the cut over the runs that noticed; `null` = never (before the deadline).
    pub latency_ms: Option<u64>,
    pub latency_min_ms: Option<u64>,
    pub latency_max_ms: Option<u64>,
    /// Median silence before detection over the runs that noticed.
    pub silence_ms: Option<u64>,
    /// Runs that noticed, of `runs.len()`.
    pub noticed: usize,
    pub expected_ms: Option<u64>,
    /// The band over every phase of the timers and their slack.
    pub expected_min_ms: Option<u64>,
    pub expected_max_ms: Option<u64>,
    pub expected_by: Option<Mechanism>,
    pub expected_basis: Basis,
    pub expected_reason: String,
    pub agrees: bool,
    pub disagreement: Option<String>,
    /// The ICMP errors of the run that received the most (evidence of the cause).
    pub icmp: Option<IcmpSeen>,
    /// `compare --server`: the run where the server noticed in the median time (`null`: it noticed
    /// in no run — not within the deadline, or the fault stopped the server itself — or no
    /// `--server`).
    pub server: Option<ServerRun>,
    pub runs: Vec<Run>,
}

/// Per-mechanism counts: how many connections each mechanism ended, and their silence before detection.
#[derive(Debug, Clone, Serialize)]
pub struct MechanismStats {
    pub detected_by: String,
    pub count: u64,
    pub silence_min_ms: u64,
    pub silence_median_ms: u64,
    pub silence_p99_ms: u64,
    pub silence_max_ms: u64,
}

/// Per-mechanism statistics from (mechanism name, silence ms) pairs: `connect --connections` and
/// `listen`'s summary.
pub fn mechanism_stats(mut samples: Vec<(String, u64)>) -> Vec<MechanismStats> {
    samples.sort();
    let mut out: Vec<MechanismStats> = Vec::new();
    for chunk in samples.chunk_by(|a, b| a.0 == b.0) {
        // Sorted by (name, silence): each chunk's silences are in order already.
        let v: Vec<u64> = chunk.iter().map(|x| x.1).collect();
        let n = v.len();
        out.push(MechanismStats {
            detected_by: chunk[0].0.clone(),
            count: n as u64,
            silence_min_ms: v[0],
            silence_p99_ms: v[(n * 99).div_ceil(100).max(1) - 1],
            silence_max_ms: v[n - 1],
            silence_median_ms: median(v).expect("a chunk is never empty"),
        });
    }
    out
}

/// The median; of an even count, the mean of the middle two.
fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// The most frequent item; ties go to the first seen, so the result is deterministic.
fn mode<T: Clone + PartialEq>(items: impl Iterator<Item = T>) -> Option<T> {
    let v: Vec<T> = items.collect();
    let count = |x: &T| v.iter().filter(|y| *y == x).count();
    let mut best: Option<(&T, usize)> = None;
    for x in &v {
        let c = count(x);
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((x, c));
        }
    }
    best.map(|(x, _)| x.clone())
}

/// Aggregate the runs of one cell — each with the prediction for its own phase — and judge every
/// run against its own band: the cell agrees when every run does. Nothing noticed before `deadline`
/// agrees with a band that reaches past it.
pub fn aggregate(
    strategy: &crate::strategy::Strategy,
    fault: Fault,
    load: Load,
    pred: &Prediction,
    deadline: Duration,
    runs: Vec<(Run, Prediction)>,
) -> CellResult {
    let mut disagreement = None;
    let n = runs.len();
    let runs: Vec<Run> = runs
        .into_iter()
        .enumerate()
        .map(|(k, (mut r, p))| {
            // A band counted from the last packet heard is judged on the time since then. The
            // watcher's own silence for a heartbeat counts from the last reply instead, which may be
            // up to an interval sooner on a busy connection: there the lab's reading at the cut
            // (the time since the last packet heard) plus the latency is that time.
            let since_heard = match (r.detected_by, r.latency_ms, r.cut_phase) {
                (Some(Mechanism::Heartbeat), Some(lat), Some(c)) => lat + c.heard_ago_ms,
                _ => r.silence_ms,
            };
            let measured = match p.basis {
                Basis::LastHeard => r.noticed().then_some(since_heard),
                Basis::Fault => r.latency_ms,
            }
            .map(Duration::from_millis);
            let j = if r.ended_before_cut {
                crate::predict::Judgement {
                    agrees: false,
                    note: Some(
                        "ended before the cut, during the warm-up: the lab's peer stopped answering (is the machine overloaded?), so this run measured no fault"
                            .into(),
                    ),
                }
            } else {
                judge_band(&p, r.detected_by, measured, deadline)
            };
            r.expected_ms = p.expected_ms();
            r.expected_min_ms = p.expected_min_ms();
            r.expected_max_ms = p.expected_max_ms();
            r.agrees = j.agrees;
            // The timeline's axis is the cut: a band counted from the last packet heard moves by
            // the silence already elapsed at the cut — as judged (silence − latency) when it was
            // detected, else as read at the cut.
            let heard_before_cut = match (p.basis, r.latency_ms) {
                (Basis::Fault, _) => 0,
                (Basis::LastHeard, Some(lat)) if r.noticed() => since_heard.saturating_sub(lat),
                (Basis::LastHeard, _) => r.cut_phase.map_or(0, |c| c.heard_ago_ms),
            };
            r.timeline.detected_ms = r.latency_ms;
            r.timeline.expected_min_ms = r.expected_min_ms.map(|m| m.saturating_sub(heard_before_cut));
            r.timeline.expected_max_ms = r.expected_max_ms.map(|m| m.saturating_sub(heard_before_cut));
            if let (None, Some(note)) = (&disagreement, j.note) {
                disagreement = Some(if n > 1 {
                    format!("run {} of {n}: {note}", k + 1)
                } else {
                    note
                });
            }
            r
        })
        .collect();
    let noticed: Vec<&Run> = runs.iter().filter(|r| r.noticed()).collect();
    let lat: Vec<u64> = noticed.iter().filter_map(|r| r.latency_ms).collect();
    let detected_by = mode(noticed.iter().filter_map(|r| r.detected_by));
    let errno = mode(noticed.iter().filter_map(|r| r.errno.clone()));
    let icmp = runs
        .iter()
        .filter_map(|r| r.icmp.clone())
        .max_by_key(|i| i.messages);
    let server = ServerRun::median(runs.iter().filter_map(|r| r.server.as_ref())).cloned();
    CellResult {
        strategy: strategy.name(),
        spec: strategy.spec(),
        fault,
        load,
        detected_by,
        errno,
        latency_ms: median(lat.clone()),
        latency_min_ms: lat.iter().min().copied(),
        latency_max_ms: lat.iter().max().copied(),
        silence_ms: median(noticed.iter().map(|r| r.silence_ms).collect()),
        noticed: noticed.len(),
        expected_ms: pred.expected_ms(),
        expected_min_ms: pred.expected_min_ms(),
        expected_max_ms: pred.expected_max_ms(),
        expected_by: pred.mechanism,
        expected_basis: pred.basis,
        expected_reason: pred.reason.clone(),
        agrees: disagreement.is_none(),
        disagreement,
        icmp,
        server,
        runs,
    }
}

/// A sentence about one fault, from the results.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub fault: Fault,
    pub text: String,
}

/// What a fault teaches, in one short sentence.
fn hint(fault: Fault) -> &'static str {
    match fault {
        Fault::Blackhole => {
            "Keepalive covers idle connections only; busy ones need a user timeout or heartbeats, else retransmissions take ~15 min."
        }
        Fault::Unreachable | Fault::Prohibit => {
            "The router's ICMP is a soft error: timers still decide when; the ICMP seen is the evidence of the cause."
        }
        Fault::Linkdown => "A local link failure is still noticed only by timers.",
        Fault::Reboot => {
            "The rebooted peer answers RST to the first segment after the path heals; a silent connection never learns."
        }
        Fault::Freeze => {
            "A hung peer's kernel still ACKs: only heartbeats (and a user timeout when busy) notice."
        }
        Fault::Crash => {
            "The peer's kernel closes for it (FIN, or RST over unread data): noticed at once."
        }
        Fault::NatExpiry => {
            "A flow silent longer than the middlebox's timeout is forgotten; nothing notices until it sends."
        }
    }
}

/// One verdict per fault, in the order given: the fastest strategy per load, how many missed, and
/// what the fault teaches.
pub fn verdicts(results: &[CellResult], faults: &[Fault]) -> Vec<Verdict> {
    faults
        .iter()
        .map(|&fault| {
            let mut parts = Vec::new();
            for load in [Load::Idle, Load::Busy] {
                let cells: Vec<&CellResult> = results
                    .iter()
                    .filter(|r| r.fault == fault && r.load == load)
                    .collect();
                if cells.is_empty() {
                    continue;
                }
                let missed = cells.iter().filter(|c| c.latency_ms.is_none()).count();
                let fastest = cells
                    .iter()
                    .filter(|c| c.latency_ms.is_some())
                    .min_by_key(|c| c.latency_ms);
                let slowest = cells.iter().filter_map(|c| c.latency_ms).max();
                parts.push(match fastest {
                    None => format!("{load} nothing noticed"),
                    Some(_) if missed == 0 => format!(
                        "{load} every strategy noticed, within {}",
                        crate::units::human_ms(slowest)
                    ),
                    Some(c) => {
                        let mut s = format!(
                            "{load} {} first ({})",
                            c.strategy,
                            crate::units::human_ms(c.latency_ms)
                        );
                        if missed > 0 {
                            s += &format!(", {missed} of {} missed", cells.len());
                        }
                        s
                    }
                });
            }
            Verdict {
                fault,
                text: format!("{fault}: {}. {}", parts.join("; "), hint(fault)),
            }
        })
        .collect()
}

/// The bottom line of a comparison, as data: which strategies noticed everything and how fast, and
/// what nothing noticed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Answer {
    /// Strategies that noticed every (fault, load) measured, fastest worst case first.
    pub noticed_all: Vec<StrategyWorst>,
    /// When none noticed everything: the strategy that noticed the most cells.
    pub best: Option<StrategyCount>,
    /// The (fault, load) cells no strategy noticed within the deadline.
    pub unnoticed: Vec<FaultLoad>,
}

/// A strategy and its slowest detection over every cell.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyWorst {
    pub strategy: String,
    pub worst_ms: u64,
}

/// A strategy and how many cells it noticed, of how many.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyCount {
    pub strategy: String,
    pub noticed: usize,
    pub of: usize,
}

/// One cell of the matrix, by fault and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultLoad {
    pub fault: Fault,
    pub load: Load,
}

/// The bottom line over all results.
pub fn answer(results: &[CellResult]) -> Answer {
    let mut strategies: Vec<&str> = Vec::new();
    let mut cells: Vec<FaultLoad> = Vec::new();
    for r in results {
        if !strategies.contains(&r.strategy.as_str()) {
            strategies.push(&r.strategy);
        }
        let c = FaultLoad {
            fault: r.fault,
            load: r.load,
        };
        if !cells.contains(&c) {
            cells.push(c);
        }
    }
    fn of<'a>(results: &'a [CellResult], s: &'a str) -> impl Iterator<Item = &'a CellResult> {
        results.iter().filter(move |r| r.strategy == s)
    }
    let mut noticed_all: Vec<StrategyWorst> = strategies
        .iter()
        .filter(|s| of(results, s).all(|r| r.latency_ms.is_some()))
        .map(|s| StrategyWorst {
            strategy: s.to_string(),
            worst_ms: of(results, s)
                .filter_map(|r| r.latency_ms)
                .max()
                .unwrap_or(0),
        })
        .collect();
    noticed_all.sort_by_key(|w| w.worst_ms);
    let best = if noticed_all.is_empty() {
        strategies
            .iter()
            .map(|s| StrategyCount {
                strategy: s.to_string(),
                noticed: of(results, s).filter(|r| r.latency_ms.is_some()).count(),
                of: of(results, s).count(),
            })
            // The first of equals: strategies keep the order they were given in.
            .rev()
            .max_by_key(|c| c.noticed)
            .filter(|c| c.noticed > 0)
    } else {
        None
    };
    let unnoticed = cells
        .into_iter()
        .filter(|c| {
            results
                .iter()
                .filter(|r| r.fault == c.fault && r.load == c.load)
                .all(|r| r.latency_ms.is_none())
        })
        .collect();
    Answer {
        noticed_all,
        best,
        unnoticed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Effective, KernelTimers};

    fn run(lat: Option<u64>, by: Option<Mechanism>) -> (Run, Prediction) {
        let r = Run {
            latency_ms: lat,
            silence_ms: lat.unwrap_or(0) + 500,
            detected_by: by,
            errno: by.map(|_| "ETIMEDOUT".to_string()),
            outcome: if lat.is_some() {
                Outcome::Dead
            } else {
                Outcome::Alive
            },
            cut_phase: None,
            ended_before_cut: false,
            expected_ms: None,
            expected_min_ms: None,
            expected_max_ms: None,
            agrees: false,
            icmp: None,
            timeline: Timeline::default(),
            server: None,
        };
        (r, ka_pred())
    }

    /// A ka=1s,1s,3 blackhole/idle cell from `runs`, judged against `deadline`.
    fn ka_cell(runs: Vec<(Run, Prediction)>, deadline: Duration) -> CellResult {
        let s = "ka=1s,1s,3".parse().unwrap();
        aggregate(&s, Fault::Blackhole, Load::Idle, &ka_pred(), deadline, runs)
    }

    fn ka_pred() -> Prediction {
        let eff = Effective {
            keepalive_idle_ms: Some(1000),
            keepalive_interval_ms: Some(1000),
            keepalive_count: Some(3),
            ..Default::default()
        };
        crate::predict::predict(
            &eff,
            Fault::Blackhole,
            Load::Idle,
            &KernelTimers::default(),
            Duration::ZERO,
        )
    }

    #[test]
    fn aggregates_median_spread_and_mode() {
        let k = Some(Mechanism::Keepalive);
        let runs = vec![run(Some(3500), k), run(Some(3400), k), run(Some(3550), k)];
        let r = ka_cell(runs, Duration::from_secs(8));
        assert_eq!(
            (r.latency_ms, r.latency_min_ms, r.latency_max_ms),
            (Some(3500), Some(3400), Some(3550))
        );
        assert_eq!(r.silence_ms, Some(4000));
        assert_eq!(r.detected_by, k);
        assert_eq!(r.errno.as_deref(), Some("ETIMEDOUT"));
        assert_eq!(r.noticed, 3);
        assert!(r.agrees, "{:?}", r.disagreement);
    }

    #[test]
    fn never_agrees_with_a_prediction_past_the_deadline_only() {
        let r = ka_cell(vec![run(None, None)], Duration::from_secs(2));
        assert!(r.agrees);
        assert_eq!(r.latency_ms, None);
        let r = ka_cell(vec![run(None, None)], Duration::from_secs(8));
        assert!(!r.agrees);
    }

    #[test]
    fn a_run_that_ended_before_the_cut_never_agrees() {
        let k = Some(Mechanism::Keepalive);
        let (mut early, p) = run(Some(4000), k);
        early.latency_ms = None;
        early.ended_before_cut = true;
        let r = ka_cell(vec![run(Some(3500), k), (early, p)], Duration::from_secs(8));
        assert!(!r.agrees);
        assert!(!r.runs[1].agrees && r.runs[0].agrees);
        assert!(r.disagreement.unwrap().contains("before the cut"));
    }

    #[test]
    fn verdict_names_the_fastest_and_the_blind() {
        let hb = "hb=500ms,3".parse().unwrap();
        let ka = "ka=1s,1s,3".parse().unwrap();
        let p = ka_pred();
        let d = Duration::from_secs(8);
        let results = vec![
            aggregate(
                &hb,
                Fault::Freeze,
                Load::Idle,
                &p,
                d,
                vec![run(Some(1200), Some(Mechanism::Heartbeat))],
            ),
            aggregate(&ka, Fault::Freeze, Load::Idle, &p, d, vec![run(None, None)]),
        ];
        let v = verdicts(&results, &[Fault::Freeze]);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].text
                .starts_with("freeze: idle hb=500ms,3 first (1.2 s), 1 of 2 missed. A hung"),
            "{}",
            v[0].text
        );
        let a = answer(&results);
        assert_eq!(a.noticed_all.len(), 1);
        assert_eq!(a.noticed_all[0].strategy, "hb=500ms,3");
        assert_eq!(a.noticed_all[0].worst_ms, 1200);
        assert!(a.best.is_none() && a.unnoticed.is_empty(), "{a:?}");
        let blind = answer(&results[1..]);
        assert!(blind.noticed_all.is_empty() && blind.best.is_none());
        assert_eq!(
            blind.unnoticed,
            vec![FaultLoad {
                fault: Fault::Freeze,
                load: Load::Idle
            }]
        );
    }
}
