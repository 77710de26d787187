//! Image records (`refs.json`): name + tag (or digest) + platform → [`ImageRecord`].
//!
//! The file is `{"version":1,"images":[…]}`. Every change happens under the exclusive lock
//! `locks/refs.lock`: read, modify, write a temp file, fsync, rename. Readers need no lock
//! (they see the old or the new file, never a mix). A record is only accepted when all its
//! blobs are present, so a record never points at missing content.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::fsutil::{io_err, write_atomic};
use super::{ImageRecord, Store, StoreError, locks};
use crate::digest::Digest;
use crate::platform::{Matcher, Platform};

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    images: Vec<ImageRecord>,
}

/// Whether two platforms name the same os/architecture/variant (after normalization).
pub(crate) fn same_platform(a: &Platform, b: &Platform) -> bool {
    let (a, b) = (a.normalize(), b.normalize());
    a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
}

/// Whether `record` is named by `tag_or_digest`: its tag, or its manifest or index digest.
pub(crate) fn names(record: &ImageRecord, tag_or_digest: &str) -> bool {
    match tag_or_digest.parse::<Digest>() {
        Ok(d) => record.manifest_digest == d || record.index_digest.as_ref() == Some(&d),
        Err(_) => record.tag.as_deref() == Some(tag_or_digest),
    }
}

/// Picks among candidates of one name: the wanted platform's best match, or with no platform
/// the only one, else the best for the host (`XRUN_DEFAULT_PLATFORM`/`DOCKER_DEFAULT_PLATFORM`
/// first, as `platform::default_platform`).
pub(crate) fn select(
    candidates: Vec<ImageRecord>,
    platform: Option<&Platform>,
) -> Option<ImageRecord> {
    let wanted = match platform {
        Some(p) => p.clone(),
        None if candidates.len() == 1 => return candidates.into_iter().next(),
        None => crate::platform::default_platform().unwrap_or_else(|_| Platform::host()),
    };
    if let Some(exact) = candidates
        .iter()
        .find(|r| same_platform(&r.platform, &wanted))
    {
        return Some(exact.clone());
    }
    let platforms: Vec<Platform> = candidates.iter().map(|r| r.platform.clone()).collect();
    Matcher::new(&wanted)
        .best(&platforms)
        .map(|i| candidates[i].clone())
}

impl Store {
    fn refs_path(&self) -> std::path::PathBuf {
        self.root.join("refs.json")
    }

    fn read_refs(&self) -> Result<RefsFile, StoreError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefsFile {
                version: 1,
                images: Vec::new(),
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Applies `change` to the records under the refs lock and writes them back atomically;
    /// returns what `change` returned.
    pub(crate) fn update_refs<T>(
        &self,
        change: impl FnOnce(&mut Vec<ImageRecord>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = locks::exclusive(&self.root.join("locks").join("refs.lock"))?;
        let mut refs = self.read_refs()?;
        let out = change(&mut refs.images)?;
        refs.version = 1;
        refs.images.sort_by(|a, b| {
            (&a.name, &a.tag, a.platform.to_string(), &a.manifest_digest).cmp(&(
                &b.name,
                &b.tag,
                b.platform.to_string(),
                &b.manifest_digest,
            ))
        });
        let bytes = serde_json::to_vec_pretty(&refs).map_err(|e| StoreError::Corrupt {
            path: self.refs_path(),
            message: e.to_string(),
        })?;
        write_atomic(&self.root.join("tmp"), &self.refs_path(), &bytes)?;
        Ok(out)
    }

    /// Records an image under its name/tag and platform (replacing the same name:tag+platform).
    ///
    /// Fails with [`StoreError::BlobNotFound`] unless the manifest, config and every layer
    /// blob are present.
    pub fn record_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let needed = std::iter::once(&record.manifest_digest)
            .chain(std::iter::once(&record.config_digest))
            .chain(record.layers.iter().map(|l| &l.digest));
        for d in needed {
            if !self.has_blob(d) {
                return Err(StoreError::BlobNotFound(d.clone()));
            }
        }
        self.update_refs(|images| {
            images.retain(|r| {
                let same_slot = r.name == record.name
                    && same_platform(&r.platform, &record.platform)
                    && match &record.tag {
                        Some(t) => r.tag.as_deref() == Some(t.as_str()),
                        None => r.tag.is_none() && r.manifest_digest == record.manifest_digest,
                    };
                !same_slot
            });
            images.push(record.clone());
            Ok(())
        })
    }

    /// Finds an image by normalized `name`, `tag` or manifest/index digest, and platform
    /// (`None`: the only one, or the host's when there are several).
    pub fn find_image(
        &self,
        name: &str,
        tag_or_digest: &str,
        platform: Option<&Platform>,
    ) -> Result<Option<ImageRecord>, StoreError> {
        let candidates: Vec<ImageRecord> = self
            .read_refs()?
            .images
            .into_iter()
            .filter(|r| r.name == name && names(r, tag_or_digest))
            .collect();
        Ok(select(candidates, platform))
    }

    /// Every record of `name` named by `tag_or_digest`, all platforms.
    pub fn find_images(
        &self,
        name: &str,
        tag_or_digest: &str,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self
            .read_refs()?
            .images
            .into_iter()
            .filter(|r| r.name == name && names(r, tag_or_digest))
            .collect())
    }

    /// Records whose manifest digest hex starts with `prefix` (an image ID as `xrun images`
    /// shows it; at least 4 hex characters, an optional `sha256:` in front).
    pub fn find_by_id(&self, prefix: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let hex = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let hex = hex.to_ascii_lowercase();
        Ok(self
            .read_refs()?
            .images
            .into_iter()
            .filter(|r| r.manifest_digest.hex().starts_with(&hex))
            .collect())
    }

    /// Every image record, sorted by name, tag, platform.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self.read_refs()?.images)
    }

    /// Removes the records of `name` named by `tag_or_digest` (on `platform` only, when given;
    /// else on every platform) and returns them. Blobs and snapshots stay until
    /// [`Store::prune`] (or [`Store::prune_unreferenced`]) removes them.
    pub fn remove_image(
        &self,
        name: &str,
        tag_or_digest: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        self.update_refs(|images| {
            let (gone, kept): (Vec<_>, Vec<_>) =
                std::mem::take(images).into_iter().partition(|r| {
                    r.name == name
                        && names(r, tag_or_digest)
                        && platform.is_none_or(|p| same_platform(&r.platform, p))
                });
            *images = kept;
            Ok(gone)
        })
    }

    /// Removes exactly these records (matched by name, tag, platform and manifest digest).
    pub fn remove_records(&self, records: &[ImageRecord]) -> Result<(), StoreError> {
        self.update_refs(|images| {
            images.retain(|r| {
                !records.iter().any(|x| {
                    x.name == r.name
                        && x.tag == r.tag
                        && x.manifest_digest == r.manifest_digest
                        && same_platform(&x.platform, &r.platform)
                })
            });
            Ok(())
        })
    }
}
