//! Path faults made in the lab: how each one cuts the A — R — B path, and how it is undone.

use std::fmt;

use netlink_packet_route::route::RouteType;

use super::netlink::{self, Request};
use super::{CLIENT_IF_INDEX, FAULT_TABLE, Lab, Node};

/// How [`Lab::cut`] breaks the path between client and server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathFault {
    /// Silent drop in both directions, as from a pulled cable far away, a dead router or a
    /// powered-off peer: R blackholes everything it would forward.
    Blackhole,
    /// R answers every packet it would forward with ICMP host unreachable (type 3 code 1).
    Unreachable,
    /// R answers with ICMP communication administratively prohibited (type 3 code 13), as a
    /// firewall with a reject rule would.
    Prohibit,
    /// The client's own interface goes down, taking its routes with it, so the client's kernel
    /// fails locally instead of sending anything: ENETUNREACH if data was in flight at the cut,
    /// ETIMEDOUT (from the zero-window-probe timer) if all data written later never left.
    LinkDown,
}

impl PathFault {
    /// Every fault, in a stable order.
    pub const ALL: [PathFault; 4] = [
        PathFault::Blackhole,
        PathFault::Unreachable,
        PathFault::Prohibit,
        PathFault::LinkDown,
    ];

    /// Route type used in R for the route-based faults.
    fn route_type(self) -> Option<RouteType> {
        match self {
            PathFault::Blackhole => Some(RouteType::BlackHole),
            PathFault::Unreachable => Some(RouteType::Unreachable),
            PathFault::Prohibit => Some(RouteType::Prohibit),
            PathFault::LinkDown => None,
        }
    }

    /// The namespace whose routing/link state the fault changes, and the netlink requests that
    /// make (`cut = true`) or undo it.
    pub(crate) fn requests(self, lab: &Lab, cut: bool) -> (Node, Vec<Request>) {
        match self.route_type() {
            // The cut is a default route of that type in R's fault table, which only packets
            // *arriving* on R's two lab links consult (rules made in `Lab::build`): forwarded
            // traffic dies in both directions, while R's own packets (the ICMP errors it sends
            // back to the client) still route by `main`. Host routes for A and B in `main` would
            // also have swallowed those ICMP errors, turning every fault into a blackhole.
            Some(kind) => (
                Node::Router,
                vec![netlink::special_default_route(FAULT_TABLE, kind, cut)],
            ),
            None => {
                // Admin-down (not just carrier loss) removes the connected and default routes,
                // so the client's retransmissions fail route lookup: ENETUNREACH, as on a host
                // whose only uplink died. Carrier loss alone keeps IPv4 routes and would look
                // like a blackhole. Coming back up restores the connected route by itself; the
                // default route has to be added again.
                let mut reqs = vec![netlink::link_set(
                    format!("set client link {}", if cut { "down" } else { "up" }),
                    CLIENT_IF_INDEX,
                    !cut,
                )];
                if !cut {
                    reqs.push(netlink::default_route(lab.router_addr()));
                }
                (Node::Client, reqs)
            }
        }
    }
}

impl fmt::Display for PathFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathFault::Blackhole => "blackhole",
            PathFault::Unreachable => "unreachable",
            PathFault::Prohibit => "prohibit",
            PathFault::LinkDown => "linkdown",
        })
    }
}
