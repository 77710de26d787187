//! The network operations: [`Engine::create_network`], [`Engine::list_networks`],
//! [`Engine::inspect_network`], [`Engine::remove_network`], [`Engine::prune_networks`],
//! [`Engine::connect`], [`Engine::disconnect`], [`Engine::ports`]; what `create` checks of a
//! container's network settings ([`prepare`]); and a container's `NetworkSettings` in
//! Docker's shape ([`network_settings`]).

use serde_json::{Value, json};

use crate::network::{
    self, CreateNetwork, EndpointRequest, NetworkDef, Networks, PortSpec, Protocol, Published,
};
use crate::runtime::options::{ExecRoute, Network};
use crate::runtime::{
    ContainerRecord, Containers, ImageInput, RunOptions, RuntimeError, lifecycle,
};

use super::{Engine, EngineError};

/// A network and the containers attached to it now.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// The definition.
    pub def: NetworkDef,
    /// Attached containers: id, name and endpoint.
    pub containers: Vec<(String, String, network::Endpoint)>,
}

/// Missing, existing and in-use networks keep their kind (the API answers 404, 409, 403);
/// the rest is the runtime's.
fn net_err(e: network::NetworkError) -> EngineError {
    match e {
        network::NetworkError::NotFound(_)
        | network::NetworkError::Exists(_)
        | network::NetworkError::InUse(_) => EngineError::Network(e),
        e => EngineError::Runtime(RuntimeError::from(e)),
    }
}

impl Engine {
    fn networks(&self) -> Result<Networks, EngineError> {
        let cfg = self.config()?;
        Networks::open(self.root(), cfg.bridge_subnet.as_deref()).map_err(net_err)
    }

    /// `network create`.
    pub fn create_network(&self, req: &CreateNetwork) -> Result<NetworkDef, EngineError> {
        self.networks()?.create(req).map_err(net_err)
    }

    /// `network ls`: every network, the default first (stale containers cleaned first).
    pub fn list_networks(&self) -> Result<Vec<NetworkDef>, EngineError> {
        lifecycle::cleanup_stale(&self.containers()?);
        Ok(self.networks()?.list())
    }

    /// `network inspect`.
    pub fn inspect_network(&self, key: &str) -> Result<NetworkInfo, EngineError> {
        let nets = self.networks()?;
        let def = nets.get(key).map_err(net_err)?;
        let c = self.containers()?;
        lifecycle::cleanup_stale(&c);
        let mut containers = Vec::new();
        for rec in c.list() {
            if let Ok(Some(st)) = network::attach::load_state(self.root(), &rec.id) {
                for e in st.endpoints() {
                    if e.network_id == def.id {
                        containers.push((rec.id.clone(), rec.name.clone(), e.clone()));
                    }
                }
            }
        }
        Ok(NetworkInfo { def, containers })
    }

    /// `network rm`: refused while containers are attached.
    pub fn remove_network(&self, key: &str) -> Result<NetworkDef, EngineError> {
        lifecycle::cleanup_stale(&self.containers()?);
        self.networks()?.remove(key).map_err(net_err)
    }

    /// `network prune`: removes user networks no container uses (running or not); returns
    /// their names.
    pub fn prune_networks(&self) -> Result<Vec<String>, EngineError> {
        let c = self.containers()?;
        lifecycle::cleanup_stale(&c);
        let nets = self.networks()?;
        let recs = c.list();
        let mut removed = Vec::new();
        for def in nets.list().into_iter().filter(|d| !d.is_default()) {
            let used = recs.iter().any(|r| uses(r, &def));
            if !used && nets.remove(&def.name).is_ok() {
                removed.push(def.name);
            }
        }
        Ok(removed)
    }

    /// `network connect`: a running container gets one more interface now; a stopped one
    /// joins at its next start.
    pub fn connect(
        &self,
        net: &str,
        container: &str,
        ip: Option<std::net::Ipv4Addr>,
        aliases: Vec<String>,
    ) -> Result<(), EngineError> {
        let nets = self.networks()?;
        let def = nets.get(net).map_err(net_err)?;
        let c = self.containers()?;
        lifecycle::cleanup_stale(&c);
        let rec = c.find(container)?;
        if !matches!(rec.options.network, Network::Named(_)) {
            return Err(EngineError::Invalid(format!(
                "container {container} uses --network {}: only containers on xrun networks can join others",
                rec.options.network.mode()
            )));
        }
        if uses(&rec, &def) {
            return Err(EngineError::Invalid(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, def.name
            )));
        }
        let ep = EndpointRequest {
            network: def.name.clone(),
            ip,
            aliases,
        };
        network::attach::check_endpoint(&def, &ep).map_err(net_err)?;
        super::vm::refuse_running_vm_nic_change(&rec, "connect")?;
        if rec.is_running() {
            network::attach::connect(&nets, &rec.id, &ep).map_err(net_err)?;
        }
        c.update(&rec.id, |r| r.options.net.extra_networks.push(ep.clone()))?;
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect(&self, net: &str, container: &str) -> Result<(), EngineError> {
        let nets = self.networks()?;
        let def = nets.get(net).map_err(net_err)?;
        let c = self.containers()?;
        let rec = c.find(container)?;
        if !uses(&rec, &def) {
            return Err(EngineError::Invalid(format!(
                "container {container} is not connected to network {}",
                def.name
            )));
        }
        super::vm::refuse_running_vm_nic_change(&rec, "disconnect")?;
        if rec.is_running() {
            network::attach::disconnect(&nets, &rec.id, &def.name).map_err(net_err)?;
        }
        let name = def.name.clone();
        let first =
            matches!(&rec.options.network, Network::Named(n) if *n == def.name || *n == def.id);
        c.update(&rec.id, |r| {
            r.options.net.extra_networks.retain(|e| e.network != name);
            if first {
                r.options.network = Network::None;
                r.options.net.ip = None;
                r.options.net.aliases.clear();
            }
        })?;
        Ok(())
    }

    /// `port`: container `key`'s published ports (none unless it runs).
    pub fn ports(&self, key: &str) -> Result<Vec<Published>, EngineError> {
        let rec = self.containers()?.find(key)?;
        Ok(network::attach::load_state(self.root(), &rec.id)
            .map_err(net_err)?
            .map(|s| s.attachment.ports)
            .unwrap_or_default())
    }

    /// A container's `NetworkSettings`, Docker's shape (for inspect, CLI and API).
    pub fn network_settings(&self, rec: &ContainerRecord) -> Value {
        network_settings(self.root(), rec)
    }
}

/// Whether container `rec` is configured on `def`.
fn uses(rec: &ContainerRecord, def: &NetworkDef) -> bool {
    matches!(&rec.options.network, Network::Named(n) if *n == def.name || *n == def.id)
        || rec
            .options
            .net
            .extra_networks
            .iter()
            .any(|e| e.network == def.name || e.network == def.id)
}

/// What `create` checks and settles of the network settings: the network exists, `--ip`
/// and aliases fit it, `container:NAME` names a container (kept by id), `-P` becomes the
/// image's ExposedPorts.
pub(super) fn prepare(
    engine: &Engine,
    c: &Containers,
    image: &ImageInput,
    opts: &mut RunOptions,
) -> Result<(), EngineError> {
    match opts.network.clone() {
        Network::Named(name) => {
            let nets = engine.networks()?;
            let def = nets.get(&name).map_err(net_err)?;
            let ep = EndpointRequest {
                network: def.name.clone(),
                ip: opts.net.ip,
                aliases: opts.net.aliases.clone(),
            };
            network::attach::check_endpoint(&def, &ep).map_err(net_err)?;
            opts.network = Network::Named(def.name);
        }
        Network::Container(key) => {
            let other = c.find(&key)?;
            if other.options.route == ExecRoute::Vm {
                return Err(EngineError::Invalid(format!(
                    "cannot join the network of container {key}: it runs in a VM"
                )));
            }
            opts.network = Network::Container(other.id);
        }
        Network::None | Network::Host => {}
    }
    if opts.net.publish_all {
        opts.net.publish_all = false;
        let exposed = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        publish_exposed(&exposed, &mut opts.net.ports);
    }
    opts.validate()?;
    Ok(())
}

/// `-P`: each exposed port (`80/tcp`, `53/udp`, `8080`) not published already gets a free
/// host port.
fn publish_exposed(exposed: &[String], ports: &mut Vec<PortSpec>) {
    for e in exposed {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let protocol = if proto == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if !ports
            .iter()
            .any(|p| p.container_port == port && p.protocol == protocol)
        {
            ports.push(PortSpec {
                host_ip: None,
                host_port: None,
                container_port: port,
                protocol,
            });
        }
    }
}

/// Container `rec`'s `NetworkSettings` (Docker's shape) from its `network.json`.
pub fn network_settings(root: &std::path::Path, rec: &ContainerRecord) -> Value {
    let st = network::attach::load_state(root, &rec.id).ok().flatten();
    let mut ports = serde_json::Map::new();
    for p in &rec.options.net.ports {
        ports
            .entry(format!("{}/{}", p.container_port, p.protocol.as_str()))
            .or_insert(Value::Null);
    }
    let mut networks = serde_json::Map::new();
    let (mut ip, mut gw, mut mac, mut prefix, mut sandbox) = (
        String::new(),
        String::new(),
        String::new(),
        0u8,
        String::new(),
    );
    if let Some(st) = &st {
        sandbox = st.attachment.netns.display().to_string();
        for p in &st.attachment.ports {
            let key = format!("{}/{}", p.container_port, p.protocol.as_str());
            let entry = ports.entry(key).or_insert(json!([]));
            if !entry.is_array() {
                *entry = json!([]);
            }
            entry.as_array_mut().expect("array").push(json!({
                "HostIp": p.host_ip.to_string(),
                "HostPort": p.host_port.to_string(),
            }));
        }
        for (i, e) in st.endpoints().iter().enumerate() {
            if i == 0 {
                ip = e.ip.to_string();
                gw = e.gateway.to_string();
                mac = e.mac.clone();
                prefix = e.prefix;
            }
            networks.insert(
                e.network.clone(),
                json!({
                    "IPAMConfig": null,
                    "Links": null,
                    "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
                    "MacAddress": e.mac,
                    "NetworkID": e.network_id,
                    "EndpointID": crate::digest::Digest::of(format!("{}{}", rec.id, e.network_id).as_bytes()).hex(),
                    "Gateway": e.gateway.to_string(),
                    "IPAddress": e.ip.to_string(),
                    "IPPrefixLen": e.prefix,
                    "IPv6Gateway": "",
                    "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0,
                    // Docker (API 1.44+): what the container answers to there.
                    "DNSNames": if e.network == network::DEFAULT_NETWORK {
                        Value::Null
                    } else {
                        json!(network::names::record(&rec.id, &rec.name, e).names)
                    },
                }),
            );
        }
    }
    if st.is_none() {
        // Not attached now (created, stopped): the networks it is configured for, without
        // addresses, as Docker shows them (clients such as Compose look here before they
        // connect a container); the aliases with the short id, as Docker's API 1.44.
        let mut configured: Vec<(String, Vec<String>)> = Vec::new();
        if let Network::Named(n) = &rec.options.network {
            configured.push((n.clone(), rec.options.net.aliases.clone()));
        }
        for e in &rec.options.net.extra_networks {
            configured.push((e.network.clone(), e.aliases.clone()));
        }
        for (name, mut aliases) in configured {
            aliases.push(rec.short_id().to_string());
            networks.insert(
                name,
                json!({
                    "IPAMConfig": null, "Links": null, "Aliases": aliases, "MacAddress": "",
                    "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                    "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0, "DNSNames": null,
                }),
            );
        }
    }
    json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": sandbox,
        "Ports": ports,
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "EndpointID": "",
        "Gateway": gw,
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "IPv6Gateway": "",
        "MacAddress": mac,
        "Networks": networks,
    })
}

/// `network inspect`'s JSON (Docker's shape).
pub fn network_json(info: &NetworkInfo) -> Value {
    let d = &info.def;
    let containers: serde_json::Map<String, Value> = info
        .containers
        .iter()
        .map(|(id, name, e)| {
            (
                id.clone(),
                json!({
                    "Name": name,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    json!({
        "Name": d.name,
        "Id": d.id,
        "Created": d.created,
        "Scope": "local",
        "Driver": d.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": [{"Subnet": d.subnet.to_string(), "Gateway": d.gateway.to_string()}]},
        "Internal": d.internal,
        "Attachable": false,
        "Ingress": false,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": d.bridge},
        "Labels": d.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_all_adds_the_exposed_ports_not_published_yet() {
        let mut ports = vec![PortSpec {
            host_ip: None,
            host_port: Some(8080),
            container_port: 80,
            protocol: Protocol::Tcp,
        }];
        let exposed: Vec<String> = ["80/tcp", "53/udp", "9000", "bad/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        publish_exposed(&exposed, &mut ports);
        let got: Vec<(Option<u16>, u16, Protocol)> = ports
            .iter()
            .map(|p| (p.host_port, p.container_port, p.protocol))
            .collect();
        assert_eq!(
            got,
            [
                (Some(8080), 80, Protocol::Tcp),
                (None, 53, Protocol::Udp),
                (None, 9000, Protocol::Tcp)
            ]
        );
    }
}
