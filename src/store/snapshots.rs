//! Layer snapshots: `snapshots/<diff_id hex>/`, each layer unpacked once and shared by every
//! image that uses it; the merged view ([`Store::flatten`]); and snapshot leases.
//!
//! A snapshot is built under the per-layer lock `locks/snap-<hex>.lock` in a fresh
//! `tmp/snap-<hex>-…` directory: the blob is decompressed (by its bytes, see
//! `decompress`), extracted in overlay mode (see `extract`), the uncompressed stream is
//! hashed and must equal the diff_id, the file system is synced, and only then is the
//! directory renamed to `snapshots/<hex>`. A directory there is therefore always complete;
//! anything else is removed on error, or by the next `Store::open` if the process died.
//!
//! Leases (for the runtime): a container that uses snapshots writes
//! `leases/<holder>` (one diff_id per line) with [`Store::lease_snapshots`] before mounting,
//! and removes it with [`Store::release_snapshots`] when the container is removed.
//! [`Store::prune`] never removes a leased snapshot, and `rmi` without `-f` refuses to untag
//! an image whose snapshots are leased.

use std::fs;
use std::path::{Path, PathBuf};

use super::decompress::{HashingReader, decompressed};
use super::extract::{Mode, extract};
use super::fsutil::{io_err, mkdir_all, remove_any, sync_dir, unique_name, write_replace};
use super::{Image, ImageRecord, LayerRef, Store, StoreError, locks};
use crate::digest::Digest;

impl Store {
    /// Where the snapshot of the layer with this diff_id lives (complete when it exists).
    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(diff_id.hex())
    }

    /// Unpacks each layer once (by diff_id; shared between images) and returns the
    /// snapshot directories, lowest first.
    ///
    /// Layers are independent snapshots, so they are unpacked in parallel (one worker per CPU,
    /// at most four); the first error in layer order is returned. Layers that did unpack stay:
    /// each is complete and verified, and unreferenced ones go at the next prune.
    pub fn unpack(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, StoreError> {
        let layers = &record.layers;
        let workers = crate::par::threads_for(layers.len(), 1).min(4);
        crate::par::map(layers, workers, |l| self.unpack_layer(l))
            .into_iter()
            .collect()
    }

    /// Unpacks one layer into its snapshot (or returns the existing one).
    pub fn unpack_layer(&self, layer: &LayerRef) -> Result<PathBuf, StoreError> {
        let dir = self.snapshot_path(&layer.diff_id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let _lock = locks::exclusive(&self.snapshot_lock(&layer.diff_id))?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self
            .root
            .join("tmp")
            .join(unique_name(&format!("snap-{}", layer.diff_id.hex())));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let result = self
            .extract_layer(layer, &tmp, Mode::Overlay)
            .and_then(|()| {
                crate::fault::point("pull.mid-unpack");
                let f = fs::File::open(&tmp).map_err(io_err(&tmp))?;
                nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
                    .map_err(|e| io_err(&tmp)(e.into()))?;
                fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
                sync_dir(&self.root.join("snapshots"))
            });
        if let Err(e) = result {
            let _ = remove_any(&tmp);
            return Err(e);
        }
        Ok(dir)
    }

    /// Decompresses, extracts and verifies one layer into `dest` (existing, empty or a
    /// tree being flattened).
    pub(super) fn extract_layer(
        &self,
        layer: &LayerRef,
        dest: &Path,
        mode: Mode,
    ) -> Result<(), StoreError> {
        let blob = self.open_blob(&layer.digest)?;
        let bad = |message: String| StoreError::BadLayer {
            layer: layer.digest.clone(),
            message,
        };
        let stream = decompressed(blob, &layer.media_type).map_err(bad)?;
        let hashing = HashingReader::new(stream);
        let hashing = extract(hashing, dest, &layer.digest, mode)?;
        let actual = hashing
            .finish()
            .map_err(|e| bad(format!("reading layer: {e}")))?;
        if actual != layer.diff_id {
            return Err(StoreError::DigestMismatch {
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The lock a live operation holds on its `tmp/<name>` entry.
    pub(crate) fn tmp_lock(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("tmp-{name}.lock"))
    }

    pub(crate) fn snapshot_lock(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("locks")
            .join(format!("snap-{}.lock", diff_id.hex()))
    }

    /// The image with its config parsed and its layers unpacked.
    pub fn image(&self, record: &ImageRecord) -> Result<Image, StoreError> {
        let bytes = self.read_blob(&record.config_digest)?;
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: format!("config {}", record.config_digest).into(),
                message: e.to_string(),
            })?;
        let layer_dirs = self.unpack(record)?;
        Ok(Image {
            record: record.clone(),
            config,
            layer_dirs,
        })
    }

    /// Applies the image's layers in order into one tree at `dest` (which must not exist),
    /// whiteouts applied as deletions: the merged view the pre-flight scan and the VM route
    /// read. Built from the layer blobs (not the snapshots) in a sibling temp directory that
    /// is renamed to `dest` when complete; on error nothing is left at `dest`.
    pub fn flatten(&self, record: &ImageRecord, dest: &Path) -> Result<(), StoreError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(StoreError::Io {
                path: dest.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "flatten target already exists",
                ),
            });
        }
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = parent.join(unique_name(".xrun-flatten"));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let result = record
            .layers
            .iter()
            .try_for_each(|l| self.extract_layer(l, &tmp, Mode::Apply))
            .and_then(|()| fs::rename(&tmp, dest).map_err(io_err(dest)));
        if result.is_err() {
            let _ = remove_any(&tmp);
        }
        result
    }

    /// Every complete snapshot's diff_id.
    pub fn list_snapshots(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Leases snapshots for `holder` (e.g. a container ID: letters, digits, `-`, `_`, `.`):
    /// [`Store::prune`] keeps them until [`Store::release_snapshots`]. Replaces the holder's
    /// previous lease.
    pub fn lease_snapshots(&self, holder: &str, diff_ids: &[Digest]) -> Result<(), StoreError> {
        let path = self.lease_path(holder)?;
        let body: String = diff_ids.iter().map(|d| format!("{d}\n")).collect();
        // As durable as the container record it belongs to (written without fsync).
        write_replace(&self.root.join("tmp"), &path, body.as_bytes(), false)
    }

    /// Drops `holder`'s lease (absent is fine).
    pub fn release_snapshots(&self, holder: &str) -> Result<(), StoreError> {
        let path = self.lease_path(holder)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every lease: holder → leased diff_ids.
    pub fn snapshot_leases(&self) -> Result<Vec<(String, Vec<Digest>)>, StoreError> {
        let dir = self.root.join("leases");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let Ok(holder) = e.file_name().into_string() else {
                continue;
            };
            let body = fs::read_to_string(e.path()).map_err(io_err(&e.path()))?;
            let ids = body.lines().filter_map(|l| l.trim().parse().ok()).collect();
            out.push((holder, ids));
        }
        out.sort();
        Ok(out)
    }

    fn lease_path(&self, holder: &str) -> Result<PathBuf, StoreError> {
        let ok = !holder.is_empty()
            && !holder.starts_with('.')
            && holder
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(StoreError::InvalidInput(format!(
                "invalid lease holder name {holder:?}"
            )));
        }
        let dir = self.root.join("leases");
        mkdir_all(&dir)?;
        Ok(dir.join(holder))
    }

    /// Removes `tmp/` entries no live process owns: snapshot builds whose layer lock is free,
    /// layout imports whose `tmp-<name>.lock` is free, garbage-collection leftovers, and
    /// other temp files older than a minute.
    pub(crate) fn clean_tmp(&self) {
        let dir = self.root.join("tmp");
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if let Some(rest) = name.strip_prefix("snap-") {
                let Some(d) = rest.get(..64).and_then(|h| Digest::from_hex(h).ok()) else {
                    continue;
                };
                if let Ok(Some(_guard)) = locks::try_exclusive(&self.snapshot_lock(&d)) {
                    let _ = remove_any(&path);
                }
            } else if name.starts_with("gc-") {
                let _ = remove_any(&path);
            } else if name.starts_with("load-") {
                let lock = self.tmp_lock(&name);
                // The lock file goes with the guard (see `locks`).
                if let Ok(Some(_guard)) = locks::try_exclusive(&lock) {
                    let _ = remove_any(&path);
                }
            } else {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60);
                if old || super::fsutil::writer_gone(&name) {
                    let _ = remove_any(&path);
                }
            }
        }
    }
}
