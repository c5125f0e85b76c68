//! Reports: one model per command ([`model`]), one exporter per format (`table.rs`, `markdown.rs`,
//! `json.rs`, `csv.rs`), all fed the same model; [`Format::exporter`] picks the format's.
//!
//! Each format writes every report kind itself, in its own file, so a format can never leak into
//! another (no prose in CSV, no table in JSON). Every number is labelled measured or expected. JSON
//! carries `schema` and snake_case keys; durations are `_ms` numbers.

mod csv;
mod json;
mod markdown;
pub mod model;
pub mod svg;
mod table;
mod words;

pub use words::{expected_text, probe_summary};

use model::{
    AuditEvent, AuditReport, AuditWatchSummary, CompareReport, ConnectManyReport, ConnectReport,
    ListenEvent, ListenSummary, OsReport, ProbeReport,
};

/// What a command hands back to `main`: its report, to be written in the format asked for.
#[derive(Debug)]
pub enum Report {
    /// `connect`.
    Connect(ConnectReport),
    /// `connect --connections N`.
    ConnectMany(ConnectManyReport),
    /// `listen`, once stopped (its events were written as they happened).
    ListenSummary(ListenSummary),
    /// `compare`; `wide` asks for one table with fault × load columns.
    Compare { report: CompareReport, wide: bool },
    /// `probe HOST:PORT`.
    Probe(Box<ProbeReport>),
    /// `probe --os`.
    Os(OsReport),
    /// `audit`.
    Audit(AuditReport),
    /// `audit --watch`, once stopped (its events were written as they happened).
    AuditWatch(AuditWatchSummary),
}

impl Report {
    /// The report as `format` writes it.
    pub fn render(&self, format: Format) -> String {
        let e = format.exporter();
        match self {
            Report::Connect(r) => e.connect(r),
            Report::ConnectMany(r) => e.connect_many(r),
            Report::ListenSummary(s) => e.listen_summary(s),
            Report::Compare { report, wide } => e.compare(report, *wide),
            Report::Probe(r) => e.probe(r),
            Report::Os(r) => e.os_prediction(r),
            Report::Audit(r) => e.audit(r),
            Report::AuditWatch(s) => e.audit_watch_summary(s),
        }
    }
}

/// A command's result: the report to print and the exit code by the contract.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    pub code: u8,
}

/// Version of the JSON output; bumped when a key changes meaning or disappears.
pub const SCHEMA: u32 = 3;

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

impl Format {
    /// The exporter that writes this format.
    pub fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Table => &table::Table,
            Format::Json => &json::Json,
            Format::Csv => &csv::Csv,
            Format::Markdown => &markdown::Markdown,
        }
    }
}

/// One output format: every report kind as the text to print (a trailing newline included).
pub trait Exporter {
    /// The result of `connect`.
    fn connect(&self, r: &ConnectReport) -> String;
    /// The result of `connect --connections N`.
    fn connect_many(&self, r: &ConnectManyReport) -> String;
    /// What `listen` prints before its first event (a header row), if the format has one.
    fn listen_header(&self) -> Option<String>;
    /// One `listen` event: one line (or row).
    fn listen_event(&self, e: &ListenEvent) -> String;
    /// What `listen` saw, printed when it stops.
    fn listen_summary(&self, s: &ListenSummary) -> String;
    /// The result of `compare`. `wide`: one table with fault × load columns rather than one table
    /// per load fitted to 80 columns, where the format lays out tables for a terminal.
    fn compare(&self, r: &CompareReport, wide: bool) -> String;
    /// The result of `probe`.
    fn probe(&self, r: &ProbeReport) -> String;
    /// The result of `probe --os`: predictions for another OS, offline.
    fn os_prediction(&self, r: &OsReport) -> String;
    /// The result of `audit`: another process's connections, judged.
    fn audit(&self, r: &AuditReport) -> String;
    /// What `audit --watch` prints before its first event (a header row), if the format has one.
    fn audit_header(&self) -> Option<String> {
        None
    }
    /// One connection that ended under `audit --watch`: one line (or row), as for `listen`.
    fn audit_event(&self, e: &AuditEvent) -> String;
    /// What `audit --watch` saw, printed when it stops.
    fn audit_watch_summary(&self, s: &AuditWatchSummary) -> String;
}
