//! The framing corpus (`tests/data/framing/sshd.log`): text an attacker chooses (user names,
//! certificate key ids, hostbased client names) never supplies the blamed address.

use palisade_core::Timestamp;
use palisade_filter::{build_builtin, BuiltinOptions, LineCtx, Mode, Outcome};
use std::net::IpAddr;

/// `(expected address or None, line)` records of a corpus file.
fn corpus(name: &str) -> Vec<(Option<IpAddr>, String)> {
    let p = format!("{}/tests/data/framing/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (e, line) = l.split_once('\t').expect("EXPECTED<TAB>LINE");
            let e = (e != "-").then(|| e.parse().expect("address"));
            (e, line.to_string())
        })
        .collect()
}

fn attacker_text(ip: IpAddr) -> bool {
    let s = ip.to_string();
    s.starts_with("203.0.113.") || s.starts_with("198.51.100.")
}

#[test]
fn framing_corpus_blames_only_the_peer() {
    let recs = corpus("sshd.log");
    assert!(recs.len() >= 25);
    for mode in [Mode::Aggressive, Mode::Normal] {
        let opts = BuiltinOptions {
            mode,
            tz: jiff::tz::TimeZone::UTC,
        };
        let mut f = build_builtin("sshd", &opts).unwrap();
        let ctx = LineCtx {
            now: Timestamp::parse_rfc3339("2024-06-01T00:00:00Z").unwrap(),
            source_time: None,
            journal: None,
        };
        let mut wrong = Vec::new();
        let mut blamed = 0;
        for (exp, line) in &recs {
            let mut out = Vec::new();
            let o = f.process(line.as_bytes(), &ctx, &mut out);
            for e in &out {
                if attacker_text(e.ip) || Some(e.ip) != *exp {
                    wrong.push(format!("{} <- {line}", e.ip));
                }
            }
            if mode == Mode::Aggressive {
                // Every line with an expected address is attributed (no over-refusal).
                assert_eq!(
                    exp.is_some(),
                    o == Outcome::Matched,
                    "{mode:?} {o:?}: {line}"
                );
            }
            blamed += out.len();
        }
        assert!(
            wrong.is_empty(),
            "{mode:?}: wrong-address blames:\n{}",
            wrong.join("\n")
        );
        assert!(blamed > 0);
        // The refused lines are counted, not silently dropped.
        assert!(f.stats().ambiguous >= 3, "{:?}", f.stats());
    }
}
