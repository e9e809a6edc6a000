//! Property tests for the messages that cross a process boundary (issue 19: every parser of
//! outside input): whatever bytes a control client or a fleet peer sends, reading them is an
//! error or a message, never a panic, and well-formed messages survive a round trip exactly.
//! CI runs the default case count below; `bench/fuzz/run.sh` raises `PROPTEST_CASES`.

use ipnet::IpNet;
use palisade_core::{Decision, Origin, Timestamp};
use palisade_proto::control::{Reply, Request, Response};
use palisade_proto::fleet::{Envelope, Hello};
use palisade_proto::StatusReport;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), l)
            .unwrap()
            .trunc()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), l)
            .unwrap()
            .trunc()),
    ]
}

/// Text with the characters hostile input likes: quotes, backslashes, control characters,
/// non-ASCII, JSON syntax.
fn hostile_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('"'),
            Just('\\'),
            Just('\n'),
            Just('\r'),
            Just('\u{1b}'),
            Just('{'),
            Just('}'),
        ],
        0..64,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn any_decision() -> impl Strategy<Value = Decision> {
    (
        any_net(),
        hostile_text(),
        hostile_text(),
        0i64..4_000_000_000,
        proptest::option::of(1i64..400_000_000),
        any::<bool>(),
        0u32..100,
        prop_oneof![
            Just(Origin::Jail),
            Just(Origin::Recidive),
            Just(Origin::Manual),
            Just(Origin::Fail2ban),
            Just(Origin::Fleet),
        ],
    )
        .prop_map(
            |(target, jail, reason, created, len, simulated, level, origin)| Decision {
                id: 0,
                target,
                jail,
                origin,
                reason,
                created: Timestamp::from_secs(created),
                expires: len.map(|l| Timestamp::from_secs(created + l)),
                simulated,
                level,
            },
        )
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Status),
        Just(Request::Reload),
        (
            any_net(),
            proptest::option::of(any::<u64>()),
            hostile_text()
        )
            .prop_map(|(target, duration_secs, reason)| Request::Ban {
                target,
                duration_secs,
                reason,
            }),
        any_net().prop_map(|target| Request::Unban { target }),
        proptest::collection::vec(any_net(), 0..8)
            .prop_map(|extra| Request::SetAllowlist { extra }),
        any_decision().prop_map(|decision| Request::Record { decision }),
    ]
}

/// Every reader of outside input, on the same bytes: none may panic.
fn read_all(s: &str) {
    let _ = serde_json::from_str::<Request>(s);
    let _ = serde_json::from_str::<Response>(s);
    let _ = serde_json::from_str::<Envelope<Hello>>(s);
    let _ = serde_json::from_str::<StatusReport>(s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_text_never_panics(s in hostile_text()) {
        read_all(&s);
    }

    #[test]
    fn requests_round_trip(r in any_request()) {
        let s = serde_json::to_string(&r).unwrap();
        prop_assert!(!s.contains('\n'), "one request per line: {}", s);
        let back: Request = serde_json::from_str(&s).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn mutated_requests_are_read_or_refused(r in any_request(), at in any::<usize>(), c in any::<char>(), cut in any::<bool>()) {
        let mut s = serde_json::to_string(&r).unwrap();
        let mut i = at % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        if cut {
            s.truncate(i);
        } else {
            s.insert(i, c);
        }
        read_all(&s);
    }

    #[test]
    fn replies_round_trip(d in any_decision(), n in any::<u64>()) {
        for reply in [Reply::Banned(d.clone()), Reply::Lifted(n), Reply::Recorded(d.clone())] {
            let r = Response::Ok(reply);
            let back: Response = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            prop_assert_eq!(back, r);
        }
    }

    #[test]
    fn fleet_decoders_never_panic(text in hostile_text(), v in 0u16..4, ty in prop_oneof![
        Just("hello"), Just("events"), Just("gap"), Just("checksum"), Just("pong"),
        Just("local_ban"), Just("bans"), Just("snapshot"), Just("ping"), Just("welcome"),
    ]) {
        let framed = format!(r#"{{"v":{v},"msg":{{"type":"{ty}","x":{}}}}}"#,
            serde_json::to_string(&text).unwrap());
        for s in [text.as_str(), framed.as_str()] {
            let _ = palisade_proto::fleet::decode_agent(s);
            let _ = palisade_proto::fleet::decode_server(s);
        }
    }

    #[test]
    fn hello_round_trips(agent in hostile_text(), caps in proptest::collection::vec(hostile_text(), 0..4), v in any::<u16>()) {
        let h = Envelope { v, msg: Hello { protocol_version: v, capabilities: caps, agent, software_version: "0.1.0".into(), epoch: 1, ban_cursor: 0, agent_time_us: 0 } };
        let back: Envelope<Hello> = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        prop_assert_eq!(back, h);
    }
}

/// Deep nesting is refused by the JSON reader's recursion limit, not by a stack overflow.
#[test]
fn deeply_nested_input_is_an_error() {
    for open in ["[", "{\"op\":"] {
        let s = open.repeat(100_000);
        read_all(&s);
        assert!(serde_json::from_str::<Request>(&s).is_err());
    }
}

/// A bare address is read as its host network; anything else that is not an address or a
/// network is refused.
#[test]
fn ban_targets_are_parsed_not_trusted() {
    let ok: Request =
        serde_json::from_str(r#"{"op":"ban","target":"203.0.113.7","duration_secs":60}"#).unwrap();
    assert!(matches!(ok, Request::Ban { target, .. } if target.to_string() == "203.0.113.7/32"));
    for bad in [
        "203.0.113.7; rm -rf /",
        "$(reboot)",
        "203.0.113.256",
        "::ffff:1.2.3.4/200",
        "",
    ] {
        let s = format!(
            r#"{{"op":"ban","target":{}}}"#,
            serde_json::to_string(bad).unwrap()
        );
        assert!(serde_json::from_str::<Request>(&s).is_err(), "{bad}");
    }
}
