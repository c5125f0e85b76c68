//! Properties shared by the fuzz targets (`tests/fuzz/fuzz_targets/*.rs`, nightly-only via `cargo fuzz`) and the
//! stable regression test `tests/fuzz_corpus.rs`, which replays every file in `tests/fuzz/corpus/{spec,codec}/`.
//!
//! Each `check_*` takes the fuzzer's raw bytes and panics when a property is violated; it must never panic on
//! its own for any input.

use std::time::Duration;

use tcphb::heartbeat::{self, CodecError, Decoder, MAX_LINE, Message};
use tcphb::scenario::Fault;
use tcphb::strategy::{Heartbeat, Keepalive, Strategy, parse_duration, parse_user_timeout};
use tcphb::units::format_duration;

/// The `spec` target: the text (if UTF-8) goes through every spec parser; whatever parses must display in a
/// form that parses back to the same value and displays identically again.
pub fn check_spec(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check_strategy(s);
    check_keepalive(s);
    check_heartbeat(s);
    check_duration(s);
    check_user_timeout(s);
    check_fault(s);
}

fn check_strategy(s: &str) {
    let Ok(st) = s.parse::<Strategy>() else {
        return;
    };
    let shown = st.to_string();
    let back: Strategy = shown
        .parse()
        .unwrap_or_else(|e| panic!("{s:?} parses, but its display {shown:?} does not: {e}"));
    assert_eq!(
        back, st,
        "{s:?} displays as {shown:?}, which parses differently"
    );
    assert_eq!(back.to_string(), shown, "display of {s:?} is not stable");
    // The unlabelled spec parses back to the same mechanisms.
    let unlabelled = Strategy {
        label: None,
        ..st.clone()
    };
    assert_eq!(
        st.spec().parse::<Strategy>(),
        Ok(unlabelled),
        "spec of {s:?}"
    );
    if let Some(label) = &st.label {
        assert_eq!(st.name(), *label);
    }
    assert_eq!(
        st.is_none(),
        st.spec() == "none",
        "is_none disagrees with the spec of {s:?}"
    );
    keepalive_invariants(st.keepalive, s);
    if let Some(u) = st.user_timeout {
        user_timeout_invariants(u, s);
    }
    if let Some(h) = st.heartbeat {
        heartbeat_invariants(h, s);
    }
}

fn check_keepalive(s: &str) {
    let Ok(k) = s.parse::<Keepalive>() else {
        return;
    };
    keepalive_invariants(k, s);
    let shown = k.to_string();
    assert_eq!(
        shown.parse::<Keepalive>(),
        Ok(k),
        "keepalive {s:?} shown as {shown:?}"
    );
}

fn check_heartbeat(s: &str) {
    let Ok(h) = s.parse::<Heartbeat>() else {
        return;
    };
    heartbeat_invariants(h, s);
    let shown = h.to_string();
    assert_eq!(
        shown.parse::<Heartbeat>(),
        Ok(h),
        "heartbeat {s:?} shown as {shown:?}"
    );
}

fn check_duration(s: &str) {
    let Ok(d) = parse_duration(s) else {
        return;
    };
    let shown = format_duration(d);
    assert_eq!(
        parse_duration(&shown),
        Ok(d),
        "duration {s:?} shown as {shown:?}"
    );
}

fn check_user_timeout(s: &str) {
    let Ok(u) = parse_user_timeout(s) else {
        return;
    };
    user_timeout_invariants(u, s);
    let shown = format_duration(u);
    assert_eq!(
        parse_user_timeout(&shown),
        Ok(u),
        "user timeout {s:?} shown as {shown:?}"
    );
}

fn check_fault(s: &str) {
    let Ok(f) = s.parse::<Fault>() else {
        return;
    };
    assert_eq!(f.to_string().parse::<Fault>(), Ok(f), "fault {s:?}");
}

fn keepalive_invariants(k: Keepalive, s: &str) {
    if let Keepalive::Custom {
        idle,
        interval,
        count,
    } = k
    {
        assert!(
            !idle.is_zero() && !interval.is_zero() && count != Some(0),
            "{s:?} gave {k:?}"
        );
    }
}

fn heartbeat_invariants(h: Heartbeat, s: &str) {
    assert!(
        h.interval >= Duration::from_millis(10) && (1..=1000).contains(&h.misses),
        "{s:?} gave {h:?}"
    );
}

fn user_timeout_invariants(u: Duration, s: &str) {
    assert!(
        !u.is_zero() && u.subsec_nanos() % 1_000_000 == 0 && u.as_millis() <= i32::MAX as u128,
        "{s:?} gave user timeout {u:?}"
    );
}

/// Split the fuzzer's bytes into (chunk boundaries, stream). Byte 0: number of cuts (low 4 bits); then one
/// little-endian u16 per cut (taken modulo the stream length + 1, so empty chunks happen too); then the stream.
pub fn split_codec_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let header = (usize::from(n & 0x0f) * 2).min(rest.len());
    let (cuts, stream) = rest.split_at(header);
    let mut cuts: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    (cuts, stream)
}

/// What any chunking must produce: the messages before the first over-long line, that error if any, and
/// otherwise the trailing partial line the decoder must be holding.
fn model(stream: &[u8]) -> (Vec<Message>, Result<&[u8], CodecError>) {
    let mut msgs = Vec::new();
    let mut rest = stream;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        if line.len() >= MAX_LINE {
            return (msgs, Err(CodecError::LineTooLong));
        }
        msgs.push(heartbeat::parse_line(line));
        rest = &rest[nl + 1..];
    }
    if rest.len() >= MAX_LINE {
        return (msgs, Err(CodecError::LineTooLong));
    }
    (msgs, Ok(rest))
}

/// The bytes a decoder holds. `Decoder` keeps its buffer private and shows it only through `Debug`
/// (`Decoder { partial: [80, 73] }`), so read it from there rather than widen the library's API.
fn held(d: &Decoder) -> Vec<u8> {
    let dbg = format!("{d:?}");
    let (Some(open), Some(close)) = (dbg.find('['), dbg.rfind(']')) else {
        panic!("unexpected Debug form of Decoder: {dbg}");
    };
    dbg[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u8>().expect("Decoder Debug lists bytes"))
        .collect()
}

/// Feed `chunks` one after another until the first error; returns the messages and the outcome.
/// After every successful feed, checks that the decoder holds exactly the partial line so far (< MAX_LINE).
fn decode_chunks<'a>(
    stream: &[u8],
    chunks: impl Iterator<Item = &'a [u8]>,
    check_held: bool,
) -> (Vec<Message>, Result<(), CodecError>, Decoder) {
    let mut d = Decoder::new();
    let mut msgs = Vec::new();
    let mut fed = 0;
    for chunk in chunks {
        if let Err(e) = d.feed(chunk, |m| msgs.push(m)) {
            return (msgs, Err(e), d);
        }
        fed += chunk.len();
        if check_held {
            let so_far = &stream[..fed];
            let start = so_far
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let h = held(&d);
            assert!(h.len() < MAX_LINE, "decoder holds {} bytes", h.len());
            assert_eq!(h, &so_far[start..], "decoder holds the wrong partial line");
        }
    }
    (msgs, Ok(()), d)
}

/// `stream` cut at each of `cuts` (ascending offsets into it): the pieces, in order.
fn pieces_at<'a>(stream: &'a [u8], cuts: &[usize]) -> impl Iterator<Item = &'a [u8]> {
    cuts.iter()
        .copied()
        .chain(std::iter::once(stream.len()))
        .scan(0, move |start, end| {
            let piece = &stream[*start..end];
            *start = end;
            Some(piece)
        })
}

/// The `codec` target: any chunking of the stream gives the same messages and the same LineTooLong as the
/// line-by-line model (and as feeding it whole); the decoder never holds a line of MAX_LINE bytes or more.
pub fn check_codec(data: &[u8]) {
    let (cuts, stream) = split_codec_input(data);
    let (want_msgs, want) = model(stream);

    let whole = decode_chunks(stream, std::iter::once(stream), true);
    let pieces = pieces_at(stream, &cuts);
    let chunked = decode_chunks(stream, pieces, true);
    let bytewise = decode_chunks(stream, stream.chunks(1), false);

    for (how, (msgs, res, mut d)) in [
        ("whole", whole),
        ("chunked", chunked),
        ("bytewise", bytewise),
    ] {
        assert_eq!(
            msgs, want_msgs,
            "{how}: messages differ from the model (cuts {cuts:?})"
        );
        match (&want, res) {
            (Err(e), Err(got)) => assert_eq!(&got, e, "{how}"),
            (Ok(tail), Ok(())) => {
                // Ending the partial line yields exactly the message the model expects for it.
                let mut last = Vec::new();
                d.feed(b"\n", |m| last.push(m))
                    .expect("closing a short partial line");
                assert_eq!(last, [heartbeat::parse_line(tail)], "{how}: trailing line");
            }
            (want, got) => {
                panic!("{how}: model says {want:?}, decoder says {got:?} (cuts {cuts:?})")
            }
        }
    }

    // The encoders' output decodes to what was encoded.
    if let Some(seq) = stream.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)) {
        let mut bytes = heartbeat::ping(seq);
        bytes.extend(heartbeat::pong(seq));
        let (msgs, res, _) = decode_chunks(&bytes, std::iter::once(&bytes[..]), false);
        assert_eq!(
            (msgs, res),
            (vec![Message::Ping(seq), Message::Pong(seq)], Ok(()))
        );
    }
}

/// The protocols `check_replies` picks from with its first byte.
const PROTOCOLS: [tcphb::strategy::Protocol; 7] = tcphb::strategy::Protocol::ALL;

/// The most a codec may hold between feeds, per protocol (its documented bound, plus the frame
/// header or line being read).
fn held_bound(p: tcphb::strategy::Protocol) -> usize {
    use tcphb::ping;
    use tcphb::strategy::Protocol as P;
    match p {
        P::Line => MAX_LINE,
        P::Redis => ping::redis::MAX_REPLY,
        P::Memcached => ping::memcached::MAX_REPLY,
        P::Http => ping::http::MAX_HEAD,
        P::H2 => 9 + 8 + 128,
        P::Websocket => ping::http::MAX_HEAD,
        P::Mqtt => 5,
    }
}

/// Feed `chunks` to a fresh codec of `p` after its hello; the outcome (the first error, or the
/// totals heard) and the bytes it asked to send after the hello.
fn feed_reply_chunks<'a>(
    p: tcphb::strategy::Protocol,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Result<tcphb::ping::Heard, tcphb::ping::PingError>, Vec<u8>) {
    use tcphb::ping::{Codec, Heard, Options, Pinger};
    let options = Options {
        path: "/".into(),
        authority: "127.0.0.1:1".into(),
        interval: Duration::from_secs(1),
        misses: 3,
    };
    let mut codec = Pinger::new(p, &options);
    let mut hello = Vec::new();
    codec.hello(&mut hello);
    let mut out = Vec::new();
    let mut total = Heard::default();
    for (i, chunk) in chunks.enumerate() {
        // A ping between chunks, as the watcher sends them: never a panic, whatever state.
        if i % 3 == 1 {
            codec.ping(i as u64, &mut Vec::new());
        }
        match codec.feed(chunk, &mut out) {
            Ok(h) => {
                total.replies += h.replies;
                total.unknown += h.unknown;
            }
            Err(e) => return (Err(e), out),
        }
        let held = codec.held();
        assert!(
            held <= held_bound(p),
            "{p}: the codec holds {held} bytes (bound {})",
            held_bound(p)
        );
        let _ = codec.note();
    }
    codec.goodbye(&mut Vec::new());
    (Ok(total), out)
}

/// The `replies` target: byte 0 picks a protocol, the rest is cut like the `codec` target's input
/// and fed to that protocol's reply parser (`tcphb::ping`). Nothing may panic; the codec never
/// holds more than its bound; whole, chunked and byte-by-byte feeding end the same way (the same
/// error, or the same counts and the same answers — WebSocket's answers are masked at random, so
/// only its outcome is compared).
pub fn check_replies(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let p = PROTOCOLS[usize::from(which) % PROTOCOLS.len()];
    let (cuts, stream) = split_codec_input(rest);
    let pieces = pieces_at(stream, &cuts);
    let whole = feed_reply_chunks(p, std::iter::once(stream));
    let chunked = feed_reply_chunks(p, pieces);
    let bytewise = feed_reply_chunks(p, stream.chunks(1));
    for (how, got) in [("chunked", chunked), ("bytewise", bytewise)] {
        // tungstenite refuses, on purpose, an upgrade response dribbled in hundreds of tiny
        // packets (its handshake's attack check): a byte-at-a-time feed may end so instead.
        if p == tcphb::strategy::Protocol::Websocket
            && matches!(&got.0, Err(tcphb::ping::PingError::Protocol(m)) if m.ends_with("Attack attempt detected"))
        {
            continue;
        }
        assert_eq!(
            got.0, whole.0,
            "{p}, {how} (cuts {cuts:?}): outcome differs from whole"
        );
        if p != tcphb::strategy::Protocol::Websocket && got.0.is_ok() {
            assert_eq!(got.1, whole.1, "{p}, {how}: answers differ from whole");
        }
    }
}
