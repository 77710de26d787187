//! xrun's own guest kernel (ci/guest-kernel, built by `ci/guest-image`): its `guest.json` says
//! what the `.config` it was built with says, the booted kernel is that one (`uname -r`,
//! `/proc/config.gz` byte for byte), and `--vm-kernel debian` still boots the Debian cloud
//! kernel guest. Real qemu-system (TCG here), amd64 and arm64; four boots, serialized.
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use xrun::vm::{self, Guest};

static BOOTS: Mutex<()> = Mutex::new(());

const IMAGE: &str = "localhost/busybox-amd64:latest";

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `CONFIG_X=value` lines of a kernel config.
fn options(config: &str) -> BTreeMap<String, String> {
    config
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The xrun guest for `arch` as `ci/guest-image` built it, or `None` (reason printed).
fn xrun_guest(arch: &str) -> Option<Guest> {
    let st = Command::new(common::repo_root().join("ci/guest-image"))
        .args(["--arch", arch, "--guest", "xrun"])
        .status()
        .expect("run ci/guest-image");
    assert!(st.success(), "ci/guest-image --arch {arch} failed");
    let built = std::env::var("XRUN_GUEST_KERNEL_ARCHES").unwrap_or_else(|_| "amd64 arm64".into());
    if !built.split_whitespace().any(|a| a == arch) {
        common::skip(&format!(
            "xrun's own {arch} kernel is not built (XRUN_GUEST_KERNEL_ARCHES={built:?}; see ci/guest-image)"
        ));
        return None;
    }
    Some(Guest::from_dir(&vm::guest::ci_guest_dir().join(arch)).unwrap())
}

#[test]
fn amd64_guest_json_matches_the_config_it_was_built_with() {
    guest_json_matches_config("amd64");
}

#[test]
fn arm64_guest_json_matches_the_config_it_was_built_with() {
    guest_json_matches_config("arm64");
}

/// guest.json against the `.config` shipped with it (no boot).
fn guest_json_matches_config(arch: &str) {
    {
        let Some(g) = xrun_guest(arch) else { return };
        let dir = vm::guest::ci_guest_dir().join(arch);
        let j: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("guest.json")).unwrap()).unwrap();
        let config = fs::read_to_string(&g.config).unwrap();
        let opts = options(&config);
        let on = |k: &str| opts.get(k).map(String::as_str) == Some("y");
        // The release: the version the config was made for, plus CONFIG_LOCALVERSION.
        let version = config
            .lines()
            .find_map(|l| {
                l.strip_prefix("# Linux/")
                    .and_then(|r| r.split_whitespace().nth(1))
            })
            .expect("a config header with the version");
        let local = opts["CONFIG_LOCALVERSION"].trim_matches('"');
        assert_eq!(g.kernel_release, format!("{version}{local}"), "{arch}");
        assert!(
            g.kernel_package.starts_with("linux-source-6.1="),
            "{}",
            g.kernel_package
        );
        // No modules at all: everything is built in, and guest.json says so.
        assert!(
            !opts.contains_key("CONFIG_MODULES"),
            "{arch}: CONFIG_MODULES"
        );
        assert_eq!(j["base_modules"], serde_json::json!([]), "{arch}");
        assert_eq!(j["modules"], serde_json::json!({}), "{arch}");
        let builtin: Vec<&str> = j["builtin_modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        // The optional ones images ask for: built in, in the config and in guest.json.
        for (module, option) in [
            ("wireguard", "CONFIG_WIREGUARD"),
            ("ip_vs", "CONFIG_IP_VS"),
            ("dummy", "CONFIG_DUMMY"),
            ("tls", "CONFIG_TLS"),
            ("overlay", "CONFIG_OVERLAY_FS"),
            ("erofs", "CONFIG_EROFS_FS"),
            ("9p", "CONFIG_9P_FS"),
        ] {
            assert!(on(option), "{arch}: {option}");
            assert!(
                builtin.contains(&module),
                "{arch}: {module} not in {builtin:?}"
            );
        }
        // Every listed built-in is really in the kernel's config (no stale list).
        for m in &builtin {
            let option = xrun::kernelcheck::module_options::config_option(m);
            if let Some(o) = option {
                assert!(on(o), "{arch}: {m} listed as built in but {o} is not y");
            }
        }
        // What the guest init and the VM route need, built in.
        for o in [
            "CONFIG_VIRTIO_MMIO",
            "CONFIG_VIRTIO_PCI",
            "CONFIG_VIRTIO_BLK",
            "CONFIG_VIRTIO_NET",
            "CONFIG_VIRTIO_CONSOLE",
            "CONFIG_VSOCKETS",
            "CONFIG_VIRTIO_VSOCKETS",
            "CONFIG_NET_9P",
            "CONFIG_NET_9P_VIRTIO",
            "CONFIG_EXT4_FS",
            "CONFIG_TMPFS",
            "CONFIG_DEVTMPFS",
            "CONFIG_CGROUPS",
            "CONFIG_MEMCG",
            "CONFIG_CGROUP_PIDS",
            "CONFIG_USER_NS",
            "CONFIG_SECCOMP_FILTER",
            "CONFIG_NF_TABLES",
            "CONFIG_IPV6",
            "CONFIG_BINFMT_SCRIPT",
        ] {
            assert!(on(o), "{arch}: {o}");
        }
        // What `-M virt` needs on arm64: the PL011 console, the generic PCI host (virtio-pci),
        // both GICs, PSCI (power-off ends qemu), and the PL031 read at boot (the time of day).
        if arch == "arm64" {
            for o in [
                "CONFIG_SERIAL_AMBA_PL011_CONSOLE",
                "CONFIG_PCI_HOST_GENERIC",
                "CONFIG_ARM_GIC",
                "CONFIG_ARM_GIC_V3",
                "CONFIG_ARM_ARCH_TIMER",
                "CONFIG_ARM_PSCI_FW",
                "CONFIG_RTC_DRV_PL031",
                "CONFIG_RTC_HCTOSYS",
            ] {
                assert!(on(o), "{arch}: {o}");
            }
        }
        // The plan sees the guest as it is: no module loading, a complete built-in list.
        let p = g.profile(3).unwrap();
        assert!(!p.kernel.modules_supported, "{arch}");
        assert!(p.kernel.modules_builtin_complete, "{arch}");
        assert_eq!(
            g.module_load_order(&["wireguard".into()]).unwrap(),
            Vec::<String>::new()
        );
        assert!(g.module_load_order(&["no_such_module".into()]).is_err());
        // The boot: microvm without ACPI on amd64, virt on arm64.
        assert_eq!(
            g.boot,
            if arch == "amd64" {
                vm::guest::BootKind::Microvm
            } else {
                vm::guest::BootKind::Virt
            }
        );
        assert!(!g.acpi, "{arch}: the xrun kernel has no ACPI");
    }
}

/// The booted kernel is the one described: `uname -r` is guest.json's release and the
/// running kernel's `/proc/config.gz` is the shipped config, byte for byte; and the guest has
/// the host's time of day.
#[test]
fn the_default_guest_is_xrun_kernel_and_boots_its_config() {
    boots_its_config("amd64");
}

/// The same on arm64 (`-M virt`, PL011 console, PSCI power-off): the default arm64 guest is
/// xrun's own kernel wherever `ci/guest-image` built it.
#[test]
fn the_default_arm64_guest_is_xrun_kernel_and_boots_its_config() {
    boots_its_config("arm64");
}

fn boots_its_config(arch: &str) {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env_for(arch, &format!("busybox-{arch}")) else {
        return;
    };
    let Some(g) = xrun_guest(arch) else { return };
    let sum = {
        let o = Command::new("sha256sum").arg(&g.config).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let image = format!("localhost/busybox-{arch}:latest");
    let platform = format!("linux/{arch}");
    let o = env
        .cmd()
        .args([
            "run",
            "--rm",
            "--route",
            "vm",
            "--network",
            "none",
            "--platform",
            &platform,
            &image,
            "sh",
            "-c",
            "uname -m; uname -r; zcat /proc/config.gz | sha256sum; date +%s",
        ])
        .output()
        .unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    let machine = if arch == "arm64" { "aarch64" } else { "x86_64" };
    assert_eq!(lines.next(), Some(machine), "{}", text(&o));
    assert_eq!(
        lines.next(),
        Some(g.kernel_release.as_str()),
        "{}",
        text(&o)
    );
    assert_eq!(
        lines.next().and_then(|l| l.split_whitespace().next()),
        Some(sum.as_str()),
        "{}",
        text(&o)
    );
    // The guest has the time of day (amd64: the CMOS clock; arm64: the PL031 at boot), not 1970.
    let guest_now: i64 = lines.next().unwrap_or_default().parse().unwrap_or(0);
    assert!(
        (guest_now - host_now).abs() < 3600,
        "guest clock {guest_now}, host {host_now}: {}",
        text(&o)
    );
}

/// `--vm-kernel debian` boots the Debian cloud kernel guest (the fallback), by name and by
/// path; a name that is neither a local guest nor a guest image is one clear error.
#[test]
fn vm_kernel_selects_the_debian_guest_and_it_still_runs() {
    let _l = BOOTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = common::vm_env("busybox-amd64") else {
        return;
    };
    let debian = vm::guest::ci_guest_dir().join("debian");
    let st = Command::new(common::repo_root().join("ci/guest-image"))
        .args(["--arch", "amd64", "--guest", "debian"])
        .status()
        .unwrap();
    assert!(st.success(), "ci/guest-image --guest debian failed");
    let d = Guest::from_dir(&debian.join("amd64")).unwrap();
    assert!(
        d.kernel_release.contains("cloud-amd64"),
        "{}",
        d.kernel_release
    );
    let xrun_release = Guest::from_dir(&vm::guest::ci_guest_dir().join("amd64"))
        .unwrap()
        .kernel_release;
    assert_ne!(d.kernel_release, xrun_release);
    let by_path = debian.join("oci");
    for sel in ["debian", by_path.to_str().unwrap()] {
        let o = env
            .cmd()
            .args([
                "run",
                "--rm",
                "--route",
                "vm",
                "--network",
                "none",
                "--vm-kernel",
                sel,
                IMAGE,
                "sh",
                "-c",
                "uname -r; echo 'exit 7' | sh",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(7), "{sel}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{}\n", d.kernel_release),
            "{sel}"
        );
    }
    let missing = Path::new("/nonexistent/xrun-guest");
    let o = env
        .cmd()
        .args(["run", "--rm", "--route", "vm", "--vm-kernel"])
        .arg(missing)
        .args([IMAGE, "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent/xrun-guest"),
        "{}",
        text(&o)
    );
}
