//! `tcphb audit`: find the connections of the given processes (or on a port), read their settings
//! back from the owners' sockets and their state from the kernel, and judge each; with `--watch`,
//! follow them and report each one's end.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use crate::audit::follow::{Ended, Follower};
use crate::audit::{judge, slower_than};
use crate::cli::AuditArgs;
use crate::detection::{ClosedBy, Outcome};
use crate::exit::{self, CliError};
use crate::predict::Expected;
use crate::report::model::{AuditEvent, AuditReport, AuditWatchSummary};
use crate::report::{Finished, Format, Report, SCHEMA};
use crate::settings::Effective;
use crate::sys::{self, DiagSocket};
use crate::units::Millis;

/// How often `--watch` looks at the connections: an ending no pending timer dates is dated to
/// within this.
const POLL: Duration = Duration::from_millis(100);

/// A look costs about 2.6 µs of CPU per socket in the namespace (`cargo bench --bench audit`): on
/// a busy host the looks are spread so that they take at most a tenth of a core, each at least
/// this many times its own cost apart.
const LOOK_COST_RATIO: u32 = 10;

/// How long a new socket whose owner is not (yet) found is looked for again: a connection is in
/// the kernel's table before the process has accepted it.
const OWNER_GRACE: Duration = Duration::from_secs(2);

/// Within that grace, how often the owners of such sockets are looked for again: a scan of a
/// process holding 10,000 sockets reads 10,000 links.
const OWNER_RESCAN: Duration = Duration::from_millis(500);

/// Run `tcphb audit`; exit 0 when something could be read, 4 when nothing can. With `--watch`: 0,
/// or 3 if a followed connection died.
pub fn run(args: &AuditArgs, format: Format) -> anyhow::Result<Finished> {
    if args.watch {
        return watch(args, format);
    }
    let sockets = matching(args, &mut sys::tcp_table()?)?;
    let owners = owners(args, &sockets)?;
    let kernel = sys::kernel_timers();
    let mut reader = Reader::default();
    let mut connections = Vec::new();
    for s in &sockets {
        let owner = owners.get(&s.inode).copied();
        if !args.pids.is_empty() && owner.is_none() {
            continue;
        }
        let effective = reader.read(owner);
        connections.push(judge(s, owner, effective, &kernel));
    }
    let report = AuditReport {
        schema: SCHEMA,
        pids: args.pids.clone(),
        port: args.port,
        kernel_timers: kernel,
        slower_than_deadline: args.detect_within.map(|d| slower_than(&connections, d)),
        detect_within_ms: args.detect_within.map(|d| d.ms()),
        unreadable: reader.unreadable(connections.len()),
        audited: connections,
    };
    Ok(Finished {
        report: Report::Audit(report),
        code: exit::OK,
    })
}

/// This namespace's TCP connections that `--port` and `--peer` select, from `table` (one sock_diag
/// socket serves every look of `--watch`).
fn matching(args: &AuditArgs, table: &mut sys::TcpTable) -> anyhow::Result<Vec<DiagSocket>> {
    let mut sockets = table.dump().map_err(sys::diag_error)?;
    sockets.retain(|s| {
        args.port.is_none_or(|p| s.local.port() == p) && args.peer.is_none_or(|p| s.peer.ip() == p)
    });
    Ok(sockets)
}

/// Which process holds which of `sockets`: inode → (pid, fd), among the processes asked for, or
/// (for --port alone) any readable one.
fn owners(args: &AuditArgs, sockets: &[DiagSocket]) -> anyhow::Result<HashMap<u32, (u32, i32)>> {
    let mut owners = HashMap::new();
    for &pid in &args.pids {
        let held = sys::socket_inodes(pid).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CliError::Usage(format!("no process {pid}: check the PID (pidof, pgrep)"))
            }
            _ => CliError::Environment(format!(
                "cannot read the descriptors of process {pid} ({e}): run as its user or as root"
            )),
        })?;
        owners.extend(held.into_iter().map(|(inode, fd)| (inode, (pid, fd))));
    }
    if args.pids.is_empty() && !sockets.is_empty() {
        owners = sys::all_socket_inodes(&sockets.iter().map(|s| s.inode).collect());
    }
    Ok(owners)
}

/// Reads settings back from the owners' sockets: each owner opened once for all its connections,
/// and what could not be read counted, with the first reason.
#[derive(Default)]
struct Reader {
    processes: HashMap<u32, Result<sys::Process, String>>,
    unread: usize,
    why_unread: Option<String>,
}

impl Reader {
    fn read(&mut self, owner: Option<(u32, i32)>) -> Option<Effective> {
        let read = match owner {
            Some((pid, fd)) => match self
                .processes
                .entry(pid)
                .or_insert_with(|| sys::Process::open(pid).map_err(|e| e.to_string()))
            {
                Ok(process) => sys::read_back_of(process, fd).map_err(|e| e.to_string()),
                Err(why) => Err(why.clone()),
            },
            None => Err("no readable process holds it".into()),
        };
        match read {
            Ok(e) => Some(e),
            Err(why) => {
                self.unread += 1;
                self.why_unread.get_or_insert(why);
                None
            }
        }
    }

    /// The one line on what could not be read, and what to run instead; `None` when all was read.
    fn unreadable(&self, of: usize) -> Option<String> {
        self.why_unread.as_ref().map(|why| {
            format!(
                "the settings of {} of {of} connections ({why}); reading another process's socket options needs ptrace rights over it: run as root (or with CAP_SYS_PTRACE)",
                self.unread
            )
        })
    }
}

/// `audit --watch`: follow the matching connections, and those opened later, until Ctrl-C or
/// `--duration`, printing an event as each ends.
fn watch(args: &AuditArgs, format: Format) -> anyhow::Result<Finished> {
    let kernel = sys::kernel_timers();
    let rt = super::runtime()?;
    let interrupt = super::Interrupt::install(&rt);
    let exporter = format.exporter();
    let mut w = Watching {
        args,
        follower: Follower::new(),
        reader: Reader::default(),
        unowned: HashMap::new(),
        scanned: None,
        summary: AuditWatchSummary {
            schema: SCHEMA,
            pids: args.pids.clone(),
            port: args.port,
            ..AuditWatchSummary::default()
        },
    };
    // Checked once before anything is printed: a PID that does not exist is a usage error.
    let mut table = sys::tcp_table()?;
    let first = matching(args, &mut table)?;
    w.adopt(&first, Instant::now())?;
    let mut out = super::EventWriter::start();
    if let Some(h) = exporter.audit_header() {
        out.send(h);
    }
    super::say(&format!(
        "tcphb: following {} connections{} (Ctrl-C to stop)",
        w.follower.len(),
        match args.duration {
            Some(d) => format!(" for {}", crate::units::format_duration(d)),
            None => String::new(),
        }
    ));
    let started = Instant::now();
    rt.block_on(async {
        let end =
            tokio::time::Instant::from_std(started + args.duration.unwrap_or(Duration::MAX / 4));
        let mut every = POLL;
        let mut next = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = interrupt.wait() => break,
                _ = tokio::time::sleep_until(end) => break,
                e = out.stopped() => {
                    super::say(&format!("tcphb: stopping: stdout can no longer be written ({e})"));
                    break;
                }
            }
            let look = Instant::now();
            let dump = matching(args, &mut table)?;
            let ended = w
                .follower
                .observe(&dump, look, &kernel, |(pid, fd), inode| {
                    sys::holds(pid, fd, inode)
                });
            for e in ended {
                let event = w.event(e, every);
                out.send(exporter.audit_event(&event));
            }
            w.adopt(&dump, look)?;
            every = POLL.max(look.elapsed() * LOOK_COST_RATIO);
            next = tokio::time::Instant::from_std(look) + every;
        }
        anyhow::Ok(())
    })?;
    w.summary.open_at_exit = w.follower.len() as u64;
    w.summary.watched_ms = started.elapsed().ms();
    w.summary.unreadable = w.reader.unreadable(w.summary.followed as usize);
    w.summary.events_dropped = out.finish();
    let code = if w.summary.dead > 0 {
        exit::DETECTED
    } else {
        exit::OK
    };
    Ok(Finished {
        report: Report::AuditWatch(w.summary),
        code,
    })
}

/// The state of one `audit --watch` run.
struct Watching<'a> {
    args: &'a AuditArgs,
    follower: Follower,
    reader: Reader,
    /// Sockets whose owner was not found, and when they were first seen: looked for again for
    /// [`OWNER_GRACE`], then left alone.
    unowned: HashMap<u32, Instant>,
    /// When the processes' descriptors were last scanned for new sockets.
    scanned: Option<Instant>,
    summary: AuditWatchSummary,
}

impl Watching<'_> {
    /// Follow the established connections of `dump` not followed yet whose owner is one of the
    /// processes asked for (any process, or none found, for --port alone), reading their settings.
    /// The processes' descriptors are scanned only when a socket appears that was not seen before,
    /// or again once a look for one whose owner has not been found yet (a connection is in the
    /// kernel's table before the process has accepted it), at most every [`OWNER_RESCAN`].
    fn adopt(&mut self, dump: &[DiagSocket], now: Instant) -> anyhow::Result<()> {
        let fresh: Vec<&DiagSocket> = dump
            .iter()
            .filter(|s| s.state == 1 && !self.follower.follows(s.local, s.peer))
            .filter(|s| {
                self.unowned
                    .get(&s.inode)
                    .is_none_or(|first| now.duration_since(*first) < OWNER_GRACE)
            })
            .collect();
        let unseen = fresh.iter().any(|s| !self.unowned.contains_key(&s.inode));
        let rescan_due = self
            .scanned
            .is_none_or(|at| now.duration_since(at) >= OWNER_RESCAN);
        if fresh.is_empty() || !(unseen || rescan_due) {
            return Ok(());
        }
        self.scanned = Some(now);
        let fresh: Vec<DiagSocket> = fresh.into_iter().cloned().collect();
        let owners = owners(self.args, &fresh)?;
        for s in fresh {
            let owner = owners.get(&s.inode).copied();
            if owner.is_none() {
                self.unowned.entry(s.inode).or_insert(now);
                if !self.args.pids.is_empty() {
                    continue;
                }
            }
            self.unowned.remove(&s.inode);
            let effective = self.reader.read(owner);
            self.summary.followed += 1;
            self.follower.track(s, owner, effective, now);
        }
        // Forget sockets that left the table before an owner was found for them.
        let listed: HashSet<u32> = dump.iter().map(|s| s.inode).collect();
        self.unowned.retain(|inode, _| listed.contains(inode));
        Ok(())
    }

    /// An ended connection as an event, counted in the summary; `every`: how often the connections
    /// are being looked at.
    fn event(&mut self, e: Ended, every: Duration) -> AuditEvent {
        let d = &e.detection;
        match (d.outcome, d.closed_by) {
            (Outcome::Dead, _) => self.summary.dead += 1,
            (Outcome::Closed, Some(ClosedBy::Peer)) => self.summary.closed_by_peer += 1,
            _ => self.summary.closed_by_owner += 1,
        }
        let last = &e.followed.last;
        AuditEvent {
            schema: SCHEMA,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            pid: e.followed.owner.map(|o| o.0),
            fd: e.followed.owner.map(|o| o.1),
            local: last.local.to_string(),
            peer: last.peer.to_string(),
            load: e.load,
            last_timer: crate::audit::timer_name(last.timer),
            last_probes_out: last.info.map_or(0, |i| i.probes),
            last_retransmits: last.info.map_or(0, |i| i.retransmits.max(i.backoff)),
            resolution_ms: every.ms(),
            expected: Expected::new(&e.prediction, &e.detection),
            detection: e.detection,
        }
    }
}
