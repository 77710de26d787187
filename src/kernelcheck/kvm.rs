//! KVM: `/dev/kvm` present, and whether it is real hardware virtualization (a `kvm_intel` or
//! `kvm_amd` module and `vmx`/`svm` in cpuinfo on x86; the built-in KVM on arm64) rather than
//! e.g. `kvm_pvm`, a paravirtual KVM under which stock guest kernels crawl.

use super::source::HostSource;

/// KVM facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kvm {
    /// `/dev/kvm` exists.
    pub present: bool,
    /// Hardware-accelerated guests will run.
    pub usable: bool,
    /// Why (or why not), for people.
    pub note: String,
    /// The vendor module seen (`kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub module: Option<String>,
}

/// Decides KVM from `/dev/kvm`, `/sys/module/kvm_*` and the CPU flags.
pub fn gather(src: &HostSource, machine: &str, cpu_flags: &[String]) -> Kvm {
    let present = src.exists("/dev/kvm");
    let module = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| src.exists(&format!("/sys/module/{m}")))
        .map(str::to_string);
    let has_flag = |f: &str| cpu_flags.iter().any(|x| x == f);
    let x86 = matches!(machine, "x86_64" | "i686" | "i586" | "i386");
    let (usable, note) = if !present {
        (
            false,
            "/dev/kvm is absent: the vm route uses TCG (slow)".to_string(),
        )
    } else if module.as_deref() == Some("kvm_pvm") {
        (
            false,
            "/dev/kvm is kvm_pvm (paravirtual KVM inside a VM, no vmx/svm): stock guest \
             kernels crawl under it; use TCG"
                .to_string(),
        )
    } else if x86 {
        match module.as_deref() {
            Some(m @ ("kvm_intel" | "kvm_amd")) => {
                let flag = if m == "kvm_intel" { "vmx" } else { "svm" };
                if has_flag(flag) {
                    (true, format!("{m} with {flag} in cpuinfo"))
                } else {
                    (
                        false,
                        format!("{m} is loaded but cpuinfo has no {flag}: use TCG"),
                    )
                }
            }
            _ => (
                false,
                "/dev/kvm exists but neither kvm_intel nor kvm_amd is in /sys/module: use TCG"
                    .to_string(),
            ),
        }
    } else if machine == "aarch64" {
        (true, "arm64 KVM (built into the kernel)".to_string())
    } else {
        (
            false,
            format!("/dev/kvm on {machine} is not supported by xrun's vm route: use TCG"),
        )
    };
    Kvm {
        present,
        usable,
        note,
        module,
    }
}
