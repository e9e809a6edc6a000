//! Address helpers shared by filters, policy and responders.
//!
//! Addresses are parsed into [`IpAddr`] at the filter boundary and never carried as strings.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// Parses an offender's address from raw log bytes without allocating. IPv4-mapped IPv6
/// (`::ffff:1.2.3.4`) comes back as the IPv4 address. Zone ids (`fe80::1%eth0`) are refused,
/// and so are addresses no client can send from (see [`is_bannable`]).
pub fn parse_ip_bytes(b: &[u8]) -> Option<IpAddr> {
    if b.is_empty() || b.len() > 45 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    s.parse::<IpAddr>()
        .ok()
        .map(canonical_ip)
        .filter(|ip| is_bannable(*ip))
}

/// Whether `ip` can be a client's source address, and so an offender: not unspecified
/// (`0.0.0.0/8`, `::`), not broadcast, not multicast. Such text in a log line is forged or
/// broken, and banning it would be meaningless or harmful. Loopback stays bannable: a local
/// proxy or a test may well be the offender, and the allowlist (which holds loopback by
/// default) is the place that protects it.
pub fn is_bannable(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => !(v4.octets()[0] == 0 || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): one IPv6 address per IPv4 host
/// behind the translator.
fn is_nat64(v6: std::net::Ipv6Addr) -> bool {
    let s = v6.segments();
    s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0; 4] || s[2] == 1)
}

/// IPv4-mapped networks (`::ffff:198.51.100.0/120`) become the IPv4 network they cover;
/// everything else is unchanged (truncated to its network).
pub fn canonical_net(n: IpNet) -> IpNet {
    if let IpNet::V6(v6) = n {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                return IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix <= 32"))
                    .trunc();
            }
        }
    }
    n.trunc()
}

/// IPv4-mapped IPv6 addresses become IPv4; everything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The key an offender is counted and banned under: the address itself for IPv4, the
/// enclosing `/v6_prefix` network for IPv6 (0 < prefix <= 128; 128 means per address).
/// NAT64 addresses (`64:ff9b::/96`, `64:ff9b:1::/48`) stand for one IPv4 host each, so they
/// are counted per address: their /64 would hold the whole IPv4 internet.
pub fn aggregate(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, 32).expect("32 is a valid prefix")),
        IpAddr::V6(v6) if is_nat64(v6) => {
            IpNet::V6(Ipv6Net::new(v6, 128).expect("128 is a valid prefix"))
        }
        IpAddr::V6(v6) => {
            let p = v6_prefix.clamp(1, 128);
            IpNet::V6(Ipv6Net::new(v6, p).expect("clamped prefix").trunc())
        }
    }
}

/// The single-address network for `ip` (/32 or /128).
pub fn target_of(ip: IpAddr) -> IpNet {
    IpNet::from(canonical_ip(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v6_is_v4() {
        assert_eq!(
            parse_ip_bytes(b"::ffff:1.2.3.4"),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(parse_ip_bytes(b"1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_ip_bytes(b"2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip_bytes(b"1.2.3"), None);
        assert_eq!(
            parse_ip_bytes(b"192.030.0.6"),
            None,
            "leading zeros are not an address"
        );
        assert_eq!(parse_ip_bytes(b"\xff\xfe"), None);
        assert_eq!(parse_ip_bytes(b""), None);
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "::",
            "::ffff:0.0.0.0",
            "ff02::1",
        ] {
            assert_eq!(parse_ip_bytes(bad.as_bytes()), None, "{bad}");
        }
        assert!(
            parse_ip_bytes(b"127.0.0.1").is_some(),
            "loopback stays bannable"
        );
        assert!(parse_ip_bytes(b"::1").is_some());
    }

    #[test]
    fn mapped_nets_and_nat64() {
        let n = |s: &str| canonical_net(s.parse().unwrap()).to_string();
        assert_eq!(n("::ffff:198.51.100.0/120"), "198.51.100.0/24");
        assert_eq!(n("::ffff:198.51.100.7/128"), "198.51.100.7/32");
        assert_eq!(n("::ffff:0:0/96"), "0.0.0.0/0");
        assert_eq!(n("2001:db8::1/64"), "2001:db8::/64");
        assert_eq!(n("10.1.2.3/8"), "10.0.0.0/8");
        let a = |s: &str| aggregate(s.parse().unwrap(), 64).to_string();
        assert_eq!(a("64:ff9b::c633:6407"), "64:ff9b::c633:6407/128");
        assert_eq!(a("64:ff9b:1::1:2"), "64:ff9b:1::1:2/128");
        assert_eq!(a("64:ff9c::1"), "64:ff9c::/64");
    }

    #[test]
    fn v6_aggregation() {
        let ip: IpAddr = "2a01:4f8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(aggregate(ip, 64).to_string(), "2a01:4f8:1:2::/64");
        assert_eq!(aggregate(ip, 128).to_string(), "2a01:4f8:1:2:3:4:5:6/128");
        assert_eq!(
            aggregate("9.8.7.6".parse().unwrap(), 64).to_string(),
            "9.8.7.6/32"
        );
        assert_eq!(
            target_of("::ffff:9.8.7.6".parse().unwrap()).to_string(),
            "9.8.7.6/32"
        );
    }
}
