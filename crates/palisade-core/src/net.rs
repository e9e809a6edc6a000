//! Address helpers shared by filters, policy and responders.
//!
//! Addresses are parsed into [`IpAddr`] at the filter boundary and never carried as strings.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// Parses an address from raw log bytes without allocating. IPv4-mapped IPv6
/// (`::ffff:1.2.3.4`) comes back as the IPv4 address. Zone ids (`fe80::1%eth0`) are refused.
pub fn parse_ip_bytes(b: &[u8]) -> Option<IpAddr> {
    if b.is_empty() || b.len() > 45 {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    s.parse::<IpAddr>().ok().map(canonical_ip)
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
pub fn aggregate(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, 32).expect("32 is a valid prefix")),
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
