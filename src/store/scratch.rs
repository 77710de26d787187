//! Scratch space for producers of new content (the build): a locked directory under `tmp/`
//! that other xrun processes leave alone while it lives, and adopting a finished file there
//! as a blob.

use std::fs;
use std::path::{Path, PathBuf};

use super::fsutil::{io_err, remove_any, sync_dir, unique_name};
use super::locks::{self, LockGuard};
use super::{Store, StoreError};
use crate::digest::Digest;

/// A directory under the store's `tmp/`, removed when dropped; locked while it lives, so
/// [`Store::open`]'s clean-up of another process does not take it away.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    _lock: LockGuard,
}

impl ScratchDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = remove_any(&self.path);
    }
}

impl Store {
    /// A new, empty scratch directory (see [`ScratchDir`]); `what` names it for humans.
    pub fn scratch_dir(&self, what: &str) -> Result<ScratchDir, StoreError> {
        // `load-` entries are removed by others only when their lock is free.
        let name = unique_name(&format!("load-{what}"));
        let lock = locks::exclusive(&self.tmp_lock(&name))?;
        let path = self.root.join("tmp").join(&name);
        fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(ScratchDir { path, _lock: lock })
    }

    /// Moves `file` (on the store's file system, e.g. in a [`ScratchDir`]) into the blobs as
    /// `digest`, which the caller computed while writing it. An existing blob is kept.
    pub fn adopt_blob(&self, file: &Path, digest: &Digest) -> Result<(), StoreError> {
        let target = self.blob_path(digest);
        if target.is_file() {
            let _ = fs::remove_file(file);
            return Ok(());
        }
        fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io_err(file))?;
        fs::rename(file, &target).map_err(io_err(&target))?;
        sync_dir(target.parent().unwrap_or(&self.root))
    }
}
