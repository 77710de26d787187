//! The VM route's network: a VM container joins the network its network namespace was
//! attached to (by CNI, like any container), the way Kata Containers does it ("tcfilter"):
//! qemu runs *inside* that namespace; there, each interface `ethN` the attachment made gets
//! a tap device `tapN`, and tc ingress qdiscs with `mirred egress redirect` filters pass every
//! frame from `ethN` to `tapN` and back. qemu's virtio-net device on `tapN` has `ethN`'s MAC,
//! and the guest gives that interface `ethN`'s address, prefix and default route (the
//! per-run cpio's `/xrun/net`, see `guest-init.sh`). So, from the host, the guest *is* the
//! container: portmap's DNAT, the bandwidth plugin's shaping on the host-side veth and the
//! bridge's forwarding work unchanged.
//!
//! `ethN` keeps its address in the namespace (what the CNI plugins' CHECK and DEL expect):
//! every frame arriving on it is redirected at ingress, before the namespace's own IP stack
//! sees it, so ARP replies and TCP answers come from the guest. The taps and filters go with
//! the namespace; [`detach`] removes them earlier (when the VM ends) so a namespace that
//! stays can be joined again.
//!
//! The devices and filters are made with `ip` and `tc` from iproute2, run inside the
//! namespace (`setns` before exec, [`enter_netns`]).

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::VmError;
use super::runcpio::NicConfig;

/// The network a VM joins: a network namespace and its interfaces, one guest NIC each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmNetwork {
    /// The network namespace (a bind mount such as `/run/xrun/net/ns/<id>`, or
    /// `/proc/PID/ns/net`) qemu runs in.
    pub netns: PathBuf,
    /// The interfaces of the namespace the guest takes over, in order (the guest names them
    /// `eth0`, `eth1`, … in this order).
    pub nics: Vec<GuestNic>,
    /// The container's `/etc/resolv.conf`, if any (bind-mounted in the guest).
    pub resolv_conf: Option<String>,
    /// The container's `/etc/hosts`, if any (bind-mounted in the guest).
    pub hosts: Option<String>,
}

/// One interface of the namespace and the address the guest gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    /// The interface in the namespace (`eth0`).
    pub ifname: String,
    /// Its MAC address; the guest's NIC gets the same one (checked against the interface).
    pub mac: String,
    /// The IPv4 address.
    pub address: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
    /// The gateway (the first NIC's becomes the default route).
    pub gateway: Option<Ipv4Addr>,
}

/// The network once wired: the taps qemu opens and what the guest init configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedNetwork {
    /// The guest's interfaces, in order (tap `tapN` carries `nics[N]`).
    pub nics: Vec<NicConfig>,
}

impl AttachedNetwork {
    /// The tap device carrying the guest's NIC number `n`.
    pub fn tap_name(n: usize) -> String {
        format!("tap{n}")
    }

    /// qemu's arguments: one tap netdev and one virtio-net device (same MAC as the
    /// namespace's interface) per NIC. `bus` is `pci` (x86 `pc`, arm64 `virt`) or `device`
    /// (virtio-mmio, x86 `microvm`).
    pub fn qemu_args(&self, bus: &str) -> Vec<String> {
        let mut a = Vec::new();
        for (i, nic) in self.nics.iter().enumerate() {
            a.push("-netdev".into());
            a.push(format!(
                "tap,id=n{i},ifname={},script=no,downscript=no,vhost=off",
                Self::tap_name(i)
            ));
            a.push("-device".into());
            // No option ROM: the guest boots a kernel directly, never over the network.
            let rom = if bus == "pci" { ",romfile=" } else { "" };
            a.push(format!("virtio-net-{bus},netdev=n{i},mac={}{rom}", nic.mac));
        }
        a
    }
}

/// Opens a network namespace file, with a clear error.
pub fn open_netns(net: &VmNetwork) -> Result<File, VmError> {
    File::open(&net.netns).map_err(|e| {
        VmError::Network(format!(
            "cannot open network namespace {}: {e}",
            net.netns.display()
        ))
    })
}

/// Makes `cmd` run inside the network namespace `ns` (`setns` between fork and exec).
/// `ns` must stay open until the command is spawned.
pub fn enter_netns(cmd: &mut Command, ns: &File) {
    let fd: RawFd = ns.as_raw_fd();
    // SAFETY: setns(2) is a plain system call, async-signal-safe; the fd is open in the
    // parent (the caller keeps `ns` until spawn returns), so it is open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// An interface as `ip -o link show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    mtu: u32,
    mac: String,
}

/// Parses `ip -o link show` lines: `2: eth0@if7: <…> mtu 1500 … link/ether MAC brd …`.
fn parse_links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(_idx), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let name = name.trim_end_matches(':');
        let name = name.split('@').next().unwrap_or(name).to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string())
        };
        let mtu = after("mtu").and_then(|m| m.parse().ok()).unwrap_or(1500);
        let mac = after("link/ether").unwrap_or_default().to_ascii_lowercase();
        links.push(Link { name, mtu, mac });
    }
    links
}

/// Runs `program args…` inside `ns`, `stdin` fed to it; its stderr becomes the error.
fn run_in(ns: &File, program: &str, args: &[&str], stdin: &str) -> Result<String, VmError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    enter_netns(&mut cmd, ns);
    let what = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| {
        VmError::Network(format!("cannot run {what}: {e} (is iproute2 installed?)"))
    })?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| VmError::Network(format!("{what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(VmError::Network(format!(
            "{what} in the container's network namespace failed: {}",
            err.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `tc` batch that passes every frame of `a` to `b` and back.
fn mirred_batch(a: &str, b: &str) -> String {
    let mut s = String::new();
    for (from, to) in [(a, b), (b, a)] {
        s.push_str(&format!("qdisc add dev {from} handle ffff: ingress\n"));
        s.push_str(&format!(
            "filter add dev {from} parent ffff: protocol all prio 1 u32 match u32 0 0 \
             action mirred egress redirect dev {to}\n"
        ));
    }
    s
}

/// Wires `net` inside its namespace: a tap per interface, the mirred filters both ways.
/// Earlier taps and filters of the same names (a VM that ran in this namespace before) are
/// replaced. On error, what was made is removed again.
pub fn attach(net: &VmNetwork) -> Result<AttachedNetwork, VmError> {
    let ns = open_netns(net)?;
    let links = parse_links(&run_in(&ns, "ip", &["-o", "link", "show"], "")?);
    let mut ip = String::new();
    let mut stale_qdiscs = Vec::new();
    let mut tc = String::new();
    let mut nics = Vec::new();
    for (i, nic) in net.nics.iter().enumerate() {
        let link = links.iter().find(|l| l.name == nic.ifname).ok_or_else(|| {
            VmError::Network(format!(
                "the network namespace {} has no interface {}",
                net.netns.display(),
                nic.ifname
            ))
        })?;
        if !link.mac.eq_ignore_ascii_case(&nic.mac) {
            return Err(VmError::Network(format!(
                "interface {} has MAC {}, not {}",
                nic.ifname, link.mac, nic.mac
            )));
        }
        let tap = AttachedNetwork::tap_name(i);
        if links.iter().any(|l| l.name == tap) {
            ip.push_str(&format!("link del dev {tap}\n"));
            stale_qdiscs.push(nic.ifname.clone());
        }
        ip.push_str(&format!("tuntap add dev {tap} mode tap\n"));
        ip.push_str(&format!("link set dev {tap} mtu {} up\n", link.mtu));
        tc.push_str(&mirred_batch(&nic.ifname, &tap));
        nics.push(NicConfig {
            mac: nic.mac.to_ascii_lowercase(),
            address: nic.address,
            prefix: nic.prefix,
            gateway: nic.gateway,
            mtu: link.mtu,
        });
    }
    for dev in stale_qdiscs {
        let _ = run_in(&ns, "tc", &["qdisc", "del", "dev", &dev, "ingress"], "");
    }
    let wired = run_in(&ns, "ip", &["-batch", "-"], &ip)
        .and_then(|_| run_in(&ns, "tc", &["-batch", "-"], &tc));
    if let Err(e) = wired {
        let _ = detach(net);
        return Err(e);
    }
    Ok(AttachedNetwork { nics })
}

/// Removes the taps and filters [`attach`] made (each step on its own: whatever is left
/// goes). A namespace that is gone has nothing left to remove.
pub fn detach(net: &VmNetwork) -> Result<(), VmError> {
    let Ok(ns) = File::open(&net.netns) else {
        return Ok(());
    };
    let mut first = None;
    for (i, nic) in net.nics.iter().enumerate() {
        let tap = AttachedNetwork::tap_name(i);
        // The tap's own ingress qdisc goes with it.
        for r in [
            run_in(
                &ns,
                "tc",
                &["qdisc", "del", "dev", &nic.ifname, "ingress"],
                "",
            ),
            run_in(&ns, "ip", &["link", "del", "dev", &tap], ""),
        ] {
            if let Err(e) = r
                && first.is_none()
            {
                first = Some(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_link_lines() {
        let text = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                    2: eth0@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default \\    link/ether 02:42:0A:62:01:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n";
        let l = parse_links(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "lo");
        assert_eq!(l[1].name, "eth0");
        assert_eq!(l[1].mtu, 1450);
        assert_eq!(l[1].mac, "02:42:0a:62:01:02");
    }

    #[test]
    fn qemu_args_per_bus() {
        let a = AttachedNetwork {
            nics: vec![NicConfig {
                mac: "02:42:0a:62:01:02".into(),
                address: "10.98.1.2".parse().unwrap(),
                prefix: 24,
                gateway: None,
                mtu: 1500,
            }],
        };
        assert_eq!(
            a.qemu_args("device"),
            [
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off",
                "-device",
                "virtio-net-device,netdev=n0,mac=02:42:0a:62:01:02"
            ]
        );
        assert_eq!(
            a.qemu_args("pci")[3],
            "virtio-net-pci,netdev=n0,mac=02:42:0a:62:01:02,romfile="
        );
    }

    #[test]
    fn mirred_both_ways() {
        let b = mirred_batch("eth0", "tap0");
        assert!(b.contains("qdisc add dev eth0 handle ffff: ingress\n"));
        assert!(b.contains("filter add dev eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev tap0\n"));
        assert!(b.contains("filter add dev tap0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev eth0\n"));
    }
}
