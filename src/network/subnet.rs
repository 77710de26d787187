//! [`Subnet`]: an IPv4 network in CIDR notation (`10.87.0.0/16`).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// An IPv4 network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

impl Subnet {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first host address (the gateway by default).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` can be given to a host: inside, not the network or broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.addr && ip != self.broadcast()
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;
    /// Parses `A.B.C.D/N`; host bits must be zero and the prefix between 8 and 30.
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = |why: &str| format!("invalid subnet {s:?}: {why}");
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected A.B.C.D/N (IPv4 only)"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 30"));
        }
        let n = Subnet { addr, prefix };
        if u32::from(addr) & !n.mask() != 0 {
            return Err(bad(&format!(
                "host bits are set (did you mean {}/{prefix}?)",
                Ipv4Addr::from(u32::from(addr) & n.mask())
            )));
        }
        Ok(n)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contains_overlap() {
        let a: Subnet = "10.87.0.0/16".parse().unwrap();
        assert!(a.contains("10.87.3.4".parse().unwrap()));
        assert!(!a.contains("10.88.0.1".parse().unwrap()));
        assert_eq!(a.first_host().to_string(), "10.87.0.1");
        assert_eq!(a.broadcast().to_string(), "10.87.255.255");
        let b: Subnet = "10.87.5.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        let c: Subnet = "10.90.0.0/24".parse().unwrap();
        assert!(!a.overlaps(&c));
        assert!("10.87.0.1/16".parse::<Subnet>().is_err());
        assert!("10.87.0.0".parse::<Subnet>().is_err());
        assert!("10.87.0.0/31".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
    }
}
