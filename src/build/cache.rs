//! The build cache: what a step produced, keyed by the step's key (its parent's key, the
//! instruction after expansion, and the content digests of what it copies — see
//! [`step_key`]). Entries live as small JSON files under `<root>/build-cache/`; an entry
//! whose layer blobs are gone (pruned) is a miss.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::state::ImageState;
use crate::platform::Platform;
use crate::store::{LayerRef, Store};

/// The key of a step: sha256 over the parent's key and the step's parts.
pub fn step_key(parent: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

#[derive(Serialize, Deserialize)]
struct Entry {
    config: serde_json::Value,
    layers: Vec<LayerRef>,
}

/// One entry, as [`Cache::entries`] lists it.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The step's key.
    pub key: String,
    /// The layers of the step's result.
    pub layers: Vec<LayerRef>,
    /// When it was recorded (the file's time, RFC 3339).
    pub created: String,
}

/// The cache under one store root.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of store root `root`.
    pub fn open(root: &Path) -> Cache {
        Cache {
            dir: root.join("build-cache"),
        }
    }

    /// The state recorded for `key`, if its layers are still in `store`.
    pub fn get(&self, key: &str, store: &Store, platform: &Platform) -> Option<ImageState> {
        let bytes = fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if !e.layers.iter().all(|l| store.has_blob(&l.digest)) {
            return None;
        }
        Some(ImageState {
            config: e.config,
            layers: e.layers,
            platform: platform.clone(),
        })
    }

    /// Every entry (unreadable ones skipped).
    pub fn entries(&self) -> Vec<CacheEntry> {
        let mut out = Vec::new();
        for f in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(bytes) = fs::read(f.path()) else {
                continue;
            };
            let Ok(e) = serde_json::from_slice::<Entry>(&bytes) else {
                continue;
            };
            let created = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| {
                    time::OffsetDateTime::from(t)
                        .format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            out.push(CacheEntry {
                key: key.to_string(),
                layers: e.layers,
                created,
            });
        }
        out
    }

    /// Removes every entry; returns the keys removed and the bytes their files held.
    pub fn prune(&self) -> std::io::Result<(Vec<String>, u64)> {
        let mut keys = Vec::new();
        let mut bytes = 0;
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((keys, 0)),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            bytes += size;
            if let Some(k) = name.strip_suffix(".json") {
                keys.push(k.to_string());
            }
        }
        keys.sort();
        Ok((keys, bytes))
    }

    /// Records `state` for `key` (best effort: a cache that cannot be written only costs
    /// time later).
    pub fn put(&self, key: &str, state: &ImageState) {
        let e = Entry {
            config: state.config.clone(),
            layers: state.layers.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&e) else {
            return;
        };
        if fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
        if fs::write(&tmp, bytes).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(format!("{key}.json")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain() {
        let a = step_key("p", &["RUN", "x"]);
        assert_eq!(a, step_key("p", &["RUN", "x"]));
        assert_ne!(a, step_key("q", &["RUN", "x"]));
        assert_ne!(a, step_key("p", &["RUN", "y"]));
        assert_ne!(step_key("p", &["ab", "c"]), step_key("p", &["a", "bc"]));
    }

    #[test]
    fn put_then_get() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let p: Platform = "linux/amd64".parse().unwrap();
        let c = Cache::open(root.path());
        let s = ImageState::scratch(&p);
        assert!(c.get("k", &store, &p).is_none());
        c.put("k", &s);
        assert_eq!(c.get("k", &store, &p).unwrap(), s);
        let (keys, bytes) = c.prune().unwrap();
        assert_eq!(keys, vec!["k".to_string()]);
        assert!(bytes > 0);
        assert!(c.get("k", &store, &p).is_none());
    }
}
