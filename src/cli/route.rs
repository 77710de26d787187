//! Route glue for `xrun run`/`create`: the route is the verdict of [`xrun::assess`] — the same
//! pure `plan` `xrun check` uses — then prepared: the emulated route's handler
//! ([`xrun::emulation::route::prepare`]), the vm route's guest; plus the emulation notice, the
//! `--dry-run` lines, and the vm route's containers: their launch description
//! ([`vm_launch`]) and the runtime's machines for them ([`VmMachines`]).

use std::path::PathBuf;

use std::sync::Arc;
use xrun::assess::{self, GuestChoice};
use xrun::digest::Digest;
use xrun::emulation::EmulatedRoute;
use xrun::kernelcheck::HostProfile;
use xrun::kernelcheck::ImageRequirements;
use xrun::kernelcheck::entrypoint::Override;
use xrun::plan::{Route, RouteChoice, Severity, Verdict};
use xrun::platform::Platform;

use xrun::runtime::machine::{Machine, MachineControl, MachineIo, Machines};
use xrun::runtime::options::ExecRoute;
use xrun::runtime::{ContainerRecord, Containers, ImageInput, RunOptions, RuntimeError};
use xrun::store::{Image, Store};
use xrun::vm::{Guest, VmControl, VmIo, VmLaunch, VmRun, VmSpec};

/// The route `xrun run` takes for an image.
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
    pub other_reasons: Vec<xrun::plan::Reason>,
    /// Set when the emulated route was chosen.
    pub emulated: Option<EmulatedRoute>,
    /// Set when the vm route was chosen.
    pub vm: Option<VmRoute>,
}

/// The vm route, ready to run.
#[derive(Debug)]
pub struct VmRoute {
    /// The guest (kernel + initrd) for the image's architecture (`None` only for `--dry-run`
    /// when no guest exists).
    pub guest: Option<Guest>,
    /// Why not native/emulated (`None` when `--route vm` asked for it).
    pub why_not_local: Option<String>,
    /// The image's manifest (the rootfs image is cached by it).
    pub manifest: Digest,
    /// Where guest layouts are unpacked and rootfs images cached.
    pub cache: PathBuf,
    /// Kernel modules the image asks for (`org.xrun.kernel.modules`), loaded in the guest.
    pub modules: Vec<String>,
}

/// Why `xrun run` refuses an image: one line (exit 125).
#[derive(Debug)]
pub struct Refusal(pub String);

/// The one refusal line for an unrunnable verdict: the main reason, its fix, and a pointer
/// to `xrun check`.
pub fn refusal(image: &str, v: &Verdict, req: &ImageRequirements, choice: RouteChoice) -> Refusal {
    let arch = Platform {
        architecture: req.platform.architecture.clone(),
        ..Default::default()
    }
    .normalize()
    .architecture;
    match assess::main_reason(v, choice) {
        Some(r) => Refusal(format!(
            "cannot run {image}: {} ({}; fix: {}) (xrun check {image} shows every reason)",
            r.message.replace('\n', " "),
            r.code,
            assess::fix(r.code, &arch)
        )),
        None => Refusal(format!(
            "cannot run {image}: no route works here (xrun check {image} shows every reason)"
        )),
    }
}

/// Decides and prepares the route of `image` (command `ov`) on `host` with `--route choice`.
/// `dry_run`: a missing guest or handler is shown, not an error. `vm_kernel`: the guest
/// image `--vm-kernel` (or the config) names, instead of the local guest.
#[allow(clippy::too_many_arguments)]
pub fn route_for(
    name: &str,
    store: &Store,
    image: &Image,
    ov: &Override,
    host: &HostProfile,
    choice: RouteChoice,
    dry_run: bool,
    vm_kernel: Option<std::sync::Arc<xrun::vm::GuestImage>>,
) -> anyhow::Result<Result<Routed, Refusal>> {
    let cache = store.root().join("vm");
    let guests = match vm_kernel {
        Some(i) => GuestChoice::Image(i),
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
        Route::Emulated { .. } => match xrun::emulation::route::prepare(&platform) {
            Ok(e) => routed.emulated = Some(e),
            Err(e) if dry_run => eprintln!("xrun: {e}"),
            Err(e) => return Ok(Err(Refusal(e.to_string()))),
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
                return Ok(Err(Refusal(format!(
                    "the vm route cannot run {platform}: {detail}"
                ))));
            }
            let why_not_local = (choice == RouteChoice::Auto)
                .then(|| {
                    effective
                        .reasons
                        .iter()
                        .find(|r| {
                            r.severity == Severity::Blocking
                                && r.route.is_some()
                                && r.route != Some(xrun::plan::RouteKind::Vm)
                                && r.code != xrun::plan::ReasonCode::ArchMismatch
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
                return Ok(Err(refusal(name, &effective, &a.requirements, choice)));
            }
        }
    }
    Ok(Ok(routed))
}

/// The one stderr line before a run that is not native (`None` for native).
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

/// The lines `--dry-run` prints about the route: the route (with the emulator or guest),
/// then the verdict's reasons in `xrun check`'s words.
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
            xrun::plan::report::reason_line(reason)
        ));
    }
    v
}

/// The options the vm route cannot honour, as the one error line to give (`None`: fine).
pub fn vm_unsupported(opts: &RunOptions) -> Option<String> {
    let flag = if !opts.volumes.is_empty() {
        "-v"
    } else if opts.read_only {
        "--read-only"
    } else if opts.network == xrun::runtime::Network::Host {
        "--network host"
    } else if opts.runtime.is_some() {
        "--runtime"
    } else {
        return None;
    };
    Some(format!(
        "{flag} is not supported on the vm route (the container runs in a VM): drop it, or use another --route"
    ))
}

/// How to boot container `short_id`'s VM on the vm route (saved in its directory, so `start`
/// boots it again): the command, environment, user, resources of `image` + `opts`.
pub fn vm_launch(
    vm: &VmRoute,
    image: &ImageInput,
    opts: &RunOptions,
    short_id: &str,
) -> anyhow::Result<VmLaunch> {
    let guest = vm
        .guest
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no guest for the vm route"))?;
    let config = image.config.config().clone().unwrap_or_default();
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| short_id.to_string());
    Ok(VmLaunch {
        guest_dir: guest.dir.clone(),
        rootfs_cache: vm.cache.join("rootfs"),
        manifest: vm.manifest.clone(),
        layer_dirs: image.layer_dirs.clone(),
        // A `--rm` container's changes go with it: a tmpfs in the guest, no disk to make.
        disk_size: if opts.auto_remove {
            0
        } else {
            xrun::vm::launch::DEFAULT_DISK_SIZE
        },
        spec: VmSpec {
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
            modules: {
                // Only what the guest ships: built-in ones need no loading (the plan checked).
                let shipped = guest.optional_modules();
                vm.modules
                    .iter()
                    .filter(|m| shipped.contains(&m.replace('-', "_")))
                    .cloned()
                    .collect()
            },
            ..VmSpec::default()
        },
    })
}

/// The runtime's [`Machines`] for the vm route: a container recorded on the vm route is its
/// VM, booted from the `vm.json` in its directory.
pub struct VmMachines;

impl Machines for VmMachines {
    fn machine(
        &self,
        c: &Containers,
        rec: &ContainerRecord,
    ) -> Result<Option<Box<dyn Machine>>, RuntimeError> {
        if rec.options.route != ExecRoute::Vm {
            return Ok(None);
        }
        let dir = c.container_dir(&rec.id);
        let launch = VmLaunch::load(&dir).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        Ok(Some(Box::new(VmMachine {
            dir,
            launch,
            run: None,
        })))
    }
}

/// One run of a VM container.
struct VmMachine {
    dir: PathBuf,
    launch: VmLaunch,
    run: Option<VmRun>,
}

fn vm_error(e: xrun::vm::VmError) -> RuntimeError {
    RuntimeError::Runtime(e.to_string())
}

impl Machine for VmMachine {
    fn start(&mut self, io: MachineIo) -> Result<(i32, Arc<dyn MachineControl>), RuntimeError> {
        let vio = VmIo {
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
        };
        let mut run = self
            .launch
            .start(&self.dir, io.tty, vio)
            .map_err(vm_error)?;
        if !run.wait_started().map_err(vm_error)? {
            // The guest ended before starting the command: its reason went to stderr.
            return Err(match run.wait() {
                Ok(exit) => RuntimeError::Runtime(format!(
                    "the VM ended before starting the command (status {})",
                    exit.code
                )),
                Err(e) => vm_error(e),
            });
        }
        let pid = run.pid() as i32;
        let control = Arc::new(VmSignals(run.control()));
        self.run = Some(run);
        Ok((pid, control))
    }

    fn wait(&mut self) -> Result<i32, RuntimeError> {
        let run = self
            .run
            .take()
            .ok_or_else(|| RuntimeError::Runtime("the VM was not started".into()))?;
        run.wait().map(|e| e.code).map_err(vm_error)
    }
}

/// A VM's control as the runtime's [`MachineControl`].
struct VmSignals(VmControl);

impl MachineControl for VmSignals {
    fn signal(&self, sig: i32) {
        self.0.signal(sig);
    }
    fn resize(&self, rows: u16, cols: u16) {
        self.0.resize(rows, cols);
    }
}
