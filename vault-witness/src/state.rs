//! The witness's persisted state: for each log it has cosigned, its latest cosigned
//! checkpoint (the log's note with the witness's cosignature), one file per log named by
//! the SHA-256 of the origin in lowercase hex. A new state is written to a temporary file,
//! fsynced, renamed over the old one and the directory fsynced, before the witness
//! answers.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use audit::witness::WitnessedLog;
use audit::Checkpoint;
use ring::digest::{digest, SHA256};

/// The lowercase hex SHA-256 of an origin: the file name of its state and the path of its
/// monitoring route.
pub(crate) fn origin_hash(origin: &str) -> String {
    hex::encode(digest(&SHA256, origin.as_bytes()))
}

/// One log's latest cosigned checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct LogState {
    pub(crate) latest: WitnessedLog,
    /// The log's note with this witness's cosignature (served to monitors).
    pub(crate) note: String,
}

/// Every log's state, as on disk.
#[derive(Debug)]
pub(crate) struct State {
    dir: PathBuf,
    by_origin: HashMap<String, LogState>,
}

impl State {
    /// Reads the state directory (created when missing).
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let mut by_origin = HashMap::new();
        for entry in fs::read_dir(dir)
            .with_context(|| format!("cannot read the state directory {}", dir.display()))?
        {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                // A write that did not finish: the renamed file before it is the state.
                fs::remove_file(&path).ok();
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let note = fs::read_to_string(&path)
                .with_context(|| format!("cannot read the state file {}", path.display()))?;
            let text = note
                .split_once("\n\n")
                .map(|(t, _)| format!("{t}\n"))
                .with_context(|| format!("state file {} is not a note", path.display()))?;
            let c = Checkpoint::parse(&text).with_context(|| {
                format!(
                    "state file {} does not hold a checkpoint: restore it from a backup",
                    path.display()
                )
            })?;
            if origin_hash(&c.origin) != name {
                bail!(
                    "state file {} holds the checkpoint of `{}`, whose file name differs: restore it from a backup",
                    path.display(),
                    c.origin
                );
            }
            by_origin.insert(
                c.origin.clone(),
                LogState {
                    latest: WitnessedLog {
                        size: c.size,
                        root: c.root,
                    },
                    note,
                },
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            by_origin,
        })
    }

    pub(crate) fn get(&self, origin: &str) -> Option<&LogState> {
        self.by_origin.get(origin)
    }

    pub(crate) fn by_hash(&self, hash: &str) -> Option<&LogState> {
        self.by_origin
            .iter()
            .find(|(o, _)| origin_hash(o) == hash)
            .map(|(_, s)| s)
    }

    /// Durably records `origin`'s new latest checkpoint, then keeps it in memory.
    pub(crate) fn record(&mut self, origin: &str, state: LogState) -> anyhow::Result<()> {
        let name = origin_hash(origin);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(&name);
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(state.note.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.by_origin.insert(origin.to_owned(), state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(origin: &str, size: u64) -> String {
        format!("{origin}\n{size}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} {origin} AAAA\n")
    }

    #[test]
    fn the_state_survives_a_restart_and_a_half_written_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        assert!(s.get("example.com/log").is_none());
        let state = |size| LogState {
            latest: WitnessedLog {
                size,
                root: [0; 32],
            },
            note: note("example.com/log", size),
        };
        s.record("example.com/log", state(5)).unwrap();
        s.record("example.com/log", state(9)).unwrap();
        // A write that stopped before its rename leaves a temporary file.
        let name = origin_hash("example.com/log");
        std::fs::write(dir.path().join(format!("{name}.tmp")), "partial").unwrap();
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.get("example.com/log").unwrap().latest.size, 9);
        assert_eq!(s.by_hash(&name).unwrap().note, note("example.com/log", 9));
        assert!(!dir.path().join(format!("{name}.tmp")).exists());
        // A state file under another log's name is refused, naming the file.
        std::fs::write(dir.path().join(&name), note("example.com/other", 3)).unwrap();
        let e = State::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("example.com/other") && e.contains(&name), "{e}");
    }
}
