//! Fleet load generator (bench/fleet, issues 16 and 18): N simulated agents over loopback
//! against a real `palisade run` fleet server that this program starts, enrolls (tokens from
//! `palisade fleet token add`), measures and stops.
//!
//! ```text
//! fleet_load --palisade BIN --config SERVER.toml --url wss://127.0.0.1:7443 SCENARIO [options]
//!   propagate  --agents 1000 --bans 20          local_ban on agent 0 -> every other agent
//!   ingest     --agents 100 --events 10000       backlog per agent shipped as fast as credit allows
//!   idle       --agents 1000 --hold 20           server RSS per idle connection, idle CPU
//!   drain      --agents 100 --rate 50 --outage 60   kill -9 the server, restart, time to catch up
//!   failover   --agents 1000 --rate 5           two servers (--config A,B --url A,B); agents
//!                                               list both; kill -9 one; time until all are back
//! common: --json FILE --max-secs 600 --concurrency 64 --server-log FILE --seed N --sources K
//!         --repeat R (events in a row from one address; 1 = each event from the next one)
//! Several servers: --config A.toml,B.toml --url wss://127.0.0.1:P1,wss://127.0.0.1:P2 (same
//! store, e.g. one PostgreSQL); agent i connects to server i mod n first (ingest, idle).
//! ```
//! Prints one JSON object (stdout, and --json FILE). Bounded: at most 20,000 agents, every
//! phase under --max-secs, loopback addresses only.

mod sim;

use serde_json::{json, Value};
use sim::{percentile, Agent, AgentStats, Cmd, Identity, Produce, Receipt, Target};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MAX_AGENTS: usize = 20_000;

struct Opts {
    palisade: PathBuf,
    config: PathBuf,
    url: String,
    /// Every server: (config, url); the first is `config`/`url`.
    servers: Vec<(PathBuf, String)>,
    /// Local source addresses 127.0.0.1..=127.0.0.K for the agents' connections.
    sources: u8,
    scenario: String,
    agents: usize,
    bans: usize,
    events: u64,
    rate: f64,
    outage: u64,
    hold: u64,
    max_secs: u64,
    concurrency: usize,
    json: Option<PathBuf>,
    server_log: PathBuf,
    seed: u64,
    /// Events in a row from one address.
    repeat: u64,
}

fn parse_args() -> Result<Opts, String> {
    let mut a = std::env::args().skip(1);
    let mut o = Opts {
        palisade: PathBuf::from("target/release/palisade"),
        config: PathBuf::new(),
        url: "wss://127.0.0.1:7443".into(),
        servers: Vec::new(),
        sources: 1,
        scenario: String::new(),
        agents: 100,
        bans: 20,
        events: 10_000,
        rate: 50.0,
        outage: 60,
        hold: 20,
        max_secs: 600,
        concurrency: 64,
        json: None,
        server_log: PathBuf::from("/dev/null"),
        seed: 1,
        repeat: 1,
    };
    while let Some(k) = a.next() {
        if !k.starts_with("--") {
            if o.scenario.is_empty() {
                o.scenario = k;
                continue;
            }
            return Err(format!("unexpected argument {k}"));
        }
        let v = a.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{k}: not a number: {v}"))
        };
        match k.as_str() {
            "--palisade" => o.palisade = v.into(),
            "--config" => o.config = v.into(),
            "--url" => o.url = v,
            "--agents" => o.agents = num(&v)? as usize,
            "--bans" => o.bans = num(&v)? as usize,
            "--events" => o.events = num(&v)?,
            "--rate" => o.rate = v.parse().map_err(|_| format!("--rate: {v}"))?,
            "--outage" => o.outage = num(&v)?,
            "--hold" => o.hold = num(&v)?,
            "--max-secs" => o.max_secs = num(&v)?,
            "--concurrency" => o.concurrency = num(&v)?.clamp(1, 1024) as usize,
            "--json" => o.json = Some(v.into()),
            "--server-log" => o.server_log = v.into(),
            "--seed" => o.seed = num(&v)?,
            "--repeat" => o.repeat = num(&v)?.clamp(1, 1_000_000),
            "--sources" => o.sources = num(&v)?.clamp(1, 250) as u8,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if !["propagate", "ingest", "idle", "drain", "failover"].contains(&o.scenario.as_str()) {
        return Err("scenario: propagate | ingest | idle | drain | failover".into());
    }
    if o.agents == 0 || o.agents > MAX_AGENTS {
        return Err(format!("--agents 1..{MAX_AGENTS}"));
    }
    if o.config.as_os_str().is_empty() {
        return Err("--config SERVER.toml is required".into());
    }
    let configs: Vec<PathBuf> = o
        .config
        .to_string_lossy()
        .split(',')
        .map(PathBuf::from)
        .collect();
    let urls: Vec<String> = o.url.split(',').map(str::to_string).collect();
    if configs.len() != urls.len() || configs.len() > 4 {
        return Err("--config and --url: as many of each, at most 4".into());
    }
    if o.scenario == "failover" && configs.len() < 2 {
        return Err("failover needs two servers (--config A,B --url A,B)".into());
    }
    o.servers = configs.into_iter().zip(urls).collect();
    o.config = o.servers[0].0.clone();
    o.url = o.servers[0].1.clone();
    for (_, url) in &o.servers {
        check_loopback(url)?;
    }
    Ok(o)
}

fn check_loopback(url: &str) -> Result<(), String> {
    let host = url
        .strip_prefix("wss://")
        .and_then(|r| r.split('/').next())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .ok_or("--url wss://HOST:PORT")?;
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(()),
        _ => Err("--url must be a loopback address (load generator)".into()),
    }
}

fn check_ranges(mut o: Opts) -> Result<Opts, String> {
    if !(o.rate > 0.0 && o.rate <= 100_000.0) {
        return Err("--rate 0..100000".into());
    }
    o.events = o.events.min(10_000_000);
    o.bans = o.bans.clamp(1, 1000);
    o.max_secs = o.max_secs.clamp(5, 3600);
    o.hold = o.hold.min(600);
    o.outage = o.outage.min(1800);
    Ok(o)
}

fn parse_all() -> Result<Opts, String> {
    check_ranges(parse_args()?)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("fleet_load: {}", msg.as_ref());
}

/// The server process and its /proc figures.
struct Server {
    child: Child,
    pid: u32,
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime in seconds (clock ticks of 100 Hz, Linux's USER_HZ).
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((u + st) as f64 / 100.0)
}

/// CPU seconds of every `postgres` process on the machine (0 when none).
fn pg_cpu_secs() -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(proc_cpu_secs)
        .sum()
}

fn self_cpu_secs() -> f64 {
    proc_cpu_secs(std::process::id()).unwrap_or(0.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Server {
    async fn start(o: &Opts) -> Result<Server, String> {
        Server::start_nth(o, 0).await
    }
    /// The n-th of `--config`/`--url` (its log: `--server-log`, `.2`, `.3` …).
    async fn start_nth(o: &Opts, n: usize) -> Result<Server, String> {
        let (config, url) = &o.servers[n];
        let log_path = if n == 0 {
            o.server_log.clone()
        } else {
            PathBuf::from(format!("{}.{}", o.server_log.display(), n + 1))
        };
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = Command::new(&o.palisade)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(|e| e.to_string())?)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("{}: {e}", o.palisade.display()))?;
        let pid = child.id();
        let mut s = Server { child, pid };
        let t = Target::new(url, &"0".repeat(64))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("server exited: {st} (log: {})", log_path.display()));
            }
            if tokio::net::TcpStream::connect((t.host.as_str(), t.port))
                .await
                .is_ok()
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                s.kill9();
                return Err("server not listening after 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS:").unwrap_or(0)
    }
    fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.pid).unwrap_or(0.0)
    }
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    async fn stop(mut self) {
        // SIGTERM first (clean shutdown), then SIGKILL after 10 s.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill9();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

async fn cli(o: &Opts, args: &[&str]) -> Result<String, String> {
    cli_at(o, &o.config, args).await
}

/// `palisade ARGS --config CONFIG`.
async fn cli_at(o: &Opts, config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(&o.palisade);
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", o.palisade.display()))?;
    if !out.status.success() {
        return Err(format!(
            "palisade {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn enroll_all(o: &Opts, target: &Target, secret: &str) -> Result<Vec<Identity>, String> {
    let sem = Arc::new(tokio::sync::Semaphore::new(o.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..o.agents {
        let (t, s, sem) = (target.clone(), secret.to_string(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let name = format!("sim-{:05}-{i:05}", std::process::id() % 100_000);
            let mut last = String::new();
            for _ in 0..3 {
                match sim::enroll(&t, &s, &name).await {
                    Ok(id) => return Ok((i, id)),
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(format!("{name}: {last}"))
        });
    }
    let mut ids: Vec<Option<Identity>> = vec![None; o.agents];
    while let Some(r) = set.join_next().await {
        let (i, id) = r.map_err(|e| e.to_string())??;
        ids[i] = Some(id);
    }
    Ok(ids.into_iter().map(|x| x.expect("all enrolled")).collect())
}

struct Fleet {
    stats: Vec<Arc<AgentStats>>,
    cmds: Vec<mpsc::UnboundedSender<Cmd>>,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    tasks: tokio::task::JoinSet<()>,
}

fn spawn_agents(o: &Opts, target: &Target, ids: &[Identity], produce: Produce) -> Fleet {
    spawn_agents_on(o, std::slice::from_ref(target), ids, produce)
}

/// Agent i connects to `targets[i % n]` first, then the others in turn (failover).
fn spawn_agents_on(o: &Opts, targets: &[Target], ids: &[Identity], produce: Produce) -> Fleet {
    let target = &targets[0];
    let (rtx, rrx) = mpsc::unbounded_channel();
    let mut fleet = Fleet {
        stats: Vec::new(),
        cmds: Vec::new(),
        receipts: rrx,
        tasks: tokio::task::JoinSet::new(),
    };
    for (i, id) in ids.iter().enumerate() {
        let st = Arc::new(AgentStats::default());
        let (ctx, crx) = mpsc::unbounded_channel();
        let n = targets.len();
        let mut a = Agent::new(
            i,
            id.clone(),
            targets[i % n].clone(),
            produce,
            st.clone(),
            rtx.clone(),
            crx,
            o.seed,
        );
        a.more_targets = (1..n).map(|k| targets[(i + k) % n].clone()).collect();
        a.repeat = o.repeat;
        if o.sources > 1 {
            a.source = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                0,
                0,
                1 + (i % o.sources as usize) as u8,
            )));
        }
        let _ = target;
        fleet.stats.push(st);
        fleet.cmds.push(ctx);
        fleet.tasks.spawn(a.run());
    }
    fleet
}

impl Fleet {
    fn connected(&self) -> usize {
        self.stats
            .iter()
            .filter(|s| s.connected.load(Ordering::SeqCst))
            .count()
    }
    async fn wait_connected(&self, n: usize, secs: u64) -> Result<Duration, String> {
        let t = Instant::now();
        while self.connected() < n {
            if t.elapsed() > Duration::from_secs(secs) {
                let err = self
                    .stats
                    .iter()
                    .map(|s| s.last_error.lock().unwrap().clone())
                    .find(|e| !e.is_empty())
                    .unwrap_or_default();
                return Err(format!(
                    "{} of {n} agents connected after {secs} s (e.g. {err})",
                    self.connected()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(t.elapsed())
    }
    async fn stop(mut self) {
        for c in &self.cmds {
            let _ = c.send(Cmd::Stop);
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
    fn acked_total(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.acked.load(Ordering::SeqCst))
            .sum()
    }
}

/// Server-side event counts of our agents (`palisade fleet agents --json`).
async fn server_counts(o: &Opts, ids: &[Identity]) -> Result<HashMap<String, u64>, String> {
    server_counts_at(o, &o.config, ids).await
}

async fn server_counts_at(
    o: &Opts,
    config: &std::path::Path,
    ids: &[Identity],
) -> Result<HashMap<String, u64>, String> {
    let out = cli_at(o, config, &["fleet", "agents", "--json"]).await?;
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("fleet agents: {e}"))?;
    let mut m = HashMap::new();
    for a in v.as_array().ok_or("fleet agents: not an array")? {
        let name = a["name"].as_str().unwrap_or_default().to_string();
        if ids.iter().any(|i| i.name == name) {
            m.insert(name, a["events"].as_u64().unwrap_or(0));
        }
    }
    Ok(m)
}

fn summary(samples_ms: &mut [f64]) -> Value {
    samples_ms.sort_by(|a, b| a.total_cmp(b));
    json!({
        "samples": samples_ms.len(),
        "p50_ms": percentile(samples_ms, 50.0),
        "p90_ms": percentile(samples_ms, 90.0),
        "p99_ms": percentile(samples_ms, 99.0),
        "max_ms": percentile(samples_ms, 100.0),
    })
}

async fn run(o: Opts) -> Result<Value, String> {
    let t_all = Instant::now();
    let cpu0 = self_cpu_secs();
    let tok_out = cli(
        &o,
        &[
            "fleet",
            "token",
            "add",
            "--uses",
            &o.agents.to_string(),
            "--ttl",
            "2h",
        ],
    )
    .await?;
    let token = tok_out
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let (secret, fp) = sim::parse_token(&token)?;
    let target = Target::new(&o.url, &fp)?;
    let server = Server::start(&o).await?;
    log(format!(
        "server pid {} up; enrolling {} agents",
        server.pid, o.agents
    ));
    let t = Instant::now();
    let ids = enroll_all(&o, &target, &secret).await?;
    let enroll_s = t.elapsed().as_secs_f64();
    log(format!("enrolled in {enroll_s:.1} s"));
    let mut others = Vec::new();
    for n in 1..o.servers.len() {
        let s = Server::start_nth(&o, n).await?;
        log(format!("server {} pid {} up", n + 1, s.pid));
        others.push(s);
    }
    let targets = o
        .servers
        .iter()
        .map(|(_, u)| Target::new(u, &fp))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = json!({
        "servers": o.servers.len(),
        "scenario": o.scenario,
        "agents": o.agents,
        "enroll_secs": enroll_s,
        "loadavg_start": loadavg(),
    });
    let mut server = Some(server);
    let res = match o.scenario.as_str() {
        "propagate" => propagate(&o, &targets, &ids, server.as_ref().expect("server")).await,
        "ingest" => {
            let mut all = vec![server.as_ref().expect("server")];
            all.extend(others.iter());
            ingest(&o, &targets, &ids, &all).await
        }
        "idle" => idle(&o, &target, &ids, server.as_ref().expect("server")).await,
        "failover" => {
            // Kills server 1 (the first): the others stay.
            let s = server.take().expect("server");
            failover(&o, &targets, &ids, s, &others).await
        }
        "drain" => {
            // drain kills and restarts the server: keep the new one for the stop below.
            let s = server.take().expect("server");
            match drain(&o, &target, &ids, s).await {
                Ok((v, s2)) => {
                    server = Some(s2);
                    Ok(v)
                }
                Err(e) => Err(e),
            }
        }
        _ => unreachable!(),
    };
    if let Some(s) = server {
        s.stop().await;
    }
    for s in others {
        s.stop().await;
    }
    for (k, val) in res?.as_object().cloned().unwrap_or_default() {
        out[k] = val;
    }
    out["loadavg_end"] = json!(loadavg());
    out["generator_cpu_secs"] = json!(self_cpu_secs() - cpu0);
    out["wall_secs"] = json!(t_all.elapsed().as_secs_f64());
    Ok(out)
}

type Res = Result<Value, String>;

/// Agent 0 shares a local ban; every other agent's receipt is timed. With several servers
/// agent i is on server i mod n, so the receipts of agents not on agent 0's server measure
/// the path across servers (ban log in PostgreSQL, NOTIFY, the other server's push); they are
/// summarised apart as well.
async fn propagate(o: &Opts, targets: &[Target], ids: &[Identity], server: &Server) -> Res {
    let n_servers = targets.len().max(1);
    let mut fleet = spawn_agents_on(o, targets, ids, Produce::Nothing);
    let conn = fleet.wait_connected(ids.len(), o.max_secs).await?;
    log(format!(
        "{} agents connected in {:.1} s",
        ids.len(),
        conn.as_secs_f64()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Drain what arrived at connect (snapshots of earlier bans).
    while fleet.receipts.try_recv().is_ok() {}
    let mut rng = sim::Rng::new(o.seed ^ 0xba);
    let mut samples: Vec<f64> = Vec::new();
    let mut cross: Vec<f64> = Vec::new();
    let mut missing = 0usize;
    let mut dup = 0usize;
    let per_ban_timeout = Duration::from_secs(10);
    let others = ids.len().saturating_sub(1);
    for b in 0..o.bans {
        let tgt: ipnet::IpNet = format!("198.18.{}.{}/32", (b / 250) % 256, 1 + b % 250)
            .parse()
            .expect("valid target");
        let t0 = Instant::now();
        fleet.cmds[0]
            .send(Cmd::LocalBan(tgt))
            .map_err(|_| "agent 0 gone")?;
        let mut got: Vec<Option<Instant>> = vec![None; ids.len()];
        let mut n = 0usize;
        let deadline = t0 + per_ban_timeout;
        while n < others {
            let r = tokio::time::timeout_at(deadline.into(), fleet.receipts.recv()).await;
            let Ok(Some(r)) = r else { break };
            if r.target != tgt || r.action != palisade_proto::fleet::BanAction::Ban || r.agent == 0
            {
                continue;
            }
            if got[r.agent].is_some() {
                dup += 1;
                continue;
            }
            got[r.agent] = Some(r.at);
            n += 1;
        }
        for (i, g) in got.iter().enumerate().skip(1) {
            match g {
                Some(at) => {
                    let ms = at.duration_since(t0).as_secs_f64() * 1000.0;
                    samples.push(ms);
                    if i % n_servers != 0 {
                        cross.push(ms);
                    }
                }
                None => missing += 1,
            }
        }
        log(format!("ban {}/{}: {n}/{others} agents", b + 1, o.bans));
        // Random pause: bans do not line up with anything periodic.
        tokio::time::sleep(Duration::from_millis(100 + rng.next() % 400)).await;
    }
    let rss = server.rss_kib();
    fleet.stop().await;
    let mut v = summary(&mut samples);
    if n_servers > 1 {
        v["across_servers"] = summary(&mut cross);
    }
    v["bans"] = json!(o.bans);
    v["receivers_per_ban"] = json!(others);
    v["missing"] = json!(missing);
    v["duplicate_receipts"] = json!(dup);
    v["connect_secs"] = json!(conn.as_secs_f64());
    v["server_rss_kib"] = json!(rss);
    v["inject"] = json!("local_ban from agent 0 (share_bans) -> bans message at every other agent");
    Ok(v)
}

async fn ingest(o: &Opts, targets: &[Target], ids: &[Identity], servers: &[&Server]) -> Res {
    let total = o.events * ids.len() as u64;
    let cpu_all = || servers.iter().map(|s| s.cpu_secs()).sum::<f64>();
    let pg_cpu0 = pg_cpu_secs();
    let fleet = spawn_agents_on(o, targets, ids, Produce::Backlog { total: o.events });
    let cpu0 = cpu_all();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(o.max_secs);
    let mut last_log = Instant::now();
    while fleet.acked_total() < total {
        if Instant::now() > deadline {
            let acked = fleet.acked_total();
            fleet.stop().await;
            return Err(format!(
                "ingest: {acked}/{total} acked after {} s",
                o.max_secs
            ));
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            log(format!(
                "acked {}/{total} ({:.0}/s)",
                fleet.acked_total(),
                fleet.acked_total() as f64 / t0.elapsed().as_secs_f64()
            ));
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_all() - cpu0;
    let pg_cpu = pg_cpu_secs() - pg_cpu0;
    let rss = servers[0].rss_kib();
    let busy: u64 = fleet
        .stats
        .iter()
        .map(|s| s.busy.load(Ordering::Relaxed))
        .sum();
    fleet.stop().await;
    let counts = server_counts(o, ids).await?;
    let stored: u64 = counts.values().sum();
    let wrong: Vec<String> = ids
        .iter()
        .filter(|i| counts.get(&i.name).copied().unwrap_or(0) != o.events)
        .map(|i| i.name.clone())
        .collect();
    let v = json!({
        "events_total": total,
        "events_per_agent": o.events,
        "events_in_a_row_per_address": o.repeat,
        "secs": secs,
        "events_per_sec": total as f64 / secs,
        "server_cpu_secs": cpu,
        "postgres_cpu_secs": pg_cpu,
        "events_per_server_cpu_sec": total as f64 / cpu.max(1e-9),
        "refused_503": busy,
        "server_rss_kib": rss,
        "server_events_counted": stored,
        "agents_with_wrong_count": wrong.len(),
        "exactly_once": stored == total && wrong.is_empty(),
        "note": "time = first connect to the last ack (includes TLS connects of all agents)",
    });
    Ok(v)
}

async fn idle(o: &Opts, target: &Target, ids: &[Identity], server: &Server) -> Res {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss0 = server.rss_kib();
    let fleet = spawn_agents(o, target, ids, Produce::Nothing);
    let conn = fleet.wait_connected(ids.len(), o.max_secs).await?;
    log(format!(
        "{} agents connected in {:.1} s",
        ids.len(),
        conn.as_secs_f64()
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = server.cpu_secs();
    let gcpu0 = self_cpu_secs();
    let rss1 = server.rss_kib();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.hold)).await;
    let held = t.elapsed().as_secs_f64();
    let cpu = server.cpu_secs() - cpu0;
    let gcpu = self_cpu_secs() - gcpu0;
    let rss2 = server.rss_kib();
    let still = fleet.connected();
    let gen_rss = proc_status_kib(std::process::id(), "VmRSS:").unwrap_or(0);
    fleet.stop().await;
    let n = ids.len() as f64;
    let v = json!({
        "server_rss_kib_0": rss0,
        "server_rss_kib_n": rss2,
        "server_rss_kib_n_start": rss1,
        "kib_per_idle_connection": (rss2 as f64 - rss0 as f64) / n,
        "connect_secs": conn.as_secs_f64(),
        "hold_secs": held,
        "server_cpu_percent_idle": 100.0 * cpu / held,
        "generator_cpu_percent_idle": 100.0 * gcpu / held,
        "generator_rss_kib": gen_rss,
        "still_connected": still,
    });
    Ok(v)
}

async fn drain(
    o: &Opts,
    target: &Target,
    ids: &[Identity],
    server: Server,
) -> Result<(Value, Server), String> {
    let start = Instant::now();
    let fleet = spawn_agents(
        o,
        target,
        ids,
        Produce::Rate {
            per_sec: o.rate,
            start,
        },
    );
    fleet.wait_connected(ids.len(), o.max_secs).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    log(format!("outage: kill -9 server pid {}", server.pid));
    let acked_before = fleet.acked_total();
    let mut server = server;
    server.kill9();
    drop(server);
    let t_down = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.outage)).await;
    let server = Server::start(o).await?;
    let t_up = Instant::now();
    // The backlog to drain: everything produced up to the restart.
    let backlog_mark = (start.elapsed().as_secs_f64() * o.rate) as u64;
    let backlog_total = backlog_mark * ids.len() as u64;
    log(format!(
        "server back after {:.1} s; backlog {} events (acked before outage {acked_before})",
        t_down.elapsed().as_secs_f64(),
        backlog_total.saturating_sub(acked_before)
    ));
    let deadline = t_up + Duration::from_secs(o.max_secs);
    let mut reconnected_at: Option<f64> = None;
    loop {
        let done = fleet
            .stats
            .iter()
            .all(|s| s.acked.load(Ordering::SeqCst) >= backlog_mark);
        if reconnected_at.is_none() && fleet.connected() == ids.len() {
            reconnected_at = Some(t_up.elapsed().as_secs_f64());
        }
        if done {
            break;
        }
        if Instant::now() > deadline {
            fleet.stop().await;
            return Err(format!(
                "drain: not caught up {} s after restart",
                o.max_secs
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = t_up.elapsed().as_secs_f64();
    // Stop producing, let the rest drain, then check exactly-once on the server.
    let mut finals = Vec::new();
    for (i, s) in fleet.stats.iter().enumerate() {
        let p = (start.elapsed().as_secs_f64() * o.rate) as u64;
        s.stop_producing(p);
        finals.push((i, p));
    }
    let t = Instant::now();
    while finals
        .iter()
        .any(|&(i, p)| fleet.stats[i].acked.load(Ordering::SeqCst) < p)
    {
        if t.elapsed() > Duration::from_secs(o.max_secs) {
            fleet.stop().await;
            return Err("drain: final events not acked".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.stop().await;
    let produced: u64 = finals.iter().map(|&(_, p)| p).sum();
    let counts = server_counts(o, ids).await?;
    let stored: u64 = counts.values().sum();
    let wrong = finals
        .iter()
        .filter(|&&(i, p)| counts.get(&ids[i].name).copied().unwrap_or(0) != p)
        .count();
    let v = json!({
        "rate_per_agent": o.rate,
        "outage_secs": o.outage,
        "backlog_events": backlog_total.saturating_sub(acked_before),
        "all_reconnected_secs": reconnected_at,
        "drain_secs": drain_s,
        "events_produced": produced,
        "server_events_counted": stored,
        "agents_with_wrong_count": wrong,
        "exactly_once": stored == produced && wrong == 0,
        "note": "drain = server listening again -> every agent's ack covers all it produced up to the restart (production continues meanwhile); agents reconnect with the real agent's backoff (palisade_fleet::backoff: full jitter, cap 1 s doubling to 60 s)",
    });
    Ok((v, server))
}

fn main() -> ExitCode {
    let o = match parse_all() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleet_load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let json_path = o.json.clone();
    match rt.block_on(run(o)) {
        Ok(v) => {
            let s = v.to_string();
            println!("{s}");
            if let Some(p) = json_path {
                if let Err(e) = std::fs::write(&p, format!("{s}\n")) {
                    eprintln!("fleet_load: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet_load: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Two (or more) servers on one store; each agent lists them all, starting with server
/// i mod n. Bans are appended first (`palisade fleet block`) so every cursor is past 0; then
/// server 1 is killed (-9) and the time until every agent is connected again is measured,
/// with the snapshots sent at reconnect (a resumed cursor gets deltas only) and exactly-once.
async fn failover(
    o: &Opts,
    targets: &[Target],
    ids: &[Identity],
    first: Server,
    others: &[Server],
) -> Result<Value, String> {
    let start = Instant::now();
    let fleet = spawn_agents_on(
        o,
        targets,
        ids,
        Produce::Rate {
            per_sec: o.rate,
            start,
        },
    );
    fleet.wait_connected(ids.len(), o.max_secs).await?;
    // Ban log entries for every agent, so each one's cursor is past 0.
    let list = std::env::temp_dir().join(format!("fleet_load-{}.txt", std::process::id()));
    std::fs::write(&list, "198.51.100.1\n198.51.100.2\n198.51.100.3\n")
        .map_err(|e| e.to_string())?;
    let r = cli(
        o,
        &[
            "fleet",
            "block",
            &list.to_string_lossy(),
            "--duration",
            "1h",
        ],
    )
    .await;
    let _ = std::fs::remove_file(&list);
    r?;
    // Every agent gets the entries through its own server's poller (500 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut fleet = fleet;
    while fleet.receipts.try_recv().is_ok() {}
    // Agent i's server index k counts from its own first URL (server i mod n).
    let n = targets.len().max(1);
    let on_first = fleet
        .stats
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            (*i + s.server.load(Ordering::SeqCst) as usize).is_multiple_of(n)
                && s.connected.load(Ordering::SeqCst)
        })
        .count();
    let snaps0: u64 = fleet
        .stats
        .iter()
        .map(|s| s.snapshots.load(Ordering::SeqCst))
        .sum();
    let welcomed0: u64 = fleet
        .stats
        .iter()
        .map(|s| s.welcomed.load(Ordering::SeqCst))
        .sum();
    let acked_before = fleet.acked_total();
    let cursor_zero = fleet
        .stats
        .iter()
        .filter(|s| s.ban_cursor.load(Ordering::SeqCst) == 0)
        .count();
    if cursor_zero > 0 {
        let which: Vec<String> = fleet
            .stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ban_cursor.load(Ordering::SeqCst) == 0)
            .take(20)
            .map(|(i, s)| {
                format!(
                    "{i}@{}{}",
                    (i + s.server.load(Ordering::SeqCst) as usize) % n,
                    if s.connected.load(Ordering::SeqCst) {
                        ""
                    } else {
                        "(down)"
                    }
                )
            })
            .collect();
        log(format!(
            "{cursor_zero} agents have not received the block entries (cursor 0) before the kill: {}",
            which.join(" ")
        ));
    }
    log(format!(
        "{on_first} agents on server 1; kill -9 pid {} ({acked_before} events acked)",
        first.pid
    ));
    let mut first = first;
    first.kill9();
    drop(first);
    let t_kill = Instant::now();
    // Wait until the agents notice (their connection drops) and all are back.
    let mut all_back = None;
    let deadline = t_kill + Duration::from_secs(o.max_secs);
    let mut lost_seen = false;
    loop {
        let c = fleet.connected();
        if c < ids.len() {
            lost_seen = true;
        }
        if lost_seen && c == ids.len() {
            all_back = Some(t_kill.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(back) = all_back else {
        let c = fleet.connected();
        fleet.stop().await;
        return Err(format!(
            "failover: {c}/{} agents back after {} s",
            ids.len(),
            o.max_secs
        ));
    };
    log(format!("all {} agents back after {back:.1} s", ids.len()));
    let snaps: u64 = fleet
        .stats
        .iter()
        .map(|s| s.snapshots.load(Ordering::SeqCst))
        .sum::<u64>()
        - snaps0;
    let reconnects: u64 = fleet
        .stats
        .iter()
        .map(|s| s.welcomed.load(Ordering::SeqCst))
        .sum::<u64>()
        - welcomed0;
    let busy: u64 = fleet
        .stats
        .iter()
        .map(|s| s.busy.load(Ordering::Relaxed))
        .sum();
    // Exactly once: stop producing, let everything be acked, compare with the store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut finals = Vec::new();
    for (i, s) in fleet.stats.iter().enumerate() {
        let p = (start.elapsed().as_secs_f64() * o.rate) as u64;
        s.stop_producing(p);
        finals.push((i, p));
    }
    let t = Instant::now();
    while finals
        .iter()
        .any(|&(i, p)| fleet.stats[i].acked.load(Ordering::SeqCst) < p)
    {
        if t.elapsed() > Duration::from_secs(o.max_secs) {
            fleet.stop().await;
            return Err("failover: final events not acked".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.stop().await;
    let produced: u64 = finals.iter().map(|&(_, p)| p).sum();
    // The survivor's configuration reads the same store.
    let counts = server_counts_at(o, &o.servers[1].0, ids).await?;
    let stored: u64 = counts.values().sum();
    let wrong = finals
        .iter()
        .filter(|&&(i, p)| counts.get(&ids[i].name).copied().unwrap_or(0) != p)
        .count();
    let _ = others;
    Ok(json!({
        "rate_per_agent": o.rate,
        "agents_on_killed_server": on_first,
        "agents_with_cursor_0_before_kill": cursor_zero,
        "all_back_secs": back,
        "reconnects": reconnects,
        "snapshots_at_reconnect": snaps,
        "refused_503": busy,
        "events_produced": produced,
        "server_events_counted": stored,
        "agents_with_wrong_count": wrong,
        "exactly_once": stored == produced && wrong == 0,
        "note": "all_back = kill -9 of server 1 -> every agent connected (to server 2); agents list both URLs and use palisade_fleet::backoff; snapshots_at_reconnect counts full ban-set snapshots received after the kill (cursor resume = 0)",
    }))
}
