//! MQTT 3.1.1: CONNECT (clean session, client id `tcphb-…`) → CONNACK, then PINGREQ → PINGRESP. A
//! refused CONNACK is named: the broker is alive and said no.
//!
//! Hand-written rather than `rumqttc`'s framing: the packets are fixed byte strings (CONNECT is built
//! once, PINGREQ is `C0 00`), and reading means one fixed header with a variable-length remaining
//! length; other packets are skipped by that length without being buffered. A crate would bring a
//! client, its event loop and its TLS stack for these few bytes.

use super::{Codec, Heard, Options, PingError};

/// Longest packet accepted from the broker (it has no reason to send anything long: no
/// subscription is made).
pub const MAX_PACKET: u32 = 64 * 1024;

/// The `mqtt` codec.
#[derive(Debug)]
pub struct Mqtt {
    connect: Vec<u8>,
    /// CONNACK accepted: pings may go.
    connected: bool,
    /// The fixed header being read (type byte and up to four length bytes).
    header: Vec<u8>,
    /// Bytes of the current packet's body still to skip.
    skip: u32,
}

impl Mqtt {
    /// A codec whose CONNECT asks for a keep-alive covering the heartbeat's interval × misses.
    pub fn new(o: &Options) -> Mqtt {
        // The broker drops a client silent for 1.5 × keep-alive; tcphb sends a PINGREQ every
        // interval, so interval × misses (at least 1 s; 0 would switch the broker's check off) is
        // honest and never trips it while tcphb lives.
        let keep_alive = (o.interval * o.misses.max(1))
            .as_secs_f64()
            .ceil()
            .clamp(1.0, 65535.0) as u16;
        let id = format!("tcphb-{}-{:08x}", std::process::id(), fastrand::u32(..));
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(b"\x00\x04MQTT\x04\x02");
        body.extend_from_slice(&keep_alive.to_be_bytes());
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        let mut connect = vec![0x10, body.len() as u8];
        connect.extend(body);
        Mqtt {
            connect,
            connected: false,
            header: Vec::with_capacity(5),
            skip: 0,
        }
    }

    /// The packet whose fixed header is complete in `self.header` with `len` body bytes: read its
    /// body (CONNACK) from `input` or skip it.
    fn packet(&mut self, len: u32, heard: &mut Heard) -> Result<(), PingError> {
        let kind = self.header[0] >> 4;
        match (kind, self.connected) {
            (2, false) => {} // CONNACK: its two body bytes are read by the caller.
            (_, false) => {
                return Err(PingError::Protocol(
                    "not an MQTT broker: its first packet was not a CONNACK".into(),
                ));
            }
            (13, true) if len == 0 => heard.replies += 1, // PINGRESP
            // Any other packet is MQTT, but no answer to a ping.
            _ => heard.unknown += 1,
        }
        self.skip = len;
        Ok(())
    }
}

/// A CONNACK return code in words (MQTT 3.1.1 §3.2.2.3).
fn refusal(code: u8) -> String {
    let why = match code {
        1 => "unacceptable protocol version (it does not take MQTT 3.1.1)",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized (e.g. allow_anonymous false)",
        _ => "a reserved return code",
    };
    format!(
        "the broker refused the connection: CONNACK return code {code}, {why} (tcphb connects without a user name)"
    )
}

impl Codec for Mqtt {
    fn hello(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.connect);
    }

    fn ping(&mut self, _seq: u64, out: &mut Vec<u8>) {
        if self.connected {
            out.extend_from_slice(&[0xc0, 0x00]);
        }
    }

    fn goodbye(&mut self, out: &mut Vec<u8>) {
        if self.connected {
            // DISCONNECT: the broker then drops the session without publishing a will.
            out.extend_from_slice(&[0xe0, 0x00]);
        }
    }

    fn feed(&mut self, bytes: &[u8], _out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let mut input = bytes;
        while !input.is_empty() {
            if self.skip > 0 {
                if !self.connected && self.header.first().is_some_and(|b| b >> 4 == 2) {
                    // The CONNACK body: flags, then the return code.
                    self.header.push(input[0]);
                    input = &input[1..];
                    self.skip -= 1;
                    if self.skip == 0 {
                        // header: the type byte, the flags, the return code.
                        let code = self.header[2];
                        if code != 0 {
                            return Err(PingError::Refused(refusal(code)));
                        }
                        self.connected = true;
                        heard.replies += 1;
                        self.header.clear();
                    }
                    continue;
                }
                let k = self.skip.min(input.len() as u32);
                input = &input[k as usize..];
                self.skip -= k;
                if self.skip == 0 {
                    self.header.clear();
                }
                continue;
            }
            self.header.push(input[0]);
            input = &input[1..];
            if self.header.len() < 2 {
                continue;
            }
            // Remaining length: 7 bits a byte, least significant first, at most four bytes.
            let lens = &self.header[1..];
            if lens.last().is_some_and(|b| b & 0x80 != 0) {
                if lens.len() == 4 {
                    return Err(PingError::Protocol(
                        "an MQTT remaining length over four bytes".into(),
                    ));
                }
                continue;
            }
            let len = lens
                .iter()
                .rev()
                .fold(0u32, |acc, b| (acc << 7) | u32::from(b & 0x7f));
            if len > MAX_PACKET {
                return Err(PingError::Protocol(if self.connected {
                    format!("an MQTT packet of {len} bytes (at most {MAX_PACKET} accepted)")
                } else {
                    "not an MQTT broker: its first packet was not a CONNACK".into()
                }));
            }
            self.packet(len, &mut heard)?;
            if !self.connected {
                if len != 2 {
                    return Err(PingError::Protocol("a malformed CONNACK".into()));
                }
                // Keep the type byte; the body's two bytes follow it.
                self.header.truncate(1);
            } else if len == 0 {
                self.header.clear();
            }
        }
        Ok(heard)
    }

    fn held(&self) -> usize {
        self.header.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt() -> Mqtt {
        Mqtt::new(&Options {
            interval: std::time::Duration::from_secs(1),
            misses: 3,
            ..Options::default()
        })
    }

    #[test]
    fn connect_connack_ping_pingresp() {
        let mut m = mqtt();
        let mut out = Vec::new();
        m.ping(1, &mut out);
        assert!(out.is_empty(), "no ping before CONNACK");
        m.hello(&mut out);
        assert_eq!(&out[..2], &[0x10, out.len() as u8 - 2]);
        assert_eq!(&out[2..12], b"\x00\x04MQTT\x04\x02\x00\x03");
        assert!(out[14..].starts_with(b"tcphb-"));
        out.clear();
        assert_eq!(m.feed(&[0x20, 0x02, 0x00], &mut out).unwrap().replies, 0);
        assert_eq!(m.feed(&[0x00, 0xd0], &mut out).unwrap().replies, 1);
        assert_eq!(m.feed(&[0x00], &mut out).unwrap().replies, 1);
        m.ping(2, &mut out);
        assert_eq!(out, [0xc0, 0x00]);
        // A PUBLISH is skipped by its length.
        let h = m.feed(&[0x30, 0x82, 0x01], &mut out).unwrap();
        assert_eq!(h.unknown, 1);
        assert_eq!(m.feed(&[0u8; 130], &mut out).unwrap().unknown, 0);
        assert_eq!(m.feed(&[0xd0, 0x00], &mut out).unwrap().replies, 1);
        out.clear();
        m.goodbye(&mut out);
        assert_eq!(out, [0xe0, 0x00], "DISCONNECT");
        out.clear();
        mqtt().goodbye(&mut out);
        assert!(out.is_empty(), "no DISCONNECT before CONNACK");
    }

    #[test]
    fn refused_connack_and_strangers() {
        let e = mqtt()
            .feed(&[0x20, 0x02, 0x00, 0x05], &mut Vec::new())
            .unwrap_err();
        assert!(
            matches!(&e, PingError::Refused(m) if m.contains("not authorized")),
            "{e}"
        );
        let e = mqtt().feed(b"HTTP/1.1 400", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("not an MQTT broker"), "{e}");
    }
}
