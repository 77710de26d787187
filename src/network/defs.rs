//! Network definitions: the implicit default network `bridge` and user networks kept as
//! `<root>/networks/<name>.json`, with their subnets checked against each other and the
//! host's routes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET, NetworkError, Subnet};

/// Where user networks take their subnets from, one /24 at a time, unless `--subnet`.
pub const USER_POOL: &str = "10.90.0.0/16";

/// A network: what `network inspect` shows and what the CNI configuration is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// 64 hex digits.
    pub id: String,
    /// The name.
    pub name: String,
    /// Always `bridge`.
    pub driver: String,
    /// The subnet.
    pub subnet: Subnet,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The bridge device (at most 15 characters).
    pub bridge: String,
    /// No outbound NAT, no forwarding out of the bridge.
    pub internal: bool,
    /// `--label`s.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was created (RFC 3339).
    pub created: String,
}

impl NetworkDef {
    /// Whether this is the implicit default network (no names, no `--ip`).
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    /// The name.
    pub name: String,
    /// `--subnet`.
    pub subnet: Option<Subnet>,
    /// `--gateway`.
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
}

/// The networks of one store root.
#[derive(Debug, Clone)]
pub struct Networks {
    root: PathBuf,
    default_subnet: Subnet,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn hex_id(seed: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(seed))
}

impl Networks {
    /// The networks under store root `root`; the default network's subnet comes from
    /// `bridge_subnet` (the config file's `bridge-subnet`), else 10.87.0.0/16.
    pub fn open(root: &Path, bridge_subnet: Option<&str>) -> Result<Networks, NetworkError> {
        let default_subnet = bridge_subnet
            .unwrap_or(DEFAULT_SUBNET)
            .parse()
            .map_err(|e| NetworkError::BadInput(format!("config bridge-subnet: {e}")))?;
        Ok(Networks {
            root: root.to_path_buf(),
            default_subnet,
        })
    }

    /// The networks under `root` with the config file's default subnet.
    pub fn from_config(root: &Path) -> Result<Networks, NetworkError> {
        let cfg =
            crate::config::Config::load().map_err(|e| NetworkError::BadInput(e.to_string()))?;
        Networks::open(root, cfg.bridge_subnet.as_deref())
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// The implicit default network.
    pub fn default_network(&self) -> NetworkDef {
        NetworkDef {
            id: hex_id(b"xrun default network bridge"),
            name: DEFAULT_NETWORK.into(),
            driver: "bridge".into(),
            subnet: self.default_subnet,
            gateway: self.default_subnet.first_host(),
            bridge: DEFAULT_BRIDGE.into(),
            internal: false,
            labels: BTreeMap::new(),
            created: String::new(),
        }
    }

    fn user_networks(&self) -> Vec<NetworkDef> {
        let mut out: Vec<NetworkDef> = std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a: &NetworkDef, b| a.name.cmp(&b.name));
        out
    }

    /// Every network, the default one first.
    pub fn list(&self) -> Vec<NetworkDef> {
        let mut v = vec![self.default_network()];
        v.extend(self.user_networks());
        v
    }

    /// The network named `key`, or with that id or unique id prefix.
    pub fn get(&self, key: &str) -> Result<NetworkDef, NetworkError> {
        let all = self.list();
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<_> = all
            .iter()
            .filter(|n| key.len() >= 3 && n.id.starts_with(key))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(NetworkError::NotFound(key.to_string())),
        }
    }

    /// Creates a user network (its isolation rules too, when internal).
    pub fn create(&self, req: &CreateNetwork) -> Result<NetworkDef, NetworkError> {
        valid_name(&req.name)?;
        if ["bridge", "host", "none", "default"].contains(&req.name.as_str()) {
            return Err(NetworkError::BadInput(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        let _l = super::lock_file(&self.dir().join(".lock"))?;
        let all = self.list();
        if all.iter().any(|n| n.name == req.name) {
            return Err(NetworkError::Exists(req.name.clone()));
        }
        let own_bridges: Vec<&str> = all.iter().map(|n| n.bridge.as_str()).collect();
        let routes = host_routes()
            .into_iter()
            .filter(|(_, dev)| dev != DEFAULT_BRIDGE && !own_bridges.contains(&dev.as_str()));
        let taken: Vec<(Subnet, String)> = all
            .iter()
            .map(|n| (n.subnet, format!("network {}", n.name)))
            .chain(super::claims::live().into_iter().map(|c| {
                let root = c
                    .def_path
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf);
                let root = root.unwrap_or_default();
                (
                    c.subnet,
                    format!("network {} of {}", c.name, root.display()),
                )
            }))
            .chain(routes.map(|(s, dev)| (s, format!("a host route on {dev}"))))
            .collect();
        let subnet = match req.subnet {
            Some(s) => {
                if let Some((o, who)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                    return Err(NetworkError::BadInput(format!(
                        "invalid pool request: subnet {s} overlaps with {who} ({o}): choose another --subnet"
                    )));
                }
                s
            }
            None => next_free(&taken)?,
        };
        let gateway = match req.gateway {
            Some(g) if subnet.is_host(g) => g,
            Some(g) => {
                return Err(NetworkError::BadInput(format!(
                    "--gateway {g} is not a host address of subnet {subnet}"
                )));
            }
            None => subnet.first_host(),
        };
        let id = hex_id(format!("{}{}{}", req.name, now(), rand::random::<u64>()).as_bytes());
        let def = NetworkDef {
            bridge: format!("xrbr-{}", &id[..8]),
            id,
            name: req.name.clone(),
            driver: "bridge".into(),
            subnet,
            gateway,
            internal: req.internal,
            labels: req.labels.clone(),
            created: now(),
        };
        if def.internal {
            super::firewall::add_isolation(&def)?;
        }
        let json = serde_json::to_vec_pretty(&def).expect("serializable");
        if let Err(e) = super::write_atomic(&self.def_path(&def.name), &json) {
            let _ = super::firewall::remove_isolation(&def);
            return Err(e);
        }
        if let Err(e) = super::claims::claim(&def, &self.def_path(&def.name)) {
            let _ = std::fs::remove_file(self.def_path(&def.name));
            let _ = super::firewall::remove_isolation(&def);
            return Err(e);
        }
        Ok(def)
    }

    /// Where network `name`'s definition is kept.
    pub fn def_path(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.json"))
    }

    /// The ids of containers attached to network `name` now (their `network.json`).
    pub fn active_endpoints(&self, name: &str) -> Vec<String> {
        std::fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                let st = super::attach::load_state(&self.root, &id).ok()??;
                st.endpoints()
                    .iter()
                    .any(|ep| ep.network == name)
                    .then_some(id)
            })
            .collect()
    }

    /// Removes user network `key`: refused while containers are attached; its bridge
    /// device, isolation rules and IPAM data go with it.
    pub fn remove(&self, key: &str) -> Result<NetworkDef, NetworkError> {
        let def = self.get(key)?;
        if def.is_default() {
            return Err(NetworkError::BadInput(
                "bridge is a pre-defined network and cannot be removed".into(),
            ));
        }
        let _l = super::lock_file(&self.dir().join(".lock"))?;
        if !self.active_endpoints(&def.name).is_empty() {
            return Err(NetworkError::InUse(def.name.clone()));
        }
        super::firewall::remove_isolation(&def)?;
        super::names::drop_network(&def);
        delete_link(&def.bridge);
        let _ = std::fs::remove_dir_all(super::ipam_dir(&def));
        std::fs::remove_file(self.def_path(&def.name))
            .map_err(|e| NetworkError::io(format!("removing network {}", def.name), e))?;
        super::claims::release(&def.id);
        Ok(def)
    }
}

/// Deletes a network device (gone already: nothing to do).
pub fn delete_link(dev: &str) {
    if Path::new("/sys/class/net").join(dev).exists() {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", dev])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn valid_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(NetworkError::BadInput(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// The first /24 of [`USER_POOL`] that overlaps nothing in `taken`.
fn next_free(taken: &[(Subnet, String)]) -> Result<Subnet, NetworkError> {
    let pool: Subnet = USER_POOL.parse().expect("valid pool");
    (0..=255u32)
        .map(|i| Subnet {
            addr: std::net::Ipv4Addr::from(u32::from(pool.addr) + (i << 8)),
            prefix: 24,
        })
        .find(|s| !taken.iter().any(|(t, _)| t.overlaps(s)))
        .ok_or_else(|| {
            NetworkError::BadInput(format!(
                "no free /24 left in {USER_POOL}: remove networks or give --subnet"
            ))
        })
}

/// The host's IPv4 routes (main table) with their devices, except the default route (the
/// caller leaves out its own networks' bridges: another store root's bridges count).
pub fn host_routes() -> Vec<(Subnet, String)> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "show"])
        .output();
    let Ok(out) = out else { return vec![] };
    parse_routes(&String::from_utf8_lossy(&out.stdout))
}

fn parse_routes(text: &str) -> Vec<(Subnet, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let dst = w.next()?;
            let words: Vec<&str> = w.collect();
            let dev = words
                .windows(2)
                .find(|p| p[0] == "dev")
                .map(|p| p[1].to_string())
                .unwrap_or_default();
            let s = if dst.contains('/') {
                let (a, p) = dst.split_once('/')?;
                Subnet {
                    addr: a.parse().ok()?,
                    prefix: p.parse().ok()?,
                }
            } else {
                Subnet {
                    addr: dst.parse().ok()?,
                    prefix: 32,
                }
            };
            (s.prefix > 0).then_some((s, dev))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_remove_user_networks() {
        let root = tempfile::tempdir().unwrap();
        let nets = Networks::open(root.path(), Some("10.77.0.0/16")).unwrap();
        assert_eq!(nets.default_network().subnet.to_string(), "10.77.0.0/16");
        let a = nets
            .create(&CreateNetwork {
                name: "a".into(),
                subnet: Some("10.91.3.0/24".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.gateway.to_string(), "10.91.3.1");
        assert_eq!(a.bridge, format!("xrbr-{}", &a.id[..8]));
        assert!(a.bridge.len() <= 15);
        assert_eq!(nets.get("a").unwrap(), a);
        assert_eq!(nets.get(&a.id[..6]).unwrap(), a);
        let over = nets.create(&CreateNetwork {
            name: "b".into(),
            subnet: Some("10.91.0.0/16".parse().unwrap()),
            ..Default::default()
        });
        assert!(
            matches!(over, Err(NetworkError::BadInput(m)) if m.contains("overlaps with network a"))
        );
        assert!(matches!(
            nets.create(&CreateNetwork {
                name: "a".into(),
                ..Default::default()
            }),
            Err(NetworkError::Exists(_))
        ));
        assert!(
            nets.create(&CreateNetwork {
                name: "bridge".into(),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            nets.create(&CreateNetwork {
                name: "g".into(),
                subnet: Some("10.91.4.0/24".parse().unwrap()),
                gateway: Some("10.91.5.1".parse().unwrap()),
                ..Default::default()
            })
            .is_err()
        );
        let names: Vec<String> = nets.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "a"]);
        nets.remove("a").unwrap();
        assert!(matches!(nets.get("a"), Err(NetworkError::NotFound(_))));
    }

    #[test]
    fn routes_and_pool() {
        let r = parse_routes(
            "default via 192.0.2.1 dev eth0\n192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n10.87.0.0/16 dev xrun0 proto kernel\n10.90.0.0/24 dev cni-podman1\n",
        );
        assert_eq!(r.len(), 3, "every route but the default one");
        assert_eq!(r[1].1, "xrun0");
        assert_eq!(r[2].0.to_string(), "10.90.0.0/24");
        let s = next_free(&r).unwrap();
        assert_eq!(s.to_string(), "10.90.1.0/24");
    }
}
