//! tcphb's own protocol, `PING n` → `PONG n` (the codec is [`crate::heartbeat`]): answers the peer's
//! pings, counts lines that are not the protocol's.

use super::{Codec, Heard, PingError};
use crate::heartbeat::{self, Decoder, Message};

/// The `line` codec.
#[derive(Debug, Default)]
pub struct Line {
    decoder: Decoder,
}

impl Codec for Line {
    fn ping(&mut self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&heartbeat::ping(seq));
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let r = self.decoder.feed(bytes, |m| match m {
            Message::Ping(seq) => {
                heard.replies += 1;
                out.extend_from_slice(&heartbeat::pong(seq));
            }
            Message::Pong(_) | Message::Data => heard.replies += 1,
            Message::Unknown => heard.unknown += 1,
        });
        r.map(|()| heard)
            .map_err(|e| PingError::Protocol(e.to_string()))
    }

    fn held(&self) -> usize {
        self.decoder.held()
    }
}
