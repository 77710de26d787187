//! The image operations: pull, list, inspect, remove (and reclaim space), prune, load and
//! save of image archives (OCI layouts and `docker save` archives), tag.

use std::io::{Read, Write};
use std::path::Path;

use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::{ClientOptions, Credentials, Progress, PullOptions, PullOutcome};
use crate::store::{ArchiveFormat, ImageRecord, PruneReport, Store, StoreError};

use super::{Engine, EngineError};

/// A request to pull an image (`xrun pull`).
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// The image reference.
    pub reference: String,
    /// The platform (default: this host's, or `$XRUN_DEFAULT_PLATFORM`).
    pub platform: Option<Platform>,
    /// Every platform of a multi-platform image.
    pub all_platforms: bool,
    /// Registries reached over plain HTTP besides the config's (and loopback ones).
    pub insecure_registries: Vec<String>,
    /// Credentials instead of those saved by `xrun login`.
    pub credentials: Option<Credentials>,
}

/// A request to save images as an archive (`xrun save`, `docker save`).
#[derive(Debug, Clone, Default)]
pub struct SaveRequest {
    /// The images (references or image IDs); each brings all its platforms unless
    /// `platform` is given.
    pub references: Vec<String>,
    /// Only this platform of each image.
    pub platform: Option<Platform>,
    /// The archive format.
    pub format: ArchiveFormat,
}

/// What removing images freed (see [`Engine::reclaim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaimed {
    /// Blobs and snapshots no image uses any more were deleted.
    Deleted(PruneReport),
    /// Another operation held the store: space is reclaimed by a later prune (why).
    Deferred(String),
}

impl Engine {
    /// Opens the store, saying where on failure.
    pub(super) fn image_store(&self) -> Result<Store, EngineError> {
        Store::open(self.root()).map_err(|e| {
            EngineError::context(format!("opening the store at {}", self.root().display()), e)
        })
    }

    /// Pulls `req.reference` into the store, reporting to `progress`.
    pub fn pull(
        &self,
        req: &PullRequest,
        progress: &dyn Progress,
    ) -> Result<PullOutcome, EngineError> {
        let image = ImageRef::parse(&req.reference)?;
        let opts = PullOptions {
            platform: req.platform.clone(),
            all_platforms: req.all_platforms,
            client: ClientOptions::from_config(&self.config()?, &req.insecure_registries),
            credentials: req.credentials.clone(),
            unpack: true,
        };
        let store = Store::open(self.root())?;
        Ok(crate::registry::pull_blocking(
            &store, &image, &opts, progress,
        )?)
    }

    /// The images in the store; with `filter`, only those of its repository (and of its tag
    /// or digest, when it names one).
    pub fn list_images(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, EngineError> {
        let store = self.image_store()?;
        let mut records = store.list_images()?;
        if let Some(filter) = filter {
            let r = ImageRef::parse(filter)?;
            let tag_given = filter
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') || last.contains('@'));
            records.retain(|rec| {
                rec.name == r.name() && (!tag_given || names(rec, &r.tag_or_digest()))
            });
        }
        Ok(records)
    }

    /// The one image `input` (reference or image ID) names, on `platform` (default: the
    /// host's when there are several), as JSON: its record, manifest and config.
    pub fn inspect_image(
        &self,
        input: &str,
        platform: Option<&Platform>,
    ) -> Result<serde_json::Value, EngineError> {
        let store = self.image_store()?;
        let record = resolve(&store, input, platform)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&record.manifest_digest)?)
                .map_err(|e| EngineError::context("parsing the manifest", e))?;
        let config: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&record.config_digest)?)
                .map_err(|e| EngineError::context("parsing the config", e))?;
        Ok(serde_json::json!({
            "record": record,
            "manifest": manifest,
            "config": config,
        }))
    }

    /// Untags every image `input` names (on `platform` when given) and returns them; refuses
    /// ([`StoreError::InUse`]) when containers use one, unless `force`. Space is freed by
    /// [`Engine::reclaim`].
    pub fn remove_image(
        &self,
        input: &str,
        force: bool,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, EngineError> {
        let store = self.image_store()?;
        let leases = store.snapshot_leases()?;
        let records = matching(&store, input, platform)?;
        if records.is_empty() {
            let what = match platform {
                Some(p) => format!("{input} for platform {p}"),
                None => input.to_string(),
            };
            return Err(EngineError::NotFound(format!("no such image: {what}")));
        }
        // An image is in use when a container's lease covers all its layers.
        let users: Vec<&str> = leases
            .iter()
            .filter(|(_, ids)| {
                records
                    .iter()
                    .any(|r| r.layers.iter().all(|l| ids.contains(&l.diff_id)))
            })
            .map(|(h, _)| h.as_str())
            .collect();
        if !users.is_empty() && !force {
            return Err(StoreError::InUse {
                image: input.to_string(),
                holders: format!("container {} (use -f to untag anyway)", users.join(", ")),
            }
            .into());
        }
        store.remove_records(&records)?;
        crate::fault::point("rmi");
        Ok(records)
    }

    /// Deletes the blobs and snapshots of `removed` images that nothing else uses.
    pub fn reclaim(&self, removed: &[ImageRecord]) -> Result<Reclaimed, EngineError> {
        let store = self.image_store()?;
        match store.prune_unreferenced(removed) {
            Ok(report) => Ok(Reclaimed::Deleted(report)),
            Err(StoreError::Busy(why)) => Ok(Reclaimed::Deferred(why)),
            Err(e) => Err(e.into()),
        }
    }

    /// The parsed config of a stored image.
    pub fn image_config(&self, record: &ImageRecord) -> Result<serde_json::Value, EngineError> {
        let store = self.image_store()?;
        serde_json::from_slice(&store.read_blob(&record.config_digest)?)
            .map_err(|e| EngineError::context("parsing the config", e))
    }

    /// The one image `input` (reference or image ID) names on `platform` (default: the host's
    /// when there are several), and every record of its manifest (its other names).
    pub fn find_image(
        &self,
        input: &str,
        platform: Option<&Platform>,
    ) -> Result<(ImageRecord, Vec<ImageRecord>), EngineError> {
        let store = self.image_store()?;
        let record = resolve(&store, input, platform)?;
        let names = store
            .list_images()?
            .into_iter()
            .filter(|r| r.manifest_digest == record.manifest_digest)
            .collect();
        Ok((record, names))
    }

    /// Untags the images no container uses (only the untagged ones unless `all`) and deletes
    /// what they alone held (`docker image prune [-a]`); returns the records and the report.
    pub fn remove_unused_images(
        &self,
        all: bool,
    ) -> Result<(Vec<ImageRecord>, PruneReport), EngineError> {
        let store = self.image_store()?;
        let leases = store.snapshot_leases()?;
        let unused: Vec<ImageRecord> = store
            .list_images()?
            .into_iter()
            .filter(|r| all || r.tag.is_none())
            .filter(|r| {
                !leases
                    .iter()
                    .any(|(_, ids)| r.layers.iter().all(|l| ids.contains(&l.diff_id)))
            })
            .collect();
        store.remove_records(&unused)?;
        let report = match store.prune() {
            Ok(r) => r,
            Err(StoreError::Busy(_)) => PruneReport::default(),
            Err(e) => return Err(e.into()),
        };
        Ok((unused, report))
    }

    /// Deletes the blobs and snapshots no image references and no container uses.
    pub fn prune_images(&self) -> Result<PruneReport, EngineError> {
        Ok(self.image_store()?.prune()?)
    }

    /// Loads an image archive (directory or tar; an OCI image layout or a `docker save`
    /// archive) into the store: every platform, or the best match for `platform`.
    pub fn load_images(
        &self,
        input: &Path,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, EngineError> {
        let store = self.image_store()?;
        store.load_layout(input, platform).map_err(|e| match e {
            // Already names the layout: no second copy of the path.
            e @ crate::store::StoreError::BadLayout { .. } => EngineError::Store(e),
            e => EngineError::context(format!("loading {}", input.display()), e),
        })
    }

    /// Loads an image archive tar read from `input` (stdin, an HTTP body), as
    /// [`Engine::load_images`].
    pub fn load_images_from(
        &self,
        input: &mut dyn Read,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageRecord>, EngineError> {
        let store = self.image_store()?;
        Ok(store.load_archive(input, platform)?)
    }

    /// The records a save request covers, every one checked present.
    fn save_records(
        &self,
        store: &Store,
        req: &SaveRequest,
    ) -> Result<Vec<ImageRecord>, EngineError> {
        if req.references.is_empty() {
            return Err(EngineError::Invalid("no image to save".into()));
        }
        let mut records: Vec<ImageRecord> = Vec::new();
        for input in &req.references {
            let found = match &req.platform {
                Some(p) => vec![resolve(store, input, Some(p))?],
                None => {
                    let all = matching(store, input, None)?;
                    if all.is_empty() {
                        return Err(EngineError::NotFound(format!("no such image: {input}")));
                    }
                    all
                }
            };
            for r in found {
                if !records.contains(&r) {
                    records.push(r);
                }
            }
        }
        Ok(records)
    }

    /// Saves the images `req` names as an archive tar at `output` (complete or absent).
    pub fn save_images(&self, req: &SaveRequest, output: &Path) -> Result<(), EngineError> {
        let store = self.image_store()?;
        let records = self.save_records(&store, req)?;
        store
            .save_archive(&records, req.format, output)
            .map_err(|e| EngineError::context(format!("saving to {}", output.display()), e))
    }

    /// Streams the images `req` names as an archive tar to `out` (stdout, an HTTP body).
    /// Unknown images fail before a byte is written.
    pub fn save_images_to(
        &self,
        req: &SaveRequest,
        out: &mut dyn Write,
    ) -> Result<(), EngineError> {
        let store = self.image_store()?;
        let records = self.save_records(&store, req)?;
        store
            .write_archive(&records, req.format, out)
            .map_err(|e| EngineError::context("writing the archive", e))?;
        Ok(())
    }

    /// Gives every image `source` names (all its platforms) the name `target` as well
    /// (`xrun tag`, `docker tag`), and returns the new records.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<Vec<ImageRecord>, EngineError> {
        let store = self.image_store()?;
        let target_ref = ImageRef::parse(target)?;
        if target_ref.digest.is_some() {
            return Err(EngineError::Invalid(format!(
                "refusing to tag {target}: a tag cannot name a digest (use name:tag)"
            )));
        }
        let tag = target_ref.tag.clone().unwrap_or_else(|| "latest".into());
        let mut sources = matching(&store, source, None)?;
        if sources.is_empty() {
            return Err(EngineError::NotFound(format!("no such image: {source}")));
        }
        // One record per platform (a short ID may name several tags of one image).
        sources.sort_by_key(|r| r.platform.to_string());
        sources.dedup_by(|a, b| a.platform == b.platform);
        let mut tagged = Vec::new();
        for r in sources {
            let new = ImageRecord {
                name: target_ref.name(),
                tag: Some(tag.clone()),
                ..r
            };
            store.record_image(&new)?;
            tagged.push(new);
        }
        Ok(tagged)
    }
}

/// Every record `input` names (reference or image ID), restricted to `platform` when given.
fn matching(
    store: &Store,
    input: &str,
    platform: Option<&Platform>,
) -> Result<Vec<ImageRecord>, EngineError> {
    let mut found = match ImageRef::parse(input) {
        Ok(r) => store.find_images(&r.name(), &r.tag_or_digest())?,
        Err(_) => Vec::new(),
    };
    if found.is_empty() {
        found = store.find_by_id(input)?;
    }
    if let Some(p) = platform {
        let p = p.normalize();
        found.retain(|r| {
            let have = r.platform.normalize();
            have.os == p.os
                && have.architecture == p.architecture
                && (p.variant.is_none() || have.variant == p.variant)
        });
    }
    Ok(found)
}

/// The one record `input` names on `platform` (or the host's when several).
pub(super) fn resolve(
    store: &Store,
    input: &str,
    platform: Option<&Platform>,
) -> Result<ImageRecord, EngineError> {
    if let Ok(r) = ImageRef::parse(input)
        && let Some(rec) = store.find_image(&r.name(), &r.tag_or_digest(), platform)?
    {
        return Ok(rec);
    }
    let mut by_id = matching(store, input, platform)?;
    // An image ID names one manifest, whatever number of tags it has.
    if !by_id.is_empty()
        && by_id
            .iter()
            .all(|r| r.manifest_digest == by_id[0].manifest_digest)
    {
        return Ok(by_id.remove(0));
    }
    let others = matching(store, input, None)?;
    let have = || {
        others
            .iter()
            .map(|r| r.platform.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(EngineError::NotFound(match (platform, others.is_empty()) {
        (Some(p), false) => format!(
            "no such image: {input} for platform {p} (the store has it for {})",
            have()
        ),
        (None, false) => format!(
            "no such image: {input} for this host (the store has it for {}; use --platform)",
            have()
        ),
        _ => format!("no such image: {input}"),
    }))
}

/// Whether the record is named by a tag or digest.
fn names(r: &ImageRecord, tag_or_digest: &str) -> bool {
    match tag_or_digest.parse::<crate::digest::Digest>() {
        Ok(d) => r.manifest_digest == d || r.index_digest.as_ref() == Some(&d),
        Err(_) => r.tag.as_deref() == Some(tag_or_digest),
    }
}
