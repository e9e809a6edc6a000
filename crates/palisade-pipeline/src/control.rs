//! The control socket: one JSON [`Request`] per connection line, one JSON [`Response`] line.
//! Used by `palisade decisions add|delete`, `palisade status`, `palisade reload` and
//! `palisade record` while the daemon runs. The socket is created mode 0600 (root only).
//!
//! The messages are the typed ones of [`palisade_proto::control`]; this module only moves
//! them over the socket.

pub use palisade_proto::control::{unexpected, ControlError, Reply, Request, Response};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest request accepted, in bytes.
pub const MAX_REQUEST: u64 = 64 * 1024;

/// Largest answer read, in bytes (a status with 1000 bans fits many times over).
pub const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Sends one request to the daemon at `socket`. `Ok(None)` when no daemon listens there;
/// `Err` when the exchange itself failed (an unreadable answer is `InvalidData`).
pub fn call(socket: &Path, req: &Request) -> std::io::Result<Option<Result<Reply, ControlError>>> {
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    // A reload re-reads the configuration and restarts the sources: allow it time.
    s.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s.take(MAX_ANSWER));
    let mut out = String::new();
    r.read_line(&mut out)?;
    serde_json::from_str::<Response>(&out)
        .map(|r| Some(r.into()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads one request from a connection (bounded). The error is the refusal to send back.
pub fn read_request(s: &UnixStream) -> Result<Request, ControlError> {
    let mut r = BufReader::new(s.take(MAX_REQUEST));
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| ControlError::Refused(format!("reading the request: {e}")))?;
    serde_json::from_str(&line).map_err(|e| ControlError::Refused(format!("bad request: {e}")))
}
