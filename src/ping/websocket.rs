//! WebSocket (RFC 6455): the upgrade on `--path`, then masked ping frames → pong. A server's own
//! ping is answered with a pong; its close frame is named (code and reason).
//!
//! The framing is `tungstenite`'s, run sans-IO: it reads and writes an in-memory [`Pipe`] that the
//! watcher fills with the peer's bytes and empties onto the socket, and reports "would block" when
//! the pipe runs dry, as a non-blocking socket would. Its buffers are bounded by the config below.

use std::io::{self, Read, Write};

use tungstenite::handshake::client::{ClientHandshake, Request};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error, Message, WebSocket};

use super::{Codec, Heard, Options, PingError};

/// Largest frame or message accepted from the server (pongs carry 8 bytes; an echo server's own
/// messages are small).
pub const MAX_FRAME: usize = 64 * 1024;
/// tungstenite's read buffer: allocated once per connection.
const READ_BUFFER: usize = 4096;

/// The bytes between tungstenite and the socket.
#[derive(Debug, Default)]
pub struct Pipe {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.pos..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    /// Not opened yet: the upgrade request to send.
    Start(Box<Option<Request>>),
    Upgrading(MidHandshake<ClientHandshake<Pipe>>),
    Open(WebSocket<Pipe>),
    /// Ended (the error was reported).
    Done,
}

/// The `websocket` codec.
pub struct Websocket {
    state: State,
    path: String,
    /// The request could not be built (reported at the first feed).
    bad_request: Option<String>,
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_FRAME))
}

impl Websocket {
    /// A codec upgrading on `ws://authority/path`.
    pub fn new(o: &Options) -> Websocket {
        use tungstenite::client::IntoClientRequest;
        let url = format!("ws://{}{}", o.authority, o.path);
        let (state, bad_request) = match url.as_str().into_client_request() {
            Ok(mut r) => {
                if let Ok(ua) = format!("tcphb/{}", env!("CARGO_PKG_VERSION")).parse() {
                    r.headers_mut().insert("User-Agent", ua);
                }
                (State::Start(Box::new(Some(r))), None)
            }
            Err(e) => (
                State::Done,
                Some(format!("cannot build the upgrade to {url}: {e}")),
            ),
        };
        Websocket {
            state,
            path: o.path.clone(),
            bad_request,
        }
    }

    fn pipe(&mut self) -> Option<&mut Pipe> {
        match &mut self.state {
            State::Upgrading(m) => Some(m.get_mut().get_mut()),
            State::Open(ws) => Some(ws.get_mut()),
            _ => None,
        }
    }

    /// Move what tungstenite wrote onto `out`.
    fn drain(&mut self, out: &mut Vec<u8>) {
        if let Some(p) = self.pipe() {
            out.append(&mut p.output);
        }
    }

    /// Read every frame the pipe holds.
    fn read_frames(&mut self, heard: &mut Heard) -> Result<(), PingError> {
        let State::Open(ws) = &mut self.state else {
            return Ok(());
        };
        loop {
            match ws.read() {
                Ok(Message::Pong(_) | Message::Ping(_)) => heard.replies += 1,
                Ok(Message::Text(_) | Message::Binary(_) | Message::Frame(_)) => heard.unknown += 1,
                Ok(Message::Close(frame)) => {
                    return Err(PingError::Refused(closed(frame.as_ref())));
                }
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    return Err(PingError::Refused(closed(None)));
                }
                Err(e) => return Err(PingError::Protocol(format!("WebSocket: {e}"))),
            }
        }
        // A server's ping is answered by tungstenite; flushing writes the pong into the pipe.
        match ws.flush() {
            Ok(()) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => Ok(()),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(PingError::Protocol(format!("WebSocket: {e}"))),
        }
    }
}

/// A close from the server, in words.
fn closed(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!(
            "the server closed the WebSocket: code {} ({:?}){}",
            u16::from(f.code),
            f.code,
            if f.reason.is_empty() {
                String::new()
            } else {
                format!(", '{}'", super::quote(f.reason.as_bytes()))
            }
        ),
        None => "the server closed the WebSocket".into(),
    }
}

impl Codec for Websocket {
    fn hello(&mut self, out: &mut Vec<u8>) {
        let State::Start(req) = &mut self.state else {
            return;
        };
        let Some(req) = req.take() else { return };
        self.state = match ClientHandshake::start(Pipe::default(), req, Some(config())) {
            // Writes the request, then finds nothing to read yet.
            Ok(mid) => match mid.handshake() {
                Err(HandshakeError::Interrupted(mid)) => State::Upgrading(mid),
                Ok((ws, _)) => State::Open(ws),
                Err(HandshakeError::Failure(e)) => {
                    self.bad_request = Some(format!("cannot start the WebSocket upgrade: {e}"));
                    State::Done
                }
            },
            Err(e) => {
                self.bad_request = Some(format!("cannot start the WebSocket upgrade: {e}"));
                State::Done
            }
        };
        self.drain(out);
    }

    fn ping(&mut self, seq: u64, out: &mut Vec<u8>) {
        if let State::Open(ws) = &mut self.state {
            // Written straight into the pipe (write_buffer_size 0); an error leaves the pipe as is
            // and the next read reports it.
            let _ = ws.send(Message::Ping(seq.to_be_bytes().to_vec().into()));
        }
        self.drain(out);
    }

    fn goodbye(&mut self, out: &mut Vec<u8>) {
        if let State::Open(ws) = &mut self.state {
            // A close frame, 1000 (normal closure).
            let _ = ws.close(Some(CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            }));
            let _ = ws.flush();
        }
        self.drain(out);
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Heard, PingError> {
        if let Some(why) = &self.bad_request {
            return Err(PingError::Protocol(why.clone()));
        }
        let mut heard = Heard::default();
        match self.pipe() {
            Some(p) => p.input.extend_from_slice(bytes),
            None => return Ok(heard),
        }
        if matches!(self.state, State::Upgrading(_)) {
            let State::Upgrading(mid) = std::mem::replace(&mut self.state, State::Done) else {
                unreachable!("matched above");
            };
            match mid.handshake() {
                Ok((ws, _response)) => {
                    heard.replies += 1;
                    self.state = State::Open(ws);
                }
                Err(HandshakeError::Interrupted(mid)) => {
                    self.state = State::Upgrading(mid);
                    if mid_held(&self.state) > super::http::MAX_HEAD {
                        return Err(PingError::Protocol(
                            "an upgrade response longer than 16 KiB".into(),
                        ));
                    }
                }
                Err(HandshakeError::Failure(e)) => {
                    return Err(PingError::Protocol(match e {
                        Error::Http(r) => format!(
                            "the server refused the WebSocket upgrade on {}: {} (choose the path with --path)",
                            self.path,
                            r.status()
                        ),
                        e => format!("the WebSocket upgrade failed: {e}"),
                    }));
                }
            }
        }
        let r = self.read_frames(&mut heard);
        self.drain(out);
        if r.is_err() {
            self.state = State::Done;
        }
        r.map(|()| heard)
    }

    fn held(&self) -> usize {
        mid_held(&self.state)
    }
}

/// Bytes in the pipe not yet taken by tungstenite (it takes them all at each read, so this stays
/// small; its own buffers are bounded by [`config`]).
fn mid_held(state: &State) -> usize {
    match state {
        State::Upgrading(m) => {
            let p = m.get_ref().get_ref();
            p.input.len() - p.pos
        }
        State::Open(ws) => ws.get_ref().input.len() - ws.get_ref().pos,
        _ => 0,
    }
}
