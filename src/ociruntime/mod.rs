//! xrun as an OCI runtime: runc's command line (`xrun-runc`, or `xrun runtime …`) for
//! containerd, Podman and Kubernetes nodes, mapped onto youki's `libcontainer`.
//!
//! Each command group has its file: [`lifecycle`] (create, start, kill, delete), [`state`]
//! (runc's state JSON), [`exec`], [`control`] (ps, pause, resume), [`features`]. Before
//! `create`, [`route`] assesses the bundle's root file system like an image: a
//! foreign-architecture rootfs with a usable binfmt handler runs emulated (xrun's native init
//! as PID 1), a rootfs the node cannot run is refused with the plan's reason codes.
//!
//! # State layout
//!
//! ```text
//! <root>/                  --root, default /run/xrun-runc
//!   <id>/                  libcontainer's container state (state.json, config, notify socket)
//!   .xrun-bundles/<id>/    an emulated container's rewritten config.json (rootfs made
//!                          absolute, the init bound in) and `bundle`, the original bundle path
//! ```

pub mod console;
pub mod control;
pub mod exec;
pub mod features;
pub mod lifecycle;
pub mod log;
pub mod propagation;
pub mod route;
pub mod state;

use std::path::{Path, PathBuf};

/// The default state root (`--root`).
pub const DEFAULT_ROOT: &str = "/run/xrun-runc";

/// The file name that selects runc's command line when xrun is started through it.
pub const RUNC_NAME: &str = "xrun-runc";

/// Errors of the OCI runtime commands (each is one line for runc's callers).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No container by that id under the root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A container with that id already exists.
    #[error("container {0} already exists")]
    Exists(String),
    /// The operation does not fit the container's status.
    #[error("{0}")]
    WrongState(String),
    /// Something given on the command line or in the bundle is wrong or unsupported.
    #[error("{0}")]
    BadInput(String),
    /// The node cannot run the bundle (the plan's reason codes and messages).
    #[error("{0}")]
    Unrunnable(String),
    /// libcontainer failed.
    #[error("{what}: {message}")]
    Runtime {
        /// What was being done.
        what: String,
        /// libcontainer's error.
        message: String,
    },
    /// A file or system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl OciError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> OciError {
        OciError::Io {
            what: what.into(),
            source,
        }
    }

    /// A libcontainer error with what was being done.
    pub fn runtime(what: impl Into<String>, e: impl std::fmt::Display) -> OciError {
        OciError::Runtime {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// The runtime's state root (`--root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRoot {
    dir: PathBuf,
}

impl StateRoot {
    /// The root at `dir` (created on first use).
    pub fn new(dir: &Path) -> StateRoot {
        StateRoot {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// libcontainer's directory for container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Where an emulated container's rewritten bundle lives.
    pub fn rewritten_bundle(&self, id: &str) -> PathBuf {
        self.dir.join(".xrun-bundles").join(id)
    }

    /// Creates the directory (0700, as runc's).
    pub fn ensure(&self) -> Result<(), OciError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| OciError::io(format!("creating {}", self.dir.display()), e))
    }

    /// Loads container `id` (its status refreshed from its process).
    pub fn load(&self, id: &str) -> Result<libcontainer::container::Container, OciError> {
        check_id(id)?;
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(OciError::NotFound(id.to_string()));
        }
        // libcontainer saves state.json in place (truncate, then write): another xrun-runc
        // process (`kill`, `state`) may be saving it right now. A half-written file is retried
        // for up to a second before it counts as broken.
        let mut attempt = 0;
        loop {
            match libcontainer::container::Container::load(dir.clone()) {
                Ok(c) => return Ok(c),
                Err(libcontainer::error::LibcontainerError::State(
                    libcontainer::container::state::StateError::ParseStateFile { .. },
                )) if attempt < 100 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(OciError::runtime(format!("loading container {id}"), e)),
            }
        }
    }
}

/// Refuses ids that are not one path component of the characters runc allows.
pub fn check_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(OciError::BadInput(format!(
            "invalid container id {id:?}: use letters, digits and _ - . +"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_component() {
        assert!(check_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
    }
}
