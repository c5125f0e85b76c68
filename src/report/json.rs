//! The JSON exporter: each report as one object on one line (so `listen`'s events are JSON lines),
//! exactly the model's serde form.

use serde::Serialize;

use super::Exporter;
use super::model::{
    AuditEvent, AuditReport, AuditWatchSummary, CompareReport, ConnectManyReport, ConnectReport,
    ListenEvent, ListenSummary, OsReport, ProbeReport,
};

/// Writes `--format json`.
pub struct Json;

/// One JSON object and a newline.
fn line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("report types serialize") + "\n"
}

impl Exporter for Json {
    fn connect(&self, r: &ConnectReport) -> String {
        line(r)
    }
    fn connect_many(&self, r: &ConnectManyReport) -> String {
        line(r)
    }
    fn listen_header(&self) -> Option<String> {
        None
    }
    fn listen_event(&self, e: &ListenEvent) -> String {
        line(e)
    }
    fn listen_summary(&self, s: &ListenSummary) -> String {
        line(s)
    }
    fn compare(&self, r: &CompareReport, _wide: bool) -> String {
        line(r)
    }
    fn probe(&self, r: &ProbeReport) -> String {
        line(r)
    }
    fn os_prediction(&self, r: &OsReport) -> String {
        line(r)
    }
    fn audit(&self, r: &AuditReport) -> String {
        line(r)
    }
    fn audit_event(&self, e: &AuditEvent) -> String {
        line(e)
    }
    fn audit_watch_summary(&self, s: &AuditWatchSummary) -> String {
        line(s)
    }
}
