//! `xrun system check [--repair]`, `system df` and `system prune`: the store's and the
//! runtime's consistency (what a crash may leave: containers marked running whose processes
//! are gone, runtime state, mounts and cgroups without a container, stale names), disk use
//! as Docker's `system df`, and pruning everything unused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::runtime::state::Phase;
use crate::runtime::{Containers, cgroups, lifecycle};
use crate::store::{Finding, PruneReport, tree_size};

use super::{Engine, EngineError};

/// What `system check` found (and, with `--repair`, fixed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Everything found, repaired or not.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Whether anything found was corruption (content or records wrong).
    pub fn corrupt(&self) -> bool {
        self.findings.iter().any(|f| f.corruption && !f.repaired)
    }

    /// Whether anything is left unrepaired.
    pub fn clean(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}

/// One row of `system df`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DfRow {
    /// `Images`, `Containers`, `Local Volumes`, `Build Cache`.
    pub kind: String,
    /// How many.
    pub total: u64,
    /// How many are in use.
    pub active: u64,
    /// Bytes.
    pub size: u64,
    /// Bytes `system prune` (with `-a` for images) would free.
    pub reclaimable: u64,
}

/// What `system prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemPruneReport {
    /// Containers removed (ids).
    pub containers: Vec<String>,
    /// Networks removed (names).
    pub networks: Vec<String>,
    /// Images untagged (`name:tag` or id).
    pub images: Vec<String>,
    /// Build cache entries removed.
    pub build_cache: u64,
    /// Blobs, snapshots and bytes the store freed.
    pub store: PruneReport,
}

/// The run directories, mounts and cgroups of this root's containers that have none.
fn runtime_check(c: &Containers, repair: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let records: HashMap<String, crate::runtime::ContainerRecord> =
        c.list().into_iter().map(|r| (r.id.clone(), r)).collect();
    // Marked running, nobody there.
    let stale: Vec<&str> = records
        .values()
        .filter(|r| r.is_stale())
        .map(|r| r.id.as_str())
        .collect();
    for id in &stale {
        out.push(Finding::new("stale-container", *id, false));
    }
    if repair && !stale.is_empty() {
        lifecycle::cleanup_stale(c);
        for f in out.iter_mut() {
            f.repaired =
                c.load(&f.subject).is_ok_and(|r| !r.is_stale()) || c.load(&f.subject).is_err();
        }
    }
    // A container "owns" its runtime leftovers while it runs or is being started.
    let busy = |id: &str| {
        records.get(id).is_some_and(|r| {
            r.phase == Phase::Running && !r.is_stale() || r.owner.is_some_and(|o| o.alive())
        })
    };
    let stopped = |id: &str| !busy(id);
    // Root file system mounts of containers that do not run (or do not exist).
    let mut roots: Vec<PathBuf> = vec![c.dir().to_path_buf()];
    if c.run_dir() != c.dir() {
        roots.push(c.run_dir().to_path_buf());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = Path::new(mp);
        for root in &roots {
            let Ok(rest) = mp.strip_prefix(root) else {
                continue;
            };
            let id = rest
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            if id.len() == 64 && stopped(&id) {
                let mut f = Finding::new("orphan-mount", mp.display().to_string(), false);
                if repair {
                    f.repaired = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH).is_ok();
                }
                out.push(f);
            }
        }
    }
    // Runtime state (bundles on tmpfs) without a container.
    if c.run_dir() != c.dir() {
        for e in std::fs::read_dir(c.run_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            if id.len() == 64 && !records.contains_key(&id) {
                let mut f = Finding::new(
                    "orphan-runtime-state",
                    e.path().display().to_string(),
                    false,
                );
                if repair {
                    let _ = nix::mount::umount2(
                        &e.path().join("rootfs"),
                        nix::mount::MntFlags::MNT_DETACH,
                    );
                    f.repaired = std::fs::remove_dir_all(e.path()).is_ok();
                }
                out.push(f);
            }
        }
    }
    // Cgroups, in every hierarchy: this root's stopped containers', and any empty one of
    // a container no root runs (another root's running container has processes in its).
    for (id, dir) in cgroups::all_container_dirs() {
        let ours = records.contains_key(&id);
        let orphan = if ours {
            stopped(&id)
        } else {
            cgroup_empty(&dir) && older_than(&dir, 2)
        };
        if orphan {
            let mut f = Finding::new("orphan-cgroup", dir.display().to_string(), false);
            if repair {
                cgroups::remove_tree(&dir);
                f.repaired = !dir.exists();
            }
            out.push(f);
        }
    }
    for (name, id) in c.stale_names() {
        let mut f = Finding::new("stale-name", format!("{name} -> {id}"), false);
        if repair {
            f.repaired = c.remove_stale_name(&name).is_ok();
        }
        out.push(f);
    }
    out
}

fn cgroup_empty(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
}

fn older_than(p: &Path, secs: u64) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|a| a.as_secs() >= secs)
}

impl Engine {
    /// `system check [--repair]`: the store, then the runtime state (see the module doc).
    pub fn system_check(&self, repair: bool) -> Result<CheckReport, EngineError> {
        let mut findings = self.image_store()?.check(repair)?;
        findings.extend(runtime_check(&self.containers()?, repair));
        Ok(CheckReport { findings })
    }

    /// `system df`: images, containers, local volumes (none: xrun has bind mounts only),
    /// build cache.
    pub fn system_df(&self) -> Result<Vec<DfRow>, EngineError> {
        let store = self.image_store()?;
        let leases = store.snapshot_leases()?;
        let mut seen = std::collections::HashSet::new();
        let mut images = DfRow {
            kind: "Images".into(),
            ..DfRow::default()
        };
        for r in store.list_images()? {
            if !seen.insert(r.manifest_digest.clone()) {
                continue;
            }
            let used = leases
                .iter()
                .any(|(_, ids)| r.layers.iter().all(|l| ids.contains(&l.diff_id)));
            images.total += 1;
            images.size += r.size;
            if used {
                images.active += 1;
            } else {
                images.reclaimable += r.size;
            }
        }
        let c = self.containers()?;
        let mut containers = DfRow {
            kind: "Containers".into(),
            ..DfRow::default()
        };
        for r in c.list() {
            let size = tree_size(&c.container_dir(&r.id).join("upper"));
            containers.total += 1;
            containers.size += size;
            if r.is_running() {
                containers.active += 1;
            } else {
                containers.reclaimable += size;
            }
        }
        let cache = self.root().join("build-cache");
        let entries = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0) as u64;
        let cache_size = tree_size(&cache);
        Ok(vec![
            images,
            containers,
            DfRow {
                kind: "Local Volumes".into(),
                ..DfRow::default()
            },
            DfRow {
                kind: "Build Cache".into(),
                total: entries,
                active: 0,
                size: cache_size,
                reclaimable: cache_size,
            },
        ])
    }

    /// `system prune [-a]`: stopped containers, unused networks, dangling images (every
    /// unused one with `all`), the build cache, then the blobs and snapshots nothing uses.
    pub fn system_prune(&self, all: bool) -> Result<SystemPruneReport, EngineError> {
        let c = self.containers()?;
        lifecycle::cleanup_stale(&c);
        let mut report = SystemPruneReport::default();
        for r in c.list() {
            if !r.is_running() && self.remove(&r.id, false).is_ok() {
                report.containers.push(r.id.clone());
            }
        }
        report.networks = self.prune_networks()?;
        let (images, store) = self.remove_unused_images(all)?;
        report.images = images
            .iter()
            .map(|r| match &r.tag {
                Some(t) => format!("{}:{t}", r.name),
                None => r.manifest_digest.to_string(),
            })
            .collect();
        report.store = store;
        let cache = self.root().join("build-cache");
        for e in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
            if std::fs::remove_file(e.path()).is_ok() {
                report.build_cache += 1;
            }
        }
        Ok(report)
    }
}
