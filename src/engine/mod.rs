//! The engine: xrun's operations as typed requests and results, the only place where
//! orchestration lives. Front ends (the CLI now, the Docker API service next) translate
//! their input into these requests and the results into their output; none of them decides
//! a route or touches the store.
//!
//! - containers: [`Engine::create`] (image → platform → host → route → record, from a
//!   [`ContainerSpec`]), [`Engine::start`], [`Engine::run_attached`], [`Engine::logs`],
//!   [`Engine::stop`], [`Engine::kill`], [`Engine::remove`], [`Engine::exec`],
//!   [`Engine::list`], [`Engine::inspect`], [`Engine::attach`] (a client of a container's
//!   terminal or streams: [`AttachRequest`] → [`Attachment`]), [`Engine::resize`],
//!   [`Engine::stats`] (what it uses: [`ContainerStats`]);
//! - images: [`Engine::pull`], [`Engine::list_images`] (and, by Docker's filters,
//!   [`Engine::list_images_filtered`]), [`Engine::inspect_image`],
//!   [`Engine::remove_image`] + [`Engine::reclaim`], [`Engine::prune_images`],
//!   [`Engine::load_images`] / [`Engine::load_images_from`], [`Engine::save_images`] /
//!   [`Engine::save_images_to`], [`Engine::tag_image`], [`Engine::push`];
//! - registries: [`Engine::login`], [`Engine::logout`], [`Engine::inspect_remote`];
//! - networks: [`Engine::create_network`], [`Engine::list_networks`],
//!   [`Engine::inspect_network`], [`Engine::remove_network`], [`Engine::prune_networks`],
//!   [`Engine::connect`], [`Engine::disconnect`], [`Engine::ports`];
//! - builds: [`Engine::build`] (a Dockerfile into an image: [`BuildRequest`]),
//!   [`Engine::commit`] (a container's writable layer into an image: [`CommitRequest`]);
//! - the pre-flight: [`Engine::check`].
//!
//! Failures are [`EngineError`]s, which keep Docker's exit codes (125/126/127) and the
//! refusals' reasons. What happens along the way (pull progress, the route notice) goes to
//! an [`Observer`].

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::runtime::Containers;

mod attach;
mod build;
mod build_check;
pub mod build_context;
mod check;
mod commit;
mod containers;
mod create;
mod error;
mod exec;
mod image_list;
mod images;
mod logs;
mod networks;
mod observer;
mod push;
mod registry;
mod resolve;
pub mod route;
mod spec;
mod stats;
mod system;
pub mod vm;

pub use crate::store::ArchiveFormat;
pub use attach::{
    AttachEvent, AttachEvents, AttachInput, AttachRequest, Attachment, DEFAULT_DETACH_KEYS,
    DetachKeys, Stream,
};
pub use build::{
    ArchiveBuildRequest, BuildCachePruned, BuildOutcome, BuildRequest, MAX_DOCKERFILE_BYTES,
    default_build_platform,
};
pub use check::CheckRequest;
pub use commit::CommitRequest;
pub use containers::{AttachOptions, ExecSpec};
pub use error::{EXIT_ENGINE_ERROR, EngineError, ErrorKind};
pub use image_list::{ImageFilters, ListedImage, unix_time};
pub use images::{PullRequest, Reclaimed, SaveRequest};
pub use networks::{NetworkInfo, network_json, network_settings};
pub use observer::{Observer, Unobserved};
pub use push::PushRequest;
pub use spec::{ContainerSpec, CreateOutcome, Created, DryRun, DryRunPlan, ImageSource};
pub use stats::{ContainerStats, STATS_INTERVAL};
pub use system::{
    BuildCacheUsage, CheckReport, ContainerUsage, DfRow, DiskUsage, ImageUsage, SystemPruneReport,
};

/// The engine over one store root (images, containers, state).
///
/// Cheap to make: stores and container state are opened by each operation, so containers
/// made by one front end are seen and managed by any other on the same root.
#[derive(Debug, Clone)]
pub struct Engine {
    root: PathBuf,
    config: Option<Config>,
    /// Monitors started ahead of need (a long-lived front end: [`Engine::with_spare_monitors`]).
    spares: Option<std::sync::Arc<crate::runtime::monitor::SpareMonitors>>,
}

impl Engine {
    /// The engine over store root `root`; the configuration file is read by the operations
    /// that need it (see [`Engine::with_config`]).
    pub fn open(root: impl Into<PathBuf>) -> Engine {
        Engine {
            root: root.into(),
            config: None,
            spares: None,
        }
    }

    /// Keeps a container monitor started ahead of need, so a detached start does not wait
    /// for one to start (for a long-lived front end such as the API service; see
    /// [`crate::runtime::monitor`]). The spare ends when the last clone of this engine goes.
    pub fn with_spare_monitors(mut self) -> Engine {
        self.spares = Some(crate::runtime::monitor::SpareMonitors::new(&self.root));
        self
    }

    /// Uses `config` instead of reading the configuration file at each operation.
    pub fn with_config(mut self, config: Config) -> Engine {
        self.config = Some(config);
        self
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration in force.
    fn config(&self) -> Result<Config, EngineError> {
        match &self.config {
            Some(c) => Ok(c.clone()),
            None => Ok(Config::load()?),
        }
    }

    /// The container state under the root.
    fn containers(&self) -> Result<Containers, EngineError> {
        Ok(Containers::open(&self.root)?)
    }
}
