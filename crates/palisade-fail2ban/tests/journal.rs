//! fail2ban filter files on journal entries: in journal mode the adapter shows the filter
//! fail2ban's `host ident[pid]: message` line, so `sshd.conf`'s `<F-MLFID>` (host and
//! `sshd[pid]:`) tells interleaved connections apart.
//!
//! The expected results are what fail2ban 1.0.2 (Debian) itself gives for the same entries:
//! its `Filter.processLine` run in operation mode on the lines its systemd backend builds
//! (`('', date, 'bastion sshd[PID]: MESSAGE')`, time from the journal), computed once when
//! this test was written. Without the pid in the prefix fail2ban (and Palisade) would merge
//! the connections and give other results (see `a_shared_connection_id_changes_the_results`).
//!
//! Needs `/etc/fail2ban/filter.d/sshd.conf` (Debian's fail2ban package); skipped without it,
//! unless `PALISADE_REQUIRE_F2B=1`.

use jiff::tz::TimeZone;
use palisade_core::{Event, JournalFields, Timestamp};
use palisade_fail2ban::{Fail2banFilter, LoadOptions};
use palisade_filter::{Filter, LineCtx, Outcome};
use std::path::Path;

const SSHD: &str = "/etc/fail2ban/filter.d/sshd.conf";
const T0: i64 = 1_740_992_400;

mod journal_entries;

/// The shared connections, then the hostile messages (entries 13-14).
fn entries() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    journal_entries::CONNECTIONS
        .iter()
        .chain(journal_entries::HOSTILE)
}

/// fail2ban's results: (entry number from 1, address, user, failregex index).
const EXPECTED: &[(usize, &str, &str, usize)] = &[
    (3, "203.0.113.10", "root", 17),
    (8, "192.0.2.30", "bob", 3),
    (9, "192.0.2.30", "bob", 17),
    (12, "192.0.2.70", "root", 19),
    (14, "1.2.3.4", "admin", 3),
];

fn sshd_journal_filter() -> Option<Fail2banFilter> {
    if !Path::new(SSHD).is_file() {
        palisade_testkit::require_or_skip(
            "F2B",
            &format!("{SSHD} not installed (fail2ban package)"),
        );
        return None;
    }
    let opts = LoadOptions {
        init: vec![("logtype".into(), "journal".into())],
        ..LoadOptions::default()
    };
    Some(Fail2banFilter::load(Path::new(SSHD), &opts, TimeZone::UTC).unwrap())
}

fn fields(pid: &str) -> JournalFields<'_> {
    JournalFields {
        hostname: Some("bastion"),
        syslog_identifier: Some("sshd"),
        comm: Some("sshd-session"),
        syslog_pid: Some(pid),
        pid: Some(pid),
        monotonic: Some(1_000_000),
        ..JournalFields::default()
    }
}

/// Runs the entries through `f`, with `make` giving each entry's journal fields; returns
/// (entry number, event) for every event.
fn run(
    f: &mut Fail2banFilter,
    make: impl Fn(&'static str) -> Option<JournalFields<'static>>,
) -> Vec<(usize, Event)> {
    let mut got = Vec::new();
    let mut out = Vec::new();
    for (i, (pid, msg)) in entries().enumerate() {
        let ctx = LineCtx {
            now: Timestamp::from_secs(T0 + 100),
            source_time: Some(Timestamp::from_secs(T0 + i as i64)),
            journal: make(pid),
        };
        let o = f.process(msg.as_bytes(), &ctx, &mut out);
        assert_eq!(o == Outcome::Matched, !out.is_empty());
        got.extend(out.drain(..).map(|e| (i + 1, e)));
    }
    got
}

fn summary(got: &[(usize, Event)]) -> Vec<(usize, String, String, String)> {
    got.iter()
        .filter(|(_, e)| e.failure)
        .map(|(n, e)| {
            (
                *n,
                e.ip.to_string(),
                e.user.as_deref().unwrap_or("").to_string(),
                e.rule.to_string(),
            )
        })
        .collect()
}

#[test]
fn mlfid_tells_interleaved_sshd_connections_apart() {
    let Some(mut f) = sshd_journal_filter() else {
        return;
    };
    let got = run(&mut f, |pid| Some(fields(pid)));
    let want: Vec<_> = EXPECTED
        .iter()
        .map(|(n, ip, user, rule)| {
            (
                *n,
                ip.to_string(),
                user.to_string(),
                format!("failregex[{rule}]"),
            )
        })
        .collect();
    assert_eq!(summary(&got), want);
    for (n, e) in &got {
        // Journal lines carry no date: the entry's time is the event's.
        assert_eq!(
            e.time,
            Timestamp::from_secs(T0 + *n as i64 - 1),
            "entry {n}"
        );
        assert_eq!(e.filter.as_ref(), "sshd");
    }
    // The evidence is the line the filter saw, newline escaped.
    let (_, last) = got.last().unwrap();
    assert_eq!(
        &*last.evidence,
        "bastion sshd[4001]: Failed password for invalid user admin from 1.2.3.4 port 22 ssh2 \\nbastion sshd[1]: Accepted"
    );
}

#[test]
fn a_shared_connection_id_changes_the_results() {
    // The same entries without pids (every line `bastion sshd: …`): one connection id for
    // all, as fail2ban itself would then report — the test above depends on the pid.
    let Some(mut f) = sshd_journal_filter() else {
        return;
    };
    let got = run(&mut f, |_| {
        Some(JournalFields {
            syslog_pid: None,
            pid: None,
            ..fields("")
        })
    });
    let s = summary(&got);
    assert_eq!(
        s.iter()
            .map(|(n, ip, ..)| (*n, ip.as_str()))
            .collect::<Vec<_>>(),
        [
            (2, "198.51.100.20"),
            (3, "198.51.100.20"),
            (4, "198.51.100.20"),
            (6, "198.51.100.40"),
            (7, "198.51.100.40"),
            (8, "192.0.2.30"),
            (9, "192.0.2.30"),
            (10, "192.0.2.30"),
            (11, "198.51.100.60"),
            (14, "1.2.3.4"),
        ]
    );
}

#[test]
fn lines_without_journal_fields_are_used_as_they_are() {
    // `check` on a file of already formatted journal lines, as fail2ban's corpus has them.
    let Some(mut f) = sshd_journal_filter() else {
        return;
    };
    let line = "bastion sshd[5]: Failed password for root from 192.0.2.99 port 1 ssh2";
    let ctx = LineCtx {
        now: Timestamp::from_secs(T0),
        source_time: Some(Timestamp::from_secs(T0 - 5)),
        journal: None,
    };
    let mut out = Vec::new();
    assert_eq!(f.process(line.as_bytes(), &ctx, &mut out), Outcome::Matched);
    assert_eq!(out[0].ip.to_string(), "192.0.2.99");
    assert_eq!(&*out[0].evidence, line);
    assert_eq!(out[0].time, Timestamp::from_secs(T0 - 5));
}

#[test]
fn file_mode_filters_ignore_journal_fields() {
    // Only `logtype = journal` filters see the prefixed line: a file-mode filter is given
    // the line as it is even when journal fields come with it.
    if !Path::new(SSHD).is_file() {
        return palisade_testkit::require_or_skip("F2B", &format!("{SSHD} not installed"));
    }
    let mut f =
        Fail2banFilter::load(Path::new(SSHD), &LoadOptions::default(), TimeZone::UTC).unwrap();
    let ctx = LineCtx {
        now: Timestamp::from_secs(T0),
        source_time: Some(Timestamp::from_secs(T0)),
        journal: Some(fields("7")),
    };
    let mut out = Vec::new();
    let line =
        b"Mar  3 09:00:00 bastion sshd[7]: Failed password for root from 192.0.2.98 port 1 ssh2";
    assert_eq!(f.process(line, &ctx, &mut out), Outcome::Matched);
    assert_eq!(&*out[0].evidence, std::str::from_utf8(line).unwrap());
}
