//! The `nftables` responder (the default): bans are elements of sets in Palisade's own table,
//! expiring natively through per-element timeouts.
//!
//! Layout (table name configurable, nothing outside it is ever touched):
//!
//! ```text
//! table inet palisade {
//!   set ban4    { type ipv4_addr; flags timeout; }   # /32 bans
//!   set ban6    { type ipv6_addr; flags timeout; }   # /128 bans
//!   set ban4_24 { type ipv4_addr; flags timeout; }   # /24 bans, created on first use
//!   set ban6_64 { type ipv6_addr; flags timeout; }   # /64 bans, created on first use
//!   chain input { type filter hook input priority -10; policy accept;
//!     [meta l4proto {tcp, udp} th dport {…}] ip saddr @ban4 counter drop
//!     [… same …] ip saddr & 255.255.255.0 @ban4_24 counter drop
//!     …
//!   }
//!   chain forward { … the same rules, only when `forward = true` … }
//! }
//! ```
//!
//! **Why one hash set per prefix length rather than one `interval` set per family.** With
//! `flags interval`, nft (1.0.x) must load every element of the table's interval sets before
//! each change to check for overlaps: with 100k bans, banning one more address costs ~1.5 s
//! of CPU, and a batch of deletions becomes quadratic (a 10k add/delete batch did not finish
//! in five minutes). Interval sets also refuse overlapping elements, so banning `192.0.2.7`
//! while `192.0.2.0/24` is banned (or the reverse) would fail the whole batch. Masked
//! lookups into per-length hash sets have neither problem: elements of one length never
//! overlap, and a change costs the same whatever the set size. The per-packet cost is one
//! hash lookup per prefix length in use (typically two or three).
//!
//! Every change is one `nft -j -f -` run with a libnftables JSON document on standard input,
//! i.e. one atomic transaction. Applying re-adds an element as *add, delete, add* in that
//! transaction so that its timeout is replaced even on kernels that do not update the
//! timeout of an existing element, and so that a present element never makes the batch fail.
//!
//! **Reconcile (start-up restore) is the exception: one `nft -f -` run in nft's native
//! syntax.** For bulk element loads nft parses its own syntax much faster than JSON
//! (100k elements: ~0.3 s of CPU instead of ~0.5 s, and a third of the bytes). The script is
//! rendered only from typed values (parsed [`IpNet`]s, whole seconds, validated table name,
//! ports, protocols and priority), never from log text, and stays one transaction: delete
//! the table, recreate it, add the elements in a few large `add element` statements. A table
//! name that nft's grammar reads as a keyword (`ip`, `counter`, …) is a syntax error in the
//! native syntax; the responder then falls back to the JSON transaction for good (a failed
//! run commits nothing).

use crate::firewall_util::{
    is_not_found, remaining_secs, run_program, validate_netns, wrap_netns, FirewallStatus,
};
use crate::{RespondError, Responder};
use ipnet::IpNet;
use palisade_core::{Decision, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Elements per `add element` statement in a native-syntax reconcile script.
const TEXT_CHUNK: usize = 8192;

/// Longest element timeout written, in seconds. nft's parser refuses larger values in its
/// native syntax ("value too large", so a reconcile holding one failed every start) and
/// overflows in JSON beyond ~1.8e10 s. A longer ban becomes a permanent element, and
/// [`Responder::expires_natively_for`] says the daemon must revoke it when it ends.
pub const NFT_MAX_TIMEOUT_SECS: u64 = 99_999_999;

/// Elements of one set: canonical network and remaining whole seconds (`None` = permanent),
/// sorted by network, one entry per network.
type Elems = Vec<(IpNet, Option<u64>)>;

/// A transport protocol a ban can be restricted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lower-case name used by nft and iptables.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Configuration of an [`NftResponder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NftConfig {
    /// Absolute path of the `nft` program.
    pub program: String,
    /// Name of Palisade's own table in the `inet` family. Only this table is ever changed.
    pub table: String,
    /// Priority of the hooked chains; the default `-10` runs before the usual `filter`
    /// chains (priority 0), so a ban wins over their `accept` rules.
    pub priority: i32,
    /// Also drop banned sources in a `forward` hook chain (routers, container hosts).
    pub forward: bool,
    /// Drop only traffic to these destination ports (empty: all traffic).
    pub ports: Vec<u16>,
    /// Drop only these transport protocols (empty: every protocol, or TCP and UDP when
    /// `ports` is set).
    pub protocols: Vec<Protocol>,
    /// Run `nft` inside this network namespace (`ip netns exec NAME nft …`): lets one host
    /// protect a namespace (a container's, a VRF's) and lets tests use a throwaway one.
    pub netns: Option<String>,
    /// How long one `nft` run may take before it is killed, in seconds.
    pub timeout_secs: u64,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            program: "/usr/sbin/nft".into(),
            table: "palisade".into(),
            priority: -10,
            forward: false,
            ports: Vec::new(),
            protocols: Vec::new(),
            netns: None,
            timeout_secs: 30,
        }
    }
}

impl NftConfig {
    /// Checks the configuration without touching the system.
    pub fn validate(&self) -> Result<(), RespondError> {
        if !self.program.starts_with('/') {
            return Err(RespondError::Config(format!(
                "nft program {:?} must be an absolute path",
                self.program
            )));
        }
        let t = self.table.as_bytes();
        if t.is_empty()
            || t.len() > 64
            || !t[0].is_ascii_alphabetic()
            || !t.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            return Err(RespondError::Config(format!(
                "nft table name {:?}: a letter then letters, digits or '_' (at most 64)",
                self.table
            )));
        }
        if self.ports.contains(&0) {
            return Err(RespondError::Config("port 0 cannot be matched".into()));
        }
        if !(-1000..=1000).contains(&self.priority) {
            return Err(RespondError::Config(format!(
                "nft chain priority {} out of range -1000..=1000",
                self.priority
            )));
        }
        if self.timeout_secs == 0 {
            return Err(RespondError::Config("timeout_secs must be positive".into()));
        }
        if let Some(ns) = &self.netns {
            validate_netns(ns)?;
        }
        Ok(())
    }
}

/// One ban set: address family and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SetKey {
    v6: bool,
    len: u8,
}

impl SetKey {
    fn of(net: &IpNet) -> Self {
        SetKey {
            v6: matches!(net, IpNet::V6(_)),
            len: net.prefix_len(),
        }
    }

    fn full(self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn name(self) -> String {
        let fam = if self.v6 { 6 } else { 4 };
        if self.len == self.full() {
            format!("ban{fam}")
        } else {
            format!("ban{fam}_{}", self.len)
        }
    }

    fn parse(name: &str) -> Option<Self> {
        let (v6, rest) = if let Some(r) = name.strip_prefix("ban4") {
            (false, r)
        } else {
            (true, name.strip_prefix("ban6")?)
        };
        let full = if v6 { 128 } else { 32 };
        let len = match rest {
            "" => full,
            r => {
                let n: u8 = r.strip_prefix('_')?.parse().ok()?;
                if n >= full || r != format!("_{n}") {
                    return None;
                }
                n
            }
        };
        Some(SetKey { v6, len })
    }

    /// The network mask for a masked lookup, `None` for host sets.
    fn mask_addr(self) -> Option<IpAddr> {
        if self.len == self.full() {
            return None;
        }
        Some(if self.v6 {
            IpAddr::V6(
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, self.len)
                    .expect("len < 128")
                    .netmask(),
            )
        } else {
            IpAddr::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, self.len)
                    .expect("len < 32")
                    .netmask(),
            )
        })
    }

    /// The network mask as text (JSON), `None` for host sets.
    fn mask(self) -> Option<String> {
        self.mask_addr().map(|m| m.to_string())
    }
}

/// Writes an address for nft's native syntax. IPv6 is written in full (eight hex groups, no
/// `::`, no embedded IPv4), the one form nft's scanner reads unambiguously.
fn push_addr(s: &mut String, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            let _ = write!(s, "{a}.{b}.{c}.{d}");
        }
        IpAddr::V6(a) => {
            let g = a.segments();
            let _ = write!(
                s,
                "{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
                g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
            );
        }
    }
}

/// Whether a failed nft run is a syntax error (nothing was committed).
fn is_syntax_error(e: &RespondError) -> bool {
    matches!(e, RespondError::Failed { stderr, .. } if stderr.contains("syntax error"))
}

/// What the responder knows exists in the kernel (learned from `reconcile`, or read back).
#[derive(Clone, Debug, Default)]
struct Known {
    table: bool,
    sets: BTreeSet<SetKey>,
}

/// Bans through nftables sets with native timeouts. See the module documentation.
#[derive(Debug)]
pub struct NftResponder {
    name: String,
    cfg: NftConfig,
    known: Option<Known>,
    /// Reconcile in nft's native syntax (false once nft refused the table name in it).
    native: bool,
}

impl NftResponder {
    /// Creates the responder after validating `cfg`; touches nothing until used.
    pub fn new(name: impl Into<String>, cfg: NftConfig) -> Result<Self, RespondError> {
        cfg.validate()?;
        Ok(NftResponder {
            name: name.into(),
            cfg,
            known: None,
            native: true,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NftConfig {
        &self.cfg
    }

    /// Name of the set holding bans of `net`'s family and prefix length (`ban4`, `ban6_64`).
    pub fn set_name(net: &IpNet) -> String {
        SetKey::of(net).name()
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.cfg.program.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        wrap_netns(self.cfg.netns.as_deref(), v)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    /// Runs one JSON transaction; `cmds` are JSON texts of single commands.
    fn transact(&mut self, cmds: Vec<String>) -> Result<(), RespondError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let len = cmds.iter().map(|c| c.len() + 1).sum::<usize>() + 16;
        let mut doc = String::with_capacity(len);
        doc.push_str(r#"{"nftables":["#);
        for (i, c) in cmds.iter().enumerate() {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(c);
        }
        doc.push_str("]}");
        let r = run_program(
            &self.argv(&["-j", "-f", "-"]),
            Some(doc.as_bytes()),
            self.timeout(),
        );
        if r.is_err() {
            // Whatever we believed about the kernel may be wrong now: read it back next time.
            self.known = None;
        }
        r.map(|_| ())
    }

    /// Runs one native-syntax script (one transaction).
    fn transact_native(&mut self, script: &str) -> Result<(), RespondError> {
        let r = run_program(
            &self.argv(&["-f", "-"]),
            Some(script.as_bytes()),
            self.timeout(),
        );
        if r.is_err() {
            self.known = None;
        }
        r.map(|_| ())
    }

    /// Lists the table (`terse`: without set elements).
    fn list_table(&self, terse: bool) -> Result<Option<Value>, RespondError> {
        let table = self.cfg.table.clone();
        let mut args = vec!["-j"];
        if terse {
            args.push("-t");
        }
        args.extend(["list", "table", "inet", &table]);
        match run_program(&self.argv(&args), None, self.timeout()) {
            Ok(out) => serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|e| RespondError::Other(format!("nft JSON output: {e}"))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn known(&mut self) -> Result<Known, RespondError> {
        if let Some(k) = &self.known {
            return Ok(k.clone());
        }
        let mut k = Known::default();
        if let Some(doc) = self.list_table(true)? {
            k.table = true;
            for item in items(&doc) {
                if let Some(s) = item.get("set") {
                    if let Some(key) = s["name"].as_str().and_then(SetKey::parse) {
                        k.sets.insert(key);
                    }
                }
            }
        }
        self.known = Some(k.clone());
        Ok(k)
    }

    fn chains(&self) -> Vec<&'static str> {
        if self.cfg.forward {
            vec!["input", "forward"]
        } else {
            vec!["input"]
        }
    }

    fn table_cmds(&self, out: &mut Vec<String>) {
        let t = &self.cfg.table;
        out.push(json!({"add": {"table": {"family": "inet", "name": t}}}).to_string());
        for chain in self.chains() {
            out.push(
                json!({"add": {"chain": {
                    "family": "inet", "table": t, "name": chain, "type": "filter",
                    "hook": chain, "prio": self.cfg.priority, "policy": "accept"
                }}})
                .to_string(),
            );
        }
    }

    /// Creates a set and its drop rule in every chain (only for sets that do not exist yet:
    /// `add rule` is not idempotent).
    fn set_cmds(&self, key: SetKey, out: &mut Vec<String>) {
        let t = &self.cfg.table;
        let name = key.name();
        let ty = if key.v6 { "ipv6_addr" } else { "ipv4_addr" };
        out.push(
            json!({"add": {"set": {
                "family": "inet", "table": t, "name": name, "type": ty, "flags": ["timeout"]
            }}})
            .to_string(),
        );
        let mut expr = Vec::new();
        let (protos, ports) = self.match_lists();
        if !protos.is_empty() {
            expr.push(
                json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                "right": one_or_set(protos.iter().map(|p| json!(p)).collect())}}),
            );
        }
        if !ports.is_empty() {
            expr.push(json!({"match": {"op": "==",
                "left": {"payload": {"protocol": "th", "field": "dport"}},
                "right": one_or_set(ports.into_iter().map(|p| json!(p)).collect())}}));
        }
        let saddr = json!({"payload": {"protocol": if key.v6 { "ip6" } else { "ip" },
            "field": "saddr"}});
        let left = match key.mask() {
            Some(mask) => json!({"&": [saddr, mask]}),
            None => saddr,
        };
        expr.push(json!({"match": {"op": "==", "left": left, "right": format!("@{name}")}}));
        expr.push(json!({"counter": {"packets": 0, "bytes": 0}}));
        expr.push(json!({"drop": null}));
        for chain in self.chains() {
            out.push(
                json!({"add": {"rule": {
                    "family": "inet", "table": t, "chain": chain, "expr": expr
                }}})
                .to_string(),
            );
        }
    }

    /// The protocols and destination ports the drop rules match.
    fn match_lists(&self) -> (Vec<&'static str>, Vec<u16>) {
        crate::firewall_util::match_lists(&self.cfg.protocols, &self.cfg.ports)
    }

    /// The reconcile transaction in nft's native syntax: the table dropped and rebuilt with
    /// its chains, sets, drop rules and elements (the same objects [`Self::table_cmds`],
    /// [`Self::set_cmds`] and [`Self::elements_cmd`] describe in JSON). Every value is
    /// rendered from a typed one; the table name is validated (letters, digits, `_`).
    fn reconcile_script(&self, groups: &BTreeMap<SetKey, Elems>) -> String {
        let t = &self.cfg.table;
        let n: usize = groups.values().map(Vec::len).sum();
        let mut s = String::with_capacity(n * 28 + 2048);
        let _ = writeln!(
            s,
            "add table inet {t}\ndelete table inet {t}\nadd table inet {t}"
        );
        for chain in self.chains() {
            let _ = writeln!(
                s,
                "add chain inet {t} {chain} {{ type filter hook {chain} priority {}; \
                 policy accept; }}",
                self.cfg.priority
            );
        }
        let (protos, ports) = self.match_lists();
        let list = |items: Vec<String>| -> String {
            if items.len() == 1 {
                items.into_iter().next().expect("one")
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        };
        let mut head = String::new();
        if !protos.is_empty() {
            let _ = write!(
                head,
                "meta l4proto {} ",
                list(protos.iter().map(|p| p.to_string()).collect())
            );
        }
        if !ports.is_empty() {
            let _ = write!(
                head,
                "th dport {} ",
                list(ports.iter().map(|p| p.to_string()).collect())
            );
        }
        for (key, elems) in groups {
            let name = key.name();
            let ty = if key.v6 { "ipv6_addr" } else { "ipv4_addr" };
            let _ = writeln!(s, "add set inet {t} {name} {{ type {ty}; flags timeout; }}");
            let mut rule = head.clone();
            rule.push_str(if key.v6 { "ip6 saddr " } else { "ip saddr " });
            if let Some(mask) = key.mask_addr() {
                rule.push_str("& ");
                push_addr(&mut rule, mask);
                rule.push(' ');
            }
            let _ = write!(rule, "@{name} counter drop");
            for chain in self.chains() {
                let _ = writeln!(s, "add rule inet {t} {chain} {rule}");
            }
            for chunk in elems.chunks(TEXT_CHUNK) {
                let _ = write!(s, "add element inet {t} {name} {{ ");
                for (i, (net, secs)) in chunk.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    push_addr(&mut s, net.network());
                    if let Some(secs) = secs {
                        let _ = write!(s, " timeout {secs}s");
                    }
                }
                s.push_str(" }\n");
            }
        }
        s
    }

    /// An element command, written directly: 100k elements through `serde_json::Value`
    /// would cost more than the kernel's work. Addresses and numbers need no escaping;
    /// `timeouts = false` writes bare values (for `delete`).
    fn elements_cmd(
        &self,
        op: &str,
        key: SetKey,
        elems: &[(IpNet, Option<u64>)],
        timeouts: bool,
    ) -> String {
        let mut s = String::with_capacity(elems.len() * 48 + 128);
        let _ = write!(
            s,
            r#"{{"{op}":{{"element":{{"family":"inet","table":{},"name":"{}","elem":["#,
            Value::String(self.cfg.table.clone()),
            key.name()
        );
        for (i, (net, secs)) in elems.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            match secs.filter(|_| timeouts) {
                Some(t) => {
                    let _ = write!(
                        s,
                        r#"{{"elem":{{"val":"{}","timeout":{t}}}}}"#,
                        net.network()
                    );
                }
                None => {
                    let _ = write!(s, r#""{}""#, net.network());
                }
            }
        }
        s.push_str("]}}}");
        s
    }

    /// Reads back what the firewall holds: elements with their time left, drop counters.
    pub fn status(&mut self) -> Result<FirewallStatus, RespondError> {
        let Some(doc) = self.list_table(false)? else {
            return Ok(FirewallStatus::default());
        };
        let mut st = FirewallStatus {
            installed: true,
            ..Default::default()
        };
        let (mut packets, mut bytes) = (0u64, 0u64);
        for item in items(&doc) {
            if let Some(s) = item.get("set") {
                let Some(key) = s["name"].as_str().and_then(SetKey::parse) else {
                    continue;
                };
                for e in s["elem"].as_array().into_iter().flatten() {
                    if let Some(el) = parse_elem(key, e) {
                        st.elements.push(el);
                    }
                }
            } else if let Some(r) = item.get("rule") {
                for e in r["expr"].as_array().into_iter().flatten() {
                    if let Some(c) = e.get("counter") {
                        packets += c["packets"].as_u64().unwrap_or(0);
                        bytes += c["bytes"].as_u64().unwrap_or(0);
                    }
                }
            }
        }
        st.elements.sort();
        st.dropped_packets = Some(packets);
        st.dropped_bytes = Some(bytes);
        Ok(st)
    }

    /// Empties every ban set (lifts all bans) and keeps the table.
    pub fn flush(&mut self) -> Result<(), RespondError> {
        let k = self.known()?;
        let cmds = k
            .sets
            .iter()
            .map(|key| {
                json!({"flush": {"set": {
                    "family": "inet", "table": self.cfg.table, "name": key.name()
                }}})
                .to_string()
            })
            .collect();
        self.transact(cmds)
    }

    /// Removes Palisade's table (and with it every ban); nothing else is touched. Absent is
    /// fine.
    pub fn uninstall(&mut self) -> Result<(), RespondError> {
        let t = &self.cfg.table;
        // `add` first makes the `delete` valid whether or not the table exists.
        let cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}).to_string(),
            json!({"delete": {"table": {"family": "inet", "name": t}}}).to_string(),
        ];
        self.transact(cmds)?;
        self.known = Some(Known::default());
        Ok(())
    }
}

fn items(doc: &Value) -> impl Iterator<Item = &Value> {
    doc["nftables"].as_array().into_iter().flatten()
}

fn one_or_set(mut v: Vec<Value>) -> Value {
    if v.len() == 1 {
        v.pop().expect("one")
    } else {
        json!({ "set": v })
    }
}

fn parse_elem(key: SetKey, e: &Value) -> Option<(IpNet, Option<Duration>)> {
    let (val, expires) = match e.get("elem") {
        Some(inner) => (&inner["val"], inner["expires"].as_u64()),
        None => (e, None),
    };
    let addr: std::net::IpAddr = val.as_str()?.parse().ok()?;
    let net = IpNet::new(addr, key.len).ok()?;
    // A timeout element that has no "expires" left is about to go: report zero.
    let left = match (e.get("elem").map(|i| i.get("timeout").is_some()), expires) {
        (_, Some(s)) => Some(Duration::from_secs(s)),
        (Some(true), None) => Some(Duration::ZERO),
        _ => None,
    };
    Some((net, left))
}

/// Groups decisions in force by set, one entry per target sorted by network (the longest
/// remaining time wins inside a batch; `None` = permanent).
fn group(batch: &[Decision], now: Timestamp) -> BTreeMap<SetKey, Elems> {
    let mut all: Vec<(SetKey, IpNet, Option<u64>)> = batch
        .iter()
        .filter_map(|d| {
            // Over nft's limit: a permanent element, revoked by the daemon at expiry.
            let secs = remaining_secs(d, now)?.filter(|s| *s <= NFT_MAX_TIMEOUT_SECS);
            let net = d.target.trunc();
            Some((SetKey::of(&net), net, secs))
        })
        .collect();
    all.sort_unstable_by_key(|a| (a.0, a.1));
    let mut g: BTreeMap<SetKey, Elems> = BTreeMap::new();
    let mut cur: Option<(SetKey, Elems)> = None;
    for (key, net, secs) in all {
        let v = match &mut cur {
            Some((k, v)) if *k == key => v,
            _ => {
                if let Some((k, v)) = cur.take() {
                    g.insert(k, v);
                }
                &mut cur.insert((key, Vec::new())).1
            }
        };
        match v.last_mut() {
            Some((n, slot)) if *n == net => {
                *slot = match (*slot, secs) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
            }
            _ => v.push((net, secs)),
        }
    }
    if let Some((k, v)) = cur {
        g.insert(k, v);
    }
    g
}

impl Responder for NftResponder {
    fn name(&self) -> &str {
        &self.name
    }

    /// One transaction for the batch; if it fails, element by element, so that one bad
    /// element never keeps the others out (the error then names the elements that failed).
    fn apply(&mut self, batch: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let groups = group(batch, now);
        let n: usize = groups.values().map(Vec::len).sum();
        match self.apply_groups(groups.clone()) {
            Err(e) if n > 1 => {
                tracing::warn!(responder = %self.name, error = %e, elements = n,
                    "nft batch failed; applying element by element");
                self.known = None;
                self.apply_each(&groups)
            }
            r => r,
        }
    }

    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        self.revoke_nets(batch)
    }

    /// One transaction: the table is dropped and rebuilt from the configuration (so a
    /// changed port list or priority takes effect), holding exactly the active decisions
    /// with their remaining time. Packets never see a half-built state.
    ///
    /// If that transaction fails for another reason than syntax, the table is rebuilt empty
    /// and the bans are added element by element: elements that still fail are logged and
    /// left out (retried by the daemon's periodic reconcile), so one bad element never stops
    /// a start.
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let groups = group(active, now);
        let n: usize = groups.values().map(Vec::len).sum();
        match self.reconcile_groups(groups.clone()) {
            Err(e) if n > 0 => {
                tracing::warn!(responder = %self.name, error = %e, elements = n,
                    "nft reconcile failed; rebuilding the table empty and adding element by element");
                self.known = None;
                self.reconcile_groups(BTreeMap::new())?;
                if let Err(e) = self.apply_each(&groups) {
                    tracing::error!(responder = %self.name, error = %e,
                        "bans left out of the firewall");
                }
                Ok(())
            }
            r => r,
        }
    }

    fn expires_natively(&self) -> bool {
        true
    }

    /// A ban longer than [`NFT_MAX_TIMEOUT_SECS`] is a permanent element: revoked at expiry.
    fn expires_natively_for(&self, d: &Decision) -> bool {
        d.expires
            .is_none_or(|e| e.since(d.created).as_secs() <= NFT_MAX_TIMEOUT_SECS)
    }
}

impl NftResponder {
    /// Applies each element in its own transaction; the error lists those that failed.
    fn apply_each(&mut self, groups: &BTreeMap<SetKey, Elems>) -> Result<(), RespondError> {
        let mut failed = Vec::new();
        let mut first = None;
        let mut total = 0;
        for (key, elems) in groups {
            for el in elems {
                total += 1;
                let one = BTreeMap::from([(*key, vec![*el])]);
                if let Err(e) = self.apply_groups(one) {
                    self.known = None;
                    failed.push(el.0);
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(e) => {
                let shown: Vec<String> = failed.iter().take(10).map(|n| n.to_string()).collect();
                Err(RespondError::Other(format!(
                    "{} of {total} elements failed ({}{}): {e}",
                    failed.len(),
                    shown.join(", "),
                    if failed.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                )))
            }
        }
    }

    fn apply_groups(&mut self, groups: BTreeMap<SetKey, Elems>) -> Result<(), RespondError> {
        if groups.is_empty() {
            return Ok(());
        }
        let mut k = self.known()?;
        let mut cmds = Vec::new();
        if !k.table {
            self.table_cmds(&mut cmds);
            for key in [SetKey { v6: false, len: 32 }, SetKey { v6: true, len: 128 }] {
                self.set_cmds(key, &mut cmds);
                k.sets.insert(key);
            }
            k.table = true;
        }
        for (key, elems) in groups {
            if k.sets.insert(key) {
                self.set_cmds(key, &mut cmds);
            } else {
                // add (cannot fail), delete (now surely present), add with the new timeout.
                cmds.push(self.elements_cmd("add", key, &elems, true));
                cmds.push(self.elements_cmd("delete", key, &elems, false));
            }
            cmds.push(self.elements_cmd("add", key, &elems, true));
        }
        self.transact(cmds)?;
        self.known = Some(k);
        Ok(())
    }

    fn revoke_nets(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        let k = self.known()?;
        let mut by_set: BTreeMap<SetKey, BTreeSet<IpNet>> = BTreeMap::new();
        for d in batch {
            let net = d.target.trunc();
            let key = SetKey::of(&net);
            // A set that does not exist holds nothing to revoke.
            if k.sets.contains(&key) {
                by_set.entry(key).or_default().insert(net);
            }
        }
        let mut cmds = Vec::new();
        for (key, nets) in by_set {
            let nets: Elems = nets.into_iter().map(|n| (n, None)).collect();
            // `add` makes the `delete` valid when the element is absent (or just expired).
            cmds.push(self.elements_cmd("add", key, &nets, false));
            cmds.push(self.elements_cmd("delete", key, &nets, false));
        }
        self.transact(cmds)
    }

    /// The reconcile transaction, written in nft's native syntax (see the module
    /// documentation), or in JSON when nft refused the table name in native syntax.
    fn reconcile_groups(
        &mut self,
        mut groups: BTreeMap<SetKey, Elems>,
    ) -> Result<(), RespondError> {
        let t0 = Instant::now();
        groups.entry(SetKey { v6: false, len: 32 }).or_default();
        groups.entry(SetKey { v6: true, len: 128 }).or_default();
        let k = Known {
            table: true,
            sets: groups.keys().copied().collect(),
        };
        let elements: usize = groups.values().map(Vec::len).sum();
        let t1 = Instant::now();
        if self.native {
            let script = self.reconcile_script(&groups);
            let t2 = Instant::now();
            match self.transact_native(&script) {
                Ok(()) => {
                    tracing::debug!(
                        responder = %self.name,
                        elements,
                        group_ms = format_args!("{:.1}", (t1 - t0).as_secs_f64() * 1e3),
                        render_ms = format_args!("{:.1}", (t2 - t1).as_secs_f64() * 1e3),
                        nft_ms = format_args!("{:.1}", t2.elapsed().as_secs_f64() * 1e3),
                        bytes = script.len(),
                        "nft reconcile committed (native syntax)"
                    );
                    self.known = Some(k);
                    return Ok(());
                }
                Err(e) if is_syntax_error(&e) => {
                    tracing::info!(
                        responder = %self.name,
                        table = %self.cfg.table,
                        error = %e,
                        "nft refused the reconcile in native syntax (is the table name an nft \
                         keyword?); using JSON from now on"
                    );
                    self.native = false;
                }
                Err(e) => return Err(e),
            }
        }
        let t = self.cfg.table.clone();
        let mut cmds = vec![
            json!({"add": {"table": {"family": "inet", "name": t}}}).to_string(),
            json!({"delete": {"table": {"family": "inet", "name": t}}}).to_string(),
        ];
        self.table_cmds(&mut cmds);
        for (key, elems) in &groups {
            self.set_cmds(*key, &mut cmds);
            if !elems.is_empty() {
                cmds.push(self.elements_cmd("add", *key, elems, true));
            }
        }
        let t2 = Instant::now();
        self.transact(cmds)?;
        tracing::debug!(
            responder = %self.name,
            elements,
            nft_ms = format_args!("{:.1}", t2.elapsed().as_secs_f64() * 1e3),
            "nft reconcile committed (JSON)"
        );
        self.known = Some(k);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_round_trip() {
        for (net, name) in [
            ("192.0.2.1/32", "ban4"),
            ("192.0.2.0/24", "ban4_24"),
            ("2001:db8::1/128", "ban6"),
            ("2001:db8::/64", "ban6_64"),
            ("0.0.0.0/0", "ban4_0"),
        ] {
            let net: IpNet = net.parse().unwrap();
            assert_eq!(NftResponder::set_name(&net), name);
            assert_eq!(SetKey::parse(name), Some(SetKey::of(&net)));
        }
        for bad in [
            "ban4_32", "ban4_33", "ban6_128", "ban4_024", "ban5", "ban4x", "other",
        ] {
            assert_eq!(SetKey::parse(bad), None, "{bad}");
        }
        assert_eq!(
            SetKey { v6: false, len: 24 }.mask().unwrap(),
            "255.255.255.0"
        );
        assert_eq!(
            SetKey { v6: true, len: 64 }.mask().unwrap(),
            "ffff:ffff:ffff:ffff::"
        );
    }

    #[test]
    fn native_reconcile_script() {
        let r = NftResponder::new(
            "n",
            NftConfig {
                ports: vec![80, 22, 22],
                forward: true,
                ..Default::default()
            },
        )
        .unwrap();
        let now = Timestamp::from_secs(1000);
        let d = |target: &str, expires: Option<i64>| Decision {
            id: 0,
            target: target.parse().unwrap(),
            jail: "j".into(),
            origin: palisade_core::Origin::Jail,
            reason: String::new(),
            created: now,
            expires: expires.map(Timestamp::from_secs),
            simulated: false,
            level: 0,
        };
        let active = [
            d("192.0.2.9/32", Some(1100)),
            d("192.0.2.1/32", None),
            d("192.0.2.9/32", Some(1500)),
            d("192.0.2.2/32", Some(900)), // over: skipped
            d("2001:db8:1:2::7/64", Some(1010)),
            d("::ffff:198.51.100.1/128", Some(2000)),
        ];
        let groups = group(&active, now);
        assert_eq!(
            r.reconcile_script(&groups),
            "add table inet palisade\n\
             delete table inet palisade\n\
             add table inet palisade\n\
             add chain inet palisade input { type filter hook input priority -10; policy accept; }\n\
             add chain inet palisade forward { type filter hook forward priority -10; policy accept; }\n\
             add set inet palisade ban4 { type ipv4_addr; flags timeout; }\n\
             add rule inet palisade input meta l4proto { tcp, udp } th dport { 22, 80 } ip saddr @ban4 counter drop\n\
             add rule inet palisade forward meta l4proto { tcp, udp } th dport { 22, 80 } ip saddr @ban4 counter drop\n\
             add element inet palisade ban4 { 192.0.2.1, 192.0.2.9 timeout 500s }\n\
             add set inet palisade ban6_64 { type ipv6_addr; flags timeout; }\n\
             add rule inet palisade input meta l4proto { tcp, udp } th dport { 22, 80 } ip6 saddr & ffff:ffff:ffff:ffff:0:0:0:0 @ban6_64 counter drop\n\
             add rule inet palisade forward meta l4proto { tcp, udp } th dport { 22, 80 } ip6 saddr & ffff:ffff:ffff:ffff:0:0:0:0 @ban6_64 counter drop\n\
             add element inet palisade ban6_64 { 2001:db8:1:2:0:0:0:0 timeout 10s }\n\
             add set inet palisade ban6 { type ipv6_addr; flags timeout; }\n\
             add rule inet palisade input meta l4proto { tcp, udp } th dport { 22, 80 } ip6 saddr @ban6 counter drop\n\
             add rule inet palisade forward meta l4proto { tcp, udp } th dport { 22, 80 } ip6 saddr @ban6 counter drop\n\
             add element inet palisade ban6 { 0:0:0:0:0:ffff:c633:6401 timeout 1000s }\n"
        );
        // Large sets are split into statements of TEXT_CHUNK elements; no set, no statement.
        let many: Vec<Decision> = (0..TEXT_CHUNK as u32 + 1)
            .map(|i| d(&format!("{}/32", std::net::Ipv4Addr::from(i)), None))
            .collect();
        let one = NftResponder::new("n", NftConfig::default()).unwrap();
        let script = one.reconcile_script(&group(&many, now));
        assert_eq!(script.matches("add element").count(), 2);
        assert!(script.contains("add element inet palisade ban4 { 0.0.0.0, 0.0.0.1, "));
        assert!(script.contains("ip saddr @ban4 counter drop\n"));
        assert!(!script.contains("l4proto") && !script.contains("ban6"));
    }

    #[test]
    fn validation() {
        assert!(NftConfig::default().validate().is_ok());
        let bad = [
            NftConfig {
                table: "a b".into(),
                ..Default::default()
            },
            NftConfig {
                table: "1x".into(),
                ..Default::default()
            },
            NftConfig {
                program: "nft".into(),
                ..Default::default()
            },
            NftConfig {
                ports: vec![0],
                ..Default::default()
            },
            NftConfig {
                netns: Some("../x".into()),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let c: NftConfig = serde_json::from_str(r#"{"ports":[22],"protocols":["tcp"]}"#).unwrap();
        assert_eq!(c.ports, [22]);
        assert!(serde_json::from_str::<NftConfig>(r#"{"port":22}"#).is_err());
    }

    #[test]
    fn rules_and_elements() {
        let r = NftResponder::new(
            "n",
            NftConfig {
                ports: vec![80, 22, 22],
                forward: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut cmds = Vec::new();
        r.set_cmds(SetKey { v6: true, len: 64 }, &mut cmds);
        assert_eq!(cmds.len(), 3, "set + a rule per chain");
        let rule = &cmds[1];
        assert!(rule.contains(r#"{"set":["tcp","udp"]}"#), "{rule}");
        assert!(rule.contains(r#"{"set":[22,80]}"#), "{rule}");
        assert!(
            rule.contains(
                r#""&":[{"payload":{"field":"saddr","protocol":"ip6"}},"ffff:ffff:ffff:ffff::"]"#
            ),
            "{rule}"
        );
        assert!(rule.contains(r#""right":"@ban6_64""#), "{rule}");
        let elems: Elems = vec![
            ("192.0.2.0/24".parse().unwrap(), Some(5)),
            ("192.0.3.0/24".parse().unwrap(), None),
        ];
        let key = SetKey { v6: false, len: 24 };
        let c: Value = serde_json::from_str(&r.elements_cmd("add", key, &elems, true)).unwrap();
        assert_eq!(
            c,
            json!({"add": {"element": {"family": "inet", "table": "palisade", "name": "ban4_24",
                "elem": [{"elem": {"val": "192.0.2.0", "timeout": 5}}, "192.0.3.0"]}}})
        );
        let c: Value = serde_json::from_str(&r.elements_cmd("delete", key, &elems, false)).unwrap();
        assert_eq!(
            c["delete"]["element"]["elem"],
            json!(["192.0.2.0", "192.0.3.0"])
        );
        assert_eq!(
            parse_elem(
                key,
                &json!({"elem": {"val": "192.0.2.0", "timeout": 9, "expires": 7}})
            ),
            Some((
                "192.0.2.0/24".parse().unwrap(),
                Some(Duration::from_secs(7))
            ))
        );
        assert_eq!(
            parse_elem(key, &json!("192.0.2.0")),
            Some(("192.0.2.0/24".parse().unwrap(), None))
        );
    }
}
