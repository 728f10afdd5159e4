//! The durable outbox of run results ("nothing is lost").
//!
//! Every result is written here before it is sent, and removed only when the coordinator
//! acknowledges it, which the coordinator does only after committing it. A result therefore
//! survives agent crashes, coordinator outages and network partitions; the price is that a result
//! may be sent twice (the coordinator stores each result id once).
//!
//! # What is stored and why
//!
//! One file per result, `<dir>/<result_id>.json`, holding the [`RunResult`] as JSON. Result ids
//! are UUIDv7, so file names sort in creation order and [`Spool::pending`] returns the oldest
//! result first. A file per result keeps every operation a single atomic rename or unlink: a
//! `SIGKILL` at any instant leaves either the old state or the new one, never a torn file.
//!
//! - A write goes to `<result_id>.json.tmp`, is fsynced, renamed over `<result_id>.json`, and the
//!   directory is fsynced. A leftover `*.tmp` is an interrupted write whose `put` never returned,
//!   so the result was never sent and the executor still owns it; [`Spool::open`] deletes it.
//! - A file that does not parse (a zero-byte file after a disk-full event, a hand edit) is moved
//!   to `<dir>/corrupt/` for a human to look at, so that it cannot block the results behind it.
//! - A result the coordinator rejected for good (it does not validate, or names a run this
//!   agent does not hold) is moved to `<dir>/dead/`, with `<result_id>.reason` beside it, and
//!   logged once, so the agent does not resend it forever ([`Spool::dead_letter`]).
//!
//! The directory belongs to one agent process; two processes must not share it.
//!
//! All file system work runs on tokio's blocking pool, under one lock that also guards the
//! in-memory index. A caller that stops awaiting an operation does not interrupt it, so the index
//! always matches the directory.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lifeboat_shared::ids::ResultId;
use lifeboat_shared::protocol::RunResult;
use tokio::sync::Notify;

/// Suffix of a spooled result.
const ENTRY_SUFFIX: &str = ".json";
/// Suffix of a result being written.
const TMP_SUFFIX: &str = ".tmp";
/// Subdirectory for files that do not parse.
const CORRUPT_DIR: &str = "corrupt";
/// Subdirectory for results the coordinator rejected for good.
pub const DEAD_DIR: &str = "dead";
/// Suffix of the file holding why a result was rejected.
const REASON_SUFFIX: &str = ".reason";
/// Permissions of the spool directories: results describe the customer's infrastructure.
const DIR_MODE: u32 = 0o700;
/// Permissions of spooled files.
const FILE_MODE: u32 = 0o600;

/// Error from the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file system operation failed.
    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A result could not be serialised.
    #[error("cannot encode result {result_id}")]
    Encode {
        result_id: ResultId,
        #[source]
        source: serde_json::Error,
    },
    /// The blocking task running the operation panicked or was dropped by a shutting-down
    /// runtime; it may or may not have completed.
    #[error("spool worker task failed")]
    Worker(#[source] tokio::task::JoinError),
}

impl SpoolError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { action, path, source }
    }
}

/// The durable outbox of run results. Cheap to clone: clones share one directory and index.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Ids of the entries on disk, in file name (creation) order. The lock also serialises all
    /// file system changes, so two writes of one id never share a `.tmp` file.
    index: Mutex<BTreeSet<ResultId>>,
    /// Copy of `index.len()`, readable without waiting behind an fsync.
    len: AtomicUsize,
    /// Woken by every successful `put`.
    added: Notify,
}

impl Spool {
    /// Opens the spool in `dir`, creating it (mode 0700) if needed.
    ///
    /// Deletes leftover `*.tmp` files from interrupted writes, quarantines `*.json` files whose
    /// name is not a result id, and indexes the remaining entries. Blocks on the file system; call
    /// it at startup.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(SpoolError::io("create spool directory", dir))?;

        let mut index = BTreeSet::new();
        let mut removed_tmp = false;
        let entries = fs::read_dir(dir).map_err(SpoolError::io("list spool directory", dir))?;
        for entry in entries {
            let entry = entry.map_err(SpoolError::io("list spool directory", dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(TMP_SUFFIX) {
                fs::remove_file(&path).map_err(SpoolError::io("remove interrupted write", &path))?;
                tracing::info!(path = %path.display(), "removed interrupted spool write");
                removed_tmp = true;
            } else if let Some(stem) = name.strip_suffix(ENTRY_SUFFIX) {
                match ResultId::parse(stem) {
                    Ok(result_id) if result_id.to_string() == stem => {
                        index.insert(result_id);
                    }
                    _ => {
                        quarantine(dir, &name, "file name is not a result id");
                    }
                }
            }
        }
        if removed_tmp {
            sync_dir(dir)?;
        }

        tracing::debug!(dir = %dir.display(), pending = index.len(), "spool opened");
        Ok(Spool {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                len: AtomicUsize::new(index.len()),
                index: Mutex::new(index),
                added: Notify::new(),
            }),
        })
    }

    /// Returns the spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores `result` durably; when this returns `Ok`, the result survives a crash.
    ///
    /// Writing the same result id again replaces the entry (still one entry). Wakes the waiter
    /// on [`notify`](Self::notify).
    pub async fn put(&self, result: &RunResult) -> Result<(), SpoolError> {
        let result_id = result.result_id;
        let json = serde_json::to_vec_pretty(result).map_err(|source| SpoolError::Encode { result_id, source })?;
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.put(result_id, &json)).await
    }

    /// Removes the entry for `result_id` once the coordinator has committed it. The removal is
    /// not synced to disk: after a crash the entry may reappear and is
    /// simply sent again.
    ///
    /// Returns whether the entry existed. Acknowledgements may be repeated, so an unknown id is
    /// not an error.
    pub async fn ack(&self, result_id: ResultId) -> Result<bool, SpoolError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.ack(result_id)).await
    }

    /// Moves the entry for `result_id` to `<dir>/dead/` with `reason` beside it, and logs it:
    /// the coordinator will never accept it, and a human may want to see it. Returns whether
    /// the entry existed (a repeated rejection is not an error).
    pub async fn dead_letter(&self, result_id: ResultId, reason: &str) -> Result<bool, SpoolError> {
        let inner = Arc::clone(&self.inner);
        let reason = reason.to_owned();
        run_blocking(move || inner.dead_letter(result_id, &reason)).await
    }

    /// Returns every spooled result, oldest first.
    ///
    /// A file that does not parse, or whose content names another result id, is moved to
    /// `<dir>/corrupt/` with a warning and left out. A file that cannot be read is left in place
    /// with a warning and left out, to be retried on the next call. Neither blocks the others.
    pub async fn pending(&self) -> Result<Vec<RunResult>, SpoolError> {
        self.pending_except(HashSet::new(), usize::MAX).await
    }

    /// Like [`pending`](Self::pending), but skips the ids in `skip` (already in flight) and
    /// reads at most `limit` files: a session that sends a few new results does not re-read a
    /// spool of thousands.
    pub async fn pending_except(&self, skip: HashSet<ResultId>, limit: usize) -> Result<Vec<RunResult>, SpoolError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || inner.pending(&skip, limit)).await
    }

    /// Returns the number of spooled results, without touching the disk.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Returns whether no result is spooled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the notification that [`put`](Self::put) signals after storing a result, so that
    /// a connected session can send new results right away instead of polling.
    ///
    /// `put` calls [`Notify::notify_one`], which stores a permit when nobody is waiting: a put
    /// that happens while the session is busy sending makes its next `notified().await` return
    /// at once, so no result waits for the next reconnect. The flip side is that a wake-up may
    /// find nothing new, and that only one task is woken, so there should be a single waiter
    /// (the session task). The intended loop:
    ///
    /// ```ignore
    /// loop {
    ///     for result in spool.pending().await? {
    ///         if !in_flight.contains(&result.result_id) { send(result).await?; }
    ///     }
    ///     tokio::select! {
    ///         () = spool.notify().notified() => {}
    ///         ack = acks.recv() => { /* spool.ack(id) */ }
    ///     }
    /// }
    /// ```
    pub fn notify(&self) -> &Notify {
        &self.inner.added
    }
}

impl Inner {
    fn lock_index(&self) -> MutexGuard<'_, BTreeSet<ResultId>> {
        // A panic while holding the lock leaves the index no less accurate than the directory
        // operations that completed, so keep going with it.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry_path(&self, result_id: ResultId) -> PathBuf {
        self.dir.join(format!("{result_id}{ENTRY_SUFFIX}"))
    }

    fn put(&self, result_id: ResultId, json: &[u8]) -> Result<(), SpoolError> {
        let mut index = self.lock_index();
        let path = self.entry_path(result_id);
        let tmp_path = self.dir.join(format!("{result_id}{ENTRY_SUFFIX}{TMP_SUFFIX}"));
        let written = write_synced(&tmp_path, json)
            .and_then(|()| fs::rename(&tmp_path, &path).map_err(SpoolError::io("rename into place", &path)));
        if let Err(err) = written {
            // Best effort: open() removes leftovers anyway.
            let _ = fs::remove_file(&tmp_path);
            return Err(err);
        }
        // The entry is visible from here on: index it even if the directory fsync fails.
        index.insert(result_id);
        self.len.store(index.len(), Ordering::Release);
        sync_dir(&self.dir)?;
        drop(index);
        self.added.notify_one();
        Ok(())
    }

    fn ack(&self, result_id: ResultId) -> Result<bool, SpoolError> {
        let mut index = self.lock_index();
        let path = self.entry_path(result_id);
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => return Err(SpoolError::io("remove acknowledged result", &path)(err)),
        };
        index.remove(&result_id);
        self.len.store(index.len(), Ordering::Release);
        // No directory fsync: a deletion lost in a crash brings the entry back, it is sent
        // again and the coordinator, which stores each result id once, acknowledges it again.
        // Losing a deletion is harmless; paying an fsync per acknowledgement is not.
        Ok(existed)
    }

    fn dead_letter(&self, result_id: ResultId, reason: &str) -> Result<bool, SpoolError> {
        let mut index = self.lock_index();
        let path = self.entry_path(result_id);
        if !path.exists() {
            index.remove(&result_id);
            self.len.store(index.len(), Ordering::Release);
            return Ok(false);
        }
        let dead_dir = self.dir.join(DEAD_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dead_dir)
            .map_err(SpoolError::io("create dead-letter directory", &dead_dir))?;
        let name = format!("{result_id}{ENTRY_SUFFIX}");
        write_synced(&dead_dir.join(format!("{result_id}{REASON_SUFFIX}")), reason.as_bytes())?;
        let target = dead_dir.join(&name);
        fs::rename(&path, &target).map_err(SpoolError::io("move to the dead-letter directory", &path))?;
        index.remove(&result_id);
        self.len.store(index.len(), Ordering::Release);
        sync_dir(&dead_dir)?;
        sync_dir(&self.dir)?;
        tracing::error!(
            %result_id,
            moved_to = %target.display(),
            reason,
            "the coordinator rejected a result for good; kept in the dead-letter directory"
        );
        Ok(true)
    }

    fn pending(&self, skip: &HashSet<ResultId>, limit: usize) -> Result<Vec<RunResult>, SpoolError> {
        let mut index = self.lock_index();
        let mut results = Vec::with_capacity(index.len().min(limit));
        let mut gone = Vec::new();
        for &result_id in index.iter().filter(|id| !skip.contains(id)) {
            if results.len() >= limit {
                break;
            }
            let name = format!("{result_id}{ENTRY_SUFFIX}");
            let path = self.dir.join(&name);
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "spooled result vanished");
                    gone.push(result_id);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot read spooled result, will retry");
                    continue;
                }
            };
            match serde_json::from_slice::<RunResult>(&bytes) {
                Ok(result) if result.result_id == result_id => results.push(result),
                Ok(result) => {
                    let reason = format!("content is result {}", result.result_id);
                    if quarantine(&self.dir, &name, &reason) {
                        gone.push(result_id);
                    }
                }
                Err(err) => {
                    if quarantine(&self.dir, &name, &err.to_string()) {
                        gone.push(result_id);
                    }
                }
            }
        }
        for result_id in gone {
            index.remove(&result_id);
        }
        self.len.store(index.len(), Ordering::Release);
        Ok(results)
    }
}

/// Runs spool file system work on the blocking pool.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(work).await.map_err(SpoolError::Worker)?
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(SpoolError::io("create", path))?;
    file.write_all(bytes).map_err(SpoolError::io("write", path))?;
    file.sync_all().map_err(SpoolError::io("fsync", path))
}

/// Fsyncs a directory, making the renames and unlinks in it durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(SpoolError::io("fsync directory", dir))
}

/// Moves `<dir>/<name>` to `<dir>/corrupt/`, keeping earlier quarantined copies of the same name.
///
/// Returns whether the file left the spool. Failures are logged rather than returned: a file that
/// cannot be quarantined stays in place, is skipped, and is tried again next time, so that it
/// never blocks the other results.
fn quarantine(dir: &Path, name: &str, reason: &str) -> bool {
    let source = dir.join(name);
    let corrupt_dir = dir.join(CORRUPT_DIR);
    let moved = DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(&corrupt_dir)
        .map_err(SpoolError::io("create quarantine directory", &corrupt_dir))
        .and_then(|()| {
            let mut target = corrupt_dir.join(name);
            let mut copy = 0_u32;
            while target.exists() {
                copy += 1;
                target = corrupt_dir.join(format!("{name}.{copy}"));
            }
            fs::rename(&source, &target).map_err(SpoolError::io("quarantine", &source))?;
            Ok(target)
        });
    let target = match moved {
        Ok(target) => target,
        Err(err) => {
            tracing::error!(
                path = %source.display(),
                reason,
                error = &err as &dyn std::error::Error,
                "cannot quarantine unreadable spooled result, skipping it"
            );
            return false;
        }
    };
    tracing::warn!(
        path = %source.display(),
        moved_to = %target.display(),
        reason,
        "quarantined unreadable spooled result"
    );
    // Not durable yet is harmless: after a power loss the file is found and quarantined again.
    if let Err(err) = sync_dir(&corrupt_dir).and_then(|()| sync_dir(dir)) {
        tracing::warn!(error = &err as &dyn std::error::Error, "cannot fsync after quarantine");
    }
    true
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use lifeboat_shared::protocol::Outcome;

    use super::*;

    fn result(asset: &str) -> RunResult {
        RunResult::for_test(asset, Outcome::Passed)
    }

    fn entry_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(ENTRY_SUFFIX))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn put_pending_ack_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(spool.is_empty());

        let first = result("rentals-db");
        spool.put(&first).await.unwrap();
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.pending().await.unwrap(), vec![first.clone()]);
        assert_eq!(entry_names(dir.path()), vec![format!("{}.json", first.result_id)]);

        assert!(spool.ack(first.result_id).await.unwrap());
        assert!(spool.is_empty());
        assert!(spool.pending().await.unwrap().is_empty());
        assert!(entry_names(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn ack_of_unknown_or_repeated_id_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(!spool.ack(ResultId::new()).await.unwrap());

        let kept = result("db");
        spool.put(&kept).await.unwrap();
        assert!(!spool.ack(ResultId::new()).await.unwrap());
        assert_eq!(spool.len(), 1);
        assert!(spool.ack(kept.result_id).await.unwrap());
        assert!(!spool.ack(kept.result_id).await.unwrap());
        assert_eq!(spool.len(), 0);
    }

    #[tokio::test]
    async fn duplicate_put_is_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut same = result("db");
        spool.put(&same).await.unwrap();
        same.detail = serde_json::json!({"retried": true});
        spool.put(&same).await.unwrap();

        assert_eq!(spool.len(), 1);
        assert_eq!(spool.pending().await.unwrap(), vec![same]);
        assert_eq!(entry_names(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn open_removes_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let kept = result("db");
        {
            let spool = Spool::open(dir.path()).unwrap();
            spool.put(&kept).await.unwrap();
        }
        let torn = dir.path().join(format!("{}.json.tmp", ResultId::new()));
        fs::write(&torn, b"{\"result_id\": ").unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        assert!(!torn.exists());
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.pending().await.unwrap(), vec![kept]);
    }

    #[tokio::test]
    async fn corrupt_files_are_quarantined_and_others_still_returned() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let before = result("before");
        spool.put(&before).await.unwrap();
        let empty_id = ResultId::new();
        let garbage_id = ResultId::new();
        let after = result("after");
        spool.put(&after).await.unwrap();
        // Written behind the spool's back, as a disk-full event or a hand edit would.
        fs::write(dir.path().join(format!("{empty_id}.json")), b"").unwrap();
        fs::write(dir.path().join(format!("{garbage_id}.json")), b"not json").unwrap();
        fs::write(dir.path().join("not-an-id.json"), b"{}").unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.len(), 4);
        assert_eq!(spool.pending().await.unwrap(), vec![before.clone(), after.clone()]);
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.pending().await.unwrap(), vec![before, after]);

        let mut quarantined: Vec<String> = fs::read_dir(dir.path().join(CORRUPT_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        quarantined.sort();
        let mut expected = vec![
            format!("{empty_id}.json"),
            format!("{garbage_id}.json"),
            "not-an-id.json".to_owned(),
        ];
        expected.sort();
        assert_eq!(quarantined, expected);
    }

    #[tokio::test]
    async fn file_holding_another_result_is_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let misplaced = result("db");
        let name_id = ResultId::new();
        fs::write(
            dir.path().join(format!("{name_id}.json")),
            serde_json::to_vec(&misplaced).unwrap(),
        )
        .unwrap();

        let spool = Spool::open(dir.path()).unwrap();
        assert!(spool.pending().await.unwrap().is_empty());
        assert!(spool.is_empty());
        assert!(dir.path().join(CORRUPT_DIR).join(format!("{name_id}.json")).exists());
    }

    #[tokio::test]
    async fn quarantine_keeps_earlier_copies() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{}.json", ResultId::new());
        for content in [&b""[..], b"garbage"] {
            fs::write(dir.path().join(&name), content).unwrap();
            let spool = Spool::open(dir.path()).unwrap();
            assert!(spool.pending().await.unwrap().is_empty());
        }
        let corrupt = dir.path().join(CORRUPT_DIR);
        assert_eq!(fs::read(corrupt.join(&name)).unwrap(), b"");
        assert_eq!(fs::read(corrupt.join(format!("{name}.1"))).unwrap(), b"garbage");
    }

    #[tokio::test]
    async fn pending_is_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let results: Vec<RunResult> = (0..20).map(|n| result(&format!("asset-{n}"))).collect();
        // Stored in reverse: the order comes from the ids, not from the order of writes.
        for stored in results.iter().rev() {
            spool.put(stored).await.unwrap();
        }
        assert_eq!(spool.pending().await.unwrap(), results);

        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.pending().await.unwrap(), results);
    }

    #[tokio::test]
    async fn reopening_sees_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<RunResult> = (0..5).map(|n| result(&format!("asset-{n}"))).collect();
        {
            let spool = Spool::open(dir.path()).unwrap();
            for stored in &results {
                spool.put(stored).await.unwrap();
            }
            spool.ack(results[1].result_id).await.unwrap();
        }

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.len(), 4);
        let expected: Vec<RunResult> = results
            .iter()
            .enumerate()
            .filter(|&(n, _)| n != 1)
            .map(|(_, kept)| kept.clone())
            .collect();
        assert_eq!(spool.pending().await.unwrap(), expected);
    }

    #[tokio::test]
    async fn len_follows_every_change_and_is_shared_by_clones() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let clone = spool.clone();
        let results: Vec<RunResult> = (0..3).map(|n| result(&format!("asset-{n}"))).collect();
        for (n, stored) in results.iter().enumerate() {
            spool.put(stored).await.unwrap();
            assert_eq!(clone.len(), n + 1);
        }
        spool.put(&results[0]).await.unwrap();
        assert_eq!(clone.len(), 3);
        clone.ack(results[2].result_id).await.unwrap();
        clone.ack(results[2].result_id).await.unwrap();
        assert_eq!(spool.len(), 2);
        assert_eq!(Spool::open(dir.path()).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn put_wakes_the_waiting_session() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let waiter = {
            let spool = spool.clone();
            tokio::spawn(async move { spool.notify().notified().await })
        };
        spool.put(&result("db")).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();

        // A put while nobody waits is remembered for the next wait.
        spool.put(&result("db")).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), spool.notify().notified())
            .await
            .expect("permit stored");
    }

    #[tokio::test]
    async fn dead_letters_leave_the_spool_with_their_reason_and_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let rejected = result("db");
        let kept = result("db");
        spool.put(&rejected).await.unwrap();
        spool.put(&kept).await.unwrap();

        assert!(
            spool
                .dead_letter(rejected.result_id, "finding.message too long")
                .await
                .unwrap()
        );
        assert_eq!(spool.pending().await.unwrap(), vec![kept.clone()]);
        assert!(!spool.dead_letter(rejected.result_id, "again").await.unwrap());
        let dead = dir.path().join(DEAD_DIR);
        let stored: RunResult =
            serde_json::from_slice(&fs::read(dead.join(format!("{}.json", rejected.result_id))).unwrap()).unwrap();
        assert_eq!(stored, rejected);
        let reason = fs::read_to_string(dead.join(format!("{}.reason", rejected.result_id))).unwrap();
        assert_eq!(reason, "finding.message too long");
        // Reopening does not bring it back.
        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.pending().await.unwrap(), vec![kept]);
    }

    #[test]
    fn directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("state").join("spool");
        let spool = Spool::open(&spool_dir).unwrap();
        let mode = fs::metadata(&spool_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let stored = result("db");
        runtime.block_on(spool.put(&stored)).unwrap();
        let file = spool_dir.join(format!("{}.json", stored.result_id));
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let err = Spool::open(&blocker.join("spool")).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("cannot create spool directory"), "{message}");
        assert!(message.contains(&blocker.display().to_string()), "{message}");
    }
}
