//! The network part of Docker's container shapes: `HostConfig.NetworkMode`, `PortBindings`,
//! `PublishAllPorts`, `Dns`, `DnsSearch`, `DnsOptions`, `ExtraHosts`, `Config.ExposedPorts`
//! and `NetworkingConfig.EndpointsConfig` into the engine's network settings
//! ([`Network`] + [`NetOptions`]); and the records' ports back in Docker's shapes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::network::{EndpointRequest, NetOptions, PortSpec, Protocol};
use crate::runtime::ContainerRecord;
use crate::runtime::options::Network;

use super::error::ApiError;
use super::networks::EndpointConfig;

/// `NetworkingConfig` of a create body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    /// Per network: the address and aliases asked for.
    pub endpoints_config: Option<BTreeMap<String, Option<EndpointConfig>>>,
}

/// What the network settings are read from.
#[derive(Debug, Default)]
pub struct NetRequest {
    /// `HostConfig.NetworkMode`.
    pub mode: Option<String>,
    /// `HostConfig.PortBindings`: `"80/tcp": [{"HostIp", "HostPort"}]`.
    pub port_bindings: Option<BTreeMap<String, Value>>,
    /// `HostConfig.PublishAllPorts`.
    pub publish_all: bool,
    /// `Config.ExposedPorts`: `"80/tcp": {}`.
    pub exposed: Option<BTreeMap<String, Value>>,
    /// `HostConfig.Dns`.
    pub dns: Vec<String>,
    /// `HostConfig.DnsSearch`.
    pub dns_search: Vec<String>,
    /// `HostConfig.DnsOptions`.
    pub dns_options: Vec<String>,
    /// `HostConfig.ExtraHosts` (`host:ip`).
    pub extra_hosts: Vec<String>,
    /// `NetworkingConfig`.
    pub networking: Option<NetworkingConfig>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(m)
}

/// `80/tcp` → (80, tcp).
fn port_key(key: &str) -> Result<(u16, Protocol), ApiError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" | "" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        p => {
            return Err(bad(format!(
                "invalid port {key:?}: protocol {p:?} is not supported (use tcp or udp)"
            )));
        }
    };
    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
        bad(format!(
            "invalid port {key:?}: a port number 1-65535 is expected"
        ))
    })?;
    Ok((port, protocol))
}

/// One `PortBindings` entry's host side.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Binding {
    host_ip: Option<String>,
    host_port: Option<String>,
}

fn bindings(map: &BTreeMap<String, Value>) -> Result<Vec<PortSpec>, ApiError> {
    let mut out = Vec::new();
    for (key, list) in map {
        let (container_port, protocol) = port_key(key)?;
        let list: Vec<Binding> = match list {
            Value::Null => vec![Binding::default()],
            v => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("invalid PortBindings for {key:?}: {e}")))?,
        };
        for b in list {
            let host_ip = match b.host_ip.as_deref().unwrap_or("") {
                "" | "0.0.0.0" => None,
                ip => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                    bad(format!(
                        "invalid HostIp {ip:?} for {key}: an IPv4 address is expected (IPv4 only)"
                    ))
                })?),
            };
            let host_port = match b.host_port.as_deref().unwrap_or("") {
                "" | "0" => None,
                p => Some(p.parse::<u16>().map_err(|_| {
                    bad(format!(
                        "invalid HostPort {p:?} for {key}: one port number (ranges: one binding per port)"
                    ))
                })?),
            };
            out.push(PortSpec {
                host_ip,
                host_port,
                container_port,
                protocol,
            });
        }
    }
    Ok(out)
}

impl NetRequest {
    /// The engine's network mode and settings.
    pub fn into_settings(self) -> Result<(Network, NetOptions), ApiError> {
        let mode = self.mode.unwrap_or_default();
        let mut network: Network = mode
            .parse()
            .map_err(|e: crate::runtime::RuntimeError| bad(e.to_string()))?;
        let mut net = NetOptions {
            ports: bindings(&self.port_bindings.unwrap_or_default())?,
            dns: self.dns,
            dns_search: self.dns_search,
            dns_options: self.dns_options,
            add_hosts: self.extra_hosts,
            ..Default::default()
        };
        if self.publish_all {
            // The image's ExposedPorts are added by the engine; the request's here.
            net.publish_all = true;
            for key in self.exposed.unwrap_or_default().keys() {
                let (container_port, protocol) = port_key(key)?;
                if !net
                    .ports
                    .iter()
                    .any(|p| p.container_port == container_port && p.protocol == protocol)
                {
                    net.ports.push(PortSpec {
                        host_ip: None,
                        host_port: None,
                        container_port,
                        protocol,
                    });
                }
            }
        }
        let endpoints: Vec<(String, EndpointConfig)> = self
            .networking
            .and_then(|n| n.endpoints_config)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        // `default` with one endpoint of another network: that network is the first.
        if (mode.is_empty() || mode == "default")
            && let [(name, _)] = endpoints.as_slice()
            && name != "bridge"
            && name != "default"
        {
            network = Network::Named(name.clone());
        }
        let first = match &network {
            Network::Named(n) => Some(n.clone()),
            _ => None,
        };
        for (name, ep) in endpoints {
            let is_first = first.as_deref() == Some(name.as_str())
                || (first.as_deref() == Some(crate::network::DEFAULT_NETWORK)
                    && (name == "default" || name == "bridge"));
            let ip = ep.ip()?;
            let aliases = ep.aliases.clone().unwrap_or_default();
            if is_first {
                net.ip = ip;
                net.aliases = aliases;
            } else if first.is_some() {
                net.extra_networks.push(EndpointRequest {
                    network: name,
                    ip,
                    aliases,
                });
            } else if ip.is_some() || !aliases.is_empty() {
                return Err(bad(format!(
                    "EndpointsConfig for {name:?} needs NetworkMode {name} (it is {})",
                    network.mode()
                )));
            }
        }
        Ok((network, net))
    }
}

/// A record's `HostConfig.PortBindings` (what was asked).
pub fn port_bindings(r: &ContainerRecord) -> Value {
    let mut m = serde_json::Map::new();
    for p in &r.options.net.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let entry = m.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": p.host_port.map(|h| h.to_string()).unwrap_or_default(),
            }));
        }
    }
    Value::Object(m)
}

/// The list's `Ports` from inspect's `NetworkSettings.Ports` (`{"80/tcp": [{HostIp,
/// HostPort}]}` or `null` for an unpublished port).
pub fn summary_ports(settings: &Value) -> Value {
    let mut out = Vec::new();
    for (key, v) in settings["Ports"].as_object().into_iter().flatten() {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let private: u64 = port.parse().unwrap_or(0);
        match v.as_array() {
            Some(list) => {
                for b in list {
                    out.push(json!({
                        "IP": b["HostIp"],
                        "PrivatePort": private,
                        "PublicPort": b["HostPort"].as_str().and_then(|p| p.parse::<u64>().ok()),
                        "Type": proto,
                    }));
                }
            }
            None => out.push(json!({"PrivatePort": private, "Type": proto})),
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> Result<(Network, NetOptions), ApiError> {
        let n: Option<NetworkingConfig> =
            serde_json::from_value(v["NetworkingConfig"].clone()).ok();
        NetRequest {
            mode: v["NetworkMode"].as_str().map(String::from),
            port_bindings: serde_json::from_value(v["PortBindings"].clone()).ok(),
            publish_all: v["PublishAllPorts"].as_bool().unwrap_or(false),
            exposed: serde_json::from_value(v["ExposedPorts"].clone()).ok(),
            networking: n,
            ..Default::default()
        }
        .into_settings()
    }

    #[test]
    fn modes_ports_and_endpoints_map_to_the_engine() {
        let (n, o) = req(json!({"NetworkMode": "default"})).unwrap();
        assert_eq!(n, Network::Named("bridge".into()));
        assert!(o.ports.is_empty());
        assert_eq!(
            req(json!({"NetworkMode": "none"})).unwrap().0,
            Network::None
        );
        assert_eq!(
            req(json!({"NetworkMode": "container:web"})).unwrap().0,
            Network::Container("web".into())
        );
        let (_, o) = req(json!({"PortBindings": {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "", "HostPort": ""}],
            "53/udp": null}}))
        .unwrap();
        assert_eq!(o.ports.len(), 3);
        let p = o.ports.iter().find(|p| p.host_port == Some(8080)).unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.container_port, 80);
        assert!(
            o.ports
                .iter()
                .any(|p| p.protocol == Protocol::Udp && p.host_port.is_none())
        );
        let (_, o) =
            req(json!({"PublishAllPorts": true, "ExposedPorts": {"8000/tcp": {}}})).unwrap();
        assert!(o.publish_all && o.ports[0].container_port == 8000);
        // Compose: NetworkMode names the project's network, the endpoint its aliases.
        let (n, o) = req(
            json!({"NetworkMode": "proj_default", "NetworkingConfig": {"EndpointsConfig": {
            "proj_default": {"Aliases": ["web", "abc"], "IPAMConfig": {"IPv4Address": "10.90.3.7"}},
            "other": {"Aliases": ["x"]}}}}),
        )
        .unwrap();
        assert_eq!(n, Network::Named("proj_default".into()));
        assert_eq!(o.aliases, ["web", "abc"]);
        assert_eq!(o.ip, Some(Ipv4Addr::new(10, 90, 3, 7)));
        assert_eq!(o.extra_networks.len(), 1);
        assert_eq!(o.extra_networks[0].network, "other");
        let (n, _) = req(json!({"NetworkingConfig": {"EndpointsConfig": {"mynet": {}}}})).unwrap();
        assert_eq!(n, Network::Named("mynet".into()));
    }

    #[test]
    fn bad_ports_are_refused_clearly() {
        for (v, what) in [
            (json!({"PortBindings": {"80/sctp": []}}), "sctp"),
            (json!({"PortBindings": {"x/tcp": []}}), "port number"),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": "80-81"}]}}),
                "HostPort",
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostIp": "::1"}]}}),
                "IPv4",
            ),
        ] {
            let e = req(v).unwrap_err();
            assert!(e.message.contains(what), "{}", e.message);
        }
    }
}
