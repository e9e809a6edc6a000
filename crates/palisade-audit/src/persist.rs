//! The audit state in the Palisade store (`palisade audit run`): open findings in, one run row
//! with its events and the new open set out, in one transaction.

use crate::error::AuditError;
use crate::run::RunOutcome;
use crate::state::{Event, EventKind, OpenFinding, State, STATE_VERSION};
use palisade_store::audit::{AuditEvent, AuditFinding, AuditRun, AuditStore};

fn store_err(e: palisade_store::StoreError) -> AuditError {
    AuditError::State {
        path: "store".into(),
        detail: e.to_string(),
    }
}

/// The open findings the store remembers.
pub fn load(store: &mut dyn AuditStore) -> Result<State, AuditError> {
    let mut s = State {
        version: STATE_VERSION,
        ..State::default()
    };
    for row in store.open_findings().map_err(store_err)? {
        let f: OpenFinding = serde_json::from_str(&row.body).map_err(|e| AuditError::State {
            path: "store".into(),
            detail: format!("finding {}: {e}", row.key),
        })?;
        s.findings.insert(row.key, f);
    }
    Ok(s)
}

/// Records a run: the run row, its events, the open findings of `next`. Returns the run id.
pub fn record(
    store: &mut dyn AuditStore,
    started: jiff::Timestamp,
    outcome: &RunOutcome,
    next: &State,
    events: &[Event],
) -> Result<i64, AuditError> {
    let count = |k: EventKind| events.iter().filter(|e| e.event == k).count() as i64;
    let mut errors: Vec<String> = outcome
        .evaluation
        .errored
        .iter()
        .map(|((a, r, rule), e)| format!("{a} {r} {rule}: {e}"))
        .collect();
    errors.extend(outcome.account_errors.iter().cloned());
    let run = AuditRun {
        id: 0,
        started: started.to_string(),
        finished: jiff::Timestamp::now().to_string(),
        accounts: outcome.accounts.join(","),
        new: count(EventKind::New),
        changed: count(EventKind::Changed),
        resolved: count(EventKind::Resolved),
        errored: outcome.evaluation.errored.len() as i64,
        errors: serde_json::to_string(&errors).unwrap_or_else(|_| "[]".into()),
    };
    let rows_events: Vec<AuditEvent> = events
        .iter()
        .map(|e| AuditEvent {
            run_id: 0,
            time: e.time.clone(),
            kind: e.event.as_str().into(),
            key: e.key.clone(),
            rule: e.rule.clone(),
            subject: e.subject.clone(),
            severity: e.severity.as_str().into(),
            fingerprint: e.fingerprint.clone(),
            body: serde_json::to_string(e).unwrap_or_default(),
        })
        .collect();
    let open: Vec<AuditFinding> = next
        .findings
        .iter()
        .map(|(k, f)| AuditFinding {
            key: k.clone(),
            account: f.finding.account.clone(),
            region: f.finding.region.clone(),
            rule: f.finding.rule.clone(),
            subject: f.finding.subject.clone(),
            severity: f.finding.severity.as_str().into(),
            fingerprint: f.fingerprint.clone(),
            first_seen: f.first_seen.clone(),
            last_seen: f.last_seen.clone(),
            body: serde_json::to_string(f).unwrap_or_default(),
        })
        .collect();
    store
        .record_run(&run, &rows_events, &open)
        .map_err(store_err)
}
