//! From a [`ContainerSpec`] to the image to run and its route: find the image in the store,
//! pull it per the policy, pick the platform, gather the host, route.

use std::path::Path;
use std::sync::Arc;

use crate::assess;
use crate::config::Config;
use crate::digest::Digest;
use crate::kernelcheck::entrypoint::Override;
use crate::plan::RouteChoice;
use crate::platform::{Matcher, Platform};
use crate::reference::ImageRef;
use crate::registry::{ClientOptions, PullOptions, PullPolicy};
use crate::runtime::ImageInput;
use crate::store::{ImageRecord, Lease, Store};

use super::route::{RouteInput, Routed, refusal, route_for};
use super::{ContainerSpec, EngineError, ImageSource, Observer};

/// The image to run, and (for a stored image) its route.
pub(super) struct Resolved {
    /// The runtime's view of the image.
    pub image: ImageInput,
    /// The route (`None` for a root file system directory).
    pub routed: Option<Routed>,
    /// The diff_ids to lease for the container (stored images).
    pub diff_ids: Vec<Digest>,
    /// Holds off garbage collection until the container's snapshot lease is written.
    pub gc: Option<Lease>,
}

/// Resolves `spec`'s image under store root `root` (see the module doc); `Err(Refused)` when
/// it cannot run here.
pub(super) fn resolve_image(
    root: &Path,
    config: impl FnOnce() -> Result<Config, EngineError>,
    spec: &ContainerSpec,
    observer: &dyn Observer,
) -> Result<Resolved, EngineError> {
    let image_name = match &spec.image {
        ImageSource::Rootfs(dir) => {
            let dir = std::fs::canonicalize(dir)
                .map_err(|e| EngineError::context(format!("--rootfs {}", dir.display()), e))?;
            return Ok(Resolved {
                image: ImageInput::from_rootfs(dir),
                routed: None,
                diff_ids: Vec::new(),
                gc: None,
            });
        }
        ImageSource::Reference(r) => r.as_str(),
    };
    let policy = spec.pull;
    let choice = spec.route;
    let r = ImageRef::parse(image_name)?;
    let wanted = spec.platform.as_ref();
    let store = Store::open(root)?;
    let config = config()?;
    let vm_kernel = guest_image(root, &config, spec.vm_kernel.as_deref(), policy, observer)?;
    let mut records = assess::find_records(&store, &r)?;
    let has_wanted = |records: &[ImageRecord]| match wanted {
        None => !records.is_empty(),
        Some(p) => {
            let av: Vec<_> = records.iter().map(|r| r.platform.clone()).collect();
            Matcher::new(p).best(&av).is_some()
        }
    };
    // With no --platform, a stored image the host cannot run natively may have a native
    // variant in the index it came from (an earlier `--platform` pull stored only one).
    let native_variant = match (policy, wanted) {
        (PullPolicy::Missing, None) => native_variant_to_pull(&store, &records),
        _ => None,
    };
    let pull = match policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => !has_wanted(&records) || native_variant.is_some(),
        PullPolicy::Never => false,
    };
    if pull {
        let opts = PullOptions {
            platform: wanted.cloned().or_else(|| native_variant.clone()),
            client: ClientOptions::from_config(&config, &[]),
            unpack: true,
            ..Default::default()
        };
        let progress = observer.pull_progress();
        let pulled = crate::registry::ensure_image(&store, &r, policy, &opts, progress.as_ref());
        match (pulled, &native_variant) {
            (Ok(_), _) => {}
            // The stored variants still run (emulated or in a VM): say why the native one is
            // not used, and go on with them.
            (Err(error), Some(p)) if has_wanted(&records) => observer.warning(&format!(
                "could not pull {p} of {image_name} ({error}); using the stored {}",
                crate::platform::describe(
                    &records
                        .iter()
                        .map(|r| r.platform.clone())
                        .collect::<Vec<_>>()
                )
            )),
            (Err(error), _) => {
                return Err(EngineError::Pull {
                    image: image_name.to_string(),
                    error,
                });
            }
        }
        records = assess::find_records(&store, &r)?;
    }
    if !has_wanted(&records) {
        return Err(not_in_store(image_name, wanted, policy));
    }
    tracing::debug!("phase: image found");
    // A native verdict never depends on the emulation facts: gather them only when needed.
    let native_first = matches!(choice, RouteChoice::Auto | RouteChoice::Native);
    let mut host = if native_first {
        assess::host_profile_without_emulation()
    } else {
        assess::host_profile()
    };
    tracing::debug!("phase: host profile gathered");
    let available: Vec<_> = records.iter().map(|r| r.platform.clone()).collect();
    let index = match wanted {
        Some(p) => Matcher::new(p)
            .best(&available)
            .expect("has_wanted checked it"),
        None => match crate::plan::report::select_platform(&host, &available) {
            Ok(i) => i,
            Err(v) => {
                let req = crate::kernelcheck::ImageRequirements::default();
                return Err(refusal(image_name, &v, &req, choice));
            }
        },
    };
    let record = &records[index];
    // No collection between unpacking the layers and leasing them for the container.
    let gc = store.lease()?;
    let image = store.image(record)?;
    let ov = Override {
        entrypoint: spec.options.entrypoint.clone().map(|e| vec![e]),
        cmd: (!spec.options.command.is_empty()).then(|| spec.options.command.clone()),
    };
    let input = RouteInput {
        name: image_name,
        store: &store,
        image: &image,
        ov: &ov,
        choice,
        dry_run: spec.dry_run,
        vm_kernel,
    };
    let mut routed = route_for(&input, &host, observer);
    // Not native (or refused) without the emulation facts: decide again with them.
    let again = match &routed {
        Ok(r) => r.route != crate::plan::Route::Native,
        Err(e) => matches!(e, EngineError::Refused(_)),
    };
    if native_first && again {
        host = assess::host_profile();
        routed = route_for(&input, &host, observer);
    }
    let routed = routed?;
    tracing::debug!("phase: routed");
    Ok(Resolved {
        image: ImageInput::from_store(image_name, &image),
        routed: Some(routed),
        diff_ids: record.layers.iter().map(|l| l.diff_id.clone()).collect(),
        gc: Some(gc),
    })
}

/// The platform to pull when no stored record of an image runs natively here (the default
/// platform: `XRUN_DEFAULT_PLATFORM`, `DOCKER_DEFAULT_PLATFORM` or the host's) but the stored
/// index the records came from offers one that does — as Podman's `--pull missing` looks
/// for the local platform, where Docker would run the stored foreign variant.
fn native_variant_to_pull(store: &Store, records: &[ImageRecord]) -> Option<Platform> {
    let native = crate::platform::default_platform().ok()?;
    let matcher = Matcher::new(&native);
    if records.is_empty() || records.iter().any(|r| matcher.matches(&r.platform)) {
        return None;
    }
    let index = records.iter().find_map(|r| r.index_digest.clone())?;
    let body = store.read_blob(&index).ok()?;
    let index = crate::registry::manifest::parse_index(image_label(records), &body).ok()?;
    let offered = crate::registry::manifest::offered(&index);
    matcher.best(&offered).map(|i| offered[i].clone())
}

/// A name for messages about stored records.
fn image_label(records: &[ImageRecord]) -> &str {
    records.first().map(|r| r.name.as_str()).unwrap_or("image")
}

/// The error for an image (or a platform of it) the store does not have after the pull
/// policy ran.
pub(super) fn not_in_store(
    image_name: &str,
    wanted: Option<&Platform>,
    policy: PullPolicy,
) -> EngineError {
    let what = match wanted {
        Some(p) => format!("platform {p} of {image_name}"),
        None => format!("image {image_name}"),
    };
    EngineError::NotFound(format!(
        "no such {what} in the store{}: run `xrun pull {}{image_name}` first",
        if policy == PullPolicy::Never {
            " (--pull never)"
        } else {
            ""
        },
        wanted
            .map(|p| format!("--platform {p} "))
            .unwrap_or_default()
    ))
}

/// The guest image `flag` (`--vm-kernel`, else the config's `vm-kernel`) names, if any;
/// pulled later, only when the vm route is considered.
pub(super) fn guest_image(
    root: &Path,
    config: &Config,
    flag: Option<&str>,
    policy: PullPolicy,
    observer: &dyn Observer,
) -> Result<Option<Arc<crate::vm::GuestImage>>, EngineError> {
    let (r, from) = match (flag, config.vm_kernel.as_deref()) {
        (Some(r), _) => (r, "--vm-kernel".to_string()),
        (None, Some(r)) => (r, format!("vm-kernel in {}", Config::path().display())),
        (None, None) => return Ok(None),
    };
    // A local guest (a path, or a name such as `debian`) before an image reference.
    if let Some(dir) = crate::vm::guest::local_guest_dir(r) {
        return Ok(Some(Arc::new(crate::vm::GuestImage::local(
            dir,
            root.join("vm").join("guests"),
        ))));
    }
    let reference =
        ImageRef::parse(r).map_err(|e| EngineError::context(format!("{from} {r}"), e))?;
    Ok(Some(Arc::new(crate::vm::GuestImage::new(
        Store::open(root)?,
        reference,
        policy,
        ClientOptions::from_config(config, &[]),
        observer.pull_progress(),
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_names_the_pull_to_make() {
        let e = not_in_store("busybox", None, PullPolicy::Missing);
        assert_eq!(
            e.to_string(),
            "no such image busybox in the store: run `xrun pull busybox` first"
        );
        let p: Platform = "linux/arm64".parse().unwrap();
        let e = not_in_store("busybox", Some(&p), PullPolicy::Never);
        assert_eq!(
            e.to_string(),
            format!(
                "no such platform {p} of busybox in the store (--pull never): run `xrun pull --platform {p} busybox` first"
            )
        );
        assert_eq!(e.kind(), super::super::ErrorKind::NotFound);
    }
}
