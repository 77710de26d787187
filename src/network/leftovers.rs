//! Host-wide network state that no running container owns any more: what a container
//! killed with its supervisor (or a store root deleted with containers running) leaves under
//! [`RUN_NET_DIR`] — its network namespace, host-local's address leases and host port
//! reservations. `xrun system check` finds them ([`find`]) and `--repair` removes them
//! ([`remove`]); which container still runs is for the caller to say, since containers of
//! other store roots share this state.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{NetworkError, RUN_NET_DIR, netns, ports};

/// One piece of a container's network state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Its namespace, bind-mounted at this path.
    Namespace(PathBuf),
    /// host-local's lease of an address (the file's path).
    Lease(PathBuf),
    /// Host ports reserved in `ports.json`.
    Ports,
}

impl Piece {
    /// What it is, for a report (`netns /run/xrun/net/ns/<id>`, `lease …`, `ports`).
    pub fn describe(&self) -> String {
        match self {
            Piece::Namespace(p) => format!("netns {}", p.display()),
            Piece::Lease(p) => format!("address lease {}", p.display()),
            Piece::Ports => "host port reservations".to_string(),
        }
    }
}

/// A container's network state found on the host.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Its pieces.
    pub pieces: Vec<Piece>,
    /// Whether a process is in its namespace (then something still runs there).
    pub in_use: bool,
    /// How long ago its newest file piece was made (`None`: no file piece).
    pub age_secs: Option<u64>,
}

/// `(st_dev, st_ino)` of every network namespace some process is in.
fn namespaces_in_use() -> HashSet<(u64, u64)> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(m) = std::fs::metadata(e.path().join("ns/net")) {
            out.insert((m.dev(), m.ino()));
        }
    }
    out
}

fn age_secs(p: &Path) -> Option<u64> {
    let m = std::fs::symlink_metadata(p).ok()?;
    let t = m.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(t)
            .map_or(0, |d| d.as_secs()),
    )
}

/// The lease files under host-local's data directories, with the container each names
/// (the file's first line, as host-local writes `<id>\r\n<ifname>`).
fn leases() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let ipam = Path::new(RUN_NET_DIR).join("ipam");
    for bridge in std::fs::read_dir(&ipam).into_iter().flatten().flatten() {
        for net in std::fs::read_dir(bridge.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.parse::<std::net::IpAddr>().is_err() {
                    continue; // `lock`, `last_reserved_ip.N`
                }
                let Ok(body) = std::fs::read_to_string(f.path()) else {
                    continue;
                };
                let id = body.lines().next().unwrap_or("").trim().to_string();
                if !id.is_empty() {
                    out.push((id, f.path()));
                }
            }
        }
    }
    out
}

/// Every container id with network state on this host, with what it holds.
pub fn find() -> BTreeMap<String, Held> {
    let live = namespaces_in_use();
    let mut out: BTreeMap<String, Held> = BTreeMap::new();
    let mut add = |id: String, piece: Piece, age: Option<u64>| {
        let h = out.entry(id).or_default();
        h.pieces.push(piece);
        if let Some(a) = age {
            h.age_secs = Some(h.age_secs.map_or(a, |b| b.min(a)));
        }
    };
    for e in std::fs::read_dir(netns::dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().into_owned();
        if id.starts_with('.') {
            continue;
        }
        add(id, Piece::Namespace(e.path()), age_secs(&e.path()));
    }
    for (id, path) in leases() {
        let age = age_secs(&path);
        add(id, Piece::Lease(path), age);
    }
    for id in ports::holders() {
        add(id, Piece::Ports, None);
    }
    for h in out.values_mut() {
        h.in_use = h.pieces.iter().any(|p| match p {
            Piece::Namespace(path) => std::fs::metadata(path)
                .is_ok_and(|m| netns::is_namespace(path) && live.contains(&(m.dev(), m.ino()))),
            _ => false,
        });
    }
    out
}

/// Removes container `id`'s pieces: its DNS names, port reservations, namespace (with it the
/// container's end of its veths, so the bridge's end goes too) and address leases (under
/// host-local's lock of that network).
pub fn remove(id: &str, pieces: &[Piece]) -> Result<(), NetworkError> {
    super::names::forget(id);
    let mut first = None;
    for p in pieces {
        let r = match p {
            Piece::Ports => ports::release(id),
            Piece::Namespace(_) => netns::remove(id),
            Piece::Lease(path) => remove_lease(id, path),
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn remove_lease(id: &str, path: &Path) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let _lock = super::lock_file(&dir.join("lock"))?;
    // Still this container's (the address may have been released and leased again).
    let still = std::fs::read_to_string(path)
        .is_ok_and(|b| b.lines().next().is_some_and(|l| l.trim() == id));
    if still {
        std::fs::remove_file(path)
            .map_err(|e| NetworkError::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}
