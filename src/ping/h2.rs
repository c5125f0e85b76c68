//! HTTP/2 (RFC 9113): the connection preface and SETTINGS, then PING frames → PING ACK with the same
//! payload (§6.7). Prior knowledge on plain TCP (h2c), ALPN `h2` over TLS; gRPC servers are pinged
//! this way too. A GOAWAY is decoded and named: gRPC's ENHANCE_YOUR_CALM "too_many_pings" is a live
//! server refusing pings this often, never a dead peer.
//!
//! A frame codec of its own rather than the `h2` crate: `h2` owns the connection (it needs an async
//! stream and runs its own tasks, and answers PINGs itself), while a heartbeat needs five frame types
//! on the one event loop: preface, SETTINGS (and its ACK), PING (and its ACK), GOAWAY, and a 9-byte
//! header to skip everything else by its length — a few dozen lines.

use super::{Codec, Heard, Options, PingError};

/// The client connection preface (§3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_FRAME_SIZE's initial value: tcphb never raises it, so no frame may be longer.
pub const MAX_FRAME: u32 = 16_384;
/// Bytes of a GOAWAY's debug data kept for the report.
const MAX_DEBUG: usize = 128;

const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;

/// The `h2` codec.
#[derive(Debug)]
pub struct H2 {
    /// The frame header being read, then the part of the payload kept (PING, GOAWAY).
    buf: Vec<u8>,
    /// The current frame: type, flags, payload length, payload bytes read so far.
    frame: Option<(u8, u8, u32, u32)>,
    /// Frames read.
    frames: u64,
    /// The heartbeat's interval, to say what a server's ping limit means for it.
    interval: std::time::Duration,
}

impl H2 {
    /// A codec for a heartbeat of `o.interval`.
    pub fn new(o: &Options) -> H2 {
        H2 {
            buf: Vec::with_capacity(9),
            frame: None,
            frames: 0,
            interval: o.interval,
        }
    }

    fn frame(kind: u8, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
        out.extend_from_slice(payload);
    }

    /// A frame is complete: `payload` holds what was kept of it.
    fn complete(
        &mut self,
        kind: u8,
        flags: u8,
        len: u32,
        out: &mut Vec<u8>,
        heard: &mut Heard,
    ) -> Result<(), PingError> {
        let payload = &self.buf[9..];
        match kind {
            SETTINGS if flags & ACK == 0 => {
                if len % 6 != 0 {
                    return Err(PingError::Protocol(
                        "a SETTINGS frame of a bad length".into(),
                    ));
                }
                H2::frame(SETTINGS, ACK, &[], out);
                heard.replies += 1;
            }
            PING if len != 8 => {
                return Err(PingError::Protocol("a PING frame of a bad length".into()));
            }
            PING if flags & ACK == 0 => {
                // The server's own ping: answered with the same payload (§6.7).
                let p = payload.to_vec();
                H2::frame(PING, ACK, &p, out);
                heard.replies += 1;
            }
            GOAWAY if len < 8 => {
                return Err(PingError::Protocol("a GOAWAY frame of a bad length".into()));
            }
            GOAWAY => {
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let debug = super::quote(&payload[8..]);
                return Err(PingError::Refused(goaway(code, &debug, self.interval)));
            }
            _ => heard.replies += 1,
        }
        Ok(())
    }
}

/// An HTTP/2 error code's name (§7).
pub fn error_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "an unknown error code",
    }
}

/// A GOAWAY in words, with what it means for the heartbeat.
fn goaway(code: u32, debug: &str, interval: std::time::Duration) -> String {
    let name = error_name(code);
    let debug_text = if debug.is_empty() {
        String::new()
    } else {
        format!(" \"{debug}\"")
    };
    let what = if code == 0xb && debug.contains("too_many_pings") {
        format!(
            "the server is alive and refuses pings this often. gRPC servers (grpc-core defaults) accept a ping on a connection without calls only every 2 h (every 5 min while calls are active, or with grpc.keepalive_permit_without_calls; grpc.http2.min_ping_interval_without_data_ms sets it) and send this GOAWAY after 2 pings too soon (grpc.http2.max_ping_strikes): a ping every {} is far inside that limit, so this server cannot be watched by HTTP/2 pings at this interval — ping no more often than its limit, or raise the limit on the server",
            crate::units::format_duration(interval)
        )
    } else if code == 0xb {
        "the server is alive and asks tcphb to calm down (too much traffic of some kind)".into()
    } else if code == 0 {
        "the server is closing this connection itself (shutting down, or its own idle or request limit), not a death".into()
    } else {
        "the server is alive and ends this connection with an error".into()
    };
    format!("GOAWAY {name}{debug_text}: {what}")
}

impl Codec for H2 {
    fn hello(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(PREFACE);
        // SETTINGS_ENABLE_PUSH = 0: nothing is to be pushed to a pinger.
        H2::frame(SETTINGS, 0, &[0, 2, 0, 0, 0, 0], out);
    }

    fn ping(&mut self, seq: u64, out: &mut Vec<u8>) {
        H2::frame(PING, 0, &seq.to_be_bytes(), out);
    }

    fn goodbye(&mut self, out: &mut Vec<u8>) {
        // GOAWAY NO_ERROR, last stream 0: no stream was ever opened.
        H2::frame(GOAWAY, 0, &[0; 8], out);
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let mut input = bytes;
        while !input.is_empty() {
            let Some((kind, flags, len, read)) = self.frame else {
                let k = (9 - self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..k]);
                input = &input[k..];
                if self.buf.len() < 9 {
                    continue;
                }
                let h = &self.buf;
                if self.frames == 0 && h.starts_with(b"HTTP/") {
                    return Err(PingError::Protocol(
                        "an HTTP/1 server: it does not take HTTP/2 with prior knowledge (h2c) here; try --ping http, or --tls for h2 by ALPN".into(),
                    ));
                }
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                let (kind, flags) = (h[3], h[4]);
                if self.frames == 0 && kind != SETTINGS {
                    return Err(PingError::Protocol(
                        "not an HTTP/2 server: its first frame was not SETTINGS".into(),
                    ));
                }
                if len > MAX_FRAME {
                    return Err(PingError::Protocol(format!(
                        "an HTTP/2 frame of {len} bytes (FRAME_SIZE_ERROR: at most {MAX_FRAME})"
                    )));
                }
                self.frames += 1;
                self.frame = Some((kind, flags, len, 0));
                if len == 0 {
                    self.complete(kind, flags, 0, out, &mut heard)?;
                    self.frame = None;
                    self.buf.clear();
                }
                continue;
            };
            let keep = match kind {
                PING => 8,
                GOAWAY => 8 + MAX_DEBUG,
                _ => 0,
            };
            let k = ((len - read) as usize).min(input.len());
            let room = (9 + keep).saturating_sub(self.buf.len()).min(k);
            self.buf.extend_from_slice(&input[..room]);
            input = &input[k..];
            let read = read + k as u32;
            if read == len {
                self.complete(kind, flags, len, out, &mut heard)?;
                self.frame = None;
                self.buf.clear();
            } else {
                self.frame = Some((kind, flags, len, read));
            }
        }
        Ok(heard)
    }

    fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2() -> H2 {
        H2::new(&Options {
            interval: std::time::Duration::from_secs(1),
            ..Options::default()
        })
    }

    #[test]
    fn preface_settings_ping_goaway() {
        let mut c = h2();
        let mut out = Vec::new();
        c.hello(&mut out);
        assert!(out.starts_with(PREFACE));
        out.clear();
        // The server's SETTINGS (one setting) is acknowledged; its PING is answered.
        let mut server = Vec::new();
        H2::frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100], &mut server);
        H2::frame(PING, 0, b"abcdefgh", &mut server);
        H2::frame(PING, ACK, &7u64.to_be_bytes(), &mut server);
        let h = c.feed(&server, &mut out).unwrap();
        assert_eq!(h.replies, 3);
        let mut want = Vec::new();
        H2::frame(SETTINGS, ACK, &[], &mut want);
        H2::frame(PING, ACK, b"abcdefgh", &mut want);
        assert_eq!(out, want);
        out.clear();
        c.goodbye(&mut out);
        assert_eq!(
            out,
            [0, 0, 8, GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut goaway = Vec::new();
        let mut payload = vec![0, 0, 0, 0, 0, 0, 0, 0xb];
        payload.extend_from_slice(b"too_many_pings");
        H2::frame(GOAWAY, 0, &payload, &mut goaway);
        let e = c.feed(&goaway, &mut out).unwrap_err();
        assert!(
            matches!(&e, PingError::Refused(m) if m.starts_with("GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\": the server is alive")),
            "{e}"
        );
    }

    #[test]
    fn http1_and_oversized_frames_are_refused() {
        let e = h2()
            .feed(b"HTTP/1.1 400 Bad Request\r\n", &mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("an HTTP/1 server"), "{e}");
        let e = h2()
            .feed(&[0xff, 0xff, 0xff, 4, 0, 0, 0, 0, 0], &mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("FRAME_SIZE_ERROR"), "{e}");
    }
}
