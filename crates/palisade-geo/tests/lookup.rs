//! Lookups in a real database: DB-IP Lite as installed by scripts/install-geoip.sh
//! (PALISADE_TEST_GEOIP names the file; scripts/test.sh installs it). Skips without one.

use palisade_geo::{GeoIp, GeoPaths};
use std::net::IpAddr;
use std::path::PathBuf;

fn db() -> Option<PathBuf> {
    match std::env::var_os("PALISADE_TEST_GEOIP").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            palisade_testkit::require_or_skip(
                "GEOIP",
                "PALISADE_TEST_GEOIP does not name a GeoIP database",
            );
            None
        }
    }
}

#[test]
fn countries_from_the_flat_db_ip_layout() {
    let Some(p) = db() else { return };
    let g = GeoIp::open(&GeoPaths {
        country: Some(p.clone()),
        ..GeoPaths::default()
    });
    assert!(g.enabled());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Well-known, stable allocations.
    assert_eq!(g.country(ip("8.8.8.8")).as_deref(), Some("US"));
    assert_eq!(g.country(ip("193.0.6.139")).as_deref(), Some("NL")); // RIPE NCC
                                                                     // Mapped IPv6 is the IPv4 address; private space has no country.
    assert_eq!(g.country(ip("::ffff:8.8.8.8")).as_deref(), Some("US"));
    assert_eq!(g.country(ip("10.1.2.3")), None);
    // Cached answers are the same answers.
    assert_eq!(g.country(ip("8.8.8.8")).as_deref(), Some("US"));
    assert!(g.attribution().unwrap().contains("DB-IP"));
    // Reports find it when named.
    let r = GeoIp::find_country(Some(&p)).unwrap().unwrap();
    assert_eq!(r.country(ip("8.8.8.8")).as_deref(), Some("US"));
}

#[test]
fn a_named_database_that_cannot_be_read_is_an_error_for_reports_only() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mmdb");
    std::fs::write(&bad, b"not a database").unwrap();
    let e = GeoIp::find_country(Some(&bad)).unwrap_err();
    assert!(e.to_string().contains("broken.mmdb"), "{e}");
    // The daemon carries on without geolocation.
    let g = GeoIp::open(&GeoPaths {
        country: Some(bad),
        ..GeoPaths::default()
    });
    assert!(!g.enabled());
    assert_eq!(g.country("8.8.8.8".parse().unwrap()), None);
}
