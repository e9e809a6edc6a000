//! Golden tests for the sshd forms seen in real logs (issue 14): rsyslog's repeated
//! messages, sysklogd's `last message repeated`, lines keyed only by the sshd pid, the old
//! `sshd(pam_unix)` format, and every common line header.
//!
//! The lines are written for Palisade in the shapes of the elastic examples `auth.log`
//! (Apache-2.0) and loghub's `Linux` and `OpenSSH` logs (loghub: Jieming Zhu, Shilin He,
//! Pinjia He, Jinyang Liu, Michael R. Lyu, "Loghub: A Large Collection of System Log Datasets
//! for AI-driven Log Analytics", ISSRE 2023, https://github.com/logpai/loghub); addresses
//! are documentation ranges.

use palisade_core::{Event, Timestamp};
use palisade_filter::{build_builtin, BuiltinOptions, Filter, LineCtx, Mode, Outcome};

fn filter(mode: Mode) -> Box<dyn Filter> {
    build_builtin(
        "sshd",
        &BuiltinOptions {
            mode,
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
        },
    )
    .unwrap()
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn feed(f: &mut dyn Filter, line: &str) -> (Outcome, Vec<Event>) {
    let ctx = LineCtx {
        now: t("2024-06-01T00:00:00Z"),
        source_time: None,
        journal: None,
    };
    let mut out = Vec::new();
    let o = f.process(line.as_bytes(), &ctx, &mut out);
    (o, out)
}

fn failures(ev: &[Event]) -> usize {
    ev.iter().filter(|e| e.failure).count()
}

#[test]
fn rsyslog_repeated_counts_n_failures() {
    let mut f = filter(Mode::Normal);
    let (o, ev) = feed(&mut *f, "Mar 29 23:18:33 ip-10-0-0-1 sshd[6402]: message repeated 5 times: [ Failed password for root from 192.0.2.106 port 56338 ssh2]");
    assert_eq!(o, Outcome::Matched);
    assert_eq!(failures(&ev), 5);
    assert!(ev.iter().all(|e| e.ip.to_string() == "192.0.2.106"
        && &*e.rule == "failed_password"
        && e.field("repeated") == Some("5")));
    // A repeated success is never counted.
    let (o, ev) = feed(&mut *f, "Mar 29 23:18:40 ip-10-0-0-1 sshd[6403]: message repeated 2 times: [ Accepted password for erin from 192.0.2.7 port 1 ssh2]");
    assert_eq!((o, ev.len()), (Outcome::Missed, 0));
    // A repeated no-failure observation is recorded once.
    let (_, ev) = feed(&mut *f, "Mar 29 23:18:41 ip-10-0-0-1 sshd[6404]: message repeated 3 times: [ pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.8  user=root]");
    assert_eq!((ev.len(), failures(&ev)), (1, 0));
    // The count is bounded.
    let (_, ev) = feed(&mut *f, "Mar 29 23:18:42 ip-10-0-0-1 sshd[6405]: message repeated 4000000000 times: [ Failed password for root from 192.0.2.9 port 1 ssh2]");
    assert_eq!(ev.len() as u32, palisade_filter::sshd::REPEAT_MAX);
    // Malformed brackets are no event.
    let (o, _) = feed(&mut *f, "Mar 29 23:18:42 ip-10-0-0-1 sshd[6405]: message repeated 4 times: Failed password for root from 192.0.2.9 port 1 ssh2");
    assert_eq!(o, Outcome::Missed);
}

#[test]
fn sysklogd_last_message_repeated() {
    let mut f = filter(Mode::Normal);
    let (_, ev) = feed(
        &mut *f,
        "Jun 14 15:16:01 combo sshd[19939]: Failed password for root from 192.0.2.40 port 1 ssh2",
    );
    assert_eq!(failures(&ev), 1);
    let (o, ev) = feed(
        &mut *f,
        "Jun 14 15:16:02 combo last message repeated 3 times",
    );
    assert_eq!((o, failures(&ev)), (Outcome::Matched, 3));
    assert!(ev.iter().all(|e| e.ip.to_string() == "192.0.2.40"));
    // Only the line right after sshd's failure repeats it.
    feed(
        &mut *f,
        "Jun 14 15:16:01 combo sshd[19939]: Failed password for root from 192.0.2.40 port 1 ssh2",
    );
    feed(
        &mut *f,
        "Jun 14 15:16:03 combo su(pam_unix)[2077]: session opened for user htt by (uid=0)",
    );
    let (o, ev) = feed(
        &mut *f,
        "Jun 14 15:16:04 combo last message repeated 2 times",
    );
    assert_eq!((o, ev.len()), (Outcome::Missed, 0));
    assert_eq!(
        f.stats().unreadable_total(),
        0,
        "a known form, not unreadable"
    );
}

#[test]
fn pid_keyed_lines_follow_their_connection() {
    let mut f = filter(Mode::Aggressive);
    for l in [
        "Mar 27 14:01:30 ip-10-0-0-1 sshd[2938]: Failed password for root from 192.0.2.221 port 37107 ssh2",
        "Mar 27 14:01:39 ip-10-0-0-1 sshd[2938]: error: maximum authentication attempts exceeded for root from 192.0.2.221 port 37107 ssh2 [preauth]",
    ] {
        assert_eq!(feed(&mut *f, l).0, Outcome::Matched);
    }
    for (l, rule, user) in [
        ("Mar 27 14:01:39 ip-10-0-0-1 sshd[2938]: Disconnecting: Too many authentication failures [preauth]", "too_many_auth_failures", None),
        ("Dec 10 07:13:56 ip-10-0-0-1 sshd[2938]: Disconnecting: Too many authentication failures for root [preauth]", "too_many_auth_failures", Some("root")),
        ("Dec 10 07:13:56 ip-10-0-0-1 sshd[2938]: Disconnecting: Too many authentication failures for invalid user ftp [preauth]", "too_many_auth_failures", Some("ftp")),
        ("Mar 27 14:01:39 ip-10-0-0-1 sshd[2938]: error: maximum authentication attempts exceeded for root [preauth]", "max_auth_attempts", Some("root")),
        ("Mar 27 14:01:39 ip-10-0-0-1 sshd[2938]: Connection closed by authenticating user root [preauth]", "preauth_close", Some("root")),
        ("Mar 27 14:01:39 ip-10-0-0-1 sshd[2938]: Disconnected from invalid user ftp [preauth]", "preauth_close", Some("ftp")),
    ] {
        let (o, ev) = feed(&mut *f, l);
        assert_eq!(o, Outcome::Matched, "{l}");
        assert_eq!(ev[0].ip.to_string(), "192.0.2.221", "{l}");
        assert_eq!((&*ev[0].rule, ev[0].user.as_deref()), (rule, user), "{l}");
        assert!(ev[0].failure);
    }
    // Another pid, another host with the same pid, no pid: nothing to attribute to.
    for l in [
        "Mar 27 14:01:39 ip-10-0-0-1 sshd[2939]: Disconnecting: Too many authentication failures [preauth]",
        "Mar 27 14:01:39 otherhost sshd[2938]: Disconnecting: Too many authentication failures [preauth]",
        "Mar 27 14:01:39 ip-10-0-0-1 sshd: Disconnecting: Too many authentication failures [preauth]",
    ] {
        assert_eq!(feed(&mut *f, l).0, Outcome::Ignored, "{l}");
    }
    // LogLevel VERBOSE's connection line is enough.
    feed(&mut *f, "Mar 27 14:02:00 ip-10-0-0-1 sshd[3000]: Connection from 2001:db8::5 port 4 on 192.0.2.1 port 22 rdomain \"\"");
    let (_, ev) = feed(&mut *f, "Mar 27 14:02:01 ip-10-0-0-1 sshd[3000]: Disconnecting: Too many authentication failures [preauth]");
    assert_eq!(ev[0].ip.to_string(), "2001:db8::5");
    // A new connection of a reused pid replaces the old one.
    feed(&mut *f, "Mar 27 15:00:00 ip-10-0-0-1 sshd[2938]: Connection from 192.0.2.99 port 4 on 192.0.2.1 port 22");
    let (_, ev) = feed(&mut *f, "Mar 27 15:00:01 ip-10-0-0-1 sshd[2938]: Disconnecting: Too many authentication failures [preauth]");
    assert_eq!(ev[0].ip.to_string(), "192.0.2.99");
}

#[test]
fn pid_memory_is_bounded() {
    let mut f = filter(Mode::Normal);
    // 100k connections: the table keeps a bounded number; old ones are evicted, never
    // confused with a newer pid.
    for pid in 0..100_000u32 {
        let l = format!(
            "Mar 27 14:01:30 h sshd[{pid}]: Failed password for root from 192.0.2.1 port 1 ssh2"
        );
        feed(&mut *f, &l);
    }
    let (o, _) = feed(
        &mut *f,
        "Mar 27 14:01:30 h sshd[5]: Disconnecting: Too many authentication failures [preauth]",
    );
    assert_eq!(o, Outcome::Ignored, "evicted long ago");
    let (o, _) = feed(
        &mut *f,
        "Mar 27 14:01:30 h sshd[99999]: Disconnecting: Too many authentication failures [preauth]",
    );
    assert_eq!(o, Outcome::Matched);
}

#[test]
fn old_pam_format() {
    let mut f = filter(Mode::Normal);
    let (o, ev) = feed(&mut *f, "Jun 11 09:45:45 combo sshd(pam_unix)[6472]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.34  user=root");
    assert_eq!(o, Outcome::Matched);
    assert_eq!(
        (
            ev[0].ip.to_string().as_str(),
            &*ev[0].rule,
            ev[0].user.as_deref(),
            ev[0].failure
        ),
        ("192.0.2.34", "pam_auth_failure", Some("root"), true)
    );
    let (_, ev) = feed(&mut *f, "Jun 10 17:16:34 combo sshd(pam_unix)[3353]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.35 ");
    assert_eq!((ev[0].user.as_deref(), ev[0].failure), (None, true));
    // A host name is never resolved: refused (counted as ignored).
    let (o, ev) = feed(&mut *f, "Jun 11 09:45:55 combo sshd(pam_unix)[6474]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=unknown.example.net  user=root");
    assert_eq!((o, ev.len()), (Outcome::Ignored, 0));
    // The summary repeats failures already logged.
    let (_, ev) = feed(&mut *f, "Aug  7 08:58:56 combo sshd(pam_unix)[16455]: 7 more authentication failures; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.36  user=root");
    assert_eq!(failures(&ev), 0);
    // Other lines of the old format are not failures.
    for l in [
        "Jun 11 09:45:45 combo sshd(pam_unix)[6472]: check pass; user unknown",
        "Jun 11 09:45:45 combo sshd(pam_unix)[6472]: session opened for user test by (uid=509)",
        "Jun 11 09:45:45 combo su(pam_unix)[6472]: authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=192.0.2.37",
    ] {
        assert_eq!(feed(&mut *f, l).0, Outcome::Missed, "{l}");
    }
    // With sshd's own line in the same file, one attempt is counted once.
    let mut f = filter(Mode::Normal);
    let (_, a) = feed(&mut *f, "Jun 11 09:45:45 combo sshd(pam_unix)[7000]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.38  user=root");
    let (_, b) = feed(
        &mut *f,
        "Jun 11 09:45:47 combo sshd[7000]: Failed password for root from 192.0.2.38 port 1 ssh2",
    );
    let (_, c) = feed(
        &mut *f,
        "Jun 11 09:45:50 combo sshd[7000]: Failed password for root from 192.0.2.38 port 1 ssh2",
    );
    assert_eq!((failures(&a), failures(&b), failures(&c)), (1, 0, 1));
}

#[test]
fn every_common_header() {
    let msg = "Failed password for root from 192.0.2.50 port 4 ssh2";
    let utc = t("2024-05-01T08:00:03Z");
    let local = t("2024-05-01T08:00:03Z"); // 10:00:03 in Berlin (CEST)
    for (l, want) in [
        ("<38>1 2024-05-01T10:00:03.123456+02:00 host sshd 104 - - MSG", t("2024-05-01T08:00:03.123456Z")),
        ("<38>1 2024-05-01T08:00:03Z host sshd-session 104 - [origin ip=\"192.0.2.1\"] \u{feff}MSG", utc),
        ("<38>May  1 10:00:03 host sshd[104]: MSG", local),
        ("2024-05-01T10:00:03+0200 host sshd[104]: MSG", local),
        ("2024-05-01T10:00:03+02:00 host sshd[104]: MSG", local),
        ("2024-05-01T08:00:03Z host sshd[104]: MSG", utc),
        ("2024-05-01 10:00:03 host sshd[104]: MSG", local),
        ("2024-05-01T10:00:03 host sshd[104]: MSG", local),
        ("2024-05-01T08:00:03.5Z host sshd[104]: MSG", t("2024-05-01T08:00:03.5Z")),
        ("May 01 10:00:03.123456 host sshd[104]: MSG", t("2024-05-01T08:00:03.123456Z")),
        ("Wed 2024-05-01 10:00:03 CEST host sshd[104]: MSG", local),
        ("Wed 2024-05-01 08:00:03 UTC host sshd[104]: MSG", utc),
        ("1714550403 host sshd[104]: MSG", utc),
        ("May  1 10:00:03 host sshd[104]: [ID 800047 auth.info] MSG", local),
        ("May  1 10:00:03 host authpriv.info sshd[104]: MSG", local),
        ("May  1 10:00:03 host /usr/sbin/sshd[104]: MSG", local),
        ("May  1 10:00:03 host sshd: MSG", local),
        ("May  1 10:00:03 host sshd-session[104]: MSG", local),
        ("May  1 10:00:03 host sshd-auth[104]: MSG", local),
        ("May  1 10:00:03 sshd[104]: MSG", local),
    ] {
        let line = l.replace("MSG", msg);
        let mut f = filter(Mode::Normal);
        let (o, ev) = feed(&mut *f, &line);
        assert_eq!(o, Outcome::Matched, "{line}");
        assert_eq!(ev[0].ip.to_string(), "192.0.2.50", "{line}");
        assert_eq!(ev[0].time, want, "{line}");
        assert_eq!(f.stats().unreadable_total(), 0);
    }
}

#[test]
fn unreadable_headers_are_counted() {
    let mut f = filter(Mode::Normal);
    for l in [
        "2024-05-01X10:00:03Z host sshd[1]: Failed password for root from 192.0.2.1 port 4 ssh2",
        "May  1 10:00:03 host two words sshd[1]: Failed password for root from 192.0.2.1 port 4 ssh2",
        "<38>1 2024-05-01T10:00:03Z host sshd 1 - [broken Failed password",
        "-- Boot 4b3fe0 --",
        "",
    ] {
        assert_eq!(feed(&mut *f, l).0, Outcome::Missed, "{l}");
    }
    let s = f.stats();
    let reasons: Vec<_> = s.unreadable_reasons().collect();
    assert_eq!(
        reasons,
        [
            ("no_timestamp", 1),
            ("bad_timestamp", 1),
            ("no_tag", 1),
            ("bad_rfc5424", 1),
            ("empty", 1)
        ]
    );
    // Feb 30 or `Foo` have the shape but not the values: the event keeps the time of
    // reading and the line is counted.
    for l in [
        "2024-02-30T10:00:03Z host sshd[1]: Failed password for root from 192.0.2.1 port 4 ssh2",
        "Foo  1 10:00:03 host sshd[1]: Failed password for root from 192.0.2.1 port 4 ssh2",
    ] {
        let (o, ev) = feed(&mut *f, l);
        assert_eq!(o, Outcome::Matched);
        assert_eq!(ev[0].time, t("2024-06-01T00:00:00Z"));
    }
    assert_eq!(f.stats().unreadable_header, [1, 3, 1, 1, 1]);
}

#[test]
fn journald_entries_key_connections_by_their_pid() {
    let mut f = filter(Mode::Normal);
    let run = |f: &mut dyn Filter, pid: &str, msg: &str| {
        let j = palisade_core::JournalFields {
            hostname: Some("bastion"),
            pid: Some(pid),
            ..Default::default()
        };
        let ctx = LineCtx {
            now: t("2024-06-01T00:00:00Z"),
            source_time: Some(t("2024-05-01T10:00:00Z")),
            journal: Some(j),
        };
        let mut out = Vec::new();
        let o = f.process(msg.as_bytes(), &ctx, &mut out);
        (o, out)
    };
    run(
        &mut *f,
        "4242",
        "Failed password for root from 192.0.2.60 port 1 ssh2",
    );
    let (o, ev) = run(
        &mut *f,
        "4242",
        "Disconnecting: Too many authentication failures [preauth]",
    );
    assert_eq!(o, Outcome::Matched);
    assert_eq!(ev[0].ip.to_string(), "192.0.2.60");
    assert_eq!(ev[0].time, t("2024-05-01T10:00:00Z"));
    let (o, _) = run(
        &mut *f,
        "4243",
        "Disconnecting: Too many authentication failures [preauth]",
    );
    assert_eq!(o, Outcome::Ignored);
}

#[test]
fn kernel_lines_in_every_header_form() {
    let msg = "[UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=192.0.2.70 DST=192.0.2.1 LEN=40 PROTO=TCP SPT=4 DPT=22";
    for l in [
        "<4>1 2024-05-01T08:00:03Z host kernel - - - MSG",
        "May 01 10:00:03.000000 host kernel: MSG",
        "Wed 2024-05-01 10:00:03 CEST host kernel: MSG",
        "2024-05-01T10:00:03+02:00 host kern.warning kernel: MSG",
    ] {
        let line = l.replace("MSG", msg);
        let mut f = build_builtin(
            "kernel_fw",
            &BuiltinOptions {
                mode: Mode::Normal,
                tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
            },
        )
        .unwrap();
        let (o, ev) = feed(&mut *f, &line);
        assert_eq!(o, Outcome::Matched, "{line}");
        assert_eq!(ev[0].ip.to_string(), "192.0.2.70");
        assert_eq!(ev[0].time, t("2024-05-01T08:00:03Z"), "{line}");
    }
}

/// `Failed none for invalid user …` and a client's `Received disconnect … 3: …: Auth fail`
/// (shapes of loghub's OpenSSH log, where fail2ban's normal mode counts them): failures in
/// both modes, the address always sshd's own; a valid user's `Failed none` (routine at
/// LogLevel VERBOSE, where every client tries `none` first) only in Aggressive mode.
#[test]
fn failed_none_and_client_auth_fail() {
    for mode in [Mode::Normal, Mode::Aggressive] {
        let mut f = filter(mode);
        let (_, ev) = feed(&mut *f, "Dec 10 08:24:40 gw sshd[24363]: Failed none for invalid user 0 from 198.51.100.180 port 49811 ssh2");
        assert_eq!(failures(&ev), 1, "{mode:?}");
        assert_eq!(
            (ev[0].ip.to_string(), &*ev[0].rule, ev[0].user.as_deref()),
            ("198.51.100.180".to_string(), "failed_auth", Some("0"))
        );
        // A user name that imitates sshd's tail does not move the blame.
        let (_, ev) = feed(&mut *f, "Dec 10 08:24:41 gw sshd[24364]: Failed none for invalid user x from 203.0.113.9 port 1 ssh2 from 198.51.100.181 port 49812 ssh2");
        assert_eq!(failures(&ev), 1);
        assert_eq!(ev[0].ip.to_string(), "198.51.100.181");
        // The client's own report, with and without port and [preauth].
        for (line, ip) in [
            ("Dec 10 07:51:15 gw sshd[24324]: error: Received disconnect from 192.0.2.122: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]", "192.0.2.122"),
            ("Dec 10 07:51:16 gw sshd[24325]: Received disconnect from 192.0.2.123 port 7736:3: com.jcraft.jsch.JSchException: Auth fail [preauth]", "192.0.2.123"),
            ("Dec 10 07:51:17 gw sshd[24326]: Received disconnect from 2001:db8::7: 3: com.jcraft.jsch.JSchException: Auth fail", "2001:db8::7"),
            // The reason is the client's text: an address inside it is not blamed.
            ("Dec 10 07:51:18 gw sshd[24327]: Received disconnect from 192.0.2.124: 3: from 203.0.113.9 port 22: Auth fail [preauth]", "192.0.2.124"),
        ] {
            let (o, ev) = feed(&mut *f, line);
            assert_eq!((o, failures(&ev)), (Outcome::Matched, 1), "{mode:?} {line}");
            assert_eq!(ev[0].ip.to_string(), ip);
            assert_eq!(&*ev[0].rule, "client_auth_fail");
        }
        // Other reasons and codes are no authentication failure.
        for line in [
            "Dec 10 07:51:19 gw sshd[24328]: Received disconnect from 192.0.2.125 port 1:11: disconnected by user",
            "Dec 10 07:51:19 gw sshd[24328]: Received disconnect from 192.0.2.125 port 1:11: x: Auth fail [preauth]",
            "Dec 10 07:51:19 gw sshd[24328]: Received disconnect from 192.0.2.125: 3: Auth failure [preauth]",
            "Dec 10 07:51:19 gw sshd[24328]: Received disconnect from not-an-address: 3: x: Auth fail [preauth]",
        ] {
            assert!(failures(&feed(&mut *f, line).1) == 0, "{mode:?} {line}");
        }
        let valid =
            "Dec 10 08:24:40 gw sshd[24365]: Failed none for alice from 192.0.2.30 port 49811 ssh2";
        let (_, ev) = feed(&mut *f, valid);
        assert_eq!(
            failures(&ev),
            usize::from(mode == Mode::Aggressive),
            "{mode:?}"
        );
    }
}

/// fail2ban's own annotated sshd corpus (read from the Debian package at run time, never
/// copied): every line it expects its sshd filter to match as `Failed none` or a client's
/// `Auth fail` is a failure of Palisade's built-in filter in normal mode, on the same host.
#[test]
fn fail2ban_corpus_failed_none_and_auth_fail() {
    let path = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/sshd";
    let Ok(text) = std::fs::read_to_string(path) else {
        return palisade_testkit::require_or_skip("F2B", &format!("{path} is missing"));
    };
    let mut f = filter(Mode::Normal);
    let mut expect: Option<String> = None;
    let mut checked = 0;
    for line in text.lines() {
        if let Some(j) = line.strip_prefix("# failJSON:") {
            let matches = j.contains("\"match\": true");
            expect = j
                .split("\"host\": \"")
                .nth(1)
                .and_then(|h| h.split('"').next())
                .filter(|_| matches)
                .map(str::to_string);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(host) = expect.take() else { continue };
        if !(line.contains("Auth fail") || line.contains("Failed none")) {
            continue;
        }
        let (_, ev) = feed(&mut *f, line);
        assert_eq!(failures(&ev), 1, "{line}");
        assert_eq!(ev[0].ip.to_string(), host, "{line}");
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} corpus lines checked");
}
