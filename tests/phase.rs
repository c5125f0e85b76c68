//! Phase-exact predictions in the lab: the same keepalive settings cut before and after an answered
//! probe give different detection times, and every run falls inside the band predicted for the
//! phase the kernel's timer was in at the cut. ICMP evidence names an unreachable fault's cause even
//! where the errno stays ETIMEDOUT. Needs root (CI is root).
#![cfg(target_os = "linux")]

mod common;

use std::process::Command;

use common::{bin, compare_json as compare, lab_allowed};
use serde_json::Value;

/// Margin allowed outside a run's own band: tcphb's event loop and TCP_INFO read on a shared machine.
const MARGIN_MS: u64 = 100;

/// Every run of every cell inside its own band, and the cell says it agrees.
fn assert_in_own_band(v: &Value) -> Vec<u64> {
    let mut silences = Vec::new();
    for cell in v["results"].as_array().unwrap() {
        for run in cell["runs"].as_array().unwrap() {
            let silence = run["silence_ms"].as_u64().unwrap();
            let (lo, hi) = (
                run["expected_min_ms"].as_u64().expect("a band"),
                run["expected_max_ms"].as_u64().expect("a band"),
            );
            assert!(
                lo <= run["expected_ms"].as_u64().unwrap()
                    && run["expected_ms"].as_u64() <= Some(hi)
            );
            assert!(
                silence + MARGIN_MS >= lo && silence <= hi + MARGIN_MS,
                "silence {silence} outside its band [{lo}, {hi}]: {run}"
            );
            assert_eq!(run["agrees"], true, "{run}");
            assert!(
                run["cut_phase"].is_object(),
                "the timer was read at the cut: {run}"
            );
            silences.push(silence);
        }
        assert_eq!(cell["agrees"], true, "{cell}");
    }
    silences
}

#[test]
fn the_phase_of_the_cut_moves_detection_and_each_run_meets_its_own_band() {
    if !lab_allowed("the_phase_of_the_cut_moves_detection_and_each_run_meets_its_own_band") {
        return;
    }
    // idle 1 s < interval 4 s, user timeout 3 s. Cut 0.5 s after connecting (before the first
    // probe): the probe at 1 s goes out, the next tick at 5 s finds 3 s passed with a probe out:
    // 5 s of silence. Cut after the probe at 1 s was answered: the timer was re-armed for 5 s, not
    // 2 s; at 5 s the new probe goes out, and the tick at 9 s gives up: 8 s of silence.
    let spec = [
        "-s",
        "ka=1s,4s,2+uto=3s",
        "--fault",
        "blackhole",
        "--load",
        "idle",
    ];
    let early = compare(&[&spec[..], &["--warmup", "500ms", "--deadline", "7s"]].concat());
    let late = compare(&[&spec[..], &["--warmup", "2s", "--deadline", "10s"]].concat());
    let early = assert_in_own_band(&early);
    let late = assert_in_own_band(&late);
    assert!(
        early[0] + 2500 < late[0],
        "a cut after an answered probe is noticed about one interval later: {early:?} vs {late:?}"
    );
}

#[test]
fn busy_user_timeouts_meet_narrow_bands_of_their_own_run() {
    if !lab_allowed("busy_user_timeouts_meet_narrow_bands_of_their_own_run") {
        return;
    }
    // unreachable: the router's ICMP errors about retransmissions revert the RTO back-off and can
    // re-arm the timer past the user timeout (RFC 6069): which ones came depends on the router's
    // rate limit, so each run is predicted from the ICMP errors it received. freeze: the user
    // timeout counts from the first zero-window probe, which comes once the frozen peer's buffer
    // is full: each run from the one it sampled.
    let v = compare(&[
        "-s",
        "uto=2s",
        "-s",
        "uto=3s",
        "--fault",
        "unreachable,freeze,blackhole",
        "--load",
        "busy",
        "--repeat",
        "2",
        "--deadline",
        "8s",
    ]);
    for cell in v["results"].as_array().unwrap() {
        assert_eq!(cell["detected_by"], "user_timeout", "{cell}");
        for run in cell["runs"].as_array().unwrap() {
            // The band's own basis: freeze counts from the fault, the others from the last packet
            // heard.
            let measured = match cell["expected_basis"].as_str() {
                Some("fault") => run["latency_ms"].as_u64(),
                _ => run["silence_ms"].as_u64(),
            }
            .unwrap();
            let (e, lo, hi) = (
                run["expected_ms"].as_u64().unwrap(),
                run["expected_min_ms"].as_u64().unwrap(),
                run["expected_max_ms"].as_u64().unwrap(),
            );
            assert!(
                measured + MARGIN_MS >= lo && measured <= hi + MARGIN_MS,
                "{measured} ms outside its band [{lo}, {hi}]: {run}"
            );
            assert_eq!(run["agrees"], true, "{run}");
            assert!(
                hi - lo <= (e * 8 / 100).max(200),
                "a run's band is for the timer slack alone: [{lo}, {hi}] around {e}: {run}"
            );
        }
    }
}

#[test]
fn icmp_evidence_names_the_cause_even_when_the_errno_does_not() {
    if !lab_allowed("icmp_evidence_names_the_cause_even_when_the_errno_does_not") {
        return;
    }
    let v = compare(&[
        "-s",
        "ka=1s,1s,3",
        "-s",
        "uto=2s",
        "--fault",
        "unreachable,blackhole",
        "--load",
        "idle,busy",
        "--deadline",
        "6s",
    ]);
    let cell = |s: &str, f: &str, l: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy"] == s && r["fault"] == f && r["load"] == l)
            .unwrap_or_else(|| panic!("no cell {s} {f} {l}"))
            .clone()
    };
    // Idle keepalive: the kernel ignores ICMP about its probes, so the errno stays ETIMEDOUT; the
    // router's "host unreachable" is still seen, once per probe.
    let ka = cell("ka=1s,1s,3", "unreachable", "idle");
    assert_eq!(ka["errno"], "ETIMEDOUT", "{ka}");
    let icmp = &ka["icmp"];
    assert_eq!(icmp["what"], "host unreachable", "{ka}");
    assert_eq!(icmp["reporter"], "198.18.0.1", "{ka}");
    assert_eq!(
        (icmp["icmp_type"].as_u64(), icmp["icmp_code"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(
        (3..=5).contains(&icmp["messages"].as_u64().unwrap()),
        "one per probe: {ka}"
    );
    // Busy: the router answers retransmissions too, and the errno agrees.
    let busy = cell("uto=2s", "unreachable", "busy");
    assert_eq!(busy["errno"], "EHOSTUNREACH", "{busy}");
    assert!(busy["icmp"]["messages"].as_u64().unwrap() >= 1, "{busy}");
    assert!(busy["icmp"]["first_ms"].as_u64().unwrap() < 1000, "{busy}");
    // A blackhole sends nothing back.
    for (s, l) in [("ka=1s,1s,3", "idle"), ("uto=2s", "busy")] {
        assert!(cell(s, "blackhole", l)["icmp"].is_null());
    }
    // The table names the cause.
    let out = Command::new(bin())
        .args([
            "compare",
            "-s",
            "uto=2s",
            "--fault",
            "unreachable",
            "--load",
            "busy",
        ])
        .args(["--deadline", "4s", "--warmup", "1s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unreachable busy: host unreachable from 198.18.0.1 (uto=2s "),
        "{text}"
    );
}
