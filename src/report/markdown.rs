//! The Markdown exporter, for runbooks and tickets: the human report of `table.rs` — the same
//! tables and sentences — drawn as GitHub-flavoured Markdown.
//!
//! Every block stands apart, a blank line before and after: a sentence glued under a table is read
//! as one more row of it, and lines without a blank between them run together into one paragraph.
//! So a table is a pipe table with its header, a sentence is a paragraph, and a line with items
//! under it (the verdicts, the disagreements, the notes) is a paragraph followed by a list.

use comfy_table::Table as Grid;

use super::Exporter;
use super::model::{
    AuditEvent, AuditReport, AuditWatchSummary, CompareReport, ConnectManyReport, ConnectReport,
    ListenEvent, ListenSummary, OsReport, ProbeReport,
};
use super::table::{self, Block};

/// Writes `--format markdown`.
pub struct Markdown;

impl Exporter for Markdown {
    fn connect(&self, r: &ConnectReport) -> String {
        draw(&table::connect(r))
    }
    fn connect_many(&self, r: &ConnectManyReport) -> String {
        draw(&table::connect_many(r))
    }
    fn listen_header(&self) -> Option<String> {
        None
    }
    /// One list item: the events printed one after the other make one list.
    fn listen_event(&self, e: &ListenEvent) -> String {
        format!("- {}\n", paragraph(table::listen_event(e).trim_end()))
    }
    /// Apart from the list of events above it.
    fn listen_summary(&self, s: &ListenSummary) -> String {
        format!("\n{}", draw(&table::listen_summary(s)))
    }
    /// Always one table with fault × load columns, whatever `wide`: Markdown is rendered, not fitted
    /// to a terminal.
    fn compare(&self, r: &CompareReport, _wide: bool) -> String {
        draw(&table::compare(r, None))
    }
    fn probe(&self, r: &ProbeReport) -> String {
        draw(&table::probe(r))
    }
    fn os_prediction(&self, r: &OsReport) -> String {
        draw(&table::os_prediction(r))
    }
    fn audit(&self, r: &AuditReport) -> String {
        draw(&table::audit(r))
    }
    fn audit_event(&self, e: &AuditEvent) -> String {
        format!("- {}\n", paragraph(table::audit_event(e).trim_end()))
    }
    /// Apart from the list of events above it.
    fn audit_watch_summary(&self, s: &AuditWatchSummary) -> String {
        format!("\n{}", draw(&table::audit_watch_summary(s)))
    }
}

/// The blocks as Markdown, a blank line between any two.
fn draw(blocks: &[Block]) -> String {
    let parts: Vec<String> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Table(t) => Some(pipe_table(t)),
            Block::Line(s) => Some(format!("{}\n", paragraph(s))),
            Block::List { title, items } => {
                let mut out = format!("{}\n\n", paragraph(title));
                for i in items {
                    // An item that is itself a dash item on a terminal is one item here, not a
                    // list nested in an empty one.
                    let i = i.strip_prefix("- ").unwrap_or(i);
                    out += &format!("- {}\n", paragraph(i));
                }
                Some(out)
            }
            Block::Gap => None,
        })
        .collect();
    parts.join("\n")
}

/// A comfy table as a pipe table: the header, the delimiter row and one row per row, the columns
/// padded so that the text reads as a table too.
fn pipe_table(t: &Grid) -> String {
    let cells = |row: &comfy_table::Row| -> Vec<String> {
        row.cell_iter()
            .map(|c| inline(&c.content().replace('\n', " ")))
            .collect()
    };
    let header = t.header().map(cells).unwrap_or_default();
    let rows: Vec<Vec<String>> = t.row_iter().map(cells).collect();
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0);
    let mut width = vec![3; columns];
    for r in rows.iter().chain([&header]) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String]| -> String {
        let mut out = String::from("|");
        for (i, w) in width.iter().enumerate() {
            let c = r.get(i).map_or("", String::as_str);
            let pad = w - c.chars().count();
            out += &format!(" {c}{} |", " ".repeat(pad));
        }
        out + "\n"
    };
    let mut out = line(&header);
    out += "|";
    for w in &width {
        out += &format!("{}|", "-".repeat(w + 2));
    }
    out += "\n";
    for r in &rows {
        out += &line(r);
    }
    out
}

/// Text as Markdown inline content that shows as written: the characters that would start emphasis,
/// strikethrough, code, HTML or a table cell are escaped.
fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '`' | '*' | '|' | '<' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A line as a paragraph or a list item's text: [`inline`], and a start that would open a heading,
/// a quote, a list or a thematic break is escaped too (inside a table cell it would not).
fn paragraph(s: &str) -> String {
    let mut out = inline(s);
    let marker_then_space = |rest: &str| rest.is_empty() || rest.starts_with(char::is_whitespace);
    let bullet = out.starts_with(['-', '+']) && marker_then_space(&out[1..]);
    let rule = out.len() >= 3 && out.chars().all(|c| c == '-' || c == '_' || c == ' ');
    if bullet || rule || out.starts_with(['#', '>']) {
        out.insert(0, '\\');
    }
    // `1. ` or `1) ` opens an ordered list; `127.0.0.1:7878` does not.
    let digits = out.chars().take_while(char::is_ascii_digit).count();
    if (1..=9).contains(&digits)
        && out[digits..].starts_with(['.', ')'])
        && marker_then_space(&out[digits + 1..])
    {
        out.insert(digits, '\\');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_would_be_markup_is_escaped() {
        assert_eq!(paragraph("* differs"), "\\* differs");
        assert_eq!(inline("a | b"), "a \\| b");
        assert_eq!(paragraph("- x"), "\\- x");
        assert_eq!(paragraph("1. x"), "1\\. x");
        assert_eq!(paragraph("~15 min"), "\\~15 min");
        assert_eq!(paragraph("10 connections"), "10 connections");
        assert_eq!(paragraph("user_timeout"), "user_timeout");
        assert_eq!(
            paragraph("127.0.0.1:7878 (none): 1 accepted"),
            "127.0.0.1:7878 (none): 1 accepted"
        );
        assert_eq!(paragraph("--keepalive 2s,2s,14"), "--keepalive 2s,2s,14");
        assert_eq!(paragraph("---"), "\\---");
    }

    #[test]
    fn blocks_stand_apart() {
        let mut t = Grid::new();
        t.set_header(vec!["a", "b"]);
        t.add_row(vec!["1", "x|y"]);
        let md = draw(&[
            Block::Table(t),
            Block::Gap,
            Block::Line("One.".into()),
            Block::Line("Two.".into()),
            Block::List {
                title: "Verdict:".into(),
                items: vec!["first".into(), "- second".into()],
            },
        ]);
        assert_eq!(
            md,
            "| a   | b    |\n|-----|------|\n| 1   | x\\|y |\n\nOne.\n\nTwo.\n\nVerdict:\n\n- first\n- second\n"
        );
    }
}
