//! Host platform detection from `/proc/cpuinfo` and `uname -m`, as pure functions over text so
//! that they can be tested against recorded machines.
//!
//! - The architecture comes from `uname -m` (what the kernel runs, even under qemu-user where
//!   `/proc/cpuinfo` describes the emulating host); when that is empty or unknown, from
//!   `/proc/cpuinfo` itself.
//! - amd64: the x86-64 micro-architecture level (v1–v4) from the `flags` line.
//! - ARM: the variant from the `CPU architecture` field (`8` → v8, `7` → v7, …; an
//!   "ARMv6-compatible" model that reports 7 is v6), else from `uname -m` (`armv7l` → v7).

use super::Platform;
use super::normalize::normalize_arch;

/// CPU flags (as in `/proc/cpuinfo`) each x86-64 level adds to the one below.
const AMD64_V2: &[&str] = &[
    "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
];
const AMD64_V3: &[&str] = &[
    "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
];
const AMD64_V4: &[&str] = &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];

/// The x86-64 micro-architecture level (1–4) that a CPU with these `/proc/cpuinfo` flags runs.
///
/// v2 needs cx16 lahf_lm popcnt pni(SSE3) sse4_1 sse4_2 ssse3; v3 adds avx avx2 bmi1 bmi2 f16c
/// fma abm(LZCNT) movbe xsave; v4 adds avx512f avx512bw avx512cd avx512dq avx512vl.
pub fn amd64_level(flags: &[&str]) -> u8 {
    let has_all = |need: &[&str]| need.iter().all(|n| flags.contains(n));
    let mut level = 1;
    for (next, need) in [(2, AMD64_V2), (3, AMD64_V3), (4, AMD64_V4)] {
        if !has_all(need) {
            break;
        }
        level = next;
    }
    level
}

/// The value of the first `name : value` line of `cpuinfo` (name compared case-insensitively).
pub fn cpuinfo_field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// The ARM variant (`v3`…`v8`) named by the `CPU architecture` field, if it is known.
fn arm_variant_from_cpuinfo(cpuinfo: &str) -> Option<String> {
    let field = cpuinfo_field(cpuinfo, "CPU architecture")?.to_ascii_lowercase();
    let v = match field.as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => {
            // Early Raspberry Pis (ARM1176) report 7 although they are ARMv6.
            let model = cpuinfo_field(cpuinfo, "model name").unwrap_or_default();
            if model.to_ascii_lowercase().starts_with("armv6-compatible") {
                "v6"
            } else {
                "v7"
            }
        }
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => return None,
    };
    Some(v.to_string())
}

/// The amd64 platform for this `cpuinfo`, with its level as variant.
fn amd64_from(cpuinfo: &str) -> Platform {
    let flags: Vec<&str> = cpuinfo_field(cpuinfo, "flags")
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    linux("amd64", Some(format!("v{}", amd64_level(&flags))))
}

/// `linux/<arch>[/<variant>]`, normalized.
fn linux(arch: &str, variant: Option<String>) -> Platform {
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant,
        ..Default::default()
    }
    .normalize()
}

/// The host platform described by a `/proc/cpuinfo` text and the `uname -m` machine string.
///
/// The result is normalized: an x86-64-v1 CPU gives `linux/amd64` (v1 is the baseline), a v4
/// one `linux/amd64/v4`, an arm64 one `linux/arm64/v8`, a Raspberry Pi in 32-bit mode
/// `linux/arm/v7`.
pub fn detect_from(cpuinfo: &str, uname_machine: &str) -> Platform {
    let machine = uname_machine.trim().to_ascii_lowercase();
    let (arch, uname_variant) = normalize_arch(&machine, None);
    match arch.as_str() {
        "amd64" => amd64_from(cpuinfo),
        "386" => linux("386", None),
        "arm64" => linux("arm64", Some("v8".into())),
        "arm" => {
            // uname says armvNx (uname_variant) or plain arm (normalized to v7 already).
            let from_uname = machine
                .starts_with("armv")
                .then_some(uname_variant)
                .flatten();
            let variant = arm_variant_from_cpuinfo(cpuinfo).or(from_uname);
            linux("arm", variant)
        }
        "" | "unknown" => from_cpuinfo_only(cpuinfo),
        _ => linux(&arch, uname_variant),
    }
}

/// Guesses the platform from `/proc/cpuinfo` alone (no usable `uname -m`).
fn from_cpuinfo_only(cpuinfo: &str) -> Platform {
    if let Some(v) = arm_variant_from_cpuinfo(cpuinfo) {
        return if v == "v8" {
            linux("arm64", Some(v))
        } else {
            linux("arm", Some(v))
        };
    }
    match cpuinfo_field(cpuinfo, "flags") {
        Some(flags) if flags.split_whitespace().any(|f| f == "lm") => amd64_from(cpuinfo),
        Some(_) => linux("386", None),
        None => linux(std::env::consts::ARCH, None),
    }
}

/// Reads `/proc/cpuinfo` and `uname(2)` and detects this host's platform (uncached; see
/// [`Platform::host`] for the cached value).
pub fn detect() -> Platform {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let machine = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string());
    detect_from(&cpuinfo, &machine)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AMD EPYC 9454 (Zen 4, Genoa): AVX-512 → x86-64-v4.
    const EPYC_GENOA: &str = "\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9454 48-Core Processor
stepping\t: 1
cpu MHz\t\t: 2750.000
cache size\t: 1024 KB
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba perfmon_v2 ibrs ibpb stibp ibrs_enhanced vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local avx512_bf16 clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin cppc arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif x2avic v_spec_ctrl vnmi avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid overflow_recov succor smca fsrm flush_l1d
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso
bogomips\t: 5500.00

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse
";

    /// Intel Xeon X5650 (Westmere): SSE4.2 and POPCNT but no AVX → x86-64-v2.
    const XEON_WESTMERE: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 44
model name\t: Intel(R) Xeon(R) CPU           X5650  @ 2.67GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 cx16 xtpr pdcm pcid dca sse4_1 sse4_2 popcnt aes lahf_lm pti ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid dtherm ida arat flush_l1d
bogomips\t: 5333.52
";

    /// Intel Xeon E5-2680 v3 (Haswell): AVX2, BMI, FMA, no AVX-512 → x86-64-v3.
    const XEON_HASWELL: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm cpuid_fault epb invpcid_single pti intel_ppin ssbd ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm xsaveopt cqm_llc cqm_occup_llc dtherm ida arat pln pts md_clear flush_l1d
";

    /// Intel Core 2 Duo E6600 (Conroe): no SSE4.1/POPCNT → x86-64-v1.
    const CORE2: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM)2 CPU          6600  @ 2.40GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx lm constant_tsc arch_perfmon pebs bts rep_good nopl cpuid aperfmperf pni dtes64 monitor ds_cpl vmx est tm2 ssse3 cx16 xtpr pdcm lahf_lm pti tpr_shadow dtherm
";

    /// AWS Graviton2 (Neoverse N1).
    const GRAVITON2: &str = "\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 243.75
CPU architecture: 8
";

    /// Raspberry Pi 3 Model B running 32-bit Raspberry Pi OS.
    const RPI3_ARMV7L: &str = "\
processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
BogoMIPS\t: 38.40
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
CPU part\t: 0xd03
CPU revision\t: 4

Hardware\t: BCM2835
Revision\t: a02082
Model\t\t: Raspberry Pi 3 Model B Rev 1.2
";

    /// Raspberry Pi Zero W (ARM1176): ARMv6 that reports architecture 7.
    const RPI_ZERO: &str = "\
processor\t: 0
model name\t: ARMv6-compatible processor rev 7 (v6l)
BogoMIPS\t: 697.95
Features\t: half thumb fastmult vfp edsp java tls
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x0
CPU part\t: 0xb76
CPU revision\t: 7
";

    fn flags_of(cpuinfo: &str) -> Vec<&str> {
        cpuinfo_field(cpuinfo, "flags")
            .unwrap()
            .split_whitespace()
            .collect()
    }

    #[test]
    fn amd64_levels() {
        for (name, cpuinfo, level) in [
            ("EPYC Genoa", EPYC_GENOA, 4),
            ("Xeon Westmere", XEON_WESTMERE, 2),
            ("Xeon Haswell", XEON_HASWELL, 3),
            ("Core 2", CORE2, 1),
        ] {
            assert_eq!(amd64_level(&flags_of(cpuinfo)), level, "{name}");
        }
        assert_eq!(amd64_level(&[]), 1);
        // Each level needs every flag of the lower ones: AVX-512 alone is not v4.
        assert_eq!(amd64_level(AMD64_V4), 1);
        let mut v3: Vec<&str> = AMD64_V2.iter().chain(AMD64_V3).copied().collect();
        assert_eq!(amd64_level(&v3), 3);
        v3.retain(|f| *f != "movbe");
        assert_eq!(amd64_level(&v3), 2);
    }

    #[test]
    fn field_lookup() {
        assert_eq!(cpuinfo_field(GRAVITON2, "CPU architecture"), Some("8"));
        assert_eq!(cpuinfo_field(GRAVITON2, "cpu ARCHITECTURE"), Some("8"));
        assert_eq!(cpuinfo_field(GRAVITON2, "CPU variant"), Some("0x3"));
        assert_eq!(
            cpuinfo_field(RPI3_ARMV7L, "Model"),
            Some("Raspberry Pi 3 Model B Rev 1.2")
        );
        assert_eq!(cpuinfo_field(CORE2, "CPU architecture"), None);
        // The first processor's line is used.
        assert!(
            cpuinfo_field(EPYC_GENOA, "flags")
                .unwrap()
                .contains("avx512f")
        );
    }

    #[test]
    fn detect_table() {
        // (machine, cpuinfo, uname -m, expected)
        let table: &[(&str, &str, &str, &str)] = &[
            ("EPYC Genoa", EPYC_GENOA, "x86_64", "linux/amd64/v4"),
            ("Xeon Westmere", XEON_WESTMERE, "x86_64", "linux/amd64/v2"),
            ("Xeon Haswell", XEON_HASWELL, "x86_64", "linux/amd64/v3"),
            ("Core 2", CORE2, "x86_64", "linux/amd64"),
            (
                "32-bit kernel on Haswell",
                XEON_HASWELL,
                "i686",
                "linux/386",
            ),
            ("Graviton2", GRAVITON2, "aarch64", "linux/arm64/v8"),
            (
                "Raspberry Pi 3, 32-bit",
                RPI3_ARMV7L,
                "armv7l",
                "linux/arm/v7",
            ),
            ("Raspberry Pi Zero", RPI_ZERO, "armv6l", "linux/arm/v6"),
            // Under qemu-user, cpuinfo describes the x86 host: uname decides.
            (
                "qemu-aarch64 on EPYC",
                EPYC_GENOA,
                "aarch64",
                "linux/arm64/v8",
            ),
            ("qemu-arm on EPYC", EPYC_GENOA, "armv7l", "linux/arm/v7"),
            ("qemu-arm, armv6l", EPYC_GENOA, "armv6l", "linux/arm/v6"),
            ("no uname: Graviton2", GRAVITON2, "", "linux/arm64/v8"),
            ("no uname: Pi 3", RPI3_ARMV7L, "", "linux/arm/v7"),
            ("no uname: EPYC", EPYC_GENOA, "", "linux/amd64/v4"),
            (
                "riscv64",
                "processor\t: 0\nisa\t\t: rv64imafdc\n",
                "riscv64",
                "linux/riscv64",
            ),
            ("ppc64le", "cpu\t\t: POWER9\n", "ppc64le", "linux/ppc64le"),
            (
                "s390x",
                "vendor_id       : IBM/S390\n",
                "s390x",
                "linux/s390x",
            ),
            ("loong64", "", "loongarch64", "linux/loong64"),
        ];
        for (name, cpuinfo, machine, want) in table {
            let got = detect_from(cpuinfo, machine);
            assert_eq!(got.to_string(), *want, "{name}");
            assert_eq!(got, got.normalize(), "{name}: result is normalized");
        }
    }

    /// The highest x86-64 level glibc's loader says this machine supports, from `ld.so --help`
    /// ("x86-64-v3 (supported, searched)"), or `None` when the loader does not tell.
    fn glibc_level() -> Option<u8> {
        let out = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--help")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|l| l.contains("(supported"))
            .filter_map(|l| l.trim().strip_prefix("x86-64-v")?.get(..1)?.parse().ok())
            .max()
    }

    #[test]
    fn this_host() {
        let host = detect();
        assert_eq!(host, Platform::host());
        assert_eq!(host.os, "linux");
        let want_arch = normalize_arch(std::env::consts::ARCH, None).0;
        assert_eq!(host.architecture, want_arch);
        eprintln!("this host: {host}");
        if host.architecture != "amd64" {
            return;
        }
        // Cross-check the level against glibc's loader (an independent detector) and against
        // the CPU features the standard library sees (which also honour XCR0).
        let level = host.amd64_level().unwrap();
        match glibc_level() {
            Some(glibc) => assert_eq!(level, glibc, "xrun says v{level}, ld.so says v{glibc}"),
            None => eprintln!("ld.so --help lists no x86-64 levels; glibc cross-check skipped"),
        }
        #[cfg(target_arch = "x86_64")]
        {
            let v4 = std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl");
            let v3 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("fma");
            assert_eq!(level >= 4, v4, "v4 vs AVX-512");
            assert_eq!(level >= 3, v3, "v3 vs AVX2/BMI2/FMA");
        }
    }
}
