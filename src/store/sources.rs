//! Where blobs were seen on registries (`blob-sources.json`): for each blob digest, the
//! repositories (`host[:port]/repo`) it was pulled from or pushed to, newest first, at most
//! [`MAX_SOURCES`] each. A push to another repository of the same registry asks that
//! registry to mount the blob from one of them instead of uploading it again.
//!
//! Changes happen under `locks/sources.lock` (read, modify, write atomically); readers need
//! no lock. The file is a hint: a stale entry only costs a refused mount.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::fsutil::{io_err, write_atomic};
use super::{Store, StoreError, locks};
use crate::digest::Digest;

/// Repositories remembered per blob.
pub const MAX_SOURCES: usize = 8;

#[derive(Debug, Default, Serialize, Deserialize)]
struct SourcesFile {
    version: u32,
    blobs: BTreeMap<String, Vec<String>>,
}

/// A repository a blob is known to be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// The registry (`host[:port]`).
    pub registry: String,
    /// The repository on it.
    pub repository: String,
}

impl Store {
    fn sources_path(&self) -> std::path::PathBuf {
        self.root.join("blob-sources.json")
    }

    fn read_sources(&self) -> Result<SourcesFile, StoreError> {
        let path = self.sources_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SourcesFile {
                version: 1,
                blobs: BTreeMap::new(),
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Remembers that `digests` are in `repository` on `registry`.
    pub fn add_blob_sources(
        &self,
        digests: &[Digest],
        registry: &str,
        repository: &str,
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        let _lock = locks::exclusive(&self.root.join("locks").join("sources.lock"))?;
        let mut file = self.read_sources()?;
        let entry = format!("{registry}/{repository}");
        for d in digests {
            let list = file.blobs.entry(d.to_string()).or_default();
            list.retain(|e| *e != entry);
            list.insert(0, entry.clone());
            list.truncate(MAX_SOURCES);
        }
        file.version = 1;
        let bytes = serde_json::to_vec(&file).map_err(|e| StoreError::Corrupt {
            path: self.sources_path(),
            message: e.to_string(),
        })?;
        write_atomic(&self.root.join("tmp"), &self.sources_path(), &bytes)
    }

    /// The repositories `digest` is known to be in, newest first.
    pub fn blob_sources(&self, digest: &Digest) -> Result<Vec<BlobSource>, StoreError> {
        Ok(self
            .read_sources()?
            .blobs
            .remove(&digest.to_string())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let (registry, repository) = e.split_once('/')?;
                Some(BlobSource {
                    registry: registry.to_string(),
                    repository: repository.to_string(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kept_newest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        assert!(store.blob_sources(&d).unwrap().is_empty());
        store
            .add_blob_sources(std::slice::from_ref(&d), "r:1", "a")
            .unwrap();
        store
            .add_blob_sources(std::slice::from_ref(&d), "r:1", "b/c")
            .unwrap();
        store
            .add_blob_sources(std::slice::from_ref(&d), "r:1", "a")
            .unwrap();
        let got = store.blob_sources(&d).unwrap();
        assert_eq!(got[0].repository, "a");
        assert_eq!(got[1].repository, "b/c");
        assert_eq!(got.len(), 2);
        for i in 0..20 {
            store
                .add_blob_sources(std::slice::from_ref(&d), "r:1", &format!("n{i}"))
                .unwrap();
        }
        assert_eq!(store.blob_sources(&d).unwrap().len(), MAX_SOURCES);
    }
}
