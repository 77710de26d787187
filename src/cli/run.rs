//! `xrun run`, `xrun create`. Owner: the runtime stage.

use super::{Global, not_yet};

/// `xrun run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `xrun create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(_g: &Global, _a: RunArgs) -> anyhow::Result<u8> {
    not_yet("run")
}
pub fn create(_g: &Global, _a: CreateArgs) -> anyhow::Result<u8> {
    not_yet("create")
}
