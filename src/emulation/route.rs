//! The emulated route: choosing the handler a foreign-architecture container will run under, and
//! what the runtime must do with the bundle.
//!
//! The bundle is the native route's, with a foreign-architecture rootfs. Two rules make it work:
//! - the handler must have `F`: the kernel opened the interpreter at registration, so nothing is
//!   mounted into the container;
//! - PID 1 must be xrun's *native* init ([`EmulatedRoute::requires_native_init`]): an emulated PID 1
//!   of a pid namespace hangs forever on SIGPIPE (qemu re-raises it, the kernel ignores it for a
//!   namespace init) and cannot be stopped with SIGTERM.

use serde::Serialize;

use super::EmulationError;
use super::arch::{self, ArchSpec};
use super::binfmt::BinfmtState;
use crate::platform::Platform;

/// How a foreign-architecture container will run here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmulatedRoute {
    /// The image's platform (normalized).
    pub platform: Platform,
    /// The OCI architecture.
    pub arch: String,
    /// The binfmt_misc handler the kernel will use.
    pub handler: String,
    /// Its interpreter (qemu-user).
    pub interpreter: String,
    /// Its flags.
    pub flags: String,
    /// The CPU qemu-user emulates and what it runs.
    pub cpu: String,
}

impl EmulatedRoute {
    /// Always true: the container's PID 1 must be xrun's native init (see the module docs).
    pub const fn requires_native_init(&self) -> bool {
        true
    }

    /// The one stderr line `xrun run` prints before an emulated run.
    pub fn notice(&self) -> String {
        format!(
            "xrun: {} is not native here: running it under emulation ({} via binfmt handler {}); \
             expect it to be much slower than native",
            self.platform, self.interpreter, self.handler
        )
    }

    /// Lines for `--dry-run`: route, emulator, CPU, init.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("route: emulated ({})", self.platform),
            format!(
                "emulator: {} (binfmt handler {}, flags {})",
                self.interpreter, self.handler, self.flags
            ),
            format!("emulated CPU: {}", self.cpu),
            "init: xrun's native init as PID 1 (forced for emulated containers)".to_string(),
        ]
    }
}

/// Picks the handler for `platform` from `state`, or says precisely why there is none and what
/// fixes it.
pub fn select(state: &BinfmtState, platform: &Platform) -> Result<EmulatedRoute, EmulationError> {
    let platform = platform.normalize();
    let unavailable = |reason: String, fix: String| EmulationError::NoUsableHandler {
        platform: platform.to_string(),
        reason,
        fix,
    };
    let spec: &ArchSpec = arch::for_platform(&platform).ok_or_else(|| {
        unavailable(
            format!("xrun has no emulation for {}", platform.architecture),
            format!("emulated architectures: {}", arch::known_names()),
        )
    })?;
    let install = format!("xrun binfmt install {}", spec.arch);
    if !state.mounted {
        return Err(unavailable(
            format!("binfmt_misc is not mounted at {}", state.dir.display()),
            format!(
                "run as root (xrun mounts it), or: mount -t binfmt_misc binfmt_misc {}; then {install}",
                state.dir.display()
            ),
        ));
    }
    if !state.enabled {
        return Err(unavailable(
            "binfmt_misc is disabled".to_string(),
            format!("echo 1 > {}/status", state.dir.display()),
        ));
    }
    let Some(h) = state.effective(spec) else {
        let disabled = state.matching(spec);
        return Err(match disabled.first() {
            Some(d) => unavailable(
                format!("binfmt handler {} for {} is disabled", d.name, spec.arch),
                format!(
                    "{install} --force (or: echo 1 > {}/{})",
                    state.dir.display(),
                    d.name
                ),
            ),
            None => unavailable(format!("no binfmt_misc handler for {}", spec.arch), install),
        });
    };
    if !h.usable_in_containers() {
        return Err(unavailable(
            format!(
                "binfmt handler {} for {} lacks the F flag, so its interpreter {} cannot be found \
                 inside a container",
                h.name, spec.arch, h.interpreter
            ),
            format!("{install} --force"),
        ));
    }
    Ok(EmulatedRoute {
        arch: spec.arch.to_string(),
        platform,
        handler: h.name.clone(),
        interpreter: h.interpreter.clone(),
        flags: h.flags.clone(),
        cpu: spec.cpu.to_string(),
    })
}

/// [`select`] against this host's binfmt_misc (mounting it first when root and unmounted).
pub fn prepare(platform: &Platform) -> Result<EmulatedRoute, EmulationError> {
    let state = BinfmtState::read_host()?;
    select(&state, platform)
}

/// Whether a usable handler exists here for `platform` (for the plan: emulated vs vm vs refuse).
pub fn available(platform: &Platform) -> bool {
    prepare(platform).is_ok()
}

/// Corrects a host profile's handler list with what the kernel will really use: a handler that
/// is usable in itself but shadowed (a newer handler for the same architecture matches first) is
/// marked unusable, so the plan does not count on it.
pub fn refine_profile_handlers(
    handlers: &mut [crate::kernelcheck::profile::BinfmtHandler],
    state: &BinfmtState,
) {
    for h in handlers.iter_mut().filter(|h| h.usable_in_containers) {
        let Some(spec) = h.arch.as_deref().and_then(arch::by_arch) else {
            continue;
        };
        if state.effective(spec).is_some_and(|e| e.name != h.name) {
            h.usable_in_containers = false;
        }
    }
}

/// Which route the user asks for (`--route`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteRequest {
    /// Native when the host runs the image, else emulated, else vm.
    #[default]
    Auto,
    /// Only native.
    Native,
    /// Only emulated.
    Emulated,
    /// Only vm.
    Vm,
}

impl std::str::FromStr for RouteRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(RouteRequest::Auto),
            "native" => Ok(RouteRequest::Native),
            "emulated" => Ok(RouteRequest::Emulated),
            "vm" => Ok(RouteRequest::Vm),
            _ => Err(format!(
                "unknown route {s:?} (expected auto, native, emulated or vm)"
            )),
        }
    }
}

/// Where a container of a given platform runs on this host.
#[derive(Debug)]
pub enum Decision {
    /// Namespaces on the host kernel, no emulation.
    Native,
    /// Through qemu-user via binfmt_misc.
    Emulated(EmulatedRoute),
    /// The vm route: asked for, or (`why_not_emulated`) the emulated route is not available.
    /// A caller without a vm route reports `why_not_emulated` (it carries the fix).
    Vm {
        /// Why the emulated route cannot take it (`None` when the vm route was asked for).
        why_not_emulated: Option<EmulationError>,
    },
}

/// Whether a host of platform `host` runs images of `image` natively (containerd's matching,
/// plus 386 on amd64).
pub fn runs_natively(host: &Platform, image: &Platform) -> bool {
    let host_n = host.normalize();
    let image_n = image.normalize();
    if crate::platform::Matcher::new(&host_n).matches(&image_n) {
        return true;
    }
    // Same architecture, other variant (e.g. an amd64/v4 image on a v3 host): still not a
    // case for emulation; the native route's checks explain it.
    arch::for_platform(&image_n).is_some_and(|s| s.is_native_on(&host_n.architecture))
}

/// Decides the route for an image of platform `image` on a host of platform `host`, reading
/// binfmt_misc through `state` only when emulation is considered.
///
/// `xrun run` no longer decides with this architecture-only rule: it takes the verdict of
/// `crate::assess` (the plan `xrun check` uses), and calls [`prepare`] once the plan chose the
/// emulated route.
pub fn decide(
    host: &Platform,
    image: &Platform,
    request: RouteRequest,
    state: impl FnOnce() -> Result<BinfmtState, EmulationError>,
) -> Result<Decision, EmulationError> {
    let native = runs_natively(host, image);
    match request {
        RouteRequest::Vm => Ok(Decision::Vm {
            why_not_emulated: None,
        }),
        RouteRequest::Native if native => Ok(Decision::Native),
        RouteRequest::Native => Err(EmulationError::NotNative {
            image: image.normalize().to_string(),
            host: host.normalize().to_string(),
        }),
        RouteRequest::Auto if native => Ok(Decision::Native),
        RouteRequest::Emulated if native => Err(EmulationError::NativeArch {
            platform: image.normalize().to_string(),
        }),
        RouteRequest::Emulated => select(&state()?, image).map(Decision::Emulated),
        RouteRequest::Auto => match select(&state()?, image) {
            Ok(r) => Ok(Decision::Emulated(r)),
            Err(e) => Ok(Decision::Vm {
                why_not_emulated: Some(e),
            }),
        },
    }
}

/// Among an image's platforms (none native here), the index of the one to emulate: the first
/// with a usable handler, else the first xrun knows how to emulate, else the first.
pub fn pick_foreign(state: &BinfmtState, platforms: &[Platform]) -> Option<usize> {
    platforms
        .iter()
        .position(|p| select(state, p).is_ok())
        .or_else(|| {
            platforms
                .iter()
                .position(|p| arch::for_platform(p).is_some())
        })
        .or(if platforms.is_empty() { None } else { Some(0) })
}

/// Makes a gathered host profile agree with what the kernel will really do: its handlers in the
/// kernel's match order (newest first, so the one in use for an architecture comes first) and
/// shadowed handlers marked unusable (see [`refine_profile_handlers`]). A profile of another
/// host, or an unreadable binfmt_misc, is left as it is.
pub fn refine_profile(profile: &mut crate::kernelcheck::HostProfile) {
    let Some(dir) = profile.emulation.binfmt_path.clone() else {
        return;
    };
    let Ok(state) = BinfmtState::read(std::path::Path::new(&dir)) else {
        return;
    };
    let order = |name: &str| {
        state
            .handlers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(usize::MAX)
    };
    profile.emulation.handlers.sort_by_key(|h| order(&h.name));
    refine_profile_handlers(&mut profile.emulation.handlers, &state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn no_state() -> Result<BinfmtState, EmulationError> {
        panic!("binfmt_misc must not be read for a native decision")
    }

    #[test]
    fn native_decisions_do_not_read_binfmt() {
        let host = p("linux/amd64/v3");
        for img in ["linux/amd64", "linux/amd64/v2", "linux/386"] {
            assert!(matches!(
                decide(&host, &p(img), RouteRequest::Auto, no_state).unwrap(),
                Decision::Native
            ));
        }
        assert!(matches!(
            decide(
                &p("linux/arm64"),
                &p("linux/arm/v7"),
                RouteRequest::Native,
                no_state
            )
            .unwrap(),
            Decision::Native
        ));
    }

    #[test]
    fn forced_routes_that_cannot_work_say_so() {
        let host = p("linux/amd64");
        let e = decide(&host, &p("linux/arm64"), RouteRequest::Native, no_state).unwrap_err();
        assert!(e.to_string().contains("does not run natively"), "{e}");
        let e = decide(&host, &p("linux/amd64"), RouteRequest::Emulated, no_state).unwrap_err();
        assert!(e.to_string().contains("runs natively"), "{e}");
        assert!(matches!(
            decide(&host, &p("linux/amd64"), RouteRequest::Vm, no_state).unwrap(),
            Decision::Vm {
                why_not_emulated: None
            }
        ));
    }

    #[test]
    fn auto_without_binfmt_goes_to_vm_with_the_fix() {
        let empty = || {
            Ok(BinfmtState {
                dir: "/nonexistent".into(),
                mounted: true,
                enabled: true,
                handlers: vec![],
            })
        };
        match decide(
            &p("linux/amd64"),
            &p("linux/arm64"),
            RouteRequest::Auto,
            empty,
        )
        .unwrap()
        {
            Decision::Vm {
                why_not_emulated: Some(e),
            } => assert!(e.to_string().contains("xrun binfmt install arm64"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unmounted_or_disabled_binfmt_says_how_to_fix() {
        let state = |mounted, enabled| BinfmtState {
            dir: "/proc/sys/fs/binfmt_misc".into(),
            mounted,
            enabled,
            handlers: vec![],
        };
        let e = select(&state(false, false), &p("linux/arm64"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not mounted") && e.contains("mount -t binfmt_misc"),
            "{e}"
        );
        let e = select(&state(true, false), &p("linux/riscv64"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("disabled") && e.contains("echo 1 >"), "{e}");
        let e = select(&state(true, true), &p("linux/sparc64"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no emulation for sparc64"), "{e}");
    }
}
