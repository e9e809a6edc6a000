//! [`Allowlist`]: addresses and networks that are never banned.
//!
//! Checked by policy before any decision is made and again by every responder path, so an
//! allowlisted address can never reach a firewall. Lookups are a binary search over merged
//! ranges, so large lists (cloud provider ranges, thousands of entries) stay cheap.

use ipnet::IpNet;
use std::net::IpAddr;

/// A problem with one allowlist entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {entry:?} is not an IP address or CIDR network")]
pub struct AllowlistError {
    /// 1-based line (or list position).
    pub line: usize,
    /// The offending text.
    pub entry: String,
}

/// Sorted, merged inclusive ranges for each family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    entries: Vec<IpNet>,
}

fn merge<T: Ord + Copy>(v: &mut Vec<(T, T)>, next: impl Fn(T) -> Option<T>) {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for &(s, e) in v.iter() {
        if let Some(last) = out.last_mut() {
            if next(last.1).is_none_or(|n| s <= n) {
                if e > last.1 {
                    last.1 = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    *v = out;
}

fn find<T: Ord + Copy>(v: &[(T, T)], x: T) -> bool {
    let i = v.partition_point(|&(s, _)| s <= x);
    i > 0 && v[i - 1].1 >= x
}

impl Allowlist {
    /// Builds from networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut a = Allowlist::default();
        for n in nets {
            a.entries.push(crate::net::canonical_net(n));
        }
        a.rebuild();
        a
    }

    fn rebuild(&mut self) {
        self.v4.clear();
        self.v6.clear();
        for n in &self.entries {
            match n {
                IpNet::V4(n) => self
                    .v4
                    .push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    let (s, e) = (u128::from(n.network()), u128::from(n.broadcast()));
                    self.v6.push((s, e));
                    // The part inside ::ffff:0:0/96 protects those IPv4 addresses too
                    // (lookups canonicalise mapped addresses to IPv4).
                    let (ms, me) = (0xffff_u128 << 32, (0xffff_u128 << 32) | 0xffff_ffff);
                    if s <= me && ms <= e {
                        let lo = (s.max(ms) - ms) as u32;
                        let hi = (e.min(me) - ms) as u32;
                        self.v4.push((lo, hi));
                    }
                }
            }
        }
        merge(&mut self.v4, |x: u32| x.checked_add(1));
        merge(&mut self.v6, |x: u128| x.checked_add(1));
    }

    /// Parses one entry: an address (`1.2.3.4`, `::1`) or a network (`10.0.0.0/8`).
    pub fn parse_entry(s: &str) -> Option<IpNet> {
        let s = s.trim();
        if let Ok(n) = s.parse::<IpNet>() {
            return Some(crate::net::canonical_net(n));
        }
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| IpNet::from(crate::canonical_ip(ip)))
    }

    /// Parses a file's text: one entry per line, `#` comments and blank lines ignored.
    /// Every bad line is reported.
    pub fn parse_text(text: &str) -> Result<Vec<IpNet>, Vec<AllowlistError>> {
        let mut ok = Vec::new();
        let mut errs = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            match Self::parse_entry(l) {
                Some(n) => ok.push(n),
                None => errs.push(AllowlistError {
                    line: i + 1,
                    entry: l.to_string(),
                }),
            }
        }
        if errs.is_empty() {
            Ok(ok)
        } else {
            Err(errs)
        }
    }

    /// Adds a network.
    pub fn insert(&mut self, n: IpNet) {
        self.entries.push(crate::net::canonical_net(n));
        self.rebuild();
    }

    /// Whether `ip` is allowlisted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match crate::canonical_ip(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Whether any address of `net` is allowlisted (a network ban must not cover a friend).
    pub fn overlaps(&self, net: &IpNet) -> bool {
        match &crate::net::canonical_net(*net) {
            IpNet::V4(n) => {
                let (s, e) = (u32::from(n.network()), u32::from(n.broadcast()));
                self.v4.iter().any(|&(a, b)| a <= e && s <= b)
            }
            IpNet::V6(n) => {
                let (s, e) = (u128::from(n.network()), u128::from(n.broadcast()));
                self.v6.iter().any(|&(a, b)| a <= e && s <= b)
            }
        }
    }

    /// The entries as given (truncated to their network).
    pub fn entries(&self) -> &[IpNet] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn membership() {
        let a = Allowlist::new(
            [
                "10.0.0.0/8",
                "192.168.1.7/32",
                "2001:db8::/32",
                "10.1.0.0/16",
            ]
            .iter()
            .map(|s| Allowlist::parse_entry(s).unwrap()),
        );
        assert!(a.contains(ip("10.200.3.4")));
        assert!(a.contains(ip("192.168.1.7")));
        assert!(!a.contains(ip("192.168.1.8")));
        assert!(a.contains(ip("2001:db8:ffff::1")));
        assert!(!a.contains(ip("2001:db9::1")));
        assert!(
            a.contains(ip("::ffff:10.0.0.1")),
            "mapped addresses are checked as IPv4"
        );
        assert!(!a.contains(ip("11.0.0.0")));
        assert!(a.overlaps(&"192.168.1.0/24".parse().unwrap()));
        assert!(!a.overlaps(&"192.168.2.0/24".parse().unwrap()));
    }

    #[test]
    fn mapped_forms() {
        // A mapped entry protects the IPv4 addresses it covers, in either form.
        let a = Allowlist::new([Allowlist::parse_entry("::ffff:198.51.100.0/120").unwrap()]);
        assert!(a.contains(ip("198.51.100.7")));
        assert!(a.contains(ip("::ffff:198.51.100.7")));
        assert!(!a.contains(ip("198.51.101.7")));
        assert!(a.overlaps(&"::ffff:198.51.100.7/128".parse().unwrap()));
        assert!(a.overlaps(&"198.51.100.0/30".parse().unwrap()));
        // A mapped-form target is checked against a plain IPv4 entry.
        let b = Allowlist::new([Allowlist::parse_entry("203.0.113.0/24").unwrap()]);
        assert!(b.overlaps(&"::ffff:203.0.113.9/128".parse().unwrap()));
        assert!(b.overlaps(&"::ffff:203.0.113.0/120".parse().unwrap()));
        // A wide IPv6 entry that covers the mapped range covers IPv4 too.
        let c = Allowlist::new([Allowlist::parse_entry("::/80").unwrap()]);
        assert!(c.contains(ip("8.8.8.8")));
    }

    #[test]
    fn edges_and_errors() {
        let a = Allowlist::new([Allowlist::parse_entry("0.0.0.0/0").unwrap()]);
        assert!(a.contains(ip("255.255.255.255")));
        assert!(!a.contains(ip("::1")));
        let errs = Allowlist::parse_text("1.2.3.4\n# c\n\nbogus\n5.6.7.8/33\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 4);
        assert_eq!(
            Allowlist::parse_text("1.2.3.4 # home\n").unwrap()[0].to_string(),
            "1.2.3.4/32"
        );
    }
}
