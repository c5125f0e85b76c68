//! The CSV exporter: a header row and one row per record, nothing else — no sentences, so the output
//! parses as one table. Columns are the JSON keys with raw milliseconds, not the table's words; each
//! table's header stands beside the function that writes its rows.

use super::Exporter;
use super::model::{
    AuditEvent, AuditReport, AuditWatchSummary, CompareReport, ConnectManyReport, ConnectReport,
    ListenEvent, ListenSummary, OsReport, PredictionRow, ProbeReport,
};
use crate::detection::{CloseHow, ClosedBy};
use crate::matrix::{CellResult, MechanismStats};
use crate::settings::Effective;

/// Writes `--format csv`.
pub struct Csv;

impl Exporter for Csv {
    fn connect(&self, r: &ConnectReport) -> String {
        to_csv(&CONNECT_HEADER, [connect_row(r)])
    }

    /// The per-mechanism table only: the counts and the prediction are in the JSON.
    fn connect_many(&self, r: &ConnectManyReport) -> String {
        to_csv(&STATS_HEADER, r.by_mechanism.iter().map(stats_row))
    }

    fn listen_header(&self) -> Option<String> {
        Some(to_csv(&EVENT_HEADER, std::iter::empty()))
    }

    fn listen_event(&self, e: &ListenEvent) -> String {
        to_csv(&[], [event_row(e)])
    }

    /// The per-mechanism table. `listen` does not print it: its stdout is the events' table, so it
    /// writes the human summary on stderr instead.
    fn listen_summary(&self, s: &ListenSummary) -> String {
        to_csv(&STATS_HEADER, s.by_mechanism.iter().map(stats_row))
    }

    /// One row per (strategy, fault, load) cell; `wide` is a table layout and changes nothing here.
    fn compare(&self, r: &CompareReport, _wide: bool) -> String {
        to_csv(&COMPARE_HEADER, r.results.iter().map(compare_row))
    }

    /// The predictions only: the tabular part of the report.
    fn probe(&self, r: &ProbeReport) -> String {
        to_csv(&PROBE_HEADER, r.predictions.iter().map(probe_row))
    }

    /// The predictions, as for `probe`.
    fn os_prediction(&self, r: &OsReport) -> String {
        to_csv(&PROBE_HEADER, r.predictions.iter().map(probe_row))
    }

    /// One row per connection; the flags joined by `; `.
    fn audit(&self, r: &AuditReport) -> String {
        to_csv(&AUDIT_HEADER, r.audited.iter().map(audit_row))
    }

    fn audit_header(&self) -> Option<String> {
        Some(to_csv(&AUDIT_EVENT_HEADER, std::iter::empty()))
    }

    fn audit_event(&self, e: &AuditEvent) -> String {
        to_csv(&[], [audit_event_row(e)])
    }

    /// Not printed: stdout is the events' table, so `audit --watch` writes the human summary on
    /// stderr instead; here for completeness, one row of counts.
    fn audit_watch_summary(&self, s: &AuditWatchSummary) -> String {
        to_csv(
            &[
                "followed",
                "dead",
                "closed_by_peer",
                "closed_by_owner",
                "open_at_exit",
                "watched_ms",
            ],
            [vec![
                s.followed.to_string(),
                s.dead.to_string(),
                s.closed_by_peer.to_string(),
                s.closed_by_owner.to_string(),
                s.open_at_exit.to_string(),
                s.watched_ms.to_string(),
            ]],
        )
    }
}

/// CSV text: the header (none when empty) and the rows.
fn to_csv(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    if !header.is_empty() {
        w.write_record(header).expect("csv to memory");
    }
    for r in rows {
        w.write_record(r).expect("csv to memory");
    }
    String::from_utf8(w.into_inner().expect("csv to memory")).expect("csv is utf-8")
}

/// A cell: the value, or empty for none — the one spelling of a missing value (never, off, not
/// applicable) in every CSV, as `null` is in JSON.
fn cell<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or(String::new(), |v| v.to_string())
}

/// Columns of `connect`: one row.
const CONNECT_HEADER: [&str; 25] = [
    "peer",
    "local",
    "strategy",
    "ping",
    "tls",
    "load",
    "keepalive_idle_ms",
    "keepalive_interval_ms",
    "keepalive_count",
    "user_timeout_ms",
    "heartbeat_interval_ms",
    "heartbeat_misses",
    "outcome",
    "detected_by",
    "errno",
    "silence_ms",
    "elapsed_ms",
    "expected_ms",
    "expected_by",
    "agrees",
    "note",
    "closed_by",
    "how",
    "idled_ms",
    "icmp",
];

/// The kernel settings' columns: keepalive idle, interval and count, user timeout.
fn effective_cells(e: &Effective) -> [String; 4] {
    [
        cell(&e.keepalive_idle_ms),
        cell(&e.keepalive_interval_ms),
        cell(&e.keepalive_count),
        cell(&e.user_timeout_ms),
    ]
}

fn connect_row(r: &ConnectReport) -> Vec<String> {
    let d = &r.detection;
    let e = &r.effective;
    let mut row = vec![
        r.peer.clone(),
        r.local.clone(),
        r.strategy.clone(),
        r.ping.name().into(),
        r.tls.to_string(),
        r.load.to_string(),
    ];
    row.extend(effective_cells(e));
    row.extend([
        cell(&e.heartbeat_interval_ms),
        cell(&e.heartbeat_misses),
        d.outcome.name().into(),
        cell(&d.detected_by),
        cell(&d.errno),
        d.silence_ms.to_string(),
        d.elapsed_ms.to_string(),
        cell(&r.expected.expected_ms),
        cell(&r.expected.expected_by),
        cell(&r.expected.agrees),
        cell(&d.note),
        cell(&d.closed_by.map(ClosedBy::name)),
        cell(&d.how.map(CloseHow::name)),
        d.idled_ms.to_string(),
        cell(&d.icmp.as_ref().map(|i| i.cause())),
    ]);
    row
}

/// Columns of per-mechanism statistics (`connect --connections`, `listen`'s summary): one row per
/// mechanism that ended connections.
const STATS_HEADER: [&str; 6] = [
    "detected_by",
    "count",
    "silence_min_ms",
    "silence_median_ms",
    "silence_p99_ms",
    "silence_max_ms",
];

fn stats_row(m: &MechanismStats) -> Vec<String> {
    vec![
        m.detected_by.clone(),
        m.count.to_string(),
        m.silence_min_ms.to_string(),
        m.silence_median_ms.to_string(),
        m.silence_p99_ms.to_string(),
        m.silence_max_ms.to_string(),
    ]
}

/// Columns of `listen`'s events: the header comes first, then one row per event.
const EVENT_HEADER: [&str; 12] = [
    "at",
    "peer",
    "outcome",
    "detected_by",
    "errno",
    "silence_ms",
    "elapsed_ms",
    "expected_ms",
    "note",
    "closed_by",
    "how",
    "idled_ms",
];

/// Columns of `audit --watch`: one row per connection that ended.
const AUDIT_EVENT_HEADER: [&str; 15] = [
    "at",
    "pid",
    "fd",
    "local",
    "peer",
    "load",
    "outcome",
    "detected_by",
    "errno",
    "silence_ms",
    "expected_ms",
    "note",
    "closed_by",
    "idled_ms",
    "resolution_ms",
];

fn audit_event_row(e: &AuditEvent) -> Vec<String> {
    let d = &e.detection;
    vec![
        e.at.clone(),
        cell(&e.pid),
        cell(&e.fd),
        e.local.clone(),
        e.peer.clone(),
        e.load.name().into(),
        d.outcome.name().into(),
        cell(&d.detected_by),
        cell(&d.errno),
        d.silence_ms.to_string(),
        cell(&e.expected.expected_ms),
        cell(&d.note),
        cell(&d.closed_by.map(ClosedBy::name)),
        d.idled_ms.to_string(),
        e.resolution_ms.to_string(),
    ]
}

fn event_row(e: &ListenEvent) -> Vec<String> {
    let d = &e.detection;
    vec![
        e.at.clone(),
        e.peer.clone(),
        d.outcome.name().into(),
        cell(&d.detected_by),
        cell(&d.errno),
        d.silence_ms.to_string(),
        d.elapsed_ms.to_string(),
        cell(&e.expected.expected_ms),
        cell(&d.note),
        cell(&d.closed_by.map(ClosedBy::name)),
        cell(&d.how.map(CloseHow::name)),
        d.idled_ms.to_string(),
    ]
}

/// Columns of `compare`: one row per (strategy, fault, load).
const COMPARE_HEADER: [&str; 20] = [
    "strategy",
    "spec",
    "fault",
    "load",
    "detected_by",
    "errno",
    "latency_ms",
    "latency_min_ms",
    "latency_max_ms",
    "silence_ms",
    "noticed",
    "runs",
    "expected_ms",
    "expected_by",
    "agrees",
    "disagreement",
    // compare --server: the server noticing its dead client (empty without it, or when it did not).
    "server_detected_by",
    "server_latency_ms",
    "server_silence_ms",
    "server_expected_ms",
];

fn compare_row(r: &CellResult) -> Vec<String> {
    let mut row = vec![
        r.strategy.clone(),
        r.spec.clone(),
        r.fault.to_string(),
        r.load.to_string(),
        cell(&r.detected_by),
        cell(&r.errno),
        cell(&r.latency_ms),
        cell(&r.latency_min_ms),
        cell(&r.latency_max_ms),
        cell(&r.silence_ms),
        r.noticed.to_string(),
        r.runs.len().to_string(),
        cell(&r.expected_ms),
        cell(&r.expected_by),
        r.agrees.to_string(),
        cell(&r.disagreement),
    ];
    let server = r.server.as_ref();
    row.extend([
        cell(&server.and_then(|s| s.detected_by)),
        cell(&server.map(|s| s.latency_ms)),
        cell(&server.map(|s| s.silence_ms)),
        cell(&server.and_then(|s| s.expected_ms)),
    ]);
    row
}

/// Columns of `probe`: one row per prediction.
const PROBE_HEADER: [&str; 6] = [
    "mechanism",
    "settings",
    "idle_ms",
    "idle_by",
    "busy_ms",
    "busy_by",
];

fn probe_row(p: &PredictionRow) -> Vec<String> {
    vec![
        p.mechanism.to_string(),
        p.settings.clone(),
        cell(&p.idle_ms),
        cell(&p.idle_by),
        cell(&p.busy_ms),
        cell(&p.busy_by),
    ]
}

/// Columns of `audit`: one row per connection.
const AUDIT_HEADER: [&str; 20] = [
    "pid",
    "fd",
    "local",
    "peer",
    "state",
    "keepalive_idle_ms",
    "keepalive_interval_ms",
    "keepalive_count",
    "user_timeout_ms",
    "timer",
    "timer_due_ms",
    "probes_out",
    "retransmits",
    "send_queue_bytes",
    "last_heard_ms",
    "idle_ms",
    "idle_by",
    "busy_ms",
    "busy_by",
    "alerts",
];

fn audit_row(a: &crate::audit::Audited) -> Vec<String> {
    let mut row = vec![
        cell(&a.pid),
        cell(&a.fd),
        a.local.clone(),
        a.peer.clone(),
        a.state.to_string(),
    ];
    // Unread settings: every setting's cell empty, as for a setting that is off.
    row.extend(effective_cells(&a.effective.unwrap_or_default()));
    row.extend([
        cell(&a.timer),
        cell(&a.timer_due_ms),
        a.probes_out.to_string(),
        a.retransmits.to_string(),
        a.send_queue_bytes.to_string(),
        cell(&a.last_heard_ms),
        cell(&a.idle_ms),
        cell(&a.idle_by),
        cell(&a.busy_ms),
        cell(&a.busy_by),
        a.flags.join("; "),
    ]);
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{Basis, Expected};
    use crate::scenario::Load;

    /// `connect --connections N --format csv` once printed the counts as a sentence before the header
    /// and the agreement with the prediction after the rows.
    #[test]
    fn many_connections_are_the_header_and_rows_only() {
        let r = ConnectManyReport {
            ping: crate::strategy::Protocol::Line,
            tls: false,
            schema: super::super::SCHEMA,
            partial: false,
            peer: "127.0.0.1:7878".into(),
            strategy: "hb=1s,3".into(),
            load: Load::Idle,
            effective: Effective::default(),
            connections: 3,
            alive: 1,
            dead: 2,
            closed: 0,
            closed_by_tcphb: 0,
            by_mechanism: vec![MechanismStats {
                detected_by: "heartbeat".into(),
                count: 2,
                silence_min_ms: 3000,
                silence_median_ms: 3100,
                silence_p99_ms: 3200,
                silence_max_ms: 3200,
            }],
            expected: Expected {
                expected_ms: Some(3000),
                expected_min_ms: Some(3000),
                expected_max_ms: Some(3030),
                expected_by: Some(crate::detection::Mechanism::Heartbeat),
                expected_basis: Basis::LastHeard,
                expected_reason: "heartbeat: 3 × 1s without an answer".into(),
                agrees: Some(false),
                disagreement: Some("1 of 2 connections differ".into()),
            },
        };
        let header =
            "detected_by,count,silence_min_ms,silence_median_ms,silence_p99_ms,silence_max_ms\n";
        assert_eq!(
            Csv.connect_many(&r),
            format!("{header}heartbeat,2,3000,3100,3200,3200\n")
        );
        // Nothing died: still one table, with no rows.
        let none = ConnectManyReport {
            ping: crate::strategy::Protocol::Line,
            tls: false,
            by_mechanism: Vec::new(),
            ..r
        };
        assert_eq!(Csv.connect_many(&none), header);
    }
}
