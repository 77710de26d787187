//! The container-essential kernel options, grouped like moby's `check-config.sh` (generally
//! necessary, optional, network, storage) plus what xrun's own routes use.

use super::profile::{CheckState, KernelInfo, OptionCheck, OptionGroup};

/// The checks for a kernel: version-dependent lists, each option with its state.
pub fn option_groups(kernel: &KernelInfo) -> Vec<OptionGroup> {
    let [major, minor, _] = kernel.version;
    let before = |maj: u32, min: u32| major < maj || (major == maj && minor < min);
    let at_most = |maj: u32, min: u32| major < maj || (major == maj && minor <= min);

    let mut necessary: Vec<(&str, &str)> = vec![
        ("NAMESPACES", "namespaces"),
        ("NET_NS", "network namespace"),
        ("PID_NS", "pid namespace"),
        ("IPC_NS", "ipc namespace"),
        ("UTS_NS", "uts namespace"),
        ("CGROUPS", "cgroups"),
        ("CGROUP_CPUACCT", "cpu accounting"),
        ("CGROUP_DEVICE", "device access control"),
        ("CGROUP_FREEZER", "pause/freeze"),
        ("CGROUP_SCHED", "cpu limits"),
        ("CPUSETS", "cpuset limits"),
        ("MEMCG", "memory limits"),
        ("KEYS", "session keyrings"),
        ("VETH", "container network (veth)"),
        ("BRIDGE", "container network (bridge)"),
        ("BRIDGE_NETFILTER", "bridge netfilter"),
        ("IP_NF_FILTER", "iptables filter"),
        ("IP_NF_TARGET_MASQUERADE", "NAT masquerade"),
        ("NETFILTER_XT_MATCH_ADDRTYPE", "iptables addrtype"),
        ("NETFILTER_XT_MATCH_CONNTRACK", "iptables conntrack"),
        ("NETFILTER_XT_MATCH_IPVS", "iptables ipvs"),
        ("NETFILTER_XT_MARK", "iptables mark"),
        ("IP_NF_NAT", "iptables nat"),
        ("NF_NAT", "NAT"),
        ("POSIX_MQUEUE", "/dev/mqueue"),
    ];
    if before(4, 8) {
        necessary.push(("DEVPTS_MULTIPLE_INSTANCES", "private /dev/pts"));
    }
    if at_most(5, 1) {
        necessary.push(("NF_NAT_IPV4", "IPv4 NAT"));
    }
    if at_most(5, 2) {
        necessary.push(("NF_NAT_NEEDED", "NAT"));
    }
    necessary.push(("OVERLAY_FS", "overlay root file systems"));
    necessary.push(("SECCOMP", "seccomp"));
    necessary.push(("SECCOMP_FILTER", "seccomp filters (default profile)"));

    let mut optional: Vec<(&str, &str)> = vec![
        ("USER_NS", "user namespaces (rootless, userns-remap)"),
        ("CGROUP_PIDS", "pids limit"),
        ("MEMCG_SWAP", "swap limits"),
    ];
    if at_most(5, 8) {
        optional.push(("MEMCG_SWAP_ENABLED", "swap accounting on by default"));
    }
    for legacy in [
        "LEGACY_VSYSCALL_NATIVE",
        "LEGACY_VSYSCALL_EMULATE",
        "LEGACY_VSYSCALL_NONE",
    ] {
        if kernel.config.contains_key(&format!("CONFIG_{legacy}")) {
            optional.push((legacy, "vsyscall mode (old glibc)"));
            break;
        }
    }
    if at_most(4, 5) {
        optional.push(("MEMCG_KMEM", "kernel memory limits"));
    }
    if at_most(3, 18) {
        optional.push(("RESOURCE_COUNTERS", "resource counters"));
    }
    if major < 5 {
        optional.push(("IOSCHED_CFQ", "block io weights"));
        optional.push(("CFQ_GROUP_IOSCHED", "block io weights"));
    }
    optional.extend([
        ("BLK_CGROUP", "block io limits"),
        ("BLK_DEV_THROTTLING", "block io throttling"),
        ("CGROUP_PERF", "perf events per container"),
        ("CGROUP_HUGETLB", "hugetlb limits"),
        ("NET_CLS_CGROUP", "net_cls"),
    ]);
    if at_most(3, 13) {
        optional.push(("NETPRIO_CGROUP", "net_prio"));
    } else {
        optional.push(("CGROUP_NET_PRIO", "net_prio"));
    }
    optional.extend([
        ("CFS_BANDWIDTH", "cpu quota"),
        ("FAIR_GROUP_SCHED", "cpu shares"),
        ("RT_GROUP_SCHED", "realtime cpu limits"),
        ("IP_NF_TARGET_REDIRECT", "port redirect"),
        ("IP_VS", "ipvs (swarm services)"),
        ("IP_VS_NFCT", "ipvs"),
        ("IP_VS_PROTO_TCP", "ipvs"),
        ("IP_VS_PROTO_UDP", "ipvs"),
        ("IP_VS_RR", "ipvs"),
    ]);
    if !kernel.config.contains_key("CONFIG_EXT4_USE_FOR_EXT2") {
        optional.extend([
            ("EXT3_FS", "ext3 backing file system"),
            ("EXT3_FS_XATTR", "ext3 backing file system"),
            ("EXT3_FS_POSIX_ACL", "ext3 backing file system"),
            ("EXT3_FS_SECURITY", "ext3 backing file system"),
        ]);
    }
    optional.extend([
        ("EXT4_FS", "ext4 backing file system"),
        ("EXT4_FS_POSIX_ACL", "ext4 backing file system"),
        ("EXT4_FS_SECURITY", "ext4 backing file system"),
    ]);

    let mut network: Vec<(&str, &str)> = vec![
        ("VXLAN", "overlay network"),
        ("BRIDGE_VLAN_FILTERING", "overlay network"),
        ("CRYPTO", "encrypted overlay network"),
        ("CRYPTO_AEAD", "encrypted overlay network"),
        ("CRYPTO_GCM", "encrypted overlay network"),
        ("CRYPTO_SEQIV", "encrypted overlay network"),
        ("CRYPTO_GHASH", "encrypted overlay network"),
        ("XFRM", "encrypted overlay network"),
        ("XFRM_USER", "encrypted overlay network"),
        ("XFRM_ALGO", "encrypted overlay network"),
        ("INET_ESP", "encrypted overlay network"),
    ];
    if at_most(5, 3) {
        network.push(("INET_XFRM_MODE_TRANSPORT", "encrypted overlay network"));
    }
    network.extend([
        ("IPVLAN", "ipvlan network"),
        ("MACVLAN", "macvlan network"),
        ("DUMMY", "macvlan network"),
        ("NF_NAT_FTP", "ftp client in container"),
        ("NF_CONNTRACK_FTP", "ftp client in container"),
        ("NF_NAT_TFTP", "tftp client in container"),
        ("NF_CONNTRACK_TFTP", "tftp client in container"),
    ]);

    let storage: Vec<(&str, &str)> = vec![
        ("AUFS_FS", "aufs storage"),
        ("BTRFS_FS", "btrfs storage"),
        ("BTRFS_FS_POSIX_ACL", "btrfs storage"),
        ("BLK_DEV_DM", "devicemapper storage"),
        ("DM_THIN_PROVISIONING", "devicemapper storage"),
        ("OVERLAY_FS", "overlay storage"),
    ];

    let xrun: Vec<(&str, &str)> = vec![
        ("BINFMT_MISC", "emulated route (qemu-user via binfmt_misc)"),
        ("USER_NS", "rootless containers"),
        ("CHECKPOINT_RESTORE", "checkpoint/restore"),
        ("EROFS_FS", "read-only image layers"),
        ("KVM", "vm route with acceleration"),
        ("VIRTIO", "vm route guests"),
        ("VSOCKETS", "vm route control channel"),
    ];

    let group = |id: &str, title: &str, list: Vec<(&str, &str)>| OptionGroup {
        id: id.into(),
        title: title.into(),
        options: list
            .into_iter()
            .map(|(name, purpose)| {
                let option = format!("CONFIG_{name}");
                let state: CheckState = kernel.option(&option).into();
                OptionCheck {
                    option,
                    state,
                    purpose: purpose.into(),
                }
            })
            .collect(),
    };
    vec![
        group("necessary", "Generally necessary", necessary),
        group("optional", "Optional features", optional),
        group("network", "Network drivers", network),
        group("storage", "Storage drivers", storage),
        group("xrun", "xrun routes", xrun),
    ]
}

/// Whether any necessary option is missing (`unknown` counts as not missing).
pub fn missing_necessary(groups: &[OptionGroup]) -> Vec<&str> {
    groups
        .iter()
        .filter(|g| g.id == "necessary")
        .flat_map(|g| g.options.iter())
        .filter(|o| o.state == CheckState::Missing)
        .map(|o| o.option.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernelcheck::kconfig::parse_config;

    #[test]
    fn version_dependent_lists() {
        let mut k = KernelInfo {
            version: [4, 19, 0],
            config_source: Some("/boot/config".into()),
            config: parse_config("CONFIG_NAMESPACES=y\nCONFIG_IP_VS=m\n"),
            ..Default::default()
        };
        let g = option_groups(&k);
        let all: Vec<&OptionCheck> = g.iter().flat_map(|g| g.options.iter()).collect();
        let find = |n: &str| all.iter().find(|o| o.option == n).map(|o| o.state);
        assert_eq!(find("CONFIG_NAMESPACES"), Some(CheckState::Enabled));
        assert_eq!(find("CONFIG_IP_VS"), Some(CheckState::Module));
        assert_eq!(find("CONFIG_NF_NAT_NEEDED"), Some(CheckState::Missing));
        assert_eq!(find("CONFIG_IOSCHED_CFQ"), Some(CheckState::Missing));
        assert!(missing_necessary(&g).contains(&"CONFIG_PID_NS"));

        k.version = [6, 1, 0];
        k.config_source = None;
        let g = option_groups(&k);
        let all: Vec<&OptionCheck> = g.iter().flat_map(|g| g.options.iter()).collect();
        assert!(all.iter().all(|o| o.state == CheckState::Unknown));
        assert!(!all.iter().any(|o| o.option == "CONFIG_NF_NAT_NEEDED"));
        assert!(missing_necessary(&g).is_empty());
    }
}
