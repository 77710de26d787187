//! Table tests: every rule, every reason code, forced routes, unknown facts. Profiles and
//! requirements are built in code.

use super::*;
use crate::kernelcheck::elf::ElfInfo;
use crate::kernelcheck::entrypoint::{EntrypointFacts, ExecLink};
use crate::kernelcheck::profile::{BinfmtHandler, TcgLevel};
use crate::kernelcheck::requirements::{ArchCount, Fact, Problem};

fn platform(s: &str) -> Platform {
    s.parse().unwrap()
}

/// Like this machine: amd64 v4, 6.18, config known, no modules, binfmt with F handlers for
/// arm64/arm/riscv64, qemu-system for amd64/arm64, KVM unusable. Built from JSON with only the
/// fields the plan reads, so fields added to the schema later (serde defaults) do not matter.
fn host() -> HostProfile {
    let handler = |arch: &str, name: &str, flags: &str| {
        serde_json::json!({
            "name": name,
            "enabled": true,
            "interpreter": format!("/usr/libexec/qemu-binfmt/{arch}-binfmt-P"),
            "flags": flags,
            "arch": arch,
            "usable_in_containers": flags.contains('F'),
        })
    };
    let v = serde_json::json!({
        "schema_version": 1,
        "name": "here",
        "platform": {"os": "linux", "architecture": "amd64", "variant": "v4"},
        "cpu": {"machine": "x86_64", "amd64_level": 4, "count": 2, "page_size": 4096,
                "endianness": "little"},
        "kernel": {
            "release": "6.18.0-fc",
            "version": [6, 18, 0],
            "config_source": "/proc/config.gz",
            "config": {"CONFIG_BPF": "enabled", "CONFIG_USER_NS": "enabled",
                       "CONFIG_OVERLAY_FS": "enabled", "CONFIG_IA32_EMULATION": "enabled"},
            "modules_supported": false,
            "modules_builtin": ["kernel"]
        },
        "seccomp": true,
        "emulation": {
            "binfmt_mounted": true,
            "binfmt_enabled": true,
            "handlers": [handler("arm64", "qemu-aarch64", "PF"), handler("arm", "qemu-arm", "PF"),
                         handler("riscv64", "qemu-riscv64", "P")],
            "qemu_user": {"riscv64": "/usr/bin/qemu-riscv64-static"},
            "qemu_system": {"amd64": "/usr/bin/qemu-system-x86_64",
                            "arm64": "/usr/bin/qemu-system-aarch64"},
            "kvm_present": true,
            "kvm_usable": false,
            "kvm_note": "kvm_pvm"
        }
    });
    serde_json::from_value(v).expect("profile JSON")
}

fn x86_handler() -> BinfmtHandler {
    serde_json::from_value(serde_json::json!({
        "name": "qemu-x86_64",
        "enabled": true,
        "interpreter": "/usr/bin/qemu-x86_64-static",
        "flags": "POCF",
        "arch": "amd64",
        "usable_in_containers": true,
    }))
    .unwrap()
}

/// An arm64 server with 64K pages, an older kernel, module support with a full list.
fn arm64_64k() -> HostProfile {
    let mut h = host();
    h.name = "arm64-64k".into();
    h.platform = platform("linux/arm64/v8");
    h.cpu.machine = "aarch64".into();
    h.cpu.amd64_level = 0;
    h.cpu.page_size = 65536;
    h.kernel.version = [5, 10, 0];
    h.kernel.release = "5.10.0-28-arm64".into();
    h.kernel.modules_supported = true;
    h.kernel.modules_available = vec!["wireguard".into(), "ip_vs".into()];
    h.kernel.modules_builtin_complete = true;
    h.emulation.handlers.clear();
    h.emulation.qemu_system.clear();
    h
}

/// A guest kernel profile (Debian cloud 6.1, 4K pages, modules available).
fn guest(arch: &str) -> HostProfile {
    let mut g = host();
    g.name = "guest".into();
    g.platform = platform(&format!("linux/{arch}"));
    g.cpu.amd64_level = if arch == "amd64" { 3 } else { 0 };
    g.kernel.version = [6, 1, 0];
    g.kernel.release = "6.1.0-18-cloud".into();
    g.kernel.modules_supported = true;
    g.kernel.modules_available = vec!["wireguard".into(), "dummy".into()];
    g.kernel.modules_builtin_complete = true;
    g
}

fn elf(arch: &str, machine: u16) -> ElfInfo {
    ElfInfo {
        machine,
        bits: 64,
        endian: "little".into(),
        e_type: 2,
        arch: Some(arch.into()),
        interpreter: None,
        max_load_align: 0x10000,
        has_load: true,
        abi_tag: Some([3, 2, 0]),
        isa_level: None,
    }
}

/// A clean image: `/bin/sh` a static ELF of `arch`.
fn image(p: &str) -> ImageRequirements {
    let plat = platform(p);
    let arch = plat.architecture.clone();
    let machine = match arch.as_str() {
        "amd64" => 62,
        "arm64" => 183,
        "arm" => 40,
        "386" => 3,
        _ => 243,
    };
    ImageRequirements {
        platform: plat,
        elf: crate::kernelcheck::requirements::ElfFacts {
            files_scanned: 10,
            elf_files: 1,
            unreadable: 0,
            arches: vec![ArchCount {
                arch: arch.clone(),
                files: 1,
                example: "/bin/busybox".into(),
            }],
            abi_tag_max: Some(Fact::new([3, 2, 0], "/bin/busybox: NT_GNU_ABI_TAG")),
            isa_level: None,
            min_load_align: Some(Fact::new(0x10000, "/bin/busybox: PT_LOAD p_align 0x10000")),
        },
        entrypoint: EntrypointFacts {
            argv: vec!["sh".into()],
            source: "image config".into(),
            chain: vec![ExecLink {
                name: "sh".into(),
                path: "bin/busybox".into(),
                kind: "elf".into(),
                elf: Some(elf(&arch, machine)),
            }],
        },
        ..Default::default()
    }
}

fn label<T>(v: T) -> Option<Fact<T>> {
    Some(Fact::new(v, "config label"))
}

fn problem(code: ProblemCode) -> Problem {
    Problem {
        code,
        message: format!("{code:?}"),
        evidence: vec!["/bin/x".into()],
    }
}

fn forced(route: RouteChoice) -> PlanOptions {
    PlanOptions { route, guest: None }
}

fn with_guest(g: HostProfile) -> PlanOptions {
    PlanOptions {
        route: RouteChoice::Auto,
        guest: Some(g),
    }
}

struct Case {
    name: &'static str,
    host: HostProfile,
    req: ImageRequirements,
    opts: PlanOptions,
    route: &'static str,
    /// (code, severity, route) of every reason, in order.
    reasons: Vec<(&'static str, Severity, Option<RouteKind>)>,
}

use RouteKind::{Emulated as E, Native as N, Vm as V};
use Severity::{Blocking as B, Unknown as U, Warning as W};

fn cases() -> Vec<Case> {
    let auto = PlanOptions::default;
    let mut v = Vec::new();
    let mut c = |name, host, req, opts, route, reasons| {
        v.push(Case {
            name,
            host,
            req,
            opts,
            route,
            reasons,
        })
    };

    c(
        "native amd64",
        host(),
        image("linux/amd64"),
        auto(),
        "native",
        vec![],
    );
    c(
        "arm64 emulated with F handler",
        host(),
        image("linux/arm64"),
        auto(),
        "emulated",
        vec![("arch-mismatch", B, Some(N))],
    );
    c(
        "riscv64 handler lacks F, no qemu-system -> unrunnable",
        host(),
        image("linux/riscv64"),
        auto(),
        "unrunnable",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("emulator-not-usable-in-containers", B, Some(E)),
            ("no-vm", B, Some(V)),
        ],
    );
    let mut no_handlers = host();
    no_handlers.emulation.handlers.clear();
    c(
        "arm64 without handler -> vm (qemu-system-aarch64)",
        no_handlers.clone(),
        image("linux/arm64"),
        auto(),
        "vm",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("no-emulator", B, Some(E)),
            ("guest-unprofiled", W, Some(V)),
        ],
    );
    let mut binfmt_off = host();
    binfmt_off.emulation.binfmt_enabled = false;
    c(
        "binfmt disabled -> vm",
        binfmt_off,
        image("linux/arm64"),
        auto(),
        "vm",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("no-emulator", B, Some(E)),
            ("guest-unprofiled", W, Some(V)),
        ],
    );
    c(
        "386 on amd64 without compat -> nothing",
        host(),
        image("linux/386"),
        auto(),
        "unrunnable",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("no-emulator", B, Some(E)),
            ("no-vm", B, Some(V)),
        ],
    );
    let mut compat = host();
    compat.cpu.compat_arches = vec!["386".into()];
    let mut i386 = image("linux/386");
    i386.entrypoint.chain[0].elf.as_mut().unwrap().bits = 32;
    c(
        "386 on amd64 with compat -> native",
        compat,
        i386,
        auto(),
        "native",
        vec![],
    );
    c(
        "os-mismatch",
        host(),
        image("windows/amd64"),
        auto(),
        "unrunnable",
        vec![("os-mismatch", B, None)],
    );
    let mut armv7 = arm64_64k();
    armv7.platform = platform("linux/arm/v6");
    let mut arm_img = image("linux/arm/v7");
    arm_img.elf.min_load_align = None;
    c(
        "arm v7 image on arm v6 host",
        armv7,
        arm_img,
        auto(),
        "unrunnable",
        vec![("variant-mismatch", B, Some(N)), ("no-vm", B, Some(V))],
    );

    // Kernel version: label and ABI tag; native fails, vm takes over (unprofiled / profiled).
    let mut newer = image("linux/amd64");
    newer.kernel_min = label([7, 0, 0]);
    c(
        "kernel-too-old (label) -> vm",
        host(),
        newer.clone(),
        auto(),
        "vm",
        vec![
            ("kernel-too-old", B, Some(N)),
            ("guest-unprofiled", W, Some(V)),
        ],
    );
    c(
        "kernel-too-old, guest too old too -> unrunnable",
        host(),
        newer.clone(),
        with_guest(guest("amd64")),
        "unrunnable",
        vec![
            ("kernel-too-old", B, Some(N)),
            ("kernel-too-old", B, Some(V)),
        ],
    );
    let mut abi = image("linux/arm64");
    abi.elf.abi_tag_max = Some(Fact::new([6, 5, 0], "/bin/app: NT_GNU_ABI_TAG Linux 6.5.0"));
    c(
        "ABI tag newer than the arm64 host -> no other route",
        arm64_64k(),
        abi.clone(),
        auto(),
        "unrunnable",
        vec![("kernel-too-old", B, Some(N)), ("no-vm", B, Some(V))],
    );
    c(
        "ABI tag satisfied under emulation on 6.18",
        host(),
        abi,
        auto(),
        "emulated",
        vec![("arch-mismatch", B, Some(N))],
    );

    // Modules.
    let mut wg = image("linux/amd64");
    wg.modules = vec![Fact::new(
        "wireguard".to_string(),
        "config label org.xrun.kernel.modules",
    )];
    c(
        "missing-module via config (CONFIG_WIREGUARD not set) -> vm with guest that has it",
        host(),
        wg.clone(),
        with_guest(guest("amd64")),
        "vm",
        vec![("missing-module", B, Some(N))],
    );
    let mut wg_arm = wg.clone();
    wg_arm.platform = platform("linux/arm64");
    wg_arm.entrypoint = image("linux/arm64").entrypoint;
    wg_arm.elf = image("linux/arm64").elf;
    c(
        "module available on arm64 host",
        arm64_64k(),
        wg_arm,
        auto(),
        "native",
        vec![],
    );
    let mut unknown_mod = image("linux/amd64");
    unknown_mod.modules = vec![Fact::new("exotic_mod".to_string(), "label")];
    c(
        "module unknown (no complete builtin list, unmapped) -> not auto",
        host(),
        unknown_mod.clone(),
        with_guest(guest("amd64")),
        "unrunnable",
        vec![("fact-unknown", U, Some(N)), ("missing-module", B, Some(V))],
    );
    c(
        "module unknown, forced native accepts it",
        host(),
        unknown_mod,
        forced(RouteChoice::Native),
        "native",
        vec![("fact-unknown", U, Some(N))],
    );
    let mut builtin = image("linux/amd64");
    builtin.modules = vec![Fact::new("overlay".to_string(), "label")];
    c(
        "module built in per config",
        host(),
        builtin,
        auto(),
        "native",
        vec![],
    );
    let mut no_mod_support = host();
    no_mod_support
        .kernel
        .config
        .insert("CONFIG_DUMMY".into(), OptionState::Module);
    let mut dummy = image("linux/amd64");
    dummy.modules = vec![Fact::new("dummy".to_string(), "label")];
    c(
        "CONFIG_DUMMY=m on a kernel without module support",
        no_mod_support,
        dummy,
        with_guest(guest("amd64")),
        "vm",
        vec![("missing-module", B, Some(N))],
    );

    // Config options.
    let mut cfg = image("linux/amd64");
    cfg.config = vec![
        Fact::new("CONFIG_BPF".to_string(), "label"),
        Fact::new("CONFIG_NOPE".to_string(), "label"),
    ];
    c(
        "missing-config -> vm unprofiled",
        host(),
        cfg.clone(),
        auto(),
        "vm",
        vec![
            ("missing-config", B, Some(N)),
            ("guest-unprofiled", W, Some(V)),
        ],
    );
    let mut no_config = host();
    no_config.kernel.config_source = None;
    no_config.kernel.config.clear();
    no_config.emulation.qemu_system.clear();
    let mut cfg_ok = image("linux/amd64");
    cfg_ok.config = vec![Fact::new("CONFIG_BPF".to_string(), "label")];
    c(
        "config unreadable -> fact-unknown, auto refuses",
        no_config.clone(),
        cfg_ok.clone(),
        auto(),
        "unrunnable",
        vec![("fact-unknown", U, Some(N)), ("no-vm", B, Some(V))],
    );
    c(
        "config unreadable, forced native accepts",
        no_config,
        cfg_ok,
        forced(RouteChoice::Native),
        "native",
        vec![("fact-unknown", U, Some(N))],
    );

    // ISA level.
    let mut v3 = image("linux/amd64");
    v3.elf.isa_level = Some(Fact::new(
        3,
        "/bin/app: GNU_PROPERTY_X86_ISA_1_NEEDED x86-64-v3",
    ));
    c(
        "x86-64-v3 on a v4 host",
        host(),
        v3.clone(),
        auto(),
        "native",
        vec![],
    );
    let mut v2host = host();
    v2host.platform = platform("linux/amd64/v2");
    v2host.cpu.amd64_level = 2;
    v2host.emulation.qemu_system.clear();
    c(
        "isa-level v3 on v2 host",
        v2host.clone(),
        v3.clone(),
        auto(),
        "unrunnable",
        vec![("isa-level", B, Some(N)), ("no-vm", B, Some(V))],
    );
    let mut declared_v3 = image("linux/amd64/v3");
    declared_v3.elf.isa_level = None;
    c(
        "declared variant v3 on v2 host",
        v2host,
        declared_v3,
        auto(),
        "unrunnable",
        vec![("isa-level", B, Some(N)), ("no-vm", B, Some(V))],
    );
    let mut level_unknown = host();
    level_unknown.cpu.amd64_level = 0;
    c(
        "amd64 level unknown -> vm (guest level 3 suffices)",
        level_unknown,
        v3.clone(),
        with_guest(guest("amd64")),
        "vm",
        vec![("fact-unknown", U, Some(N))],
    );
    let mut v4 = image("linux/amd64");
    v4.elf.isa_level = Some(Fact::new(4, "/bin/app: x86-64-v4"));
    c(
        "v4 image, guest CPU v3",
        v2host_no_vm_fix(),
        v4,
        with_guest(guest("amd64")),
        "unrunnable",
        vec![
            ("isa-level", B, Some(N)),
            ("emulator-isa-level", B, Some(V)),
        ],
    );
    let mut arm_host_amd64_img = arm64_64k();
    arm_host_amd64_img.cpu.page_size = 4096;
    arm_host_amd64_img.emulation.handlers = vec![x86_handler()];
    c(
        "amd64 baseline image emulated on arm64",
        arm_host_amd64_img.clone(),
        image("linux/amd64"),
        auto(),
        "emulated",
        vec![("arch-mismatch", B, Some(N))],
    );
    c(
        "amd64 v3 image emulated on arm64: level unknown under qemu-user",
        arm_host_amd64_img,
        v3.clone(),
        auto(),
        "unrunnable",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("fact-unknown", U, Some(E)),
            ("no-vm", B, Some(V)),
        ],
    );

    // ISA level against the emulator (issue 15): TCG offers x86-64-v3 at most, KVM the host's.
    let mut v4img = image("linux/amd64");
    v4img.elf.isa_level = Some(Fact::new(4, "/app: x86-64-v4"));
    let mut v2_tcg = v2host_no_vm_fix();
    v2_tcg.emulation.tcg_amd64_level = Some(tcg(3));
    c(
        "v4 image on a v2 host with qemu-system (TCG 10.0) -> unrunnable, never vm",
        v2_tcg.clone(),
        v4img.clone(),
        auto(),
        "unrunnable",
        vec![
            ("isa-level", B, Some(N)),
            ("emulator-isa-level", B, Some(V)),
        ],
    );
    c(
        "v4 image, TCG level not recorded: still no AVX-512 under any qemu",
        v2host_no_vm_fix(),
        v4img.clone(),
        auto(),
        "unrunnable",
        vec![
            ("isa-level", B, Some(N)),
            ("emulator-isa-level", B, Some(V)),
        ],
    );
    c(
        "v4 image forced onto vm on a v2 host: refused",
        v2_tcg.clone(),
        v4img.clone(),
        forced(RouteChoice::Vm),
        "unrunnable",
        vec![("emulator-isa-level", B, Some(V))],
    );
    c(
        "v3 image on a v2 host, TCG 10.0 offers v3 -> vm (level checked, not pending)",
        v2_tcg.clone(),
        v3.clone(),
        auto(),
        "vm",
        vec![("isa-level", B, Some(N)), ("guest-unprofiled", W, Some(V))],
    );
    let mut v2_old_qemu = v2_tcg.clone();
    v2_old_qemu.emulation.tcg_amd64_level = Some(TcgLevel {
        level: 2,
        qemu_version: "6.2.0".into(),
        evidence: "qemu-system-x86_64 --version: 6.2.0".into(),
    });
    c(
        "v3 image on a v2 host with qemu 6.2 (TCG v2) -> unrunnable",
        v2_old_qemu,
        v3.clone(),
        auto(),
        "unrunnable",
        vec![
            ("isa-level", B, Some(N)),
            ("emulator-isa-level", B, Some(V)),
        ],
    );
    let mut v2_kvm = v2host_no_vm_fix();
    v2_kvm.emulation.kvm_usable = true;
    c(
        "v3 image on a v2 host with KVM: the guest CPU is the host's -> unrunnable",
        v2_kvm.clone(),
        v3.clone(),
        auto(),
        "unrunnable",
        vec![
            ("isa-level", B, Some(N)),
            ("emulator-isa-level", B, Some(V)),
        ],
    );
    let mut v4_kvm = host();
    v4_kvm.emulation.kvm_usable = true;
    c(
        "v4 image forced onto vm on a v4 host with KVM -> vm",
        v4_kvm,
        v4img.clone(),
        forced(RouteChoice::Vm),
        "vm",
        vec![("guest-unprofiled", W, Some(V))],
    );
    let mut arm_x86 = arm64_64k();
    arm_x86.cpu.page_size = 4096;
    arm_x86.emulation.handlers = vec![x86_handler()];
    arm_x86.emulation.tcg_amd64_level = Some(tcg(3));
    c(
        "v4 image behind a qemu-user handler on arm64 -> unrunnable, never emulated",
        arm_x86.clone(),
        v4img.clone(),
        forced(RouteChoice::Emulated),
        "unrunnable",
        vec![("emulator-isa-level", B, Some(E))],
    );
    c(
        "v4 image on arm64 with qemu-user, TCG level not recorded -> unrunnable",
        {
            let mut h = arm_x86.clone();
            h.emulation.tcg_amd64_level = None;
            h
        },
        v4img,
        auto(),
        "unrunnable",
        vec![
            ("arch-mismatch", B, Some(N)),
            ("emulator-isa-level", B, Some(E)),
            ("no-vm", B, Some(V)),
        ],
    );
    c(
        "v3 image on arm64 with qemu-user 10.0 (TCG v3) -> emulated",
        arm_x86,
        v3.clone(),
        auto(),
        "emulated",
        vec![("arch-mismatch", B, Some(N))],
    );

    // Page size.
    let mut align4k = image("linux/arm64");
    align4k.elf.min_load_align = Some(Fact::new(4096, "/bin/busybox: PT_LOAD p_align 0x1000"));
    c(
        "4K-aligned arm64 binary on a 64K-page kernel",
        arm64_64k(),
        align4k.clone(),
        auto(),
        "unrunnable",
        vec![("page-size", B, Some(N)), ("no-vm", B, Some(V))],
    );
    c(
        "4K-aligned arm64 binary emulated on 4K host",
        host(),
        align4k,
        auto(),
        "emulated",
        vec![("arch-mismatch", B, Some(N))],
    );
    let mut label4k = image("linux/arm64");
    label4k.max_page_size = label(4096);
    c(
        "page-size label 4096 on 64K kernel",
        arm64_64k(),
        label4k,
        auto(),
        "unrunnable",
        vec![("page-size", B, Some(N)), ("no-vm", B, Some(V))],
    );
    let mut page_unknown = arm64_64k();
    page_unknown.cpu.page_size = 0;
    c(
        "page size unknown",
        page_unknown,
        image("linux/arm64"),
        auto(),
        "unrunnable",
        vec![("fact-unknown", U, Some(N)), ("no-vm", B, Some(V))],
    );
    let mut kver_unknown = host();
    kver_unknown.kernel.version = [0, 0, 0];
    kver_unknown.emulation.qemu_system.clear();
    c(
        "kernel version unknown with an ABI tag",
        kver_unknown,
        image("linux/amd64"),
        auto(),
        "unrunnable",
        vec![("fact-unknown", U, Some(N)), ("no-vm", B, Some(V))],
    );

    // Image defects.
    let mut mis = image("linux/amd64");
    mis.entrypoint.chain[0].elf = Some(elf("arm64", 183));
    mis.elf.arches[0].arch = "arm64".into();
    c(
        "mislabeled: entrypoint ELF is aarch64",
        host(),
        mis.clone(),
        auto(),
        "unrunnable",
        vec![("mislabeled-platform", B, None)],
    );
    c(
        "mislabeled even when forced",
        host(),
        mis,
        forced(RouteChoice::Native),
        "unrunnable",
        vec![("mislabeled-platform", B, None)],
    );
    let mut mis_all = image("linux/amd64");
    mis_all.entrypoint.chain.clear();
    mis_all.entrypoint.argv = vec!["/app.sh".into()];
    mis_all.elf.arches[0].arch = "arm64".into();
    c(
        "mislabeled: no ELF of the declared arch at all",
        host(),
        mis_all,
        auto(),
        "unrunnable",
        vec![("mislabeled-platform", B, None)],
    );
    let mut stray = image("linux/amd64");
    stray.elf.arches.push(ArchCount {
        arch: "arm64".into(),
        files: 1,
        example: "/opt/fw/blob".into(),
    });
    c(
        "a stray foreign ELF is a warning",
        host(),
        stray,
        auto(),
        "native",
        vec![("mislabeled-platform", W, None)],
    );
    for (code, name) in [
        (ProblemCode::NoCommand, "no-command"),
        (ProblemCode::EntrypointMissing, "entrypoint-missing"),
        (
            ProblemCode::EntrypointNotExecutable,
            "entrypoint-not-executable",
        ),
        (ProblemCode::InterpreterMissing, "interpreter-missing"),
    ] {
        let mut r = image("linux/amd64");
        r.entrypoint.chain.clear();
        r.problems = vec![problem(code)];
        c(name, host(), r, auto(), "unrunnable", vec![(name, B, None)]);
    }
    let mut bad = image("linux/amd64");
    bad.problems = vec![problem(ProblemCode::BadLabel)];
    c(
        "bad-label is unknown: auto refuses",
        host(),
        bad.clone(),
        auto(),
        "unrunnable",
        vec![("bad-label", U, None), ("guest-unprofiled", W, Some(V))],
    );
    c(
        "bad-label, forced native",
        host(),
        bad,
        forced(RouteChoice::Native),
        "native",
        vec![("bad-label", U, None)],
    );
    let mut unreadable = image("linux/amd64");
    unreadable.elf.unreadable = 2;
    c(
        "unreadable files warn",
        host(),
        unreadable,
        auto(),
        "native",
        vec![("fact-unknown", W, None)],
    );

    // Forced routes.
    c(
        "forced native on a foreign arch",
        host(),
        image("linux/arm64"),
        forced(RouteChoice::Native),
        "unrunnable",
        vec![("arch-mismatch", B, Some(N))],
    );
    c(
        "forced emulated on the native arch",
        host(),
        image("linux/amd64"),
        forced(RouteChoice::Emulated),
        "unrunnable",
        vec![("no-emulator", B, Some(E))],
    );
    c(
        "forced emulated works for arm64",
        host(),
        image("linux/arm64"),
        forced(RouteChoice::Emulated),
        "emulated",
        vec![],
    );
    c(
        "forced vm for a native image",
        host(),
        image("linux/amd64"),
        forced(RouteChoice::Vm),
        "vm",
        vec![("guest-unprofiled", W, Some(V))],
    );
    c(
        "forced vm with a guest of the wrong arch",
        host(),
        image("linux/amd64"),
        PlanOptions {
            route: RouteChoice::Vm,
            guest: Some(guest("arm64")),
        },
        "unrunnable",
        vec![("arch-mismatch", B, Some(V))],
    );
    c(
        "forced vm without qemu-system",
        arm64_64k(),
        image("linux/arm64"),
        forced(RouteChoice::Vm),
        "unrunnable",
        vec![("no-vm", B, Some(V))],
    );
    v
}

/// What `xrun host` records for qemu 10.0 on amd64: TCG offers x86-64-v`level`.
fn tcg(level: u8) -> TcgLevel {
    TcgLevel {
        level,
        qemu_version: "10.0.2".into(),
        evidence: "/usr/bin/qemu-system-x86_64 --version: 10.0.2".into(),
    }
}

fn v2host_no_vm_fix() -> HostProfile {
    let mut h = host();
    h.platform = platform("linux/amd64/v2");
    h.cpu.amd64_level = 2;
    h
}

#[test]
fn table() {
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    for c in cases {
        let v = plan(&c.host, &c.req, &c.opts);
        let got: Vec<(&str, Severity, Option<RouteKind>)> = v
            .reasons
            .iter()
            .map(|r| (r.code.as_str(), r.severity, r.route))
            .collect();
        if v.route.name() != c.route || got != c.reasons {
            failures.push(format!(
                "{}: expected {} {:?}\n      got {} {:?}\n      {:#?}",
                c.name,
                c.route,
                c.reasons,
                v.route.name(),
                got,
                v.reasons
            ));
        }
        for r in &v.reasons {
            assert!(
                !r.message.is_empty() && !r.message.contains('\n'),
                "{}: {r:?}",
                c.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn route_details() {
    let v = plan(&host(), &image("linux/arm64"), &PlanOptions::default());
    assert_eq!(
        v.route,
        Route::Emulated {
            handler: "qemu-aarch64".into(),
            interpreter: "/usr/libexec/qemu-binfmt/arm64-binfmt-P".into()
        }
    );
    let v = plan(&host(), &image("linux/amd64"), &forced(RouteChoice::Vm));
    assert_eq!(
        v.route,
        Route::Vm {
            arch: "amd64".into(),
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            kvm: false
        }
    );
    let mut kvm = host();
    kvm.emulation.kvm_usable = true;
    let v = plan(&kvm, &image("linux/amd64"), &forced(RouteChoice::Vm));
    assert!(matches!(v.route, Route::Vm { kvm: true, .. }));
    // Evidence travels: the kernel-too-old reason names the label and the host kernel.
    let mut newer = image("linux/amd64");
    newer.kernel_min = Some(Fact::new([7, 0, 0], "config label org.xrun.kernel.min=7.0"));
    let v = plan(&host(), &newer, &PlanOptions::default());
    let r = &v.reasons[0];
    assert_eq!(r.code, ReasonCode::KernelTooOld);
    assert!(r.evidence.iter().any(|e| e.contains("org.xrun.kernel.min")));
    assert!(r.evidence.iter().any(|e| e.contains("6.18.0-fc")));
    // Ranking for --require.
    assert!(Route::Native.rank() > v.route.rank());
}

#[test]
fn every_code_is_kebab_and_serializes_as_such() {
    let all = [
        ReasonCode::ArchMismatch,
        ReasonCode::OsMismatch,
        ReasonCode::VariantMismatch,
        ReasonCode::KernelTooOld,
        ReasonCode::MissingModule,
        ReasonCode::MissingConfig,
        ReasonCode::IsaLevel,
        ReasonCode::EmulatorIsaLevel,
        ReasonCode::PageSize,
        ReasonCode::MislabeledPlatform,
        ReasonCode::NoCommand,
        ReasonCode::EntrypointMissing,
        ReasonCode::EntrypointNotExecutable,
        ReasonCode::InterpreterMissing,
        ReasonCode::NoEmulator,
        ReasonCode::EmulatorNotUsableInContainers,
        ReasonCode::NoVm,
        ReasonCode::GuestUnprofiled,
        ReasonCode::FactUnknown,
        ReasonCode::BadLabel,
        ReasonCode::NoMatchingPlatform,
    ];
    for c in all {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.as_str()));
    }
    let v = Verdict::refuse(ReasonCode::NoMatchingPlatform, "none".into(), vec![]);
    assert_eq!(v.route, Route::Unrunnable);
    assert_eq!(
        serde_json::to_value(&v.route).unwrap(),
        serde_json::json!({"kind": "unrunnable"})
    );
}

/// A recorded arm64 host: cpuinfo of `core`, a kernel config with or without `CONFIG_COMPAT`,
/// the `personality(PER_LINUX32)` probe's answer (or none), an arm binfmt handler with `F`.
fn recorded_arm64(
    name: &str,
    part: &str,
    compat: bool,
    probe: Option<bool>,
    mismatched: Option<&str>,
) -> HostProfile {
    use crate::kernelcheck::source::{HostSource, Uname};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let put = |path: &str, text: &str| {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "/proc/cpuinfo",
        &format!(
            "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n\
             CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n\
             CPU part\t: {part}\nCPU revision\t: 3\n"
        ),
    );
    let release = "6.1.0-rpi7-rpi-v8";
    put(
        &format!("/boot/config-{release}"),
        &format!(
            "CONFIG_USER_NS=y\nCONFIG_OVERLAY_FS=y\n{}",
            if compat {
                "CONFIG_COMPAT=y\n"
            } else {
                "# CONFIG_COMPAT is not set\n"
            }
        ),
    );
    if let Some(list) = mismatched {
        put("/sys/devices/system/cpu/aarch32_el0", list);
    }
    let src = HostSource {
        root: root.into(),
        uname: Uname {
            sysname: "Linux".into(),
            nodename: name.into(),
            release: release.into(),
            version: "#1 SMP".into(),
            machine: "aarch64".into(),
        },
        page_size: 4096,
        endianness: None,
        path_dirs: vec![],
        aarch32_el0: probe,
    };
    let mut p = HostProfile::gather_from(&src);
    // binfmt is not recorded here: give it an arm handler with F, as qemu-user-static would.
    p.emulation.binfmt_mounted = true;
    p.emulation.binfmt_enabled = true;
    p.emulation.handlers = host()
        .emulation
        .handlers
        .into_iter()
        .filter(|h| h.name == "qemu-arm")
        .collect();
    p
}

#[test]
fn arm64_hosts_and_32_bit_arm() {
    let mut armv7 = image("linux/arm/v7");
    armv7.elf.arches[0].arch = "arm".into();
    for link in &mut armv7.entrypoint.chain {
        if let Some(e) = &mut link.elf {
            e.bits = 32;
        }
    }
    let cases = [
        // Raspberry Pi 4, 64-bit OS, COMPAT, the probe accepted PER_LINUX32.
        (
            recorded_arm64("pi4", "0xd08", true, Some(true), None),
            Some(true),
            "native",
        ),
        // Graviton 3 (Neoverse-V1): no AArch32 EL0, the probe refused.
        (
            recorded_arm64("graviton3", "0xd40", true, Some(false), None),
            Some(false),
            "emulated",
        ),
        // Recorded without the probe: a kernel without COMPAT says no.
        (
            recorded_arm64("nocompat", "0xd08", false, None, None),
            Some(false),
            "emulated",
        ),
        // Recorded without the probe, asymmetric system listing AArch32-capable CPUs.
        (
            recorded_arm64("mismatched", "0xd08", true, None, Some("0-3\n")),
            Some(true),
            "native",
        ),
        // Nothing tells: never assumed native.
        (
            recorded_arm64("unknown", "0xd08", true, None, None),
            None,
            "emulated",
        ),
    ];
    for (host, el0, route) in cases {
        assert_eq!(host.platform.to_string(), "linux/arm64/v8", "{}", host.name);
        assert_eq!(
            host.cpu.aarch32.as_ref().map(|a| a.el0),
            el0,
            "{}: {:?}",
            host.name,
            host.cpu.aarch32
        );
        if let Some(a) = &host.cpu.aarch32 {
            assert!(!a.evidence.is_empty());
        }
        assert_eq!(
            host.cpu.compat_arches.contains(&"arm".to_string()),
            el0 == Some(true),
            "{}",
            host.name
        );
        let v = plan(&host, &armv7, &PlanOptions::default());
        assert_eq!(v.route.name(), route, "{}: {:#?}", host.name, v.reasons);
        // The profile round-trips through its JSON with the new field.
        let back = HostProfile::from_json(&host.to_json()).unwrap();
        assert_eq!(back.cpu.aarch32, host.cpu.aarch32);
    }
}
