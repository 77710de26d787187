//! Putting what a build makes into the store: a diff directory as a layer blob (plain tar;
//! its digest is its diff_id), and the finished image's config and OCI manifest.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::BuildError;
use super::layer::{LayerOptions, is_empty_diff, write_layer};
use super::state::ImageState;
use crate::digest::{Digest, Hasher};
use crate::store::{LayerRef, OCI_MANIFEST, Store};

/// The media type of the layers a build writes (uncompressed: the digest is the diff_id,
/// and nothing is spent compressing what stays on this machine; a push may compress).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The image config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

struct Hashing<W> {
    inner: W,
    hasher: Hasher,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Stores the tree at `dir` (overlay form) as a layer; `None` when it is empty (an empty
/// diff makes no layer).
pub fn store_layer(
    store: &Store,
    dir: &Path,
    opts: LayerOptions,
) -> Result<Option<LayerRef>, BuildError> {
    if is_empty_diff(dir) {
        return Ok(None);
    }
    let scratch = store.scratch_dir("layer")?;
    let path = scratch.path().join("layer.tar");
    let file =
        std::fs::File::create(&path).map_err(|e| BuildError::io(path.display().to_string(), e))?;
    let mut w = Hashing {
        inner: std::io::BufWriter::with_capacity(256 * 1024, file),
        hasher: Hasher::new(),
        len: 0,
    };
    write_layer(dir, &mut w, opts)?;
    w.flush()
        .map_err(|e| BuildError::io("writing a layer", e))?;
    let size = w.len;
    let digest = w.hasher.finish();
    drop(w.inner);
    store.adopt_blob(&path, &digest)?;
    Ok(Some(LayerRef {
        digest: digest.clone(),
        diff_id: digest,
        media_type: LAYER_MEDIA_TYPE.into(),
        size,
    }))
}

/// An image written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config's digest.
    pub config_digest: Digest,
}

/// Writes `state`'s config and an OCI manifest for it into the store.
pub fn write_image(store: &Store, state: &ImageState) -> Result<WrittenImage, BuildError> {
    let config = state.config_bytes();
    let config_digest = Digest::of(&config);
    store.put_blob(&config_digest, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": state.layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON serializes");
    let manifest_digest = Digest::of(&bytes);
    store.put_blob(&manifest_digest, &bytes)?;
    Ok(WrittenImage {
        manifest_digest,
        manifest_size: bytes.len() as u64,
        config_digest,
    })
}
