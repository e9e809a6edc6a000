//! The per-input state a file source publishes for the daemon's status.

mod common;

use common::*;
use palisade_source::{InputState, SourceHealth};
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn state_of(h: &SourceHealth, path: &str) -> Option<InputState> {
    h.snapshot()
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, s)| s.state)
}

fn wait_state(h: &SourceHealth, path: &str, want: InputState) {
    let t = Instant::now();
    while state_of(h, path) != Some(want) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{path}: state {:?}, waited for {want:?}",
            state_of(h, path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn missing_then_created_then_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    let name = log.to_string_lossy().into_owned();
    let health = Arc::new(SourceHealth::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (h2, s2, spec) = (health.clone(), stop.clone(), files(&[&log]));
    let t = std::thread::spawn(move || {
        let mut sink = |_: &[u8], _: &palisade_source::LineMeta<'_>| {};
        palisade_source::run_with_health(&spec, &opts(None), &mut sink, &s2, Some(&h2))
    });
    wait_state(&health, &name, InputState::Missing);
    fs::write(&log, "one\n").unwrap();
    wait_state(&health, &name, InputState::Ok);
    // logrotate: rename, create.
    fs::rename(&log, path(&dir, "a.log.1")).unwrap();
    fs::write(&log, "").unwrap();
    wait_state(&health, &name, InputState::Rotated);
    // Lines in the new file: back to ok.
    append(&log, b"two\n");
    wait_state(&health, &name, InputState::Ok);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap().unwrap();
}

#[test]
fn a_directory_in_place_of_the_file_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let log = path(&dir, "a.log");
    fs::create_dir(&log).unwrap();
    let name = log.to_string_lossy().into_owned();
    let health = Arc::new(SourceHealth::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (h2, s2, spec) = (health.clone(), stop.clone(), files(&[&log]));
    let t = std::thread::spawn(move || {
        let mut sink = |_: &[u8], _: &palisade_source::LineMeta<'_>| {};
        palisade_source::run_with_health(&spec, &opts(None), &mut sink, &s2, Some(&h2))
    });
    wait_state(&health, &name, InputState::Unreadable);
    let err = health.snapshot()[0].1.error.clone().unwrap();
    assert!(err.contains("not a regular file"), "{err}");
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap().unwrap();
}
