//! Published ports: `-p` parsing ([`parse_publish`]), and host-port reservations kept in
//! `/run/xrun/net/ports.json` under a lock so two containers starting at once never get the
//! same port ([`reserve`], [`release`]). Each requested port is also checked free by binding
//! it. IPv4 only.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{NetworkError, RUN_NET_DIR};

/// Where `-p` without a host port takes one from (Linux's default ephemeral range, as
/// Docker).
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One requested port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address (`None`: all of them).
    pub host_ip: Option<Ipv4Addr>,
    /// The host port (`None`: a free one).
    pub host_port: Option<u16>,
    /// The container port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A mapping in force: what `xrun port` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The host address (`0.0.0.0`: all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl std::fmt::Display for Published {
    /// Docker's `80/tcp -> 0.0.0.0:32768`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port,
            self.protocol.as_str(),
            self.host_ip,
            self.host_port
        )
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "invalid -p {spec:?}: bad {what} port {p:?} (1-65535)"
            )),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("invalid -p {spec:?}: empty {what} port range"));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p`: `[IP:][HOST:]CONTAINER[/tcp|udp]` (`IP::CONTAINER` for a free host
/// port), ports or equal-length ranges (`8000-8001:80-81`).
pub fn parse_publish(spec: &str) -> Result<Vec<PortSpec>, String> {
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, "tcp")) => (a, Protocol::Tcp),
        Some((a, "udp")) => (a, Protocol::Udp),
        Some((_, p)) => {
            return Err(format!(
                "invalid -p {spec:?}: unknown protocol {p:?} (use tcp or udp)"
            ));
        }
        None => (spec, Protocol::Tcp),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [i, h, c] => (Some(*i), Some(*h).filter(|h| !h.is_empty()), *c),
        _ => {
            return Err(format!(
                "invalid -p {spec:?}: use [IP:][HOST:]CONTAINER[/tcp|udp] (IPv4 only)"
            ));
        }
    };
    let host_ip = match ip {
        Some(i) => Some(i.parse::<Ipv4Addr>().map_err(|_| {
            format!("invalid -p {spec:?}: {i:?} is not an IPv4 address (IPv4 only)")
        })?),
        None => None,
    };
    let (c0, c1) = port_range(ctr, "container", spec)?;
    let hosts: Vec<Option<u16>> = match host {
        None => vec![None; (c1 - c0 + 1) as usize],
        Some(h) => {
            let (h0, h1) = port_range(h, "host", spec)?;
            if h1 - h0 != c1 - c0 {
                return Err(format!(
                    "invalid -p {spec:?}: the host and container port ranges differ in length"
                ));
            }
            (h0..=h1).map(Some).collect()
        }
    };
    Ok((c0..=c1)
        .zip(hosts)
        .map(|(c, h)| PortSpec {
            host_ip,
            host_port: h,
            container_port: c,
            protocol: proto,
        })
        .collect())
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    container: String,
    #[serde(flatten)]
    port: Published,
}

fn file() -> PathBuf {
    Path::new(RUN_NET_DIR).join("ports.json")
}

fn load() -> Vec<Reservation> {
    std::fs::read(file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(v: &[Reservation]) -> Result<(), NetworkError> {
    super::write_atomic(&file(), &serde_json::to_vec(v).expect("serializable"))
}

fn clash(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Whether nothing on the host holds `ip:port` now.
fn bindable(ip: Ipv4Addr, port: u16, proto: Protocol) -> std::io::Result<()> {
    match proto {
        Protocol::Tcp => std::net::TcpListener::bind((ip, port)).map(drop),
        Protocol::Udp => std::net::UdpSocket::bind((ip, port)).map(drop),
    }
}

/// Reserves host ports for container `id`: the given ones if free (else Docker's
/// `Bind for 0.0.0.0:8080 failed: port is already allocated`), free ones for the others.
pub fn reserve(id: &str, specs: &[PortSpec]) -> Result<Vec<Published>, NetworkError> {
    if specs.is_empty() {
        return Ok(vec![]);
    }
    let _l = super::lock_file(&Path::new(RUN_NET_DIR).join("ports.lock"))?;
    let mut all = load();
    all.retain(|r| r.container != id);
    let mut mine = Vec::new();
    for s in specs {
        let ip = s.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let taken = |port: u16, all: &[Reservation], mine: &[Published]| {
            all.iter()
                .map(|r| &r.port)
                .chain(mine.iter())
                .any(|p| p.protocol == s.protocol && p.host_port == port && clash(p.host_ip, ip))
        };
        let port = match s.host_port {
            Some(p) => {
                if taken(p, &all, &mine) {
                    return Err(NetworkError::BadInput(format!(
                        "Bind for {ip}:{p} failed: port is already allocated"
                    )));
                }
                if let Err(e) = bindable(ip, p, s.protocol) {
                    return Err(NetworkError::BadInput(
                        if e.kind() == std::io::ErrorKind::AddrInUse {
                            format!("Bind for {ip}:{p} failed: port is already allocated")
                        } else {
                            format!("Bind for {ip}:{p} failed: {e}")
                        },
                    ));
                }
                p
            }
            None => EPHEMERAL
                .clone()
                .find(|p| !taken(*p, &all, &mine) && bindable(ip, *p, s.protocol).is_ok())
                .ok_or_else(|| NetworkError::BadInput("no free host port left for -p".into()))?,
        };
        mine.push(Published {
            host_ip: ip,
            host_port: port,
            container_port: s.container_port,
            protocol: s.protocol,
        });
    }
    all.extend(mine.iter().map(|p| Reservation {
        container: id.to_string(),
        port: p.clone(),
    }));
    save(&all)?;
    Ok(mine)
}

/// The containers that hold host port reservations.
pub fn holders() -> std::collections::BTreeSet<String> {
    load().into_iter().map(|r| r.container).collect()
}

/// Releases container `id`'s reservations.
pub fn release(id: &str) -> Result<(), NetworkError> {
    if !file().exists() {
        return Ok(());
    }
    let _l = super::lock_file(&Path::new(RUN_NET_DIR).join("ports.lock"))?;
    let mut all = load();
    let n = all.len();
    all.retain(|r| r.container != id);
    if all.len() != n {
        save(&all)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(p[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((p[0].host_port, p[0].container_port), (Some(8080), 80));
        let p = parse_publish("8080:80/udp").unwrap();
        assert_eq!(p[0].protocol, Protocol::Udp);
        let p = parse_publish("80").unwrap();
        assert_eq!(p[0].host_port, None);
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!((p[0].host_ip.is_some(), p[0].host_port), (true, None));
        let p = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!((p[2].host_port, p[2].container_port), (Some(8002), 82));
        for bad in [
            "",
            "x",
            "80/sctp",
            "0:80",
            "70000:80",
            "a:b:c:d",
            "::1:80:80",
            "8000-8001:80",
            "localhost:80:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        let pb = Published {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 32768,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!(pb.to_string(), "80/tcp -> 0.0.0.0:32768");
    }
}
