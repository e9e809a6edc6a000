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

/// What the server answers for `path` (the URL path without its leading `/`): the embedded
/// file of that path; else, for a path that names a dashboard page, `index.html` (the
/// single-page app routes it: `ips/203.0.113.7`, `decisions`); `None` (404) only for paths
/// that can only mean a file: under `assets/`, or ending in a file extension the build
/// produces (`favicon.ico`, `main.js`). A dot alone does not make a file: IPv4 addresses
/// and host names in page URLs have dots.
pub(crate) fn resolve(path: &str) -> Option<&'static Asset> {
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(a) = get(path) {
        return Some(a);
    }
    if is_file_path(path) {
        return None;
    }
    get("index.html")
}

/// Whether `path` can only name a file (so a miss is a 404, not a page).
fn is_file_path(path: &str) -> bool {
    const FILE_EXTENSIONS: &[&str] = &[
        "html",
        "js",
        "mjs",
        "css",
        "map",
        "json",
        "svg",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "webp",
        "ico",
        "woff",
        "woff2",
        "ttf",
        "txt",
        "xml",
        "wasm",
        "webmanifest",
    ];
    if path.starts_with("assets/") {
        return true;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => {
            FILE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
        }
        _ => false,
    }
}

/// Whether the real dashboard (not the fallback page) is embedded.
#[allow(dead_code)]
pub(crate) fn dashboard_built() -> bool {
    DASHBOARD_BUILT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_with_dots_are_pages_and_missing_files_are_not() {
        let index = get("index.html").expect("index.html is always embedded");
        for page in [
            "",
            "ips/203.0.113.7",
            "ip/203.0.113.7",
            "ips/2001:db8::1",
            "ips/198.51.100.0%2F24",
            "decisions",
            "jails",
            "live",
            "some/deep/link.example.org",
        ] {
            let a = resolve(page).unwrap_or_else(|| panic!("{page:?} must be a page"));
            assert!(std::ptr::eq(a, index), "{page:?} answered {}", a.path);
        }
        for file in [
            "assets/missing-1234.js",
            "assets/anything",
            "favicon.ico",
            "main.js",
            "ips/x/style.css",
            "robots.txt",
        ] {
            assert!(resolve(file).is_none(), "{file:?} must be a 404");
        }
        // Every embedded file is served as itself.
        for a in ASSETS {
            assert!(std::ptr::eq(resolve(a.path).unwrap(), a));
        }
    }
}
