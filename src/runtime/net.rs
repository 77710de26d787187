//! The runtime's side of container networking: before a container starts, [`join`] sets
//! up its network (through [`crate::network`]) or finds the namespace of the container it
//! shares (`container:NAME`); once its PID 1 is reaped, or when it is removed or found
//! stale, [`leave`] undoes it.

use std::path::PathBuf;

use super::options::{ExecRoute, Network};
use super::{ContainerRecord, Containers, RuntimeError};
use crate::network::{self, EndpointRequest, NetworkRequest, Networks};

/// A namespace to join and the files to give: what the bundle needs.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The network namespace (`linux.namespaces` network `path`).
    pub netns: PathBuf,
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`.
    pub resolv: String,
}

fn store_root(c: &Containers) -> PathBuf {
    c.dir().parent().map(PathBuf::from).unwrap_or_default()
}

/// The request container `rec`'s options make for network `name`.
pub fn request(rec: &ContainerRecord, name: &str) -> NetworkRequest {
    let o = &rec.options;
    let mut endpoints = vec![EndpointRequest {
        network: name.to_string(),
        ip: o.net.ip,
        aliases: o.net.aliases.clone(),
    }];
    endpoints.extend(o.net.extra_networks.iter().cloned());
    NetworkRequest {
        container_id: rec.id.clone(),
        hostname: super::spec::hostname(&rec.id, o),
        endpoints,
        options: o.net.clone(),
    }
}

/// Sets up container `rec`'s network before it starts (`None`: `none` or `host`, which
/// need nothing).
pub fn join(c: &Containers, rec: &ContainerRecord) -> Result<Option<Joined>, RuntimeError> {
    match &rec.options.network {
        Network::None | Network::Host => Ok(None),
        Network::Named(name) => {
            let nets = Networks::from_config(&store_root(c))?;
            let a = network::attach::setup(&nets, &request(rec, name))?;
            Ok(Some(Joined {
                netns: a.netns,
                hosts: a.hosts,
                resolv: a.resolv,
            }))
        }
        Network::Container(key) => {
            let other = c.find(key)?;
            let not_running = || {
                RuntimeError::BadInput(format!(
                    "cannot join the network of container {key}: it is not running"
                ))
            };
            if other.options.route == ExecRoute::Vm {
                return Err(RuntimeError::BadInput(format!(
                    "cannot join the network of container {key}: it runs in a VM"
                )));
            }
            let pid = other
                .pid
                .filter(|_| other.is_running())
                .ok_or_else(not_running)?;
            let netns = PathBuf::from(format!("/proc/{}/ns/net", pid.pid));
            if !netns.exists() {
                return Err(not_running());
            }
            let etc = c.bundle(&other.id).dir.join("etc");
            Ok(Some(Joined {
                netns,
                hosts: std::fs::read_to_string(etc.join("hosts")).unwrap_or_default(),
                resolv: std::fs::read_to_string(etc.join("resolv.conf")).unwrap_or_default(),
            }))
        }
    }
}

/// Undoes container `id`'s network set-up, if any (a warning when a plugin fails: what
/// could be removed is).
pub fn leave(c: &Containers, id: &str) {
    if let Err(e) = network::attach::teardown(&store_root(c), id) {
        tracing::warn!("tearing down the network of {id}: {e}");
    }
}
