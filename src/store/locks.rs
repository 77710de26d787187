//! Advisory file locks (`flock` through fs4) on files under `locks/`.
//!
//! Locks are held by open file descriptions, so two threads of one process exclude each other
//! as two processes do.
//!
//! Per-operation lock files (`snap-*.lock`, `tmp-*.lock`) are removed by their holder when it
//! releases them, so nothing accumulates under `locks/` (not even after a refused unpack).
//! That is safe because every acquirer, after `flock` returns, checks that the path still
//! names the very file it locked (same `st_dev`/`st_ino`) and starts over if not: a waiter
//! that was queued on a file its holder then unlinked never counts as holding the lock. The
//! holder unlinks only while it still holds the lock and only if the path is still its file.
//! `refs.lock` and `gc.lock` stay (they are shared by every operation).
//!
//! Names in use: `refs.lock` (the references file), `gc.lock` (shared by writers holding a
//! [`super::Lease`], exclusive for garbage collection), `snap-<diff_id hex>.lock` (one layer's
//! snapshot being created or removed), `tmp-<name>.lock` (a live operation's `tmp/<name>`
//! directory, e.g. a layout tar being imported; removed with the directory).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fs4::FileExt;

use super::StoreError;
use super::fsutil::io_err;

/// A held lock; released when dropped (and its file removed, for per-operation locks).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    /// The lock file, when it is removed on release.
    remove: Option<PathBuf>,
}

impl LockGuard {
    fn new(file: File, path: &Path) -> LockGuard {
        let per_operation = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap-") || n.starts_with("tmp-"));
        LockGuard {
            file,
            remove: per_operation.then(|| path.to_path_buf()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.remove
            && still_at(&self.file, path)
        {
            let _ = std::fs::remove_file(path);
        }
        let _ = FileExt::unlock(&self.file);
    }
}

/// Whether `path` still names the file `file` is open on.
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

/// Locks the file at `path` with `lock`, starting over while the file it locked has been
/// removed by its previous holder (see the module doc).
fn acquire(
    path: &Path,
    lock: impl Fn(&File) -> std::io::Result<()>,
) -> Result<LockGuard, StoreError> {
    loop {
        let file = open(path)?;
        lock(&file).map_err(io_err(path))?;
        if still_at(&file, path) {
            return Ok(LockGuard::new(file, path));
        }
    }
}

/// Waits for an exclusive lock on `path`.
pub(crate) fn exclusive(path: &Path) -> Result<LockGuard, StoreError> {
    acquire(path, FileExt::lock)
}

/// Waits for a shared lock on `path`.
pub(crate) fn shared(path: &Path) -> Result<LockGuard, StoreError> {
    acquire(path, FileExt::lock_shared)
}

/// Takes an exclusive lock on `path` if nobody holds it, else `None`.
pub(crate) fn try_exclusive(path: &Path) -> Result<Option<LockGuard>, StoreError> {
    loop {
        let file = open(path)?;
        match FileExt::try_lock(&file) {
            Ok(()) if still_at(&file, path) => return Ok(Some(LockGuard::new(file, path))),
            Ok(()) => continue,
            Err(fs4::TryLockError::WouldBlock) => return Ok(None),
            Err(fs4::TryLockError::Error(e)) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
    }
}

/// Takes an exclusive lock on an already open file if nobody holds it (ingest temp files).
pub(crate) fn try_lock_file(file: &File) -> bool {
    FileExt::try_lock(file).is_ok()
}

/// Locks an already open file exclusively, waiting (ingest temp files, held by their writer).
pub(crate) fn lock_file(file: &File) -> std::io::Result<()> {
    FileExt::lock(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter queued on a lock file its holder removes on release ends up holding the lock
    /// on the file now at the path, so a third party is excluded; the last holder's release
    /// leaves no file behind.
    #[test]
    fn removed_lock_files_still_exclude() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("snap-test.lock");
        let first = exclusive(&path).unwrap();
        assert!(path.exists());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let g = exclusive(&p).unwrap();
            // Holding: the path is the locked file, and nobody else gets it.
            assert!(still_at(&g.file, &p));
            assert!(try_exclusive(&p).unwrap().is_none());
            tx.send(()).unwrap();
            drop(g);
        });
        // Queue the waiter on the current file before it is removed (it blocks in flock, or
        // has not opened yet: both must end the same way).
        std::thread::yield_now();
        drop(first);
        rx.recv().unwrap();
        waiter.join().unwrap();
        assert!(!path.exists(), "the last holder removed the lock file");
        // Deterministically: a waiter that opened the file before its holder released it gets
        // the flock on the removed file, and sees it is no longer the one at the path (so
        // `acquire` starts over instead of counting it as held).
        let holder = exclusive(&path).unwrap();
        let stale = open(&path).unwrap();
        drop(holder);
        FileExt::lock(&stale).unwrap();
        assert!(!still_at(&stale, &path));
        let fresh = try_exclusive(&path).unwrap().expect("the new file is free");
        assert!(still_at(&fresh.file, &path));
        drop(fresh);
        drop(stale);
        // Shared locks on a long-lived name stay.
        let g = shared(&t.path().join("gc.lock")).unwrap();
        drop(g);
        assert!(t.path().join("gc.lock").exists());
    }
}
