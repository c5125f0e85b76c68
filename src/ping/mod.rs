//! Heartbeat protocols: one sans-IO codec per protocol a heartbeat can speak, pure and fuzzed.
//!
//! A codec says what to send when the connection opens ([`Codec::hello`]: an HTTP/2 preface, a
//! WebSocket upgrade, an MQTT CONNECT), what a ping is ([`Codec::ping`]), and what the peer's bytes
//! mean ([`Codec::feed`]): how many replies of the protocol arrived (each proves the peer's process
//! alive), what the protocol obliges us to answer (a SETTINGS ACK, a PING ACK, a WebSocket pong), and
//! whether the peer refused or ended the conversation in its protocol (a GOAWAY, a refused CONNACK).
//! The watcher only moves bytes; every codec holds a bounded amount of memory per connection.

pub mod h2;
pub mod http;
pub mod line;
pub(crate) mod lines;
pub mod memcached;
pub mod mqtt;
pub mod redis;
pub mod tls;
pub mod websocket;

use std::time::Duration;

use crate::strategy::Protocol;

/// The payload bytes of one ping and of its usual answer in `protocol`, as the recommendation's cost
/// counts them (TCP/IP headers apart). Exact for the fixed-size ones; HTTP's depend on the path and
/// the server's headers: a short `OPTIONS *` and a bare status with a few headers are assumed.
pub fn exchange_bytes(protocol: Protocol) -> (u64, u64) {
    match protocol {
        // `PING 1234\n` / `PONG 1234\n`.
        Protocol::Line => (10, 10),
        // `*1\r\n$4\r\nPING\r\n` / `+PONG\r\n`.
        Protocol::Redis => (14, 7),
        // `version\r\n` / `VERSION 1.6.21\r\n`.
        Protocol::Memcached => (9, 16),
        Protocol::Http => (45, 160),
        // A PING frame and its ACK: 9-byte header, 8-byte payload.
        Protocol::H2 => (17, 17),
        // A masked ping with an 8-byte payload / its unmasked pong.
        Protocol::Websocket => (14, 10),
        // PINGREQ / PINGRESP.
        Protocol::Mqtt => (2, 2),
    }
}

/// What one [`Codec::feed`] heard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// Messages of the protocol: answers to our pings, and anything else the protocol defines.
    pub replies: u64,
    /// Messages that are not the protocol's (counted, not fatal, once the peer spoke the protocol).
    pub unknown: u64,
}

impl Heard {
    /// Whether anything at all was heard.
    pub fn any(&self) -> bool {
        self.replies + self.unknown > 0
    }
}

/// Why a codec stops: the peer said no in its protocol, or does not speak it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// The peer is alive and ended or refused the conversation in its protocol (GOAWAY, a refused
    /// CONNACK, a WebSocket close): reported as the peer closing, never as a death.
    #[error("{0}")]
    Refused(String),
    /// The peer's bytes are not this protocol, or break its bounds: tcphb closes the connection.
    #[error("{0}")]
    Protocol(String),
}

/// What a codec needs to know besides its protocol.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The HTTP request target (`*` for `OPTIONS *`) and the WebSocket path.
    pub path: String,
    /// HOST or HOST:PORT as the user wrote it: the HTTP Host header and the WebSocket URL.
    pub authority: String,
    /// The heartbeat's interval × misses: MQTT's keep-alive, and what a server's ping limit means.
    pub interval: Duration,
    pub misses: u32,
}

/// How a connection's heartbeat is spoken: its protocol, the codec's options, and TLS around it.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub protocol: Protocol,
    pub options: Options,
    pub tls: Option<tls::Tls>,
}

/// One protocol's codec.
pub trait Codec {
    /// Bytes to send as soon as the connection opens (nothing for most protocols).
    fn hello(&mut self, _out: &mut Vec<u8>) {}
    /// Queue ping number `seq` (nothing while the protocol is still opening).
    fn ping(&mut self, seq: u64, out: &mut Vec<u8>);
    /// Bytes that end the conversation politely when tcphb stops watching (nothing for most).
    fn goodbye(&mut self, _out: &mut Vec<u8>) {}
    /// Take the peer's bytes; queue what the protocol must answer in `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Heard, PingError>;
    /// What the replies so far say beyond "alive" (an authentication demand, an error status, the
    /// server announcing its close), in words for the report (nothing for most protocols).
    fn note(&self) -> Option<String> {
        None
    }
    /// Bytes held between feeds (a partial message): bounded per protocol.
    fn held(&self) -> usize;
}

/// The codec of one connection, chosen by its heartbeat's protocol. An enum with `line` inline and
/// the others boxed: `listen`'s 10,000 line connections pay no allocation and no more than the line
/// decoder's size for it (an HTTP codec inline would have tripled each connection's state).
pub enum Pinger {
    Line(line::Line),
    Redis(Box<redis::Redis>),
    Memcached(Box<memcached::Memcached>),
    Http(Box<http::Http>),
    H2(Box<h2::H2>),
    Websocket(Box<websocket::Websocket>),
    Mqtt(Box<mqtt::Mqtt>),
}

impl Pinger {
    /// The codec for `protocol`.
    pub fn new(protocol: Protocol, o: &Options) -> Pinger {
        match protocol {
            Protocol::Line => Pinger::Line(line::Line::default()),
            Protocol::Redis => Pinger::Redis(Box::default()),
            Protocol::Memcached => Pinger::Memcached(Box::default()),
            Protocol::Http => Pinger::Http(Box::new(http::Http::new(o))),
            Protocol::H2 => Pinger::H2(Box::new(h2::H2::new(o))),
            Protocol::Websocket => Pinger::Websocket(Box::new(websocket::Websocket::new(o))),
            Protocol::Mqtt => Pinger::Mqtt(Box::new(mqtt::Mqtt::new(o))),
        }
    }

    fn codec(&mut self) -> &mut dyn Codec {
        match self {
            Pinger::Line(c) => c,
            Pinger::Redis(c) => c.as_mut(),
            Pinger::Memcached(c) => c.as_mut(),
            Pinger::Http(c) => c.as_mut(),
            Pinger::H2(c) => c.as_mut(),
            Pinger::Websocket(c) => c.as_mut(),
            Pinger::Mqtt(c) => c.as_mut(),
        }
    }

    fn codec_ref(&self) -> &dyn Codec {
        match self {
            Pinger::Line(c) => c,
            Pinger::Redis(c) => c.as_ref(),
            Pinger::Memcached(c) => c.as_ref(),
            Pinger::Http(c) => c.as_ref(),
            Pinger::H2(c) => c.as_ref(),
            Pinger::Websocket(c) => c.as_ref(),
            Pinger::Mqtt(c) => c.as_ref(),
        }
    }
}

impl Codec for Pinger {
    fn hello(&mut self, out: &mut Vec<u8>) {
        self.codec().hello(out);
    }
    fn ping(&mut self, seq: u64, out: &mut Vec<u8>) {
        self.codec().ping(seq, out);
    }
    fn goodbye(&mut self, out: &mut Vec<u8>) {
        self.codec().goodbye(out);
    }
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Heard, PingError> {
        self.codec().feed(bytes, out)
    }
    fn note(&self) -> Option<String> {
        self.codec_ref().note()
    }
    fn held(&self) -> usize {
        self.codec_ref().held()
    }
}

/// At most this many bytes of a peer's text go into a message: enough to recognise it.
const QUOTE: usize = 80;

/// `bytes` as printable text for a message, cut at [`QUOTE`] bytes.
fn quote(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(QUOTE)];
    let text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if bytes.len() > QUOTE {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_connection_pays_only_for_the_line_decoder() {
        assert!(
            std::mem::size_of::<super::Pinger>() <= 40,
            "{} bytes",
            std::mem::size_of::<super::Pinger>()
        );
    }
}
