//! xrun's run directory, `/run/xrun`: what only matters while containers run (their bundles
//! and the runtime's state, console sockets, the protected views of the xrun binary) lives
//! there, on tmpfs, as containerd and runc keep theirs under `/run`. It is gone after a
//! reboot, which is right for it, and creating and deleting it costs no disk work: on some
//! file systems that is slow (ext4 without a journal walks past every recently deleted inode
//! when it allocates one, so a burst of container starts gets slower and slower).
//!
//! Where `/run` is not a tmpfs, xrun mounts a small one at `/run/xrun` (once per boot, as
//! root); where that is not possible either, callers keep their files in the store instead.

use std::path::{Path, PathBuf};

/// The run directory.
pub const RUN_DIR: &str = "/run/xrun";

/// Its size limit when xrun mounts it: bundles and state are small files (the containers'
/// root file systems are mounted on it, not stored in it).
const SIZE: &str = "size=64m,mode=0711";

fn is_tmpfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// `/run/xrun`, made a tmpfs first if it is not one; `None` when that cannot be done (not
/// root, no `/run`).
pub fn ensure() -> Option<PathBuf> {
    let dir = Path::new(RUN_DIR);
    if is_tmpfs(dir) {
        return Some(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir).ok()?;
    // One mounter at a time (the lock file is in /run, next to the directory).
    let lock = std::fs::File::create("/run/xrun.lock").ok()?;
    <std::fs::File as fs4::FileExt>::lock(&lock).ok()?;
    if is_tmpfs(dir) {
        return Some(dir.to_path_buf());
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(SIZE),
    )
    .ok()?;
    is_tmpfs(dir).then(|| dir.to_path_buf())
}
