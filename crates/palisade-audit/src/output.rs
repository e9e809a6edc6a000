//! Outputs: JSON lines, a terminal table, and the Elasticsearch/OpenSearch bulk API.

use crate::error::AuditError;
use crate::state::Event;
use std::io::{self, Write};

/// One JSON object per event.
pub fn json_lines(events: &[Event], w: &mut dyn Write) -> io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut *w, e)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// A terminal table, most severe first.
pub fn table(events: &[Event], w: &mut dyn Write) -> io::Result<()> {
    if events.is_empty() {
        return writeln!(w, "no change");
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    let rows: Vec<[String; 6]> = sorted
        .iter()
        .map(|e| {
            let what = match (&e.before, e.event) {
                (Some(b), _) => format!("{b} -> {}", e.data),
                (None, crate::state::EventKind::Resolved) => String::new(),
                (None, _) => {
                    let d = e.data.to_string();
                    if d == "{}" {
                        String::new()
                    } else {
                        d
                    }
                }
            };
            [
                e.event.as_str().to_string(),
                e.severity.as_str().to_string(),
                e.region.clone(),
                e.rule.clone(),
                if e.detail.is_empty() {
                    e.subject.clone()
                } else {
                    format!("{} {}", e.subject, e.detail)
                },
                what,
            ]
        })
        .collect();
    let head = ["EVENT", "SEVERITY", "REGION", "RULE", "SUBJECT", "DETAIL"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |w: &mut dyn Write, cells: [&str; 6]| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 5 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = width[i]));
            }
        }
        writeln!(w, "{}", s.trim_end())
    };
    line(w, head)?;
    for r in &rows {
        line(w, [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]])?;
    }
    Ok(())
}

/// Sends events to an Elasticsearch/OpenSearch `_bulk` endpoint, the fingerprint as document
/// id (a re-sent run overwrites). Items refused with 429 (or the whole request with 429/413
/// split in halves) are retried; 400s are reported. Returns the number of documents indexed.
pub fn elasticsearch_bulk(
    url: &str,
    index: &str,
    events: &[Event],
    attempts: u32,
    backoff: std::time::Duration,
) -> Result<usize, AuditError> {
    let target = url.trim_end_matches('/').to_string();
    let err = |detail: String| AuditError::Output {
        target: target.clone(),
        detail,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(60))
        .build();
    let mut pending: Vec<&Event> = events.iter().collect();
    let mut indexed = 0;
    let mut rejected: Vec<String> = Vec::new();
    let mut attempt = 0;
    // Batches: at most 500 documents each; a 413 halves the batch.
    let mut batch = 500usize;
    while !pending.is_empty() {
        attempt += 1;
        if attempt > attempts.max(1) * 8 {
            return Err(err(format!(
                "{} documents not indexed after {attempts} attempts",
                pending.len()
            )));
        }
        let take = batch.min(pending.len());
        let chunk: Vec<&Event> = pending[..take].to_vec();
        let mut body = String::new();
        for e in &chunk {
            body.push_str(
                &serde_json::json!({"index": {"_index": index, "_id": e.fingerprint}}).to_string(),
            );
            body.push('\n');
            body.push_str(&serde_json::to_string(e).map_err(|x| err(x.to_string()))?);
            body.push('\n');
        }
        let resp = agent
            .post(&format!("{target}/_bulk"))
            .set("content-type", "application/x-ndjson")
            .send_string(&body);
        let text = match resp {
            Ok(r) => r.into_string().map_err(|e| err(e.to_string()))?,
            Err(ureq::Error::Status(413, _)) if take > 1 => {
                batch = take / 2;
                continue;
            }
            Err(ureq::Error::Status(code @ (429 | 503), _)) => {
                sleep_jitter(backoff, attempt);
                tracing::debug!(code, "bulk request refused; retrying");
                continue;
            }
            Err(ureq::Error::Status(code, r)) => {
                let t = r.into_string().unwrap_or_default();
                return Err(err(format!(
                    "HTTP {code}: {}",
                    t.chars().take(300).collect::<String>()
                )));
            }
            Err(ureq::Error::Transport(t)) => return Err(err(t.to_string())),
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("bulk answer is not JSON: {e}")))?;
        let items = v
            .get("items")
            .and_then(|i| i.as_array())
            .cloned()
            .unwrap_or_default();
        if items.len() != chunk.len() {
            return Err(err(format!(
                "bulk answer has {} items for {} documents",
                items.len(),
                chunk.len()
            )));
        }
        let mut retry = Vec::new();
        for (item, e) in items.iter().zip(&chunk) {
            let r = item
                .get("index")
                .or_else(|| item.as_object().and_then(|o| o.values().next()));
            let status = r
                .and_then(|r| r.get("status"))
                .and_then(|s| s.as_u64())
                .unwrap_or(0);
            match status {
                200..=299 => indexed += 1,
                429 | 503 => retry.push(*e),
                _ => {
                    let reason = r
                        .and_then(|r| r.get("error"))
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    tracing::warn!(status, id = %e.fingerprint, reason, "bulk item refused");
                    rejected.push(format!("{} ({status}): {reason}", e.fingerprint));
                }
            }
        }
        let had_retry = !retry.is_empty();
        let mut rest = retry;
        rest.extend_from_slice(&pending[take..]);
        pending = rest;
        if had_retry {
            sleep_jitter(backoff, attempt);
        }
    }
    if !rejected.is_empty() {
        return Err(err(format!(
            "{indexed} indexed, {} refused: {}",
            rejected.len(),
            rejected.join("; ")
        )));
    }
    Ok(indexed)
}

fn sleep_jitter(base: std::time::Duration, attempt: u32) {
    let cap = base.as_millis() as u64 * (1u64 << attempt.min(8));
    std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(
        0..=cap.max(1),
    )));
}

/// POSTs one JSON body (a run's message) to a web hook; the URL (which carries tokens) never
/// appears in the error.
pub fn webhook(
    url: &str,
    body: &serde_json::Value,
    timeout: std::time::Duration,
) -> Result<(), AuditError> {
    let scrub = |s: String| s.replace(url, "<webhook url>");
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(3))
        .timeout(timeout)
        .build()
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .map(|_| ())
        .map_err(|e| AuditError::Output {
            target: "webhook".into(),
            detail: scrub(e.to_string()),
        })
}
