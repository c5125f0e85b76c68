//! A small synchronous rtnetlink client: links, addresses and routes, one socket per namespace.
//!
//! Messages are encoded by `netlink-packet-route`; this file only batches them. A netlink socket
//! belongs to the namespace it was created in, forever, so configuring a namespace needs no
//! thread switching once its socket exists. Requests are sent in one `send` per batch (the kernel
//! processes a multi-message datagram in order) and every message asks for an ACK, so a batch
//! costs two syscalls instead of two per message.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// One request in a batch, with the human name of the step for error messages.
pub(crate) struct Request {
    step: String,
    msg: RouteNetlinkMessage,
    flags: u16,
}

impl Request {
    fn new(step: impl Into<String>, msg: RouteNetlinkMessage, flags: u16) -> Self {
        Self {
            step: step.into(),
            msg,
            flags,
        }
    }
}

/// An rtnetlink socket bound to one network namespace.
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a route-netlink socket in the calling thread's *current* namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Extended ACKs make the kernel attach a reason string to errors; we only use the errno,
        // but asking costs nothing and keeps `strace` output readable.
        let _ = sock.set_ext_ack(true);
        Ok(Self { sock, seq: 0 })
    }

    /// Sends all requests in one datagram and waits for every ACK. Returns the first failure,
    /// labelled with the step that failed; `tolerate` errnos (e.g. EEXIST on heal) count as success.
    pub(crate) fn run(
        &mut self,
        reqs: Vec<Request>,
        tolerate: &[i32],
    ) -> Result<(), (String, io::Error)> {
        if reqs.is_empty() {
            return Ok(());
        }
        let first_seq = self.seq.wrapping_add(1);
        let mut buf = Vec::with_capacity(256 * reqs.len());
        let mut steps = Vec::with_capacity(reqs.len());
        for req in reqs {
            self.seq = self.seq.wrapping_add(1);
            let mut nl = NetlinkMessage::from(req.msg);
            nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | req.flags;
            nl.header.sequence_number = self.seq;
            nl.finalize();
            let start = buf.len();
            buf.resize(start + nl.header.length as usize, 0);
            nl.serialize(&mut buf[start..]);
            steps.push(req.step);
        }
        let fail = |step: &str, e: io::Error| (step.to_string(), e);
        self.sock
            .send(&buf, 0)
            .map_err(|e| fail("send netlink batch", e))?;

        let mut pending = steps.len();
        let mut first_err: Option<(String, io::Error)> = None;
        let mut rbuf = vec![0u8; 16 * 1024];
        while pending > 0 {
            let n = self
                .sock
                .recv(&mut &mut rbuf[..], 0)
                .map_err(|e| fail("receive netlink ack", e))?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| {
                        fail(
                            "decode netlink reply",
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = msg.header.length as usize;
                let idx = msg.header.sequence_number.wrapping_sub(first_seq) as usize;
                if let NetlinkPayload::Error(err) = &msg.payload
                    && idx < steps.len()
                {
                    pending -= 1;
                    let code = err.raw_code().abs();
                    if code != 0 && !tolerate.contains(&code) && first_err.is_none() {
                        first_err = Some((steps[idx].clone(), io::Error::from_raw_os_error(code)));
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Sets link `index` administratively up or down.
pub(crate) fn link_set(step: impl Into<String>, index: u32, up: bool) -> Request {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    m.header.change_mask = LinkFlags::Up;
    Request::new(step, RouteNetlinkMessage::SetLink(m), 0)
}

/// Creates a veth pair: `name`/`index` in the socket's namespace, and its peer
/// `peer_name`/`peer_index` directly inside the namespace `peer_ns`. Both start down: asking for
/// IFF_UP in the same request fails with ENOTCONN, because the kernel opens each end before the
/// two are joined (`veth_open` refuses an end without a peer), so bring them up with [`link_set`].
///
/// Fixed interface indexes let later requests address the links without a lookup round trip;
/// they are chosen well above anything a fresh namespace holds (lo is 1; built-in tunnel drivers
/// may add a few fallback devices).
pub(crate) fn veth(
    name: &str,
    index: u32,
    peer_name: &str,
    peer_index: u32,
    peer_ns: BorrowedFd<'_>,
) -> Request {
    let mut peer = LinkMessage::default();
    peer.header.index = peer_index;
    peer.attributes
        .push(LinkAttribute::IfName(peer_name.into()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));

    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    Request::new(
        format!("create veth {name} <-> {peer_name}"),
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds `addr/prefix` to link `index`.
pub(crate) fn addr_add(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(addr.into()));
    m.attributes.push(AddressAttribute::Address(addr.into()));
    let brd = Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix));
    m.attributes.push(AddressAttribute::Broadcast(brd));
    Request::new(
        format!("add address {addr}/{prefix} to link {index}"),
        RouteNetlinkMessage::NewAddress(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

fn route_msg(dst: Ipv4Addr, prefix: u8, kind: RouteType) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = prefix;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Universe;
    m.header.kind = kind;
    if prefix > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    }
    m
}

/// Adds a default route via `gw`.
pub(crate) fn default_route(gw: Ipv4Addr) -> Request {
    let mut m = route_msg(Ipv4Addr::UNSPECIFIED, 0, RouteType::Unicast);
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    Request::new(
        format!("add default route via {gw}"),
        RouteNetlinkMessage::NewRoute(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds (`add = true`) or deletes a default route of a special `kind` (blackhole, unreachable,
/// prohibit) in routing table `table`.
pub(crate) fn special_default_route(table: u8, kind: RouteType, add: bool) -> Request {
    let mut m = route_msg(Ipv4Addr::UNSPECIFIED, 0, kind);
    m.header.table = table;
    let verb = if add { "add" } else { "delete" };
    let step = format!("{verb} {kind:?} default route in table {table}");
    if add {
        Request::new(
            step,
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        Request::new(step, RouteNetlinkMessage::DelRoute(m), 0)
    }
}

/// Adds a policy-routing rule: packets arriving on interface `iif` look up table `table` first
/// (at priority `priority`); when that table has no matching route, lookup goes on to `main`.
pub(crate) fn rule_iif_table(iif: &str, table: u8, priority: u32) -> Request {
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.table = table;
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Iifname(iif.into()));
    m.attributes.push(RuleAttribute::Priority(priority));
    m.attributes.push(RuleAttribute::Table(u32::from(table)));
    Request::new(
        format!("add rule iif {iif} lookup {table}"),
        RouteNetlinkMessage::NewRule(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}
