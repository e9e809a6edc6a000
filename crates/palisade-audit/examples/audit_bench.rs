//! One audit run for bench/audit: reads the account at `--endpoint` (credentials from the
//! environment), diffs against `--state FILE` (written back), prints one JSON summary line
//! (findings, events, API calls per region and operation, wall time). CPU time and peak RSS are
//! measured around the process by bench/audit/run.sh.

use palisade_audit::client::ClientOptions;
use palisade_audit::run::{run, RunOptions};
use palisade_audit::state::{diff, State};
use palisade_audit::AuditConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let endpoint = get("--endpoint").expect("--endpoint URL");
    let state = std::path::PathBuf::from(get("--state").expect("--state FILE"));
    let region = get("--region").unwrap_or_else(|| "us-east-1".into());
    let t = std::time::Instant::now();
    let prev = State::load(&state).expect("state");
    let now = jiff::Timestamp::now();
    let out = run(
        &AuditConfig::default(),
        &RunOptions {
            regions: vec![region],
            profile: None,
            client: ClientOptions {
                endpoint: Some(endpoint),
                ..ClientOptions::default()
            },
            now,
        },
    )
    .expect("audit run");
    let (next, events) = diff(&prev, &out.evaluation, now);
    next.save(&state).expect("save state");
    println!(
        "{}",
        serde_json::json!({
            "findings": out.evaluation.findings.len(),
            "errored": out.evaluation.errored.len(),
            "events": events.len(),
            "calls": out.calls,
            "wall_s": t.elapsed().as_secs_f64(),
        })
    );
}
