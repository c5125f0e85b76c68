//! The human exporter: comfy-table tables and the sentences that explain them. Each report is laid
//! out once, as [`Block`]s; this exporter draws them for a terminal, and the Markdown exporter draws
//! the same blocks as Markdown, so the two say the same things.

use std::collections::HashMap;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table as Grid, TableStyle};

use super::Exporter;
use super::model::{
    AuditEvent, AuditReport, AuditWatchSummary, CompareReport, ConnectManyReport, ConnectReport,
    ListenEvent, ListenSummary, OsReport, PredictionRow, ProbeReport,
};
use super::words::{
    SERVER_ROW, agreement_text, answer_sentences, cell_line, cell_pieces, closer_text,
    effective_pieces, effective_text, ending_sentence, expected_text, icmp_causes, idle_text,
    legend, opt, predicted, secs2_ms, server_cell, short,
};
use crate::detection::{ClosedBy, Detection, Outcome};
use crate::idle::Verdict;
use crate::matrix::MechanismStats;
use crate::scenario::{Fault, Load};
use crate::units::human_ms;

/// Writes `--format table`, the default.
pub struct Table;

/// Box-drawing borders, condensed rows.
const PRESET: TableStyle = UTF8_FULL_CONDENSED;

impl Exporter for Table {
    fn connect(&self, r: &ConnectReport) -> String {
        draw(connect(r), Some(output_width()))
    }
    fn connect_many(&self, r: &ConnectManyReport) -> String {
        draw(connect_many(r), Some(output_width()))
    }
    fn listen_header(&self) -> Option<String> {
        None
    }
    fn listen_event(&self, e: &ListenEvent) -> String {
        listen_event(e)
    }
    fn listen_summary(&self, s: &ListenSummary) -> String {
        draw(listen_summary(s), Some(output_width()))
    }
    fn compare(&self, r: &CompareReport, wide: bool) -> String {
        // --wide asks for one wide table: it is not fitted.
        let width = (!wide).then(output_width);
        draw(compare(r, width), width)
    }
    fn probe(&self, r: &ProbeReport) -> String {
        draw(probe(r), Some(output_width()))
    }
    fn os_prediction(&self, r: &OsReport) -> String {
        draw(os_prediction(r), Some(output_width()))
    }
    fn audit(&self, r: &AuditReport) -> String {
        draw(audit(r), Some(output_width()))
    }
    fn audit_event(&self, e: &AuditEvent) -> String {
        audit_event(e)
    }
    fn audit_watch_summary(&self, s: &AuditWatchSummary) -> String {
        draw(audit_watch_summary(s), Some(output_width()))
    }
}

/// A part of a human report. A report is laid out once, as blocks, and each human format draws them
/// its own way: a terminal puts them one under the other, Markdown keeps each apart from the next so
/// that no sentence is read as a row of a table, nor two sentences as one paragraph.
pub(super) enum Block {
    /// A table with a header row.
    Table(Grid),
    /// One sentence (or a few) on a line of its own: a paragraph.
    Line(String),
    /// A line that introduces the items under it: indented lines on a terminal, a list in Markdown.
    List { title: String, items: Vec<String> },
    /// An empty line on a terminal, between parts of a report (Markdown separates every block).
    Gap,
}

/// The blocks as a terminal shows them, fitted to `width` columns (`None`: as wide as they come):
/// the tables laid out to that width, the prose wrapped to it.
fn draw(blocks: Vec<Block>, width: Option<usize>) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Table(mut t) => {
                if let Some(w) = width {
                    // comfy-table only knows a terminal's width: in a pipe it would never wrap.
                    t.set_width(u16::try_from(w).unwrap_or(u16::MAX));
                }
                out += &format!("{t}\n");
            }
            Block::Line(s) => prose(&mut out, &s, width),
            Block::List { title, items } => {
                prose(&mut out, &title, width);
                for i in items {
                    prose(&mut out, &format!("  {i}"), width);
                }
            }
            Block::Gap => out += "\n",
        }
    }
    out
}

/// Text (a line, or several) as lines of at most `width` columns (`None`: as it is): a long line
/// continues indented two more than it began.
fn prose(out: &mut String, text: &str, width: Option<usize>) {
    let Some(width) = width else {
        *out += text;
        out.push('\n');
        return;
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if cols(line) <= width {
            *out += line;
        } else {
            let indent = &line[..line.len() - line.trim_start().len()];
            let more = format!("{indent}  ");
            // Never at a hyphen: `--user-timeout` is one flag to paste.
            let opts = textwrap::Options::new(width)
                .initial_indent(indent)
                .subsequent_indent(&more)
                .break_words(false)
                .word_splitter(textwrap::WordSplitter::NoHyphenation);
            *out += &textwrap::fill(line.trim_start(), opts);
        }
        out.push('\n');
    }
}

/// Lines as blocks: a line followed by indented ones is a list of them, any other line stands alone.
fn lines_as_blocks(lines: &[String]) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for l in lines {
        match blocks.last_mut() {
            Some(Block::List { items, .. }) if l.starts_with(char::is_whitespace) => {
                items.push(l.trim_start().to_string())
            }
            _ => blocks.push(Block::List {
                title: l.clone(),
                items: Vec::new(),
            }),
        }
    }
    blocks
        .into_iter()
        .map(|b| match b {
            Block::List { title, items } if items.is_empty() => Block::Line(title),
            b => b,
        })
        .collect()
}

/// Text that may end in a newline as one line-block (nothing when empty).
fn line(s: impl AsRef<str>) -> Option<Block> {
    let s = s.as_ref().trim_end();
    (!s.is_empty()).then(|| Block::Line(s.to_string()))
}

/// An empty table with box-drawing borders, fitted to the output width when drawn.
fn new_table() -> Grid {
    let mut t = Grid::new();
    t.load_style(PRESET);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// The connect report's rows (key, measured/expected value).
fn connect_rows(r: &ConnectReport) -> Vec<(&'static str, String)> {
    let d = &r.detection;
    let mut rows = vec![
        ("peer", r.peer.clone()),
        ("strategy", r.strategy.clone()),
        ("effective (read back)", effective_text(&r.effective)),
        ("load", r.load.to_string()),
        ("outcome", d.outcome.name().into()),
    ];
    let closed = d.outcome == Outcome::Closed;
    if closed {
        rows.extend([
            ("closed by", closer_text(d)),
            (
                "idle before the close (measured)",
                human_ms(Some(d.idled_ms)),
            ),
        ]);
    } else if d.outcome == Outcome::Dead {
        rows.extend([
            ("detected by", opt(&d.detected_by)),
            ("errno", opt(&d.errno)),
            (
                "silence before detection (measured)",
                // Never longer than the connection lived (TCP_INFO counts from the handshake).
                human_ms(Some(d.silence_ms.min(d.elapsed_ms))),
            ),
        ]);
    }
    rows.extend([
        (
            "connection lifetime (measured)",
            human_ms(Some(d.elapsed_ms)),
        ),
        // Beside a close, the prediction is context, not a yardstick.
        (
            "a silent death would be noticed after (predicted)",
            expected_text(r.expected.expected_ms, r.expected.expected_by),
        ),
    ]);
    if let Some(i) = d.icmp.as_ref().filter(|_| !closed) {
        rows.push((
            "cause, from the ICMP errors (measured)",
            format!(
                "{}, the first {} after the last packet heard",
                i.cause(),
                human_ms(Some(i.first_ms))
            ),
        ));
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

/// The connect report: a key/value table, then the agreement with the prediction, or what the
/// ending was when it is not judged.
pub(super) fn connect(r: &ConnectReport) -> Vec<Block> {
    let mut t = new_table();
    t.set_header(vec!["", "value"]);
    for (k, v) in connect_rows(r) {
        t.add_row(vec![k.to_string(), v]);
    }
    let agreement = agreement_text(&r.expected);
    let after = if agreement.is_empty() {
        ending_sentence(&r.detection, "server").unwrap_or_default()
    } else {
        agreement
    };
    [Some(Block::Table(t)), line(after)]
        .into_iter()
        .flatten()
        .collect()
}

/// The many-connections connect report: the counts in a sentence, the per-mechanism table, and the
/// agreement with the prediction.
pub(super) fn connect_many(r: &ConnectManyReport) -> Vec<Block> {
    let head = format!(
        "{} connections to {} ({}, {} load): {} alive, {} dead, {} closed by peer, {} closed by tcphb; a silent death would be noticed after {}",
        r.connections,
        r.peer,
        r.strategy,
        r.load,
        r.alive,
        r.dead,
        r.closed,
        r.closed_by_tcphb,
        expected_text(r.expected.expected_ms, r.expected.expected_by),
    );
    [
        r.partial.then(|| {
            Block::Line("Interrupted: the connections as they stood at the signal.".into())
        }),
        Some(Block::Line(head)),
        stats_table(&r.by_mechanism),
        line(agreement_text(&r.expected)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Per-mechanism statistics as a table (nothing when nothing died).
fn stats_table(stats: &[MechanismStats]) -> Option<Block> {
    if stats.is_empty() {
        return None;
    }
    let mut t = new_table();
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
    Some(Block::Table(t))
}

/// One listen event as a sentence on one line.
pub(super) fn listen_event(e: &ListenEvent) -> String {
    let d = &e.detection;
    let what = match (d.outcome, d.closed_by) {
        (Outcome::Closed, Some(ClosedBy::Peer)) => closed_by_peer(d, "client"),
        (Outcome::Closed, _) => format!(
            "closed by tcphb: {}",
            d.note.as_deref().unwrap_or("protocol")
        ),
        _ => ended(d, e.expected.expected_ms),
    };
    format!("{} {} {what}\n", e.at, e.peer)
}

/// One `audit --watch` event on one line: whose connection, how it ended, and the evidence.
pub(super) fn audit_event(e: &AuditEvent) -> String {
    let d = &e.detection;
    let who = match (e.pid, e.fd) {
        (Some(pid), Some(fd)) => format!("pid {pid} fd {fd} "),
        _ => String::new(),
    };
    let what = match (d.outcome, d.closed_by) {
        (Outcome::Closed, Some(ClosedBy::Peer)) => closed_by_peer(d, "peer"),
        (Outcome::Closed, _) => format!("closed by its process{}", parenthesized(&d.note)),
        _ => ended(d, e.expected.expected_ms),
    };
    format!("{} {who}{} → {} {what}\n", e.at, e.local, e.peer)
}

/// An event's close by the peer (`who`: "client", "peer"), after how long idle.
fn closed_by_peer(d: &Detection, who: &str) -> String {
    format!(
        "closed by the {who} after {} idle (FIN){}",
        human_ms(Some(d.idled_ms)),
        parenthesized(&d.note)
    )
}

/// An event's death (or a connection still alive): what noticed, the errno, the silence before,
/// and the prediction.
fn ended(d: &Detection, expected_ms: Option<u64>) -> String {
    format!(
        "{}: {}{} after {} of silence, expected {}{}",
        d.outcome.name(),
        opt(&d.detected_by),
        d.errno
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default(),
        human_ms(Some(d.silence_ms)),
        human_ms(expected_ms),
        parenthesized(&d.note)
    )
}

/// ` (text)`, or nothing.
fn parenthesized(text: &Option<String>) -> String {
    text.as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

/// The `audit --watch` summary in a sentence.
pub(super) fn audit_watch_summary(s: &AuditWatchSummary) -> Vec<Block> {
    let mut out = vec![Block::Line(format!(
        "Followed {} connections for {}: {} dead, {} closed by the peer, {} closed by their process, {} still open.",
        s.followed,
        human_ms(Some(s.watched_ms)),
        s.dead,
        s.closed_by_peer,
        s.closed_by_owner,
        s.open_at_exit
    ))];
    if s.events_dropped > 0 {
        out.push(Block::Line(format!(
            "{} events were dropped: stdout was not read fast enough.",
            s.events_dropped
        )));
    }
    if let Some(u) = &s.unreadable {
        out.push(Block::Line(format!("Could not read {u}.")));
    }
    out
}

/// The listen summary: the counts in a sentence, then the per-mechanism table.
pub(super) fn listen_summary(s: &ListenSummary) -> Vec<Block> {
    let head = format!(
        "{} ({}): {} accepted, {} refused over --max-conns, {} dead, {} closed by peer, {} closed by tcphb, {} still open",
        s.local,
        s.strategy,
        s.accepted,
        s.refused,
        s.dead,
        s.closed,
        s.closed_by_tcphb,
        s.open_at_exit
    );
    [Some(Block::Line(head)), stats_table(&s.by_mechanism)]
        .into_iter()
        .flatten()
        .collect()
}

/// Widest a compare cell's line grows before its pieces go on separate lines.
const CELL_WIDTH: usize = 12;

/// Where the human output must fit: `COLUMNS` when set (as shells and `less` understand it), else the
/// terminal's width, or 80 columns when stdout is no terminal.
fn output_width() -> usize {
    use std::io::IsTerminal;
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
    {
        return w.clamp(40, 1000);
    }
    let out = std::io::stdout();
    if out.is_terminal()
        && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(&out)
    {
        return usize::from(w).max(40);
    }
    80
}

/// Unbreakable pieces packed into lines of at most `width` columns (a longer piece gets a line of its
/// own): a cell never splits a word, a number from its unit, or a spec inside a piece.
fn pack(pieces: &[String], sep: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for p in pieces {
        match lines.last_mut() {
            Some(l) if cols(l) + sep.len() + cols(p) <= width => {
                l.push_str(sep);
                l.push_str(p);
            }
            _ => lines.push(p.clone()),
        }
    }
    lines.join("\n")
}

/// A strategy's name broken only before `+` (between mechanisms, so a continuation line starts with
/// `+` and cannot be read as a strategy of its own) and, if still too long, after `,`.
fn strategy_lines(name: &str, width: usize) -> String {
    let mut mechanisms: Vec<String> = Vec::new();
    for (i, part) in name.split('+').enumerate() {
        mechanisms.push(if i == 0 {
            part.into()
        } else {
            format!("+{part}")
        });
    }
    let mut pieces = Vec::new();
    for m in mechanisms {
        if cols(&m) > width {
            pieces.extend(m.split_inclusive(',').map(str::to_string));
        } else {
            pieces.push(m);
        }
    }
    pack(&pieces, "", width)
}

/// Display columns of a line.
fn cols(s: &str) -> usize {
    textwrap::core::display_width(s)
}

/// Widest line of a cell.
fn cell_width(s: &str) -> usize {
    s.lines().map(cols).max().unwrap_or(0)
}

/// The compare cells, each rendered once: by (strategy, fault, load).
type Cells<'a> = HashMap<(&'a str, Fault, Load), String>;

/// The matrix for some faults: one row per strategy (its label beside it), one column per (fault,
/// load) given.
fn compare_table(columns: &[(Fault, Load)], rows: &[(&str, String)], cells: &Cells) -> Grid {
    let mut t = new_table();
    // The cells are laid out already (pieces packed, nothing to split): comfy-table must not wrap.
    t.set_content_arrangement(ContentArrangement::Disabled);
    let one_load = columns.iter().all(|c| c.1 == columns[0].1);
    let mut header = vec!["strategy".to_string()];
    header.extend(columns.iter().map(|(f, l)| {
        if one_load {
            f.to_string()
        } else {
            format!("{f} {l}")
        }
    }));
    t.set_header(header);
    for (s, label) in rows {
        let mut row = vec![label.clone()];
        row.extend(
            columns
                .iter()
                .map(|(f, l)| cells.get(&(*s, *f, *l)).cloned().unwrap_or_default()),
        );
        t.add_row(row);
    }
    t
}

/// The compare report: the matrix, its legend, the ICMP causes, the disagreements, the answer, a
/// verdict per fault and the lab. `width` `None` (`--wide`): one table with fault × load columns
/// and one-line cells; otherwise one table per load, its cells packed and its columns split over as
/// many tables as it takes to fit `width`.
pub(super) fn compare(rep: &CompareReport, width: Option<usize>) -> Vec<Block> {
    let mut loads: Vec<Load> = Vec::new();
    let mut faults: Vec<Fault> = Vec::new();
    let mut strategies: Vec<&str> = Vec::new();
    for r in &rep.results {
        if !loads.contains(&r.load) {
            loads.push(r.load);
        }
        if !faults.contains(&r.fault) {
            faults.push(r.fault);
        }
        if !strategies.contains(&r.strategy.as_str()) {
            strategies.push(&r.strategy);
        }
    }
    loads.sort();
    let deadline = rep.lab.deadline_ms;
    // Each cell and label rendered once; the widest cell of each (fault, load), over every result.
    let mut cells = Cells::new();
    let mut widest: HashMap<(Fault, Load), usize> = HashMap::new();
    for r in &rep.results {
        let cell = match width {
            None => cell_line(r, deadline),
            Some(_) => pack(&cell_pieces(r, deadline), " ", CELL_WIDTH),
        };
        let w = widest.entry((r.fault, r.load)).or_default();
        *w = (*w).max(cell_width(&cell));
        // The first result of a (strategy, fault, load) is the one shown.
        cells
            .entry((r.strategy.as_str(), r.fault, r.load))
            .or_insert(cell);
    }
    let mut rows: Vec<(&str, String)> = strategies
        .iter()
        .map(|s| {
            let label = match width {
                None => s.to_string(),
                Some(_) => strategy_lines(s, CELL_WIDTH),
            };
            (*s, label)
        })
        .collect();
    if rep.lab.server_command.is_some() {
        // compare --server: one more row, the server noticing its dead clients (one cell per
        // fault and load, whatever the strategies).
        for r in &rep.results {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                cells.entry((SERVER_ROW, r.fault, r.load))
            {
                let cell = server_cell(rep, r.fault, r.load);
                let w = widest.entry((r.fault, r.load)).or_default();
                *w = (*w).max(cell_width(&cell));
                slot.insert(cell);
            }
        }
        rows.push((SERVER_ROW, SERVER_ROW.to_string()));
    }
    let mut out = Vec::new();
    if rep.partial {
        out.push(Block::Line(
            "Interrupted: partial results, only what was measured before the signal.".into(),
        ));
        out.push(Block::Gap);
    }
    match width {
        None => {
            let columns: Vec<(Fault, Load)> = faults
                .iter()
                .flat_map(|f| loads.iter().map(move |l| (*f, *l)))
                .collect();
            out.push(Block::Table(compare_table(&columns, &rows, &cells)));
        }
        Some(width) => {
            // Each column costs its widest line plus 3 (padding and border); the table 1 more.
            let strategy_cols = rows
                .iter()
                .map(|(_, label)| cell_width(label))
                .chain(std::iter::once("strategy".len()))
                .max()
                .unwrap_or(0)
                + 3;
            for l in &loads {
                let mut groups: Vec<Vec<(Fault, Load)>> = vec![Vec::new()];
                let mut used = 1 + strategy_cols;
                for f in &faults {
                    let w = widest
                        .get(&(*f, *l))
                        .copied()
                        .unwrap_or(0)
                        .max(cols(&f.to_string()))
                        + 3;
                    let group = groups.last_mut().expect("one group at least");
                    if !group.is_empty() && used + w > width {
                        groups.push(Vec::new());
                        used = 1 + strategy_cols;
                    }
                    groups.last_mut().expect("just pushed").push((*f, *l));
                    used += w;
                }
                out.push(Block::Line(format!("{l}:")));
                for g in groups {
                    out.push(Block::Table(compare_table(&g, &rows, &cells)));
                }
            }
        }
    }
    out.push(Block::Gap);
    out.extend(legend(rep).into_iter().map(Block::Line));
    let causes = icmp_causes(rep);
    if !causes.is_empty() {
        out.push(Block::Gap);
        out.push(Block::List {
            title: "Cause, from the ICMP errors the client received after the cut:".into(),
            items: causes,
        });
    }
    let differing: Vec<_> = rep.results.iter().filter(|r| !r.agrees).collect();
    if !differing.is_empty() {
        out.push(Block::Gap);
        out.push(Block::List {
            title: "* differs from the prediction:".into(),
            items: differing
                .iter()
                .map(|r| {
                    format!(
                        "{} / {} / {}: {}",
                        r.strategy,
                        r.fault,
                        r.load,
                        r.disagreement.as_deref().unwrap_or("")
                    )
                })
                .collect(),
        });
    }
    out.push(Block::Gap);
    out.push(Block::List {
        title: "Answer:".into(),
        items: vec![answer_sentences(rep, &loads).join(" ")],
    });
    out.push(Block::Gap);
    out.push(Block::List {
        title: "By fault:".into(),
        items: rep.verdicts.iter().map(|v| v.text.clone()).collect(),
    });
    let kernel = rep.lab.facts.kernel.as_deref().unwrap_or("?");
    let retries = opt(&rep.lab.facts.tcp_retries2);
    let nat = if faults.contains(&Fault::NatExpiry) {
        format!(", nat-expiry after {}", human_ms(Some(rep.lab.nat_idle_ms)))
    } else {
        String::new()
    };
    let reboot = if faults.contains(&Fault::Reboot) {
        format!(
            ", reboot heals after {}",
            human_ms(Some(rep.lab.reboot_heal_ms))
        )
    } else {
        String::new()
    };
    out.push(Block::Gap);
    out.push(Block::Line(format!(
        "Lab: kernel {kernel}, tcp_retries2 {retries}, warm-up {}{reboot}{nat}; ran in {}.",
        human_ms(Some(rep.lab.warmup_ms)),
        human_ms(Some(rep.lab.wall_ms)),
    )));
    out
}

/// The probe report's facts: (key, value) rows.
fn facts_rows(r: &ProbeReport) -> Vec<(&'static str, String)> {
    let f = &r.facts;
    let h = &f.host;
    let unknown = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
    let ms = |v: Option<u64>| v.map_or("unknown".to_string(), |v| human_ms(Some(v)));
    let mut rows = vec![
        ("peer", r.peer.clone()),
        ("local", r.local.clone()),
        (
            "system",
            format!(
                "{} {}",
                h.os,
                h.kernel.as_deref().unwrap_or("(release unknown)")
            ),
        ),
        (
            "default keepalive (tcp_keepalive_time/intvl/probes)",
            format!(
                "{} / {} / {}",
                ms(h.tcp_keepalive_time_ms),
                ms(h.tcp_keepalive_intvl_ms),
                unknown(h.tcp_keepalive_probes)
            ),
        ),
        (
            "tcp_retries1 / tcp_retries2 / tcp_syn_retries",
            format!(
                "{} / {} / {}",
                unknown(h.tcp_retries1),
                unknown(h.tcp_retries2),
                unknown(h.tcp_syn_retries)
            ),
        ),
        (
            "RTO floor (tcp_rto_min_us) / model base",
            format!("{} / {} ms", ms(h.tcp_rto_min_ms), f.rto_min_model_ms),
        ),
        ("RTT (measured)", format!("{:.2} ms", f.rtt_ms)),
        ("RTO (measured)", ms(f.rto_ms)),
        ("strategy", r.strategy.clone()),
        ("effective (read back)", effective_text(&r.effective)),
    ];
    rows.push((
        "clamped or refused",
        if r.effective_differences.is_empty() {
            "nothing: the kernel took every value as asked".into()
        } else {
            r.effective_differences.join("; ")
        },
    ));
    rows
}

/// `probe --verify`: one row per fault × load, the worst silence measured against the deadline.
fn verification_table(v: &crate::report::model::Verification) -> Block {
    let mut t = new_table();
    t.set_header(vec![
        "fault",
        "load",
        "noticed",
        "worst silence (measured)",
        "by",
        "verdict",
    ]);
    for c in &v.cells {
        t.add_row(vec![
            c.fault.to_string(),
            c.load.to_string(),
            format!("{}/{}", c.noticed, c.measured),
            human_ms(c.worst_ms),
            opt(&c.detected_by),
            match c.holds {
                Some(true) => format!("≤ {}", human_ms(Some(v.deadline_ms))),
                Some(false) => "MISSED".into(),
                None => "not covered".into(),
            },
        ]);
    }
    Block::Table(t)
}

fn verification_verdict(v: &crate::report::model::Verification, within: &str) -> String {
    let worst = v
        .cells
        .iter()
        .filter(|c| c.holds.is_some())
        .filter_map(|c| c.worst_ms)
        .max();
    if v.partial {
        format!(
            "Verification interrupted: only part of the lab was measured, nothing is proven (deadline {within})."
        )
    } else if v.holds {
        format!(
            "Verified in the lab: the promise holds. Worst silence before a detection over every covered fault, idle and busy, {} runs each: {} ≤ {within} (measured from the last packet heard, the deadline's basis).",
            v.repeat,
            human_ms(worst)
        )
    } else {
        format!(
            "Promise broken: in the lab a covered fault went unnoticed or was noticed after {within} (worst silence {}); exit 6.",
            human_ms(worst)
        )
    }
}

/// One row per mechanism: when a silently dead peer would be noticed, idle and busy.
fn predictions_table(rows: &[PredictionRow]) -> Block {
    let mut t = new_table();
    t.set_header(vec![
        "mechanism",
        "settings",
        "idle: noticed after (predicted)",
        "busy: noticed after (predicted)",
    ]);
    for p in rows {
        t.add_row(vec![
            p.mechanism.replace('_', " "),
            p.settings.clone(),
            predicted(p.idle_ms, p.idle_by),
            predicted(p.busy_ms, p.busy_by),
        ]);
    }
    Block::Table(t)
}

/// `probe --os`: the OS's defaults, the predictions, and the pitfalls.
pub(super) fn os_prediction(r: &OsReport) -> Vec<Block> {
    let d = &r.defaults;
    let mut t = new_table();
    t.set_header(vec!["fact", "value"]);
    for (k, v) in [
        (
            "system",
            format!("{} (predicted offline, no socket opened)", r.os),
        ),
        (
            "default keepalive",
            format!(
                "{} idle, {} interval, {} probes (count {})",
                human_ms(Some(d.keepalive_idle_ms)),
                human_ms(Some(d.keepalive_interval_ms)),
                d.keepalive_count,
                d.keepalive_count_rule.replace('_', " ")
            ),
        ),
        (
            "keepalive resolution",
            human_ms(Some(d.keepalive_resolution_ms)),
        ),
        (
            "retransmissions / RTO floor / ceiling",
            format!(
                "{} / {} / {}",
                d.retransmissions,
                human_ms(Some(d.rto_min_ms)),
                human_ms(Some(d.rto_max_ms))
            ),
        ),
        (
            "user timeout option",
            d.user_timeout_option.unwrap_or("none").to_string(),
        ),
        ("strategy", r.strategy.clone()),
        (
            "effective (as that OS would run it)",
            effective_text(&r.effective),
        ),
    ] {
        t.add_row(vec![k.to_string(), v]);
    }
    let mut out = vec![
        Block::Table(t),
        predictions_table(&r.predictions),
        Block::Line("Predicted from the last packet heard, on a path of negligible RTT.".into()),
    ];
    for p in &r.pitfalls {
        out.push(Block::Line(format!("Pitfall: {p}.")));
    }
    out
}

/// The probe report: the facts, the predictions and their summary, then the idle timeout found, the
/// early warnings and the recommendation, each when asked for.
pub(super) fn probe(r: &ProbeReport) -> Vec<Block> {
    let mut out = Vec::new();
    if r.partial {
        out.push(Block::Line(
            "Interrupted: what was measured before the signal.".into(),
        ));
    }
    let mut t = new_table();
    t.set_header(vec!["fact", "value"]);
    for (k, v) in facts_rows(r) {
        t.add_row(vec![k.to_string(), v]);
    }
    out.push(Block::Table(t));

    out.push(predictions_table(&r.predictions));
    out.extend(lines_as_blocks(&r.summary));

    if let Some(i) = &r.idle_timeout {
        out.push(Block::Gap);
        out.extend(line(idle_text(i)));
        let mut t = new_table();
        t.set_header(vec![
            "round",
            "idle (planned)",
            "idle (measured)",
            "answer",
            "result",
        ]);
        for e in &i.evidence {
            let errno = parenthesized(&e.errno);
            let result = match e.verdict {
                Verdict::Alive => format!("alive ({:.1} ms)", e.reply_ms.unwrap_or(0.0)),
                Verdict::Silent if e.errno.is_none() => {
                    format!("forgotten (none in {})", human_ms(Some(i.reply_timeout_ms)))
                }
                Verdict::Silent | Verdict::Rst | Verdict::Icmp => format!("forgotten{errno}"),
                Verdict::Closed => "server closed".to_string(),
                v => format!("{}{errno}", v.name().replace('_', " ")),
            };
            t.add_row(vec![
                e.round.to_string(),
                if e.planned_idle_ms == 0 {
                    "-".to_string()
                } else {
                    secs2_ms(e.planned_idle_ms)
                },
                secs2_ms(e.idled_ms),
                e.answer.name().replace('_', " "),
                result,
            ]);
        }
        out.push(Block::Table(t));
        for n in &i.notes {
            out.push(Block::Line(format!("Note: {n}.")));
        }
    }

    if let Some(w) = &r.early_warnings {
        let mut items = Vec::new();
        if w.warnings.is_empty() {
            items.push("none: no router reported an error".to_string());
        }
        for x in &w.warnings {
            items.push(x.sentence());
        }
        if let Some(why) = &w.reporter_unavailable {
            items.push(format!("({why})"));
        }
        if let Some(at) = w.ended_at_ms {
            items.push(format!(
                "the connection ended at +{:.1} s ({})",
                at as f64 / 1000.0,
                w.ended_errno.as_deref().unwrap_or("?")
            ));
        }
        out.push(Block::Gap);
        out.push(Block::List {
            title: format!(
                "Early warnings (IP_RECVERR, connection kept busy for {}):",
                human_ms(Some(w.duration_ms))
            ),
            items,
        });
    }

    if let Some(rec) = &r.recommendation {
        let within = human_ms(Some(rec.detect_within_ms));
        match (&rec.flags, &rec.refusal) {
            (Some(flags), _) => {
                let worst = rec.worst_idle_ms.max(rec.worst_busy_ms);
                let mut items = vec![
                    format!(
                        "worst case {} ≤ {within} (predicted, from the last packet heard, band and margin included: idle {}, busy {}); expected idle {}, busy {}",
                        human_ms(worst),
                        human_ms(rec.worst_idle_ms),
                        human_ms(rec.worst_busy_ms),
                        human_ms(rec.idle_ms),
                        human_ms(rec.busy_ms)
                    ),
                    format!(
                        "covers: {}",
                        rec.covers
                            .iter()
                            .map(|f| f.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ];
                match rec.peer_answers_ping {
                    Some(true) => {
                        items.push("the peer answers PING: a heartbeat is included".into())
                    }
                    Some(false) => items.push("the peer does not answer PING: no heartbeat".into()),
                    None => {}
                }
                items.extend(
                    rec.uncovered
                        .iter()
                        .map(|u| format!("not covered: {} ({})", u.fault, u.why)),
                );
                if let Some(c) = &rec.cost {
                    items.push(format!(
                        "cost on an idle connection: {:.1} packets/min out, {:.1} in; {:.0} bytes/min out, {:.0} in (IPv4 with TCP timestamps)",
                        c.packets_per_min_out, c.packets_per_min_in, c.bytes_per_min_out, c.bytes_per_min_in
                    ));
                }
                items.extend(rec.warnings.iter().map(|w| format!("warning: {w}")));
                items.extend(rec.notes.iter().map(|n| format!("- {n}")));
                out.push(Block::Gap);
                out.push(Block::List {
                    title: format!("Recommended to notice a dead peer within {within}: {flags}"),
                    items,
                });
                if let Some(v) = &rec.verification {
                    out.push(Block::Gap);
                    out.push(verification_table(v));
                    out.push(Block::Line(verification_verdict(v, &within)));
                }
            }
            (None, Some(why)) => {
                out.push(Block::Gap);
                out.push(Block::Line(format!(
                    "No strategy notices a dead peer within {within} on this path: {why}."
                )));
            }
            (None, None) => out.push(Block::Gap),
        }
    }
    out
}

/// The audit report: one row per connection (who, state, settings, the predictions), the flags of
/// each connection under it, what could not be read, and the count against `--detect-within`.
pub(super) fn audit(r: &AuditReport) -> Vec<Block> {
    let mut out = Vec::new();
    if r.audited.is_empty() {
        out.push(Block::Line("No TCP connection matched.".into()));
    } else {
        let mut t = new_table();
        // Cells laid out here, from unbreakable pieces: an address or a number is never split.
        t.set_content_arrangement(ContentArrangement::Disabled);
        t.set_header(vec![
            "connection",
            "state",
            "settings",
            "idle: noticed",
            "busy: noticed",
        ]);
        for a in &r.audited {
            let who = match a.pid {
                Some(pid) => format!("{}\n→ {}\npid {pid}", a.local, a.peer),
                None => format!("{}\n→ {}", a.local, a.peer),
            };
            let settings = match &a.effective {
                None => vec!["unreadable".into()],
                Some(e) => effective_pieces(e, true),
            };
            let when = |ms: Option<u64>, by: Option<crate::detection::Mechanism>| match (
                &a.effective,
                ms,
                by,
            ) {
                (None, _, _) => vec!["-".to_string()],
                (Some(_), Some(ms), Some(m)) => vec![human_ms(Some(ms)), short(m).to_string()],
                (Some(_), _, _) => vec!["never".to_string()],
            };
            t.add_row(vec![
                who,
                a.state.to_string(),
                pack(&settings, " ", CELL_WIDTH),
                pack(&when(a.idle_ms, a.idle_by), " ", CELL_WIDTH),
                pack(&when(a.busy_ms, a.busy_by), " ", CELL_WIDTH),
            ]);
        }
        out.push(Block::Table(t));
        out.push(Block::Line(
            "Predicted on each connection's own RTO, counted from the last packet heard; ka keepalive, uto user timeout, rtx retransmission.".into(),
        ));
        let flagged: Vec<String> = r
            .audited
            .iter()
            .flat_map(|a| {
                a.flags
                    .iter()
                    .map(move |f| format!("{} → {}: {f}", a.local, a.peer))
            })
            .collect();
        if !flagged.is_empty() {
            out.push(Block::Gap);
            out.push(Block::List {
                title: "Alerts:".into(),
                items: flagged,
            });
        }
    }
    if let Some(u) = &r.unreadable {
        out.push(Block::Gap);
        out.push(Block::Line(format!("Not read: {u}")));
    }
    if let (Some(d), Some(n)) = (r.detect_within_ms, r.slower_than_deadline) {
        out.push(Block::Gap);
        out.push(Block::Line(format!(
            "{n} of {} connections would notice a dead peer later than {} (or never), idle or busy.",
            r.audited.iter().filter(|a| a.effective.is_some()).count(),
            human_ms(Some(d))
        )));
    }
    out
}
