//! The host profile: a stable, versioned JSON schema (`xrun host --format json`), so a profile
//! saved on one host can be checked against elsewhere.
//!
//! CONTRACT: the plan stage reads these fields. Add fields freely (with `#[serde(default)]`
//! so older profiles still load); renaming or removing one bumps [`SCHEMA_VERSION`].
//! The schema is documented field by field in `docs/host-profile.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// The schema version written in every profile.
pub const SCHEMA_VERSION: u32 = 1;

/// The schema's minor version: bumped when optional fields are added (readers of an older
/// minor ignore them; profiles of an older minor lack them and load with their defaults).
/// 1: `emulation.tcg_amd64_level`, `cpu.aarch32`.
pub const SCHEMA_MINOR: u32 = 1;

/// Where a fact came from: a file, a line, a command; so reports can explain themselves.
pub type Evidence = String;

/// Everything xrun knows about a host that decides how an image can run there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostProfile {
    /// Always [`SCHEMA_VERSION`] when written by this xrun.
    pub schema_version: u32,
    /// [`SCHEMA_MINOR`] when written by this xrun; 0 in profiles from before minors existed.
    #[serde(default)]
    pub schema_minor: u32,
    /// A name for reports (hostname, or the profile file's stem).
    pub name: String,
    /// The host's platform in OCI terms (amd64 variant = level `v1`..`v4`, arm variant).
    pub platform: Platform,
    /// The distribution (`PRETTY_NAME` of `/etc/os-release`), when known.
    #[serde(default)]
    pub os_release: Option<String>,
    /// CPU facts.
    pub cpu: CpuInfo,
    /// The running kernel.
    pub kernel: KernelInfo,
    /// cgroup layout.
    #[serde(default)]
    pub cgroups: CgroupInfo,
    /// Namespaces this host can create (`mnt`, `pid`, `net`, `uts`, `ipc`, `user`, `cgroup`,
    /// `time`): the kinds in `/proc/self/ns` whose `user.max_<kind>_namespaces` is not 0.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// User namespaces in detail (limits and distribution switches).
    #[serde(default)]
    pub user_namespaces: UserNamespaceInfo,
    /// Whether seccomp filtering is available.
    #[serde(default)]
    pub seccomp: bool,
    /// Seccomp, no_new_privs and LSM details.
    #[serde(default)]
    pub security: SecurityInfo,
    /// File systems the kernel knows (`/proc/filesystems`).
    #[serde(default)]
    pub filesystems: Vec<String>,
    /// What can run foreign code here.
    #[serde(default)]
    pub emulation: EmulationInfo,
    /// Facts that could not be read, each with the reason. Gathering never fails as a whole:
    /// an unreadable fact lands here and its field keeps a neutral value.
    #[serde(default)]
    pub unknowns: Vec<UnknownFact>,
}

/// A fact that could not be determined, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownFact {
    /// Dotted field path in this schema (`kernel.config`, `cpu.flags`, …).
    pub fact: String,
    /// Why it is unknown (file missing, unreadable, unparsable), naming what was tried.
    pub reason: String,
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
    /// CPU vendor (`vendor_id`, or the ARM `CPU implementer` code), empty when unknown.
    #[serde(default)]
    pub vendor: String,
    /// CPU model (`model name`, or ARM `CPU part`), empty when unknown.
    #[serde(default)]
    pub model: String,
    /// Other OCI architectures this CPU and kernel run natively (`386` on amd64 with
    /// `CONFIG_IA32_EMULATION`, `arm` on arm64 with AArch32 EL0 and `CONFIG_COMPAT`).
    #[serde(default)]
    pub compat_arches: Vec<String>,
    /// arm64 only: whether this CPU and kernel run 32-bit arm (AArch32) code at EL0, with the
    /// evidence; `None` elsewhere or when it could not be told. Added in schema 1.1.
    #[serde(default)]
    pub aarch32: Option<Aarch32Support>,
}

/// Whether an arm64 host runs AArch32 user code natively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aarch32Support {
    /// The CPU has AArch32 at EL0 and the kernel runs compat tasks (`CONFIG_COMPAT`).
    pub el0: bool,
    /// How it was told (`personality(PER_LINUX32) accepted`, …).
    pub evidence: Evidence,
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

/// The state of one checked kernel option: an [`OptionState`], or `unknown` without a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// `=y`.
    Enabled,
    /// `=m`.
    Module,
    /// Absent or `is not set`.
    Missing,
    /// No kernel config was found, so the option cannot be decided.
    Unknown,
}

impl From<Option<OptionState>> for CheckState {
    fn from(s: Option<OptionState>) -> Self {
        match s {
            Some(OptionState::Enabled) => CheckState::Enabled,
            Some(OptionState::Module) => CheckState::Module,
            Some(OptionState::Missing) => CheckState::Missing,
            None => CheckState::Unknown,
        }
    }
}

impl From<OptionState> for CheckState {
    fn from(s: OptionState) -> Self {
        Some(s).into()
    }
}

impl std::fmt::Display for CheckState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckState::Enabled => "enabled",
            CheckState::Module => "enabled (as module)",
            CheckState::Missing => "missing",
            CheckState::Unknown => "unknown",
        })
    }
}

/// One kernel option checked for containers, as in moby's `check-config.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionCheck {
    /// The full option name (`CONFIG_USER_NS`).
    pub option: String,
    /// Its state on this host.
    pub state: CheckState,
    /// What needs it (`user namespaces (rootless)`, `overlay storage`).
    pub purpose: String,
}

/// A group of checked kernel options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionGroup {
    /// Stable id: `necessary`, `optional`, `network`, `storage`, `xrun`.
    pub id: String,
    /// Title for people (`Generally necessary`).
    pub title: String,
    /// The options, in check order.
    pub options: Vec<OptionCheck>,
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
    /// Every `CONFIG_…` option that is `y` or `m` (missing ones are absent). Keys are the full
    /// names, `CONFIG_` prefix included.
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
    /// The container-essential options, grouped like moby's `check-config.sh`.
    #[serde(default)]
    pub checks: Vec<OptionGroup>,
}

impl KernelInfo {
    /// The state of one option (`USER_NS` or `CONFIG_USER_NS`), or `None` when no config was
    /// found (the option cannot be decided).
    pub fn option(&self, name: &str) -> Option<OptionState> {
        self.config_source.as_ref()?;
        let key = if name.starts_with("CONFIG_") {
            name.to_string()
        } else {
            format!("CONFIG_{name}")
        };
        Some(
            self.config
                .get(&key)
                .copied()
                .unwrap_or(OptionState::Missing),
        )
    }
}

/// cgroup layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupInfo {
    /// `v1`, `v2`, `hybrid`, or `none`.
    pub mode: String,
    /// Controller name → where it is usable (`v1:/sys/fs/cgroup/memory` or `v2:/sys/fs/cgroup`).
    #[serde(default)]
    pub controllers: BTreeMap<String, String>,
    /// Every cgroup mount (from `/proc/self/mountinfo`).
    #[serde(default)]
    pub mounts: Vec<CgroupMount>,
    /// Where the unified (v2) hierarchy is mounted, if it is.
    #[serde(default)]
    pub unified: Option<String>,
    /// Controllers the unified hierarchy offers (`cgroup.controllers` at its root).
    #[serde(default)]
    pub unified_controllers: Vec<String>,
    /// Controllers the kernel has and enables (`/proc/cgroups`).
    #[serde(default)]
    pub kernel_controllers: Vec<String>,
    /// Controllers the kernel has but disabled (`enabled` 0 in `/proc/cgroups`, e.g. by
    /// `cgroup_disable=memory` on the kernel command line).
    #[serde(default)]
    pub disabled_controllers: Vec<String>,
    /// This process's cgroup per hierarchy (`/proc/self/cgroup`): key is the controller list
    /// (`memory`, `cpu,cpuacct`, `name=systemd`) or `unified` for the v2 entry.
    #[serde(default)]
    pub process: BTreeMap<String, String>,
}

/// One cgroup file system mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// 1 or 2.
    pub version: u8,
    /// Mount point.
    pub path: String,
    /// v1: the controllers bound to this hierarchy; v2: empty (see `unified_controllers`).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// v1 named hierarchy (`systemd` for `name=systemd`).
    #[serde(default)]
    pub name: Option<String>,
}

/// User namespaces in detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaceInfo {
    /// The kernel has user namespaces (`/proc/self/ns/user`).
    pub supported: bool,
    /// `user.max_user_namespaces` (0 disables them), when readable.
    #[serde(default)]
    pub max: Option<u64>,
    /// Debian/Ubuntu `kernel.unprivileged_userns_clone`, when the kernel has it.
    #[serde(default)]
    pub unprivileged_clone: Option<bool>,
    /// Ubuntu `kernel.apparmor_restrict_unprivileged_userns`, when the kernel has it.
    #[serde(default)]
    pub apparmor_restricted: Option<bool>,
}

/// Seccomp, no_new_privs and LSM details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityInfo {
    /// The gathering process's own seccomp mode (`disabled`, `strict`, `filter`), from
    /// `/proc/self/status`; `None` when the kernel has no seccomp or it is unreadable.
    #[serde(default)]
    pub seccomp_mode: Option<String>,
    /// Seccomp filter actions the kernel offers (`/proc/sys/kernel/seccomp/actions_avail`).
    #[serde(default)]
    pub seccomp_actions: Vec<String>,
    /// The gathering process's `NoNewPrivs` (a parent that set it binds every container).
    #[serde(default)]
    pub no_new_privs: Option<bool>,
    /// AppArmor is enabled (`/sys/module/apparmor/parameters/enabled` = `Y`).
    #[serde(default)]
    pub apparmor: bool,
    /// SELinux is active (`selinuxfs` mounted).
    #[serde(default)]
    pub selinux: bool,
}

/// The ELF target a binfmt_misc magic/mask selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElfTarget {
    /// `e_machine` (183 = aarch64, 40 = arm, 243 = riscv, 62 = x86-64, …).
    pub machine: u16,
    /// 32 or 64 (`EI_CLASS`).
    pub class: u8,
    /// `little` or `big` (`EI_DATA`).
    pub endianness: String,
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
    /// `F` is set, the handler and binfmt_misc are enabled: the interpreter works inside a
    /// container's mount namespace.
    pub usable_in_containers: bool,
    /// Match offset in the file (magic handlers).
    #[serde(default)]
    pub offset: u32,
    /// Magic bytes, lower-case hex (empty for extension handlers).
    #[serde(default)]
    pub magic: String,
    /// Mask bytes, lower-case hex (empty when the handler has none).
    #[serde(default)]
    pub mask: String,
    /// File name extension (extension handlers, `E` type), without the dot.
    #[serde(default)]
    pub extension: Option<String>,
    /// The ELF target the magic/mask selects, when it is an ELF handler.
    #[serde(default)]
    pub elf: Option<ElfTarget>,
}

/// What can run foreign code or another kernel here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmulationInfo {
    /// binfmt_misc mounted.
    pub binfmt_mounted: bool,
    /// binfmt_misc enabled (`status` says `enabled`).
    pub binfmt_enabled: bool,
    /// Where binfmt_misc is mounted, if it is.
    #[serde(default)]
    pub binfmt_path: Option<String>,
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
    /// The KVM vendor module seen in `/sys/module` (`kvm_intel`, `kvm_amd`, `kvm_pvm`), if any.
    #[serde(default)]
    pub kvm_module: Option<String>,
    /// The x86-64 level qemu's TCG emulates here for amd64 code (qemu-user, and qemu-system
    /// without KVM), with its evidence; `None` when no qemu for amd64 was found or it was not
    /// asked (recorded hosts, older profiles). Added in schema 1.1.
    #[serde(default)]
    pub tcg_amd64_level: Option<TcgLevel>,
}

/// The x86-64 level qemu's TCG offers (`-cpu max`, also qemu-user's default CPU), decided from
/// the qemu version ([`crate::kernelcheck::qemu::tcg_amd64_level_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcgLevel {
    /// x86-64 level 1..=4.
    pub level: u8,
    /// The qemu version it was decided from (`10.0.2`).
    pub qemu_version: String,
    /// Where it came from (`/usr/bin/qemu-system-x86_64 --version: 10.0.2`).
    pub evidence: Evidence,
}

impl EmulationInfo {
    /// The enabled handler that runs `arch` (OCI terms) inside containers, if any.
    pub fn container_handler(&self, arch: &str) -> Option<&BinfmtHandler> {
        self.handlers
            .iter()
            .find(|h| h.usable_in_containers && h.arch.as_deref() == Some(arch))
    }
}

/// Why a saved profile cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file cannot be read.
    #[error("cannot read host profile {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a host profile.
    #[error("{path} is not a host profile (xrun host --format json): {source}")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Written by a newer xrun with an incompatible schema.
    #[error(
        "host profile {path} has schema_version {found}, this xrun reads up to {SCHEMA_VERSION}: upgrade xrun or re-create the profile"
    )]
    Version {
        /// The file.
        path: String,
        /// Its schema version.
        found: u32,
    },
}

impl HostProfile {
    /// Loads a profile written by `xrun host --format json`, checking its schema version.
    pub fn load(path: &Path) -> Result<HostProfile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            ProfileError::Parse { source, .. } => ProfileError::Parse {
                path: shown.clone(),
                source,
            },
            ProfileError::Version { found, .. } => ProfileError::Version {
                path: shown.clone(),
                found,
            },
            other => other,
        })
    }

    /// Parses a profile from JSON text, checking its schema version.
    pub fn from_json(text: &str) -> Result<HostProfile, ProfileError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            schema_version: u32,
        }
        let parse = |source| ProfileError::Parse {
            path: "<text>".into(),
            source,
        };
        let v: VersionOnly = serde_json::from_str(text).map_err(parse)?;
        if v.schema_version == 0 || v.schema_version > SCHEMA_VERSION {
            return Err(ProfileError::Version {
                path: "<text>".into(),
                found: v.schema_version,
            });
        }
        serde_json::from_str(text).map_err(parse)
    }

    /// The profile as pretty-printed JSON (the `xrun host --format json` output).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a host profile always serializes")
    }
}
