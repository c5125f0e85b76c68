//! The `tcphb probe` report: host and path facts, the effective settings, predictions per mechanism,
//! the recommendation, the idle timeout found and the early warnings — as a table, JSON, CSV
//! (predictions only: the tabular part) or Markdown. Fed one model, like every exporter here.

use std::time::Duration;

use serde::Serialize;

use super::{Format, effective_text, human_ms, new_table, opt, to_csv, to_json};
use crate::detection::Mechanism;
use crate::idle::{IdleTimeout, Verdict};
use crate::predict::Prediction;
use crate::recverr::EarlyWarnings;
use crate::settings::{Effective, HostFacts};
use crate::units::secs2;

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
    /// Predicted for the recommended strategy on this path, ms.
    pub idle_ms: Option<u64>,
    pub busy_ms: Option<u64>,
    /// Why these values, one sentence each.
    pub notes: Vec<String>,
    /// Why nothing can be recommended.
    pub refused: Option<String>,
}

/// The result of `tcphb probe`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub schema: u32,
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

fn predicted(ms: Option<u64>, by: Option<Mechanism>) -> String {
    match (ms, by) {
        (None, _) => "never".into(),
        (Some(ms), Some(m)) => format!("{} ({m})", human_ms(Some(ms))),
        (Some(ms), None) => human_ms(Some(ms)),
    }
}

/// Render the probe report.
pub fn render_probe(r: &ProbeReport, format: Format) -> String {
    match format {
        Format::Json => to_json(r) + "\n",
        Format::Csv => {
            let rows: Vec<Vec<String>> = r
                .predictions
                .iter()
                .map(|p| {
                    vec![
                        p.mechanism.to_string(),
                        p.settings.clone(),
                        opt(&p.idle_ms),
                        opt(&p.idle_by),
                        opt(&p.busy_ms),
                        opt(&p.busy_by),
                    ]
                })
                .collect();
            to_csv(
                &[
                    "mechanism",
                    "settings",
                    "idle_ms",
                    "idle_by",
                    "busy_ms",
                    "busy_by",
                ],
                &rows,
            )
        }
        Format::Table | Format::Markdown => render_text(r, format),
    }
}

fn render_text(r: &ProbeReport, format: Format) -> String {
    let mut out = String::new();
    let mut t = new_table(format);
    t.set_header(vec!["fact", "value"]);
    for (k, v) in facts_rows(r) {
        t.add_row(vec![k.to_string(), v]);
    }
    out += &format!("{t}\n");

    let mut t = new_table(format);
    t.set_header(vec![
        "mechanism",
        "settings",
        "idle: noticed after (predicted)",
        "busy: noticed after (predicted)",
    ]);
    for p in &r.predictions {
        t.add_row(vec![
            p.mechanism.replace('_', " "),
            p.settings.clone(),
            predicted(p.idle_ms, p.idle_by),
            predicted(p.busy_ms, p.busy_by),
        ]);
    }
    out += &format!("{t}\n");
    for s in &r.summary {
        out += &format!("{s}\n");
    }

    if let Some(i) = &r.idle_timeout {
        out += "\n";
        out += &idle_text(i);
        let mut t = new_table(format);
        t.set_header(vec!["round", "idle (planned)", "idle (measured)", "result"]);
        for e in &i.connections {
            let result = match e.verdict {
                Verdict::Alive => format!("alive, answered in {:.1} ms", e.reply_ms.unwrap_or(0.0)),
                Verdict::Silent => {
                    format!("no answer within {}", human_ms(Some(i.reply_timeout_ms)))
                }
                v => format!(
                    "{}{}",
                    serde_json::to_value(v)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                        .replace('_', " "),
                    e.errno
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            };
            let s = |ms: u64| secs2(Duration::from_millis(ms));
            t.add_row(vec![
                e.round.to_string(),
                s(e.idle_ms),
                s(e.idled_ms),
                result,
            ]);
        }
        out += &format!("{t}\n");
        for n in &i.notes {
            out += &format!("Note: {n}.\n");
        }
    }

    if let Some(w) = &r.early_warnings {
        out += &format!(
            "\nEarly warnings (IP_RECVERR, connection kept busy for {}):\n",
            human_ms(Some(w.duration_ms))
        );
        if w.warnings.is_empty() {
            out += "  none: no router reported an error\n";
        }
        for x in &w.warnings {
            out += &format!("  {}\n", x.sentence());
        }
        if let Some(why) = &w.reporter_unavailable {
            out += &format!("  ({why})\n");
        }
        if let Some(at) = w.ended_at_ms {
            out += &format!(
                "  the connection ended at +{:.1} s ({})\n",
                at as f64 / 1000.0,
                w.ended_errno.as_deref().unwrap_or("?")
            );
        }
    }

    if let Some(rec) = &r.recommendation {
        out += "\n";
        let within = human_ms(Some(rec.detect_within_ms));
        match (&rec.flags, &rec.refused) {
            (Some(flags), _) => {
                out += &format!(
                    "Recommended to notice a dead peer within {within}: {flags}\n  predicted on this path: idle {}, busy {}\n",
                    human_ms(rec.idle_ms),
                    human_ms(rec.busy_ms)
                );
                for n in &rec.notes {
                    out += &format!("  - {n}\n");
                }
            }
            (None, Some(why)) => {
                out += &format!(
                    "No strategy notices a dead peer within {within} on this path: {why}.\n"
                )
            }
            (None, None) => {}
        }
    }
    out
}

/// The idle timeout in one sentence.
pub fn idle_text(i: &IdleTimeout) -> String {
    let s = |ms: u64| secs2(Duration::from_millis(ms));
    match (i.high_ms, i.behaviour) {
        (Some(high), Some(b)) => format!(
            "Idle timeout (measured): between {} and {}; the path {}. Evidence from {} connections in {} rounds, {} in all:\n",
            s(i.low_ms),
            s(high),
            b.describe(),
            i.connections.len(),
            i.rounds,
            human_ms(Some(i.elapsed_ms))
        ),
        _ => format!(
            "Idle timeout (measured): none up to {}: every connection idle that long still answered. {} connections, {} in all:\n",
            s(i.max_ms),
            i.connections.len(),
            human_ms(Some(i.elapsed_ms))
        ),
    }
}
