//! Assessing a stored image for a host: the image's requirements (scanned once per manifest
//! and command, then cached in the store) and the [`plan`] verdict. `xrun check` and
//! `xrun run` both go through [`assess`], so they name the same route; unlike [`plan`] this
//! module does I/O (the scan, the cache, the guest's description).
//!
//! The vm route is checked against the guest kernel when one is known ([`GuestChoice`]):
//! a given profile, or the local guest for the image's architecture ([`local_guest`], the
//! one `xrun run` boots) or a guest image pulled for it ([`GuestChoice::Image`],
//! `--vm-kernel`), described by [`Guest::profile`]. Since the plan tries native, then
//! emulated, then vm, the guest is only looked up when the verdict without it is `vm` or
//! `unrunnable` (the result is the same as with the guest known from the start).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::kernelcheck::HostProfile;
use crate::kernelcheck::entrypoint::Override;
use crate::kernelcheck::requirements::{ImageRequirements, ScanError, ScanInput, scan};
use crate::plan::{PlanOptions, ReasonCode, Route, RouteChoice, Severity, Verdict, plan};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::store::{Image, ImageRecord, Store, StoreError};
use crate::vm::{Guest, GuestImage, VmError};

/// Bumped when the scan's output changes meaning: older cache entries are then ignored.
pub const CACHE_VERSION: u32 = 1;

/// Errors of [`assess`] and [`requirements`].
#[derive(Debug, thiserror::Error)]
pub enum AssessError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's layers could not be scanned.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The guest's description could not be read.
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// Which guest kernel the vm route is checked against.
#[derive(Debug, Clone)]
pub enum GuestChoice {
    /// Not profiled: the vm route is provisional (`guest-unprofiled`).
    None,
    /// A profile the user gave (`--guest-profile`).
    Given(Box<HostProfile>),
    /// The local guest for the image's architecture, if there is one (guest layouts are
    /// unpacked under this directory: `<root>/vm/guests`).
    Local(PathBuf),
    /// The default guest another host's xrun would boot for the image's architecture
    /// (`Guest::locate`'s places, layouts unpacked under this directory), whether or not this
    /// machine has qemu-system for it (the host's profile says whether it does): for
    /// `--host-profile` hosts.
    Default(PathBuf),
    /// The guest image `--vm-kernel` (or the config's `vm-kernel`) names, pulled for the
    /// image's architecture when the vm route is considered; not being able to get it is an
    /// error.
    Image(Arc<GuestImage>),
}

impl GuestChoice {
    /// The guest this choice boots for `arch` (OCI terms): `None` when there is none to
    /// profile (`None`, `Given`, or no local/default guest); a guest image that cannot be pulled or
    /// is not a guest for `arch` is an error.
    pub fn find(&self, arch: &str) -> Result<Option<Guest>, VmError> {
        match self {
            GuestChoice::None | GuestChoice::Given(_) => Ok(None),
            GuestChoice::Local(cache) => Ok(local_guest(arch, cache)),
            GuestChoice::Default(cache) => Ok(Guest::locate(arch, cache).ok()),
            GuestChoice::Image(image) => image.guest(arch).map(Some),
        }
    }
}

/// What [`assess`] found.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The image's requirements.
    pub requirements: ImageRequirements,
    /// The plan's verdict.
    pub verdict: Verdict,
    /// The guest whose profile was used (`GuestChoice::Local`, `Default` or `Image` only).
    pub guest: Option<Guest>,
}

/// This machine's profile as the plan sees it: [`HostProfile::gather`], with binfmt handlers
/// in the kernel's order and shadowed ones marked unusable (as the emulated route finds them).
pub fn host_profile() -> HostProfile {
    let mut p = HostProfile::gather();
    crate::emulation::route::refine_profile(&mut p);
    p
}

/// This machine's profile without the emulation facts ([`HostProfile::gather_without_emulation`]):
/// enough for a native verdict, which never depends on them. `xrun run` starts with it and
/// gathers [`host_profile`] only when the verdict is not native.
pub fn host_profile_without_emulation() -> HostProfile {
    HostProfile::gather_without_emulation()
}

/// Every stored record of a reference (all its platforms), sorted by platform.
pub fn find_records(store: &Store, r: &ImageRef) -> Result<Vec<ImageRecord>, StoreError> {
    let name = r.name();
    let mut out: Vec<ImageRecord> = store
        .list_images()?
        .into_iter()
        .filter(|rec| rec.name == name)
        .filter(|rec| match (&r.digest, &r.tag) {
            (Some(d), _) => rec.manifest_digest == *d || rec.index_digest.as_ref() == Some(d),
            (None, Some(t)) => rec.tag.as_deref() == Some(t.as_str()),
            (None, None) => rec.tag.as_deref() == Some("latest"),
        })
        .collect();
    out.sort_by_key(|r| r.platform.to_string());
    Ok(out)
}

/// The manifest's annotations (labels may live there instead of the config).
pub fn annotations(store: &Store, record: &ImageRecord) -> HashMap<String, String> {
    store
        .read_blob(&record.manifest_digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("annotations").cloned())
        .and_then(|a| serde_json::from_value(a).ok())
        .unwrap_or_default()
}

/// Where the scan of `record` with command `ov` is cached:
/// `<root>/requirements/<manifest hex>-<16 hex of the command's hash>.json`.
pub fn cache_path(store: &Store, record: &ImageRecord, ov: &Override) -> PathBuf {
    let key = serde_json::json!({
        "v": CACHE_VERSION,
        "xrun": env!("CARGO_PKG_VERSION"),
        "entrypoint": ov.entrypoint,
        "cmd": ov.cmd,
    });
    let mut h = crate::digest::Hasher::new();
    h.update(key.to_string().as_bytes());
    let hex = h.finish().hex().to_string();
    store.root().join("requirements").join(format!(
        "{}-{}.json",
        record.manifest_digest.hex(),
        &hex[..16]
    ))
}

/// Scans the image without the cache.
pub fn scan_image(
    store: &Store,
    image: &Image,
    ov: &Override,
) -> Result<ImageRequirements, AssessError> {
    let input = ScanInput::from_config(
        &image.config,
        annotations(store, &image.record),
        image.layer_dirs.clone(),
    );
    Ok(scan(&input, ov)?)
}

/// The image's requirements with command `ov`: from the cache when present and readable,
/// else scanned and cached (written to a temporary name, then renamed; a cache that cannot
/// be written is only a lost speed-up).
pub fn requirements(
    store: &Store,
    image: &Image,
    ov: &Override,
) -> Result<ImageRequirements, AssessError> {
    let path = cache_path(store, &image.record, ov);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(req) = serde_json::from_slice::<ImageRequirements>(&bytes)
    {
        return Ok(req);
    }
    let req = scan_image(store, image, ov)?;
    if let Err(e) = write_cache(&path, &req) {
        tracing::debug!("requirements cache {}: {e}", path.display());
    }
    Ok(req)
}

fn write_cache(path: &Path, req: &ImageRequirements) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(&serde_json::to_vec(req).map_err(std::io::Error::other)?)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The local guest for `arch`, when qemu-system for it is installed and a guest exists
/// (`Guest::locate`, layouts unpacked under `unpack_cache`).
pub fn local_guest(arch: &str, unpack_cache: &Path) -> Option<Guest> {
    let name = crate::vm::qemu::binary_name(arch).ok()?;
    crate::vm::qemu::find_binary(name, None).ok()?;
    Guest::locate(arch, unpack_cache).ok()
}

/// Requirements and verdict of `image` (run with command `ov`) on `host`, with route
/// `route`, the vm route checked against `guest`.
pub fn assess(
    store: &Store,
    image: &Image,
    ov: &Override,
    host: &HostProfile,
    route: RouteChoice,
    guest: &GuestChoice,
) -> Result<Assessment, AssessError> {
    let requirements = requirements(store, image, ov)?;
    let (verdict, guest) = decide(host, &requirements, route, guest)?;
    Ok(Assessment {
        requirements,
        verdict,
        guest,
    })
}

/// The verdict for already-known requirements (see [`assess`]).
pub fn decide(
    host: &HostProfile,
    req: &ImageRequirements,
    route: RouteChoice,
    guest: &GuestChoice,
) -> Result<(Verdict, Option<Guest>), AssessError> {
    let mut opts = PlanOptions { route, guest: None };
    match guest {
        GuestChoice::None => Ok((plan(host, req, &opts), None)),
        GuestChoice::Given(p) => {
            opts.guest = Some((**p).clone());
            Ok((plan(host, req, &opts), None))
        }
        GuestChoice::Local(_) | GuestChoice::Default(_) | GuestChoice::Image(_) => {
            let first = plan(host, req, &opts);
            if matches!(first.route, Route::Native | Route::Emulated { .. }) {
                return Ok((first, None));
            }
            let arch = Platform {
                architecture: req.platform.architecture.clone(),
                ..Default::default()
            }
            .normalize()
            .architecture;
            let Some(g) = guest.find(&arch)? else {
                return Ok((first, None));
            };
            opts.guest = Some(g.profile(crate::plan::amd64_guest_level(host))?);
            Ok((plan(host, req, &opts), Some(g)))
        }
    }
}

/// Whether every blocking reason is about the command itself (`no-command`,
/// `entrypoint-missing`, `entrypoint-not-executable`, `interpreter-missing`): then `xrun run`
/// goes on and the runtime reports Docker's 126/127.
pub fn only_command_problems(v: &Verdict) -> bool {
    let blocking: Vec<_> = v
        .reasons
        .iter()
        .filter(|r| r.severity == Severity::Blocking)
        .collect();
    !blocking.is_empty() && blocking.iter().all(|r| is_command_code(r.code))
}

/// The command codes of [`only_command_problems`].
pub fn is_command_code(c: ReasonCode) -> bool {
    matches!(
        c,
        ReasonCode::NoCommand
            | ReasonCode::EntrypointMissing
            | ReasonCode::EntrypointNotExecutable
            | ReasonCode::InterpreterMissing
    )
}

/// The requirements without the command's problems, for the route the architecture alone
/// decides (see [`only_command_problems`]).
pub fn without_command_problems(req: &ImageRequirements) -> ImageRequirements {
    use crate::kernelcheck::requirements::ProblemCode;
    let mut r = req.clone();
    r.problems.retain(|p| {
        !matches!(
            p.code,
            ProblemCode::NoCommand
                | ProblemCode::EntrypointMissing
                | ProblemCode::EntrypointNotExecutable
                | ProblemCode::InterpreterMissing
        )
    });
    r
}

/// The reason `xrun run` names when it refuses (the command's own problems last): an
/// image-level blocking reason first, else the first blocking reason of the route that matters (the forced one; native for an
/// architecture the host runs, emulated for a foreign one), else the first blocking one.
pub fn main_reason(v: &Verdict, route: RouteChoice) -> Option<&crate::plan::Reason> {
    use crate::plan::RouteKind;
    let blocking = || {
        v.reasons
            .iter()
            .filter(|r| r.severity == Severity::Blocking && !is_command_code(r.code))
    };
    if let Some(r) = blocking().find(|r| r.route.is_none()) {
        return Some(r);
    }
    let natural = match route {
        RouteChoice::Native => RouteKind::Native,
        RouteChoice::Emulated => RouteKind::Emulated,
        RouteChoice::Vm => RouteKind::Vm,
        RouteChoice::Auto => {
            let native = v.reasons.iter().all(|r| {
                !(r.code == ReasonCode::ArchMismatch && r.route == Some(RouteKind::Native))
            });
            if native {
                RouteKind::Native
            } else {
                RouteKind::Emulated
            }
        }
    };
    blocking()
        .find(|r| r.route == Some(natural))
        .or_else(|| blocking().next())
        .or_else(|| v.reasons.iter().find(|r| r.severity == Severity::Blocking))
        .or_else(|| v.reasons.iter().find(|r| r.severity == Severity::Unknown))
}

/// What fixes a reason (one short clause; `arch` is the image's architecture).
pub fn fix(code: ReasonCode, arch: &str) -> String {
    match code {
        ReasonCode::ArchMismatch => format!(
            "register an emulator (xrun binfmt install {arch}), use --route vm, or pull a platform this host runs"
        ),
        ReasonCode::OsMismatch => "use a linux image".into(),
        ReasonCode::EmulatorIsaLevel => {
            "pull a lower-level variant (xrun pull --platform linux/amd64/v3 …) or run it natively on a CPU with that level".into()
        }
        ReasonCode::VariantMismatch | ReasonCode::IsaLevel => {
            "pull a variant this CPU runs (xrun pull --platform …) or run it on a newer CPU".into()
        }
        ReasonCode::KernelTooOld => "run it on a host or VM guest with a newer kernel".into(),
        ReasonCode::MissingModule => {
            "load the module on the host (modprobe), or use a VM guest that ships it".into()
        }
        ReasonCode::MissingConfig => "use a kernel built with that option".into(),
        ReasonCode::PageSize => "use a kernel with smaller pages (4 KiB)".into(),
        ReasonCode::MislabeledPlatform => {
            "rebuild the image with its files' real architecture".into()
        }
        ReasonCode::NoCommand => "give a command after the image".into(),
        ReasonCode::EntrypointMissing
        | ReasonCode::EntrypointNotExecutable
        | ReasonCode::InterpreterMissing => "give a command that exists in the image".into(),
        ReasonCode::NoEmulator => format!("xrun binfmt install {arch}"),
        ReasonCode::EmulatorNotUsableInContainers => format!("xrun binfmt install {arch} --force"),
        ReasonCode::NoVm => format!("install qemu-system for {arch}"),
        ReasonCode::GuestUnprofiled => "give --guest-profile".into(),
        ReasonCode::FactUnknown => "force a route with --route to accept the unknown".into(),
        ReasonCode::BadLabel => "fix the image's org.xrun.* label".into(),
        ReasonCode::NoMatchingPlatform => "pick one with --platform".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Reason;

    fn reason(code: ReasonCode, route: Option<crate::plan::RouteKind>) -> Reason {
        Reason {
            code,
            severity: Severity::Blocking,
            route,
            message: String::new(),
            evidence: vec![],
        }
    }

    #[test]
    fn command_problems_only() {
        let v = Verdict {
            route: Route::Unrunnable,
            reasons: vec![reason(ReasonCode::EntrypointMissing, None)],
        };
        assert!(only_command_problems(&v));
        let v = Verdict {
            route: Route::Unrunnable,
            reasons: vec![
                reason(ReasonCode::EntrypointMissing, None),
                reason(
                    ReasonCode::KernelTooOld,
                    Some(crate::plan::RouteKind::Native),
                ),
            ],
        };
        assert!(!only_command_problems(&v));
        assert!(!only_command_problems(&Verdict {
            route: Route::Native,
            reasons: vec![]
        }));
    }
}
