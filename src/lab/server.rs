//! `compare --server`: the operator's own server noticing its dead clients. Its connections in the
//! server namespace are followed as `audit --watch` follows a process's connections (the same
//! [`Follower`]), with its settings read back from its sockets; each connection is known by the
//! client address it comes from, which tells the strategy of the client at the other end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::audit::follow::{Ended, Follower};
use crate::detection::Outcome;
use crate::matrix::ServerRun;
use crate::settings::KernelTimers;
use crate::sys;
use crate::units::Millis;

use super::cell::Server;

/// One cell's server, followed from its cut.
pub struct ServerWatch {
    follower: Follower,
    /// Client address → the strategy of the connection from it.
    strategy_of: HashMap<IpAddr, usize>,
    pid: u32,
    kernel: KernelTimers,
    cut: Instant,
    ended: Vec<(usize, Ended)>,
}

impl ServerWatch {
    /// Start following the server's established connections from the given clients (strategy,
    /// client address), reading back its settings on each: call just before the cell is cut.
    pub fn start(
        server: &mut Server,
        pid: u32,
        port: u16,
        clients: &[(usize, IpAddr)],
        kernel: KernelTimers,
    ) -> std::io::Result<ServerWatch> {
        let strategy_of: HashMap<IpAddr, usize> = clients.iter().map(|&(j, a)| (a, j)).collect();
        let fds = sys::socket_inodes(pid)?;
        let process = sys::Process::open(pid)?;
        let mut follower = Follower::new();
        let now = Instant::now();
        for s in server.table.dump()? {
            if s.state != 1 || s.local.port() != port || !strategy_of.contains_key(&s.peer.ip()) {
                continue;
            }
            let fd = fds.get(&s.inode).copied();
            let effective = fd.and_then(|fd| sys::read_back_of(&process, fd).ok());
            follower.track(s, fd.map(|fd| (pid, fd)), effective, now);
        }
        Ok(ServerWatch {
            follower,
            strategy_of,
            pid,
            kernel,
            cut: now,
            ended: Vec::new(),
        })
    }

    /// Look again: the connections that ended since the last look are kept.
    pub fn poll(&mut self, server: &mut Server) -> std::io::Result<()> {
        if self.follower.is_empty() {
            return Ok(());
        }
        let dump = server.table.dump()?;
        let pid = self.pid;
        for e in self
            .follower
            .observe(&dump, Instant::now(), &self.kernel, |(p, fd), inode| {
                p == pid && sys::holds(p, fd, inode)
            })
        {
            if let Some(&j) = self.strategy_of.get(&e.followed.last.peer.ip()) {
                self.ended.push((j, e));
            }
        }
        Ok(())
    }

    /// What the server noticed, by strategy: only deaths count (a close is not noticing).
    pub fn finish(self) -> HashMap<usize, ServerRun> {
        let cut = self.cut;
        self.ended
            .into_iter()
            .filter(|(_, e)| e.detection.outcome == Outcome::Dead)
            .map(|(j, e)| {
                (
                    j,
                    ServerRun {
                        detected_by: e.detection.detected_by,
                        errno: e.detection.errno.clone(),
                        silence_ms: e.detection.silence_ms,
                        latency_ms: e.at.saturating_duration_since(cut).ms(),
                        expected_ms: e.prediction.expected_ms(),
                        expected_min_ms: e.prediction.expected_min_ms(),
                        expected_max_ms: e.prediction.expected_max_ms(),
                        expected_by: e.prediction.mechanism,
                    },
                )
            })
            .collect()
    }
}
