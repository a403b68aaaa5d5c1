//! The create journal: a response id our create call received is appended here (and synced to
//! disk) *before* the ledger is written, so an id is never lost to a database that refuses the
//! write (a VACUUM holding the lock past the busy timeout, a full pool) or to a crash between
//! the answer and the commit. A restart replays what the ledger does not have.
//!
//! Each daemon appends to its own file in `<database>.created/`, named by a random instance
//! id and held under an exclusive lock while the daemon runs; a daemon starting replays and
//! removes every file whose lock it can take (its owner is gone), never a live daemon's. A
//! file is emptied once every id in it is in the ledger. An in-memory database has no journal
//! (nothing survives a restart there anyway).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::job::{JobId, ResponseId};

/// One response id our create received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub job_id: JobId,
    pub response_id: ResponseId,
    /// When it was received (unix ms).
    pub at: i64,
}

/// Empty the own file once it holds this many entries and all are in the ledger.
const COMPACT_AFTER: usize = 1_000;

struct Own {
    file: File,
    path: PathBuf,
    lines: usize,
    /// Jobs whose entry is in the file but not yet confirmed in the ledger.
    unconfirmed: HashSet<String>,
}

/// A daemon's create journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    dir: PathBuf,
    /// This daemon's instance id: the file's name, and the owner written on the submission
    /// leases it takes, so whoever finds the file orphaned knows whose leases are dead.
    instance: Arc<str>,
    own: Arc<Mutex<Own>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("dir", &self.dir).finish()
    }
}

/// The journal folder of a database file.
pub fn dir_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".created");
    PathBuf::from(name)
}

impl Journal {
    /// Creates `dir` if needed and opens this daemon's own file in it, locked. The file is
    /// created and locked under a name [`Journal::orphans`] skips, then renamed (the lock
    /// stays with the file): another daemon looking for orphans at that moment could otherwise
    /// take the fresh file's lock first and count a live daemon as dead.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let instance = ulid::Ulid::new().to_string();
        let fresh = dir.join(format!("{instance}.opening"));
        let path = dir.join(format!("{instance}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&fresh)?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => {
                std::io::Error::other("a fresh journal file is locked by someone else")
            }
        })?;
        std::fs::rename(&fresh, &path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            instance: instance.into(),
            own: Arc::new(Mutex::new(Own {
                file,
                path,
                lines: 0,
                unconfirmed: HashSet::new(),
            })),
        })
    }

    /// This daemon's instance id (the owner of the submission leases it takes).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Appends an entry and syncs it to disk before returning. Blocking: call it from
    /// `spawn_blocking`.
    pub fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        own.file.write_all(&line)?;
        own.file.sync_data()?;
        own.lines += 1;
        own.unconfirmed.insert(entry.job_id.to_string());
        Ok(())
    }

    /// The ledger has the job's response: its entry is no longer needed. Empties the file
    /// when it has grown and holds nothing unconfirmed. Blocking.
    pub fn confirm(&self, job_id: &str) -> std::io::Result<()> {
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        own.unconfirmed.remove(job_id);
        if own.unconfirmed.is_empty() && own.lines >= COMPACT_AFTER {
            own.file.set_len(0)?;
            own.file.sync_data()?;
            own.lines = 0;
        }
        Ok(())
    }

    /// Entries of this daemon's file not yet confirmed in the ledger.
    pub fn unconfirmed(&self) -> usize {
        self.own
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unconfirmed
            .len()
    }

    /// The files of daemons that are gone (their lock can be taken), with their entries. Each
    /// comes back locked by us; remove it with [`Orphan::remove`] once replayed. Blocking.
    pub fn orphans(&self) -> std::io::Result<Vec<Orphan>> {
        let own_path = self
            .own
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .path
            .clone();
        let mut out = Vec::new();
        for dirent in std::fs::read_dir(&self.dir)? {
            let path = dirent?.path();
            if path.extension().is_some_and(|e| e == "opening") {
                remove_if_abandoned(&path);
                continue;
            }
            if path == own_path || path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue; // a live daemon's
            }
            let mut entries = Vec::new();
            for line in BufReader::new(&file).lines() {
                let line = line?;
                // A line cut short by a crash mid-append is skipped: its create's webhook or
                // the uncertain-create rules still find that response.
                if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                    entries.push(e);
                }
            }
            let instance = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Orphan {
                instance,
                path,
                _file: file,
                entries,
            });
        }
        Ok(out)
    }

    /// Removes this daemon's own file if nothing in it is unconfirmed (a clean stop).
    pub fn close(&self) -> std::io::Result<()> {
        let own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        if own.unconfirmed.is_empty() {
            std::fs::remove_file(&own.path)?;
        }
        Ok(())
    }
}

/// A file a daemon created to become its journal and died before renaming: empty, and
/// removed once nobody holds it and it is a minute old (a fresh one is about to be renamed,
/// and its creator may not have locked it yet).
fn remove_if_abandoned(path: &Path) {
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(60));
    if !old {
        return;
    }
    if let Ok(file) = OpenOptions::new().read(true).write(true).open(path)
        && file.try_lock().is_ok()
    {
        let _ = std::fs::remove_file(path);
    }
}

/// A dead daemon's journal file, locked by us.
pub struct Orphan {
    /// The dead daemon's instance id: the submission leases it owned are dead too.
    pub instance: String,
    path: PathBuf,
    _file: File,
    pub entries: Vec<Entry>,
}

impl Orphan {
    /// Deletes the file (every entry is in the ledger now).
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same job id for the same name.
    fn id(name: &str) -> JobId {
        let n = name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        JobId::parse(&format!("job_{}", ulid::Ulid::from((n, 0)))).unwrap()
    }

    fn entry(job: &str) -> Entry {
        Entry {
            job_id: id(job),
            response_id: ResponseId::parse(&format!("resp_{job}")).unwrap(),
            at: 1,
        }
    }

    #[test]
    fn a_dead_daemons_file_is_replayed_a_live_ones_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_for(&tmp.path().join("respool.db"));
        let dead = Journal::open(&dir).unwrap();
        dead.append(&entry("a")).unwrap();
        dead.append(&entry("b")).unwrap();
        let live = Journal::open(&dir).unwrap();
        live.append(&entry("c")).unwrap();
        // `dead` still runs: nobody may take its file.
        let me = Journal::open(&dir).unwrap();
        assert!(me.orphans().unwrap().is_empty());
        drop(dead);
        let orphans = me.orphans().unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].entries, vec![entry("a"), entry("b")]);
        for o in orphans {
            o.remove().unwrap();
        }
        assert!(me.orphans().unwrap().is_empty());
        assert_eq!(live.unconfirmed(), 1);
    }

    #[test]
    fn a_file_being_opened_is_never_taken_and_an_abandoned_one_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let me = Journal::open(&dir).unwrap();
        assert_eq!(me.instance().len(), 26);
        // Another daemon between creating its file and renaming it: not an orphan.
        let fresh = dir.join(format!("{}.opening", ulid::Ulid::new()));
        std::fs::write(&fresh, b"").unwrap();
        assert!(me.orphans().unwrap().is_empty());
        assert!(fresh.exists());
        // One that died there a while ago: removed.
        let file = OpenOptions::new().write(true).open(&fresh).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        file.set_modified(past).unwrap();
        drop(file);
        assert!(me.orphans().unwrap().is_empty());
        assert!(!fresh.exists());
        // An orphan names the daemon that owned it.
        let dead = Journal::open(&dir).unwrap();
        let instance = dead.instance().to_owned();
        drop(dead);
        let orphans = me.orphans().unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].instance, instance);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let j = Journal::open(&dir).unwrap();
        j.append(&entry("a")).unwrap();
        {
            let mut own = j.own.lock().unwrap();
            own.file.write_all(b"{\"job_id\":\"b\",\"resp").unwrap();
        }
        drop(j);
        let me = Journal::open(&dir).unwrap();
        let orphans = me.orphans().unwrap();
        assert_eq!(orphans[0].entries, vec![entry("a")]);
    }

    #[test]
    fn confirmed_entries_are_compacted_and_a_clean_close_removes_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("j");
        let j = Journal::open(&dir).unwrap();
        for i in 0..COMPACT_AFTER {
            j.append(&entry(&i.to_string())).unwrap();
        }
        j.append(&entry("last")).unwrap();
        for i in 0..COMPACT_AFTER {
            j.confirm(&id(&i.to_string())).unwrap();
        }
        // `last` is not confirmed: nothing is dropped yet.
        let path = j.own.lock().unwrap().path.clone();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        j.confirm(&id("last")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        j.close().unwrap();
        assert!(!path.exists());
    }
}
