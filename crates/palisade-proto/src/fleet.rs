//! Room for fleet mode (agents reporting to a central server): the versioned envelope every
//! fleet message travels in and the first message an agent sends. Types only for now.

use serde::{Deserialize, Serialize};

/// The fleet protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Whether a peer speaking `v` is understood: the current version and the one before it (so
/// agents and server can be upgraded one after the other).
pub fn accepts(v: u16) -> bool {
    v == PROTOCOL_VERSION || (PROTOCOL_VERSION > 1 && v == PROTOCOL_VERSION - 1)
}

/// Any fleet message, tagged with the protocol version it was written in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope<M> {
    /// Protocol version of `msg` (check with [`accepts`] before reading it).
    pub v: u16,
    /// The message.
    pub msg: M,
}

impl<M> Envelope<M> {
    /// `msg` in the current protocol version.
    pub fn new(msg: M) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            msg,
        }
    }
}

/// The first message of an agent: who it is and what it can do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the agent speaks (its highest).
    pub protocol_version: u16,
    /// Optional features the agent supports (`"ban"`, `"events"`, `"audit"`…); unknown
    /// names are ignored by the receiver.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The agent's name (host name by default).
    pub agent: String,
    /// The agent's Palisade version.
    pub software_version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_in_an_envelope() {
        let h = Envelope::new(Hello {
            protocol_version: PROTOCOL_VERSION,
            capabilities: vec!["ban".into(), "events".into()],
            agent: "web1".into(),
            software_version: "0.1.0".into(),
        });
        let s = serde_json::to_string(&h).unwrap();
        assert!(
            s.starts_with(r#"{"v":1,"msg":{"protocol_version":1"#),
            "{s}"
        );
        let back: Envelope<Hello> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, h);
        // Capabilities may be left out by an older agent.
        let old: Hello = serde_json::from_str(
            r#"{"protocol_version":1,"agent":"a","software_version":"0.0.9"}"#,
        )
        .unwrap();
        assert!(old.capabilities.is_empty());
    }

    #[test]
    fn accepts_current_and_previous_only() {
        assert!(accepts(PROTOCOL_VERSION));
        assert!(!accepts(PROTOCOL_VERSION + 1));
        assert!(!accepts(0));
        if PROTOCOL_VERSION > 1 {
            assert!(accepts(PROTOCOL_VERSION - 1));
        }
        if PROTOCOL_VERSION > 2 {
            assert!(!accepts(PROTOCOL_VERSION - 2));
        }
    }
}
