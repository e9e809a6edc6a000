//! Test helpers: a collecting sink, a source running on its own thread, file writers.
#![allow(dead_code)]

use palisade_source::{LineMeta, LineSink, SourceError, SourceOptions, SourceSpec, SourceStats};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One delivered line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub line: Vec<u8>,
    pub source: String,
    pub offset: u64,
    pub at: Instant,
}

#[derive(Default)]
pub struct Collected {
    pub lines: Vec<Got>,
    pub idles: usize,
}

/// A sink shared with the test thread.
#[derive(Clone, Default)]
pub struct Shared(pub Arc<Mutex<Collected>>);

impl LineSink for Shared {
    fn line(&mut self, line: &[u8], meta: &LineMeta<'_>) {
        self.0.lock().unwrap().lines.push(Got {
            line: line.to_vec(),
            source: meta.source.to_string(),
            offset: meta.offset,
            at: Instant::now(),
        });
    }
    fn idle(&mut self) {
        self.0.lock().unwrap().idles += 1;
    }
}

impl Shared {
    pub fn texts(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .lines
            .iter()
            .map(|g| String::from_utf8_lossy(&g.line).into_owned())
            .collect()
    }
    pub fn got(&self) -> Vec<Got> {
        self.0.lock().unwrap().lines.clone()
    }
    pub fn idles(&self) -> usize {
        self.0.lock().unwrap().idles
    }
    /// Waits until `f` holds (5 s at most, then fails the test).
    pub fn wait_until(&self, what: &str, f: impl Fn(&Collected) -> bool) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if f(&self.0.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("timed out waiting for {what}; got {:?}", self.texts());
    }
    pub fn wait_lines(&self, n: usize) {
        self.wait_until(&format!("{n} lines"), |c| c.lines.len() >= n);
    }
    /// Waits for the source to finish its startup scan (first idle), plus one more round
    /// after that so that a position taken at startup is settled.
    pub fn wait_started(&self) {
        self.wait_until("startup", |c| c.idles >= 1);
    }
    /// Waits for `n` more idle calls than now: the source has looked at everything again.
    pub fn wait_rounds(&self, n: usize) {
        let start = self.idles();
        self.wait_until("idle rounds", |c| c.idles >= start + n);
    }
}

/// A source running on a thread.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<SourceStats, SourceError>>,
    pub sink: Shared,
}

pub fn spawn(spec: SourceSpec, opts: SourceOptions) -> Running {
    let sink = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2) = (sink.clone(), stop.clone());
    let handle = std::thread::spawn(move || {
        let mut s = s2;
        palisade_source::run(&spec, &opts, &mut s, &st2)
    });
    Running { stop, handle, sink }
}

impl Running {
    /// Stops the source and returns its counters.
    pub fn stop(self) -> SourceStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap().unwrap()
    }
}

/// Options for fast tests.
pub fn opts(state: Option<&Path>) -> SourceOptions {
    SourceOptions {
        poll: Duration::from_millis(20),
        state_dir: state.map(Path::to_path_buf),
        ..SourceOptions::default()
    }
}

pub fn files(patterns: &[&Path]) -> SourceSpec {
    SourceSpec::Files {
        patterns: patterns
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    }
}

pub fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
