//! The route of a run: the verdict of [`crate::assess`] — the same pure `plan` `xrun check`
//! uses — then prepared: the emulated route's handler ([`crate::emulation::route::prepare`]),
//! the vm route's guest; plus the one-line refusal, the emulation/VM notice and the
//! `--dry-run` lines.

use std::path::PathBuf;

use crate::assess::{self, GuestChoice};
use crate::digest::Digest;
use crate::emulation::EmulatedRoute;
use crate::kernelcheck::HostProfile;
use crate::kernelcheck::ImageRequirements;
use crate::kernelcheck::entrypoint::Override;
use crate::plan::{Route, RouteChoice, Severity, Verdict};
use crate::platform::Platform;
use crate::store::{Image, Store};
use crate::vm::Guest;

use super::{EngineError, Observer};

/// The route a run takes for an image.
#[derive(Debug)]
pub struct Routed {
    /// The image's platform (normalized).
    pub platform: Platform,
    /// The plan's verdict (what `xrun check` says for this host).
    pub verdict: Verdict,
    /// The route taken: the verdict's, or — when only the command's own problems block
    /// (`assess::only_command_problems`) — the route the architecture decides, so the
    /// runtime reports Docker's 126/127.
    pub route: Route,
    /// The reasons behind [`Routed::route`] when it is not the verdict's.
    pub other_reasons: Vec<crate::plan::Reason>,
    /// Set when the emulated route was chosen.
    pub emulated: Option<EmulatedRoute>,
    /// Set when the vm route was chosen.
    pub vm: Option<VmRoute>,
}

impl Routed {
    /// Every reason behind the route: the verdict's, then those of the route taken.
    pub fn reasons(&self) -> Vec<crate::plan::Reason> {
        self.verdict
            .reasons
            .iter()
            .chain(&self.other_reasons)
            .cloned()
            .collect()
    }
}

/// The vm route, ready to run.
#[derive(Debug)]
pub struct VmRoute {
    /// The guest (kernel + initrd) for the image's architecture (`None` only for a dry run
    /// when no guest exists).
    pub guest: Option<Guest>,
    /// Why not native/emulated (`None` when the vm route was asked for).
    pub why_not_local: Option<String>,
    /// The image's manifest (the rootfs image is cached by it).
    pub manifest: Digest,
    /// Where guest layouts are unpacked and rootfs images cached.
    pub cache: PathBuf,
    /// Kernel modules the image asks for (`org.xrun.kernel.modules`), loaded in the guest.
    pub modules: Vec<String>,
}

/// The one refusal line for an unrunnable verdict: the main reason, its fix, and a pointer
/// to `xrun check`.
pub fn refusal(
    image: &str,
    v: &Verdict,
    req: &ImageRequirements,
    choice: RouteChoice,
) -> EngineError {
    let arch = Platform {
        architecture: req.platform.architecture.clone(),
        ..Default::default()
    }
    .normalize()
    .architecture;
    EngineError::Refused(match assess::main_reason(v, choice) {
        Some(r) => format!(
            "cannot run {image}: {} ({}; fix: {}) (xrun check {image} shows every reason)",
            r.message.replace('\n', " "),
            r.code,
            assess::fix(r.code, &arch)
        ),
        None => format!(
            "cannot run {image}: no route works here (xrun check {image} shows every reason)"
        ),
    })
}

/// What [`route_for`] decides from.
pub struct RouteInput<'a> {
    /// The image's name as given (for the refusal line).
    pub name: &'a str,
    /// The store the image is in.
    pub store: &'a Store,
    /// The image.
    pub image: &'a Image,
    /// The command override (`--entrypoint`, the command after the image).
    pub ov: &'a Override,
    /// The route asked for.
    pub choice: RouteChoice,
    /// A dry run: a missing guest or handler is shown, not an error.
    pub dry_run: bool,
    /// The guest image to boot on the vm route instead of the local guest.
    pub vm_kernel: Option<std::sync::Arc<crate::vm::GuestImage>>,
}

/// Decides and prepares the route of `input.image` on `host`; `Err(Refused)` when it cannot
/// run here.
pub fn route_for(
    input: &RouteInput<'_>,
    host: &HostProfile,
    observer: &dyn Observer,
) -> Result<Routed, EngineError> {
    let RouteInput {
        name,
        store,
        image,
        ov,
        choice,
        dry_run,
        ..
    } = *input;
    let cache = store.root().join("vm");
    let guests = match &input.vm_kernel {
        Some(i) => GuestChoice::Image(i.clone()),
        None => GuestChoice::Local(cache.join("guests")),
    };
    let a = assess::assess(store, image, ov, host, choice, &guests)?;
    let platform = image.record.platform.normalize();
    let (mut effective, mut guest) = (a.verdict.clone(), a.guest.clone());
    let replanned =
        effective.route == Route::Unrunnable && assess::only_command_problems(&a.verdict);
    if replanned {
        let req = assess::without_command_problems(&a.requirements);
        let (v, g) = assess::decide(host, &req, choice, &guests)?;
        effective = v;
        guest = g;
    }
    let mut routed = Routed {
        platform: platform.clone(),
        verdict: a.verdict.clone(),
        route: effective.route.clone(),
        other_reasons: if !replanned {
            Vec::new()
        } else {
            effective
                .reasons
                .iter()
                .filter(|r| !a.verdict.reasons.contains(r))
                .cloned()
                .collect()
        },
        emulated: None,
        vm: None,
    };
    match &effective.route {
        Route::Native => {}
        Route::Emulated { .. } => match crate::emulation::route::prepare(&platform) {
            Ok(e) => routed.emulated = Some(e),
            Err(e) if dry_run => observer.warning(&e.to_string()),
            Err(e) => return Err(EngineError::Refused(e.to_string())),
        },
        Route::Vm { arch, .. } => {
            let guest = match guest {
                Some(g) => Some(g),
                None => guests.find(arch)?,
            };
            if guest.is_none() && !dry_run {
                let detail = match Guest::locate(arch, &cache.join("guests")) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("no qemu-system for {arch}"),
                };
                return Err(EngineError::Refused(format!(
                    "the vm route cannot run {platform}: {detail}"
                )));
            }
            let why_not_local = (choice == RouteChoice::Auto)
                .then(|| {
                    effective
                        .reasons
                        .iter()
                        .find(|r| {
                            r.severity == Severity::Blocking
                                && r.route.is_some()
                                && r.route != Some(crate::plan::RouteKind::Vm)
                                && r.code != crate::plan::ReasonCode::ArchMismatch
                        })
                        .map(|r| r.message.clone())
                })
                .flatten();
            routed.vm = Some(VmRoute {
                guest,
                why_not_local,
                manifest: image.record.manifest_digest.clone(),
                cache,
                modules: a
                    .requirements
                    .modules
                    .iter()
                    .map(|m| m.value.clone())
                    .collect(),
            });
        }
        Route::Unrunnable => {
            if !dry_run {
                return Err(refusal(name, &effective, &a.requirements, choice));
            }
        }
    }
    Ok(routed)
}

/// The one line before a run that is not native (`None` for native).
pub fn notice(r: &Routed) -> Option<String> {
    if let Some(e) = &r.emulated {
        return Some(e.notice());
    }
    let vm = r.vm.as_ref()?;
    let g = vm.guest.as_ref()?;
    Some(match &vm.why_not_local {
        Some(why) => format!(
            "xrun: {why}; running {} in a VM instead ({} kernel {}): slower to start",
            r.platform, g.arch, g.kernel_release
        ),
        None => format!(
            "xrun: running {} in a VM ({} kernel {}): slower to start",
            r.platform, g.arch, g.kernel_release
        ),
    })
}

/// The lines a dry run shows about the route: the route (with the emulator or guest), then
/// the verdict's reasons in `xrun check`'s words.
pub fn describe(r: &Routed) -> Vec<String> {
    let mut v = if let Some(e) = &r.emulated {
        e.describe()
    } else if let Some(vm) = &r.vm {
        let mut v = vec![format!("route: vm ({})", r.platform)];
        match &vm.guest {
            Some(g) => v.push(format!(
                "guest: {} kernel {} ({})",
                g.arch,
                g.kernel_release,
                g.dir.display()
            )),
            None => v.push("guest: none found".into()),
        }
        if let Some(why) = &vm.why_not_local {
            v.push(format!("not local: {why}"));
        }
        v
    } else {
        vec![format!("route: {} ({})", r.route.name(), r.platform)]
    };
    if r.route != r.verdict.route && r.route != Route::Unrunnable {
        v.push(format!(
            "verdict: {} (only the command's own problems block: the runtime reports them)",
            r.verdict.route.name()
        ));
    }
    for reason in r.verdict.reasons.iter().chain(&r.other_reasons) {
        v.push(format!(
            "reason: {}",
            crate::plan::report::reason_line(reason)
        ));
    }
    v
}
