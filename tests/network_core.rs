//! Container networks end to end, with the real CNI plugins (Debian's
//! `containernetworking-plugins`), real iptables and real traffic — only to 127.0.0.1 and to
//! addresses inside the bridges and namespaces xrun made here. Outbound NAT is checked by
//! reading its rules, never by traffic.
//!
//! Tests that compare state take [`serial`]: they look only at what belongs to their own
//! containers and networks (its id, address, veth, lease, namespace, bridge), so other
//! xrun users on the machine do not disturb them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{TestEnv, skip, try_fixture};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const IMAGE: &str = "localhost/busybox-amd64:latest";

/// A store with the amd64 busybox image, when this host can run networks (root, the CNI
/// plugins, iptables).
fn setup() -> Option<TestEnv> {
    if !common::is_root() {
        skip("container networks need root (namespaces, veths, iptables)");
        return None;
    }
    for p in [
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
    ] {
        if !Path::new(p).exists() {
            skip(&format!(
                "{p} is missing (Debian's containernetworking-plugins)"
            ));
            return None;
        }
    }
    if Command::new("iptables").arg("--version").output().is_err() {
        skip("iptables is missing");
        return None;
    }
    let Some(layout) = try_fixture("busybox-amd64") else {
        skip("fixture busybox-amd64 could not be built here");
        return None;
    };
    let env = TestEnv::new();
    env.cmd()
        .args(["load", "-i"])
        .arg(&layout)
        .assert()
        .success();
    Some(env)
}

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrun"))
        .env("XRUN_ROOT", env.root())
        .env("XRUN_CONFIG", env.config_path())
        .env_remove("XRUN_DEFAULT_PLATFORM")
        .env_remove("DOCKER_DEFAULT_PLATFORM")
        .args(args)
        .output()
        .expect("running xrun")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "xrun failed: {}{}", out(&o), err(&o));
    out(&o)
}

/// A refusal: exit 125 and one line on stderr containing `what`.
fn refused(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(125), "{}{}", out(o), err(o));
    let e = err(o);
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    assert!(e.contains(what), "{what:?} not in {e:?}");
}

fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// GET / from `addr`: the body, or `None` when nothing answers.
fn fetch(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// busybox httpd serving `body` on port 80 of the container.
fn httpd_cmd(body: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"),
    ]
}

fn inspect(env: &TestEnv, id: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&ok(xrun(env, &["inspect", id]))).unwrap();
    v[0].clone()
}

fn iptables_save() -> String {
    let o = Command::new("iptables-save")
        .output()
        .expect("iptables-save");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        // Without counters: `:CHAIN POLICY [packets:bytes]`.
        .map(|l| l.split(" [").next().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn links() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// What a running container on the default network leaves on the host.
#[derive(Debug)]
struct Traces {
    id: String,
    ip: String,
    veth: String,
}

impl Traces {
    /// Reads them while it runs, and checks each is there (so [`Traces::gone`] can fail).
    fn of(env: &TestEnv, id: &str) -> Traces {
        let st: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.root().join("containers").join(id).join("network.json"))
                .expect("network.json of a running container"),
        )
        .unwrap();
        let veth = st["cni"][0]["result"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sandbox"].as_str().unwrap_or("").is_empty() && i["name"] != "xrun0")
            .and_then(|i| i["name"].as_str())
            .unwrap()
            .to_string();
        let ip = st["attachment"]["endpoints"][0]["ip"]
            .as_str()
            .unwrap()
            .to_string();
        let t = Traces {
            id: id.to_string(),
            ip,
            veth,
        };
        let p = t.present();
        assert!(
            p.iter().all(|(_, on)| *on),
            "traces of a running container: {p:?}"
        );
        t
    }

    fn lease(&self) -> std::path::PathBuf {
        Path::new("/run/xrun/net/ipam/xrun0/bridge").join(&self.ip)
    }

    fn present(&self) -> Vec<(&'static str, bool)> {
        let rules = iptables_save();
        vec![
            ("veth", links().contains(&format!(" {}@", self.veth))),
            ("rules with the id", rules.contains(&self.id)),
            (
                "rules with the address",
                rules.contains(&format!("{}/32", self.ip)),
            ),
            ("lease", self.lease().exists()),
            (
                "netns",
                Path::new("/run/xrun/net/ns").join(&self.id).exists(),
            ),
        ]
    }

    /// Waits (bounded) until none is left; fails naming what stayed.
    fn gone(&self, after: &str) {
        let mut left = vec![];
        let done = wait_for(10, || {
            left = self
                .present()
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| n)
                .collect();
            left.is_empty()
        });
        assert!(done, "after {after}: left behind {left:?} of {self:?}");
        let ports = std::fs::read_to_string("/run/xrun/net/ports.json").unwrap_or_default();
        assert!(
            !ports.contains(&self.id),
            "after {after}: port reservations {ports}"
        );
    }
}

#[test]
fn published_ports_answer_on_loopback_and_the_container_address() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let (p1, p2) = (common::free_port(), common::free_port());
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "-p".into(),
        format!("127.0.0.1:{p1}:80"),
        "-p".into(),
        format!("{p2}:80"),
        IMAGE.into(),
    ];
    args.extend(httpd_cmd("native"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = ok(xrun(&env, &a)).trim().to_string();
    let t = Traces::of(&env, &id);
    let ip = inspect(&env, &id)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ip, t.ip);
    let body = |addr: &str| {
        let mut got = None;
        wait_for(10, || {
            got = fetch(addr);
            got.is_some()
        });
        got
    };
    assert_eq!(
        body(&format!("127.0.0.1:{p1}")).as_deref(),
        Some("native\n")
    );
    assert_eq!(
        body(&format!("127.0.0.1:{p2}")).as_deref(),
        Some("native\n")
    );
    assert_eq!(body(&format!("{ip}:80")).as_deref(), Some("native\n"));
    let ports = ok(xrun(&env, &["port", &id]));
    assert!(
        ports.contains(&format!("80/tcp -> 127.0.0.1:{p1}")),
        "{ports}"
    );
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{p2}")),
        "{ports}"
    );
    let settings = &inspect(&env, &id)["NetworkSettings"];
    assert_eq!(
        settings["Ports"]["80/tcp"].as_array().unwrap().len(),
        2,
        "{settings}"
    );
    assert_eq!(settings["Networks"]["bridge"]["IPAddress"], ip.as_str());
    ok(xrun(&env, &["rm", "-f", &id]));
    t.gone("rm -f");
    assert!(
        fetch(&format!("127.0.0.1:{p1}")).is_none(),
        "the port still answers"
    );
}

#[test]
fn emulated_arm64_container_serves_a_published_port() {
    let Some(env) = setup() else { return };
    if let Err(e) = xrun::emulation::route::prepare(&"linux/arm64".parse().unwrap()) {
        return skip(&format!("no usable binfmt handler for linux/arm64: {e}"));
    }
    let Some(layout) = try_fixture("busybox-arm64") else {
        return skip("fixture busybox-arm64 could not be built here");
    };
    env.cmd()
        .args(["load", "-i"])
        .arg(&layout)
        .assert()
        .success();
    let _s = serial();
    let port = common::free_port();
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "-q".into(),
        "--platform".into(),
        "linux/arm64".into(),
        "-p".into(),
        format!("127.0.0.1:{port}:80"),
        "localhost/busybox-arm64:latest".into(),
    ];
    args.extend(httpd_cmd("emulated"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = ok(xrun(&env, &a)).trim().to_string();
    assert_eq!(
        inspect(&env, &id)["Xrun"]["Route"],
        "emulated",
        "{}",
        inspect(&env, &id)["Xrun"]
    );
    let t = Traces::of(&env, &id);
    let mut got = None;
    wait_for(20, || {
        got = fetch(&format!("127.0.0.1:{port}"));
        got.is_some()
    });
    assert_eq!(got.as_deref(), Some("emulated\n"));
    assert_eq!(
        fetch(&format!("{}:80", t.ip)).as_deref(),
        Some("emulated\n")
    );
    ok(xrun(&env, &["rm", "-f", &id]));
    t.gone("rm -f of the emulated container");
}

#[test]
fn default_bridge_gives_an_address_a_route_the_gateway_and_nat_rules() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let id = ok(xrun(&env, &["run", "-d", IMAGE, "sleep", "60"]))
        .trim()
        .to_string();
    let t = Traces::of(&env, &id);
    let addr = ok(xrun(
        &env,
        &["exec", &id, "ip", "-o", "-4", "addr", "show", "eth0"],
    ));
    assert!(addr.contains(&format!("inet {}/16", t.ip)), "{addr}");
    assert!(t.ip.starts_with("10.87."), "{}", t.ip);
    let route = ok(xrun(&env, &["exec", &id, "ip", "route"]));
    assert!(route.contains("default via 10.87.0.1 dev eth0"), "{route}");
    ok(xrun(
        &env,
        &["exec", &id, "ping", "-c", "1", "-W", "5", "10.87.0.1"],
    ));
    // Outbound NAT, read from the rules (never tried with traffic).
    let rules = iptables_save();
    assert!(
        rules
            .lines()
            .any(|l| l.contains(&format!("-s {}/32", t.ip)) && l.contains(&id)),
        "no masquerade rule for {}:\n{rules}",
        t.ip
    );
    assert!(rules.contains("-j MASQUERADE"), "{rules}");
    let hosts = ok(xrun(&env, &["exec", &id, "cat", "/etc/hosts"]));
    assert!(
        hosts.contains(&format!("{}\t{}", t.ip, &id[..12])),
        "{hosts}"
    );
    let resolv = ok(xrun(&env, &["exec", &id, "cat", "/etc/resolv.conf"]));
    assert!(!resolv.contains("nameserver 127."), "{resolv}");
    ok(xrun(&env, &["stop", "-t", "1", &id]));
    t.gone("stop");
    ok(xrun(&env, &["rm", &id]));
}

#[test]
fn leftovers_go_after_rm_kill_and_a_lost_namespace() {
    let Some(env) = setup() else { return };
    let _s = serial();
    // rm of an exited container (it exited by itself: gone at its exit already).
    let id = ok(xrun(&env, &["run", "-d", IMAGE, "sleep", "2"]))
        .trim()
        .to_string();
    let t = Traces::of(&env, &id);
    t.gone("the container exited");
    ok(xrun(&env, &["rm", &id]));

    // The monitor and the container killed with SIGKILL: cleaned once xrun next looks.
    let id = ok(xrun(&env, &["run", "-d", IMAGE, "sleep", "60"]))
        .trim()
        .to_string();
    let t = Traces::of(&env, &id);
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.root()
                .join("containers")
                .join(&id)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (pid, owner) = (
        rec["pid"]["pid"].as_i64().unwrap(),
        rec["owner"]["pid"].as_i64().unwrap(),
    );
    for p in [owner, pid] {
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    assert!(wait_for(10, || !Path::new(&format!("/proc/{pid}")).exists()));
    assert!(
        !t.present().iter().all(|(_, on)| !*on),
        "nothing to clean before ps"
    );
    ok(xrun(&env, &["ps", "-a"]));
    t.gone("SIGKILL of monitor and container, then ps");
    ok(xrun(&env, &["rm", &id]));

    // A lost namespace (as after a reboot): unmounted and removed while it runs.
    let port = common::free_port();
    let id = ok(xrun(
        &env,
        &[
            "run",
            "-d",
            "-p",
            &format!("{port}:80"),
            IMAGE,
            "sleep",
            "60",
        ],
    ))
    .trim()
    .to_string();
    let t = Traces::of(&env, &id);
    let ns = format!("/run/xrun/net/ns/{id}");
    assert!(Command::new("umount").arg(&ns).status().unwrap().success());
    std::fs::remove_file(&ns).unwrap();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.root()
                .join("containers")
                .join(&id)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (pid, owner) = (
        rec["pid"]["pid"].as_i64().unwrap(),
        rec["owner"]["pid"].as_i64().unwrap(),
    );
    for p in [owner, pid] {
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    assert!(wait_for(10, || !Path::new(&format!("/proc/{pid}")).exists()));
    assert!(iptables_save().contains(&id), "rules were there to clean");
    ok(xrun(&env, &["ps", "-a"]));
    t.gone("a lost namespace, then ps");
    ok(xrun(&env, &["rm", &id]));

    // rm -f of a running one whose namespace is fine.
    let id = ok(xrun(&env, &["run", "-d", IMAGE, "sleep", "60"]))
        .trim()
        .to_string();
    let t = Traces::of(&env, &id);
    ok(xrun(&env, &["rm", "-f", &id]));
    t.gone("rm -f");
}

#[test]
fn user_network_containers_reach_each_other_and_it_cannot_go_while_used() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let net = format!("xt{}", std::process::id());
    let nid = ok(xrun(&env, &["network", "create", &net]))
        .trim()
        .to_string();
    assert_eq!(nid.len(), 64);
    let info: serde_json::Value =
        serde_json::from_str(&ok(xrun(&env, &["network", "inspect", &net]))).unwrap();
    let subnet = info[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    let bridge = info[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(bridge, format!("xrbr-{}", &nid[..8]));
    let prefix = subnet.rsplit_once('.').unwrap().0.to_string();
    let wanted_ip = format!("{prefix}.77");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--network".into(),
        net.clone(),
        "--ip".into(),
        wanted_ip.clone(),
        "--network-alias".into(),
        "web".into(),
        IMAGE.into(),
    ];
    args.extend(httpd_cmd("peer"));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ok(xrun(&env, &a)).trim().to_string();
    let client = ok(xrun(
        &env,
        &["run", "-d", "--network", &net, IMAGE, "sleep", "60"],
    ))
    .trim()
    .to_string();
    let sip = inspect(&env, &server)["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sip, wanted_ip);
    let mut got = String::new();
    wait_for(10, || {
        let o = xrun(
            &env,
            &[
                "exec",
                &client,
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{sip}/"),
            ],
        );
        got = out(&o);
        o.status.success()
    });
    assert_eq!(got, "peer\n");
    let resolv = ok(xrun(&env, &["exec", &client, "cat", "/etc/resolv.conf"]));
    assert!(
        resolv.contains(&format!("nameserver {prefix}.1")),
        "{resolv}"
    );
    let listed = ok(xrun(
        &env,
        &["network", "ls", "--format", "{{.Name}} {{.Subnet}}"],
    ));
    assert!(listed.contains(&format!("{net} {subnet}")), "{listed}");
    let info: serde_json::Value =
        serde_json::from_str(&ok(xrun(&env, &["network", "inspect", &net]))).unwrap();
    assert_eq!(
        info[0]["Containers"].as_object().unwrap().len(),
        2,
        "{info}"
    );

    let links_before_rm = links();
    refused(
        &xrun(&env, &["network", "rm", &net]),
        &format!("error while removing network: network {net} has active endpoints"),
    );
    assert_eq!(
        links().matches(&format!("master {bridge}")).count(),
        links_before_rm.matches(&format!("master {bridge}")).count()
    );
    ok(xrun(&env, &["rm", "-f", &server, &client]));
    assert!(
        links().contains(&format!(" {bridge}:")),
        "the bridge exists while the network does"
    );
    ok(xrun(&env, &["network", "rm", &net]));
    assert!(
        !links().contains(&format!(" {bridge}:")),
        "the bridge went with the network"
    );
    refused(&xrun(&env, &["network", "inspect", &net]), "not found");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let net = format!("xc{}", std::process::id());
    let nid = ok(xrun(&env, &["network", "create", "--internal", &net]))
        .trim()
        .to_string();
    let chain = format!("XRUN-ISO-{}", &nid[..8]);
    let id = ok(xrun(&env, &["run", "-d", IMAGE, "sleep", "60"]))
        .trim()
        .to_string();
    ok(xrun(
        &env,
        &["network", "connect", "--alias", "second", &net, &id],
    ));
    let addr = ok(xrun(
        &env,
        &["exec", &id, "ip", "-o", "-4", "addr", "show", "eth1"],
    ));
    let ip = inspect(&env, &id)["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(addr.contains(&format!("inet {ip}/")), "{addr}");
    // An internal network: its isolation chain is first in FORWARD, no masquerade for it.
    let forward = String::from_utf8_lossy(
        &Command::new("iptables")
            .args(["-S", "FORWARD"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        forward.lines().nth(1).is_some_and(|l| l.contains(&chain)),
        "{forward}"
    );
    assert!(
        !iptables_save().contains(&format!("-s {ip}/32 -m comment")),
        "masquerade on an internal network"
    );
    ok(xrun(&env, &["network", "disconnect", &net, &id]));
    let o = xrun(&env, &["exec", &id, "ip", "-o", "link", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 is still there: {}", out(&o));
    ok(xrun(&env, &["rm", "-f", &id]));
    ok(xrun(&env, &["network", "rm", &net]));
    assert!(
        !iptables_save().contains(&chain),
        "the isolation chain went with the network"
    );
}

#[test]
fn bad_input_is_one_line_125_and_changes_nothing() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let net = format!("xe{}", std::process::id());
    let nid = ok(xrun(
        &env,
        &["network", "create", "--subnet", "10.90.200.0/24", &net],
    ))
    .trim()
    .to_string();
    let bridge = format!("xrbr-{}", &nid[..8]);
    // A running container so the bridge exists and one address is taken.
    let holder = ok(xrun(
        &env,
        &[
            "run",
            "-d",
            "--network",
            &net,
            "--ip",
            "10.90.200.9",
            IMAGE,
            "sleep",
            "60",
        ],
    ))
    .trim()
    .to_string();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    let snapshot = || {
        let mut networks: Vec<String> = std::fs::read_dir(env.root().join("networks"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        networks.sort();
        let mut leases: Vec<String> =
            std::fs::read_dir(format!("/run/xrun/net/ipam/{bridge}/{net}"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        leases.sort();
        let containers = std::fs::read_dir(env.root().join("containers"))
            .unwrap()
            .flatten()
            // `.names` is the name index, not a container.
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .count();
        let ports = links().matches(&format!("master {bridge}")).count();
        let rules: Vec<String> = iptables_save()
            .lines()
            .filter(|l| l.contains("10.90.200."))
            .map(String::from)
            .collect();
        (networks, leases, containers, ports, rules)
    };
    let before = snapshot();
    assert_eq!(
        before.1.iter().filter(|l| l.starts_with("10.")).count(),
        1,
        "{before:?}"
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--network".into(),
                net.clone(),
                "-p".into(),
                format!("{busy}:80"),
                IMAGE.into(),
                "true".into(),
            ],
            "port is already allocated",
        ),
        (
            vec![
                "network".into(),
                "create".into(),
                "--subnet".into(),
                "10.90.200.128/25".into(),
                "other".into(),
            ],
            "overlaps",
        ),
        (
            vec![
                "network".into(),
                "create".into(),
                "--subnet".into(),
                "10.87.3.0/24".into(),
                "other".into(),
            ],
            "overlaps",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--network".into(),
                "no-such-net".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "network no-such-net not found",
        ),
        (
            vec!["network".into(), "rm".into(), net.clone()],
            "has active endpoints",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "-p".into(),
                "80:80:80:80".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "invalid -p",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "-p".into(),
                "8080:http".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "invalid -p",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--network".into(),
                net.clone(),
                "--ip".into(),
                "10.91.0.5".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "is not a free host address",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--network".into(),
                net.clone(),
                "--ip".into(),
                "10.90.200.9".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "already in use",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--ip".into(),
                "10.87.0.77".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "user defined networks only",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--egress-rate".into(),
                "10mb".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "invalid rate",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--ingress-rate".into(),
                "fast".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "invalid rate",
        ),
        (
            vec![
                "run".into(),
                "--rm".into(),
                "--network".into(),
                "none".into(),
                "-p".into(),
                "80".into(),
                IMAGE.into(),
                "true".into(),
            ],
            "need a network of xrun's",
        ),
    ];
    for (args, what) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = xrun(&env, &a);
        refused(&o, what);
        assert_eq!(snapshot(), before, "state changed by {args:?}");
    }
    drop(listener);
    ok(xrun(&env, &["rm", "-f", &holder]));
    ok(xrun(&env, &["network", "rm", &net]));
}

#[test]
fn egress_and_ingress_rates_hold_within_ten_percent() {
    let Some(env) = setup() else { return };
    if Command::new("iperf3").arg("--version").output().is_err() {
        return skip("iperf3 is missing (Debian package iperf3)");
    }
    let _s = serial();
    let ifbs = || -> Vec<String> {
        links()
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| n.starts_with("bwp"))
            .map(String::from)
            .collect()
    };
    let ifbs_before = ifbs();
    let id = ok(xrun(
        &env,
        &[
            "run",
            "-d",
            "--egress-rate",
            "50mbit",
            "--ingress-rate",
            "20mbit",
            IMAGE,
            "sleep",
            "120",
        ],
    ))
    .trim()
    .to_string();
    let t = Traces::of(&env, &id);
    let mine: Vec<String> = ifbs()
        .into_iter()
        .filter(|i| !ifbs_before.contains(i))
        .collect();
    assert_eq!(mine.len(), 1, "the egress shaper's ifb device: {mine:?}");
    let gw = inspect(&env, &id)["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let measure = |reverse: bool| -> f64 {
        let port = common::free_port();
        let mut server = Command::new("iperf3")
            .args(["-s", "-1", "-B", &gw, "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut o = None;
        wait_for(10, || {
            let r = Command::new("nsenter")
                .arg(format!("--net=/run/xrun/net/ns/{id}"))
                .args([
                    "iperf3",
                    "-c",
                    &gw,
                    "-p",
                    &port.to_string(),
                    "-t",
                    "5",
                    "-J",
                ])
                .args(if reverse { &["-R"][..] } else { &[][..] })
                .output()
                .unwrap();
            let done = r.status.success();
            o = Some(r);
            done
        });
        let _ = server.kill();
        let _ = server.wait();
        let o = o.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("iperf3: {}", String::from_utf8_lossy(&o.stderr)));
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap()
    };
    let egress = measure(false);
    assert!(
        (45e6..=55e6).contains(&egress),
        "egress {egress} bit/s for --egress-rate 50mbit"
    );
    let ingress = measure(true);
    assert!(
        (18e6..=22e6).contains(&ingress),
        "ingress {ingress} bit/s for --ingress-rate 20mbit"
    );
    ok(xrun(&env, &["rm", "-f", &id]));
    t.gone("rm -f of a rate-limited container");
    assert!(!ifbs().contains(&mine[0]), "{} is left", mine[0]);
}

#[test]
fn concurrent_starts_get_distinct_free_ports() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    ok(xrun(
                        &env,
                        &["run", "-d", "-p", "127.0.0.1::80", IMAGE, "sleep", "60"],
                    ))
                    .trim()
                    .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<String> = ids
        .iter()
        .map(|id| ok(xrun(&env, &["port", id, "80/tcp"])).trim().to_string())
        .collect();
    assert!(
        ports.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{ports:?}"
    );
    let mut addrs: Vec<String> = ids
        .iter()
        .map(|id| {
            inspect(&env, id)["NetworkSettings"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ports.sort();
    ports.dedup();
    addrs.sort();
    addrs.dedup();
    assert_eq!((ports.len(), addrs.len()), (4, 4), "{ports:?} {addrs:?}");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    ok(xrun(&env, &args));
}

#[test]
fn hosts_resolv_and_a_shared_namespace() {
    let Some(env) = setup() else { return };
    let _s = serial();
    let id = ok(xrun(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "netmain",
            "--hostname",
            "box",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "10.9.9.9",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:2",
            IMAGE,
            "sleep",
            "60",
        ],
    ))
    .trim()
    .to_string();
    let t = Traces::of(&env, &id);
    let hosts = ok(xrun(&env, &["exec", &id, "cat", "/etc/hosts"]));
    assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
    assert!(hosts.contains("10.87.0.1\tgw\n"), "{hosts}");
    assert!(hosts.contains(&format!("{}\tbox\n", t.ip)), "{hosts}");
    let resolv = ok(xrun(&env, &["exec", &id, "cat", "/etc/resolv.conf"]));
    assert_eq!(
        resolv,
        "search example.test\nnameserver 10.9.9.9\noptions ndots:2\n"
    );
    // container:NAME shares the namespace (same address) and the files.
    let o = ok(xrun(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "container:netmain",
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show eth0; cat /etc/hosts",
        ],
    ));
    assert!(o.contains(&format!("inet {}/", t.ip)), "{o}");
    assert!(o.contains("10.1.2.3\tdb"), "{o}");
    refused(
        &xrun(
            &env,
            &[
                "run",
                "--rm",
                "--network",
                "container:nosuch",
                IMAGE,
                "true",
            ],
        ),
        "no such container",
    );
    ok(xrun(&env, &["rm", "-f", &id]));
    t.gone("rm -f");
}

/// Two store roots on one host: their user networks never get the same subnet, whether or not
/// a bridge exists yet (subnets are claimed host-wide), and a removed network's subnet is free
/// again.
#[test]
fn store_roots_never_share_a_subnet() {
    let Some(a) = setup() else { return };
    let b = TestEnv::new();
    let name_a = format!("xa{}", std::process::id());
    let name_b = format!("xb{}", std::process::id());
    let subnet_of = |env: &TestEnv, name: &str| {
        let o = xrun(env, &["network", "inspect", name]);
        assert!(o.status.success(), "{}", err(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string()
    };
    let o = xrun(&a, &["network", "create", &name_a]);
    assert!(o.status.success(), "{}", err(&o));
    let o = xrun(&b, &["network", "create", &name_b]);
    assert!(o.status.success(), "{}", err(&o));
    let (sa, sb) = (subnet_of(&a, &name_a), subnet_of(&b, &name_b));
    assert_ne!(sa, sb, "no bridge exists yet, the claim keeps them apart");
    // An explicit overlapping subnet in the other root is refused, naming the holder.
    let o = xrun(&b, &["network", "create", "--subnet", &sa, "clash"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        err(&o).contains("overlaps") && err(&o).contains(&name_a),
        "{}",
        err(&o)
    );
    assert!(xrun(&a, &["network", "rm", &name_a]).status.success());
    let o = xrun(&b, &["network", "create", "--subnet", &sa, "clash"]);
    assert!(o.status.success(), "freed by rm: {}", err(&o));
    for n in [name_b.as_str(), "clash"] {
        assert!(xrun(&b, &["network", "rm", n]).status.success());
    }
}
