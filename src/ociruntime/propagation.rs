//! Mount propagation options of `mounts[]` (`shared`, `slave`, `private`, `unbindable` and
//! their recursive `r…` forms). youki's libcontainer 0.7 parses them but its fd-based mount
//! path never applies them (runc does, with a second `mount(2)` after each mount); here they
//! are applied from the host, inside the created container's mount namespace, before
//! `start` lets the container's process run.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use super::OciError;

/// The propagation each mount of `spec` asks for: (destination in the container, flags),
/// in the spec's order (the last option of a mount wins, as in runc).
pub fn wanted(spec: &Spec) -> Vec<(PathBuf, MsFlags)> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let flags = m
            .options()
            .iter()
            .flatten()
            .filter_map(|o| flag_of(o))
            .next_back();
        if let Some(f) = flags {
            out.push((m.destination().clone(), f));
        }
    }
    out
}

/// The `mount(2)` flags of one propagation option.
fn flag_of(option: &str) -> Option<MsFlags> {
    Some(match option {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Applies `wanted` in the mount namespace of `pid` (a created container's init, waiting
/// for `start`): a forked child joins the namespace (its root becomes the container's root)
/// and changes each destination's propagation.
pub fn apply(pid: i32, wanted: &[(PathBuf, MsFlags)]) -> Result<(), OciError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&ns_path).map_err(|e| OciError::io(ns_path.clone(), e))?;
    let mut targets = Vec::with_capacity(wanted.len());
    for (dest, _) in wanted {
        targets.push(c_path(dest)?);
    }
    // SAFETY: the child only makes system calls (setns, mount, _exit) on data prepared
    // before the fork, as required in a multi-threaded parent.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(OciError::io("fork", std::io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: as above; `_exit` never returns and skips the parent's atexit handlers.
        unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                libc::_exit(1);
            }
            for (i, ((_, flags), target)) in wanted.iter().zip(&targets).enumerate() {
                let r = libc::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    flags.bits(),
                    std::ptr::null(),
                );
                if r != 0 {
                    libc::_exit(2 + i.min(200) as i32);
                }
            }
            libc::_exit(0);
        }
    }
    let status = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None) {
            Ok(s) => break s,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(OciError::io("waiting for the mount helper", e.into())),
        }
    };
    match status {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
        nix::sys::wait::WaitStatus::Exited(_, 1) => Err(OciError::BadInput(format!(
            "joining the container's mount namespace ({ns_path}) failed"
        ))),
        nix::sys::wait::WaitStatus::Exited(_, n) => {
            let dest = wanted
                .get((n - 2) as usize)
                .map(|(d, _)| d.display().to_string())
                .unwrap_or_default();
            Err(OciError::BadInput(format!(
                "mount {dest}: setting its propagation failed"
            )))
        }
        other => Err(OciError::BadInput(format!(
            "the mount propagation helper ended with {other:?}"
        ))),
    }
}

fn c_path(p: &Path) -> Result<CString, OciError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| OciError::BadInput(format!("mount destination {} has a NUL", p.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_propagation_option_of_a_mount_wins() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/a", "type": "bind", "source": "/x", "options": ["rbind", "rshared"]},
                {"destination": "/b", "type": "bind", "source": "/x", "options": ["bind", "ro"]},
                {"destination": "/c", "type": "bind", "source": "/x", "options": ["shared", "private"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            wanted(&spec),
            [
                (PathBuf::from("/a"), MsFlags::MS_SHARED | MsFlags::MS_REC),
                (PathBuf::from("/c"), MsFlags::MS_PRIVATE),
            ]
        );
    }
}
