//! CPU facts (`/proc/cpuinfo`, `/sys/devices/system/cpu/online`, uname machine, page size,
//! endianness) and the host platform in OCI terms (decided by `crate::platform::host`).

use crate::platform::Platform;
use crate::platform::host::{amd64_level, detect_from};

use super::profile::{CpuInfo, UnknownFact};
use super::source::HostSource;

/// The first value of a `key : value` line in cpuinfo text.
fn field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The feature flags of the first CPU (`flags` on x86, `Features` on arm, `isa` on riscv).
pub fn parse_flags(cpuinfo: &str) -> Vec<String> {
    let raw = field(cpuinfo, "flags")
        .or_else(|| field(cpuinfo, "Features"))
        .or_else(|| field(cpuinfo, "isa"))
        .unwrap_or("");
    let mut v: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

/// The endianness of a `uname -m` machine, `None` when the name does not say.
pub fn endianness_of_machine(machine: &str) -> Option<&'static str> {
    match machine {
        "x86_64" | "i386" | "i486" | "i586" | "i686" | "aarch64" | "ppc64le" | "riscv64"
        | "loongarch64" | "mipsel" | "mips64el" => Some("little"),
        "s390x" | "ppc64" | "ppc" | "aarch64_be" | "mips" | "mips64" | "sparc64" => Some("big"),
        m if m.starts_with("arm") && !m.ends_with('b') => Some("little"),
        _ => None,
    }
}

/// An ARM `CPU implementer` code as a name (`0x41` → `ARM`), or the code.
fn arm_implementer(code: &str) -> String {
    match code {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x46" => "Fujitsu",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x50" => "APM",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0xc0" => "Ampere",
        other => return format!("implementer {other}"),
    }
    .to_string()
}

/// An ARM Ltd `CPU part` code as a core name (`0xd0c` → `Neoverse-N1`), or the code.
fn arm_part(implementer: Option<&str>, part: &str) -> String {
    let name = match (implementer, part) {
        (Some("0x41"), "0xd03") => "Cortex-A53",
        (Some("0x41"), "0xd07") => "Cortex-A57",
        (Some("0x41"), "0xd08") => "Cortex-A72",
        (Some("0x41"), "0xd0b") => "Cortex-A76",
        (Some("0x41"), "0xd0c") => "Neoverse-N1",
        (Some("0x41"), "0xd40") => "Neoverse-V1",
        (Some("0x41"), "0xd49") => "Neoverse-N2",
        (Some("0x41"), "0xd4f") => "Neoverse-V2",
        _ => return format!("part {part}"),
    };
    name.to_string()
}

/// Online CPUs from a range list (`0-3,8-11` → 8).
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<u32>().ok()? - a.trim().parse::<u32>().ok()? + 1,
            None => {
                part.trim().parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// CPU facts and the platform.
pub fn gather(src: &HostSource, unknowns: &mut Vec<UnknownFact>) -> (CpuInfo, Platform) {
    let machine = src.uname.machine.clone();
    let cpuinfo = src.read("/proc/cpuinfo").unwrap_or_else(|reason| {
        unknowns.push(UnknownFact {
            fact: "cpu.flags".into(),
            reason,
        });
        String::new()
    });
    let flags = parse_flags(&cpuinfo);
    let platform = detect_from(&cpuinfo, &machine);
    let amd64_level = if platform.architecture == "amd64" && !cpuinfo.is_empty() {
        let f: Vec<&str> = flags.iter().map(String::as_str).collect();
        amd64_level(&f)
    } else {
        0
    };
    let count = src
        .read("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| count_cpu_list(&t))
        .or_else(|| {
            let n = cpuinfo
                .lines()
                .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
                .count() as u32;
            (n > 0).then_some(n)
        })
        .unwrap_or_else(|| {
            unknowns.push(UnknownFact {
                fact: "cpu.count".into(),
                reason: "neither /sys/devices/system/cpu/online nor /proc/cpuinfo lists CPUs"
                    .into(),
            });
            0
        });
    let endianness = src
        .endianness
        .clone()
        .or_else(|| endianness_of_machine(&machine).map(str::to_string))
        .unwrap_or_else(|| {
            unknowns.push(UnknownFact {
                fact: "cpu.endianness".into(),
                reason: format!("machine {machine:?} does not say"),
            });
            "unknown".into()
        });
    if src.page_size == 0 {
        unknowns.push(UnknownFact {
            fact: "cpu.page_size".into(),
            reason: "sysconf(_SC_PAGESIZE) failed".into(),
        });
    }
    let vendor = field(&cpuinfo, "vendor_id")
        .map(str::to_string)
        .or_else(|| field(&cpuinfo, "CPU implementer").map(arm_implementer))
        .or_else(|| field(&cpuinfo, "mvendorid").map(|i| format!("mvendorid {i}")))
        .unwrap_or_default();
    let model = field(&cpuinfo, "model name")
        .map(str::to_string)
        .or_else(|| {
            field(&cpuinfo, "CPU part").map(|p| arm_part(field(&cpuinfo, "CPU implementer"), p))
        })
        .or_else(|| field(&cpuinfo, "uarch").map(str::to_string))
        .or_else(|| field(&cpuinfo, "cpu").map(str::to_string))
        .unwrap_or_default();
    let cpu = CpuInfo {
        machine,
        amd64_level,
        flags,
        count,
        page_size: src.page_size,
        endianness,
        vendor,
        model,
        compat_arches: Vec::new(),
        aarch32: None,
    };
    (cpu, platform)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_machines() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8-11"), Some(8));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(endianness_of_machine("s390x"), Some("big"));
        assert_eq!(endianness_of_machine("armv7l"), Some("little"));
    }
}
