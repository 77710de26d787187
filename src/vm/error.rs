//! Errors of the VM route.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong on the VM route. The CLI maps all of them to exit 125.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No guest (kernel + initramfs) for the architecture.
    #[error("no VM guest for {arch}: {detail}; build one with ci/guest-image or set XRUN_GUEST")]
    GuestMissing {
        /// The guest architecture wanted (OCI terms).
        arch: String,
        /// Where xrun looked, or what was wrong.
        detail: String,
    },
    /// A guest directory or layout exists but is not valid.
    #[error("invalid VM guest at {path}: {message}")]
    BadGuest {
        /// The guest directory or layout.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--vm-kernel REF` (or the config's `vm-kernel`) names no usable guest image.
    #[error("{reference} is not a VM guest image for {arch}: {message}")]
    NotAGuest {
        /// The guest image reference.
        reference: String,
        /// The guest architecture wanted (OCI terms).
        arch: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The guest image could not be pulled (or is not in the store with `--pull never`).
    #[error("VM guest image {reference}: {cause}")]
    GuestPull {
        /// The guest image reference.
        reference: String,
        /// The registry's (or the store's) error (shown in the message, so not a `source`).
        cause: Box<crate::registry::RegistryError>,
    },
    /// qemu's monitor refused a command (plugging an exec slot into a running VM).
    #[error("the VM's monitor refused {command}: {desc} ({class})")]
    Monitor {
        /// The QMP command.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's description.
        desc: String,
    },
    /// The file system holding the rootfs image cache is full.
    #[error(
        "no space left on device in {dir} while building the VM root file system image (the \
         image's files take {files_mib} MiB; building needs up to twice that): free space there \
         or use a --root on a larger file system"
    )]
    NoSpace {
        /// The rootfs image cache directory.
        dir: PathBuf,
        /// The size of the image's files (all layers), rounded up (MiB).
        files_mib: u64,
    },
    /// The image asks for a kernel module the guest does not ship.
    #[error("the VM guest ({release}) has no kernel module {module:?} (it ships: {available})")]
    ModuleUnavailable {
        /// The module asked for.
        module: String,
        /// The guest's kernel release.
        release: String,
        /// The optional modules the guest has.
        available: String,
    },
    /// qemu-system for the guest architecture is not installed.
    #[error("{binary} not found in PATH: install qemu-system (ci/setup does) to use the VM route")]
    QemuMissing {
        /// The binary looked for.
        binary: String,
    },
    /// A helper tool (mkfs.erofs, mkfs.ext4) is missing or failed.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened.
        message: String,
    },
    /// The `--user` cannot be resolved in the image.
    #[error("unable to find user {0}: no matching entries in the image's /etc/passwd")]
    UnknownUser(String),
    /// The run specification is not usable.
    #[error("invalid VM run: {0}")]
    BadSpec(String),
    /// A layer entry would land outside the rootfs.
    #[error("layer {layer}: entry {entry:?} escapes the root")]
    PathEscape {
        /// The layer directory.
        layer: PathBuf,
        /// The entry.
        entry: String,
    },
    /// The guest did not start the command, or the command did not end, in time. qemu was
    /// killed.
    #[error("the VM {phase} did not finish within {limit:?}; qemu was stopped{console}")]
    Timeout {
        /// `boot` or `run`.
        phase: &'static str,
        /// The bound.
        limit: Duration,
        /// The tail of the guest console, for diagnosis (may be empty).
        console: String,
    },
    /// qemu ended without the guest reporting an exit status (kernel panic, qemu error).
    #[error("the VM ended without an exit status (qemu {qemu_status}){console}")]
    GuestFailed {
        /// qemu's own exit status.
        qemu_status: String,
        /// The tail of the guest console and qemu's stderr.
        console: String,
    },
    /// The VM's network could not be wired in the container's network namespace.
    #[error("VM network: {0}")]
    Network(String),
    /// A file-system or process error, with the path or action it happened on.
    #[error("{what}: {source}")]
    Io {
        /// Where or what.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl VmError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
        let what = what.into();
        move |source| VmError::Io { what, source }
    }
}
