//! `create`, `start`, `kill` and `delete`: runc's lifecycle on libcontainer, with the bundle
//! routed by [`super::route`] before it is created.

use std::path::{Path, PathBuf};

use libcontainer::container::ContainerStatus;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use oci_spec::runtime::Spec;

use super::route::{self, Decision};
use super::state::status_word;
use super::{OciError, StateRoot, check_id};

/// What `create` was given.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The container id.
    pub id: String,
    /// The bundle directory (`config.json` and the root file system).
    pub bundle: PathBuf,
    /// Where to write the init process's pid.
    pub pid_file: Option<PathBuf>,
    /// The unix socket that receives the terminal's master side (`process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Do not `pivot_root` (a ramdisk root).
    pub no_pivot: bool,
    /// Descriptors above stderr passed on to the container.
    pub preserve_fds: i32,
}

/// Creates the container (its init waits for `start`), after routing the bundle.
/// Returns the route taken.
pub fn create(root: &StateRoot, req: &CreateRequest) -> Result<Decision, OciError> {
    build(root, req, true).map(|(d, _)| d)
}

/// Creates the container; `detach: false` keeps its init a direct child of this process
/// (what [`run`] waits for).
fn build(
    root: &StateRoot,
    req: &CreateRequest,
    detach: bool,
) -> Result<(Decision, libcontainer::container::Container), OciError> {
    check_id(&req.id)?;
    root.ensure()?;
    if root.container_dir(&req.id).exists() {
        return Err(OciError::Exists(req.id.clone()));
    }
    let bundle = std::fs::canonicalize(&req.bundle)
        .map_err(|e| OciError::io(format!("bundle {}", req.bundle.display()), e))?;
    let mut spec = Spec::load(bundle.join("config.json")).map_err(|e| {
        OciError::BadInput(format!(
            "reading {}: {e}",
            bundle.join("config.json").display()
        ))
    })?;
    refuse_unsupported(&spec)?;
    let rootfs = route::rootfs_of(&bundle, &spec);
    if !rootfs.is_dir() {
        return Err(OciError::BadInput(format!(
            "root file system {} is not a directory",
            rootfs.display()
        )));
    }
    let propagation = super::propagation::wanted(&spec);
    let req_facts = route::requirements(&rootfs, &spec)?;
    let decision = route::decide_here(&req_facts)?;
    let run_dir = match &decision {
        Decision::Native => bundle.clone(),
        Decision::Emulated { .. } => {
            route::rewrite_for_emulation(&bundle, &mut spec)?;
            write_rewritten(root, &req.id, &bundle, &spec)?
        }
    };
    let built = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(root.dir())
        .map_err(|e| OciError::runtime("state root", e))
        .and_then(|b| {
            b.with_pid_file(req.pid_file.as_ref())
                .map_err(|e| OciError::runtime("pid file", e))
        })
        .and_then(|b| {
            b.with_console_socket(req.console_socket.as_ref())
                .with_preserved_fds(req.preserve_fds)
                .validate_id()
                .map_err(|e| OciError::runtime("container id", e))
        })
        .and_then(|b| {
            b.as_init(&run_dir)
                .with_systemd(false)
                .with_detach(detach)
                .with_no_pivot(req.no_pivot)
                .build()
                .map_err(|e| OciError::runtime("creating the container", e))
        });
    let built = built.and_then(|c| {
        let pid = c.pid().map(|p| p.as_raw()).unwrap_or(0);
        super::propagation::apply(pid, &propagation)?;
        super::console::apply_size(pid, &spec)?;
        Ok(c)
    });
    match built {
        Ok(c) => Ok((decision, c)),
        Err(e) => {
            remove_leftovers(root, &req.id);
            Err(e)
        }
    }
}

/// The spec features this runtime refuses rather than half-implements.
fn refuse_unsupported(spec: &Spec) -> Result<(), OciError> {
    for m in spec.mounts().iter().flatten() {
        let idmap = m.uid_mappings().is_some()
            || m.gid_mappings().is_some()
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "idmap" || o == "ridmap");
        if idmap {
            return Err(OciError::BadInput(format!(
                "mount {}: idmapped mounts are not supported by xrun's runtime; drop the \
                 mapping or use runc",
                m.destination().display()
            )));
        }
    }
    Ok(())
}

/// Writes the emulated container's config (and the original bundle's path) under the root;
/// returns the directory libcontainer runs.
fn write_rewritten(
    root: &StateRoot,
    id: &str,
    bundle: &Path,
    spec: &Spec,
) -> Result<PathBuf, OciError> {
    let dir = root.rewritten_bundle(id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| OciError::io(format!("creating {}", dir.display()), e))?;
    spec.save(dir.join("config.json"))
        .map_err(|e| OciError::BadInput(format!("writing the emulated config: {e}")))?;
    std::fs::write(dir.join("bundle"), bundle.as_os_str().as_encoded_bytes())
        .map_err(|e| OciError::io("recording the bundle path", e))?;
    Ok(dir)
}

/// Removes what a failed `create` may have left (libcontainer's state, the rewritten bundle).
fn remove_leftovers(root: &StateRoot, id: &str) {
    let dir = root.container_dir(id);
    if let Ok(mut c) = libcontainer::container::Container::load(dir.clone()) {
        let _ = c.delete(true);
    }
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(root.rewritten_bundle(id));
}

/// `run`: creates and starts the container in the foreground, forwards this process's
/// signals to it, waits for it and deletes it (unless `keep`), as `runc run`. Returns the
/// container's exit code: its status, or 128+N when signal N ended it.
/// Warnings of the delete (see [`delete`]) come with the code.
pub fn run(
    root: &StateRoot,
    req: &CreateRequest,
    keep: bool,
) -> Result<(i32, Vec<String>), OciError> {
    let forwarder = crate::runtime::signals::forward(None)
        .map_err(|e| OciError::runtime("forwarding signals", e))?;
    let (_, mut c) = build(root, req, false)?;
    let Some(pid) = c.pid() else {
        remove_leftovers(root, &req.id);
        return Err(OciError::runtime(
            "creating the container",
            "no init process",
        ));
    };
    if let Err(e) = c.start() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        remove_leftovers(root, &req.id);
        return Err(OciError::runtime(
            format!("starting container {}", req.id),
            e,
        ));
    }
    forwarder.set_target(pid.as_raw());
    let code = loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(st) => {
                if let Some(code) = crate::runtime::executor::exit_code(st) {
                    break code;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(OciError::io("waiting for the container", e.into())),
        }
    };
    let warnings = if keep {
        Vec::new()
    } else {
        delete(root, &req.id, true)?
    };
    Ok((code, warnings))
}

/// `run --detach`: creates and starts the container and returns; a container that cannot
/// be started is deleted again, as `runc run --detach`.
pub fn run_detached(root: &StateRoot, req: &CreateRequest) -> Result<(), OciError> {
    create(root, req)?;
    if let Err(e) = start(root, &req.id) {
        let _ = delete(root, &req.id, true);
        return Err(e);
    }
    Ok(())
}

/// Starts a created container's process.
pub fn start(root: &StateRoot, id: &str) -> Result<(), OciError> {
    let mut c = root.load(id)?;
    if c.status() != ContainerStatus::Created {
        return Err(OciError::WrongState(format!(
            "cannot start a container that has {}",
            match c.status() {
                ContainerStatus::Stopped => "stopped".to_string(),
                s => format!("status {}", status_word(s)),
            }
        )));
    }
    c.start()
        .map_err(|e| OciError::runtime(format!("starting container {id}"), e))
}

/// Parses a signal as runc does: a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, OciError> {
    let bad = || OciError::BadInput(format!("unknown signal {s:?}: use a name (TERM) or number"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| bad())
}

/// Sends `signal` to the container's init (every process with `all`).
pub fn kill(
    root: &StateRoot,
    id: &str,
    signal: nix::sys::signal::Signal,
    all: bool,
) -> Result<(), OciError> {
    let mut c = root.load(id)?;
    let before = c.status();
    if before == ContainerStatus::Stopped && !all {
        return Err(OciError::WrongState("container not running".into()));
    }
    c.kill(Signal::from(signal), all)
        .map_err(|e| OciError::runtime(format!("signalling container {id}"), e))?;
    // libcontainer records "stopped" after any signal; what the process did decides.
    c.set_status(before);
    let _ = c.refresh_status();
    c.save()
        .map_err(|e| OciError::runtime(format!("saving container {id}"), e))
}

/// Deletes a stopped (or created) container; with `force`, a running one is killed first.
/// A missing container is fine with `force`, as runc. A failing poststop hook does not stop
/// the delete (the runtime spec: log a warning and continue): its error is returned as a
/// warning for the caller to log.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<Vec<String>, OciError> {
    check_id(id)?;
    let mut c = match root.load(id) {
        Ok(c) => c,
        Err(OciError::NotFound(_)) => {
            let had_dir = root.container_dir(id).exists();
            remove_leftovers(root, id);
            return if force || had_dir {
                Ok(Vec::new())
            } else {
                Err(OciError::NotFound(id.to_string()))
            };
        }
        Err(e) => return Err(e),
    };
    match c.status() {
        ContainerStatus::Stopped | ContainerStatus::Created => {}
        s if !force => {
            return Err(OciError::WrongState(format!(
                "cannot delete container {id} that is not stopped: {}",
                status_word(s)
            )));
        }
        _ => {}
    }
    let mut warnings = Vec::new();
    match c.delete(true) {
        Ok(()) => {}
        // libcontainer runs poststop after removing the cgroup and stops at the failing
        // hook, before removing its state: finish the delete here.
        Err(libcontainer::error::LibcontainerError::Hook(e)) => {
            warnings.push(format!("container {id}: poststop hook failed: {e}"));
        }
        Err(e) => return Err(OciError::runtime(format!("deleting container {id}"), e)),
    }
    let _ = std::fs::remove_dir_all(root.container_dir(id));
    let _ = std::fs::remove_dir_all(root.rewritten_bundle(id));
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal as S;

    #[test]
    fn signals_parse_like_runc() {
        assert_eq!(parse_signal("15").unwrap(), S::SIGTERM);
        assert_eq!(parse_signal("TERM").unwrap(), S::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), S::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
