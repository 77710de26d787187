//! qemu-system: finding the binary, choosing the accelerator, building the command line.

use std::path::{Path, PathBuf};

use super::VmError;
use super::guest::{BootKind, Guest};

/// The accelerator qemu runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// qemu's software emulation.
    Tcg,
}

/// The accelerator decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The choice.
    pub accel: Accel,
    /// Why (for `xrun host`, `--debug`, and reports).
    pub reason: String,
}

/// The host's architecture in OCI terms.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Decides between KVM and TCG for a guest of `guest_arch`: KVM only when the guest matches
/// the host, `/dev/kvm` opens read-write, and it is a real KVM (`kvm_intel`/`kvm_amd` with
/// vmx/svm on amd64, or arm64 KVM), not e.g. `kvm_pvm`, which cannot run stock kernels.
/// `XRUN_VM_ACCEL=tcg|kvm` overrides.
pub fn choose_accel(guest_arch: &str) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    match std::env::var("XRUN_VM_ACCEL").as_deref() {
        Ok("tcg") => return tcg("XRUN_VM_ACCEL=tcg".into()),
        Ok("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                reason: "XRUN_VM_ACCEL=kvm".into(),
            };
        }
        _ => {}
    }
    if guest_arch != host_arch() {
        return tcg(format!(
            "the guest is {guest_arch}, the host {}",
            host_arch()
        ));
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return tcg("/dev/kvm is absent or not accessible".into());
    }
    let module = |m: &str| Path::new("/sys/module").join(m).exists();
    if module("kvm_pvm") {
        return tcg(
            "/dev/kvm is kvm_pvm (a paravirtual KVM that cannot boot stock kernels)".into(),
        );
    }
    if host_arch() == "amd64" {
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let has = |f: &str| {
            flags
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|w| w == f))
        };
        let real = (module("kvm_intel") && has("vmx")) || (module("kvm_amd") && has("svm"));
        if !real {
            return tcg("/dev/kvm exists but neither kvm_intel+vmx nor kvm_amd+svm".into());
        }
        return AccelChoice {
            accel: Accel::Kvm,
            reason: "kvm_intel/kvm_amd with hardware virtualization".into(),
        };
    }
    AccelChoice {
        accel: Accel::Kvm,
        reason: "/dev/kvm is usable".into(),
    }
}

/// The qemu-system binary name for a guest architecture.
pub fn binary_name(arch: &str) -> Result<&'static str, VmError> {
    match arch {
        "amd64" => Ok("qemu-system-x86_64"),
        "arm64" => Ok("qemu-system-aarch64"),
        other => Err(VmError::BadSpec(format!("no VM guest support for {other}"))),
    }
}

/// Finds `name` in `search` (a `PATH`-style list; `None`: `$PATH`).
pub fn find_binary(name: &str, search: Option<&std::ffi::OsStr>) -> Result<PathBuf, VmError> {
    let path = match search {
        Some(s) => s.to_os_string(),
        None => std::env::var_os("PATH").unwrap_or_default(),
    };
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| VmError::QemuMissing {
            binary: name.to_string(),
        })
}

/// Everything the command line is made of.
#[derive(Debug, Clone)]
pub struct QemuPlan<'a> {
    /// The guest.
    pub guest: &'a Guest,
    /// The initrd to boot (base + per-run cpio).
    pub initrd: &'a Path,
    /// The erofs rootfs image.
    pub rootfs: &'a Path,
    /// The writable layer disk, if any.
    pub writable_disk: Option<&'a Path>,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Unix sockets qemu connects to: stdout, stderr, exit (and stdin, if any).
    pub sockets: [&'a Path; 3],
    /// The stdin socket, when stdin is forwarded.
    pub stdin_socket: Option<&'a Path>,
    /// The control socket (signals, terminal size) of port `org.xrun.ctl`.
    pub control_socket: Option<&'a Path>,
    /// `-t`: the socket of the virtio console the command gets as its terminal (`hvc0`).
    pub tty_socket: Option<&'a Path>,
    /// The file the guest console is written to.
    pub console_log: &'a Path,
    /// The network, once wired in the namespace qemu runs in: a virtio-net device per tap.
    pub network: Option<&'a super::net::AttachedNetwork>,
    /// Exec slots the guest serves: four ports each (`org.xrun.xI.{ctl,in,out,err}`) and a
    /// console (`org.xrun.xI.tty`) on sockets qemu listens on in its working directory
    /// ([`exec_socket`]), plugged on first use through the monitor socket [`QMP_SOCKET`]
    /// ([`exec_slot_devices`]); none at boot.
    pub exec_slots: u32,
    /// `-v` shares: (9p mount tag, host directory, read-only).
    pub shares: &'a [(String, PathBuf, bool)],
}

/// The socket (relative to qemu's working directory) of exec slot `slot`'s port `stream`.
pub fn exec_socket(slot: u32, stream: &str) -> String {
    format!("x{slot}{}.sock", &stream[..1])
}

/// qemu's QMP monitor socket, in its working directory (the VM's run directory).
pub const QMP_SOCKET: &str = "qmp.sock";

/// One device of an exec slot, as plugged into the running VM: a chardev listening on
/// `socket` and a port (`driver`: `virtserialport` or `virtconsole`) named `name` on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDevice {
    /// The chardev's and the device's id.
    pub id: String,
    /// The socket qemu listens on, relative to its working directory.
    pub socket: String,
    /// `virtserialport` or `virtconsole`.
    pub driver: &'static str,
    /// The port's name in the guest.
    pub name: String,
}

/// The devices of exec slot `slot`, in the order they must be plugged: the console first
/// (the guest numbers consoles `hvcN` in the order they come, and finds a slot's console by
/// that number), the control port last (the guest opens a slot once its control port
/// appears, when the others are there).
pub fn exec_slot_devices(slot: u32) -> Vec<SlotDevice> {
    let port = |stream: &str, driver| SlotDevice {
        id: format!("x{slot}{stream}"),
        socket: exec_socket(slot, stream),
        driver,
        name: format!("org.xrun.x{slot}.{stream}"),
    };
    let mut out = vec![port("tty", "virtconsole")];
    out.extend(
        ["in", "out", "err", "ctl"]
            .into_iter()
            .map(|s| port(s, "virtserialport")),
    );
    out
}

/// The kernel command line for a guest under `accel`.
pub fn kernel_cmdline(guest: &Guest, accel: Accel) -> String {
    let console = match guest.boot {
        BootKind::Virt => "ttyAMA0",
        _ => "ttyS0",
    };
    // A built-in dummy driver (xrun's kernel) would make `dummy0` at boot: the guest's
    // interfaces are only the ones it is given (the option waits for a module otherwise).
    let mut s = format!("console={console} quiet panic=-1 rdinit=/init dummy.numdummies=0");
    if guest.boot == BootKind::Microvm {
        // Without it, TSC calibration on microvm hangs in ~40% of TCG boots.
        s.push_str(" tsc_early_khz=2000000");
        if !guest.acpi {
            // No ACPI (xrun's kernel): reboot by triple fault (microvm has no keyboard
            // controller), and no PCI bus to scan (devices are virtio-mmio).
            s.push_str(" reboot=t pci=off");
            // The IO-APIC timer test only costs boot time in a VM.
            s.push_str(" no_timer_check");
            if accel == Accel::Tcg {
                // Under TCG the local APIC timer fails its verification anyway ("APIC timer
                // disabled due to verification failure") after ~0.2 s of calibrating it
                // against the PIT; skip straight to that outcome. Not under KVM, where it
                // works and is the per-CPU clock event; not on the Debian kernel (ACPI): it
                // reached init with it, but its reboot then never ended qemu.
                s.push_str(" noapictimer");
            }
        }
    }
    s
}

/// The `-M` value for a guest: `microvm` (virtio-mmio, no PCI, no firmware tables to scan;
/// without ACPI in the kernel qemu lists the devices on the kernel command line), `pc` for
/// PVH, `virt` on arm64.
pub fn machine(guest: &Guest) -> &'static str {
    match guest.boot {
        BootKind::Microvm if guest.acpi => "microvm,rtc=on",
        BootKind::Microvm => MICROVM_NO_ACPI,
        BootKind::Pvh => "pc",
        BootKind::Virt => "virt",
    }
}

/// microvm for a kernel without ACPI: the RTC (the guest's wall clock) and the ISA serial port
/// (the console log) stay. Measured under TCG: with `pit=off,pic=off,x-option-roms=off` too,
/// the guest's `reboot=t` restarts it instead of ending qemu (see docs/vm.md).
const MICROVM_NO_ACPI: &str = "microvm,acpi=off,rtc=on";

/// The arguments after the binary name.
pub fn args(p: &QemuPlan<'_>) -> Vec<String> {
    let disp = |x: &Path| x.display().to_string();
    let (cpu, bus) = match p.guest.boot {
        BootKind::Microvm => ("max", "device"),
        BootKind::Pvh => ("max", "pci"),
        BootKind::Virt => ("cortex-a72", "pci"),
    };
    let machine = machine(p.guest);
    let cpu = if p.accel == Accel::Kvm { "host" } else { cpu };
    let mut a: Vec<String> = vec![
        "-M".into(),
        machine.into(),
        "-accel".into(),
        match p.accel {
            Accel::Kvm => "kvm".into(),
            Accel::Tcg => "tcg".into(),
        },
        "-cpu".into(),
        cpu.into(),
        "-m".into(),
        format!("{}M", p.memory_mib),
        "-smp".into(),
        p.cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        disp(&p.guest.kernel),
        "-initrd".into(),
        disp(p.initrd),
        "-append".into(),
        kernel_cmdline(p.guest, p.accel),
        "-serial".into(),
        format!("file:{}", disp(p.console_log)),
        "-drive".into(),
        format!(
            "id=rootfs,file={},format=raw,if=none,readonly=on",
            qemu_escape(&disp(p.rootfs))
        ),
        "-device".into(),
        format!("virtio-blk-{bus},drive=rootfs,serial=xrun-rootfs"),
    ];
    if let Some(w) = p.writable_disk {
        a.push("-drive".into());
        a.push(format!(
            "id=rw,file={},format=raw,if=none",
            qemu_escape(&disp(w))
        ));
        a.push("-device".into());
        a.push(format!("virtio-blk-{bus},drive=rw,serial=xrun-rw"));
    }
    a.push("-device".into());
    a.push(format!("virtio-serial-{bus}"));
    let names = ["org.xrun.stdout", "org.xrun.stderr", "org.xrun.exit"];
    let mut ports: Vec<(&str, &Path)> = names.iter().copied().zip(p.sockets).collect();
    if let Some(s) = p.stdin_socket {
        ports.push(("org.xrun.stdin", s));
    }
    if let Some(s) = p.control_socket {
        ports.push(("org.xrun.ctl", s));
    }
    if let Some(s) = p.tty_socket {
        // The only console port: the guest's /dev/hvc0.
        a.push("-chardev".into());
        a.push(format!("socket,id=ctty,path={}", qemu_escape(&disp(s))));
        a.push("-device".into());
        a.push("virtconsole,chardev=ctty,name=org.xrun.tty".into());
    }
    for (i, (name, sock)) in ports.iter().enumerate() {
        a.push("-chardev".into());
        a.push(format!("socket,id=c{i},path={}", qemu_escape(&disp(sock))));
        a.push("-device".into());
        a.push(format!("virtserialport,chardev=c{i},name={name}"));
    }
    // Exec slots are plugged through the monitor on their first use (each slot's five
    // devices cost ≈ 0.13 s of boot under TCG when present from the start).
    if p.exec_slots > 0 {
        a.push("-qmp".into());
        a.push(format!("unix:{QMP_SOCKET},server=on,wait=off"));
    }
    for (i, (tag, host, ro)) in p.shares.iter().enumerate() {
        a.push("-fsdev".into());
        a.push(format!(
            "local,id=fs{i},path={},security_model=none{}",
            qemu_escape(&disp(host)),
            if *ro { ",readonly=on" } else { "" }
        ));
        a.push("-device".into());
        a.push(format!("virtio-9p-{bus},fsdev=fs{i},mount_tag={tag}"));
    }
    if let Some(n) = p.network {
        a.extend(n.qemu_args(bus));
    }
    a
}

/// qemu option values escape `,` by doubling it.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}
