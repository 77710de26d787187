//! Building an [`ImageRecord`] from a manifest and config already in the store, and the small
//! JSON shapes (manifests, indexes, configs; OCI and Docker schema 2 alike) the store reads.

use serde::{Deserialize, Serialize};

use super::{ImageRecord, LayerRef, Store, StoreError};
use crate::digest::Digest;
use crate::platform::Platform;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A content descriptor (the fields xrun uses), in manifests, indexes and OCI layouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// `schemaVersion` (2 for every accepted type; 0 when absent).
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// Media type, when the manifest states it.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, lowest first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    /// `schemaVersion` (2 for every accepted type; 0 when absent).
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: u32,
    /// Media type, when stated.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config the store and the pull need.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigSummary {
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `architecture`.
    #[serde(default)]
    pub architecture: String,
    /// `variant`.
    #[serde(default)]
    pub variant: Option<String>,
    /// `rootfs`.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    /// The uncompressed layer digests, lowest first.
    pub diff_ids: Vec<Digest>,
}

/// Whether a media type names an index or manifest list.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Parses JSON bytes of a blob, mapping errors to [`StoreError::Corrupt`] at `what`.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: what.into(),
        message: e.to_string(),
    })
}

/// Now, as RFC 3339 (UTC).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Builds the record of an image whose manifest, config and layer blobs are in the store:
    /// layers paired with the config's `rootfs.diff_ids`, platform from `platform` (an index
    /// entry's, more precise) or else the config's (normalized either way), size = manifest + config + layers.
    /// Does not record it: pass the result to [`Store::record_image`].
    pub fn build_record(
        &self,
        name: &str,
        tag: Option<&str>,
        index_digest: Option<&Digest>,
        manifest_digest: &Digest,
        platform: Option<&Platform>,
    ) -> Result<ImageRecord, StoreError> {
        let manifest_bytes = self.read_blob(manifest_digest)?;
        let manifest: Manifest =
            parse_json(&manifest_bytes, &format!("manifest {manifest_digest}"))?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ConfigSummary =
            parse_json(&config_bytes, &format!("config {}", manifest.config.digest))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(StoreError::Corrupt {
                path: format!("manifest {manifest_digest}").into(),
                message: format!(
                    "{} layers but the config lists {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let layers: Vec<LayerRef> = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(l, d)| LayerRef {
                digest: l.digest.clone(),
                diff_id: d.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect();
        let platform = match platform {
            Some(p) => p.normalize(),
            None => Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone().filter(|v| !v.is_empty()),
                ..Default::default()
            }
            .normalize(),
        };
        let size = manifest_bytes.len() as u64
            + config_bytes.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>();
        Ok(ImageRecord {
            name: name.to_string(),
            tag: tag.map(str::to_string),
            index_digest: index_digest.cloned(),
            manifest_digest: manifest_digest.clone(),
            config_digest: manifest.config.digest.clone(),
            platform,
            layers,
            size,
            created: now_rfc3339(),
        })
    }

    /// The record's manifest, parsed.
    pub fn read_manifest(&self, record: &ImageRecord) -> Result<Manifest, StoreError> {
        let bytes = self.read_blob(&record.manifest_digest)?;
        parse_json(&bytes, &format!("manifest {}", record.manifest_digest))
    }
}
