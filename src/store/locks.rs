//! Advisory file locks (`flock` through fs4) on files under `locks/`.
//!
//! Locks are held by open file descriptions, so two threads of one process exclude each other
//! as two processes do. Lock files are never deleted (deleting a lock file another process is
//! waiting on would let two holders in).
//!
//! Names in use: `refs.lock` (the references file), `gc.lock` (shared by writers holding a
//! [`super::Lease`], exclusive for garbage collection), `snap-<diff_id hex>.lock` (one layer's
//! snapshot being created or removed), `tmp-<name>.lock` (a live operation's `tmp/<name>`
//! directory, e.g. a layout tar being imported; removed with the directory).

use std::fs::{File, OpenOptions};
use std::path::Path;

use fs4::FileExt;

use super::StoreError;
use super::fsutil::io_err;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
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

/// Waits for an exclusive lock on `path`.
pub(crate) fn exclusive(path: &Path) -> Result<LockGuard, StoreError> {
    let file = open(path)?;
    FileExt::lock(&file).map_err(io_err(path))?;
    Ok(LockGuard { file })
}

/// Waits for a shared lock on `path`.
pub(crate) fn shared(path: &Path) -> Result<LockGuard, StoreError> {
    let file = open(path)?;
    FileExt::lock_shared(&file).map_err(io_err(path))?;
    Ok(LockGuard { file })
}

/// Takes an exclusive lock on `path` if nobody holds it, else `None`.
pub(crate) fn try_exclusive(path: &Path) -> Result<Option<LockGuard>, StoreError> {
    let file = open(path)?;
    match FileExt::try_lock(&file) {
        Ok(()) => Ok(Some(LockGuard { file })),
        Err(fs4::TryLockError::WouldBlock) => Ok(None),
        Err(fs4::TryLockError::Error(e)) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
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
