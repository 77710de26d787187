//! Manifests as the registry sends them: media-type detection (from the body, falling back on
//! the structure), parsing of indexes/lists and image manifests, image configs, and the
//! selection of an index entry for a platform with xrun's own [`Matcher`].

use super::error::RegistryError;
use crate::platform::{Matcher, Platform};
/// The OCI JSON shapes are the store's: one definition for the pull and the store.
pub use crate::store::{
    ConfigSummary as ImageConfig, DOCKER_LIST, DOCKER_MANIFEST, Descriptor, Index,
    Manifest as ImageManifest, OCI_INDEX, OCI_MANIFEST, RootFs,
};

/// Docker schema 1 (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every media type xrun accepts, for the `Accept` header: with a narrower list,
/// Distribution downgrades a manifest list to its amd64 manifest.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// What a manifest body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI index or a Docker manifest list.
    Index,
    /// An OCI or Docker schema 2 image manifest.
    Image,
}

impl Descriptor {
    /// Whether this index entry is an image for a real platform (not a buildx attestation
    /// manifest or an `unknown/unknown` entry).
    pub fn is_runnable(&self) -> bool {
        let attestation = self
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest");
        match &self.platform {
            Some(p) => !attestation && p.os != "unknown" && p.architecture != "unknown",
            None => false,
        }
    }
}

impl ImageConfig {
    /// The platform the config describes.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
            ..Default::default()
        }
    }
}

/// Detects what a manifest body is: its `mediaType` when present, else its structure
/// (`manifests` → index, `config`+`layers` → image). Schema 1 and unknown types are refused.
pub fn detect(reference: &str, body: &[u8]) -> Result<ManifestKind, RegistryError> {
    let invalid = |message: String| RegistryError::Invalid {
        reference: reference.to_string(),
        what: "manifest",
        message,
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    let schema = obj.get("schemaVersion").and_then(|s| s.as_u64());
    let media_type = obj.get("mediaType").and_then(|m| m.as_str());
    if schema == Some(1) || matches!(media_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
        return Err(RegistryError::Schema1 {
            reference: reference.to_string(),
        });
    }
    match media_type {
        Some(OCI_INDEX | DOCKER_LIST) => Ok(ManifestKind::Index),
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(ManifestKind::Image),
        Some(other) => Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: other.to_string(),
        }),
        None if schema != Some(2) => Err(invalid(format!(
            "unsupported schemaVersion {}",
            obj.get("schemaVersion")
                .map_or("(missing)".to_string(), |s| s.to_string())
        ))),
        None if obj.contains_key("manifests") => Ok(ManifestKind::Index),
        None if obj.contains_key("config") && obj.contains_key("layers") => Ok(ManifestKind::Image),
        None => Err(invalid("neither an index nor an image manifest".into())),
    }
}

/// Parses an index body.
pub fn parse_index(reference: &str, body: &[u8]) -> Result<Index, RegistryError> {
    let i: Index = serde_json::from_slice(body).map_err(|e| RegistryError::Invalid {
        reference: reference.to_string(),
        what: "index",
        message: e.to_string(),
    })?;
    schema_version_2(reference, "index", i.schema_version)?;
    Ok(i)
}

/// Every accepted index and manifest says `schemaVersion: 2`.
fn schema_version_2(reference: &str, what: &'static str, v: u32) -> Result<(), RegistryError> {
    if v == 2 {
        return Ok(());
    }
    Err(RegistryError::Invalid {
        reference: reference.to_string(),
        what,
        message: format!("schemaVersion {v}, expected 2"),
    })
}

/// Parses an image manifest body.
pub fn parse_image(reference: &str, body: &[u8]) -> Result<ImageManifest, RegistryError> {
    let m: ImageManifest = serde_json::from_slice(body).map_err(|e| RegistryError::Invalid {
        reference: reference.to_string(),
        what: "manifest",
        message: e.to_string(),
    })?;
    schema_version_2(reference, "manifest", m.schema_version)?;
    Ok(m)
}

/// Parses an image config and checks it against its manifest (one diff_id per layer).
pub fn parse_config(
    reference: &str,
    body: &[u8],
    manifest: &ImageManifest,
) -> Result<ImageConfig, RegistryError> {
    let invalid = |message: String| RegistryError::Invalid {
        reference: reference.to_string(),
        what: "image config",
        message,
    };
    let c: ImageConfig = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    if c.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "rootfs.diff_ids lists {} layers, the manifest {}",
            c.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(c)
}

/// The runnable platforms an index offers, in index order, without duplicates.
pub fn offered(index: &Index) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for d in index.manifests.iter().filter(|d| d.is_runnable()) {
        let p = d.platform.clone().expect("runnable has a platform");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The index entry that best fits `wanted` (xrun's [`Matcher`], variants and amd64 levels
/// included), or the clear no-match error naming what the index offers.
pub fn select<'a>(
    reference: &str,
    index: &'a Index,
    wanted: &Platform,
) -> Result<&'a Descriptor, RegistryError> {
    let runnable: Vec<&Descriptor> = index.manifests.iter().filter(|d| d.is_runnable()).collect();
    let platforms: Vec<Platform> = runnable
        .iter()
        .map(|d| d.platform.clone().expect("runnable has a platform"))
        .collect();
    match Matcher::new(wanted).best(&platforms) {
        Some(i) => Ok(runnable[i]),
        None => Err(RegistryError::NoMatchingPlatform {
            wanted: Box::new(wanted.clone()),
            reference: reference.to_string(),
            offered: offered(index),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "127.0.0.1:5000/x:y";

    fn d(hexc: char) -> String {
        format!("sha256:{}", hexc.to_string().repeat(64))
    }

    fn index_json(media: Option<&str>, entries: &[(&str, Option<&str>)]) -> String {
        let m: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, (p, ann))| {
                let parts: Vec<&str> = p.split('/').collect();
                let variant = parts
                    .get(2)
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                let ann = ann
                    .map(|a| format!(r#","annotations":{{"vnd.docker.reference.type":"{a}"}}"#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"os":"{}","architecture":"{}"{variant}}}{ann}}}"#,
                    d(char::from_digit(i as u32 + 1, 16).unwrap()),
                    100 + i,
                    parts[0],
                    parts[1]
                )
            })
            .collect();
        let media = media
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{media}"manifests":[{}]}}"#,
            m.join(",")
        )
    }

    #[test]
    fn only_schema_version_2_parses() {
        let cfg = format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"sha256:{}","size":1}},"layers":[]}}"#,
            "a".repeat(64)
        );
        let with = |v: &str| cfg.replacen('{', &format!("{{{v}"), 1);
        assert!(parse_image("r", with(r#""schemaVersion":2,"#).as_bytes()).is_ok());
        for bad in [with(r#""schemaVersion":1,"#), cfg.clone()] {
            let e = parse_image("r", bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("expected 2"), "{e}");
        }
        let idx = r#"{"schemaVersion":1,"manifests":[]}"#;
        assert!(parse_index("r", idx.as_bytes()).is_err());
        assert!(parse_index("r", br#"{"schemaVersion":2,"manifests":[]}"#).is_ok());
    }

    #[test]
    fn detects_by_media_type_and_structure() {
        let idx = index_json(Some(OCI_INDEX), &[("linux/amd64", None)]);
        assert_eq!(detect(R, idx.as_bytes()).unwrap(), ManifestKind::Index);
        let list = index_json(Some(DOCKER_LIST), &[("linux/amd64", None)]);
        assert_eq!(detect(R, list.as_bytes()).unwrap(), ManifestKind::Index);
        let bare = index_json(None, &[("linux/amd64", None)]);
        assert_eq!(detect(R, bare.as_bytes()).unwrap(), ManifestKind::Index);
        let img = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d('a')
        );
        assert_eq!(detect(R, img.as_bytes()).unwrap(), ManifestKind::Image);
        let bare_img = img.replace(&format!(r#""mediaType":"{DOCKER_MANIFEST}","#), "");
        assert_eq!(detect(R, bare_img.as_bytes()).unwrap(), ManifestKind::Image);
    }

    #[test]
    fn refuses_schema1_and_unknown_types() {
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(detect(R, s1), Err(RegistryError::Schema1 { .. })));
        let s1b = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_SCHEMA1_SIGNED}"}}"#);
        assert!(matches!(
            detect(R, s1b.as_bytes()),
            Err(RegistryError::Schema1 { .. })
        ));
        let odd = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        let e = detect(R, odd).unwrap_err();
        assert!(matches!(e, RegistryError::UnsupportedMediaType { .. }));
        assert!(e.to_string().contains("application/vnd.example+json"));
        assert!(detect(R, b"[]").is_err());
        assert!(detect(R, b"not json").is_err());
        assert!(detect(R, br#"{"schemaVersion":2}"#).is_err());
    }

    #[test]
    fn selects_with_variants_and_skips_attestations() {
        let idx = index_json(
            Some(OCI_INDEX),
            &[
                ("linux/amd64", None),
                ("unknown/unknown", Some("attestation-manifest")),
                ("linux/arm/v6", None),
                ("linux/arm/v7", None),
                ("linux/arm64/v8", None),
            ],
        );
        let index = parse_index(R, idx.as_bytes()).unwrap();
        let pick = |p: &str| select(R, &index, &p.parse().unwrap()).map(|d| d.size);
        assert_eq!(pick("linux/amd64").unwrap(), 100);
        assert_eq!(pick("linux/arm64/v8").unwrap(), 104);
        assert_eq!(
            offered(&index)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            [
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64/v8"
            ]
        );
        let e = pick("linux/riscv64").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/riscv64 in 127.0.0.1:5000/x:y (offers linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8)"
        );
    }

    #[test]
    fn config_must_have_one_diff_id_per_layer() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{a}","size":1}},"layers":[{{"mediaType":"l","digest":"{a}","size":2}}]}}"#,
            a = d('a')
        );
        let m = parse_image(R, m.as_bytes()).unwrap();
        let ok = format!(
            r#"{{"os":"linux","architecture":"arm","variant":"v7","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            d('b')
        );
        let c = parse_config(R, ok.as_bytes(), &m).unwrap();
        assert_eq!(c.platform().to_string(), "linux/arm/v7");
        let bad = r#"{"os":"linux","architecture":"arm","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let e = parse_config(R, bad.as_bytes(), &m).unwrap_err();
        assert!(
            e.to_string()
                .contains("diff_ids lists 0 layers, the manifest 1")
        );
    }
}
