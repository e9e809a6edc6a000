//! Agents' live state in memory, written to the store in batches (issue 18's idle cost).
//!
//! Every message a session receives marks its agent "heard"; a `pong` also carries the clock
//! offset and the agent's newest event sequence; a `checksum` its ban cursor. Instead of one
//! store write per pong (10,000 agents pinging every 15 s = 667 transactions a second), one
//! task writes, every [`FLUSH_EVERY`], in ONE transaction: `last_seen` = now for every agent
//! heard since the previous flush (one statement per 500 agents), and the fields that changed
//! meaningfully (offset moved by ≥ [`OFFSET_STEP_MS`], a new head sequence or ban cursor).
//! Connecting and disconnecting are still written at once by the session.
//!
//! Staleness bound of `palisade fleet agents`: `last_seen` lags the agent's last message by
//! at most [`FLUSH_EVERY`] (5 s); with pings every 15 s a live agent's `last_seen` is refreshed
//! at least every 20 s, within the report's 45 s "connected" window
//! ([`palisade_store::fleet::CONNECTED_WITHIN_US`]); the offset shown is within 250 ms of the
//! last measured one, the backlog within one flush.

use palisade_store::fleet::{AgentUpdate, FleetStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the batched write runs.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// A clock offset change smaller than this (ms) is not written.
pub const OFFSET_STEP_MS: i64 = 250;

const _: () = assert!(
    (2 * FLUSH_EVERY.as_micros() as i64) < palisade_store::fleet::CONNECTED_WITHIN_US,
    "a live agent's last_seen must be refreshed within the report's connected window"
);

#[derive(Default)]
struct Live {
    token: u64,
    heard: bool,
    offset_ms: Option<i64>,
    written_offset_ms: Option<i64>,
    head_seq: Option<u64>,
    written_head_seq: Option<u64>,
    ban_cursor: Option<u64>,
    written_ban_cursor: Option<u64>,
}

impl Live {
    /// The fields to write now (and marks them written).
    fn dirty(&mut self) -> Option<AgentUpdate> {
        let mut u = AgentUpdate::default();
        if let Some(o) = self.offset_ms {
            if self
                .written_offset_ms
                .is_none_or(|w| (o - w).abs() >= OFFSET_STEP_MS)
            {
                u.clock_offset_ms = Some(o);
                self.written_offset_ms = Some(o);
            }
        }
        if self.head_seq.is_some() && self.head_seq != self.written_head_seq {
            u.head_seq = self.head_seq;
            self.written_head_seq = self.head_seq;
        }
        if self.ban_cursor.is_some() && self.ban_cursor != self.written_ban_cursor {
            u.ban_cursor = self.ban_cursor;
            self.written_ban_cursor = self.ban_cursor;
        }
        (u.clock_offset_ms.is_some() || u.head_seq.is_some() || u.ban_cursor.is_some()).then_some(u)
    }
}

/// One batched write.
#[derive(Debug, Default)]
pub struct Flush {
    /// Agents heard since the previous flush (their `last_seen` becomes now).
    pub seen: Vec<String>,
    /// Changed fields.
    pub updates: Vec<(String, AgentUpdate)>,
}

impl Flush {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.updates.is_empty()
    }
}

/// The live state of this server's sessions.
#[derive(Default)]
pub struct Liveness {
    agents: Mutex<HashMap<String, Live>>,
}

impl Liveness {
    /// Empty.
    pub fn new() -> Arc<Liveness> {
        Arc::new(Liveness::default())
    }
    fn with(&self, id: &str, f: impl FnOnce(&mut Live)) {
        let mut g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = g.get_mut(id) {
            f(l);
        }
    }
    /// A session of `id` (its `token`) started (it wrote its own row; a newer session of
    /// the same agent replaces an older one).
    pub fn start(&self, id: &str, token: u64, ban_cursor: u64) {
        let mut g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(
            id.to_string(),
            Live {
                token,
                ban_cursor: Some(ban_cursor),
                written_ban_cursor: Some(ban_cursor),
                ..Live::default()
            },
        );
    }
    /// A message from `id` arrived.
    pub fn heard(&self, id: &str) {
        self.with(id, |l| l.heard = true);
    }
    /// A pong: the measured offset and the agent's newest event.
    pub fn pong(&self, id: &str, offset_ms: i64, head_seq: u64) {
        self.with(id, |l| {
            l.heard = true;
            l.offset_ms = Some(offset_ms);
            l.head_seq = Some(head_seq);
        });
    }
    /// A checksum report: the ban cursor the agent applied.
    pub fn ban_cursor(&self, id: &str, cursor: u64) {
        self.with(id, |l| {
            l.heard = true;
            l.ban_cursor = Some(cursor);
        });
    }
    /// The session `token` of `id` ended: its unwritten fields, to write with the
    /// disconnection (`None` when a newer session owns the entry).
    pub fn end(&self, id: &str, token: u64) -> Option<AgentUpdate> {
        let mut g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if g.get(id).is_none_or(|l| l.token != token) {
            return None;
        }
        g.remove(id).and_then(|mut l| l.dirty())
    }
    /// Agents tracked.
    pub fn len(&self) -> usize {
        self.agents.lock().map(|g| g.len()).unwrap_or(0)
    }
    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What to write now (clears the "heard" marks).
    pub fn take(&self) -> Flush {
        let mut g = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = Flush::default();
        for (id, l) in g.iter_mut() {
            if std::mem::take(&mut l.heard) {
                f.seen.push(id.clone());
            }
            if let Some(u) = l.dirty() {
                f.updates.push((id.clone(), u));
            }
        }
        f
    }
}

/// Writes [`Liveness::take`] every [`FLUSH_EVERY`] until the runtime stops.
pub async fn flusher(store: Arc<Mutex<Box<dyn FleetStore>>>, live: Arc<Liveness>) {
    let mut t = tokio::time::interval(FLUSH_EVERY);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        let f = live.take();
        if f.is_empty() {
            continue;
        }
        let r = tokio::task::block_in_place(|| {
            let mut g = store.lock().unwrap_or_else(|e| e.into_inner());
            g.agents_liveness(&f.seen, crate::now(), &f.updates)
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, agents = f.seen.len(), "fleet: writing agents' live state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heard_agents_and_meaningful_changes_are_written() {
        let l = Liveness::default();
        l.start("a", 1, 0);
        l.start("b", 2, 5);
        assert!(l.take().is_empty(), "nothing heard yet");
        l.pong("a", 1000, 10);
        l.heard("b");
        let f = l.take();
        let mut seen = f.seen.clone();
        seen.sort();
        assert_eq!(seen, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(f.updates.len(), 1);
        let (id, u) = &f.updates[0];
        assert_eq!(id, "a");
        assert_eq!(u.clock_offset_ms, Some(1000));
        assert_eq!(u.head_seq, Some(10));
        assert_eq!(
            u.ban_cursor, None,
            "the cursor written at connect is unchanged"
        );
        // Same head, offset within 250 ms: only last_seen.
        l.pong("a", 1200, 10);
        let f = l.take();
        assert_eq!(f.seen, vec!["a".to_string()]);
        assert!(f.updates.is_empty());
        // The offset drifts by 250 ms from what was written: written.
        l.pong("a", 1250, 10);
        assert_eq!(l.take().updates[0].1.clock_offset_ms, Some(1250));
        l.ban_cursor("b", 9);
        assert_eq!(l.take().updates[0].1.ban_cursor, Some(9));
        // An unknown agent is ignored.
        l.heard("zz");
        assert!(l.take().is_empty());
    }

    #[test]
    fn the_ending_session_gets_its_unwritten_fields_and_a_newer_one_is_kept() {
        let l = Liveness::default();
        l.start("a", 1, 0);
        l.pong("a", -40_000, 7);
        // A newer session of the same agent took over: the old one's end changes nothing.
        l.start("a", 2, 0);
        assert!(l.end("a", 1).is_none());
        assert_eq!(l.len(), 1);
        l.pong("a", 500, 3);
        let u = l.end("a", 2).expect("unwritten fields");
        assert_eq!(u.clock_offset_ms, Some(500));
        assert_eq!(u.head_seq, Some(3));
        assert!(l.is_empty());
    }
}
