//! The local content-addressed store: blobs, references, and layer snapshots.
//!
//! The store knows nothing of registries: a pull writes the registry's verified streams in
//! through [`Store::begin_blob`] and [`Store::record_image`], and `xrun load` of an OCI layout
//! goes in through the same door.
//!
//! Layout under the root (default `/var/lib/xrun`, `--root`/`XRUN_ROOT` to move it):
//! `blobs/sha256/<hex>`, `ingest/` (temp files, renamed into place once verified),
//! `refs.json` (image records), `snapshots/<diff_id hex>/` (each layer unpacked once),
//! `containers/` (owned by the runtime), `locks/`.
//!
//! CONTRACT: the signatures below are what the registry, kernelcheck and runtime stages call.
//! The store stage may add to them but should not change them without telling the others.

use std::path::{Path, PathBuf};

mod archive_read;
mod archive_write;
mod blobs;
mod check;
mod decompress;
mod docker_load;
mod extract;
mod fsutil;
mod gc;
mod layout;
mod locks;
mod record;
mod refs;
mod safepath;
mod scratch;
mod snapshots;
mod sources;
#[cfg(test)]
mod tests;
mod treecmp;

pub use archive_write::ArchiveFormat;
pub use blobs::BlobWriter;
pub use check::Finding;
pub use decompress::{Compression, sniff};
pub use extract::{is_opaque, is_whiteout};
pub use fsutil::tree_size;
pub use gc::{Lease, PruneReport};
pub use record::{
    ConfigSummary, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index, Manifest, OCI_INDEX,
    OCI_MANIFEST, RootFs, is_index_media_type,
};
pub use scratch::ScratchDir;
pub use sources::{BlobSource, MAX_SOURCES};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A blob's content does not match the digest it was announced with.
    #[error("digest mismatch for blob: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob's length does not match its descriptor.
    #[error("size mismatch for blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The announced size.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// No such image in the store.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// No such blob in the store.
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    /// A layer entry would land outside its snapshot.
    #[error("layer {layer}: entry {entry:?} escapes the root ({why})")]
    PathEscape {
        /// The layer's digest.
        layer: Digest,
        /// The offending path inside the tar.
        entry: String,
        /// What makes it escape.
        why: String,
    },
    /// A layer could not be decompressed or read as tar.
    #[error("layer {layer}: {message}")]
    BadLayer {
        /// The layer's digest.
        layer: Digest,
        /// What went wrong.
        message: String,
    },
    /// A file-system error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
    /// An OCI image layout given to `load` is not usable.
    #[error("{path}: {message}")]
    BadLayout {
        /// The layout (directory or tar).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The store is busy with another operation that excludes this one.
    #[error("store busy: {0}")]
    Busy(String),
    /// An argument is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// An image's snapshots are leased (used by containers).
    #[error("image {image} is in use by {holders}")]
    InUse {
        /// The image.
        image: String,
        /// The lease holders (containers).
        holders: String,
    },
    /// A record or manifest in the store is not valid JSON.
    #[error("{path}: {message}")]
    Corrupt {
        /// Where.
        path: PathBuf,
        /// What.
        message: String,
    },
}

/// One layer of an image, as its manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the (possibly compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (`rootfs.diff_ids` in the config).
    pub diff_id: Digest,
    /// The layer's media type (gzip, zstd, or plain tar).
    pub media_type: String,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// An image in the store: one reference on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized repository name, e.g. `docker.io/library/busybox` or `127.0.0.1:5000/busybox`.
    pub name: String,
    /// The tag, when the image was named by one.
    pub tag: Option<String>,
    /// The index or manifest list the manifest was selected from, if any.
    pub index_digest: Option<Digest>,
    /// The image manifest.
    pub manifest_digest: Digest,
    /// The image config.
    pub config_digest: Digest,
    /// The platform the manifest is for.
    pub platform: Platform,
    /// Layers, lowest first.
    pub layers: Vec<LayerRef>,
    /// Manifest + config + layer blob sizes.
    pub size: u64,
    /// When it entered the store (RFC 3339).
    pub created: String,
}

/// An image ready for the later stages: its config, and its layers unpacked.
#[derive(Debug, Clone)]
pub struct Image {
    /// The record.
    pub record: ImageRecord,
    /// The parsed image config.
    pub config: oci_spec::image::ImageConfiguration,
    /// The unpacked snapshot directory of each layer, lowest first (overlay `lowerdir`s in
    /// reverse order).
    pub layer_dirs: Vec<PathBuf>,
}

/// The store at one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// Creates the layout's directories and removes what killed processes left behind
    /// (unlocked `ingest/` temp files, unfinished snapshot builds under `tmp/`).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            "blobs/sha256",
            "ingest",
            "tmp",
            "snapshots",
            "locks",
            "leases",
        ] {
            fsutil::mkdir_all(&root.join(dir))?;
        }
        store.clean_ingest();
        store.clean_tmp();
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
