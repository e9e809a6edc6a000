//! journald through `journalctl -o json`.
//!
//! `journalctl` is run as a child with an argv (never a shell); its JSON lines are split with
//! the same capped [`Splitter`] as files and parsed with `serde_json`, borrowing from the read
//! buffer where the JSON has no escapes. A watchdog thread kills the child when the stop flag
//! is set, which ends the blocking read.

use crate::lines::Splitter;
use crate::state::{self, JournalState};
use crate::{LineMeta, LineSink, Position, SourceError, SourceOptions, SourceSpec, SourceStats};
use palisade_core::{JournalFields, Timestamp};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::io::{ErrorKind, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The program run; found through `PATH`.
const JOURNALCTL: &str = "journalctl";

/// Fields asked for; journalctl always adds `__CURSOR`, `__REALTIME_TIMESTAMP`,
/// `__MONOTONIC_TIMESTAMP` and `_BOOT_ID`. Besides `MESSAGE`, they are what fail2ban filter
/// files need for their `host ident[pid]:` journal prefix.
const OUTPUT_FIELDS: &str = "--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_COMM,_PID,SYSLOG_PID,\
     _HOSTNAME,_SOURCE_MONOTONIC_TIMESTAMP";

/// How much of journalctl's standard error is kept for an error message.
const STDERR_KEEP: usize = 4096;

/// The cursor is saved at most this often while entries flow.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// One journal entry as far as Palisade cares, borrowed from its JSON text where possible.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalEntry<'a> {
    /// `MESSAGE` as bytes: journalctl writes text as a JSON string and binary (non-UTF-8)
    /// messages as an array of byte values; both are accepted. A field given several times
    /// yields its first value. `None` when absent or `null`.
    pub message: Option<Cow<'a, [u8]>>,
    /// `__REALTIME_TIMESTAMP` (microseconds since the epoch).
    pub time: Option<Timestamp>,
    /// `_HOSTNAME`.
    pub hostname: Option<Cow<'a, str>>,
    /// `SYSLOG_IDENTIFIER`.
    pub syslog_identifier: Option<Cow<'a, str>>,
    /// `_COMM`.
    pub comm: Option<Cow<'a, str>>,
    /// `SYSLOG_PID`, as text.
    pub syslog_pid: Option<Cow<'a, str>>,
    /// `_PID`, as text.
    pub pid: Option<Cow<'a, str>>,
    /// `_SOURCE_MONOTONIC_TIMESTAMP` (microseconds).
    pub source_monotonic: Option<u64>,
    /// `__MONOTONIC_TIMESTAMP` (microseconds since boot).
    pub monotonic: Option<u64>,
    /// `__CURSOR`: where to resume after this entry.
    pub cursor: Option<Cow<'a, str>>,
}

impl JournalEntry<'_> {
    /// The entry's fields besides the message, borrowed.
    pub fn fields(&self) -> JournalFields<'_> {
        JournalFields {
            hostname: self.hostname.as_deref(),
            syslog_identifier: self.syslog_identifier.as_deref(),
            comm: self.comm.as_deref(),
            syslog_pid: self.syslog_pid.as_deref(),
            pid: self.pid.as_deref(),
            source_monotonic: self.source_monotonic,
            monotonic: self.monotonic,
        }
    }
}

/// Parses one line of `journalctl -o json` output; `None` if it is not a JSON object.
///
/// Never panics; unknown fields are skipped without being materialised.
pub fn parse_entry(json: &[u8]) -> Option<JournalEntry<'_>> {
    // (A derived struct would also accept a JSON array of its fields.)
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let raw: Raw<'_> = serde_json::from_slice(json).ok()?;
    let micros = |f: &Field<'_>| number(f).and_then(|s| s.parse::<u64>().ok());
    Some(JournalEntry {
        time: number(&raw.realtime)
            .and_then(|s| s.parse::<i64>().ok())
            .map(Timestamp),
        source_monotonic: micros(&raw.source_monotonic),
        monotonic: micros(&raw.monotonic),
        hostname: raw.hostname.0.map(text),
        syslog_identifier: raw.ident.0.map(text),
        comm: raw.comm.0.map(text),
        syslog_pid: raw.syslog_pid.0.map(text),
        pid: raw.pid.0.map(text),
        cursor: raw.cursor.0.map(text),
        message: raw.message.0,
    })
}

fn number<'b>(f: &'b Field<'_>) -> Option<&'b str> {
    f.0.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::trim)
}

fn text(b: Cow<'_, [u8]>) -> Cow<'_, str> {
    match b {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(b) => match String::from_utf8(b) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "MESSAGE", borrow, default)]
    message: Field<'a>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow, default)]
    realtime: Field<'a>,
    #[serde(rename = "__MONOTONIC_TIMESTAMP", borrow, default)]
    monotonic: Field<'a>,
    #[serde(rename = "_SOURCE_MONOTONIC_TIMESTAMP", borrow, default)]
    source_monotonic: Field<'a>,
    #[serde(rename = "_HOSTNAME", borrow, default)]
    hostname: Field<'a>,
    #[serde(rename = "SYSLOG_IDENTIFIER", borrow, default)]
    ident: Field<'a>,
    #[serde(rename = "_COMM", borrow, default)]
    comm: Field<'a>,
    #[serde(rename = "_PID", borrow, default)]
    pid: Field<'a>,
    #[serde(rename = "SYSLOG_PID", borrow, default)]
    syslog_pid: Field<'a>,
    #[serde(rename = "__CURSOR", borrow, default)]
    cursor: Field<'a>,
}

/// A journal field value: a string, an array of bytes, an array of values (first taken), or
/// null.
#[derive(Default)]
struct Field<'a>(Option<Cow<'a, [u8]>>);

/// One element while reading a field (a number may be a byte of a binary value).
enum Elem<'a> {
    Num(u64),
    Val(Option<Cow<'a, [u8]>>),
}

struct ElemVisitor;

impl<'de> Visitor<'de> for ElemVisitor {
    type Value = Elem<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a journal field value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Elem::Val(Some(Cow::Borrowed(v.as_bytes()))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Elem::Val(Some(Cow::Owned(v.as_bytes().to_vec()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Elem::Val(Some(Cow::Owned(v.into_bytes()))))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Elem::Num(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Elem::Val(None), Elem::Num))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Elem::Val(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Elem::Val(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Elem::Val(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Elem::Val(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // All small numbers: a binary value. Otherwise a multi-valued field: its first value.
        let mut bytes = Vec::new();
        let mut all_bytes = true;
        let mut first = None;
        while let Some(ElemSeed(el)) = seq.next_element::<ElemSeed<'de>>()? {
            match el {
                Elem::Num(n) if all_bytes && n <= 255 => bytes.push(n as u8),
                Elem::Num(_) => all_bytes = false,
                Elem::Val(v) => {
                    all_bytes = false;
                    if first.is_none() {
                        first = v;
                    }
                }
            }
        }
        Ok(Elem::Val(if all_bytes {
            Some(Cow::Owned(bytes))
        } else {
            first
        }))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Elem::Val(None))
    }
}

/// `Elem` as a deserializable type (for sequence elements).
struct ElemSeed<'a>(Elem<'a>);

impl<'de> Deserialize<'de> for ElemSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElemVisitor).map(ElemSeed)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Field(match d.deserialize_any(ElemVisitor)? {
            Elem::Num(n) => Some(Cow::Owned(n.to_string().into_bytes())),
            Elem::Val(v) => v,
        }))
    }
}

/// Checks one journalctl match: `FIELD=value` (upper-case field name), `+`, or an absolute
/// path (an executable or device).
pub(crate) fn validate_match(m: &str) -> Result<(), SourceError> {
    let ok = m == "+"
        || m.starts_with('/')
        || m.split_once('=').is_some_and(|(field, _)| {
            !field.is_empty()
                && !field.starts_with(|c: char| c.is_ascii_digit())
                && field
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(SourceError::Invalid(format!(
            "journald match {m:?} is not FIELD=value, + or an absolute path"
        )))
    }
}

/// journalctl's arguments.
pub(crate) fn journal_args(
    matches: &[String],
    opts: &SourceOptions,
    cursor: Option<&str>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "-o",
        "json",
        "--no-pager",
        "--quiet",
        "--all",
        OUTPUT_FIELDS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if opts.follow {
        a.push("--follow".into());
    }
    match cursor {
        Some(c) => {
            a.push(format!("--after-cursor={c}"));
            // Without it, --follow would limit the catch-up to the last 10 entries.
            a.push("--no-tail".into());
        }
        None if opts.from_start => a.push("--no-tail".into()),
        None => a.push("--lines=0".into()),
    }
    if !matches.is_empty() {
        a.push("--".into());
        a.extend(matches.iter().cloned());
    }
    a
}

/// Per-run state of the reader.
struct Reader<'a> {
    sink: &'a mut dyn LineSink,
    stats: SourceStats,
    max_line: usize,
    cursor: Option<String>,
    dirty: bool,
    /// The cursor moved since the last [`LineSink::checkpoint`].
    ck_dirty: bool,
}

impl Reader<'_> {
    fn record(&mut self, json: &[u8], cut: bool) {
        if cut || json.iter().all(u8::is_ascii_whitespace) {
            self.stats.bad_records += u64::from(cut);
            return;
        }
        let Some(e) = parse_entry(json) else {
            self.stats.bad_records += 1;
            return;
        };
        if let Some(c) = &e.cursor {
            let cur = self.cursor.get_or_insert_with(String::new);
            cur.clear();
            cur.push_str(c);
            self.dirty = true;
            self.ck_dirty = true;
        }
        let Some(msg) = &e.message else { return };
        let mut msg: &[u8] = msg;
        if let [rest @ .., b'\n'] = msg {
            msg = rest;
        }
        if let [rest @ .., b'\r'] = msg {
            msg = rest;
        }
        if msg.len() > self.max_line {
            msg = &msg[..self.max_line];
            self.stats.cut_lines += 1;
        }
        self.stats.lines += 1;
        self.stats.bytes += msg.len() as u64;
        let meta = LineMeta {
            source: "journald",
            offset: 0,
            time: e.time,
            journal: Some(e.fields()),
        };
        self.sink.line(msg, &meta);
    }

    /// Hands the sink the cursor of the last entry delivered, if it moved.
    fn checkpoint(&mut self) {
        if !self.ck_dirty {
            return;
        }
        self.ck_dirty = false;
        let mut st = JournalState {
            version: 0,
            cursor: self.cursor.clone(),
        };
        self.sink.checkpoint(&Position(state::to_doc(&mut st)));
    }
}

pub(crate) fn run(
    spec: &SourceSpec,
    matches: &[String],
    opts: &SourceOptions,
    sink: &mut dyn LineSink,
    stop: &AtomicBool,
) -> Result<SourceStats, SourceError> {
    let state_path = opts.state_dir.as_deref().and_then(|d| spec.state_file(d));
    let saved: JournalState = match &opts.resume {
        Some(pos) => state::parse(&pos.0).unwrap_or_default(),
        None => state_path.as_deref().map(state::load).unwrap_or_default(),
    };
    let args = journal_args(matches, opts, saved.cursor.as_deref());
    tracing::debug!(?args, "starting journalctl");
    let mut child = Command::new(JOURNALCTL)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SourceError::JournalctlSpawn)?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SourceError::JournalctlSpawn(std::io::Error::other(
            "no pipes",
        )));
    };
    let child = Mutex::new(child);
    let done = AtomicBool::new(false);

    // A JSON line is bigger than its message (escapes, byte arrays, other fields).
    let json_cap = opts
        .max_line
        .saturating_mul(8)
        .saturating_add(64 * 1024)
        .clamp(1 << 20, 2 * crate::MAX_MAX_LINE);
    let mut split = Splitter::new(json_cap, 0);
    let mut r = Reader {
        sink,
        stats: SourceStats::default(),
        max_line: opts.max_line,
        cursor: saved.cursor,
        dirty: false,
        ck_dirty: false,
    };
    let mut last_save: Option<Instant> = None;
    let save = |r: &mut Reader<'_>, force: bool, last_save: &mut Option<Instant>| {
        let Some(path) = &state_path else { return };
        if !r.dirty || (!force && last_save.is_some_and(|t| t.elapsed() < SAVE_EVERY)) {
            return;
        }
        *last_save = Some(Instant::now());
        let mut st = JournalState {
            version: 0,
            cursor: r.cursor.clone(),
        };
        match state::save(path, &mut st) {
            Ok(()) => r.dirty = false,
            Err(e) => {
                r.stats.errors += 1;
                tracing::warn!(error = %e, "cannot save journald cursor");
            }
        }
    };

    let mut read_err = None;
    let (status, stderr_text) = std::thread::scope(|s| {
        let err_thread = s.spawn(move || {
            let mut keep = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        keep.extend_from_slice(&buf[..n]);
                        if keep.len() > STDERR_KEEP {
                            keep.drain(..keep.len() - STDERR_KEEP);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            String::from_utf8_lossy(&keep).trim().to_string()
        });
        let watchdog = s.spawn(|| {
            while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::park_timeout(opts.poll);
            }
            if stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = child.lock() {
                    let _ = c.kill();
                }
            }
        });

        while !stop.load(Ordering::Relaxed) {
            let spare = split.spare();
            let want = spare.len();
            let n = match stdout.read(spare) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    read_err = Some(e);
                    break;
                }
            };
            split.filled(n);
            split.drain(|p| r.record(p.line, p.cut));
            r.checkpoint();
            if n < want {
                r.sink.idle();
                save(&mut r, false, &mut last_save);
            }
        }
        // A last entry without a newline (journalctl ended).
        if !stop.load(Ordering::Relaxed) {
            split.flush(|p| r.record(p.line, p.cut));
            r.checkpoint();
        }
        done.store(true, Ordering::Relaxed);
        watchdog.thread().unpark();
        let _ = watchdog.join();
        let status = match child.lock() {
            Ok(mut c) => {
                if stop.load(Ordering::Relaxed) || read_err.is_some() {
                    let _ = c.kill();
                }
                c.wait().ok()
            }
            Err(_) => None,
        };
        drop(stdout);
        (status, err_thread.join().unwrap_or_default())
    });
    r.sink.idle();
    save(&mut r, true, &mut last_save);

    if let Some(source) = read_err {
        return Err(SourceError::Io {
            path: "journalctl".into(),
            source,
        });
    }
    if stop.load(Ordering::Relaxed) {
        return Ok(r.stats);
    }
    match status {
        Some(s) if s.success() && !opts.follow => Ok(r.stats),
        Some(s) => Err(SourceError::JournalctlExit {
            status: s.to_string(),
            stderr: stderr_text,
        }),
        None => Err(SourceError::JournalctlExit {
            status: "unknown".into(),
            stderr: stderr_text,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_message_with_metadata() {
        let line = br#"{"__CURSOR":"s=abc;i=1f","__REALTIME_TIMESTAMP":"1740992400250000","__MONOTONIC_TIMESTAMP":"1","_BOOT_ID":"x","MESSAGE":"Failed password for root from 203.0.113.5 port 22 ssh2","SYSLOG_IDENTIFIER":"sshd","_COMM":"sshd-session","_PID":"1234","SYSLOG_PID":"99","_HOSTNAME":"h"}"#;
        let e = parse_entry(line).unwrap();
        assert_eq!(
            e.message.as_deref(),
            Some(&b"Failed password for root from 203.0.113.5 port 22 ssh2"[..])
        );
        assert!(
            matches!(e.message, Some(Cow::Borrowed(_))),
            "no copy without escapes"
        );
        assert_eq!(e.time, Some(Timestamp(1_740_992_400_250_000)));
        assert_eq!(e.cursor.as_deref(), Some("s=abc;i=1f"));
        assert_eq!(
            e.fields(),
            JournalFields {
                hostname: Some("h"),
                syslog_identifier: Some("sshd"),
                comm: Some("sshd-session"),
                syslog_pid: Some("99"),
                pid: Some("1234"),
                source_monotonic: None,
                monotonic: Some(1),
            }
        );
        assert_eq!(e.fields().ident(), Some("sshd"));
        assert_eq!(e.fields().pid(), Some(1234));
    }

    #[test]
    fn binary_escaped_multi_and_null_messages() {
        let e = parse_entry(br#"{"MESSAGE":[102,111,0,255,10],"_COMM":"kernel","SYSLOG_PID":"7"}"#)
            .unwrap();
        assert_eq!(e.message.as_deref(), Some(&b"fo\0\xff\n"[..]));
        assert_eq!(e.fields().ident(), Some("kernel"), "falls back to _COMM");
        assert_eq!(e.fields().pid(), Some(7), "falls back to SYSLOG_PID");
        let e = parse_entry(
            br#"{"MESSAGE":"x","_HOSTNAME":[104,255],"_SOURCE_MONOTONIC_TIMESTAMP":"5123456","__MONOTONIC_TIMESTAMP":"junk"}"#,
        )
        .unwrap();
        assert_eq!(
            e.hostname.as_deref(),
            Some("h\u{fffd}"),
            "binary field decoded lossily"
        );
        assert_eq!((e.source_monotonic, e.monotonic), (Some(5_123_456), None));

        let e = parse_entry(br#"{"MESSAGE":"a\"b\u00e9\n"}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("a\"bé\n".as_bytes()));

        let e = parse_entry(br#"{"MESSAGE":["first","second"]}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some(&b"first"[..]));
        let e = parse_entry(br#"{"MESSAGE":[[104,105],"x"]}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some(&b"hi"[..]));

        let e =
            parse_entry(br#"{"MESSAGE":null,"__REALTIME_TIMESTAMP":"junk","_PID":"-1"}"#).unwrap();
        assert_eq!((&e.message, e.time), (&None, None));
        assert_eq!(e.fields().pid(), None, "not a pid");
        let e = parse_entry(br#"{"MESSAGE":[1,2,300],"X":{"a":[1,{}]}}"#).unwrap();
        assert_eq!(e.message, None);
        assert_eq!(
            parse_entry(br#"{"MESSAGE":[]}"#)
                .unwrap()
                .message
                .as_deref(),
            Some(&b""[..])
        );
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        for bad in [
            &b""[..],
            b"-- No entries --",
            b"[1,2]",
            b"{\"MESSAGE\":",
            b"\xff\xfe",
            b"{\"MESSAGE\":\"\\ud800\"}",
            b"null",
        ] {
            assert!(
                parse_entry(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Random corruption of a real entry: any outcome but a panic.
        let base = br#"{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"17","MESSAGE":[104,105],"SYSLOG_IDENTIFIER":"x\u00e9","_PID":"12"}"#;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5000 {
            let mut v = base.to_vec();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % v.len() as u64) as usize;
                v[i] = (x >> 32) as u8;
            }
            let _ = parse_entry(&v);
        }
    }

    #[test]
    fn arguments() {
        let o = SourceOptions::default();
        let a = journal_args(&["_SYSTEMD_UNIT=ssh.service".into()], &o, None);
        assert!(a.contains(&"--follow".to_string()) && a.contains(&"--lines=0".to_string()));
        assert_eq!(&a[a.len() - 2..], ["--", "_SYSTEMD_UNIT=ssh.service"]);
        let a = journal_args(&[], &o, Some("s=1"));
        assert!(a.contains(&"--after-cursor=s=1".to_string()));
        assert!(!a.contains(&"--lines=0".to_string()) && !a.contains(&"--".to_string()));
        let a = journal_args(
            &[],
            &SourceOptions {
                from_start: true,
                follow: false,
                ..o
            },
            None,
        );
        assert!(a.contains(&"--no-tail".to_string()) && !a.contains(&"--follow".to_string()));

        for ok in [
            "_SYSTEMD_UNIT=ssh.service",
            "+",
            "/usr/sbin/sshd",
            "PRIORITY=3",
            "X=",
        ] {
            validate_match(ok).unwrap();
        }
        for bad in ["", "-f", "--since=x", "lower=x", "=x", "1X=y", "NOEQUALS"] {
            assert!(validate_match(bad).is_err(), "{bad}");
        }
    }
}
