//! `probe --detect-within D --verify`: the recommendation is measured in a real lab and must hold —
//! every covered fault noticed within D, idle and busy. Needs root (CI is root).
#![cfg(target_os = "linux")]

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::sync::Mutex;

use common::{bin, code, json, lab_allowed, listen};
use serde_json::Value;

/// One verification at a time: each builds ten labs and watches thirty connections on one event
/// loop, and four of them side by side on two cores delay that loop by hundreds of milliseconds — a
/// load of the test harness's making, which no single `probe --verify` puts on a machine.
static ONE_LAB_RUN: Mutex<()> = Mutex::new(());

/// Run `probe 127.0.0.1:PORT --detect-within D --verify --format json`; insist on exit 0 and a
/// schema-valid report, and return its recommendation.
fn verify(port: u16, within: &str) -> Value {
    let _alone = ONE_LAB_RUN.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(bin())
        .args([
            "probe",
            &format!("127.0.0.1:{port}"),
            "--detect-within",
            within,
        ])
        .args(["--verify", "--format", "json"])
        .output()
        .expect("run tcphb probe");
    let v = json(&out);
    common::assert_schema("probe.schema.json", &v);
    let rec = v["recommendation"].clone();
    assert_eq!(
        code(&out),
        0,
        "--detect-within {within}: the promise broke: {rec:#}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rec
}

/// Every covered cell measured in every run, its worst silence within the deadline.
fn assert_holds(rec: &Value, within_ms: u64) {
    let v = &rec["verification"];
    assert_eq!(v["holds"], true, "{rec:#}");
    assert_eq!(v["deadline_ms"], within_ms);
    assert_eq!(v["basis"], "last_heard");
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 10, "5 faults × idle, busy: {v:#}");
    for c in cells.iter().filter(|c| c["covered"] == true) {
        assert_eq!(c["measured"], 3, "{c}");
        assert_eq!(c["noticed"], 3, "{c}");
        let worst = c["worst_ms"].as_u64().unwrap_or(u64::MAX);
        assert!(worst <= within_ms, "missed {within_ms} ms: {c}");
    }
    // The prediction promised no more than the deadline either.
    assert!(
        rec["worst_idle_ms"].as_u64().unwrap() <= within_ms,
        "{rec:#}"
    );
    assert!(
        rec["worst_busy_ms"].as_u64().unwrap() <= within_ms,
        "{rec:#}"
    );
}

fn faults(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

fn against_a_pinged_peer(within: &str, within_ms: u64) {
    let (_peer, port) = listen(&[]);
    let rec = verify(port, within);
    assert_eq!(rec["peer_answers_ping"], true, "{rec:#}");
    assert!(
        rec["flags"].as_str().unwrap().contains("--heartbeat"),
        "{rec:#}"
    );
    assert!(faults(&rec["covers"]).contains(&"freeze"), "{rec:#}");
    assert!(rec["uncovered"].as_array().unwrap().is_empty(), "{rec:#}");
    assert_holds(&rec, within_ms);
}

#[test]
fn three_seconds_holds_in_the_lab() {
    if !lab_allowed("three_seconds_holds_in_the_lab") {
        return;
    }
    against_a_pinged_peer("3s", 3000);
}

#[test]
fn six_seconds_holds_in_the_lab() {
    if !lab_allowed("six_seconds_holds_in_the_lab") {
        return;
    }
    against_a_pinged_peer("6s", 6000);
}

#[test]
fn twenty_seconds_holds_in_the_lab() {
    if !lab_allowed("twenty_seconds_holds_in_the_lab") {
        return;
    }
    against_a_pinged_peer("20s", 20_000);
}

#[test]
fn a_peer_that_does_not_answer_ping_gets_no_heartbeat_and_freeze_is_uncovered() {
    if !lab_allowed("a_peer_that_does_not_answer_ping_gets_no_heartbeat_and_freeze_is_uncovered") {
        return;
    }
    // Accepts and stays silent: the listen queue completes the handshake, nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let rec = verify(port, "6s");
    assert_eq!(rec["peer_answers_ping"], false, "{rec:#}");
    assert!(
        !rec["flags"].as_str().unwrap().contains("--heartbeat"),
        "{rec:#}"
    );
    assert!(!faults(&rec["covers"]).contains(&"freeze"), "{rec:#}");
    let uncovered = rec["uncovered"].as_array().unwrap();
    assert_eq!(uncovered.len(), 1, "{rec:#}");
    assert_eq!(uncovered[0]["fault"], "freeze");
    // Freeze is measured but not judged; every other fault holds.
    let v = &rec["verification"];
    for c in v["cells"].as_array().unwrap() {
        if c["fault"] == "freeze" {
            assert_eq!(c["covered"], false, "{c}");
            assert!(c["holds"].is_null(), "{c}");
        }
    }
    assert_holds(&rec, 6000);
    drop(silent);
}
