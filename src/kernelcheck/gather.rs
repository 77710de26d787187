//! Gathering a [`HostProfile`] from a [`HostSource`]: reads only, never fails as a whole
//! (an unreadable fact is recorded in `unknowns` with its reason).

use super::profile::{
    Aarch32Support, EmulationInfo, HostProfile, KernelInfo, OptionState, SCHEMA_MINOR,
    SCHEMA_VERSION, UnknownFact,
};
use super::source::HostSource;
use super::{
    binfmt, cgroups, checks, cpu, kconfig, kvm, modules, mountinfo, namespaces, qemu, security,
};

/// Names in `/proc/filesystems` (`nodev\toverlay` → `overlay`), sorted.
pub fn parse_filesystems(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `PRETTY_NAME` from os-release text.
fn pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// Whether an arm64 host runs AArch32 user code: the `personality(PER_LINUX32)` probe
/// ([`HostSource::aarch32_el0`]); else, on a recorded host, `CONFIG_COMPAT` not set (no), or
/// `/sys/devices/system/cpu/aarch32_el0` listing CPUs (yes, on kernels started with
/// `allow_mismatched_32bit_el0`); `None` when nothing tells.
pub fn aarch32_support(src: &HostSource, kernel: &KernelInfo) -> Option<Aarch32Support> {
    if let Some(el0) = src.aarch32_el0 {
        let evidence = if el0 {
            "personality(PER_LINUX32) accepted: AArch32 EL0 and CONFIG_COMPAT"
        } else {
            "personality(PER_LINUX32) refused: no AArch32 EL0 or no CONFIG_COMPAT"
        };
        return Some(Aarch32Support {
            el0,
            evidence: evidence.into(),
        });
    }
    let compat = kernel.option("CONFIG_COMPAT");
    if matches!(compat, Some(OptionState::Missing | OptionState::Module)) {
        return Some(Aarch32Support {
            el0: false,
            evidence: format!(
                "{}: CONFIG_COMPAT not set",
                kernel.config_source.clone().unwrap_or_default()
            ),
        });
    }
    const MISMATCHED: &str = "/sys/devices/system/cpu/aarch32_el0";
    match src.read(MISMATCHED) {
        Ok(list) if !list.trim().is_empty() => Some(Aarch32Support {
            el0: true,
            evidence: format!("{MISMATCHED}: {}", list.trim()),
        }),
        _ => None,
    }
}

impl HostProfile {
    /// The profile of this machine.
    pub fn gather() -> HostProfile {
        Self::gather_from(&HostSource::live())
    }

    /// The profile of this machine without the emulation facts (binfmt handlers, qemu
    /// binaries, KVM), which only the emulated and vm routes need: what `xrun run` gathers
    /// first, since a native verdict never depends on them (see [`crate::assess`]).
    pub fn gather_without_emulation() -> HostProfile {
        Self::gather_facts(&HostSource::live(), false)
    }

    /// The profile of the host `src` describes (this machine, or a recorded one).
    pub fn gather_from(src: &HostSource) -> HostProfile {
        Self::gather_facts(src, true)
    }

    fn gather_facts(src: &HostSource, with_emulation: bool) -> HostProfile {
        let mut unknowns: Vec<UnknownFact> = Vec::new();
        let mut unknown = |fact: &str, reason: String| {
            unknowns.push(UnknownFact {
                fact: fact.into(),
                reason,
            })
        };

        let release = src.uname.release.clone();
        if release.is_empty() {
            unknown("kernel.release", "uname gave no release".into());
        }
        let version = kconfig::parse_version(&release).unwrap_or_else(|| {
            if !release.is_empty() {
                unknown(
                    "kernel.version",
                    format!("release {release:?} does not start with a version"),
                );
            }
            [0, 0, 0]
        });
        let (config_source, config) = match kconfig::read_config(src, &release) {
            Ok((source, options)) => (Some(source), options),
            Err(reason) => {
                unknown("kernel.config", reason);
                (None, Default::default())
            }
        };
        let mods = modules::gather(src, &release, config_source.as_ref().map(|_| &config));
        let mut kernel = KernelInfo {
            release,
            version,
            config_source,
            config,
            modules_supported: mods.supported,
            modules_loaded: mods.loaded,
            modules_builtin: mods.builtin,
            modules_available: mods.available,
            modules_builtin_complete: mods.builtin_complete,
            checks: Vec::new(),
        };
        kernel.checks = checks::option_groups(&kernel);
        let config_ref = kernel.config_source.as_ref().map(|_| &kernel.config);

        let mounts = match src.read("/proc/self/mountinfo") {
            Ok(text) => Some(mountinfo::parse(&text)),
            Err(reason) => {
                unknown("cgroups", reason);
                None
            }
        };
        let mount_list = mounts.as_deref().unwrap_or(&[]);

        let (mut cpu, platform) = cpu::gather(src, &mut unknowns);
        // 32-bit x86 runs natively on amd64 only with IA32 emulation in the kernel; 32-bit
        // arm on arm64 only with AArch32 EL0 in the CPU and CONFIG_COMPAT (the probe checks
        // both at once).
        if platform.architecture == "amd64"
            && kernel.option("CONFIG_IA32_EMULATION")
                == Some(crate::kernelcheck::profile::OptionState::Enabled)
        {
            cpu.compat_arches.push("386".into());
        }
        if platform.architecture == "arm64" {
            cpu.aarch32 = aarch32_support(src, &kernel);
            if cpu.aarch32.as_ref().is_some_and(|a| a.el0) {
                cpu.compat_arches.push("arm".into());
            }
        }
        let cgroups = if mounts.is_some() {
            cgroups::gather(src, mount_list, &mut unknowns)
        } else {
            Default::default()
        };
        let (namespaces, user_namespaces) = namespaces::gather(src, &mut unknowns);
        let (seccomp, security) = security::gather(src, config_ref, mount_list, &mut unknowns);
        let filesystems = match src.read("/proc/filesystems") {
            Ok(t) => parse_filesystems(&t),
            Err(reason) => {
                unknowns.push(UnknownFact {
                    fact: "filesystems".into(),
                    reason,
                });
                Vec::new()
            }
        };
        let emulation = if with_emulation {
            Self::emulation_facts(src, mounts.as_deref(), &cpu, &mut unknowns)
        } else {
            unknowns.push(UnknownFact {
                fact: "emulation".into(),
                reason: "not gathered (only the emulated and vm routes need it)".into(),
            });
            EmulationInfo::default()
        };
        let os_release = src
            .read("/etc/os-release")
            .or_else(|_| src.read("/usr/lib/os-release"))
            .ok()
            .and_then(|t| pretty_name(&t));

        HostProfile {
            schema_version: SCHEMA_VERSION,
            schema_minor: SCHEMA_MINOR,
            name: src.uname.nodename.clone(),
            platform,
            os_release,
            cpu,
            kernel,
            cgroups,
            namespaces,
            user_namespaces,
            seccomp,
            security,
            filesystems,
            emulation,
            unknowns,
        }
    }
}

impl HostProfile {
    fn emulation_facts(
        src: &HostSource,
        mounts: Option<&[mountinfo::Mount]>,
        cpu: &crate::kernelcheck::profile::CpuInfo,
        unknowns: &mut Vec<UnknownFact>,
    ) -> EmulationInfo {
        let bf = binfmt::gather(src, mounts, unknowns);
        let (qemu_user, qemu_system) = qemu::gather(src);
        let k = kvm::gather(src, &cpu.machine, &cpu.flags);
        let tcg_amd64_level = qemu::tcg_amd64_level(src, &qemu_user, &qemu_system);
        EmulationInfo {
            binfmt_mounted: bf.path.is_some(),
            binfmt_enabled: bf.enabled,
            binfmt_path: bf.path,
            handlers: bf.handlers,
            qemu_user,
            qemu_system,
            kvm_present: k.present,
            kvm_usable: k.usable,
            kvm_note: k.note,
            kvm_module: k.module,
            tcg_amd64_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystems() {
        assert_eq!(
            parse_filesystems("nodev\tsysfs\n\text4\nnodev\toverlay\n"),
            vec!["ext4", "overlay", "sysfs"]
        );
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn empty_root_gives_unknowns_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let src = HostSource {
            root: dir.path().into(),
            uname: Default::default(),
            page_size: 0,
            endianness: None,
            path_dirs: vec![],
            aarch32_el0: None,
        };
        let p = HostProfile::gather_from(&src);
        let facts: Vec<&str> = p.unknowns.iter().map(|u| u.fact.as_str()).collect();
        for f in [
            "kernel.release",
            "kernel.config",
            "cpu.flags",
            "namespaces",
            "filesystems",
        ] {
            assert!(facts.contains(&f), "{f} missing from {facts:?}");
        }
        assert_eq!(p.kernel.config_source, None);
        assert!(!p.emulation.binfmt_mounted);
    }
}
