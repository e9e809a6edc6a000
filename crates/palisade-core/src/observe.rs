//! Watching what the engine decides: the [`Observer`] trait and [`Fanout`].
//!
//! They live here, below every crate that reports (live feed, notifications, AbuseIPDB), so that
//! reporting code depends on the vocabulary only, never on the pipeline that calls it.

use crate::{Decision, Event};
use std::sync::Arc;

/// Why a ban was lifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnbanReason {
    /// Its time ran out.
    Expired,
    /// An operator lifted it.
    Manual,
    /// A longer ban of the same target replaced it.
    Replaced,
}

/// Watches what the daemon does (live feed, notifications). Called on the engine thread:
/// implementations must be quick and never block (queue and drop rather than wait).
pub trait Observer: Send + Sync {
    /// An event was counted in `jail`.
    fn event(&self, _jail: &str, _event: &Event) {}
    /// A ban was decided.
    fn ban(&self, _decision: &Decision) {}
    /// A ban was lifted.
    fn unban(&self, _decision: &Decision, _reason: UnbanReason) {}
}

/// Several observers behind one (the daemon takes one): each call goes to every member, in
/// order. Members must be quick, as every [`Observer`] must.
pub struct Fanout(pub Vec<Arc<dyn Observer>>);

impl Fanout {
    /// One observer from any number: `None` for none, the member itself for one.
    pub fn combine(mut v: Vec<Arc<dyn Observer>>) -> Option<Arc<dyn Observer>> {
        match v.len() {
            0 => None,
            1 => v.pop(),
            _ => Some(Arc::new(Fanout(v))),
        }
    }
}

impl Observer for Fanout {
    fn event(&self, jail: &str, event: &Event) {
        for o in &self.0 {
            o.event(jail, event);
        }
    }
    fn ban(&self, d: &Decision) {
        for o in &self.0 {
            o.ban(d);
        }
    }
    fn unban(&self, d: &Decision, why: UnbanReason) {
        for o in &self.0 {
            o.unban(d, why);
        }
    }
}
