//! Streams: any reader, and standard input of a real process.

mod common;

use common::Shared;
use palisade_source::{run, run_reader, SourceOptions, SourceSpec};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

/// A reader that returns at most `chunk` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const INPUT: &[u8] = b"first\r\n\nx234567890123\nbin\0\xff\nlast without newline";

#[test]
fn reader_lines_are_capped_and_the_last_line_is_kept() {
    for chunk in [1, 3, 7, 1 << 20] {
        let mut sink = Shared::default();
        let opts = SourceOptions {
            max_line: 10,
            ..SourceOptions::default()
        };
        let stats = run_reader(
            "replay",
            Trickle { data: INPUT, chunk },
            &opts,
            &mut sink,
            &AtomicBool::new(false),
        )
        .unwrap();
        let got = sink.got();
        let lines: Vec<&[u8]> = got.iter().map(|g| &g.line[..]).collect();
        assert_eq!(
            lines,
            [
                &b"first"[..],
                b"",
                b"x234567890",
                b"bin\0\xff",
                b"last witho"
            ],
            "chunk {chunk}"
        );
        assert_eq!(got[2].offset, 8);
        assert_eq!(got[2].source, "replay");
        assert_eq!(stats.cut_lines, 2);
        assert_eq!(stats.lines, 5);
        assert_eq!(stats.bytes, INPUT.len() as u64);
        assert!(sink.idles() >= 1);
    }
}

#[test]
fn stop_flag_ends_a_reader() {
    let mut sink = Shared::default();
    let stats = run_reader(
        "s",
        Trickle {
            data: INPUT,
            chunk: 1,
        },
        &SourceOptions::default(),
        &mut sink,
        &AtomicBool::new(true),
    )
    .unwrap();
    assert_eq!(stats.lines, 0);
}

/// Runs in a child process (see `stdin_of_a_process`): echoes stdin lines as `<len>:<line>`.
#[test]
fn stdin_child() {
    if std::env::var_os("PALISADE_SOURCE_STDIN_CHILD").is_none() {
        return;
    }
    let mut out = Vec::new();
    let mut sink = |line: &[u8], meta: &palisade_source::LineMeta<'_>| {
        assert_eq!(meta.source, "stdin");
        out.extend_from_slice(format!("{}:", line.len()).as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    };
    let opts = SourceOptions {
        max_line: 8,
        ..SourceOptions::default()
    };
    run(
        &SourceSpec::Stdin,
        &opts,
        &mut sink,
        &AtomicBool::new(false),
    )
    .unwrap();
    std::fs::write(std::env::var_os("PALISADE_SOURCE_STDIN_OUT").unwrap(), out).unwrap();
}

#[test]
fn stdin_of_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stdin_child", "--test-threads=1"])
        .env("PALISADE_SOURCE_STDIN_CHILD", "1")
        .env("PALISADE_SOURCE_STDIN_OUT", &out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\na much longer line\ntail").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read(&out).unwrap(), b"3:one\n8:a much l\n4:tail\n");
}
