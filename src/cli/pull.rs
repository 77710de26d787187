//! `xrun pull`, `login`, `logout`, `manifest inspect`. Owner: the registry stage.

use super::{Global, not_yet};

/// `xrun pull` arguments.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image reference.
    pub reference: String,
}

/// `xrun login` arguments.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host.
    pub server: String,
}

/// `xrun logout` arguments.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host.
    pub server: String,
}

/// `xrun manifest …`.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// The platforms a remote index offers, without pulling layers.
    Inspect {
        /// Image reference.
        reference: String,
    },
}

pub fn pull(_g: &Global, _a: PullArgs) -> anyhow::Result<u8> {
    not_yet("pull")
}
pub fn login(_g: &Global, _a: LoginArgs) -> anyhow::Result<u8> {
    not_yet("login")
}
pub fn logout(_g: &Global, _a: LogoutArgs) -> anyhow::Result<u8> {
    not_yet("logout")
}
pub fn manifest(_g: &Global, _a: ManifestCommand) -> anyhow::Result<u8> {
    not_yet("manifest inspect")
}
