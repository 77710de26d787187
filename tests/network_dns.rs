//! Names on user-defined networks, end to end: the real binary, real CNI plugins, the real
//! aardvark-dns, busybox containers (native and emulated arm64) resolving and reaching each
//! other by name, alias and short id; the default bridge giving no names; names going with
//! `rm`, `network disconnect` and `network rm`, and the server with the last of them.
//!
//! Traffic stays between containers and their networks' gateways (subnets 10.99.81–84.0/24,
//! made by xrun for the test). Only names xrun serves are looked up, all single-label:
//! aardvark-dns answers NXDOMAIN for unknown ones and never forwards those.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

use common::{TestEnv, fixture, is_root, skip, try_fixture};

const IMAGE: &str = "localhost/busybox-amd64:latest";
const ARM64_IMAGE: &str = "localhost/busybox-arm64:latest";
const AARDVARK_DIR: &str = "/run/xrun/net/aardvark";

/// One test at a time: the last one out checks that the server is gone.
static SERIAL: Mutex<()> = Mutex::new(());

/// An httpd serving `hello-by-name` on port 80.
const HTTPD: &str =
    "mkdir -p /www && echo hello-by-name > /www/index.html && exec httpd -f -p 80 -h /www";

fn env_with_busybox() -> Option<TestEnv> {
    if !is_root() {
        skip("networks need root (namespaces, bridges, iptables)");
        return None;
    }
    if !Path::new("/usr/lib/podman/aardvark-dns").exists() {
        skip("aardvark-dns is not installed (Debian package aardvark-dns)");
        return None;
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        skip("the CNI plugins are not installed (containernetworking-plugins)");
        return None;
    }
    let env = TestEnv::new();
    env.cmd()
        .args(["load", "-i"])
        .arg(fixture("busybox-amd64"))
        .assert()
        .success();
    Some(env)
}

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

/// Runs xrun, asserts success, returns stdout.
fn ok(env: &TestEnv, args: &[&str]) -> String {
    let o = xrun(env, args);
    assert!(
        o.status.success(),
        "xrun {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stdout and stderr of `xrun exec C sh -c SCRIPT` (whatever its status).
fn exec_sh(env: &TestEnv, c: &str, script: &str) -> String {
    let o = xrun(env, &["exec", c, "sh", "-c", script]);
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// `nslookup -type=a NAME SERVER` from inside container `c`.
fn lookup(env: &TestEnv, c: &str, name: &str, server: &str) -> String {
    exec_sh(
        env,
        c,
        &format!("nslookup -type=a -timeout=2 -retry=1 {name} {server}"),
    )
}

/// Fetches `url` from inside container `c`, retrying while the server starts.
fn fetch(env: &TestEnv, c: &str, url: &str) -> String {
    exec_sh(
        env,
        c,
        &format!("for i in $(seq 100); do wget -qO- {url} && exit 0; sleep 0.1; done; exit 1"),
    )
}

fn inspect(env: &TestEnv, c: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&ok(env, &["inspect", c])).unwrap();
    v.as_array().map(|a| a[0].clone()).unwrap_or(v)
}

/// Container `c`'s address on `network`.
fn address(env: &TestEnv, c: &str, network: &str) -> String {
    inspect(env, c)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn network_id(env: &TestEnv, network: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(env, &["network", "inspect", network])).unwrap();
    let v = v.as_array().map(|a| a[0].clone()).unwrap_or(v);
    v["Id"].as_str().unwrap().to_string()
}

/// The lines of aardvark-dns's files that mention `needle`.
fn served_lines(needle: &str) -> Vec<String> {
    std::fs::read_dir(AARDVARK_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "aardvark.pid")
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains(needle))
        .collect()
}

/// With no network file left, no aardvark-dns serves the directory (zombies do not count:
/// pid 1 here does not always reap).
fn assert_server_gone_when_unused() {
    let files: Vec<_> = std::fs::read_dir(AARDVARK_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "aardvark.pid")
        .collect();
    if !files.is_empty() {
        eprintln!("other networks still have names ({files:?}): the server may run");
        return;
    }
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            zombie || !(cmd.contains("aardvark-dns") && cmd.contains(AARDVARK_DIR)),
            "aardvark-dns still runs: {cmd}"
        );
    }
}

#[test]
fn containers_reach_each_other_by_name_alias_and_short_id() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = env_with_busybox() else {
        return;
    };
    ok(
        &env,
        &["network", "create", "--subnet", "10.99.81.0/24", "dnsnet"],
    );
    let net_id = network_id(&env, "dnsnet");
    let web = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "dnsnet",
            "--network-alias",
            "www",
            IMAGE,
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let web = web.trim();
    let short = &web[..12];
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "peer",
            "--network",
            "dnsnet",
            IMAGE,
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let web_ip = address(&env, "web", "dnsnet");
    let peer_ip = address(&env, "peer", "dnsnet");

    // The container asks aardvark-dns on its gateway.
    let resolv = exec_sh(&env, "peer", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.99.81.1"), "{resolv}");
    // By name, alias and short id; both ways.
    for name in ["web", "www", short, "WEB"] {
        let out = lookup(&env, "peer", name, "10.99.81.1");
        assert!(out.contains(&format!("Address: {web_ip}")), "{name}: {out}");
    }
    let ping = exec_sh(&env, "web", "ping -c1 -W2 peer");
    assert!(ping.contains("1 packets received"), "{ping}");
    for url in ["http://web/", "http://www/", &format!("http://{short}/")] {
        assert!(fetch(&env, "peer", url).contains("hello-by-name"), "{url}");
    }
    assert!(fetch(&env, "web", "http://peer/").contains("hello-by-name"));
    let ping = exec_sh(&env, "peer", "ping -c1 -W2 www");
    assert!(ping.contains(&format!("from {web_ip}")), "{ping}");
    // Inspect says what it answers to.
    let names = &inspect(&env, "web")["NetworkSettings"]["Networks"]["dnsnet"]["DNSNames"];
    assert_eq!(names, &serde_json::json!(["web", "www", short]));

    // The default bridge gives no names (Docker's behaviour): nothing serves its gateway,
    // and its containers are in no file of the server.
    let plain = ok(
        &env,
        &["run", "-d", "--name", "plain", IMAGE, "sleep", "300"],
    );
    let plain = plain.trim();
    let gw = inspect(&env, "plain")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let resolv = exec_sh(&env, "plain", "cat /etc/resolv.conf");
    assert!(!resolv.contains(&format!("nameserver {gw}")), "{resolv}");
    let out = lookup(&env, "plain", "web", &gw);
    assert!(!out.contains(&web_ip), "{out}");
    assert!(served_lines(plain).is_empty());
    assert!(served_lines(&peer_ip).len() == 1);

    // After rm the name is gone at once.
    ok(&env, &["rm", "-f", "web"]);
    for name in ["web", "www", short] {
        let out = lookup(&env, "peer", name, "10.99.81.1");
        assert!(out.contains("NXDOMAIN"), "{name}: {out}");
    }
    assert!(served_lines(web).is_empty());

    // Once all are gone, so are the network's names; then the network itself.
    ok(&env, &["rm", "-f", "peer", "plain"]);
    assert!(!Path::new(AARDVARK_DIR).join(&net_id).exists());
    ok(&env, &["network", "rm", "dnsnet"]);
    assert_server_gone_when_unused();
}

#[test]
fn an_emulated_arm64_container_resolves_names() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = env_with_busybox() else {
        return;
    };
    let platform: xrun::platform::Platform = "linux/arm64".parse().unwrap();
    if let Err(e) = xrun::emulation::route::prepare(&platform) {
        return skip(&format!("no usable binfmt handler for linux/arm64: {e}"));
    }
    let Some(layout) = try_fixture("busybox-arm64") else {
        return skip("fixture busybox-arm64 could not be built on this machine");
    };
    env.cmd()
        .args(["load", "-i"])
        .arg(&layout)
        .assert()
        .success();
    ok(
        &env,
        &["network", "create", "--subnet", "10.99.82.0/24", "emunet"],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "emunet",
            IMAGE,
            "sh",
            "-c",
            HTTPD,
        ],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "armpeer",
            "--platform",
            "linux/arm64",
            "--network",
            "emunet",
            "--network-alias",
            "armalias",
            ARM64_IMAGE,
            "sleep",
            "300",
        ],
    );
    let arch = exec_sh(&env, "armpeer", "uname -m");
    assert_eq!(arch.trim(), "aarch64");
    assert!(fetch(&env, "armpeer", "http://web/").contains("hello-by-name"));
    // And the native one finds the emulated one by its alias.
    let arm_ip = address(&env, "armpeer", "emunet");
    let ping = exec_sh(&env, "web", "ping -c1 -W2 armalias");
    assert!(ping.contains(&format!("from {arm_ip}")), "{ping}");
    ok(&env, &["rm", "-f", "web", "armpeer"]);
    ok(&env, &["network", "rm", "emunet"]);
    assert_server_gone_when_unused();
}

#[test]
fn connect_with_alias_and_disconnect_follow_names() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = env_with_busybox() else {
        return;
    };
    ok(
        &env,
        &["network", "create", "--subnet", "10.99.83.0/24", "first"],
    );
    ok(
        &env,
        &["network", "create", "--subnet", "10.99.84.0/24", "second"],
    );
    ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "svc",
            "--network",
            "first",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    // `--dns` on a user network: the container still asks the gateway, and aardvark-dns
    // forwards what it does not know there (an address on the test's own network).
    let client = ok(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "client",
            "--network",
            "second",
            "--dns",
            "10.99.84.53",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let resolv = exec_sh(&env, "client", "cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 10.99.84.1"), "{resolv}");
    assert!(!resolv.contains("10.99.84.53"), "{resolv}");
    let line = served_lines(client.trim());
    assert!(
        line.len() == 1 && line[0].ends_with(" 10.99.84.53"),
        "{line:?}"
    );
    // Not on the same network yet: no name.
    let out = lookup(&env, "client", "svc", "10.99.84.1");
    assert!(out.contains("NXDOMAIN"), "{out}");

    ok(
        &env,
        &["network", "connect", "--alias", "other", "second", "svc"],
    );
    let svc_ip = address(&env, "svc", "second");
    for name in ["svc", "other"] {
        let out = lookup(&env, "client", name, "10.99.84.1");
        assert!(out.contains(&format!("Address: {svc_ip}")), "{name}: {out}");
    }
    ok(&env, &["network", "disconnect", "second", "svc"]);
    for name in ["svc", "other"] {
        let out = lookup(&env, "client", name, "10.99.84.1");
        assert!(out.contains("NXDOMAIN"), "{name}: {out}");
    }

    // An alias that cannot be a DNS name: one line, exit 125, nothing made.
    let before = ok(&env, &["ps", "-aq"]);
    let o = xrun(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "first",
            "--network-alias",
            "bad alias",
            IMAGE,
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--network-alias \"bad alias\""), "{err}");
    assert_eq!(ok(&env, &["ps", "-aq"]), before);

    ok(&env, &["rm", "-f", "svc", "client"]);
    ok(&env, &["network", "rm", "first", "second"]);
    assert_server_gone_when_unused();
}
