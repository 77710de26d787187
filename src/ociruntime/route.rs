//! The xrun part of `create`: the bundle's root file system is assessed like an image (the
//! requirements scanner on the directory, then the plan against this host's profile), and the
//! spec is made to fit the route: unchanged for native, xrun's native init as PID 1 (bound in
//! read-only from the host, as the emulated route of `xrun run` does) for emulated, refused
//! with the plan's reason codes when the node cannot run it.
//!
//! `XRUN_RUNC_HOST_PROFILE=FILE` assesses against a recorded host profile instead of this
//! host's (for tests and for dry runs of a fleet's node).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{MountBuilder, Spec};

use super::OciError;
use crate::kernelcheck::HostProfile;
use crate::kernelcheck::entrypoint::{ExecConfig, Override};
use crate::kernelcheck::requirements::{ImageRequirements, ScanInput, scan};
use crate::plan::{PlanOptions, Route, Verdict, plan};
use crate::platform::Platform;

/// The environment variable naming a host profile file to assess against.
pub const HOST_PROFILE_ENV: &str = "XRUN_RUNC_HOST_PROFILE";

/// How the bundle will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// As given.
    Native,
    /// Under qemu-user through the binfmt handler (name, interpreter), xrun's init as PID 1.
    Emulated {
        /// The rootfs architecture.
        arch: String,
        /// The binfmt handler.
        handler: String,
    },
}

/// The root file system of the bundle at `bundle` with config `spec`, made absolute.
pub fn rootfs_of(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if p.is_absolute() { p } else { bundle.join(p) }
}

/// Scans `rootfs` for what running `spec`'s process needs; the platform is the architecture
/// of the command's ELF file (else the most common one in the tree).
pub fn requirements(rootfs: &Path, spec: &Spec) -> Result<ImageRequirements, OciError> {
    let process = spec.process().clone().unwrap_or_default();
    let exec = ExecConfig {
        entrypoint: process.args().clone().unwrap_or_default(),
        cmd: Vec::new(),
        env: process.env().clone().unwrap_or_default(),
        working_dir: process.cwd().to_string_lossy().into_owned(),
    };
    let input = ScanInput {
        platform: Platform::host(),
        exec,
        layer_dirs: vec![rootfs.to_path_buf()],
        ..Default::default()
    };
    let mut req = scan(&input, &Override::default())
        .map_err(|e| OciError::BadInput(format!("scanning {}: {e}", rootfs.display())))?;
    if let Some(arch) = detected_arch(&req) {
        req.platform = Platform {
            os: "linux".into(),
            architecture: arch,
            ..Default::default()
        }
        .normalize();
    }
    Ok(req)
}

/// The command's architecture, else the most common architecture of the tree's ELF files.
fn detected_arch(req: &ImageRequirements) -> Option<String> {
    let from_command = req
        .entrypoint
        .chain
        .iter()
        .find_map(|l| l.elf.as_ref().and_then(|e| e.arch.clone()));
    from_command.or_else(|| {
        req.elf
            .arches
            .iter()
            .filter(|a| !a.arch.starts_with("unknown"))
            .max_by_key(|a| a.files)
            .map(|a| a.arch.clone())
    })
}

/// The route for `req` on this node, or on [`HOST_PROFILE_ENV`]'s profile when set. This
/// node's emulation facts are only gathered when the verdict is not native without them (as
/// `xrun run` does).
pub fn decide_here(req: &ImageRequirements) -> Result<Decision, OciError> {
    if let Some(p) = std::env::var_os(HOST_PROFILE_ENV) {
        let profile = HostProfile::load(Path::new(&p)).map_err(|e| {
            OciError::BadInput(format!(
                "{HOST_PROFILE_ENV}={}: {e}",
                Path::new(&p).display()
            ))
        })?;
        return decide(&profile, req);
    }
    match decide(&crate::assess::host_profile_without_emulation(), req) {
        Ok(Decision::Native) => Ok(Decision::Native),
        _ => decide(&crate::assess::host_profile(), req),
    }
}

/// The route for requirements `req` on `host`, or why there is none.
pub fn decide(host: &HostProfile, req: &ImageRequirements) -> Result<Decision, OciError> {
    let verdict = plan(host, req, &PlanOptions::default());
    match &verdict.route {
        Route::Native => Ok(Decision::Native),
        Route::Emulated { handler, .. } => Ok(Decision::Emulated {
            arch: req.platform.architecture.clone(),
            handler: handler.clone(),
        }),
        // Problems with the command alone are the runtime's to report (runc fails the same
        // way at start), as `xrun run` does.
        Route::Unrunnable if crate::assess::only_command_problems(&verdict) => Ok(Decision::Native),
        Route::Vm { .. } => Err(refusal(
            &verdict,
            req,
            "only a VM could run it, and an OCI runtime runs containers on this node's kernel",
        )),
        Route::Unrunnable => Err(refusal(&verdict, req, "no route works on this node")),
    }
}

/// One line: the platform, the reason codes, and each blocking reason's message.
fn refusal(verdict: &Verdict, req: &ImageRequirements, why: &str) -> OciError {
    let codes: Vec<String> = verdict
        .codes()
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let messages: Vec<String> = verdict
        .reasons
        .iter()
        .filter(|r| r.severity == crate::plan::Severity::Blocking)
        .map(|r| format!("{}: {}", r.code.as_str(), r.message))
        .collect();
    OciError::Unrunnable(format!(
        "xrun cannot run this bundle ({}) here: {why} [reasons: {}] {}",
        req.platform,
        codes.join(","),
        messages.join("; ")
    ))
}

/// Makes `spec` (whose bundle is `bundle`) run under emulation: rootfs absolute, xrun's
/// native init bound in and put before the command.
pub fn rewrite_for_emulation(bundle: &Path, spec: &mut Spec) -> Result<(), OciError> {
    let rootfs = rootfs_of(bundle, spec);
    if let Some(r) = spec.root_mut() {
        r.set_path(rootfs);
    }
    let (binds, prefix) = crate::runtime::init::init_mounts()
        .map_err(|e| OciError::BadInput(format!("xrun's init for the emulated route: {e}")))?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for b in binds {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if b.read_only {
            options.push("ro".into());
        }
        mounts.push(
            MountBuilder::default()
                .destination(b.destination)
                .typ("bind")
                .source(b.source)
                .options(options)
                .build()
                .map_err(|e| OciError::BadInput(format!("init mount: {e}")))?,
        );
    }
    spec.set_mounts(Some(mounts));
    if let Some(p) = spec.process_mut() {
        let mut args = prefix;
        args.extend(p.args().clone().unwrap_or_default());
        p.set_args(Some(args));
    }
    Ok(())
}
