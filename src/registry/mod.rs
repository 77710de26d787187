//! The distribution protocol: references, auth, manifests and verified blob streams, and the
//! pull that writes them into the store.
//!
//! Owner: the registry stage. Built on reqwest: xrun does the auth challenges
//! ([`session`]), bounded reads of every answer ([`limits`]), media-type detection,
//! platform selection ([`crate::platform::Matcher`]), digest and size checks while
//! streaming, retries, and the Docker credentials file.
//!
//! Entry points: [`pull()`] / [`pull_blocking`] (and [`ensure_image`] for `run --pull`),
//! [`push::push`] / [`push::push_blocking`] (what to send: [`push::select_content`]),
//! [`inspect_remote`], [`verify_login`], [`DockerConfig`].

pub mod auth;
pub mod client;
pub mod error;
pub mod limits;
pub mod login;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod push_progress;
pub mod remote;
pub mod session;
pub mod upload;

pub use auth::{Credentials, DockerConfig};
pub use client::ClientOptions;
pub use error::RegistryError;
pub use login::verify_login;
pub use progress::Progress;
pub use pull::{
    PullOptions, PullOutcome, PullPolicy, RemoteEntry, RemoteManifest, ensure_image,
    inspect_remote, pull, pull_blocking,
};
pub use push::{PushContent, PushOptions, PushOutcome};
pub use push_progress::PushProgress;
