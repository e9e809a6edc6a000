//! Saved positions: small JSON files in the state directory, replaced atomically.

use crate::SourceError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version written into every state file; files with another version are ignored.
const VERSION: u32 = 1;

/// Bytes of a file's head hashed into its fingerprint.
pub(crate) const FINGERPRINT_LEN: u64 = 256;

/// FNV-1a, 64 bit: stable across builds and platforms (unlike `DefaultHasher`), which is all
/// a fingerprint stored on disk needs.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where one file was left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FilePos {
    pub dev: u64,
    pub ino: u64,
    /// Everything before this offset has been delivered.
    pub offset: u64,
    /// The offset is inside an overlong line already delivered cut: skip to its newline.
    #[serde(default)]
    pub skip: bool,
    /// How many head bytes `fp` covers (fewer than 256 for a short file).
    pub fp_len: u64,
    /// FNV-1a of the first `fp_len` bytes: tells a reused inode from the same file.
    pub fp: u64,
}

/// State of a file source: positions keyed by path.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FilesState {
    pub version: u32,
    pub files: BTreeMap<String, FilePos>,
}

/// State of a journald source.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct JournalState {
    pub version: u32,
    /// `__CURSOR` of the last entry delivered.
    pub cursor: Option<String>,
}

/// Versioned state documents.
pub(crate) trait Versioned {
    fn version(&self) -> u32;
    fn set_version(&mut self);
}

impl Versioned for FilesState {
    fn version(&self) -> u32 {
        self.version
    }
    fn set_version(&mut self) {
        self.version = VERSION;
    }
}

impl Versioned for JournalState {
    fn version(&self) -> u32 {
        self.version
    }
    fn set_version(&mut self) {
        self.version = VERSION;
    }
}

/// The state file for a source kind and identity (`files`, patterns) inside `dir`.
///
/// The name carries a hash of the identity so that several sources can share one directory.
pub(crate) fn state_path(dir: &Path, kind: &str, identity: &[String]) -> PathBuf {
    let mut joined = Vec::new();
    for s in identity {
        joined.extend_from_slice(s.as_bytes());
        joined.push(0);
    }
    dir.join(format!("{kind}-{:016x}.json", fnv1a(&joined)))
}

/// Loads a state file. Missing, unreadable, corrupt or foreign-version files give the default
/// (with a warning): losing a position must never stop a source.
pub(crate) fn load<T: DeserializeOwned + Default + Versioned>(path: &Path) -> T {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return T::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read source state; starting fresh");
            return T::default();
        }
    };
    match serde_json::from_slice::<T>(&data) {
        Ok(s) if s.version() == VERSION => s,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "source state has an unknown version; ignored");
            T::default()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt source state; ignored");
            T::default()
        }
    }
}

/// Parses a position document (see [`crate::Position`]); `None` (with a warning) if unusable.
pub(crate) fn parse<T: DeserializeOwned + Versioned>(doc: &str) -> Option<T> {
    match serde_json::from_str::<T>(doc) {
        Ok(s) if s.version() == VERSION => Some(s),
        Ok(_) => {
            tracing::warn!("source position has an unknown version; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "corrupt source position; ignored");
            None
        }
    }
}

/// The position document of a state.
pub(crate) fn to_doc<T: Serialize + Versioned>(state: &mut T) -> String {
    state.set_version();
    serde_json::to_string(state).expect("source state always serialises")
}

/// Writes a state file atomically: temporary file, fsync, rename over, fsync the directory.
pub(crate) fn save<T: Serialize + Versioned>(
    path: &Path,
    state: &mut T,
) -> Result<(), SourceError> {
    state.set_version();
    let err = |source| SourceError::State {
        path: path.to_path_buf(),
        source,
    };
    let data = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Makes the rename itself durable; not all filesystems allow it, hence no `?`.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = state_path(dir.path(), "files", &["/var/log/a.log".into()]);
        assert_ne!(
            p,
            state_path(dir.path(), "files", &["/var/log/b.log".into()])
        );
        let mut s = FilesState::default();
        s.files.insert(
            "/var/log/a.log".into(),
            FilePos {
                dev: 1,
                ino: 2,
                offset: 3,
                skip: false,
                fp_len: 4,
                fp: fnv1a(b"abcd"),
            },
        );
        save(&p, &mut s).unwrap();
        let back: FilesState = load(&p);
        assert_eq!(back.files, s.files);
        fs::write(&p, b"{not json").unwrap();
        let back: FilesState = load(&p);
        assert!(back.files.is_empty());
        fs::write(&p, br#"{"version":99,"files":{}}"#).unwrap();
        let back: JournalState = load(&p);
        assert!(back.cursor.is_none());
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
