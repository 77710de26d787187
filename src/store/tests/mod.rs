//! Unit tests of the store, with real tars built here and a real store in a temp directory.

mod blobs;
mod extract;
mod extract_props;
mod gc;
mod refs;

use std::io::Write;

use super::{ImageRecord, LayerRef, Store};
use crate::digest::Digest;
use crate::platform::Platform;

/// A store in a fresh temp directory (kept alive by the returned guard).
pub(super) fn store() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(&t.path().join("root")).unwrap();
    (t, s)
}

/// Builds tars with raw names (so escape attempts can be written).
pub(super) struct TarMaker {
    b: tar::Builder<Vec<u8>>,
}

impl TarMaker {
    pub(super) fn new() -> Self {
        TarMaker {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h
    }

    fn add(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(super) fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.add(Self::header(tar::EntryType::Directory, path, mode, 0), b"")
    }

    pub(super) fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        self.add(
            Self::header(tar::EntryType::Regular, path, mode, data.len() as u64),
            data,
        )
    }

    pub(super) fn owned_file(&mut self, path: &str, data: &[u8], uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, path, 0o640, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_234_567_890);
        self.add(h, data)
    }

    fn linkish(&mut self, kind: tar::EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, path, 0o777, 0);
        h.set_link_name_literal(target).unwrap();
        self.add(h, b"")
    }

    pub(super) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.linkish(tar::EntryType::Symlink, path, target)
    }

    pub(super) fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.linkish(tar::EntryType::Link, path, target)
    }

    pub(super) fn chardev(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Char, path, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.add(h, b"")
    }

    pub(super) fn fifo(&mut self, path: &str) -> &mut Self {
        self.add(Self::header(tar::EntryType::Fifo, path, 0o600, 0), b"")
    }

    /// A PAX extended header for the next entry.
    pub(super) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = 1 + k.len() + 1 + v.len() + 1; // " k=v\n"
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            write!(body, "{len} {k}=").unwrap();
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = Self::header(
            tar::EntryType::XHeader,
            "PaxHeader",
            0o644,
            body.len() as u64,
        );
        self.add(h, &body)
    }

    pub(super) fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// gzip of `bytes`.
pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Puts a layer blob (already compressed as wanted) for the tar `tar` into the store.
pub(super) fn put_layer(store: &Store, blob: &[u8], tar: &[u8], media_type: &str) -> LayerRef {
    let digest = Digest::of(blob);
    store.put_blob(&digest, blob).unwrap();
    LayerRef {
        digest,
        diff_id: Digest::of(tar),
        media_type: media_type.into(),
        size: blob.len() as u64,
    }
}

/// Puts a whole image (gzip layers, config, manifest) and returns its record (not recorded).
pub(super) fn put_image(
    store: &Store,
    name: &str,
    tag: &str,
    arch: &str,
    tars: &[Vec<u8>],
) -> ImageRecord {
    let layers: Vec<LayerRef> = tars
        .iter()
        .map(|t| {
            put_layer(
                store,
                &gzip(t),
                t,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        })
        .collect();
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config);
    store.put_blob(&config_digest, &config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = Digest::of(&manifest);
    store.put_blob(&md, &manifest).unwrap();
    store
        .build_record(name, Some(tag), None, &md, None)
        .unwrap()
}

/// `linux/<arch>`.
pub(super) fn linux(arch: &str) -> Platform {
    format!("linux/{arch}").parse().unwrap()
}

/// Entries directly under `dir` (names), sorted; empty when absent.
pub(super) fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// True when the process can create device nodes and owners (root).
pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
