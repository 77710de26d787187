//! The VM route on a network: qemu in a network namespace the test made (a veth pair to a
//! bridge of the test's own, 10.98.N.0/24), the guest taking over the namespace's `eth0`
//! (same MAC, same address) through a tap and tc mirred filters. The host fetches a page
//! from busybox httpd in the guest over that bridge; traffic goes only to the guest's
//! address inside the test's bridge. Real qemu (TCG) boots: few, and serialized.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xrun::digest::Digest;
use xrun::vm::{self, Guest, GuestNic, VmIo, VmNetwork, VmSpec};

static BOOTS: Mutex<()> = Mutex::new(());

/// A sink tests can read back.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The guest for `arch` (built or found cached by ci/guest-image), or `None` with the
/// reason printed when the VM route cannot work here.
fn guest(arch: &str) -> Option<Guest> {
    if !common::is_root() {
        common::skip("network namespaces and taps need root");
        return None;
    }
    let bin = match arch {
        "amd64" => "qemu-system-x86_64",
        _ => "qemu-system-aarch64",
    };
    if vm::qemu::find_binary(bin, None).is_err() {
        common::skip(&format!("{bin} is not installed"));
        return None;
    }
    for tool in ["ip", "tc"] {
        if vm::qemu::find_binary(tool, Some("/usr/sbin:/sbin:/usr/bin:/bin".as_ref())).is_err() {
            common::skip(&format!("{tool} (iproute2) is not installed"));
            return None;
        }
    }
    let st = Command::new(common::repo_root().join("ci/guest-image"))
        .args(["--arch", arch])
        .status()
        .expect("run ci/guest-image");
    assert!(st.success(), "ci/guest-image --arch {arch} failed");
    Some(Guest::from_dir(&PathBuf::from("/var/cache/xrun-ci/guest").join(arch)).unwrap())
}

/// A one-layer busybox image (with httpd and ip) from the busybox-static .deb of `arch`.
fn busybox_layer(arch: &str, dir: &Path) -> PathBuf {
    let deb = fs::read_dir("/var/cache/xrun-ci/debs")
        .expect("ci/fetch-debs has run")
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("busybox-static_") && n.ends_with(&format!("_{arch}.deb"))
        })
        .expect("busybox-static deb in /var/cache/xrun-ci/debs (ci/fetch-debs)");
    let x = dir.join(format!("deb-{arch}"));
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let layer = dir.join(format!("layer-{arch}"));
    fs::create_dir_all(layer.join("bin")).unwrap();
    fs::create_dir_all(layer.join("etc")).unwrap();
    fs::copy(x.join("bin/busybox"), layer.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "uname", "cat", "mkdir", "ip", "httpd", "hostname", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
    }
    // A symlinked resolv.conf, as some images have: the guest replaces it.
    std::os::unix::fs::symlink("../run/resolv.conf", layer.join("etc/resolv.conf")).unwrap();
    layer
}

/// The test's network: a namespace with `eth0` (a veth whose peer is on a bridge of the
/// test's own, 10.98.N.1/24), `eth0` holding 10.98.N.2/24 and a default route, as a CNI
/// bridge attachment leaves it. Dropping it removes the namespace, the veth and the bridge.
struct TestNet {
    ns: String,
    bridge: String,
    net: u8,
}

impl TestNet {
    fn new(tag: u8) -> TestNet {
        let pid = std::process::id();
        let net = (pid % 100) as u8 + 100 + tag;
        let prefix = format!("10.98.{net}.");
        let routes = sh("ip -4 route");
        assert!(
            !routes.contains(&prefix),
            "10.98.{net}.0/24 is already routed here:\n{routes}"
        );
        let t = TestNet {
            ns: format!("xrvmnet{pid}-{tag}"),
            bridge: format!("xrvb{}{tag}", pid % 100000),
            net,
        };
        let host = format!("xrvh{}{tag}", pid % 100000);
        sh(&format!(
            "set -e
             ip netns add {ns}
             ip link add {br} type bridge
             ip addr add 10.98.{net}.1/24 dev {br}
             ip link set {br} up
             ip link add {host} type veth peer name eth0 netns {ns}
             ip link set {host} master {br} up
             ip -n {ns} link set eth0 address {mac}
             ip -n {ns} addr add 10.98.{net}.2/24 dev eth0
             ip -n {ns} link set eth0 up
             ip -n {ns} link set lo up
             ip -n {ns} route add default via 10.98.{net}.1",
            ns = t.ns,
            br = t.bridge,
            mac = t.mac(),
        ));
        t
    }

    fn mac(&self) -> String {
        format!("02:42:0a:62:{:02x}:02", self.net)
    }

    fn guest_addr(&self) -> String {
        format!("10.98.{}.2", self.net)
    }

    fn network(&self) -> VmNetwork {
        VmNetwork {
            netns: PathBuf::from("/run/netns").join(&self.ns),
            nics: vec![GuestNic {
                ifname: "eth0".into(),
                mac: self.mac(),
                address: self.guest_addr().parse().unwrap(),
                prefix: 24,
                gateway: Some(format!("10.98.{}.1", self.net).parse().unwrap()),
            }],
            resolv_conf: Some(format!("nameserver 10.98.{}.1\n", self.net)),
            hosts: Some(format!(
                "127.0.0.1\tlocalhost\n{}\tvmweb\n",
                self.guest_addr()
            )),
        }
    }

    /// What is in the namespace: links and the ingress qdiscs.
    fn links(&self) -> String {
        sh(&format!("ip -n {} -o link show", self.ns))
    }
    fn qdiscs(&self) -> String {
        sh(&format!("ip netns exec {} tc qdisc show", self.ns))
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// `GET http://addr/` until it answers (the guest boots and starts httpd first), bounded.
fn fetch_until(addr: &str, bound: Duration) -> common::HttpResponse {
    let start = Instant::now();
    loop {
        match common::http_get(&format!("{addr}:80"), "/", None, &[]) {
            Ok(r) => return r,
            Err(e) if start.elapsed() > bound => panic!("no answer from {addr} in {bound:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Boots `arch`'s guest in the test's namespace, serves a page with busybox httpd, fetches it
/// from the host over the bridge, checks what the guest saw, stops it, and checks the
/// namespace has no tap or filter left.
fn serves_http_over_the_bridge(arch: &str, uname: &str) {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest(arch) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer(arch, tmp.path());
    let net = TestNet::new(if arch == "amd64" { 0 } else { 1 });
    let links_before = net.links();

    let (o, e) = (Buf::default(), Buf::default());
    let spec = VmSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "ip -o link show; ip -o -4 addr show; ip route; cat /etc/resolv.conf /etc/hosts; \
             uname -m; mkdir -p /www; echo hello-from-the-vm > /www/index.html; echo READY; \
             exec httpd -f -p 80 -h /www"
                .into(),
        ],
        env: vec!["PATH=/bin".into()],
        boot_timeout: Duration::from_secs(240),
        network: Some(net.network()),
        ..Default::default()
    };
    let mut run = vm::start_image(
        &g,
        &tmp.path().join("rootfs-cache"),
        &Digest::of(layer.to_string_lossy().as_bytes()),
        std::slice::from_ref(&layer),
        &spec,
        VmIo::new(Box::new(o.clone()), Box::new(e.clone())),
    )
    .unwrap();
    assert!(run.wait_started().unwrap(), "stderr: {}", e.text());
    // In the namespace: the tap, and both ingress filters.
    assert!(net.links().contains(": tap0:"), "{}", net.links());
    let q = net.qdiscs();
    assert!(
        q.contains("qdisc ingress ffff: dev eth0") && q.contains("qdisc ingress ffff: dev tap0"),
        "{q}"
    );

    let r = fetch_until(&net.guest_addr(), Duration::from_secs(120));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello-from-the-vm\n");
    // The neighbour that answered is the guest's NIC: the namespace's MAC, which no one else
    // answers for (the namespace's own stack never sees the frames).
    let neigh = sh(&format!(
        "ip neigh show {} dev {}",
        net.guest_addr(),
        net.bridge
    ));
    assert!(neigh.contains(&net.mac()), "{neigh}");

    let out = o.text();
    assert!(out.contains("READY"), "stdout: {out}\nstderr: {}", e.text());
    let guest_links: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(": <"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(guest_links, ["lo:", "eth0:"], "stdout: {out}");
    assert!(out.contains(&format!("link/ether {}", net.mac())), "{out}");
    assert!(
        out.contains(&format!("eth0    inet {}/24", net.guest_addr()))
            || out.contains(&format!("inet {}/24", net.guest_addr())),
        "{out}"
    );
    assert!(
        out.contains(&format!("default via 10.98.{}.1 dev eth0", net.net)),
        "{out}"
    );
    assert!(
        out.contains(&format!("nameserver 10.98.{}.1\n", net.net)),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}\tvmweb\n", net.guest_addr())),
        "{out}"
    );
    assert!(out.contains(&format!("\n{uname}\n")), "{out}");

    // SIGTERM to httpd ends the VM; the tap and the filters go with it.
    run.control().signal(15);
    let exit = run.wait().unwrap();
    assert_eq!(exit.code, 143, "stderr: {}", e.text());
    assert_eq!(net.links(), links_before);
    let q = net.qdiscs();
    assert!(!q.contains("ingress"), "{q}");
}

#[test]
fn amd64_guest_serves_http_on_the_namespace_address() {
    serves_http_over_the_bridge("amd64", "x86_64");
}

#[test]
fn arm64_guest_serves_http_on_the_namespace_address() {
    serves_http_over_the_bridge("arm64", "aarch64");
}

#[test]
fn without_a_network_the_guest_has_only_lo_up() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest("amd64") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let layer = busybox_layer("amd64", tmp.path());
    let (o, e) = (Buf::default(), Buf::default());
    let spec = VmSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "ip -o link show; ip -o -4 addr show".into(),
        ],
        env: vec!["PATH=/bin".into()],
        boot_timeout: Duration::from_secs(240),
        ..Default::default()
    };
    let exit = vm::run_image(
        &g,
        &tmp.path().join("rootfs-cache"),
        &Digest::of(layer.to_string_lossy().as_bytes()),
        std::slice::from_ref(&layer),
        &spec,
        VmIo::new(Box::new(o.clone()), Box::new(e.clone())),
    )
    .unwrap();
    assert_eq!(exit.code, 0, "stderr: {}", e.text());
    let out = o.text();
    let links: Vec<&str> = out.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].starts_with("1: lo: <LOOPBACK,UP"), "{out}");
    assert!(out.contains("inet 127.0.0.1/8"), "{out}");
}

#[test]
fn a_missing_interface_is_refused_and_nothing_is_left() {
    if !common::is_root() {
        return common::skip("network namespaces need root");
    }
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let net = TestNet::new(2);
    let before = net.links();
    let mut n = net.network();
    n.nics.push(GuestNic {
        ifname: "eth1".into(),
        ..n.nics[0].clone()
    });
    let err = vm::net::attach(&n).unwrap_err().to_string();
    assert!(err.contains("has no interface eth1"), "{err}");
    let mut n = net.network();
    n.nics[0].mac = "02:00:00:00:00:01".into();
    let err = vm::net::attach(&n).unwrap_err().to_string();
    assert!(err.contains("has MAC"), "{err}");
    assert_eq!(net.links(), before);
    assert!(!net.qdiscs().contains("ingress"));
}
