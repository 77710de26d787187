//! `system check` of the store: every blob's content against its digest, records pointing
//! at content that exists, snapshots someone uses, and no temp file left by a killed
//! writer. With `repair`, what can be fixed is: a corrupt blob is deleted (a later pull
//! fetches it again), a record whose content is missing is dropped, unused blobs and
//! snapshots and dead writers' temp files are removed.

use std::collections::HashSet;
use std::fs;
use std::io::Read;

use serde::Serialize;

use super::extract::Mode;
use super::fsutil::{remove_any, unique_name};
use super::{LayerRef, Store, StoreError};
use crate::digest::{Digest, Hasher};

/// One thing `system check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of problem (`corrupt-blob`, `missing-content`, `orphan-blob`,
    /// `orphan-snapshot`, `temp-file`, and the runtime's kinds).
    pub kind: String,
    /// What it is about (a digest, a path, a container id).
    pub subject: String,
    /// Whether it is corruption (content or records wrong) rather than leftovers.
    pub corruption: bool,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

impl Finding {
    /// A finding, not repaired yet.
    pub fn new(kind: &str, subject: impl Into<String>, corruption: bool) -> Finding {
        Finding {
            kind: kind.into(),
            subject: subject.into(),
            corruption,
            repaired: false,
        }
    }
}

fn blob_ok(store: &Store, d: &Digest) -> bool {
    let Ok(mut f) = store.open_blob(d) else {
        return false;
    };
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    h.finish() == *d
}

/// Whether a temp file under `ingest/` or `tmp/` belongs to no live writer: older than a
/// second and, for a locked kind, with its lock free.
fn abandoned(store: &Store, dir: &str, e: &fs::DirEntry) -> bool {
    if super::fsutil::writer_gone(&e.file_name().to_string_lossy()) {
        return true;
    }
    let young = e
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age.as_millis() < 1000);
    if young {
        return false;
    }
    let name = e.file_name().to_string_lossy().into_owned();
    if dir == "ingest" {
        return fs::File::open(e.path()).is_ok_and(|f| super::locks::try_lock_file(&f));
    }
    if let Some(rest) = name.strip_prefix("snap-") {
        return rest
            .get(..64)
            .and_then(|h| Digest::from_hex(h).ok())
            .is_some_and(|d| {
                super::locks::try_exclusive(&store.snapshot_lock(&d)).is_ok_and(|g| g.is_some())
            });
    }
    if name.starts_with("load-") {
        return super::locks::try_exclusive(&store.tmp_lock(&name)).is_ok_and(|g| g.is_some());
    }
    true
}

impl Store {
    /// Each snapshot some record uses, whose layer blob is here, against a fresh extraction
    /// of that blob (which verifies the diff_id on the way): a snapshot changed after it was
    /// made is `corrupt-snapshot`. `repair` deletes it unless a container leases it (the next
    /// run unpacks it again).
    fn check_snapshots(&self, repair: bool) -> Result<Vec<Finding>, StoreError> {
        let mut out = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        let leases = self.snapshot_leases()?;
        for r in self.list_images()? {
            for layer in &r.layers {
                let snap = self.snapshot_path(&layer.diff_id);
                if !seen.insert(layer.diff_id.clone())
                    || !snap.is_dir()
                    || !self.has_blob(&layer.digest)
                {
                    continue;
                }
                let Some(why) = self.snapshot_difference(layer)? else {
                    continue;
                };
                let mut f = Finding::new(
                    "corrupt-snapshot",
                    format!("{} ({why})", layer.diff_id),
                    true,
                );
                let users: Vec<&str> = leases
                    .iter()
                    .filter(|(_, ids)| ids.contains(&layer.diff_id))
                    .map(|(h, _)| h.as_str())
                    .collect();
                if !users.is_empty() {
                    f.subject.push_str(&format!(
                        "; used by container(s) {}: remove them, then repair again",
                        users.join(", ")
                    ));
                } else if repair {
                    let _lock = super::locks::exclusive(&self.snapshot_lock(&layer.diff_id))?;
                    let aside = self.root.join("tmp").join(unique_name("gc-snap"));
                    f.repaired = fs::rename(&snap, &aside).is_ok() && remove_any(&aside).is_ok();
                }
                out.push(f);
            }
        }
        Ok(out)
    }

    /// How snapshot `layer` differs from its blob extracted afresh (`None`: not at all).
    fn snapshot_difference(&self, layer: &LayerRef) -> Result<Option<String>, StoreError> {
        // Named as a snapshot build and under its lock, so no other process takes it for
        // a dead writer's.
        let _lock = super::locks::exclusive(&self.snapshot_lock(&layer.diff_id))?;
        let tmp = self
            .root
            .join("tmp")
            .join(unique_name(&format!("snap-{}", layer.diff_id.hex())));
        fs::create_dir(&tmp).map_err(super::fsutil::io_err(&tmp))?;
        let result = match self.extract_layer(layer, &tmp, Mode::Overlay) {
            Ok(()) => super::treecmp::first_difference(&self.snapshot_path(&layer.diff_id), &tmp)
                .map_err(super::fsutil::io_err(&tmp)),
            Err(StoreError::DigestMismatch { actual, .. }) => Ok(Some(format!(
                "its blob {} unpacks to {actual}",
                layer.digest
            ))),
            Err(e) => Err(e),
        };
        let _ = remove_any(&tmp);
        result
    }

    /// Checks the store (see the module doc); with `repair`, fixes what it can. Garbage
    /// (unused blobs and snapshots) is only collected when no pull or load runs.
    pub fn check(&self, repair: bool) -> Result<Vec<Finding>, StoreError> {
        let mut out = Vec::new();
        // Content first: a corrupt blob is deleted before the records are checked.
        for (d, _) in self.list_blobs()? {
            if !blob_ok(self, &d) {
                let mut f = Finding::new("corrupt-blob", d.to_string(), true);
                if repair {
                    f.repaired = fs::remove_file(self.blob_path(&d)).is_ok();
                }
                out.push(f);
            }
        }
        let records = self.list_images()?;
        let mut broken = Vec::new();
        for r in &records {
            let mut needed = vec![&r.manifest_digest, &r.config_digest];
            needed.extend(r.layers.iter().map(|l| &l.digest));
            let missing: Vec<String> = needed
                .into_iter()
                .filter(|d| !self.has_blob(d))
                .map(|d| d.to_string())
                .collect();
            if !missing.is_empty() {
                out.push(Finding::new(
                    "missing-content",
                    format!(
                        "image {}:{} (needs {})",
                        r.name,
                        r.tag.as_deref().unwrap_or("<none>"),
                        missing.join(", ")
                    ),
                    true,
                ));
                broken.push(r.clone());
            }
        }
        if repair && !broken.is_empty() {
            self.remove_records(&broken)?;
            for f in out.iter_mut().filter(|f| f.kind == "missing-content") {
                f.repaired = true;
            }
        }
        // Snapshots against their layers (after the blobs: a corrupt blob is gone by now).
        out.extend(self.check_snapshots(repair)?);
        // Leftovers: temp files of dead writers, then what no record or lease uses.
        for dir in ["ingest", "tmp"] {
            let p = self.root.join(dir);
            for e in fs::read_dir(&p).into_iter().flatten().flatten() {
                if abandoned(self, dir, &e) {
                    let mut f = Finding::new("temp-file", e.path().display().to_string(), false);
                    if repair {
                        f.repaired = remove_any(&e.path()).is_ok();
                    }
                    out.push(f);
                }
            }
        }
        let records = self.list_images()?;
        let mut live_blobs: HashSet<Digest> = HashSet::new();
        let mut live_snaps: HashSet<Digest> = HashSet::new();
        for r in &records {
            live_blobs.extend([r.manifest_digest.clone(), r.config_digest.clone()]);
            live_blobs.extend(r.index_digest.iter().cloned());
            for l in &r.layers {
                live_blobs.insert(l.digest.clone());
                live_snaps.insert(l.diff_id.clone());
            }
        }
        for (_, ids) in self.snapshot_leases()? {
            live_snaps.extend(ids);
        }
        let mut garbage = Vec::new();
        for (d, _) in self.list_blobs()? {
            if !live_blobs.contains(&d) {
                garbage.push(Finding::new("orphan-blob", d.to_string(), false));
            }
        }
        for d in self.list_snapshots()? {
            if !live_snaps.contains(&d) {
                garbage.push(Finding::new("orphan-snapshot", d.to_string(), false));
            }
        }
        if repair && !garbage.is_empty() {
            let report = self.prune()?;
            let gone: HashSet<String> = report
                .blobs
                .iter()
                .chain(report.snapshots.iter())
                .map(|d| d.to_string())
                .collect();
            for f in &mut garbage {
                f.repaired = gone.contains(&f.subject);
            }
        }
        out.extend(garbage);
        Ok(out)
    }
}
