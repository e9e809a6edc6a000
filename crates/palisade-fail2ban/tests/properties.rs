//! Property tests (proptest): fail2ban's INI reader, the Python-regex translation and whole
//! filter files never panic on any text; translated patterns compile or fail with an error.
//! CI runs 64 cases per property (`PROPTEST_CASES` overrides; `bench/fuzz/run.sh`).

use palisade_fail2ban::pyre::PyRegex;
use palisade_fail2ban::{FilterDef, LoadOptions};
use proptest::prelude::*;
use std::path::Path;

fn cfg() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

/// Pieces of Python regex syntax and fail2ban's tags.
const RX: &[&str] = &[
    "(",
    ")",
    "(?:",
    "(?P<user>",
    "(?P=user)",
    "(?!",
    "(?=",
    "(?<=a)",
    "(?<!b)",
    "(?i)",
    "(?x)",
    "[",
    "]",
    "[^",
    "\\",
    "\\d",
    "\\s",
    "\\S",
    "\\w",
    "\\b",
    "\\1",
    "\\x41",
    "\\u00e9",
    "\\Z",
    "\\A",
    "*",
    "+",
    "?",
    "*?",
    "{2,3}",
    "{,4}",
    "|",
    "^",
    "$",
    ".",
    "a",
    " ",
    "-",
    "#",
    "\n",
    "<HOST>",
    "<ADDR>",
    "<F-USER>",
    "</F-USER>",
    "<F-NOFAIL>",
    "</F-NOFAIL>",
    "<F-MLFID>",
    "</F-MLFID>",
    "<SKIPLINES>",
    "%(known/failregex)s",
    "%(__prefix_line)s",
    "<fid>",
    "(?(1)a|b)",
    "from ",
    "port \\d+",
    "\u{e9}",
    "\u{0}",
];

fn rx_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(0usize..RX.len(), 0..20)
            .prop_map(|v| v.into_iter().map(|i| RX[i]).collect::<String>()),
        ".{0,60}",
    ]
}

const INI: &[&str] = &[
    "[Definition]\n",
    "[INCLUDES]\n",
    "[Init]\n",
    "[DEFAULT]\n",
    "before = common.conf\n",
    "after = x.local\n",
    "failregex = ",
    "ignoreregex = ",
    "prefregex = ",
    "datepattern = ",
    "maxlines = 2\n",
    "_daemon = sshd\n",
    "  continued\n",
    "; comment\n",
    "# comment\n",
    "\n",
    "%(_daemon)s",
    "%(missing)s",
    "%(failregex)s",
    "<known/failregex>",
    "=",
    ":",
    "[",
    "]",
    "journalmatch = _SYSTEMD_UNIT=sshd.service\n",
    "mode = aggressive\n",
    "<mode>",
];

fn ini_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0usize..INI.len()).prop_map(|i| INI[i].to_string()),
            1 => rx_soup().prop_map(|r| format!("{r}\n")),
        ],
        0..16,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn ini_parse_never_panics(text in prop_oneof![ini_soup(), ".{0,200}"]) {
        let _ = palisade_fail2ban::ini::parse(&text, Path::new("fuzz.conf"));
    }

    #[test]
    fn python_regex_translation_never_panics(src in rx_soup(), ml in any::<bool>()) {
        if let Ok(rx) = PyRegex::parse(&src, ml) {
            let _ = rx.group_names();
            let _ = rx.needs_fancy();
            let _ = rx.guardable();
            let _ = rx.to_guarded();
            // The translations are patterns the engines accept or refuse with an error.
            let _ = regex::Regex::new(&rx.to_std());
            let _ = fancy_regex::Regex::new(&rx.to_fancy());
            let _ = fancy_regex::Regex::new(&rx.to_fancy_ascii());
        }
    }

    /// A whole filter file (includes, interpolation, tags, compilation) loads or fails with
    /// an error, never a panic.
    #[test]
    fn filter_files_load_or_fail(text in ini_soup(), fr in rx_soup()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fuzz.conf");
        std::fs::write(&p, format!("{text}\n[Definition]\nfailregex = {fr}\n")).unwrap();
        let _ = FilterDef::load(&p, &LoadOptions::default());
    }
}
