//! journald process handling against a fake `journalctl` placed first in PATH.
//!
//! One test function on purpose: it changes this process's PATH, which must not race with
//! other threads starting programs.

mod common;

use common::*;
use palisade_core::Timestamp;
use palisade_source::{run, LineMeta, SourceError, SourceOptions, SourceSpec};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const CANNED: &str = r#"{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1740992400000000","MESSAGE":"Failed password for root from 203.0.113.5 port 22 ssh2","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","_HOSTNAME":"bastion"}
-- this is not json --
{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1740992401000000","MESSAGE":[98,105,110,0,255],"_COMM":"kernel"}
{"__CURSOR":"s=1;i=3","__REALTIME_TIMESTAMP":"1740992402000000","MESSAGE":null}
{"__CURSOR":"s=1;i=4","__REALTIME_TIMESTAMP":"1740992403000000","MESSAGE":"multi\nline\n","SYSLOG_IDENTIFIER":"app","SYSLOG_PID":"7"}
"#;

fn fake_journalctl(dir: &Path) {
    std::fs::write(dir.join("canned.json"), CANNED).unwrap();
    let script = format!(
        r#"#!/bin/sh
d='{d}'
echo "$@" >> "$d/args"
echo $$ > "$d/pid"
for a in "$@"; do
  if [ "$a" = "FAIL=1" ]; then echo "Failed to add match 'FAIL=1': bad" >&2; exit 1; fi
done
cat "$d/canned.json"
for a in "$@"; do
  if [ "$a" = "--follow" ]; then exec sleep 30; fi
done
exit 0
"#,
        d = dir.display()
    );
    let p = dir.join("journalctl");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[derive(Debug, PartialEq)]
struct Entry {
    msg: Vec<u8>,
    time: Option<Timestamp>,
    ident: Option<String>,
    pid: Option<u32>,
    host: Option<String>,
}

fn collect(out: &mut Vec<Entry>) -> impl FnMut(&[u8], &LineMeta<'_>) + '_ {
    move |line, meta| {
        assert_eq!(meta.source, "journald");
        out.push(Entry {
            msg: line.to_vec(),
            time: meta.time,
            ident: meta.journal.and_then(|j| j.ident().map(str::to_string)),
            pid: meta.journal.and_then(|j| j.pid()),
            host: meta.journal.and_then(|j| j.hostname.map(str::to_string)),
        })
    }
}

#[test]
fn fake_journalctl_process_handling() {
    let bin = tempfile::tempdir().unwrap();
    fake_journalctl(bin.path());
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut new_path = bin.path().as_os_str().to_owned();
    new_path.push(":");
    new_path.push(path);
    std::env::set_var("PATH", new_path);

    let state = tempfile::tempdir().unwrap();
    let spec = SourceSpec::Journald {
        matches: vec!["_SYSTEMD_UNIT=ssh.service".into()],
    };
    let o = SourceOptions {
        follow: false,
        ..opts(Some(state.path()))
    };

    // 1. A run to the end of journalctl's output: entries, metadata, cursor saved.
    let mut got = Vec::new();
    let stats = run(&spec, &o, &mut collect(&mut got), &AtomicBool::new(false)).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[0],
        Entry {
            msg: b"Failed password for root from 203.0.113.5 port 22 ssh2".to_vec(),
            time: Some(Timestamp::from_secs(1740992400)),
            ident: Some("sshd".into()),
            pid: Some(4242),
            host: Some("bastion".into()),
        }
    );
    assert_eq!(got[1].msg, b"bin\0\xff");
    assert_eq!(got[1].ident.as_deref(), Some("kernel"));
    assert_eq!(got[2].msg, b"multi\nline", "one trailing newline dropped");
    assert_eq!(got[2].pid, Some(7));
    assert_eq!(stats.bad_records, 1);
    assert_eq!(stats.lines, 3);
    let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
    assert!(
        args.contains("-o json") && args.contains("--lines=0"),
        "{args}"
    );
    assert!(
        args.contains("--output-fields=MESSAGE,") && args.contains(",_HOSTNAME,"),
        "the fields fail2ban's journal prefix needs are asked for: {args}"
    );
    assert!(
        args.trim_end().ends_with("-- _SYSTEMD_UNIT=ssh.service"),
        "{args}"
    );
    let saved = std::fs::read_to_string(spec.state_file(state.path()).unwrap()).unwrap();
    assert!(saved.contains("s=1;i=4"), "{saved}");

    // 2. The next run resumes after the saved cursor.
    let mut got = Vec::new();
    run(&spec, &o, &mut collect(&mut got), &AtomicBool::new(false)).unwrap();
    let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
    let last = args.lines().last().unwrap();
    assert!(
        last.contains("--after-cursor=s=1;i=4") && !last.contains("--lines=0"),
        "{last}"
    );

    // 3. Following: lines arrive, and stop kills the child promptly.
    let r = spawn(spec.clone(), opts(None));
    r.sink.wait_lines(3);
    let pid = std::fs::read_to_string(bin.path().join("pid")).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(Path::new(&proc_dir).exists());
    let t = Instant::now();
    let stats = r.stop();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(stats.lines, 3);
    assert!(
        !Path::new(&proc_dir).exists(),
        "journalctl still running after stop"
    );

    // 4. journalctl failing: an error carrying its message.
    let bad = SourceSpec::Journald {
        matches: vec!["FAIL=1".into()],
    };
    let mut got = Vec::new();
    let e = run(&bad, &o, &mut collect(&mut got), &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, SourceError::JournalctlExit { .. }), "{e}");
    assert!(e.to_string().contains("Failed to add match"), "{e}");

    // 5. A following journalctl that ends by itself is an error (the pipeline restarts it).
    let e = run(
        &bad,
        &opts(None),
        &mut collect(&mut got),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::JournalctlExit { .. }), "{e}");

    // 6. A bad match is refused before anything runs.
    let e = run(
        &SourceSpec::Journald {
            matches: vec!["--since=today".into()],
        },
        &o,
        &mut collect(&mut got),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::Invalid(_)), "{e}");
}
