//! Control requests to the running daemon and its typed replies.
//!
//! On the control socket (`/run/palisade/palisade.sock`) one [`Request`] is one JSON line and
//! the answer one JSON [`Response`] line. The same types are used in-process (the HTTP API
//! calls the daemon through them), so the JSON is an encoding detail: the types are the truth.

use crate::status::StatusReport;
use ipnet::IpNet;
use palisade_core::Decision;
use serde::{Deserialize, Serialize};

/// A request to the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Counters, jails, sources, health, bans in force: answered by [`Reply::Status`].
    Status,
    /// Ban an address or network: answered by [`Reply::Banned`].
    Ban {
        /// The address (as /32, /128) or network; a bare address is read as its /32, /128.
        #[serde(deserialize_with = "net_or_addr")]
        target: IpNet,
        /// Seconds; `None` = permanent.
        duration_secs: Option<u64>,
        /// Why (empty: "manual ban").
        #[serde(default)]
        reason: String,
    },
    /// Lift the bans of an address or network: answered by [`Reply::Lifted`].
    Unban {
        /// The address or network; a bare address is read as its /32, /128.
        #[serde(deserialize_with = "net_or_addr")]
        target: IpNet,
    },
    /// Record (and enforce) a ban decided elsewhere: fail2ban's `actionban` through
    /// `palisade record`. The allowlist still applies. Answered by [`Reply::Recorded`].
    Record {
        /// The decision as decided (origin, jail, created, expires).
        decision: Decision,
    },
    /// Replace the allowlist entries kept outside the configuration (the dashboard's, from the
    /// store). The daemon enforces the configured allowlist plus these; bans in force that the
    /// result covers are lifted. Answered by [`Reply::AllowlistSet`].
    SetAllowlist {
        /// Networks (addresses as /32 or /128).
        extra: Vec<IpNet>,
    },
    /// Re-read the configuration and apply it (as `SIGHUP` does): answered by
    /// [`Reply::Reloaded`], or [`ControlError::Refused`] with the validation error (the
    /// running configuration stays).
    Reload,
}

/// A network, or a bare address as its host network (what older clients sent).
fn net_or_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "{:?} is not an IP address or CIDR network",
                s.chars().take(64).collect::<String>()
            ))
        })
}

/// The daemon's successful answer; one variant per [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// To [`Request::Status`].
    Status(Box<StatusReport>),
    /// To [`Request::Ban`]: the decision taken.
    Banned(Decision),
    /// To [`Request::Unban`]: how many bans were lifted.
    Lifted(u64),
    /// To [`Request::Record`]: the decision as recorded.
    Recorded(Decision),
    /// To [`Request::SetAllowlist`]: entries in the allowlist now enforced.
    AllowlistSet(u64),
    /// To [`Request::Reload`]: successful reloads since start, this one included.
    Reloaded(u64),
}

/// Why the daemon did not do what was asked. Callers match on the variant, never on the text.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "reason", rename_all = "snake_case")]
pub enum ControlError {
    /// No daemon is reachable, or it is stopping or did not answer (HTTP 503). The text says
    /// which, for people.
    #[error("daemon unavailable: {0}")]
    Unavailable(String),
    /// The daemon refused: allowlisted target, bad request, configuration that does not
    /// validate (HTTP 422). The reason is for people.
    #[error("{0}")]
    Refused(String),
}

/// The answer on the wire: `{"ok": Reply}` or `{"err": ControlError}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success.
    Ok(Reply),
    /// Failure.
    Err(ControlError),
}

impl From<Result<Reply, ControlError>> for Response {
    fn from(r: Result<Reply, ControlError>) -> Self {
        match r {
            Ok(r) => Response::Ok(r),
            Err(e) => Response::Err(e),
        }
    }
}

impl From<Response> for Result<Reply, ControlError> {
    fn from(r: Response) -> Self {
        match r {
            Response::Ok(r) => Ok(r),
            Response::Err(e) => Err(e),
        }
    }
}

impl Reply {
    /// The reply's name, for "unexpected reply" errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Status(_) => "status",
            Reply::Banned(_) => "banned",
            Reply::Lifted(_) => "lifted",
            Reply::Recorded(_) => "recorded",
            Reply::AllowlistSet(_) => "allowlist_set",
            Reply::Reloaded(_) => "reloaded",
        }
    }
}

/// A reply that does not answer the request sent (a daemon of another version).
pub fn unexpected(r: &Reply) -> ControlError {
    ControlError::Refused(format!("unexpected reply {:?} from the daemon", r.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::{Origin, Timestamp};

    fn decision() -> Decision {
        Decision {
            id: 7,
            target: "203.0.113.9/32".parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Manual,
            reason: "manual ban".into(),
            created: Timestamp::from_secs(1_700_000_000),
            expires: Some(Timestamp::from_secs(1_700_003_600)),
            simulated: false,
            level: 1,
        }
    }

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
        let s = serde_json::to_string(v).unwrap();
        let back: T = serde_json::from_str(&s).unwrap();
        assert_eq!(&back, v, "{s}");
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status,
            Request::Ban {
                target: "2001:db8::/64".parse().unwrap(),
                duration_secs: Some(3600),
                reason: "x".into(),
            },
            Request::Unban {
                target: "198.51.100.7/32".parse().unwrap(),
            },
            Request::Record {
                decision: decision(),
            },
            Request::SetAllowlist {
                extra: vec!["192.0.2.0/24".parse().unwrap()],
            },
            Request::Reload,
        ] {
            round_trip(&r);
        }
        // The op tag is the wire name.
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"op":"reload"}"#
        );
        assert_eq!(
            serde_json::to_value(Request::Ban {
                target: "203.0.113.9/32".parse().unwrap(),
                duration_secs: None,
                reason: String::new()
            })
            .unwrap(),
            serde_json::json!({"op": "ban", "target": "203.0.113.9/32", "duration_secs": null,
                               "reason": ""})
        );
    }

    #[test]
    fn replies_and_errors_round_trip() {
        for r in [
            Response::Ok(Reply::Status(Box::default())),
            Response::Ok(Reply::Banned(decision())),
            Response::Ok(Reply::Lifted(3)),
            Response::Ok(Reply::Recorded(decision())),
            Response::Ok(Reply::AllowlistSet(2)),
            Response::Ok(Reply::Reloaded(1)),
            Response::Err(ControlError::Unavailable("stopping".into())),
            Response::Err(ControlError::Refused("allowlisted".into())),
        ] {
            round_trip(&r);
        }
        assert_eq!(
            serde_json::to_value(Response::Ok(Reply::Lifted(2))).unwrap(),
            serde_json::json!({"ok": {"reply": "lifted", "data": 2}})
        );
        assert_eq!(
            serde_json::to_value(Response::Err(ControlError::Refused("no".into()))).unwrap(),
            serde_json::json!({"err": {"error": "refused", "reason": "no"}})
        );
        let r: Result<Reply, ControlError> = Response::Ok(Reply::Lifted(1)).into();
        assert_eq!(r, Ok(Reply::Lifted(1)));
    }

    #[test]
    fn unknown_ops_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        // A target must be a network, not free text.
        assert!(serde_json::from_str::<Request>(r#"{"op":"unban","target":"evil"}"#).is_err());
        // A bare address is its host network.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"unban","target":"2001:db8::7"}"#).unwrap(),
            Request::Unban {
                target: "2001:db8::7/128".parse().unwrap()
            }
        );
    }
}
