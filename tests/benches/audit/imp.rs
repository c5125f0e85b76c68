//! The Linux body of the `audit` benchmark (see tests/benches/audit.rs).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Killed, env_u64, open_fds};

/// CPU time (user + system) of the waited-for children so far.
fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

pub fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("audit bench: skipped, reading another process's sockets needs root");
        return;
    }
    let n = env_u64("TCPHB_BENCH_CONNS", 10_000) as usize;
    let bin = env!("CARGO_BIN_EXE_tcphb");
    let want = (n as u64) * 2 + 1000;
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        want.min(hard),
        hard,
    )
    .expect("raise the descriptor limit");

    let mut listen = Command::new(bin);
    listen
        // Keepalive that never fires during the run: 10,000 connections opened within a second
        // probe in lockstep, and the burst overflows even loopback's backlog (see README).
        .args(["listen", "127.0.0.1:0", "--keepalive", "1h,1m,4"])
        .args(["--max-conns", &(n + 100).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut listen = Killed(listen.spawn().expect("spawn tcphb listen"));
    let pid = listen.0.id().to_string();
    let mut banner = String::new();
    BufReader::new(listen.0.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let port: u16 = banner
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner:?}"));
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // The event: listen holds every connection (its descriptors, counted).
    let held = || open_fds(listen.0.id());
    let t = Instant::now();
    while held() < n {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "listen accepted {} of {n}",
            held()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("audit bench: {n} connections held by one tcphb listen (pid {pid})");

    let audit = |extra: &[&str]| {
        let out = Command::new(bin)
            .args(["audit", "--pid", &pid, "--format", "json"])
            .args(extra)
            .output()
            .expect("run tcphb audit");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        out
    };
    let mut walls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = audit(&[]);
        walls.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            v["audited"].as_array().map(Vec::len),
            Some(n),
            "every connection audited"
        );
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    println!(
        "one audit: {:.0} ms wall (median of 5; min {:.0} ms), {:.1} µs per connection",
        median.as_secs_f64() * 1e3,
        walls[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e6 / n as f64
    );
    let cpu_before = children_cpu();
    audit(&[]);
    println!(
        "one audit: {:.0} ms CPU",
        (children_cpu() - cpu_before).as_secs_f64() * 1e3
    );
    let rusage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    println!(
        "peak RSS of the largest child so far (audit or listen): {} MiB",
        rusage.max_rss() / 1024
    );

    // Syscalls: strace counts them (a tracer slows the run, so no time is taken here).
    let trace =
        std::env::temp_dir().join(format!("tcphb-audit-bench-{}.strace", std::process::id()));
    match Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&trace)
        .args([bin, "audit", "--pid", &pid, "--format", "json"])
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {
            let text = std::fs::read_to_string(&trace).unwrap_or_default();
            let _ = std::fs::remove_file(&trace);
            let mut rows: Vec<(u64, String)> = text
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let calls = f.get(3)?.parse().ok()?;
                    Some((calls, f.last()?.to_string()))
                })
                .filter(|(_, name)| name != "total")
                .collect();
            rows.sort_by(|a, b| b.cmp(a));
            let total: u64 = rows.iter().map(|r| r.0).sum();
            println!(
                "one audit: {total} syscalls, {:.1} per connection; the busiest:",
                total as f64 / n as f64
            );
            for (calls, name) in rows.iter().take(6) {
                println!(
                    "  {name:<16} {calls:>7} ({:.2} per connection)",
                    *calls as f64 / n as f64
                );
            }
        }
        _ => println!("syscalls: not counted (strace is not installed)"),
    }

    // --watch: a look at every connection each 100 ms, or less often when looks are costly. Two
    // runs, 2 s and 12 s: the difference is 10 s of the steady state, without the start-up read
    // of every connection.
    let watch_cpu = |secs: u64| {
        let before = children_cpu();
        audit(&["--watch", "--duration", &format!("{secs}s")]);
        children_cpu() - before
    };
    let short = watch_cpu(2);
    let long = watch_cpu(12);
    let steady = long.saturating_sub(short);
    println!(
        "audit --watch: {:.1} % of a core following {n} connections (steady state); start-up {:.0} ms CPU",
        steady.as_secs_f64() * 10.0,
        short.saturating_sub(steady / 5).as_secs_f64() * 1e3
    );
    drop(clients);
}
