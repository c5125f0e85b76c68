//! Reports: turn detections and predictions into a table (comfy-table), JSON, CSV or Markdown.
//!
//! One result model per command, one exporter per format, all fed the same model. Every number is
//! labelled measured or expected. JSON carries `schema` and snake_case keys; durations are `_ms` numbers.

use comfy_table::presets::{ASCII_MARKDOWN, UTF8_FULL_CONDENSED};
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::detection::{CloseHow, ClosedBy, Detection, Mechanism, Outcome};
use crate::matrix::MechanismStats;
use crate::predict::Expected;
use crate::scenario::Load;
use crate::settings::Effective;
use crate::units::human_ms;

pub mod probe;

/// Version of the JSON output; bumped when a key changes meaning or disappears.
pub const SCHEMA: u32 = 2;

/// Output formats shared by all commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Human table (default).
    #[default]
    Table,
    /// One JSON object (JSON lines for `listen` events).
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// A Markdown table, for runbooks and tickets.
    Markdown,
}

/// The result of `tcphb connect`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub schema: u32,
    pub peer: String,
    pub local: String,
    pub strategy: String,
    pub load: Load,
    pub effective: Effective,
    #[serde(flatten)]
    pub detection: Detection,
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

/// The result of `tcphb connect --connections N`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectManyReport {
    pub schema: u32,
    pub peer: String,
    pub strategy: String,
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

/// Render the many-connections connect report.
pub fn render_connect_many(r: &ConnectManyReport, format: Format) -> String {
    match format {
        Format::Json => to_json(r) + "\n",
        _ => {
            let head = format!(
                "{} connections to {} ({}, {} load): {} alive, {} dead, {} closed by peer, {} closed by tcphb; a silent death expected after {} by {}\n",
                r.connections,
                r.peer,
                r.strategy,
                r.load,
                r.alive,
                r.dead,
                r.closed,
                r.closed_by_tcphb,
                human_ms(r.expected.expected_ms),
                opt(&r.expected.expected_by)
            );
            head + &stats_table(&r.by_mechanism, format) + &agreement_text(&r.expected)
        }
    }
}

fn stats_table(stats: &[MechanismStats], format: Format) -> String {
    if stats.is_empty() {
        return String::new();
    }
    if format == Format::Csv {
        let rows: Vec<Vec<String>> = stats
            .iter()
            .map(|m| {
                vec![
                    m.detected_by.clone(),
                    m.count.to_string(),
                    m.silence_min_ms.to_string(),
                    m.silence_median_ms.to_string(),
                    m.silence_p99_ms.to_string(),
                    m.silence_max_ms.to_string(),
                ]
            })
            .collect();
        return to_csv(
            &[
                "detected_by",
                "count",
                "silence_min_ms",
                "silence_median_ms",
                "silence_p99_ms",
                "silence_max_ms",
            ],
            &rows,
        );
    }
    let mut t = new_table(format);
    t.set_header(vec![
        "detected by",
        "connections",
        "silence min",
        "median",
        "p99",
        "max",
    ]);
    for m in stats {
        t.add_row(vec![
            m.detected_by.clone(),
            m.count.to_string(),
            human_ms(Some(m.silence_min_ms)),
            human_ms(Some(m.silence_median_ms)),
            human_ms(Some(m.silence_p99_ms)),
            human_ms(Some(m.silence_max_ms)),
        ]);
    }
    format!("{t}\n")
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

/// A CSV cell: the value, or empty for none.
fn cell<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or(String::new(), |v| v.to_string())
}

fn effective_text(e: &Effective) -> String {
    let mut parts = Vec::new();
    match e.keepalive() {
        Some((i, n, c)) => parts.push(format!(
            "keepalive {},{},{c}",
            crate::units::format_duration(i),
            crate::units::format_duration(n)
        )),
        None => parts.push("keepalive off".into()),
    }
    if let Some(u) = e.user_timeout() {
        parts.push(format!("user timeout {}", crate::units::format_duration(u)));
    }
    if let Some((i, m)) = e.heartbeat() {
        parts.push(format!(
            "heartbeat {},{m}",
            crate::units::format_duration(i)
        ));
    }
    parts.join(", ")
}

fn new_table(format: Format) -> Table {
    let mut t = Table::new();
    match format {
        Format::Markdown => t.load_style(ASCII_MARKDOWN),
        _ => t.load_style(UTF8_FULL_CONDENSED),
    };
    t.set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("report types serialize")
}

/// CSV text: the header (none when empty) and the rows.
fn to_csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    if !header.is_empty() {
        w.write_record(header).expect("csv to memory");
    }
    for r in rows {
        w.write_record(r).expect("csv to memory");
    }
    String::from_utf8(w.into_inner().expect("csv to memory")).expect("csv is utf-8")
}

/// The connect report's rows (key, measured/expected value) for the table and markdown.
fn connect_rows(r: &ConnectReport) -> Vec<(&'static str, String)> {
    let d = &r.detection;
    let mut rows = vec![
        ("peer", r.peer.clone()),
        ("strategy", r.strategy.clone()),
        ("effective (read back)", effective_text(&r.effective)),
        ("load", r.load.to_string()),
        ("outcome", d.outcome.name().into()),
    ];
    let expected = format!(
        "{} by {}",
        human_ms(r.expected.expected_ms),
        opt(&r.expected.expected_by)
    );
    if d.outcome == Outcome::Closed {
        rows.extend([
            ("closed by", closer_text(d)),
            (
                "idle before the close (measured)",
                human_ms(Some(d.idle_ms)),
            ),
            (
                "connection lifetime (measured)",
                human_ms(Some(d.elapsed_ms)),
            ),
            // Beside a close, the prediction is context, not a yardstick.
            (
                "a silent death would be noticed after (predicted)",
                expected,
            ),
        ]);
    } else {
        rows.extend([
            ("detected by", opt(&d.detected_by)),
            ("errno", opt(&d.errno)),
            (
                "silence before detection (measured)",
                human_ms(Some(d.silence_ms)),
            ),
            (
                "connection lifetime (measured)",
                human_ms(Some(d.elapsed_ms)),
            ),
            ("expected (predicted)", expected),
        ]);
        if let Some(i) = &d.icmp {
            rows.push((
                "cause, from the ICMP errors (measured)",
                format!(
                    "{}, the first {} after the last packet heard",
                    i.cause(),
                    human_ms(Some(i.first_ms))
                ),
            ));
        }
    }
    rows.push(("why", r.expected.expected_reason.clone()));
    if let Some(i) = &d.tcp_info {
        rows.push((
            "kernel counters",
            format!(
                "rtt {} µs, rto {} ms, probes {}, backoff {}, retransmits {}",
                i.rtt_us,
                i.rto_us / 1000,
                i.probes,
                i.backoff,
                i.total_retrans
            ),
        ));
    }
    if let Some(n) = &d.note {
        rows.push(("note", n.clone()));
    }
    rows
}

/// Render the connect report.
pub fn render_connect(r: &ConnectReport, format: Format) -> String {
    match format {
        Format::Json => to_json(r) + "\n",
        Format::Csv => {
            // Machine-readable: the JSON keys and raw milliseconds, not the table's words.
            let d = &r.detection;
            let e = &r.effective;
            to_csv(
                &[
                    "peer",
                    "local",
                    "strategy",
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
                    "idle_ms",
                    "icmp",
                ],
                &[vec![
                    r.peer.clone(),
                    r.local.clone(),
                    r.strategy.clone(),
                    r.load.to_string(),
                    cell(&e.keepalive_idle_ms),
                    cell(&e.keepalive_interval_ms),
                    cell(&e.keepalive_count),
                    cell(&e.user_timeout_ms),
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
                    d.idle_ms.to_string(),
                    cell(&d.icmp.as_ref().map(|i| i.cause())),
                ]],
            )
        }
        Format::Table | Format::Markdown => {
            let mut t = new_table(format);
            t.set_header(vec!["", "value"]);
            for (k, v) in connect_rows(r) {
                t.add_row(vec![k.to_string(), v]);
            }
            let agreement = agreement_text(&r.expected);
            if !agreement.is_empty() {
                return format!("{t}\n{agreement}");
            }
            match ending_sentence(&r.detection, "server") {
                Some(s) => format!("{t}\n{s}\n"),
                None => format!("{t}\n"),
            }
        }
    }
}

/// The closing sentence on agreement with the prediction (nothing when the ending is not judged).
fn agreement_text(e: &Expected) -> String {
    match (&e.agrees, &e.disagreement) {
        (Some(false), Some(why)) => format!("Differs from the prediction: {why}.\n"),
        (Some(true), _) => "Matches the prediction.\n".into(),
        _ => String::new(),
    }
}

/// "peer (FIN)", "tcphb (protocol)": who closed a `closed` connection, and how.
fn closer_text(d: &Detection) -> String {
    format!(
        "{} ({})",
        d.closed_by.map_or("?", ClosedBy::name),
        match d.how {
            Some(CloseHow::Fin) => "FIN",
            Some(h) => h.name(),
            None => "?",
        }
    )
}

/// A sentence for an ending the prediction does not judge: a close (by the peer — `who`, "server" or
/// "client" — or by tcphb) or a reset. `None` for the endings that are judged or still alive.
pub fn ending_sentence(d: &Detection, who: &str) -> Option<String> {
    let not_judged = "a FIN with nothing cut: not a death, so not judged against the prediction";
    match (d.outcome, d.closed_by, d.detected_by) {
        (Outcome::Closed, Some(ClosedBy::Peer), _) if d.idle_ms >= 1000 => Some(format!(
            "The {who} closed this idle connection after {}: its own idle timeout ({not_judged}).",
            human_ms(Some(d.idle_ms))
        )),
        (Outcome::Closed, Some(ClosedBy::Peer), _) => Some(format!(
            "The {who} closed this connection itself, {} after the last byte exchanged ({not_judged}).",
            human_ms(Some(d.idle_ms))
        )),
        (Outcome::Closed, _, _) => Some(format!(
            "tcphb closed this connection: {}.",
            d.note
                .as_deref()
                .unwrap_or("the peer broke the heartbeat protocol")
        )),
        (Outcome::Dead, _, Some(Mechanism::Reset)) => Some(format!(
            "The {who} answered RST ({}): it no longer knows this connection (a rebooted host, or its application aborted it). Counted as a dead peer; a reset is not the silent death the prediction is for.",
            d.errno.as_deref().unwrap_or("reset")
        )),
        _ => None,
    }
}

/// Columns of `listen --format csv`: the header comes first, then one row per event.
pub const EVENT_CSV_HEADER: [&str; 12] = [
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
    "idle_ms",
];

/// The header line of `listen`'s event stream, if its format has one.
pub fn event_header(format: Format) -> Option<String> {
    (format == Format::Csv).then(|| to_csv(&EVENT_CSV_HEADER, &[]))
}

/// Render one listen event as a line (JSON lines, CSV row, or a sentence for humans).
pub fn render_event(e: &ListenEvent, format: Format) -> String {
    let d = &e.detection;
    match format {
        Format::Json => to_json(e) + "\n",
        Format::Csv => {
            let row = vec![
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
                d.idle_ms.to_string(),
            ];
            to_csv(&[], &[row])
        }
        Format::Markdown | Format::Table if d.outcome == Outcome::Closed => {
            let what = match d.closed_by {
                Some(ClosedBy::Peer) => format!(
                    "closed by the client after {} idle (FIN){}",
                    human_ms(Some(d.idle_ms)),
                    d.note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ),
                _ => format!(
                    "closed by tcphb: {}",
                    d.note.as_deref().unwrap_or("protocol")
                ),
            };
            format!("{} {} {what}\n", e.at, e.peer)
        }
        Format::Markdown | Format::Table => {
            let errno = d
                .errno
                .as_deref()
                .map(|e| format!(" {e}"))
                .unwrap_or_default();
            let note = d
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!(
                "{} {} {}: {}{errno} after {} of silence, expected {}{note}\n",
                e.at,
                e.peer,
                d.outcome.name(),
                opt(&d.detected_by),
                human_ms(Some(d.silence_ms)),
                human_ms(e.expected.expected_ms),
            )
        }
    }
}

/// Render the listen summary printed when `listen` stops. With CSV the events own stdout, so the
/// caller prints this human summary on stderr instead.
pub fn render_listen_summary(s: &ListenSummary, format: Format) -> String {
    match format {
        Format::Json => to_json(s) + "\n",
        Format::Csv => render_listen_summary(s, Format::Table),
        _ => {
            let head = format!(
                "{} ({}): {} accepted, {} refused over --max-conns, {} dead, {} closed by peer, {} closed by tcphb, {} still open\n",
                s.local,
                s.strategy,
                s.accepted,
                s.refused,
                s.dead,
                s.closed,
                s.closed_by_tcphb,
                s.open_at_exit
            );
            head + &stats_table(&s.by_mechanism, format)
        }
    }
}

/// Facts about the lab a comparison ran in.
#[derive(Debug, Clone, Serialize)]
pub struct LabFacts {
    /// Kernel release and the TCP sysctls in force in the client namespace: the same keys and
    /// number types as `probe`'s facts.
    pub facts: crate::settings::HostFacts,
    pub deadline_ms: u64,
    pub warmup_ms: u64,
    pub reboot_heal_ms: u64,
    pub nat_idle_ms: u64,
    pub repeat: u32,
    /// Wall time of the whole run, measured.
    pub wall_ms: u64,
}

/// The result of `tcphb compare`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub schema: u32,
    pub lab: LabFacts,
    pub results: Vec<crate::matrix::CellResult>,
    pub verdicts: Vec<crate::matrix::Verdict>,
}

fn short(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Keepalive => "ka",
        Mechanism::Retransmission => "rtx",
        Mechanism::UserTimeout => "uto",
        Mechanism::Heartbeat => "hb",
        Mechanism::Reset => "rst",
        Mechanism::Eof => "eof",
        Mechanism::Unreachable => "icmp",
    }
}

/// A compare cell as text: time (and spread), then mechanism and errno; `*` marks a disagreement.
fn cell_text(r: &crate::matrix::CellResult, deadline_ms: u64, one_line: bool) -> String {
    let mark = if r.agrees { "" } else { " *" };
    let Some(lat) = r.latency_ms else {
        // Narrow tables say the deadline once, under the table.
        return if one_line {
            format!("never (> {}){mark}", human_ms(Some(deadline_ms)))
        } else {
            format!("never{mark}")
        };
    };
    let mut time = human_ms(Some(lat));
    if r.runs.len() > 1 {
        if let (Some(lo), Some(hi)) = (r.latency_min_ms, r.latency_max_ms)
            && human_ms(Some(lo)) != human_ms(Some(hi))
        {
            time += &format!(" [{}–{}]", human_ms(Some(lo)), human_ms(Some(hi)));
        }
        if r.noticed < r.runs.len() {
            time += &format!(" ({}/{})", r.noticed, r.runs.len());
        }
    }
    let how = format!(
        "{} {}",
        r.detected_by.map_or("?", short),
        r.errno.as_deref().unwrap_or("-")
    );
    if one_line {
        format!("{time} {how}{mark}")
    } else {
        format!("{time}{mark}\n{how}")
    }
}

fn compare_table(
    rep: &CompareReport,
    loads: &[Load],
    format: Format,
    one_line: bool,
    width: Option<u16>,
) -> Table {
    let mut faults: Vec<crate::scenario::Fault> = Vec::new();
    let mut strategies: Vec<&str> = Vec::new();
    for r in &rep.results {
        if !faults.contains(&r.fault) {
            faults.push(r.fault);
        }
        if !strategies.contains(&r.strategy.as_str()) {
            strategies.push(&r.strategy);
        }
    }
    let mut t = new_table(format);
    match width {
        Some(w) => {
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    let mut header = vec!["strategy".to_string()];
    for f in &faults {
        for l in loads {
            header.push(if loads.len() == 1 {
                f.to_string()
            } else {
                format!("{f} {l}")
            });
        }
    }
    t.set_header(header);
    for s in strategies {
        let mut row = vec![s.to_string()];
        for f in &faults {
            for l in loads {
                let cell = rep
                    .results
                    .iter()
                    .find(|r| r.strategy == s && r.fault == *f && r.load == *l);
                row.push(cell.map_or("-".into(), |r| cell_text(r, rep.lab.deadline_ms, one_line)));
            }
        }
        t.add_row(row);
    }
    t
}

/// One line per (fault, load) whose connections received ICMP errors: what, from whom, how many,
/// and which strategies saw them — the cause, whatever errno the kernel ended with.
fn icmp_causes(rep: &CompareReport) -> Vec<String> {
    let mut lines = Vec::new();
    let mut keys: Vec<(crate::scenario::Fault, Load)> = Vec::new();
    for r in rep.results.iter().filter(|r| r.icmp.is_some()) {
        if !keys.contains(&(r.fault, r.load)) {
            keys.push((r.fault, r.load));
        }
    }
    for (fault, load) in keys {
        let cells: Vec<_> = rep
            .results
            .iter()
            .filter(|r| r.fault == fault && r.load == load && r.icmp.is_some())
            .collect();
        let first = cells[0].icmp.as_ref().expect("filtered");
        let who: Vec<String> = cells
            .iter()
            .map(|r| {
                format!(
                    "{} {}×",
                    r.strategy,
                    r.icmp.as_ref().map_or(0, |i| i.messages)
                )
            })
            .collect();
        lines.push(format!(
            "{fault} {load}: {} from {} ({})",
            first.what,
            first.reporter,
            who.join(", ")
        ));
    }
    lines
}

/// Render the compare report. `wide`: one table with fault × load columns; otherwise one table per
/// load, fitted to 80 columns.
pub fn render_compare(rep: &CompareReport, format: Format, wide: bool) -> String {
    let mut loads: Vec<Load> = Vec::new();
    for r in &rep.results {
        if !loads.contains(&r.load) {
            loads.push(r.load);
        }
    }
    loads.sort();
    match format {
        Format::Json => to_json(rep) + "\n",
        Format::Csv => {
            let header = [
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
            ];
            let rows: Vec<Vec<String>> = rep
                .results
                .iter()
                .map(|r| {
                    vec![
                        r.strategy.clone(),
                        r.spec.clone(),
                        r.fault.to_string(),
                        r.load.to_string(),
                        opt(&r.detected_by),
                        cell(&r.errno),
                        cell(&r.latency_ms),
                        cell(&r.latency_min_ms),
                        cell(&r.latency_max_ms),
                        cell(&r.silence_ms),
                        r.noticed.to_string(),
                        r.runs.len().to_string(),
                        cell(&r.expected_ms),
                        opt(&r.expected_by),
                        r.agrees.to_string(),
                        cell(&r.disagreement),
                    ]
                })
                .collect();
            to_csv(&header, &rows)
        }
        Format::Table | Format::Markdown => {
            let mut out = String::new();
            if wide || format == Format::Markdown {
                out += &format!("{}\n", compare_table(rep, &loads, format, true, None));
            } else {
                for l in &loads {
                    out += &format!(
                        "{l}:\n{}\n",
                        compare_table(rep, &[*l], format, false, Some(80))
                    );
                }
            }
            out += &format!(
                "\nMeasured time from the cut to the detection{}; never = nothing noticed within the deadline (> {}).\n\
                 ka keepalive, rtx retransmission, uto user timeout, hb heartbeat, rst reset, icmp unreachable.\n",
                if rep.lab.repeat > 1 {
                    format!(", median [min–max] of {} runs", rep.lab.repeat)
                } else {
                    String::new()
                },
                human_ms(Some(rep.lab.deadline_ms)),
            );
            let causes = icmp_causes(rep);
            if !causes.is_empty() {
                out += "\nCause, from the ICMP errors the client received after the cut:\n";
                for c in causes {
                    out += &format!("  {c}\n");
                }
            }
            let differing: Vec<_> = rep.results.iter().filter(|r| !r.agrees).collect();
            if !differing.is_empty() {
                out += "\n* differs from the prediction:\n";
                for r in differing {
                    out += &format!(
                        "  {} / {} / {}: {}\n",
                        r.strategy,
                        r.fault,
                        r.load,
                        r.disagreement.as_deref().unwrap_or("")
                    );
                }
            }
            out += "\nVerdict:\n";
            for v in &rep.verdicts {
                out += &format!("  {}\n", v.text);
            }
            let kernel = rep.lab.facts.kernel.as_deref().unwrap_or("?");
            let retries = opt(&rep.lab.facts.tcp_retries2);
            out += &format!(
                "\nLab: kernel {kernel}, tcp_retries2 {retries}, warm-up {}, reboot heals after {}, nat-expiry after {}; ran in {}.\n",
                human_ms(Some(rep.lab.warmup_ms)),
                human_ms(Some(rep.lab.reboot_heal_ms)),
                human_ms(Some(rep.lab.nat_idle_ms)),
                human_ms(Some(rep.lab.wall_ms)),
            );
            out
        }
    }
}
