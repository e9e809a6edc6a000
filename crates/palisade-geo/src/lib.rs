//! GeoIP: country, city and AS lookups in MaxMind-format (`.mmdb`) databases.
//!
//! Two record layouts are understood: MaxMind's GeoLite2/GeoIP2 (`country.iso_code`,
//! `city.names.en`, `location.latitude`, `autonomous_system_number`) and the flat one of the
//! ip-location-db packages (`country_code`, `city`, `latitude`), which is what
//! `scripts/install-geoip.sh` installs (DB-IP Lite, CC BY 4.0). A missing or unreadable
//! database means no geolocation, never an error, for the daemon; `find_country` (reports) is
//! strict about a database it was told to use. Answers are cached in a bounded LRU.

#![warn(missing_docs)]

use lru::LruCache;
use maxminddb::Reader;
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Country databases searched when none is configured (`scripts/install-geoip.sh`, Debian's
/// `geoipupdate` and `dbip-country-lite` packages install there).
pub const DEFAULT_COUNTRY_PATHS: &[&str] = &[
    "/var/lib/palisade/geoip/dbip-country.mmdb",
    "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/dbip-country-lite.mmdb",
];

/// A database that was asked for by name cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {path}: {message}")]
pub struct GeoError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Addresses whose answers are cached.
const CACHE: usize = 65_536;

/// Paths of the databases (any may be absent).
#[derive(Clone, Debug, Default)]
pub struct GeoPaths {
    /// Country database.
    pub country: Option<PathBuf>,
    /// City database (also answers the country).
    pub city: Option<PathBuf>,
    /// ASN database.
    pub asn: Option<PathBuf>,
}

/// What is known about where an address is.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2 country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Country name (English), when the database has names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    /// City (English).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Latitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// Autonomous system number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Autonomous system organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
}

impl GeoInfo {
    fn is_empty(&self) -> bool {
        *self == GeoInfo::default()
    }
}

struct Db {
    reader: Reader<Vec<u8>>,
    kind: String,
}

/// The open databases and the lookup cache.
pub struct GeoIp {
    country: Option<Db>,
    city: Option<Db>,
    asn: Option<Db>,
    cache: Mutex<LruCache<IpAddr, Option<Arc<GeoInfo>>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("country", &self.country.as_ref().map(|d| &d.kind))
            .field("city", &self.city.as_ref().map(|d| &d.kind))
            .field("asn", &self.asn.as_ref().map(|d| &d.kind))
            .finish()
    }
}

fn open_db(what: &str, p: &Option<PathBuf>) -> Option<Db> {
    let p: &Path = p.as_deref()?;
    match Reader::open_readfile(p) {
        Ok(reader) => {
            let kind = reader.metadata.database_type.clone();
            tracing::info!(database = %p.display(), kind = %kind, "GeoIP {what} database loaded");
            Some(Db { reader, kind })
        }
        Err(e) => {
            tracing::warn!(database = %p.display(), error = %e, "GeoIP {what} database not usable; continuing without it");
            None
        }
    }
}

fn s(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

impl GeoIp {
    /// Opens what exists of `paths`.
    pub fn open(paths: &GeoPaths) -> Self {
        GeoIp {
            country: open_db("country", &paths.country),
            city: open_db("city", &paths.city),
            asn: open_db("ASN", &paths.asn),
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE).expect("cache size is not zero"),
            )),
        }
    }

    /// A country database for reports: `configured` if given (an error if it cannot be
    /// opened), else the first of [`DEFAULT_COUNTRY_PATHS`] that opens, else `None`.
    pub fn find_country(configured: Option<&Path>) -> Result<Option<Self>, GeoError> {
        if let Some(p) = configured {
            Reader::open_readfile(p).map_err(|e| GeoError {
                path: p.to_path_buf(),
                message: e.to_string(),
            })?;
            return Ok(Some(Self::open(&GeoPaths {
                country: Some(p.to_path_buf()),
                ..GeoPaths::default()
            })));
        }
        Ok(DEFAULT_COUNTRY_PATHS
            .iter()
            .map(Path::new)
            .filter(|p| Reader::open_readfile(p).is_ok())
            .map(|p| {
                Self::open(&GeoPaths {
                    country: Some(p.to_path_buf()),
                    ..GeoPaths::default()
                })
            })
            .next())
    }

    /// No databases at all.
    pub fn none() -> Self {
        Self::open(&GeoPaths::default())
    }

    /// Whether any database is loaded.
    pub fn enabled(&self) -> bool {
        self.country.is_some() || self.city.is_some() || self.asn.is_some()
    }

    /// Attribution the licences of the loaded databases require (shown on the dashboard).
    pub fn attribution(&self) -> Option<String> {
        let mut maxmind = false;
        let mut other = false;
        for d in [&self.country, &self.city, &self.asn].into_iter().flatten() {
            if d.kind.starts_with("GeoLite2") || d.kind.starts_with("GeoIP2") {
                maxmind = true;
            } else {
                other = true;
            }
        }
        let mut out = Vec::new();
        if other {
            out.push(
                "IP geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0".to_string(),
            );
        }
        if maxmind {
            out.push(
                "This product includes GeoLite2 data created by MaxMind, available from \
                 https://www.maxmind.com"
                    .to_string(),
            );
        }
        (!out.is_empty()).then(|| out.join(". "))
    }

    /// Database types loaded (`country`, `city`, `asn` → database type).
    pub fn databases(&self) -> Vec<(&'static str, String)> {
        [
            ("country", &self.country),
            ("city", &self.city),
            ("asn", &self.asn),
        ]
        .into_iter()
        .filter_map(|(k, d)| d.as_ref().map(|d| (k, d.kind.clone())))
        .collect()
    }

    /// Where `ip` is, as far as the databases know (cached).
    pub fn lookup(&self, ip: IpAddr) -> Option<Arc<GeoInfo>> {
        if !self.enabled() {
            return None;
        }
        let ip = palisade_core::canonical_ip(ip);
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
        {
            return hit.clone();
        }
        let info = self.lookup_uncached(ip);
        let v = (!info.is_empty()).then(|| Arc::new(info));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(ip, v.clone());
        v
    }

    fn record(db: &Option<Db>, ip: IpAddr) -> Option<Value> {
        db.as_ref()?.reader.lookup::<Value>(ip).ok().flatten()
    }

    fn lookup_uncached(&self, ip: IpAddr) -> GeoInfo {
        let mut g = GeoInfo::default();
        let loc = Self::record(&self.city, ip).or_else(|| Self::record(&self.country, ip));
        if let Some(v) = loc {
            g.country = s(&v["country"]["iso_code"]).or_else(|| s(&v["country_code"]));
            g.country_name = s(&v["country"]["names"]["en"]);
            g.city = s(&v["city"]["names"]["en"]).or_else(|| s(&v["city"]));
            g.latitude = v["location"]["latitude"]
                .as_f64()
                .or_else(|| v["latitude"].as_f64());
            g.longitude = v["location"]["longitude"]
                .as_f64()
                .or_else(|| v["longitude"].as_f64());
            // DB-IP marks unassigned/private space as "ZZ".
            if g.country.as_deref() == Some("ZZ") {
                g.country = None;
            }
        }
        if let Some(v) = Self::record(&self.asn, ip) {
            g.asn = v["autonomous_system_number"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok());
            g.as_org = s(&v["autonomous_system_organization"]);
        }
        g
    }

    /// Country code of `ip`, if known.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        self.lookup(ip).and_then(|g| g.country.clone())
    }
}
