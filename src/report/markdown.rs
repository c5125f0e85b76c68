//! The Markdown exporter, for runbooks and tickets: the human layout and sentences of `table.rs`,
//! drawn as Markdown tables.

use comfy_table::TableStyle;
use comfy_table::presets::ASCII_MARKDOWN;

use super::Exporter;
use super::model::{
    CompareReport, ConnectManyReport, ConnectReport, ListenEvent, ListenSummary, OsReport,
    ProbeReport,
};
use super::table;

/// Writes `--format markdown`.
pub struct Markdown;

/// Pipes and dashes: a GitHub-flavoured Markdown table.
const PRESET: TableStyle = ASCII_MARKDOWN;

impl Exporter for Markdown {
    fn connect(&self, r: &ConnectReport) -> String {
        table::connect(r, PRESET)
    }
    fn connect_many(&self, r: &ConnectManyReport) -> String {
        table::connect_many(r, PRESET)
    }
    fn listen_header(&self) -> Option<String> {
        None
    }
    fn listen_event(&self, e: &ListenEvent) -> String {
        table::listen_event(e)
    }
    fn listen_summary(&self, s: &ListenSummary) -> String {
        table::listen_summary(s, PRESET)
    }
    /// Always one table with fault × load columns, whatever `wide`: Markdown is rendered, not fitted
    /// to a terminal.
    fn compare(&self, r: &CompareReport, _wide: bool) -> String {
        table::compare(r, PRESET, true)
    }
    fn probe(&self, r: &ProbeReport) -> String {
        table::probe(r, PRESET)
    }
    fn os_prediction(&self, r: &OsReport) -> String {
        table::os_prediction(r, PRESET)
    }
}
