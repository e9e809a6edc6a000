//! A shared, cheap handle where a source publishes the state of each of its inputs (a file
//! missing, unreadable, just rotated), for the daemon's status. Updated only when a state
//! changes, never per line.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The state of one input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputState {
    /// Being read.
    #[default]
    Ok,
    /// The file does not exist (yet): waited for.
    Missing,
    /// The file exists but cannot be opened, read or followed: retried.
    Unreadable,
    /// The file was replaced under its path (rotation); the new one is read from its start.
    Rotated,
}

/// One input's state and its last problem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputHealth {
    /// The state.
    pub state: InputState,
    /// The last error (for `Unreadable`).
    pub error: Option<String>,
}

/// The states of a source's inputs, keyed by path (`journald`, `stdin` for those). Share it
/// with [`crate::run_with_health`] through an `Arc`.
#[derive(Debug, Default)]
pub struct SourceHealth {
    inputs: Mutex<BTreeMap<String, InputHealth>>,
}

impl SourceHealth {
    /// A handle with no inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the state of `input`.
    pub fn set(&self, input: &str, state: InputState, error: Option<String>) {
        let mut m = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        let h = InputHealth { state, error };
        match m.get_mut(input) {
            Some(old) => *old = h,
            None => {
                m.insert(input.to_owned(), h);
            }
        }
    }

    /// Forgets an input (a glob match that went away).
    pub fn remove(&self, input: &str) {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(input);
    }

    /// Every input and its state, by path.
    pub fn snapshot(&self) -> Vec<(String, InputHealth)> {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
