//! The Linux body of the `scale` benchmark (see tests/benches/scale.rs).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tcphb::lab::{Lab, Node, PathFault};

use crate::support::{Killed, env_u64, open_fds};

const INTERVAL_MS: u64 = 1000;
const MISSES: u64 = 3;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in ms.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<u64> = after.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 of stat are the 12th and 13th after the command name.
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    ticks * 1000 / hz
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("scale bench: skipped, the lab needs root");
        return;
    }
    let n = env_u64("TCPHB_BENCH_CONNS", 10_000);
    let healthy = Duration::from_secs(env_u64("TCPHB_BENCH_HEALTHY_SECS", 30));
    let bin = env!("CARGO_BIN_EXE_tcphb");

    let t = Instant::now();
    let lab = Lab::build().expect("build the lab");
    let build = t.elapsed();
    println!(
        "scale bench: {n} connections, heartbeat {INTERVAL_MS}ms × {MISSES}, healthy period {healthy:?}"
    );
    println!("lab build: {:.2} ms", build.as_secs_f64() * 1e3);

    let addr = format!("{}:7878", lab.server_addr());
    let mut listen = Command::new(bin);
    listen
        .args([
            "listen",
            &addr,
            "--heartbeat",
            "1s,3",
            "--max-conns",
            &(n + 100).to_string(),
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    lab.command_in(Node::Server, &mut listen).unwrap();
    let mut listen = Killed(listen.spawn().expect("spawn listen"));
    let lpid = listen.0.id();
    let mut banner = String::new();
    BufReader::new(listen.0.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let stdout = listen.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, serde_json::Value)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send((Instant::now(), v));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = rss_kib(lpid);

    let mut connect = Command::new(bin);
    connect
        .args([
            "connect",
            &addr,
            "--connections",
            &n.to_string(),
            "--format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.command_in(Node::Client, &mut connect).unwrap();
    let _connect = Killed(connect.spawn().expect("spawn connect"));
    let t = Instant::now();
    while open_fds(lpid) < n as usize && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = open_fds(lpid).saturating_sub(8);
    println!(
        "connections held by listen: {held} (all open after {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    // Healthy period: heartbeats flow; nothing may be declared dead.
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_ms(lpid);
    let t0 = Instant::now();
    std::thread::sleep(healthy);
    let cpu = cpu_ms(lpid) - cpu0;
    let secs = t0.elapsed().as_secs_f64();
    let rss = rss_kib(lpid);
    let false_detections = rx
        .try_iter()
        .filter(|(_, v)| v["outcome"] == "dead")
        .count();
    // Each heartbeat is one PING sent and one PONG read by listen.
    let heartbeats = n as f64 * secs * 1000.0 / INTERVAL_MS as f64;
    println!(
        "RSS: {} KiB idle, {} KiB holding {n}: {:.0} bytes per connection (user space; kernel socket memory not included)",
        rss_idle,
        rss,
        (rss.saturating_sub(rss_idle)) as f64 * 1024.0 / n as f64
    );
    println!(
        "CPU over {secs:.0} s healthy: {cpu} ms = {:.1} % of one core, {:.2} ms per 1,000 heartbeats; false detections: {false_detections}",
        cpu as f64 / secs / 10.0,
        cpu as f64 / (heartbeats / 1000.0)
    );

    // Mass cut: every connection loses its peer at once.
    lab.cut(PathFault::Blackhole).expect("cut");
    let cut = Instant::now();
    let budget = Duration::from_millis(INTERVAL_MS * MISSES + 5000);
    let mut late: Vec<i64> = Vec::new();
    let mut from_cut: Vec<i64> = Vec::new();
    while late.len() < n as usize && cut.elapsed() < budget {
        if let Ok((at, v)) = rx.recv_timeout(Duration::from_millis(200))
            && v["detected_by"] == "heartbeat"
        {
            late.push(v["silence_ms"].as_i64().unwrap_or(0) - (INTERVAL_MS * MISSES) as i64);
            from_cut.push(at.duration_since(cut).as_millis() as i64);
        }
    }
    late.sort_unstable();
    from_cut.sort_unstable();
    let on_time = late.iter().filter(|l| **l <= 100).count();
    println!(
        "mass cut: {} of {n} detected by heartbeat; lateness vs {}ms: p50 {} ms, p99 {} ms, max {} ms; {on_time} within +100 ms",
        late.len(),
        INTERVAL_MS * MISSES,
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(0)
    );
    println!(
        "  reported after the cut: p50 {} ms, p99 {} ms, max {} ms (silence counts from each connection's last pong, up to 1 s before the cut)",
        pct(&from_cut, 0.5),
        pct(&from_cut, 0.99),
        from_cut.last().copied().unwrap_or(0)
    );
    drop(_connect);
    drop(listen);
    let t = Instant::now();
    drop(lab);
    println!("lab teardown: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
}
