//! Runs one built-in filter over a log file and prints what it flagged.
//!
//! `detect_tsv FILTER MODE LOG` (MODE: `normal` | `aggressive`). Prints
//! `line_no<TAB>ip<TAB>rule[<TAB>nofail]` for every line that produced an event to stdout,
//! and throughput plus per-rule counts to stderr. The file is read into memory first so the
//! reported rate is the filter's own. `PALISADE_NOW` (RFC 3339) fixes "now" for the year of
//! RFC 3164 timestamps.

use palisade_core::Timestamp;
use palisade_filter::{build_builtin, BuiltinOptions, LineCtx, Mode};
use std::collections::BTreeMap;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: detect_tsv FILTER normal|aggressive LOG");
        std::process::exit(2);
    }
    let mode = match args[2].as_str() {
        "normal" => Mode::Normal,
        "aggressive" => Mode::Aggressive,
        m => {
            eprintln!("unknown mode {m:?}");
            std::process::exit(2);
        }
    };
    let opts = BuiltinOptions {
        mode,
        ..Default::default()
    };
    let mut filter = build_builtin(&args[1], &opts).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let data = std::fs::read(&args[3]).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[3]);
        std::process::exit(1)
    });
    let now = std::env::var("PALISADE_NOW")
        .ok()
        .and_then(|s| Timestamp::parse_rfc3339(&s).ok())
        .unwrap_or_else(|| Timestamp::from_jiff(jiff::Timestamp::now()));
    let ctx = LineCtx {
        now,
        source_time: None,
        journal: None,
    };
    let mut events = Vec::with_capacity(64);
    // (line number, address, rule, counted) of the first event of each matched line;
    // reserved up front so the timed loop measures the filter, not this bookkeeping.
    let mut hits: Vec<(u32, std::net::IpAddr, std::sync::Arc<str>, bool)> =
        Vec::with_capacity(memchr_count(&data) / 2 + 16);
    let start = std::time::Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut n = 0u32;
    for line in data.split(|&b| b == b'\n') {
        n += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let palisade_filter::Outcome::Matched = filter.process(line, &ctx, &mut events) {
            let e = &events[0];
            hits.push((n, e.ip, e.rule.clone(), e.failure));
        }
        events.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns().zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e9);
    if data.ends_with(b"\n") {
        n -= 1;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut per_rule: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (line_no, ip, rule, failure) in &hits {
        let c = per_rule.entry(rule.to_string()).or_default();
        if *failure {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
        let nofail = if *failure { "" } else { "\tnofail" };
        writeln!(out, "{line_no}\t{ip}\t{rule}{nofail}").expect("stdout");
    }
    out.flush().expect("stdout");
    eprintln!(
        "{}: {n} lines in {secs:.3}s wall = {:.0} lines/s; {} lines matched",
        args[1],
        f64::from(n) / secs,
        hits.len()
    );
    if let Some(cpu) = cpu {
        eprintln!(
            "  on-CPU {cpu:.3}s = {:.0} lines/s (excludes time waiting for a core)",
            f64::from(n) / cpu
        );
    }
    for (rule, (f, nf)) in per_rule {
        eprintln!("  {rule:<24} {f:>8} counted {nf:>8} recorded-only");
    }
}

fn memchr_count(data: &[u8]) -> usize {
    data.iter().filter(|&&b| b == b'\n').count()
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`), so the rate is meaningful on
/// a machine shared with other jobs.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
