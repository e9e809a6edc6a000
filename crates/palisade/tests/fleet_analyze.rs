//! Remote access-log analysis (issue 16 item 7) with real `palisade` processes over
//! loopback: `palisade analyze --agents web1,web2 --last 10d --format json` on the server
//! equals the local `palisade analyze` of each agent's log with a `host` column added; an
//! unknown, revoked or disconnected agent gets a clear per-host error (exit 1) while the
//! others still answer; a request cannot make an agent read a file outside its allowed set;
//! and `--emit list` is the reviewed list `palisade fleet block` pushes back to the agents.

#![cfg(feature = "fleet")]

mod common;

use common::fleet::*;
use common::wait_for;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One combined-format access-log line (nginx and apache write the same layout).
fn line(ip: &str, secs_ago: i64, req: &str, status: u16, agent: &str) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs_ago);
    format!(
        "{ip} - - [{}] \"{req} HTTP/1.1\" {status} 153 \"-\" \"{agent}\"\n",
        t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    )
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";

/// A log: benign browsing from `benign`, probes from each `(ip, hits)`, and lines from
/// 20 days ago (outside a 10-day window).
fn access_log(benign: &[&str], hostile: &[(&str, usize)], old: &str) -> String {
    const PROBES: [&str; 5] = [
        "GET /.env",
        "GET /.git/config",
        "GET /cgi-bin/../../../../etc/passwd",
        "GET /phpmyadmin/index.php",
        "GET /wp-config.php.bak",
    ];
    let mut s = String::new();
    for (i, ip) in benign.iter().enumerate() {
        for k in 0..6 {
            let page = ["GET /", "GET /index.html", "GET /style.css"][k % 3];
            s.push_str(&line(ip, 7200 - (i * 60 + k) as i64, page, 200, BROWSER));
        }
    }
    for (j, (ip, hits)) in hostile.iter().enumerate() {
        for k in 0..*hits {
            s.push_str(&line(
                ip,
                3600 - (j * 100 + k) as i64,
                PROBES[k % PROBES.len()],
                404,
                "curl/8.0",
            ));
        }
    }
    for k in 0..3 {
        s.push_str(&line(old, 20 * 86_400 + k, "GET /.env", 404, "curl/8.0"));
    }
    s
}

fn run(args: &[&str], cfg: &Path) -> (i32, Value, String) {
    let o = cli(args, cfg);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), v, stderr)
}

fn host<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {doc:#}"))
}

/// The remote rows of `name`, without their host column.
fn rows_of(doc: &Value, name: &str) -> Vec<Value> {
    doc["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["host"] == name)
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("host");
            r
        })
        .collect()
}

struct Fleet {
    dir: tempfile::TempDir,
    scfg: PathBuf,
    cfgs: Vec<PathBuf>,
    _server: Proc,
    _agents: Vec<Proc>,
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let scfg = server_cfg(d, port);
    // web1: its nginx_access jail's file is what it may analyze.
    let a = agent_cfg(d, "web1", port, 1000);
    let mut text = std::fs::read_to_string(&a).unwrap();
    text.push_str(&format!(
        "\n[[jail]]\nname = \"web\"\nfilter = \"nginx_access\"\nfiles = [\"{}\"]\n",
        d.join("web1/nginx/access.log").display()
    ));
    std::fs::write(&a, text).unwrap();
    // web2: an explicit allowlist of logs (no web jail at all).
    let b = agent_cfg_with(
        d,
        "web2",
        port,
        1000,
        &format!(
            "analyze_files = [\"{}/*.log\"]",
            d.join("web2/apache").display()
        ),
    );
    // web3: enrolled, never started.
    let c = agent_cfg(d, "web3", port, 1000);
    for sub in ["web1/nginx", "web2/apache"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("web1/nginx/access.log"),
        access_log(
            &["192.0.2.10", "192.0.2.11", "2001:db8::10"],
            &[
                ("203.0.113.7", 12),
                ("198.51.100.20", 8),
                ("198.51.100.21", 2),
            ],
            "198.51.100.30",
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("web2/apache/access.log"),
        access_log(
            &["192.0.2.20", "192.0.2.21"],
            &[("203.0.113.7", 7), ("2001:db8:bad::5", 9)],
            "198.51.100.31",
        ),
    )
    .unwrap();
    // Files no agent may read: a secret next to each allowed log, with hostile lines.
    let secret = access_log(&[], &[("198.51.100.66", 20)], "198.51.100.67");
    std::fs::write(d.join("web1/secret.log"), &secret).unwrap();
    std::fs::write(d.join("web2/secret.log"), &secret).unwrap();

    let t = token(&scfg, &["--uses", "3"]);
    let server = Proc::start(&scfg, d.join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    for cfg in [&a, &b, &c] {
        let o = join(cfg, port, &t);
        assert!(o.status.success(), "{o:?}");
    }
    let agents_running = vec![
        Proc::start(&a, d.join("web1.err")),
        Proc::start(&b, d.join("web2.err")),
    ];
    wait_for("web1 and web2 connected", 30.0, || {
        let l = agents(&scfg);
        ["web1", "web2"]
            .iter()
            .all(|n| agent(&l, n).is_some_and(|a| a["connected"] == true))
    });
    assert!(d.join("server/palisade.fleet.sock").exists());
    Fleet {
        dir,
        scfg,
        cfgs: vec![a, b, c],
        _server: server,
        _agents: agents_running,
    }
}

#[test]
fn remote_analysis_equals_local_analysis_with_a_host_column() {
    let f = fleet();
    let d = f.dir.path();
    let common = [
        "--last",
        "10d",
        "--format",
        "json",
        "--top",
        "0",
        "--threshold",
        "5",
    ];

    let mut args = vec!["analyze", "--agents", "web1,web2"];
    args.extend(common);
    let (code, remote, err) = run(&args, &f.scfg);
    assert_eq!(code, 0, "{err}\n{remote:#}");

    let logs = [
        ("web1", d.join("web1/nginx/access.log"), &f.cfgs[0]),
        ("web2", d.join("web2/apache/access.log"), &f.cfgs[1]),
    ];
    for (name, log, cfg) in &logs {
        let mut args = vec!["analyze", log.to_str().unwrap()];
        args.extend(common);
        let (code, local, err) = run(&args, cfg);
        assert_eq!(code, 0, "{err}");
        let rows = rows_of(&remote, name);
        assert!(!rows.is_empty(), "{name}: no rows in {remote:#}");
        assert_eq!(
            Value::from(rows),
            local["ips"],
            "{name}: remote rows differ from the local analysis"
        );
        let h = host(&remote, name);
        for k in [
            "files",
            "lines",
            "requests",
            "suspicious",
            "level",
            "distinct_ips",
            "rule_totals",
            "untracked",
            "proposed",
        ] {
            assert_eq!(h[k], local[k], "{name}: {k}");
        }
        assert_eq!(h["error"], Value::Null);
        // The old lines were outside the window on both sides.
        assert_eq!(h["files"][0]["outside_window"], 3);
    }
    // The merged proposal: every address proposed on any host, once.
    assert_eq!(
        remote["proposed"],
        serde_json::json!(["198.51.100.20", "203.0.113.7", "2001:db8:bad::5"])
    );
    // The secrets were never read.
    let text = remote.to_string();
    assert!(!text.contains("198.51.100.66") && !text.contains("secret.log"));

    // The other formats carry the host column too.
    let o = cli(
        &[
            "analyze",
            "--agents",
            "web1,web2",
            "--last",
            "10d",
            "--format",
            "csv",
            "--threshold",
            "5",
        ],
        &f.scfg,
    );
    assert!(o.status.success(), "{o:?}");
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with("host,ip,requests"), "{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with("web2,2001:db8:bad::5,")),
        "{csv}"
    );
    let o = cli(
        &[
            "analyze",
            "--agents",
            "web1,web2",
            "--last",
            "10d",
            "--threshold",
            "5",
        ],
        &f.scfg,
    );
    assert!(o.status.success(), "{o:?}");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web1") && l.contains("203.0.113.7") && l.ends_with("BLOCK")),
        "{table}"
    );
    let o = cli(
        &[
            "analyze",
            "--agents",
            "web1,web2",
            "--last",
            "10d",
            "--format",
            "html",
        ],
        &f.scfg,
    );
    assert!(o.status.success(), "{o:?}");
    let html = String::from_utf8_lossy(&o.stdout);
    assert!(
        html.contains("<td>web2</td><td>2001:db8:bad::5</td>"),
        "{html}"
    );

    // The reviewed list goes back through `fleet block` as it is.
    let list = d.join("reviewed.txt");
    let o = cli(
        &[
            "analyze",
            "--agents",
            "web1,web2",
            "--last",
            "10d",
            "--threshold",
            "5",
            "--emit",
            "list",
            "--emit-to",
            list.to_str().unwrap(),
            "--output",
            d.join("report.txt").to_str().unwrap(),
        ],
        &f.scfg,
    );
    assert!(o.status.success(), "{o:?}");
    let listed: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(String::from)
        .collect();
    assert_eq!(listed, ["198.51.100.20", "203.0.113.7", "2001:db8:bad::5"]);
    let o = cli(
        &[
            "fleet",
            "block",
            list.to_str().unwrap(),
            "--agents",
            "web1,web2",
        ],
        &f.scfg,
    );
    assert!(o.status.success(), "{o:?}");
    wait_for("the reviewed bans on web2", 20.0, || {
        let o = cli(&["decisions", "list", "--json"], &f.cfgs[1]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|d| d["target"] == "203.0.113.7/32" && d["origin"] == "fleet")
    });
}

#[test]
fn unknown_revoked_or_disconnected_agents_and_files_outside_the_allowed_set() {
    let f = fleet();
    let d = f.dir.path();
    let o = cli(&["fleet", "agents", "revoke", "web3"], &f.scfg);
    assert!(o.status.success(), "{o:?}");
    // web3 (revoked), ghost (never enrolled): an error each; web1 still answers; exit 1.
    let (code, doc, err) = run(
        &[
            "analyze",
            "--agents",
            "web1,web3,ghost",
            "--last",
            "10d",
            "--format",
            "json",
        ],
        &f.scfg,
    );
    assert_eq!(code, 1, "{err}\n{doc:#}");
    assert!(host(&doc, "web3")["error"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    assert!(host(&doc, "ghost")["error"]
        .as_str()
        .unwrap()
        .contains("unknown agent"));
    assert_eq!(host(&doc, "web1")["error"], Value::Null);
    assert!(!rows_of(&doc, "web1").is_empty());
    assert!(err.contains("ghost: unknown agent"), "{err}");

    // An enrolled agent that is not connected.
    let t = token(&f.scfg, &[]);
    let dcfg = agent_cfg(d, "web4", 1, 1000);
    let port = {
        let text = std::fs::read_to_string(&f.scfg).unwrap();
        let l = text.lines().find(|l| l.starts_with("listen")).unwrap();
        l.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('"')
            .to_string()
    };
    assert!(join(&dcfg, port.parse().unwrap(), &t).status.success());
    let (code, doc, err) = run(
        &["analyze", "--agents", "web4", "--format", "json"],
        &f.scfg,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        host(&doc, "web4")["error"]
            .as_str()
            .unwrap()
            .contains("not connected"),
        "{doc:#}"
    );

    // Narrowing to an allowed log works; naming any other file refuses the whole request,
    // whatever the spelling (a sibling, a `..` path, a link to it, a system file).
    let allowed = d.join("web1/nginx/access.log");
    let (code, doc, err) = run(
        &[
            "analyze",
            "--agents",
            "web1",
            allowed.to_str().unwrap(),
            "--format",
            "json",
        ],
        &f.scfg,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        host(&doc, "web1")["files"][0]["path"],
        allowed.to_str().unwrap()
    );
    let link = d.join("web1/nginx/link.log");
    std::os::unix::fs::symlink(d.join("web1/secret.log"), &link).unwrap();
    for bad in [
        d.join("web1/secret.log"),
        d.join("web1/nginx/../secret.log"),
        link,
        PathBuf::from("/etc/passwd"),
    ] {
        let (code, doc, err) = run(
            &[
                "analyze",
                "--agents",
                "web1,web2",
                allowed.to_str().unwrap(),
                bad.to_str().unwrap(),
                "--format",
                "json",
            ],
            &f.scfg,
        );
        assert_eq!(code, 1, "{}: {err}", bad.display());
        for h in ["web1", "web2"] {
            let e = host(&doc, h)["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                e.contains("not one of the logs"),
                "{h} {}: {e}",
                bad.display()
            );
        }
        assert!(!doc.to_string().contains("198.51.100.66"));
    }
    // web2 allows only its apache/*.log: web1's log is outside it.
    let (code, doc, _) = run(
        &[
            "analyze",
            "--agents",
            "web2",
            allowed.to_str().unwrap(),
            "--format",
            "json",
        ],
        &f.scfg,
    );
    assert_eq!(code, 1);
    assert!(host(&doc, "web2")["error"]
        .as_str()
        .unwrap()
        .contains("not one of the logs"));

    // Without a running server: a clear error.
    let scfg2 = server_cfg(&d.join("other"), free_port());
    let o = cli(&["analyze", "--agents", "web1"], &scfg2);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fleet server is not running"),
        "{o:?}"
    );
    // An agent's configuration is refused (the request goes to a server).
    let o = cli(&["analyze", "--agents", "web1"], &f.cfgs[0]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("role = \\\"server\\\"")
            || String::from_utf8_lossy(&o.stderr).contains("not a fleet server"),
        "{o:?}"
    );
}
