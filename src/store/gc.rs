//! Garbage collection: blobs and snapshots no record references (and no lease holds).
//!
//! Writers (a pull, `load`) hold a [`Lease`] — a shared lock on `locks/gc.lock` — from their
//! first blob until their records are written; [`Store::begin_blob`] takes one for the life of
//! each writer. Collection takes that lock exclusively without waiting: while anything writes,
//! [`Store::prune`] reports [`StoreError::Busy`] instead of deleting a blob about to be
//! recorded. Snapshots are removed under their layer lock (skipped while being built) by
//! renaming them to `tmp/gc-…` first, so a half-deleted snapshot is never visible.

use std::collections::HashSet;
use std::fs;

use super::fsutil::{remove_any, tree_size, unique_name};
use super::locks::{self, LockGuard};
use super::{ImageRecord, Store, StoreError};
use crate::digest::Digest;

/// Keeps garbage collection away while held (a shared lock on `locks/gc.lock`).
#[derive(Debug)]
pub struct Lease {
    _guard: LockGuard,
}

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Snapshots removed (by diff_id).
    pub snapshots: Vec<Digest>,
    /// Bytes freed (blob sizes plus the regular files of removed snapshots).
    pub bytes: u64,
}

impl Store {
    /// Holds off garbage collection until dropped: take one before writing the first blob of
    /// an image and keep it until [`Store::record_image`] has returned.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        Ok(Lease {
            _guard: locks::shared(&self.root.join("locks").join("gc.lock"))?,
        })
    }

    /// Removes every blob and snapshot that no record references and no lease holds.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        self.collect(None)
    }

    /// Like [`Store::prune`], limited to the content of `records` (e.g. just untagged by
    /// `rmi`): what no other record still uses is removed.
    pub fn prune_unreferenced(&self, records: &[ImageRecord]) -> Result<PruneReport, StoreError> {
        let mut blobs = HashSet::new();
        let mut snaps = HashSet::new();
        for r in records {
            blobs.extend(record_blobs(r));
            snaps.extend(r.layers.iter().map(|l| l.diff_id.clone()));
        }
        self.collect(Some((blobs, snaps)))
    }

    fn collect(
        &self,
        only: Option<(HashSet<Digest>, HashSet<Digest>)>,
    ) -> Result<PruneReport, StoreError> {
        let gc_lock = self.root.join("locks").join("gc.lock");
        let Some(_gc) = locks::try_exclusive(&gc_lock)? else {
            return Err(StoreError::Busy(
                "an image is being pulled or loaded; try again when it is done".into(),
            ));
        };
        self.clean_ingest();
        self.clean_tmp();
        let records = self.list_images()?;
        let live_blobs: HashSet<Digest> = records.iter().flat_map(record_blobs).collect();
        let mut live_snaps: HashSet<Digest> = records
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.diff_id.clone()))
            .collect();
        for (_, ids) in self.snapshot_leases()? {
            live_snaps.extend(ids);
        }
        let mut report = PruneReport::default();
        for (d, size) in self.list_blobs()? {
            let wanted = only.as_ref().is_none_or(|(b, _)| b.contains(&d));
            if wanted && !live_blobs.contains(&d) {
                let p = self.blob_path(&d);
                if fs::remove_file(&p).is_ok() {
                    crate::fault::point("prune");
                    report.bytes += size;
                    report.blobs.push(d);
                }
            }
        }
        for d in self.list_snapshots()? {
            let wanted = only.as_ref().is_none_or(|(_, s)| s.contains(&d));
            if !wanted || live_snaps.contains(&d) {
                continue;
            }
            let Some(_layer) = locks::try_exclusive(&self.snapshot_lock(&d))? else {
                continue;
            };
            let dir = self.snapshot_path(&d);
            let size = tree_size(&dir);
            let grave = self.root.join("tmp").join(unique_name("gc"));
            if fs::rename(&dir, &grave).is_ok() {
                let _ = remove_any(&grave);
                report.bytes += size;
                report.snapshots.push(d);
            }
        }
        Ok(report)
    }
}

/// The blobs a record needs (its index too, when the store has it).
fn record_blobs(r: &ImageRecord) -> Vec<Digest> {
    let mut v = vec![r.manifest_digest.clone(), r.config_digest.clone()];
    v.extend(r.index_digest.iter().cloned());
    v.extend(r.layers.iter().map(|l| l.digest.clone()));
    v
}
