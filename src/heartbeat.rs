//! The heartbeat wire protocol: a bounded line codec with no I/O.
//!
//! Text lines an operator can speak with `nc`: `PING <seq>\n` is answered by `PONG <seq>\n`; a plain echo
//! server returning `PING <seq>` counts as alive too. `DATA <filler>` lines carry busy load and are
//! discarded. Unknown lines are counted, not fatal. A line longer than [`MAX_LINE`] is a protocol error: the
//! connection is closed with that reason, so one hostile peer cannot make tcphb buffer without bound.

use crate::ping::lines::Lines;

/// Longest accepted line, newline included. Generous for `DATA` filler, small enough to bound memory.
pub const MAX_LINE: usize = 1024;

/// One decoded line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `PING <seq>`: answer with `PONG <seq>` (or it is our own ping echoed back).
    Ping(u64),
    /// `PONG <seq>`: an answer to our ping.
    Pong(u64),
    /// `DATA ...`: load filler, discarded.
    Data,
    /// Anything else: counted, ignored.
    Unknown,
}

/// Why the codec gave up on a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("line longer than {MAX_LINE} bytes: peer does not speak the heartbeat protocol")]
    LineTooLong,
}

/// Incremental decoder: feed bytes as they arrive, take complete messages out.
///
/// Holds at most one partial line (≤ [`MAX_LINE`] bytes), so its memory is bounded per connection.
#[derive(Debug, Default)]
pub struct Decoder {
    lines: Lines,
}

impl Decoder {
    /// Create an empty decoder (allocates nothing until a partial line has to be kept).
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode every complete line in `bytes`, calling `on_msg` for each, and keep any trailing partial line.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_msg: impl FnMut(Message),
    ) -> Result<(), CodecError> {
        self.lines.feed(
            bytes,
            MAX_LINE,
            || CodecError::LineTooLong,
            |line| {
                on_msg(parse_line(line));
                Ok(())
            },
        )
    }

    /// Bytes of the partial line held.
    pub fn held(&self) -> usize {
        self.lines.held()
    }
}

/// Parse one line without its newline (a trailing `\r` is tolerated for `nc -C` users).
pub fn parse_line(line: &[u8]) -> Message {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let seq = |rest: &[u8]| std::str::from_utf8(rest).ok()?.trim().parse::<u64>().ok();
    if let Some(rest) = line.strip_prefix(b"PING ") {
        return seq(rest).map_or(Message::Unknown, Message::Ping);
    }
    if let Some(rest) = line.strip_prefix(b"PONG ") {
        return seq(rest).map_or(Message::Unknown, Message::Pong);
    }
    if line.starts_with(b"DATA") {
        return Message::Data;
    }
    Message::Unknown
}

/// Encode `PING <seq>\n`.
pub fn ping(seq: u64) -> Vec<u8> {
    format!("PING {seq}\n").into_bytes()
}

/// Encode `PONG <seq>\n`.
pub fn pong(seq: u64) -> Vec<u8> {
    format!("PONG {seq}\n").into_bytes()
}

/// Bytes of busy load per [`data_block`]: 16 lines just under [`MAX_LINE`].
pub const DATA_BLOCK: usize = 16 * DATA_LINE;
/// One `DATA` filler line, newline included: long lines keep the receiver's per-line work (and so
/// the CPU a busy lab burns) small beside the bytes it moves.
const DATA_LINE: usize = MAX_LINE - 24;

/// A block of [`DATA_BLOCK`] bytes of `DATA` filler lines, used as busy load. Built once: a busy
/// writer copies it out every few milliseconds, and building it each time cost a debug build more
/// CPU than the writing.
pub fn data_block() -> &'static [u8] {
    static BLOCK: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let mut line = b"DATA tcphb busy load: discard me ".to_vec();
        line.resize(DATA_LINE - 1, b'.');
        line.push(b'\n');
        line.repeat(DATA_BLOCK / DATA_LINE)
    });
    &BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Message>, CodecError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, |m| out.push(m))?;
        }
        Ok(out)
    }

    #[test]
    fn decodes_across_chunk_boundaries() {
        let got = decode_all(&[b"PI", b"NG 7\nPONG 8\r\nDA", b"TA xx\nhello\n"]).unwrap();
        assert_eq!(
            got,
            vec![
                Message::Ping(7),
                Message::Pong(8),
                Message::Data,
                Message::Unknown
            ]
        );
    }

    #[test]
    fn bad_numbers_are_unknown_not_fatal() {
        assert_eq!(parse_line(b"PING x"), Message::Unknown);
        assert_eq!(parse_line(b"PONG "), Message::Unknown);
        assert_eq!(parse_line(b"PING 18446744073709551616"), Message::Unknown);
    }

    #[test]
    fn long_lines_are_refused_whole_or_split() {
        let long = vec![b'a'; MAX_LINE + 10];
        assert_eq!(decode_all(&[&long]), Err(CodecError::LineTooLong));
        let (a, b) = long.split_at(600);
        assert_eq!(decode_all(&[a, b]), Err(CodecError::LineTooLong));
        let mut with_nl = long.clone();
        with_nl.push(b'\n');
        assert_eq!(decode_all(&[&with_nl]), Err(CodecError::LineTooLong));
    }

    #[test]
    fn encoders_round_trip() {
        let mut bytes = ping(1);
        bytes.extend(pong(2));
        bytes.extend(data_block());
        let got = decode_all(&[&bytes]).unwrap();
        assert_eq!(&got[..2], &[Message::Ping(1), Message::Pong(2)]);
        assert_eq!(got.len(), 2 + DATA_BLOCK / DATA_LINE);
        assert!(got[2..].iter().all(|m| *m == Message::Data));
        assert_eq!(data_block().len(), DATA_BLOCK);
    }
}
