//! Writing images as an archive tar (`xrun save`, `docker save`, `GET /images/get`).
//!
//! Both formats are an OCI image layout: `oci-layout`, `index.json` (one manifest descriptor
//! per record, with its platform, `io.containerd.image.name` = `name:tag` and
//! `org.opencontainers.image.ref.name` = the tag) and the blobs. The `docker` format adds
//! `manifest.json` as `docker save` writes it (one entry per image: `Config`, `RepoTags` in
//! Docker's short form, `Layers`), pointing at the same blobs, so Docker's loader (any
//! version), podman, skopeo's `docker-archive:` and OCI tools all read it. Layers are kept as
//! the registry served them (gzip or zstd); those loaders decompress them.
//!
//! The tar is deterministic (sorted, mtime 0). [`Store::save_archive`] writes a temp file
//! renamed over the output when complete; [`Store::write_archive`] streams to any writer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::fsutil::{io_err, unique_name};
use super::record::{Descriptor, Manifest, OCI_INDEX, OCI_MANIFEST, parse_json};
use super::{ImageRecord, Store, StoreError};
use crate::digest::{Digest, Hasher};
use crate::reference::familiar_name;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// An OCI image layout plus Docker's `manifest.json` (what `docker save` writes).
    #[default]
    Docker,
    /// An OCI image layout only.
    Oci,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" | "docker-archive" => Ok(ArchiveFormat::Docker),
            "oci" | "oci-archive" => Ok(ArchiveFormat::Oci),
            other => Err(format!(
                "unknown archive format {other:?} (use docker or oci)"
            )),
        }
    }
}

/// What goes into an archive, gathered (and checked present) before a byte is written.
struct Plan {
    blobs: BTreeSet<Digest>,
    index: Vec<u8>,
    docker_manifest: Option<Vec<u8>>,
}

fn json_bytes(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt {
        path: what.into(),
        message: e.to_string(),
    })
}

impl Store {
    fn plan_archive(
        &self,
        records: &[ImageRecord],
        format: ArchiveFormat,
    ) -> Result<Plan, StoreError> {
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut descriptors = Vec::new();
        // manifest digest → (config, layers, repo tags), in first-seen order.
        let mut images: Vec<(Digest, Digest, Vec<Digest>, Vec<String>)> = Vec::new();
        for r in records {
            let manifest_bytes = self.read_blob(&r.manifest_digest)?;
            let m: Manifest =
                parse_json(&manifest_bytes, &format!("manifest {}", r.manifest_digest))?;
            blobs.insert(r.manifest_digest.clone());
            blobs.insert(m.config.digest.clone());
            blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
            let mut annotations = BTreeMap::new();
            if let Some(tag) = &r.tag {
                annotations.insert(CONTAINERD_NAME.to_string(), format!("{}:{tag}", r.name));
                annotations.insert(REF_NAME.to_string(), tag.clone());
            }
            descriptors.push(Descriptor {
                media_type: m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| OCI_MANIFEST.to_string()),
                digest: r.manifest_digest.clone(),
                size: manifest_bytes.len() as u64,
                platform: Some(r.platform.clone()),
                annotations,
            });
            let tag = r
                .tag
                .as_ref()
                .map(|t| format!("{}:{t}", familiar_name(&r.name)));
            match images.iter_mut().find(|i| i.0 == r.manifest_digest) {
                Some(i) => i.3.extend(tag),
                None => images.push((
                    r.manifest_digest.clone(),
                    m.config.digest.clone(),
                    m.layers.iter().map(|l| l.digest.clone()).collect(),
                    tag.into_iter().collect(),
                )),
            }
        }
        for d in &blobs {
            if !self.has_blob(d) {
                return Err(StoreError::BlobNotFound(d.clone()));
            }
        }
        let index = json_bytes(
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": descriptors,
            }),
            "index.json",
        )?;
        let docker_manifest = match format {
            ArchiveFormat::Oci => None,
            ArchiveFormat::Docker => {
                let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
                let entries: Vec<serde_json::Value> = images
                    .iter()
                    .map(|(_, config, layers, tags)| {
                        serde_json::json!({
                            "Config": blob(config),
                            "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { tags.clone().into() },
                            "Layers": layers.iter().map(blob).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                Some(json_bytes(&entries.into(), "manifest.json")?)
            }
        };
        Ok(Plan {
            blobs,
            index,
            docker_manifest,
        })
    }

    /// Streams `records` (with their blobs) as an archive tar in `format` to `out`.
    pub fn write_archive<W: Write>(
        &self,
        records: &[ImageRecord],
        format: ArchiveFormat,
        out: W,
    ) -> Result<W, StoreError> {
        let plan = self.plan_archive(records, format)?;
        let stream = Path::new("<archive stream>");
        let w = |e: io::Error| io_err(stream)(e);
        let mut tar = tar::Builder::new(out);
        add_dir(&mut tar, "blobs/").map_err(w)?;
        add_dir(&mut tar, "blobs/sha256/").map_err(w)?;
        for d in &plan.blobs {
            // Opened without following a symlink, hashed while written: a store blob that was
            // swapped or changed stops the export.
            let f = self.open_blob(d)?;
            let path = self.blob_path(d);
            let len = f.metadata().map_err(io_err(&path))?.len();
            let mut src = HashingReader {
                inner: io::Read::take(f, len),
                hasher: Hasher::new(),
            };
            tar.append_data(
                &mut file_header(len),
                format!("blobs/sha256/{}", d.hex()),
                &mut src,
            )
            .map_err(w)?;
            let got = src.hasher.len();
            let actual = src.hasher.finish();
            if got != len || &actual != d {
                return Err(StoreError::DigestMismatch {
                    expected: d.clone(),
                    actual,
                });
            }
        }
        let mut files: Vec<(&str, &[u8])> = vec![
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &plan.index),
        ];
        if let Some(m) = &plan.docker_manifest {
            files.push(("manifest.json", m));
        }
        for (name, bytes) in files {
            tar.append_data(&mut file_header(bytes.len() as u64), name, bytes)
                .map_err(w)?;
        }
        tar.into_inner().map_err(w)
    }

    /// Writes `records` as an archive tar in `format` at `out` (a temp file beside it, renamed
    /// over it when complete; nothing is left on failure).
    pub fn save_archive(
        &self,
        records: &[ImageRecord],
        format: ArchiveFormat,
        out: &Path,
    ) -> Result<(), StoreError> {
        // Checked before the temp file exists.
        self.plan_archive(records, format)?;
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(unique_name(".xrun-save"));
        let result = (|| {
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let buf = self.write_archive(records, format, io::BufWriter::new(file))?;
            let file = buf.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io_err(&tmp))?;
            fs::rename(&tmp, out).map_err(io_err(out))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes `records` as an OCI image layout tar at `out` (no `manifest.json`).
    pub fn save_layout(&self, records: &[ImageRecord], out: &Path) -> Result<(), StoreError> {
        self.save_archive(records, ArchiveFormat::Oci, out)
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn file_header(len: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    tar.append_data(&mut h, name, io::empty())
}
