//! A real link cut: tcphb connect in the lab's client namespace, tcphb listen (and a server tcphb did not
//! write) in the server namespace, a blackhole route in the router. Needs root; CI is root.
#![cfg(target_os = "linux")]

mod common;

use std::net::TcpListener;

use std::time::Duration;

use common::{
    assert_rejected, code, json, lab_allowed, listen_in, listen_in_with, ss_in, tcphb_in,
    wait_until,
};
use serde_json::json;
use tcphb::lab::{Lab, Node, PathFault};

fn assert_keepalive_timeout(v: &serde_json::Value) {
    common::assert_schema("connect.schema.json", v);
    assert_eq!(v["outcome"], "dead", "{v}");
    assert_eq!(v["detected_by"], "keepalive", "{v}");
    assert_eq!(v["errno"], "ETIMEDOUT", "{v}");
    let silence = v["silence_ms"].as_u64().unwrap();
    // idle 1 s + 3 probes × 1 s after the last ACK: 4000 ms, within 15 %.
    assert!(
        (3400..=4600).contains(&silence),
        "silence {silence} ms: {v}"
    );
    assert_eq!(v["expected_ms"], 4000);
}

#[test]
fn blackhole_is_noticed_by_keepalive_after_idle_plus_probes() {
    if !lab_allowed("blackhole_is_noticed_by_keepalive_after_idle_plus_probes") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let server = lab.server_addr();
    // A tcphb listen and a plain listener that only accepts, both in B.
    let _listen = listen_in(&lab, Node::Server, &format!("{server}:7878"));
    let plain = lab
        .enter(Node::Server, || TcpListener::bind((server, 9000)))
        .unwrap()
        .expect("plain listener in B");

    let args = |port: u16| {
        vec![
            "connect".to_string(),
            format!("{server}:{port}"),
            "--keepalive".into(),
            "1s,1s,3".into(),
            "--format".into(),
            "json".into(),
        ]
    };
    let a1 = args(7878);
    let a2 = args(9000);
    let to_tcphb = tcphb_in(
        &lab,
        Node::Client,
        &a1.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let to_plain = tcphb_in(
        &lab,
        Node::Client,
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (_held, _) = plain.accept().expect("plain server accepts");
    // Let a few keepalive probes be answered, then pull the cable. The connections are idle, so
    // every segment a client receives after the SYN-ACK is the answer to a keepalive probe: wait
    // until each has had two (segs_in ≥ 3), as `ss` reads it from the client's TCP_INFO.
    wait_until(
        "two keepalive probes answered on both connections",
        Duration::from_secs(10),
        || {
            let c: Vec<_> = ss_in(&lab, Node::Client)
                .into_iter()
                .filter(|s| s.state == "ESTAB")
                .collect();
            [7878, 9000].iter().all(|&port| {
                c.iter()
                    .any(|s| s.peer_port() == port && s.num("segs_in") >= 3)
            })
        },
    );
    lab.cut(PathFault::Blackhole).expect("cut");

    for p in [to_tcphb, to_plain] {
        let out = p.wait_output(Duration::from_secs(15));
        assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
        assert_keepalive_timeout(&json(&out));
    }
}

#[test]
fn connect_shows_the_routers_icmp_errors_as_the_cause() {
    if !lab_allowed("connect_shows_the_routers_icmp_errors_as_the_cause") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let server = lab.server_addr();
    let listen = listen_in(&lab, Node::Server, &format!("{server}:7878"));
    let peer = format!("{server}:7878");
    let busy = tcphb_in(
        &lab,
        Node::Client,
        &[
            "connect",
            &peer,
            "--user-timeout",
            "2s",
            "--load",
            "busy",
            "--format",
            "json",
        ],
    );
    // The busy writer has been heard: data flows both ways (its segments are ACKed).
    wait_until(
        "the busy connection to be ACKed",
        Duration::from_secs(10),
        || {
            ss_in(&lab, Node::Client).iter().any(|s| {
                s.state == "ESTAB" && s.peer_port() == 7878 && s.num("bytes_acked") > 100_000
            })
        },
    );
    lab.cut(PathFault::Unreachable).expect("cut");
    let out = busy.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(v["detected_by"], "user_timeout", "{v}");
    let icmp = &v["icmp"];
    assert_eq!(icmp["what"], "host unreachable", "{v}");
    assert_eq!(
        (icmp["icmp_type"].as_u64(), icmp["icmp_code"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(icmp["reporter"], lab.router_addr().to_string(), "{v}");
    assert!(icmp["messages"].as_u64().unwrap() >= 1, "{v}");
    // The first error answers the first segment sent after the silence began.
    assert!(icmp["first_ms"].as_u64().unwrap() < 1000, "{v}");
    // The schema holds this evidence to its contract.
    assert_rejected(
        "connect.schema.json",
        &v,
        &[
            ("schema 1's ICMP router key", |d| {
                let icmp = d["icmp"].as_object_mut().unwrap();
                let x = icmp.remove("reporter").unwrap();
                icmp.insert("from".into(), x);
            }),
            ("an ICMP type out of range", |d| {
                d["icmp"]["icmp_type"] = json!(300)
            }),
            ("ICMP evidence of no message", |d| {
                d["icmp"]["messages"] = json!(0)
            }),
        ],
    );
    drop(listen);
}

/// A rebooted peer answers RST to the next segment it receives — the keepalive probe of an idle
/// connection, the PING of a heartbeat: that RST answers something tcphb sent, so it stays a dead
/// peer (exit 3, detected by reset), unlike a live server's unprompted RST on an idle connection
/// (tests/closed.rs), which is its own close.
#[test]
fn a_rebooted_peers_rst_to_a_probe_or_a_ping_is_a_death_not_its_own_close() {
    if !lab_allowed("a_rebooted_peers_rst_to_a_probe_or_a_ping_is_a_death_not_its_own_close") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let server = lab.server_addr();
    let peer = format!("{server}:7878");
    let listen = listen_in_with(&lab, Node::Server, &peer, &["--rst-on-exit"]);
    let connect = |extra: &[&str]| {
        let mut a = vec!["connect", peer.as_str(), "--format", "json"];
        a.extend_from_slice(extra);
        tcphb_in(&lab, Node::Client, &a)
    };
    let ka = connect(&["--keepalive", "2s,1s,5"]);
    let hb = connect(&["--heartbeat", "500ms,20"]);
    wait_until(
        "both connections established",
        Duration::from_secs(10),
        || {
            ss_in(&lab, Node::Client)
                .iter()
                .filter(|s| s.state == "ESTAB" && s.peer_port() == 7878)
                .count()
                == 2
        },
    );
    // The reboot: the path goes first so the peer's own RSTs are lost, the peer forgets, the path
    // comes back.
    lab.cut(PathFault::Blackhole).expect("cut");
    listen.wait_output_after_kill();
    lab.heal(PathFault::Blackhole).expect("heal");
    for (p, what) in [(ka, "keepalive probe"), (hb, "heartbeat PING")] {
        let out = p.wait_output(Duration::from_secs(15));
        let v = json(&out);
        common::assert_schema("connect.schema.json", &v);
        eprintln!("RST to a {what}: {v}");
        assert_eq!(code(&out), 3, "{what}: {v}");
        assert_eq!(
            (&v["outcome"], &v["detected_by"], &v["errno"]),
            (&json!("dead"), &json!("reset"), &json!("ECONNRESET")),
            "{what}: {v}"
        );
    }
}
