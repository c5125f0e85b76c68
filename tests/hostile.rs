//! Hostile and broken clients get a bounded cost and a logged reason, and do not hurt the others:
//! a good client stays alive and a silent one is still caught on time while the abuse goes on.
//!
//! Waits are on events (a socket closed by the server, the listener's accept queue read with `ss`),
//! so this is Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{code, connect, json, listen, listen_undrained, ss, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

fn events_by_peer(stdout: &[u8]) -> (HashMap<String, Value>, Value) {
    let text = String::from_utf8_lossy(stdout);
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for l in &lines {
        common::assert_schema("listen-event.schema.json", l);
    }
    let summary = lines.pop().expect("summary line");
    let by = lines
        .into_iter()
        .map(|v| (v["peer"].as_str().unwrap().to_string(), v))
        .collect();
    (by, summary)
}

#[test]
fn hostile_clients_are_cut_off_with_a_reason_while_others_keep_their_deadlines() {
    // Nobody reads its stdout during the abuse: 200 events overflow the pipe, and must not stall the
    // event loop that keeps everyone's deadlines.
    let (mut server, port) = listen_undrained(&["--heartbeat", "300ms,3", "--format", "json"]);
    let addr = ("127.0.0.1", port);
    let good = connect(&[
        &format!("127.0.0.1:{port}"),
        "--heartbeat",
        "200ms,3",
        "--duration",
        "4s",
        "--format",
        "json",
    ]);

    // Answers pings for 1.5 s, then hangs (socket open, nothing answered) until the server, having
    // declared it dead, closes it.
    let victim = TcpStream::connect(addr).unwrap();
    let victim_addr = victim.local_addr().unwrap().to_string();
    let victim_thread = thread::spawn(move || {
        let mut w = victim.try_clone().unwrap();
        let mut r = BufReader::new(victim);
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        let mut line = String::new();
        let mut answered = 0;
        // The 1.5 s of answering is the experiment: a client that was alive, then hung.
        while start.elapsed() < Duration::from_millis(1500) {
            line.clear();
            if r.read_line(&mut line).is_ok()
                && let Some(seq) = line.trim().strip_prefix("PING ")
            {
                w.write_all(format!("PONG {seq}\n").as_bytes()).unwrap();
                answered += 1;
            }
        }
        let stopped = Instant::now();
        // Hung: read (the server's further pings) without answering, until the server closes.
        let mut buf = [0u8; 256];
        let closed = loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) if start.elapsed() > Duration::from_secs(15) => {
                    panic!("the server never closed the hung victim")
                }
                Ok(0) => break Instant::now(),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Instant::now(),
                _ => {}
            }
        };
        (answered, stopped, closed)
    });

    let mut long_line = TcpStream::connect(addr).unwrap();
    long_line.write_all(&[b'A'; 5000]).unwrap();
    long_line.write_all(b"\n").unwrap();
    let mut garbage = TcpStream::connect(addr).unwrap();
    let bytes: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    garbage.write_all(&bytes).unwrap();
    let mut junk_lines = TcpStream::connect(addr).unwrap();
    junk_lines
        .write_all(&b"HELLO? is this thing on\n".repeat(100))
        .unwrap();
    let never_reads = TcpStream::connect(addr).unwrap();
    let drip = TcpStream::connect(addr).unwrap();
    let drip_addr = drip.local_addr().unwrap().to_string();
    let drip_thread = thread::spawn(move || {
        let mut d = drip;
        for b in b"PING 12345678" {
            if d.write_all(&[*b]).is_err() {
                break;
            }
            // The drip rate is the experiment: one byte every 150 ms, never a whole line in time.
            thread::sleep(Duration::from_millis(150));
        }
    });
    let mut flood = Vec::new();
    for _ in 0..200 {
        let s = TcpStream::connect(addr).unwrap();
        flood.push(s.local_addr().unwrap().to_string());
    }

    let out = good.wait_output(Duration::from_secs(15));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(
        code(&out),
        0,
        "the good client must stay alive through the abuse: {v}"
    );
    assert_eq!(v["outcome"], "alive");
    let (answered, victim_stopped, victim_closed) = victim_thread.join().unwrap();
    drip_thread.join().unwrap();

    server.drain_stdout();
    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 3);
    let (by, summary) = events_by_peer(&out.stdout);

    // The silent victim is caught within interval × misses of its last answer, abuse or not.
    let ev = &by[&victim_addr];
    assert_eq!(ev["detected_by"], "heartbeat", "{ev}");
    let silence = ev["silence_ms"].as_u64().unwrap();
    // 300 ms × 3 after its last PONG, a floor (the timer never fires early); 250 ms of slack for
    // the abuse, short of a fourth miss (1200).
    assert!(
        (900..=1150).contains(&silence),
        "victim silence {silence} ms: {ev}"
    );
    // It answered pings while alive, and the server closed it interval × misses (900 ms) after its
    // last answer, which came at most one interval (300 ms) before it stopped answering: 600–900 ms
    // after it stopped, plus scheduling slack on a busy 2-core machine under this abuse.
    assert!(answered >= 3, "the victim answered only {answered} pings");
    let caught = victim_closed.duration_since(victim_stopped);
    eprintln!("victim: answered {answered} pings, closed {caught:?} after it stopped answering");
    assert!(
        caught >= Duration::from_millis(500) && caught <= Duration::from_millis(1150),
        "victim closed {caught:?} after it stopped answering: {ev}"
    );

    let note = |s: &TcpStream| {
        let e = &by[&s.local_addr().unwrap().to_string()];
        assert_eq!(e["outcome"], "closed", "{e}");
        e["note"].as_str().unwrap_or_default().to_string()
    };
    assert!(note(&long_line).contains("longer than 1024 bytes"));
    assert!(note(&garbage).contains("longer than 1024 bytes"));
    assert!(note(&junk_lines).contains("not a heartbeat peer"));
    // Silent or dripping clients never answered a heartbeat (only complete lines count): tcphb closes
    // them as non-speakers of the protocol, not as dead peers.
    for addr in [never_reads.local_addr().unwrap().to_string(), drip_addr] {
        let e = &by[&addr];
        assert_eq!(e["outcome"], "closed", "{e}");
        assert_eq!(e["closed_by"], "tcphb", "{e}");
        assert_eq!(e["how"], "no_heartbeat", "{e}");
        assert!(e["detected_by"].is_null(), "{e}");
    }
    // Every connect-and-vanish client is accounted for.
    let flooded = flood.iter().filter(|a| by.contains_key(*a)).count();
    assert_eq!(flooded, 200, "{summary}");
    assert_eq!(summary["events_dropped"], 0);
}

#[test]
fn connections_over_max_conns_are_refused_cleanly_and_counted() {
    let (server, port) = listen(&["--max-conns", "3", "--format", "json"]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // All three accepted (and counted) by tcphb: the listener's accept queue is empty.
    wait_until(
        "the three held connections accepted",
        Duration::from_secs(10),
        || {
            ss().iter()
                .any(|s| s.state == "LISTEN" && s.local_port() == port && s.recv_q == 0)
        },
    );
    for _ in 0..2 {
        let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 1];
        match extra.read(&mut buf) {
            Ok(0) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            Ok(n) => panic!("refused connection got {n} bytes"),
        }
    }
    for mut h in held.iter() {
        h.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1];
        let e = h.read(&mut buf).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "held connections stay open"
        );
    }
    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 0);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 3);
    assert_eq!(summary["refused"], 2);
    assert_eq!(summary["open_at_exit"], 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("--max-conns 3"),
        "{stderr}"
    );
}
