//! Route glue for `xrun run`/`create`: native, emulated or vm for an image (the decision is
//! `xrun::emulation::route::decide`), the emulation notice, the `--dry-run` lines, and the vm
//! route's run. Owner: the emulation stage.

use std::path::{Path, PathBuf};

use xrun::digest::Digest;
use xrun::emulation::route::{self, Decision, RouteRequest};
use xrun::emulation::{BinfmtState, EmulatedRoute};
use xrun::platform::Platform;
use xrun::runtime::{ImageInput, RunOptions};
use xrun::store::{ImageRecord, Store};
use xrun::vm::{Guest, VmIo, VmSpec};

/// The route `xrun run` takes for an image.
#[derive(Debug)]
pub struct Routed {
    /// The image's platform (normalized).
    pub platform: Platform,
    /// Set when the emulated route was chosen.
    pub emulated: Option<EmulatedRoute>,
    /// Set when the vm route was chosen.
    pub vm: Option<VmRoute>,
}

/// The vm route, ready to run.
#[derive(Debug)]
pub struct VmRoute {
    /// The guest (kernel + initrd) for the image's architecture.
    pub guest: Guest,
    /// Why not emulated (`None` when `--route vm` asked for it).
    pub why_not_emulated: Option<String>,
    /// The image's manifest (the rootfs image is cached by it).
    pub manifest: Digest,
    /// Where guest layouts are unpacked and rootfs images cached.
    pub cache: PathBuf,
}

/// Decides the route for an image of `platform` (manifest `manifest`) with `--route request`.
/// The vm route is taken when asked for, or when the emulated route is not available and a
/// guest and qemu-system exist for the architecture; otherwise the emulated route's problem,
/// with its fix, is the error.
pub fn route_for(
    request: &str,
    platform: &Platform,
    manifest: &Digest,
    root: &Path,
) -> anyhow::Result<Routed> {
    let request: RouteRequest = request.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let platform = platform.normalize();
    let decision = route::decide(
        &Platform::host(),
        &platform,
        request,
        BinfmtState::read_host,
    )?;
    let mut routed = Routed {
        platform: platform.clone(),
        emulated: None,
        vm: None,
    };
    match decision {
        Decision::Native => {}
        Decision::Emulated(r) => routed.emulated = Some(r),
        Decision::Vm { why_not_emulated } => {
            let cache = root.join("vm");
            match vm_guest(&platform, &cache) {
                Ok(guest) => {
                    routed.vm = Some(VmRoute {
                        guest,
                        why_not_emulated: why_not_emulated.map(|e| e.to_string()),
                        manifest: manifest.clone(),
                        cache,
                    })
                }
                Err(vm_err) => match why_not_emulated {
                    // The emulated route's fix is the useful one.
                    Some(e) => anyhow::bail!("{e}"),
                    None => anyhow::bail!("the vm route cannot run {platform}: {vm_err}"),
                },
            }
        }
    }
    Ok(routed)
}

/// The guest for `platform`'s architecture, when qemu-system for it is installed too.
fn vm_guest(platform: &Platform, cache: &Path) -> anyhow::Result<Guest> {
    let arch = &platform.architecture;
    let name = xrun::vm::qemu::binary_name(arch)?;
    xrun::vm::qemu::find_binary(name, None)?;
    Ok(Guest::locate(arch, &cache.join("guests"))?)
}

/// For an image none of whose platforms is native here (`name`, tag or digest), the record to
/// emulate: the first platform with a usable handler (see
/// `xrun::emulation::route::pick_foreign`).
pub fn pick_foreign(
    store: &Store,
    name: &str,
    tag_or_digest: &str,
) -> anyhow::Result<Option<ImageRecord>> {
    let digest: Option<Digest> = tag_or_digest.parse().ok();
    let all: Vec<ImageRecord> = store
        .list_images()?
        .into_iter()
        .filter(|r| {
            r.name == name
                && match &digest {
                    Some(d) => &r.manifest_digest == d || r.index_digest.as_ref() == Some(d),
                    None => r.tag.as_deref() == Some(tag_or_digest),
                }
        })
        .collect();
    let Ok(state) = BinfmtState::read_host() else {
        return Ok(None);
    };
    let platforms: Vec<Platform> = all.iter().map(|r| r.platform.clone()).collect();
    Ok(route::pick_foreign(&state, &platforms).map(|i| all[i].clone()))
}

/// The one stderr line before a run that is not native (`None` for native).
pub fn notice(r: &Routed) -> Option<String> {
    if let Some(e) = &r.emulated {
        return Some(e.notice());
    }
    let vm = r.vm.as_ref()?;
    Some(match &vm.why_not_emulated {
        Some(why) => format!(
            "xrun: {why}; running {} in a VM instead ({} kernel {}): slower to start",
            r.platform, vm.guest.arch, vm.guest.kernel_release
        ),
        None => format!(
            "xrun: running {} in a VM ({} kernel {}): slower to start",
            r.platform, vm.guest.arch, vm.guest.kernel_release
        ),
    })
}

/// The lines `--dry-run` prints about the route.
pub fn describe(r: &Routed) -> Vec<String> {
    if let Some(e) = &r.emulated {
        return e.describe();
    }
    if let Some(vm) = &r.vm {
        let mut v = vec![
            format!("route: vm ({})", r.platform),
            format!(
                "guest: {} kernel {} ({})",
                vm.guest.arch,
                vm.guest.kernel_release,
                vm.guest.dir.display()
            ),
        ];
        if let Some(why) = &vm.why_not_emulated {
            v.push(format!("not emulated: {why}"));
        }
        return v;
    }
    vec![format!("route: native ({})", r.platform)]
}

/// Runs the container's command on the vm route, in the foreground; returns its exit code.
pub fn run_vm(vm: &VmRoute, image: &ImageInput, opts: &RunOptions) -> anyhow::Result<u8> {
    if opts.tty {
        anyhow::bail!("-t is not supported on the vm route (the command's streams are pipes)");
    }
    let config = image.config.config().clone().unwrap_or_default();
    let hostname = opts.hostname.clone().unwrap_or_else(|| "xrun-vm".into());
    let spec = VmSpec {
        argv: xrun::runtime::spec::command(image, opts),
        env: xrun::runtime::spec::environment(image, opts, &hostname, None),
        workdir: opts
            .workdir
            .clone()
            .or_else(|| config.working_dir().clone())
            .filter(|w| !w.is_empty()),
        user: opts
            .user
            .clone()
            .or_else(|| config.user().clone())
            .filter(|u| !u.is_empty()),
        hostname: Some(hostname),
        memory_mib: opts
            .memory
            .map(|m| (m / (1024 * 1024)).max(64))
            .unwrap_or(VmSpec::default().memory_mib),
        cpus: opts.cpus.map(|c| c.ceil().max(1.0) as u32).unwrap_or(1),
        ..VmSpec::default()
    };
    let exit = xrun::vm::run_image(
        &vm.guest,
        &vm.cache.join("rootfs"),
        &vm.manifest,
        &image.layer_dirs,
        &spec,
        VmIo::inherit(opts.interactive),
    )?;
    Ok(exit.code.clamp(0, 255) as u8)
}
