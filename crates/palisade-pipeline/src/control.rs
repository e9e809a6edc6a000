//! The control socket: one JSON request per connection line, one JSON response line.
//! Used by `palisade decisions add|delete` and `palisade status` while the daemon runs.
//! The socket is created mode 0600 (root only).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest request accepted, in bytes.
pub const MAX_REQUEST: u64 = 64 * 1024;

/// A request to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Counters, jails, bans in force.
    Status,
    /// Ban an address or network.
    Ban {
        /// Address or CIDR.
        target: String,
        /// Seconds; `None` = permanent.
        duration_secs: Option<u64>,
        /// Why.
        reason: String,
    },
    /// Lift bans of an address or network.
    Unban {
        /// Address or CIDR.
        target: String,
    },
    /// Record (and enforce) a ban decided elsewhere: fail2ban's `actionban` through
    /// `palisade record`. The allowlist still applies.
    Record {
        /// The decision as decided (origin, jail, created, expires).
        decision: palisade_core::Decision,
    },
    /// Replace the allowlist entries kept outside the configuration (the dashboard's, from the
    /// store). The daemon enforces the configured allowlist plus these; bans in force that the
    /// result covers are lifted.
    SetAllowlist {
        /// Networks (addresses as /32 or /128).
        extra: Vec<ipnet::IpNet>,
    },
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Error or short message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Payload (status object, decision).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    /// A failure.
    pub fn err(msg: impl Into<String>) -> Self {
        Response {
            ok: false,
            message: msg.into(),
            data: serde_json::Value::Null,
        }
    }
    /// A success with data.
    pub fn ok(data: serde_json::Value) -> Self {
        Response {
            ok: true,
            message: String::new(),
            data,
        }
    }
}

/// Sends one request to the daemon at `socket`. `Ok(None)` when no daemon listens there.
pub fn call(socket: &Path, req: &Request) -> std::io::Result<Option<Response>> {
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
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s.take(16 * 1024 * 1024));
    let mut out = String::new();
    r.read_line(&mut out)?;
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads one request from a connection (bounded).
pub fn read_request(s: &UnixStream) -> Result<Request, String> {
    let mut r = BufReader::new(s.take(MAX_REQUEST));
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"))
}
