//! The `log` responder: records what would be done, does nothing (dry-run, tests).

use crate::{RespondError, Responder};
use palisade_core::{Decision, Timestamp};

/// Logs every apply/revoke through `tracing` and keeps the currently applied set, so tests
/// and `palisade status` can see what a real responder would hold.
#[derive(Debug, Default)]
pub struct LogResponder {
    name: String,
    applied: std::collections::BTreeMap<String, Decision>,
}

impl LogResponder {
    /// Creates one.
    pub fn new(name: impl Into<String>) -> Self {
        LogResponder {
            name: name.into(),
            applied: Default::default(),
        }
    }

    /// Targets currently held (as CIDR text), sorted.
    pub fn held(&self) -> Vec<String> {
        self.applied.keys().cloned().collect()
    }
}

impl Responder for LogResponder {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, batch: &[Decision], _now: Timestamp) -> Result<(), RespondError> {
        for d in batch {
            tracing::info!(responder = %self.name, target = %d.target, jail = %d.jail,
                expires = ?d.expires.map(|e| e.to_string()), "would ban");
            self.applied.insert(d.target.to_string(), d.clone());
        }
        Ok(())
    }

    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        for d in batch {
            tracing::info!(responder = %self.name, target = %d.target, "would unban");
            self.applied.remove(&d.target.to_string());
        }
        Ok(())
    }

    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        self.applied.clear();
        self.apply(active, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::Origin;

    #[test]
    fn idempotent_and_reconciles() {
        let d = Decision {
            id: 1,
            target: "1.2.3.4/32".parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Jail,
            reason: "r".into(),
            created: Timestamp::from_secs(1),
            expires: None,
            simulated: false,
            level: 0,
        };
        let mut r = LogResponder::new("log");
        r.apply(&[d.clone(), d.clone()], Timestamp::from_secs(1))
            .unwrap();
        assert_eq!(r.held(), ["1.2.3.4/32"]);
        r.revoke(std::slice::from_ref(&d)).unwrap();
        r.revoke(std::slice::from_ref(&d)).unwrap();
        assert!(r.held().is_empty());
        let mut d2 = d.clone();
        d2.target = "5.6.7.8/32".parse().unwrap();
        r.apply(std::slice::from_ref(&d), Timestamp::from_secs(1))
            .unwrap();
        r.reconcile(&[d2], Timestamp::from_secs(1)).unwrap();
        assert_eq!(r.held(), ["5.6.7.8/32"]);
    }
}
