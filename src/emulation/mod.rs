//! The emulated route: binfmt_misc handlers (read, install, remove), qemu-user discovery, and the
//! choice of handler for a foreign-architecture container.
//!
//! - [`arch`]: the handler table (magic/mask per architecture, qemu target, default CPU);
//! - [`binfmt`]: the kernel interface (mount, read in match order, register, remove);
//! - [`qemu`]: where the static qemu-user interpreters are;
//! - [`install`]: `xrun binfmt install|uninstall` (xrun's own handler names, never others');
//! - [`route`]: [`route::select`]/[`route::prepare`] → [`route::EmulatedRoute`] or why not.

pub mod arch;
pub mod binfmt;
pub mod install;
pub mod qemu;
pub mod route;

pub use arch::ArchSpec;
pub use binfmt::{BINFMT_DIR, BinfmtState, Handler};
pub use route::EmulatedRoute;

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the emulation stage.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not privileged enough (EACCES/EPERM).
    #[error("permission denied: cannot {action} {path} (binfmt_misc changes need root)")]
    PermissionDenied {
        /// What was attempted.
        action: String,
        /// On what.
        path: PathBuf,
    },
    /// A handler file could not be parsed.
    #[error("binfmt handler {name}: {message}")]
    Parse {
        /// Handler name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A user-given architecture is not in the table.
    #[error("unknown architecture {0:?} (known: all, {known})", known = arch::known_names())]
    UnknownArch(String),
    /// No qemu-user-static interpreter found.
    #[error(
        "no static qemu-user interpreter for {arch} (looked for {tried}); install qemu-user-static",
        tried = .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoQemu {
        /// The architecture.
        arch: String,
        /// Paths tried.
        tried: Vec<PathBuf>,
    },
    /// The interpreter found is dynamically linked (unusable inside containers).
    #[error(
        "{path} is dynamically linked: it cannot run inside containers; install qemu-user-static"
    )]
    QemuNotStatic {
        /// The interpreter.
        path: PathBuf,
    },
    /// binfmt_misc is globally disabled.
    #[error("binfmt_misc is disabled (enable it: echo 1 > {dir}/status)", dir = .dir.display())]
    BinfmtDisabled {
        /// The mount point.
        dir: PathBuf,
    },
    /// Someone else's unusable handler holds the architecture.
    #[error(
        "{arch} is held by binfmt handler {handler}, not registered by xrun ({reason}); \
         xrun will not shadow it: pass --force to register xrun's handler ahead of it"
    )]
    Conflict {
        /// The architecture.
        arch: String,
        /// The other handler.
        handler: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The emulated route is not available for a platform.
    #[error("cannot emulate {platform}: {reason}; fix: {fix}")]
    NoUsableHandler {
        /// The platform asked for.
        platform: String,
        /// Why not.
        reason: String,
        /// What to do.
        fix: String,
    },
}

impl EmulationError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> EmulationError {
        EmulationError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// [`EmulationError::PermissionDenied`] for EACCES/EPERM, else [`EmulationError::Io`].
    pub fn denied_or_io(path: &Path, action: &str, source: std::io::Error) -> EmulationError {
        match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => EmulationError::PermissionDenied {
                action: action.to_string(),
                path: path.to_path_buf(),
            },
            _ => EmulationError::io(path, source),
        }
    }

    /// From a `nix` errno.
    pub fn from_errno(path: &Path, action: &str, errno: nix::errno::Errno) -> EmulationError {
        EmulationError::denied_or_io(path, action, std::io::Error::from(errno))
    }
}
