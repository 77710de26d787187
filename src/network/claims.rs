//! Host-wide claims on user networks' subnets.
//!
//! Bridges, routes and IPAM leases are host-wide, but network definitions live in a store
//! root, and a network's bridge only appears when its first container starts. So two store
//! roots could each pick the same free /24, and whichever bridge came second would lose the
//! host route. Each user network therefore claims its subnet under
//! `/run/xrun/net/subnets/<network id>.json` when it is created (and again whenever it is
//! joined, so claims come back after a reboot); a claim whose definition file is gone, or
//! names another id, is stale and ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{NetworkDef, NetworkError, RUN_NET_DIR, Subnet};

/// One network's claim on its subnet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claim {
    /// The network's id.
    pub id: String,
    /// Its name (in its own store root).
    pub name: String,
    /// The subnet it holds.
    pub subnet: Subnet,
    /// Its definition file: the claim is live while this file names the same id.
    pub def_path: PathBuf,
}

fn claims_dir() -> PathBuf {
    Path::new(RUN_NET_DIR).join("subnets")
}

fn claim_path(id: &str) -> PathBuf {
    claims_dir().join(format!("{id}.json"))
}

/// Whether `claim` still stands for a network that exists.
fn is_live(claim: &Claim) -> bool {
    std::fs::read(&claim.def_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<NetworkDef>(&b).ok())
        .is_some_and(|d| d.id == claim.id)
}

/// The live claims of every store root on this host.
pub fn live() -> Vec<Claim> {
    std::fs::read_dir(claims_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice::<Claim>(&std::fs::read(e.path()).ok()?).ok())
        .filter(is_live)
        .collect()
}

/// A live claim of another network on a subnet overlapping `subnet`.
pub fn conflicting(id: &str, subnet: &Subnet) -> Option<Claim> {
    live()
        .into_iter()
        .find(|c| c.id != id && c.subnet.overlaps(subnet))
}

/// Claims `def`'s subnet for it (idempotent); refuses when another live network holds an
/// overlapping one.
pub fn claim(def: &NetworkDef, def_path: &Path) -> Result<(), NetworkError> {
    if let Some(other) = conflicting(&def.id, &def.subnet) {
        return Err(NetworkError::BadInput(format!(
            "network {}: subnet {} overlaps with network {} ({}) of {}: remove one of them",
            def.name,
            def.subnet,
            other.name,
            other.subnet,
            other
                .def_path
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("?"))
                .display()
        )));
    }
    let path = claim_path(&def.id);
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(claims_dir())
        .map_err(|e| NetworkError::io("creating /run/xrun/net/subnets", e))?;
    let c = Claim {
        id: def.id.clone(),
        name: def.name.clone(),
        subnet: def.subnet,
        def_path: def_path.to_path_buf(),
    };
    super::write_atomic(&path, &serde_json::to_vec(&c).expect("serializable"))
}

/// Drops network `id`'s claim (none: nothing to do).
pub fn release(id: &str) {
    let _ = std::fs::remove_file(claim_path(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: &str, subnet: &str, path: &Path) -> NetworkDef {
        let d = NetworkDef {
            id: id.into(),
            name: format!("n{}", &id[..4]),
            driver: "bridge".into(),
            subnet: subnet.parse().unwrap(),
            gateway: subnet.parse::<Subnet>().unwrap().first_host(),
            bridge: format!("xrbr-{}", &id[..8]),
            internal: false,
            labels: Default::default(),
            created: String::new(),
        };
        std::fs::write(path, serde_json::to_vec(&d).unwrap()).unwrap();
        d
    }

    #[test]
    fn live_only_while_the_definition_names_the_same_id() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.json");
        let a = def("a1a1a1a1a1", "10.123.0.0/24", &p);
        let c = Claim {
            id: a.id.clone(),
            name: a.name.clone(),
            subnet: a.subnet,
            def_path: p.clone(),
        };
        assert!(is_live(&c));
        def("b2b2b2b2b2", "10.123.0.0/24", &p);
        assert!(!is_live(&c), "the file now names another network");
        std::fs::remove_file(&p).unwrap();
        assert!(!is_live(&c), "the definition is gone");
    }
}
