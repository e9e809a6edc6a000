//! Alert once per change: the findings of a run against the open findings of the previous one
//! give `new`, `changed` (before and after) and `resolved` events. A finding whose check errored
//! or whose region/account was not read this time stays open, untouched.

use crate::error::AuditError;
use crate::rules::{self, Evaluation, Finding, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// State format version.
pub const STATE_VERSION: u32 = 1;

/// An open finding as remembered between runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenFinding {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// Fingerprint of its data.
    pub fingerprint: String,
    /// First run that saw it (RFC 3339).
    pub first_seen: String,
    /// Last run that saw it.
    pub last_seen: String,
}

/// What the previous runs left: open findings by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Open findings by key.
    pub findings: BTreeMap<String, OpenFinding>,
}

/// Kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// First seen.
    New,
    /// Its data changed.
    Changed,
    /// Gone.
    Resolved,
}

impl EventKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Changed => "changed",
            EventKind::Resolved => "resolved",
        }
    }
}

/// One event of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `new`, `changed` or `resolved`.
    pub event: EventKind,
    /// Rule id.
    pub rule: String,
    /// Resource.
    pub subject: String,
    /// Region or `global`.
    pub region: String,
    /// Severity.
    pub severity: Severity,
    /// Account id.
    pub account: String,
    /// Part of the key within the subject.
    pub detail: String,
    /// Stable key.
    pub key: String,
    /// Fingerprint of the finding's current data (of the last data for `resolved`).
    pub fingerprint: String,
    /// What is wrong.
    pub explanation: String,
    /// How to fix it.
    pub remediation: String,
    /// Data now (`resolved`: the last data).
    pub data: serde_json::Value,
    /// Data before (`changed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// Run time (RFC 3339).
    pub time: String,
}

/// Fingerprint: SHA-256 of the key and the data.
pub fn fingerprint(f: &Finding) -> String {
    let s = format!("{}\n{}\n{}", f.key(), f.severity.as_str(), f.data);
    crate::sigv4::sha256_hex(s.as_bytes())
}

fn event(
    kind: EventKind,
    f: &Finding,
    fp: &str,
    before: Option<serde_json::Value>,
    now: &str,
) -> Event {
    let info = rules::info(&f.rule);
    Event {
        event: kind,
        rule: f.rule.clone(),
        subject: f.subject.clone(),
        region: f.region.clone(),
        severity: f.severity,
        account: f.account.clone(),
        detail: f.detail.clone(),
        key: f.key(),
        fingerprint: fp.to_string(),
        explanation: info.map(|i| i.explanation).unwrap_or_default().to_string(),
        remediation: info.map(|i| i.remediation).unwrap_or_default().to_string(),
        data: f.data.clone(),
        before,
        time: now.to_string(),
    }
}

/// The events of a run and the state to remember.
pub fn diff(prev: &State, eval: &Evaluation, now: jiff::Timestamp) -> (State, Vec<Event>) {
    let now_s = now.to_string();
    let mut next = State {
        version: STATE_VERSION,
        findings: BTreeMap::new(),
    };
    let mut events = Vec::new();
    for f in &eval.findings {
        let key = f.key();
        let fp = fingerprint(f);
        if next.findings.contains_key(&key) {
            continue;
        }
        let first_seen = match prev.findings.get(&key) {
            Some(old) if old.fingerprint == fp => old.first_seen.clone(),
            Some(old) => {
                events.push(event(
                    EventKind::Changed,
                    f,
                    &fp,
                    Some(old.finding.data.clone()),
                    &now_s,
                ));
                old.first_seen.clone()
            }
            None => {
                events.push(event(EventKind::New, f, &fp, None, &now_s));
                now_s.clone()
            }
        };
        next.findings.insert(
            key,
            OpenFinding {
                finding: f.clone(),
                fingerprint: fp,
                first_seen,
                last_seen: now_s.clone(),
            },
        );
    }
    for (key, old) in &prev.findings {
        if next.findings.contains_key(key) {
            continue;
        }
        let f = &old.finding;
        let covered = eval
            .covered
            .contains(&(f.account.clone(), f.region.clone()));
        let errored =
            eval.errored
                .contains_key(&(f.account.clone(), f.region.clone(), f.rule.clone()));
        // A rule disabled since stays open too: nobody looked.
        let unknown = rules::info(&f.rule).is_none();
        if !covered || errored || unknown {
            next.findings.insert(key.clone(), old.clone());
        } else {
            events.push(event(
                EventKind::Resolved,
                f,
                &old.fingerprint,
                None,
                &now_s,
            ));
        }
    }
    (next, events)
}

impl State {
    /// Reads a state file; a missing file is an empty state (first run).
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        let err = |detail: String| AuditError::State {
            path: path.display().to_string(),
            detail,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(err(e.to_string())),
        };
        if text.len() > 512 << 20 {
            return Err(err("larger than 512 MiB".into()));
        }
        let s: State = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if s.version > STATE_VERSION {
            return Err(err(format!(
                "format {} is newer than this binary's {STATE_VERSION}",
                s.version
            )));
        }
        Ok(s)
    }

    /// Writes the state atomically (temporary file in the same folder, then rename).
    pub fn save(&self, path: &Path) -> Result<(), AuditError> {
        let err = |detail: String| AuditError::State {
            path: path.display().to_string(),
            detail,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile_in(dir).map_err(|e| err(e.to_string()))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        tmp.1.write_all(&text).map_err(|e| err(e.to_string()))?;
        tmp.1.sync_all().map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp.0, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp.0);
            err(e.to_string())
        })
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    for i in 0..100u32 {
        let p = dir.join(format!(
            ".palisade-audit-state.{}.{i}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no temporary file name free"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(rule: &str, subject: &str, data: serde_json::Value) -> Finding {
        Finding {
            account: "1".into(),
            region: "r".into(),
            rule: rule.into(),
            subject: subject.into(),
            detail: String::new(),
            severity: Severity::High,
            data,
        }
    }

    fn ev(findings: Vec<Finding>) -> Evaluation {
        let mut e = Evaluation {
            findings,
            ..Default::default()
        };
        e.covered.insert(("1".into(), "r".into()));
        e
    }

    #[test]
    fn new_changed_resolved_and_quiet() {
        let t = jiff::Timestamp::UNIX_EPOCH;
        let a = f("ec2_ami_public", "ami-1", json!({"name": "x"}));
        let b = f("ec2_ami_public", "ami-2", json!({"name": "y"}));
        let (s1, e1) = diff(&State::default(), &ev(vec![a.clone(), b.clone()]), t);
        assert_eq!(e1.len(), 2);
        assert!(e1.iter().all(|e| e.event == EventKind::New));
        let (s2, e2) = diff(&s1, &ev(vec![a.clone(), b.clone()]), t);
        assert!(e2.is_empty());
        assert_eq!(s1.findings.len(), s2.findings.len());
        let b2 = f("ec2_ami_public", "ami-2", json!({"name": "z"}));
        let (s3, e3) = diff(&s2, &ev(vec![a.clone(), b2]), t);
        assert_eq!(e3.len(), 1);
        assert_eq!(e3[0].event, EventKind::Changed);
        assert_eq!(e3[0].before, Some(json!({"name": "y"})));
        assert_eq!(e3[0].data, json!({"name": "z"}));
        let (s4, e4) = diff(&s3, &ev(vec![a.clone()]), t);
        assert_eq!(e4.len(), 1);
        assert_eq!(e4[0].event, EventKind::Resolved);
        assert_eq!(e4[0].subject, "ami-2");
        // Errored: kept open, nothing said.
        let mut e = ev(vec![]);
        e.errored.insert(
            ("1".into(), "r".into(), "ec2_ami_public".into()),
            "x".into(),
        );
        let (s5, e5) = diff(&s4, &e, t);
        assert!(e5.is_empty());
        assert_eq!(s5, s4);
        // Region not read: kept open.
        let (s6, e6) = diff(&s4, &Evaluation::default(), t);
        assert!(e6.is_empty());
        assert_eq!(s6.findings, s4.findings);
    }

    #[test]
    fn state_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(State::load(&p).unwrap(), State::default());
        let (s, _) = diff(
            &State::default(),
            &ev(vec![f("ec2_ami_public", "ami-1", json!({}))]),
            jiff::Timestamp::UNIX_EPOCH,
        );
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        std::fs::write(&p, "{not json").unwrap();
        assert!(State::load(&p).is_err());
    }
}
