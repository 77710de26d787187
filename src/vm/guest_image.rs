//! Guests published as images: `--vm-kernel REF` (or the config file's `vm-kernel`) names an
//! image (usually an index, one guest per architecture) as `ci/guest-image` writes it under
//! `…/guest/oci` and `skopeo copy --all` publishes it. Each guest image has exactly one layer
//! holding the guest directory (`guest.json`, kernel, initrd, config) and its manifest
//! carries the annotation [`RELEASE_ANNOTATION`] (or its config the same label).
//!
//! The guest for an architecture is pulled into the store like any image (pull policy,
//! credentials, verified digests, one copy of each layer), then its layer's snapshot
//! directory is loaded with [`Guest::from_dir`]. Before layers are downloaded, the manifest
//! the pull would take is checked for the annotation, so a reference to an ordinary image
//! (busybox, …) is refused without storing anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Guest, VmError};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::manifest::ManifestKind;
use crate::registry::{ClientOptions, Progress, PullOptions, PullPolicy, RegistryError};
use crate::store::{ImageRecord, Store};

/// The manifest annotation (or config label) that marks a guest image: its kernel release.
pub const RELEASE_ANNOTATION: &str = "org.xrun.guest.kernel.release";

/// A guest image reference, resolved per architecture on demand (and remembered); or a
/// local guest `--vm-kernel` names by path or name ([`super::guest::local_guest_dir`]).
pub struct GuestImage {
    source: Source,
    found: Mutex<BTreeMap<String, Guest>>,
}

enum Source {
    Registry(RegistryGuest),
    /// A local guest directory (or layout), unpacked under the cache when it is a layout.
    Local {
        dir: PathBuf,
        unpack_cache: PathBuf,
    },
}

/// A guest image in a registry, pulled into the store.
struct RegistryGuest {
    store: Store,
    reference: ImageRef,
    policy: PullPolicy,
    client: ClientOptions,
    progress: Box<dyn Progress>,
}

impl std::fmt::Debug for GuestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Registry(r) => f
                .debug_struct("GuestImage")
                .field("reference", &r.reference.to_string())
                .field("policy", &r.policy)
                .finish_non_exhaustive(),
            Source::Local { dir, .. } => f
                .debug_struct("GuestImage")
                .field("local", dir)
                .finish_non_exhaustive(),
        }
    }
}

impl GuestImage {
    /// A guest image `reference`, pulled into `store` per `policy` with `client`, reporting
    /// pulls to `progress`.
    pub fn new(
        store: Store,
        reference: ImageRef,
        policy: PullPolicy,
        client: ClientOptions,
        progress: Box<dyn Progress>,
    ) -> GuestImage {
        GuestImage {
            source: Source::Registry(RegistryGuest {
                store,
                reference,
                policy,
                client,
                progress,
            }),
            found: Mutex::new(BTreeMap::new()),
        }
    }

    /// A local guest at `dir` (a guest directory, a directory of per-arch guests, or an OCI
    /// layout, which is unpacked under `unpack_cache`).
    pub fn local(dir: PathBuf, unpack_cache: PathBuf) -> GuestImage {
        GuestImage {
            source: Source::Local { dir, unpack_cache },
            found: Mutex::new(BTreeMap::new()),
        }
    }

    /// The reference as given (`None` for a local guest).
    pub fn reference(&self) -> Option<&ImageRef> {
        match &self.source {
            Source::Registry(r) => Some(&r.reference),
            Source::Local { .. } => None,
        }
    }

    /// The guest for `arch` (OCI terms): pulled (per the policy) and unpacked on first use.
    pub fn guest(&self, arch: &str) -> Result<Guest, VmError> {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = found.get(arch) {
            return Ok(g.clone());
        }
        let g = match &self.source {
            Source::Registry(r) => r.fetch(arch)?,
            Source::Local { dir, unpack_cache } => {
                if !dir.exists() {
                    return Err(VmError::GuestMissing {
                        arch: arch.to_string(),
                        detail: format!("{} does not exist", dir.display()),
                    });
                }
                Guest::locate_in(std::slice::from_ref(dir), arch, unpack_cache)?
            }
        };
        found.insert(arch.to_string(), g.clone());
        Ok(g)
    }
}

impl RegistryGuest {
    fn not_a_guest(&self, arch: &str, message: impl Into<String>) -> VmError {
        VmError::NotAGuest {
            reference: self.reference.to_string(),
            arch: arch.to_string(),
            message: message.into(),
        }
    }

    fn pull_error(&self, e: impl Into<RegistryError>) -> VmError {
        VmError::GuestPull {
            reference: self.reference.to_string(),
            cause: Box::new(e.into()),
        }
    }

    fn fetch(&self, arch: &str) -> Result<Guest, VmError> {
        let platform = Platform {
            os: "linux".into(),
            architecture: arch.to_string(),
            ..Default::default()
        };
        let stored = self
            .store
            .find_image(
                &self.reference.name(),
                &self.reference.tag_or_digest(),
                Some(&platform),
            )
            .map_err(|e| self.pull_error(e))?
            .filter(|r| r.platform.normalize().architecture == arch);
        let pulls = match self.policy {
            PullPolicy::Always => true,
            PullPolicy::Missing => stored.is_none(),
            PullPolicy::Never => false,
        };
        if pulls {
            self.check_remote(arch, &platform)?;
        }
        let record = match (pulls, stored) {
            (false, Some(r)) => r,
            (false, None) => {
                return Err(self.pull_error(RegistryError::NotPresent {
                    reference: self.reference.to_string(),
                }));
            }
            (true, _) => {
                let opts = PullOptions {
                    platform: Some(platform.clone()),
                    client: self.client.clone(),
                    unpack: false,
                    ..Default::default()
                };
                crate::registry::ensure_image(
                    &self.store,
                    &self.reference,
                    PullPolicy::Always,
                    &opts,
                    self.progress.as_ref(),
                )
                .map_err(|e| self.pull_error(e))?
            }
        };
        match self.load(&record, arch) {
            Ok(g) => Ok(g),
            Err(e) => {
                if pulls {
                    self.forget(&record);
                }
                Err(e)
            }
        }
    }

    /// Checks, before any layer is downloaded, that the manifest the pull would take for
    /// `arch` is a guest's.
    fn check_remote(&self, arch: &str, platform: &Platform) -> Result<(), VmError> {
        let rt = crate::registry::pull::runtime().map_err(|e| self.pull_error(e))?;
        let inspect = |r: &ImageRef| {
            rt.block_on(crate::registry::inspect_remote(r, &self.client, None))
                .map_err(|e| self.pull_error(e))
        };
        let top = inspect(&self.reference)?;
        let raw = match top.kind {
            ManifestKind::Index => {
                let offered: Vec<Platform> = top
                    .entries
                    .iter()
                    .filter(|e| e.runnable)
                    .filter_map(|e| e.platform.clone())
                    .collect();
                let entry = top
                    .entries
                    .iter()
                    .filter(|e| e.runnable)
                    .find(|e| {
                        e.platform.as_ref().is_some_and(|p| {
                            let p = p.normalize();
                            p.os == "linux" && p.architecture == platform.architecture
                        })
                    })
                    .ok_or_else(|| {
                        self.not_a_guest(
                            arch,
                            format!(
                                "it has no linux/{arch} guest (it offers {}); build one with \
                                 ci/guest-image --arch {arch}",
                                crate::platform::describe(&offered)
                            ),
                        )
                    })?;
                let mut by_digest = self.reference.clone();
                by_digest.digest = Some(entry.digest.clone());
                inspect(&by_digest)?.raw
            }
            ManifestKind::Image => top.raw,
        };
        if !annotations(&raw).contains_key(RELEASE_ANNOTATION) {
            return Err(self.not_a_guest(arch, no_annotation()));
        }
        Ok(())
    }

    /// Loads the guest of a stored record (unpacking its layer), checking it is one.
    fn load(&self, record: &ImageRecord, arch: &str) -> Result<Guest, VmError> {
        let labelled = self
            .store
            .read_blob(&record.manifest_digest)
            .ok()
            .is_some_and(|b| annotations(&b).contains_key(RELEASE_ANNOTATION))
            || self
                .store
                .read_blob(&record.config_digest)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|c| c["config"]["Labels"][RELEASE_ANNOTATION].is_string());
        if !labelled {
            return Err(self.not_a_guest(arch, no_annotation()));
        }
        if record.platform.normalize().architecture != arch {
            return Err(self.not_a_guest(arch, format!("the image pulled is {}", record.platform)));
        }
        if record.layers.len() != 1 {
            return Err(self.not_a_guest(
                arch,
                format!(
                    "a guest image has exactly one layer, this one has {}",
                    record.layers.len()
                ),
            ));
        }
        let image = self.store.image(record).map_err(|e| self.pull_error(e))?;
        let dir = &image.layer_dirs[0];
        let g = Guest::from_dir(dir).map_err(|e| self.not_a_guest(arch, e.to_string()))?;
        if g.arch != arch {
            return Err(
                self.not_a_guest(arch, format!("its guest.json says architecture {}", g.arch))
            );
        }
        Ok(g)
    }

    /// Removes a record this run pulled but could not use (its blobs when nothing else
    /// uses them and no one else is writing).
    fn forget(&self, record: &ImageRecord) {
        if self
            .store
            .remove_records(std::slice::from_ref(record))
            .is_ok()
            && let Err(e) = self.store.prune_unreferenced(std::slice::from_ref(record))
        {
            tracing::debug!("leaving {}'s blobs for the next prune: {e}", record.name);
        }
    }
}

fn no_annotation() -> String {
    format!(
        "its manifest has no {RELEASE_ANNOTATION} annotation; build a guest with ci/guest-image and \
         publish it with skopeo copy --all (keeping the OCI format)"
    )
}

fn annotations(manifest: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("annotations").cloned())
        .and_then(|a| serde_json::from_value(a).ok())
        .unwrap_or_default()
}
