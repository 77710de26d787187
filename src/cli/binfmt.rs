//! `xrun binfmt status|install|uninstall`. Owner: the emulation stage.

use super::{Global, not_yet};

/// `xrun binfmt …`.
#[derive(Debug, clap::Subcommand)]
pub enum BinfmtCommand {
    /// Show registered handlers and whether containers can use them.
    Status {},
}

pub fn binfmt(_g: &Global, _a: BinfmtCommand) -> anyhow::Result<u8> {
    not_yet("binfmt")
}
