//! The server's two links to the daemon: [`ControlApi`] (requests) and [`FeedHub`] (what
//! happens, as it happens). Both are defined here so the server does not depend on the
//! pipeline; the binary adapts the daemon to them.

use ipnet::IpNet;
use palisade_core::{Decision, Event};
pub use palisade_proto::{ControlError, StatusReport};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Requests to the running daemon, in the typed messages of [`palisade_proto`]. Calls block
/// (up to the daemon's answer timeout); the server makes them from blocking threads.
/// [`ControlError::Unavailable`] becomes HTTP 503, [`ControlError::Refused`] 422.
pub trait ControlApi: Send + Sync {
    /// The daemon's status report (what `palisade status --json` prints).
    fn status(&self) -> Result<StatusReport, ControlError>;
    /// Bans `target` for `duration` (`None` = permanent); returns the decision taken.
    fn ban(
        &self,
        target: IpNet,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<Decision, ControlError>;
    /// Lifts the bans of `target`; returns how many were lifted.
    fn unban(&self, target: IpNet) -> Result<u64, ControlError>;
    /// Replaces the allowlist entries that come from the database (the configuration's own
    /// entries stay); bans in force that they cover are lifted by the daemon.
    fn set_allowlist(&self, _db_entries: Vec<IpNet>) -> Result<(), ControlError> {
        Err(ControlError::Unavailable(
            "this daemon cannot take allowlist updates".into(),
        ))
    }
}

/// One thing that happened, as pushed on the live feed.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedItem {
    /// An event was counted in a jail.
    Event {
        /// The jail.
        jail: String,
        /// Event time (RFC 3339).
        time: String,
        /// The address.
        ip: String,
        /// Filter that matched.
        filter: String,
        /// Rule inside the filter.
        rule: String,
        /// Whether it counts as a failure.
        failure: bool,
        /// User name, when logged.
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The fleet agent it came from (absent = this host).
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A ban was decided.
    Ban {
        /// The decision.
        decision: Decision,
    },
    /// A ban was lifted.
    Unban {
        /// The decision lifted.
        decision: Decision,
        /// Why (`expired`, `manual`, `allowlisted`, …).
        reason: String,
    },
    /// A fleet ban log entry (a fleet server's ban or unban pushed to its agents).
    FleetDecision {
        /// Log sequence.
        seq: i64,
        /// `ban` or `unban`.
        action: String,
        /// Address or network.
        target: String,
        /// Jail, fleet jail or `fleet-block`.
        jail: String,
        /// Reason.
        reason: String,
        /// The agent whose local ban it was (absent = the server's own).
        #[serde(skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
        /// The agents it applies to (absent = all).
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<Vec<String>>,
        /// End (absent = until lifted).
        #[serde(skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
}

impl FeedItem {
    /// A feed item for an event counted in `jail`.
    pub fn event(jail: &str, e: &Event) -> Self {
        FeedItem::Event {
            jail: jail.to_owned(),
            time: e.time.to_string(),
            ip: e.ip.to_string(),
            filter: e.filter.to_string(),
            rule: e.rule.to_string(),
            failure: e.failure,
            user: e.user.as_deref().map(str::to_owned),
            host: None,
        }
    }

    /// SSE event name.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            FeedItem::Event { .. } => "event",
            FeedItem::Ban { .. } => "ban",
            FeedItem::Unban { .. } => "unban",
            FeedItem::FleetDecision { .. } => "fleet_decision",
        }
    }
}

/// Fan-out of [`FeedItem`]s to live-feed subscribers. Cheap to clone; publishing never
/// blocks: with no subscriber the item is dropped, and a subscriber that falls more than
/// [`FeedHub::CAPACITY`] items behind skips ahead (and is told how many it missed).
#[derive(Clone, Debug)]
pub struct FeedHub {
    tx: broadcast::Sender<Arc<FeedItem>>,
}

impl Default for FeedHub {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedHub {
    /// Items buffered per subscriber.
    pub const CAPACITY: usize = 1024;

    /// A hub with no subscribers.
    pub fn new() -> Self {
        FeedHub {
            tx: broadcast::channel(Self::CAPACITY).0,
        }
    }

    /// Whether anyone listens (check before building an item on a hot path).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes an item to every current subscriber; never blocks.
    pub fn publish(&self, item: FeedItem) {
        if self.has_subscribers() {
            let _ = self.tx.send(Arc::new(item));
        }
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.tx.subscribe()
    }
}
