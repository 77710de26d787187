//! Container networks: a container's own network namespace joined to a bridge through the
//! ecosystem's CNI plugins (Debian's `containernetworking-plugins`: `loopback`, `bridge` +
//! `host-local` IPAM, `portmap`, `firewall`, `bandwidth`), invoked per the CNI spec 1.0.0.
//!
//! A stage below the runtime and the vm stage, above nothing but the store root's paths:
//! a typed [`NetworkRequest`] in, an [`Attachment`] out ([`attach::setup`]), undone by
//! [`attach::teardown`] from what was persisted — also after a reboot or a crash.
//!
//! # State layout
//!
//! ```text
//! <root>/networks/<name>.json        a user network's definition ([`NetworkDef`])
//! <root>/networks/.lock              exclusive while networks are created or removed
//! <root>/containers/<id>/network.json   what DEL needs: the exact configs and CNI results
//! /run/xrun/net/ns/<id>              the container's network namespace (a bind mount of nsfs)
//! /run/xrun/net/ports.json (+.lock)  host ports reserved by running containers
//! /run/xrun/net/ipam/<bridge>/<name>/  host-local's leases (`dataDir`, see [`ipam_dir`])
//! /run/xrun/net/subnets/<net id>.json  host-wide claims on user networks' subnets ([`claims`])
//! /run/xrun/net/locks/<id>           held while container `id`'s network is torn down
//! /run/xrun/net/aardvark/            aardvark-dns's files: one per user network (by id) with
//!                                    its containers' names ([`names`], [`dns`])
//! /run/xrun/net/aardvark.lock        exclusive while they change
//! ```
//!
//! The default network `bridge` is implicit (device `xrun0`, subnet from the config file's
//! `bridge-subnet`, default `10.87.0.0/16`). IPv4 only.

pub mod attach;
pub mod claims;
pub mod cni;
pub mod conflist;
pub mod defs;
pub mod dns;
pub mod etcfiles;
pub mod firewall;
pub mod leftovers;
pub mod names;
pub mod netns;
pub mod ports;
pub mod rate;
pub mod subnet;

pub use attach::{Attachment, Endpoint, EndpointRequest, NetOptions, NetworkRequest};
pub use defs::{CreateNetwork, NetworkDef, Networks};
pub use ports::{PortSpec, Protocol, Published};
pub use subnet::Subnet;

use std::path::{Path, PathBuf};

/// The run directory's part for networks.
pub const RUN_NET_DIR: &str = "/run/xrun/net";

/// Where the CNI plugins are (Debian's `containernetworking-plugins`).
pub const CNI_PATH: &str = "/usr/lib/cni";

/// The name of the implicit default network.
pub const DEFAULT_NETWORK: &str = "bridge";

/// The default network's bridge device.
pub const DEFAULT_BRIDGE: &str = "xrun0";

/// The default network's subnet when the config file names none.
pub const DEFAULT_SUBNET: &str = "10.87.0.0/16";

/// Errors of the network stage.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Something the user gave is wrong or conflicts (one line, what to do).
    #[error("{0}")]
    BadInput(String),
    /// No network by that name or id.
    #[error("network {0} not found")]
    NotFound(String),
    /// A network with that name exists.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The network still has containers attached.
    #[error("error while removing network: network {0} has active endpoints")]
    InUse(String),
    /// A CNI plugin failed (its JSON error).
    #[error("{0}")]
    Cni(#[from] cni::CniError),
    /// A file-system or system-call failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A state file is unreadable.
    #[error("{0}")]
    Corrupt(String),
    /// Keeping the names of user networks (aardvark-dns) failed.
    #[error(transparent)]
    Dns(dns::DnsError),
}

impl From<dns::DnsError> for NetworkError {
    fn from(e: dns::DnsError) -> Self {
        match e {
            e @ dns::DnsError::Invalid { .. } => NetworkError::BadInput(e.to_string()),
            e => NetworkError::Dns(e),
        }
    }
}

impl NetworkError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> NetworkError {
        NetworkError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The container's persisted network state: `<root>/containers/<id>/network.json`.
pub fn state_path(root: &Path, id: &str) -> PathBuf {
    root.join("containers").join(id).join("network.json")
}

/// host-local's data directory for network `def` (leases are then
/// `<dir>/<network name>/<address>`): host-wide, keyed by the bridge device, because the
/// bridges and their subnets are host-wide too — two store roots using the default network
/// share `xrun0` and must share its leases. On tmpfs: a lease only lives while its
/// container runs, and none runs after a reboot.
pub fn ipam_dir(def: &NetworkDef) -> PathBuf {
    Path::new(RUN_NET_DIR).join("ipam").join(&def.bridge)
}

/// The lease file of `ip` on network `def`.
pub fn lease_path(def: &NetworkDef, ip: std::net::Ipv4Addr) -> PathBuf {
    ipam_dir(def).join(&def.name).join(ip.to_string())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| NetworkError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)
        .map_err(|e| NetworkError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| NetworkError::io(format!("writing {}", path.display()), e))
}

/// An exclusive lock on `path` (created), held until dropped.
pub(crate) fn lock_file(path: &Path) -> Result<std::fs::File, NetworkError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| NetworkError::io(format!("creating {}", d.display()), e))?;
    }
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| NetworkError::io(format!("opening {}", path.display()), e))?;
    <std::fs::File as fs4::FileExt>::lock(&f)
        .map_err(|e| NetworkError::io(format!("locking {}", path.display()), e))?;
    Ok(f)
}
