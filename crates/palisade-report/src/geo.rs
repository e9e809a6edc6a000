//! Optional country lookup in a MaxMind-format (`.mmdb`) GeoIP database, such as GeoLite2
//! Country or DB-IP's free country database. Without one, countries stay empty.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Places searched when no database is configured (`scripts/install-geoip.sh`, Debian's
/// `geoipupdate` and `dbip-country-lite` packages install there).
pub const DEFAULT_PATHS: &[&str] = &[
    "/var/lib/palisade/geoip/dbip-country.mmdb",
    "/var/lib/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/GeoLite2-Country.mmdb",
    "/usr/share/GeoIP/dbip-country-lite.mmdb",
];

/// An open GeoIP database.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("path", &self.path).finish()
    }
}

impl GeoDb {
    /// Opens a database file.
    pub fn open(path: &Path) -> Result<Self, crate::analyze::AnalyzeError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| {
            crate::analyze::AnalyzeError::Geo {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        Ok(GeoDb {
            reader,
            path: path.to_path_buf(),
        })
    }

    /// `configured` if given (an error if it cannot be opened), else the first of
    /// [`DEFAULT_PATHS`] that opens, else `None`.
    pub fn find(configured: Option<&Path>) -> Result<Option<Self>, crate::analyze::AnalyzeError> {
        if let Some(p) = configured {
            return Self::open(p).map(Some);
        }
        Ok(DEFAULT_PATHS
            .iter()
            .map(Path::new)
            .filter(|p| p.is_file())
            .find_map(|p| Self::open(p).ok()))
    }

    /// ISO 3166 country code of `ip`, if known.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let c: maxminddb::geoip2::Country<'_> = self.reader.lookup(ip).ok()?;
        c.country
            .and_then(|c| c.iso_code)
            .or_else(|| c.registered_country.and_then(|c| c.iso_code))
            .map(str::to_owned)
    }
}
