//! Fleet test set-up shared by the fleet test files: `palisade run` children killed when
//! dropped, server and agent configurations on loopback, and the `fleet` CLI calls (token,
//! join, agents).

use super::{signal, BIN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A `palisade run` child, killed when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub err: PathBuf,
}

impl Proc {
    pub fn start(cfg: &Path, err: PathBuf) -> Proc {
        Proc::start_skewed(cfg, err, None)
    }

    /// With `skew` (e.g. `-120s`), the process runs under faketime: its wall clock is off.
    pub fn start_skewed(cfg: &Path, err: PathBuf, skew: Option<&str>) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&err)
            .unwrap();
        let mut cmd = match skew {
            Some(s) => {
                let mut c = Command::new("faketime");
                c.args(["-f", s, BIN])
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(cfg)
            .env("TZ", "UTC")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            err,
        }
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "KILL");
            let _ = c.wait();
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.err.display(), self.log());
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn server_cfg(dir: &Path, port: u16) -> PathBuf {
    server_cfg_with(dir, port, "")
}

pub fn server_cfg_with(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let url = format!("sqlite:{}/palisade.db", dir.join("server").display());
    server_cfg_store(dir, port, extra, &url)
}

pub fn server_cfg_store(dir: &Path, port: u16, extra: &str, store: &str) -> PathBuf {
    let d = dir.join("server");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("palisade.toml");
    std::fs::write(
        &p,
        format!(
            r#"[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
[store]
url = "{store}"
[fleet]
role = "server"
listen = "127.0.0.1:{port}"
{extra}"#,
            d = d.display()
        ),
    )
    .unwrap();
    p
}

pub fn agent_cfg(dir: &Path, name: &str, port: u16, max_retry: u32) -> PathBuf {
    agent_cfg_with(dir, name, port, max_retry, "")
}

pub fn agent_cfg_with(dir: &Path, name: &str, port: u16, max_retry: u32, fleet: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("auth.log"), "").unwrap();
    let p = d.join("palisade.toml");
    std::fs::write(
        &p,
        format!(
            r#"[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
timezone = "UTC"
[store]
url = "sqlite:{d}/palisade.db"
[defaults]
max_retry = {max_retry}
find_time = "10m"
ban_time = "1h"
responders = ["log"]
[recidive]
enabled = false
[fleet]
role = "agent"
server = "wss://127.0.0.1:{port}"
name = "{name}"
{fleet}
[[jail]]
name = "sshd"
filter = "sshd"
files = ["{d}/auth.log"]
"#,
            d = d.display()
        ),
    )
    .unwrap();
    p
}

pub fn cli(args: &[&str], cfg: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

pub fn token(server: &Path, extra: &[&str]) -> String {
    let mut a = vec!["fleet", "token", "add"];
    a.extend_from_slice(extra);
    let o = cli(&a, server);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let t = out.lines().last().unwrap().trim().to_string();
    assert!(t.starts_with("pst1."), "{out}");
    t
}

pub fn join(agent: &Path, port: u16, token: &str) -> Output {
    cli(
        &[
            "fleet",
            "join",
            &format!("wss://127.0.0.1:{port}"),
            "--token",
            token,
        ],
        agent,
    )
}

pub fn agents(server: &Path) -> Vec<serde_json::Value> {
    let o = cli(&["fleet", "agents", "--json"], server);
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

pub fn agent<'a>(list: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    list.iter()
        .find(|a| a["name"] == name && a["revoked"] == false)
}

pub fn events_of(server: &Path, name: &str) -> u64 {
    agent(&agents(server), name).map_or(0, |a| a["events"].as_u64().unwrap())
}
