//! Embeds the dashboard (`web/dist`, built by `scripts/build-web.sh`) into the binary. When it
//! has not been built, a minimal page is embedded instead and cargo prints a warning, so a
//! plain `cargo build` never needs npm.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn mime(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "map" => "application/json",
        _ => "application/octet-stream",
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

const FALLBACK: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Palisade</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}
code{background:#eee;padding:0 .3em}</style></head>
<body><h1>Palisade</h1>
<p>The dashboard was not built into this binary. The API is available under
<code>/api/v1</code> (see <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>).</p>
<p>To build the dashboard, run <code>scripts/build-web.sh</code>, then rebuild palisade.</p>
</body></html>
"#;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let web = manifest.join("../../web");
    let dist = web.join("dist");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut files = Vec::new();
    let built = dist.join("index.html").is_file();
    if built {
        println!("cargo:rerun-if-changed={}", dist.display());
        walk(&dist, &mut files);
    } else {
        // Watch the folder that exists, so building the dashboard later triggers a rebuild.
        if web.is_dir() {
            println!("cargo:rerun-if-changed={}", web.display());
        } else {
            println!("cargo:rerun-if-changed=build.rs");
        }
        println!(
            "cargo:warning=web/dist is missing: embedding a minimal page instead of the \
             dashboard (run scripts/build-web.sh, then rebuild)"
        );
        let fb = out.join("fallback");
        std::fs::create_dir_all(&fb).unwrap();
        std::fs::write(fb.join("index.html"), FALLBACK).unwrap();
        files.push(fb.join("index.html"));
    }
    let root = if built {
        dist.clone()
    } else {
        out.join("fallback")
    };
    let mut code = String::from("/// Embedded files.\npub(crate) static ASSETS: &[Asset] = &[\n");
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // Source maps are not served.
        if rel.ends_with(".map") {
            continue;
        }
        let abs = f.canonicalize().unwrap();
        let _ = writeln!(
            code,
            "    Asset {{ path: {rel:?}, mime: {:?}, body: include_bytes!({:?}) }},",
            mime(f),
            abs.display().to_string()
        );
    }
    code.push_str("];\n");
    let _ = writeln!(
        code,
        "/// Whether `web/dist` was embedded.\npub(crate) const DASHBOARD_BUILT: bool = {built};"
    );
    std::fs::write(out.join("assets.rs"), code).unwrap();
}
