//! The dashboard's files, embedded at build time from `web/dist` (see `build.rs`; a minimal
//! page stands in when the dashboard was not built).

/// One embedded file.
pub(crate) struct Asset {
    /// Path relative to `web/dist` (`index.html`, `assets/index-3f2a.js`).
    pub path: &'static str,
    /// Content type.
    pub mime: &'static str,
    /// Contents.
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The file at `path`, if embedded.
pub(crate) fn get(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether the real dashboard (not the fallback page) is embedded.
#[allow(dead_code)]
pub(crate) fn dashboard_built() -> bool {
    DASHBOARD_BUILT
}
