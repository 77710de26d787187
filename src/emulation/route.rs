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

    #[test]
    fn no_handler_names_the_fix() {
        let empty = BinfmtState {
            dir: "/nonexistent".into(),
            mounted: true,
            enabled: true,
            handlers: vec![],
        };
        let e = select(&empty, &p("linux/arm64")).unwrap_err().to_string();
        assert!(e.contains("xrun binfmt install arm64"), "{e}");
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
