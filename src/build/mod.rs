//! The build stage: a Dockerfile and a context in, an image (config, manifest, layers in the
//! store) out. Each `RUN` is a container run by the caller (the engine, through the same
//! runtime and route as `xrun run`: see [`executor::BuildHost`]); each step's file-system
//! change becomes a layer through [`layer`]; unchanged steps come from the [`cache`].
//!
//! One job per file: [`dockerfile`] parses (the `parse-dockerfile` crate) into typed
//! instructions; [`expand`] is Docker's variable expansion; [`context`] the context,
//! `.dockerignore` and content digests; [`glob`] the path patterns; [`rootfs`] looks paths up
//! in layer snapshots; [`copy`] stages what `COPY`/`ADD` add; [`layer`] writes a diff as a
//! layer tar; [`state`] is the image under construction; [`cache`] the step cache;
//! [`executor`] runs the steps of the stages a target needs; [`image`] writes the result.

pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod executor;
pub mod expand;
pub mod glob;
pub mod image;
pub mod layer;
pub mod metadata;
pub mod rootfs;
pub mod state;

pub use context::Context;
pub use dockerfile::{Dockerfile, parse};
pub use executor::{BuildHost, BuildOptions, RunStep, build_stage_target};
pub use state::ImageState;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse (file and line given).
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The Dockerfile's name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A variable substitution is malformed or a required variable is unset.
    #[error("{0}")]
    Expand(String),
    /// A `COPY`/`ADD` source is missing, outside the context, or unreadable.
    #[error("{0}")]
    Context(String),
    /// A flag or value is not acceptable (the message says which and what to do).
    #[error("{0}")]
    Invalid(String),
    /// Stages depend on each other in a cycle.
    #[error("circular dependency between stages: {0}")]
    Cycle(String),
    /// A `RUN` step exited non-zero (the build fails with exit status 1, as `docker build`).
    #[error("{step}: The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The step (`[2/5] RUN …`).
        step: String,
        /// The command as run.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// The base image of a `FROM` (or a `COPY --from` image) cannot be had.
    #[error("FROM {image}: {message}")]
    Base {
        /// The reference.
        image: String,
        /// Why.
        message: String,
    },
    /// Running a step's container failed (not the command: the container itself).
    #[error("{0}")]
    Runner(String),
    /// The result fails a `--check-host-profile` check.
    #[error("{0}")]
    HostCheck(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file-system error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, or the path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl BuildError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }
}
