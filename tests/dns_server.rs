//! `xrun::network::dns::DnsServer` against the real aardvark-dns, on bridges, veths and
//! network namespaces this test makes itself (10.99.71.0/24 and 10.99.72.0/24), queried
//! with busybox `nslookup` from inside those namespaces. Only names the server holds are
//! queried, all single-label (aardvark-dns answers NXDOMAIN for unknown single-label names
//! and never forwards them), and every test container's upstream is 127.0.0.1: nothing
//! leaves the machine.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{is_root, skip};
use xrun::network::dns::{DnsError, DnsRecord, DnsServer};

const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";

/// Runs a command, panics with its output when it fails.
fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the lab made, removed on drop (also when an assertion fails).
struct Lab {
    tag: String,
    bridges: Vec<String>,
    netns: Vec<String>,
    conf: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let tag = format!("{:04x}", std::process::id() & 0xffff);
        Lab {
            tag,
            bridges: Vec::new(),
            netns: Vec::new(),
            conf: tempfile::tempdir().unwrap(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.conf.path().join("aardvark")
    }

    fn server(&self) -> DnsServer {
        DnsServer::at(&self.config_dir()).with_binary(Path::new(AARDVARK))
    }

    /// A bridge with `gateway`/24, up.
    fn bridge(&mut self, n: u8, gateway: Ipv4Addr) {
        let name = format!("xdt{}b{n}", self.tag);
        sh(&["ip", "link", "add", &name, "type", "bridge"]);
        self.bridges.push(name.clone());
        sh(&["ip", "addr", "add", &format!("{gateway}/24"), "dev", &name]);
        sh(&["ip", "link", "set", &name, "up"]);
    }

    /// A netns "container" with `addr`/24 on bridge `n`; returns the netns name.
    fn container(&mut self, bridge: u8, n: u8, addr: Ipv4Addr) -> String {
        let ns = format!("xrun-dnstest-{}-{n}", self.tag);
        let host = format!("xdt{}v{n}", self.tag);
        sh(&["ip", "netns", "add", &ns]);
        self.netns.push(ns.clone());
        sh(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        sh(&[
            "ip",
            "link",
            "set",
            &host,
            "master",
            &format!("xdt{}b{bridge}", self.tag),
            "up",
        ]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        // No search domains inside: busybox must query exactly the name given.
        let etc = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        ns
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(pid) = self.server().pid() {
            // SAFETY: kill(2) of the aardvark-dns this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
        // Only when empty: other tools keep their namespaces' files there too.
        let _ = std::fs::remove_dir("/etc/netns");
        for br in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", br]).status();
        }
    }
}

/// The IPv4 addresses `name` resolves to, asked from inside `ns` to `server`; empty when the
/// server says it does not exist.
fn lookup(ns: &str, name: &str, server: Ipv4Addr) -> Vec<Ipv4Addr> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "nslookup", "-type=a", name])
        .arg(server.to_string())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("NXDOMAIN") {
        return Vec::new();
    }
    assert!(out.status.success(), "nslookup {name} in {ns}: {text}");
    // Answers follow the "Name:" line; the server's own address comes before it.
    text.lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn rec(id: &str, ip: Ipv4Addr, names: &[&str]) -> DnsRecord {
    DnsRecord {
        container_id: id.repeat(64 / id.len()),
        ipv4: vec![ip],
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

fn prerequisites() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (bridges, netns)");
    }
    if !Path::new(AARDVARK).exists() {
        return Some("aardvark-dns is not installed (Debian package aardvark-dns)");
    }
    if Command::new("busybox").arg("true").status().is_err() {
        return Some("busybox is not installed");
    }
    let routes = Command::new("ip").args(["-4", "route"]).output().ok()?;
    let routes = String::from_utf8_lossy(&routes.stdout);
    if routes.contains("10.99.71.") || routes.contains("10.99.72.") {
        return Some("10.99.71.0/24 or 10.99.72.0/24 is in use on this host");
    }
    None
}

#[test]
fn names_follow_adds_and_removes_on_independent_networks() {
    if let Some(why) = prerequisites() {
        return skip(why);
    }
    let mut lab = Lab::new();
    let (gw_a, gw_b) = (Ipv4Addr::new(10, 99, 71, 1), Ipv4Addr::new(10, 99, 72, 1));
    let (ip1, ip2, ip3) = (
        Ipv4Addr::new(10, 99, 71, 2),
        Ipv4Addr::new(10, 99, 71, 3),
        Ipv4Addr::new(10, 99, 72, 2),
    );
    lab.bridge(1, gw_a);
    lab.bridge(2, gw_b);
    let c1 = lab.container(1, 1, ip1);
    let c2 = lab.container(1, 2, ip2);
    let c3 = lab.container(2, 3, ip3);
    let server = lab.server();
    let local: &[IpAddr] = &[IpAddr::V4(Ipv4Addr::LOCALHOST)];

    // The first record starts the server; later ones reload the same process. A descriptor
    // its starter left inheritable (a pipe, here) does not stay open in it.
    let mut pipe = [0; 2];
    // SAFETY: pipe(2) into a local array; both ends are closed below.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let web = rec("a1", ip1, &["web", "www", "a1a1a1a1a1a1"]);
    server.add("neta", gw_a, local, &web).unwrap();
    // SAFETY: closing the two descriptors made above.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    let pid = server.pid().expect("aardvark-dns runs after the first add");
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| !t.starts_with("socket:") && !t.starts_with("anon_inode:") && t != "/dev/null")
        .collect();
    assert!(held.is_empty(), "aardvark-dns holds its starter's {held:?}");
    server
        .add("neta", gw_a, local, &rec("b2", ip2, &["db"]))
        .unwrap();
    server
        .add("netb", gw_b, local, &rec("c3", ip3, &["cache"]))
        .unwrap();
    assert_eq!(server.pid(), Some(pid), "a reload, not a new server");

    // Names and aliases resolve on the network, whatever their case.
    for name in ["web", "www", "a1a1a1a1a1a1", "WEB"] {
        assert_eq!(lookup(&c2, name, gw_a), [ip1], "{name}");
    }
    assert_eq!(lookup(&c1, "db", gw_a), [ip2]);
    // The second network is independent.
    assert_eq!(lookup(&c3, "cache", gw_b), [ip3]);
    assert_eq!(lookup(&c3, "web", gw_b), Vec::<Ipv4Addr>::new());
    assert_eq!(lookup(&c1, "cache", gw_a), Vec::<Ipv4Addr>::new());

    // Adding a container again replaces its names.
    server
        .add("neta", gw_a, local, &rec("a1", ip1, &["web2"]))
        .unwrap();
    assert_eq!(lookup(&c2, "web2", gw_a), [ip1]);
    assert_eq!(lookup(&c2, "web", gw_a), Vec::<Ipv4Addr>::new());

    // A removed container's names are gone at once.
    server.remove("neta", &web.container_id).unwrap();
    assert_eq!(lookup(&c2, "web2", gw_a), Vec::<Ipv4Addr>::new());
    assert_eq!(lookup(&c1, "db", gw_a), [ip2]);
    server.remove("neta", &web.container_id).unwrap(); // twice: not an error

    // A server that died leaves a pid file behind: the next add starts a new one, which
    // serves every network's file.
    // SAFETY: kill(2) of the aardvark-dns this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    while alive(pid) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(lab.config_dir().join("aardvark.pid").exists());
    assert_eq!(server.pid(), None);
    server.add("neta", gw_a, local, &web).unwrap();
    let pid2 = server.pid().expect("a new server");
    assert_ne!(pid2, pid);
    assert_eq!(lookup(&c2, "web", gw_a), [ip1]);
    assert_eq!(lookup(&c1, "db", gw_a), [ip2]);
    assert_eq!(lookup(&c3, "cache", gw_b), [ip3]);

    // Concurrent adds (eight threads) lose nothing: the lock serializes them.
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let server = &server;
            s.spawn(move || {
                let id = format!("{:x}", 0xd0 + i);
                let name = format!("many{i}");
                let r = rec(&id, Ipv4Addr::new(10, 99, 71, 10 + i), &[name.as_str()]);
                server.add("neta", gw_a, local, &r).unwrap();
            });
        }
    });
    for i in 0..8u8 {
        assert_eq!(
            lookup(&c2, &format!("many{i}"), gw_a),
            [Ipv4Addr::new(10, 99, 71, 10 + i)]
        );
    }

    // A container on both networks: one call takes it off both.
    let both_a = rec("f6", Ipv4Addr::new(10, 99, 71, 30), &["both"]);
    let both_b = DnsRecord {
        ipv4: vec![Ipv4Addr::new(10, 99, 72, 30)],
        ..both_a.clone()
    };
    server.add("neta", gw_a, local, &both_a).unwrap();
    server.add("netb", gw_b, local, &both_b).unwrap();
    assert_eq!(lookup(&c2, "both", gw_a), both_a.ipv4);
    assert_eq!(lookup(&c3, "both", gw_b), both_b.ipv4);
    server.remove_everywhere(&both_a.container_id).unwrap();
    assert_eq!(lookup(&c2, "both", gw_a), Vec::<Ipv4Addr>::new());
    assert_eq!(lookup(&c3, "both", gw_b), Vec::<Ipv4Addr>::new());
    assert_eq!(lookup(&c3, "cache", gw_b), [ip3]);

    // The last removals stop the server and leave the directory empty.
    for i in 0..8u8 {
        let id = format!("{:x}", 0xd0 + i).repeat(32);
        server.remove("neta", &id).unwrap();
    }
    server.remove("neta", &web.container_id).unwrap();
    assert_eq!(server.pid(), Some(pid2), "netb still has a container");
    server.remove("neta", &"b2".repeat(32)).unwrap();
    assert!(!lab.config_dir().join("neta").exists());
    assert_eq!(lookup(&c3, "cache", gw_b), [ip3]);
    server.remove_network("netb").unwrap();
    assert_eq!(server.pid(), None);
    assert!(
        !alive(pid2),
        "aardvark-dns still runs after the last removal"
    );
    let left: Vec<_> = std::fs::read_dir(lab.config_dir()).unwrap().collect();
    assert!(left.is_empty(), "left in the config dir: {left:?}");
}

#[test]
fn a_gateway_that_is_not_here_is_refused_before_anything_is_written() {
    if let Some(why) = prerequisites() {
        return skip(why);
    }
    let lab = Lab::new();
    let server = lab.server();
    // 10.99.73.1 is on no interface (no bridge was made for it).
    let err = server
        .add(
            "nowhere",
            Ipv4Addr::new(10, 99, 73, 1),
            &[],
            &rec("e5", Ipv4Addr::new(10, 99, 73, 2), &["ghost"]),
        )
        .unwrap_err();
    assert!(matches!(err, DnsError::NoGateway { .. }), "{err}");
    assert!(err.to_string().contains("10.99.73.1"), "{err}");
    assert!(!lab.config_dir().exists());
    assert_eq!(server.pid(), None);
}
