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
    Some(common::ci_guest(arch))
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

/// `GET http://ADDR:PORT/` until it answers (the guest boots and starts httpd first), bounded.
fn fetch_until(addr: &str, bound: Duration) -> common::HttpResponse {
    let start = Instant::now();
    loop {
        match common::http_get(addr, "/", None, &[]) {
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

    let r = fetch_until(
        &format!("{}:80", net.guest_addr()),
        Duration::from_secs(120),
    );
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

// ------------------------------------------------------------------------------------------
// VM containers through the CLI: the same CNI attachment as native ones, the guest on it.

const IMAGE: &str = "localhost/busybox-amd64:latest";

fn xrun(env: &common::TestEnv, args: &[&str]) -> std::process::Output {
    env.cmd().args(args).output().unwrap()
}

/// Removes a container (`rm -f`) or a network (`network rm`) when dropped, so a failing test
/// leaves no VM, namespace or rule behind (its store root goes with the environment).
struct Undo<'a>(&'a common::TestEnv, Vec<&'static str>, String);

impl Undo<'_> {
    fn container<'a>(env: &'a common::TestEnv, id: &str) -> Undo<'a> {
        Undo(env, vec!["rm", "-f"], id.to_string())
    }
    fn network<'a>(env: &'a common::TestEnv, name: &str) -> Undo<'a> {
        Undo(env, vec!["network", "rm"], name.to_string())
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let mut args = self.1.clone();
        args.push(&self.2);
        let _ = self.0.cmd().args(&args).output();
    }
}

fn show(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What a container's network leaves on the host: its namespace mount, its host-side veth,
/// iptables rules naming it, IPAM leases naming it (`id`: its id or a prefix of it). Empty
/// once it is gone.
fn traces(_env: &common::TestEnv, id: &str, veth: &str) -> Vec<String> {
    let mut t = Vec::new();
    for e in fs::read_dir("/run/xrun/net/ns")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with(id) {
            t.push(format!("netns {}", e.path().display()));
        }
    }
    if !veth.is_empty() && sh("ip -o link show").contains(&format!(": {veth}@")) {
        t.push(format!("veth {veth}"));
    }
    t.extend(
        sh("iptables-save")
            .lines()
            .filter(|l| l.contains(id))
            .map(|l| format!("rule {l}")),
    );
    // host-local's leases (host-wide, one directory per bridge and network).
    let mut stack = vec![PathBuf::from("/run/xrun/net/ipam")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if fs::read_to_string(&p).is_ok_and(|s| s.contains(id)) {
                t.push(format!("lease {}", p.display()));
            }
        }
    }
    t
}

/// The host-side veth of the container's `eth0` (its peer, found from `eth0@ifN`).
fn host_veth(id: &str) -> String {
    let l = sh(&format!(
        "nsenter --net=/run/xrun/net/ns/{id} ip -o link show dev eth0"
    ));
    let idx = l
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.trim_end_matches(':').split_once("@if"))
        .map(|(_, i)| i.to_string())
        .unwrap_or_else(|| panic!("no eth0@ifN in {l}"));
    sh("ip -o link show")
        .lines()
        .find(|l| l.starts_with(&format!("{idx}: ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no host link {idx}"))
}

#[test]
fn a_vm_container_serves_published_ports_and_leaves_nothing_after_stop_and_rm_f() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    let (p1, p2) = (common::free_port(), common::free_port());
    let (a1, a2) = (format!("127.0.0.1:{p1}:80"), format!("{p2}:80"));
    let o = xrun(
        &env,
        &[
            "run",
            "-d",
            "--route",
            "vm",
            "-p",
            &a1,
            "-p",
            &a2,
            IMAGE,
            "sh",
            "-c",
            "mkdir -p /www; echo served-by-the-guest > /www/index.html; exec httpd -f -p 80 -h /www",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let _undo = Undo::container(&env, &id);
    let mut veth = String::new();

    for round in 0..2 {
        // Its namespace, veth and rules exist while it runs (so the checks below can fail).
        veth = host_veth(&id);
        let t = traces(&env, &id, &veth);
        assert!(t.iter().any(|l| l.starts_with("netns")), "{t:?}");
        assert!(t.iter().any(|l| l.starts_with("veth")), "{t:?}");
        assert!(t.iter().any(|l| l.starts_with("rule")), "{t:?}");

        // Through 127.0.0.1 on both published ports, and at the container's own address.
        let r = fetch_until(&format!("127.0.0.1:{p1}"), Duration::from_secs(120));
        assert_eq!(r.body, b"served-by-the-guest\n", "round {round}");
        let r = common::http_get(&format!("127.0.0.1:{p2}"), "/", None, &[]).unwrap();
        assert_eq!(r.body, b"served-by-the-guest\n");
        let o = xrun(&env, &["inspect", &id]);
        assert!(o.status.success(), "{}", show(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let addr = v[0]["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
        let r = common::http_get(&format!("{addr}:80"), "/", None, &[]).unwrap();
        assert_eq!(r.body, b"served-by-the-guest\n");
        let o = xrun(&env, &["port", &id]);
        let ports = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            ports.contains(&format!("80/tcp -> 127.0.0.1:{p1}"))
                && ports.contains(&format!("80/tcp -> 0.0.0.0:{p2}")),
            "{}",
            show(&o)
        );

        if round == 0 {
            // stop: the network goes with the VM; start: it comes back.
            let o = xrun(&env, &["stop", &id]);
            assert!(o.status.success(), "{}", show(&o));
            assert_eq!(traces(&env, &id, &veth), Vec::<String>::new());
            let o = xrun(&env, &["start", &id]);
            assert!(o.status.success(), "{}", show(&o));
        }
    }
    let o = xrun(&env, &["rm", "-f", &id]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(traces(&env, &id, &veth), Vec::<String>::new());
}

#[test]
fn a_foreground_vm_container_gets_its_address_route_and_dns_on_the_default_bridge() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    let o = xrun(
        &env,
        &[
            "run",
            "--rm",
            "--route",
            "vm",
            "--name",
            "vmfg",
            "--dns",
            "10.98.0.53",
            "--add-host",
            "db.example:10.98.0.7",
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show dev eth0; ip route; cat /etc/resolv.conf /etc/hosts; \
             gw=$(ip route | awk '/^default/ {print $3}'); ping -c 1 -W 10 $gw; hostname",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let addr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address on eth0: {out}"));
    let ip = addr.split('/').next().unwrap();
    assert!(out.contains("default via "), "{out}");
    assert!(out.contains("nameserver 10.98.0.53\n"), "{out}");
    assert!(
        out.contains("10.98.0.7\tdb.example") || out.contains("10.98.0.7 db.example"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{ip}\t")),
        "its own address in /etc/hosts: {out}"
    );
    assert!(out.contains("1 packets received"), "{out}");
    // --rm: nothing of it is left (its hostname is its short id).
    let short = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(short.len(), 12, "{out}");
    assert_eq!(traces(&env, &short, ""), Vec::<String>::new());
}

#[test]
fn network_none_gives_the_guest_only_lo_and_host_or_container_is_refused() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    let o = xrun(
        &env,
        &[
            "run",
            "--rm",
            "--route",
            "vm",
            "--network",
            "none",
            IMAGE,
            "ip",
            "-o",
            "link",
            "show",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let links: Vec<&str> = out.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].starts_with("1: lo: <LOOPBACK,UP"), "{out}");

    for (mode, what) in [
        ("host", "--network host"),
        ("container:other", "--network container:NAME"),
    ] {
        let before = containers_in(&env.root());
        let o = xrun(
            &env,
            &[
                "run",
                "--rm",
                "--route",
                "vm",
                "--network",
                mode,
                IMAGE,
                "true",
            ],
        );
        assert_eq!(o.status.code(), Some(125), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("xrun: running"))
            .collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains(what) && lines[0].contains("vm route"),
            "{err}"
        );
        let after = containers_in(&env.root());
        assert_eq!(before, after, "a container was left: {err}");
    }
}

#[test]
fn egress_rate_shapes_what_the_guest_sends() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    // The guest under TCG sends ~40-50 mbit/s unshaped here: 10mbit is well below that.
    const RATE_MBIT: f64 = 10.0;
    const BLOCKS: u32 = 160; // 64 KiB each: 10 MiB, ~8 s at the rate.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let (mut n, mut first) = (0usize, None);
        loop {
            let k = std::io::Read::read(&mut c, &mut buf).unwrap();
            if k == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            n += k;
        }
        (n, first.map(|t| t.elapsed()))
    });
    // The guest sends to the default bridge's gateway (xrun's own bridge address).
    let o = xrun(
        &env,
        &[
            "run",
            "--rm",
            "--route",
            "vm",
            "--egress-rate",
            &format!("{RATE_MBIT}mbit"),
            IMAGE,
            "sh",
            "-c",
            &format!(
                "gw=$(ip route | awk '/^default/ {{print $3}}'); \
                 dd if=/dev/zero bs=65536 count={BLOCKS} 2>/dev/null | nc $gw {port}"
            ),
        ],
    );
    if !o.status.success() {
        // Unblock the sink before failing.
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        panic!("{}", show(&o));
    }
    let (n, took) = sink.join().unwrap();
    assert_eq!(n, BLOCKS as usize * 65536);
    let mbit = n as f64 * 8.0 / took.unwrap().as_secs_f64() / 1e6;
    assert!(
        (mbit - RATE_MBIT).abs() <= RATE_MBIT * 0.1,
        "measured {mbit:.1} mbit/s under --egress-rate {RATE_MBIT}mbit"
    );
}

/// The pids of container `id`'s process (qemu for a VM container) and its owner (monitor).
fn pid_and_owner(env: &common::TestEnv, id: &str) -> (i32, i32) {
    let rec: serde_json::Value = serde_json::from_slice(
        &fs::read(
            env.root()
                .join("containers")
                .join(id)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    (
        rec["pid"]["pid"].as_i64().unwrap() as i32,
        rec["owner"]["pid"].as_i64().unwrap() as i32,
    )
}

#[test]
fn a_killed_monitor_or_a_lost_namespace_leaves_nothing_once_xrun_looks() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    for lose_namespace in [false, true] {
        let port = common::free_port();
        let o = xrun(
            &env,
            &[
                "run",
                "-d",
                "--route",
                "vm",
                "-p",
                &format!("{port}:80"),
                IMAGE,
                "sleep",
                "600",
            ],
        );
        assert!(o.status.success(), "{}", show(&o));
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let _undo = Undo::container(&env, &id);
        let veth = host_veth(&id);
        let (qemu, monitor) = pid_and_owner(&env, &id);
        if lose_namespace {
            // As after a reboot: the namespace's mount is gone (qemu keeps it alive).
            let ns = format!("/run/xrun/net/ns/{id}");
            assert!(Command::new("umount").arg(&ns).status().unwrap().success());
            fs::remove_file(&ns).unwrap();
        }
        // SIGKILL to the monitor only: qemu dies with it (its parent-death signal).
        unsafe { libc::kill(monitor, libc::SIGKILL) };
        let end = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{qemu}")).exists() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!Path::new(&format!("/proc/{qemu}")).exists(), "qemu lives");
        let t = traces(&env, &id, &veth);
        assert!(
            t.iter().any(|l| l.starts_with("rule")),
            "rules were there to clean: {t:?}"
        );
        let o = xrun(&env, &["ps", "-a"]);
        assert!(o.status.success(), "{}", show(&o));
        assert_eq!(
            traces(&env, &id, &veth),
            Vec::<String>::new(),
            "lost namespace: {lose_namespace}"
        );
        let o = xrun(&env, &["rm", &id]);
        assert!(o.status.success(), "{}", show(&o));
    }
}

#[test]
fn a_stopped_vm_container_connected_to_a_second_network_boots_with_eth1() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    // A subnet of the test's own (not the next free one, which other stores pick too).
    let net = format!("vmnet{}", std::process::id());
    let subnet = format!("10.97.{}.0/24", std::process::id() % 200 + 20);
    let o = xrun(&env, &["network", "create", "--subnet", &subnet, &net]);
    assert!(o.status.success(), "{}", show(&o));
    let _undo_net = Undo::network(&env, &net);
    let o = xrun(
        &env,
        &[
            "create",
            "--route",
            "vm",
            "--name",
            "twonics",
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show; ip route; echo LISTED; mkdir -p /www; \
             echo on-both > /www/index.html; exec httpd -f -p 80 -h /www",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let _undo = Undo::container(&env, &id);
    // Stopped: recorded for the next boot.
    let o = xrun(&env, &["network", "connect", &net, "twonics"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = xrun(&env, &["start", "twonics"]);
    assert!(o.status.success(), "{}", show(&o));
    let mut logs = String::new();
    let end = Instant::now() + Duration::from_secs(60);
    while !logs.contains("LISTED") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        logs = String::from_utf8_lossy(&xrun(&env, &["logs", "twonics"]).stdout).into_owned();
    }
    let o = xrun(&env, &["inspect", &id]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nets = &v[0]["NetworkSettings"]["Networks"];
    let addr = |n: &str| {
        nets[n]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (a0, a1) = (addr("bridge"), addr(&net));
    assert!(!a0.is_empty() && !a1.is_empty(), "{nets}");
    assert!(logs.contains(&format!("eth0    inet {a0}/")), "{logs}");
    assert!(logs.contains(&format!("eth1    inet {a1}/")), "{logs}");
    assert_eq!(
        logs.lines()
            .filter(|l| l.starts_with("default via"))
            .count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("dev eth0"), "{logs}");
    // The guest answers on both networks' addresses (inside xrun's bridges).
    for a in [&a0, &a1] {
        let r = fetch_until(&format!("{a}:80"), Duration::from_secs(60));
        assert_eq!(r.body, b"on-both\n", "via {a}");
    }

    // Running: no NIC hotplug, one line, exit 125, nothing changes.
    let net2 = format!("vmnet{}b", std::process::id());
    let subnet2 = format!("10.96.{}.0/24", std::process::id() % 200 + 20);
    let o = xrun(&env, &["network", "create", "--subnet", &subnet2, &net2]);
    assert!(o.status.success(), "{}", show(&o));
    let _undo_net2 = Undo::network(&env, &net2);
    for args in [
        ["network", "disconnect", net.as_str(), "twonics"],
        ["network", "connect", net2.as_str(), "twonics"],
    ] {
        let o = xrun(&env, &args);
        assert_eq!(o.status.code(), Some(125), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("running VM container"), "{err}");
    }
    let veth = host_veth(&id);
    let o = xrun(&env, &["rm", "-f", &id]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(traces(&env, &id, &veth), Vec::<String>::new());
    let o = xrun(&env, &["network", "rm", &net]);
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn an_arm64_vm_container_serves_a_published_port() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-arm64") else {
        return;
    };
    if vm::qemu::find_binary("qemu-system-aarch64", None).is_err() {
        return common::skip("qemu-system-aarch64 is not installed");
    }
    let st = Command::new(common::repo_root().join("ci/guest-image"))
        .args(["--arch", "arm64"])
        .status()
        .unwrap();
    assert!(st.success(), "ci/guest-image --arch arm64 failed");
    let port = common::free_port();
    let o = xrun(
        &env,
        &[
            "run",
            "-d",
            "--route",
            "vm",
            "--platform",
            "linux/arm64",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "localhost/busybox-arm64:latest",
            "sh",
            "-c",
            "mkdir -p /www; uname -m > /www/index.html; exec httpd -f -p 80 -h /www",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let _undo = Undo::container(&env, &id);
    let veth = host_veth(&id);
    let r = fetch_until(&format!("127.0.0.1:{port}"), Duration::from_secs(180));
    assert_eq!(r.body, b"aarch64\n");
    let o = xrun(&env, &["rm", "-f", &id]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(traces(&env, &id, &veth), Vec::<String>::new());
}

#[test]
fn a_guest_without_virtio_net_is_one_error_and_leaves_no_network_behind() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    // A guest as ci/guest-image built it before networks: no virtio_net anywhere.
    // (the Debian guest: its virtio_net is a module; xrun's own kernel has it built in)
    let src = &vm::guest::ci_guest_dir().join("debian/amd64");
    let old = env.scratch().join("old-guest/amd64");
    fs::create_dir_all(&old).unwrap();
    for f in ["kernel", "initrd.img", "config"] {
        std::os::unix::fs::symlink(src.join(f), old.join(f)).unwrap();
    }
    let mut j: serde_json::Value =
        serde_json::from_slice(&fs::read(src.join("guest.json")).unwrap()).unwrap();
    let drop_net = |v: &mut serde_json::Value| {
        if let Some(a) = v.as_array_mut() {
            a.retain(|m| {
                !["virtio_net", "net_failover", "failover"].contains(&m.as_str().unwrap())
            });
        }
    };
    drop_net(&mut j["base_modules"]);
    for m in ["virtio_net", "net_failover", "failover"] {
        j["modules"].as_object_mut().unwrap().remove(m);
    }
    fs::write(old.join("guest.json"), serde_json::to_vec(&j).unwrap()).unwrap();
    // create, then start: the start sets the network up, then finds no driver.
    let o = env
        .cmd()
        .env("XRUN_GUEST", old.parent().unwrap())
        .args(["create", "--route", "vm", "-p", "80", IMAGE, "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let _undo = Undo::container(&env, &id);
    let o = env
        .cmd()
        .env("XRUN_GUEST", old.parent().unwrap())
        .args(["start", &id])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("xrun: running"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("no virtio-net driver"), "{err}");
    // Its network (set up before the guest was looked at) is gone again.
    assert_eq!(traces(&env, &id, ""), Vec::<String>::new());
}

/// Container directories under a store root (`.names`, the name index, is not one).
fn containers_in(root: &Path) -> usize {
    fs::read_dir(root.join("containers")).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}
