//! `/api/v1/audit/*`: the cloud audit's open findings, their history with the before/after
//! diff of changed ones, and the runs, read from the audit tables of the store
//! ([`palisade_store::audit::AuditStore`]). The server never runs the audit (the daemon's audit
//! thread or `palisade audit run` does) and does not depend on `palisade-audit`: findings and
//! events are stored as JSON bodies, passed on as they are, with a few columns beside them.

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use palisade_store::audit::{AuditEvent, AuditFinding, AuditRun, AuditStore};
use palisade_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Mutex;
use utoipa::{IntoParams, ToSchema};

/// Largest page of findings, events or runs.
const MAX_PAGE: u32 = 1000;
/// Severities, most severe first.
const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
/// Longest filter value accepted (rule ids and keys are short).
const MAX_FILTER: usize = 512;

/// One connection to the audit tables, opened on first use (it creates them when the audit
/// never ran, as the store creates its own tables).
pub(crate) struct AuditDb {
    url: String,
    conn: Mutex<Option<Box<dyn AuditStore>>>,
}

impl AuditDb {
    pub(crate) fn new(url: String) -> Self {
        AuditDb {
            url,
            conn: Mutex::new(None),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(palisade_store::audit::open(&self.url)?);
        }
        let r = f(g.as_mut().expect("opened above").as_mut());
        if r.is_err() {
            // A broken connection is reopened on the next call.
            *g = None;
        }
        r
    }
}

async fn audit_call<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&mut dyn AuditStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || st.audit.with(f))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

fn body(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn severity_rank(s: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(SEVERITIES.len())
}

fn filter(v: Option<String>, what: &str) -> Result<Option<String>, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        Some(s) if s.len() > MAX_FILTER => Err(ApiError::BadRequest(format!(
            "{what}: longer than {MAX_FILTER} bytes"
        ))),
        v => Ok(v),
    }
}

// ---------------------------------------------------------------------------------------
// DTOs

/// An open finding.
#[derive(Serialize, ToSchema)]
pub struct FindingDto {
    /// Stable key (account|region|rule|subject|detail): pass it to `/api/v1/audit/events`.
    pub key: String,
    /// Account id.
    pub account: String,
    /// Region, or `global` (IAM, S3, CloudTrail).
    pub region: String,
    /// Rule (check) id.
    pub rule: String,
    /// Resource (`sg-… (name)`, user, bucket, load balancer…).
    pub subject: String,
    /// What in the resource (permission, port…).
    pub detail: String,
    /// `critical`, `high`, `medium` or `low`.
    pub severity: String,
    /// Fingerprint of its data: it changes when the finding changes.
    pub fingerprint: String,
    /// First run that saw it.
    pub first_seen: String,
    /// Latest run that saw it.
    pub last_seen: String,
    /// What is wrong (absent for findings stored by older versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The facts that matter (their change is a `changed` event).
    #[schema(value_type = Object)]
    pub data: Value,
}

fn finding_dto(f: AuditFinding) -> FindingDto {
    let b = body(&f.body);
    let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    FindingDto {
        detail: text("detail").unwrap_or_default(),
        explanation: text("explanation"),
        remediation: text("remediation"),
        data: b.get("data").cloned().unwrap_or(Value::Null),
        key: f.key,
        account: f.account,
        region: f.region,
        rule: f.rule,
        subject: f.subject,
        severity: f.severity,
        fingerprint: f.fingerprint,
        first_seen: f.first_seen,
        last_seen: f.last_seen,
    }
}

/// Open findings, most severe first.
#[derive(Serialize, ToSchema)]
pub struct FindingList {
    /// Findings matching the filters (at most `limit`).
    pub items: Vec<FindingDto>,
    /// Findings matching the filters, before `limit`.
    pub total: u64,
    /// Every open finding by severity (filters not applied): `critical`, `high`, `medium`,
    /// `low`.
    pub by_severity: std::collections::BTreeMap<String, u64>,
}

/// Finding filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingParams {
    /// Only this severity (`critical`, `high`, `medium`, `low`).
    pub severity: Option<String>,
    /// Only this rule (check id, e.g. `secgroup_suspicious_ingress`).
    pub rule: Option<String>,
    /// At most this many (default 500, at most 1000).
    pub limit: Option<u32>,
}

/// One change of one finding.
#[derive(Serialize, ToSchema)]
pub struct DiffEntry {
    /// Where in the finding's data (`ranges`, `groups`, `listener.port`…).
    pub path: String,
    /// The value before (absent: added).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The value after (absent: removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// An event of a run.
#[derive(Serialize, ToSchema)]
pub struct AuditEventDto {
    /// Run it belongs to.
    pub run_id: i64,
    /// Run time.
    pub time: String,
    /// `new`, `changed` or `resolved`.
    pub kind: String,
    /// Finding key.
    pub key: String,
    /// Rule id.
    pub rule: String,
    /// Resource.
    pub subject: String,
    /// What in the resource.
    pub detail: String,
    /// Region or `global`.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Severity.
    pub severity: String,
    /// Fingerprint of the data (`resolved`: of the last data).
    pub fingerprint: String,
    /// What is wrong.
    pub explanation: String,
    /// How to fix it.
    pub remediation: String,
    /// Data now (`resolved`: the last data).
    #[schema(value_type = Object)]
    pub data: Value,
    /// Data before (`changed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// What changed between `before` and `data` (`changed` only): for lists, the items
    /// removed and added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffEntry>,
}

fn event_dto(e: AuditEvent) -> AuditEventDto {
    let b = body(&e.body);
    let text = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let data = b.get("data").cloned().unwrap_or(Value::Null);
    let before = b.get("before").cloned().filter(|v| !v.is_null());
    let mut diff = Vec::new();
    if let Some(old) = &before {
        json_diff("", old, &data, &mut diff);
    }
    AuditEventDto {
        detail: text("detail"),
        region: text("region"),
        account: text("account"),
        explanation: text("explanation"),
        remediation: text("remediation"),
        data,
        before,
        diff,
        run_id: e.run_id,
        time: e.time,
        kind: e.kind,
        key: e.key,
        rule: e.rule,
        subject: e.subject,
        severity: e.severity,
        fingerprint: e.fingerprint,
    }
}

/// The differences between two JSON values: objects key by key, lists item by item as sets
/// (removed items, then added ones), anything else whole.
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<DiffEntry>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => json_diff(&at(k), p, q, out),
                    (p, q) => out.push(DiffEntry {
                        path: at(k),
                        before: p.cloned(),
                        after: q.cloned(),
                    }),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for p in x.iter().filter(|p| !y.contains(p)) {
                out.push(DiffEntry {
                    path: path.to_owned(),
                    before: Some(p.clone()),
                    after: None,
                });
            }
            for q in y.iter().filter(|q| !x.contains(q)) {
                out.push(DiffEntry {
                    path: path.to_owned(),
                    before: None,
                    after: Some(q.clone()),
                });
            }
        }
        (p, q) if p != q => out.push(DiffEntry {
            path: path.to_owned(),
            before: Some(p.clone()),
            after: Some(q.clone()),
        }),
        _ => {}
    }
}

/// Events, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditEventList {
    /// Events.
    pub items: Vec<AuditEventDto>,
    /// The finding, while it is open (only with `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingDto>,
}

/// Event filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditEventParams {
    /// Only the history of this finding (its `key`).
    pub key: Option<String>,
    /// Only `new`, `changed` or `resolved`.
    pub kind: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A run.
#[derive(Serialize, ToSchema)]
pub struct AuditRunDto {
    /// Id.
    pub id: i64,
    /// Start.
    pub started: String,
    /// End.
    pub finished: String,
    /// Whether it read at least one account (a failed run changes nothing).
    pub ok: bool,
    /// Accounts read.
    pub accounts: Vec<String>,
    /// `new` events.
    pub new: i64,
    /// `changed` events.
    pub changed: i64,
    /// `resolved` events.
    pub resolved: i64,
    /// Checks that errored (their findings were kept open).
    pub errored: i64,
    /// Errors: checks that errored, accounts skipped, or why the run failed.
    pub errors: Vec<String>,
}

fn run_dto(r: AuditRun) -> AuditRunDto {
    let accounts: Vec<String> = r
        .accounts
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    AuditRunDto {
        id: r.id,
        ok: !accounts.is_empty(),
        accounts,
        started: r.started,
        finished: r.finished,
        new: r.new,
        changed: r.changed,
        resolved: r.resolved,
        errored: r.errored,
        errors: serde_json::from_str(&r.errors).unwrap_or_default(),
    }
}

/// Runs, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditRunList {
    /// Runs.
    pub items: Vec<AuditRunDto>,
}

/// Run parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditRunParams {
    /// At most this many (default 20, at most 1000).
    pub limit: Option<u32>,
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Open cloud-audit findings, most severe first, with the count of each severity.
#[utoipa::path(get, path = "/api/v1/audit/findings", tag = "audit", params(FindingParams),
    responses((status = 200, body = FindingList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn findings(
    State(st): State<AppState>,
    q: Result<Query<FindingParams>, QueryRejection>,
) -> Result<Json<FindingList>, ApiError> {
    let Query(q) = q?;
    let severity = filter(q.severity, "severity")?;
    if let Some(s) = &severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "severity {s:?}: expected critical, high, medium or low"
            )));
        }
    }
    let rule = filter(q.rule, "rule")?;
    let limit = q.limit.unwrap_or(500).clamp(1, MAX_PAGE) as usize;
    let rows = audit_call(&st, |s| s.open_findings()).await?;
    let mut by_severity: std::collections::BTreeMap<String, u64> =
        SEVERITIES.iter().map(|s| (s.to_string(), 0)).collect();
    for f in &rows {
        *by_severity.entry(f.severity.clone()).or_default() += 1;
    }
    let mut shown: Vec<AuditFinding> = rows
        .into_iter()
        .filter(|f| severity.as_ref().is_none_or(|s| f.severity == *s))
        .filter(|f| rule.as_ref().is_none_or(|r| f.rule == *r))
        .collect();
    shown.sort_by(|a, b| {
        severity_rank(&a.severity)
            .cmp(&severity_rank(&b.severity))
            .then_with(|| a.key.cmp(&b.key))
    });
    let total = shown.len() as u64;
    shown.truncate(limit);
    Ok(Json(FindingList {
        items: shown.into_iter().map(finding_dto).collect(),
        total,
        by_severity,
    }))
}

/// Cloud-audit events, newest first: every finding's, or one finding's history (`key`) with
/// the finding itself while it is open. Changed events carry the diff of their data.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", params(AuditEventParams),
    responses((status = 200, body = AuditEventList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn events(
    State(st): State<AppState>,
    q: Result<Query<AuditEventParams>, QueryRejection>,
) -> Result<Json<AuditEventList>, ApiError> {
    let Query(q) = q?;
    let key = filter(q.key, "key")?;
    let kind = filter(q.kind, "kind")?;
    if let Some(k) = &kind {
        if !["new", "changed", "resolved"].contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "kind {k:?}: expected new, changed or resolved"
            )));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let k2 = key.clone();
    let (rows, open) = audit_call(&st, move |s| {
        // Without a kind filter the store's limit is the page; with one, the filter runs over
        // a bounded window of the latest events.
        let window = if kind.is_some() { MAX_PAGE * 10 } else { limit };
        let rows: Vec<AuditEvent> = s
            .events(k2.as_deref(), window)?
            .into_iter()
            .filter(|e| kind.as_ref().is_none_or(|k| e.kind == *k))
            .take(limit as usize)
            .collect();
        let open = match &k2 {
            Some(k) => s.open_findings()?.into_iter().find(|f| f.key == *k),
            None => None,
        };
        Ok((rows, open))
    })
    .await?;
    Ok(Json(AuditEventList {
        items: rows.into_iter().map(event_dto).collect(),
        finding: open.map(finding_dto),
    }))
}

/// Cloud-audit runs, newest first: when, what they found, what failed.
#[utoipa::path(get, path = "/api/v1/audit/runs", tag = "audit", params(AuditRunParams),
    responses((status = 200, body = AuditRunList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)),
    security(("session" = []), ("token" = [])))]
pub(crate) async fn runs(
    State(st): State<AppState>,
    q: Result<Query<AuditRunParams>, QueryRejection>,
) -> Result<Json<AuditRunList>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let rows = audit_call(&st, move |s| s.runs(limit)).await?;
    Ok(Json(AuditRunList {
        items: rows.into_iter().map(run_dto).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_objects_lists_and_scalars() {
        let a =
            serde_json::json!({"ranges": ["10.1.2.0/24", "10.9.0.0/16"], "port": 8080, "gone": 1});
        let b = serde_json::json!({"ranges": ["10.1.0.0/16", "10.9.0.0/16"], "port": 8081, "new": true});
        let mut d = Vec::new();
        json_diff("", &a, &b, &mut d);
        let got: Vec<(String, Option<Value>, Option<Value>)> =
            d.into_iter().map(|e| (e.path, e.before, e.after)).collect();
        assert_eq!(
            got,
            vec![
                ("gone".into(), Some(1.into()), None),
                ("new".into(), None, Some(true.into())),
                ("port".into(), Some(8080.into()), Some(8081.into())),
                ("ranges".into(), Some("10.1.2.0/24".into()), None),
                ("ranges".into(), None, Some("10.1.0.0/16".into())),
            ]
        );
        let mut same = Vec::new();
        json_diff("", &a, &a, &mut same);
        assert!(same.is_empty());
    }

    #[test]
    fn failed_runs_have_no_account() {
        let r = run_dto(AuditRun {
            errors: r#"["sts: refused"]"#.into(),
            ..AuditRun::default()
        });
        assert!(!r.ok);
        assert_eq!(r.errors, vec!["sts: refused".to_string()]);
        let r = run_dto(AuditRun {
            accounts: "1,2".into(),
            errors: "[]".into(),
            ..AuditRun::default()
        });
        assert!(r.ok);
        assert_eq!(r.accounts, vec!["1", "2"]);
    }
}
