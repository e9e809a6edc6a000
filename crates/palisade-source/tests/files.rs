//! File tail behaviour, against real files in temporary directories.

mod common;

use common::*;
use palisade_source::{run, SourceError, SourceOptions, SourceSpec};
use std::fs;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

#[test]
fn starts_at_end_by_default_and_reads_history_with_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "old 1\nold 2\n").unwrap();

    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"new 1\n");
    r.sink.wait_lines(1);
    let stats = r.stop();
    assert_eq!(stats.lines, 1);

    let r = spawn(
        files(&[&log]),
        SourceOptions {
            from_start: true,
            ..opts(None)
        },
    );
    r.sink.wait_lines(3);
    let got = r.sink.got();
    r.stop();
    let texts: Vec<_> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.line))
        .collect();
    assert_eq!(texts, ["old 1", "old 2", "new 1"]);
    assert_eq!(got[1].offset, 6);
    assert_eq!(got[2].source, log.to_string_lossy());
}

#[test]
fn starting_at_end_skips_an_unfinished_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "old\nhalf of a li").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"ne\nnext\n");
    r.sink.wait_lines(1);
    r.sink.wait_rounds(2);
    let texts = r.sink.texts();
    r.stop();
    assert_eq!(texts, ["next"]);
}

#[test]
fn follow_false_reads_once_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "one\ntwo\nunterminated").unwrap();
    let mut sink = Shared::default();
    let o = SourceOptions {
        from_start: true,
        follow: false,
        ..opts(None)
    };
    let stats = run(&files(&[&log]), &o, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(
        sink.texts(),
        ["one", "two"],
        "a partial last line is held, not delivered"
    );
    assert_eq!(stats.lines, 2);
    assert_eq!(stats.bytes, 20);
    assert_eq!(stats.files_opened, 1);
}

#[test]
fn partial_line_is_held_until_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"Failed password for ro");
    r.sink.wait_rounds(3);
    assert!(r.sink.texts().is_empty());
    append(&log, b"ot from 192.0.2.1\r\nsecond\n");
    r.sink.wait_lines(2);
    let texts = r.sink.texts();
    r.stop();
    assert_eq!(texts, ["Failed password for root from 192.0.2.1", "second"]);
}

#[test]
fn partial_line_then_rest_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"hel");
    r.sink.wait_rounds(3);
    append(&log, b"lo\n");
    r.sink.wait_lines(1);
    r.sink.wait_rounds(2);
    let texts = r.sink.texts();
    r.stop();
    assert_eq!(texts, ["hello"]);
}

#[test]
fn overlong_lines_are_cut_once_and_bytes_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "").unwrap();
    let r = spawn(
        files(&[&log]),
        SourceOptions {
            max_line: 10,
            ..opts(None)
        },
    );
    r.sink.wait_started();
    append(&log, b"short\r\n");
    // An overlong line written in pieces, the first already over the cap.
    append(&log, &[b'x'; 25]);
    r.sink.wait_lines(2);
    append(&log, &[b'y'; 40]);
    r.sink.wait_rounds(2);
    append(&log, b"zzz\nbin\0\xff\xfe\n0123456789\n");
    r.sink.wait_lines(4);
    r.sink.wait_rounds(2);
    let got = r.sink.got();
    let stats = r.stop();
    let lines: Vec<&[u8]> = got.iter().map(|g| &g.line[..]).collect();
    assert_eq!(
        lines,
        [
            &b"short"[..],
            b"xxxxxxxxxx",
            b"bin\0\xff\xfe",
            b"0123456789"
        ]
    );
    assert_eq!(got[1].offset, 7);
    assert_eq!(stats.cut_lines, 1);
    assert_eq!(stats.lines, 4);
}

#[test]
fn glob_is_expanded_again_and_new_files_read_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = path(&dir, "a.log");
    fs::write(&a, "history\n").unwrap();
    let pattern = dir.path().join("*.log");
    let r = spawn(files(&[&pattern]), opts(None));
    r.sink.wait_started();
    fs::write(path(&dir, "b.log"), "b first\nb second\n").unwrap();
    fs::write(path(&dir, "c.txt"), "not matched\n").unwrap();
    append(&a, b"a new\n");
    r.sink.wait_lines(3);
    r.sink.wait_rounds(3);
    let mut texts = r.sink.texts();
    r.stop();
    texts.sort();
    assert_eq!(texts, ["a new", "b first", "b second"]);
}

#[test]
fn rename_and_create_rotation_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "auth.log");
    fs::write(&log, "").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"before 1\n");
    r.sink.wait_lines(1);
    // Written just before rotation, then rotated at once (no chance to read in between).
    append(&log, b"before 2\nbefore 3\n");
    fs::rename(&log, path(&dir, "auth.log.1")).unwrap();
    fs::write(&log, "after 1\n").unwrap();
    // A late write to the old file by a writer that has not reopened yet.
    append(&path(&dir, "auth.log.1"), b"late\n");
    append(&log, b"after 2\n");
    r.sink.wait_lines(6);
    r.sink.wait_rounds(2);
    let texts = r.sink.texts();
    let stats = r.stop();
    assert_eq!(&texts[..3], ["before 1", "before 2", "before 3"]);
    let mut rest = texts[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["after 1", "after 2", "late"]);
    assert_eq!(stats.rotations, 1);
}

#[test]
fn copytruncate_reads_again_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "app.log");
    fs::write(&log, "").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"one\ntwo\nthree\n");
    r.sink.wait_lines(3);
    // copytruncate: copy elsewhere, truncate in place; the writer keeps its (O_APPEND) fd.
    fs::copy(&log, path(&dir, "app.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    r.sink.wait_rounds(2);
    append(&log, b"four\n");
    r.sink.wait_lines(4);
    let got = r.sink.got();
    let stats = r.stop();
    assert_eq!(got[3].line, b"four");
    assert_eq!(got[3].offset, 0);
    assert_eq!(stats.truncations, 1);
}

#[test]
fn deleted_and_recreated_file_is_followed_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "app.log");
    fs::write(&log, "").unwrap();
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    append(&log, b"one\n");
    r.sink.wait_lines(1);
    fs::remove_file(&log).unwrap();
    r.sink.wait_rounds(2);
    fs::write(&log, "new one\nnew two\n").unwrap();
    r.sink.wait_lines(3);
    let texts = r.sink.texts();
    let stats = r.stop();
    assert_eq!(texts, ["one", "new one", "new two"]);
    assert_eq!(stats.rotations, 1);
}

#[test]
fn missing_file_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "later.log");
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    r.sink.wait_rounds(2);
    fs::write(&log, "first\n").unwrap();
    r.sink.wait_lines(1);
    let texts = r.sink.texts();
    let stats = r.stop();
    assert_eq!(texts, ["first"]);
    assert_eq!(stats.errors, 0);
}

#[test]
fn saved_offsets_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "history\n").unwrap();
    let spec = files(&[&log]);

    // First run: starts at the end, sees two lines and half of a third.
    let r = spawn(spec.clone(), opts(Some(state.path())));
    r.sink.wait_started();
    append(&log, b"one\ntwo\nthr");
    r.sink.wait_lines(2);
    r.sink.wait_rounds(2);
    assert_eq!(r.sink.texts(), ["one", "two"]);
    r.stop();
    let state_file = spec.state_file(state.path()).unwrap();
    assert!(state_file.exists());
    assert!(!state_file.with_extension("json.tmp").exists());

    // Written while stopped.
    append(&log, b"ee\nfour\n");

    let r = spawn(spec.clone(), opts(Some(state.path())));
    r.sink.wait_lines(2);
    r.sink.wait_rounds(2);
    let texts = r.sink.texts();
    r.stop();
    assert_eq!(texts, ["three", "four"]);

    // Nothing new: a third run delivers nothing, even with from_start.
    let mut sink = Shared::default();
    let o = SourceOptions {
        from_start: true,
        follow: false,
        ..opts(Some(state.path()))
    };
    run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    assert!(sink.texts().is_empty(), "{:?}", sink.texts());
}

#[test]
fn saved_offset_of_a_file_never_read_is_its_end_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "history\n").unwrap();
    let spec = files(&[&log]);
    let o = SourceOptions {
        follow: false,
        ..opts(Some(state.path()))
    };
    let mut sink = Shared::default();
    run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    append(&log, b"while stopped\n");
    run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(sink.texts(), ["while stopped"]);
}

#[test]
fn rotated_while_stopped_reads_the_rest_of_dot_1_then_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = path(&dir, "auth.log");
    fs::write(&log, "").unwrap();
    let spec = files(&[&log]);
    let o = SourceOptions {
        follow: false,
        ..opts(Some(state.path()))
    };
    let mut sink = Shared::default();
    append(&log, b"seen\n");
    let o1 = SourceOptions {
        from_start: true,
        ..o.clone()
    };
    run(&spec, &o1, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(sink.texts(), ["seen"]);

    append(&log, b"unseen old\n");
    fs::rename(&log, path(&dir, "auth.log.1")).unwrap();
    fs::write(&log, "new\n").unwrap();

    let mut sink = Shared::default();
    let stats = run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(sink.texts(), ["unseen old", "new"]);
    assert_eq!(stats.rotations, 1);
}

#[test]
fn file_truncated_while_stopped_is_read_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "a fairly long first line\nsecond line\n").unwrap();
    let spec = files(&[&log]);
    let o = SourceOptions {
        follow: false,
        ..opts(Some(state.path()))
    };
    let mut sink = Shared::default();
    run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    // Truncated in place (same inode, same head), then a short line written.
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, b"a fairly\n");
    let stats = run(&spec, &o, &mut sink, &AtomicBool::new(false)).unwrap();
    assert_eq!(sink.texts(), ["a fairly"]);
    assert_eq!(stats.truncations, 1);
}

#[test]
fn appended_line_arrives_fast_through_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::write(&log, "").unwrap();
    // A poll interval far above the bound: only an inotify wake-up can meet it.
    let o = SourceOptions {
        poll: Duration::from_secs(2),
        ..opts(None)
    };
    let r = spawn(files(&[&log]), o);
    r.sink.wait_started();
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        append(&log, format!("line {i}\n").as_bytes());
        r.sink.wait_lines(i + 1);
        let got = r.sink.got();
        worst = worst.max(got[i].at.duration_since(t));
    }
    // Wake the loop so that it sees the stop flag at once.
    r.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    append(&path(&dir, "poke"), b"x");
    let t = Instant::now();
    r.stop();
    assert!(
        worst < Duration::from_millis(200),
        "slowest line took {worst:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn stop_is_seen_within_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    let r = spawn(files(&[&log]), opts(None));
    r.sink.wait_started();
    let t = Instant::now();
    r.stop();
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn invalid_specs_and_options_are_errors() {
    let sink = &mut |_: &[u8], _: &palisade_source::LineMeta<'_>| {};
    let stop = AtomicBool::new(false);
    let bad = SourceSpec::Files {
        patterns: vec!["/var/log/[.log".into()],
    };
    let e = run(&bad, &opts(None), sink, &stop).unwrap_err();
    assert!(matches!(e, SourceError::Pattern { .. }));
    assert!(e.to_string().contains("/var/log/[.log"), "{e}");
    let e = run(&files(&[]), &opts(None), sink, &stop).unwrap_err();
    assert!(matches!(e, SourceError::Invalid(_)));
    let e = run(
        &files(&[std::path::Path::new("/x")]),
        &SourceOptions {
            max_line: 0,
            ..opts(None)
        },
        sink,
        &stop,
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_line"), "{e}");
}

#[test]
fn symlinked_file_is_followed_with_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = tempfile::tempdir().unwrap();
    let real = path(&real_dir, "real.log");
    fs::write(&real, "").unwrap();
    let link = path(&dir, "link.log");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = SourceOptions {
        poll: Duration::from_secs(2),
        ..opts(None)
    };
    let r = spawn(files(&[&link]), o);
    r.sink.wait_started();
    let t = Instant::now();
    append(&real, b"through the link\n");
    r.sink.wait_lines(1);
    let got = r.sink.got();
    r.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    append(&path(&real_dir, "poke"), b"x");
    r.stop();
    assert_eq!(got[0].line, b"through the link");
    assert_eq!(got[0].source, link.to_string_lossy());
    assert!(got[0].at.duration_since(t) < Duration::from_millis(200));
}

/// Records lines and the checkpoints given between them.
#[derive(Default)]
struct CkSink {
    lines: Vec<Vec<u8>>,
    /// (lines delivered before the checkpoint, the position)
    cks: Vec<(usize, palisade_source::Position)>,
}

impl palisade_source::LineSink for CkSink {
    fn line(&mut self, line: &[u8], _meta: &palisade_source::LineMeta<'_>) {
        self.lines.push(line.to_vec());
    }
    fn checkpoint(&mut self, pos: &palisade_source::Position) {
        self.cks.push((self.lines.len(), pos.clone()));
    }
}

#[test]
fn every_checkpoint_resumes_exactly_after_the_lines_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    let mut text = String::new();
    for i in 0..120_000 {
        text.push_str(&format!("line {i:07} of a file read in several rounds\n"));
    }
    text.push_str("unfinished");
    fs::write(&log, &text).unwrap();
    let once = |resume| {
        let mut sink = CkSink::default();
        let o = SourceOptions {
            from_start: true,
            follow: false,
            resume,
            ..opts(None)
        };
        run(&files(&[&log]), &o, &mut sink, &AtomicBool::new(false)).unwrap();
        sink
    };
    let all = once(None);
    assert_eq!(all.lines.len(), 120_000);
    assert!(all.cks.len() >= 3, "{} checkpoints", all.cks.len());
    for (seen, pos) in &all.cks {
        let rest = once(Some(pos.clone()));
        assert_eq!(rest.lines.len(), all.lines.len() - seen);
        assert_eq!(rest.lines.first(), all.lines.get(*seen));
    }
    // A broken document is ignored like a corrupt state file (from_start applies).
    let bad = once(Some(palisade_source::Position("{not json".into())));
    assert_eq!(bad.lines.len(), 120_000);
}
