//! `xrun serve`: the Docker Engine API service on a unix socket, in the foreground.

use std::path::PathBuf;

use xrun::api::{self, ServeOptions};
use xrun::engine::Engine;

use super::Global;

/// `xrun serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The unix socket to listen on (created mode 0660; clients use
    /// DOCKER_HOST=unix://PATH).
    #[arg(long, value_name = "PATH", default_value = api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Runs `xrun serve` until SIGTERM/SIGINT.
pub fn serve(g: &Global, a: ServeArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    api::serve(ServeOptions {
        socket: a.socket,
        engine,
    })?;
    Ok(0)
}
