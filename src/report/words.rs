//! Phrases and sentences shared by the human exporters (table and markdown): the words around the
//! numbers, built from the models.

use std::time::Duration;

use crate::detection::{CloseHow, ClosedBy, Detection, IcmpSeen, Mechanism, Outcome};
use crate::idle::{IdleTimeout, ServerCloseHow};
use crate::predict::{Expected, Prediction};
use crate::scenario::{Fault, Load};
use crate::settings::Effective;
use crate::strategy::Strategy;
use crate::units::Millis;
use crate::units::{format_duration, human_ms, rough_ms, secs2};

use super::model::CompareReport;
use crate::matrix::CellResult;

/// The value, or `-` for none.
pub(super) fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), |v| v.to_string())
}

/// Milliseconds as seconds with two decimals (`4.04 s`).
pub(super) fn secs2_ms(ms: u64) -> String {
    secs2(Duration::from_millis(ms))
}

/// The settings read back, a piece each: `keepalive 5s,5s,3` (or `keepalive off`), `user timeout
/// 20s`, `heartbeat 1s,3`. `short`: as the audit's table abbreviates them, `ka 5s,5s,3`, `uto 20s`,
/// without the heartbeat (another process's socket has none).
pub(super) fn effective_pieces(e: &Effective, short: bool) -> Vec<String> {
    let (ka, uto) = if short {
        ("ka", "uto")
    } else {
        ("keepalive", "user timeout")
    };
    let mut pieces = vec![match e.keepalive() {
        Some((i, n, c)) => format!("{ka} {},{},{c}", format_duration(i), format_duration(n)),
        None => format!("{ka} off"),
    }];
    pieces.extend(
        e.user_timeout()
            .map(|u| format!("{uto} {}", format_duration(u))),
    );
    if !short && let Some((i, m)) = e.heartbeat() {
        pieces.push(format!("heartbeat {},{m}", format_duration(i)));
    }
    pieces
}

/// The settings read back, in words: `keepalive 5s,5s,3, user timeout 20s, heartbeat 1s,3`.
pub(super) fn effective_text(e: &Effective) -> String {
    effective_pieces(e, false).join(", ")
}

/// The closing sentence on agreement with the prediction (nothing when the ending is not judged).
pub(super) fn agreement_text(e: &Expected) -> String {
    match (&e.agrees, &e.disagreement) {
        (Some(false), Some(why)) => format!("Differs from the prediction: {why}.\n"),
        (Some(true), _) => "Matches the prediction.\n".into(),
        _ => String::new(),
    }
}

/// "peer (FIN)", "tcphb (protocol)": who closed a `closed` connection, and how.
pub(super) fn closer_text(d: &Detection) -> String {
    format!(
        "{} ({})",
        d.closed_by.map_or("?", ClosedBy::name),
        match d.how {
            Some(CloseHow::Fin) => "FIN",
            Some(CloseHow::Rst) => "RST",
            Some(h) => h.name(),
            None => "?",
        }
    )
}

/// A sentence for an ending the prediction does not judge: a close (by the peer — `who`, "server" or
/// "client" — or by tcphb) or a reset. `None` for the endings that are judged or still alive.
pub(super) fn ending_sentence(d: &Detection, who: &str) -> Option<String> {
    let not_judged = match d.how {
        Some(CloseHow::Rst) => {
            "a RST that answered nothing tcphb sent, with nothing cut: not a death, so not judged against the prediction"
        }
        _ => "a FIN with nothing cut: not a death, so not judged against the prediction",
    };
    match (d.outcome, d.closed_by, d.detected_by) {
        (Outcome::Closed, Some(ClosedBy::Peer), _) if d.how == Some(CloseHow::Refused) => {
            Some(format!(
                "The {who} refused the heartbeat in its own protocol and ended the conversation: it is alive (not a death, so not judged against the prediction): {}.",
                d.note.as_deref().unwrap_or("see the note")
            ))
        }
        (Outcome::Closed, Some(ClosedBy::Peer), _) if d.idled_ms >= 1000 => Some(format!(
            "The {who} closed this idle connection after {}: its own idle timeout ({not_judged}).",
            human_ms(Some(d.idled_ms))
        )),
        (Outcome::Closed, Some(ClosedBy::Peer), _) => Some(format!(
            "The {who} closed this connection itself, {} after the last byte exchanged ({not_judged}).",
            human_ms(Some(d.idled_ms))
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

/// A predicted detection in a sentence: `5.0 s by keepalive`, or `never: nothing would notice`.
pub fn expected_text(ms: Option<u64>, by: Option<Mechanism>) -> String {
    match (ms, by) {
        (Some(ms), Some(m)) => format!("{} by {}", human_ms(Some(ms)), m.name().replace('_', " ")),
        (Some(ms), None) => human_ms(Some(ms)),
        (None, _) => "never: nothing would notice".into(),
    }
}

/// A predicted detection: `5.0 s (keepalive)`, or `never`.
pub(super) fn predicted(ms: Option<u64>, by: Option<Mechanism>) -> String {
    match (ms, by) {
        (None, _) => "never".into(),
        (Some(ms), Some(m)) => format!("{} ({m})", human_ms(Some(ms))),
        (Some(ms), None) => human_ms(Some(ms)),
    }
}

/// The idle timeout in one sentence (and the server's own idle close in another).
pub(super) fn idle_text(i: &IdleTimeout) -> String {
    let how = format!("Tested with {}.", i.method.describe());
    let server = i.server_close.as_ref().map_or(String::new(), |c| {
        format!(
            " The server itself closed {} idle connections ({}), the first after {}: its own idle timeout{}.",
            c.connections,
            match c.how {
                ServerCloseHow::Fin => "FIN",
                ServerCloseHow::Rst => "RST",
            },
            secs2_ms(c.after_ms),
            if i.high_ms.is_none_or(|h| h > c.after_ms) {
                ", which ends idle connections before the path does"
            } else {
                ""
            }
        )
    });
    if i.partial {
        let high = i.high_ms.map_or("not yet found".into(), secs2_ms);
        return format!(
            "Idle timeout of the path (measured, interrupted after {} rounds): at least {}, at most {high}. {how}{server} Evidence from {} connections:\n",
            i.rounds,
            secs2_ms(i.low_ms),
            i.evidence.len()
        );
    }
    match (i.high_ms, i.behaviour) {
        (Some(high), Some(b)) => format!(
            "Idle timeout of the path (measured): between {} and {}; the path {}. {how}{server} Evidence from {} connections in {} rounds, {} in all:\n",
            secs2_ms(i.low_ms),
            secs2_ms(high),
            b.describe(),
            i.evidence.len(),
            i.rounds,
            human_ms(Some(i.elapsed_ms))
        ),
        _ if i.server_close.is_some() => format!(
            "Idle timeout of the path (measured): none seen; every connection tested up to {} still answered. {how}{server} {} connections, {} in all:\n",
            secs2_ms(i.low_ms),
            i.evidence.len(),
            human_ms(Some(i.elapsed_ms))
        ),
        _ => format!(
            "Idle timeout of the path (measured): none up to {}: every connection idle that long still answered. {how} {} connections, {} in all:\n",
            secs2_ms(i.max_ms),
            i.evidence.len(),
            human_ms(Some(i.elapsed_ms))
        ),
    }
}

/// A mechanism in a compare cell, abbreviated (the legend under the table spells them out).
pub(super) fn short(m: Mechanism) -> &'static str {
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

/// One line per (fault, load) whose connections received ICMP errors: what, from whom, how many,
/// and which strategies saw them — the cause, whatever errno the kernel ended with.
pub(super) fn icmp_causes(rep: &CompareReport) -> Vec<String> {
    // In the order first seen: (fault, load), its first ICMP errors, and who saw them how often.
    let mut groups: Vec<((Fault, Load), &IcmpSeen, Vec<String>)> = Vec::new();
    for r in &rep.results {
        let Some(i) = &r.icmp else { continue };
        let who = format!("{} {}×", r.strategy, i.messages);
        match groups.iter_mut().find(|g| g.0 == (r.fault, r.load)) {
            Some(g) => g.2.push(who),
            None => groups.push(((r.fault, r.load), i, vec![who])),
        }
    }
    groups
        .into_iter()
        .map(|((fault, load), first, who)| {
            format!(
                "{fault} {load}: {} from {} ({})",
                first.what,
                first.reporter,
                who.join(", ")
            )
        })
        .collect()
}

/// Which mechanism notices first for the requested strategy, idle and busy, and why.
pub fn probe_summary(requested: &Strategy, idle: &Prediction, busy: &Prediction) -> Vec<String> {
    let say = |load: &str, p: &Prediction| match (p.expected, p.mechanism) {
        (Some(t), Some(m)) => format!(
            "{load}: {} notices first, after {} — {}.",
            m.name().replace('_', " "),
            human_ms(Some(t.ms())),
            p.reason
        ),
        _ => format!("{load}: nothing notices — {}.", p.reason),
    };
    vec![
        format!("With {requested}, counted from the last packet heard:"),
        say("  idle", idle),
        say("  busy", busy),
    ]
}

/// A compare cell in pieces, none of which may be split: the measured time (with its spread, the runs
/// that noticed, and `*` where it differs from the prediction), the mechanism and the errno; or, when
/// nothing noticed within the deadline, `> 8.0 s` and the prediction `≈15 min rtx`; `never` only
/// where nothing can ever notice.
pub(super) fn cell_pieces(r: &CellResult, deadline_ms: u64) -> Vec<String> {
    let mark = if r.agrees { "" } else { " *" };
    let Some(lat) = r.latency_ms else {
        return match r.expected_ms {
            Some(ms) => vec![
                format!("> {}{mark}", human_ms(Some(deadline_ms))),
                format!("≈{} {}", rough_ms(ms), r.expected_by.map_or("?", short)),
            ],
            None => vec![format!("never{mark}")],
        };
    };
    let mut pieces = vec![format!("{}{mark}", human_ms(Some(lat)))];
    if r.runs.len() > 1 {
        let spread = |ms: Option<u64>| ms.map(|ms| human_ms(Some(ms)));
        if let (Some(lo), Some(hi)) = (spread(r.latency_min_ms), spread(r.latency_max_ms))
            && lo != hi
        {
            pieces.push(format!("[{lo}–{hi}]"));
        }
        if r.noticed < r.runs.len() {
            pieces.push(format!("({}/{})", r.noticed, r.runs.len()));
        }
    }
    pieces.push(r.detected_by.map_or("?", short).to_string());
    pieces.push(opt(&r.errno));
    pieces
}

/// A compare cell on one line: `3.9 s ka ETIMEDOUT`, `> 8.0 s · ≈15 min rtx`, `never`.
pub(super) fn cell_line(r: &CellResult, deadline_ms: u64) -> String {
    let sep = if r.latency_ms.is_some() { " " } else { " · " };
    cell_pieces(r, deadline_ms).join(sep)
}

/// What the cells and their abbreviations mean, one sentence each.
pub(super) fn legend(rep: &CompareReport) -> Vec<String> {
    let deadline = human_ms(Some(rep.lab.deadline_ms));
    let median = if rep.lab.repeat > 1 {
        format!(
            ", median [min–max] of {} runs, (k/n) runs that noticed",
            rep.lab.repeat
        )
    } else {
        String::new()
    };
    let mut lines = vec![
        format!("Each cell: the measured time from the cut to the detection{median}, the mechanism and the errno."),
        format!("> {deadline} · ≈15 min rtx: nothing noticed within the deadline; the prediction says when and what would. never: nothing ever can."),
        "ka keepalive, rtx retransmission, uto user timeout, hb heartbeat, rst reset, eof the peer's FIN, icmp unreachable; - no errno; * differs from the prediction.".into(),
    ];
    if let Some(cmd) = &rep.lab.server_command {
        lines.push(format!(
            "{SERVER_ROW}: when your server (`{cmd}`) noticed its dead client, from the cut (the median over the strategies' connections; the mechanism judged from its socket's last state); n/a: the fault stopped the server itself."
        ));
    }
    if rep.partial {
        lines.push("Interrupted: partial results; cells left empty were not measured.".into());
    }
    lines
}

/// The label of `compare --server`'s row.
pub(super) const SERVER_ROW: &str = "your server";

/// `compare --server`'s cell for one (fault, load): when the operator's server noticed the dead
/// client, the median over the strategies' connections: `4.1 s ka ETIMEDOUT`, `> 8.0 s`, `n/a`.
pub(super) fn server_cell(rep: &CompareReport, fault: Fault, load: Load) -> String {
    if matches!(fault, Fault::Freeze | Fault::Crash | Fault::Reboot) {
        return "n/a".into();
    }
    let noticed = rep
        .results
        .iter()
        .filter(|r| r.fault == fault && r.load == load)
        .filter_map(|r| r.server.as_ref());
    match crate::matrix::ServerRun::median(noticed) {
        Some(s) => format!(
            "{} {} {}",
            human_ms(Some(s.latency_ms)),
            s.detected_by.map_or("?", short),
            opt(&s.errno)
        ),
        None => format!("> {}", human_ms(Some(rep.lab.deadline_ms))),
    }
}

/// The bottom line in one or two short sentences: what noticed every fault and how fast, and what
/// nothing noticed. `loads`: the loads measured, sorted.
pub(super) fn answer_sentences(rep: &CompareReport, loads: &[Load]) -> Vec<String> {
    let a = &rep.answer;
    let every = match loads {
        [Load::Idle, Load::Busy] => "every fault, idle and busy,".to_string(),
        [l] => format!("every fault ({l})"),
        _ => "every fault".to_string(),
    };
    let mut out = Vec::new();
    match (a.noticed_all.as_slice(), &a.best) {
        ([first, rest @ ..], _) => {
            let mut s = format!(
                "{} noticed {every} within {}",
                first.strategy,
                human_ms(Some(first.worst_ms))
            );
            if !rest.is_empty() {
                let others: Vec<String> = rest
                    .iter()
                    .map(|w| format!("{} ({})", w.strategy, human_ms(Some(w.worst_ms))))
                    .collect();
                s += &format!("; so did {}", others.join(", "));
            }
            out.push(s + ".");
        }
        ([], Some(b)) => out.push(format!(
            "No strategy noticed {every}; {} noticed the most: {} of {}.",
            b.strategy, b.noticed, b.of
        )),
        ([], None) => out.push("No strategy noticed anything within the deadline.".into()),
    }
    if a.unnoticed.is_empty() {
        if a.noticed_all.is_empty() {
            out.push("Every fault was noticed by some strategy.".into());
        }
    } else {
        let cells: Vec<String> = a
            .unnoticed
            .iter()
            .map(|c| format!("{} {}", c.fault, c.load))
            .collect();
        out.push(format!(
            "Nothing noticed {} within {}.",
            cells.join(", "),
            human_ms(Some(rep.lab.deadline_ms))
        ));
    }
    out
}
