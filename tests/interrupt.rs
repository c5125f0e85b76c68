//! Ctrl-C keeps what was measured: `connect --connections`, `probe --idle-timeout` and `compare`
//! print their report marked partial on SIGINT, and exit 130.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, code, json, lab_allowed, listen, ss, wait_until};
use nix::sys::signal::Signal;

/// Established connections from this host to `port` (client side only).
fn established_to(port: u16) -> usize {
    ss().iter()
        .filter(|s| s.state == "ESTAB" && s.peer_port() == port)
        .count()
}

#[test]
fn connect_many_prints_what_it_has_on_sigint_and_exits_130() {
    let (server, port) = listen(&[]);
    let addr = format!("127.0.0.1:{port}");
    let p = common::connect(&[&addr, "--connections", "12", "--format", "json"]);
    // The event: every connection is up (and so being watched).
    wait_until(
        "12 connections established",
        Duration::from_secs(20),
        || established_to(port) == 12,
    );
    p.signal(Signal::SIGINT);
    let out = p.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 130, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(v["partial"], true, "{v}");
    assert_eq!(v["connections"], 12, "{v}");
    assert_eq!(v["alive"], 12, "{v}");
    drop(server);
}

#[test]
fn probe_idle_timeout_prints_the_bracket_so_far_on_sigint() {
    let (server, port) = listen(&[]);
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(common::bin())
        .args(["probe", &addr, "--idle-timeout", "10m", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcphb probe");
    let p = Proc::new(child);
    // The event: the first round's connections are up and idling (the search would take 10 min).
    wait_until(
        "the first round's connections",
        Duration::from_secs(20),
        || established_to(port) >= tcphb::idle::PER_ROUND,
    );
    p.signal(Signal::SIGINT);
    let out = p.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 130, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("probe.schema.json", &v);
    assert_eq!(v["partial"], true, "{v}");
    let found = &v["idle_timeout"];
    assert_eq!(found["partial"], true, "{v}");
    assert_eq!(found["max_ms"], 600_000, "{v}");
    drop(server);
}

/// SIGINT at a random moment of a comparison — while labs are built, during the warm-up, or after
/// the cut — always gives a report marked partial whose cells were all measured, and exit 130.
#[test]
fn compare_prints_the_cells_measured_on_sigint_at_any_moment() {
    if !lab_allowed("compare_prints_the_cells_measured_on_sigint_at_any_moment") {
        return;
    }
    for _ in 0..3 {
        let child = Command::new(common::bin())
            .args([
                "compare",
                "-s",
                "hb=300ms,2",
                "-s",
                "none",
                "--fault",
                "blackhole",
                "--load",
                "idle",
                "--warmup",
                "1s",
                "--deadline",
                "30s",
                "--format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcphb compare");
        let p = Proc::new(child);
        // A random moment, on purpose: the report must hold whatever was under way.
        std::thread::sleep(Duration::from_millis(fastrand::u64(500..4000)));
        p.signal(Signal::SIGINT);
        let out = p.wait_output(Duration::from_secs(15));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 130, "{stderr}");
        let v = json(&out);
        common::assert_schema("compare.schema.json", &v);
        assert_eq!(v["partial"], true, "{v}");
        for cell in v["results"].as_array().unwrap() {
            let runs = cell["runs"].as_array().unwrap();
            assert!(!runs.is_empty(), "a cell without runs is shown: {cell}");
            for r in runs {
                // Only what ended is kept: nothing still watched at the signal passes for `never`.
                assert_ne!(r["outcome"], "alive", "{cell}");
            }
        }
        // `none` can only be watched, never noticed: it is never in a partial report.
        assert!(
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["strategy"] != "none"),
            "{v}"
        );
    }
}
