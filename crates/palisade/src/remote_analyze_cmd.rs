//! `palisade analyze --agents web1,web2 --config SERVER.toml`: asks the running fleet server
//! (over its admin socket, [`admin_socket_path`]) to have those agents analyze their own
//! access logs, then merges their rows with a `host` column and renders them like a local
//! analysis (table, JSON, CSV, HTML; `--emit` for the addresses proposed on any host,
//! `--emit list` being the file `palisade fleet block` reads).
//!
//! An agent that cannot answer (unknown, revoked, not connected, too old, refused, timed
//! out) is reported per host in the output and on standard error, and the command exits 1
//! after printing what the others returned.

use super::report_cmd::{AnalyzeArgs, Format};
use anyhow::{bail, Context, Result};
use palisade_analyze::svg::{self, esc};
use palisade_core::{Clock, SystemClock, Timestamp};
use palisade_proto::fleet_analyze::{
    admin_socket_path, AdminLine, AdminRequest, AnalyzeQuery, AnalyzeRow, AnalyzeSummary,
    MAX_TIMEOUT_SECS,
};
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Longest answer line read (a `rows` line is well under this).
const MAX_LINE: u64 = 4 << 20;

/// What one host returned.
#[derive(Default)]
struct Host {
    name: String,
    rows: Vec<AnalyzeRow>,
    summary: Option<AnalyzeSummary>,
    error: Option<String>,
    progress: (u64, u64),
}

/// Runs the remote analysis.
pub fn run(a: &AnalyzeArgs, agents: &[String]) -> Result<ExitCode> {
    let path = a
        .config
        .as_deref()
        .context("--agents needs --config SERVER.toml (the fleet server's configuration)")?;
    let cfg = super::load_config(path)?;
    if !cfg
        .fleet
        .as_ref()
        .is_some_and(|f| f.role == palisade_config::FleetRole::Server)
    {
        bail!(
            "--agents: {} is not a fleet server's configuration ([fleet] role = \"server\")",
            path.display()
        );
    }
    let now = SystemClock.now();
    let (threshold, levels) = super::report_cmd::threshold_levels(a, Some(&cfg))?;
    let (since, until) = super::report_cmd::window(a, now)?;
    let timeout = match &a.timeout {
        Some(t) => palisade_config::parse_duration(t)
            .map_err(|e| anyhow::anyhow!("--timeout {t:?}: {e}"))?,
        None => Duration::from_secs(600),
    };
    let mut names: Vec<String> = Vec::new();
    for n in agents.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !palisade_config::valid_agent_name(n) {
            bail!("--agents: {n:?} is not an agent name");
        }
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    if names.is_empty() {
        bail!("--agents: name at least one agent");
    }
    let query = AnalyzeQuery {
        since_us: since.map(|t| t.0),
        until_us: until.map(|t| t.0),
        threshold,
        levels: [levels.yellow, levels.red, levels.critical],
        top: u32::try_from(a.top).unwrap_or(0),
        files: a.logs.clone(),
        timeout_secs: timeout.as_secs().clamp(1, MAX_TIMEOUT_SECS),
    };
    let hosts = ask(&cfg, names, query)?;

    // Merged output.
    let script_to_stdout = a.emit.is_some() && a.emit_to.is_none();
    {
        let mut out: Box<dyn Write> = match &a.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None if script_to_stdout => Box::new(std::io::stderr().lock()),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let m = Merged {
            hosts: &hosts,
            since,
            until,
            threshold,
            levels: query_levels(&levels),
        };
        match a.format {
            Format::Table => m.table(&mut out)?,
            Format::Json => m.json(&mut out)?,
            Format::Csv => m.csv(&mut out)?,
            Format::Html => m.html(&mut out)?,
        }
        out.flush()?;
    }
    if let Some(kind) = a.emit {
        let ips = proposed(&hosts);
        let how = std::env::args().collect::<Vec<_>>().join(" ");
        let mut out: Box<dyn Write> = match &a.emit_to {
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        palisade_analyze::render::script(kind.kind(), &ips, &how, now, &mut out)?;
        out.flush()?;
    }
    let failed: Vec<&Host> = hosts.iter().filter(|h| h.error.is_some()).collect();
    for h in &failed {
        eprintln!(
            "palisade analyze: {}: {}",
            h.name,
            h.error.as_deref().unwrap_or_default()
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn query_levels(l: &palisade_analyze::analyze::Levels) -> [u64; 3] {
    [l.yellow, l.red, l.critical]
}

/// The distinct addresses proposed on any host, sorted.
fn proposed(hosts: &[Host]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = hosts
        .iter()
        .filter_map(|h| h.summary.as_ref())
        .flat_map(|s| s.proposed.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Sends the request and reads the answer (progress on a terminal).
fn ask(
    cfg: &palisade_config::Config,
    names: Vec<String>,
    query: AnalyzeQuery,
) -> Result<Vec<Host>> {
    let sock = admin_socket_path(std::path::Path::new(&cfg.general.socket));
    let mut s = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            bail!(
                "the fleet server is not running (no {}): start `palisade run --config {}` first",
                sock.display(),
                cfg.path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("{}", sock.display())),
    };
    // Each agent has its timeout; the server answers within it (plus a margin).
    s.set_read_timeout(Some(Duration::from_secs(query.timeout_secs + 60)))?;
    let req = AdminRequest::Analyze {
        agents: names.clone(),
        query,
    };
    let mut line = serde_json::to_string(&req)?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .with_context(|| format!("{}", sock.display()))?;
    let mut hosts: Vec<Host> = names
        .iter()
        .map(|n| Host {
            name: n.clone(),
            ..Default::default()
        })
        .collect();
    let pb = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(200));
        pb.set_message(format!("asking {} agent(s)…", names.len()));
        pb
    });
    let mut r = BufReader::new(s);
    let mut open = names.len();
    while open > 0 {
        let mut buf = String::new();
        let n = (&mut r)
            .take(MAX_LINE)
            .read_line(&mut buf)
            .context("reading the fleet server's answer")?;
        if n == 0 {
            break;
        }
        let l: AdminLine = serde_json::from_str(&buf)
            .with_context(|| "unreadable answer from the fleet server".to_string())?;
        let host_of = |hosts: &mut Vec<Host>, name: &str| -> Option<usize> {
            hosts.iter().position(|h| h.name == name)
        };
        match l {
            AdminLine::Error { host, error } if host.is_empty() => {
                if let Some(pb) = &pb {
                    pb.finish_and_clear();
                }
                bail!("the fleet server refused: {error}");
            }
            AdminLine::Error { host, error } => {
                if let Some(i) = host_of(&mut hosts, &host) {
                    if hosts[i].error.is_none() && hosts[i].summary.is_none() {
                        open -= 1;
                    }
                    hosts[i].error = Some(error);
                    hosts[i].rows.clear();
                }
            }
            AdminLine::Done { host, summary } => {
                if let Some(i) = host_of(&mut hosts, &host) {
                    if hosts[i].error.is_none() && hosts[i].summary.is_none() {
                        open -= 1;
                    }
                    hosts[i].summary = Some(summary);
                }
            }
            AdminLine::Rows { host, rows } => {
                if let Some(i) = host_of(&mut hosts, &host) {
                    hosts[i].rows.extend(rows);
                }
            }
            AdminLine::Progress { host, done, total } => {
                if let Some(i) = host_of(&mut hosts, &host) {
                    hosts[i].progress = (done, total);
                }
            }
        }
        if let Some(pb) = &pb {
            let parts: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let state = if h.error.is_some() {
                        "failed".to_string()
                    } else if h.summary.is_some() {
                        "done".to_string()
                    } else {
                        match h.progress.0.saturating_mul(100).checked_div(h.progress.1) {
                            Some(p) => format!("{p}%"),
                            None => "…".to_string(),
                        }
                    };
                    format!("{} {state}", h.name)
                })
                .collect();
            pb.set_message(parts.join("  "));
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    for h in hosts
        .iter_mut()
        .filter(|h| h.error.is_none() && h.summary.is_none())
    {
        h.error = Some("the fleet server ended the answer early".into());
    }
    Ok(hosts)
}

/// The merged result.
struct Merged<'a> {
    hosts: &'a [Host],
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    threshold: u64,
    levels: [u64; 3],
}

fn short(t: Option<Timestamp>) -> String {
    match t {
        None => "-".into(),
        Some(t) => t.to_jiff().strftime("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

fn rules_text(r: &AnalyzeRow) -> String {
    r.rules
        .iter()
        .map(|(n, c)| format!("{n}:{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn level_color(l: &str) -> &'static str {
    match l {
        "YELLOW" => "#e6b800",
        "RED" => "#d62728",
        "CRITICAL" => "#7b0000",
        _ => "#2ca02c",
    }
}

impl Merged<'_> {
    fn rows(&self) -> impl Iterator<Item = (&str, &AnalyzeRow)> {
        self.hosts
            .iter()
            .flat_map(|h| h.rows.iter().map(move |r| (h.name.as_str(), r)))
    }

    fn table(&self, w: &mut dyn Write) -> std::io::Result<()> {
        for h in self.hosts {
            match (&h.summary, &h.error) {
                (_, Some(e)) => writeln!(w, "{:<20} ERROR     {e}", h.name)?,
                (Some(s), None) => {
                    writeln!(
                        w,
                        "{:<20} {:<9} {} lines, {} requests, {} addresses, {} suspicious hits in {:.2} s",
                        h.name, s.level, s.lines, s.requests, s.distinct_ips, s.suspicious, s.seconds
                    )?;
                    for f in &s.files {
                        writeln!(
                            w,
                            "{:<20}   {:<9} {}  ({} lines, {} suspicious)",
                            "", f.level, f.path, f.lines, f.suspicious
                        )?;
                    }
                    if s.rows_left_out > 0 {
                        writeln!(
                            w,
                            "{:<20}   {} more addresses with suspicious hits (raise --top)",
                            "", s.rows_left_out
                        )?;
                    }
                }
                (None, None) => {}
            }
        }
        writeln!(w)?;
        writeln!(
            w,
            "{:<20} {:<39} {:>9} {:>10} {:>5} {:>6} {:<19} {:<19} {:<7} rules",
            "host",
            "address",
            "requests",
            "suspicious",
            "4xx%",
            "max/m",
            "first seen",
            "last seen",
            "country"
        )?;
        for (host, r) in self.rows() {
            let mark = if r.proposed {
                " BLOCK"
            } else if r.allowlisted {
                " (allowlisted)"
            } else {
                ""
            };
            writeln!(
                w,
                "{:<20} {:<39} {:>9} {:>10} {:>5.0} {:>6} {:<19} {:<19} {:<7} {}{}",
                host,
                r.ip.to_string(),
                r.requests,
                r.suspicious,
                100.0 * r.client_errors as f64 / r.requests.max(1) as f64,
                r.peak_per_minute,
                short(r.first_seen),
                short(r.last_seen),
                r.country.as_deref().unwrap_or(""),
                rules_text(r),
                mark
            )?;
        }
        let n = proposed(self.hosts).len();
        writeln!(
            w,
            "\n{n} address{} proposed for blocking on at least one host (at least {} suspicious hits); --emit list writes them for `palisade fleet block`",
            if n == 1 { "" } else { "es" },
            self.threshold
        )
    }

    fn json(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let hosts: Vec<serde_json::Value> = self
            .hosts
            .iter()
            .map(|h| {
                let mut v = match &h.summary {
                    Some(s) if h.error.is_none() => {
                        serde_json::to_value(s).unwrap_or_else(|_| json!({}))
                    }
                    _ => json!({}),
                };
                v["host"] = json!(h.name);
                v["error"] = json!(h.error);
                v
            })
            .collect();
        let ips: Vec<serde_json::Value> = self
            .rows()
            .map(|(host, r)| {
                let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
                v["host"] = json!(host);
                v
            })
            .collect();
        let doc = json!({
            "since": self.since,
            "until": self.until,
            "threshold": self.threshold,
            "levels": {"yellow": self.levels[0], "red": self.levels[1], "critical": self.levels[2]},
            "hosts": hosts,
            "ips": ips,
            "proposed": proposed(self.hosts),
        });
        serde_json::to_writer_pretty(&mut *w, &doc).map_err(std::io::Error::from)?;
        writeln!(w)
    }

    fn csv(&self, w: &mut dyn Write) -> std::io::Result<()> {
        /// One CSV field, quoted when it needs to be (RFC 4180).
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        writeln!(
            w,
            "host,ip,requests,suspicious,client_errors,peak_per_minute,first_seen,last_seen,country,rules,proposed,allowlisted"
        )?;
        for (host, r) in self.rows() {
            let cells = [
                host.to_string(),
                r.ip.to_string(),
                r.requests.to_string(),
                r.suspicious.to_string(),
                r.client_errors.to_string(),
                r.peak_per_minute.to_string(),
                r.first_seen.map(|t| t.to_string()).unwrap_or_default(),
                r.last_seen.map(|t| t.to_string()).unwrap_or_default(),
                r.country.clone().unwrap_or_default(),
                rules_text(r),
                r.proposed.to_string(),
                r.allowlisted.to_string(),
            ];
            let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
            writeln!(w, "{}", line.join(","))?;
        }
        Ok(())
    }

    fn html(&self, w: &mut dyn Write) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let mut s = String::new();
        s.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Palisade fleet access-log analysis</title><style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}.lvl{color:#fff;padding:2px 8px;border-radius:3px;font-weight:bold}.num{text-align:right}.block{background:#fde0e0}.err{color:#b00}</style></head><body>");
        let _ = write!(
            s,
            "<h1>Fleet access-log analysis</h1><p class=\"meta\">Window: from {} to {} (UTC). Generated {} UTC.</p>",
            self.since.map_or("the start".into(), |t| short(Some(t))),
            self.until.map_or("now".into(), |t| short(Some(t))),
            short(Some(SystemClock.now()))
        );
        s.push_str("<h2>Hosts</h2><table><tr><th>host</th><th>level</th><th>lines</th><th>requests</th><th>addresses</th><th>suspicious</th><th>logs</th></tr>");
        for h in self.hosts {
            match (&h.summary, &h.error) {
                (_, Some(e)) => {
                    let _ = write!(
                        s,
                        "<tr><td>{}</td><td colspan=\"6\" class=\"err\">{}</td></tr>",
                        esc(&h.name),
                        esc(e)
                    );
                }
                (Some(x), None) => {
                    let logs: Vec<String> = x.files.iter().map(|f| esc(&f.path)).collect();
                    let _ = write!(
                        s,
                        "<tr><td>{}</td><td><span class=\"lvl\" style=\"background:{}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                        esc(&h.name),
                        level_color(&x.level),
                        esc(&x.level),
                        x.lines,
                        x.requests,
                        x.distinct_ips,
                        x.suspicious,
                        logs.join("<br>")
                    );
                }
                (None, None) => {}
            }
        }
        s.push_str("</table><h2>Charts</h2>");
        let mut top: Vec<(String, u64)> = self
            .rows()
            .map(|(h, r)| (format!("{} ({h})", r.ip), r.suspicious))
            .collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        top.truncate(20);
        s.push_str(&svg::hbar(
            "Top addresses by suspicious hits",
            &top,
            "#d62728",
        ));
        let mut per_host: HashMap<&str, u64> = HashMap::new();
        for (h, r) in self.rows() {
            *per_host.entry(h).or_default() += r.suspicious;
        }
        let mut hosts: Vec<(String, u64)> = per_host
            .into_iter()
            .map(|(h, n)| (h.to_string(), n))
            .collect();
        hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        s.push_str("<br>");
        s.push_str(&svg::hbar("Suspicious hits by host", &hosts, "#ff7f0e"));
        s.push_str("<h2>Addresses</h2><table><tr><th>host</th><th>address</th><th>requests</th><th>suspicious</th><th>4xx</th><th>max/min</th><th>first seen</th><th>last seen</th><th>country</th><th>rules</th><th>proposal</th></tr>");
        for (host, r) in self.rows() {
            let _ = write!(
                s,
                "<tr{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if r.proposed { " class=\"block\"" } else { "" },
                esc(host),
                r.ip,
                r.requests,
                r.suspicious,
                r.client_errors,
                r.peak_per_minute,
                short(r.first_seen),
                short(r.last_seen),
                esc(r.country.as_deref().unwrap_or("")),
                esc(&rules_text(r)),
                if r.proposed {
                    "block"
                } else if r.allowlisted {
                    "allowlisted"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            s,
            "</table><p>Addresses with at least {} suspicious hits are proposed for blocking. Generated by palisade {}.</p></body></html>",
            self.threshold,
            env!("CARGO_PKG_VERSION")
        );
        w.write_all(s.as_bytes())
    }
}
