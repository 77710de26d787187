//! Content-addressed blobs: `blobs/sha256/<hex>`, written through [`BlobWriter`].
//!
//! A writer streams into a fresh temp file under `ingest/` (locked by its writer, so a
//! concurrent `Store::open` never cleans it up), hashing and counting as it goes. `commit`
//! flushes and fsyncs, checks the size and the digest, then renames the file into place and
//! fsyncs the directory. Anything else (a mismatch, an error, a drop, a killed process) leaves
//! at most a temp file that nothing trusts and the next `Store::open` removes. Two writers of
//! the same digest both succeed: the second rename replaces identical content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::fsutil::{io_err, sync_dir, unique_name};
use super::gc::Lease;
use super::locks;
use super::{Store, StoreError};
use crate::digest::{Digest, Hasher};

/// A blob being written: hashes and counts while written, lands under its digest only on a
/// successful [`BlobWriter::commit`]; dropped uncommitted, it leaves nothing behind.
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    expected: Digest,
    size: Option<u64>,
    hasher: Hasher,
    // Keeps garbage collection away while the blob is written (see `Store::lease`).
    _lease: Lease,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("written", &self.hasher.len())
            .finish()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size
            && self.hasher.len() + buf.len() as u64 > size
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than its announced {size} bytes",
                    self.expected
                ),
            ));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies digest (and size, when announced), fsyncs and renames into place.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let result = self.finish();
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        let buffered = self.file.take().ok_or_else(|| StoreError::Io {
            path: self.temp.clone(),
            source: io::Error::other("blob writer already finished"),
        })?;
        let file = buffered.into_inner().map_err(|e| StoreError::Io {
            path: self.temp.clone(),
            source: e.into_error(),
        })?;
        let actual_len = self.hasher.len();
        if let Some(expected) = self.size
            && expected != actual_len
        {
            return Err(StoreError::SizeMismatch {
                digest: self.expected.clone(),
                expected,
                actual: actual_len,
            });
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.expected {
            return Err(StoreError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        file.sync_all().map_err(io_err(&self.temp))?;
        fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Store {
    /// Whether a verified blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Where a present blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// Starts writing a blob expected to hash to `expected` (and be `size` bytes when known).
    pub fn begin_blob(
        &self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<BlobWriter, StoreError> {
        let lease = self.lease()?;
        let temp = self.root.join("ingest").join(unique_name(expected.hex()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .map_err(io_err(&temp))?;
        if let Err(e) = locks::lock_file(&file) {
            let _ = fs::remove_file(&temp);
            return Err(StoreError::Io {
                path: temp,
                source: e,
            });
        }
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            target: self.blob_path(expected),
            temp,
            expected: expected.clone(),
            size,
            hasher: Hasher::new(),
            _lease: lease,
        })
    }

    /// Writes a whole blob from memory (manifests, configs), verifying it.
    pub fn put_blob(&self, expected: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.has_blob(expected) {
            let actual = Digest::of(bytes);
            if &actual != expected {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            return Ok(());
        }
        let mut w = self.begin_blob(expected, Some(bytes.len() as u64))?;
        w.write_all(bytes).map_err(io_err(&w.temp.clone()))?;
        w.commit()
    }

    /// Reads a whole blob (manifests, configs), as [`Store::open_blob`] opens it.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        use std::io::Read;
        let mut out = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut out)
            .map_err(io_err(&self.blob_path(digest)))?;
        Ok(out)
    }

    /// Opens a present blob for streaming: never through a symlink (`O_NOFOLLOW`), and only
    /// a regular file; anything else in `blobs/` is reported as corrupt.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        let corrupt = |path: PathBuf, what: &str| StoreError::Corrupt {
            path,
            message: format!("blob {digest} is {what}, not a regular file"),
        };
        let f = super::layout::open_nofollow(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound(digest.clone())
            } else if e.raw_os_error() == Some(libc::ELOOP) {
                corrupt(path.clone(), "a symlink")
            } else {
                StoreError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        if !f.metadata().map_err(io_err(&path))?.is_file() {
            return Err(corrupt(path, "something else"));
        }
        Ok(f)
    }

    /// Every blob present, with its size.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let dir = self.root.join("blobs").join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name();
            let Some(d) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                continue;
            };
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((d, len));
        }
        out.sort();
        Ok(out)
    }

    /// Removes temp files under `ingest/` that no writer holds (left by a killed process).
    pub(crate) fn clean_ingest(&self) {
        let dir = self.root.join("ingest");
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            // A writer creates then locks its file: skip files younger than a few seconds.
            let young = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < 5);
            if young && !super::fsutil::writer_gone(&e.file_name().to_string_lossy()) {
                continue;
            }
            if let Ok(f) = File::open(&path)
                && locks::try_lock_file(&f)
            {
                let _ = fs::remove_file(&path);
            }
        }
    }
}
