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
        .map(|(k, f)| (k, f, finding_body(f)))
        .map(|(k, f, body)| AuditFinding {
            key: k.clone(),
            account: f.finding.account.clone(),
            region: f.finding.region.clone(),
            rule: f.finding.rule.clone(),
            subject: f.finding.subject.clone(),
            severity: f.finding.severity.as_str().into(),
            fingerprint: f.fingerprint.clone(),
            first_seen: f.first_seen.clone(),
            last_seen: f.last_seen.clone(),
            body,
        })
        .collect();
    store
        .record_run(&run, &rows_events, &open)
        .map_err(store_err)
}

/// A stored open finding: the [`OpenFinding`] (what [`load`] reads back) plus the rule's
/// explanation and remediation, for readers of the store (the API) that do not know the rules.
fn finding_body(f: &OpenFinding) -> String {
    let mut v = serde_json::to_value(f).unwrap_or_default();
    if let (Some(o), Some(info)) = (v.as_object_mut(), crate::rules::info(&f.finding.rule)) {
        o.insert("explanation".into(), info.explanation.into());
        o.insert("remediation".into(), info.remediation.into());
    }
    v.to_string()
}

/// Records a run that failed as a whole (no account could be read, the store could not be
/// loaded…): a run row with no account and the error, no event, the open findings untouched.
/// Returns the run id.
pub fn record_failed(
    store: &mut dyn AuditStore,
    started: jiff::Timestamp,
    prev: &State,
    error: &str,
) -> Result<i64, AuditError> {
    let outcome = RunOutcome {
        account_errors: vec![error.to_string()],
        ..RunOutcome::default()
    };
    record(store, started, &outcome, prev, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Finding, Severity};

    fn open_finding() -> OpenFinding {
        OpenFinding {
            finding: Finding {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                rule: "secgroup_suspicious_ingress".into(),
                subject: "sg-1 (web)".into(),
                detail: "tcp 8080".into(),
                severity: Severity::High,
                data: serde_json::json!({"ranges": ["10.1.2.0/24"]}),
            },
            fingerprint: "f".into(),
            first_seen: "2026-01-01T00:00:00Z".into(),
            last_seen: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn stored_bodies_carry_the_explanation_and_load_back() {
        let mut store = palisade_store::audit::open("sqlite::memory:").unwrap();
        let mut next = State::default();
        next.findings
            .insert(open_finding().finding.key(), open_finding());
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        record(store.as_mut(), t, &RunOutcome::default(), &next, &[]).unwrap();
        let rows = store.open_findings().unwrap();
        let body: serde_json::Value = serde_json::from_str(&rows[0].body).unwrap();
        assert!(body["explanation"]
            .as_str()
            .unwrap()
            .contains("security group"));
        assert!(!body["remediation"].as_str().unwrap().is_empty());
        let back = load(store.as_mut()).unwrap();
        assert_eq!(back.findings.values().next(), Some(&open_finding()));
    }

    #[test]
    fn a_failed_run_keeps_the_open_findings_and_records_the_error() {
        let mut store = palisade_store::audit::open("sqlite::memory:").unwrap();
        let mut prev = State::default();
        prev.findings
            .insert(open_finding().finding.key(), open_finding());
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        record(store.as_mut(), t, &RunOutcome::default(), &prev, &[]).unwrap();
        record_failed(store.as_mut(), t, &prev, "sts: connection refused").unwrap();
        let runs = store.runs(10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].accounts, "");
        assert!(runs[0].errors.contains("connection refused"));
        assert_eq!(store.open_findings().unwrap().len(), 1);
        assert!(store.events(None, 10).unwrap().is_empty());
    }
}
