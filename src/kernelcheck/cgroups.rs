//! cgroups: v1, v2 or hybrid; where each controller is mounted and usable
//! (`/proc/self/mountinfo`, `/proc/cgroups`, `cgroup.controllers`, `/proc/self/cgroup`).

use std::collections::BTreeMap;

use super::mountinfo::Mount;
use super::profile::{CgroupInfo, CgroupMount, UnknownFact};
use super::source::HostSource;

/// Reads the cgroup layout from the mounts this process sees.
pub fn gather(src: &HostSource, mounts: &[Mount], unknowns: &mut Vec<UnknownFact>) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    for m in mounts {
        match m.fs_type.as_str() {
            "cgroup" => {
                let mut controllers = Vec::new();
                let mut name = None;
                for o in &m.super_options {
                    if let Some(n) = o.strip_prefix("name=") {
                        name = Some(n.to_string());
                    } else if !is_mount_option(o) {
                        controllers.push(o.clone());
                    }
                }
                controllers.sort();
                info.mounts.push(CgroupMount {
                    version: 1,
                    path: m.mount_point.clone(),
                    controllers,
                    name,
                });
            }
            "cgroup2" => info.mounts.push(CgroupMount {
                version: 2,
                path: m.mount_point.clone(),
                controllers: Vec::new(),
                name: None,
            }),
            _ => {}
        }
    }
    // The same hierarchy can be mounted twice (bind mounts): the first mount point wins.
    for m in &info.mounts {
        if m.version == 1 {
            for c in &m.controllers {
                info.controllers
                    .entry(c.clone())
                    .or_insert_with(|| format!("v1:{}", m.path));
            }
        }
    }
    if let Some(v2) = info.mounts.iter().find(|m| m.version == 2) {
        info.unified = Some(v2.path.clone());
        let file = format!("{}/cgroup.controllers", v2.path);
        match src.read(&file) {
            Ok(text) => {
                let mut c: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                c.sort();
                info.unified_controllers = c;
            }
            Err(reason) => unknowns.push(UnknownFact {
                fact: "cgroups.unified_controllers".into(),
                reason,
            }),
        }
        for c in &info.unified_controllers {
            info.controllers
                .entry(c.clone())
                .or_insert_with(|| format!("v2:{}", v2.path));
        }
    }
    let v1_controllers = info
        .mounts
        .iter()
        .any(|m| m.version == 1 && !m.controllers.is_empty());
    info.mode = match (v1_controllers, info.unified.is_some()) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    }
    .into();
    if info.mode == "none" {
        unknowns.push(UnknownFact {
            fact: "cgroups.mode".into(),
            reason: "no cgroup or cgroup2 mount in /proc/self/mountinfo".into(),
        });
    }

    match src.read("/proc/cgroups") {
        Ok(text) => {
            info.kernel_controllers = parse_proc_cgroups(&text, true);
            info.disabled_controllers = parse_proc_cgroups(&text, false);
        }
        Err(reason) => unknowns.push(UnknownFact {
            fact: "cgroups.kernel_controllers".into(),
            reason,
        }),
    }
    match src.read("/proc/self/cgroup") {
        Ok(text) => info.process = parse_self_cgroup(&text),
        Err(reason) => unknowns.push(UnknownFact {
            fact: "cgroups.process".into(),
            reason,
        }),
    }
    info
}

/// Generic mount options that may appear among a cgroup v1 mount's super options.
fn is_mount_option(o: &str) -> bool {
    matches!(
        o,
        "rw" | "ro"
            | "noprefix"
            | "xattr"
            | "clone_children"
            | "cpuset_v2_mode"
            | "favordynmods"
            | "nsdelegate"
            | "memory_recursiveprot"
            | "memory_localevents"
    ) || o.starts_with("release_agent=")
}

/// Enabled (or disabled) controllers in `/proc/cgroups` (`name hierarchy num_cgroups enabled`).
pub fn parse_proc_cgroups(text: &str, enabled: bool) -> Vec<String> {
    let want = if enabled { "1" } else { "0" };
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == want).then(|| f[0].to_string())
        })
        .collect();
    v.sort();
    v
}

/// `/proc/self/cgroup` (`id:controllers:path`) → controllers (or `unified`) → path.
pub fn parse_self_cgroup(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrl = parts.next()?;
            let path = parts.next()?;
            let key = if ctrl.is_empty() { "unified" } else { ctrl };
            Some((key.to_string(), path.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernelcheck::mountinfo;

    #[test]
    fn hybrid_layout() {
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("sys/fs/cgroup/unified");
        std::fs::create_dir_all(&unified).unwrap();
        std::fs::write(unified.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let src = HostSource {
            root: dir.path().into(),
            ..HostSource::live()
        };
        let mounts = mountinfo::parse(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             34 31 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let mut unknowns = Vec::new();
        let c = gather(&src, &mounts, &mut unknowns);
        assert_eq!(c.mode, "hybrid");
        assert_eq!(c.controllers["cpu"], "v1:/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(c.controllers["memory"], "v1:/sys/fs/cgroup/memory");
        assert_eq!(c.controllers["hugetlb"], "v2:/sys/fs/cgroup/unified");
        assert_eq!(c.mounts[2].name.as_deref(), Some("systemd"));
        assert!(c.mounts[2].controllers.is_empty());
        // /proc/cgroups and /proc/self/cgroup are absent in this root.
        assert_eq!(unknowns.len(), 2);
    }

    #[test]
    fn self_cgroup() {
        let m = parse_self_cgroup("4:memory:/a/b\n1:name=systemd:/\n0::/user.slice\n");
        assert_eq!(m["memory"], "/a/b");
        assert_eq!(m["unified"], "/user.slice");
    }
}
