//! Every command's `--format markdown` and `--format csv`, parsed as what they claim to be.
//!
//! Markdown is parsed with pulldown-cmark (GitHub's tables and strikethrough on): every table is
//! recognised as a table, with the header cells and the row count of the same report's human table,
//! so a sentence glued under a table (read as one more row) or two tables glued into one fail; a
//! blank line stands before every table; no two lines run together into one paragraph (a soft line
//! break); the sentences are paragraphs or list items, never cells. CSV is parsed with the `csv`
//! crate: the header and rows only, every record as wide as the header, snake_case column names,
//! and a missing value is an empty field (never `-`).
//!
//! Peers are on loopback: a `tcphb listen 127.0.0.1:0` child, or a few lines of server here where a
//! peer must die or close. `compare` builds one small lab (root). Every wait is on an event.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use common::{answer_first_ping, bin, closing_server, code, listen};
use nix::sys::signal::Signal;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// A table as read: its header cells and how many rows it has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    header: Vec<String>,
    rows: usize,
}

/// A Markdown document as a renderer sees it.
#[derive(Debug, Default)]
struct Md {
    tables: Vec<(Shape, Vec<Vec<String>>)>,
    paragraphs: Vec<String>,
    items: Vec<String>,
}

impl Md {
    fn shapes(&self) -> Vec<Shape> {
        self.tables.iter().map(|(s, _)| s.clone()).collect()
    }
    /// Paragraphs and list items: the prose.
    fn prose(&self) -> impl Iterator<Item = &String> {
        self.paragraphs.iter().chain(&self.items)
    }
    /// Insist some paragraph or list item contains `needle`, and no table cell does.
    fn has_prose(&self, needle: &str, text: &str) {
        assert!(
            self.prose().any(|p| p.contains(needle)),
            "{needle:?} is in no paragraph or list item:\n{text}"
        );
        for (_, rows) in &self.tables {
            for c in rows.iter().flatten() {
                assert!(
                    !c.contains(needle),
                    "{needle:?} is in a table cell:\n{text}"
                );
            }
        }
    }
    /// The list items that follow the paragraph containing `title`, up to the next paragraph.
    fn items_after(&self, text: &str, title: &str) -> usize {
        let at = text
            .find(title)
            .unwrap_or_else(|| panic!("{title:?}:\n{text}"));
        text[at..]
            .lines()
            .skip(1)
            .skip_while(|l| l.is_empty())
            .take_while(|l| l.starts_with("- "))
            .count()
    }
}

/// Parse Markdown, insisting on the layout rules; returns what it holds.
fn markdown(text: &str) -> Md {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut md = Md::default();
    let mut buf = String::new();
    let mut row: Vec<String> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut depth_item = 0;
    for (ev, range) in Parser::new_ext(text, opts).into_offset_iter() {
        match ev {
            Event::Start(Tag::Table(_)) => {
                assert!(
                    range.start == 0 || text[..range.start].ends_with("\n\n"),
                    "no blank line before the table at byte {}:\n{text}",
                    range.start
                );
                header.clear();
                rows.clear();
            }
            Event::Start(Tag::TableCell | Tag::Paragraph | Tag::Item) => {
                if matches!(ev, Event::Start(Tag::Item)) {
                    depth_item += 1;
                }
                buf.clear();
            }
            Event::Text(t) | Event::Code(t) => buf.push_str(&t),
            Event::SoftBreak | Event::HardBreak => {
                panic!(
                    "two lines run into one paragraph at byte {}:\n{text}",
                    range.start
                )
            }
            Event::Html(h) | Event::InlineHtml(h) => panic!("HTML {h:?} in:\n{text}"),
            Event::Start(Tag::Heading { .. }) => {
                panic!("a heading at byte {}:\n{text}", range.start)
            }
            Event::Start(Tag::Emphasis | Tag::Strong | Tag::Strikethrough) => {
                panic!("text read as markup at byte {}:\n{text}", range.start)
            }
            Event::End(TagEnd::TableCell) => row.push(std::mem::take(&mut buf)),
            Event::End(TagEnd::TableHead) => header = std::mem::take(&mut row),
            Event::End(TagEnd::TableRow) => rows.push(std::mem::take(&mut row)),
            Event::End(TagEnd::Table) => md.tables.push((
                Shape {
                    header: header.clone(),
                    rows: rows.len(),
                },
                rows.clone(),
            )),
            Event::End(TagEnd::Paragraph) if depth_item == 0 => {
                md.paragraphs.push(std::mem::take(&mut buf))
            }
            Event::End(TagEnd::Item) => {
                depth_item -= 1;
                md.items.push(std::mem::take(&mut buf));
            }
            _ => {}
        }
    }
    md
}

/// The tables of a human (`--format table`) report: header cells and rows. A row is a line whose
/// first cell has text (a cell wrapped over several lines continues with an empty first cell).
fn human_tables(text: &str) -> Vec<Shape> {
    let cells = |l: &str| -> Vec<String> {
        l.trim_matches('│')
            .split('┆')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut out: Vec<Shape> = Vec::new();
    let mut in_rows = false;
    for l in text.lines() {
        if l.starts_with('┌') {
            out.push(Shape {
                header: Vec::new(),
                rows: 0,
            });
            in_rows = false;
        } else if l.starts_with('╞') {
            in_rows = true;
        } else if l.starts_with('│') {
            let t = out.last_mut().expect("a row inside a table");
            let c = cells(l);
            if !in_rows && t.header.is_empty() {
                t.header = c;
            } else if in_rows && !c[0].is_empty() {
                t.rows += 1;
            }
        }
    }
    out
}

/// Parse CSV, insisting it is one table: a snake_case header and rows exactly as wide, one line
/// each, no `-` standing for a missing value. Returns the header and the rows.
fn csv_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .unwrap_or_else(|e| panic!("no CSV header ({e}):\n{text}"))
        .iter()
        .map(String::from)
        .collect();
    assert!(!header.is_empty(), "empty header:\n{text}");
    for h in &header {
        assert!(
            !h.is_empty()
                && h.starts_with(|c: char| c.is_ascii_lowercase())
                && h.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "header field {h:?} is not snake_case:\n{text}"
        );
    }
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("not CSV ({e}):\n{text}"));
            rec.iter().map(String::from).collect::<Vec<_>>()
        })
        .collect();
    for row in &rows {
        assert_eq!(
            row.len(),
            header.len(),
            "a record of {} fields under a header of {}: {row:?}\n{text}",
            row.len(),
            header.len()
        );
        assert!(
            !row.iter().any(|f| f == "-"),
            "`-` for a missing value (CSV leaves it empty): {row:?}\n{text}"
        );
    }
    assert_eq!(
        text.lines().count(),
        rows.len() + 1,
        "lines beside the header and rows:\n{text}"
    );
    (header, rows)
}

/// Run `tcphb ARGS` as a human table 1000 columns wide (`COLUMNS`); insist on exit code `want`.
fn run_wide(args: &[&str], want: i32) -> String {
    let out: Output = Command::new(bin())
        .args(args)
        .env("COLUMNS", "1000")
        .output()
        .expect("run tcphb");
    assert_eq!(
        code(&out),
        want,
        "{args:?}: stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Run `tcphb ARGS --format FORMAT`; insist on exit code `want`; returns stdout.
fn run(args: &[&str], format: &str, want: i32) -> String {
    let out: Output = Command::new(bin())
        .args(args)
        .args(["--format", format])
        .output()
        .expect("run tcphb");
    assert_eq!(
        code(&out),
        want,
        "{args:?} --format {format}: stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The same report as Markdown and as a human table: the same tables (header cells and row count),
/// laid out by the Markdown rules. Returns the Markdown, parsed, and its text.
fn markdown_like_table(args: &[&str], want: i32) -> (Md, String) {
    let text = run(args, "markdown", want);
    let md = markdown(&text);
    // Wide enough that no cell wraps: the human table's rows are then one line each.
    let human = human_tables(&run_wide(args, want));
    assert!(!human.is_empty(), "{args:?}: no table in the human report");
    assert_eq!(
        md.shapes(),
        human,
        "{args:?}: tables differ from the human ones:\n{text}"
    );
    (md, text)
}

/// A peer that answers the first `PING` and then stays silent (still connected): dead by heartbeat.
fn hung_peer() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_ok()
                    && let Some(seq) = line.trim().strip_prefix("PING ")
                {
                    let _ = (&c).write_all(format!("PONG {seq}\n").as_bytes());
                }
                // Hold the connection, say nothing, until the client goes.
                let _ = r.read_to_end(&mut Vec::new());
            });
        }
    });
    format!("127.0.0.1:{port}")
}

const STATS_HEADER: [&str; 6] = [
    "detected by",
    "connections",
    "silence min",
    "median",
    "p99",
    "max",
];
const PREDICTIONS_HEADER: [&str; 4] = [
    "mechanism",
    "settings",
    "idle: noticed after (predicted)",
    "busy: noticed after (predicted)",
];

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn connect_markdown_keeps_its_table_and_sentence_apart() {
    let (server, port) = listen(&[]);
    let alive = format!("127.0.0.1:{port}");
    let hung = hung_peer();
    let closing = format!("127.0.0.1:{}", closing_server(Duration::from_millis(200)));

    // Alive: the table alone.
    let (md, text) = markdown_like_table(
        &["connect", &alive, "-k", "2s,1s,3", "--duration", "300ms"],
        0,
    );
    assert_eq!(md.tables.len(), 1, "{text}");
    assert_eq!(md.tables[0].0.header, strings(&["", "value"]), "{text}");

    // Dead: the table, then whether it matches the prediction, as a paragraph.
    let (md, text) = markdown_like_table(&["connect", &hung, "--heartbeat", "100ms,3"], 3);
    assert_eq!(md.paragraphs.len(), 1, "{text}");
    md.has_prose("the prediction", &text);

    // Closed by the peer: the table, then what the close was.
    let (md, text) = markdown_like_table(&["connect", &closing, "-k", "1s,1s,3"], 5);
    md.has_prose("closed this connection itself", &text);

    // Many connections, some dead: the counts, the per-mechanism table, the agreement.
    let (md, text) = markdown_like_table(
        &[
            "connect",
            &hung,
            "--connections",
            "2",
            "--heartbeat",
            "100ms,3",
        ],
        3,
    );
    assert_eq!(
        md.shapes(),
        [Shape {
            header: strings(&STATS_HEADER),
            rows: 1
        }],
        "{text}"
    );
    md.has_prose("2 connections to", &text);
    md.has_prose("the prediction", &text);
    drop(server);
}

#[test]
fn connect_csv_is_one_table() {
    let (server, port) = listen(&[]);
    let alive = format!("127.0.0.1:{port}");
    let hung = hung_peer();
    let closing = format!("127.0.0.1:{}", closing_server(Duration::from_millis(200)));

    for (args, want) in [
        (
            &["connect", &alive, "-k", "2s,1s,3", "--duration", "300ms"][..],
            0,
        ),
        (&["connect", &hung, "--heartbeat", "100ms,3"], 3),
        (&["connect", &closing, "-k", "1s,1s,3"], 5),
    ] {
        let text = run(args, "csv", want);
        let (header, rows) = csv_table(&text);
        assert_eq!(&header[..3], ["peer", "local", "strategy"], "{text}");
        assert_eq!(rows.len(), 1, "{text}");
    }

    // Many connections: the per-mechanism rows, no sentence before the header or after the rows,
    // whether some died or none did.
    let text = run(
        &[
            "connect",
            &hung,
            "--connections",
            "2",
            "--heartbeat",
            "100ms,3",
        ],
        "csv",
        3,
    );
    let (header, rows) = csv_table(&text);
    assert_eq!(header[0], "detected_by", "{text}");
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0][..2], ["heartbeat", "2"], "{text}");
    let text = run(
        &[
            "connect",
            &alive,
            "--connections",
            "2",
            "--duration",
            "300ms",
        ],
        "csv",
        0,
    );
    let (header, rows) = csv_table(&text);
    assert_eq!(header[0], "detected_by", "{text}");
    assert!(rows.is_empty(), "{text}");
    drop(server);
}

/// Drive a `listen --heartbeat` in `format` through two endings — a client that closes, and one
/// that answers once and falls silent (dead) — then SIGTERM; returns its stdout and stderr.
fn listen_two_endings(format: &str, event_seen: impl Fn(&str, usize) -> bool) -> (String, String) {
    let (server, port) = listen(&["--heartbeat", "100ms,2", "--format", format]);
    let events = |n: usize| {
        server.wait_stdout(&format!("{n} events"), Duration::from_secs(10), |t| {
            event_seen(t, n)
        });
    };
    let c = answer_first_ping(port);
    c.shutdown(Shutdown::Write).unwrap();
    let _ = (&c).read_to_end(&mut Vec::new());
    events(1);
    let _hung = answer_first_ping(port);
    events(2);
    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(
        code(&out),
        3,
        "one client died: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn listen_markdown_is_a_list_of_events_then_the_summary() {
    let (text, _) = listen_two_endings("markdown", |t, n| {
        t.lines().filter(|l| l.starts_with("- ")).count() >= n
    });
    let md = markdown(&text);
    assert_eq!(md.items.len(), 2, "one item per event:\n{text}");
    assert!(md.items[0].contains("closed by the client"), "{text}");
    assert!(md.items[1].contains("dead"), "{text}");
    assert_eq!(md.paragraphs.len(), 1, "the summary's counts:\n{text}");
    md.has_prose("2 accepted", &text);
    assert_eq!(
        md.shapes(),
        [Shape {
            header: strings(&STATS_HEADER),
            rows: 1
        }],
        "{text}"
    );
}

#[test]
fn listen_csv_is_the_events_table_and_the_summary_goes_to_stderr() {
    let (text, stderr) = listen_two_endings("csv", |t, n| t.lines().count() > n);
    let (header, rows) = csv_table(&text);
    assert_eq!(header[..3], ["at", "peer", "outcome"], "{text}");
    let outcomes: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(outcomes, ["closed", "dead"], "{text}");
    assert!(stderr.contains("2 accepted"), "{stderr}");
}

#[test]
fn probe_markdown_keeps_its_two_tables_and_its_sentences_apart() {
    let (server, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    let (md, text) = markdown_like_table(
        &[
            "probe",
            &peer,
            "-k",
            "2s,1s,3",
            "-u",
            "5s",
            "--detect-within",
            "30s",
        ],
        0,
    );
    let shapes = md.shapes();
    assert_eq!(shapes.len(), 2, "facts and predictions:\n{text}");
    assert_eq!(shapes[0].header, strings(&["fact", "value"]), "{text}");
    // none, os keepalive, keepalive, user timeout, the strategy, the recommendation.
    assert_eq!(
        shapes[1],
        Shape {
            header: strings(&PREDICTIONS_HEADER),
            rows: 6
        },
        "{text}"
    );
    md.has_prose("counted from the last packet heard", &text);
    assert_eq!(
        md.items_after(&text, "counted from the last packet heard"),
        2,
        "{text}"
    );
    md.has_prose("Recommended to notice a dead peer within 30.0 s", &text);
    assert!(
        md.items_after(&text, "Recommended to notice") >= 2,
        "{text}"
    );
    drop(server);
}

#[test]
fn probe_os_markdown_keeps_its_tables_and_pitfalls_apart() {
    let (md, text) = markdown_like_table(&["probe", "--os", "windows", "-k", "5500ms,3000ms"], 0);
    let shapes = md.shapes();
    assert_eq!(shapes.len(), 2, "{text}");
    assert_eq!(shapes[1].header, strings(&PREDICTIONS_HEADER), "{text}");
    md.has_prose("Predicted from the last packet heard", &text);
    md.has_prose("Pitfall: Windows keeps its fixed 10 probes", &text);
}

#[test]
fn probe_csv_is_the_predictions_with_empty_cells_for_never() {
    let (server, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    for args in [
        &["probe", &peer, "-k", "2s,1s,3", "--detect-within", "30s"][..],
        &["probe", "--os", "windows", "-k", "5500ms,3000ms"],
        &["probe", "--os", "linux", "-u", "5s"],
    ] {
        let text = run(args, "csv", 0);
        let (header, rows) = csv_table(&text);
        assert_eq!(
            header,
            [
                "mechanism",
                "settings",
                "idle_ms",
                "idle_by",
                "busy_ms",
                "busy_by"
            ],
            "{text}"
        );
        // `none` idle is never: its time and mechanism are empty, as in connect's CSV.
        let none = rows.iter().find(|r| r[0] == "none").expect("a none row");
        assert_eq!(none[2..4], ["", ""], "{args:?}:\n{text}");
    }
    drop(server);
}

/// One small lab: a keepalive strategy, a crash, idle, in Markdown and in CSV.
#[cfg(target_os = "linux")]
#[test]
fn compare_markdown_and_csv_parse() {
    if !common::lab_allowed("compare_markdown_and_csv_parse") {
        return;
    }
    let args = [
        "compare",
        "-s",
        "ka=1s,1s,3",
        "--fault",
        "crash",
        "--load",
        "idle",
        "--deadline",
        "3s",
    ];
    let text = run(&args, "markdown", 0);
    let md = markdown(&text);
    assert_eq!(
        md.shapes(),
        [Shape {
            header: strings(&["strategy", "crash"]),
            rows: 1
        }],
        "{text}"
    );
    md.has_prose("the measured time from the cut to the detection", &text);
    md.has_prose("ka keepalive, rtx retransmission", &text);
    // The answer first, then each verdict a list item of its own: one fault, one verdict.
    md.has_prose("ka=1s,1s,3 noticed every fault (idle) within", &text);
    assert_eq!(md.items_after(&text, "Answer:"), 1, "{text}");
    assert_eq!(md.items_after(&text, "By fault:"), 1, "{text}");
    md.has_prose("Lab: kernel", &text);

    let text = run(&args, "csv", 0);
    let (header, rows) = csv_table(&text);
    assert_eq!(header[..4], ["strategy", "spec", "fault", "load"], "{text}");
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0][2..4], ["crash", "idle"], "{text}");
}

/// `tcphb listen --format json | head -n 1`: once the reader of its stdout is gone, listen stops as
/// if shut down — exit 0, as no client died — and says its summary on stderr, instead of serving on
/// and dropping every event without a word.
#[test]
fn listen_ends_when_the_reader_of_its_stdout_goes() {
    let (mut server, port) = common::listen_undrained(&["--format", "json"]);
    let mut events = BufReader::new(server.take_stdout());
    // A client that closes: one event line, read as `head -n 1` would.
    let close_one = || {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let _ = (&c).read_to_end(&mut Vec::new());
    };
    close_one();
    let mut line = String::new();
    events.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["outcome"], "closed", "{line}");
    // `head` exits: the read end of the pipe closes. The next event finds nobody to read it.
    drop(events);
    close_one();
    let out = server.wait_output(Duration::from_secs(5));
    // Prose wraps at 80 columns: read it with its line breaks as spaces.
    let err = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(code(&out), 0, "a client closing is not a death: {err}");
    assert!(err.contains("stdout can no longer be written"), "{err}");
    assert!(
        err.contains("2 accepted") && err.contains("2 closed by peer"),
        "the summary, on stderr: {err}"
    );
}
