//! The routing decision: a pure function from a host profile, an image's requirements and the
//! user's flags to a [`Verdict`] (route + reasons). No I/O; `xrun check` and `xrun run` call the
//! same function, [`plan`].
//!
//! # Rules
//! - **Image** (every route): the image must be a `linux` image (`os-mismatch`); its command
//!   must resolve inside the image (`no-command`, `entrypoint-missing`,
//!   `entrypoint-not-executable`, `interpreter-missing`); its ELF files must be of the
//!   declared architecture (`mislabeled-platform`: blocking when the command's own ELF files,
//!   or all ELF files, are of another; a warning when only some other files are). Bad
//!   `org.xrun.*` labels give `bad-label` (unknown).
//! - **native**: the image architecture is the host's (or one the host lists in
//!   `cpu.compat_arches`, e.g. `386` on amd64) — else `arch-mismatch`; an arm variant no newer
//!   than the host's (`variant-mismatch`); for amd64 the needed ISA level (declared variant
//!   and `GNU_PROPERTY_X86_ISA_1_NEEDED`) at most the host's (`isa-level`); then the kernel
//!   rules against the host.
//! - **emulated**: a foreign architecture with an enabled binfmt_misc handler for it that has
//!   the `F` flag (`no-emulator`, `emulator-not-usable-in-containers`); the kernel rules
//!   against the host (emulation shares the host kernel); an amd64 ISA level at most what
//!   qemu's TCG emulates (`emulator-isa-level`: the profile's `emulation.tcg_amd64_level`,
//!   else x86-64-v3 at most — no qemu emulates AVX-512 — and v2/v3 unknown).
//! - **vm**: a `qemu-system` for the image architecture (`no-vm`); with a guest profile in
//!   [`PlanOptions::guest`], the kernel and ISA rules against the guest; without one, the
//!   amd64 level against the emulator (KVM: the host CPU's; TCG as for emulated:
//!   `emulator-isa-level`), and the rest is provisional and says so (`guest-unprofiled`, a
//!   warning).
//! - **kernel rules**: kernel ≥ `org.xrun.kernel.min` and ≥ every ELF `NT_GNU_ABI_TAG`
//!   (`kernel-too-old`); each `org.xrun.kernel.modules` entry loaded, built in, or available
//!   with module support (`missing-module`); each `org.xrun.kernel.config` option `y` (or `m`
//!   with module support) (`missing-config`); page size ≤ `org.xrun.page-size` and ≤ the
//!   smallest ELF `PT_LOAD` alignment (`page-size`).
//!
//! # Unknown facts
//! When a fact cannot be read (no kernel config, an incomplete built-in module list, an
//! unparseable label, …) the reason has severity [`Severity::Unknown`] (code `fact-unknown`,
//! or `bad-label`). Policy: **the automatic choice never takes a route with an unknown**: it
//! moves on to the next route, and ends `Unrunnable` when none is known to work. A route
//! forced with [`PlanOptions::route`] accepts unknowns (the user takes the risk; the reasons
//! stay in the verdict) but never a known failure.

use crate::kernelcheck::module_options as modules;
pub mod report;

use serde::{Deserialize, Serialize};

use crate::kernelcheck::labels::show_version;
use crate::kernelcheck::profile::{Evidence, HostProfile, OptionState};
use crate::kernelcheck::qemu::TCG_AMD64_LEVEL_MAX;
use crate::kernelcheck::requirements::{ImageRequirements, ProblemCode};
use crate::platform::Platform;

/// Which route to take: chosen automatically, or forced by the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteChoice {
    /// Best known-good route: native, then emulated, then vm.
    #[default]
    Auto,
    /// Only native.
    Native,
    /// Only emulated.
    Emulated,
    /// Only vm.
    Vm,
}

impl std::str::FromStr for RouteChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(RouteChoice::Auto),
            "native" => Ok(RouteChoice::Native),
            "emulated" => Ok(RouteChoice::Emulated),
            "vm" => Ok(RouteChoice::Vm),
            _ => Err(format!(
                "unknown route {s:?} (expected auto, native, emulated or vm)"
            )),
        }
    }
}

/// The user's choices for [`plan`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanOptions {
    /// Automatic or forced route.
    pub route: RouteChoice,
    /// The profile of the kernel the vm route would boot (its kernel, modules, config, page
    /// size, and the guest CPU's level); `None` when not profiled.
    pub guest: Option<HostProfile>,
}

/// The kinds of route, for tagging reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Namespaces on the host kernel.
    Native,
    /// qemu-user through binfmt_misc on the host kernel.
    Emulated,
    /// A VM with its own kernel.
    Vm,
}

/// How the image would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Route {
    /// Namespaces + cgroups on the host kernel.
    Native,
    /// qemu-user via a binfmt_misc handler.
    Emulated {
        /// The handler's name (`qemu-aarch64`).
        handler: String,
        /// Its interpreter on the host.
        interpreter: String,
    },
    /// A small VM.
    Vm {
        /// The guest architecture (OCI).
        arch: String,
        /// The qemu-system binary.
        qemu: String,
        /// Whether KVM can accelerate it (else TCG).
        kvm: bool,
    },
    /// No route works.
    Unrunnable,
}

impl Route {
    /// native 3 > emulated 2 > vm 1 > unrunnable 0, for `--require`.
    pub fn rank(&self) -> u8 {
        match self {
            Route::Native => 3,
            Route::Emulated { .. } => 2,
            Route::Vm { .. } => 1,
            Route::Unrunnable => 0,
        }
    }

    /// `native`, `emulated`, `vm` or `unrunnable`.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Native => "native",
            Route::Emulated { .. } => "emulated",
            Route::Vm { .. } => "vm",
            Route::Unrunnable => "unrunnable",
        }
    }
}

/// Stable reason codes (kebab-case in JSON and tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// The image's architecture is not the host's.
    ArchMismatch,
    /// The image is not a Linux image.
    OsMismatch,
    /// The image's arm variant is newer than the host's.
    VariantMismatch,
    /// The kernel is older than a label or an ELF ABI tag asks.
    KernelTooOld,
    /// A module is neither loaded, built in nor loadable.
    MissingModule,
    /// A kernel option is not set.
    MissingConfig,
    /// The amd64 ISA level needed is above the CPU's.
    IsaLevel,
    /// The amd64 ISA level needed is above what the emulator offers (qemu TCG: x86-64-v3 at
    /// most; KVM: the host CPU's).
    EmulatorIsaLevel,
    /// The kernel's page size is larger than the image supports.
    PageSize,
    /// The image's ELF files are not of the declared architecture.
    MislabeledPlatform,
    /// No command.
    NoCommand,
    /// The command is not in the image.
    EntrypointMissing,
    /// The command cannot be executed.
    EntrypointNotExecutable,
    /// A `#!` interpreter or ELF loader is missing.
    InterpreterMissing,
    /// No binfmt_misc handler for the architecture.
    NoEmulator,
    /// A handler exists but lacks the `F` flag.
    EmulatorNotUsableInContainers,
    /// No qemu-system for the architecture.
    NoVm,
    /// The vm route's guest kernel was not profiled: its requirements are checked at boot.
    GuestUnprofiled,
    /// A fact could not be read.
    FactUnknown,
    /// An `org.xrun.*` label could not be parsed.
    BadLabel,
    /// None of the image's pulled platforms suits the host (from `xrun check`'s selection).
    NoMatchingPlatform,
}

impl ReasonCode {
    /// The stable kebab-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReasonCode::ArchMismatch => "arch-mismatch",
            ReasonCode::OsMismatch => "os-mismatch",
            ReasonCode::VariantMismatch => "variant-mismatch",
            ReasonCode::KernelTooOld => "kernel-too-old",
            ReasonCode::MissingModule => "missing-module",
            ReasonCode::MissingConfig => "missing-config",
            ReasonCode::IsaLevel => "isa-level",
            ReasonCode::EmulatorIsaLevel => "emulator-isa-level",
            ReasonCode::PageSize => "page-size",
            ReasonCode::MislabeledPlatform => "mislabeled-platform",
            ReasonCode::NoCommand => "no-command",
            ReasonCode::EntrypointMissing => "entrypoint-missing",
            ReasonCode::EntrypointNotExecutable => "entrypoint-not-executable",
            ReasonCode::InterpreterMissing => "interpreter-missing",
            ReasonCode::NoEmulator => "no-emulator",
            ReasonCode::EmulatorNotUsableInContainers => "emulator-not-usable-in-containers",
            ReasonCode::NoVm => "no-vm",
            ReasonCode::GuestUnprofiled => "guest-unprofiled",
            ReasonCode::FactUnknown => "fact-unknown",
            ReasonCode::BadLabel => "bad-label",
            ReasonCode::NoMatchingPlatform => "no-matching-platform",
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a reason weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The route (or, without a route, every route) cannot work.
    Blocking,
    /// Cannot tell: the automatic choice does not take the route; a forced one may.
    Unknown,
    /// The route works; worth knowing.
    Warning,
}

/// Why a route was or was not taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Weight.
    pub severity: Severity,
    /// The route it concerns; `None` for facts about the image that hold for every route.
    pub route: Option<RouteKind>,
    /// One line.
    pub message: String,
    /// Where the facts came from (file in the image, note, label, host file).
    pub evidence: Vec<Evidence>,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The route.
    pub route: Route,
    /// Why: image problems, why better routes were not taken, the chosen route's warnings
    /// and unknowns.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// An unrunnable verdict with one reason (for callers that fail before planning).
    pub fn refuse(code: ReasonCode, message: String, evidence: Vec<Evidence>) -> Verdict {
        Verdict {
            route: Route::Unrunnable,
            reasons: vec![Reason {
                code,
                severity: Severity::Blocking,
                route: None,
                message,
                evidence,
            }],
        }
    }

    /// The codes of the reasons, in order.
    pub fn codes(&self) -> Vec<ReasonCode> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}

/// Decides how `req` runs on `host`. Pure: no I/O.
pub fn plan(host: &HostProfile, req: &ImageRequirements, opts: &PlanOptions) -> Verdict {
    let image = image_reasons(req);
    let image_blocked = image.iter().any(|r| r.severity == Severity::Blocking);
    let image_unknown = image.iter().any(|r| r.severity == Severity::Unknown);
    let mut reasons = image;
    if image_blocked {
        return Verdict {
            route: Route::Unrunnable,
            reasons,
        };
    }
    let forced = match opts.route {
        RouteChoice::Auto => None,
        RouteChoice::Native => Some(RouteKind::Native),
        RouteChoice::Emulated => Some(RouteKind::Emulated),
        RouteChoice::Vm => Some(RouteKind::Vm),
    };
    if let Some(kind) = forced {
        let (route, rs) = assess(kind, host, req, opts);
        let blocked = rs.iter().any(|r| r.severity == Severity::Blocking);
        reasons.extend(rs);
        return Verdict {
            route: match route {
                Some(r) if !blocked => r,
                _ => Route::Unrunnable,
            },
            reasons,
        };
    }
    let native_arch = runs_natively(host, &arch_of(req));
    for kind in [RouteKind::Native, RouteKind::Emulated, RouteKind::Vm] {
        if kind == RouteKind::Emulated && native_arch {
            continue; // emulation is for foreign architectures; native failed on the kernel
        }
        let (route, rs) = assess(kind, host, req, opts);
        let good = route.is_some()
            && !image_unknown
            && rs
                .iter()
                .all(|r| r.severity != Severity::Blocking && r.severity != Severity::Unknown);
        reasons.extend(rs);
        if good {
            return Verdict {
                route: route.expect("checked"),
                reasons,
            };
        }
    }
    Verdict {
        route: Route::Unrunnable,
        reasons,
    }
}

/// Normalizes an architecture name to OCI terms (the platform stage's rules).
fn norm_arch(a: &str) -> String {
    crate::platform::normalize::normalize_arch(a, None).0
}

fn arch_of(req: &ImageRequirements) -> String {
    norm_arch(&req.platform.architecture)
}

fn host_arch(host: &HostProfile) -> String {
    if host.platform.architecture.is_empty() {
        norm_arch(&host.cpu.machine)
    } else {
        norm_arch(&host.platform.architecture)
    }
}

fn runs_natively(host: &HostProfile, arch: &str) -> bool {
    host_arch(host) == arch || host.cpu.compat_arches.iter().any(|a| norm_arch(a) == arch)
}

fn show(p: &Platform) -> String {
    p.to_string()
}

fn reason(
    code: ReasonCode,
    severity: Severity,
    route: Option<RouteKind>,
    message: String,
    evidence: Vec<Evidence>,
) -> Reason {
    Reason {
        code,
        severity,
        route,
        message,
        evidence,
    }
}

/// Facts about the image that hold whatever the route.
fn image_reasons(req: &ImageRequirements) -> Vec<Reason> {
    let mut out = Vec::new();
    let os = req.platform.os.to_ascii_lowercase();
    if os != "linux" {
        out.push(reason(
            ReasonCode::OsMismatch,
            Severity::Blocking,
            None,
            format!(
                "the image is for os {:?}; xrun runs linux images only",
                req.platform.os
            ),
            vec![format!("image config os={}", req.platform.os)],
        ));
    }
    for p in &req.problems {
        let (code, severity) = match p.code {
            ProblemCode::BadLabel => (ReasonCode::BadLabel, Severity::Unknown),
            ProblemCode::NoCommand => (ReasonCode::NoCommand, Severity::Blocking),
            ProblemCode::EntrypointMissing => (ReasonCode::EntrypointMissing, Severity::Blocking),
            ProblemCode::EntrypointNotExecutable => {
                (ReasonCode::EntrypointNotExecutable, Severity::Blocking)
            }
            ProblemCode::InterpreterMissing => (ReasonCode::InterpreterMissing, Severity::Blocking),
        };
        out.push(reason(
            code,
            severity,
            None,
            p.message.clone(),
            p.evidence.clone(),
        ));
    }
    // Mislabeling: the command's own ELF files decide; without them, all ELF files.
    let declared = arch_of(req);
    let ev_decl = format!("image config architecture={}", req.platform.architecture);
    let chain_elves: Vec<_> = req
        .entrypoint
        .chain
        .iter()
        .filter_map(|l| l.elf.as_ref().map(|e| (l, e)))
        .collect();
    let mut mislabeled = false;
    for (link, e) in &chain_elves {
        let a = e
            .arch
            .clone()
            .unwrap_or_else(|| format!("machine {}", e.machine));
        if a != declared {
            mislabeled = true;
            out.push(reason(
                ReasonCode::MislabeledPlatform,
                Severity::Blocking,
                None,
                format!(
                    "the image declares {}, but /{} is a {}-bit {} ELF file",
                    show(&req.platform),
                    link.path,
                    e.bits,
                    a
                ),
                vec![
                    ev_decl.clone(),
                    format!("/{}: ELF e_machine {}", link.path, e.machine),
                ],
            ));
        }
    }
    let others: Vec<_> = req
        .elf
        .arches
        .iter()
        .filter(|c| c.arch != declared)
        .collect();
    if !mislabeled && !others.is_empty() {
        let none_declared = req.elf.arches.iter().all(|c| c.arch != declared);
        let severity = if chain_elves.is_empty() && none_declared {
            Severity::Blocking
        } else {
            Severity::Warning
        };
        let list: Vec<String> = others
            .iter()
            .map(|c| format!("{} {} file(s), e.g. {}", c.files, c.arch, c.example))
            .collect();
        let mut ev = vec![ev_decl.clone()];
        ev.extend(
            others
                .iter()
                .map(|c| format!("{}: {} ELF", c.example, c.arch)),
        );
        out.push(reason(
            ReasonCode::MislabeledPlatform,
            severity,
            None,
            format!(
                "the image declares {}, but contains {}",
                show(&req.platform),
                list.join("; ")
            ),
            ev,
        ));
    }
    if req.elf.unreadable > 0 {
        out.push(reason(
            ReasonCode::FactUnknown,
            Severity::Warning,
            None,
            format!(
                "{} file(s) in the image could not be read; their ELF facts are not counted",
                req.elf.unreadable
            ),
            vec![],
        ));
    }
    out
}

/// Evaluates one route: the route if its platform part works, and the reasons.
fn assess(
    kind: RouteKind,
    host: &HostProfile,
    req: &ImageRequirements,
    opts: &PlanOptions,
) -> (Option<Route>, Vec<Reason>) {
    match kind {
        RouteKind::Native => assess_native(host, req),
        RouteKind::Emulated => assess_emulated(host, req),
        RouteKind::Vm => assess_vm(host, req, opts.guest.as_ref()),
    }
}

fn assess_native(host: &HostProfile, req: &ImageRequirements) -> (Option<Route>, Vec<Reason>) {
    let r = Some(RouteKind::Native);
    let arch = arch_of(req);
    let harch = host_arch(host);
    if !runs_natively(host, &arch) {
        return (
            None,
            vec![reason(
                ReasonCode::ArchMismatch,
                Severity::Blocking,
                r,
                format!(
                    "the image is {}, the host {} runs {}{}",
                    show(&req.platform),
                    host.name,
                    harch,
                    if host.cpu.compat_arches.is_empty() {
                        String::new()
                    } else {
                        format!(" (and {})", host.cpu.compat_arches.join(", "))
                    }
                ),
                vec![
                    format!("image config architecture={}", req.platform.architecture),
                    format!("host platform {}", show(&host.platform)),
                ],
            )],
        );
    }
    let mut out = Vec::new();
    if arch == "arm"
        && harch == "arm"
        && let (Some(iv), Some(hv)) = (
            variant_number(req.platform.variant.as_deref()),
            variant_number(host.platform.variant.as_deref()),
        )
        && iv > hv
    {
        out.push(reason(
            ReasonCode::VariantMismatch,
            Severity::Blocking,
            r,
            format!("the image needs arm v{iv}, the host CPU is arm v{hv}"),
            vec![
                format!(
                    "image config variant={}",
                    req.platform.variant.clone().unwrap_or_default()
                ),
                format!("host platform {}", show(&host.platform)),
            ],
        ));
    }
    if arch == "amd64" && harch == "amd64" {
        out.extend(isa_check(host, req, RouteKind::Native, "host"));
    }
    out.extend(kernel_checks(host, req, RouteKind::Native, "host"));
    (Some(Route::Native), out)
}

fn variant_number(v: Option<&str>) -> Option<u32> {
    v?.trim_start_matches('v').split('.').next()?.parse().ok()
}

/// The amd64 level the image needs: declared variant and ELF property, with evidence.
fn needed_level(req: &ImageRequirements) -> Option<(u8, Evidence)> {
    let declared = req
        .platform
        .variant
        .as_deref()
        .and_then(|v| variant_number(Some(v)))
        .map(|v| {
            (
                v as u8,
                format!(
                    "image config variant={}",
                    req.platform.variant.clone().unwrap_or_default()
                ),
            )
        });
    let elf = req
        .elf
        .isa_level
        .as_ref()
        .map(|f| (f.value, f.evidence.clone()));
    match (declared, elf) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The image's amd64 level against profile `p`'s CPU (`who`: host/guest). On the vm route the
/// guest CPU is the emulator's (KVM: the host's; TCG's), so a shortfall there is
/// `emulator-isa-level`; natively it is `isa-level`.
fn isa_check(p: &HostProfile, req: &ImageRequirements, route: RouteKind, who: &str) -> Vec<Reason> {
    let Some((level, ev)) = needed_level(req) else {
        return vec![];
    };
    if level <= 1 {
        return vec![];
    }
    let have = p.cpu.amd64_level;
    if have == 0 {
        return vec![reason(
            ReasonCode::FactUnknown,
            Severity::Unknown,
            Some(route),
            format!("the image needs x86-64-v{level}; the {who} CPU's level is unknown"),
            vec![ev],
        )];
    }
    if have < level {
        let code = if route == RouteKind::Vm {
            ReasonCode::EmulatorIsaLevel
        } else {
            ReasonCode::IsaLevel
        };
        return vec![reason(
            code,
            Severity::Blocking,
            Some(route),
            format!("the image needs x86-64-v{level}, the {who} CPU is x86-64-v{have}"),
            vec![ev, format!("{who} {} cpu.amd64_level={have}", p.name)],
        )];
    }
    vec![]
}

/// How an image's amd64 level fits what an emulator offers.
enum IsaFit {
    /// Fits (or the image needs only the baseline).
    Fits,
    /// Needs more than the emulator can offer: the blocking reason.
    Blocked(Reason),
    /// Needs `needed`, which the emulator may or may not offer (its level is not profiled).
    Unsure { needed: u8, evidence: Vec<Evidence> },
}

/// The x86-64 level an emulator offers amd64 code on `host`: under KVM the host CPU's; else
/// qemu TCG's, as the profile records it (`emulation.tcg_amd64_level`) or, when it does not,
/// at most [`TCG_AMD64_LEVEL_MAX`] (no qemu emulates AVX-512). Returns the level, whether it
/// is exact, what offers it, and the evidence.
fn emulator_level(host: &HostProfile, kvm: bool) -> (u8, bool, String, Evidence) {
    if kvm {
        let l = host.cpu.amd64_level;
        return (
            l,
            l > 0,
            "the KVM guest CPU (the host's)".into(),
            format!("host {} cpu.amd64_level={l} (KVM)", host.name),
        );
    }
    match &host.emulation.tcg_amd64_level {
        Some(t) => (
            t.level,
            true,
            format!("qemu {} (TCG)", t.qemu_version),
            t.evidence.clone(),
        ),
        None => (
            TCG_AMD64_LEVEL_MAX,
            false,
            "qemu's TCG".into(),
            format!(
                "no qemu release emulates AVX-512: TCG offers x86-64-v{TCG_AMD64_LEVEL_MAX} at most"
            ),
        ),
    }
}

/// The x86-64 level the guest CPU of an amd64 VM on `host` has: the host's under KVM (an
/// amd64 host with usable KVM), else what qemu's TCG emulates there (as recorded, or at most
/// x86-64-v3). What a guest profile ([`PlanOptions::guest`]) gets as `cpu.amd64_level`.
pub fn amd64_guest_level(host: &HostProfile) -> u8 {
    let kvm = host_arch(host) == "amd64" && host.emulation.kvm_usable;
    emulator_level(host, kvm).0
}

/// The image's amd64 level against what the emulated or vm route's emulator offers on `host`.
fn emulator_isa_check(
    host: &HostProfile,
    req: &ImageRequirements,
    route: RouteKind,
    kvm: bool,
) -> IsaFit {
    let Some((needed, ev)) = needed_level(req).filter(|(l, _)| *l > 1) else {
        return IsaFit::Fits;
    };
    let (have, exact, what, hev) = emulator_level(host, kvm);
    if have > 0 && needed > have {
        let note = if kvm { "" } else { " (no AVX-512 under TCG)" };
        return IsaFit::Blocked(reason(
            ReasonCode::EmulatorIsaLevel,
            Severity::Blocking,
            Some(route),
            format!(
                "the image needs x86-64-v{needed}; {what} on {} offers x86-64-v{have}{note}",
                host.name
            ),
            vec![ev, hev],
        ));
    }
    if exact {
        IsaFit::Fits
    } else {
        IsaFit::Unsure {
            needed,
            evidence: vec![ev],
        }
    }
}

fn assess_emulated(host: &HostProfile, req: &ImageRequirements) -> (Option<Route>, Vec<Reason>) {
    let r = Some(RouteKind::Emulated);
    let arch = arch_of(req);
    let em = &host.emulation;
    if runs_natively(host, &arch) {
        return (
            None,
            vec![reason(
                ReasonCode::NoEmulator,
                Severity::Blocking,
                r,
                format!(
                    "{arch} is native on this host; binfmt_misc emulation applies to foreign architectures only"
                ),
                vec![format!("host platform {}", show(&host.platform))],
            )],
        );
    }
    let candidates: Vec<_> = em
        .handlers
        .iter()
        .filter(|h| h.enabled && h.arch.as_deref().map(norm_arch).as_deref() == Some(arch.as_str()))
        .collect();
    let usable = candidates.iter().find(|h| h.usable_in_containers);
    let route = match usable {
        Some(h) if em.binfmt_mounted && em.binfmt_enabled => Route::Emulated {
            handler: h.name.clone(),
            interpreter: h.interpreter.clone(),
        },
        _ => {
            let why = if !em.binfmt_mounted || !em.binfmt_enabled {
                reason(
                    ReasonCode::NoEmulator,
                    Severity::Blocking,
                    r,
                    format!(
                        "binfmt_misc is {} on {}: no emulator for {arch}",
                        if em.binfmt_mounted {
                            "disabled"
                        } else {
                            "not mounted"
                        },
                        host.name
                    ),
                    vec!["/proc/sys/fs/binfmt_misc/status".into()],
                )
            } else if let Some(h) = candidates.first() {
                reason(
                    ReasonCode::EmulatorNotUsableInContainers,
                    Severity::Blocking,
                    r,
                    format!(
                        "binfmt handler {} for {arch} lacks the F flag: its interpreter {} would be looked up inside the container",
                        h.name, h.interpreter
                    ),
                    vec![format!(
                        "/proc/sys/fs/binfmt_misc/{} flags: {}",
                        h.name, h.flags
                    )],
                )
            } else {
                let hint = match em.qemu_user.get(&arch) {
                    Some(q) => format!(" ({q} is installed: `xrun binfmt install` registers it)"),
                    None => String::new(),
                };
                reason(
                    ReasonCode::NoEmulator,
                    Severity::Blocking,
                    r,
                    format!("no binfmt_misc handler for {arch} on {}{hint}", host.name),
                    vec!["/proc/sys/fs/binfmt_misc".into()],
                )
            };
            return (None, vec![why]);
        }
    };
    let mut out = Vec::new();
    if arch == "amd64" {
        match emulator_isa_check(host, req, RouteKind::Emulated, false) {
            IsaFit::Fits => {}
            IsaFit::Blocked(why) => out.push(why),
            IsaFit::Unsure { needed, evidence } => out.push(reason(
                ReasonCode::FactUnknown,
                Severity::Unknown,
                r,
                format!(
                    "the image needs x86-64-v{needed}; the level qemu-user emulates on {} is not profiled (v2 before qemu 7.2, v3 since)",
                    host.name
                ),
                evidence,
            )),
        }
    }
    out.extend(kernel_checks(host, req, RouteKind::Emulated, "host"));
    (Some(route), out)
}

fn assess_vm(
    host: &HostProfile,
    req: &ImageRequirements,
    guest: Option<&HostProfile>,
) -> (Option<Route>, Vec<Reason>) {
    let r = Some(RouteKind::Vm);
    let arch = arch_of(req);
    let Some(qemu) = host.emulation.qemu_system.get(&arch) else {
        return (
            None,
            vec![reason(
                ReasonCode::NoVm,
                Severity::Blocking,
                r,
                format!("no qemu-system for {arch} on {}", host.name),
                vec![format!(
                    "host emulation.qemu_system: [{}]",
                    host.emulation
                        .qemu_system
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
            )],
        );
    };
    let kvm = host_arch(host) == arch && host.emulation.kvm_usable;
    let route = Route::Vm {
        arch: arch.clone(),
        qemu: qemu.clone(),
        kvm,
    };
    let Some(g) = guest else {
        let mut level_pending = None;
        if arch == "amd64" {
            match emulator_isa_check(host, req, RouteKind::Vm, kvm) {
                IsaFit::Fits => {}
                IsaFit::Blocked(why) => return (Some(route), vec![why]),
                IsaFit::Unsure { needed, .. } => level_pending = Some(needed),
            }
        }
        let mut pending = Vec::new();
        if let Some(k) = &req.kernel_min {
            pending.push(format!("kernel ≥ {}", show_version(&k.value)));
        }
        if let Some(k) = &req.elf.abi_tag_max {
            pending.push(format!("ABI tag kernel ≥ {}", show_version(&k.value)));
        }
        for m in &req.modules {
            pending.push(format!("module {}", m.value));
        }
        for c in &req.config {
            pending.push(c.value.clone());
        }
        if req.max_page_size.is_some() || req.elf.min_load_align.is_some() {
            pending.push("page size".into());
        }
        if let Some(l) = level_pending {
            pending.push(format!("x86-64-v{l}"));
        }
        let message = if pending.is_empty() {
            "the guest kernel is not profiled; the image states no kernel requirement".to_string()
        } else {
            format!(
                "the guest kernel is not profiled; checked when it boots: {}",
                pending.join(", ")
            )
        };
        return (
            Some(route),
            vec![reason(
                ReasonCode::GuestUnprofiled,
                Severity::Warning,
                r,
                message,
                vec![],
            )],
        );
    };
    if !runs_natively(g, &arch) {
        return (
            None,
            vec![reason(
                ReasonCode::ArchMismatch,
                Severity::Blocking,
                r,
                format!(
                    "the guest profile {} is {}, the image {}",
                    g.name,
                    host_arch(g),
                    arch
                ),
                vec![format!("guest platform {}", show(&g.platform))],
            )],
        );
    }
    let mut out = Vec::new();
    if arch == "amd64" {
        out.extend(isa_check(g, req, RouteKind::Vm, "guest"));
    }
    out.extend(kernel_checks(g, req, RouteKind::Vm, "guest"));
    (Some(route), out)
}

fn norm_mod(m: &str) -> String {
    m.replace('-', "_")
}

/// Kernel version, modules, options and page size against profile `p` (`who`: host/guest).
fn kernel_checks(
    p: &HostProfile,
    req: &ImageRequirements,
    route: RouteKind,
    who: &str,
) -> Vec<Reason> {
    let r = Some(route);
    let k = &p.kernel;
    let mut out = Vec::new();
    let have = k.version;
    let kev = format!(
        "{who} {} kernel {}",
        p.name,
        if k.release.is_empty() {
            show_version(&have)
        } else {
            k.release.clone()
        }
    );
    let mut version_rule = |need: [u32; 3], ev: &Evidence, what: &str| {
        if have == [0, 0, 0] {
            out.push(reason(
                ReasonCode::FactUnknown,
                Severity::Unknown,
                r,
                format!(
                    "{what} asks for kernel ≥ {}; the {who} kernel version is unknown",
                    show_version(&need)
                ),
                vec![ev.clone()],
            ));
        } else if have < need {
            out.push(reason(
                ReasonCode::KernelTooOld,
                Severity::Blocking,
                r,
                format!(
                    "{what} asks for kernel ≥ {}, the {who} kernel is {}",
                    show_version(&need),
                    show_version(&have)
                ),
                vec![ev.clone(), kev.clone()],
            ));
        }
    };
    if let Some(min) = &req.kernel_min {
        version_rule(min.value, &min.evidence, "the image label");
    }
    if let Some(tag) = &req.elf.abi_tag_max {
        version_rule(tag.value, &tag.evidence, "an ELF ABI tag");
    }
    // Modules.
    for m in &req.modules {
        let name = norm_mod(&m.value);
        let has = |list: &[String]| list.iter().any(|x| norm_mod(x) == name);
        if has(&k.modules_loaded)
            || has(&k.modules_builtin)
            || (k.modules_supported && has(&k.modules_available))
        {
            continue;
        }
        let option = modules::config_option(&name);
        let verdict: Option<(Severity, String, Vec<Evidence>)> = match (option, &k.config_source) {
            (Some(opt), Some(src)) => match k.config.get(opt) {
                Some(OptionState::Enabled) => None,
                Some(OptionState::Module) if !k.modules_supported => Some((
                    Severity::Blocking,
                    format!(
                        "module {name} is built as a module ({opt}=m) but the {who} kernel cannot load modules"
                    ),
                    vec![format!("{src}: {opt}=m")],
                )),
                Some(OptionState::Module) if !k.modules_available.is_empty() => Some((
                    Severity::Blocking,
                    format!("module {name} ({opt}=m) is not installed on the {who}"),
                    vec![format!("{src}: {opt}=m"), "modules_available".into()],
                )),
                Some(OptionState::Module) => Some((
                    Severity::Unknown,
                    format!(
                        "module {name} ({opt}=m): whether it is installed on the {who} is unknown"
                    ),
                    vec![format!("{src}: {opt}=m")],
                )),
                Some(OptionState::Missing) | None => Some((
                    Severity::Blocking,
                    format!("the {who} kernel has no {name} module ({opt} is not set)"),
                    vec![format!("{src}: {opt} not set")],
                )),
            },
            _ if k.modules_builtin_complete
                && (!k.modules_supported || !k.modules_available.is_empty()) =>
            {
                Some((
                    Severity::Blocking,
                    format!("module {name} is not loaded, built in, or available on the {who}"),
                    vec!["modules.builtin".into(), "/proc/modules".into()],
                ))
            }
            _ => Some((
                Severity::Unknown,
                format!(
                    "whether the {who} kernel has module {name} is unknown (no complete built-in list{})",
                    if option.is_some() {
                        " and no kernel config"
                    } else {
                        ", no known CONFIG_ option"
                    }
                ),
                vec![],
            )),
        };
        if let Some((severity, message, mut ev)) = verdict {
            ev.insert(0, m.evidence.clone());
            let code = if severity == Severity::Unknown {
                ReasonCode::FactUnknown
            } else {
                ReasonCode::MissingModule
            };
            out.push(reason(code, severity, r, message, ev));
        }
    }
    // Options.
    if !req.config.is_empty() {
        match &k.config_source {
            None => out.push(reason(
                ReasonCode::FactUnknown,
                Severity::Unknown,
                r,
                format!(
                    "the image needs {}; the {who} kernel's config is not readable",
                    req.config
                        .iter()
                        .map(|c| c.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                req.config.iter().map(|c| c.evidence.clone()).collect(),
            )),
            Some(src) => {
                for c in &req.config {
                    let problem = match k.config.get(&c.value) {
                        Some(OptionState::Enabled) => None,
                        Some(OptionState::Module) if k.modules_supported => None,
                        Some(OptionState::Module) => Some(format!(
                            "{}=m but the {who} kernel cannot load modules",
                            c.value
                        )),
                        Some(OptionState::Missing) | None => {
                            Some(format!("the {who} kernel lacks {}", c.value))
                        }
                    };
                    if let Some(message) = problem {
                        out.push(reason(
                            ReasonCode::MissingConfig,
                            Severity::Blocking,
                            r,
                            message,
                            vec![c.evidence.clone(), format!("{src}: {} not set", c.value)],
                        ));
                    }
                }
            }
        }
    }
    // Page size.
    let page = p.cpu.page_size;
    let page_rules: Vec<(u64, &Evidence, &str)> = req
        .max_page_size
        .iter()
        .map(|f| (f.value, &f.evidence, "the image label allows pages up to"))
        .chain(req.elf.min_load_align.iter().map(|f| {
            (
                f.value,
                &f.evidence,
                "an ELF file is aligned for pages up to",
            )
        }))
        .collect();
    for (limit, ev, what) in page_rules {
        if page == 0 {
            out.push(reason(
                ReasonCode::FactUnknown,
                Severity::Unknown,
                r,
                format!("{what} {limit} bytes; the {who} page size is unknown"),
                vec![ev.clone()],
            ));
        } else if page > limit {
            out.push(reason(
                ReasonCode::PageSize,
                Severity::Blocking,
                r,
                format!("{what} {limit} bytes, the {who} kernel uses {page}-byte pages"),
                vec![ev.clone(), format!("{who} {} cpu.page_size={page}", p.name)],
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
