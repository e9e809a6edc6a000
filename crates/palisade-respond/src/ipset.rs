//! The `ipset` responder: bans are members of two `hash:net` sets (with timeout support)
//! matched by iptables/ip6tables rules in a dedicated chain, for hosts that use iptables
//! rather than nftables directly.
//!
//! Layout (names configurable):
//!
//! ```text
//! ipset palisade4 hash:net family inet  maxelem 1048576 timeout 0
//! ipset palisade6 hash:net family inet6 maxelem 1048576 timeout 0
//! iptables  -N PALISADE;  -A PALISADE [-p tcp -m multiport --dports …] -m set --match-set palisade4 src -j DROP
//! iptables  -I INPUT -j PALISADE             (only if absent; also FORWARD with `forward`)
//! ip6tables the same with palisade6
//! ```
//!
//! Changes are batched: one `ipset restore -exist` process per apply/revoke batch
//! (`-exist` makes re-adding update the timeout, and deleting an absent member a no-op).
//! Reconcile fills a fresh temporary set and `swap`s it in, so the live set is never empty.
//! The chain's rules are (re)written with `iptables-restore --noflush`, which replaces only
//! that chain, atomically.
//!
//! ipset cannot hold a timeout above 2,147,483 s (~24.8 days). Longer bans are added without
//! a timeout, and [`Responder::expires_natively`] is `false`: the daemon revokes every ban
//! when it ends, and the set timeouts are only a safety net should the daemon be down.

use crate::firewall_util::{
    is_not_found, remaining_secs, run_program, validate_netns, wrap_netns, FirewallStatus,
};
use crate::nft::Protocol;
use crate::{RespondError, Responder};
use ipnet::IpNet;
use palisade_core::{Decision, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Largest timeout ipset accepts, in seconds.
pub const IPSET_MAX_TIMEOUT: u64 = 2_147_483;

/// Configuration of an [`IpsetResponder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpsetConfig {
    /// Absolute path of `ipset`.
    pub ipset: String,
    /// Absolute path of `iptables` (`iptables-restore` is expected next to it).
    pub iptables: String,
    /// Absolute path of `ip6tables` (`ip6tables-restore` is expected next to it).
    pub ip6tables: String,
    /// Set name prefix: the sets are `<prefix>4` and `<prefix>6`.
    pub set_prefix: String,
    /// Name of the dedicated chain in the `filter` table.
    pub chain: String,
    /// Also jump to the chain from `FORWARD`.
    pub forward: bool,
    /// Drop only traffic to these destination ports (empty: all traffic).
    pub ports: Vec<u16>,
    /// Drop only these protocols (empty: all, or TCP and UDP when `ports` is set).
    pub protocols: Vec<Protocol>,
    /// Capacity of each set.
    pub maxelem: u32,
    /// Run every program inside this network namespace (`ip netns exec NAME …`).
    pub netns: Option<String>,
    /// How long one program run may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for IpsetConfig {
    fn default() -> Self {
        IpsetConfig {
            ipset: "/usr/sbin/ipset".into(),
            iptables: "/usr/sbin/iptables".into(),
            ip6tables: "/usr/sbin/ip6tables".into(),
            set_prefix: "palisade".into(),
            chain: "PALISADE".into(),
            forward: false,
            ports: Vec::new(),
            protocols: Vec::new(),
            maxelem: 1 << 20,
            netns: None,
            timeout_secs: 30,
        }
    }
}

fn simple_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

impl IpsetConfig {
    /// Checks the configuration without touching the system.
    pub fn validate(&self) -> Result<(), RespondError> {
        for p in [&self.ipset, &self.iptables, &self.ip6tables] {
            if !p.starts_with('/') {
                return Err(RespondError::Config(format!(
                    "program {p:?} must be an absolute path"
                )));
            }
        }
        // ipset names are at most 31 bytes; the temporary set adds "6-tmp".
        if !simple_name(&self.set_prefix, 24) {
            return Err(RespondError::Config(format!(
                "set_prefix {:?}: a letter then letters, digits, '_' or '-' (at most 24)",
                self.set_prefix
            )));
        }
        if !simple_name(&self.chain, 28)
            || ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"]
                .contains(&self.chain.as_str())
        {
            return Err(RespondError::Config(format!(
                "chain {:?}: a dedicated chain name (at most 28 characters) is required",
                self.chain
            )));
        }
        if self.ports.contains(&0) {
            return Err(RespondError::Config("port 0 cannot be matched".into()));
        }
        if self.ports.len() > 15 {
            return Err(RespondError::Config(
                "at most 15 ports (iptables multiport limit)".into(),
            ));
        }
        if self.maxelem == 0 || self.timeout_secs == 0 {
            return Err(RespondError::Config(
                "maxelem and timeout_secs must be positive".into(),
            ));
        }
        if let Some(ns) = &self.netns {
            validate_netns(ns)?;
        }
        Ok(())
    }
}

/// The two address families, with their tools and set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

const FAMS: [Fam; 2] = [Fam::V4, Fam::V6];

/// Bans through ipset + iptables/ip6tables. See the module documentation.
#[derive(Debug)]
pub struct IpsetResponder {
    name: String,
    cfg: IpsetConfig,
    ready: bool,
}

impl IpsetResponder {
    /// Creates the responder after validating `cfg`; touches nothing until used.
    pub fn new(name: impl Into<String>, cfg: IpsetConfig) -> Result<Self, RespondError> {
        cfg.validate()?;
        Ok(IpsetResponder {
            name: name.into(),
            cfg,
            ready: false,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &IpsetConfig {
        &self.cfg
    }

    /// Name of the set for one family (`palisade4`, `palisade6`).
    pub fn set_name(&self, v6: bool) -> String {
        format!("{}{}", self.cfg.set_prefix, if v6 { 6 } else { 4 })
    }

    fn set_of(&self, f: Fam) -> String {
        self.set_name(f == Fam::V6)
    }

    fn tables_prog(&self, f: Fam) -> &str {
        match f {
            Fam::V4 => &self.cfg.iptables,
            Fam::V6 => &self.cfg.ip6tables,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    fn run(&self, argv: Vec<String>, stdin: Option<&[u8]>) -> Result<Vec<u8>, RespondError> {
        let argv = wrap_netns(self.cfg.netns.as_deref(), argv);
        run_program(&argv, stdin, self.timeout()).map(|o| o.stdout)
    }

    fn ipset(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, RespondError> {
        let mut v = vec![self.cfg.ipset.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        self.run(v, stdin)
    }

    fn tables(&self, f: Fam, args: &[&str]) -> Result<Vec<u8>, RespondError> {
        let mut v = vec![self.tables_prog(f).to_string(), "-w".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        self.run(v, None)
    }

    fn create_line(&self, name: &str, f: Fam) -> String {
        format!(
            "create {name} hash:net family {} hashsize 1024 maxelem {} timeout 0\n",
            if f == Fam::V6 { "inet6" } else { "inet" },
            self.cfg.maxelem
        )
    }

    fn hooks(&self) -> Vec<&'static str> {
        if self.cfg.forward {
            vec!["INPUT", "FORWARD"]
        } else {
            vec!["INPUT"]
        }
    }

    /// The rules of the dedicated chain, as iptables arguments.
    fn chain_rules(&self, f: Fam) -> Vec<Vec<String>> {
        let set = self.set_of(f);
        let tail = ["-m", "set", "--match-set", &set, "src", "-j", "DROP"];
        let (protos, ports) =
            crate::firewall_util::match_lists(&self.cfg.protocols, &self.cfg.ports);
        let to_vec = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if protos.is_empty() {
            return vec![to_vec(&tail)];
        }
        let ports = ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        protos
            .into_iter()
            .map(|p| {
                let mut r = to_vec(&["-p", p]);
                if !ports.is_empty() {
                    r.extend(to_vec(&["-m", "multiport", "--dports", &ports]));
                }
                r.extend(to_vec(&tail));
                r
            })
            .collect()
    }

    /// Creates missing sets, (re)writes the chain, inserts the jumps that are missing.
    fn ensure(&mut self) -> Result<(), RespondError> {
        if self.ready {
            return Ok(());
        }
        // Sets: create only the missing ones (`create -exist` fails when an existing set has
        // other parameters, e.g. a different maxelem; reconcile swaps such a set's content).
        let names = String::from_utf8_lossy(&self.ipset(&["list", "-n"], None)?).into_owned();
        let mut batch = String::new();
        for f in FAMS {
            let set = self.set_of(f);
            if !names.lines().any(|l| l.trim() == set) {
                batch.push_str(&self.create_line(&set, f));
            }
        }
        if !batch.is_empty() {
            self.ipset(&["restore", "-exist"], Some(batch.as_bytes()))?;
        }
        for f in FAMS {
            // Atomically replaces just this chain's rules (creating the chain if needed).
            let mut doc = format!("*filter\n:{} - [0:0]\n", self.cfg.chain);
            for r in self.chain_rules(f) {
                let _ = writeln!(doc, "-A {} {}", self.cfg.chain, r.join(" "));
            }
            doc.push_str("COMMIT\n");
            let restore = format!("{}-restore", self.tables_prog(f));
            self.run(
                vec![restore, "-w".into(), "--noflush".into()],
                Some(doc.as_bytes()),
            )?;
            for hook in self.hooks() {
                let chain = self.cfg.chain.clone();
                if self.tables(f, &["-C", hook, "-j", &chain]).is_err() {
                    self.tables(f, &["-I", hook, "1", "-j", &chain])?;
                }
            }
        }
        self.ready = true;
        Ok(())
    }

    /// Reads back the sets' members with their time left, and the chain's drop counters.
    pub fn status(&mut self) -> Result<FirewallStatus, RespondError> {
        let mut st = FirewallStatus::default();
        for f in FAMS {
            let set = self.set_of(f);
            let out = match self.ipset(&["save", &set], None) {
                Ok(o) => o,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            st.installed = true;
            st.elements.extend(
                String::from_utf8_lossy(&out)
                    .lines()
                    .filter_map(parse_member),
            );
        }
        st.elements.sort();
        let (mut packets, mut bytes, mut any) = (0u64, 0u64, false);
        for f in FAMS {
            let chain = self.cfg.chain.clone();
            let Ok(out) = self.tables(f, &["-n", "-v", "-x", "-L", &chain]) else {
                continue;
            };
            any = true;
            for line in String::from_utf8_lossy(&out).lines().skip(2) {
                let mut w = line.split_whitespace();
                if let (Some(Ok(p)), Some(Ok(b))) = (
                    w.next().map(str::parse::<u64>),
                    w.next().map(str::parse::<u64>),
                ) {
                    packets += p;
                    bytes += b;
                }
            }
        }
        if any {
            st.dropped_packets = Some(packets);
            st.dropped_bytes = Some(bytes);
        }
        Ok(st)
    }

    /// Empties both sets (lifts all bans); rules and sets stay. Installs nothing: sets that
    /// do not exist are left absent.
    pub fn flush(&mut self) -> Result<(), RespondError> {
        let names = String::from_utf8_lossy(&self.ipset(&["list", "-n"], None)?).into_owned();
        let mut doc = String::new();
        for f in FAMS {
            let set = self.set_of(f);
            if names.lines().any(|l| l.trim() == set) {
                let _ = writeln!(doc, "flush {set}");
            }
        }
        if doc.is_empty() {
            return Ok(());
        }
        self.ipset(&["restore", "-exist"], Some(doc.as_bytes()))
            .map(|_| ())
    }

    /// Removes the jumps, the chain and the sets. Absent parts are fine.
    pub fn uninstall(&mut self) -> Result<(), RespondError> {
        self.ready = false;
        let chain = self.cfg.chain.clone();
        for f in FAMS {
            for hook in ["INPUT", "FORWARD"] {
                // Delete every copy (an operator may have inserted one by hand too).
                for _ in 0..16 {
                    if self.tables(f, &["-C", hook, "-j", &chain]).is_err() {
                        break;
                    }
                    self.tables(f, &["-D", hook, "-j", &chain])?;
                }
            }
            for op in ["-F", "-X"] {
                match self.tables(f, &[op, &chain]) {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let doc = format!(
            "destroy {}\ndestroy {}\n",
            self.set_of(Fam::V4),
            self.set_of(Fam::V6)
        );
        self.ipset(&["restore", "-exist"], Some(doc.as_bytes()))
            .map(|_| ())
    }

    /// `ipset restore` lines adding `batch` (expired decisions skipped) to `v4`/`v6` sets.
    fn add_lines(&self, out: &mut String, batch: &[Decision], now: Timestamp, v4: &str, v6: &str) {
        let mut merged: BTreeMap<IpNet, Option<u64>> = BTreeMap::new();
        for d in batch {
            let Some(secs) = remaining_secs(d, now) else {
                continue;
            };
            let slot = merged.entry(d.target.trunc()).or_insert(secs);
            *slot = match (*slot, secs) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
        for (net, secs) in merged {
            let secs = match secs {
                Some(s) if s <= IPSET_MAX_TIMEOUT => s,
                // Permanent, or longer than ipset can count: the daemon revokes it.
                _ => 0,
            };
            let set = if matches!(net, IpNet::V6(_)) { v6 } else { v4 };
            for n in ipset_nets(net) {
                let _ = writeln!(out, "add {set} {n} timeout {secs}");
            }
        }
    }
}

/// hash:net cannot store a /0: it becomes two halves.
fn ipset_nets(net: IpNet) -> Vec<IpNet> {
    if net.prefix_len() == 0 {
        net.subnets(1).map(|s| s.collect()).unwrap_or_default()
    } else {
        vec![net]
    }
}

/// Parses an `ipset save` line: `add palisade4 192.0.2.0/24 timeout 99`.
fn parse_member(line: &str) -> Option<(IpNet, Option<Duration>)> {
    let mut w = line.split_whitespace();
    if w.next()? != "add" {
        return None;
    }
    let _set = w.next()?;
    let addr = w.next()?;
    let net: IpNet = match addr.parse() {
        Ok(n) => n,
        Err(_) => IpNet::from(addr.parse::<std::net::IpAddr>().ok()?),
    };
    let mut left = None;
    while let Some(k) = w.next() {
        if k == "timeout" {
            let s: u64 = w.next()?.parse().ok()?;
            left = (s > 0).then(|| Duration::from_secs(s));
        }
    }
    Some((net, left))
}

impl Responder for IpsetResponder {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, batch: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let mut doc = String::new();
        let (v4, v6) = (self.set_of(Fam::V4), self.set_of(Fam::V6));
        self.add_lines(&mut doc, batch, now, &v4, &v6);
        if doc.is_empty() {
            return Ok(());
        }
        self.ensure()?;
        let r = self.ipset(&["restore", "-exist"], Some(doc.as_bytes()));
        if r.is_err() {
            self.ready = false;
        }
        r.map(|_| ())
    }

    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.ensure()?;
        let mut doc = String::new();
        for d in batch {
            let net = d.target.trunc();
            let set = self.set_of(if matches!(net, IpNet::V6(_)) {
                Fam::V6
            } else {
                Fam::V4
            });
            for n in ipset_nets(net) {
                let _ = writeln!(doc, "del {set} {n}");
            }
        }
        let r = self.ipset(&["restore", "-exist"], Some(doc.as_bytes()));
        if r.is_err() {
            self.ready = false;
        }
        r.map(|_| ())
    }

    /// Rewrites the chain, then in one `ipset restore`: fills temporary sets with the active
    /// decisions and swaps them with the live ones (never an empty moment), then drops them.
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        self.ready = false;
        self.ensure()?;
        let (v4, v6) = (self.set_of(Fam::V4), self.set_of(Fam::V6));
        let (t4, t6) = (format!("{v4}-tmp"), format!("{v6}-tmp"));
        let mut doc = String::new();
        for (t, f) in [(&t4, Fam::V4), (&t6, Fam::V6)] {
            let _ = writeln!(doc, "destroy {t}");
            doc.push_str(&self.create_line(t, f));
        }
        self.add_lines(&mut doc, active, now, &t4, &t6);
        let _ = write!(
            doc,
            "swap {t4} {v4}\nswap {t6} {v6}\ndestroy {t4}\ndestroy {t6}\n"
        );
        let r = self.ipset(&["restore", "-exist"], Some(doc.as_bytes()));
        if r.is_err() {
            self.ready = false;
        }
        r.map(|_| ())
    }

    /// `false`: ipset timeouts cap at ~24.8 days, so the daemon revokes bans itself.
    fn expires_natively(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::Origin;

    fn dec(t: &str, expires: Option<i64>) -> Decision {
        Decision {
            id: 0,
            target: t.parse().unwrap(),
            jail: "j".into(),
            origin: Origin::Jail,
            reason: String::new(),
            created: Timestamp::from_secs(0),
            expires: expires.map(Timestamp::from_secs),
            simulated: false,
            level: 0,
        }
    }

    #[test]
    fn lines() {
        let r = IpsetResponder::new("i", IpsetConfig::default()).unwrap();
        let mut s = String::new();
        r.add_lines(
            &mut s,
            &[
                dec("192.0.2.7/32", Some(100)),
                dec("192.0.2.7/32", Some(50)),
                dec("198.51.100.0/24", None),
                dec("2001:db8::/64", Some(10_000_000)),
                dec("203.0.113.1/32", Some(5)),
                dec("0.0.0.0/0", Some(20)),
            ],
            Timestamp::from_secs(10),
            "p4",
            "p6",
        );
        assert_eq!(
            s,
            "add p4 0.0.0.0/1 timeout 10\nadd p4 128.0.0.0/1 timeout 10\n\
             add p4 192.0.2.7/32 timeout 90\nadd p4 198.51.100.0/24 timeout 0\n\
             add p6 2001:db8::/64 timeout 0\n"
        );
        assert_eq!(
            parse_member("add palisade4 192.0.2.1 timeout 7"),
            Some((
                "192.0.2.1/32".parse().unwrap(),
                Some(Duration::from_secs(7))
            ))
        );
        assert_eq!(
            parse_member("add palisade6 2001:db8::/64 timeout 0"),
            Some(("2001:db8::/64".parse().unwrap(), None))
        );
        assert_eq!(parse_member("create palisade4 hash:net"), None);
    }

    #[test]
    fn rules_and_validation() {
        let r = IpsetResponder::new(
            "i",
            IpsetConfig {
                ports: vec![443, 22],
                protocols: vec![Protocol::Tcp],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            r.chain_rules(Fam::V6)[0].join(" "),
            "-p tcp -m multiport --dports 22,443 -m set --match-set palisade6 src -j DROP"
        );
        let r = IpsetResponder::new("i", IpsetConfig::default()).unwrap();
        assert_eq!(
            r.chain_rules(Fam::V4)[0].join(" "),
            "-m set --match-set palisade4 src -j DROP"
        );
        for c in [
            IpsetConfig {
                chain: "INPUT".into(),
                ..Default::default()
            },
            IpsetConfig {
                set_prefix: "a b".into(),
                ..Default::default()
            },
            IpsetConfig {
                ipset: "ipset".into(),
                ..Default::default()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
