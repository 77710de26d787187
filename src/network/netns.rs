//! The container's network namespace, made by xrun itself and kept as a bind mount at
//! `/run/xrun/net/ns/<id>` (as `ip netns` keeps its own under `/run/netns`): the CNI plugins
//! get that path, and the OCI config's network namespace entry names it.

use std::path::{Path, PathBuf};

use super::{NetworkError, RUN_NET_DIR};

/// nsfs's magic number (`NSFS_MAGIC`).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Where network namespaces are kept.
pub fn dir() -> PathBuf {
    Path::new(RUN_NET_DIR).join("ns")
}

/// Container `id`'s namespace path.
pub fn path(id: &str) -> PathBuf {
    dir().join(id)
}

/// Whether `p` is a mounted namespace.
pub fn is_namespace(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Makes a new network namespace for container `id` and bind-mounts it at [`path`]; an
/// existing one is kept.
pub fn create(id: &str) -> Result<PathBuf, NetworkError> {
    let p = path(id);
    if is_namespace(&p) {
        return Ok(p);
    }
    std::fs::create_dir_all(dir())
        .map_err(|e| NetworkError::io(format!("creating {}", dir().display()), e))?;
    std::fs::File::create(&p)
        .map_err(|e| NetworkError::io(format!("creating {}", p.display()), e))?;
    let target = p.clone();
    // A short-lived thread of its own: unshare changes only the calling thread's namespace.
    let made = std::thread::spawn(move || -> Result<(), nix::Error> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .unwrap_or(Err(nix::Error::EINVAL));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&p);
        return Err(NetworkError::io(
            "creating the container's network namespace",
            e.into(),
        ));
    }
    Ok(p)
}

/// Unmounts and removes container `id`'s namespace (nothing there: nothing to do).
pub fn remove(id: &str) -> Result<(), NetworkError> {
    let p = path(id);
    while is_namespace(&p) {
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| NetworkError::io(format!("unmounting {}", p.display()), e.into()))?;
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io(format!("removing {}", p.display()), e)),
    }
}
