//! Fault and Load: how the link dies and what the local side is doing when it does.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::strategy::SpecError;

/// What the local side does after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Nothing to send: only keepalive probes or heartbeats put packets on the wire.
    Idle,
    /// Keeps writing, so data is unacknowledged after the cut (keepalive stays silent then).
    Busy,
}

/// How often a busy connection writes (a block of `DATA` lines each time): the first unacknowledged
/// segment after a cut leaves at most this long after it.
pub const BUSY_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// How the link or the peer dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Fault {
    /// Silent drop both ways: cable pulled, power lost, dead router.
    Blackhole,
    /// A router answers ICMP host unreachable.
    Unreachable,
    /// A router answers ICMP administratively prohibited.
    Prohibit,
    /// The local link loses carrier.
    Linkdown,
    /// The peer forgets the connection and answers RST once the path is back.
    Reboot,
    /// The peer process hangs; its kernel still ACKs.
    Freeze,
    /// The peer process dies; its kernel sends FIN (idle) or RST over unread data (busy).
    Crash,
    /// A stateful middlebox forgets an idle flow and drops its packets.
    NatExpiry,
}

impl Fault {
    /// The name used on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Blackhole => "blackhole",
            Fault::Unreachable => "unreachable",
            Fault::Prohibit => "prohibit",
            Fault::Linkdown => "linkdown",
            Fault::Reboot => "reboot",
            Fault::Freeze => "freeze",
            Fault::Crash => "crash",
            Fault::NatExpiry => "nat-expiry",
        }
    }

    /// What the fault stands for, in a few words (its help text: one source for both).
    pub fn what(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .and_then(|v| {
                v.get_help()
                    .map(|h| h.to_string().trim_end_matches('.').to_string())
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        <Fault as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            SpecError(format!(
                "unknown fault '{s}': use blackhole, unreachable, prohibit, linkdown, reboot, freeze, crash or nat-expiry"
            ))
        })
    }
}

impl Load {
    /// The name used on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Busy => "busy",
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
