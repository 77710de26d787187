//! Where a container's cgroups live, and how to find or remove leftovers.
//!
//! Every container gets `linux.cgroupsPath = /xrun/<id>`: on cgroup v1 (or hybrid) that is
//! `/sys/fs/cgroup/<controller>/xrun/<id>` in each hierarchy, on pure v2
//! `/sys/fs/cgroup/xrun/<id>`. The runtime creates and removes them; the shared parent
//! `xrun` directory stays.

use std::path::{Path, PathBuf};

/// The cgroup mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The `linux.cgroupsPath` of a container.
pub fn cgroups_path(id: &str) -> PathBuf {
    PathBuf::from(format!("/xrun/{id}"))
}

/// Every existing cgroup directory of the container, across all hierarchies.
pub fn existing_dirs(id: &str) -> Vec<PathBuf> {
    let rel = format!("xrun/{id}");
    let mut out = Vec::new();
    let root = Path::new(CGROUP_ROOT);
    let direct = root.join(&rel);
    if direct.is_dir() {
        out.push(direct);
    }
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path().join(&rel);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Removes leftover (empty) cgroup directories of a container, deepest first.
pub fn remove_leftovers(id: &str) {
    for dir in existing_dirs(id) {
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether the host runs cgroup v2 only.
pub fn is_pure_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// Whether a swap limit can be set (v2, or v1 with swap accounting): then `--memory` also
/// caps swap, so going past it is an OOM kill rather than swapping.
pub fn swap_limit_supported() -> bool {
    is_pure_v2()
        || Path::new(CGROUP_ROOT)
            .join("memory/memory.memsw.limit_in_bytes")
            .exists()
}
