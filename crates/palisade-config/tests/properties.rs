//! Property tests (proptest): configuration text of any shape is refused with an error (file,
//! line, message), never a panic. CI runs 64 cases per property (`PROPTEST_CASES` overrides;
//! `bench/fuzz/run.sh` runs many more).

use palisade_config::Config;
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

const PIECES: &[&str] = &[
    "[general]\n",
    "[[jails]]\n",
    "[allowlist]\n",
    "[responders]\n",
    "[server]\n",
    "[store]\n",
    "name = \"sshd\"\n",
    "filter = \"sshd\"\n",
    "filter = \"nope\"\n",
    "files = [\"/var/log/auth.log\"]\n",
    "max_retry = 5\n",
    "max_retry = -1\n",
    "max_retry = 99999999999999999999\n",
    "find_time = \"10m\"\n",
    "ban_time = \"200w\"\n",
    "ban_time = \"0s\"\n",
    "ban_time = \"1e30s\"\n",
    "addresses = [\"10.0.0.0/8\", \"::ffff:1.2.3.0/120\", \"x\"]\n",
    "log_level = \"debug\"\n",
    "tz = \"Europe/Berlin\"\n",
    "tz = \"Nowhere/X\"\n",
    "listen = \"127.0.0.1:8080\"\n",
    "url = \"postgres://u:p@h/db\"\n",
    "action = \"{ip}}\"\n",
    "= 1\n",
    "[",
    "]",
    "\"",
    "'''",
    "\\u0000",
    "\u{0}",
    "key = \n",
    "a.b.c = 1\n",
    "x = { y = [1, {z = 2}] }\n",
    "\n",
    "# c\n",
    "mode = \"aggressive\"\n",
    "v6_prefix = 129\n",
    "max_line = 0\n",
    "enabled = maybe\n",
];

fn toml_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(0usize..PIECES.len(), 0..24)
            .prop_map(|v| v.into_iter().map(|i| PIECES[i]).collect::<String>()),
        1 => ".{0,300}",
    ]
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn config_text_is_accepted_or_refused_with_an_error(text in toml_soup()) {
        match Config::parse(&text, Path::new("/etc/palisade/fuzz.toml"), &["sshd", "nginx_access"]) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
