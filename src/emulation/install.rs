//! `xrun binfmt install|uninstall`: register qemu-user-static interpreters under xrun's own
//! handler names (`xrun-qemu-<target>`, flags `PF`) and remove only those.
//!
//! Rules: idempotent (an identical xrun handler is left alone); a handler someone else registered
//! for the same architecture is never overwritten or shadowed unless forced (a usable one makes
//! install a no-op); the host's own architecture is never registered.

use std::path::Path;

use serde::Serialize;

use super::EmulationError;
use super::arch::{self, ArchSpec};
use super::binfmt::{self, BinfmtState};
use super::qemu;

/// The flags xrun registers with: `P` keep argv\[0\], `F` open the interpreter now (so it works
/// inside containers).
pub const FLAGS: &str = "PF";

/// What install or uninstall did for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Registered xrun's handler.
    Installed {
        /// Handler name.
        handler: String,
        /// Interpreter path.
        interpreter: String,
    },
    /// xrun's handler was already registered as wanted.
    AlreadyInstalled {
        /// Handler name.
        handler: String,
    },
    /// A usable handler registered by someone else already covers the architecture.
    AlreadyCovered {
        /// That handler's name.
        handler: String,
    },
    /// The host runs this architecture natively: nothing to register.
    Native,
    /// Removed xrun's handler.
    Removed {
        /// Handler name.
        handler: String,
    },
    /// No xrun handler was registered for the architecture.
    NotInstalled,
}

impl Outcome {
    /// One human line for `arch`.
    pub fn describe(&self, arch: &str) -> String {
        match self {
            Outcome::Installed {
                handler,
                interpreter,
            } => format!("{arch}: registered {handler} → {interpreter} (flags {FLAGS})"),
            Outcome::AlreadyInstalled { handler } => {
                format!("{arch}: {handler} already registered")
            }
            Outcome::AlreadyCovered { handler } => format!(
                "{arch}: already handled by {handler} (usable in containers); nothing to do \
                 (--force registers xrun's own ahead of it)"
            ),
            Outcome::Native => format!("{arch}: runs natively on this host; nothing to do"),
            Outcome::Removed { handler } => format!("{arch}: removed {handler}"),
            Outcome::NotInstalled => format!("{arch}: no xrun handler registered; nothing to do"),
        }
    }
}

/// The result for one architecture.
#[derive(Debug)]
pub struct ArchResult {
    /// The table entry.
    pub spec: &'static ArchSpec,
    /// What happened, or why it could not.
    pub result: Result<Outcome, EmulationError>,
}

/// Resolves user-given names (`arm64`, `linux/arm/v7`, `all`; empty = `default`) to table
/// entries, deduplicated in order.
pub fn resolve(
    names: &[String],
    default: &[&'static ArchSpec],
) -> Result<Vec<&'static ArchSpec>, EmulationError> {
    if names.is_empty() {
        return Ok(default.to_vec());
    }
    let mut out: Vec<&'static ArchSpec> = Vec::new();
    for n in names {
        let specs: Vec<&'static ArchSpec> = if n == "all" {
            arch::ARCHES.iter().collect()
        } else {
            vec![
                arch::parse_user_arch(n)
                    .ok_or_else(|| EmulationError::UnknownArch(n.to_string()))?,
            ]
        };
        for s in specs {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Registers xrun's handler for each of `specs` under `dir`. `host_arch` (OCI spelling) is never
/// registered; `force` registers ahead of someone else's handler. Stops at the first
/// permission error (it would repeat for every architecture).
pub fn install(
    dir: &Path,
    specs: &[&'static ArchSpec],
    host_arch: &str,
    force: bool,
) -> Result<Vec<ArchResult>, EmulationError> {
    ensure_ready(dir)?;
    let mut results = Vec::new();
    for &spec in specs {
        let result = install_one(dir, spec, host_arch, force);
        if let Err(e @ EmulationError::PermissionDenied { .. }) = result {
            return Err(e);
        }
        results.push(ArchResult { spec, result });
    }
    Ok(results)
}

fn install_one(
    dir: &Path,
    spec: &'static ArchSpec,
    host_arch: &str,
    force: bool,
) -> Result<Outcome, EmulationError> {
    if spec.is_native_on(host_arch) {
        return Ok(Outcome::Native);
    }
    let state = BinfmtState::read(dir)?;
    let name = spec.handler_name();
    let interpreter = qemu::find(spec)?;
    let interp = interpreter.to_string_lossy().into_owned();
    if interp.contains(':') {
        return Err(EmulationError::Parse {
            name,
            message: format!("interpreter path {interp:?} contains ':'"),
        });
    }
    if !state.enabled {
        return Err(EmulationError::BinfmtDisabled {
            dir: dir.to_path_buf(),
        });
    }
    let ours = state.get(&name);
    let effective = state.effective(spec);
    match ours {
        None if !force => {
            // Registering ours would shadow whatever someone else registered for this arch.
            if let Some(e) = effective {
                if e.usable_in_containers() {
                    return Ok(Outcome::AlreadyCovered {
                        handler: e.name.clone(),
                    });
                }
                return Err(EmulationError::Conflict {
                    arch: spec.arch.to_string(),
                    handler: e.name.clone(),
                    reason: e.unusable_reason().unwrap_or_default(),
                });
            }
            if let Some(f) = state.matching(spec).first() {
                return Err(EmulationError::Conflict {
                    arch: spec.arch.to_string(),
                    handler: f.name.clone(),
                    reason: f.unusable_reason().unwrap_or_default(),
                });
            }
        }
        None => {}
        Some(h) => {
            let wanted = h.enabled
                && h.interpreter == interp
                && FLAGS.chars().all(|c| h.has_flag(c))
                && h.offset == 0
                && h.magic.as_deref() == Some(&spec.magic[..])
                && h.mask.as_deref() == Some(&spec.mask[..]);
            // Forced: ours must also be the one the kernel uses (nothing registered after it).
            let in_use = effective.is_some_and(|e| e.name == name);
            if wanted && (in_use || !force) {
                return Ok(Outcome::AlreadyInstalled { handler: name });
            }
            binfmt::remove(dir, &name)?;
        }
    }
    binfmt::register(dir, &spec.register_line(&name, &interp, FLAGS))?;
    Ok(Outcome::Installed {
        handler: name,
        interpreter: interp,
    })
}

/// Removes xrun's handlers for `specs` (every xrun handler when `specs` is `None`). Handlers
/// registered by anyone else are never touched.
pub fn uninstall(
    dir: &Path,
    specs: Option<&[&'static ArchSpec]>,
) -> Result<Vec<ArchResult>, EmulationError> {
    ensure_ready(dir)?;
    let state = BinfmtState::read(dir)?;
    let specs: Vec<&'static ArchSpec> = match specs {
        Some(s) => s.to_vec(),
        None => arch::ARCHES
            .iter()
            .filter(|s| state.get(&s.handler_name()).is_some())
            .collect(),
    };
    let mut results = Vec::new();
    for spec in specs {
        let name = spec.handler_name();
        let result = match state.get(&name) {
            None => Ok(Outcome::NotInstalled),
            Some(_) => match binfmt::remove(dir, &name) {
                Ok(()) => Ok(Outcome::Removed { handler: name }),
                Err(e @ EmulationError::PermissionDenied { .. }) => return Err(e),
                Err(e) => Err(e),
            },
        };
        results.push(ArchResult { spec, result });
    }
    Ok(results)
}

/// binfmt_misc must be mounted (mount it when it is not and we may).
fn ensure_ready(dir: &Path) -> Result<(), EmulationError> {
    if !binfmt::is_mounted(dir) {
        binfmt::mount(dir)?;
    }
    Ok(())
}
