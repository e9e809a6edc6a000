//! Country lookups for reports, through the one GeoIP module (`palisade-geo`, which reads
//! both GeoLite2 and DB-IP/ip-location-db layouts). Without a database, countries stay empty.

use palisade_config::Config;

pub use palisade_geo::{GeoError, GeoIp as GeoDb, DEFAULT_COUNTRY_PATHS};

/// The country database of a configuration: `[report] geoip_db`, else the dashboard's
/// `[server] geoip_country`, else the first of [`DEFAULT_COUNTRY_PATHS`]; `explicit` (a
/// command-line option) wins over all. A database named but unusable is an error.
pub fn for_config(
    cfg: Option<&Config>,
    explicit: Option<&std::path::Path>,
) -> Result<Option<GeoDb>, GeoError> {
    let configured = explicit.map(std::path::Path::to_path_buf).or_else(|| {
        let cfg = cfg?;
        let rep = cfg.report.as_ref().and_then(|r| r.geoip_db.as_deref());
        // The dashboard's database is optional there: only when it is installed.
        let srv = || {
            let p = cfg.server.as_ref()?.geoip_country.as_deref()?;
            Some(cfg.resolve(p)).filter(|p| p.is_file())
        };
        rep.map(|p| cfg.resolve(p)).or_else(srv)
    });
    GeoDb::find_country(configured.as_deref())
}
