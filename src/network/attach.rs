//! Attaching a container: [`setup`] makes its network namespace, reserves its host ports,
//! runs CNI ADD (loopback, then each network's list) and persists everything DEL needs in
//! `<root>/containers/<id>/network.json`; [`teardown`] undoes it from that file alone (the
//! namespace may be gone: the plugins then get an empty `CNI_NETNS`). [`connect`] and
//! [`disconnect`] add and remove further interfaces (`eth1`…) of a running container.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cni::{self, Target};
use super::conflist::{self, ListInput};
use super::{
    CNI_PATH, NetworkDef, NetworkError, Networks, PortSpec, Published, etcfiles, firewall, netns,
    ports,
};

/// One network a container joins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointRequest {
    /// The network's name or id.
    pub network: String,
    /// `--ip` (user networks only).
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias` (user networks only).
    pub aliases: Vec<String>,
}

/// Everything about a container's networking that comes from the command line: kept with
/// the container's options so every start makes the same request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetOptions {
    /// `--ip` on the first network.
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias` on the first network.
    pub aliases: Vec<String>,
    /// Networks joined besides the first (`network connect` while stopped).
    pub extra_networks: Vec<EndpointRequest>,
    /// `-p` (and `-P`'s, added at create from the image's ExposedPorts).
    pub ports: Vec<PortSpec>,
    /// `-P`: publish the image's ExposedPorts (turned into `ports` at create).
    pub publish_all: bool,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--add-host HOST:IP` (IP may be `host-gateway`).
    pub add_hosts: Vec<String>,
    /// `--egress-rate` in bits/s.
    pub egress_rate: Option<u64>,
    /// `--ingress-rate` in bits/s.
    pub ingress_rate: Option<u64>,
}

impl NetOptions {
    /// Checks what can be checked without the networks (`--add-host`, `--dns`).
    pub fn validate(&self) -> Result<(), NetworkError> {
        for h in &self.add_hosts {
            parse_add_host(h)?;
        }
        for d in &self.dns {
            if d.parse::<Ipv4Addr>().is_err() {
                return Err(NetworkError::BadInput(format!(
                    "invalid --dns {d:?}: an IPv4 address is expected (IPv4 only)"
                )));
            }
        }
        Ok(())
    }
}

/// `HOST:IP` of `--add-host` (`IP` may be `host-gateway`: `None`).
pub fn parse_add_host(s: &str) -> Result<(String, Option<Ipv4Addr>), NetworkError> {
    let bad = || {
        NetworkError::BadInput(format!(
            "invalid --add-host {s:?}: use HOST:IP (IPv4) or HOST:host-gateway"
        ))
    };
    let (h, a) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.contains(char::is_whitespace) {
        return Err(bad());
    }
    if a == "host-gateway" {
        return Ok((h.to_string(), None));
    }
    Ok((h.to_string(), Some(a.parse().map_err(|_| bad())?)))
}

/// What a container asks of the network stage at start.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    /// The container id (CNI_CONTAINERID).
    pub container_id: String,
    /// Its hostname (for `/etc/hosts`).
    pub hostname: String,
    /// Its name (what other containers of a user network resolve, with its aliases).
    pub name: String,
    /// The networks, the first one gets `eth0`.
    pub endpoints: Vec<EndpointRequest>,
    /// The rest of the options (ports, DNS, hosts, rates).
    pub options: NetOptions,
}

/// One interface of a container on a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The interface in the container (`eth0`, `eth1`…).
    pub ifname: String,
    /// Its MAC address.
    pub mac: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// Network-scoped aliases.
    pub aliases: Vec<String>,
    /// The bridge device.
    pub bridge: String,
}

/// A container's networking once set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network namespace's path (the OCI config's network namespace entry).
    pub netns: PathBuf,
    /// Its interfaces.
    pub endpoints: Vec<Endpoint>,
    /// Published ports.
    pub ports: Vec<Published>,
    /// `nameserver`s.
    pub dns_servers: Vec<String>,
    /// `search` domains.
    pub dns_search: Vec<String>,
    /// `options`.
    pub dns_options: Vec<String>,
    /// `/etc/hosts` contents.
    pub hosts: String,
    /// `/etc/resolv.conf` contents.
    pub resolv: String,
}

/// What DEL needs for one network: the exact list, runtime configuration and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniRecord {
    /// The interface.
    pub ifname: String,
    /// The configuration list used.
    pub conflist: Value,
    /// The runtime configuration used.
    pub runtime: Value,
    /// ADD's result (`None` until it succeeded).
    pub result: Option<Value>,
}

/// `network.json`: the attachment and how to undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The container id.
    pub container_id: String,
    /// The attachment (partly filled while setting up).
    pub attachment: Attachment,
    /// The loopback plugin's list, once run.
    pub loopback: Option<Value>,
    /// One record per network, in ADD order.
    pub cni: Vec<CniRecord>,
    /// The isolation chains to re-check (internal networks' ids).
    #[serde(default)]
    pub internal: Vec<String>,
    /// The container's name (its DNS name on user networks, also for later `connect`s).
    #[serde(default)]
    pub name: String,
    /// Where its queries for names outside its networks go (`--dns`; empty: the host's).
    #[serde(default)]
    pub upstream: Vec<String>,
}

impl State {
    /// The endpoints (for [`Networks::active_endpoints`]).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.attachment.endpoints
    }
}

/// Reads container `id`'s `network.json` (`None`: not attached).
pub fn load_state(root: &Path, id: &str) -> Result<Option<State>, NetworkError> {
    match std::fs::read(super::state_path(root, id)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| NetworkError::Corrupt(format!("network state of {id}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetworkError::io("reading network.json", e)),
    }
}

fn save_state(root: &Path, st: &State) -> Result<(), NetworkError> {
    super::write_atomic(
        &super::state_path(root, &st.container_id),
        &serde_json::to_vec_pretty(st).expect("serializable"),
    )
}

/// Checks `--ip` and aliases against `def`.
pub fn check_endpoint(def: &NetworkDef, ep: &EndpointRequest) -> Result<(), NetworkError> {
    if def.is_default() {
        if ep.ip.is_some() {
            return Err(NetworkError::BadInput(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if !ep.aliases.is_empty() {
            return Err(NetworkError::BadInput(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
    }
    super::names::check_aliases(&ep.aliases)?;
    if let Some(ip) = ep.ip {
        if !def.subnet.is_host(ip) || ip == def.gateway {
            return Err(NetworkError::BadInput(format!(
                "--ip {ip} is not a free host address of network {} ({}, gateway {})",
                def.name, def.subnet, def.gateway
            )));
        }
        if super::lease_path(def, ip).exists() {
            return Err(NetworkError::BadInput(format!(
                "--ip {ip}: address already in use on network {}",
                def.name
            )));
        }
    }
    Ok(())
}

/// Parses a CNI result into the endpoint on `ifname`.
fn endpoint_from(
    def: &NetworkDef,
    ep: &EndpointRequest,
    ifname: &str,
    result: &Value,
) -> Result<Endpoint, NetworkError> {
    let r: cni::CniResult = serde_json::from_value(result.clone())
        .map_err(|e| NetworkError::Corrupt(format!("CNI result: {e}")))?;
    let idx = r
        .interfaces
        .iter()
        .position(|i| i.name == ifname && !i.sandbox.is_empty());
    let ipc = r
        .ips
        .iter()
        .find(|i| i.interface.is_some() && i.interface == idx)
        .or_else(|| r.ips.first())
        .ok_or_else(|| NetworkError::Corrupt("the CNI result has no address".into()))?;
    let (a, p) = ipc
        .address
        .split_once('/')
        .ok_or_else(|| NetworkError::Corrupt(format!("CNI address {:?}", ipc.address)))?;
    Ok(Endpoint {
        network: def.name.clone(),
        network_id: def.id.clone(),
        ifname: ifname.to_string(),
        mac: idx.map(|i| r.interfaces[i].mac.clone()).unwrap_or_default(),
        ip: a
            .parse()
            .map_err(|_| NetworkError::Corrupt(format!("CNI address {a:?}")))?,
        prefix: p.parse().unwrap_or(def.subnet.prefix),
        gateway: ipc
            .gateway
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or(def.gateway),
        aliases: ep.aliases.clone(),
        bridge: def.bridge.clone(),
    })
}

/// Runs ADD for one network on `ifname`; records it in `st` (saved before the ADD, so a
/// crash in between still has it undone).
fn add_network(
    nets: &Networks,
    st: &mut State,
    def: &NetworkDef,
    ep: &EndpointRequest,
    ifname: &str,
    input: &ListInput,
) -> Result<Endpoint, NetworkError> {
    let root = nets.root();
    let list = conflist::conflist(def, input);
    let runtime = conflist::runtime_config(input);
    st.cni.push(CniRecord {
        ifname: ifname.to_string(),
        conflist: list.clone(),
        runtime: runtime.clone(),
        result: None,
    });
    if def.internal {
        st.internal.push(def.id.clone());
    }
    save_state(root, st)?;
    let target = Target {
        container_id: &st.container_id,
        netns: Some(&st.attachment.netns),
        ifname,
    };
    let result = cni::add_list(Path::new(CNI_PATH), &list, &target, &runtime)?;
    st.cni.last_mut().expect("pushed").result = Some(result.clone());
    if def.internal {
        firewall::ensure_first(def)?;
    }
    let e = endpoint_from(def, ep, ifname, &result)?;
    st.attachment.endpoints.push(e.clone());
    save_state(root, st)?;
    Ok(e)
}

/// Sets container `req.container_id` up on its networks; on any failure, everything done
/// so far is undone.
pub fn setup(nets: &Networks, req: &NetworkRequest) -> Result<Attachment, NetworkError> {
    let root = nets.root();
    let id = req.container_id.as_str();
    req.options.validate()?;
    let mut defs = Vec::new();
    for ep in &req.endpoints {
        let def = nets.get(&ep.network)?;
        check_endpoint(&def, ep)?;
        if !def.is_default() {
            super::claims::claim(&def, &nets.def_path(&def.name))?;
        }
        if defs.iter().any(|(d, _): &(NetworkDef, _)| d.id == def.id) {
            return Err(NetworkError::BadInput(format!(
                "the container joins network {} twice",
                def.name
            )));
        }
        defs.push((def, ep.clone()));
    }
    // Leftovers of an earlier start (a crash): undone first.
    if load_state(root, id)?.is_some() || netns::is_namespace(&netns::path(id)) {
        teardown(root, id)?;
    }
    let published = ports::reserve(id, &req.options.ports)?;
    let mut st = State {
        container_id: id.to_string(),
        attachment: Attachment {
            netns: netns::path(id),
            endpoints: vec![],
            ports: published.clone(),
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            hosts: String::new(),
            resolv: String::new(),
        },
        loopback: None,
        cni: vec![],
        internal: vec![],
        name: req.name.clone(),
        upstream: req.options.dns.clone(),
    };
    let made = (|| {
        save_state(root, &st)?;
        netns::create(id)?;
        let lo = conflist::loopback();
        st.loopback = Some(lo.clone());
        save_state(root, &st)?;
        cni::add_list(
            Path::new(CNI_PATH),
            &lo,
            &Target {
                container_id: id,
                netns: Some(&st.attachment.netns),
                ifname: "lo",
            },
            &Value::Null,
        )?;
        for (i, (def, ep)) in defs.iter().enumerate() {
            let input = ListInput {
                ports: if i == 0 { &published } else { &[] },
                ip: ep.ip.map(|ip| format!("{ip}/{}", def.subnet.prefix)),
                egress_rate: if i == 0 {
                    req.options.egress_rate
                } else {
                    None
                },
                ingress_rate: if i == 0 {
                    req.options.ingress_rate
                } else {
                    None
                },
            };
            let e = add_network(nets, &mut st, def, ep, &format!("eth{i}"), &input)?;
            super::names::register(def, id, &st.name, &e, &st.upstream)?;
        }
        write_files(&mut st.attachment, req, defs.first().map(|(d, _)| d))?;
        save_state(root, &st)
    })();
    if let Err(e) = made {
        if let Err(t) = teardown(root, id) {
            tracing::warn!("undoing the network set-up of {id}: {t}");
        }
        return Err(e);
    }
    Ok(st.attachment)
}

/// Fills the attachment's DNS settings, `/etc/hosts` and `/etc/resolv.conf`.
fn write_files(
    a: &mut Attachment,
    req: &NetworkRequest,
    first: Option<&NetworkDef>,
) -> Result<(), NetworkError> {
    let o = &req.options;
    let gateway = a.endpoints.first().map(|e| e.gateway);
    let mut extra = Vec::new();
    for h in &o.add_hosts {
        let (name, ip) = parse_add_host(h)?;
        let ip = match ip {
            Some(ip) => ip,
            None => gateway.ok_or_else(|| {
                NetworkError::BadInput(format!(
                    "--add-host {h}: no network gateway for host-gateway"
                ))
            })?,
        };
        extra.push((name, ip));
    }
    let (host_ns, host_search, host_opts) =
        etcfiles::host_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let user_net = first.is_some_and(|d| !d.is_default());
    // On a user network the container asks aardvark-dns on its gateway, which knows the
    // network's names and forwards the rest to `--dns` (or the host's servers), as Docker's
    // embedded DNS does.
    a.dns_servers = if user_net {
        gateway.map(|g| vec![g.to_string()]).unwrap_or_default()
    } else if !o.dns.is_empty() {
        o.dns.clone()
    } else {
        host_ns
    };
    a.dns_search = if o.dns_search.is_empty() {
        host_search
    } else {
        o.dns_search.clone()
    };
    a.dns_options = if o.dns_options.is_empty() {
        host_opts
    } else {
        o.dns_options.clone()
    };
    let first_ep = a.endpoints.first();
    let aliases: Vec<String> = first_ep.map(|e| e.aliases.clone()).unwrap_or_default();
    a.hosts = etcfiles::hosts(&req.hostname, first_ep.map(|e| e.ip), &aliases, &extra);
    a.resolv = etcfiles::resolv(&a.dns_servers, &a.dns_search, &a.dns_options);
    Ok(())
}

/// Undoes container `id`'s networking from its `network.json`: CNI DEL (reverse order),
/// port reservations, the namespace, the file. Nothing recorded: the namespace and ports
/// still go.
pub fn teardown(root: &Path, id: &str) -> Result<(), NetworkError> {
    // One teardown of a container at a time (its owner and `rm` may both try).
    let lock_path = Path::new(super::RUN_NET_DIR).join("locks").join(id);
    let _lock = super::lock_file(&lock_path)?;
    let r = teardown_locked(root, id);
    let _ = std::fs::remove_file(&lock_path);
    r
}

fn teardown_locked(root: &Path, id: &str) -> Result<(), NetworkError> {
    // Names first: none may point at an address about to be released.
    super::names::forget(id);
    let st = match load_state(root, id) {
        Ok(s) => s,
        Err(NetworkError::Corrupt(m)) => {
            tracing::warn!("{m}: removing what can be found");
            None
        }
        Err(e) => return Err(e),
    };
    let ns = netns::path(id);
    let ns_live = netns::is_namespace(&ns);
    let mut first: Option<NetworkError> = None;
    if let Some(st) = &st {
        for rec in st.cni.iter().rev() {
            let target = Target {
                container_id: id,
                netns: ns_live.then_some(ns.as_path()),
                ifname: &rec.ifname,
            };
            if let Err(e) = cni::del_list(
                Path::new(CNI_PATH),
                &rec.conflist,
                &target,
                &rec.runtime,
                rec.result.as_ref(),
            ) {
                first.get_or_insert(e.into());
            }
            if !ns_live {
                // The bridge plugin removes its masquerade rules only from inside the
                // namespace: without it, from the recorded address.
                let name = rec.conflist["name"].as_str().unwrap_or("");
                let masq = rec.conflist["plugins"][0]["ipMasq"].as_bool() == Some(true);
                if masq
                    && let Some(e) = st
                        .attachment
                        .endpoints
                        .iter()
                        .find(|e| e.ifname == rec.ifname)
                {
                    firewall::remove_masquerade(name, id, e.ip);
                }
            }
        }
        // No DEL for loopback: `lo` goes with the namespace.
    }
    ports::release(id)?;
    netns::remove(id)?;
    match std::fs::remove_file(super::state_path(root, id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(NetworkError::io("removing network.json", e)),
    }
    first.map_or(Ok(()), Err)
}

/// Joins running container `id` to one more network (the next `ethN`).
pub fn connect(nets: &Networks, id: &str, ep: &EndpointRequest) -> Result<Endpoint, NetworkError> {
    let root = nets.root();
    let mut st = load_state(root, id)?.ok_or_else(|| {
        NetworkError::BadInput(format!(
            "container {} has no network namespace of xrun's (network none, host or container:)",
            &id[..12.min(id.len())]
        ))
    })?;
    let def = nets.get(&ep.network)?;
    check_endpoint(&def, ep)?;
    if st
        .attachment
        .endpoints
        .iter()
        .any(|e| e.network_id == def.id)
    {
        return Err(NetworkError::BadInput(format!(
            "endpoint with name {} already exists in network {}",
            &id[..12.min(id.len())],
            def.name
        )));
    }
    let n = (0..)
        .find(|n| !st.cni.iter().any(|r| r.ifname == format!("eth{n}")))
        .expect("a free index");
    let input = ListInput {
        ip: ep.ip.map(|ip| format!("{ip}/{}", def.subnet.prefix)),
        ..Default::default()
    };
    match add_network(nets, &mut st, &def, ep, &format!("eth{n}"), &input) {
        Ok(e) => {
            if let Err(err) = super::names::register(&def, id, &st.name, &e, &st.upstream) {
                if let Err(d) = disconnect(nets, id, &def.name) {
                    tracing::warn!("undoing the connection of {id} to {}: {d}", def.name);
                }
                return Err(err);
            }
            Ok(e)
        }
        Err(err) => {
            // The failed list was undone by add_list: forget it.
            if st.cni.last().is_some_and(|r| r.result.is_none()) {
                st.cni.pop();
            }
            st.internal.retain(|i| {
                *i != def.id
                    || st
                        .attachment
                        .endpoints
                        .iter()
                        .any(|e| e.network_id == def.id)
            });
            save_state(root, &st)?;
            Err(err)
        }
    }
}

/// Takes running container `id` off network `key`.
pub fn disconnect(nets: &Networks, id: &str, key: &str) -> Result<(), NetworkError> {
    let root = nets.root();
    let def = nets.get(key)?;
    let mut st = load_state(root, id)?.ok_or_else(|| {
        NetworkError::BadInput(format!(
            "container {} is not connected to network {}",
            &id[..12.min(id.len())],
            def.name
        ))
    })?;
    let Some(pos) = st
        .attachment
        .endpoints
        .iter()
        .position(|e| e.network_id == def.id)
    else {
        return Err(NetworkError::BadInput(format!(
            "container {} is not connected to network {}",
            &id[..12.min(id.len())],
            def.name
        )));
    };
    let ifname = st.attachment.endpoints[pos].ifname.clone();
    if let Some(ri) = st.cni.iter().position(|r| r.ifname == ifname) {
        let rec = st.cni[ri].clone();
        let ns = netns::path(id);
        cni::del_list(
            Path::new(CNI_PATH),
            &rec.conflist,
            &Target {
                container_id: id,
                netns: netns::is_namespace(&ns).then_some(ns.as_path()),
                ifname: &ifname,
            },
            &rec.runtime,
            rec.result.as_ref(),
        )?;
        st.cni.remove(ri);
    }
    if let Err(e) = super::names::unregister(&def, id) {
        tracing::warn!("removing the DNS names of {id} on {}: {e}", def.name);
    }
    st.attachment.endpoints.remove(pos);
    st.internal.retain(|i| *i != def.id);
    save_state(root, &st)
}
