//! The host profile: a stable, versioned JSON schema (`xrun host --format json`), so a profile
//! saved on one host can be checked against elsewhere.
//!
//! CONTRACT: the plan stage reads these fields. Add fields freely (with `#[serde(default)]`
//! so older profiles still load); renaming or removing one bumps [`SCHEMA_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// The schema version written in every profile.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a fact came from: a file, a line, a command; so reports can explain themselves.
pub type Evidence = String;

/// Everything xrun knows about a host that decides how an image can run there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostProfile {
    /// Always [`SCHEMA_VERSION`] when written by this xrun.
    pub schema_version: u32,
    /// A name for reports (hostname, or the profile file's stem).
    pub name: String,
    /// The host's platform in OCI terms (amd64 variant = level `v1`..`v4`, arm variant).
    pub platform: Platform,
    /// CPU facts.
    pub cpu: CpuInfo,
    /// The running kernel.
    pub kernel: KernelInfo,
    /// cgroup layout.
    #[serde(default)]
    pub cgroups: CgroupInfo,
    /// Namespaces this host can create (`mnt`, `pid`, `net`, `uts`, `ipc`, `user`, `cgroup`, …).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Whether seccomp filtering is available.
    #[serde(default)]
    pub seccomp: bool,
    /// File systems the kernel knows (`/proc/filesystems`).
    #[serde(default)]
    pub filesystems: Vec<String>,
    /// What can run foreign code here.
    #[serde(default)]
    pub emulation: EmulationInfo,
}

/// CPU facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `uname -m`.
    pub machine: String,
    /// amd64 micro-architecture level 1..=4 (0 when not amd64).
    #[serde(default)]
    pub amd64_level: u8,
    /// CPU feature flags (`/proc/cpuinfo` `flags` or `Features`).
    #[serde(default)]
    pub flags: Vec<String>,
    /// Online CPUs.
    pub count: u32,
    /// `sysconf(_SC_PAGESIZE)` in bytes.
    pub page_size: u64,
    /// `little` or `big`.
    pub endianness: String,
    /// Other OCI architectures this CPU and kernel run natively (`386` on amd64 with
    /// `CONFIG_IA32_EMULATION`, `arm` on arm64 with AArch32 EL0 and `CONFIG_COMPAT`).
    #[serde(default)]
    pub compat_arches: Vec<String>,
}

/// The state of one kernel option (`CONFIG_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionState {
    /// `=y`.
    Enabled,
    /// `=m`.
    Module,
    /// Absent or `is not set`.
    Missing,
}

/// The running kernel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// Parsed `major.minor.patch` of the release.
    pub version: [u32; 3],
    /// Where the config came from (`/proc/config.gz`, `/boot/config-…`), or `None` when no
    /// config was found (then option checks cannot be decided and say so).
    pub config_source: Option<Evidence>,
    /// Every `CONFIG_…` option that is `y` or `m` (missing ones are absent).
    #[serde(default)]
    pub config: BTreeMap<String, OptionState>,
    /// Whether the kernel supports loadable modules at all.
    #[serde(default)]
    pub modules_supported: bool,
    /// Modules loaded now (`/proc/modules`).
    #[serde(default)]
    pub modules_loaded: Vec<String>,
    /// Modules built in (`modules.builtin`, and `/sys/module` entries).
    #[serde(default)]
    pub modules_builtin: Vec<String>,
    /// Modules that could be loaded (`/lib/modules/$(uname -r)`).
    #[serde(default)]
    pub modules_available: Vec<String>,
    /// Whether `modules_builtin` is the complete list (read from `modules.builtin`); when it
    /// only comes from `/sys/module` it is positive-only, and a module's absence proves nothing.
    #[serde(default)]
    pub modules_builtin_complete: bool,
}

/// cgroup layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// `v1`, `v2`, `hybrid`, or `none`.
    pub mode: String,
    /// Controller name → where it is usable (`v1:/sys/fs/cgroup/memory` or `v2:/sys/fs/cgroup`).
    #[serde(default)]
    pub controllers: BTreeMap<String, String>,
}

/// One binfmt_misc handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinfmtHandler {
    /// Handler name (`qemu-aarch64`).
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter path.
    pub interpreter: String,
    /// Flags (`P`, `O`, `C`, `F`).
    pub flags: String,
    /// The ELF machine its magic matches, in OCI arch terms (`arm64`, `arm`, `riscv64`), if any.
    pub arch: Option<String>,
    /// `F` is set, so the interpreter works inside a container's mount namespace.
    pub usable_in_containers: bool,
}

/// What can run foreign code or another kernel here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmulationInfo {
    /// binfmt_misc mounted.
    pub binfmt_mounted: bool,
    /// binfmt_misc enabled (`status` says `enabled`).
    pub binfmt_enabled: bool,
    /// Registered handlers.
    #[serde(default)]
    pub handlers: Vec<BinfmtHandler>,
    /// qemu-user binaries found: OCI arch → path.
    #[serde(default)]
    pub qemu_user: BTreeMap<String, String>,
    /// qemu-system binaries found: OCI arch → path.
    #[serde(default)]
    pub qemu_system: BTreeMap<String, String>,
    /// `/dev/kvm` exists.
    pub kvm_present: bool,
    /// KVM truly usable (not e.g. `kvm_pvm`), with the reason in `kvm_note`.
    pub kvm_usable: bool,
    /// Why KVM is or is not usable.
    #[serde(default)]
    pub kvm_note: String,
}
