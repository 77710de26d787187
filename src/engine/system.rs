//! `xrun system check [--repair]`, `system df` and `system prune`: the store's and the
//! runtime's consistency (what a crash may leave: containers marked running whose processes
//! are gone, runtime state, mounts and cgroups without a container, stale names), disk use
//! as Docker's `system df`, and pruning everything unused.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::Digest;
use crate::network;
use crate::runtime::{Containers, cgroups, lifecycle};
use crate::store::{Finding, PruneReport, Store, tree_size};

use super::image_list::{ImageFilters, ListedImage};
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

/// One image in [`DiskUsage`].
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The image (its records and config).
    pub image: ListedImage,
    /// Its size (manifest, config and layer blobs).
    pub size: u64,
    /// The part of it (layer blobs) other images use too.
    pub shared_size: u64,
    /// How many containers use it.
    pub containers: u64,
}

/// One container in [`DiskUsage`].
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// Its record.
    pub record: crate::runtime::ContainerRecord,
    /// Bytes in its writable layer.
    pub size_rw: u64,
}

/// One build cache entry in [`DiskUsage`].
#[derive(Debug, Clone)]
pub struct BuildCacheUsage {
    /// The step's key.
    pub id: String,
    /// Bytes of layer blobs only the cache holds (each blob counted once over all entries).
    pub size: u64,
    /// Whether an image uses some of its layers.
    pub shared: bool,
    /// When it was recorded (RFC 3339).
    pub created: String,
}

/// Disk use item by item, as Docker's `GET /system/df` reports it.
#[derive(Debug, Clone)]
pub struct DiskUsage {
    /// Bytes of all blobs the images use (layers, manifests, configs), each once.
    pub layers_size: u64,
    /// Every image (one per manifest).
    pub images: Vec<ImageUsage>,
    /// Every container.
    pub containers: Vec<ContainerUsage>,
    /// Every build cache entry.
    pub build_cache: Vec<BuildCacheUsage>,
}

impl DiskUsage {
    /// The `system df` rows, summed as the docker CLI sums `GET /system/df`: images in use
    /// keep their own (not shared) bytes, running containers their writable layers.
    pub fn rows(&self) -> Vec<DfRow> {
        let used: u64 = self
            .images
            .iter()
            .filter(|i| i.containers > 0)
            .map(|i| i.size.saturating_sub(i.shared_size))
            .sum();
        let images = DfRow {
            kind: "Images".into(),
            total: self.images.len() as u64,
            active: self.images.iter().filter(|i| i.containers > 0).count() as u64,
            size: self.layers_size,
            reclaimable: self.layers_size.saturating_sub(used),
        };
        let running = |c: &&ContainerUsage| c.record.is_running();
        let containers = DfRow {
            kind: "Containers".into(),
            total: self.containers.len() as u64,
            active: self.containers.iter().filter(running).count() as u64,
            size: self.containers.iter().map(|c| c.size_rw).sum(),
            reclaimable: self
                .containers
                .iter()
                .filter(|c| !c.record.is_running())
                .map(|c| c.size_rw)
                .sum(),
        };
        let cache_size: u64 = self.build_cache.iter().map(|b| b.size).sum();
        vec![
            images,
            containers,
            DfRow {
                kind: "Local Volumes".into(),
                ..DfRow::default()
            },
            DfRow {
                kind: "Build Cache".into(),
                total: self.build_cache.len() as u64,
                active: 0,
                size: cache_size,
                reclaimable: cache_size,
            },
        ]
    }
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
    // A container owns its runtime state while it runs or is being started.
    let stopped = |id: &str| !records.get(id).is_some_and(|r| r.is_owned());
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
    // a container no root here has (another root's containers are that root's to judge).
    // Repair first removes what else a stopped container of this root left (its runtime
    // state, a container init waiting for a start that never came), then any process still
    // in the cgroup.
    let mut cleaned: HashSet<String> = HashSet::new();
    for (id, dir) in cgroups::all_container_dirs() {
        let ours = records.contains_key(&id);
        let orphan = if ours {
            stopped(&id)
        } else {
            // (The age is from the first look at it: cgroup file systems stamp a
            // directory's times when its inode is first looked up.)
            cgroup_empty(&dir) && older_than(&dir, 2) && !c.other_root_holds(&id)
        };
        if orphan {
            let mut f = Finding::new("orphan-cgroup", dir.display().to_string(), false);
            if repair {
                if ours && cleaned.insert(id.clone()) {
                    lifecycle::clean_up_unowned(c, &id);
                }
                if ours && dir.exists() {
                    cgroups::kill_all(&dir);
                }
                cgroups::remove_tree(&dir);
                f.repaired = !dir.exists();
            }
            out.push(f);
        }
    }
    // Directories `rm` renamed aside and was killed before deleting (`.removing-<id>`);
    // young ones may be an `rm` at work.
    for e in std::fs::read_dir(c.dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".removing-") || !changed_before(&e.path(), 5) {
            continue;
        }
        let mut f = Finding::new("orphan-removal", e.path().display().to_string(), false);
        if repair {
            f.repaired = std::fs::remove_dir_all(e.path()).is_ok();
        }
        out.push(f);
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

/// Snapshot leases whose holder (a container of this root) is gone: `rm` killed between
/// the record and the lease, or a record removed by hand.
fn lease_check(store: &Store, c: &Containers, repair: bool) -> Result<Vec<Finding>, EngineError> {
    let mut out = Vec::new();
    for (holder, _) in store.snapshot_leases()? {
        // Looked up one by one, after the leases were read: a container created meanwhile
        // has its record before its lease.
        if c.load(&holder).is_ok() {
            continue;
        }
        let mut f = Finding::new("orphan-lease", holder.clone(), false);
        if repair {
            f.repaired = store.release_snapshots(&holder).is_ok();
        }
        out.push(f);
    }
    Ok(out)
}

/// How long host-wide network state of a container no root here knows must have existed
/// before it counts as left over (another root's container may be starting).
const FOREIGN_NETWORK_GRACE_SECS: u64 = 10;

/// Network state (namespaces, address leases, port reservations; host-wide) that no running
/// container owns: this root's containers that do not run, and containers no root here has
/// with nothing left in their namespace.
fn network_check(root: &Path, c: &Containers, repair: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, held) in network::leftovers::find() {
        if held.in_use {
            continue;
        }
        let orphan = match c.load(&id) {
            Ok(r) => !r.is_owned(),
            Err(_) => {
                held.age_secs
                    .is_none_or(|a| a >= FOREIGN_NETWORK_GRACE_SECS)
                    && !c.other_root_holds(&id)
            }
        };
        if !orphan {
            continue;
        }
        let what: Vec<String> = held.pieces.iter().map(|p| p.describe()).collect();
        let mut f = Finding::new(
            "orphan-network",
            format!("{id}: {}", what.join(", ")),
            false,
        );
        if repair {
            // This root's container: the full teardown from its saved state (CNI DEL, so the
            // firewall rules go too), then whatever that left.
            if c.load(&id).is_ok() {
                let _ = network::attach::teardown(root, &id);
            }
            let left = network::leftovers::find().remove(&id);
            f.repaired = match left {
                None => true,
                Some(h) => {
                    network::leftovers::remove(&id, &h.pieces).is_ok()
                        && !network::leftovers::find().contains_key(&id)
                }
            };
        }
        out.push(f);
    }
    out
}

fn cgroup_empty(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| s.trim().is_empty())
}

/// Whether `p`'s inode last changed (a rename counts) at least `secs` ago.
fn changed_before(p: &Path, secs: i64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    std::fs::symlink_metadata(p).is_ok_and(|m| now - m.ctime() >= secs)
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
        let store = self.image_store()?;
        let c = self.containers()?;
        // Leases first: a lease of a removed container keeps its snapshots from the store's
        // garbage, which the store's check then collects.
        let mut findings = lease_check(&store, &c, repair)?;
        findings.extend(store.check(repair)?);
        findings.extend(runtime_check(&c, repair));
        findings.extend(network_check(self.root(), &c, repair));
        Ok(CheckReport { findings })
    }

    /// What the store and the containers use on disk, item by item (the API's
    /// `GET /system/df`); [`Engine::system_df`] sums it up.
    pub fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        let store = self.image_store()?;
        let leases = store.snapshot_leases()?;
        let records = store.list_images()?;
        // Layer blobs: their sizes, and how many images use each.
        let mut layer_size: HashMap<Digest, u64> = HashMap::new();
        let mut users: HashMap<Digest, usize> = HashMap::new();
        let listed = self.list_images_filtered(&ImageFilters::default())?;
        for img in &listed {
            for l in &img.records[0].layers {
                layer_size.insert(l.digest.clone(), l.size);
                *users.entry(l.digest.clone()).or_default() += 1;
            }
        }
        let mut images = Vec::new();
        // Each image's own manifest and config count once too (its size less its layers).
        let mut own_blobs = 0u64;
        for img in listed {
            let r = &img.records[0];
            own_blobs += r
                .size
                .saturating_sub(r.layers.iter().map(|l| l.size).sum::<u64>());
            let containers = leases
                .iter()
                .filter(|(_, ids)| r.layers.iter().all(|l| ids.contains(&l.diff_id)))
                .count() as u64;
            let mut seen = HashSet::new();
            let shared_size = r
                .layers
                .iter()
                .filter(|l| seen.insert(&l.digest) && users[&l.digest] > 1)
                .map(|l| l.size)
                .sum();
            images.push(ImageUsage {
                size: r.size,
                shared_size,
                containers,
                image: img,
            });
        }
        let c = self.containers()?;
        let containers = c
            .list()
            .into_iter()
            .map(|r| ContainerUsage {
                size_rw: tree_size(&c.container_dir(&r.id).join("upper")),
                record: r,
            })
            .collect();
        // Build cache: each entry's layer blobs no image uses, each counted once (entries
        // with fewer layers — the earlier steps — first).
        let in_images: HashSet<Digest> = records
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.digest.clone()))
            .collect();
        let mut entries = crate::build::cache::Cache::open(self.root()).entries();
        entries.sort_by(|a, b| a.layers.len().cmp(&b.layers.len()).then(a.key.cmp(&b.key)));
        let mut counted: HashSet<Digest> = HashSet::new();
        let build_cache = entries
            .into_iter()
            .map(|e| {
                let size = e
                    .layers
                    .iter()
                    .filter(|l| !in_images.contains(&l.digest) && store.has_blob(&l.digest))
                    .filter(|l| counted.insert(l.digest.clone()))
                    .map(|l| l.size)
                    .sum();
                BuildCacheUsage {
                    id: e.key,
                    size,
                    shared: e.layers.iter().any(|l| in_images.contains(&l.digest)),
                    created: e.created,
                }
            })
            .collect();
        Ok(DiskUsage {
            layers_size: layer_size.values().sum::<u64>() + own_blobs,
            images,
            containers,
            build_cache,
        })
    }

    /// `system df`: images, containers, local volumes (none: xrun has bind mounts only),
    /// build cache — Docker's rows, from [`Engine::disk_usage`].
    pub fn system_df(&self) -> Result<Vec<DfRow>, EngineError> {
        Ok(self.disk_usage()?.rows())
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
