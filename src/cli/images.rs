//! `xrun images`, `rmi`, `image prune`, `inspect`, `load`, `save`. Owner: the store stage.

use std::path::PathBuf;

use super::{Global, not_yet};

/// `xrun images` arguments.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {}

/// `xrun rmi` arguments.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images to remove.
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// `xrun image …`.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Remove unreferenced blobs and snapshots.
    Prune {},
}

/// `xrun inspect` arguments.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Image reference.
    pub reference: String,
}

/// `xrun load` arguments.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// OCI image layout directory or tar.
    #[arg(short = 'i', long = "input")]
    pub input: PathBuf,
}

/// `xrun save` arguments.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Image reference.
    pub reference: String,
    /// Output tar.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn images(_g: &Global, _a: ImagesArgs) -> anyhow::Result<u8> {
    not_yet("images")
}
pub fn rmi(_g: &Global, _a: RmiArgs) -> anyhow::Result<u8> {
    not_yet("rmi")
}
pub fn image(_g: &Global, _a: ImageCommand) -> anyhow::Result<u8> {
    not_yet("image prune")
}
pub fn inspect(_g: &Global, _a: InspectArgs) -> anyhow::Result<u8> {
    not_yet("inspect")
}
pub fn load(_g: &Global, _a: LoadArgs) -> anyhow::Result<u8> {
    not_yet("load")
}
pub fn save(_g: &Global, _a: SaveArgs) -> anyhow::Result<u8> {
    not_yet("save")
}
