//! Loader behaviour on small hand-written filters (no fail2ban files needed).

use palisade_core::Timestamp;
use palisade_fail2ban::date::TimeCx;
use palisade_fail2ban::{FilterDef, LoadError, LoadOptions, MatchOptions};
use std::path::{Path, PathBuf};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("palisade-f2b-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(p: &Path, init: &[(&str, &str)]) -> Result<std::sync::Arc<FilterDef>, LoadError> {
    FilterDef::load(
        p,
        &LoadOptions {
            init: init
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..LoadOptions::default()
        },
    )
}

fn hosts(def: &std::sync::Arc<FilterDef>, lines: &[&str]) -> Vec<Option<String>> {
    let mut m = def.matcher(MatchOptions::default());
    let cx = TimeCx {
        now: Timestamp::from_secs(1_124_013_600),
        tz: jiff::tz::TimeZone::UTC,
        default_offset_min: None,
    };
    let mut out = Vec::new();
    lines
        .iter()
        .map(|l| {
            out.clear();
            m.process_line(l, None, &cx, &mut out);
            out.iter().find(|r| !r.nofail).and_then(|r| r.fid.clone())
        })
        .collect()
}

#[test]
fn includes_interpolation_and_overrides() {
    let d = Dir::new("ok");
    d.file(
        "common.conf",
        "[DEFAULT]\n_daemon = \\S*\n__prefix = \\s*%(_daemon)s\\[\\d+\\]:\\s+\n",
    );
    let f = d.file(
        "x.conf",
        "[INCLUDES]\nbefore = common.conf\n\n[Definition]\n_daemon = food\n\
         failregex = ^%(__prefix)sbad <F-USER>\\S+</F-USER> from <HOST>$\n\
         \x20           ^%(__prefix)s<mode-re>\n\
         mode-re-normal = never <HOST>\nmode-re-extra = odd from <ADDR>\n\
         mode-re = <mode-re-<mode>>\n[Init]\nmode = normal\n",
    );
    d.file(
        "x.local",
        "[Definition]\nfailregex = %(known/failregex)s\n            ^%(__prefix)slocal from <HOST>\n",
    );
    let def = load(&f, &[]).unwrap();
    assert_eq!(def.failregex_count(), 3);
    let got = hosts(
        &def,
        &[
            "Aug 14 11:00:00 food[1]: bad bob from 192.0.2.1",
            "Aug 14 11:00:00 food[1]: odd from 192.0.2.2",
            "Aug 14 11:00:00 food[1]: local from 192.0.2.3",
        ],
    );
    assert_eq!(
        got,
        vec![Some("192.0.2.1".into()), None, Some("192.0.2.3".into())]
    );
    let def = load(&f, &[("mode", "extra")]).unwrap();
    let got = hosts(&def, &["Aug 14 11:00:00 food[1]: odd from 192.0.2.2"]);
    assert_eq!(got, vec![Some("192.0.2.2".into())]);
}

#[test]
fn errors_name_file_option_and_reason() {
    let d = Dir::new("err");
    let f = d.file("badre.conf", "[Definition]\nfailregex = ^x (<HOST>\n");
    let e = load(&f, &[]).unwrap_err().to_string();
    assert!(
        e.contains("badre.conf") && e.contains("failregex[0]"),
        "{e}"
    );

    let f = d.file(
        "tag.conf",
        "[Definition]\nfailregex = ^x <HOST> </F-USER>\n",
    );
    let e = load(&f, &[]).unwrap_err();
    assert!(matches!(e, LoadError::UnknownTag { .. }), "{e}");

    let f = d.file("noid.conf", "[Definition]\nfailregex = ^x y$\n");
    let e = load(&f, &[]).unwrap_err().to_string();
    assert!(e.contains("no failure-id group"), "{e}");

    d.file(
        "a.conf",
        "[INCLUDES]\nbefore = b.conf\n[Definition]\nfailregex = <HOST>\n",
    );
    d.file("b.conf", "[INCLUDES]\nbefore = a.conf\n");
    let e = load(&d.0.join("a.conf"), &[]).unwrap_err();
    assert!(matches!(e, LoadError::IncludeLoop { .. }), "{e}");

    let f = d.file(
        "miss.conf",
        "[INCLUDES]\nbefore = nope.conf\n[Definition]\nfailregex = <HOST>\n",
    );
    let e = load(&f, &[]).unwrap_err();
    assert!(matches!(e, LoadError::MissingInclude { .. }), "{e}");

    let f = d.file("nofr.conf", "[Definition]\nignoreregex = x\n");
    let e = load(&f, &[]).unwrap_err();
    assert!(matches!(e, LoadError::NoFailregex { .. }), "{e}");

    let f = d.file(
        "interp.conf",
        "[Definition]\nfailregex = %(undefined)s <HOST>\n",
    );
    let e = load(&f, &[]).unwrap_err();
    assert!(matches!(e, LoadError::Interpolation { .. }), "{e}");

    let f = d.file(
        "dp.conf",
        "[Definition]\nfailregex = <HOST>\ndatepattern = %%q\n",
    );
    let e = load(&f, &[]).unwrap_err().to_string();
    assert!(e.contains("datepattern"), "{e}");
}
