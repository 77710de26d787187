//! The native route: OCI runtime bundles (overlay rootfs + `config.json`), the executor,
//! container state, the per-container monitor, logs and the init.
//!
//! The runtime takes an [`ImageInput`] (an image config and its unpacked layer directories,
//! however they were obtained) and [`RunOptions`] (the command line), and runs the container
//! in-process through youki's `libcontainer`, or through an external OCI runtime (`runc`,
//! `crun`) given with `--runtime PATH`; both run the very same bundle directory.
//!
//! # State layout
//!
//! What a container keeps lives under `<root>/containers/` (`<root>` is the store root,
//! `/var/lib/xrun` by default); what only matters while it runs — its bundle and the
//! runtime's state — lives on tmpfs under `/run/xrun` ([`rundir`]), as containerd keeps its
//! bundles under `/run`:
//!
//! ```text
//! <root>/containers/
//!   .lock                  exclusive while a container is created or removed (names stay unique)
//!   <id>/                  one container; <id> is 64 hex digits, shown as its first 12
//!     container.json       the record: image, options, status, pids, exit code (written atomically)
//!     upper/  work/        the writable container layer (overlay upperdir/workdir)
//!     log                  a detached container's stdout and stderr (records: `log`)
//!     vm.json              vm route: how to boot the container's VM (`crate::vm::VmLaunch`)
//!     disk.ext4            vm route: the writable layer, a sparse ext4 disk image
//!     vm-run/              vm route: the running VM's initrd, sockets and console log
//! /run/xrun/roots/<16 hex digits of the root's path hash>/<id>/   the bundle
//!     config.json          the OCI runtime config (`runc run --bundle` this directory)
//!     rootfs/              overlay mount point while the container runs
//!     etc/                 hostname, hosts, resolv.conf bind-mounted into the container
//!     runtime/             the OCI runtime's own state (libcontainer's or runc's `--root`)
//! /run/xrun/roots/<16 hex digits>/attach/<24 hex digits of the id>.sock   the attach socket
//!                          a detached container's monitor serves (0600; [`attach`])
//! /run/xrun/mountpoints/v1/etc/   empty mount points for those three files: a shared
//!                          lower layer on top of images that have an /etc directory
//! /run/xrun/exe/           protected views of the xrun binary ([`seal`])
//! ```
//!
//! Without a usable `/run/xrun` the bundle stays in `<root>/containers/<id>/`.
//!
//! A container on the vm route is a [`machine::Machine`] (made by the CLI's wiring, the
//! runtime does not know the VM stage): the same record, owner, monitor, log and exit code,
//! no bundle; its recorded process is qemu, and signals other than SIGKILL are relayed into
//! the guest by the owner.
//!
//! Outside the root: `/run/xrun/console-<short id>-<pid>.sock`, the console socket that
//! receives the terminal a `-t` container makes inside itself (removed once received).
//!
//! The image's layer snapshot directories are only ever overlay lower dirs: they are shared
//! between containers and never written. Cgroups go to `/xrun/<id>` in each hierarchy (v1) or
//! in the unified tree (v2) and are removed when the container is deleted.
//!
//! A container runs under an *owner*: the foreground `xrun run`/`start -a` process, or for a
//! detached container a small per-container monitor (`xrun internal monitor ID`, double-forked,
//! `setsid`) that keeps its log, its terminal or stdin for clients that attach ([`attach`]),
//! reaps it and records its exit status. If the owner
//! disappears without recording an exit (killed, host rebooted), `ps` shows
//! `Exited (unknown)`, and the leftovers (mount, cgroups, runtime state) are cleaned up by the
//! next xrun that starts containers, or by `rm`.

pub mod attach;
pub mod bundle;
pub mod cgroups;
pub mod executor;
pub mod hints;
pub mod init;
pub mod inroot;
pub mod lifecycle;
pub mod log;
pub mod machine;
pub mod monitor;
pub mod net;
pub mod options;
pub mod placement;
pub mod resolve;
pub mod rundir;
pub mod seal;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod signals;
pub mod spec;
pub mod state;
pub mod tty;
pub mod usage;
pub mod user;

use std::path::PathBuf;

pub use bundle::{Bundle, BundleExtras};
pub use options::{Network, RunOptions, Volume};
pub use state::{ContainerRecord, Containers, Status};

/// Exit code for xrun's own failures (Docker's 125).
pub const EXIT_XRUN: u8 = 125;
/// Exit code when the command cannot be executed (Docker's 126).
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// Exit code when the command is not found (Docker's 127).
pub const EXIT_NOT_FOUND: u8 = 127;

/// An image as the runtime needs it: a name to show, its config, and its layers unpacked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageInput {
    /// What `ps` shows in the IMAGE column.
    pub name: String,
    /// The image config (Entrypoint, Cmd, Env, WorkingDir, User).
    pub config: oci_spec::image::ImageConfiguration,
    /// Snapshot directories of the layers, lowest first.
    pub layer_dirs: Vec<PathBuf>,
}

impl ImageInput {
    /// The runtime's view of an image from the store.
    pub fn from_store(name: &str, image: &crate::store::Image) -> ImageInput {
        ImageInput {
            name: name.to_string(),
            config: image.config.clone(),
            layer_dirs: image.layer_dirs.clone(),
        }
    }

    /// A plain directory used as the only layer (Podman's `--rootfs`), with an empty config.
    pub fn from_rootfs(dir: PathBuf) -> ImageInput {
        ImageInput {
            name: dir.display().to_string(),
            config: oci_spec::image::ImageConfiguration::default(),
            layer_dirs: vec![dir],
        }
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Something the user gave is wrong (flags, names, paths).
    #[error("{0}")]
    BadInput(String),
    /// The command is not in the container's PATH or does not exist.
    #[error("{0}")]
    CommandNotFound(String),
    /// The command exists but cannot be executed.
    #[error("{0}")]
    NotExecutable(String),
    /// No container by that id, id prefix or name.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// The container is in the wrong state for the operation.
    #[error("{0}")]
    WrongState(String),
    /// A file-system or system-call failure, with what was being done.
    /// A limit that bites at scale (a full run directory, open files, processes) gets what to
    /// do appended ([`hints`]); the error is part of the message, not a separate cause.
    #[error("{what}: {error}{}", hints::for_io(.error))]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// The OCI runtime (libcontainer or the external one) failed.
    #[error("runtime: {msg}{hint}", msg = .0, hint = hints::for_text(.0))]
    Runtime(String),
    /// The container's record is unreadable.
    #[error("{0}")]
    Corrupt(String),
}

impl RuntimeError {
    /// The exit code Docker would use for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::CommandNotFound(_) => EXIT_NOT_FOUND,
            RuntimeError::NotExecutable(_) => EXIT_NOT_EXECUTABLE,
            _ => EXIT_XRUN,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            what: what.into(),
            error: source,
        }
    }
}

impl From<crate::network::NetworkError> for RuntimeError {
    fn from(e: crate::network::NetworkError) -> Self {
        match e {
            crate::network::NetworkError::BadInput(m) => RuntimeError::BadInput(m),
            e @ (crate::network::NetworkError::NotFound(_)
            | crate::network::NetworkError::Exists(_)
            | crate::network::NetworkError::InUse(_)) => RuntimeError::BadInput(e.to_string()),
            e => RuntimeError::Runtime(e.to_string()),
        }
    }
}

impl From<nix::Error> for RuntimeError {
    fn from(e: nix::Error) -> Self {
        RuntimeError::io("system call", std::io::Error::from(e))
    }
}
