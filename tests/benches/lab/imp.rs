//! The Linux body of the `lab` benchmark (see tests/benches/lab.rs).

use std::process::Command;
use std::time::{Duration, Instant};

use tcphb::lab::Lab;

use crate::support::env_u64;

/// The shell recipe an operator would write for the same topology: three named namespaces,
/// two veth pairs, addresses, lo up, links up, default routes, the two fault-table rules the lab
/// also adds, forwarding in R, then delete everything.
fn recipe(tag: &str) -> String {
    format!(
        r#"set -e
A=tcphb-bench-{tag}-a R=tcphb-bench-{tag}-r B=tcphb-bench-{tag}-b
ip netns add $A
ip netns add $R
ip netns add $B
ip link add to-client netns $R type veth peer name eth0 netns $A
ip link add to-server netns $R type veth peer name eth0 netns $B
ip -n $R addr add 198.18.0.1/24 dev to-client
ip -n $R addr add 198.18.1.1/24 dev to-server
ip -n $A addr add 198.18.0.2/24 dev eth0
ip -n $B addr add 198.18.1.2/24 dev eth0
ip -n $A link set lo up
ip -n $R link set lo up
ip -n $B link set lo up
ip -n $R link set to-client up
ip -n $R link set to-server up
ip -n $A link set eth0 up
ip -n $B link set eth0 up
ip -n $A route add default via 198.18.0.1
ip -n $B route add default via 198.18.1.1
ip -n $R rule add iif to-client table 100 pref 100
ip -n $R rule add iif to-server table 100 pref 100
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
ip netns del $A
ip netns del $R
ip netns del $B
"#
    )
}

/// Removes the recipe's namespaces if a run failed half way (never leave `tcphb-` names behind).
fn cleanup(tag: &str) {
    for n in ["a", "r", "b"] {
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("tcphb-bench-{tag}-{n}")])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(name: &str, s: &Stats) {
    println!(
        "{name:<34} median {:>8.3} ms   min {:>8.3} ms   max {:>8.3} ms",
        ms(s.median),
        ms(s.min),
        ms(s.max)
    );
}

pub fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored too.
    if !nix::unistd::geteuid().is_root() {
        println!("lab bench skipped: needs root (namespaces, veth)");
        return;
    }
    let runs = env_u64("TCPHB_BENCH_RUNS", 50).max(1) as usize;
    let tag = std::process::id().to_string();
    let script = recipe(&tag);
    let shell = |script: &str| -> Duration {
        let t = Instant::now();
        let st = Command::new("sh")
            .args(["-c", script])
            .status()
            .expect("run sh");
        let d = t.elapsed();
        if !st.success() {
            cleanup(&tag);
            panic!("shell recipe failed ({st}); is iproute2 installed?");
        }
        d
    };

    // Warm up page cache, allocator and the kernel's per-namespace slabs for both.
    for _ in 0..3 {
        drop(Lab::build().expect("Lab::build"));
        shell(&script);
    }

    let (mut total, mut build, mut teardown, mut sh) = (vec![], vec![], vec![], vec![]);
    // Interleaved, so drift in machine load hits both sides alike.
    for _ in 0..runs {
        let t = Instant::now();
        let lab = Lab::build().expect("Lab::build");
        let built = t.elapsed();
        drop(lab);
        let all = t.elapsed();
        build.push(built);
        teardown.push(all - built);
        total.push(all);
        sh.push(shell(&script));
    }
    let (total, build, teardown, sh) = (stats(total), stats(build), stats(teardown), stats(sh));
    println!(
        "lab bench: {runs} runs each, interleaved, kernel {}",
        kernel()
    );
    row("Lab::build + drop", &total);
    row("  Lab::build", &build);
    row("  drop", &teardown);
    row("ip netns shell recipe (add..del)", &sh);
    println!(
        "Lab::build + drop ran {:.1} times faster than the ip netns recipe (median {:.3} ms vs {:.3} ms)",
        ms(sh.median) / ms(total.median),
        ms(total.median),
        ms(sh.median)
    );
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
