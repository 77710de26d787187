//! [`EngineError`]: why an engine operation failed, with what a front end needs to answer
//! (the CLI's exit code, an API's status class).

use crate::assess::AssessError;
use crate::config::ConfigError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::registry::RegistryError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;
use crate::vm::VmError;

/// Exit code for xrun's own failures (Docker's 125).
pub const EXIT_ENGINE_ERROR: u8 = 125;

/// Why an engine operation failed.
///
/// Errors of the stages pass through unchanged (their messages and causes are what the
/// user sees); the engine adds refusals, missing objects and the context of a step.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image cannot run here (the plan's main reason and its fix, on one line).
    #[error("{0}")]
    Refused(String),
    /// A named object (image, platform of an image) is not there.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (bad value, conflicting options).
    #[error("{0}")]
    Invalid(String),
    /// The runtime failed (carries Docker's 125/126/127 and container states).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Assessing an image (requirements, guests) failed.
    #[error(transparent)]
    Assess(#[from] AssessError),
    /// A reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A platform does not parse.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The configuration file cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry failed (a pull of its own).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The pull `run`/`create` made for `image` failed.
    #[error("pulling {image}: {error}")]
    Pull {
        /// The image as given.
        image: String,
        /// What the registry said.
        error: RegistryError,
    },
    /// The vm stage failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A network is not there, is there already, or is in use.
    #[error(transparent)]
    Network(crate::network::NetworkError),
    /// A build failed (a failing `RUN` exits 1, as `docker build`; see [`EngineError::exit_code`]).
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// Writing the output the caller asked for failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A step failed: what was being done, and why.
    #[error("{what}")]
    Context {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// What kind of failure an [`EngineError`] is, for front ends that answer with a status
/// (the Docker API: 404, 409, 400, 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container, image or platform.
    NotFound,
    /// The object is in the wrong state for the operation (running, in use).
    Conflict,
    /// The object is in use and cannot go (a network with containers attached: Docker's 403).
    InUse,
    /// The request is wrong.
    Invalid,
    /// The image cannot run here.
    Refused,
    /// The command in the container cannot be found or executed (127/126).
    Command,
    /// Anything else: the system, the store, a registry.
    Failed,
}

impl EngineError {
    /// Wraps `source` with what was being done (`what: source` when printed with causes).
    pub fn context(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> EngineError {
        EngineError::Context {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// The exit code Docker's CLI gives for this error: 126/127 for the command, else 125.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Runtime(e) => e.exit_code(),
            EngineError::Build(crate::build::BuildError::RunFailed { .. }) => 1,
            _ => EXIT_ENGINE_ERROR,
        }
    }

    /// The kind of failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Refused(_) => ErrorKind::Refused,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Invalid(_) | EngineError::Reference(_) | EngineError::Platform(_) => {
                ErrorKind::Invalid
            }
            EngineError::Build(e) => match e {
                crate::build::BuildError::RunFailed { .. }
                | crate::build::BuildError::Runner(_)
                | crate::build::BuildError::Store(_)
                | crate::build::BuildError::Io { .. } => ErrorKind::Failed,
                crate::build::BuildError::Base { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Invalid,
            },
            EngineError::Runtime(e) => match e {
                RuntimeError::NoSuchContainer(_) => ErrorKind::NotFound,
                RuntimeError::WrongState(_) => ErrorKind::Conflict,
                RuntimeError::BadInput(_) => ErrorKind::Invalid,
                RuntimeError::CommandNotFound(_) | RuntimeError::NotExecutable(_) => {
                    ErrorKind::Command
                }
                _ => ErrorKind::Failed,
            },
            EngineError::Store(StoreError::InUse { .. }) => ErrorKind::Conflict,
            EngineError::Network(e) => match e {
                crate::network::NetworkError::NotFound(_) => ErrorKind::NotFound,
                crate::network::NetworkError::Exists(_) => ErrorKind::Conflict,
                crate::network::NetworkError::InUse(_) => ErrorKind::InUse,
                crate::network::NetworkError::BadInput(_) => ErrorKind::Invalid,
                _ => ErrorKind::Failed,
            },
            EngineError::Store(StoreError::ImageNotFound(_)) => ErrorKind::NotFound,
            EngineError::Store(
                StoreError::BadLayout { .. }
                | StoreError::InvalidInput(_)
                | StoreError::DigestMismatch { .. }
                | StoreError::SizeMismatch { .. },
            ) => ErrorKind::Invalid,
            EngineError::Registry(
                RegistryError::ManifestUnknown { .. }
                | RegistryError::NoMatchingPlatform { .. }
                | RegistryError::NotPresent { .. },
            ) => ErrorKind::NotFound,
            _ => ErrorKind::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        let not_found = EngineError::Runtime(RuntimeError::CommandNotFound("nope".into()));
        assert_eq!(not_found.exit_code(), 127);
        assert_eq!(not_found.kind(), ErrorKind::Command);
        let not_exec = EngineError::Runtime(RuntimeError::NotExecutable("x".into()));
        assert_eq!(not_exec.exit_code(), 126);
        let refused = EngineError::Refused("cannot run x".into());
        assert_eq!(refused.exit_code(), 125);
        assert_eq!(refused.kind(), ErrorKind::Refused);
        assert_eq!(
            EngineError::NotFound("no such image: x".into()).exit_code(),
            125
        );
    }

    #[test]
    fn kinds_tell_front_ends_what_went_wrong() {
        let missing = EngineError::Runtime(RuntimeError::NoSuchContainer("c".into()));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let running = EngineError::Runtime(RuntimeError::WrongState("running".into()));
        assert_eq!(running.kind(), ErrorKind::Conflict);
        let bad = EngineError::Runtime(RuntimeError::BadInput("-v".into()));
        assert_eq!(bad.kind(), ErrorKind::Invalid);
        let io = EngineError::Io(std::io::Error::other("disk"));
        assert_eq!(io.kind(), ErrorKind::Failed);
    }

    #[test]
    fn context_keeps_its_cause() {
        let e = EngineError::context("opening the store at /x", std::io::Error::other("denied"));
        assert_eq!(e.to_string(), "opening the store at /x");
        let cause = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(cause.as_deref(), Some("denied"));
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "opening the store at /x: denied"
        );
    }
}
