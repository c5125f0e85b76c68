//! `compare --svg`: the comparison as a timeline picture, one panel per fault. In a panel, a row per
//! strategy under each load (a lane per run when repeated); x is seconds since the cut. Each lane
//! shows what the connection sent after the cut (keepalive and window probes, retransmissions,
//! heartbeats), the instant it noticed, its own predicted band, and the deadline; the outcome in
//! words stands in a column of its own at the right, so no label ever lands on the data.
//!
//! Pure: the report model in, the SVG document out.

use std::fmt::Write as _;

use svg::Document;
use svg::node::element::{Circle, Group, Line, Polygon, Rectangle, Text, Title};

use super::model::{CompareReport, round1};
use crate::detection::{PacketKind, Timeline};
use crate::matrix::{CellResult, Run};
use crate::scenario::{Fault, Load};
use crate::units::human_ms;

/// Width of the plot area, px.
const PLOT_W: f64 = 760.0;
/// Height of one lane (one run), px.
const LANE_H: f64 = 22.0;
/// Outer margin, px.
const MARGIN: f64 = 16.0;
/// Approximate advance of one character of the 12 px monospace font, px (sizes the text columns).
const CHAR_W: f64 = 7.3;
/// The same for the 11 px labels, px.
const SMALL_CHAR_W: f64 = 6.7;
const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const TEXT: &str = "#222";
const MUTED: &str = "#666";
const GRID: &str = "#e4e4e4";
const DETECTION: &str = "#d62728";
const BAND_FILL: &str = "#cfe0f3";
const BAND_EDGE: &str = "#8fb0d6";

fn color(kind: PacketKind) -> &'static str {
    match kind {
        PacketKind::KeepaliveProbe => "#1f77b4",
        PacketKind::WindowProbe => "#9467bd",
        PacketKind::Retransmission => "#ff7f0e",
        PacketKind::Heartbeat => "#2ca02c",
    }
}

fn label(kind: PacketKind) -> &'static str {
    match kind {
        PacketKind::KeepaliveProbe => "keepalive probe",
        PacketKind::WindowProbe => "zero-window probe",
        PacketKind::Retransmission => "retransmission",
        PacketKind::Heartbeat => "heartbeat ping",
    }
}

fn text(x: f64, y: f64, s: &str) -> Text {
    Text::new(s)
        .set("x", round1(x))
        .set("y", round1(y))
        .set("font-family", FONT)
        .set("font-size", 12)
        .set("fill", TEXT)
}

/// A label in the small muted type of the panels' captions.
fn caption(x: f64, y: f64, s: &str) -> Text {
    text(x, y, s).set("font-size", 11).set("fill", MUTED)
}

fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) -> Line {
    Line::new()
        .set("x1", round1(x1))
        .set("y1", round1(y1))
        .set("x2", round1(x2))
        .set("y2", round1(y2))
        .set("stroke", stroke)
        .set("stroke-width", width)
}

/// The marker of one packet, centred on (x, y).
fn marker(kind: PacketKind, x: f64, y: f64) -> svg::node::element::Element {
    let c = color(kind);
    let poly = |pts: &[(f64, f64)]| {
        let mut s = String::new();
        for (px, py) in pts {
            let _ = write!(s, "{},{} ", round1(x + px), round1(y + py));
        }
        Polygon::new()
            .set("points", s.trim_end())
            .set("fill", c)
            .into()
    };
    match kind {
        PacketKind::KeepaliveProbe => Circle::new()
            .set("cx", round1(x))
            .set("cy", round1(y))
            .set("r", 4.5)
            .set("fill", c)
            .into(),
        PacketKind::WindowProbe => poly(&[(0.0, -5.5), (5.0, 0.0), (0.0, 5.5), (-5.0, 0.0)]),
        PacketKind::Retransmission => poly(&[(0.0, -5.5), (5.0, 4.5), (-5.0, 4.5)]),
        PacketKind::Heartbeat => Rectangle::new()
            .set("x", round1(x - 1.25))
            .set("y", round1(y - 6.0))
            .set("width", 2.5)
            .set("height", 12)
            .set("fill", c)
            .into(),
    }
}

/// A step for about 6–10 labelled ticks over `span_ms`.
fn tick_step(span_ms: u64) -> u64 {
    const STEPS: [u64; 14] = [
        100, 200, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_ms / s <= 10)
        .unwrap_or(1_800_000)
}

/// A tick's label: whole or decimal seconds.
fn seconds(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        let s = format!("{:.2}", ms as f64 / 1000.0);
        format!("{} s", s.trim_end_matches('0'))
    }
}

/// What the right-hand column says about one run.
fn outcome(run: &Run, deadline: u64) -> (String, bool) {
    if run.ended_before_cut {
        return ("ended before the cut".into(), false);
    }
    let Some(lat) = run.latency_ms else {
        let s = match run.timeline.expected_min_ms {
            None => "never, as predicted".to_string(),
            Some(lo) if lo > deadline => format!("not within {}", human_ms(Some(deadline))),
            Some(_) => "never noticed".to_string(),
        };
        return (s, run.agrees);
    };
    let mut s = human_ms(Some(lat));
    if let Some(m) = run.detected_by {
        let _ = write!(s, " {m}");
    }
    if let Some(e) = &run.errno {
        let _ = write!(s, " {e}");
    }
    (s, run.agrees)
}

/// A cell and the [`outcome`] of each of its runs.
type PanelCell<'a> = (&'a CellResult, Vec<(String, bool)>);

/// A panel: one fault, its loads, each with its cells (a row each).
type Panel<'a> = (Fault, Vec<(Load, Vec<PanelCell<'a>>)>);

/// The panels: faults in the order they were run, each with its loads, each with its cells.
fn panels(rep: &CompareReport, deadline: u64) -> Vec<Panel<'_>> {
    let mut out: Vec<Panel<'_>> = Vec::new();
    for c in &rep.results {
        let fi = match out.iter().position(|(f, _)| *f == c.fault) {
            Some(i) => i,
            None => {
                out.push((c.fault, Vec::new()));
                out.len() - 1
            }
        };
        let loads = &mut out[fi].1;
        let cell = (c, c.runs.iter().map(|run| outcome(run, deadline)).collect());
        match loads.iter_mut().find(|(l, _)| *l == c.load) {
            Some((_, cells)) => cells.push(cell),
            None => loads.push((c.load, vec![cell])),
        }
    }
    for (_, loads) in &mut out {
        loads.sort_by_key(|(l, _)| *l);
    }
    out
}

/// The picture of a comparison.
pub fn compare(rep: &CompareReport) -> String {
    let deadline = rep.lab.deadline_ms.max(1);
    // The axis reaches the deadline (nothing is noticed after it; the samples of the last few
    // milliseconds past it are not drawn).
    let step = tick_step(deadline);
    let axis_end = deadline.div_ceil(step) * step;

    let longest_label = rep
        .results
        .iter()
        .map(|c| c.strategy.chars().count() + 2)
        .max()
        .unwrap_or(8)
        .max(12);
    let label_w = longest_label as f64 * CHAR_W + 16.0;
    let panels = panels(rep, deadline);
    let longest_outcome = panels
        .iter()
        .flat_map(|(_, loads)| loads)
        .flat_map(|(_, cells)| cells)
        .flat_map(|(_, outcomes)| outcomes)
        .map(|(words, _)| words.chars().count() + 14)
        .max()
        .unwrap_or(20)
        .max(24);
    let outcome_w = longest_outcome as f64 * CHAR_W + 16.0;
    let x0 = MARGIN + label_w;
    let x_of = |ms: u64| x0 + PLOT_W * (ms.min(axis_end) as f64) / axis_end as f64;
    let width = x0 + PLOT_W + 16.0 + outcome_w + MARGIN;

    let mut doc_body = Group::new();
    let mut y = MARGIN;

    // Title and legend.
    y += 16.0;
    doc_body = doc_body.add(
        text(
            MARGIN,
            y,
            "tcphb compare: what each connection sent after the cut, and when it noticed",
        )
        .set("font-size", 15)
        .set("font-weight", "bold"),
    );
    y += 18.0;
    let facts = &rep.lab.facts;
    let sub = format!(
        "measured in a lab of network namespaces, kernel {}; deadline {}, warm-up {}; x: seconds since the cut",
        facts.kernel.as_deref().unwrap_or("?"),
        human_ms(Some(rep.lab.deadline_ms)),
        human_ms(Some(rep.lab.warmup_ms)),
    );
    doc_body = doc_body.add(text(MARGIN, y, &sub).set("fill", MUTED));
    if rep.partial {
        y += 16.0;
        doc_body = doc_body.add(
            text(
                MARGIN,
                y,
                "partial: interrupted; connections still watched then are not shown",
            )
            .set("fill", DETECTION),
        );
    }
    y += 22.0;
    let mut lx = MARGIN;
    let ly = y;
    let mut legend = Group::new();
    let item = |g: Group, swatch: svg::node::element::Element, name: &str, lx: &mut f64| {
        let g = g
            .add(swatch)
            .add(text(*lx + 14.0, ly + 4.0, name).set("font-size", 11));
        *lx += 14.0 + name.chars().count() as f64 * SMALL_CHAR_W + 22.0;
        g
    };
    for kind in PacketKind::ALL {
        legend = item(legend, marker(kind, lx + 5.0, ly), label(kind), &mut lx);
    }
    legend = item(
        legend,
        Rectangle::new()
            .set("x", round1(lx))
            .set("y", round1(ly - 6.0))
            .set("width", 10)
            .set("height", 12)
            .set("fill", BAND_FILL)
            .set("stroke", BAND_EDGE)
            .into(),
        "predicted band",
        &mut lx,
    );
    legend = item(
        legend,
        Rectangle::new()
            .set("x", round1(lx + 3.5))
            .set("y", round1(ly - 7.0))
            .set("width", 3)
            .set("height", 14)
            .set("fill", DETECTION)
            .into(),
        "noticed",
        &mut lx,
    );
    legend = item(
        legend,
        line(lx + 5.0, ly - 7.0, lx + 5.0, ly + 7.0, TEXT, 1.2)
            .set("stroke-dasharray", "4 3")
            .into(),
        "deadline",
        &mut lx,
    );
    let healed = rep
        .results
        .iter()
        .flat_map(|c| &c.runs)
        .any(|run| run.cut_phase.is_some_and(|c| c.heal_ms.is_some()));
    if healed {
        legend = item(
            legend,
            line(lx + 5.0, ly - 7.0, lx + 5.0, ly + 7.0, MUTED, 1.2)
                .set("stroke-dasharray", "2 2")
                .into(),
            "path back (reboot)",
            &mut lx,
        );
    }
    let legend_w = lx;
    doc_body = doc_body.add(legend);
    y += 16.0;

    for (fault, loads) in panels {
        y += 14.0;
        let panel_top = y;
        let lanes: usize = loads
            .iter()
            .map(|(_, cells)| cells.iter().map(|(c, _)| c.runs.len()).sum::<usize>())
            .sum();
        let head = 24.0;
        let body_h = lanes as f64 * LANE_H + loads.len() as f64 * 20.0;
        let panel_h = head + body_h + 34.0;
        let mut panel = Group::new().set("class", format!("panel fault-{}", fault.name()));
        panel = panel.add(
            Rectangle::new()
                .set("x", round1(MARGIN / 2.0))
                .set("y", round1(panel_top))
                .set("width", round1(width - MARGIN))
                .set("height", round1(panel_h))
                .set("fill", "#fafafa")
                .set("stroke", "#cccccc"),
        );
        panel = panel.add(
            text(MARGIN, panel_top + 17.0, fault.name())
                .set("font-size", 14)
                .set("font-weight", "bold"),
        );
        // What the fault is, in the head row between the cut's label and the deadline's.
        let room = ((PLOT_W - 150.0) / SMALL_CHAR_W) as usize;
        let what: String = fault.what().chars().take(room).collect();
        panel = panel.add(caption(x0 + 34.0, panel_top + 17.0, &format!("({what})")));
        let plot_top = panel_top + head;
        let plot_bottom = plot_top + body_h;
        // Grid and axis.
        let mut t = 0;
        while t <= axis_end {
            let x = x_of(t);
            panel = panel.add(line(x, plot_top, x, plot_bottom, GRID, 1.0));
            panel = panel.add(line(x, plot_bottom, x, plot_bottom + 4.0, TEXT, 1.0));
            panel = panel.add(
                text(x, plot_bottom + 16.0, &seconds(t))
                    .set("text-anchor", "middle")
                    .set("font-size", 11),
            );
            t += step;
        }
        panel = panel.add(line(x0, plot_bottom, x0 + PLOT_W, plot_bottom, TEXT, 1.0));
        panel = panel.add(
            caption(x0 + PLOT_W, plot_bottom + 30.0, "seconds since the cut")
                .set("text-anchor", "end"),
        );
        // The cut and the deadline, labelled in the panel's head row.
        panel = panel.add(line(x0, plot_top - 4.0, x0, plot_bottom, TEXT, 1.5));
        panel = panel.add(caption(x0 + 3.0, plot_top - 7.0, "cut"));
        let xd = x_of(deadline);
        panel = panel.add(
            line(xd, plot_top - 4.0, xd, plot_bottom, TEXT, 1.2).set("stroke-dasharray", "4 3"),
        );
        panel = panel.add(
            caption(
                xd - 3.0,
                plot_top - 7.0,
                &format!("deadline {}", human_ms(Some(deadline))),
            )
            .set("text-anchor", "end"),
        );
        panel = panel.add(caption(
            x0 + PLOT_W + 16.0,
            plot_top - 7.0,
            "noticed after the cut",
        ));

        let mut ly = plot_top;
        for (load, cells) in loads {
            panel = panel.add(
                text(MARGIN, ly + 14.0, &format!("{load}:"))
                    .set("font-style", "italic")
                    .set("fill", MUTED),
            );
            panel = panel.add(line(MARGIN, ly + 19.0, x0 + PLOT_W, ly + 19.0, GRID, 1.0));
            ly += 20.0;
            for (c, outcomes) in cells {
                for (k, (run, outcome)) in c.runs.iter().zip(outcomes).enumerate() {
                    let name = if k == 0 {
                        c.strategy.clone()
                    } else {
                        format!("  #{}", k + 1)
                    };
                    panel = panel.add(lane(
                        &name,
                        c,
                        run,
                        outcome,
                        ly,
                        LaneGeometry {
                            x0,
                            x_of: &x_of,
                            axis_end,
                        },
                    ));
                    ly += LANE_H;
                }
            }
        }
        doc_body = doc_body.add(panel);
        y = panel_top + panel_h;
    }
    y += MARGIN;
    let width = width.max(legend_w + MARGIN);

    Document::new()
        .set("width", round1(width))
        .set("height", round1(y))
        .set("viewBox", (0, 0, round1(width), round1(y)))
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(doc_body)
        .to_string()
        + "\n"
}

struct LaneGeometry<'a> {
    x0: f64,
    x_of: &'a dyn Fn(u64) -> f64,
    axis_end: u64,
}

/// One run's lane, `top` its upper edge; `outcome` its [`outcome`].
fn lane(
    name: &str,
    c: &CellResult,
    run: &Run,
    (words, agrees): (String, bool),
    top: f64,
    g: LaneGeometry<'_>,
) -> Group {
    let t: &Timeline = &run.timeline;
    let mid = top + LANE_H / 2.0;
    let x_of = g.x_of;
    let mut out = Group::new().set("class", format!("row strategy-row load-{}", c.load.name()));
    out = out.set("data-strategy", c.strategy.as_str());
    out = out.add(text(MARGIN + 8.0, mid + 4.0, name));
    // The predicted band, on the cut's axis.
    if let (Some(lo), Some(hi)) = (t.expected_min_ms, t.expected_max_ms) {
        if lo <= g.axis_end {
            let (x1, x2) = (x_of(lo), x_of(hi));
            let mut band = Rectangle::new()
                .set("x", round1(x1.min(x2 - 2.0)))
                .set("y", round1(top + 3.0))
                .set("width", round1((x2 - x1).max(2.0)))
                .set("height", round1(LANE_H - 6.0))
                .set("fill", BAND_FILL)
                .set("stroke", BAND_EDGE)
                .set("stroke-width", 0.8);
            band = band.add(Title::new(format!(
                "predicted {}–{} after the cut",
                human_ms(Some(lo)),
                human_ms(Some(hi))
            )));
            out = out.add(band);
            if hi > g.axis_end {
                out = out.add(
                    text(x_of(g.axis_end) - 2.0, mid + 4.0, "»")
                        .set("text-anchor", "end")
                        .set("fill", BAND_EDGE),
                );
            }
        }
    }
    // How long it was watched after the cut.
    let watched = t.detected_ms.unwrap_or(t.sampled_ms).min(g.axis_end);
    out = out.add(line(g.x0, mid, x_of(watched), mid, "#9a9a9a", 1.0));
    // reboot: the instant the path came back (the peer then answers RST).
    if let Some(heal) = run.cut_phase.and_then(|c| c.heal_ms) {
        let x = x_of(heal);
        out = out.add(
            line(x, top + 2.0, x, top + LANE_H - 2.0, MUTED, 1.2)
                .set("stroke-dasharray", "2 2")
                .add(Title::new(format!("path back {}", human_ms(Some(heal))))),
        );
    }
    // The instant it noticed, under the packets so none is hidden.
    if let Some(d) = t.detected_ms {
        let x = x_of(d);
        out = out.add(
            Rectangle::new()
                .set("x", round1(x - 1.5))
                .set("y", round1(top + 1.0))
                .set("width", 3)
                .set("height", round1(LANE_H - 2.0))
                .set("fill", DETECTION)
                .add(Title::new(format!("noticed {}", human_ms(Some(d))))),
        );
    }
    // Packets; several in one sample are stacked a little so each stays visible.
    let mut prev: Option<(u64, PacketKind, usize)> = None;
    for e in t.events.iter().filter(|e| e.at_ms <= g.axis_end) {
        let n = match prev {
            Some((at, kind, n)) if at == e.at_ms && kind == e.kind => n + 1,
            _ => 0,
        };
        prev = Some((e.at_ms, e.kind, n));
        let dy = [0.0, -3.0, 3.0, -6.0, 6.0][n.min(4)];
        let dx = if n > 4 { 1.5 } else { 0.0 };
        out = out.add(
            Group::new()
                .add(marker(e.kind, x_of(e.at_ms) + dx, mid + dy))
                .add(Title::new(format!(
                    "{} at {}",
                    label(e.kind),
                    human_ms(Some(e.at_ms))
                ))),
        );
    }
    let words = if agrees {
        words
    } else {
        format!("{words} ≠ predicted")
    };
    out = out.add(
        text(g.x0 + PLOT_W + 16.0, mid + 4.0, &words)
            .set("font-size", 11)
            .set("fill", if agrees { TEXT } else { DETECTION }),
    );
    if t.events_dropped > 0 {
        out = out.add(Title::new(format!(
            "{} more packets not drawn",
            t.events_dropped
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(8000), 1000);
        assert_eq!(tick_step(1000), 100);
        assert_eq!(tick_step(40_000), 5000);
        assert_eq!(seconds(2500), "2.5 s");
        assert_eq!(seconds(3000), "3 s");
        assert_eq!(seconds(250), "0.25 s");
    }
}
