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

/// The mount points of every cgroup hierarchy (v1 and v2) mounted at its root, from
/// `/proc/self/mountinfo`: the standard ones under [`CGROUP_ROOT`] and any other, such as a
/// hugetlb hierarchy mounted elsewhere for crun.
pub fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info.lines().filter_map(cgroup_mount).collect();
    if out.is_empty() {
        out.push(PathBuf::from(CGROUP_ROOT));
    }
    out.sort();
    out.dedup();
    out
}

/// The mount point of a mountinfo line if it is a cgroup file system mounted at its root.
fn cgroup_mount(line: &str) -> Option<PathBuf> {
    crate::kernelcheck::mountinfo::parse(line)
        .into_iter()
        .find(|m| (m.fs_type == "cgroup" || m.fs_type == "cgroup2") && m.root == "/")
        .map(|m| PathBuf::from(m.mount_point))
}

/// Every existing cgroup directory of the container, across all hierarchies.
pub fn existing_dirs(id: &str) -> Vec<PathBuf> {
    let rel = format!("xrun/{id}");
    let mut out: Vec<PathBuf> = hierarchies()
        .into_iter()
        .map(|h| h.join(&rel))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every `xrun/<id>` cgroup directory in every hierarchy: `(id, dir)` (for `system check`).
pub fn all_container_dirs() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for h in hierarchies() {
        let parent = h.join("xrun");
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().is_dir()
            {
                out.push((name, e.path()));
            }
        }
    }
    out
}

/// Records the container's cgroup directories in `file` (its runtime state), so removal
/// deletes each even if the hierarchy list changes meanwhile.
pub fn record(id: &str, file: &Path) {
    let dirs = existing_dirs(id);
    let text: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    let tmp = file.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

/// Removes the directories recorded by [`record`] in `file` (those of container `id` only),
/// then any other leftover of the container.
pub fn remove_recorded(id: &str, file: &Path) {
    let suffix = format!("xrun/{id}");
    if let Ok(text) = std::fs::read_to_string(file) {
        for l in text.lines() {
            let p = Path::new(l);
            if p.is_absolute() && p.ends_with(&suffix) {
                remove_tree(p);
            }
        }
    }
    remove_leftovers(id);
}

/// Removes leftover (empty) cgroup directories of a container, deepest first.
pub fn remove_leftovers(id: &str) {
    for dir in existing_dirs(id) {
        remove_tree(&dir);
    }
}

/// Kills (SIGKILL) every process in cgroup `dir` and its children, and waits up to a second
/// for them to leave it (an exiting task leaves its cgroup before its parent reaps it). For
/// the cgroups of containers nothing owns any more.
pub fn kill_all(dir: &Path) {
    let procs = |d: &Path| -> Vec<i32> {
        let mut out = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let left = procs(dir);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Removes an (empty) cgroup directory and its children, deepest first.
pub fn remove_tree(dir: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_mounts_from_mountinfo() {
        let l = "35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory";
        assert_eq!(
            cgroup_mount(l),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        let l = "99 25 0:55 / /tmp/huge\\040tlb rw - cgroup none rw,hugetlb";
        assert_eq!(cgroup_mount(l), Some(PathBuf::from("/tmp/huge tlb")));
        let l = "40 25 0:31 /sub /mnt/x rw - cgroup2 cgroup2 rw";
        assert_eq!(cgroup_mount(l), None);
        let l = "41 25 0:32 / /sys/fs/cgroup rw - tmpfs tmpfs rw";
        assert_eq!(cgroup_mount(l), None);
    }
}
