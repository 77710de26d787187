//! The vm route's containers: the options it cannot honour, the launch description saved
//! beside the record ([`vm_launch`]), and the runtime's machines for them ([`VmMachines`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::runtime::machine::{Machine, MachineControl, MachineIo, Machines};
use crate::runtime::net::Joined;
use crate::runtime::options::ExecRoute;
use crate::runtime::{ContainerRecord, Containers, ImageInput, RunOptions, RuntimeError};
use crate::vm::{
    GuestNic, HostLimitsSpec, VmControl, VmIo, VmLaunch, VmNetwork, VmRun, VmSpec, VmTmpfs,
    VmVolume,
};

use super::EngineError;
use super::route::VmRoute;

/// The options the vm route cannot honour, as the one error line to give (`None`: fine).
pub fn vm_unsupported(opts: &RunOptions) -> Option<String> {
    let flag = if opts.network == crate::runtime::Network::Host {
        // A VM has its own kernel and network stack: it cannot share the host's.
        "--network host"
    } else if matches!(opts.network, crate::runtime::Network::Container(_)) {
        // The guest would take over the other container's interfaces.
        "--network container:NAME"
    } else if opts.runtime.is_some() {
        "--runtime"
    } else {
        return None;
    };
    Some(format!(
        "{flag} is not supported on the vm route (the container runs in a VM): drop it, or use another --route"
    ))
}

/// `network connect|disconnect` (`what`) of a running VM container: refused, its guest's
/// NICs are fixed at boot (no hotplug); while it is stopped the change is recorded for its
/// next boot as for any container.
pub fn refuse_running_vm_nic_change(rec: &ContainerRecord, what: &str) -> Result<(), EngineError> {
    if rec.options.route == ExecRoute::Vm && rec.is_running() {
        return Err(EngineError::Invalid(format!(
            "cannot {what} running VM container {}: its network interfaces are fixed at boot; \
             stop it, {what}, and start it again",
            rec.name
        )));
    }
    Ok(())
}

/// How to boot container `short_id`'s VM on the vm route (saved in its directory, so `start`
/// boots it again): the command, environment, user, resources of `image` + `opts`.
pub fn vm_launch(
    vm: &VmRoute,
    image: &ImageInput,
    opts: &RunOptions,
    short_id: &str,
) -> Result<VmLaunch, EngineError> {
    let guest = vm
        .guest
        .as_ref()
        .ok_or_else(|| EngineError::Invalid("no guest for the vm route".into()))?;
    if !opts.volumes.is_empty() && !guest.has_9p() {
        return Err(EngineError::Invalid(format!(
            "-v on the vm route needs 9p in the guest kernel, and guest {} has none: use a \
             guest with 9p (--vm-kernel), or another --route",
            guest.dir.display()
        )));
    }
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
            crate::vm::launch::DEFAULT_DISK_SIZE
        },
        spec: VmSpec {
            argv: crate::runtime::spec::command(image, opts),
            env: crate::runtime::spec::environment(image, opts, &hostname, None),
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
                let mut wanted = vm.modules.clone();
                if !opts.volumes.is_empty() {
                    // 9p, when the guest has it as modules rather than built in.
                    wanted.extend(["9pnet_virtio".to_string(), "9p".to_string()]);
                }
                wanted
                    .iter()
                    .filter(|m| shipped.contains(&m.replace('-', "_")))
                    .cloned()
                    .collect()
            },
            read_only: opts.read_only,
            tmpfs: opts
                .tmpfs
                .iter()
                .map(|t| VmTmpfs {
                    path: t.path.clone(),
                    options: Some(t.option_string()),
                })
                .collect(),
            volumes: opts
                .volumes
                .iter()
                .map(|v| VmVolume {
                    host: v.host.clone(),
                    target: v.container.clone(),
                    read_only: v.read_only,
                })
                .collect(),
            pids_limit: opts.pids_limit,
            host_limits: (opts.memory.is_some() || opts.cpus.is_some()).then_some(HostLimitsSpec {
                memory: opts.memory.is_some(),
                cpus: opts.cpus,
            }),
            ..VmSpec::default()
        },
    })
}

/// `exec` into running VM container `rec` (see [`crate::vm::exec`]): `spec`'s command with
/// the container's environment (overridden by `spec.env`), working directory and user unless
/// `spec` names others, this process's standard streams. Returns the exit status.
pub fn vm_exec(
    c: &Containers,
    rec: &ContainerRecord,
    spec: &super::ExecSpec,
) -> Result<i32, EngineError> {
    use crate::runtime::{signals, tty};
    let dir = c.container_dir(&rec.id);
    let launch = VmLaunch::load(&dir).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
    let size = || {
        tty::window_size(0)
            .or_else(|| tty::window_size(1))
            .map(|w| (w.ws_row, w.ws_col))
            .unwrap_or((0, 0))
    };
    let mut cfg = exec_config(&launch, spec)?;
    cfg.tty = spec.tty.then(size);
    if spec.tty && !cfg.env.iter().any(|e| e.starts_with("TERM=")) {
        cfg.env.push("TERM=xterm".into());
    }
    // Signals (and terminal sizes) go to the process in the guest once it runs.
    let control: Arc<std::sync::Mutex<Option<crate::vm::exec::ExecControl>>> = Arc::default();
    let ctl = control.clone();
    let use_tty = spec.tty;
    signals::relay(
        &[
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::Signal::SIGQUIT,
            nix::sys::signal::Signal::SIGUSR1,
            nix::sys::signal::Signal::SIGUSR2,
            nix::sys::signal::Signal::SIGWINCH,
        ],
        Box::new(move |sig| {
            if let Some(c) = ctl.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                if sig == libc::SIGWINCH {
                    if use_tty {
                        let (r, cols) = size();
                        c.resize(r, cols);
                    }
                } else {
                    c.signal(sig);
                }
            }
        }),
    )?;
    let raw = (spec.tty && spec.interactive)
        .then(tty::RawMode::enter)
        .flatten();
    let io = VmIo::inherit(spec.interactive);
    let r = crate::vm::exec::exec(&dir.join(crate::vm::launch::RUN_DIR), &cfg, io, |c| {
        *control.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    });
    drop(raw);
    Ok(r?)
}

/// The guest's exec request for `spec` in the container `launch` describes.
fn exec_config(
    launch: &VmLaunch,
    spec: &super::ExecSpec,
) -> Result<crate::vm::runcpio::ExecConfig, EngineError> {
    let mut env = launch.spec.env.clone();
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let user = match spec.user.as_ref().or(launch.spec.user.as_ref()) {
        Some(u) if !u.is_empty() => Some(crate::vm::rootfs::resolve_user(&launch.layer_dirs, u)?),
        _ => None,
    };
    Ok(crate::vm::runcpio::ExecConfig {
        argv: spec.command.clone(),
        env,
        workdir: spec
            .workdir
            .clone()
            .or_else(|| launch.spec.workdir.clone())
            .filter(|w| !w.is_empty()),
        user,
        stdin: spec.interactive,
        tty: None,
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

fn vm_error(e: crate::vm::VmError) -> RuntimeError {
    RuntimeError::Runtime(e.to_string())
}

/// The network a VM container's guest joins: the interfaces the CNI attachment made in its
/// namespace (the guest takes them over, see [`crate::vm::net`]), its `/etc/resolv.conf`
/// and `/etc/hosts`.
pub fn vm_network(joined: &Joined) -> VmNetwork {
    VmNetwork {
        netns: joined.netns.clone(),
        nics: joined
            .endpoints
            .iter()
            .map(|e| GuestNic {
                ifname: e.ifname.clone(),
                mac: e.mac.clone(),
                address: e.ip,
                prefix: e.prefix,
                gateway: Some(e.gateway),
            })
            .collect(),
        resolv_conf: Some(joined.resolv.clone()),
        hosts: Some(joined.hosts.clone()),
    }
}

impl Machine for VmMachine {
    fn start(
        &mut self,
        io: MachineIo,
        network: Option<&Joined>,
    ) -> Result<(i32, Arc<dyn MachineControl>), RuntimeError> {
        let vio = VmIo {
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
        };
        let mut run = self
            .launch
            .start(&self.dir, io.tty, network.map(vm_network), vio)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Endpoint;

    #[test]
    fn the_guest_takes_over_every_interface_of_the_attachment() {
        let ep = |ifname: &str, ip: &str, gw: &str| Endpoint {
            network: "n".into(),
            network_id: "0".repeat(64),
            ifname: ifname.into(),
            mac: "02:42:0a:57:00:02".into(),
            ip: ip.parse().unwrap(),
            prefix: 24,
            gateway: gw.parse().unwrap(),
            aliases: vec![],
            bridge: "xrun0".into(),
        };
        let joined = Joined {
            netns: "/run/xrun/net/ns/x".into(),
            hosts: "127.0.0.1\tlocalhost\n".into(),
            resolv: "nameserver 10.87.0.1\n".into(),
            endpoints: vec![
                ep("eth0", "10.87.0.2", "10.87.0.1"),
                ep("eth1", "10.90.0.2", "10.90.0.1"),
            ],
        };
        let n = vm_network(&joined);
        assert_eq!(n.netns, joined.netns);
        assert_eq!(n.nics.len(), 2);
        assert_eq!(n.nics[1].ifname, "eth1");
        assert_eq!(n.nics[1].address.to_string(), "10.90.0.2");
        assert_eq!(n.nics[0].gateway.unwrap().to_string(), "10.87.0.1");
        assert_eq!(n.resolv_conf.as_deref(), Some("nameserver 10.87.0.1\n"));
        assert_eq!(n.hosts.as_deref(), Some(joined.hosts.as_str()));
    }
}
