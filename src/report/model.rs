//! The report models: one per command (and per `listen` event), pure data serialized as the JSON
//! output. No formatting here: the exporters in the sibling modules turn a model into text.

use serde::Serialize;

use crate::detection::{Detection, Mechanism};
use crate::idle::IdleTimeout;
use crate::matrix::{Answer, CellResult, MechanismStats, Verdict};
use crate::predict::{Basis, Expected, Prediction};
use crate::recommend::{Recommendation, Refusal};
use crate::recverr::EarlyWarnings;
use crate::scenario::{Fault, Load};
use crate::settings::{
    Effective, HostFacts, KeepaliveCount, KernelTimers, Os, OsRules, UserTimeout,
};
use crate::units::Millis;
use std::time::Duration;

/// The result of `tcphb connect`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub schema: u32,
    pub peer: String,
    pub local: String,
    pub strategy: String,
    /// The protocol the heartbeat spoke (`line` without --ping).
    pub ping: crate::strategy::Protocol,
    /// The heartbeat's protocol was wrapped in TLS.
    pub tls: bool,
    pub load: Load,
    pub effective: Effective,
    #[serde(flatten)]
    pub detection: Detection,
    #[serde(flatten)]
    pub expected: Expected,
}

/// The result of `tcphb connect --connections N`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectManyReport {
    pub schema: u32,
    /// Interrupted: the connections as they stood at the signal.
    pub partial: bool,
    pub peer: String,
    pub strategy: String,
    /// The protocol the heartbeat spoke (`line` without --ping).
    pub ping: crate::strategy::Protocol,
    /// The heartbeat's protocol was wrapped in TLS.
    pub tls: bool,
    pub load: Load,
    pub effective: Effective,
    pub connections: u64,
    pub alive: u64,
    pub dead: u64,
    /// Connections the peer closed itself (FIN): not deaths.
    pub closed: u64,
    /// Connections tcphb closed: the peer broke or never spoke the heartbeat protocol.
    pub closed_by_tcphb: u64,
    pub by_mechanism: Vec<MechanismStats>,
    /// The prediction for one connection, judged against every connection that ended.
    #[serde(flatten)]
    pub expected: Expected,
}

/// One `listen` event: a connection ended.
#[derive(Debug, Clone, Serialize)]
pub struct ListenEvent {
    pub schema: u32,
    /// Wall-clock time of the event (display only), RFC 3339.
    pub at: String,
    pub peer: String,
    #[serde(flatten)]
    pub detection: Detection,
    #[serde(flatten)]
    pub expected: Expected,
}

/// What `listen` saw over its whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenSummary {
    pub schema: u32,
    pub local: String,
    pub strategy: String,
    pub accepted: u64,
    /// Connections closed at once because --max-conns were already held.
    pub refused: u64,
    pub open_at_exit: u64,
    /// Events not written because stdout was not read fast enough (see `EventWriter`).
    pub events_dropped: u64,
    pub dead: u64,
    /// Connections the peer closed itself (FIN): not deaths.
    pub closed: u64,
    /// Connections tcphb closed: the client broke or never spoke the heartbeat protocol.
    pub closed_by_tcphb: u64,
    /// Dead connections by mechanism, with the silence before detection (min/median/max ms).
    pub by_mechanism: Vec<MechanismStats>,
}

/// Facts about the lab a comparison ran in.
#[derive(Debug, Clone, Serialize)]
pub struct LabFacts {
    /// Kernel release and the TCP sysctls in force in the client namespace: the same keys and
    /// number types as `probe`'s facts.
    pub facts: HostFacts,
    pub deadline_ms: u64,
    pub warmup_ms: u64,
    pub reboot_heal_ms: u64,
    pub nat_idle_ms: u64,
    pub repeat: u32,
    /// Wall time of the whole run, measured.
    pub wall_ms: u64,
    /// `compare --server`: the operator's server command, as given (`null` without it: the peer
    /// is `tcphb listen`).
    pub server_command: Option<String>,
}

/// The result of `tcphb compare`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub schema: u32,
    /// Interrupted: only the cells measured before the signal.
    pub partial: bool,
    pub lab: LabFacts,
    pub results: Vec<CellResult>,
    /// The bottom line: what noticed everything, how fast, and what nothing noticed.
    pub answer: Answer,
    pub verdicts: Vec<Verdict>,
}

/// Host and path facts. Host values are read from the kernel; path values are measured (TCP_INFO).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeFacts {
    #[serde(flatten)]
    pub host: HostFacts,
    /// The floor tcp_retries2's budget is computed from (TCP_RTO_MIN, a kernel constant), ms.
    pub rto_min_model_ms: u64,
    /// Measured: the connection's smoothed round-trip time, ms (`null` without TCP_INFO: then the
    /// handshake time).
    pub rtt_ms: f64,
    /// Measured: the connection's retransmission timeout, ms (`null` without TCP_INFO).
    pub rto_ms: Option<u64>,
}

/// Expected detection of one mechanism (or combination), idle and busy, on this path.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionRow {
    /// `none`, `os_keepalive`, `keepalive`, `user_timeout`, `heartbeat`, `strategy` (all requested
    /// mechanisms together, as read back) or `recommended`.
    pub mechanism: &'static str,
    /// The settings, as a spec (`ka=5s,5s,3`).
    pub settings: String,
    /// Predicted, from the last packet heard, ms (`null` = never), with the band over every timer
    /// phase and the timer slack.
    pub idle_ms: Option<u64>,
    pub idle_min_ms: Option<u64>,
    pub idle_max_ms: Option<u64>,
    pub idle_by: Option<Mechanism>,
    pub idle_reason: String,
    pub busy_ms: Option<u64>,
    pub busy_min_ms: Option<u64>,
    pub busy_max_ms: Option<u64>,
    pub busy_by: Option<Mechanism>,
    pub busy_reason: String,
}

impl PredictionRow {
    /// A row from the two predictions.
    pub fn new(
        mechanism: &'static str,
        settings: String,
        idle: &Prediction,
        busy: &Prediction,
    ) -> Self {
        PredictionRow {
            mechanism,
            settings,
            idle_ms: idle.expected_ms(),
            idle_min_ms: idle.expected_min_ms(),
            idle_max_ms: idle.expected_max_ms(),
            idle_by: idle.mechanism,
            idle_reason: idle.reason.clone(),
            busy_ms: busy.expected_ms(),
            busy_min_ms: busy.expected_min_ms(),
            busy_max_ms: busy.expected_max_ms(),
            busy_by: busy.mechanism,
            busy_reason: busy.reason.clone(),
        }
    }
}

/// The answer to `--detect-within`.
#[derive(Debug, Clone, Serialize)]
pub struct RecommendationReport {
    pub detect_within_ms: u64,
    /// Whether a strategy meets the ask.
    pub possible: bool,
    /// The strategy as a spec, and as flags to paste.
    pub strategy: Option<String>,
    pub flags: Option<String>,
    /// Predicted for the recommended strategy on this path (blackhole, the expected value), ms.
    pub idle_ms: Option<u64>,
    pub busy_ms: Option<u64>,
    /// The predicted worst case over the faults covered, from the last packet heard (band and
    /// margin included): at most `detect_within_ms`.
    pub worst_idle_ms: Option<u64>,
    pub worst_busy_ms: Option<u64>,
    /// Whether the peer answered `PING 1` (PONG or echo) on a connection of its own; `null` when
    /// not asked.
    pub peer_answers_ping: Option<bool>,
    /// The faults noticed within the deadline, idle and busy.
    pub covers: Vec<Fault>,
    /// The faults not promised, and why.
    pub uncovered: Vec<UncoveredFault>,
    /// What the settings send on an idle connection.
    pub cost: Option<CostReport>,
    /// Where the settings meet the path's idle timeout, with numbers.
    pub warnings: Vec<String>,
    /// Why these values, one sentence each.
    pub notes: Vec<String>,
    /// Why nothing can be recommended.
    pub refusal: Option<String>,
    /// `--verify`: the recommended settings measured in the lab.
    pub verification: Option<Verification>,
}

/// A fault the recommendation does not cover.
#[derive(Debug, Clone, Serialize)]
pub struct UncoveredFault {
    pub fault: Fault,
    pub why: String,
}

/// What the recommended settings send on an idle connection (IPv4 with TCP timestamps).
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub packets_per_min_out: f64,
    pub packets_per_min_in: f64,
    pub bytes_per_min_out: f64,
    pub bytes_per_min_in: f64,
    /// The period of the idle traffic; `null` when nothing is sent while idle.
    pub period_ms: Option<u64>,
}

/// `probe --verify`: the recommended strategy measured in the lab, per fault and load.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub deadline_ms: u64,
    /// What the measured times count from: `last_heard` (the silence before the detection, the
    /// deadline's own basis).
    pub basis: Basis,
    pub repeat: u32,
    /// How long the lab waited after each cut before calling a cell `never`.
    pub lab_deadline_ms: u64,
    pub cells: Vec<VerifyCell>,
    /// Every covered cell noticed in every run within the deadline.
    pub holds: bool,
    /// Interrupted: only part of the cells were measured.
    pub partial: bool,
}

/// One fault × load of the verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyCell {
    pub fault: Fault,
    pub load: Load,
    /// Whether the recommendation claims this fault (judged against the deadline).
    pub covered: bool,
    /// Runs measured (`repeat`, fewer when interrupted).
    pub measured: usize,
    pub noticed: usize,
    /// The longest silence before a detection over the runs; `null` if none noticed.
    pub worst_ms: Option<u64>,
    /// The longest time from the cut to a detection over the runs.
    pub latency_max_ms: Option<u64>,
    pub detected_by: Option<Mechanism>,
    /// Covered: every run noticed within the deadline. `null` for a fault not covered.
    pub holds: Option<bool>,
}

impl Verification {
    /// Judge the lab's matrix (one strategy) against the deadline.
    pub fn judge(
        deadline: Duration,
        covers: &[Fault],
        lab_deadline: Duration,
        repeat: u32,
        report: &CompareReport,
    ) -> Verification {
        let cells: Vec<VerifyCell> = report
            .results
            .iter()
            .map(|c| {
                let covered = covers.contains(&c.fault);
                let noticed: Vec<u64> = c
                    .runs
                    .iter()
                    .filter(|r| r.latency_ms.is_some() && !r.ended_before_cut)
                    .map(|r| r.silence_ms)
                    .collect();
                let worst = noticed.iter().copied().max();
                let all = noticed.len() == c.runs.len() && !c.runs.is_empty();
                VerifyCell {
                    fault: c.fault,
                    load: c.load,
                    covered,
                    measured: c.runs.len(),
                    noticed: noticed.len(),
                    worst_ms: worst,
                    latency_max_ms: c.latency_max_ms,
                    detected_by: c.detected_by,
                    holds: covered.then(|| all && worst.is_some_and(|w| w <= deadline.ms())),
                }
            })
            .collect();
        let holds = !report.partial
            && covers
                .iter()
                .all(|f| cells.iter().filter(|c| c.fault == *f).count() >= 2)
            && cells.iter().all(|c| c.holds != Some(false));
        Verification {
            deadline_ms: deadline.ms(),
            basis: Basis::LastHeard,
            repeat,
            lab_deadline_ms: lab_deadline.ms(),
            cells,
            holds,
            partial: report.partial,
        }
    }
}

impl RecommendationReport {
    /// The answer to `--detect-within`: the recommended strategy, or why there is none.
    pub fn new(
        within: Duration,
        peer_answers_ping: Option<bool>,
        r: Result<Recommendation, Refusal>,
    ) -> RecommendationReport {
        let base = RecommendationReport {
            detect_within_ms: within.ms(),
            possible: false,
            strategy: None,
            flags: None,
            idle_ms: None,
            busy_ms: None,
            worst_idle_ms: None,
            worst_busy_ms: None,
            peer_answers_ping,
            covers: Vec::new(),
            uncovered: Vec::new(),
            cost: None,
            warnings: Vec::new(),
            notes: Vec::new(),
            refusal: None,
            verification: None,
        };
        match r {
            Ok(r) => RecommendationReport {
                possible: true,
                strategy: Some(r.strategy.spec()),
                flags: Some(r.flags),
                idle_ms: r.idle.expected_ms(),
                busy_ms: r.busy.expected_ms(),
                worst_idle_ms: Some(r.worst_idle.ms()),
                worst_busy_ms: Some(r.worst_busy.ms()),
                covers: r.covers,
                uncovered: r
                    .uncovered
                    .into_iter()
                    .map(|u| UncoveredFault {
                        fault: u.fault,
                        why: u.why,
                    })
                    .collect(),
                cost: Some(CostReport {
                    packets_per_min_out: round1(r.cost.packets_per_min_out),
                    packets_per_min_in: round1(r.cost.packets_per_min_in),
                    bytes_per_min_out: round1(r.cost.bytes_per_min_out),
                    bytes_per_min_in: round1(r.cost.bytes_per_min_in),
                    period_ms: r.cost.period.map(|p| p.ms()),
                }),
                warnings: r.warnings,
                notes: r.notes,
                ..base
            },
            Err(why) => RecommendationReport {
                refusal: Some(why.0),
                ..base
            },
        }
    }
}

/// One decimal: the costs in the JSON, and the coordinates in `compare --svg` short and exact.
pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The result of `tcphb probe`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub schema: u32,
    /// Interrupted during --idle-timeout or --recverr: what was measured before the signal.
    pub partial: bool,
    pub peer: String,
    pub local: String,
    /// The requested strategy (`none` if no strategy flag).
    pub strategy: String,
    pub facts: ProbeFacts,
    /// Read back from the kernel after applying the strategy.
    pub effective: Effective,
    /// Values the kernel clamped or refused (empty: exactly as asked).
    pub effective_differences: Vec<String>,
    pub predictions: Vec<PredictionRow>,
    /// In words: which mechanism notices first, idle and busy, and why.
    pub summary: Vec<String>,
    pub recommendation: Option<RecommendationReport>,
    pub idle_timeout: Option<IdleTimeout>,
    pub early_warnings: Option<EarlyWarnings>,
}

/// The defaults and rules of the OS `probe --os` predicts for.
#[derive(Debug, Clone, Serialize)]
pub struct OsDefaults {
    /// Default keepalive (SO_KEEPALIVE on, nothing else set): idle, interval, probes.
    pub keepalive_idle_ms: u64,
    pub keepalive_interval_ms: u64,
    pub keepalive_count: u32,
    /// Keepalive idle and interval are set in multiples of this (1000 or 1).
    pub keepalive_resolution_ms: u64,
    /// Whether the probe count can be set per socket (`settable`), only on newer versions
    /// (`since_windows_10_1703`, otherwise fixed).
    pub keepalive_count_rule: &'static str,
    /// Retransmissions before a busy connection is given up, and the RTO floor and ceiling.
    pub retransmissions: u32,
    pub rto_min_ms: u64,
    pub rto_max_ms: u64,
    /// The option standing for `--user-timeout`: `TCP_USER_TIMEOUT`, `TCP_RXT_CONNDROPTIME`, or
    /// null (none: Windows' TCP_MAXRT is not one).
    pub user_timeout_option: Option<&'static str>,
}

impl OsDefaults {
    /// The defaults of `rules`' OS.
    pub fn of(rules: &OsRules) -> OsDefaults {
        let d = rules.defaults;
        OsDefaults {
            keepalive_idle_ms: d.keepalive_time_ms,
            keepalive_interval_ms: d.keepalive_intvl_ms,
            keepalive_count: d.keepalive_probes,
            keepalive_resolution_ms: rules.keepalive_resolution.ms(),
            keepalive_count_rule: match rules.keepalive_count {
                KeepaliveCount::Settable { .. } => "settable",
                KeepaliveCount::SinceVersion { .. } => "since_windows_10_1703",
            },
            retransmissions: d.tcp_retries2,
            rto_min_ms: d.rto_min_ms,
            rto_max_ms: d.rto_max_ms,
            user_timeout_option: match rules.user_timeout {
                UserTimeout::Linux => Some("TCP_USER_TIMEOUT"),
                UserTimeout::RxtConnDropTime => Some("TCP_RXT_CONNDROPTIME"),
                UserTimeout::None { .. } => None,
            },
        }
    }
}

/// The result of `tcphb probe --os OS`: predictions for that OS, made offline.
#[derive(Debug, Clone, Serialize)]
pub struct OsReport {
    pub schema: u32,
    /// `linux`, `macos` or `windows`.
    pub os: Os,
    /// The strategy predicted (`none` if no strategy flag).
    pub strategy: String,
    pub defaults: OsDefaults,
    /// The settings that OS would run with (its defaults filling what the strategy leaves).
    pub effective: Effective,
    /// As `probe`'s, counted from the last packet heard; no path measured (RTT 0).
    pub predictions: Vec<PredictionRow>,
    /// Where the settings do not do what they seem to, in words.
    pub pitfalls: Vec<String>,
}

/// The result of `tcphb audit`: another process's connections, judged.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub schema: u32,
    /// The processes asked about, and the port.
    pub pids: Vec<u32>,
    pub port: Option<u16>,
    /// The kernel's timers the predictions use (this network namespace).
    pub kernel_timers: KernelTimers,
    /// One per connection found.
    pub audited: Vec<crate::audit::Audited>,
    /// What could not be read, in one sentence, and what to run instead; `null` when all was read.
    pub unreadable: Option<String>,
    /// `--detect-within`: the deadline, and how many connections would notice a dead peer later
    /// (or never), idle or busy.
    pub detect_within_ms: Option<u64>,
    pub slower_than_deadline: Option<usize>,
}

/// One connection of another process that ended while `audit --watch` followed it (a JSON line).
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub schema: u32,
    /// Wall-clock time the ending was seen (display only), RFC 3339.
    pub at: String,
    /// The process holding it and its descriptor, when known.
    pub pid: Option<u32>,
    pub fd: Option<i32>,
    pub local: String,
    pub peer: String,
    /// The load its prediction is for: `busy` when data was in flight at the last look.
    pub load: Load,
    /// Its state at the last look before the end (the evidence the mechanism is judged from).
    pub last_timer: Option<&'static str>,
    pub last_probes_out: u8,
    pub last_retransmits: u8,
    /// How often the connections were looked at, ms: the ending is dated to within this, unless a
    /// pending timer dated it exactly.
    pub resolution_ms: u64,
    #[serde(flatten)]
    pub detection: Detection,
    #[serde(flatten)]
    pub expected: Expected,
}

/// What `audit --watch` saw over its whole run (the last JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditWatchSummary {
    pub schema: u32,
    pub pids: Vec<u32>,
    pub port: Option<u16>,
    /// Connections followed (those found at the start and those opened since).
    pub followed: u64,
    /// Ended by a death (timeout, reset), closed by the peer, closed by their own process.
    pub dead: u64,
    pub closed_by_peer: u64,
    pub closed_by_owner: u64,
    /// Still open when watching stopped.
    pub open_at_exit: u64,
    pub watched_ms: u64,
    /// Events not written because stdout was not read fast enough.
    pub events_dropped: u64,
    /// What could not be read, as in `audit`; `null` when everything was read.
    pub unreadable: Option<String>,
}
