//! The CNI configuration list xrun generates for a network (never `/etc/cni/net.d`, where
//! Podman keeps its own): `bridge` with `host-local` IPAM, then `portmap` when ports are
//! published, `firewall`, and `bandwidth` when rates are set; and the `runtimeConfig`
//! a container's request gives them.

use serde_json::{Value, json};

use super::cni::CNI_VERSION;
use super::{NetworkDef, Published, rate};

/// What of a container's request shapes the list and its runtime configuration.
#[derive(Debug, Clone, Default)]
pub struct ListInput<'a> {
    /// Published ports (on the container's first network only).
    pub ports: &'a [Published],
    /// `--ip`, with the subnet's prefix.
    pub ip: Option<String>,
    /// `--egress-rate` (bits/s).
    pub egress_rate: Option<u64>,
    /// `--ingress-rate` (bits/s).
    pub ingress_rate: Option<u64>,
}

/// The configuration list for `def` (host-local's `dataDir` is [`super::ipam_dir`]).
pub fn conflist(def: &NetworkDef, input: &ListInput) -> Value {
    let routes = if def.internal {
        json!([])
    } else {
        json!([{"dst": "0.0.0.0/0"}])
    };
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": def.bridge,
        "isGateway": true,
        "ipMasq": !def.internal,
        "hairpinMode": true,
        "capabilities": {"ips": true},
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": def.subnet.to_string(), "gateway": def.gateway.to_string()}]],
            "routes": routes,
            "dataDir": super::ipam_dir(def),
        },
    })];
    if !input.ports.is_empty() {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }));
    }
    plugins.push(json!({"type": "firewall", "backend": "iptables"}));
    if input.egress_rate.is_some() || input.ingress_rate.is_some() {
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    }
    json!({"cniVersion": CNI_VERSION, "name": def.name, "plugins": plugins})
}

/// The `runtimeConfig` values for the list's capabilities.
pub fn runtime_config(input: &ListInput) -> Value {
    let mut rc = serde_json::Map::new();
    if !input.ports.is_empty() {
        let maps: Vec<Value> = input
            .ports
            .iter()
            .map(|p| {
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_str(),
                    "hostIP": if p.host_ip.is_unspecified() { String::new() } else { p.host_ip.to_string() },
                })
            })
            .collect();
        rc.insert("portMappings".into(), Value::Array(maps));
    }
    if let Some(ip) = &input.ip {
        rc.insert("ips".into(), json!([ip]));
    }
    if input.egress_rate.is_some() || input.ingress_rate.is_some() {
        let mut bw = serde_json::Map::new();
        if let Some(r) = input.ingress_rate {
            bw.insert("ingressRate".into(), json!(r));
            bw.insert("ingressBurst".into(), json!(rate::burst_for(r)));
        }
        if let Some(r) = input.egress_rate {
            bw.insert("egressRate".into(), json!(r));
            bw.insert("egressBurst".into(), json!(rate::burst_for(r)));
        }
        rc.insert("bandwidth".into(), Value::Object(bw));
    }
    Value::Object(rc)
}

/// The loopback plugin's configuration (`lo` up in the new namespace).
pub fn loopback() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": "xrun-loopback", "plugins": [{"type": "loopback"}]})
}
