//! Containers' names on user-defined networks, as Docker's embedded DNS gives them: on each
//! user network a container answers to its name, its `--network-alias`es and its short id
//! (12 hex digits), for the other containers of that network, through aardvark-dns
//! listening on the network's gateway ([`super::dns`]). The default bridge keeps Docker's
//! behaviour: no names there.
//!
//! aardvark-dns's files are keyed by network id (names are per store root, the server is
//! one for the machine); its directory is `/run/xrun/net/aardvark/`.

use std::net::IpAddr;
use std::path::Path;

use super::dns::{self, DnsRecord, DnsServer};
use super::{Endpoint, NetworkDef, NetworkError, RUN_NET_DIR};

/// The server all of xrun's user networks share.
pub fn server() -> DnsServer {
    DnsServer::at(&Path::new(RUN_NET_DIR).join("aardvark"))
}

/// The names container `id` called `name` answers to on endpoint `ep`. A container name
/// that cannot be a DNS name (Docker allows `web.` or `a..b`) is left out: the container
/// still starts, and answers to its aliases and short id.
pub fn record(id: &str, name: &str, ep: &Endpoint) -> DnsRecord {
    let mut names = Vec::new();
    if dns::check_name(name).is_ok() {
        names.push(name.to_string());
    }
    names.extend(ep.aliases.iter().cloned());
    names.push(id[..12.min(id.len())].to_string());
    DnsRecord {
        container_id: id.to_string(),
        ipv4: vec![ep.ip],
        names,
    }
}

/// Makes container `id` (called `name`) resolvable on `def` through endpoint `ep`; names it
/// does not know go to `upstream` (its `--dns`; empty: the host's resolvers). Nothing on the
/// default bridge.
pub fn register(
    def: &NetworkDef,
    id: &str,
    name: &str,
    ep: &Endpoint,
    upstream: &[String],
) -> Result<(), NetworkError> {
    if def.is_default() {
        return Ok(());
    }
    let upstream: Vec<IpAddr> = upstream.iter().filter_map(|s| s.parse().ok()).collect();
    server().add(&def.id, ep.gateway, &upstream, &record(id, name, ep))?;
    Ok(())
}

/// Takes container `id`'s names off network `def`.
pub fn unregister(def: &NetworkDef, id: &str) -> Result<(), NetworkError> {
    if def.is_default() {
        return Ok(());
    }
    server().remove(&def.id, id)?;
    Ok(())
}

/// Takes container `id`'s names off every network (its teardown); a failure is a warning:
/// what can be removed is.
pub fn forget(id: &str) {
    if let Err(e) = server().remove_everywhere(id) {
        tracing::warn!("removing the DNS names of {id}: {e}");
    }
}

/// Drops network `def`'s names (network rm); a failure is a warning.
pub fn drop_network(def: &NetworkDef) {
    if let Err(e) = server().remove_network(&def.id) {
        tracing::warn!("removing the DNS names of network {}: {e}", def.name);
    }
}

/// Checks `--network-alias` values: each must be a name the DNS server can hold.
pub fn check_aliases(aliases: &[String]) -> Result<(), NetworkError> {
    for a in aliases {
        dns::check_name(a).map_err(|e| {
            NetworkError::BadInput(format!("invalid --network-alias {a:?}: {}", reason(&e)))
        })?;
    }
    Ok(())
}

fn reason(e: &dns::DnsError) -> String {
    match e {
        dns::DnsError::Invalid { why, .. } => (*why).to_string(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_holds_name_aliases_and_short_id() {
        let id = "0123456789abcdef".repeat(4);
        let ep = Endpoint {
            network: "n".into(),
            network_id: "f".repeat(64),
            ifname: "eth0".into(),
            mac: String::new(),
            ip: "10.90.1.2".parse().unwrap(),
            prefix: 24,
            gateway: "10.90.1.1".parse().unwrap(),
            aliases: vec!["www".into()],
            bridge: "xrbr-ffffffff".into(),
        };
        let r = record(&id, "web", &ep);
        assert_eq!(r.names, ["web", "www", "0123456789ab"]);
        assert_eq!(record(&id, "web.", &ep).names, ["www", "0123456789ab"]);
        assert_eq!(r.ipv4, [ep.ip]);
        assert!(check_aliases(&["db.local".into(), "x_1".into()]).is_ok());
        let err = check_aliases(&["bad alias".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid --network-alias \"bad alias\": only"),
            "{err}"
        );
    }
}
