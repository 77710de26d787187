//! OCI image layouts: import (`xrun load`, `docker load`).
//!
//! Import reads a layout directory, or a tar of one (its image-archive members are copied
//! into a private temp directory under `tmp/` first by `archive_read`; other entries are
//! ignored, names are never used as paths). Every blob the images need is then
//! verified against its digest and descriptor size *before* anything enters the store, and
//! copied in through [`Store::begin_blob`] (verified again); a tampered or missing blob
//! refuses the whole layout and leaves the store as it was.
//!
//! Bounds (a layout is untrusted input): `oci-layout` and `index.json` are read up to
//! [`MAX_LAYOUT_JSON_BYTES`], indexes and manifests up to [`MAX_MANIFEST_BYTES`] and configs
//! up to [`MAX_CONFIG_BYTES`] (the pull's limits); every file is opened with `O_NOFOLLOW`
//! and must be a regular file (a symlink to `/dev/zero` or to a host file is refused); a blob
//! is read at most one byte past its descriptor's size. A tar is read entry by entry, at most
//! [`crate::limits::MAX_LAYOUT_TAR_ENTRIES`] of them, and metadata entries above their limit
//! are refused before their data is copied.
//!
//! Records: each `index.json` entry that is a manifest gives one record (platform from the
//! entry, else from the config); an entry that is an index gives one record per platform it
//! lists (all of them; `platform` restricts the import to the best match). Names come from
//! `io.containerd.image.name` (a full reference), else `org.opencontainers.image.ref.name`
//! (a full reference, or a bare tag → `localhost/<layout name>:<tag>`), else the image is
//! recorded untagged under `localhost/<layout name>`.
//!
//! A tar is unpacked by `archive_read` (only image-archive members); a `docker save` archive
//! without an OCI layout is imported by `docker_load`. Export is in `archive_write`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::archive_read::unpack_archive;
use super::fsutil::{io_err, remove_any, unique_name};
use super::record::{Descriptor, Index, Manifest, is_index_media_type, parse_json};
use super::refs::select;
use super::{ImageRecord, Store, StoreError, locks};
use crate::digest::{Digest, Hasher};
use crate::limits::{
    CappedError, MAX_CONFIG_BYTES, MAX_LAYOUT_JSON_BYTES, MAX_MANIFEST_BYTES, human,
    read_capped_sync,
};
use crate::platform::{Matcher, Platform};
use crate::reference::ImageRef;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// One image found in a layout, before it is recorded.
struct Found {
    name: String,
    tag: Option<String>,
    index_digest: Option<Digest>,
    manifest: Descriptor,
    platform: Option<Platform>,
}

fn bad(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::BadLayout {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `localhost/<file stem, sanitized>` for a layout without names.
fn default_name(input: &Path) -> String {
    let stem = input
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .strip_suffix(".tar")
        .unwrap_or(&stem)
        .to_ascii_lowercase();
    let mut clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean = clean.trim_matches('-').to_string();
    if clean.is_empty() {
        clean = "image".into();
    }
    format!("localhost/{clean}")
}

/// Name and tag from a top-level descriptor's annotations.
fn name_of(d: &Descriptor, default: &str) -> (String, Option<String>) {
    let full = |s: &str| ImageRef::parse(s).ok().map(|r| (r.name(), r.tag.clone()));
    if let Some((n, t)) = d.annotations.get(CONTAINERD_NAME).and_then(|s| full(s)) {
        return (n, t);
    }
    if let Some(r) = d.annotations.get(REF_NAME) {
        if r.contains(['/', ':', '@']) {
            if let Some((n, t)) = full(r) {
                return (n, t);
            }
        } else if ImageRef::parse(&format!("{default}:{r}")).is_ok() {
            return (default.to_string(), Some(r.clone()));
        }
    }
    (default.to_string(), None)
}

impl Store {
    /// Imports an image archive (directory or tar): an OCI image layout, or a `docker save`
    /// archive (by its `manifest.json`), verifying every blob; records and returns the images
    /// (see the module doc for naming and platforms).
    pub fn load_layout(
        &self,
        input: &Path,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let meta = fs::metadata(input).map_err(io_err(input))?;
        let _lease = self.lease()?;
        let default = default_name(input);
        if meta.is_dir() {
            return self.load_unpacked(input, &default, platform);
        }
        let mut file = File::open(input).map_err(io_err(input))?;
        self.load_stream(&mut file, &default, platform)
            .map_err(|e| match e {
                StoreError::BadLayout { message, .. } => bad(input, message),
                other => other,
            })
    }

    /// Imports an image archive tar read from `input` (stdin, an HTTP body) as
    /// [`Store::load_layout`] does; untagged images go under `localhost/image`.
    pub fn load_archive(
        &self,
        input: &mut dyn Read,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let _lease = self.lease()?;
        self.load_stream(input, "localhost/image", platform)
            .map_err(|e| match e {
                StoreError::BadLayout { message, .. } => bad(Path::new("the archive"), message),
                other => other,
            })
    }

    /// Unpacks a tar into a private directory under `tmp/` and imports it.
    fn load_stream(
        &self,
        input: &mut dyn Read,
        default: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let name = unique_name("load");
        let tmp = self.root.join("tmp").join(&name);
        // Held while the directory is in use: `Store::open` elsewhere leaves it alone.
        let lock_path = self.tmp_lock(&name);
        let guard = locks::exclusive(&lock_path)?;
        let result = unpack_archive(input, &tmp, &|m| bad(&tmp, m))
            .and_then(|()| self.load_unpacked(&tmp, default, platform));
        let _ = remove_any(&tmp);
        let _ = fs::remove_file(&lock_path);
        drop(guard);
        result
    }

    /// Imports an unpacked archive: its OCI layout when it has one (a `docker save` of Docker
    /// 25 or later, or xrun's), else its `manifest.json`.
    fn load_unpacked(
        &self,
        dir: &Path,
        default: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let docker = dir.join("manifest.json").is_file();
        if dir.join("oci-layout").is_file() {
            return match self.load_dir(dir, default, platform) {
                Err(e @ StoreError::BadLayout { .. }) if docker => {
                    self.load_docker_dir(dir, default, platform).map_err(|_| e)
                }
                other => other,
            };
        }
        if docker {
            return self.load_docker_dir(dir, default, platform);
        }
        Err(bad(
            dir,
            "neither an OCI image layout (no oci-layout file) nor a docker save archive (no manifest.json)",
        ))
    }

    fn load_dir(
        &self,
        dir: &Path,
        default: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, StoreError> {
        let marker = dir.join("oci-layout");
        if fs::symlink_metadata(&marker).is_err() {
            return Err(bad(dir, "not an OCI image layout (no oci-layout file)"));
        }
        let marker_bytes = read_small(dir, "oci-layout", MAX_LAYOUT_JSON_BYTES)?;
        let version: serde_json::Value = serde_json::from_slice(&marker_bytes)
            .map_err(|e| bad(&marker, format!("invalid JSON: {e}")))?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(bad(&marker, "unsupported imageLayoutVersion (want 1.0.0)"));
        }
        let index_path = dir.join("index.json");
        let index: Index =
            serde_json::from_slice(&read_small(dir, "index.json", MAX_LAYOUT_JSON_BYTES)?)
                .map_err(|e| bad(&index_path, format!("invalid index: {e}")))?;

        // Which images, and every blob they need (descriptor → verified before import).
        let mut found = Vec::new();
        let mut needed: BTreeMap<Digest, u64> = BTreeMap::new();
        for top in &index.manifests {
            let (name, tag) = name_of(top, default);
            if is_index_media_type(&top.media_type) {
                let bytes = read_verified(dir, top)?;
                needed.insert(top.digest.clone(), top.size);
                let nested: Index = parse_json(&bytes, &format!("index {}", top.digest))?;
                let mut entries: Vec<&Descriptor> = nested
                    .manifests
                    .iter()
                    .filter(|m| !is_index_media_type(&m.media_type))
                    .filter(|m| {
                        m.platform
                            .as_ref()
                            .is_none_or(|p| p.architecture != "unknown")
                    })
                    .collect();
                if let Some(want) = platform {
                    let plats: Vec<Platform> = entries
                        .iter()
                        .map(|m| m.platform.clone().unwrap_or_default())
                        .collect();
                    entries = Matcher::new(want)
                        .best(&plats)
                        .map(|i| vec![entries[i]])
                        .unwrap_or_default();
                }
                for m in entries {
                    found.push(Found {
                        name: name.clone(),
                        tag: tag.clone(),
                        index_digest: Some(top.digest.clone()),
                        manifest: m.clone(),
                        platform: m.platform.clone(),
                    });
                }
            } else {
                found.push(Found {
                    name,
                    tag,
                    index_digest: None,
                    manifest: top.clone(),
                    platform: top.platform.clone(),
                });
            }
        }
        let mut manifests = Vec::new();
        for f in &found {
            let bytes = read_verified(dir, &f.manifest)?;
            let m: Manifest = parse_json(&bytes, &format!("manifest {}", f.manifest.digest))?;
            if m.config.size > MAX_CONFIG_BYTES {
                return Err(bad(
                    dir,
                    format!(
                        "config {} is {} bytes, more than the {} limit",
                        m.config.digest,
                        m.config.size,
                        human(MAX_CONFIG_BYTES)
                    ),
                ));
            }
            needed.insert(f.manifest.digest.clone(), f.manifest.size);
            needed.insert(m.config.digest.clone(), m.config.size);
            for l in &m.layers {
                needed.insert(l.digest.clone(), l.size);
            }
            manifests.push(m);
        }
        for (d, size) in &needed {
            if !self.has_blob(d) {
                verify_file(dir, d, *size)?;
            }
        }
        for (d, size) in &needed {
            if !self.has_blob(d) {
                let path = layout_blob(dir, d);
                let src = open_regular(dir, &blob_rel(d))?;
                let mut w = self.begin_blob(d, Some(*size))?;
                io::copy(&mut src.take(size.saturating_add(1)), &mut w).map_err(io_err(&path))?;
                w.commit()?;
            }
        }
        let mut records = Vec::new();
        for f in &found {
            let rec = self.build_record(
                &f.name,
                f.tag.as_deref(),
                f.index_digest.as_ref(),
                &f.manifest.digest,
                f.platform.as_ref(),
            )?;
            records.push(rec);
        }
        if let Some(want) = platform {
            let direct: Vec<ImageRecord> = records
                .iter()
                .filter(|r| r.index_digest.is_none())
                .cloned()
                .collect();
            if !direct.is_empty() {
                let keep = select(direct, Some(want));
                records.retain(|r| {
                    r.index_digest.is_some()
                        || Some(&r.manifest_digest) == keep.as_ref().map(|k| &k.manifest_digest)
                });
            }
        }
        if records.is_empty() {
            return Err(bad(
                dir,
                match platform {
                    Some(p) => format!("no image for platform {p} in the layout"),
                    None => "the layout's index.json lists no images".into(),
                },
            ));
        }
        crate::fault::point("load");
        for r in &records {
            self.record_image(r)?;
        }
        Ok(records)
    }
}

fn layout_blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join(blob_rel(d))
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Opens `rel` in the layout `dir` without following a symlink in its last component, and
/// only if it is a regular file (not a FIFO, a device or a directory).
fn open_regular(dir: &Path, rel: &str) -> Result<File, StoreError> {
    let path = dir.join(rel);
    let f = open_nofollow(&path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            bad(
                dir,
                format!("its {rel} is a symlink; refusing to follow it"),
            )
        } else {
            io_err(&path)(e)
        }
    })?;
    if !f.metadata().map_err(io_err(&path))?.is_file() {
        return Err(bad(dir, format!("its {rel} is not a regular file")));
    }
    Ok(f)
}

/// Opens `path` for reading with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO does not block
/// the open; regular files ignore it).
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Reads a small file of a layout (`oci-layout`, `index.json`), at most `limit` bytes.
fn read_small(dir: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
    let f = open_regular(dir, rel)?;
    read_capped_sync(f, limit).map_err(|e| match e {
        CappedError::TooLarge => bad(
            dir,
            format!(
                "its {rel} is larger than {} (the limit): refusing it",
                human(limit)
            ),
        ),
        CappedError::Read(e) => io_err(&dir.join(rel))(e),
    })
}

/// Hashes a layout blob and checks it against its descriptor (reading at most one byte
/// more than the descriptor's size).
fn verify_file(dir: &Path, d: &Digest, size: u64) -> Result<(), StoreError> {
    let path = layout_blob(dir, d);
    if fs::symlink_metadata(&path).is_err() {
        return Err(bad(dir, format!("the layout lacks blob {d}")));
    }
    let mut f = open_regular(dir, &blob_rel(d))?.take(size.saturating_add(1));
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(&path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    if h.len() != size {
        return Err(StoreError::SizeMismatch {
            digest: d.clone(),
            expected: size,
            actual: h.len(),
        });
    }
    let actual = h.finish();
    if &actual != d {
        return Err(StoreError::DigestMismatch {
            expected: d.clone(),
            actual,
        });
    }
    Ok(())
}

/// Reads a small layout blob (index, manifest), verified against its descriptor.
fn read_verified(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>, StoreError> {
    if desc.size > MAX_MANIFEST_BYTES {
        return Err(bad(
            dir,
            format!(
                "manifest {} is {} bytes, more than the {} limit",
                desc.digest,
                desc.size,
                human(MAX_MANIFEST_BYTES)
            ),
        ));
    }
    let path = layout_blob(dir, &desc.digest);
    if fs::symlink_metadata(&path).is_err() {
        return Err(bad(dir, format!("the layout lacks blob {}", desc.digest)));
    }
    let bytes =
        read_capped_sync(open_regular(dir, &blob_rel(&desc.digest))?, desc.size).map_err(|e| {
            match e {
                CappedError::TooLarge => StoreError::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: desc.size + 1,
                },
                CappedError::Read(e) => io_err(&path)(e),
            }
        })?;
    if bytes.len() as u64 != desc.size {
        return Err(StoreError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(StoreError::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}
