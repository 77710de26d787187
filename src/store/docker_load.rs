//! Importing a `docker save` archive by its `manifest.json` (the format of Docker before 25,
//! of `podman save` and skopeo's `docker-archive:`; newer Docker archives are also OCI layouts
//! and go through [`Store::load_layout`]'s OCI path first).
//!
//! `manifest.json` lists images as `{"Config": file, "RepoTags": ["name:tag", …], "Layers":
//! [file, …]}`. Each layer file may be a plain tar (its digest must then be the config's
//! `rootfs.diff_ids` entry) or gzip/zstd compressed (its uncompressed digest must be). Everything
//! is verified before anything enters the store; then the layers, the config and an OCI manifest
//! xrun writes for them (deterministically: loading the same archive twice gives the same image
//! ID) are stored and one record per repository tag is made (untagged under `localhost/<archive
//! name>` when the image has none).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::archive_read::member_path;
use super::decompress::{Compression, HashingReader, decompressed, sniff};
use super::fsutil::io_err;
use super::record::{ConfigSummary, OCI_MANIFEST, parse_json};
use super::{ImageRecord, Store, StoreError};
use crate::digest::Digest;
use crate::platform::{Matcher, Platform};
use crate::reference::ImageRef;

/// OCI config media type (the manifests xrun writes for loaded archives).
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Largest `manifest.json` or config accepted.
const MAX_JSON: u64 = 16 << 20;

/// One entry of `manifest.json`.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// A layer file, examined.
struct Layer {
    path: PathBuf,
    digest: Digest,
    size: u64,
    media_type: &'static str,
}

/// An image of the archive, verified, not yet stored.
struct Verified {
    names: Vec<(String, Option<String>)>,
    config: Vec<u8>,
    config_digest: Digest,
    platform: Platform,
    /// The layer files `manifest.json` names, with the config's diff_ids.
    layer_files: Vec<(String, Digest)>,
    layers: Vec<Layer>,
}

fn bad(dir: &Path, message: impl Into<String>) -> StoreError {
    StoreError::BadLayout {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a small member file named in `manifest.json`.
fn read_member(dir: &Path, name: &str) -> Result<Vec<u8>, StoreError> {
    let rel = member_path(name).ok_or_else(|| {
        bad(
            dir,
            format!("manifest.json names {name:?}, not an archive member"),
        )
    })?;
    let path = dir.join(rel);
    let f = File::open(&path).map_err(|_| bad(dir, format!("the archive lacks {name}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&path))?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(bad(dir, format!("{name} is too large")));
    }
    Ok(bytes)
}

/// Hashes a layer file (as stored, and uncompressed) and checks it against `diff_id`.
fn examine_layer(dir: &Path, name: &str, diff_id: &Digest) -> Result<Layer, StoreError> {
    let rel = member_path(name).ok_or_else(|| {
        bad(
            dir,
            format!("manifest.json names {name:?}, not an archive member"),
        )
    })?;
    let path = dir.join(rel);
    let mut file = File::open(&path).map_err(|_| bad(dir, format!("the archive lacks {name}")))?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(io_err(&path))?;
    let compression = sniff(&head[..n]);
    let file = File::open(&path).map_err(io_err(&path))?;
    let mut outer = HashingReader::new(file);
    let media_type = match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let uncompressed = {
        let inner =
            decompressed(&mut outer, media_type).map_err(|e| bad(dir, format!("{name}: {e}")))?;
        let mut hashing = HashingReader::new(inner);
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(dir, format!("{name}: {e}")))?;
        hashing.finish().map_err(io_err(&path))?
    };
    let digest = outer.finish().map_err(io_err(&path))?;
    if &uncompressed != diff_id {
        return Err(bad(
            dir,
            format!(
                "layer {name} does not match the config (diff_id {diff_id}, content {uncompressed})"
            ),
        ));
    }
    let size = fs::metadata(&path).map_err(io_err(&path))?.len();
    Ok(Layer {
        path,
        digest,
        size,
        media_type,
    })
}

/// The OCI manifest xrun writes for a loaded image (same input, same bytes).
fn manifest_bytes(v: &Verified) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = v
        .layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": v.config_digest, "size": v.config.len()},
        "layers": layers,
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

impl Store {
    /// Imports the images a `docker save` archive unpacked at `dir` lists in its
    /// `manifest.json` (only the best match for `platform`, when given).
    pub(crate) fn load_docker_dir(
        &self,
        dir: &Path,
        default: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let entries: Vec<Entry> = serde_json::from_slice(&read_member(dir, "manifest.json")?)
            .map_err(|e| bad(dir, format!("manifest.json: {e}")))?;
        let mut verified = Vec::new();
        for entry in &entries {
            let config = read_member(dir, &entry.config)?;
            let summary: ConfigSummary = parse_json(&config, &format!("config {}", entry.config))?;
            if summary.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(bad(
                    dir,
                    format!(
                        "{}: {} layers but the config lists {} diff_ids",
                        entry.config,
                        entry.layers.len(),
                        summary.rootfs.diff_ids.len()
                    ),
                ));
            }
            let mut names = Vec::new();
            for tag in entry.repo_tags.iter().flatten() {
                let r = ImageRef::parse(tag)
                    .map_err(|e| bad(dir, format!("manifest.json RepoTags: {e}")))?;
                names.push((r.name(), r.tag.clone()));
            }
            if names.is_empty() {
                names.push((default.to_string(), None));
            }
            verified.push(Verified {
                names,
                config_digest: Digest::of(&config),
                platform: Platform {
                    os: summary.os.clone(),
                    architecture: summary.architecture.clone(),
                    variant: summary.variant.clone().filter(|v| !v.is_empty()),
                    ..Default::default()
                }
                .normalize(),
                config,
                layer_files: entry
                    .layers
                    .iter()
                    .cloned()
                    .zip(summary.rootfs.diff_ids.iter().cloned())
                    .collect(),
                layers: Vec::new(),
            });
        }
        if let Some(want) = platform {
            let plats: Vec<Platform> = verified.iter().map(|v| v.platform.clone()).collect();
            let best = Matcher::new(want).best(&plats);
            verified = verified
                .into_iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) == best)
                .map(|(_, v)| v)
                .collect();
        }
        if verified.is_empty() {
            return Err(bad(
                dir,
                match platform {
                    Some(p) => format!("no image for platform {p} in the archive"),
                    None => "the archive's manifest.json lists no images".into(),
                },
            ));
        }
        // Verify every layer before anything enters the store.
        for v in &mut verified {
            for (name, diff_id) in &v.layer_files {
                v.layers.push(examine_layer(dir, name, diff_id)?);
            }
        }
        let mut records = Vec::new();
        for v in &verified {
            for l in &v.layers {
                if !self.has_blob(&l.digest) {
                    let mut src = File::open(&l.path).map_err(io_err(&l.path))?;
                    let mut w = self.begin_blob(&l.digest, Some(l.size))?;
                    io::copy(&mut src, &mut w).map_err(io_err(&l.path))?;
                    w.commit()?;
                }
            }
            self.put_blob(&v.config_digest, &v.config)?;
            let manifest = manifest_bytes(v);
            let manifest_digest = Digest::of(&manifest);
            self.put_blob(&manifest_digest, &manifest)?;
            for (name, tag) in &v.names {
                records.push(self.build_record(
                    name,
                    tag.as_deref(),
                    None,
                    &manifest_digest,
                    Some(&v.platform),
                )?);
            }
        }
        crate::fault::point("load");
        for r in &records {
            self.record_image(r)?;
        }
        Ok(records)
    }
}
